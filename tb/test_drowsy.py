"""DrowsyNet: the golden model (sim/drowsy.py) against the LFSR masks, the dense forward and a
brute-force MAC count, a quick run of its measurement (sim/experiments/drowsy.py), and one
convolution with the engine's dropout plane on the RTL.

The RTL check (``test_drowsy_conv_rtl``, Icarus) runs the cocotb bench ``drowsy_conv`` of
:mod:`tb.drowsy_tb`: the digits CNN's ``conv2`` on one test digit (a 64 x 16 x 72 GEMM, the
bias as the accumulator start, the input after conv1's ReLU so that it has zeros) on a 4 x 4
engine with a lookahead window of 4 and output masks. The engine regenerates the dropout plane
from the layer's seed and threshold; the outputs read back must equal :mod:`sim.drowsy` bit for
bit and the command's cycles :func:`sim.skip_timing.engine_cycles` (the driver also checks both
against its own shadow-memory golden model, and the mask writer's cycles).
"""

import json

import numpy as np
import pytest

from sim.drowsy import (MAX_THRESHOLD, ChannelRemoval, DrowsyBackend, DrowsyPlan, conv_layers,
                        conv_macs, drowsy, expected_skip, rescale_factor, skip_counts)
from sim.epilogue import scale as epilogue_scale
from sim.experiments.drowsy import channel_plan, choose_thresholds, measure_drowsy
from sim.lfsr import dropout_keep_mask, dropout_values, layer_seed
from sim.nn import Network, StepContext, make_backend
from sim.nn.layers import BasicBlock, Conv2d, Flatten, GlobalAvgPool, Linear, ReLU
from sim.nn.networks import digits_cnn
from sim.runner import run_bench
from tb.conftest import regress
from tb.drowsy_case import conv_case, design

BACKENDS = ("fp32", "accel")


def tiny_resnet(seed=0):
    """A conv with a bias, a basic block with a projection shortcut, pool and FC (6x6x2)."""
    rng = np.random.default_rng(seed)
    stem = Conv2d(name="stem", in_shape=(6, 6, 2), out_channels=3, rng=rng)
    stem.params["bias"] = rng.standard_normal(3).astype(np.float32)
    block = BasicBlock(name="block", in_shape=stem.out_shape, out_channels=5, stride=2, rng=rng)
    pool = GlobalAvgPool(name="pool", in_shape=block.out_shape)
    return Network(name="tiny", input_shape=(6, 6, 2),
                   layers=[stem, ReLU(name="stem.relu", in_shape=stem.out_shape), block, pool,
                           Flatten(name="flat", in_shape=pool.out_shape),
                           Linear(name="fc", in_features=5, out_features=4, rng=rng)])


def inputs(batch=3, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, 6, 6, 2)).astype(np.float32)


def bits(x):
    return np.ascontiguousarray(x).view(np.uint32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rate_zero_is_dense(backend):
    net, x = tiny_resnet(), inputs()
    dense = net.forward(x, StepContext(backend=make_backend(backend)))
    for plan in (DrowsyPlan.uniform(net, 0, rescale=True), DrowsyPlan({}),
                 ChannelRemoval({"stem": ()})):
        out = drowsy(net, x, plan, backend=make_backend(backend))
        assert np.array_equal(bits(out), bits(dense))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rescale", [False, True])
def test_masks_and_op_order(backend, rescale):
    """Every conv's forward GEMM is the dense one where the LFSR mask of its seed keeps it
    (times fp32(256/(256-t)) with rescaling, bias included) and +0 where it drops it."""
    net, x = tiny_resnet(), inputs()
    thresholds = {"stem": 64, "block.conv1": 200, "block.conv2": 1, "block.shortcut": 128}
    plan = DrowsyPlan(thresholds, rescale=rescale, seed=7)
    outputs = {}

    def capture(call):
        outputs[call.name] = call.out.copy()
    inner = make_backend(backend)
    inner.listener = capture                  # the unmasked GEMM results
    wrapped = DrowsyBackend(inner, plan, convs=[c.name for c in conv_layers(net)],
                            batch_index=2)
    masked = {}
    depth = {conv.name: conv.params["weight"].shape[0] for conv in conv_layers(net)}
    for conv in conv_layers(net):
        original = conv.forward

        def forward(h, ctx, conv=conv, original=original):
            out = original(h, ctx)
            masked[conv.name] = out.reshape(-1, conv.spec.features).copy()
            return out
        conv.forward = forward
    net.forward(x, StepContext(backend=wrapped))
    for name, threshold in thresholds.items():
        got = masked[name]
        keep = dropout_keep_mask(got.shape, seed=layer_seed(7, name, 2), threshold=threshold)
        assert np.array_equal(wrapped.masks[name], keep)
        values = dropout_values(got.shape, seed=layer_seed(7, name, 2))
        assert np.array_equal(values >= threshold, keep)
        dense = outputs[f"{name}.forward"]
        if rescale:
            factor = np.float32(256 / (256 - threshold))
            assert rescale_factor(threshold) == factor
            dense = epilogue_scale(bits(dense), factor.view(np.uint32)).view(np.float32)
        want = np.where(keep, dense, np.float32(0))
        assert np.array_equal(bits(got), bits(want)), name
        assert (bits(got)[~keep] == 0).all()          # +0, not the bias, not -0
        assert wrapped.counts[name] == [int((~keep).sum()), keep.size, depth[name]]
    assert "fc" not in wrapped.counts


def test_mac_accounting_brute_force():
    net, x = tiny_resnet(), inputs(batch=2)
    plan = DrowsyPlan({"stem": 100, "block.conv2": 250, "block.shortcut": 30}, seed=3)
    counts = {}
    drowsy(net, x, plan, backend=make_backend("fp32"), batch_index=5, counts=counts)
    result = skip_counts(counts)
    dense = skipped = 0
    for conv in conv_layers(net):      # brute force: every output, every product
        height, width, channels = conv.out_shape
        depth = conv.spec.kernel ** 2 * conv.in_shape[2]
        threshold = plan.threshold(conv.name)
        keep = np.ones((2 * height * width, channels), dtype=bool) if not threshold else \
            dropout_keep_mask((2 * height * width, channels),
                              seed=layer_seed(3, conv.name, 5), threshold=threshold)
        for row in range(keep.shape[0]):
            for col in range(channels):
                for _ in range(depth):
                    dense += 1
                    skipped += not keep[row, col]
    assert (result["dense"], result["skipped"]) == (dense, skipped)
    assert result["dense"] == 2 * sum(conv_macs(net).values())
    removal = ChannelRemoval({"stem": (0, 2), "block.conv1": (4,)})
    counts = {}
    drowsy(net, x, removal, backend=make_backend("fp32"), counts=counts)
    assert skip_counts(counts)["fraction"] == pytest.approx(expected_skip(net, removal),
                                                            abs=1e-12)


def test_channel_removal_smallest_l1():
    net = digits_cnn(width=2, seed=3)
    removal = channel_plan(net, 0.5)
    for conv in conv_layers(net):
        norms = np.abs(conv.params["weight"]).sum(axis=0)
        removed = list(removal.removed[conv.name])
        assert len(removed) == conv.spec.features // 2
        kept = sorted(set(range(conv.spec.features)) - set(removed))
        assert norms[removed].max() <= norms[kept].min()
    assert expected_skip(net, removal) == 0.5


@pytest.mark.parametrize("make, field", [
    (lambda net: DrowsyPlan({"conv1": 256}), "thresholds['conv1']"),
    (lambda net: DrowsyPlan({"conv1": -1}), "thresholds['conv1']"),
    (lambda net: DrowsyPlan({"conv1": 1.5}), "thresholds['conv1']"),
    (lambda net: DrowsyPlan({"conv1": 3}, rescale=1), "rescale"),
    (lambda net: DrowsyPlan({"conv1": 3}, seed=-1), "seed"),
    (lambda net: DrowsyPlan([("conv1", 3)]), "thresholds"),
    (lambda net: DrowsyPlan({"fc1": 3}).check(net), "thresholds"),
    (lambda net: DrowsyPlan.from_rates({"conv1": 1.0}), "rates['conv1']"),
    (lambda net: ChannelRemoval({"conv1": (0, 0)}), "removed['conv1']"),
    (lambda net: ChannelRemoval({"conv1": (99,)}).check(net), "removed['conv1']"),
    (lambda net: DrowsyPlan({"conv1": 3}).keep("conv1", (2, 2), -1), "batch_index"),
    (lambda net: rescale_factor(MAX_THRESHOLD + 1), "threshold"),
    (lambda net: choose_thresholds({"a": [0.1]}, {"a": 1}, 0.9, probes=(64,)), "target"),
    (lambda net: choose_thresholds({"a": [0.1]}, {"b": 1}, 0.1, probes=(64,)), "curves"),
])
def test_bad_values_raise(make, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        make(digits_cnn(width=2))


def test_greedy_choice():
    """The insensitive layer takes the drops first; the target is met to one threshold step."""
    macs = {"cheap": 100, "big": 300, "fragile": 600}
    curves = {"cheap": [0.0, 0.01, 0.02], "big": [0.001, 0.002, 0.5],
              "fragile": [0.3, 0.9, 2.0]}
    probes = (64, 128, 224)
    thresholds = choose_thresholds(curves, macs, 0.3, probes=probes)
    assert thresholds["fragile"] < thresholds["big"]
    saved = sum(thresholds[n] * macs[n] for n in macs) / (256 * sum(macs.values()))
    assert 0.3 <= saved < 0.3 + max(macs.values()) / (256 * sum(macs.values()))
    low = choose_thresholds(curves, macs, 0.05, probes=probes)
    assert low["fragile"] == 0 and low["big"] > 0


def test_quick_measurement(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARTA_BUILD_DIR", str(tmp_path))
    result = measure_drowsy(nets=("digits_cnn",), quick=True, log=lambda _: None)
    json.dumps(result)
    entry = result["networks"]["digits_cnn"]
    for method in ("uniform", "chosen"):
        for tag in ("rescale", "no_rescale"):
            point = entry["methods"][method][tag]["0.5"]
            assert point["expected_skip"] == pytest.approx(0.5, abs=0.01)
            assert abs(point["measured_skip_test"] - 0.5) < 0.03
            assert 0 <= point["test"]["top1"] <= point["test"]["top5"] <= 1
    engine = entry["engine_point"]
    assert engine["uniform"]["macs"]["macs_kept"] < engine["dense"]["macs"]["macs_kept"]
    # a random per-element drop leaves (almost) every tile row with a kept output: no cycles
    assert engine["uniform"]["cycles"]["window_mask"] >= engine["dense"]["cycles"]["window"]
    assert engine["channel_removal"]["cycles"]["window_compact"] < \
        engine["dense"]["cycles"]["window"]
    assert "cycle model" in engine["uniform"]["cycles_source"]
    assert engine["uniform"]["energy_source"].startswith("model")


# ----------------------------------------------------------------------------- RTL

@pytest.mark.skipif(not regress(), reason="make regress only (~30 s of Icarus; the trained "
                    "layer runs on the RTL in sparta measure inference --only rtl)")
def test_drowsy_conv_rtl(tmp_path):
    """conv2 of the digits CNN on one digit with the engine's dropout plane: every output
    equals sim.drowsy, the cycles the cycle model (Icarus)."""
    run_bench(design(), toplevel="gemm_engine",
              bench_module="tb.drowsy_tb", simulator="icarus", testcase="drowsy_conv",
              case=conv_case(tmp_path / "conv.npz"))
