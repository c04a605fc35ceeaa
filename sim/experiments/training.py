"""Training of the workload networks: their default configurations and data, the steps to
capture, and the per-network entry of a training run (``networks.<net>`` of
``docs/results/workloads.json``).

``sparta train --net NET`` (:mod:`scripts.train`) trains with these defaults and records
:func:`network_entry`; the FGMP measurement (:mod:`sim.experiments.fgmp`) trains the same
configurations (:func:`workload_config`), so its FP32 run is the one of workloads.json.

The inference studies (AIP, :mod:`sim.experiments.aip`; DrowsyNet,
:mod:`sim.experiments.drowsy`) share one FP32-trained copy of each network,
:func:`fp32_trained`: trained on the training rows minus a validation split
(:func:`sim.nn.data.validation_split`, :data:`VALIDATION_FRACTION`), cached as npz. A user's
network (``sparta measure inference --network-file``) is trained the same way by
:func:`fp32_train`, without a cache.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sim.nn import (Dataset, Network, TrainConfig, cancer_mlp, load_digits_split, make_backend,
                    train)
from sim.nn.data import load_breast_cancer_split, validation_split
from sim.nn.train import SPARSITY_KEYS

__all__ = ["DEFAULTS", "UPSAMPLE", "TRAINING", "GEMM_FIELDS", "VALIDATION_FRACTION",
           "QUICK_EPOCHS", "workload_config", "workload_data", "workload_network",
           "default_capture_steps", "gemm_entries", "network_entry", "Fp32Trained",
           "default_cache_dir", "fp32_trained", "fp32_train"]

#: Per-network hyperparameters (the ``sparta train`` options override them).
#: The loss scale 1024 (a power of two: exact, no effect on the FP32 run) keeps the small
#: gradients of a trained network above the fp16 underflow.
DEFAULTS = {
    "digits_cnn": {"epochs": 20, "lr": 0.02, "width": 8, "dropout": 0.25, "loss_scale": 1024.0},
    "digits_mlp": {"epochs": 30, "lr": 0.05, "width": 8, "dropout": 0.25, "loss_scale": 1024.0},
    "resnet18": {"epochs": 10, "lr": 0.02, "width": 8, "dropout": 0.0, "loss_scale": 1024.0},
    "vgg_small": {"epochs": 30, "lr": 0.02, "width": 8, "dropout": 0.5, "loss_scale": 1024.0},
    # the breast-cancer MLP of the AIP study (not a digits network: not in sim.nn.NETWORKS,
    # so `sparta train` does not offer it; its width is unused, hidden is 256)
    "cancer_mlp": {"epochs": 40, "lr": 0.02, "width": 8, "dropout": 0.5, "loss_scale": 1024.0},
}
#: Pixel replication of the digits for each digits network (resnet18 and vgg_small take 32x32
#: images).
UPSAMPLE = {"digits_cnn": 1, "digits_mlp": 1, "resnet18": 4, "vgg_small": 4}
#: Share of the training rows held out for validation by :func:`fp32_trained`.
VALIDATION_FRACTION = 0.2
#: Training epochs of a quick (smoke) :func:`fp32_trained`.
QUICK_EPOCHS = 2
#: Hyperparameters shared by every workload network.
TRAINING = {"batch_size": 32, "momentum": 0.9, "weight_decay": 0.0, "lr_schedule": "cosine",
            "seed": 0}
#: Fields of a lowered command (:class:`sim.lowering.GemmCommand`) kept in workloads.json.
GEMM_FIELDS = ("name", "kind", "M", "N", "K", "transpose_a", "transpose_b", "accumulate",
               "bias_row", "a_mask", "b_mask", "out_mask")


def workload_config(net: str, **overrides) -> TrainConfig:
    """The training configuration of the workload network ``net`` (:data:`TRAINING` and
    :data:`DEFAULTS`), with ``overrides`` (``TrainConfig`` fields) applied."""
    if net not in DEFAULTS:
        raise ValueError(f"net must be one of {sorted(DEFAULTS)}, not {net!r}")
    return TrainConfig(net=net, **{**TRAINING, **DEFAULTS[net], **overrides})


def workload_data(net: str, train_samples: int | None = None) -> Dataset:
    """The digits split at ``net``'s input size (the breast-cancer table for
    ``cancer_mlp``); ``train_samples`` keeps only the first N training samples (smoke
    runs)."""
    if net == "cancer_mlp":
        data = load_breast_cancer_split()
    elif net in UPSAMPLE:
        data = load_digits_split(upsample=UPSAMPLE[net])
    else:
        raise ValueError(f"net must be one of {sorted(DEFAULTS)}, not {net!r}")
    if train_samples is not None:
        data = dataclasses.replace(data, x_train=data.x_train[:train_samples],
                                   y_train=data.y_train[:train_samples])
    return data


def workload_network(config: TrainConfig) -> Network:
    """The untrained network of ``config``: :meth:`TrainConfig.build`, or
    :func:`sim.nn.networks.cancer_mlp` (``dropout``, ``seed``) for ``cancer_mlp``."""
    if config.net == "cancer_mlp":
        return cancer_mlp(dropout=config.dropout, seed=config.seed)
    return config.build()


def default_capture_steps(config: TrainConfig, train_samples: int) -> list[int]:
    """First step, first step of the middle epoch, last step (global 0-based indices)."""
    per_epoch = -(-train_samples // config.batch_size)
    middle = (config.epochs + 1) // 2 - 1
    return sorted({0, middle * per_epoch, config.epochs * per_epoch - 1})


def _home_relative(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home):] if path.startswith(home + os.sep) else path


def _round(value):
    return None if value is None else round(value, 6)


def gemm_entries(commands, layer: str) -> list[dict]:
    """The lowered commands of ``layer`` as workloads.json lists them."""
    return [{field: getattr(c, field) for field in GEMM_FIELDS} for c in commands
            if c.layer == layer]


def network_entry(config: TrainConfig, results: dict, data: Dataset, commands,
                  command_line: str) -> dict:
    """The entry of a training run: ``results`` maps a backend name (``"accel"``, ``"fp32"``)
    to its :class:`sim.nn.train.TrainResult`; ``commands`` is the network's lowering;
    ``command_line`` is recorded as how to reproduce the run."""
    accel, fp32 = results.get("accel"), results.get("fp32")
    source = accel or fp32
    curve = {"epoch": source.curve["epoch"]}
    for name, result in results.items():
        for key in ("test_accuracy", "train_loss", "train_accuracy"):
            curve[f"{key}_{name}"] = [_round(v) for v in result.curve[key]]
    layers = {}
    for name, stats in source.sparsity.items():
        layers[name] = {
            "sparsity": {key: _round(stats[key][-1]) for key in SPARSITY_KEYS},
            "gemm": gemm_entries(commands, name),
        }
    return {
        "test_accuracy_accel": accel.test_accuracy if accel else None,
        "test_accuracy_fp32": fp32.test_accuracy if fp32 else None,
        "accuracy_gap_points": (round(100 * (fp32.test_accuracy - accel.test_accuracy), 4)
                                if accel and fp32 else None),
        "epochs": config.epochs,
        "config": dataclasses.asdict(config),
        "operand_format": "fp16",
        "train_samples": len(data.x_train),
        "test_samples": len(data.x_test),
        "input_shape": list(data.input_shape),
        "steps": source.steps,
        "wall_time_s": {name: round(r.wall_time_s, 1) for name, r in results.items()},
        "curve": curve,
        "sparsity_source": f"{source.backend} run, last epoch: zeros / elements over all its "
                           f"steps (activation: encoded GEMM input X; grad: encoded output "
                           f"gradient dY; mask: ReLU and dropout masks gating dY, null if none)",
        "layers": layers,
        "gemm_order": [c.name for c in commands],
        "captures": {name: [_home_relative(path) for path in r.captures]
                     for name, r in results.items() if r.captures},
        "reproduce": command_line,
        "machine": platform.processor() or platform.machine(),
    }


@dataclasses.dataclass(frozen=True)
class Fp32Trained:
    """A workload network trained in FP32 by :func:`fp32_trained`.

    Attributes
    ----------
    network : Network
        The trained network.
    config : TrainConfig
        How it was trained (:func:`workload_config`, or a user's configuration).
    data : Dataset
        The full split (:func:`workload_data`, or a user's); its test rows are never trained or
        chosen on.
    fit : Dataset
        What it was trained on: train part the training rows minus the validation rows, test
        part the validation rows (:func:`sim.nn.data.validation_split`).
    weights : Path or None
        The npz cache file (None: not cached, :func:`fp32_train`).
    cached : bool
        The weights came from ``weights`` (no training in this call).
    train_time_s : float or None
        Training wall time of this call (None when cached).
    """

    network: Network
    config: TrainConfig
    data: Dataset
    fit: Dataset
    weights: Path | None
    cached: bool
    train_time_s: float | None = None

    @property
    def x_val(self):
        return self.fit.x_test

    @property
    def y_val(self):
        return self.fit.y_test

    def info(self) -> dict:
        """How the network was trained (JSON-able)."""
        info = {"config": dataclasses.asdict(self.config), "backend": "fp32",
                "train_samples": len(self.fit.y_train), "validation_samples": len(self.y_val),
                "validation_fraction": VALIDATION_FRACTION,
                "weights": None if self.weights is None else self.weights.name,
                "cached": self.cached}
        if self.train_time_s is not None:
            info["train_time_s"] = round(self.train_time_s, 1)
        return info


def default_cache_dir() -> Path:
    """Where :func:`fp32_trained` caches weights: ``build_root() / "inference"``."""
    from sim.elaborate import build_root

    return build_root() / "inference"


def fp32_trained(net: str, *, cache_dir: Path | None = None, quick: bool = False,
                 log: Callable[[str], None] | None = None) -> Fp32Trained:
    """``net`` (a key of :data:`DEFAULTS`) trained from scratch in FP32 numerics with its
    workload configuration on the training rows minus :data:`VALIDATION_FRACTION` of them
    (stratified, seeded by the configuration's seed). ``quick``: :data:`QUICK_EPOCHS` epochs
    (a smoke run). Weights come from ``<cache_dir>/<net>[_quick].npz`` (default
    :func:`default_cache_dir`) when its recorded configuration and split match, else the
    network is trained and saved there."""
    if not isinstance(quick, bool):
        raise ValueError(f"quick must be a bool, not {quick!r}")
    config = workload_config(net, **({"epochs": QUICK_EPOCHS} if quick else {}))
    network, data = workload_network(config), workload_data(net)
    fit = validation_split(data, fraction=VALIDATION_FRACTION, seed=config.seed)
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = cache_dir / f"{net}{'_quick' if quick else ''}.npz"
    meta = json.dumps({"config": dataclasses.asdict(config), "backend": "fp32",
                       "fit_rows": len(fit.y_train), "validation_rows": len(fit.y_test),
                       "validation_fraction": VALIDATION_FRACTION})
    if path.exists():
        with np.load(path) as stored:
            if str(stored["meta"]) == meta:
                for name, layer, key in network.parameters():
                    layer.params[key] = stored[name].astype(np.float32)
                if log:
                    log(f"[fp32 {net}] weights from {path}")
                return Fp32Trained(network, config, data, fit, path, cached=True)
    result = train(config, make_backend("fp32"), fit, network=network, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, meta=np.array(meta),
                        **{name: layer.params[key] for name, layer, key in network.parameters()})
    if log:
        log(f"[fp32 {net}] trained in {result.wall_time_s:.0f} s, saved {path}")
    return Fp32Trained(network, config, data, fit, path, cached=False,
                       train_time_s=result.wall_time_s)


def fp32_train(network: Network, config: TrainConfig, data: Dataset, *,
               log: Callable[[str], None] | None = None) -> Fp32Trained:
    """``network`` (a user's, untrained; trained in place) trained from scratch in FP32
    numerics with ``config`` on ``data``'s training rows minus :data:`VALIDATION_FRACTION` of
    them (stratified, seeded by ``config.seed``), as :func:`fp32_trained` trains a workload
    network, but never cached (a user's ``build()`` can change under the same name)."""
    if not isinstance(network, Network):
        raise ValueError(f"network must be a sim.nn.Network, not {network!r}")
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, not {config!r}")
    fit = validation_split(data, fraction=VALIDATION_FRACTION, seed=config.seed)
    result = train(config, make_backend("fp32"), fit, network=network, log=log)
    if log:
        log(f"[fp32 {network.name}] trained in {result.wall_time_s:.1f} s (not cached)")
    return Fp32Trained(network, config, data, fit, None, cached=False,
                       train_time_s=result.wall_time_s)
