"""FGMP in training: the backend's numerics, the threshold control, the traffic model, the
energy estimate and the benchmark script (plain pytest, a few seconds each)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from sim.fgmp import T_MAX, FgmpBlockFormat, quantize, stream_bytes, stream_bytes_fp16
from sim.fgmp_control import FgmpController, FgmpPolicy
from sim.fgmp_energy import HOROWITZ_45NM, EnergyTable, step_energy
from sim.fgmp_traffic import (TensorAccess, gemm_products, shared_tensor_groups, step_accesses,
                              step_traffic)
from sim.formats import E4M3, E5M2, FP16
from sim.gemm import gemm
from sim.lowering import network_commands
from sim.nn import SGD, AccelBackend, Digits, Linear, StepContext, build_network, train_step
from sim.nn.backend import FgmpBackend
from sim.nn.im2col import im2col
from sim.numerics import from_float32, to_float32

SEED = 0xF6_3B


def _fp16(values):
    return from_float32(FP16, np.asarray(values, dtype=np.float32))


def _fgmp_values(values, fmt8, t, flush=False):
    """float32 values of float32 inputs after fp16 rounding and FGMP store/load (sim.fgmp)."""
    decoded, _ = quantize(_fp16(values), fmt8, t, flush_underflow=flush)
    return to_float32(FP16, decoded)


def _tiny_digits(n=4, upsample=1, seed=SEED):
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 17, size=(n, 8 * upsample, 8 * upsample, 1)) / 16).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    return Digits(x, y, x[:1], y[:1])


# -- backend numerics ------------------------------------------------------------------------------
def _linear(seed):
    rng = np.random.default_rng(seed)
    layer = Linear(name="fc", in_features=7, out_features=5, rng=rng)
    layer.params["bias"][:] = rng.standard_normal(5).astype(np.float32)
    # magnitudes over many binades: FP8 underflow, FP8 overflow and exact FP8 values all occur
    x = (rng.standard_normal((6, 7)) * np.exp2(rng.integers(-14, 10, size=(6, 7)))) \
        .astype(np.float32)
    x[0, :3] = [0.0, -0.0, 1.5]
    return layer, x


@pytest.mark.parametrize("t_act,t_w", [(4, 4), (6, 3), (0, 15)])
def test_backend_forward_is_golden_gemm_of_fgmp_operands(t_act, t_w):
    layer, x = _linear(SEED + t_act)
    policy = FgmpPolicy(adaptive=False, t_start={"activation": t_act, "weight": t_w})
    y = layer.forward(x, StepContext(backend=FgmpBackend(policy=policy)))
    # reference: FGMP store/load with sim.fgmp, then the golden GEMM on fp16 operands (every
    # FP8 value is exact in fp16, so mixed per-element tags and fp16 decode agree)
    a = _fp16(_fgmp_values(x, E4M3, t_act))
    b = _fp16(_fgmp_values(layer.params["weight"], E4M3, t_w))
    want = gemm(a, b, c_bits=np.broadcast_to(layer.params["bias"].view(np.uint32), (6, 5)))
    assert np.array_equal(y.view(np.uint32), want), f"seed={SEED + t_act:#x}"


@pytest.mark.parametrize("flush", [(), ("gradient",), ("weight", "activation", "gradient")],
                         ids=["no_flush", "flush_gradient", "flush_all"])
def test_backend_backward_stores_gradients_as_fgmp(flush):
    layer, x = _linear(SEED)
    policy = FgmpPolicy(adaptive=False, t_start={"gradient": 5}, flush_underflow=flush)
    ctx = StepContext(backend=FgmpBackend(policy=policy), training=True)
    layer.forward(x, ctx)
    rng = np.random.default_rng(SEED)
    dy = (rng.standard_normal((6, 5)) * 300).astype(np.float32)
    dy[1, :3] = [2.0 ** -20, -3 * 2.0 ** -19, 2.0 ** -16]     # e5m2 underflow x2, a subnormal
    dx = layer.backward(dy, ctx)

    def stored(values, fmt8, t, cls):
        return _fp16(_fgmp_values(values, fmt8, t, cls in flush))

    x_stored = stored(x, E4M3, 4, "activation")
    w_stored = stored(layer.params["weight"], E4M3, 4, "weight")
    dy_stored = stored(dy, E5M2, 5, "gradient")
    # flushing stores the underflows as signed zeros; without it they stay fp16
    assert [to_float32(FP16, v) for v in dy_stored[1, :2]] == \
        ([0.0, -0.0] if "gradient" in flush else [2.0 ** -20, -3 * 2.0 ** -19])
    assert np.signbit(to_float32(FP16, dy_stored[1, 1])) == 1
    dw = gemm(x_stored, dy_stored, transpose_a=True).view(np.float32)
    assert np.array_equal(layer.grads["weight"].view(np.uint32),
                          _fgmp_values(dw, E5M2, 5, "gradient" in flush).view(np.uint32))
    ones = _fp16(np.ones((1, 6), dtype=np.float32))
    assert np.array_equal(layer.grads["bias"].view(np.uint32), gemm(ones, dy_stored)[0])
    assert np.array_equal(dx.view(np.uint32), gemm(dy_stored, w_stored, transpose_b=True))


def test_backend_at_t_max_is_the_fp16_accelerator():
    """At t = 15 every FP8 element is exact: a whole training step equals AccelBackend's."""
    data = _tiny_digits()
    results = []
    for backend in (AccelBackend(), FgmpBackend(policy=FgmpPolicy(
            adaptive=False, store_weight_grad=False,
            t_start={"weight": T_MAX, "activation": T_MAX, "gradient": T_MAX}))):
        net = build_network("digits_cnn", width=2)
        tensors = {}
        train_step(net, SGD(net.parameters(), lr=0.01), backend, data.x_train, data.y_train,
                   rng=np.random.default_rng(1), loss_scale=1024.0, tensors=tensors)
        results.append(tensors)
    accel, fgmp = results
    assert accel.keys() == fgmp.keys()
    for key in accel:
        assert np.array_equal(np.asarray(accel[key]), np.asarray(fgmp[key])), key


@pytest.mark.parametrize("store_weight_grad", [True, False])
def test_backend_reports_the_operands_it_multiplied(store_weight_grad):
    """A listener (captures, replays) gets the FGMP words and per-element tags that the GEMM
    multiplied and the GEMM's own result: the golden GEMM of what it reports gives what it
    reports, for every GEMM of a training step (the fp16 operands before FGMP storage did not)."""
    data = _tiny_digits()
    net = build_network("digits_cnn", width=2)
    backend = FgmpBackend(policy=FgmpPolicy(store_weight_grad=store_weight_grad))
    calls = []
    # copies: c is a view of the bias, which the optimizer updates after the step
    backend.listener = lambda call: calls.append(dataclasses.replace(
        call, c=None if call.c is None else np.array(call.c)))
    train_step(net, SGD(net.parameters(), lr=0.01), backend, data.x_train, data.y_train,
               rng=np.random.default_rng(1), loss_scale=1024.0)
    assert {call.kind for call in calls} == {"forward", "weight_grad", "backward_data"}
    fp8_elements = 0
    for call in calls:
        assert call.a_tags.shape == call.a.shape and call.b_tags.shape == call.b.shape
        fp8_elements += int(np.count_nonzero(call.a_tags)) + int(np.count_nonzero(call.b_tags))
        c_bits = None if call.c is None else np.ascontiguousarray(call.c).view(np.uint32)
        want = gemm(call.a, call.b, a_fmt=call.a_tags, b_fmt=call.b_tags, c_bits=c_bits,
                    transpose_a=call.transpose_a, transpose_b=call.transpose_b)
        assert np.array_equal(call.out.view(np.uint32), want), call.name
    assert fp8_elements > 0


def test_backend_reports_and_rejects_bad_use():
    with pytest.raises(ValueError, match="measure must be True when policy.adaptive"):
        FgmpBackend(measure=False)
    with pytest.raises(ValueError, match="measure must be a bool"):
        FgmpBackend(measure=1)
    with pytest.raises(ValueError, match="policy must be an FgmpPolicy"):
        FgmpController({"adaptive": True})
    backend = FgmpBackend()
    with pytest.raises(ValueError, match="go through gemm"):
        backend._product(np.zeros((1, 1), np.uint16), np.zeros((1, 1), np.uint16), None,
                         False, False)


def test_backend_training_step_reports_every_class():
    data = _tiny_digits()
    net = build_network("digits_cnn", width=2)
    backend = FgmpBackend()
    train_step(net, SGD(net.parameters(), lr=0.01), backend, data.x_train, data.y_train,
               rng=np.random.default_rng(1), loss_scale=1024.0)
    backend.controller.flush()
    history = backend.controller.history
    assert [e["layer"] for e in history] == ["conv1", "conv2", "fc1", "fc2"]
    for entry in history:
        assert set(entry["t"]) == {"weight", "activation", "gradient"}
        assert entry["t"] == {"weight": 4, "activation": 4, "gradient": 3}
        for cls, share in entry["fp8_share"].items():
            assert 0.0 <= share <= 1.0
            assert entry["error"][cls] is not None and 0.0 <= entry["error"][cls] < 0.5
    # the input images k/16 are exact in e4m3: no error from conv1's activations
    assert history[0]["error"]["activation"] == 0.0
    assert history[0]["fp8_share"]["activation"] == 1.0


# -- threshold control -----------------------------------------------------------------------------
def _step(controller, layer, errors, *, t_check=None, backward=True):
    """One synthetic training step of ``layer`` with per-class errors."""
    controller.begin_forward(layer)
    for cls, error in errors.items():
        t = controller.t(layer, cls)
        if t_check is not None:
            assert t == t_check[cls]
        controller.report(layer, "forward" if not backward else "weight_grad", cls, t=t,
                          error=error, fp8=1, elements=2)


def test_control_raises_and_lowers_t_with_hysteresis():
    policy = FgmpPolicy(interval=2, budget_gradient=0.1, relax=0.3)
    controller = FgmpController(policy)
    assert controller.t("fc", "gradient") == 3 and controller.t("fc", "weight") == 4
    _step(controller, "fc", {"gradient": 0.2})
    _step(controller, "fc", {"gradient": 0.2})
    assert controller.t("fc", "gradient") == 3          # decided at the next forward
    _step(controller, "fc", {"gradient": 0.05})        # commits step 1: average 0.2 > 0.1
    assert controller.t("fc", "gradient") == 4
    _step(controller, "fc", {"gradient": 0.05})        # window 0.05, 0.05: in the dead band
    _step(controller, "fc", {"gradient": 0.02})
    assert controller.t("fc", "gradient") == 4
    _step(controller, "fc", {"gradient": 0.02})        # window 0.02, 0.02 < 0.03: lower
    _step(controller, "fc", {"gradient": 0.0})
    assert controller.t("fc", "gradient") == 3
    for _ in range(6):                                  # never below the start
        _step(controller, "fc", {"gradient": 0.0})
    assert controller.t("fc", "gradient") == 3
    assert [(d["old"], d["new"]) for d in controller.decisions] == [(3, 4), (4, 3)]
    steps = [e["step"] for e in controller.history]
    assert steps == list(range(len(steps)))


def test_control_saturates_at_t_max_and_can_be_fixed():
    controller = FgmpController(FgmpPolicy(interval=1, t_start={"weight": T_MAX - 1}))
    for _ in range(5):
        _step(controller, "w", {"weight": 1.0})
    assert controller.t("w", "weight") == T_MAX
    fixed = FgmpController(FgmpPolicy(adaptive=False, interval=1))
    for _ in range(5):
        _step(fixed, "w", {"weight": 1.0})
    assert fixed.t("w", "weight") == 4 and fixed.decisions == []


def test_control_ignores_evaluation_passes():
    controller = FgmpController(FgmpPolicy(interval=1))
    _step(controller, "fc", {"activation": 1.0}, backward=False)    # evaluation forward
    _step(controller, "fc", {"activation": 1.0}, backward=False)
    controller.flush()
    assert controller.history == [] and controller.t("fc", "activation") == 4


def test_control_groups_share_one_threshold():
    groups = {("sc", "activation"): ("conv1", "activation")}
    controller = FgmpController(FgmpPolicy(interval=1), groups=groups)
    _step(controller, "conv1", {"activation": 0.0})
    _step(controller, "sc", {"activation": 1.0})      # the member's error counts for the group
    _step(controller, "conv1", {"activation": 0.0})   # commits conv1's step 0: mean 0.0
    _step(controller, "sc", {"activation": 0.0})      # commits sc's step 0 (1.0) into the window
    _step(controller, "conv1", {"activation": 0.0})   # window {0: 1.0, 1: 0.0} -> 0.5 > 0.04
    assert controller.t("conv1", "activation") == controller.t("sc", "activation") == 5


def test_control_without_measurements_keeps_t():
    controller = FgmpController(FgmpPolicy(interval=1))
    for _ in range(4):
        _step(controller, "fc", {"gradient": None})
    assert controller.t("fc", "gradient") == 3 and len(controller.history) == 3
    assert controller.history[0]["error"] == {"gradient": None}
    with pytest.raises(ValueError, match=r"groups keys must be \(layer, class\) pairs"):
        FgmpController(FgmpPolicy(), groups={"sc": ("conv1", "activation")})
    with pytest.raises(ValueError, match="tensor class must be one of"):
        FgmpController(FgmpPolicy(), groups={("sc", "bias"): ("conv1", "bias")})


@pytest.mark.parametrize("kwargs,match", [
    ({"weight_format": "fp16"}, r"fmt8 must be one of \['e4m3', 'e5m2'\]"),
    ({"gradient_format": "int8"}, "fmt8 must be one of"),
    ({"budget_activation": 0}, "budget_activation must be a finite number > 0"),
    ({"budget_gradient": float("nan")}, "budget_gradient must be a finite number > 0"),
    ({"interval": 0}, "interval must be an integer >= 1"),
    ({"relax": 1.0}, r"relax must be a number in \(0, 1\)"),
    ({"t_start": {"weight": 16}}, r"t_start\['weight'\] must be an integer in 0..15"),
    ({"t_start": {"bias": 3}}, "t_start must be a dict with keys among"),
    ({"adaptive": "yes"}, "adaptive must be a bool"),
    ({"flush_underflow": "gradient"}, "flush_underflow must be a tuple of distinct tensor "
                                      r"classes among \['weight', 'activation', 'gradient'\]"),
    ({"flush_underflow": ("bias",)}, "flush_underflow must be a tuple of distinct"),
    ({"flush_underflow": ("gradient", "gradient")}, "flush_underflow must be a tuple of distinct"),
    ({"flush_underflow": None}, "flush_underflow must be a tuple of distinct"),
])
def test_policy_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FgmpPolicy(**kwargs)


def test_policy_flush_underflow_per_class():
    assert FgmpPolicy().flush_underflow == ()
    policy = FgmpPolicy(flush_underflow=["gradient", "weight"])
    assert policy.flush_underflow == ("weight", "gradient")          # canonical order, a tuple
    assert [policy.flushes(cls) for cls in ("weight", "activation", "gradient")] == \
        [True, False, True]
    with pytest.raises(ValueError, match="tensor class must be one of"):
        policy.flushes("bias")


def test_policy_rejects_unknown_class():
    with pytest.raises(ValueError, match="tensor class must be one of"):
        FgmpPolicy().format_of("bias")


# -- traffic model ---------------------------------------------------------------------------------
def _counts(accesses):
    table = {}
    for a in accesses:
        entry = table.setdefault(a.tensor, [0, 0])
        entry[0 if a.direction == "read" else 1] += 1
    return {k: tuple(v) for k, v in table.items()}


def test_digits_cnn_accesses():
    counts = _counts(step_accesses(build_network("digits_cnn", width=2)))
    assert counts == {
        # network input: read by forward and weight gradient, written by the host (not counted)
        "conv1/input": (2, 0), "conv2/input": (2, 1), "fc1/input": (2, 1), "fc2/input": (2, 1),
        "fc2/output": (0, 1),                                   # logits, read by the host loss
        # weights: forward and backward data, new copy by the optimizer (conv1: no backward)
        "conv1/weight": (1, 1), "conv2/weight": (2, 1), "fc1/weight": (2, 1),
        "fc2/weight": (2, 1),
        "conv1/bias": (1, 1), "conv2/bias": (1, 1), "fc1/bias": (1, 1), "fc2/bias": (1, 1),
        # dY: weight gradient (bias gradient fused) and backward data; the last from the host
        "fc2/grad_output": (2, 0), "fc1/grad_output": (2, 1), "conv2/grad_output": (2, 1),
        "conv1/grad_output": (1, 1),
        "conv1/grad_weight": (1, 1), "conv2/grad_weight": (1, 1), "fc1/grad_weight": (1, 1),
        "fc2/grad_weight": (1, 1),
        "conv1/grad_bias": (1, 1), "conv2/grad_bias": (1, 1), "fc1/grad_bias": (1, 1),
        "fc2/grad_bias": (1, 1)}


def test_resnet18_accesses():
    net = build_network("resnet18", width=1)
    counts = _counts(step_accesses(net))
    # identity block: its input is read by conv1 (forward, weight gradient) and by the add
    assert counts["layer1.1.conv1/input"] == (3, 1)
    # projection block: read by conv1 and the shortcut (forward, weight gradient)
    assert counts["layer2.0.conv1/input"] == (4, 1)
    assert counts["layer2.0.shortcut/output"] == (1, 1)
    assert counts["layer2.0.shortcut/grad_input"] == (1, 1)
    # a block's dY: conv2 and shortcut weight gradients and backward data; identity: + the add
    assert counts["layer2.0.conv2/grad_output"] == (4, 1)
    assert counts["layer1.1.conv2/grad_output"] == (3, 1)
    assert counts["pool/input"] == (1, 1) and counts["fc/grad_input"] == (1, 1)
    assert counts["stem/input"] == (2, 0) and counts["fc/output"] == (0, 1)
    assert shared_tensor_groups(net)[("layer2.0.shortcut", "gradient")] == \
        ("layer2.0.conv2", "gradient")


@pytest.mark.parametrize("net_name,upsample", [("digits_cnn", 1), ("resnet18", 4)])
def test_step_traffic_prices_every_access(net_name, upsample):
    """Zeros: every element FP8, so each access is ceil(n/B) * (B/8 + B) bytes padded."""
    net = build_network(net_name, width=1)
    data = _tiny_digits(n=2, upsample=upsample)
    tensors = {}
    train_step(net, SGD(net.parameters(), lr=0.01), FgmpBackend(), data.x_train, data.y_train,
               rng=np.random.default_rng(2), loss_scale=1024.0, tensors=tensors)
    zeros = {key: np.zeros_like(value, dtype=np.float32) for key, value in tensors.items()}
    block = FgmpBlockFormat(block=16, bus_bytes=8)
    got = step_traffic(net, zeros, formats=FgmpPolicy().format_of, threshold=lambda *_: 15,
                       block=block)
    expect_fp16 = expect_fgmp = 0
    sizes = dict(zeros)
    sizes["pool/input"] = zeros.get(f"{net.layers[-3].conv2.name}/output") \
        if net_name == "resnet18" else None
    for access in step_accesses(net):
        n = sizes[access.tensor].size
        if access.cls == "fp32":
            expect_fp16 += block.padded(4 * n)
            expect_fgmp += block.padded(4 * n)
        else:
            expect_fp16 += block.padded(2 * n)
            expect_fgmp += block.padded(-(-n // 16) * 18)
    assert (got["bytes_fp16"], got["bytes_fgmp"]) == (expect_fp16, expect_fgmp)
    assert got["fp8_share"] == 1.0
    # real values: FGMP bytes per stored tensor are those of sim.fgmp.stream_bytes
    real = step_traffic(net, tensors, formats=FgmpPolicy().format_of, threshold=lambda *_: 4,
                        block=block)
    for entry in real["tensors"]:
        if entry["class"] in ("weight", "activation"):
            values = tensors.get(entry["tensor"])
            if values is None:
                continue
            _, tags = quantize(_fp16(values), E4M3, 4)
            assert entry["bytes_fgmp"] == stream_bytes(tags, block), entry["tensor"]
            assert entry["bytes_fp16"] == stream_bytes_fp16(values.size, block)
    assert real["bytes_fgmp"] < real["bytes_fp16"]
    # flushing the gradients' underflow: each gradient tensor priced with the flushed tags
    tensors[f"{net.weight_layers()[-1].name}/grad_output"][0, :2] = [2.0 ** -20, -(2.0 ** -18)]
    flushed = step_traffic(net, tensors, formats=FgmpPolicy().format_of,
                           threshold=lambda *_: 3, block=block,
                           flush_underflow=lambda cls: cls == "gradient")
    plain = step_traffic(net, tensors, formats=FgmpPolicy().format_of, threshold=lambda *_: 3,
                         block=block)
    for entry, other in zip(flushed["tensors"], plain["tensors"]):
        values = tensors.get(entry["tensor"])
        if entry["class"] != "gradient" or values is None:
            assert entry == other
            continue
        _, tags = quantize(_fp16(values), E5M2, 3, flush_underflow=True)
        assert entry["bytes_fgmp"] == stream_bytes(tags, block), entry["tensor"]
        assert entry["fp8"] >= other["fp8"]
    assert flushed["fp8_share"] > plain["fp8_share"]        # this step has e5m2 underflows


def test_step_traffic_rejects_bad_input():
    net = build_network("digits_cnn", width=1)
    with pytest.raises(ValueError, match="lacks tensors"):
        step_traffic(net, {}, formats=FgmpPolicy().format_of, threshold=lambda *_: 4)
    with pytest.raises(ValueError, match="block must be an FgmpBlockFormat"):
        step_traffic(net, {}, formats=FgmpPolicy().format_of, threshold=lambda *_: 4,
                     block=16)
    with pytest.raises(ValueError, match="net must be a Network"):
        step_accesses("digits_cnn")
    with pytest.raises(ValueError, match="direction must be"):
        TensorAccess("op", "copy", "x", "weight", "l")
    with pytest.raises(ValueError, match="cls must be one of"):
        TensorAccess("op", "read", "x", "bias", "l")


@pytest.mark.parametrize("flush", [(), ("activation", "gradient")], ids=["no_flush", "flush"])
def test_gemm_products_brute_force(flush):
    """Pair counts against explicit FP8-indicator operand matrices, product by product."""
    net = build_network("digits_cnn", width=1)
    data = _tiny_digits(n=2)
    tensors = {}
    train_step(net, SGD(net.parameters(), lr=0.01), FgmpBackend(), data.x_train, data.y_train,
               rng=np.random.default_rng(3), loss_scale=1024.0, tensors=tensors)
    tensors["fc2/grad_output"][0, :2] = [2.0 ** -19, -(2.0 ** -20)]      # e5m2 underflows
    policy = FgmpPolicy(t_start={"weight": 6, "activation": 5, "gradient": 4},
                        flush_underflow=flush)

    def fp8(key, cls):
        return quantize(_fp16(tensors[key]), policy.format_of(cls), policy.start(cls),
                        flush_underflow=policy.flushes(cls))[1]

    want = {"fp8_fp8": 0, "fp8_fp16": 0, "fp16_fp16": 0, "macs": 0}
    specs = {s.name: s for s in net.specs()}
    for command in network_commands(net.specs(), batch_size=2):
        spec = specs[command.layer]
        x = fp8(f"{spec.name}/input", "activation")
        if spec.kind == "conv2d":
            # im2col of the values, then the rule: padding is +0, an FP8 zero
            values = im2col(tensors[f"{spec.name}/input"], kernel=spec.kernel,
                            stride=spec.stride, padding=spec.padding)
            x = quantize(_fp16(values), E4M3, 5, flush_underflow=bool(flush))[1]
        else:
            x = x.reshape(2, -1)
        w = fp8(f"{spec.name}/weight", "weight")
        dy = fp8(f"{spec.name}/grad_output", "gradient").reshape(-1, spec.features)
        a, b = {"forward": (x, w), "backward_data": (dy, w.T)}.get(command.kind, (x.T, dy))
        if command.bias_row:            # the bias gradient's row of ones, folded in
            a = np.vstack([a, np.ones((1, dy.shape[0]), dtype=bool)])
        pairs = a[:, :, None].astype(int) + b[None, :, :].astype(int)    # M x K x N
        want["fp8_fp8"] += int(np.count_nonzero(pairs == 2))
        want["fp8_fp16"] += int(np.count_nonzero(pairs == 1))
        want["fp16_fp16"] += int(np.count_nonzero(pairs == 0))
        want["macs"] += command.macs
    got = gemm_products(net, tensors, formats=policy.format_of,
                        threshold=lambda layer, cls: policy.start(cls),
                        flush_underflow=policy.flushes)
    assert got == want
    assert 0 < got["fp8_fp16"] and 0 < got["fp8_fp8"]


# -- energy ----------------------------------------------------------------------------------------
def test_step_energy_arithmetic():
    table = EnergyTable(mul_fp16_fp16=4.0, mul_fp8_fp16=2.0, mul_fp8_fp8=1.0, add_fp32=0.5,
                        dram_per_byte=100.0, sram_per_byte=3.0)
    got = step_energy(products={"fp8_fp8": 10, "fp8_fp16": 5, "fp16_fp16": 1, "macs": 16},
                      dram_bytes=7, table=table)
    assert got == {"multiply_pj": 24.0, "accumulate_pj": 8.0, "dram_pj": 700.0,
                   "sram_pj": 42.0, "total_pj": 774.0}
    assert HOROWITZ_45NM.mul_fp16_fp16 == 4 * HOROWITZ_45NM.mul_fp8_fp8
    assert HOROWITZ_45NM.dram_per_byte == 162.5


def test_step_energy_rejects_bad_input():
    with pytest.raises(ValueError, match="dram_per_byte must be a finite number > 0"):
        EnergyTable(mul_fp16_fp16=1, mul_fp8_fp16=1, mul_fp8_fp8=1, add_fp32=1,
                    dram_per_byte=-1, sram_per_byte=1)
    with pytest.raises(ValueError, match="must equal macs"):
        step_energy(products={"fp8_fp8": 1, "fp8_fp16": 0, "fp16_fp16": 0, "macs": 2},
                    dram_bytes=0)
    with pytest.raises(ValueError, match="products must be a dict with keys"):
        step_energy(products={"macs": 2}, dram_bytes=0)
    with pytest.raises(ValueError, match="table must be an EnergyTable"):
        step_energy(products={"fp8_fp8": 0, "fp8_fp16": 0, "fp16_fp16": 0, "macs": 0},
                    dram_bytes=0, table={})


# -- the benchmark script --------------------------------------------------------------------------
def test_bench_script_smoke(tmp_path, monkeypatch):
    import scripts.results as results_module
    from scripts import fgmp_bench

    monkeypatch.setattr(results_module, "RESULTS_DIR", tmp_path / "results")
    assert fgmp_bench.main(["--nets", "digits_cnn", "--digits-epochs", "2", "--train-samples",
                            "40", "--plot-dir", str(tmp_path), "--block", "8",
                            "--bus-bytes", "4"]) == 0
    data = json.loads((tmp_path / "results" / "fgmp_bench.json").read_text())
    entry = data["digits_cnn"]
    for key in ("bytes_fp16", "bytes_fgmp", "fp8_share", "test_accuracy_fgmp",
                "test_accuracy_fp32", "energy_pj_fp16", "energy_pj_fgmp"):
        assert entry[key] is not None, key
    assert entry["bytes_fgmp"] < entry["bytes_fp16"]
    assert entry["energy_pj_fgmp"] < entry["energy_pj_fp16"]
    assert entry["block_format"] == {"block": 8, "bus_bytes": 4}
    # 40 samples: batches of 32 and 8; the headline is the last whole batch
    assert [row["step"] for row in entry["traffic_over_training"]] == [0, 2]
    assert entry["traffic_step"] == 2
    assert Path(tmp_path / "fgmp_share_digits_cnn.png").stat().st_size > 10_000
    assert "energy_table_pj" in data["model"]


@pytest.mark.parametrize("argv,match", [
    (["--nets", "vgg"], "nets must be a comma-separated subset"),
    (["--block", "12"], r"block must be one of \[8, 16, 32, 64\]"),
    (["--bus-bytes", "3"], "bus_bytes must be a power of two"),
    (["--digits-epochs", "0"], "--digits-epochs must be >= 1"),
    (["--budgets", "0.1,0.2"], "budgets must be three comma-separated numbers"),
    (["--budgets", "0,0.1,0.1"], "budget_weight must be a finite number > 0"),
    (["--label", "a b"], "--label must be letters, digits and underscores"),
    (["--flush-underflow", "bias"], "classes must be a comma-separated subset of "
                                    r"\['weight', 'activation', 'gradient'\]"),
    (["--flush-underflow", "gradient,gradient"], "classes must be a comma-separated subset"),
])
def test_bench_script_rejects_bad_arguments(argv, match, capsys):
    from scripts import fgmp_bench

    args = fgmp_bench.parse_args(["--budgets", "0.1,0.2,0.3", "--label", "loose_1"])
    assert (args.policy.budget_weight, args.policy.budget_activation,
            args.policy.budget_gradient) == (0.1, 0.2, 0.3)
    assert fgmp_bench.result_key("resnet18", args) == "resnet18_loose_1"
    assert args.policy.flush_underflow == ("gradient",)            # the bench's default
    args = fgmp_bench.parse_args(["--flush-underflow", ""])
    assert args.policy.flush_underflow == ()
    args = fgmp_bench.parse_args(["--flush-underflow", "gradient,weight"])
    assert args.policy.flush_underflow == ("weight", "gradient")

    with pytest.raises(SystemExit):
        fgmp_bench.parse_args(argv)
    assert re.search(match, capsys.readouterr().err)
