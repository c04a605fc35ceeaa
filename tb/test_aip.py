"""AIP golden model: the output selection against brute force, the procedure against the dense
forward pass, the compact weights' budgets, the traffic counts and a quick measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.aip import (FRACTION, POLICIES, AipPlan, aip, aip_rank, approximate_weights,
                     index_bits, threshold_keep, top_n_keep)
from sim.aip_spec import SelectMode
from sim.experiments.aip import measure_aip, planned_layers, traffic
from sim.nn import StepContext, digits_cnn, digits_mlp, make_backend
from sim.nn.data import load_breast_cancer_split, validation_split

SEED = 18


def _edge_rows(rng, rows, columns):
    """float32 rows with NaN, +-inf, +-0, subnormals and many ties."""
    pool = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 2.5, 2.5,
                     -3.0, 3.4e38, -3.4e38], dtype=np.float32)
    y = rng.choice(pool, size=(rows, columns))
    mixed = rng.random((rows, columns)) < 0.3
    y[mixed] = rng.standard_normal(np.count_nonzero(mixed)).astype(np.float32)
    return y


def _brute_order(row):
    def key(j):
        value = float(row[j])
        is_nan = math.isnan(value)
        return (0 if is_nan else 1, 0.0 if is_nan else -(value + 0.0), j)
    return sorted(range(len(row)), key=key)


def test_selection_against_brute_force():
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    for columns in (1, 2, 7, 16):
        y = _edge_rows(rng, 40, columns)
        t = _edge_rows(rng, 1, columns)[0]
        t[np.isnan(t)] = np.float32(-0.0)
        keep = threshold_keep(y, t)
        for i in range(y.shape[0]):
            for j in range(columns):
                expected = math.isnan(y[i, j]) or float(y[i, j]) > float(t[j])
                assert keep[i, j] == expected, (i, j, y[i, j], t[j])
        rank = aip_rank(y)
        for n in range(1, columns + 1):
            got = top_n_keep(y, n)
            for i in range(y.shape[0]):
                order = _brute_order(y[i])
                assert set(np.flatnonzero(got[i])) == set(order[:n]), (i, y[i], n)
                assert rank[i].tolist() == order
        # the ranking of a partial selection: selected (exact order), then the rest (approx)
        approx = _edge_rows(rng, y.shape[0], columns)
        selected = rng.random(y.shape) < 0.5
        ranked = aip_rank(y, selected, approx)
        for i in range(y.shape[0]):
            first = [j for j in _brute_order(y[i]) if selected[i, j]]
            rest = [j for j in _brute_order(approx[i]) if not selected[i, j]]
            assert ranked[i].tolist() == first + rest


def _with_biases(net, seed):
    """Non-zero biases (a fresh network's are +0, which would hide a lost bias)."""
    rng = np.random.default_rng(seed)
    for layer in net.weight_layers():
        if "bias" in layer.params:
            layer.params["bias"] = rng.standard_normal(layer.params["bias"].shape) \
                .astype(np.float32) * np.float32(0.1)
    return net


def _nets():
    return [_with_biases(digits_mlp(width=2, seed=3), 3),
            _with_biases(digits_cnn(width=2, hidden=32, seed=4), 4)]


def _dense_layer_outputs(net, x, backend):
    """Each top-level layer's output of the dense inference forward."""
    ctx = StepContext(backend=backend)
    outputs = {}
    for layer in net.layers:
        x = layer.forward(x, ctx)
        outputs[layer.name] = x
    return outputs


def _plans(net, policy, *, threshold, top_n):
    layers = {layer.name: layer for layer in net.layers}
    plans = []
    for name, mode in planned_layers(net).items():
        approx = approximate_weights(layers[name].params["weight"], policy)
        if mode == SelectMode.THRESHOLD:
            n = approx.n
            plans.append(AipPlan(name, approx, mode,
                                 thresholds=np.full(n, threshold, dtype=np.float32)))
        else:
            plans.append(AipPlan(name, approx, mode, top_n=top_n or approx.n))
    return plans


@pytest.mark.parametrize("policy", POLICIES)
def test_every_output_selected_is_dense(policy):
    backend = make_backend("accel")
    rng = np.random.default_rng(SEED)
    for net in _nets():
        x = rng.random((9,) + net.input_shape, dtype=np.float32)
        dense = net.forward(x, StepContext(backend=backend))
        result = aip(net, x, _plans(net, policy, threshold=-np.inf, top_n=None),
                     backend=backend)
        assert all(keep.all() for keep in result.keeps.values())
        np.testing.assert_array_equal(result.output.view(np.uint32), dense.view(np.uint32))


@pytest.mark.parametrize("policy", POLICIES)
def test_partial_selection_is_exact_where_kept(policy):
    backend = make_backend("accel")
    rng = np.random.default_rng(SEED + 1)
    net = _with_biases(digits_mlp(width=2, seed=5), 5)
    x = rng.random((12,) + net.input_shape, dtype=np.float32)
    dense = _dense_layer_outputs(net, x, backend)
    plans = _plans(net, policy, threshold=0.0, top_n=3)
    first = plans[0].layer                      # its input is the dense one
    result = aip(net, x, plans, backend=backend)
    keep = result.keeps[first]
    assert 0 < keep.sum() < keep.size
    # a second run starting from the layer's input gives the same keeps
    again = aip(net, dense["flatten"], plans, backend=backend, start=1)
    np.testing.assert_array_equal(again.keeps[first], keep)
    # the first planned layer and its ReLU alone: relu(exact) where kept, +0 elsewhere
    ctx = StepContext(backend=backend)
    exact = net.layers[1].forward(dense["flatten"], ctx)
    expected = np.where(keep, net.layers[2].forward(exact, ctx), np.float32(0))
    got = aip(_Truncated(net, 3), dense["flatten"], plans[:1], backend=backend,
              start=1).output
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    # the last layer: -inf where not selected, 3 selected per row
    last = result.keeps[net.layers[-1].name]
    assert (last.sum(axis=1) == 3).all()
    assert np.isneginf(result.output[~last]).all()


class _Truncated:
    """The first ``stop`` top-level layers of a network (aip only reads ``layers``)."""

    def __init__(self, net, stop):
        self.layers = net.layers[:stop]


def test_approximate_weights_budget():
    rng = np.random.default_rng(SEED)
    w = rng.standard_normal((512, 512)).astype(np.float32)
    budget = 2 * w.size // FRACTION
    stride = approximate_weights(w, "stride")
    assert stride.rows.tolist() == list(range(0, 512, 16))
    np.testing.assert_array_equal(stride.weight, w[::16] * np.float32(16))
    magnitude = approximate_weights(w, "magnitude")
    assert magnitude.kept == 512 // (16 + index_bits(512)) == 20
    assert (np.count_nonzero(magnitude.weight, axis=0) == 20).all()
    smallest_kept = np.where(magnitude.weight != 0, np.abs(w), np.inf).min(axis=0)
    largest_dropped = np.where(magnitude.weight == 0, np.abs(w), 0).max(axis=0)
    assert (smallest_kept >= largest_dropped).all()
    lowrank = approximate_weights(w, "lowrank")
    assert lowrank.kept == 16 and (512 + 512) * 16 <= w.size // 16
    for approx in (stride, magnitude, lowrank):
        assert approx.weight_bytes <= budget, approx.policy
    assert magnitude.index_bytes == 20 * 512 * 9 // 8
    assert index_bits(1) == 1 and index_bits(2) == 1 and index_bits(64) == 6 \
        and index_bits(65) == 7


def test_traffic_counts():
    backend = make_backend("accel")
    net = digits_mlp(width=1, seed=1)          # 64 -> 16 -> 16 -> 10
    dense = traffic(net, {}, {}, samples=5, batch=2)
    weights = sum(2 * k * n + 4 * n for k, n in ((64, 16), (16, 16), (16, 10)))
    activations = 2 * (64 + 16 + 16 + 16 + 16 + 10)
    assert dense["fc_weight_bytes"] == pytest.approx(3 * weights / 5)
    assert dense["dram_bytes"] == pytest.approx(3 * weights / 5 + activations)
    assert dense["macs"] == 64 * 16 + 16 * 16 + 16 * 10
    x = np.random.default_rng(SEED).random((5,) + net.input_shape, dtype=np.float32)
    plans = _plans(net, "stride", threshold=0.0, top_n=2)
    result = aip(net, x, plans, backend=backend)
    approx = {p.layer: p.approx for p in plans}
    single = traffic(net, result.keeps, approx, samples=5, batch=1)
    expected = 0
    for plan in plans:
        k, n = plan.approx.k, plan.approx.n
        expected += plan.approx.weight_bytes + 4 * n + 2 * k * result.keeps[plan.layer].sum() / 5
    assert single["fc_weight_bytes"] == pytest.approx(expected)


def test_bad_arguments_name_the_field():
    backend = make_backend("accel")
    net = digits_mlp(width=1, seed=1)
    w = net.layers[1].params["weight"]
    with pytest.raises(ValueError, match="policy"):
        approximate_weights(w, "random")
    with pytest.raises(ValueError, match="weight"):
        approximate_weights(w.astype(np.float64), "stride")
    with pytest.raises(ValueError, match="fraction"):
        approximate_weights(w, "stride", fraction=0)
    x = np.zeros((2,) + net.input_shape, dtype=np.float32)
    good = _plans(net, "stride", threshold=0.0, top_n=2)
    fc3 = good[-1].approx
    bad = {
        "layer": [AipPlan("relu1", good[0].approx, SelectMode.THRESHOLD,
                          thresholds=good[0].thresholds)],
        "THRESHOLD": [AipPlan("fc3", fc3, SelectMode.THRESHOLD,
                              thresholds=np.zeros(10, np.float32))],
        "thresholds": [AipPlan("fc1", good[0].approx, SelectMode.THRESHOLD,
                               thresholds=np.full(16, np.nan, np.float32))],
        "top_n": [AipPlan("fc3", fc3, SelectMode.TOP_N, top_n=11)],
        "approx": [AipPlan("fc1", fc3, SelectMode.THRESHOLD,
                           thresholds=np.zeros(16, np.float32))],
        "twice": [good[0], good[0]],
    }
    for field, plans in bad.items():
        with pytest.raises(ValueError, match=field):
            aip(net, x, plans, backend=backend)
    with pytest.raises(ValueError, match="start"):
        aip(net, x, good, backend=backend, start=99)
    with pytest.raises(ValueError, match="keep and approx"):
        aip_rank(np.zeros((2, 3), np.float32), np.ones((2, 2), bool),
                 np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="nets"):
        measure_aip(nets=("alexnet",), log=None)
    with pytest.raises(ValueError, match="fraction"):
        validation_split(load_breast_cancer_split(), fraction=1.5)


def test_validation_split_disjoint():
    data = load_breast_cancer_split()
    fit = validation_split(data)
    assert len(fit.y_train) + len(fit.y_test) == len(data.y_train)
    rows = {row.tobytes() for row in data.x_train}
    assert {row.tobytes() for row in fit.x_test} <= rows
    assert not {row.tobytes() for row in fit.x_test} & {row.tobytes() for row in fit.x_train}


def test_quick_measurement(tmp_path):
    result = measure_aip(nets=("digits_mlp",), quick=True, log=None, cache_dir=tmp_path)
    entry = result["networks"]["digits_mlp"]
    assert (tmp_path / "digits_mlp_quick.npz").exists()
    assert entry["planned_layers"] == {"fc1": "THRESHOLD", "fc2": "THRESHOLD", "fc3": "TOP_N"}
    assert set(entry["policies"]) == set(POLICIES)
    dense = entry["dense"]["test"]
    assert 0 <= dense["accuracy"]["top1"] <= dense["accuracy"]["top5"] <= 1
    for policy in entry["policies"].values():
        assert len(policy["points"]) == 4
        for point in policy["points"]:
            for split in ("validation", "test"):
                figures = point[split]
                assert 0 <= figures["accuracy"]["top1"] <= 1
                assert 0 < figures["batch_1"]["fc_weight_bytes"] < 1.5
                assert figures["batch_1"]["fc_weight_bytes"] <= \
                    figures["batch_32"]["fc_weight_bytes"] + 1e-6
        chosen = policy["chosen"]
        assert chosen is None or chosen in policy["points"]
        refined = policy["chosen_per_layer"]
        if refined is not None:
            assert set(refined["alphas"]) == {"fc1", "fc2"}
            assert all(refined["alphas"][n] <= chosen["alpha"] for n in refined["alphas"])
            assert refined["validation"]["batch_1"]["fc_weight_bytes"] <= \
                chosen["validation"]["batch_1"]["fc_weight_bytes"]
    # a second run reuses the cached weights and gives the same numbers
    again = measure_aip(nets=("digits_mlp",), quick=True, log=None, cache_dir=tmp_path)
    assert again["networks"]["digits_mlp"]["policies"] == entry["policies"]
