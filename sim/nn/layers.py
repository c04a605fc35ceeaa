"""Layers of the workload networks (NHWC, float32, products through a GEMM backend).

Every layer has a :class:`~sim.lowering.LayerSpec` (built, and so validated, in its
constructor) that says how it lowers to engine GEMMs; the layers with weights execute exactly
the commands :func:`sim.lowering.layer_commands` lists for them, through
:meth:`GemmBackend.gemm`. Weights are FP32 master copies; the backend encodes them for each
step. The other layers are fp32 host code shared by every backend.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..lowering import LayerSpec
from .backend import GemmBackend
from .im2col import col2im, im2col

__all__ = ["StepContext", "Layer", "Conv2d", "Linear", "ReLU", "Dropout", "Flatten",
           "GlobalAvgPool", "MaxPool2d", "AvgPool2d", "BasicBlock"]

_ZERO = np.float32(0.0)


@dataclasses.dataclass
class StepContext:
    """What a forward/backward pass needs besides tensors, and what it reports.

    Attributes
    ----------
    backend : GemmBackend
    training : bool
        Dropout active, masks recorded.
    rng : numpy.random.Generator or None
        Source of the dropout masks (required when training with dropout).
    masks : dict
        Mask layer name -> boolean keep mask of this step (filled when training).
    counts : dict or None
        When given, ``(layer, "activation" | "grad") -> [zeros, elements]`` of the encoded GEMM
        operands ``X`` and ``dY`` are accumulated into it.
    tensors : dict or None
        When given, ``"layer/key" -> array`` captures of weights, activations, gradients, masks.
    """

    backend: GemmBackend
    training: bool = False
    rng: np.random.Generator | None = None
    masks: dict = dataclasses.field(default_factory=dict)
    counts: dict | None = None
    tensors: dict | None = None

    def count(self, layer: str, key: str, zero: np.ndarray) -> None:
        if self.counts is not None:
            entry = self.counts.setdefault((layer, key), [0, 0])
            entry[0] += int(np.count_nonzero(zero))
            entry[1] += zero.size

    def keep(self, layer: str, key: str, array: np.ndarray) -> None:
        if self.tensors is not None:
            self.tensors[f"{layer}/{key}"] = np.array(array, copy=True)


class Layer:
    """Base class: a named layer with a per-sample input shape and a spec.

    A layer made without its input shape (``in_shape=None``, or ``in_features=None`` for
    :class:`Linear`) is *unbound*: the :class:`sim.nn.Network` it is put in gives it the
    previous layer's output shape (:meth:`bind`), and only then makes its weights (so the
    weights still come from its ``rng`` in layer order).
    """

    kind = ""

    def __init__(self, spec: LayerSpec):
        self.spec = spec
        self.name = spec.name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._pending = None

    def _defer(self, arguments: dict) -> None:
        """Keep the constructor's ``arguments`` until :meth:`bind` knows the input shape."""
        name = arguments.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        self.spec = None
        self.name = name
        self.params, self.grads = {}, {}
        self._pending = arguments

    @property
    def bound(self) -> bool:
        """The input shape is known (always, for a layer made with it)."""
        return getattr(self, "_pending", None) is None

    def _shape_arguments(self, in_shape: tuple[int, ...]) -> dict:
        return {"in_shape": in_shape}

    def bind(self, in_shape) -> None:
        """Give an unbound layer its per-sample input shape (a bound one must already have
        it: ValueError otherwise)."""
        in_shape = tuple(in_shape)
        if self.bound:
            if self.in_shape != in_shape:
                raise ValueError(f"{self.name}: in_shape {self.in_shape} does not match the "
                                 f"previous output {in_shape}")
            return
        type(self).__init__(self, **{**self._pending, **self._shape_arguments(in_shape)})

    @property
    def in_shape(self) -> tuple[int, ...]:
        if not self.bound:
            raise ValueError(f"{self.name}: the input shape is not known yet (give in_shape, "
                             f"or put the layer in a Network, which infers it)")
        return self.spec.in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.spec.out_shape if self.bound else self.in_shape    # (the latter raises)

    def sublayers(self) -> list[Layer]:
        """The layers holding weights or masks inside this one (itself for a plain layer)."""
        return [self]

    def _check_input(self, x: np.ndarray) -> None:
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            raise ValueError(f"{self.name}: input must be a float32 array, not "
                             f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim != len(self.in_shape) + 1 or x.shape[1:] != self.in_shape or x.shape[0] < 1:
            raise ValueError(f"{self.name}: input shape {x.shape} does not match "
                             f"(batch,) + in_shape {self.in_shape}")

    def forward(self, x: np.ndarray, ctx: StepContext) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, ctx: StepContext) -> np.ndarray | None:
        raise NotImplementedError


def _he_normal(rng, shape, fan_in, gain):
    return (rng.standard_normal(shape) * (gain * math.sqrt(2.0 / fan_in))).astype(np.float32)


class _GemmLayer(Layer):
    """Shared forward/backward of the layers with weights: ``Y = cols(X) . W (+ b)``."""

    def __init__(self, spec: LayerSpec, *, rng: np.random.Generator, init_gain: float):
        super().__init__(spec)
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"{spec.name}: rng must be a numpy Generator, not {rng!r}")
        if not isinstance(init_gain, (int, float)) or not init_gain >= 0:
            raise ValueError(f"{spec.name}: init_gain must be a number >= 0, not {init_gain!r}")
        depth = self._depth()
        self.params["weight"] = _he_normal(rng, (depth, spec.features), depth, init_gain)
        if spec.bias:
            self.params["bias"] = np.zeros(spec.features, dtype=np.float32)
        self._saved = None

    def _depth(self) -> int:
        raise NotImplementedError

    def _columns(self, encoded_x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _uncolumns(self, dcols: np.ndarray, batch: int) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x, ctx):
        self._check_input(x)
        backend = ctx.backend
        encoded_x = backend.encode(x)
        ctx.count(self.name, "activation", backend.is_zero(encoded_x))
        ctx.keep(self.name, "input", x)
        for key, value in self.params.items():
            ctx.keep(self.name, key, value)
        encoded_w = backend.encode(self.params["weight"])
        cols = self._columns(encoded_x)
        bias = self.params["bias"][None, :] if self.spec.bias else None
        y = backend.gemm(cols, encoded_w, name=f"{self.name}.forward", kind="forward", c=bias)
        self._saved = (cols, encoded_w, x.shape[0])
        y = y.reshape((x.shape[0],) + self.out_shape)
        ctx.keep(self.name, "output", y)
        return y

    def backward(self, dy, ctx):
        if self._saved is None:
            raise ValueError(f"{self.name}: backward called without a forward pass")
        cols, encoded_w, batch = self._saved
        if dy.shape != (batch,) + self.out_shape or dy.dtype != np.float32:
            raise ValueError(f"{self.name}: gradient shape {dy.shape} ({dy.dtype}) does not "
                             f"match the output {(batch,) + self.out_shape} (float32)")
        backend = ctx.backend
        ctx.keep(self.name, "grad_output", dy)
        encoded_dy = backend.encode(dy.reshape(cols.shape[0], self.spec.features))
        ctx.count(self.name, "grad", backend.is_zero(encoded_dy))
        self.grads["weight"] = backend.gemm(cols, encoded_dy, transpose_a=True,
                                            name=f"{self.name}.weight_grad", kind="weight_grad")
        if self.spec.bias:
            ones = backend.encode(np.ones((1, cols.shape[0]), dtype=np.float32))
            self.grads["bias"] = backend.gemm(ones, encoded_dy, name=f"{self.name}.bias_grad",
                                              kind="weight_grad")[0]
        dx = None
        if self.spec.input_grad:
            dcols = backend.gemm(encoded_dy, encoded_w, transpose_b=True,
                                 name=f"{self.name}.backward_data", kind="backward_data")
            dx = self._uncolumns(dcols, batch)
            ctx.keep(self.name, "grad_input", dx)
        for key, value in self.grads.items():
            ctx.keep(self.name, f"grad_{key}", value)
        self._saved = None
        return dx


class Conv2d(_GemmLayer):
    """2-D convolution (NHWC) lowered through im2col.

    Parameters
    ----------
    name : str
    in_shape : (H, W, C_in)
    out_channels : int
    kernel, stride : int
        Square kernel and stride.
    padding : int or "same"
        Symmetric zero padding. The default, ``"same"``, is ``(kernel - 1) // 2`` (the output
        keeps the input's size at stride 1), defined for odd kernels only: an even kernel needs
        its padding given.
    bias : bool
    input_grad : bool
        Compute the gradient with respect to the input (false for the first layer).
    rng : numpy.random.Generator
        Source of the He-normal initial weights.
    init_gain : float
        Multiplies the He-normal standard deviation (residual branches start smaller).

    The weight matrix is ``(kernel * kernel * C_in, C_out)``, rows ordered ``(ky, kx, c_in)``.
    """

    kind = "conv2d"

    def __init__(self, *, name, in_shape=None, out_channels, kernel=3, stride=1,
                 padding="same", bias=True, input_grad=True, rng, init_gain=1.0):
        if in_shape is None:
            return self._defer(dict(name=name, out_channels=out_channels, kernel=kernel,
                                    stride=stride, padding=padding, bias=bias,
                                    input_grad=input_grad, rng=rng, init_gain=init_gain))
        if isinstance(padding, str):
            if padding != "same":
                raise ValueError(f"{name}: padding must be an int >= 0 or 'same', not "
                                 f"{padding!r}")
            if isinstance(kernel, int) and not isinstance(kernel, bool) and kernel % 2 == 0:
                raise ValueError(f"{name}: padding='same' needs an odd kernel, not {kernel}: "
                                 f"give the padding")
            padding = (kernel - 1) // 2 if isinstance(kernel, int) else padding
        super().__init__(LayerSpec(name=name, kind="conv2d", in_shape=tuple(in_shape),
                                   features=out_channels, kernel=kernel, stride=stride,
                                   padding=padding, bias=bias, input_grad=input_grad),
                         rng=rng, init_gain=init_gain)

    def _depth(self):
        return self.spec.kernel * self.spec.kernel * self.spec.in_shape[2]

    def _columns(self, encoded_x):
        if self.spec.im2col_identity:
            return encoded_x.reshape(-1, encoded_x.shape[-1])
        return im2col(encoded_x, kernel=self.spec.kernel, stride=self.spec.stride,
                      padding=self.spec.padding)

    def _uncolumns(self, dcols, batch):
        shape = (batch,) + self.in_shape
        if self.spec.im2col_identity:
            return dcols.reshape(shape)
        return col2im(dcols, shape=shape, kernel=self.spec.kernel, stride=self.spec.stride,
                      padding=self.spec.padding)


class Linear(_GemmLayer):
    """Fully connected layer ``Y = X . W + b`` with ``W`` of shape (in_features, out_features).

    Parameters are those of :class:`Conv2d` with ``in_shape = (in_features,)`` and
    ``out_features``.
    """

    kind = "linear"

    def __init__(self, *, name, in_features=None, out_features, bias=True, input_grad=True, rng,
                 init_gain=1.0):
        if in_features is None:
            return self._defer(dict(name=name, out_features=out_features, bias=bias,
                                    input_grad=input_grad, rng=rng, init_gain=init_gain))
        super().__init__(LayerSpec(name=name, kind="linear", in_shape=(in_features,),
                                   features=out_features, bias=bias, input_grad=input_grad),
                         rng=rng, init_gain=init_gain)

    def _depth(self):
        return self.spec.in_shape[0]

    def _shape_arguments(self, in_shape):
        if len(in_shape) != 1:
            raise ValueError(f"{self.name}: a Linear layer takes 1-D inputs, not {in_shape} "
                             f"(put a Flatten before it)")
        return {"in_features": in_shape[0]}

    def _columns(self, encoded_x):
        return encoded_x

    def _uncolumns(self, dcols, batch):
        return dcols


class ReLU(Layer):
    """``max(x, 0)``; its keep mask ``x > 0`` gates the gradient (and is recorded)."""

    kind = "relu"

    def __init__(self, *, name, in_shape=None):
        if in_shape is None:
            return self._defer(dict(name=name))
        super().__init__(LayerSpec(name=name, kind="relu", in_shape=tuple(in_shape)))
        self._mask = None

    def forward(self, x, ctx):
        self._check_input(x)
        self._mask = x > 0
        if ctx.training:
            ctx.masks[self.name] = self._mask
            ctx.keep(self.name, "mask", self._mask)
        return np.where(self._mask, x, _ZERO)

    def backward(self, dy, ctx):
        return np.where(self._mask, dy, _ZERO)


class Dropout(Layer):
    """Inverted dropout: keep with probability ``1 - p`` and scale kept values by
    ``float32(1 / (1 - p))``; the mask comes from ``ctx.rng`` (so two runs with the same
    generator drop the same neurons). Identity outside training."""

    kind = "dropout"

    def __init__(self, *, name, in_shape=None, p):
        if in_shape is None:
            return self._defer(dict(name=name, p=p))
        super().__init__(LayerSpec(name=name, kind="dropout", in_shape=tuple(in_shape), p=p))
        self.p = p
        self.scale = np.float32(1.0 / (1.0 - p))
        self._mask = None

    def forward(self, x, ctx):
        self._check_input(x)
        if not ctx.training:
            self._mask = None
            return x
        if ctx.rng is None:
            raise ValueError(f"{self.name}: training with dropout needs ctx.rng")
        self._mask = ctx.rng.random(x.shape) >= self.p
        ctx.masks[self.name] = self._mask
        ctx.keep(self.name, "mask", self._mask)
        return np.where(self._mask, x * self.scale, _ZERO)

    def backward(self, dy, ctx):
        if self._mask is None:
            return dy
        return np.where(self._mask, dy * self.scale, _ZERO)


class Flatten(Layer):
    """``(B, H, W, C)`` -> ``(B, H * W * C)`` (NHWC order)."""

    kind = "flatten"

    def __init__(self, *, name, in_shape=None):
        if in_shape is None:
            return self._defer(dict(name=name))
        super().__init__(LayerSpec(name=name, kind="flatten", in_shape=tuple(in_shape)))

    def forward(self, x, ctx):
        self._check_input(x)
        return x.reshape((x.shape[0],) + self.out_shape)

    def backward(self, dy, ctx):
        return dy.reshape((dy.shape[0],) + self.in_shape)


class GlobalAvgPool(Layer):
    """Mean over height and width, in float32 (numpy's pairwise sum)."""

    kind = "global_avg_pool"

    def __init__(self, *, name, in_shape=None):
        if in_shape is None:
            return self._defer(dict(name=name))
        super().__init__(LayerSpec(name=name, kind="global_avg_pool", in_shape=tuple(in_shape)))
        height, width, _ = self.in_shape
        self.scale = np.float32(1.0 / (height * width))

    def forward(self, x, ctx):
        self._check_input(x)
        return x.mean(axis=(1, 2), dtype=np.float32)

    def backward(self, dy, ctx):
        height, width, _ = self.in_shape
        grad = (dy * self.scale)[:, None, None, :]
        return np.ascontiguousarray(np.broadcast_to(grad, (dy.shape[0], height, width,
                                                           dy.shape[1])))


class _Pool2d(Layer):
    """Shared part of the pools: a square window over each channel of an NHWC input, gathered
    with im2col (rows ``(b, y, x)``, columns ``(ky, kx, c)``), gradients scattered back with
    col2im (overlapping windows add their taps in fp32, in tap order)."""

    def __init__(self, *, name, in_shape=None, kernel, stride=None, padding=0):
        if in_shape is None:
            return self._defer(dict(name=name, kernel=kernel, stride=stride, padding=padding))
        stride = kernel if stride is None else stride
        super().__init__(LayerSpec(name=name, kind=self.kind, in_shape=tuple(in_shape),
                                   kernel=kernel, stride=stride, padding=padding))
        if 2 * padding > kernel:
            raise ValueError(f"{name}: padding must be at most half the kernel ({kernel}), "
                             f"not {padding} (a window would see padding only)")
        self._batch = None

    def _windows(self, x: np.ndarray) -> np.ndarray:
        """``(rows, kernel * kernel, C)`` windows of ``x`` (already padded)."""
        spec = self.spec
        cols = im2col(x, kernel=spec.kernel, stride=spec.stride, padding=0)
        return cols.reshape(cols.shape[0], spec.kernel * spec.kernel, self.in_shape[2])

    def _scatter(self, dwindows: np.ndarray) -> np.ndarray:
        spec = self.spec
        return col2im(dwindows.reshape(dwindows.shape[0], -1),
                      shape=(self._batch,) + self.in_shape, kernel=spec.kernel,
                      stride=spec.stride, padding=spec.padding)

    def _check_grad(self, dy: np.ndarray) -> None:
        if self._batch is None:
            raise ValueError(f"{self.name}: backward called without a forward pass")
        if dy.shape != (self._batch,) + self.out_shape or dy.dtype != np.float32:
            raise ValueError(f"{self.name}: gradient shape {dy.shape} ({dy.dtype}) does not "
                             f"match the output {(self._batch,) + self.out_shape} (float32)")


class MaxPool2d(_Pool2d):
    """Maximum over square windows of each channel (NHWC); padding is ``-inf``.

    Parameters
    ----------
    name : str
    in_shape : (H, W, C)
    kernel : int
    stride : int, optional
        Defaults to ``kernel`` (non-overlapping windows).
    padding : int
        At most ``kernel // 2``.

    The gradient goes to the first maximum of each window in ``(ky, kx)`` order.
    """

    kind = "max_pool2d"

    def forward(self, x, ctx):
        self._check_input(x)
        pad = self.spec.padding
        if pad:
            x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
        windows = self._windows(x)
        self._argmax = windows.argmax(axis=1)[:, None, :]
        self._batch = x.shape[0]
        y = np.take_along_axis(windows, self._argmax, axis=1)
        return y.reshape((self._batch,) + self.out_shape)

    def backward(self, dy, ctx):
        self._check_grad(dy)
        rows, channels = self._argmax.shape[0], self.in_shape[2]
        dwindows = np.zeros((rows, self.spec.kernel * self.spec.kernel, channels),
                            dtype=np.float32)
        np.put_along_axis(dwindows, self._argmax, dy.reshape(rows, 1, channels), axis=1)
        return self._scatter(dwindows)


class AvgPool2d(_Pool2d):
    """Mean over square windows of each channel (NHWC), in float32; padding is zeros and
    counts (every window is divided by ``kernel * kernel``). Parameters as
    :class:`MaxPool2d`."""

    kind = "avg_pool2d"

    def __init__(self, *, name, in_shape=None, kernel, stride=None, padding=0):
        super().__init__(name=name, in_shape=in_shape, kernel=kernel, stride=stride,
                         padding=padding)
        if self.bound:
            self.scale = np.float32(1.0 / (kernel * kernel))

    def forward(self, x, ctx):
        self._check_input(x)
        pad = self.spec.padding
        if pad:
            x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        self._batch = x.shape[0]
        y = self._windows(x).mean(axis=1, dtype=np.float32)
        return y.reshape((self._batch,) + self.out_shape)

    def backward(self, dy, ctx):
        self._check_grad(dy)
        channels = self.in_shape[2]
        grad = (dy * self.scale).reshape(-1, 1, channels)
        window = self.spec.kernel * self.spec.kernel
        return self._scatter(np.broadcast_to(grad, (grad.shape[0], window, channels)))


class BasicBlock(Layer):
    """ResNet basic block without batch normalisation::

        y = relu(conv2(relu(conv1(x))) + shortcut(x))

    ``conv1`` is 3x3 with ``stride``, ``conv2`` 3x3; the shortcut is the identity, or a 1x1
    convolution with ``stride`` when the shape changes (projection). No biases. ``conv2`` starts
    with its He-normal weights scaled by ``residual_gain`` (a Fixup-style substitute for batch
    normalisation that keeps the activations of a deep stack from growing).

    Parameters
    ----------
    name : str
    in_shape : (H, W, C_in)
    out_channels, stride : int
    rng : numpy.random.Generator
    residual_gain : float
    """

    kind = "basic_block"

    def __init__(self, *, name, in_shape, out_channels, stride=1, rng, residual_gain=1.0):
        in_shape = tuple(in_shape)
        self.conv1 = Conv2d(name=f"{name}.conv1", in_shape=in_shape, out_channels=out_channels,
                            stride=stride, bias=False, rng=rng)
        self.relu1 = ReLU(name=f"{name}.relu1", in_shape=self.conv1.out_shape)
        self.conv2 = Conv2d(name=f"{name}.conv2", in_shape=self.conv1.out_shape,
                            out_channels=out_channels, bias=False, rng=rng,
                            init_gain=residual_gain)
        self.shortcut = None
        if stride != 1 or in_shape[2] != out_channels:
            self.shortcut = Conv2d(name=f"{name}.shortcut", in_shape=in_shape,
                                   out_channels=out_channels, kernel=1, stride=stride,
                                   padding=0, bias=False, rng=rng)
        self.add = Layer(LayerSpec(name=f"{name}.add", kind="add",
                                   in_shape=self.conv2.out_shape))
        self.relu_out = ReLU(name=f"{name}.relu_out", in_shape=self.conv2.out_shape)
        self.spec = None
        self.name = name
        self._in_shape = in_shape
        self.params, self.grads = {}, {}

    @property
    def in_shape(self):
        return self._in_shape

    @property
    def out_shape(self):
        return self.relu_out.out_shape

    def sublayers(self):
        layers = [self.conv1, self.relu1, self.conv2]
        if self.shortcut is not None:
            layers.append(self.shortcut)
        return layers + [self.add, self.relu_out]

    def wire(self, input_mask: tuple[str, ...]):
        """Specs with their masks, for an input gated by ``input_mask``; returns
        ``(specs, indices of the specs producing the output, masks already on the output)``."""
        replace = dataclasses.replace
        out_mask = (self.relu_out.name,)
        specs = [replace(self.conv1.spec, input_mask=input_mask,
                         output_mask=(self.relu1.name,)),
                 self.relu1.spec,
                 replace(self.conv2.spec, input_mask=(self.relu1.name,), output_mask=out_mask)]
        producers = [2]
        if self.shortcut is not None:
            specs.append(replace(self.shortcut.spec, input_mask=input_mask,
                                 output_mask=out_mask))
            producers.append(3)
        specs += [self.add.spec, self.relu_out.spec]
        return specs, producers, out_mask

    def forward(self, x, ctx):
        self._check_input(x)
        branch = self.conv2.forward(self.relu1.forward(self.conv1.forward(x, ctx), ctx), ctx)
        skip = x if self.shortcut is None else self.shortcut.forward(x, ctx)
        return self.relu_out.forward(branch + skip, ctx)

    def backward(self, dy, ctx):
        grad = self.relu_out.backward(dy, ctx)
        skip = grad if self.shortcut is None else self.shortcut.backward(grad, ctx)
        branch = self.conv1.backward(self.relu1.backward(self.conv2.backward(grad, ctx), ctx), ctx)
        return branch + skip
