"""A PyTorch module (through ``torch.fx``) or an ONNX graph as a Sparta :class:`Network`.

Both front ends translate their graph into one small list of operations (:class:`_Op`), and one
converter turns that list into the layers of :mod:`sim.nn.layers`, carrying the weights over:

=====================================  ================================================
source op                              Sparta layer
=====================================  ================================================
Conv / ``nn.Conv2d``                   :class:`Conv2d` (square kernel, equal strides and
                                       symmetric padding; no dilation, no groups)
Gemm, MatMul by a constant /           :class:`Linear` (a following Add of a constant
``nn.Linear``, ``F.linear``, matmul    vector becomes its bias)
Relu / ``nn.ReLU``, ``F.relu``         :class:`ReLU`
Dropout / ``nn.Dropout``               :class:`Dropout` (the same ``p``)
MaxPool / ``nn.MaxPool2d``             :class:`MaxPool2d`
AveragePool / ``nn.AvgPool2d``         :class:`AvgPool2d` (padding only if it counts)
GlobalAveragePool /                    :class:`GlobalAvgPool`
``nn.AdaptiveAvgPool2d(1)``
Add of two tensors                     :class:`BasicBlock`, when the graph around it is
                                       ``relu(conv3x3(relu(conv3x3(x))) + x)`` (or
                                       ``+ conv1x1(x)`` when stride or channels change),
                                       convolutions without bias
Flatten, Reshape, ``view``             :class:`Flatten` (to ``(batch, features)`` only)
Identity, ``nn.Identity``              nothing
=====================================  ================================================

Anything else (an op, an attribute such as dilation or groups, a graph that is not a chain of
these) raises :class:`UnsupportedModelError`, which names the op type and the node.

Layouts: the source is NCHW, Sparta is NHWC. ``input_shape`` arguments are in the source's
layout, per sample (``(C, H, W)`` or ``(features,)``); the network's ``input_shape`` is
``(H, W, C)``, so images are fed as ``x_nchw.transpose(0, 2, 3, 1)``. Convolution weights
(``O, I, kH, kW``) become the ``(kH * kW * I, O)`` matrix of :class:`Conv2d` (rows ``(ky, kx,
c_in)``). A Flatten of a ``(C, H, W)`` tensor orders its features ``(c, y, x)`` in the source
and ``(y, x, c)`` in Sparta; the rows of the next Linear layer's weight are permuted to match,
so the network computes the same function. The output must be a vector per sample (logits).

torch and onnx are imported inside :func:`from_torch` and :func:`from_onnx` only (the
``import`` extra of ``pyproject.toml``); importing this module needs neither.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from .layers import (AvgPool2d, BasicBlock, Conv2d, Dropout, Flatten, GlobalAvgPool, Linear,
                     MaxPool2d, ReLU)
from .network import Network

__all__ = ["UnsupportedModelError", "from_onnx", "from_torch"]


class UnsupportedModelError(ValueError):
    """An op, attribute or pattern of an imported model that Sparta's layers cannot express.

    Attributes
    ----------
    op_type : str
        The source op (``"Conv"``, ``"Sigmoid"``, ``"Conv2d"``, ``"Tensor.mean"``).
    node : str
        The node's name in the source graph (an ONNX node name, a torch module path or
        ``torch.fx`` node name).
    """

    def __init__(self, op_type: str, node: str, reason: str):
        self.op_type, self.node, self.reason = op_type, node, reason
        super().__init__(f"{op_type} node {node!r}: {reason}")


@dataclasses.dataclass
class _Op:
    """One operation of the source graph, in terms the converter knows.

    ``kind`` is one of ``conv`` (attrs ``weight`` OIHW, ``bias``, ``stride``, ``padding``),
    ``linear`` (``weight`` as ``(in, out)``, ``bias``), ``relu``, ``dropout`` (``p``),
    ``max_pool`` / ``avg_pool`` (``kernel``, ``stride``, ``padding``), ``global_avg_pool``,
    ``add`` (two tensors), ``bias_add`` (``value``, a constant), ``reshape`` (``shape``, the
    per-sample target, ``-1`` for the rest, ``0`` for "as the input") or ``identity``.
    ``out_shape`` is the per-sample output shape in the source layout when the front end knows
    it (torch), checked against the layers made.
    """

    kind: str
    name: str
    op_type: str
    inputs: tuple[str, ...]
    output: str
    attrs: dict = dataclasses.field(default_factory=dict)
    out_shape: tuple[int, ...] | None = None

    def unsupported(self, reason: str) -> UnsupportedModelError:
        return UnsupportedModelError(self.op_type, self.name, reason)


@dataclasses.dataclass
class _Graph:
    name: str
    ops: list[_Op]
    input: str
    output: str
    input_shape: tuple[int, ...]     # per sample, source layout


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """A tensor of the network being built: its per-sample shape in the source and in Sparta,
    and for a vector, ``order``: Sparta's element ``i`` is the source's element ``order[i]``
    (None: the same order)."""

    source: tuple[int, ...]
    sparta: tuple[int, ...]
    order: np.ndarray | None = None

    @property
    def spatial(self) -> bool:
        return len(self.sparta) == 3


def _input_tensor(shape: tuple[int, ...]) -> _Tensor:
    if len(shape) == 3:
        channels, height, width = shape
        return _Tensor(shape, (height, width, channels))
    if len(shape) == 1:
        return _Tensor(shape, shape)
    raise UnsupportedModelError("Input", "input", f"per-sample input shape {shape} is neither "
                                f"(C, H, W) nor (features,)")


def _per_sample_shape(shape, what: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        shape = None
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"{what} must be a per-sample shape such as (C, H, W) or (features,), "
                         f"not {shape!r}")
    return shape


# -- the converter -----------------------------------------------------------------------------

_BLOCK_PATTERN = ("a residual Add becomes Sparta's BasicBlock only: relu(conv2(relu(conv1(x))) "
                  "+ shortcut(x)) with conv1 3x3 stride s padding 1, conv2 3x3 stride 1 "
                  "padding 1, the shortcut x itself (s = 1, same channels) or else a 1x1 "
                  "stride-s convolution, no biases")


def _conv_matrix(weight: np.ndarray) -> np.ndarray:
    """OIHW convolution weights as :class:`Conv2d`'s ``(kH * kW * I, O)`` matrix."""
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(
        kernel_h * kernel_w * in_channels, out_channels), dtype=np.float32)


class _Converter:
    def __init__(self, graph: _Graph):
        self.graph = graph
        self.consumers: dict[str, list[_Op]] = defaultdict(list)
        produced = {graph.input}
        for op in graph.ops:
            for tensor in op.inputs:
                self.consumers[tensor].append(op)
            produced.add(op.output)
        for op in graph.ops:
            missing = [t for t in op.inputs if t not in produced]
            if missing:
                raise op.unsupported(f"its input {missing[0]!r} is neither the model input "
                                     f"nor the output of a supported op")
        self.layers = []
        self.names: set[str] = set()
        self.converted: set[int] = set()
        self.input_grad = False          # layers before the first weights need no gradient
        self.rng = np.random.default_rng(0)   # initial weights, all overwritten

    def unique(self, name: str) -> str:
        candidate, index = name, 1
        while candidate in self.names:
            candidate, index = f"{name}_{index}", index + 1
        self.names.add(candidate)
        return candidate

    def fold_bias_adds(self) -> None:
        """A bias-free Conv/Linear followed only by an Add of a per-feature constant takes the
        constant as its bias (MatMul + Add from exporters, ``matmul(x, w) + b`` in torch)."""
        producer = {op.output: op for op in self.graph.ops}
        for op in list(self.graph.ops):
            if op.kind != "bias_add":
                continue
            source = producer.get(op.inputs[0])
            if source is None or source.kind not in ("conv", "linear") or \
                    source.attrs["bias"] is not None or self.consumers[source.output] != [op]:
                continue
            features = source.attrs["weight"].shape[0 if source.kind == "conv" else 1]
            target = (1, features, 1, 1) if source.kind == "conv" else (1, features)
            value = np.asarray(op.attrs["value"], dtype=np.float32)
            if value.ndim > len(target):
                continue
            try:
                bias = np.broadcast_to(value, target).reshape(features)
            except ValueError:
                continue
            source.attrs["bias"] = np.array(bias, dtype=np.float32)
            source.output, source.out_shape = op.output, op.out_shape or source.out_shape
            self.graph.ops.remove(op)
            producer[source.output] = source
        self.consumers = defaultdict(list)
        for op in self.graph.ops:
            for tensor in op.inputs:
                self.consumers[tensor].append(op)

    def run(self) -> Network:
        self.fold_bias_adds()
        graph = self.graph
        tensor, state = graph.input, _input_tensor(graph.input_shape)
        input_shape = state.sparta
        while tensor != graph.output:
            users = self.consumers[tensor]
            if not users:
                raise UnsupportedModelError("Output", graph.output,
                                            f"the graph output is not reached from the input "
                                            f"along a chain of layers (stuck at {tensor!r})")
            if len(users) == 1 and users[0].kind != "add":
                op = users[0]
                state = self.convert(op, state)
                self.check_shape(op, state)
                self.converted.add(id(op))
                tensor = op.output
            else:
                tensor, state = self.residual(tensor, users, state)
        left = [op for op in graph.ops if id(op) not in self.converted]
        if left:
            raise left[0].unsupported("not on the chain of layers from the input to the output "
                                      "(a branch that the layer set cannot express)")
        if len(state.sparta) != 1 or state.order is not None:
            raise UnsupportedModelError("Output", graph.output,
                                        f"the output must be a vector per sample (logits, "
                                        f"features in the source's order), not of shape "
                                        f"{state.source}: end the model with a Linear layer")
        if not self.layers:
            raise UnsupportedModelError("Output", graph.output, "the model has no layers")
        return Network(name=graph.name, layers=self.layers, input_shape=input_shape)

    @staticmethod
    def check_shape(op: _Op, state: _Tensor) -> None:
        if op.out_shape is not None and tuple(op.out_shape) != state.source:
            raise op.unsupported(f"Sparta's layer gives shape {state.source}, the source model "
                                 f"{tuple(op.out_shape)} (ceil_mode or an unusual padding?)")

    def build(self, op: _Op, make):
        """``make()`` a layer, re-raising its ValueError as the op's."""
        try:
            return make()
        except UnsupportedModelError:
            raise
        except ValueError as exc:
            raise op.unsupported(str(exc)) from exc

    def conv(self, op: _Op, state: _Tensor, name: str) -> Conv2d:
        weight, bias = op.attrs["weight"], op.attrs["bias"]
        out_channels, in_channels, kernel, _ = weight.shape
        if not state.spatial or state.sparta[2] != in_channels:
            raise op.unsupported(f"expects {in_channels} input channels of an image, the input "
                                 f"has shape {state.source}")
        layer = self.build(op, lambda: Conv2d(
            name=name, in_shape=state.sparta, out_channels=out_channels, kernel=kernel,
            stride=op.attrs["stride"], padding=op.attrs["padding"], bias=bias is not None,
            input_grad=self.input_grad, rng=self.rng))
        layer.params["weight"] = _conv_matrix(weight)
        if bias is not None:
            layer.params["bias"] = np.array(bias, dtype=np.float32).reshape(out_channels)
        return layer

    def convert(self, op: _Op, state: _Tensor) -> _Tensor:
        """The layer(s) of a one-input op; returns the state of its output."""
        if len(op.inputs) != 1 or op.kind == "add":
            raise op.unsupported("takes two tensors (only a residual Add may)")
        kind, name = op.kind, self.unique(op.name)
        if kind == "identity":
            return state
        if kind == "conv":
            layer = self.conv(op, state, name)
            self.input_grad = True
            self.layers.append(layer)
            height, width, channels = layer.out_shape
            return _Tensor((channels, height, width), layer.out_shape)
        if kind == "linear":
            weight, bias = op.attrs["weight"], op.attrs["bias"]
            if len(state.sparta) != 1 or state.sparta[0] != weight.shape[0]:
                raise op.unsupported(f"expects {weight.shape[0]} input features, the input has "
                                     f"shape {state.source} (flatten images first)")
            layer = self.build(op, lambda: Linear(
                name=name, in_features=weight.shape[0], out_features=weight.shape[1],
                bias=bias is not None, input_grad=self.input_grad, rng=self.rng))
            self.input_grad = True
            rows = weight if state.order is None else weight[state.order]
            layer.params["weight"] = np.ascontiguousarray(rows, dtype=np.float32)
            if bias is not None:
                layer.params["bias"] = np.array(bias, dtype=np.float32).reshape(weight.shape[1])
            self.layers.append(layer)
            return _Tensor((weight.shape[1],), (weight.shape[1],))
        if kind == "relu":
            self.layers.append(ReLU(name=name, in_shape=state.sparta))
            return state
        if kind == "dropout":
            self.layers.append(self.build(op, lambda: Dropout(name=name, in_shape=state.sparta,
                                                              p=op.attrs["p"])))
            return state
        if kind in ("max_pool", "avg_pool", "global_avg_pool"):
            if not state.spatial:
                raise op.unsupported(f"pools images, the input has shape {state.source}")
            if kind == "global_avg_pool":
                self.layers.append(GlobalAvgPool(name=name, in_shape=state.sparta))
                channels = state.sparta[2]
                return _Tensor((channels, 1, 1) if op.attrs.get("keepdims", True)
                               else (channels,), (channels,))
            pool = MaxPool2d if kind == "max_pool" else AvgPool2d
            layer = self.build(op, lambda: pool(name=name, in_shape=state.sparta,
                                                kernel=op.attrs["kernel"],
                                                stride=op.attrs["stride"],
                                                padding=op.attrs["padding"]))
            self.layers.append(layer)
            height, width, channels = layer.out_shape
            return _Tensor((channels, height, width), layer.out_shape)
        if kind == "reshape":
            return self.reshape(op, name, state)
        if kind == "bias_add":
            raise op.unsupported("adds a constant that is not the per-feature bias of the "
                                 "Conv/Linear right before it")
        raise op.unsupported(f"no Sparta layer for {kind!r}")

    def reshape(self, op: _Op, name: str, state: _Tensor) -> _Tensor:
        size = math.prod(state.source)
        target = [state.source[i] if d == 0 and i < len(state.source) else d
                  for i, d in enumerate(op.attrs["shape"])]
        if target.count(-1) == 1:
            known = math.prod(d for d in target if d != -1)
            if known and size % known == 0:
                target[target.index(-1)] = size // known
        target = tuple(target)
        if target == state.source:
            return state
        if target != (size,):
            raise op.unsupported(f"reshapes {state.source} to {target}: only a flatten to "
                                 f"(batch, features) is supported")
        if not state.spatial:           # (C, 1, 1) after a global pool: already a vector
            return _Tensor(target, state.sparta, state.order)
        channels, height, width = state.source
        self.layers.append(Flatten(name=name, in_shape=state.sparta))
        order = None
        if height * width > 1 and channels > 1:
            order = np.arange(size).reshape(channels, height, width).transpose(1, 2, 0).ravel()
        return _Tensor(target, (size,), order)

    def branch(self, op: _Op) -> tuple[list[_Op], _Op | None]:
        """The ops from ``op`` along single-consumer links up to the first Add."""
        ops = []
        while op.kind != "add" and len(ops) < 8:
            ops.append(op)
            users = self.consumers[op.output]
            if len(users) != 1 or op.output == self.graph.output:
                return ops, None
            op = users[0]
        return ops, (op if op.kind == "add" else None)

    def residual(self, tensor: str, users: list[_Op], state: _Tensor) -> tuple[str, _Tensor]:
        """A BasicBlock from the fork at ``tensor`` (the patterns it expresses), else an error
        naming the Add."""
        branches = [self.branch(op) for op in users]
        adds = {id(add): add for _, add in branches if add is not None}
        add = next(iter(adds.values()), None)
        where = add or users[0]

        def fail(why: str):
            raise UnsupportedModelError(where.op_type, where.name, f"{why}; {_BLOCK_PATTERN}")

        if add is None:
            fail(f"the tensor {tensor!r} feeds {len(users)} ops that do not meet in an Add")
        if len(users) != 2 or len(adds) != 1 or any(a is None for _, a in branches) or \
                sorted(add.inputs) != sorted([b[-1].output if b else tensor for b, _ in branches]):
            fail(f"the tensor {tensor!r} feeds {len(users)} ops that do not form two branches "
                 f"of one Add")
        body, shortcut = sorted(([op for op in ops if op.kind != "identity"]
                                 for ops, _ in branches), key=len, reverse=True)
        after = self.consumers[add.output]
        described = " -> ".join(op.op_type for op in body) or "identity"

        def window(op, kernel, padding, stride=None):
            return (op.kind == "conv" and op.attrs["bias"] is None and
                    op.attrs["weight"].shape[2] == kernel and op.attrs["padding"] == padding and
                    (stride is None or op.attrs["stride"] == stride))

        if not (len(body) == 3 and window(body[0], 3, 1) and body[1].kind == "relu" and
                window(body[2], 3, 1, stride=1)):
            fail(f"its branch is {described}")
        if not state.spatial:
            fail(f"its input has shape {state.source}, not an image")
        stride = body[0].attrs["stride"]
        in_channels, out_channels = state.sparta[2], body[0].attrs["weight"].shape[0]
        projection = stride != 1 or in_channels != out_channels
        if projection and not (len(shortcut) == 1 and window(shortcut[0], 1, 0, stride=stride)):
            fail("the shapes change but the shortcut is not a 1x1 convolution with the stride "
                 "of the first convolution")
        if not projection and shortcut:
            fail("the shapes do not change but the shortcut is not x itself")
        if len(after) != 1 or after[0].kind != "relu":
            fail("the Add is not followed by a ReLU alone")
        relu = after[0]
        convs = [body[0], body[2]] + shortcut
        prefix = _common_prefix([op.name for op in convs]) or add.name
        block = self.build(add, lambda: BasicBlock(
            name=self.unique(prefix), in_shape=state.sparta, out_channels=out_channels,
            stride=stride, rng=self.rng))
        for op, conv in zip(convs, [block.conv1, block.conv2, block.shortcut]):
            weight = op.attrs["weight"]
            if weight.shape[:2] != (conv.spec.features, conv.in_shape[2]):
                raise op.unsupported(f"weights of shape {weight.shape} do not fit the block's "
                                     f"{conv.in_shape[2]} -> {conv.spec.features} channels")
            conv.params["weight"] = _conv_matrix(weight)
        self.input_grad = True
        self.layers.append(block)
        self.converted.update(id(op) for ops, _ in branches for op in ops)
        self.converted.update((id(add), id(relu)))
        height, width, channels = block.out_shape
        state = _Tensor((channels, height, width), block.out_shape)
        self.check_shape(relu, state)
        return relu.output, state


def _common_prefix(names: list[str]) -> str:
    """The module path the names share, dotted: ``"layer1.0"`` of ``"layer1.0.conv1"`` and
    ``"layer1.0.conv2"`` (torch), ``"block1"`` of ``"/block1/conv1/Conv"`` ... (ONNX export)."""
    parts = [re.split(r"[./]", name.strip("/"))[:-1] for name in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


def _int_pair(op_type: str, name: str, value, what: str) -> int:
    """One int from an int or an equal pair (square kernels, equal strides and paddings)."""
    values = [value] if isinstance(value, int) else list(value)
    if not values or len(set(values)) != 1 or not all(isinstance(v, int) for v in values):
        raise UnsupportedModelError(op_type, name, f"{what} {value!r}: Sparta takes one value "
                                    f"for both dimensions")
    return values[0]


# -- ONNX --------------------------------------------------------------------------------------

def from_onnx(model_or_path, *, input_shape=None, name: str | None = None) -> Network:
    """A Sparta network from an ONNX model (an ``onnx.ModelProto`` or a path to a ``.onnx``).

    Parameters
    ----------
    model_or_path : onnx.ModelProto or path
    input_shape : tuple of int, optional
        Per-sample input shape in the model's layout (``(C, H, W)`` or ``(features,)``);
        default: the graph input's dimensions after the batch (they must be fixed then).
    name : str, optional
        Network name (default: the file's stem, or the graph's name for a ModelProto).

    Raises
    ------
    UnsupportedModelError
        An op, attribute or pattern with no Sparta layer (names the op type and the node).
    ImportError
        onnx is not installed (``pip install 'sparta[import]'``).
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise ImportError("from_onnx needs the onnx package: pip install 'sparta[import]'") \
            from exc
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_file():
            raise ValueError(f"no ONNX file {path}")
        model = onnx.load(str(path))
        name = name or path.stem
    elif isinstance(model_or_path, onnx.ModelProto):
        model = model_or_path
    else:
        raise ValueError(f"model_or_path must be an onnx.ModelProto or a path, not "
                         f"{type(model_or_path).__name__}")
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(f"the ONNX graph must have one input and one output, not "
                         f"{[v.name for v in inputs]} and {[v.name for v in graph.output]}")
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UnsupportedModelError("Input", inputs[0].name, "the input must be float32")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    if input_shape is None:
        if len(dims) < 2 or None in dims[1:]:
            raise ValueError(f"the ONNX input {inputs[0].name!r} has dimensions {dims}: give "
                             f"input_shape (per sample, e.g. (C, H, W))")
        shape = tuple(dims[1:])
    else:
        shape = _per_sample_shape(input_shape, "input_shape")
        if dims and (len(dims) != len(shape) + 1 or
                     any(d not in (None, s) for d, s in zip(dims[1:], shape))):
            raise ValueError(f"input_shape {shape} does not match the ONNX input "
                             f"{inputs[0].name!r} of dimensions {dims}")
    ops = []
    for index, node in enumerate(graph.node):
        node_name = node.name or f"{node.op_type.lower()}_{index}"
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(node.op_type, node_name,
                                        f"ops of domain {node.domain!r} are not supported")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise UnsupportedModelError("Constant", node_name, "only a tensor 'value'")
            constants[node.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        convert = _ONNX_OPS.get(node.op_type)
        if convert is None:
            raise UnsupportedModelError(node.op_type, node_name,
                                        f"not supported (supported: {', '.join(_ONNX_OPS)})")
        ops.append(convert(_OnnxNode(node, node_name, attrs, constants)))
    return _Converter(_Graph(name or graph.name or "onnx_model", ops, inputs[0].name,
                             graph.output[0].name, shape)).run()


class _OnnxNode:
    """An ONNX node with its attributes, its tensor and constant inputs told apart."""

    def __init__(self, node, name: str, attrs: dict, constants: dict):
        self.op_type, self.name, self.attrs = node.op_type, name, attrs
        self.output = node.output[0]
        self.tensors, self.constants = [], []
        for index, value in enumerate(node.input):
            if not value:
                continue                       # an omitted optional input
            if value in constants:
                self.constants.append((index, constants[value]))
            else:
                self.tensors.append(value)

    def unsupported(self, reason: str) -> UnsupportedModelError:
        return UnsupportedModelError(self.op_type, self.name, reason)

    def constant(self, index: int):
        """The constant at input ``index`` (None if omitted); a tensor there is an error."""
        return dict(self.constants).get(index)

    def op(self, kind: str, *, tensors: int = 1, **attrs) -> _Op:
        if len(self.tensors) != tensors:
            raise self.unsupported(f"expects {tensors} tensor input(s) and constant weights, "
                                   f"has tensor inputs {self.tensors}")
        return _Op(kind, self.name, self.op_type, tuple(self.tensors), self.output, attrs)

    def window(self, *, kernel_default=None) -> dict:
        """kernel, stride and padding of Conv/MaxPool/AveragePool (square, symmetric)."""
        attrs = self.attrs
        if any(d != 1 for d in attrs.get("dilations", [1])):
            raise self.unsupported(f"dilations {attrs['dilations']} are not supported")
        if attrs.get("ceil_mode", 0):
            raise self.unsupported("ceil_mode=1 is not supported")
        kernel = attrs.get("kernel_shape", kernel_default)
        if kernel is None or len(kernel) != 2:
            raise self.unsupported(f"kernel_shape {kernel} is not 2-D")
        kernel = _int_pair(self.op_type, self.name, kernel, "kernel_shape")
        stride = _int_pair(self.op_type, self.name, attrs.get("strides", [1, 1]), "strides")
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad == "NOTSET":
            padding = _int_pair(self.op_type, self.name, attrs.get("pads", [0, 0, 0, 0]), "pads")
        elif auto_pad == "VALID":
            padding = 0
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER") and stride == 1 and kernel % 2:
            padding = (kernel - 1) // 2          # symmetric at stride 1 with an odd kernel
        else:
            raise self.unsupported(f"auto_pad={auto_pad} with stride {stride} and kernel "
                                   f"{kernel} is not supported (give symmetric pads)")
        return {"kernel": kernel, "stride": stride, "padding": padding}


def _onnx_conv(node: _OnnxNode) -> _Op:
    weight, bias = node.constant(1), node.constant(2)
    if weight is None or weight.ndim != 4:
        raise node.unsupported("needs a 2-D convolution with constant weights")
    if node.attrs.get("group", 1) != 1:
        raise node.unsupported(f"group={node.attrs['group']} is not supported (Sparta "
                               f"convolutions are dense)")
    return node.op("conv", weight=weight.astype(np.float32), bias=bias,
                   **node.window(kernel_default=list(weight.shape[2:])))


def _onnx_gemm(node: _OnnxNode) -> _Op:
    weight, bias = node.constant(1), node.constant(2)
    if weight is None or weight.ndim != 2:
        raise node.unsupported("needs a constant 2-D B (the weights)")
    if node.attrs.get("transA", 0):
        raise node.unsupported("transA=1 is not supported")
    weight = weight.T if node.attrs.get("transB", 0) else weight
    weight = weight.astype(np.float32) * np.float32(node.attrs.get("alpha", 1.0))
    if bias is not None:
        try:
            bias = np.broadcast_to(bias, (1, weight.shape[1]))[0] * \
                np.float32(node.attrs.get("beta", 1.0))
        except ValueError:
            raise node.unsupported(f"C of shape {bias.shape} is not a bias vector") from None
    return node.op("linear", weight=weight, bias=bias)


def _onnx_matmul(node: _OnnxNode) -> _Op:
    weight = node.constant(1)
    if weight is None or weight.ndim != 2 or node.constant(0) is not None:
        raise node.unsupported("only a tensor times a constant 2-D matrix (a Linear layer)")
    return node.op("linear", weight=weight.astype(np.float32), bias=None)


def _onnx_dropout(node: _OnnxNode) -> _Op:
    ratio = node.constant(1)
    p = float(ratio) if ratio is not None else float(node.attrs.get("ratio", 0.5))
    return node.op("dropout", p=p)


def _onnx_max_pool(node: _OnnxNode) -> _Op:
    return node.op("max_pool", **node.window())


def _onnx_average_pool(node: _OnnxNode) -> _Op:
    window = node.window()
    if window["padding"] and not node.attrs.get("count_include_pad", 0):
        raise node.unsupported("padding with count_include_pad=0 is not supported (Sparta's "
                               "AvgPool2d counts the padding)")
    return node.op("avg_pool", **window)


def _onnx_add(node: _OnnxNode) -> _Op:
    if len(node.tensors) == 2:
        return node.op("add", tensors=2)
    if len(node.tensors) == 1 and len(node.constants) == 1:
        return node.op("bias_add", value=node.constants[0][1])
    raise node.unsupported("needs a tensor input")


def _onnx_flatten(node: _OnnxNode) -> _Op:
    if node.attrs.get("axis", 1) != 1:
        raise node.unsupported(f"axis={node.attrs['axis']} is not supported (only 1: "
                               f"(batch, features))")
    return node.op("reshape", shape=(-1,))


def _onnx_reshape(node: _OnnxNode) -> _Op:
    shape = node.constant(1)
    if shape is None or shape.ndim != 1 or len(shape) < 1:
        raise node.unsupported("needs a constant target shape")
    if node.attrs.get("allowzero", 0) and 0 in shape:
        raise node.unsupported("allowzero=1 with a zero dimension is not supported")
    if len(shape) < 2 or (shape[0] == -1 and -1 in shape[1:]):
        raise node.unsupported(f"reshapes to {shape.tolist()}: the batch dimension must stay "
                               f"first and apart")
    # the first dimension is the batch (0: copied, -1: inferred, n: the batch exported with)
    return node.op("reshape", shape=tuple(int(d) for d in shape[1:]))


_ONNX_OPS = {
    "Conv": _onnx_conv,
    "Gemm": _onnx_gemm,
    "MatMul": _onnx_matmul,
    "Relu": lambda node: node.op("relu"),
    "Dropout": _onnx_dropout,
    "MaxPool": _onnx_max_pool,
    "AveragePool": _onnx_average_pool,
    "GlobalAveragePool": lambda node: node.op("global_avg_pool", keepdims=True),
    "Add": _onnx_add,
    "Flatten": _onnx_flatten,
    "Reshape": _onnx_reshape,
    "Identity": lambda node: node.op("identity"),
}


# -- PyTorch -----------------------------------------------------------------------------------

def from_torch(module, input_shape, *, name: str | None = None) -> Network:
    """A Sparta network from a PyTorch ``nn.Module``, traced with ``torch.fx``.

    Parameters
    ----------
    module : torch.nn.Module
        Traced symbolically (no data-dependent control flow) and run once on zeros to learn
        the shapes (in eval mode; its mode is restored).
    input_shape : tuple of int
        Per-sample input shape as the module takes it: ``(C, H, W)`` or ``(features,)``.
    name : str, optional
        Network name (default: the module's class name).

    Raises
    ------
    UnsupportedModelError
        A module, function or method with no Sparta layer, or an unsupported attribute (names
        the op type and the node: the module path, or the ``torch.fx`` node name).
    ImportError
        torch is not installed (``pip install 'sparta[import]'``).
    """
    try:
        import torch
        from torch import fx
        from torch.fx.passes.shape_prop import ShapeProp
    except ImportError as exc:
        raise ImportError("from_torch needs PyTorch: pip install 'sparta[import]'") from exc
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, not {type(module).__name__}")
    shape = _per_sample_shape(input_shape, "input_shape")
    try:
        traced = fx.symbolic_trace(module)
    except Exception as exc:      # torch.fx raises many kinds (TraceError, TypeError, ...)
        raise ValueError(f"torch.fx cannot trace {type(module).__name__}: {exc}") from exc
    training = module.training
    batch = 2                     # not 1, so that the batch dimension is told from the others
    try:
        module.eval()
        with torch.no_grad():
            ShapeProp(traced).propagate(torch.zeros((batch,) + shape))
    except Exception as exc:
        raise ValueError(f"{type(module).__name__} does not run on inputs of shape "
                         f"{(batch,) + shape}: {exc}") from exc
    finally:
        module.train(training)
    return _Converter(_TorchGraph(torch, traced, batch).graph(name or type(module).__name__,
                                                               shape)).run()


class _TorchGraph:
    """The ``torch.fx`` graph of a traced module as :class:`_Op` s."""

    def __init__(self, torch, traced, batch: int):
        import torch.nn.functional as F

        self.torch, self.traced, self.batch = torch, traced, batch
        nn = torch.nn
        self.modules = {nn.Conv2d: self.conv_module, nn.Linear: self.linear_module,
                        nn.ReLU: self.relu, nn.Dropout: self.dropout_module,
                        nn.MaxPool2d: self.max_pool_module, nn.AvgPool2d: self.avg_pool_module,
                        nn.AdaptiveAvgPool2d: self.adaptive_pool_module,
                        nn.Flatten: self.reshape, nn.Identity: self.identity}
        self.functions = {F.relu: self.relu, torch.relu: self.relu, F.dropout: self.dropout,
                          F.max_pool2d: self.max_pool, F.avg_pool2d: self.avg_pool,
                          F.adaptive_avg_pool2d: self.adaptive_pool, F.linear: self.linear,
                          torch.matmul: self.matmul, operator.matmul: self.matmul,
                          operator.add: self.add, torch.add: self.add,
                          torch.flatten: self.reshape}
        self.methods = {"relu": self.relu, "relu_": self.relu, "view": self.reshape,
                        "reshape": self.reshape, "flatten": self.reshape, "add": self.add,
                        "contiguous": self.identity}

    def graph(self, name: str, shape: tuple[int, ...]) -> _Graph:
        placeholders = [n for n in self.traced.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ValueError(f"the module must take one input, not {len(placeholders)}")
        ops, output = [], None
        for node in self.traced.graph.nodes:
            if node.op in ("placeholder", "get_attr"):
                continue
            if node.op == "output":
                result = node.args[0]
                if not isinstance(result, self.torch.fx.Node):
                    raise UnsupportedModelError("output", node.name, "the module must return "
                                                "one tensor")
                output = result.name
                continue
            if "tensor_meta" not in node.meta:
                continue                  # sizes and other non-tensor values (x.size(0))
            ops.append(self.op(node))
        return _Graph(name, ops, placeholders[0].name, output, shape)

    def op(self, node) -> _Op:
        if node.op == "call_module":
            module = self.traced.get_submodule(node.target)
            op_type, handler = type(module).__name__, self.modules.get(type(module))
            name, supported = str(node.target), self.modules
        elif node.op == "call_function":
            op_type = getattr(node.target, "__name__", str(node.target))
            handler, name, module, supported = self.functions.get(node.target), node.name, \
                None, self.functions
        else:
            op_type, handler, name, module = f"Tensor.{node.target}", \
                self.methods.get(node.target), node.name, None
            supported = self.methods
        if handler is None:
            known = sorted({getattr(k, "__name__", str(k)) for k in supported})
            raise UnsupportedModelError(op_type, name,
                                        f"not supported (supported here: {', '.join(known)})")
        meta = node.meta["tensor_meta"]
        if not hasattr(meta, "shape") or tuple(meta.shape)[:1] != (self.batch,):
            raise UnsupportedModelError(op_type, name, "must give one tensor, batch first")
        tensors = [a for a in node.all_input_nodes
                   if a.op != "get_attr" and "tensor_meta" in a.meta]
        context = _TorchNode(self, node, op_type, name, module, tensors)
        op = handler(context)
        op.out_shape = tuple(meta.shape)[1:]
        return op

    def array(self, value):
        """A parameter or buffer (a tensor, or the get_attr node that reads it) as float32;
        None for anything else."""
        if isinstance(value, self.torch.fx.Node):
            if value.op != "get_attr":
                return None
            owner = self.traced
            for part in value.target.split("."):
                owner = getattr(owner, part)
            value = owner
        if not isinstance(value, self.torch.Tensor):
            return None
        return value.detach().cpu().numpy().astype(np.float32)

    # handlers: each returns an _Op

    def identity(self, c):
        return c.op("identity")

    def relu(self, c):
        return c.op("relu")

    def reshape(self, c):
        return c.op("reshape", shape=tuple(c.node.meta["tensor_meta"].shape)[1:])

    def conv_module(self, c):
        m = c.module
        if m.groups != 1:
            raise c.unsupported(f"groups={m.groups} is not supported (Sparta convolutions are "
                                f"dense)")
        if any(d != 1 for d in m.dilation):
            raise c.unsupported(f"dilation={tuple(m.dilation)} is not supported")
        if m.padding_mode != "zeros":
            raise c.unsupported(f"padding_mode={m.padding_mode!r} is not supported")
        padding = m.padding
        if isinstance(padding, str):
            if padding == "valid":
                padding = 0
            elif all(k % 2 for k in m.kernel_size):
                padding = [(k - 1) // 2 for k in m.kernel_size]
            else:
                raise c.unsupported("padding='same' with an even kernel is asymmetric")
        _int_pair(c.op_type, c.name, tuple(m.kernel_size), "kernel_size")     # square
        return c.op("conv", weight=self.array(m.weight), bias=self.array(m.bias),
                    stride=_int_pair(c.op_type, c.name, tuple(m.stride), "stride"),
                    padding=_int_pair(c.op_type, c.name, padding, "padding"))

    def linear_module(self, c):
        return c.op("linear", weight=self.array(c.module.weight).T,
                    bias=None if c.module.bias is None else self.array(c.module.bias))

    def linear(self, c):
        args = c.arguments()
        weight, bias = self.constant(c, args["weight"]), self.constant(c, args.get("bias"))
        return c.op("linear", weight=weight.T, bias=bias)

    def matmul(self, c):
        args = c.arguments()
        weight = self.constant(c, args["other"])
        if weight.ndim != 2:
            raise c.unsupported("only a tensor times a constant 2-D matrix (a Linear layer)")
        return c.op("linear", weight=weight, bias=None)

    def constant(self, c, value):
        if value is None:
            return None
        array = self.array(value)
        if array is None:
            raise c.unsupported("its weights must be parameters or buffers of the module")
        return array

    def dropout_module(self, c):
        return c.op("dropout", p=float(c.module.p))

    def dropout(self, c):
        return c.op("dropout", p=float(c.arguments().get("p", 0.5)))

    def pool(self, c, kind, kernel, stride, padding, *, dilation=1, ceil_mode=False,
             return_indices=False, count_include_pad=True, divisor_override=None):
        if ceil_mode:
            raise c.unsupported("ceil_mode=True is not supported")
        if return_indices:
            raise c.unsupported("return_indices=True is not supported")
        if _int_pair(c.op_type, c.name, dilation, "dilation") != 1:
            raise c.unsupported(f"dilation={dilation} is not supported")
        if divisor_override is not None:
            raise c.unsupported("divisor_override is not supported")
        kernel = _int_pair(c.op_type, c.name, kernel, "kernel_size")
        stride = kernel if stride is None or stride == [] or stride == () else \
            _int_pair(c.op_type, c.name, stride, "stride")
        padding = _int_pair(c.op_type, c.name, padding, "padding")
        if kind == "avg_pool" and padding and not count_include_pad:
            raise c.unsupported("padding with count_include_pad=False is not supported "
                                "(Sparta's AvgPool2d counts the padding)")
        return c.op(kind, kernel=kernel, stride=stride, padding=padding)

    def max_pool_module(self, c):
        m = c.module
        return self.pool(c, "max_pool", m.kernel_size, m.stride, m.padding,
                         dilation=m.dilation, ceil_mode=m.ceil_mode,
                         return_indices=m.return_indices)

    def avg_pool_module(self, c):
        m = c.module
        return self.pool(c, "avg_pool", m.kernel_size, m.stride, m.padding,
                         ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                         divisor_override=m.divisor_override)

    def max_pool(self, c):
        args = c.arguments()
        return self.pool(c, "max_pool", args["kernel_size"], args.get("stride"),
                         args.get("padding", 0), dilation=args.get("dilation", 1),
                         ceil_mode=args.get("ceil_mode", False),
                         return_indices=args.get("return_indices", False))

    def avg_pool(self, c):
        args = c.arguments()
        return self.pool(c, "avg_pool", args["kernel_size"], args.get("stride"),
                         args.get("padding", 0), ceil_mode=args.get("ceil_mode", False),
                         count_include_pad=args.get("count_include_pad", True),
                         divisor_override=args.get("divisor_override"))

    def global_pool(self, c, output_size):
        sizes = [output_size] if isinstance(output_size, int) else list(output_size)
        if any(s != 1 for s in sizes):
            raise c.unsupported(f"output_size={output_size!r} is not supported (only 1: a "
                                f"global average pool)")
        return c.op("global_avg_pool", keepdims=True)

    def adaptive_pool_module(self, c):
        return self.global_pool(c, c.module.output_size)

    def adaptive_pool(self, c):
        return self.global_pool(c, c.arguments()["output_size"])

    def add(self, c):
        kwargs = c.node.kwargs
        if kwargs.get("alpha", 1) != 1:
            raise c.unsupported("alpha != 1 is not supported")
        if len(c.tensors) == 2:
            return c.op("add", tensors=2)
        operands = list(c.node.args[:2]) + [kwargs[k] for k in ("input", "other") if k in kwargs]
        others = [a for a in operands if a not in c.tensors]
        if len(c.tensors) != 1 or len(others) != 1:
            raise c.unsupported("needs a tensor input")
        value = others[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            array = np.asarray(value, dtype=np.float32)
        else:
            array = self.array(value)
        if array is None:
            raise c.unsupported("adds a value that is neither a tensor nor a constant")
        return c.op("bias_add", value=array)


class _TorchNode:
    """A ``torch.fx`` node being converted, with its module (call_module) and tensor inputs."""

    def __init__(self, graph: _TorchGraph, node, op_type, name, module, tensors):
        self.graph, self.node, self.op_type, self.name = graph, node, op_type, name
        self.module, self.tensors = module, tensors

    def unsupported(self, reason: str) -> UnsupportedModelError:
        return UnsupportedModelError(self.op_type, self.name, reason)

    def arguments(self) -> dict:
        normalized = self.node.normalized_arguments(self.graph.traced,
                                                    normalize_to_only_use_kwargs=True)
        if normalized is None:
            raise self.unsupported("its arguments could not be matched to its signature")
        return dict(normalized.kwargs)

    def op(self, kind: str, *, tensors: int = 1, **attrs) -> _Op:
        if len(self.tensors) != tensors:
            raise self.unsupported(f"expects {tensors} tensor input(s) and constant weights, "
                                   f"has {[t.name for t in self.tensors]}")
        return _Op(kind, self.name, self.op_type, tuple(t.name for t in self.tensors),
                   self.node.name, attrs)
