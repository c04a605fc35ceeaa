"""Replay of one training step on the GEMM engine: the step's GEMMs and their engine commands.

Two halves, both pure Python (no Amaranth, no cocotb):

* :func:`training_step_gemms` runs one training step of a workload network with the
  accelerator's numerics (:class:`sim.nn.AccelBackend`) and returns every GEMM of it, in
  execution order, as a :class:`WorkloadGemm`: the operands exactly as the engine stores them
  (bit patterns and per-element format tags, transposed operands as stored), the accumulator
  start ``C_in`` when the GEMM accumulates (the bias), and the golden fp32 result. Nothing is
  read from capture files: the step is recomputed (about a second for the digits CNN). By
  default each bias gradient is folded into its layer's weight gradient
  (:func:`fold_bias_grads`), as :mod:`sim.lowering` lowers them: the GEMMs are then exactly
  the step's engine commands (``Network.commands``).
* :func:`split_gemm` cuts a GEMM into :class:`ReplayCommand` s, engine commands that fit a
  given :class:`~sim.config.EngineConfig` (its A, B and accumulator memories, and the 16-bit
  command fields), and :func:`golden_replay` runs such commands on the golden GEMM.

How a GEMM is split, and why the result is bit-exact
----------------------------------------------------
The output is cut into blocks of ``m`` rows by ``n`` columns and the inner dimension into
slices of ``k``; one command computes one block over one slice, with its operands loaded at
the origin of each memory. The block of A (``m x k``, or ``k x m`` stored as the workload has
it when ``transpose_a``) and the block of B (``k x n``, or ``n x k`` with ``transpose_b``) are
the stored operands' sub-matrices: the engine reads a transposed operand in the other order
itself, so the host never copies a transpose. Commands are ordered block by block, and inside a
block by ascending ``k`` slice.

The golden GEMM (:mod:`sim.gemm`) computes every output element on its own: ``acc`` starts at
``+0`` (or ``C_in``) and takes ``acc = round_fp32(acc + a_k * b_k)`` for ``k`` ascending. So

* blocks over ``m`` and ``n`` do not interact: each element is computed by exactly one chain of
  commands, with the same operands;
* the first slice of a block starts where the golden chain starts: an overwrite command
  starts at ``+0``; with ``C_in`` the block of ``C_in`` is written to the accumulator memory as
  FP32 words and the command accumulates onto it;
* every later slice accumulates onto the FP32 word the previous slice left in the accumulator
  memory. That word is exactly the golden ``acc`` after the previous slice's last ``k`` (the
  memory holds FP32 words unchanged, and NaN stays NaN), and the slice continues with the next
  ``k`` in ascending order. The chain of commands therefore performs the same additions, in the
  same order, with the same rounding after each, as the golden GEMM: the results are equal bit
  for bit, including signed zeros, infinities and NaNs.

Folding the bias gradient
-------------------------
The network computes ``db = 1^T . dY`` as its own GEMM ``<layer>.bias_grad`` (``1 x N x K``,
A a row of ones) next to ``<layer>.weight_grad`` (``dW = X_col^T . dY``, ``M x N x K``, A
stored ``K x M``). :func:`fold_bias_grad` makes them one GEMM ``<layer>.weight_grad`` of
``(M+1) x N x K``: A as stored gets the bias gradient's ones (bits and format tags as the
network encoded them) appended as column ``M``, B is the shared ``dY``, and the golden result
is the weight gradient's rows with the bias gradient's row under them. Nothing is recomputed:
the result words the engine must produce are the network's own. The engine's result equals them
bit for bit because each output element of the golden GEMM is its own chain over ``k``: a row
of ``C`` depends only on its row of A and on B, so row ``M`` of the folded GEMM is the bias
gradient's chain and the other rows are the weight gradient's.

Block sizes come from the memories (:func:`chunk_limits`; also at most ``2**16 - 1``, the
command fields' range): as few blocks per dimension as fit, balanced, and in ``m`` (``n``) a
multiple of the array's rows (columns) so that only the last block has an edge tile.

Example::

    from sim.config import EngineConfig
    from sim.replay import training_step_gemms, split_step, golden_replay

    gemms = training_step_gemms()                 # the digits CNN, step 0, biases folded
    commands = split_step(gemms, EngineConfig())
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Iterable, Sequence

import numpy as np

from .config import EngineConfig
from .engine_model import (FIELD_BITS, EngineCommand, EngineError, command_cycles,
                           ideal_cycles, validate)
from .gemm import TAG_OF, gemm
from .lowering import GEMM_KINDS
from .nn.backend import AccelBackend, GemmCall
from .nn.data import Dataset, load_digits_split
from .nn.network import Network
from .nn.networks import INPUT_SHAPES
from .nn.optim import SGD
from .nn.train import TrainConfig, dropout_rng, epoch_batches, train_step

__all__ = ["REPLAY_CONFIG", "WorkloadGemm", "ReplayCommand", "training_step_gemms",
           "fold_bias_grad", "fold_bias_grads", "chunk_limits", "split_gemm", "split_step",
           "golden_replay", "step_statistics", "save_gemms", "load_gemms"]

#: The training run whose step 0 is replayed: the digits CNN as trained for
#: ``docs/results/workloads.json`` (``python -m scripts.train --net digits_cnn``: batch 32,
#: width 8, dropout 0.25, lr 0.02 with cosine decay over 20 epochs, loss scale 1024, seed 0).
REPLAY_CONFIG = TrainConfig(net="digits_cnn", epochs=20, lr=0.02, loss_scale=1024.0)

#: Largest value of a command's size and position fields.
FIELD_MAX = (1 << FIELD_BITS) - 1

_DIGITS_SIZE = 8            # the digits are 8x8 images; larger inputs are upsampled copies


def _check_bool(value, field):
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be a bool, not {value!r}")


def _check_matrix(array, field, kind):
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.dtype.kind != kind:
        described = (f"{array.dtype} array of shape {array.shape}"
                     if isinstance(array, np.ndarray) else type(array).__name__)
        raise ValueError(f"{field} must be a 2-D {'unsigned' if kind == 'u' else kind} "
                         f"integer array, not a {described}")


@dataclasses.dataclass(frozen=True, eq=False)
class WorkloadGemm:
    """One GEMM of a training step, as the engine stores it, with its golden result.

    ``C (M x N) = A . B`` (``+ C_in``), ``acc`` over ``k`` ascending (:func:`sim.gemm.gemm`).

    Parameters
    ----------
    name : str
        Command name, ``"<layer>.<forward|backward_data|weight_grad>"``, or
        ``"<layer>.bias_grad"`` for a bias gradient the network computed on its own (before
        :func:`fold_bias_grads`).
    kind : str
        One of :data:`sim.lowering.GEMM_KINDS`.
    transpose_a, transpose_b : bool
        A is stored ``K x M`` / B is stored ``N x K`` (read transposed by the engine).
    a_bits, a_tags : uint arrays, A as stored
        Operand bit patterns (16-bit words) and per-element format tags
        (:data:`sim.gemm.OPERAND_TAGS`).
    b_bits, b_tags : uint arrays, B as stored
    c_bits : uint32 array (M, N) or None
        FP32 patterns the accumulators start from (``None``: ``+0``, no accumulate).
    out_bits : uint32 array (M, N) or None
        The golden result (FP32 patterns); None where it is not known (a GEMM handed to the
        engine to compute, :mod:`tb.engine_api`).
    bias_row : bool
        The layer's bias gradient is folded in (:func:`fold_bias_grad`): the last row of A
        is the ones, the last row of the result the bias gradient.
    """

    name: str
    kind: str
    transpose_a: bool
    transpose_b: bool
    a_bits: np.ndarray
    a_tags: np.ndarray
    b_bits: np.ndarray
    b_tags: np.ndarray
    c_bits: np.ndarray | None
    out_bits: np.ndarray | None
    bias_row: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, not {self.name!r}")
        if self.kind not in GEMM_KINDS:
            raise ValueError(f"{self.name}: kind must be one of {list(GEMM_KINDS)}, "
                             f"not {self.kind!r}")
        _check_bool(self.transpose_a, f"{self.name}: transpose_a")
        _check_bool(self.transpose_b, f"{self.name}: transpose_b")
        _check_bool(self.bias_row, f"{self.name}: bias_row")
        for field in ("a_bits", "a_tags", "b_bits", "b_tags"):
            _check_matrix(getattr(self, field), f"{self.name}: {field}", "u")
        if self.out_bits is not None:
            _check_matrix(self.out_bits, f"{self.name}: out_bits", "u")
        for operand in ("a", "b"):
            bits, tags = getattr(self, f"{operand}_bits"), getattr(self, f"{operand}_tags")
            if tags.shape != bits.shape:
                raise ValueError(f"{self.name}: {operand}_tags must have the shape of "
                                 f"{operand}_bits {bits.shape}, not {tags.shape}")
        m, k = self.a_bits.shape[::-1] if self.transpose_a else self.a_bits.shape
        k_b, n = self.b_bits.shape[::-1] if self.transpose_b else self.b_bits.shape
        if k != k_b:
            raise ValueError(f"{self.name}: inner dimensions differ: A is {m}x{k}, "
                             f"B is {k_b}x{n}")
        if self.c_bits is not None:
            _check_matrix(self.c_bits, f"{self.name}: c_bits", "u")
            if self.c_bits.shape != (m, n):
                raise ValueError(f"{self.name}: c_bits must have shape {(m, n)}, "
                                 f"not {self.c_bits.shape}")
        if self.out_bits is not None and self.out_bits.shape != (m, n):
            raise ValueError(f"{self.name}: out_bits must have shape {(m, n)}, "
                             f"not {self.out_bits.shape}")
        if self.bias_row and (self.kind != "weight_grad" or m < 2):
            raise ValueError(f"{self.name}: bias_row needs a weight_grad GEMM with M >= 2, "
                             f"not {self.kind} with M={m}")

    @classmethod
    def from_call(cls, call: GemmCall, fmt_name: str) -> WorkloadGemm:
        """The GEMM a backend reported (:class:`sim.nn.GemmCall`), with its per-element
        operand tags, or all of the operand format ``fmt_name`` where the call has none
        (copied: the backend's arrays may change later)."""
        tag = TAG_OF[fmt_name]

        def operand(array, tags):
            bits = np.array(array, dtype=np.uint16, copy=True)
            if tags is None:
                return bits, np.full(bits.shape, tag, dtype=np.uint8)
            return bits, np.array(tags, dtype=np.uint8, copy=True)

        a_bits, a_tags = operand(call.a, call.a_tags)
        b_bits, b_tags = operand(call.b, call.b_tags)
        c_bits = None
        if call.c is not None:
            c_bits = np.ascontiguousarray(np.broadcast_to(call.c, (call.M, call.N))
                                          ).view(np.uint32).copy()
        return cls(name=call.name, kind=call.kind, transpose_a=call.transpose_a,
                   transpose_b=call.transpose_b, a_bits=a_bits, a_tags=a_tags, b_bits=b_bits,
                   b_tags=b_tags, c_bits=c_bits,
                   out_bits=np.array(call.out, dtype=np.float32).view(np.uint32).copy())

    @property
    def M(self) -> int:
        return self.a_bits.shape[1 if self.transpose_a else 0]

    @property
    def K(self) -> int:
        return self.a_bits.shape[0 if self.transpose_a else 1]

    @property
    def N(self) -> int:
        return self.b_bits.shape[0 if self.transpose_b else 1]

    @property
    def accumulate(self) -> bool:
        """The accumulators start from ``C_in`` (``c_bits``)."""
        return self.c_bits is not None

    @property
    def macs(self) -> int:
        return self.M * self.N * self.K

    def golden(self) -> np.ndarray:
        """:func:`sim.gemm.gemm` of the stored operands (equals ``out_bits`` for a GEMM of a
        training step: that is how the accelerator backend computed it)."""
        return gemm(self.a_bits, self.b_bits, a_fmt=self.a_tags, b_fmt=self.b_tags,
                    c_bits=self.c_bits, transpose_a=self.transpose_a,
                    transpose_b=self.transpose_b)


def training_step_gemms(config: TrainConfig = REPLAY_CONFIG, *, operand_format: str = "fp16",
                        fold_bias: bool = True, network: Network | None = None,
                        data: Dataset | None = None) -> list[WorkloadGemm]:
    """Every GEMM of step 0 of ``config``'s training run, in execution order.

    The step is the one :func:`sim.nn.train` runs first (and captures with
    ``gemm_capture_steps=[0]``): the network built from ``config`` (initial weights from its
    seed), the first minibatch of epoch 1 and that step's dropout masks, with the accelerator
    backend (operands rounded once to ``operand_format``, golden GEMM).

    Parameters
    ----------
    config : TrainConfig
        Default :data:`REPLAY_CONFIG`.
    operand_format : str
        ``"fp16"`` (as in the trained workloads), ``"e4m3"`` or ``"e5m2"``.
    fold_bias : bool
        Fold each bias gradient into its layer's weight gradient (:func:`fold_bias_grads`),
        as the engine runs them (default); ``False``: the GEMMs as the network computed them,
        bias gradients separate (what training captures).
    network : Network, optional
        A network of your own instead of ``config.build()`` (a copy takes the step: yours is
        left as it was).
    data : Dataset, optional
        Your data instead of the digits (required with a network of your own).
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, not {config!r}")
    _check_bool(fold_bias, "fold_bias")
    backend = AccelBackend(operand_format=operand_format)
    if network is None:
        net = config.build()
    elif isinstance(network, Network):
        net = copy.deepcopy(network)
    else:
        raise ValueError(f"network must be a sim.nn.Network, not {network!r}")
    if data is None:
        if network is not None:
            raise ValueError("data must be given with a network of your own")
        data = load_digits_split(upsample=INPUT_SHAPES[config.net][0] // _DIGITS_SIZE)
    elif not isinstance(data, Dataset):
        raise ValueError(f"data must be a sim.nn.Dataset, not {data!r}")
    if data.input_shape != net.input_shape:
        raise ValueError(f"data input shape {data.input_shape} does not match {net.name} "
                         f"input_shape {net.input_shape}")
    optimizer = SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                    weight_decay=config.weight_decay, grad_scale=config.loss_scale)
    epoch, step = 1, 0
    batch = epoch_batches(len(data.x_train), batch_size=config.batch_size, seed=config.seed,
                          epoch=epoch)[0]
    # the dropout generator train() gives this step (same seed sequence)
    rng = dropout_rng(config, epoch, step)
    gemms: list[WorkloadGemm] = []
    backend.listener = lambda call: gemms.append(WorkloadGemm.from_call(call, backend.fmt.name))
    train_step(net, optimizer, backend, data.x_train[batch], data.y_train[batch], rng=rng,
               loss_scale=config.loss_scale)
    return fold_bias_grads(gemms) if fold_bias else gemms


# -- folding the bias gradients -----------------------------------------------------------

_WEIGHT_GRAD, _BIAS_GRAD = ".weight_grad", ".bias_grad"


def fold_bias_grad(weight_grad: WorkloadGemm, bias_grad: WorkloadGemm) -> WorkloadGemm:
    """``<layer>.weight_grad`` (``M x N x K``) and ``<layer>.bias_grad`` (``1 x N x K``) of one
    layer as one GEMM ``<layer>.weight_grad`` of ``(M+1) x N x K`` (module doc).

    A as stored is the weight gradient's A with the bias gradient's row of A (its ones, bits
    and format tags unchanged) appended in the stored orientation: as column ``M`` when the
    weight gradient reads A transposed (``K x M`` stored), as row ``M`` otherwise. B, its tags
    and its transpose are the ones both GEMMs share (``dY``). The golden result is the weight
    gradient's result with the bias gradient's row under it, not recomputed. ``bias_row`` is
    set.

    Raises ValueError naming the field unless the names are ``<layer>.weight_grad`` and
    ``<layer>.bias_grad`` of one layer, both of kind ``weight_grad``, the bias gradient has
    ``M = 1``, both store the same B (bits, tags, transpose) and neither accumulates.
    """
    for value, field in ((weight_grad, "weight_grad"), (bias_grad, "bias_grad")):
        if not isinstance(value, WorkloadGemm):
            raise ValueError(f"{field} must be a WorkloadGemm, not {value!r}")
    layer = weight_grad.name.removesuffix(_WEIGHT_GRAD)
    if not weight_grad.name.endswith(_WEIGHT_GRAD) or bias_grad.name != layer + _BIAS_GRAD:
        raise ValueError(f"weight_grad and bias_grad must be '<layer>{_WEIGHT_GRAD}' and "
                         f"'<layer>{_BIAS_GRAD}' of one layer, not {weight_grad.name!r} and "
                         f"{bias_grad.name!r}")
    name = bias_grad.name
    if weight_grad.bias_row:
        raise ValueError(f"{name}: {weight_grad.name} already has its bias row")
    for g in (weight_grad, bias_grad):
        if g.kind != "weight_grad":
            raise ValueError(f"{g.name}: kind must be 'weight_grad', not {g.kind!r}")
        if g.accumulate:
            raise ValueError(f"{g.name}: a folded GEMM must not accumulate (c_bits must be "
                             f"None)")
    if bias_grad.M != 1:
        raise ValueError(f"{name}: M must be 1 (one row of ones), not {bias_grad.M}")
    if bias_grad.transpose_b != weight_grad.transpose_b or \
            not np.array_equal(bias_grad.b_bits, weight_grad.b_bits) or \
            not np.array_equal(bias_grad.b_tags, weight_grad.b_tags):
        raise ValueError(f"{name}: B (bits, tags and transpose_b) must be the B of "
                         f"{weight_grad.name} (dY)")

    def appended(ours, row):
        # the bias gradient's A row (a K-vector) as row M of A, in A's stored orientation
        if weight_grad.transpose_a:
            return np.concatenate([ours, row[:, None]], axis=1)
        return np.concatenate([ours, row[None, :]], axis=0)

    def a_row(array):
        return array[:, 0] if bias_grad.transpose_a else array[0]

    return WorkloadGemm(
        name=weight_grad.name, kind="weight_grad", transpose_a=weight_grad.transpose_a,
        transpose_b=weight_grad.transpose_b,
        a_bits=appended(weight_grad.a_bits, a_row(bias_grad.a_bits)),
        a_tags=appended(weight_grad.a_tags, a_row(bias_grad.a_tags)),
        b_bits=weight_grad.b_bits, b_tags=weight_grad.b_tags, c_bits=None,
        out_bits=(None if weight_grad.out_bits is None or bias_grad.out_bits is None else
                  np.concatenate([weight_grad.out_bits, bias_grad.out_bits], axis=0)),
        bias_row=True)


def fold_bias_grads(gemms: Iterable[WorkloadGemm]) -> list[WorkloadGemm]:
    """The GEMMs of a step with every ``<layer>.bias_grad`` folded into the
    ``<layer>.weight_grad`` before it (:func:`fold_bias_grad`), which keeps its place; the
    other GEMMs unchanged, in order. ValueError when a bias gradient has no weight gradient of
    its layer before it, or comes twice."""
    folded: list[WorkloadGemm] = []
    position: dict[str, int] = {}
    for g in gemms:
        if not isinstance(g, WorkloadGemm):
            raise ValueError(f"gemms must hold WorkloadGemm objects, not {g!r}")
        if g.name.endswith(_BIAS_GRAD):
            layer = g.name.removesuffix(_BIAS_GRAD)
            if layer not in position:
                raise ValueError(f"{g.name}: no {layer}{_WEIGHT_GRAD} before it to fold "
                                 f"it into")
            index = position[layer]
            folded[index] = fold_bias_grad(folded[index], g)
            continue
        if g.name.endswith(_WEIGHT_GRAD):
            position[g.name.removesuffix(_WEIGHT_GRAD)] = len(folded)
        folded.append(g)
    return folded


# -- splitting ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReplayCommand:
    """One engine command of a split GEMM, and the part of the GEMM it computes.

    ``command`` computes ``C[m0:m1, n0:n1]`` over ``k`` in ``k0 .. k1-1`` with every operand
    block at the origin of its memory: A's block at (0, 0) of the A scratchpad, B's at (0, 0)
    of B, C's at (0, 0) of the accumulator memory.

    Parameters
    ----------
    index : int
        Position of the GEMM in the step (:func:`training_step_gemms`).
    gemm : str
        The GEMM's name.
    kind : str
        Its kind (forward, backward_data, weight_grad).
    rows, cols, depth : (int, int)
        ``(m0, m1)``, ``(n0, n1)``, ``(k0, k1)``: the block of C and the slice of k.
    command : EngineCommand
    """

    index: int
    gemm: str
    kind: str
    rows: tuple[int, int]
    cols: tuple[int, int]
    depth: tuple[int, int]
    command: EngineCommand

    @property
    def first(self) -> bool:
        """The first slice of its block: C starts at ``+0`` or at the GEMM's ``C_in``."""
        return self.depth[0] == 0

    def last(self, k_total: int) -> bool:
        """The last slice of its block (the block's result is final after it)."""
        return self.depth[1] == k_total

    @property
    def a_slices(self) -> tuple[slice, slice]:
        """The block of the stored A (``[k, m]`` when transposed)."""
        m, k = slice(*self.rows), slice(*self.depth)
        return (k, m) if self.command.a_transpose else (m, k)

    @property
    def b_slices(self) -> tuple[slice, slice]:
        """The block of the stored B (``[n, k]`` when transposed)."""
        k, n = slice(*self.depth), slice(*self.cols)
        return (n, k) if self.command.b_transpose else (k, n)

    @property
    def c_slices(self) -> tuple[slice, slice]:
        """The block of C (and of ``C_in``)."""
        return slice(*self.rows), slice(*self.cols)

    @property
    def macs(self) -> int:
        return self.command.m * self.command.n * self.command.k


def _check_config(config):
    if not isinstance(config, EngineConfig):
        raise ValueError(f"config must be an EngineConfig, not {config!r}")


def _check_shape(gemm_like):
    name = getattr(gemm_like, "name", "gemm")
    for field in ("M", "N", "K"):
        value = getattr(gemm_like, field, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {field} must be an integer >= 1, not {value!r}")
    for field in ("transpose_a", "transpose_b", "accumulate"):
        _check_bool(getattr(gemm_like, field, None), f"{name}: {field}")
    return name


def chunk_limits(gemm_like, config: EngineConfig) -> dict[str, int]:
    """Largest ``m``, ``n`` and ``k`` of one command of this GEMM on ``config``: what the A, B
    and accumulator memories hold with the GEMM's transposes, and the command field range
    (``2**16 - 1``).

    ``gemm_like`` is anything with ``M``, ``N``, ``K``, ``transpose_a``, ``transpose_b`` and
    ``accumulate``: a :class:`WorkloadGemm` or a :class:`sim.lowering.GemmCommand`.
    """
    _check_config(config)
    _check_shape(gemm_like)
    # A stored m x k (rows x columns), or k x m when transposed; likewise B k x n or n x k
    a_m, a_k = ((config.spad_width, config.a_rows) if gemm_like.transpose_a
                else (config.a_rows, config.spad_width))
    b_k, b_n = ((config.spad_width, config.b_rows) if gemm_like.transpose_b
                else (config.b_rows, config.spad_width))
    return {"m": min(a_m, config.acc_rows, FIELD_MAX),
            "n": min(b_n, config.acc_width, FIELD_MAX),
            "k": min(a_k, b_k, FIELD_MAX)}


def _ranges(total: int, limit: int, align: int) -> list[tuple[int, int]]:
    """``total`` cut into pieces of at most ``limit``: as few as possible, balanced, each but
    the last a multiple of ``align`` (the array's rows or columns: a piece that is not adds
    an edge tile) unless ``limit < align``."""
    count = math.ceil(total / limit)
    if count == 1:
        return [(0, total)]
    size = math.ceil(math.ceil(total / count) / align) * align
    if size > limit:
        size = limit // align * align or limit
    return [(start, min(total, start + size)) for start in range(0, total, size)]


def split_gemm(gemm_like, config: EngineConfig, *, index: int = 0,
               max_chunk: dict[str, int] | None = None) -> list[ReplayCommand]:
    """Engine commands that compute the GEMM on ``config``, bit-exact (see the module doc).

    Parameters
    ----------
    gemm_like : WorkloadGemm or sim.lowering.GemmCommand
        The GEMM (shape, transposes, accumulate).
    config : EngineConfig
    index : int
        Recorded in each command (the GEMM's position in its step).
    max_chunk : dict, optional
        Smaller limits for ``"m"``, ``"n"`` and/or ``"k"`` than :func:`chunk_limits`; each
        must fit its 16-bit command field and the memories (ValueError naming the field
        otherwise).

    Returns
    -------
    list of ReplayCommand
        Block by block (``m`` blocks outer, ``n`` blocks inner), each block's ``k`` slices in
        ascending order; every command valid for ``config`` (:func:`sim.engine_model.validate`).
    """
    name = _check_shape(gemm_like)
    limits = chunk_limits(gemm_like, config)
    if max_chunk is not None:
        if not isinstance(max_chunk, dict) or set(max_chunk) - set(limits):
            raise ValueError(f"max_chunk must be a dict with keys among {sorted(limits)}, "
                             f"not {max_chunk!r}")
        for field, value in max_chunk.items():
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 1 <= value <= FIELD_MAX:
                raise ValueError(f"{name}: max_chunk[{field!r}] = {value!r} does not fit the "
                                 f"{FIELD_BITS}-bit command field {field} (1..{FIELD_MAX})")
            if value > limits[field]:
                raise ValueError(f"{name}: max_chunk[{field!r}] = {value} does not fit the "
                                 f"engine's memories: {field} <= {limits[field]} for this "
                                 f"GEMM (transpose_a={gemm_like.transpose_a}, "
                                 f"transpose_b={gemm_like.transpose_b})")
            limits[field] = value
    rows, cols = config.array.rows, config.array.cols
    commands = []
    for m0, m1 in _ranges(gemm_like.M, limits["m"], rows):
        for n0, n1 in _ranges(gemm_like.N, limits["n"], cols):
            for k0, k1 in _ranges(gemm_like.K, limits["k"], 1):
                command = EngineCommand(
                    m=m1 - m0, n=n1 - n0, k=k1 - k0, a_transpose=gemm_like.transpose_a,
                    b_transpose=gemm_like.transpose_b,
                    accumulate=k0 > 0 or gemm_like.accumulate)
                error = validate(config, command)
                if error is not EngineError.NONE:       # a bug in the limits above
                    raise AssertionError(f"{name}: split command {command} is invalid for "
                                         f"{config}: {error.name}")
                commands.append(ReplayCommand(index=index, gemm=name, kind=gemm_like.kind,
                                              rows=(m0, m1), cols=(n0, n1), depth=(k0, k1),
                                              command=command))
    return commands


def split_step(gemms: Sequence, config: EngineConfig) -> list[ReplayCommand]:
    """The commands of every GEMM of a step, in the step's order (:func:`split_gemm`)."""
    return [command for index, g in enumerate(gemms)
            for command in split_gemm(g, config, index=index)]


def golden_replay(gemm_: WorkloadGemm, commands: Iterable[ReplayCommand]) -> np.ndarray:
    """Run a GEMM's split commands on the golden GEMM, as the engine runs them: each command
    on its operand blocks, starting from ``+0`` (overwrite), from the block of ``C_in`` (first
    slice of an accumulating GEMM) or from the block's value after the previous slice.
    Returns the assembled ``M x N`` result (FP32 patterns); elements no command wrote are
    ``+0``."""
    if not isinstance(gemm_, WorkloadGemm):
        raise ValueError(f"gemm must be a WorkloadGemm, not {gemm_!r}")
    result = np.zeros((gemm_.M, gemm_.N), dtype=np.uint32)
    for command in commands:
        if command.gemm != gemm_.name:
            raise ValueError(f"command of {command.gemm} given with GEMM {gemm_.name}")
        c = command.command
        block = command.c_slices
        start = None
        if c.accumulate:
            start = gemm_.c_bits[block] if command.first else result[block]
        result[block] = gemm(gemm_.a_bits[command.a_slices], gemm_.b_bits[command.b_slices],
                             a_fmt=gemm_.a_tags[command.a_slices],
                             b_fmt=gemm_.b_tags[command.b_slices], c_bits=start,
                             transpose_a=c.a_transpose, transpose_b=c.b_transpose)
    return result


def step_statistics(commands: Iterable[ReplayCommand], config: EngineConfig) -> dict:
    """Per GEMM kind and in total: ``commands``, ``macs``, ``cycles`` (the cycle model,
    :func:`sim.engine_model.command_cycles`, which the RTL is checked against),
    ``ideal_cycles`` (``MACs / (R * C)`` per command, rounded up) and ``utilization``
    (MACs per PE per cycle)."""
    _check_config(config)
    stats: dict[str, dict] = {}
    for command in commands:
        for key in (command.kind, "total"):
            entry = stats.setdefault(key, {"commands": 0, "macs": 0, "cycles": 0,
                                           "ideal_cycles": 0})
            entry["commands"] += 1
            entry["macs"] += command.macs
            entry["cycles"] += command_cycles(config, command.command)
            entry["ideal_cycles"] += ideal_cycles(config, command.command)
    for entry in stats.values():
        entry["utilization"] = entry["macs"] / (config.array.pes * entry["cycles"])
    return {key: stats[key] for key in (*GEMM_KINDS, "total") if key in stats}


def save_gemms(path, gemms: Sequence[WorkloadGemm]) -> None:
    """Write GEMMs to an ``.npz`` file (arrays ``<i>/<field>`` and a JSON list of the flags),
    the form in which :mod:`tb.engine_api` hands them to the replay bench."""
    arrays, meta = {}, []
    for index, g in enumerate(gemms):
        if not isinstance(g, WorkloadGemm):
            raise ValueError(f"gemms[{index}] must be a WorkloadGemm, not {g!r}")
        meta.append({"name": g.name, "kind": g.kind, "transpose_a": g.transpose_a,
                     "transpose_b": g.transpose_b, "bias_row": g.bias_row})
        for field in ("a_bits", "a_tags", "b_bits", "b_tags", "c_bits", "out_bits"):
            value = getattr(g, field)
            if value is not None:
                arrays[f"{index}/{field}"] = value
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def load_gemms(path) -> list[WorkloadGemm]:
    """The GEMMs :func:`save_gemms` wrote."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return [WorkloadGemm(**entry, **{field: data[f"{index}/{field}"]
                                         if f"{index}/{field}" in data.files else None
                                         for field in ("a_bits", "a_tags", "b_bits", "b_tags",
                                                       "c_bits", "out_bits")})
                for index, entry in enumerate(meta)]
