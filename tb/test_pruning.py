"""Magnitude pruning (``sim.pruning``) and the masks held through training (``sim.nn.SGD``).

* Each pruned layer has exactly ``round(sparsity * size)`` zeros, the largest magnitudes
  kept, the first layer and the biases untouched; iterative levels only remove weights.
* Training with the masks keeps every pruned weight ``+0.0`` (bit 0 in FP32), hence ``+0`` in
  fp16, e4m3 and e5m2 (the zero the engine's zero detect sees).
* Bad input raises ValueError naming the field.

Plain pytest: no simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.experiments.training import workload_config, workload_data
from sim.formats import OPERAND_FORMATS
from sim.nn import SGD, build_network, make_backend, train
from sim.numerics import from_float32
from sim.pruning import apply_masks, magnitude_masks, prunable, weight_sparsity


def weights(net):
    return {name: layer.params[key] for name, layer, key in net.parameters()}


@pytest.mark.parametrize("net_name", ["digits_cnn", "digits_mlp", "resnet18"])
def test_masks_prune_exactly_the_smallest(net_name):
    net = build_network(net_name)
    params = weights(net)
    first = f"{net.weight_layers()[0].name}.weight"
    assert first not in prunable(net) and len(prunable(net)) == len(net.weight_layers()) - 1
    previous = None
    for sparsity in (0.5, 0.8, 0.9):
        masks = magnitude_masks(net, sparsity, previous=previous)
        assert set(masks) == set(prunable(net))
        for name, keep in masks.items():
            weight = params[name]
            assert keep.size - np.count_nonzero(keep) == round(sparsity * weight.size), name
            if previous is not None:
                assert not np.any(keep & ~previous[name]), f"{name}: a pruned weight came back"
            else:
                kept, dropped = np.abs(weight[keep]), np.abs(weight[~keep])
                assert dropped.max() <= kept.min(), name
        previous = masks
    apply_masks(net, previous)
    sparsity = weight_sparsity(net)
    assert sparsity[first] == 0.0
    for name in prunable(net):
        assert abs(sparsity[name] - 0.9) < 1 / params[name].size + 1e-9


def test_training_keeps_pruned_weights_exact_zeros():
    config = workload_config("digits_cnn", epochs=1)
    data = workload_data("digits_cnn", train_samples=96)
    net = config.build()
    masks = magnitude_masks(net, 0.7)
    for _, layer, key in net.parameters():      # pruned weights that would move if not held
        layer.params[key] += np.float32(0.01)
    apply_masks(net, masks)
    train(config, make_backend("accel"), data, network=net, weight_masks=masks)
    params = weights(net)
    for name, keep in masks.items():
        pruned = params[name][~keep]
        assert np.all(pruned.view(np.uint32) == 0), f"{name}: a pruned weight is not +0.0"
        assert np.count_nonzero(params[name][keep]) > 0.99 * np.count_nonzero(keep)
        for fmt in OPERAND_FORMATS.values():
            assert np.all(from_float32(fmt, pruned) == 0), f"{name} in {fmt.name}"


def test_bad_input():
    net = build_network("digits_mlp")
    with pytest.raises(ValueError, match="sparsity must be"):
        magnitude_masks(net, 1.0)
    with pytest.raises(ValueError, match="sparsity must be"):
        magnitude_masks(net, True)
    high = magnitude_masks(net, 0.8)
    with pytest.raises(ValueError, match="below the previous level"):
        magnitude_masks(net, 0.5, previous=high)
    with pytest.raises(ValueError, match="net must be"):
        magnitude_masks("digits_mlp", 0.5)
    with pytest.raises(ValueError, match="no parameter 'fc9.weight'"):
        SGD(net.parameters(), lr=0.1, masks={"fc9.weight": np.ones(3, bool)})
    with pytest.raises(ValueError, match="must be a bool array"):
        SGD(net.parameters(), lr=0.1, masks={"fc2.weight": np.ones((128, 128))})
    with pytest.raises(ValueError, match="no parameter"):
        apply_masks(net, {"fc9.weight": np.ones(3, bool)})
