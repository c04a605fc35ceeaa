"""Iterative magnitude pruning with fine-tuning of a workload network (``sparta prune``).

:func:`prune_network` trains the network dense with the accelerator numerics (the workload
configuration of :mod:`sim.experiments.training`), then for each level of
:data:`sim.pruning.SPARSITIES` in turn prunes (:func:`sim.pruning.magnitude_masks`, among the
weights the previous level kept) and fine-tunes for ``finetune_epochs`` epochs with the masks
held, at half the dense learning rate on its own cosine schedule. The test accuracy is measured
before and after each fine-tuning; the weights of every level are saved (npz) for the
scheduler's measurement (:mod:`scripts.schedule_bench`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np

from sim.experiments.training import workload_config, workload_data
from sim.nn import Dataset, Network, TrainConfig, evaluate, make_backend, train
from sim.pruning import SPARSITIES, apply_masks, magnitude_masks, weight_sparsity

__all__ = ["FINETUNE_EPOCHS", "prune_network", "prune", "save_weights"]

#: Fine-tuning epochs per sparsity level, per network.
FINETUNE_EPOCHS = {"digits_cnn": 5, "digits_mlp": 5, "resnet18": 2}


def save_weights(path: Path, net: Network) -> None:
    """Every parameter of ``net`` (``"<layer>.<key>"`` arrays) to an npz file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{name: layer.params[key]
                                 for name, layer, key in net.parameters()})


def prune_network(net_name: str, *, weights_dir: Path, sparsities=SPARSITIES,
                  dense_epochs: int | None = None, finetune_epochs: int | None = None,
                  train_samples: int | None = None, log: Callable[[str], None] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Train the workload network ``net_name`` dense (its configuration of
    :mod:`sim.experiments.training`), then prune and fine-tune it level by level: the entry of
    ``docs/results/pruning.json`` for the network (:func:`prune`)."""
    overrides = {} if dense_epochs is None else {"epochs": dense_epochs}
    config = workload_config(net_name, **overrides)
    finetune_epochs = FINETUNE_EPOCHS[net_name] if finetune_epochs is None else finetune_epochs
    return prune(config.build(), config, workload_data(net_name, train_samples),
                 weights_dir=Path(weights_dir) / net_name, sparsities=sparsities,
                 finetune_epochs=finetune_epochs, log=log, progress=progress)


def prune(net: Network, config: TrainConfig, data: Dataset, *, weights_dir: Path,
          finetune_epochs: int, sparsities=SPARSITIES,
          log: Callable[[str], None] | None = None,
          progress: Callable[[int, int], None] | None = None) -> dict:
    """Train ``net`` (in place) dense with ``config`` and the accelerator numerics, then prune
    and fine-tune it level by level (module docstring).

    Returns the configuration, the dense accuracy, and per level the accuracy right after
    pruning and after fine-tuning, the per-layer sparsity and the npz file of the weights
    (``weights`` relative to ``weights_dir``'s parent: ``<name>/sparsity_<s>.npz``).
    """
    sparsities = tuple(sparsities)
    if not sparsities or list(sparsities) != sorted(set(sparsities)):
        raise ValueError(f"sparsities must be increasing, not {sparsities!r}")
    tune = dataclasses.replace(config, epochs=finetune_epochs, lr=config.lr / 2)
    backend = make_backend("accel")
    start = time.perf_counter()
    dense = train(config, backend, data, network=net, log=log, progress=progress)
    weights_dir = Path(weights_dir)
    save_weights(weights_dir / "dense.npz", net)
    levels, masks = [], None
    for sparsity in sparsities:
        masks = magnitude_masks(net, sparsity, previous=masks)
        apply_masks(net, masks)
        pruned_accuracy = evaluate(net, backend, data.x_test, data.y_test)
        tuned = train(tune, backend, data, network=net, weight_masks=masks, log=log,
                      progress=progress)
        path = weights_dir / f"sparsity_{round(100 * sparsity)}.npz"
        save_weights(path, net)
        levels.append({
            "sparsity": sparsity,
            "test_accuracy_pruned": pruned_accuracy,
            "test_accuracy_finetuned": tuned.test_accuracy,
            "layer_sparsity": {name: round(value, 6)
                               for name, value in weight_sparsity(net).items()},
            "weights": str(path.relative_to(weights_dir.parent)),
        })
    return {
        "config": dataclasses.asdict(config),
        "finetune": {"epochs": finetune_epochs, "lr": tune.lr,
                     "lr_schedule": tune.lr_schedule},
        "backend": backend.name,
        "test_accuracy_dense": dense.test_accuracy,
        "train_samples": len(data.x_train),
        "test_samples": len(data.x_test),
        "levels": levels,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
