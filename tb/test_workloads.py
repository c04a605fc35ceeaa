"""Workload networks (sim/nn), their lowering to GEMM commands (sim/lowering.py), bad input,
and a smoke test of training and of the script that records the figures."""

import dataclasses
import json

import numpy as np
import pytest

from sim.gemm import gemm
from sim.lowering import GemmCommand, LayerSpec, layer_commands, network_commands
from sim.nn import (SGD, AccelBackend, Conv2d, Digits, Fp32Backend, Linear, Network, ReLU,
                    StepContext, TrainConfig, build_network, load_digits_split, make_backend,
                    softmax_cross_entropy, train, train_step)
from sim.numerics import from_float32


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def tiny(data: Digits, n_train: int, n_test: int, upsample: int = 1) -> Digits:
    def up(x):
        return np.ascontiguousarray(x.repeat(upsample, axis=1).repeat(upsample, axis=2))
    return Digits(up(data.x_train[:n_train]), data.y_train[:n_train],
                  up(data.x_test[:n_test]), data.y_test[:n_test])


# -- data ------------------------------------------------------------------------------------

def test_digits_split(digits):
    assert digits.x_train.shape == (1437, 8, 8, 1) and digits.x_test.shape == (360, 8, 8, 1)
    assert digits.x_train.dtype == np.float32
    assert digits.x_train.min() == 0 and digits.x_train.max() == 1
    # stratified: every class in the test set 35-37 times
    assert set(np.bincount(digits.y_test)) <= {35, 36, 37}
    # pixel values k/16 are exact in fp16
    assert np.array_equal(from_float32("fp16", digits.x_train).view(np.float16)
                          .astype(np.float32), digits.x_train)
    again = load_digits_split()
    assert np.array_equal(again.x_test, digits.x_test) and np.array_equal(again.y_test,
                                                                          digits.y_test)
    big = load_digits_split(upsample=4)
    assert big.x_train.shape == (1437, 32, 32, 1)
    assert np.array_equal(big.x_train[:, ::4, ::4], digits.x_train)


# -- lowering --------------------------------------------------------------------------------

def test_digits_cnn_lowering_table():
    """The command table of docs/workloads.md (batch 32, width 8)."""
    got = [(c.name, c.kind, c.M, c.N, c.K, c.transpose_a, c.transpose_b, c.accumulate,
            c.a_mask, c.b_mask, c.out_mask, c.bias_row)
           for c in build_network("digits_cnn").commands(batch_size=32)]
    # every layer has a bias: its gradient is the last row of the weight gradient (M + 1)
    assert got == [
        ("conv1.forward", "forward", 2048, 8, 9, False, False, True, None, None, None, False),
        ("conv2.forward", "forward", 2048, 16, 72, False, False, True, "relu1", None, None,
         False),
        ("fc1.forward", "forward", 32, 64, 1024, False, False, True, "relu2", None, None,
         False),
        ("fc2.forward", "forward", 32, 10, 64, False, False, True, "relu3 & drop", None, None,
         False),
        ("fc2.weight_grad", "weight_grad", 65, 10, 32, True, False, False, "relu3 & drop",
         None, None, True),
        ("fc2.backward_data", "backward_data", 32, 64, 10, False, True, False, None, None,
         "relu3 & drop", False),
        ("fc1.weight_grad", "weight_grad", 1025, 64, 32, True, False, False, "relu2",
         "relu3 & drop", None, True),
        ("fc1.backward_data", "backward_data", 32, 1024, 64, False, True, False,
         "relu3 & drop", None, "relu2", False),
        ("conv2.weight_grad", "weight_grad", 73, 16, 2048, True, False, False, "relu1",
         "relu2", None, True),
        ("conv2.backward_data", "backward_data", 2048, 72, 16, False, True, False, "relu2",
         None, "im2col(relu1)", False),
        ("conv1.weight_grad", "weight_grad", 10, 8, 2048, True, False, False, None, "relu1",
         None, True),
    ]


def test_bias_grad_folded_into_weight_grad():
    """A layer with a bias has no separate bias-gradient command: its weight gradient has
    one more row (A stored K x (M+1)); without a bias the weight gradient is M x N x K."""
    conv = LayerSpec(name="c", kind="conv2d", in_shape=(6, 6, 3), features=5, kernel=3,
                     padding=1, input_mask=("r",), output_mask=("s",))
    for bias, rows in ((False, 27), (True, 28)):
        commands = layer_commands(dataclasses.replace(conv, bias=bias), batch_size=2)
        assert [c.name for c in commands] == ["c.forward", "c.weight_grad", "c.backward_data"]
        weight = commands[1]
        assert (weight.M, weight.N, weight.K, weight.bias_row) == (rows, 5, 72, bias)
        assert weight.a_shape == (72, rows) and weight.macs == rows * 5 * 72
        assert (weight.a_mask, weight.b_mask) == ("r", "s")
    resnet = build_network("resnet18", width=8).commands(batch_size=4)
    assert not any(c.name.endswith(".bias_grad") for c in resnet)
    assert [(c.name, c.M) for c in resnet if c.bias_row] == [("fc.weight_grad", 65)]
    with pytest.raises(ValueError, match="bias_row needs a weight_grad command with M >= 2"):
        GemmCommand(name="x.forward", layer="x", kind="forward", M=4, N=4, K=4, bias_row=True)
    with pytest.raises(ValueError, match="bias_row needs a weight_grad command with M >= 2"):
        GemmCommand(name="x.weight_grad", layer="x", kind="weight_grad", M=1, N=4, K=4,
                    bias_row=True)
    with pytest.raises(ValueError, match="bias_row must be a bool"):
        GemmCommand(name="x.weight_grad", layer="x", kind="weight_grad", M=2, N=4, K=4,
                    bias_row=1)


def engine_view(calls):
    """The network's GEMMs (name, kind, M, N, K, transposes, accumulate, A and B as stored)
    as the engine runs them: each ``<layer>.bias_grad`` (M = 1, sharing B with the
    ``<layer>.weight_grad`` before it) becomes one more row of that weight gradient."""
    rows = []
    for call in calls:
        entry = [call.name, call.kind, call.M, call.N, call.K, call.transpose_a,
                 call.transpose_b, call.accumulate, call.a.shape, call.b.shape]
        if call.name.endswith(".bias_grad"):
            weight = rows[-1]
            assert weight[0] == call.name.replace(".bias_grad", ".weight_grad")
            assert (call.M, call.a.shape, call.b.shape) == (1, (1, call.K), weight[9])
            weight[2] += 1
            k, m = weight[8]                                 # A stored K x M
            weight[8] = (k, m + 1)
        else:
            rows.append(entry)
    return [tuple(row) for row in rows]


def test_resnet18_lowering_shapes():
    net = build_network("resnet18", width=8)
    commands = net.commands(batch_size=4)
    convs = [s for s in net.specs() if s.kind == "conv2d"]
    assert len(convs) == 20 and sum(s.kind == "linear" for s in net.specs()) == 1
    by_name = {c.name: c for c in commands}
    # stage 2 entry: 3x3 stride 2, 32x32x8 -> 16x16x16, and its 1x1 projection
    assert (by_name["layer2.0.conv1.forward"].M, by_name["layer2.0.conv1.forward"].K) == \
        (4 * 16 * 16, 9 * 8)
    proj = by_name["layer2.0.shortcut.backward_data"]
    assert (proj.M, proj.N, proj.K, proj.out_mask) == (4 * 16 * 16, 8, 16,
                                                       "im2col(layer1.1.relu_out)")
    assert by_name["layer4.1.conv2.weight_grad"].b_mask == "layer4.1.relu_out"
    assert by_name["fc.forward"].a_mask is None         # average pooled: no mask survives
    assert "stem.backward_data" not in by_name
    assert sum(c.kind == "backward_data" for c in commands) == 20


@pytest.mark.parametrize("net_name,width,upsample", [("digits_cnn", 2, 1), ("digits_mlp", 1, 1),
                                                     ("resnet18", 1, 4)])
@pytest.mark.parametrize("backend_name", ["fp32", "accel"])
def test_executed_gemms_are_the_lowered_commands(digits, net_name, width, upsample,
                                                 backend_name):
    """A training step executes exactly the listed commands, operands stored as listed."""
    batch = 3
    data = tiny(digits, batch, 1, upsample)
    net = build_network(net_name, width=width, dropout=0.5)
    backend = make_backend(backend_name)
    calls = []
    backend.listener = calls.append
    train_step(net, SGD(net.parameters(), lr=0.01), backend, data.x_train, data.y_train,
               rng=np.random.default_rng(0))
    expected = net.commands(batch_size=batch)
    assert engine_view(calls) == \
        [(c.name, c.kind, c.M, c.N, c.K, c.transpose_a, c.transpose_b, c.accumulate,
          c.a_shape, c.b_shape) for c in expected]
    assert sum(c.name.endswith(".bias_grad") for c in calls) == \
        sum(c.bias_row for c in expected) == sum(s.bias for s in net.specs())
    for call in calls:
        assert call.out.shape == (call.M, call.N) and call.out.dtype == np.float32


def test_lowering_masks_match_recorded_zeros(digits):
    """Where a spec says dY is gated by masks, dY is zero wherever those masks are."""
    net = build_network("digits_cnn", width=2, dropout=0.5)
    data = tiny(digits, 8, 1)
    ctx_tensors = {}
    train_step(net, SGD(net.parameters(), lr=0.01), make_backend("fp32"), data.x_train,
               data.y_train, rng=np.random.default_rng(1), tensors=ctx_tensors)
    for spec in net.specs():
        if spec.kind in ("conv2d", "linear") and spec.output_mask:
            keep = np.ones(ctx_tensors[f"{spec.name}/grad_output"].size // 8, dtype=bool)
            keep = np.broadcast_to(keep, (8, keep.size)).copy()
            for name in spec.output_mask:
                keep &= ctx_tensors[f"{name}/mask"].reshape(8, -1)
            grad = ctx_tensors[f"{spec.name}/grad_output"].reshape(8, -1)
            assert (~keep).any() and np.all(grad[~keep] == 0), spec.name


# -- layer numerics --------------------------------------------------------------------------

def _conv_reference(x, w, bias, dy, kernel, stride, padding):
    """float64 textbook convolution, its input and weight gradients (no im2col)."""
    x, w, dy = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    batch, height, width, cin = x.shape
    cout = w.shape[1]
    w = w.reshape(kernel, kernel, cin, cout)
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_h, out_w = dy.shape[1:3]
    y = np.zeros((batch, out_h, out_w, cout)) + bias
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for ky in range(kernel):
        for kx in range(kernel):
            window = xp[:, ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride]
            y += np.einsum("bijc,cd->bijd", window, w[ky, kx])
            dw[ky, kx] = np.einsum("bijc,bijd->cd", window, dy)
            dxp[:, ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride] += \
                np.einsum("bijd,cd->bijc", dy, w[ky, kx])
    dx = dxp[:, padding:padding + height, padding:padding + width]
    return y, dx, dw.reshape(-1, cout), dy.sum(axis=(0, 1, 2))


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (3, 2, 1), (1, 2, 0), (1, 1, 0),
                                                   (3, 1, 0)])
def test_conv2d_against_textbook(kernel, stride, padding):
    rng = np.random.default_rng(5)
    conv = Conv2d(name="c", in_shape=(7, 6, 3), out_channels=4, kernel=kernel, stride=stride,
                  padding=padding, rng=rng)
    conv.params["bias"][:] = rng.standard_normal(4).astype(np.float32)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    ctx = StepContext(backend=Fp32Backend())
    y = conv.forward(x, ctx)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = conv.backward(dy, ctx)
    want = _conv_reference(x, conv.params["weight"], conv.params["bias"], dy, kernel, stride,
                           padding)
    # float32 computation against float64: relative error of a few fp32 ulps of the sums
    for got, ref in zip((y, dx, conv.grads["weight"], conv.grads["bias"]), want):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,padding", [(3, 1), (3, 0), (1, 0), (5, 2), (2, 0)])
def test_transposed_weight_gives_the_input_gradient(kernel, padding):
    """Backward data of a stride-1 convolution as a transposed convolution: im2col of dY
    (padding ``kernel - 1 - padding``) times the flipped weight is the textbook dX."""
    from sim.nn.im2col import im2col, transposed_weight

    rng = np.random.default_rng(kernel * 10 + padding)
    x = rng.standard_normal((2, 7, 6, 3))
    w = rng.standard_normal((kernel * kernel * 3, 4))
    out_h, out_w = 7 + 2 * padding - kernel + 1, 6 + 2 * padding - kernel + 1
    dy = rng.standard_normal((2, out_h, out_w, 4))
    _, dx, _, _ = _conv_reference(x, w, 0.0, dy, kernel, 1, padding)
    cols = im2col(dy, kernel=kernel, stride=1, padding=kernel - 1 - padding)
    got = cols @ transposed_weight(w, kernel=kernel, channels=3)
    np.testing.assert_allclose(got.reshape(dx.shape), dx, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="must have kernel \\* kernel \\* channels"):
        transposed_weight(w, kernel=kernel, channels=4)


def test_accel_backend_is_golden_gemm_of_fp16_operands():
    rng = np.random.default_rng(6)
    layer = Linear(name="fc", in_features=5, out_features=3, rng=rng)
    layer.params["bias"][:] = rng.standard_normal(3).astype(np.float32)
    x = rng.standard_normal((4, 5)).astype(np.float32) * np.float32(3)
    y = layer.forward(x, StepContext(backend=AccelBackend()))
    want = gemm(from_float32("fp16", x), from_float32("fp16", layer.params["weight"]),
                c_bits=np.broadcast_to(layer.params["bias"].view(np.uint32), (4, 3)))
    assert np.array_equal(y.view(np.uint32), want)
    assert not np.array_equal(y, x @ layer.params["weight"] + layer.params["bias"])


def _loss(net, backend, x, y, seed):
    ctx = StepContext(backend=backend, training=True, rng=np.random.default_rng(seed))
    return softmax_cross_entropy(net.forward(x, ctx), y)[0]


@pytest.mark.parametrize("net_name,width,upsample", [("digits_cnn", 2, 1), ("digits_mlp", 1, 1),
                                                     ("resnet18", 2, 4)])
def test_gradients_match_finite_differences(digits, net_name, width, upsample):
    """Directional derivative of the loss along a random direction of every weight: central
    difference (float32 losses) against the backward pass."""
    data = tiny(digits, 6, 1, upsample)
    net = build_network(net_name, width=width, dropout=0.3, seed=3)
    backend = Fp32Backend()
    ctx = StepContext(backend=backend, training=True, rng=np.random.default_rng(9))
    _, grad, _ = softmax_cross_entropy(net.forward(data.x_train, ctx), data.y_train)
    net.backward(grad, ctx)
    rng = np.random.default_rng(4)
    directions = {name: rng.standard_normal(layer.params[key].shape).astype(np.float32)
                  for name, layer, key in net.parameters()}
    analytic = sum(float(np.sum(layer.grads[key].astype(np.float64) * directions[name]))
                   for name, layer, key in net.parameters())
    eps = 1e-4       # small: larger steps cross ReLU kinks of the deep ResNet
    losses = []
    for sign in (1, -1):
        for name, layer, key in net.parameters():
            layer.params[key] += np.float32(sign * eps) * directions[name]
        losses.append(_loss(net, backend, data.x_train, data.y_train, 9))
        for name, layer, key in net.parameters():
            layer.params[key] -= np.float32(sign * eps) * directions[name]
    numeric = (losses[0] - losses[1]) / (2 * eps)
    assert abs(analytic) > 1e-2
    assert numeric == pytest.approx(analytic, rel=2e-2)


def test_same_init_and_dropout_masks_for_both_backends(digits):
    data = tiny(digits, 8, 1)
    nets = {name: build_network("digits_cnn", width=2, dropout=0.5, seed=1)
            for name in ("fp32", "accel")}
    masks, logits = {}, {}
    for name, net in nets.items():
        ctx = StepContext(backend=make_backend(name), training=True,
                          rng=np.random.default_rng([7, 7]))
        logits[name] = net.forward(data.x_train, ctx)
        masks[name] = ctx.masks["drop"]
    for (_, a, key), (_, b, _) in zip(nets["fp32"].parameters(), nets["accel"].parameters()):
        assert np.array_equal(a.params[key], b.params[key])
    assert np.array_equal(masks["fp32"], masks["accel"]) and not masks["fp32"].all()
    assert not np.array_equal(logits["fp32"], logits["accel"])
    np.testing.assert_allclose(logits["accel"], logits["fp32"], rtol=0, atol=2e-2)


# -- training smoke test ---------------------------------------------------------------------

def test_training_smoke_and_capture_replays_on_golden_gemm(digits, tmp_path):
    data = tiny(digits, 24, 12)
    config = TrainConfig(net="digits_cnn", width=2, epochs=2, batch_size=8, lr=0.05)
    result = train(config, AccelBackend(), data, capture_dir=tmp_path, capture_steps=[1],
                   gemm_capture_steps=[0])
    assert result.steps == 6 and result.curve["epoch"] == [0, 1, 2]
    assert result.curve["train_loss"][2] < result.curve["train_loss"][1]
    for stats in result.sparsity.values():
        assert len(stats["activation_zero_fraction"]) == 2
        assert all(0 <= v <= 1 for values in stats.values() for v in values if v is not None)
    assert result.sparsity["fc2"]["mask_zero_fraction"] == [None, None]
    assert 0 < result.sparsity["fc1"]["mask_zero_fraction"][0] < 1
    assert sorted(p.split("/")[-1] for p in result.captures) == ["step_000000.npz",
                                                                  "step_000001.npz"]
    with np.load(tmp_path / "digits_cnn" / "accel" / "step_000001.npz") as step:
        for key in ("conv1/weight", "conv2/input", "conv2/grad_output", "conv2/grad_input",
                    "fc1/grad_weight", "relu1/mask", "drop/mask"):
            assert key in step.files, key
    with np.load(tmp_path / "digits_cnn" / "accel" / "step_000000.npz") as step:
        meta = json.loads(str(step["meta"]))
        commands = meta["gemm_commands"]       # as the network ran them: db separate
        assert [c["name"] for c in commands if not c["name"].endswith(".bias_grad")] == [
            c.name for c in config.build().commands(batch_size=8)]
        for command in commands:             # the input of an RTL replay, checked on golden
            prefix = f"gemm/{command['name']}"
            c_bits = step[f"{prefix}/c"].view(np.uint32) if command["accumulate"] else None
            out = gemm(step[f"{prefix}/a"], step[f"{prefix}/b"], c_bits=c_bits,
                       transpose_a=command["transpose_a"], transpose_b=command["transpose_b"])
            assert np.array_equal(out, step[f"{prefix}/out"].view(np.uint32)), command["name"]


def test_train_script_writes_results(tmp_path, monkeypatch):
    import scripts.results as results_module
    from scripts.train import main

    monkeypatch.setattr(results_module, "RESULTS_DIR", tmp_path)
    argv = ["--epochs", "1", "--width", "1", "--plot-dir", str(tmp_path),
            "--capture-dir", str(tmp_path / "cap"), "--capture-steps", "",
            "--gemm-capture-steps", ""]
    assert main(["--net", "digits_cnn", *argv]) == 0
    assert main(["--net", "digits_mlp", *argv]) == 0
    workloads = json.loads((tmp_path / "workloads.json").read_text())
    # a run records its network and keeps the others
    assert set(workloads["networks"]) == {"digits_cnn", "digits_mlp"}
    assert set(workloads["provenance"]) == {"networks", "units"}
    assert workloads["networks"]["digits_cnn"]["gemm_order"][:2] == ["conv1.forward",
                                                                    "conv2.forward"]
    entry = workloads["networks"]["digits_mlp"]
    assert entry["epochs"] == 1
    assert 0 < entry["test_accuracy_accel"] <= 1 and 0 < entry["test_accuracy_fp32"] <= 1
    assert set(entry["layers"]) == {"fc1", "fc2", "fc3"}
    assert set(entry["layers"]["fc2"]["sparsity"]) == {
        "activation_zero_fraction", "grad_zero_fraction", "mask_zero_fraction"}
    assert len(entry["curve"]["test_accuracy_accel"]) == 2
    over = json.loads((tmp_path / "sparsity_over_training.json").read_text())
    assert over["digits_mlp"]["epoch"] == [1] and set(over["provenance"]) == {"digits_cnn",
                                                                               "digits_mlp"}
    assert (tmp_path / "sparsity_digits_mlp.png").stat().st_size > 10_000


# -- bad input -------------------------------------------------------------------------------

CONV = {"name": "c", "kind": "conv2d", "in_shape": (8, 8, 1), "features": 4, "kernel": 3,
        "padding": 1}


@pytest.mark.parametrize("change,match", [
    ({"kind": "conv3d"}, r"c: kind must be one of \['conv2d', 'linear', 'relu', 'dropout'"),
    ({"name": ""}, "name must be a non-empty string"),
    ({"in_shape": (8, 8)}, r"in_shape of a conv2d layer must be \(H, W, C\)"),
    ({"in_shape": (8, 0, 1)}, "in_shape must be a non-empty tuple of integers >= 1"),
    ({"in_shape": [8, 8, 1]}, "in_shape must be a non-empty tuple"),
    ({"kind": "linear", "in_shape": (8, 8, 1)},
     r"in_shape of a linear layer must be \(features,\)"),
    ({"features": 0}, "c: features must be an integer >= 1"),
    ({"kernel": 0}, "c: kernel must be an integer >= 1"),
    ({"stride": 0}, "c: stride must be an integer >= 1"),
    ({"padding": -1}, "c: padding must be an integer >= 0"),
    ({"kernel": 11}, "kernel 11 is larger than the padded input 10x10"),
    ({"bias": 1}, "c: bias must be a bool"),
    ({"kind": "dropout", "p": 1.0}, r"dropout p must be a number in \[0, 1\), not 1.0"),
    ({"kind": "dropout", "p": -0.1}, r"dropout p must be a number in \[0, 1\)"),
    ({"input_mask": "relu1"}, "input_mask must be a tuple of mask layer names"),
])
def test_layer_spec_rejects(change, match):
    with pytest.raises(ValueError, match=match):
        LayerSpec(**{**CONV, **change})


@pytest.mark.parametrize("change,match", [
    ({"kind": "backward"}, r"kind must be one of \['forward', 'backward_data', 'weight_grad'\]"),
    ({"M": 0}, "M must be an integer >= 1"),
    ({"K": 2.0}, "K must be an integer >= 1"),
    ({"transpose_a": "yes"}, "transpose_a must be a bool"),
    ({"accumulate": True}, "c_source must be given exactly when accumulate is set"),
    ({"out_mask": "relu1"}, "out_mask is only meaningful for backward_data"),
])
def test_gemm_command_rejects(change, match):
    with pytest.raises(ValueError, match=match):
        GemmCommand(**{"name": "x.forward", "layer": "x", "kind": "forward", "M": 1, "N": 1,
                       "K": 1, **change})


def test_lowering_rejects_bad_batch_and_names():
    spec = LayerSpec(**CONV)
    for batch in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            layer_commands(spec, batch_size=batch)
    with pytest.raises(ValueError, match=r"phase must be one of \['forward', 'backward', 'all'\]"):
        layer_commands(spec, batch_size=1, phase="both")
    with pytest.raises(ValueError, match=r"layer names must be unique, not repeated: \['c'\]"):
        network_commands([spec, spec], batch_size=1)
    with pytest.raises(ValueError, match="spec must be a LayerSpec"):
        layer_commands({"kind": "conv2d"}, batch_size=1)


def test_transposed_backward_data_lowering():
    """Stride-1 convolutions with an input gradient only: K = kernel^2 x C_out, N = C_in, one
    row per input pixel; the masks those of the original backward data, ungathered."""
    from sim.lowering import transposed_backward_data

    spec = LayerSpec(**{**CONV, "in_shape": (7, 5, 3), "padding": 0, "input_grad": True,
                        "input_mask": ("relu1",), "output_mask": ("relu2",)})
    gemm = transposed_backward_data(spec, batch_size=2)
    assert (gemm.kind, gemm.M, gemm.K, gemm.N) == ("backward_data", 2 * 7 * 5, 9 * 4, 3)
    assert (gemm.a_mask, gemm.out_mask) == ("relu2", "relu1")
    original = layer_commands(spec, batch_size=2, phase="backward")[-1]
    assert original.kind == "backward_data" and original.K == 4 and original.N == 27
    for change in ({"stride": 2}, {"input_grad": False}):
        assert transposed_backward_data(LayerSpec(**{**CONV, **change}), batch_size=2) is None
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        transposed_backward_data(spec, batch_size=0)


def test_transposed_backward_data_on_a_captured_step(digits, tmp_path):
    """The transposed lowering rebuilt from a captured step computes the step's own input
    gradient (golden GEMM, fp16 operands, FP32 accumulation, against the layer's col2im
    result) and does the same non-zero MACs as the original lowering."""
    from sim.experiments.sparsity import timing_config
    from sim.experiments.transposed import measure_layers, transposed_gemms
    from sim.nn import build_network

    data = tiny(digits, 24, 12)
    config = TrainConfig(net="digits_cnn", width=2, epochs=1, batch_size=8, lr=0.05)
    train(config, AccelBackend(), data, capture_dir=tmp_path, capture_steps=[1])
    path = tmp_path / "digits_cnn" / "accel" / "step_000001.npz"
    net = build_network("digits_cnn", width=2)
    with np.load(path) as z:
        found = list(transposed_gemms(net, z, 8))
        want = z["conv2/grad_input"]
    assert [name for name, *_ in found] == ["conv2"]
    _, original, transposed, (a, b) = found[0]
    spec = {s.name: s for s in net.specs()}["conv2"]
    assert transposed.shape == (8 * 8 * 8, spec.in_shape[2], 9 * spec.features)
    got = gemm(a, b).view(np.float32).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)
    measured = measure_layers(timing_config(), net, path)["layers"]["conv2"]
    assert measured["original"]["ideal"] == measured["transposed"]["ideal"]
    assert measured["original"]["K"] == spec.features


def test_row_order_bands_rows_with_similar_zeros():
    """Rows of A reordered into bands of R: every row once, bands padded with -1 to R rows,
    and the reordered GEMM holds the rows (and masks) in that order."""
    from sim.experiments.sparsity import timing_config
    from sim.experiments.transposed import reordered, row_order
    from sim.skip_model import SparseGemm

    rng = np.random.default_rng(11)
    config = timing_config()            # 8 rows per band
    patterns = rng.random((4, 40)) < 0.3
    a = patterns[rng.integers(0, 4, 37)] & (rng.random((37, 40)) < 0.9)
    gemm = SparseGemm(a_nonzero=a, b_nonzero=np.ones((40, 5), dtype=bool),
                      out_keep=rng.random((37, 5)) < 0.5)
    for method in ("natural", "similarity"):
        order, result = row_order(config, gemm, method)
        assert len(order) % 8 == 0
        assert sorted(order[order >= 0].tolist()) == list(range(37))
        bands = order.reshape(-1, 8)
        assert [tuple(r for r in band if r >= 0) for band in bands] == list(result.groups)
        moved = reordered(gemm, order)
        assert np.array_equal(moved.a_nonzero[order >= 0], a[order[order >= 0]])
        assert not moved.a_nonzero[order < 0].any() and not moved.out_keep[order < 0].any()
    natural, _ = row_order(config, gemm, "natural")
    assert natural[:37].tolist() == list(range(37))
    _, similar = row_order(config, gemm, "similarity")
    _, plain = row_order(config, gemm, "natural")
    assert similar.cost < plain.cost         # four patterns: grouping them pays


def test_shape_mismatches_are_named():
    rng = np.random.default_rng(0)
    conv = Conv2d(name="conv1", in_shape=(8, 8, 1), out_channels=4, rng=rng)
    relu = ReLU(name="relu1", in_shape=(8, 8, 4))
    fc = Linear(name="fc1", in_features=100, out_features=10, rng=rng)
    with pytest.raises(ValueError, match=r"shape mismatch: fc1.in_shape is \(100,\), but the "
                                         r"output of relu1 has shape \(8, 8, 4\)"):
        Network(name="n", layers=[conv, relu, fc], input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match=r"shape mismatch: conv1.in_shape is \(8, 8, 1\), "
                                         r"but the network input has shape \(32, 32, 1\)"):
        Network(name="n", layers=[conv], input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match=r"layer names must be unique, not repeated: \['relu1'\]"):
        Network(name="n", layers=[conv, relu, ReLU(name="relu1", in_shape=(8, 8, 4))],
                input_shape=(8, 8, 1))
    ctx = StepContext(backend=Fp32Backend())
    with pytest.raises(ValueError, match=r"conv1: input shape \(2, 8, 8, 3\) does not match"):
        conv.forward(np.zeros((2, 8, 8, 3), dtype=np.float32), ctx)
    with pytest.raises(ValueError, match="conv1: input must be a float32 array, not float64"):
        conv.forward(np.zeros((2, 8, 8, 1)), ctx)
    with pytest.raises(ValueError, match="conv1: backward called without a forward pass"):
        conv.backward(np.zeros((2, 8, 8, 4), dtype=np.float32), ctx)
    conv.forward(np.zeros((2, 8, 8, 1), dtype=np.float32), ctx)
    with pytest.raises(ValueError, match=r"conv1: gradient shape \(2, 8, 8, 5\)"):
        conv.backward(np.zeros((2, 8, 8, 5), dtype=np.float32), ctx)
    backend = Fp32Backend()
    with pytest.raises(ValueError, match="g: inner dimensions differ: A is 2x3, B is 4x5"):
        backend.gemm(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32), name="g",
                     kind="forward")
    with pytest.raises(ValueError, match=r"kind must be one of \['forward', 'backward_data'"):
        backend.gemm(np.zeros((2, 3), np.float32), np.zeros((3, 5), np.float32), name="g",
                     kind="backward")
    with pytest.raises(ValueError, match=r"labels must be integers of shape \(2,\)"):
        softmax_cross_entropy(np.zeros((2, 10), np.float32), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        softmax_cross_entropy(np.zeros((2, 10), np.float32), np.array([0, 10]))


def test_train_rejects_mismatched_data(digits):
    with pytest.raises(ValueError, match=r"data input shape \(8, 8, 1\) does not match resnet18 "
                                         r"input_shape \(32, 32, 1\)"):
        train(TrainConfig(net="resnet18", epochs=1), Fp32Backend(), tiny(digits, 2, 1))
    with pytest.raises(ValueError, match="capture_dir must be given"):
        train(TrainConfig(epochs=1), Fp32Backend(), tiny(digits, 2, 1), capture_steps=[0])


@pytest.mark.parametrize("change,match", [
    ({"lr": 0.0}, "lr must be > 0, not 0.0"),
    ({"lr": -1.0}, "lr must be > 0"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\), not 1.0"),
    ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
    ({"loss_scale": 0.0}, "grad_scale must be > 0"),
    ({"dropout": 1.0}, r"dropout p must be a number in \[0, 1\), not 1.0"),
    ({"dropout": -0.5}, r"dropout p must be a number in \[0, 1\)"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, not 0"),
    ({"width": 0}, "width must be an integer >= 1, not 0"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"net": ""}, "net must be a network name, not ''"),
    ({"net": None}, "net must be a network name, not None"),
    ({"lr_schedule": "step"}, r"lr_schedule must be one of \['constant', 'cosine'\]"),
])
def test_train_config_rejects(change, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**change)


def test_train_config_builds_only_built_in_networks():
    """Any name labels a user's network (train(..., network=)); only the built-in ones build."""
    config = TrainConfig(net="vgg16")
    with pytest.raises(ValueError, match=r"net must be one of \['digits_cnn', 'digits_mlp', "
                                         r"'resnet18', 'vgg_small'\] to be built, not 'vgg16'"):
        config.build()


def test_builders_and_backends_reject_bad_parameters():
    with pytest.raises(ValueError, match="width must be an integer >= 1, not 0"):
        build_network("digits_cnn", width=0)
    with pytest.raises(ValueError, match="width must be an integer >= 1, not '8'"):
        build_network("resnet18", width="8")
    with pytest.raises(ValueError, match=r"dropout p must be a number in \[0, 1\), not 1"):
        build_network("digits_mlp", dropout=1)
    with pytest.raises(ValueError, match=r"net must be one of"):
        build_network("lenet")
    with pytest.raises(ValueError, match=r"backend must be one of \['accel', 'fp32'\]"):
        make_backend("gpu")
    with pytest.raises(ValueError, match=r"operand_format must be one of \['e4m3', 'e5m2', "
                                         r"'fp16'\], not 'bf16'"):
        AccelBackend(operand_format="bf16")
    with pytest.raises(ValueError, match="lr must be > 0"):
        SGD([], lr=0)
    with pytest.raises(ValueError, match="upsample must be an integer >= 1"):
        load_digits_split(upsample=0)
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        load_digits_split(test_fraction=1.0)


def test_train_script_rejects_bad_options(capsys):
    from scripts.train import parse_args
    for argv, message in [(["--net", "digits_cnn", "--lr", "0"], "lr must be > 0"),
                          (["--net", "digits_cnn", "--width", "0"], "width must be an integer"),
                          (["--net", "digits_cnn", "--backends", "gpu"], "backends must be"),
                          (["--net", "alexnet"], "invalid choice")]:
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert message in capsys.readouterr().err


def test_spec_and_config_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        LayerSpec(**CONV).kind = "linear"
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 1.0
