"""Training of the workload networks: their default configurations and data, the steps to
capture, and the per-network entry of a training run (``networks.<net>`` of
``docs/results/workloads.json``).

``sparta train --net NET`` (:mod:`scripts.train`) trains with these defaults and records
:func:`network_entry`; the FGMP measurement (:mod:`sim.experiments.fgmp`) trains the same
configurations (:func:`workload_config`), so its FP32 run is the one of workloads.json.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path

from sim.nn import Dataset, TrainConfig, load_digits_split
from sim.nn.train import SPARSITY_KEYS

__all__ = ["DEFAULTS", "UPSAMPLE", "TRAINING", "GEMM_FIELDS", "workload_config",
           "workload_data", "default_capture_steps", "gemm_entries", "network_entry"]

#: Per-network hyperparameters (the ``sparta train`` options override them).
#: The loss scale 1024 (a power of two: exact, no effect on the FP32 run) keeps the small
#: gradients of a trained network above the fp16 underflow.
DEFAULTS = {
    "digits_cnn": {"epochs": 20, "lr": 0.02, "width": 8, "dropout": 0.25, "loss_scale": 1024.0},
    "digits_mlp": {"epochs": 30, "lr": 0.05, "width": 8, "dropout": 0.25, "loss_scale": 1024.0},
    "resnet18": {"epochs": 10, "lr": 0.02, "width": 8, "dropout": 0.0, "loss_scale": 1024.0},
}
#: Pixel replication of the digits for each network (resnet18 takes 32x32 images).
UPSAMPLE = {"digits_cnn": 1, "digits_mlp": 1, "resnet18": 4}
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
    """The digits split at ``net``'s input size; ``train_samples`` keeps only the first N
    training samples (smoke runs)."""
    data = load_digits_split(upsample=UPSAMPLE[net])
    if train_samples is not None:
        data = dataclasses.replace(data, x_train=data.x_train[:train_samples],
                                   y_train=data.y_train[:train_samples])
    return data


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
