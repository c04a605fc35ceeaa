"""Training loop: SGD on the digits with a GEMM backend, sparsity statistics, captures.

Two runs with the same :class:`TrainConfig` and different backends start from the same
weights, see the samples in the same order and drop the same neurons (every random draw comes
from generators seeded by ``(seed, purpose, epoch, step)``, never from the numerics), so their
difference is the GEMM numerics alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from ..lowering import check_batch_size
from .backend import GemmBackend, GemmCall
from .data import Dataset
from .layers import StepContext
from .loss import softmax_cross_entropy
from .network import Network
from .networks import NETWORKS, build_network
from .optim import SGD, check_hyperparameters

__all__ = ["TrainConfig", "TrainResult", "train", "train_step", "evaluate", "epoch_batches",
           "dropout_rng", "SPARSITY_KEYS"]

# random streams (second element of the seed sequence)
_STREAM_ORDER, _STREAM_DROPOUT = 1, 2
#: Per-layer sparsity statistics: fraction of zeros in the encoded input activations ``X``,
#: in the encoded output gradients ``dY`` and in the forward mask gating ``dY``.
SPARSITY_KEYS = ("activation_zero_fraction", "grad_zero_fraction", "mask_zero_fraction")


#: Learning-rate schedules: constant, or cosine decay from ``lr`` to 0 over all steps (the
#: last epochs move the weights little, so the final accuracy does not depend on where a
#: noisy constant-rate trajectory happens to stop).
LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of a training run (validated; ValueError names the field)."""

    net: str = "digits_cnn"
    width: int = 8
    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float = 0.25
    loss_scale: float = 1.0
    lr_schedule: str = "cosine"
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.net, str) or not self.net:
            raise ValueError(f"net must be a network name, not {self.net!r}")
        for field, minimum in (("width", 1), ("epochs", 1), ("seed", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{field} must be an integer >= {minimum}, not {value!r}")
        check_batch_size(self.batch_size)
        check_hyperparameters(lr=self.lr, momentum=self.momentum,
                              weight_decay=self.weight_decay, grad_scale=self.loss_scale)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, "
                             f"not {self.lr_schedule!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or \
                not 0 <= self.dropout < 1:
            raise ValueError(f"dropout p must be a number in [0, 1), not {self.dropout!r}")

    def build(self) -> Network:
        """The built-in network ``net`` (``width``, ``dropout``, ``seed``); a network of your
        own is handed to :func:`train` as ``network=`` instead."""
        if self.net not in NETWORKS:
            raise ValueError(f"net must be one of {sorted(NETWORKS)} to be built, not "
                             f"{self.net!r} (pass your own Network to train(..., network=))")
        return build_network(self.net, width=self.width, dropout=self.dropout, seed=self.seed)


@dataclasses.dataclass
class TrainResult:
    """What a run produced.

    ``curve`` has per-epoch lists ``epoch`` (0 = before training), ``test_accuracy``,
    ``train_loss`` and ``train_accuracy`` (``None`` at epoch 0); ``sparsity[layer][key]`` is a
    list over epochs 1.. of the fractions in :data:`SPARSITY_KEYS` (``None`` when the layer
    has no such tensor: no mask after the last layer).
    """

    backend: str
    config: TrainConfig
    curve: dict[str, list]
    sparsity: dict[str, dict[str, list]]
    wall_time_s: float
    steps: int
    captures: list[str]

    @property
    def test_accuracy(self) -> float:
        return self.curve["test_accuracy"][-1]


def dropout_rng(config: "TrainConfig", epoch: int, step: int) -> np.random.Generator:
    """The generator of the dropout masks of one training step (``epoch`` from 1, ``step``
    counted over the whole run): a replay of that step draws the same masks."""
    return np.random.default_rng([config.seed, _STREAM_DROPOUT, epoch, step])


def epoch_batches(n: int, *, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Sample indices of the minibatches of one epoch (a seeded permutation; the last batch
    may be smaller)."""
    order = np.random.default_rng([seed, _STREAM_ORDER, epoch]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _mask_zero_counts(net: Network, ctx: StepContext, counts: dict) -> None:
    """Zeros of each layer's output mask (the AND of the masks gating its ``dY``)."""
    for spec in net.specs():
        if spec.kind not in ("conv2d", "linear") or not spec.output_mask:
            continue
        keep = None
        for name in spec.output_mask:
            mask = ctx.masks[name].reshape(ctx.masks[name].shape[0], -1)
            keep = mask if keep is None else keep & mask
        ctx.count(spec.name, "mask", ~keep)


def train_step(net: Network, optimizer: SGD, backend: GemmBackend, x: np.ndarray,
               y: np.ndarray, *, rng: np.random.Generator, loss_scale: float = 1.0,
               counts: dict | None = None, tensors: dict | None = None) -> tuple[float, int]:
    """One SGD step on a minibatch; returns ``(mean loss, correct predictions)``."""
    ctx = StepContext(backend=backend, training=True, rng=rng, counts=counts, tensors=tensors)
    logits = net.forward(x, ctx)
    loss, grad, correct = softmax_cross_entropy(logits, y, scale=loss_scale)
    net.backward(grad, ctx)
    if counts is not None:
        _mask_zero_counts(net, ctx, counts)
    optimizer.step()
    return loss, correct


def evaluate(net: Network, backend: GemmBackend, x: np.ndarray, y: np.ndarray, *,
             batch_size: int = 128) -> float:
    """Test accuracy (fraction correct), inference mode (no dropout)."""
    correct = 0
    ctx = StepContext(backend=backend)
    for start in range(0, len(x), batch_size):
        logits = net.forward(x[start:start + batch_size], ctx)
        correct += int(np.count_nonzero(logits.argmax(axis=1) == y[start:start + batch_size]))
    return correct / len(x)


def _gemm_recorder(store: dict) -> Callable[[GemmCall], None]:
    def record(call: GemmCall) -> None:
        # copies: operands may alias the master weights, which the optimizer updates
        prefix = f"gemm/{call.name}"
        store[f"{prefix}/a"] = np.array(call.a, copy=True)
        store[f"{prefix}/b"] = np.array(call.b, copy=True)
        for side, tags in (("a", call.a_tags), ("b", call.b_tags)):
            if tags is not None:            # FGMP: per-element operand formats
                store[f"{prefix}/{side}_tags"] = np.array(tags, copy=True)
        if call.c is not None:
            store[f"{prefix}/c"] = np.array(call.c[:1], copy=True)   # one row, broadcast
        store[f"{prefix}/out"] = np.array(call.out, copy=True)
        store.setdefault("_commands", []).append(
            {"name": call.name, "kind": call.kind, "M": call.M, "N": call.N, "K": call.K,
             "transpose_a": call.transpose_a, "transpose_b": call.transpose_b,
             "accumulate": call.accumulate})
    return record


def _save_capture(path: Path, tensors: dict, meta: dict) -> None:
    commands = tensors.pop("_commands", None)
    if commands is not None:
        meta = dict(meta, gemm_commands=commands)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **tensors)


def train(config: TrainConfig, backend: GemmBackend, data: Dataset, *,
          network: Network | None = None,
          capture_dir: str | Path | None = None, capture_steps: Collection[int] = (),
          gemm_capture_steps: Collection[int] = (), log: Callable[[str], None] | None = None,
          progress: Callable[[int, int], None] | None = None,
          weight_masks: dict | None = None) -> TrainResult:
    """Train a network with ``backend`` for ``config.epochs`` epochs.

    Parameters
    ----------
    config : TrainConfig
        Hyperparameters; ``config.net`` names the built-in network trained when ``network``
        is not given (and labels the captures).
    backend : GemmBackend
    data : Dataset
        Any train/test split; its ``input_shape`` must be the network's.
    network : Network, optional
        A network of your own (trained in place: its weights are updated).
    capture_dir : path, optional
        Where captures go (``<capture_dir>/<net>/<backend>/step_XXXXXX.npz``).
    capture_steps : collection of int
        Global step indices (0-based) whose weights, activations, gradients and masks are
        saved (keys ``"<layer>/<input|output|weight|bias|grad_output|grad_input|grad_weight|
        grad_bias|mask>"``).
    gemm_capture_steps : collection of int
        Steps whose GEMM operands and results are saved too, as stored by the engine (keys
        ``"gemm/<command>/<a|b|c|out>"``, plus ``<a|b>_tags`` with per-element operand
        formats where the backend stores mixed formats (FGMP); command list in ``meta``): the
        input of an RTL replay.
    log : callable, optional
        Progress lines.
    progress : callable, optional
        ``progress(steps_done, total_steps)`` after every training step (a progress bar).
    weight_masks : dict, optional
        Keep masks of pruned weights by parameter name (``"fc1.weight"``): the pruned
        elements stay ``+0`` through training (:class:`sim.nn.optim.SGD` ``masks``).
    """
    if network is not None and not isinstance(network, Network):
        raise ValueError(f"network must be a sim.nn.Network, not {network!r}")
    net = config.build() if network is None else network
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a sim.nn.Dataset, not {data!r}")
    if data.input_shape != net.input_shape:
        raise ValueError(f"data input shape {data.input_shape} does not match {net.name} "
                         f"input_shape {net.input_shape}")
    if (capture_steps or gemm_capture_steps) and capture_dir is None:
        raise ValueError("capture_dir must be given when capture steps are requested")
    optimizer = SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                    weight_decay=config.weight_decay, grad_scale=config.loss_scale,
                    masks=weight_masks)
    weight_names = [layer.name for layer in net.weight_layers()]
    curve = {"epoch": [0], "test_accuracy": [evaluate(net, backend, data.x_test, data.y_test)],
             "train_loss": [None], "train_accuracy": [None]}
    sparsity = {name: {key: [] for key in SPARSITY_KEYS} for name in weight_names}
    captures: list[str] = []
    step = 0
    total_steps = config.epochs * -(-len(data.x_train) // config.batch_size)
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        counts: dict = {}
        loss_sum, correct_sum = 0.0, 0
        for batch in epoch_batches(len(data.x_train), batch_size=config.batch_size,
                                   seed=config.seed, epoch=epoch):
            capture = step in capture_steps or step in gemm_capture_steps
            tensors = {} if capture else None
            if step in gemm_capture_steps:
                backend.listener = _gemm_recorder(tensors)
            rng = dropout_rng(config, epoch, step)
            if config.lr_schedule == "cosine":
                optimizer.lr = np.float32(config.lr * 0.5 * (1 + math.cos(math.pi * step /
                                                                          total_steps)))
            try:
                loss, correct = train_step(net, optimizer, backend, data.x_train[batch],
                                           data.y_train[batch], rng=rng,
                                           loss_scale=config.loss_scale, counts=counts,
                                           tensors=tensors)
            finally:
                backend.listener = None
            if not math.isfinite(loss):
                raise FloatingPointError(f"{backend.name}: loss is {loss} at epoch {epoch} "
                                         f"step {step}")
            loss_sum += loss * len(batch)
            correct_sum += correct
            if capture:
                path = Path(capture_dir).expanduser() / config.net / backend.name / \
                    f"step_{step:06d}.npz"
                _save_capture(path, tensors, {"net": config.net, "backend": backend.name,
                                              "epoch": epoch, "step": step,
                                              "config": dataclasses.asdict(config),
                                              "labels": data.y_train[batch].tolist()})
                captures.append(str(path))
            step += 1
            if progress is not None:
                progress(step, total_steps)
        n = len(data.x_train)
        curve["epoch"].append(epoch)
        curve["train_loss"].append(loss_sum / n)
        curve["train_accuracy"].append(correct_sum / n)
        curve["test_accuracy"].append(evaluate(net, backend, data.x_test, data.y_test))
        for name in weight_names:
            for key, stat in zip(SPARSITY_KEYS, ("activation", "grad", "mask")):
                zeros, total = counts.get((name, stat), (0, 0))
                sparsity[name][key].append(zeros / total if total else None)
        if log:
            log(f"[{config.net} {backend.name}] epoch {epoch}/{config.epochs} "
                f"loss {curve['train_loss'][-1]:.4f} train {curve['train_accuracy'][-1]:.4f} "
                f"test {curve['test_accuracy'][-1]:.4f} "
                f"({time.perf_counter() - start:.0f} s)")
    return TrainResult(backend=backend.name, config=config, curve=curve, sparsity=sparsity,
                       wall_time_s=time.perf_counter() - start, steps=step, captures=captures)
