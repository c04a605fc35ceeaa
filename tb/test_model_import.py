"""Model import (sim.nn.model_import): PyTorch modules (torch.fx) and ONNX graphs become Sparta
networks that compute the same function and train; what the layer set cannot express raises an
error naming the op and its node. Also the gradients of the pool layers the import needs.

Every model is built here, from seeded random weights (nothing is downloaded or read).
Forward outputs are compared in FP32 with ``rtol=1e-5`` (and ``atol=1e-6`` for outputs near
zero), not bit for bit: the same float32 products are summed in a different order (torch's
convolution and BLAS kernels, the ONNX reference evaluator's loops, numpy's matmul of an im2col
matrix), which changes the last bits.
"""

import copy
import io
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.nn import (SGD, AvgPool2d, BasicBlock, Flatten, Fp32Backend, Linear, MaxPool2d,
                    Network, StepContext, softmax_cross_entropy, train_step)
from sim.nn.model_import import UnsupportedModelError, from_onnx, from_torch

ROOT = Path(__file__).resolve().parent.parent
RTOL, ATOL = 1e-5, 1e-6
BATCH = 5


def _torch():
    return pytest.importorskip("torch")


def _onnx():
    return pytest.importorskip("onnx")


def sparta_forward(net: Network, x_source: np.ndarray) -> np.ndarray:
    """Inference (no dropout) in FP32 on inputs in the source layout (NCHW or vectors)."""
    x = x_source.transpose(0, 2, 3, 1) if x_source.ndim == 4 else x_source
    return net.forward(np.ascontiguousarray(x, dtype=np.float32),
                       StepContext(backend=Fp32Backend()))


def inputs(shape, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((BATCH,) + shape).astype(np.float32)


def check_trains_one_step(net: Network, x_source: np.ndarray, classes: int):
    """One SGD step with dropout active: backward reaches every weight, gradients have the
    shapes of the weights, the weights move."""
    x = x_source.transpose(0, 2, 3, 1) if x_source.ndim == 4 else x_source
    x = np.ascontiguousarray(x)
    labels = np.arange(len(x)) % classes
    before = {name: layer.params[key].copy() for name, layer, key in net.parameters()}
    loss, _ = train_step(net, SGD(net.parameters(), lr=0.1), Fp32Backend(), x, labels,
                         rng=np.random.default_rng(0))
    assert np.isfinite(loss)
    for name, layer, key in net.parameters():
        assert layer.grads[key].shape == layer.params[key].shape, name
        assert not np.array_equal(layer.params[key], before[name]), name


# -- the models, in PyTorch ----------------------------------------------------------------------

def torch_models():
    """name -> (builder, per-sample input shape, classes). Builders so that torch is imported
    only by the tests that use it."""
    def mlp():
        nn = _torch().nn
        return nn.Sequential(nn.Linear(13, 16), nn.ReLU(), nn.Dropout(0.25), nn.Linear(16, 3))

    def cnn():
        torch = _torch()
        nn, F = torch.nn, torch.nn.functional

        class SmallCnn(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(2, 4, 3, padding=1)
                self.pool = nn.MaxPool2d(2)
                self.conv2 = nn.Conv2d(4, 6, 3, padding="same")
                self.drop = nn.Dropout(0.5)
                self.fc = nn.Linear(6 * 2 * 2, 10)

            def forward(self, x):
                x = self.pool(torch.relu(self.conv(x)))
                x = F.max_pool2d(F.relu(self.conv2(x)), kernel_size=3, stride=2, padding=1)
                x = x.view(x.size(0), -1)           # (c, y, x) order: the fc rows get permuted
                return self.fc(self.drop(x))

        return SmallCnn()

    def residual():
        torch = _torch()
        nn = torch.nn

        class Block(nn.Module):
            def __init__(self, channels_in, channels, stride):
                super().__init__()
                self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
                self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
                self.shortcut = nn.Identity() if stride == 1 and channels_in == channels else \
                    nn.Conv2d(channels_in, channels, 1, stride, bias=False)

            def forward(self, x):
                out = self.conv2(torch.relu(self.conv1(x)))
                return torch.relu(out + self.shortcut(x))

        class ResNetLet(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem = nn.Conv2d(1, 4, 3, padding=1)
                self.block1 = Block(4, 4, 1)
                self.block2 = Block(4, 8, 2)
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(8, 10)

            def forward(self, x):
                x = self.block2(self.block1(torch.relu(self.stem(x))))
                return self.fc(torch.flatten(self.pool(x), 1))

        return ResNetLet()

    def avgpool():
        nn = _torch().nn
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                             nn.AvgPool2d(3, stride=1, padding=1), nn.AdaptiveAvgPool2d((1, 1)),
                             nn.Flatten(), nn.Linear(4, 5))

    return {"mlp": (mlp, (13,), 3), "cnn": (cnn, (2, 8, 8), 10),
            "residual": (residual, (1, 8, 8), 10), "avgpool": (avgpool, (1, 8, 8), 5)}


TORCH_MODELS = ["mlp", "cnn", "residual", "avgpool"]


def torch_model(name):
    torch = _torch()
    build, shape, classes = torch_models()[name]
    torch.manual_seed(0)
    return build(), shape, classes


def torch_forward(module, x: np.ndarray) -> np.ndarray:
    torch = _torch()
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_import_computes_the_same_function_and_trains(name):
    module, shape, classes = torch_model(name)
    net = from_torch(module, shape)
    x = inputs(shape)
    np.testing.assert_allclose(sparta_forward(net, x), torch_forward(module, x),
                               rtol=RTOL, atol=ATOL)
    check_trains_one_step(net, x, classes)


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_import_gradients_match_autograd(name):
    """Backward of the imported network (dropout off) against torch's: the weight gradients,
    mapped to Sparta's layouts the way the weights are (an import of the module whose weights
    are replaced by their gradients)."""
    torch = _torch()
    module, shape, classes = torch_model(name)
    net = from_torch(module, shape)
    x = inputs(shape)
    labels = np.arange(BATCH) % classes
    module.eval()
    torch.nn.functional.cross_entropy(module(torch.from_numpy(x)),
                                      torch.from_numpy(labels)).backward()
    grads = copy.deepcopy(module)
    with torch.no_grad():
        for parameter, source in zip(grads.parameters(), module.parameters()):
            parameter.copy_(source.grad)
    expected = from_torch(grads, shape)
    ctx = StepContext(backend=Fp32Backend())
    x_sparta = np.ascontiguousarray(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x)
    _, dy, _ = softmax_cross_entropy(net.forward(x_sparta, ctx), labels)
    net.backward(dy, ctx)
    for layer, reference in zip(net.weight_layers(), expected.weight_layers()):
        for key in layer.params:
            np.testing.assert_allclose(layer.grads[key], reference.params[key], rtol=1e-4,
                                       atol=1e-6, err_msg=f"{layer.name}.{key}")


def test_torch_import_makes_the_expected_layers():
    module, shape, _ = torch_model("residual")
    net = from_torch(module, shape)
    assert net.name == "ResNetLet" and net.input_shape == (8, 8, 1)
    blocks = [layer for layer in net.layers if isinstance(layer, BasicBlock)]
    assert [b.name for b in blocks] == ["block1", "block2"]
    assert blocks[0].shortcut is None and blocks[1].shortcut is not None
    assert net.layers[0].spec.input_grad is False       # the first layer: no data gradient
    cnn = from_torch(*torch_model("cnn")[:2])
    kinds = [type(layer).__name__ for layer in cnn.layers]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
                     "Dropout", "Linear"]
    assert cnn.layers[2].spec.stride == 2 and cnn.layers[5].spec.padding == 1
    assert [c.kind for c in cnn.commands(batch_size=2)].count("forward") == 3


# -- the same kinds of models, as ONNX graphs ----------------------------------------------------

class OnnxGraph:
    """A small ONNX graph written node by node, with seeded random weights."""

    def __init__(self, input_shape, seed=0):
        self.onnx = _onnx()
        self.rng = np.random.default_rng(seed)
        self.input_shape, self.nodes, self.initializers = tuple(input_shape), [], []
        self.last = "x"

    def constant(self, array) -> str:
        name = f"c{len(self.initializers)}"
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def weights(self, *shape) -> str:
        scale = 1 / np.sqrt(np.prod(shape[1:]))
        return self.constant((self.rng.standard_normal(shape) * scale).astype(np.float32))

    def add(self, op_type, *inputs, name=None, **attrs) -> str:
        output = f"t{len(self.nodes)}"
        inputs = inputs or (self.last,)
        self.nodes.append(self.onnx.helper.make_node(
            op_type, list(inputs), [output], name=name or f"{op_type.lower()}{len(self.nodes)}",
            **attrs))
        self.last = output
        return output

    def conv(self, channels_in, channels, kernel=3, stride=1, pad=1, bias=True, source=None):
        inputs = [source or self.last, self.weights(channels, channels_in, kernel, kernel)]
        if bias:
            inputs.append(self.constant(self.rng.standard_normal(channels).astype(np.float32)))
        return self.add("Conv", *inputs, kernel_shape=[kernel, kernel], strides=[stride, stride],
                        pads=[pad] * 4)

    def model(self):
        helper, float32 = self.onnx.helper, self.onnx.TensorProto.FLOAT
        graph = helper.make_graph(
            self.nodes, "test_graph",
            [helper.make_tensor_value_info("x", float32, ["batch", *self.input_shape])],
            [helper.make_tensor_value_info(self.last, float32, ["batch", "out"])],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        self.onnx.checker.check_model(model)
        return model


def onnx_mlp():
    g = OnnxGraph((13,))
    g.add("MatMul", "x", g.weights(13, 16))
    g.add("Add", g.last, g.constant(g.rng.standard_normal(16).astype(np.float32)))  # a bias
    g.add("Relu")
    g.add("Dropout", g.last, g.constant(np.float32(0.25)), name="drop")
    g.add("Gemm", g.last, g.weights(3, 16), g.constant(np.zeros(3, np.float32) + 0.5),
          transB=1)
    return g.model(), (13,), 3


def onnx_cnn():
    g = OnnxGraph((2, 8, 8))
    g.conv(2, 4)
    g.add("Relu")
    g.add("MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    g.conv(4, 6)
    g.add("Relu")
    g.add("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    g.add("Reshape", g.last, g.constant(np.array([0, -1], dtype=np.int64)))
    g.add("Gemm", g.last, g.weights(24, 10), g.constant(np.ones(10, np.float32)))
    return g.model(), (2, 8, 8), 10


def onnx_residual():
    g = OnnxGraph((1, 8, 8))
    g.conv(1, 4)
    x = g.add("Relu")
    for channels_in, channels, stride in ((4, 4, 1), (4, 8, 2)):
        g.conv(channels_in, channels, stride=stride, bias=False, source=x)
        g.add("Relu")
        branch = g.conv(channels, channels, bias=False)
        shortcut = x if channels_in == channels else \
            g.conv(channels_in, channels, kernel=1, stride=stride, pad=0, bias=False, source=x)
        g.add("Add", branch, shortcut)
        x = g.add("Relu")
    g.add("GlobalAveragePool")
    g.add("Flatten")
    g.add("Gemm", g.last, g.weights(8, 10))
    return g.model(), (1, 8, 8), 10


def onnx_avgpool():
    g = OnnxGraph((1, 8, 8))
    g.conv(1, 3)
    g.add("Relu")
    g.add("AveragePool", kernel_shape=[2, 2], strides=[2, 2])
    g.conv(3, 4)
    g.add("Relu")
    g.add("AveragePool", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
          count_include_pad=1)
    g.add("GlobalAveragePool")
    g.add("Flatten")
    g.add("MatMul", g.last, g.weights(4, 5))
    return g.model(), (1, 8, 8), 5


ONNX_MODELS = {"mlp": onnx_mlp, "cnn": onnx_cnn, "residual": onnx_residual,
               "avgpool": onnx_avgpool}


def onnx_forward(model, x: np.ndarray) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, {"x": x})[0]


@pytest.mark.parametrize("name", ONNX_MODELS)
def test_onnx_import_computes_the_same_function_and_trains(name):
    model, shape, classes = ONNX_MODELS[name]()
    net = from_onnx(model, input_shape=shape)
    assert net.input_shape == ((shape[1], shape[2], shape[0]) if len(shape) == 3 else shape)
    x = inputs(shape)
    np.testing.assert_allclose(sparta_forward(net, x), onnx_forward(model, x),
                               rtol=RTOL, atol=ATOL)
    check_trains_one_step(net, x, classes)


def test_onnx_import_reads_the_file_and_its_shape(tmp_path):
    onnx = _onnx()
    model, shape, _ = onnx_cnn()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1      # a fixed batch
    path = tmp_path / "small_cnn.onnx"
    onnx.save(model, str(path))
    net = from_onnx(path)
    assert net.name == "small_cnn" and net.input_shape == (8, 8, 2)
    assert from_onnx(model).name == "test_graph"
    assert [type(layer).__name__ for layer in net.layers][-2:] == ["Flatten", "Linear"]
    with pytest.raises(ValueError, match=r"input_shape \(3, 8, 8\) does not match"):
        from_onnx(path, input_shape=(3, 8, 8))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(ValueError, match="give input_shape"):
        from_onnx(model)


_EXPORT_WARNINGS = [
    "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning",
    "ignore:The feature will be removed:DeprecationWarning"]


@pytest.mark.filterwarnings(*_EXPORT_WARNINGS)
@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_onnx_export_imports_like_the_module(name):
    """The graphs torch's own exporter writes (Gemm with transB, Reshape by a Constant)."""
    torch, onnx = _torch(), _onnx()
    module, shape, _ = torch_model(name)
    buffer = io.BytesIO()
    try:
        torch.onnx.export(module.eval(), (torch.zeros((1,) + shape),), buffer, dynamo=False)
    except (TypeError, RuntimeError, ImportError) as exc:   # the legacy exporter is going away
        pytest.skip(f"torch.onnx.export(dynamo=False) is not available: {exc}")
    net = from_onnx(onnx.load_from_string(buffer.getvalue()))
    x = inputs(shape)
    np.testing.assert_allclose(sparta_forward(net, x), torch_forward(module, x),
                               rtol=RTOL, atol=ATOL)


# -- what cannot be expressed --------------------------------------------------------------------

def test_unsupported_torch_ops_name_the_op_and_the_node():
    torch = _torch()
    nn = torch.nn
    with pytest.raises(UnsupportedModelError, match=r"Sigmoid node '1': not supported") as info:
        from_torch(nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)), (4,))
    assert (info.value.op_type, info.value.node) == ("Sigmoid", "1")
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, groups=2), nn.Flatten(),
                            nn.Linear(64, 2))
    with pytest.raises(UnsupportedModelError, match=r"Conv2d node '0': groups=2"):
        from_torch(grouped, (2, 4, 4))
    dilated = nn.Sequential(nn.Conv2d(1, 2, 3, padding=2, dilation=2), nn.Flatten(),
                            nn.Linear(32, 2))
    with pytest.raises(UnsupportedModelError, match=r"Conv2d node '0': dilation=\(2, 2\)"):
        from_torch(dilated, (1, 4, 4))

    class Tanh(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.tanh(x))

    with pytest.raises(UnsupportedModelError, match=r"tanh node 'tanh': not supported"):
        from_torch(Tanh(), (4,))

    class Biased(nn.Module):            # a residual whose convolutions have biases
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Linear(32, 2)

        def forward(self, x):
            x = torch.relu(self.conv2(torch.relu(self.conv1(x))) + x)
            return self.fc(x.flatten(1))

    with pytest.raises(UnsupportedModelError, match=r"add node 'add': its branch is Conv2d -> "
                                                    r"relu -> Conv2d; a residual Add becomes"):
        from_torch(Biased(), (2, 4, 4))
    with pytest.raises(UnsupportedModelError, match=r"Output node .*end the model with a Linear"):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten()), (1, 4, 4))
    with pytest.raises(UnsupportedModelError, match=r"MaxPool2d node '0': ceil_mode=True"):
        from_torch(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(),
                                 nn.Linear(9, 2)), (1, 5, 5))


def test_unsupported_onnx_ops_name_the_op_and_the_node():
    g = OnnxGraph((4,))
    g.add("Gemm", "x", g.weights(4, 4))
    g.add("Sigmoid", name="gate")
    g.add("Gemm", g.last, g.weights(4, 2))
    with pytest.raises(UnsupportedModelError, match=r"Sigmoid node 'gate': not supported"):
        from_onnx(g.model())
    g = OnnxGraph((2, 4, 4))
    g.add("Conv", "x", g.weights(4, 1, 3, 3), kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2,
          name="grouped")
    with pytest.raises(UnsupportedModelError, match=r"Conv node 'grouped': group=2"):
        from_onnx(g.model())
    g = OnnxGraph((2, 4, 4))
    g.add("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="pool")
    with pytest.raises(UnsupportedModelError, match=r"AveragePool node 'pool': padding with "
                                                    r"count_include_pad=0"):
        from_onnx(g.model())
    g = OnnxGraph((2, 4, 4))
    g.add("Conv", "x", g.weights(2, 2, 3, 3), kernel_shape=[3, 2], name="wide")
    with pytest.raises(UnsupportedModelError, match=r"Conv node 'wide': kernel_shape \[3, 2\]"):
        from_onnx(g.model())
    g = OnnxGraph((4,))
    g.add("MatMul", "x", g.weights(4, 4))
    first = g.last
    g.add("Relu")
    g.add("Add", first, g.last, name="skip")
    with pytest.raises(UnsupportedModelError, match=r"Add node 'skip': its branch is Relu"):
        from_onnx(g.model())


# -- the pool layers' gradients ------------------------------------------------------------------

POOLS = [(MaxPool2d, 2, None, 0), (MaxPool2d, 3, 2, 1), (MaxPool2d, 3, 1, 1),
         (AvgPool2d, 2, None, 0), (AvgPool2d, 3, 2, 1), (AvgPool2d, 3, 1, 1)]


def _pool(cls, kernel, stride, padding, shape=(7, 7, 3)):
    return cls(name="pool", in_shape=shape, kernel=kernel, stride=stride, padding=padding)


@pytest.mark.parametrize("cls, kernel, stride, padding", POOLS)
def test_pool_gradient_is_numerical(cls, kernel, stride, padding):
    """The backward pass against central differences of ``sum(w * pool(x))``. Distinct dyadic
    inputs: a max pool's outputs are inputs, exact, and a step below half the gap between two
    inputs changes no window's maximum, so its differences are exact; an average pool is
    linear (any step), its float32 means round (hence the tolerance)."""
    layer = _pool(cls, kernel, stride, padding)
    rng = np.random.default_rng(3)
    x = (rng.permutation(np.arange(2 * 7 * 7 * 3)) / 16).reshape((2, 7, 7, 3)).astype(np.float32)
    ctx = StepContext(backend=Fp32Backend())
    weights = rng.standard_normal((2,) + layer.out_shape).astype(np.float32)
    layer.forward(x, ctx)
    grad = layer.backward(weights, ctx)
    numeric = np.zeros_like(x, dtype=np.float64)
    step = 1 / 64 if cls is MaxPool2d else 1.0
    for index in np.ndindex(x.shape):
        sums = []
        for sign in (1, -1):
            shifted = x.copy()
            shifted[index] += sign * step
            sums.append(np.sum(weights.astype(np.float64) * layer.forward(shifted, ctx)))
        numeric[index] = (sums[0] - sums[1]) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls, kernel, stride, padding", POOLS)
def test_pool_matches_torch(cls, kernel, stride, padding):
    torch = _torch()
    F = torch.nn.functional
    layer = _pool(cls, kernel, stride, padding)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 7, 7, 3)).astype(np.float32)
    dy = rng.standard_normal((2,) + layer.out_shape).astype(np.float32)
    ctx = StepContext(backend=Fp32Backend())
    y = layer.forward(x, ctx)
    dx = layer.backward(dy, ctx)
    source = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    pool = F.max_pool2d if cls is MaxPool2d else F.avg_pool2d
    reference = pool(source, kernel, stride, padding)
    reference.backward(torch.from_numpy(dy.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(y, reference.detach().numpy().transpose(0, 2, 3, 1),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, source.grad.numpy().transpose(0, 2, 3, 1),
                               rtol=RTOL, atol=ATOL)


def test_pool_layers_infer_shapes_and_lower_to_no_gemm():
    rng = np.random.default_rng(0)
    net = Network(name="pooled", input_shape=(9, 9, 2), layers=[
        MaxPool2d(name="max", kernel=3), AvgPool2d(name="avg", kernel=2, stride=1, padding=1),
        Flatten(name="flat"), Linear(name="fc", out_features=3, rng=rng)])
    assert [layer.out_shape for layer in net.layers] == [(3, 3, 2), (4, 4, 2), (32,), (3,)]
    assert [c.layer for c in net.commands(batch_size=2)] == ["fc"] * 3
    with pytest.raises(ValueError, match="padding must be at most half the kernel"):
        MaxPool2d(name="p", in_shape=(4, 4, 1), kernel=2, padding=2)
    with pytest.raises(ValueError, match="kernel 5 is larger than the padded input 4x4"):
        AvgPool2d(name="p", in_shape=(4, 4, 1), kernel=5)


# -- the command line ----------------------------------------------------------------------------

def test_cli_trains_a_torch_module_file(tmp_path, capsys):
    _torch()
    from scripts.sparta import main

    out = tmp_path / "torch_mlp.json"
    assert main(["train", "--network-file", str(ROOT / "examples" / "torch_mlp.py"),
                 "--epochs", "1", "--backends", "fp32", "--out", str(out)]) == 0
    assert "torch_mlp fp32: test accuracy" in capsys.readouterr().out and out.is_file()


def test_cli_trains_an_onnx_file_with_its_data(tmp_path, capsys):
    onnx = _onnx()
    from scripts.sparta import main

    model, shape, classes = onnx_mlp()
    onnx.save(model, str(tmp_path / "mlp.onnx"))
    data = tmp_path / "data.py"
    data.write_text(
        "import numpy as np\nfrom sim.nn import Dataset\n\n\ndef load():\n"
        "    rng = np.random.default_rng(0)\n"
        "    x = rng.standard_normal((40, 13)).astype(np.float32)\n"
        "    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)\n"
        "    return Dataset(x[:30], y[:30], x[30:], y[30:])\n")
    out = tmp_path / "mlp.json"
    assert main(["train", "--network-file", str(tmp_path / "mlp.onnx"), "--data", str(data),
                 "--epochs", "1", "--backends", "fp32", "--out", str(out)]) == 0
    assert "mlp fp32: test accuracy" in capsys.readouterr().out and out.is_file()
    with pytest.raises(SystemExit):
        main(["train", "--network-file", str(tmp_path / "mlp.onnx")])
    assert "needs --data FILE.py" in capsys.readouterr().err


def test_importing_sim_nn_needs_neither_torch_nor_onnx():
    import subprocess

    code = ("import sys, sim.nn, sim.nn.model_import, scripts.user_network; "
            "print(sorted({'torch', 'onnx'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"

