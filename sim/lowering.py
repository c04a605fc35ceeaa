"""Lowering of network layers to engine GEMM commands.

A layer is described by a :class:`LayerSpec` (kind, per-sample shapes, hyperparameters and the
names of the ReLU/dropout masks around it); :func:`layer_commands` lists the
:class:`GemmCommand` s of one training step of that layer for a batch size, and
:func:`network_commands` those of a whole network in execution order (forward through the
layers, then backward through them in reverse).

Every GEMM computes ``C (M x N) = A (M x K) . B (K x N)`` (plus ``C_in`` when accumulating) with
the numerics of :func:`sim.gemm.gemm`. A transposed operand is read in the other order by the
engine; it is never copied on the host. Activations are NHWC; the im2col matrix of a
convolution has one row per output pixel ``(b, y, x)`` and its columns ordered
``(ky, kx, c_in)``, which is also the row order of the weight matrix ``W (K x C_out)``.

Per layer with weights (``conv2d``, ``linear``), with ``X`` its input and ``dY`` the gradient at
its output:

* forward: ``Y = X_col . W`` (A = ``X_col``, B = ``W``); with a bias the accumulators start from
  the bias broadcast over the rows (``accumulate``);
* backward_data: ``dX_col = dY . W^T`` (A = ``dY``, B = ``W`` read transposed);
* weight_grad: ``dW = X_col^T . dY`` (A = ``X_col`` read transposed, B = ``dY``). With a bias
  the bias gradient ``db = 1^T . dY`` is folded into this command as one more output row:
  A is ``[X_col | 1]``, ``X_col`` (stored ``K x M``) with a column of ones appended as its
  column ``M`` (1.0 encoded like the rest of the operand, with the same format tag), so the
  command is ``(M+1) x N x K`` (``bias_row``), rows ``[:M]`` of its result are ``dW`` and row
  ``M`` is ``db``. There is no separate bias-gradient command.

The fold is bit-exact: every output element of the golden GEMM (:func:`sim.gemm.gemm`) is its
own chain ``acc = round_fp32(acc + a_k * b_k)`` over ``k`` ascending, so a row of ``C`` depends
only on its row of A and on B; the rows ``[:M]`` are the weight-gradient GEMM's own chains and
row ``M`` is the chain of ``1^T . dY``, where every product ``1 * dY`` is exact. It saves a
``1 x N x K`` command, which keeps one array row in ``R`` busy and pays a tile's floor
(``2R`` slots) and the fixed overhead for it, and a second read of ``dY``. The network
(:mod:`sim.nn`) still computes ``db`` as its own GEMM ``<layer>.bias_grad``;
:func:`sim.replay.fold_bias_grads` merges the two as the engine runs them.

For a convolution, ``dX`` is ``col2im(dX_col)`` (the host adds the kernel taps in fp32, tap
order ``(ky, kx)`` ascending); for a 1x1, stride-1, unpadded convolution and for ``linear``
``dX_col`` is ``dX``. The first layer needs no backward-data command. Layers without weights
(``relu``, ``dropout``, ``flatten``, ``global_avg_pool``, ``max_pool2d``, ``avg_pool2d``,
``add``) lower to no GEMM; they run on the host in fp32.

Masks: ``a_mask``/``b_mask`` name the ReLU/dropout masks whose zeros appear in an operand;
``out_mask`` names the forward mask that gates the outputs of a backward-data command (an
output where it is zero is multiplied by zero afterwards, so it need not be computed; for a
convolution the mask applies to ``dX``, i.e. to ``dX_col`` through im2col).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

__all__ = ["GEMM_KINDS", "WEIGHT_KINDS", "LAYER_KINDS", "LayerSpec", "GemmCommand",
           "layer_commands", "transposed_backward_data", "network_commands", "check_chain",
           "check_batch_size"]

GEMM_KINDS = ("forward", "backward_data", "weight_grad")
#: Layer kinds with weights (lowered to GEMMs) and without (host fp32 operations).
WEIGHT_KINDS = ("conv2d", "linear")
LAYER_KINDS = WEIGHT_KINDS + ("relu", "dropout", "flatten", "global_avg_pool", "max_pool2d",
                              "avg_pool2d", "add")
#: Kinds with a square window over an NHWC input (``kernel``, ``stride``, ``padding``).
WINDOW_KINDS = ("conv2d", "max_pool2d", "avg_pool2d")


def _positive_int(value, field: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field} must be an integer >= {minimum}, not {value!r}")


def _bool(value, field: str) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be a bool, not {value!r}")


def _mask_names(value, field: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple) or \
            not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{field} must be a tuple of mask layer names, not {value!r}")
    return value


def check_batch_size(batch_size) -> None:
    """Raise ValueError unless ``batch_size`` is an integer >= 1."""
    _positive_int(batch_size, "batch_size")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer of a network, as far as lowering needs to know it.

    Parameters
    ----------
    name : str
        Unique layer name (``"conv1"``, ``"layer2.0.conv1"``).
    kind : str
        One of :data:`LAYER_KINDS`.
    in_shape : tuple of int
        Per-sample input shape: ``(H, W, C)`` for ``conv2d``, the pools and ``global_avg_pool``,
        ``(F,)`` for ``linear``, any for the elementwise kinds.
    features : int
        Output channels (``conv2d``) or output features (``linear``); unused otherwise.
    kernel, stride, padding : int
        Convolution or pooling window geometry (square kernel, symmetric padding).
    bias : bool
        The layer adds a bias (the forward GEMM accumulates onto it; the weight-gradient
        command computes its gradient as one more row, ``bias_row``).
    p : float
        Drop probability of a ``dropout`` layer, in [0, 1).
    input_grad : bool
        The gradient with respect to the input is needed (false for the first layer).
    input_mask, output_mask : tuple of str
        Names of the ReLU/dropout layers whose masks gate this layer's input (zeros of ``X``,
        outputs of backward-data that need not be computed) and its output (zeros of ``dY``).
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    features: int = 0
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    bias: bool = False
    p: float = 0.0
    input_grad: bool = True
    input_mask: tuple[str, ...] = ()
    output_mask: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, not {self.name!r}")
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"{self.name}: kind must be one of {list(LAYER_KINDS)}, "
                             f"not {self.kind!r}")
        shape = self.in_shape
        if not isinstance(shape, tuple) or not shape or \
                any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise ValueError(f"{self.name}: in_shape must be a non-empty tuple of integers >= 1, "
                             f"not {shape!r}")
        rank = {"conv2d": 3, "max_pool2d": 3, "avg_pool2d": 3, "global_avg_pool": 3,
                "linear": 1}.get(self.kind)
        if rank is not None and len(shape) != rank:
            layout = "(H, W, C)" if rank == 3 else "(features,)"
            raise ValueError(f"{self.name}: in_shape of a {self.kind} layer must be {layout}, "
                             f"not {shape!r}")
        if self.kind in WEIGHT_KINDS:
            _positive_int(self.features, f"{self.name}: features")
        _positive_int(self.kernel, f"{self.name}: kernel")
        _positive_int(self.stride, f"{self.name}: stride")
        _positive_int(self.padding, f"{self.name}: padding", minimum=0)
        if self.kind in WINDOW_KINDS:
            height, width, _ = shape
            if height + 2 * self.padding < self.kernel or width + 2 * self.padding < self.kernel:
                raise ValueError(f"{self.name}: kernel {self.kernel} is larger than the padded "
                                 f"input {height + 2 * self.padding}x{width + 2 * self.padding}")
        _bool(self.bias, f"{self.name}: bias")
        _bool(self.input_grad, f"{self.name}: input_grad")
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or \
                not (0.0 <= self.p < 1.0):
            raise ValueError(f"{self.name}: dropout p must be a number in [0, 1), not {self.p!r}")
        _mask_names(self.input_mask, f"{self.name}: input_mask")
        _mask_names(self.output_mask, f"{self.name}: output_mask")

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Per-sample output shape."""
        if self.kind in WINDOW_KINDS:
            height, width, channels = self.in_shape
            features = self.features if self.kind == "conv2d" else channels
            return (self.out_size(height), self.out_size(width), features)
        if self.kind == "linear":
            return (self.features,)
        if self.kind == "flatten":
            return (math.prod(self.in_shape),)
        if self.kind == "global_avg_pool":
            return (self.in_shape[2],)
        return self.in_shape

    def out_size(self, size: int) -> int:
        """Output height/width of a convolution or pool for an input of ``size``."""
        return (size + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def im2col_identity(self) -> bool:
        """The im2col matrix is the input itself (1x1 kernel, stride 1, no padding)."""
        return self.kernel == 1 and self.stride == 1 and self.padding == 0


@dataclasses.dataclass(frozen=True)
class GemmCommand:
    """One engine GEMM: ``C (M x N) = A (M x K) . B (K x N)`` (+ ``C_in`` if accumulate).

    Parameters
    ----------
    name : str
        ``"<layer>.<forward|backward_data|weight_grad>"``.
    layer : str
        The layer it belongs to.
    kind : str
        One of :data:`GEMM_KINDS`.
    M, N, K : int
        Problem shape (each >= 1).
    transpose_a, transpose_b : bool
        A is stored K x M / B is stored N x K and read transposed by the engine.
    accumulate : bool
        The accumulators start from ``C_in`` (described by ``c_source``) instead of ``+0``.
    c_source : str or None
        What ``C_in`` holds; required exactly when ``accumulate``.
    a_mask, b_mask : str or None
        Which ReLU/dropout masks put zeros in A / B (``" & "``-joined layer names).
    out_mask : str or None
        The forward mask that gates this command's outputs (backward-data only).
    bias_row : bool
        The layer's bias gradient is folded in (weight-gradient only): the last row of A (the
        last column of A as stored, when transposed) is ones, never zero, and the last row of
        C is the bias gradient; ``a_mask`` describes the other rows.
    """

    name: str
    layer: str
    kind: str
    M: int
    N: int
    K: int
    transpose_a: bool = False
    transpose_b: bool = False
    accumulate: bool = False
    c_source: str | None = None
    a_mask: str | None = None
    b_mask: str | None = None
    out_mask: str | None = None
    bias_row: bool = False

    def __post_init__(self):
        if self.kind not in GEMM_KINDS:
            raise ValueError(f"kind must be one of {list(GEMM_KINDS)}, not {self.kind!r}")
        for field in ("M", "N", "K"):
            _positive_int(getattr(self, field), field)
        for field in ("transpose_a", "transpose_b", "accumulate", "bias_row"):
            _bool(getattr(self, field), field)
        if self.accumulate != (self.c_source is not None):
            raise ValueError(f"c_source must be given exactly when accumulate is set "
                             f"(accumulate={self.accumulate}, c_source={self.c_source!r})")
        if self.out_mask is not None and self.kind != "backward_data":
            raise ValueError(f"out_mask is only meaningful for backward_data, not {self.kind}")
        if self.bias_row and (self.kind != "weight_grad" or self.M < 2):
            raise ValueError(f"bias_row needs a weight_grad command with M >= 2 (the weight "
                             f"rows and the bias row), not {self.kind} with M={self.M}")

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates."""
        return self.M * self.N * self.K

    @property
    def a_shape(self) -> tuple[int, int]:
        """Shape of A as stored."""
        return (self.K, self.M) if self.transpose_a else (self.M, self.K)

    @property
    def b_shape(self) -> tuple[int, int]:
        """Shape of B as stored."""
        return (self.N, self.K) if self.transpose_b else (self.K, self.N)


def _describe(masks: tuple[str, ...]) -> str | None:
    return " & ".join(masks) if masks else None


def layer_commands(spec: LayerSpec, *, batch_size: int, phase: str = "all") -> list[GemmCommand]:
    """GEMM commands of one layer for one training step.

    Parameters
    ----------
    spec : LayerSpec
    batch_size : int
        Samples per step (>= 1).
    phase : str
        ``"forward"``, ``"backward"`` (in execution order: weight gradient, with the bias
        gradient folded in as its last row when the layer has a bias, then backward data) or
        ``"all"`` (forward then backward).
    """
    if not isinstance(spec, LayerSpec):
        raise ValueError(f"spec must be a LayerSpec, not {type(spec).__name__}")
    check_batch_size(batch_size)
    if phase not in ("forward", "backward", "all"):
        raise ValueError(f"phase must be one of ['forward', 'backward', 'all'], not {phase!r}")
    if spec.kind not in WEIGHT_KINDS:
        return []
    if spec.kind == "conv2d":
        out_h, out_w, _ = spec.out_shape
        rows = batch_size * out_h * out_w
        depth = spec.kernel * spec.kernel * spec.in_shape[2]
    else:
        rows, depth = batch_size, spec.in_shape[0]
    features = spec.features
    x_mask, dy_mask = _describe(spec.input_mask), _describe(spec.output_mask)
    gated = x_mask
    if gated is not None and spec.kind == "conv2d" and not spec.im2col_identity:
        gated = f"im2col({gated})"

    def command(suffix, kind, m, n, k, **kwargs):
        return GemmCommand(name=f"{spec.name}.{suffix}", layer=spec.name, kind=kind,
                           M=m, N=n, K=k, **kwargs)

    forward = [command("forward", "forward", rows, features, depth, a_mask=x_mask,
                       accumulate=spec.bias,
                       c_source="bias broadcast over rows" if spec.bias else None)]
    # with a bias, A = [X_col | 1]: one more output row, the bias gradient (module doc)
    weight_rows = depth + 1 if spec.bias else depth
    backward = [command("weight_grad", "weight_grad", weight_rows, features, rows,
                        transpose_a=True, a_mask=x_mask, b_mask=dy_mask, bias_row=spec.bias)]
    if spec.input_grad:
        backward.append(command("backward_data", "backward_data", rows, depth, features,
                                transpose_b=True, a_mask=dy_mask, out_mask=gated))
    return {"forward": forward, "backward": backward, "all": forward + backward}[phase]


def transposed_backward_data(spec: LayerSpec, *, batch_size: int) -> GemmCommand | None:
    """The backward-data GEMM of a stride-1 convolution lowered as a transposed convolution
    (None for any other layer, or one without ``input_grad``): ``dX = im2col(dY) . W'``,
    ``M = batch * H_in * W_in`` rows, ``K = kernel^2 * C_out`` steps, ``N = C_in`` columns,
    ``W'`` the flipped weight of :func:`sim.nn.im2col.transposed_weight`. Against
    :func:`layer_commands`' backward data (``K = C_out``, ``N = kernel^2 * C_in``, then
    col2im), its K is ``kernel^2`` times longer: what lets skipping beat the per-tile floor
    of ``2R`` slots (docs/sparsity_study.md). The host builds im2col of dY instead of adding
    the columns back with col2im; neither is priced here."""
    if not isinstance(spec, LayerSpec):
        raise ValueError(f"spec must be a LayerSpec, not {type(spec).__name__}")
    check_batch_size(batch_size)
    if spec.kind != "conv2d" or spec.stride != 1 or not spec.input_grad:
        return None
    height, width, channels = spec.in_shape
    return GemmCommand(name=f"{spec.name}.backward_data_transposed", layer=spec.name,
                       kind="backward_data", M=batch_size * height * width, N=channels,
                       K=spec.kernel * spec.kernel * spec.features,
                       a_mask=_describe(spec.output_mask), out_mask=_describe(spec.input_mask))


def check_chain(layers: Iterable, *, input_shape: tuple[int, ...]) -> None:
    """Raise ValueError naming the layer whose ``in_shape`` is not the output shape of the
    layer before it. ``layers`` (specs, or anything with ``name``, ``in_shape`` and
    ``out_shape``) form a sequential chain fed with ``input_shape``."""
    shape, previous = tuple(input_shape), "the network input"
    for layer in layers:
        if tuple(layer.in_shape) != shape:
            raise ValueError(f"shape mismatch: {layer.name}.in_shape is {tuple(layer.in_shape)}, "
                             f"but {previous} has shape {shape}")
        shape, previous = tuple(layer.out_shape), f"the output of {layer.name}"


def network_commands(specs: Iterable[LayerSpec], *, batch_size: int) -> list[GemmCommand]:
    """All GEMM commands of one training step, in execution order: the forward commands of the
    layers in order, then the backward commands of the layers in reverse order."""
    specs = list(specs)
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"layer names must be unique, not repeated: {duplicates}")
    forward = [c for s in specs for c in layer_commands(s, batch_size=batch_size, phase="forward")]
    backward = [c for s in reversed(specs)
                for c in layer_commands(s, batch_size=batch_size, phase="backward")]
    return forward + backward
