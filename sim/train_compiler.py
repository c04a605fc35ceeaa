"""Compiler of a network's training step into accelerator programs (:mod:`sim.accel_spec`
instructions, run bit for bit by :class:`sim.accel_model.AcceleratorModel` and the hardware).

Scope: networks of ``Conv2d`` (3x3, stride 1, padding 1, with or without bias), ``Flatten``,
``Linear`` (with or without bias), ``ReLU`` and ``Dropout`` layers (:mod:`sim.nn.layers`;
:func:`sim.nn.networks.digits_mlp` and :func:`~sim.nn.networks.digits_cnn` are the targets):
convolutions first, then ``Linear`` layers, the last weighted layer a ``Linear``, the first
preceded by nothing but ``Flatten``; no dropout after a convolution. Anything else raises
ValueError naming the layer and the field (:data:`SUPPORTED_KINDS`, :data:`CONV_KERNEL`).

What it makes, for a batch size ``B`` and an :class:`~sim.config.AccelConfig`:

* :class:`TrainingLayout`: every DRAM region (:class:`sim.compiler.Region`), placed once for
  all steps; :func:`initial_image` fills it from the network's parameters.
* Three programs: ``forward`` (input batch -> logits, saving what the backward pass needs),
  ``backward_update`` (dLogits -> gradients -> SGD of every FP32 master -> operand copies
  rewritten from the masters) and ``inference`` (forward, dropout off, nothing saved).
* The host's part per step (:func:`host_loss_gradient`, :func:`run_training_step`) and an
  independent numpy reference of the whole step (:func:`reference_step`).

Layout (all regions row-major, rows padded to whole bus beats, one spare beat after each)
------------------------------------------------------------------------------------------
For each ``Linear`` layer ``L`` with ``I`` inputs, ``O`` outputs (``b = 1`` with a bias, else 0):

=====================  ================  ======  =============================================
region                 shape             format  content
=====================  ================  ======  =============================================
``L.input``            B x (I + b)       act     the layer's input (the first layer's: the
                                                 batch, written by the host; the others':
                                                 saved by ``forward``); column ``I`` is ones
``L.weight``           I x O             weight  operand copy of W (B side of the GEMMs)
``L.master``           (I + b) x O       fp32    FP32 master of W, the bias as row ``I``
``L.grad_output``      B x O             grad    dY of the layer's output (absent for the
                                                 last layer without activations after it:
                                                 its dY is ``dlogits``)
``R.output``           B x O             fp32    output of ReLU layer ``R`` (for ReLU
                                                 backward: the accumulators take FP32 only)
``logits``             B x classes       fp32    written by ``forward`` / ``inference``
``dlogits``            B x classes       fp32    written by the host
``program.<name>``     instructions              ``forward`` and ``backward_update``
                                                 adjacent (one host write per step),
                                                 then ``inference``
=====================  ================  ======  =============================================

Convolutions (:class:`Image` regions: NHWC, image after image, each ``(H + 2 pad) x (W + 2
pad)`` pixels, a pixel's ``C`` channels contiguous and padded to whole beats; the border zero,
never written). For a convolution ``L`` on ``H x W x C_in`` images with ``C_out`` outputs: ``L.
input`` (act, pad 1: the host's batch for the first, else stored by the convolution before),
``L.weight`` (``9 C_in x C_out``, rows ``(ky, kx, c_in)``), ``L.master`` (``(9 C_in + b) x
C_out``), ``R.output`` of its ReLU (fp32, pad 0), ``L.grad_output`` (grad; pad 1 when the
layer computes ``dX``, which convolves it, else 0). The ``Linear`` after the last convolution
takes its input as an image too (act, pad 0: with dense pixels exactly a ``B x I`` matrix,
without the ones column). ``ones`` (one act value 1.0) is the ones column of the bias
gradients of those layers, loaded with ``dram_stride = 0``.

The GEMMs of a convolution (``P = B H W`` output pixels, rows ``(b, y, x)``):

* forward ``Y = im2col(X) . W (+ b)``; im2col by the DMA and the loader: per kernel row ``ky``
  and image of the output block, one ``LOAD`` of the padded input rows ``y + ky`` (``W + 2``
  pixels each, ``dram_stride`` = a pixel, ``cols = C_in``; the image rows as ``groups``) with
  three ``copies`` (``copy_cols = C_in``: tap ``(ky, kx)`` of output pixel ``x`` is pixel ``x
  + kx``) into the A columns ``3 ky C_in ...``; per tap where a chunk cuts a kernel row;
* backward data ``dX = im2col(dY) . W_flip`` with ``W_flip[(tap, c_out), c_in] = W[(8 - tap,
  c_in), c_out]`` (the kernel flipped in space, channels swapped): the same gather of the
  padded dY, B stored ``C_in x 9 C_out`` (``b_transpose``), per tap one ``LOAD`` of ``C_in``
  rows of W. This is the accelerator's definition of the convolution's backward data: the
  FP32 sum runs over ``(tap, c_out)`` ascending, unlike :mod:`sim.nn`'s col2im (another
  rounding order; not bit-exact with :mod:`sim.nn`'s training, nor meant to be);
* weight gradient ``[dW; db] = [im2col(X) | 1]^T . dY`` (``a_transpose``, ``K = P`` tiled),
  the ones column loaded from ``ones``.

A ``Linear`` on a flattened image loads and stores its blocks per run of values contiguous in
DRAM: a whole image (pad 0, dense pixels), else a pixel. Chunks of im2col columns hold whole
taps (multiples of ``C``), preferably whole kernel rows (``3 C``), of output pixels preferably
whole image rows.

``act`` is the A side's operand format, ``weight`` the B side's and ``grad`` one both sides
take (``fp16`` where the PEs take it, else ``e4m3``, else ``e5m2``; :class:`Formats`).

Op order (each GEMM tiled into engine commands as :mod:`sim.compiler` does: blocks of ``m``
and ``n``, each block's ``k`` slices ascending, A and B blocks placed round their scratchpads
as in a ring, a block still held not loaded again (:class:`_Residency`); a block's results in
one half of the accumulator rows and a second operand of an ``EPILOGUE`` in the other, the
halves swapping roles from one output block to the next, so that a block's ``STORE`` of its
results runs while the next block's loads and GEMM do; each command's A and B ``LOAD``s come
before the epilogue and stores of the block the command before it ended, so that they run
beside that GEMM, which the ``EPILOGUE`` waits for: the controller's interlock keeps program
order)
------------------------------------------------------------------------------------------------
``forward``, per ``Linear`` in order, per output block of ``Y = X . W``:

1. bias: ``LOAD`` of the master's row ``I`` into the block's accumulator rows with
   ``dram_stride = 0`` (every row gets the bias), then accumulating GEMMs: the FP32 sum starts
   at the bias, as :class:`sim.nn.layers.Linear` computes ``X . W + b`` (no bias: the first
   ``k`` slice starts at ``+0``);
2. the layer's activations in network order: ``EPILOGUE RELU`` then (training) ``STORE`` of
   the ReLU output in fp32; ``EPILOGUE DROPOUT`` with the layer's mask (training only) and
   the factor ``float32(1 / (1 - p))``;
3. ``STORE`` into the next layer's input (converted to ``act``), or into ``logits`` (fp32).

``backward_update``, with ``dY`` the gradient of the last layer's output (``dlogits``, or, if
activations follow the last ``Linear``, those activations' backward pass on it stored into
its ``grad_output``), per ``Linear`` from the last:

1. backward data (not for the first layer): ``dX = dY . W^T`` (GEMM ``b_transpose``, the
   operand copy of W before its update), then per block the backward of the previous layer's
   activations in reverse order: ``EPILOGUE DROPOUT`` with the same mask and factor,
   ``EPILOGUE RELU_BACKWARD`` against the ReLU output loaded into the second accumulator
   rows; ``STORE`` into the previous layer's ``grad_output`` (``grad``);
2. weight gradient and update: ``[dW; db] = [X | 1]^T . dY`` (GEMM ``a_transpose`` over the
   layer input region whose column ``I`` is ones, so that the bias gradient, the column sums
   of dY in batch order, is the result's row ``I``: the fold of :mod:`sim.lowering`); per
   block: ``LOAD`` of the master block, ``EPILOGUE SGD`` (``w = w - lr * (dw + wd * w)``,
   weight decay on the bias too), ``STORE`` of the master (fp32) and of the operand copy
   (converted by the store; rows below ``I`` only). Gradients never leave the accumulators.

Convolutions follow the same steps with their GEMMs (above): the bias loaded into the
accumulators first, ReLU, the ReLU output and the next input stored per image row of the
block (one ``STORE`` per block where the image has no border); backward data through the
previous convolution's ReLU; weight gradient and update as for a ``Linear``.

Dropout masks are :func:`sim.epilogue.dropout_keep` of the whole ``B x O`` tensor with the
seed :func:`sim.lfsr.layer_seed` ``(dropout_seed, layer, step)``: an ``EPILOGUE DROPOUT`` on
the block at ``(m0, n0)`` carries that seed jumped ``m0 * ROW_STRIDE + n0 * 8`` LFSR steps
ahead (:func:`sim.lfsr.lfsr_jump`), which makes the block's mask the tensor's mask at the
block, whatever the tiling. The seeds are immediates of the program, so the programs differ
from step to step in those fields only: the host writes the step's two programs (one DRAM
write, :func:`training_programs`) before the batch, or not at all when the network has no
dropout.

Host per step (:func:`run_training_step`, :attr:`CompiledTraining.host_interactions`)
-----------------------------------------------------------------------------------------
write the step's programs (networks with dropout), write the batch, ring ``forward``
(``PROG_BASE``/``PROG_LEN``/``CTRL``), wait for the IRQ, read the logits, compute the softmax
cross-entropy gradient (:func:`host_loss_gradient`, fp32, scaled by ``1 / B``), write
``dlogits``, ring ``backward_update``, wait for the IRQ. Nothing per GEMM or per layer.

Pure numpy: no Amaranth here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .accel_model import assemble, read_matrix, write_matrix
from .accel_spec import (EPILOGUE_DROPOUT_BITS, FORMAT_BITS, FORMAT_BYTES, INSTRUCTION_BYTES,
                         TRANSFER_FIELDS, EpilogueOp, Opcode, Target)
from .compiler import Region, RegionPlacer, _tiles, moved_bytes
from .config import AccelConfig
from .drowsy import DrowsyPlan
from .epilogue import dropout, dropout_keep, relu, relu_backward, sgd
from .gemm import gemm
from .lfsr import ROW_STRIDE, drop_threshold, layer_seed, lfsr_jump
from .nn.im2col import im2col
from .nn.loss import softmax_cross_entropy
from .nn.network import Network
from .numerics import convert
from .replay import chunk_limits

__all__ = ["SUPPORTED_KINDS", "CONV_KERNEL", "CONV_STRIDE", "CONV_PADDING", "Formats",
           "Activation", "LayerPlan", "Image", "ProgramSlot", "TrainingLayout", "Program",
           "CompiledTraining", "ReferenceStep", "plan_training",
           "initial_image", "initial_state", "read_state", "training_programs",
           "drowsy_inference_program",
           "write_programs", "compile_training_step", "batch_bits", "host_loss_gradient",
           "reference_step", "run_training_step", "run_inference", "describe"]

#: Layer kinds the compiler takes
SUPPORTED_KINDS = ("flatten", "linear", "conv2d", "relu", "dropout")
#: The one convolution the compiler takes (``sim.nn.networks.digits_cnn``'s): kernel, stride,
#: padding
CONV_KERNEL, CONV_STRIDE, CONV_PADDING = 3, 1, 1
_TAPS = CONV_KERNEL * CONV_KERNEL
#: Program names, in the order of their regions
PROGRAMS = ("forward", "backward_update", "inference")

_ONE_FP32 = 0x3F800000
_OPERAND_ORDER = ("fp16", "e4m3", "e5m2")


def _fp32_bits(value: float) -> int:
    return int(np.float32(value).view(np.uint32))


def _ceil_to(value: int, step: int) -> int:
    return -(-value // step) * step


# -- the plan of a network ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Formats:
    """Operand formats of the tensors in DRAM.

    ``activation``: layer inputs (A of the forward and weight-gradient GEMMs); ``weight``: the
    operand copies of W (B of the forward and backward-data GEMMs); ``gradient``: the dY the
    accelerator stores (B of the weight gradient, A of the backward data: both sides)."""
    activation: str
    weight: str
    gradient: str


@dataclasses.dataclass(frozen=True)
class Activation:
    """An elementwise layer after a ``Linear``: ``kind`` ``"relu"`` or ``"dropout"`` (then
    ``threshold`` out of 256 and ``scale``, the FP32 pattern of ``1 / (1 - p)``; ``p = 0``
    gives threshold 0: the layer does nothing and compiles to nothing)."""
    name: str
    kind: str
    threshold: int = 0
    scale: int = _ONE_FP32


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One weighted layer (``kind`` ``"linear"`` or ``"conv2d"``) and the activations applied
    to its output before the next.

    ``in_features`` are the rows of W: ``I``, or ``9 C_in`` for a convolution (rows ordered
    ``(ky, kx, c_in)``, :mod:`sim.lowering`'s order); ``out_features`` ``O`` or ``C_out``.
    ``image`` is ``(H, W, C)`` of the layer's input when it is an image: a convolution's input,
    or the convolution output a ``Linear`` flattens (``None``: a matrix)."""
    name: str
    in_features: int
    out_features: int
    bias: bool
    activations: tuple
    first: bool
    last: bool
    kind: str = "linear"
    image: tuple | None = None

    @property
    def conv(self) -> bool:
        return self.kind == "conv2d"

    @property
    def master_rows(self) -> int:
        """Rows of the FP32 master: W's, plus the bias row."""
        return self.in_features + int(self.bias)

    @property
    def dropouts(self) -> tuple:
        return tuple(a for a in self.activations if a.kind == "dropout" and a.threshold)


@dataclasses.dataclass(frozen=True)
class Image:
    """A ``batch x height x width x channels`` (NHWC) tensor in DRAM: image after image, each
    ``(height + 2 pad) x (width + 2 pad)`` pixels row-major, a pixel's channels contiguous and
    padded to whole bus beats (``region.stride`` bytes); the ``pad`` border pixels are zero
    (written by nobody). ``region`` is the same bytes as a matrix of pixels x channels (what
    :meth:`TrainingLayout.read` reads, borders included)."""
    region: Region
    batch: int
    height: int
    width: int
    channels: int
    pad: int

    @property
    def fmt(self) -> str:
        return self.region.fmt

    @property
    def pixel_bytes(self) -> int:
        return self.region.stride

    @property
    def image_bytes(self) -> int:
        return (self.height + 2 * self.pad) * (self.width + 2 * self.pad) * self.pixel_bytes

    @property
    def features(self) -> int:
        """Values of one image (a ``Linear``'s inputs after ``Flatten``)."""
        return self.height * self.width * self.channels

    @property
    def dense(self) -> bool:
        """The channels fill the pixel's beats: a run of pixels is a run of values."""
        return self.pixel_bytes == self.channels * FORMAT_BYTES[self.fmt]

    def pixel_addr(self, b: int, y: int, x: int) -> int:
        """Address of pixel ``(y, x)`` of image ``b`` (``-pad <= y < height + pad``)."""
        return (self.region.addr + b * self.image_bytes
                + ((y + self.pad) * (self.width + 2 * self.pad) + x + self.pad)
                * self.pixel_bytes)

    def bits(self, array) -> np.ndarray:
        """The region's rows for the ``(batch, height, width, channels)`` bit patterns
        ``array``: the border added (zero)."""
        p = self.pad
        padded = np.pad(np.asarray(array), ((0, 0), (p, p), (p, p), (0, 0)))
        return padded.reshape(-1, self.channels)


@dataclasses.dataclass(frozen=True)
class ProgramSlot:
    """Where a program lives: ``length`` instructions at ``addr``."""
    addr: int
    length: int

    @property
    def end(self) -> int:
        return self.addr + self.length * INSTRUCTION_BYTES


@dataclasses.dataclass(frozen=True)
class TrainingLayout:
    """The DRAM layout of a network's training step (module docstring: the regions).

    Attributes
    ----------
    config : AccelConfig
    batch : int
    formats : Formats
    layers : tuple of LayerPlan
        The weighted layers in forward order.
    regions : dict of str -> sim.compiler.Region
    programs : dict of str -> ProgramSlot
        ``forward``, ``backward_update``, ``inference``.
    size : int
        Bytes of the image (from address 0).
    images : dict of str -> Image
        The regions that hold images (convolution inputs, ReLU outputs and gradients of
        convolutions), with their geometry; their ``region`` is in ``regions`` too.
    """
    config: AccelConfig
    batch: int
    formats: Formats
    layers: tuple
    regions: dict
    programs: dict
    size: int
    images: dict = dataclasses.field(default_factory=dict)

    @property
    def has_dropout(self) -> bool:
        return any(layer.dropouts for layer in self.layers)

    @property
    def classes(self) -> int:
        return self.layers[-1].out_features

    def grad_region(self, layer: LayerPlan) -> Region:
        """The dY of ``layer``'s output as the GEMMs read it."""
        return self.regions.get(f"{layer.name}.grad_output", self.regions["dlogits"])

    def tensor(self, name: str):
        """Region ``name`` as the GEMMs see it: its :class:`Image`, or the matrix."""
        return self.images.get(name, self.regions[name])

    def read(self, dram, name: str) -> np.ndarray:
        """The bit patterns of region ``name`` in ``dram``."""
        r = self.regions[name]
        return read_matrix(dram, r.addr, r.stride, r.rows, r.cols, r.fmt)

    def region_bytes(self, name: str, bits) -> bytes:
        """The bytes of region ``name`` (``rows * stride``, padding zero) holding ``bits``:
        what one host DRAM write at ``regions[name].addr`` puts there."""
        r = self.regions[name]
        buffer = bytearray(r.rows * r.stride)
        write_matrix(buffer, 0, r.stride, np.asarray(bits), r.fmt)
        return bytes(buffer)


def _operand_format(formats, field: str, also=None) -> str:
    candidates = [f for f in _OPERAND_ORDER if f in formats and (also is None or f in also)]
    if not candidates:
        raise ValueError(f"config: {field} has no operand format in common with the other "
                         f"side ({list(formats)} and {list(also)})")
    return candidates[0]


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, not {value!r}")
    return int(value)


def _check_number(name: str, value, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not math.isfinite(value) or value < 0 or (positive and value == 0) \
            or value > float(np.finfo(np.float32).max):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'} "
                         f"(in FP32 range), not {value!r}")
    return float(value)


def _check_conv(layer) -> tuple:
    """The input image ``(H, W, C)`` of a ``Conv2d`` the compiler takes (:data:`CONV_KERNEL`
    and the others), else ValueError naming the layer and the field."""
    spec = layer.spec
    supported = (f"the training compiler supports {CONV_KERNEL}x{CONV_KERNEL} convolutions "
                 f"with stride {CONV_STRIDE} and padding {CONV_PADDING}")
    for field, want in (("kernel", CONV_KERNEL), ("stride", CONV_STRIDE),
                        ("padding", CONV_PADDING)):
        value = getattr(spec, field)
        if value != want:
            raise ValueError(f"layer {layer.name!r}: {field} must be {want} ({supported}), "
                             f"not {value!r}")
    return tuple(spec.in_shape)


def _layer_plans(network) -> tuple:
    """The weighted layers of ``network`` with their activations (module docstring)."""
    if not isinstance(network, Network):
        raise ValueError(f"network must be a sim.nn.Network, not {network!r}")
    plans, current = [], None
    for layer in network.all_layers():
        kind = getattr(layer, "kind", "")
        if kind not in SUPPORTED_KINDS:
            raise ValueError(f"layer {layer.name!r} is a {kind or type(layer).__name__} layer; "
                             f"the training compiler supports {', '.join(SUPPORTED_KINDS)}")
        if kind == "flatten":       # a reshape: the data are row-major either way
            continue
        if kind in ("linear", "conv2d"):
            spec = layer.spec
            image = None
            if kind == "conv2d":
                image = _check_conv(layer)
                if current is not None and current["kind"] != "conv2d":
                    raise ValueError(f"layer {layer.name!r}: a conv2d layer after a Linear is "
                                     f"not supported (convolutions come first)")
            elif current is not None and current["kind"] == "conv2d":
                height, width, _ = current["image"]     # Flatten of the conv's output
                image = (height, width, current["out_features"])
            if current is not None:
                plans.append(current)
                if not spec.input_grad:
                    raise ValueError(f"layer {layer.name!r}: input_grad=False after another "
                                     f"weighted layer is not supported (the layers before it "
                                     f"would not train)")
            in_features = (_TAPS * image[2] if kind == "conv2d" else spec.in_shape[0])
            current = {"name": layer.name, "kind": kind, "in_features": in_features,
                       "out_features": spec.features, "bias": bool(spec.bias),
                       "activations": [], "image": image}
            continue
        if current is None:
            raise ValueError(f"layer {layer.name!r}: a {kind} layer before the first weighted "
                             f"layer is not supported (the batch goes straight into the first "
                             f"GEMM)")
        if kind == "relu":
            current["activations"].append(Activation(layer.name, "relu"))
        else:
            p = layer.p
            if p == 0:
                current["activations"].append(Activation(layer.name, "dropout"))
                continue
            if current["kind"] == "conv2d":
                raise ValueError(f"layer {layer.name!r}: dropout (p > 0) after a conv2d layer "
                                 f"is not supported (masks are per Linear output)")
            try:
                threshold = drop_threshold(p, bits=EPILOGUE_DROPOUT_BITS)
            except ValueError as exc:
                raise ValueError(f"layer {layer.name!r}: {exc}") from None
            current["activations"].append(Activation(
                layer.name, "dropout", threshold, _fp32_bits(np.float32(1.0 / (1.0 - p)))))
    if current is None:
        raise ValueError(f"network {network.name!r} has no Linear layer")
    if current["kind"] != "linear":
        raise ValueError(f"layer {current['name']!r}: the last weighted layer must be a Linear "
                         f"(the logits are a batch x classes matrix), not a conv2d")
    plans.append(current)
    count = len(plans)
    return tuple(LayerPlan(p["name"], p["in_features"], p["out_features"], p["bias"],
                           tuple(p["activations"]), first=i == 0, last=i == count - 1,
                           kind=p["kind"], image=p["image"])
                 for i, p in enumerate(plans))


def plan_training(network, config: AccelConfig, batch: int, *, base: int = 0) -> TrainingLayout:
    """The :class:`TrainingLayout` of ``network``'s training step on ``config`` for ``batch``
    samples; the image starts at ``base`` (beat-aligned). Bad arguments raise ValueError
    naming the field (``batch``, ``config``, ``base``) or the layer."""
    if not isinstance(config, AccelConfig):
        raise ValueError(f"config must be an AccelConfig, not {config!r}")
    batch = _check_int("batch", batch, 1, min(ROW_STRIDE - 1, (1 << 16) - 1))
    beat = config.beat_bytes
    base = _check_int("base", base, 0)
    if base % beat:
        raise ValueError(f"base must be a multiple of the beat ({beat} bytes), not {base}")
    engine = config.engine
    if "fp32" not in engine.out_formats:
        raise ValueError(f"config: engine.out_formats must contain fp32 (logits, masters and "
                         f"the EPILOGUE), not {list(engine.out_formats)}")
    array = engine.array
    formats = Formats(activation=_operand_format(array.a_formats, "a_formats"),
                      weight=_operand_format(array.b_formats, "b_formats"),
                      gradient=_operand_format(array.a_formats, "a_formats", array.b_formats))
    for what, fmt in dataclasses.asdict(formats).items():
        if fmt not in engine.out_formats:
            raise ValueError(f"config: the {what} format {fmt} must be one of "
                             f"engine.out_formats {list(engine.out_formats)} (stores write it)")
    layers = _layer_plans(network)
    for layer in layers:
        if layer.dropouts and layer.out_features * EPILOGUE_DROPOUT_BITS > ROW_STRIDE:
            raise ValueError(f"layer {layer.name!r}: {layer.out_features} outputs x "
                             f"{EPILOGUE_DROPOUT_BITS} bits exceed a dropout mask row "
                             f"({ROW_STRIDE} LFSR steps)")

    placer = RegionPlacer(base, beat)
    regions, place = placer.regions, placer.place
    images: dict[str, Image] = {}

    def place_image(name, shape, fmt, pad):
        height, width, channels = shape
        place(name, batch * (height + 2 * pad) * (width + 2 * pad), channels, fmt)
        images[name] = Image(regions[name], batch, height, width, channels, pad)

    if any(layer.image is not None and layer.bias for layer in layers):
        place("ones", 1, 1, formats.activation)     # the bias gradient's ones column
    for index, layer in enumerate(layers):
        if layer.conv:      # padded for its im2col
            place_image(f"{layer.name}.input", layer.image, formats.activation, CONV_PADDING)
        elif layer.image is not None:                # a conv's output, flattened
            place_image(f"{layer.name}.input", layer.image, formats.activation, 0)
        else:
            place(f"{layer.name}.input", batch, layer.master_rows, formats.activation)
        place(f"{layer.name}.weight", layer.in_features, layer.out_features, formats.weight)
        place(f"{layer.name}.master", layer.master_rows, layer.out_features, "fp32")
        out_image = layer.image[:2] + (layer.out_features,) if layer.conv else None
        for act in layer.activations:
            if act.kind == "relu":
                if layer.conv:
                    place_image(f"{act.name}.output", out_image, "fp32", 0)
                else:
                    place(f"{act.name}.output", batch, layer.out_features, "fp32")
        if layer.conv:      # dY: padded when the layer's backward data convolves it
            place_image(f"{layer.name}.grad_output", out_image, formats.gradient,
                        0 if layer.first else CONV_PADDING)
        elif not layer.last or layer.activations:
            place(f"{layer.name}.grad_output", batch, layer.out_features, formats.gradient)
    place("logits", batch, layers[-1].out_features, "fp32")
    place("dlogits", batch, layers[-1].out_features, "fp32")
    layout = TrainingLayout(config, batch, formats, layers, regions, {}, 0, images)
    programs = {}
    cursor = placer.cursor
    for name, built in _build_programs(layout, lr=1.0, weight_decay=0.0, dropout_seed=0,
                                       step=0).items():
        programs[name] = ProgramSlot(_ceil_to(cursor, INSTRUCTION_BYTES),
                                     len(built.instructions))
        cursor = programs[name].end
    return dataclasses.replace(layout, programs=programs, size=_ceil_to(cursor, beat))


# -- tiling -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Shape:
    """What :func:`sim.replay.chunk_limits` and :func:`sim.compiler._tiles` read of a GEMM."""
    name: str
    M: int
    N: int
    K: int
    transpose_a: bool
    transpose_b: bool
    accumulate: bool


def _chunks(layout: TrainingLayout, shape: _Shape, steps: dict | None = None,
            tiles: dict | None = None, parts: int = 2) -> dict:
    """Command sizes of ``shape``: the memories' limits (A and B rows halved for the double
    buffer, result rows to the ``parts`` th of the accumulators: halves for a result and an
    epilogue's second operand, quarters for two of each), cut on
    whole bus beats of every matrix in DRAM and, where that fits, on whole array tiles.
    ``steps`` and ``tiles`` replace the multiples a chunk must be (``steps``) and should be
    (``tiles``) where images are involved (:func:`_image_steps`)."""
    engine = layout.config.engine
    limits = chunk_limits(shape, engine)
    a_rows = "k" if shape.transpose_a else "m"
    b_rows = "n" if shape.transpose_b else "k"
    limits[a_rows] = min(limits[a_rows], engine.a_rows // 2)
    limits[b_rows] = min(limits[b_rows], engine.b_rows // 2)
    limits["m"] = min(limits["m"], engine.acc_rows // parts)
    narrowest = min(FORMAT_BYTES[f] for f in (*dataclasses.astuple(layout.formats), "fp32"))
    per_beat = layout.config.beat_bytes // narrowest
    # a dimension that is a column index of a matrix in DRAM starts on a beat
    steps = {"m": per_beat if shape.transpose_a else 1, "n": per_beat,
             "k": 1 if shape.transpose_a and not shape.transpose_b else per_beat,
             **(steps or {})}
    tiles = {"m": engine.array.rows, "n": engine.array.cols, "k": 1, **(tiles or {})}
    chunks = {}
    for field, total in (("m", shape.M), ("n", shape.N), ("k", shape.K)):
        if total <= limits[field]:
            chunks[field] = total
            continue
        whole = math.lcm(steps[field], tiles[field])
        size = limits[field] // whole * whole or limits[field] // steps[field] * steps[field]
        if size == 0:
            raise ValueError(f"{shape.name}: a {field} chunk must be a multiple of "
                             f"{steps[field]} elements (whole bus beats, or whole pixels or "
                             f"kernel taps of an image) and fit the memories ({field} <= "
                             f"{limits[field]}): config too small")
        chunks[field] = size
    return chunks


def _tile_seed(seed: int, row: int, col: int) -> int:
    """The seed whose mask of a block is the mask of seed ``seed``'s tensor at ``(row, col)``."""
    return int(lfsr_jump(seed, row * ROW_STRIDE + col * EPILOGUE_DROPOUT_BITS))


# -- views: a block of a GEMM operand (or of a result) as DMA transfers --------------------------
# ``pieces(rows, cols)`` of the block ``[r0, r1) x [c0, c1)`` of the matrix a view shows: tuples
# ``(dram_addr, dram_stride, rows, cols, row, col)``, one transfer each, ``(row, col)`` its
# place in the block. Together they cover the block exactly once.

class _Matrix:
    """A :class:`~sim.compiler.Region` as it is: one transfer per block."""

    def __init__(self, region: Region):
        self.region, self.fmt = region, region.fmt

    def pieces(self, rows, cols):
        (r0, r1), (c0, c1) = rows, cols
        r = self.region
        return [(r.addr + r0 * r.stride + c0 * FORMAT_BYTES[r.fmt], r.stride, r1 - r0, c1 - c0,
                 0, 0)]


def _row_segments(image: Image, p0: int, p1: int):
    """``(p, b, y, x, n)``: the pixels ``[p0, p1)`` of the unpadded grid (index ``(b, y, x)``
    row-major) as runs of ``n`` pixels within one image row."""
    p = p0
    while p < p1:
        b, rest = divmod(p, image.height * image.width)
        y, x = divmod(rest, image.width)
        n = min(p1 - p, image.width - x)
        yield p, b, y, x, n
        p += n


class _Pixels:
    """An :class:`Image` as a matrix of pixels ``(b, y, x)`` (rows) x channels: one transfer
    per image row of the block (per block when the image has no border)."""

    def __init__(self, image: Image):
        self.image, self.fmt = image, image.fmt

    def pieces(self, rows, cols):
        (p0, p1), (c0, c1) = rows, cols
        image, offset = self.image, c0 * FORMAT_BYTES[self.fmt]
        if image.pad == 0:      # the pixels are evenly spaced throughout
            return [(image.region.addr + p0 * image.pixel_bytes + offset, image.pixel_bytes,
                     p1 - p0, c1 - c0, 0, 0)]
        return [(image.pixel_addr(b, y, x) + offset, image.pixel_bytes, n, c1 - c0, p - p0, 0)
                for p, b, y, x, n in _row_segments(image, p0, p1)]


def _ones_piece(ones: Region | None, index: int, rows: int, c0: int, c1: int) -> list:
    """The ones column at column ``index`` of a block ``[c0, c1)`` wide: one row of ones
    loaded with ``dram_stride = 0`` (every row gets it)."""
    if ones is None or not c0 <= index < c1:
        return []
    return [(ones.addr, 0, rows, 1, 0, index - c0)]


class _Flat:
    """An :class:`Image` flattened (``Flatten``): images (rows) x values ``(y, x, c)``, and with
    ``ones`` a ones column after them (the bias gradient's). One transfer per run of values
    contiguous in DRAM that the block meets: a whole image (no border, dense pixels), an image
    row (dense pixels) or a pixel."""

    def __init__(self, image: Image, ones: Region | None = None):
        self.image, self.fmt, self.ones = image, image.fmt, ones

    def pieces(self, rows, cols):
        (b0, b1), (f0, f1) = rows, cols
        image, size = self.image, FORMAT_BYTES[self.fmt]
        features = image.features
        run = (features if image.pad == 0 else image.width * image.channels) if image.dense \
            else image.channels
        pieces = []
        for r0 in range(f0 - f0 % run, min(f1, features), run):
            s, e = max(f0, r0), min(f1, r0 + run)
            y, x = divmod(r0 // image.channels, image.width)
            pieces.append((image.pixel_addr(b0, y, x) + (s - r0) * size, image.image_bytes,
                           b1 - b0, e - s, 0, s - f0))
        return pieces + _ones_piece(self.ones, features, b1 - b0, f0, f1)


class _Im2col:
    """The im2col matrix of a padded :class:`Image` (3x3, stride 1): output pixels ``(b, y, x)``
    (rows) x ``(ky, kx, c)`` (:mod:`sim.nn.im2col`'s order), and with ``ones`` a ones column
    after them. Per kernel row and image row of the block, one transfer of the image row's
    pixels (``dram_stride`` = a pixel) with three copies (``copies``: the loader writes DRAM
    pixel ``i + kx`` into row ``i`` at tap ``kx``'s columns), so each input pixel is read once
    per kernel row, not once per tap; where a chunk of the K dimension cuts a kernel row, one
    transfer per tap. Nothing is copied in DRAM."""

    def __init__(self, image: Image, ones: Region | None = None):
        if image.pad != CONV_PADDING:
            raise AssertionError(f"im2col of {image.region.name}: pad {image.pad}")
        self.image, self.fmt, self.ones = image, image.fmt, ones

    def pieces(self, rows, cols):
        (p0, p1), (k0, k1) = rows, cols
        image, channels = self.image, self.image.channels
        size = FORMAT_BYTES[self.fmt]
        pieces = []
        for tap in range(k0 // channels, min(-(-k1 // channels), _TAPS)):
            ky, kx = divmod(tap, CONV_KERNEL)
            first = ky * CONV_KERNEL * channels     # the kernel row's first column
            whole = k0 <= first and first + CONV_KERNEL * channels <= k1
            if whole and kx:
                continue            # the kernel row's first tap took the row's other taps
            c0 = max(k0, tap * channels) - tap * channels
            c1 = min(k1, (tap + 1) * channels) - tap * channels
            for p, b, y, x, n in _row_segments(image, p0, p1):
                addr = image.pixel_addr(b, y + ky - CONV_PADDING, x + kx - CONV_PADDING)
                if whole:   # the kernel row's taps: a window of K = 3 copies over n + 2 pixels
                    pieces.append((addr, image.pixel_bytes, n + CONV_KERNEL - 1, channels,
                                   p - p0, first - k0, CONV_KERNEL, channels))
                else:
                    pieces.append((addr + c0 * size, image.pixel_bytes, n, c1 - c0, p - p0,
                                   tap * channels + c0 - k0))
        return pieces + _ones_piece(self.ones, _TAPS * channels, p1 - p0, k0, k1)


class _FlippedWeight:
    """The B operand of a convolution's backward data, stored transposed (``b_transpose``):
    ``B[c_in, (tap, c_out)] = W[(8 - tap, c_in), c_out]`` (the kernel flipped in space, its
    channel dimensions swapped). Per tap, one transfer of ``W``'s rows."""

    def __init__(self, weight: Region, in_channels: int, out_channels: int):
        self.weight, self.fmt = weight, weight.fmt
        self.in_channels, self.out_channels = in_channels, out_channels

    def pieces(self, rows, cols):
        (n0, n1), (k0, k1) = rows, cols
        w, c_out = self.weight, self.out_channels
        pieces = []
        for tap in range(k0 // c_out, -(-k1 // c_out)):
            s0 = max(k0, tap * c_out) - tap * c_out
            s1 = min(k1, (tap + 1) * c_out) - tap * c_out
            row = (_TAPS - 1 - tap) * self.in_channels + n0
            pieces.append((w.addr + row * w.stride + s0 * FORMAT_BYTES[w.fmt], w.stride,
                           n1 - n0, s1 - s0, 0, tap * c_out + s0 - k0))
        return pieces


#: the largest ``groups`` of a LOAD, and the group strides it takes
_MAX_GROUPS = (1 << TRANSFER_FIELDS["groups"][1]) - 1
_GROUP_STRIDES = 1 << TRANSFER_FIELDS["group_stride"][1]


def _groups(pieces) -> list:
    """``(first piece, groups, group_stride)``: runs of consecutive pieces that one ``LOAD``
    moves as groups (the same stride, rows, columns, column and copies, each piece's memory
    rows right after the one before's in the block, the addresses evenly spaced): an im2col
    gather's image rows of one kernel row, a padded image's rows."""
    runs = []
    for piece in pieces:
        if runs:
            (addr, stride, count, width, row, col, copies, copy_cols), groups, step = runs[-1]
            gap = piece[0] - addr
            step = gap if groups == 1 else step
            if (groups < _MAX_GROUPS and piece[1:4] == (stride, count, width)
                    and piece[5:] == (col, copies, copy_cols)
                    and piece[4] == row + groups * (count - copies + 1)
                    and 0 <= step < _GROUP_STRIDES and gap == groups * step):
                runs[-1] = (runs[-1][0], groups + 1, step)
                continue
        runs.append((piece, 1, 0))
    return runs


def _view(tensor):
    return _Matrix(tensor) if isinstance(tensor, Region) else tensor


class _Residency:
    """Which operand blocks one scratchpad (A or B) holds, and where the next one goes.

    A block is placed after the one loaded before it, wrapping round to row 0 (a ring, so the
    oldest blocks are the ones overwritten), but never on the rows of the block the command
    before reads (its GEMM may still run: a load there would wait for it); where that leaves
    no room the block takes the half of the memory the command before does not start in (the
    chunks are at most half the rows). A block whose key (tensor, rows, columns, format) is
    still held is used where it is: a ``dY`` or a weight that every output block of a GEMM
    multiplies is read from DRAM once, not once per block."""

    def __init__(self, rows: int):
        self.rows = rows
        self.blocks: dict = {}       # key -> (first row, rows)
        self.last = (0, 0)           # the rows the command before reads
        self.next = 0

    def forget(self):
        self.blocks.clear()

    def place(self, key, count: int) -> tuple[int, bool]:
        """``(first row, already there)`` of the block ``key`` of ``count`` rows."""
        resident = key in self.blocks
        if resident:
            row, _ = self.blocks[key]
        else:
            lo, hi = self.last
            for row in (self.next, 0, hi):
                if row + count <= self.rows and not (row < hi and lo < row + count):
                    break
            else:
                row = 0 if lo >= self.rows // 2 else self.rows // 2
            self.blocks = {k: (r, n) for k, (r, n) in self.blocks.items()
                           if not (r < row + count and row < r + n)}
            self.blocks[key] = (row, count)
            self.next = row + count
        self.last = (row, row + count)
        return row, resident


class _Builder:
    """Instructions of one program, with the A/B blocks' placement and the byte counts."""

    def __init__(self, layout: TrainingLayout):
        self.layout = layout
        engine = layout.config.engine
        self.operands = {Target.A: _Residency(engine.a_rows),
                         Target.B: _Residency(engine.b_rows)}
        # the accumulator halves: the current output block's results, an epilogue's second
        # operand; they swap at every output block (module docstring)
        self.result, self.aux = 0, engine.acc_rows // 2
        self.instructions: list = []
        self.section = "start"          # the part of the program being emitted (a GEMM's name)
        self.sections: list = []        # per instruction, its section
        self.commands = 0
        self.im2col_loads = self.im2col_taps = self.im2col_bytes = 0

    def emit(self, opcode: Opcode, fields: dict):
        self.instructions.append((opcode, fields))
        self.sections.append(self.section)

    def transfer(self, opcode, tensor, rows: tuple, cols: tuple, *, mem_row: int | None = None,
                 operand_format: str | None = None, target: Target = Target.ACC):
        """The transfers of block ``rows`` x ``cols`` of ``tensor`` (a Region or a view)
        to or from the target memory at row ``mem_row`` (default: the accumulators' current
        result rows; A and B transfers give it), column 0."""
        if mem_row is None:
            if target != Target.ACC:
                raise AssertionError(f"{opcode.name} into {Target(target).name}: no mem_row")
            mem_row = self.result
        view = _view(tensor)
        beat = self.layout.config.beat_bytes
        pieces = [(*p, 1, 0) if len(p) == 6 else p for p in view.pieces(rows, cols)]
        for addr, stride, count, width, row, col, _, _ in pieces:
            if addr % beat or stride % beat:       # the chunks keep every piece aligned
                raise AssertionError(f"{opcode.name} of {rows} x {cols}: address {addr:#x}, "
                                     f"stride {stride} not on a beat")
        runs = _groups(pieces) if opcode == Opcode.LOAD else [(p, 1, 0) for p in pieces]
        for (addr, stride, count, width, row, col, copies, copy_cols), groups, group_stride \
                in runs:
            fields = {"target": int(target), "dram_format": FORMAT_BITS.index(view.fmt),
                      "dram_stride": stride, "dram_addr": addr, "rows": count, "cols": width,
                      "mem_row": mem_row + row, "mem_col": col}
            if groups > 1:
                fields.update(groups=groups, group_stride=group_stride)
            if copies > 1:
                fields.update(copies=copies, copy_cols=copy_cols)
            if operand_format is not None:
                fields["operand_format"] = FORMAT_BITS.index(operand_format)
            self.emit(opcode, fields)
            if isinstance(view, _Im2col) and stride:
                self.im2col_loads += 1
                self.im2col_taps += groups * copies
                self.im2col_bytes += groups * count * _ceil_to(width * FORMAT_BYTES[view.fmt],
                                                               beat)

    def epilogue(self, op: EpilogueOp, rows: int, cols: int, **fields):
        """An ``EPILOGUE`` whose destination and source are the current result rows unless
        ``dst_row`` / ``src_row`` say otherwise."""
        self.emit(Opcode.EPILOGUE, {"op": int(op), "rows": rows, "cols": cols,
                                    "dst_row": self.result, "src_row": self.result, **fields})

    def gemm(self, shape: _Shape, a, a_format: str, b, b_format: str, *, start=None,
             finish=None, steps=None, tiles=None, swap=True, overlap=False,
             mask_dropout=False, prepare=None):
        """The commands of ``shape`` (A from ``a``, B from ``b``, Regions or views, as
        stored); per output block ``start(rows, cols)`` before its first ``k`` slice (it may
        load the accumulators: then ``shape.accumulate``) and ``finish(rows, cols)`` after its
        last. ``steps``, ``tiles``: :func:`_chunks`.

        Without ``overlap``, a block's finish comes once the next command's A and B loads are
        issued (after the last command: at the end), before that command's GEMM, which waits
        for it; ``swap``: the accumulator halves swap roles at each output block (so a block's
        stores of its results run beside the next block's GEMM); without, the results stay in
        one half (a finish that stores from the second operand's half, the SGD's, then runs
        beside the next block's GEMM).

        With ``overlap``, a block's finish comes after the next block's first GEMM, so that its
        ``EPILOGUE`` s run beside that GEMM (the controller lets an ``EPILOGUE`` on other rows
        run while a GEMM is in flight): the blocks' results alternate between two quarters of
        the accumulator rows and their second operands between the other two (``m`` up to a
        quarter of the rows; where a quarter cannot hold a chunk of whole bus beats, no
        overlap). (With the results alternating between the halves and no second operand, as
        ``forward`` could, the CNN step's forward pass took 3% more cycles on the RTL: a
        block's bias ``LOAD`` then waits for the stores of the block two before, issued just
        before it.) ``mask_dropout``: every command reads the engine's dropout plane at its
        results. ``prepare(rows, cols)``: per output block, first of all, before its first
        command's operand loads, with the block's result rows current (for what may run
        beside the GEMM before it, on other rows: a ``DROPOUT_PLANE``)."""
        engine = self.layout.config.engine
        self.section = shape.name
        try:
            chunks = _chunks(self.layout, shape, steps, tiles, parts=4 if overlap else 2)
        except ValueError:
            if not overlap:
                raise
            overlap = False     # quarters too small for whole beats: the halves, no overlap
            chunks = _chunks(self.layout, shape, steps, tiles)
        quarter = engine.acc_rows // 4
        ended = None            # the output block whose last GEMM was the one before
        block = -1
        for residency in self.operands.values():
            residency.forget()  # another GEMM: other operands (DRAM may have changed too)
        for tile in _tiles(shape, engine, chunks):
            k0, k1 = tile.depth
            rows_a, cols_a = (tile.depth, tile.rows) if shape.transpose_a else (tile.rows,
                                                                                tile.depth)
            rows_b, cols_b = (tile.cols, tile.depth) if shape.transpose_b else (tile.depth,
                                                                                tile.cols)
            self.commands += 1
            if k0 == 0 and prepare is not None:
                # the result rows this block will take (as chosen below)
                upcoming = ((block + 1) % 2 * quarter if overlap
                            else self.aux if swap else self.result)
                current = self.result
                self.result = upcoming
                prepare(tile.rows, tile.cols)
                self.result = current
            # the operands first, into rows the GEMM before does not read: they load while it
            # runs (the finish of its block waits for it: an EPILOGUE waits for the GEMM); a
            # block still in its scratchpad from an earlier command is not loaded again
            a_row = self._operand(Target.A, a, rows_a, cols_a, a_format)
            b_row = self._operand(Target.B, b, rows_b, cols_b, b_format)
            if ended is not None and not overlap:
                self._finish_block(finish, ended)
                ended = None
            if k0 == 0:             # a new output block
                block += 1
                if overlap:
                    self.result, self.aux = block % 2 * quarter, (2 + block % 2) * quarter
                elif swap:          # the accumulator halves swap roles
                    self.result, self.aux = self.aux, self.result
                if start is not None:
                    start(tile.rows, tile.cols)
            c = tile.command
            self.emit(Opcode.GEMM, {"m": c.m, "n": c.n, "k": c.k,
                                    "a_transpose": int(c.a_transpose),
                                    "b_transpose": int(c.b_transpose),
                                    "accumulate": int(c.accumulate), "a_row": a_row,
                                    "b_row": b_row, "c_row": self.result,
                                    **({"mask_dropout": 1} if mask_dropout else {})})
            if ended is not None:   # overlap: the block before finishes beside this GEMM
                self._finish_block(finish, ended)
                ended = None
            if k1 == shape.K and finish is not None:
                ended = (tile.rows, tile.cols, self.result, self.aux)
        if ended is not None:
            self._finish_block(finish, ended)
        if overlap:                 # the halves, as the other GEMMs take them
            self.result, self.aux = 0, engine.acc_rows // 2

    def _finish_block(self, finish, ended):
        """``finish`` of a block with the accumulator regions it had."""
        rows, cols, result, aux = ended
        current = self.result, self.aux
        self.result, self.aux = result, aux
        finish(rows, cols)
        self.result, self.aux = current

    def _operand(self, target: Target, tensor, rows: tuple, cols: tuple, fmt: str) -> int:
        """The first scratchpad row of block ``rows`` x ``cols`` of ``tensor`` in ``target``:
        where it already is, else where it is loaded now (:class:`_Residency`)."""
        residency = self.operands[target]
        key = (id(tensor), rows, cols, fmt)
        row, resident = residency.place(key, rows[1] - rows[0])
        if not resident:
            self.transfer(Opcode.LOAD, tensor, rows, cols, mem_row=row, target=target,
                          operand_format=fmt)
        return row

    def activations_backward(self, activations, seeds: dict, rows: tuple, cols: tuple,
                             view=_view):
        """The backward pass of ``activations`` (in reverse) on the block in the result rows;
        ``view`` shows a saved ReLU output as the block's matrix."""
        (m0, m1), (n0, n1) = rows, cols
        for act in reversed(activations):
            if act.kind == "dropout" and act.threshold:
                self.epilogue(EpilogueOp.DROPOUT, m1 - m0, n1 - n0, imm0=act.scale,
                              seed=_tile_seed(seeds[act.name], m0, n0),
                              threshold=act.threshold)
            elif act.kind == "relu":
                saved = self.layout.tensor(f"{act.name}.output")
                self.transfer(Opcode.LOAD, view(saved), rows, cols, mem_row=self.aux)
                self.epilogue(EpilogueOp.RELU_BACKWARD, m1 - m0, n1 - n0, src_row=self.aux)


def _flat_step(layout: TrainingLayout, *images: Image) -> int:
    """Chunks of flattened values (:class:`_Flat`) start on a beat in each of ``images``:
    multiples of a beat's values where pixels are dense, else of whole pixels."""
    beat = layout.config.beat_bytes
    return math.lcm(*(beat // FORMAT_BYTES[i.fmt] if i.dense else i.channels for i in images))


def _pixel_tiles(layout: TrainingLayout, layer: LayerPlan, field: str) -> dict:
    """Chunks of output pixels (``field``) preferably whole image rows (fewer transfers) and
    whole array tiles. (The callers add that the im2col columns' chunks should be whole
    kernel rows: one ``LOAD`` with copies gathers a kernel row's three taps.)"""
    tile = layout.config.engine.array.rows if field == "m" else 1
    return {field: math.lcm(tile, layer.image[1])}


def _output_pixels(layout: TrainingLayout, layer: LayerPlan) -> int:
    height, width, _ = layer.image
    return layout.batch * height * width


def _forward(builder: _Builder, seeds: dict, *, training: bool, drowsy=None,
             batch_index: int = 0):
    """The forward (``training``) or inference pass; ``drowsy``: a
    :class:`sim.drowsy.DrowsyPlan` (inference only) whose convolutions' forward GEMMs write
    ``+0`` in the outputs its masks drop (module docstring of :mod:`sim.drowsy`)."""
    layout = builder.layout
    regions, fmt = layout.regions, layout.formats
    ones = regions.get("ones")
    for index, layer in enumerate(layout.layers):
        threshold = drowsy.threshold(layer.name) if drowsy is not None and layer.conv else 0
        mask_seed = drowsy.mask_seed(layer.name, batch_index) if threshold else None
        factor = drowsy.factor(layer.name) if threshold else None
        master = regions[f"{layer.name}.master"]
        bias = Region(f"{layer.name}.bias", master.addr + layer.in_features * master.stride, 1,
                      layer.out_features, "fp32", 0)
        out = (regions["logits"] if layer.last
               else layout.tensor(f"{layout.layers[index + 1].name}.input"))
        # a convolution's results are pixels x channels
        view = _Pixels if layer.conv else _view

        def start(rows, cols, bias=bias):
            builder.transfer(Opcode.LOAD, bias, rows, cols)     # stride 0: each row the bias

        def plane(rows, cols, threshold=threshold, mask_seed=mask_seed):
            # DrowsyNet: the block's part of the layer's mask, written while the GEMM before
            # (on the other accumulator half) runs
            (m0, m1), (n0, n1) = rows, cols
            builder.epilogue(EpilogueOp.DROPOUT_PLANE, m1 - m0, n1 - n0,
                             seed=_tile_seed(mask_seed, m0, n0), threshold=threshold)

        def finish(rows, cols, layer=layer, out=out, view=view, factor=factor):
            (m0, m1), (n0, n1) = rows, cols
            if factor is not None:      # DrowsyNet's rescaling of the kept outputs
                builder.epilogue(EpilogueOp.SCALE, m1 - m0, n1 - n0,
                                 imm0=_fp32_bits(float(factor)))
            for act in layer.activations:
                if act.kind == "relu":
                    builder.epilogue(EpilogueOp.RELU, m1 - m0, n1 - n0)
                    if training:
                        builder.transfer(Opcode.STORE, view(layout.tensor(f"{act.name}.output")),
                                         rows, cols)
                elif training and act.threshold:
                    builder.epilogue(EpilogueOp.DROPOUT, m1 - m0, n1 - n0, imm0=act.scale,
                                     seed=_tile_seed(seeds[act.name], m0, n0),
                                     threshold=act.threshold)
            builder.transfer(Opcode.STORE, view(out), rows, cols)

        inputs = layout.tensor(f"{layer.name}.input")
        steps = tiles = None
        if layer.conv:
            shape = _Shape(f"{layer.name}.forward", _output_pixels(layout, layer),
                           layer.out_features, layer.in_features, False, False, layer.bias)
            inputs, steps = _Im2col(inputs, ones), {"k": inputs.channels}
            tiles = {**_pixel_tiles(layout, layer, "m"), "k": CONV_KERNEL * steps["k"]}
        else:
            shape = _Shape(f"{layer.name}.forward", layout.batch, layer.out_features,
                           layer.in_features, False, False, layer.bias)
            if layer.image is not None:
                inputs, steps = _Flat(inputs, ones), {"k": _flat_step(layout, inputs)}
        builder.gemm(shape, inputs, fmt.activation, regions[f"{layer.name}.weight"], fmt.weight,
                     start=start if layer.bias else None, finish=finish, steps=steps,
                     tiles=tiles, mask_dropout=bool(threshold),
                     prepare=plane if threshold else None)


def _backward_data(builder: _Builder, seeds: dict, layer: LayerPlan, before: LayerPlan):
    """``dX`` of ``layer`` through ``before``'s activations into ``before``'s ``grad_output``:
    ``dY . W^T`` for a ``Linear``; for a convolution ``im2col(dY) . W_flip`` (module
    docstring)."""
    layout = builder.layout
    regions, fmt = layout.regions, layout.formats
    grad = layout.tensor(f"{layer.name}.grad_output") if not layer.last \
        else layout.grad_region(layer)
    weight = regions[f"{layer.name}.weight"]
    out = layout.tensor(f"{before.name}.grad_output")
    steps = tiles = None
    if layer.conv:          # rows: the input's pixels; columns: its channels
        view = _Pixels
        c_in = layer.image[2]
        shape = _Shape(f"{layer.name}.backward_data", _output_pixels(layout, layer), c_in,
                       _TAPS * layer.out_features, False, True, False)
        a, b = _Im2col(grad), _FlippedWeight(weight, c_in, layer.out_features)
        steps = {"k": layer.out_features}
        tiles = {**_pixel_tiles(layout, layer, "m"), "k": CONV_KERNEL * layer.out_features}
    else:
        view = _view
        if layer.image is not None:     # rows: images; columns: the flattened values
            view = _Flat
            saved = [layout.images[f"{a.name}.output"] for a in before.activations
                     if a.kind == "relu"]
            steps = {"n": _flat_step(layout, out, *saved)}
        shape = _Shape(f"{layer.name}.backward_data", layout.batch, layer.in_features,
                       layer.out_features, False, True, False)
        a, b = grad, weight

    def finish(rows, cols):
        builder.activations_backward(before.activations, seeds, rows, cols, view=view)
        builder.transfer(Opcode.STORE, view(out), rows, cols)

    builder.gemm(shape, a, fmt.gradient, b, fmt.weight, finish=finish, steps=steps,
                 tiles=tiles)


def _weight_update(builder: _Builder, layer: LayerPlan, lr: int, weight_decay: int):
    """``[dW; db] = [X | 1]^T . dY`` (``X``: the layer's input, or its im2col matrix), then
    per block the SGD of the master and the operand copy's rewrite."""
    layout = builder.layout
    regions, fmt = layout.regions, layout.formats
    grad = layout.tensor(f"{layer.name}.grad_output") if not layer.last \
        else layout.grad_region(layer)
    master = regions[f"{layer.name}.master"]
    weight = regions[f"{layer.name}.weight"]

    def finish(rows, cols):
        (m0, m1), (n0, n1) = rows, cols
        aux = builder.aux
        builder.transfer(Opcode.LOAD, master, rows, cols, mem_row=aux)
        builder.epilogue(EpilogueOp.SGD, m1 - m0, n1 - n0, dst_row=aux, imm0=lr,
                         imm1=weight_decay)
        builder.transfer(Opcode.STORE, master, rows, cols, mem_row=aux)
        if m0 < layer.in_features:       # the bias row has no operand copy
            builder.transfer(Opcode.STORE, weight, (m0, min(m1, layer.in_features)), cols,
                             mem_row=aux)

    inputs = layout.tensor(f"{layer.name}.input")
    ones = regions.get("ones") if layer.bias else None
    steps = tiles = None
    if layer.conv:          # K: the output pixels of the batch
        batch = _output_pixels(layout, layer)
        steps = {"m": inputs.channels}
        tiles = {**_pixel_tiles(layout, layer, "k"), "m": CONV_KERNEL * inputs.channels}
        inputs, grad = _Im2col(inputs, ones), _Pixels(grad)
    else:
        batch = layout.batch
        if layer.image is not None:
            steps = {"m": _flat_step(layout, inputs)}
            inputs = _Flat(inputs, ones)
    shape = _Shape(f"{layer.name}.weight_grad", layer.master_rows, layer.out_features, batch,
                   True, False, False)
    # the SGD's masters go in the second operand's region and are stored from there. A
    # convolution's (the layer's K is the batch's pixels: its GEMMs are long) keeps the halves:
    # the next block's weight gradient goes to the same result half (its dW is used up by the
    # SGD). A Linear's (K the batch: short GEMMs, 1025 x 64 masters for fc1) takes quarters,
    # so that the SGD of one block runs beside the next block's GEMM
    builder.gemm(shape, inputs, fmt.activation, grad, fmt.gradient, finish=finish, steps=steps,
                 tiles=tiles, swap=False, overlap=not layer.conv)


def _backward_update(builder: _Builder, seeds: dict, lr: int, weight_decay: int):
    layout = builder.layout
    regions, batch = layout.regions, layout.batch
    last = layout.layers[-1]
    if last.activations:        # dlogits -> the last layer's dY, through its activations
        builder.section = f"{last.name}.grad_output"
        logits = _Shape("dlogits", batch, last.out_features, 1, False, False, False)
        chunks = _chunks(layout, logits)
        for m0 in range(0, batch, chunks["m"]):
            for n0 in range(0, last.out_features, chunks["n"]):
                rows = (m0, min(batch, m0 + chunks["m"]))
                cols = (n0, min(last.out_features, n0 + chunks["n"]))
                builder.transfer(Opcode.LOAD, regions["dlogits"], rows, cols)
                builder.activations_backward(last.activations, seeds, rows, cols)
                builder.transfer(Opcode.STORE, regions[f"{last.name}.grad_output"], rows, cols)
    for index in reversed(range(len(layout.layers))):
        layer = layout.layers[index]
        if not layer.first:
            _backward_data(builder, seeds, layer, layout.layers[index - 1])
        _weight_update(builder, layer, lr, weight_decay)


def _seeds(layout: TrainingLayout, dropout_seed: int, step: int) -> dict:
    return {act.name: layer_seed(dropout_seed, act.name, step)
            for layer in layout.layers for act in layer.dropouts}


def _build_programs(layout: TrainingLayout, *, lr, weight_decay, dropout_seed, step) -> dict:
    """``{name: _Builder}`` holding each program's instructions."""
    seeds = _seeds(layout, dropout_seed, step)
    programs = {}
    for name in PROGRAMS:
        builder = _Builder(layout)
        if name == "backward_update":
            _backward_update(builder, seeds, _fp32_bits(lr), _fp32_bits(weight_decay))
        else:
            _forward(builder, seeds, training=name == "forward")
        builder.emit(Opcode.DONE, {})
        programs[name] = builder
    return programs


# -- programs -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Program:
    """One compiled program.

    Attributes
    ----------
    name : str
    prog_base, prog_len : int
        What the host writes to ``PROG_BASE`` and ``PROG_LEN``.
    instructions : list of (Opcode, dict)
    code : bytes
        The assembled instructions.
    bytes_read, bytes_written : int
        DMA bytes the program moves (whole beats, fetches included), as the compiler predicts
        them; the model's and the bus counters must agree.
    im2col_loads, im2col_taps, im2col_bytes : int
        The ``LOAD`` s that gather im2col matrices (one per kernel row, or tap, and run of
        image rows of a block; the ones columns not counted), the kernel taps and image rows
        they gather (``9 B H`` per gather) and the bytes they read.
    sections : tuple of (str, int, int)
        The program's parts in order, ``(name, first instruction, end)``: a GEMM's
        instructions with its blocks' epilogues and stores, named after it
        (``conv2.weight_grad``); ``fc2.grad_output``: the last layer's activations backward
        on dLogits; ``DONE`` in the part before it. For profiles (where the cycles go, by
        layer).
    """
    name: str
    prog_base: int
    prog_len: int
    instructions: list
    code: bytes
    bytes_read: int
    bytes_written: int
    im2col_loads: int = 0
    im2col_taps: int = 0
    im2col_bytes: int = 0
    sections: tuple = ()

    @property
    def fetch_bytes(self) -> int:
        """Bytes of the instruction fetches (part of ``bytes_read``)."""
        return INSTRUCTION_BYTES * self.prog_len

    @property
    def counts(self) -> dict:
        """Instructions by kind (``LOAD``, ``STORE``, ``GEMM``, ``EPILOGUE``, ``DONE``)."""
        counts = dict.fromkeys((o.name for o in (Opcode.LOAD, Opcode.STORE, Opcode.GEMM,
                                                 Opcode.EPILOGUE, Opcode.DONE)), 0)
        for opcode, _ in self.instructions:
            counts[Opcode(opcode).name] += 1
        return counts

    @property
    def epilogue_counts(self) -> dict:
        """``EPILOGUE`` instructions by op."""
        counts = {}
        for opcode, fields in self.instructions:
            if opcode == Opcode.EPILOGUE:
                name = EpilogueOp(fields["op"]).name
                counts[name] = counts.get(name, 0) + 1
        return counts


def _program(name: str, slot: ProgramSlot, built: _Builder, beat: int) -> Program:
    instructions = built.instructions
    if len(instructions) != slot.length:     # the layout's slot came from the same builder
        raise AssertionError(f"{name}: {len(instructions)} instructions, slot of {slot.length}")
    moved = moved_bytes(instructions, beat)
    sections = []
    for index, section in enumerate(built.sections):
        if sections and sections[-1][0] == section:
            sections[-1][2] = index + 1
        else:
            sections.append([section, index, index + 1])
    return Program(name, slot.addr, slot.length, instructions, assemble(instructions),
                   moved[Opcode.LOAD] + INSTRUCTION_BYTES * slot.length, moved[Opcode.STORE],
                   built.im2col_loads, built.im2col_taps, built.im2col_bytes,
                   tuple(map(tuple, sections)))


def training_programs(layout: TrainingLayout, *, lr: float, weight_decay: float,
                      dropout_seed: int, step: int) -> dict:
    """The ``forward``, ``backward_update`` and ``inference`` :class:`Program` s of training
    step ``step`` (dropout seeds :func:`sim.lfsr.layer_seed` ``(dropout_seed, layer, step)``;
    ``lr`` and ``weight_decay`` rounded to FP32). Only the ``DROPOUT`` seeds depend on
    ``step``."""
    if not isinstance(layout, TrainingLayout):
        raise ValueError(f"layout must be a TrainingLayout, not {layout!r}")
    lr = _check_number("lr", lr, positive=True)
    weight_decay = _check_number("weight_decay", weight_decay, positive=False)
    dropout_seed = _check_int("dropout_seed", dropout_seed, 0)
    step = _check_int("step", step, 0)
    built = _build_programs(layout, lr=lr, weight_decay=weight_decay,
                            dropout_seed=dropout_seed, step=step)
    return {name: _program(name, layout.programs[name], built[name], layout.config.beat_bytes)
            for name in PROGRAMS}


def drowsy_inference_program(layout: TrainingLayout, plan, *, batch_index: int = 0,
                             addr: int | None = None) -> Program:
    """The ``inference`` pass with DrowsyNet (:class:`sim.drowsy.DrowsyPlan` ``plan``) for batch
    ``batch_index``: first for each output block of a planned convolution (before its operand
    loads, so that it runs beside the GEMM of the block before, which uses the other
    accumulator half), an ``EPILOGUE`` ``DROPOUT_PLANE`` writes the block's part of the layer's
    keep mask (seed
    ``plan.mask_seed(layer, batch_index)`` jumped to the block, :func:`_tile_seed`) into the
    engine's dropout plane at the block's results; the block's ``GEMM`` s select
    ``mask_dropout`` (a dropped output is ``+0``, bias included); with ``plan.rescale`` an
    ``EPILOGUE`` ``SCALE`` by :func:`sim.drowsy.rescale_factor` follows, before the ReLU. The
    logits are :func:`sim.drowsy.drowsy`'s in the accelerator's numerics, bit for bit.

    The program lives at ``addr`` (default: ``layout.size``, just past the image: the host
    writes it there, as it writes a step's programs when their seeds change). Needs an engine
    with ``output_mask``; bad arguments raise ValueError naming the field."""
    if not isinstance(layout, TrainingLayout):
        raise ValueError(f"layout must be a TrainingLayout, not {layout!r}")
    if not isinstance(plan, DrowsyPlan):
        raise ValueError(f"plan must be a sim.drowsy.DrowsyPlan, not {plan!r}")
    if not layout.config.engine.output_mask:
        raise ValueError("config: DrowsyNet needs an engine with output_mask (the dropout "
                         "plane its GEMMs read)")
    convs = {layer.name: layer for layer in layout.layers if layer.conv}
    for name in plan.thresholds:
        if name not in convs:
            raise ValueError(f"thresholds: {name!r} is not a convolution of the network "
                             f"(convolutions: {sorted(convs)})")
        if plan.threshold(name) and convs[name].out_features * EPILOGUE_DROPOUT_BITS > \
                ROW_STRIDE:
            raise ValueError(f"thresholds: layer {name!r} has {convs[name].out_features} "
                             f"outputs x {EPILOGUE_DROPOUT_BITS} bits, more than a dropout "
                             f"mask row ({ROW_STRIDE} LFSR steps)")
    batch_index = _check_int("batch_index", batch_index, 0)
    addr = _ceil_to(layout.size, INSTRUCTION_BYTES) if addr is None else \
        _check_int("addr", addr, 0)
    if addr % INSTRUCTION_BYTES:
        raise ValueError(f"addr must be a multiple of {INSTRUCTION_BYTES}, not {addr}")
    builder = _Builder(layout)
    _forward(builder, {}, training=False, drowsy=plan, batch_index=batch_index)
    builder.emit(Opcode.DONE, {})
    return _program("inference", ProgramSlot(addr, len(builder.instructions)), builder,
                    layout.config.beat_bytes)


def write_programs(dram, programs: dict, names=PROGRAMS):
    """Write the programs ``names`` into their slots of ``dram``."""
    for name in names:
        program = programs[name]
        dram[program.prog_base:program.prog_base + len(program.code)] = program.code


# -- the image and the state ----------------------------------------------------------------------

def initial_state(layout: TrainingLayout, network) -> dict:
    """``{layer name: FP32 master bits ((I + b) x O)}`` from ``network``'s parameters: W's rows,
    then the bias."""
    layers = {layer.name: layer for layer in network.weight_layers()}
    state = {}
    for plan in layout.layers:
        params = layers[plan.name].params
        rows = [np.asarray(params["weight"], dtype=np.float32)]
        if plan.bias:
            rows.append(np.asarray(params["bias"], dtype=np.float32)[None, :])
        state[plan.name] = np.ascontiguousarray(np.concatenate(rows)).view(np.uint32).copy()
    return state


def read_state(dram, layout: TrainingLayout) -> dict:
    """The FP32 masters in ``dram`` (as :func:`initial_state` gives them)."""
    return {layer.name: layout.read(dram, f"{layer.name}.master") for layer in layout.layers}


def _ones_column(layout: TrainingLayout) -> int:
    return int(convert("fp32", layout.formats.activation, np.uint32(_ONE_FP32)))


def initial_image(layout: TrainingLayout, network) -> bytearray:
    """The DRAM image before the first step: masters and operand copies from ``network``'s
    parameters, the ones column of every matrix layer input and the ``ones`` row; the batch,
    the saved tensors (image borders included: they stay zero) and the programs zero
    (:func:`write_programs` writes the programs)."""
    image = bytearray(layout.size)
    ones = _ones_column(layout)
    if "ones" in layout.regions:
        r = layout.regions["ones"]
        write_matrix(image, r.addr, r.stride, np.full((1, 1), ones), r.fmt)
    for layer, master in initial_state(layout, network).items():
        plan = next(p for p in layout.layers if p.name == layer)
        for name, bits in ((f"{layer}.master", master),
                           (f"{layer}.weight", _weight_copy(layout, plan, master))):
            r = layout.regions[name]
            write_matrix(image, r.addr, r.stride, bits, r.fmt)
        if plan.bias and plan.image is None:
            r = layout.regions[f"{layer}.input"]
            write_matrix(image, r.addr + plan.in_features * FORMAT_BYTES[r.fmt], r.stride,
                         np.full((r.rows, 1), ones), r.fmt)
    return image


def _weight_copy(layout: TrainingLayout, plan: LayerPlan, master) -> np.ndarray:
    return convert("fp32", layout.formats.weight, master[:plan.in_features])


def _input_values(layout: TrainingLayout, x) -> np.ndarray:
    """The batch ``x`` rounded to the activation format: ``(B, I)`` bit patterns, or
    ``(B, H, W, C)`` for a first convolution."""
    first = layout.layers[0]
    x = np.asarray(x)
    if first.conv:
        want = f"{layout.batch} images of {first.image[0]}x{first.image[1]}x{first.image[2]}"
        good = x.ndim >= 2 and math.prod(x.shape[1:]) == math.prod(first.image)
    else:
        want = f"{layout.batch} samples of {first.in_features} values"
        good = x.ndim >= 2 and math.prod(x.shape[1:]) == first.in_features
    if x.dtype != np.float32 or not good or x.shape[0] != layout.batch:
        raise ValueError(f"x must be a float32 batch of {want}, not {x.dtype} {x.shape}")
    shape = (layout.batch,) + (first.image if first.conv else (first.in_features,))
    return convert("fp32", layout.formats.activation,
                   np.ascontiguousarray(x.reshape(shape)).view(np.uint32))


def batch_bits(layout: TrainingLayout, x) -> np.ndarray:
    """The first layer's input region for a float32 batch ``x`` (``(B,) + input shape``,
    flattened row-major; NHWC images for a first convolution): each value rounded once to the
    activation format, plus the ones column of the bias (a matrix), or the zero border (an
    image: the region's pixels x channels)."""
    first = layout.layers[0]
    bits = _input_values(layout, x)
    if first.conv:
        return layout.images[f"{first.name}.input"].bits(bits)
    if first.bias:
        bits = np.concatenate([bits, np.full((layout.batch, 1), _ones_column(layout))], axis=1)
    return bits


# -- the compiled step ----------------------------------------------------------------------------

@dataclasses.dataclass
class CompiledTraining:
    """A network's training step compiled for one configuration and batch size.

    Attributes
    ----------
    layout : TrainingLayout
    image : bytearray
        The DRAM image before the step (:func:`initial_image` and the step's programs).
    programs : dict of str -> Program
        ``forward``, ``backward_update``, ``inference`` of the step.
    host_interactions : dict of str -> int
        What the host does per training step (:func:`run_training_step`): ``dram_writes``
        (the step's programs when the network has dropout, the batch, dLogits),
        ``dram_reads`` (the logits), ``rings`` (program starts) and ``irq_waits``.
    """
    layout: TrainingLayout
    image: bytearray
    programs: dict
    host_interactions: dict

    @property
    def gemm_commands(self) -> dict:
        return {name: p.counts["GEMM"] for name, p in self.programs.items()}


def host_interactions(layout: TrainingLayout) -> dict:
    """Per training step (module docstring): DRAM writes, DRAM reads, rings, IRQ waits."""
    return {"dram_writes": 2 + int(layout.has_dropout), "dram_reads": 1, "rings": 2,
            "irq_waits": 2}


def compile_training_step(network, config: AccelConfig, batch: int, *, lr: float,
                          weight_decay: float = 0.0, dropout_seed: int = 0,
                          step: int = 0) -> CompiledTraining:
    """Compile ``network``'s training step ``step`` for ``batch`` samples on ``config``: the
    layout, the initial image (with the step's programs in it) and the programs. Later steps
    use the same layout and image with :func:`training_programs` of their step."""
    layout = plan_training(network, config, batch)
    programs = training_programs(layout, lr=lr, weight_decay=weight_decay,
                                 dropout_seed=dropout_seed, step=step)
    image = initial_image(layout, network)
    write_programs(image, programs)
    return CompiledTraining(layout, image, programs, host_interactions(layout))


# -- the host's part ------------------------------------------------------------------------------

def host_loss_gradient(logits_bits, labels) -> tuple[float, np.ndarray, int]:
    """``(loss, dlogits bits, correct)``: the softmax cross-entropy of the FP32 logits read back
    (:func:`sim.nn.loss.softmax_cross_entropy`, float32 numpy) and its gradient scaled by
    ``1 / B``, as the FP32 patterns the program reads from ``dlogits``."""
    bits = np.asarray(logits_bits)
    if bits.dtype != np.uint32 or bits.ndim != 2:
        raise ValueError(f"logits_bits must be a 2-D uint32 array of FP32 patterns, not "
                         f"{bits.dtype} {bits.shape}")
    loss, grad, correct = softmax_cross_entropy(bits.view(np.float32), np.asarray(labels))
    return loss, np.ascontiguousarray(grad, dtype=np.float32).view(np.uint32), correct


async def run_training_step(driver, compiled: CompiledTraining, x, labels, *, lr: float,
                            weight_decay: float = 0.0, dropout_seed: int = 0,
                            step: int = 0) -> dict:
    """The host's part of training step ``step`` through a :class:`sim.accel_driver.
    AcceleratorDriver` (either back end) whose DRAM holds ``compiled.image`` (or the image a
    previous step left): exactly :attr:`CompiledTraining.host_interactions`' writes, reads,
    rings and waits. Returns ``loss``, ``correct``, the two programs' results and the logits.
    A program that stops with an error raises :class:`sim.accel_driver.ProgramError`."""
    layout = compiled.layout
    programs = compiled.programs
    if layout.has_dropout:
        programs = training_programs(layout, lr=lr, weight_decay=weight_decay,
                                     dropout_seed=dropout_seed, step=step)
        start = programs["forward"].prog_base
        await driver.write_dram(start, programs["forward"].code
                                + programs["backward_update"].code)
    batch = layout.regions[f"{layout.layers[0].name}.input"]
    await driver.write_dram(batch.addr, layout.region_bytes(batch.name, batch_bits(layout, x)))
    forward = await driver.run(programs["forward"].prog_base, programs["forward"].prog_len)
    forward.raise_for_error()
    logits = layout.regions["logits"]
    raw = await driver.read_dram(logits.addr, logits.rows * logits.stride)
    logits_bits = read_matrix(bytearray(raw), 0, logits.stride, logits.rows, logits.cols,
                              "fp32")
    loss, dlogits, correct = host_loss_gradient(logits_bits, labels)
    await driver.write_dram(layout.regions["dlogits"].addr, layout.region_bytes("dlogits",
                                                                                dlogits))
    backward = await driver.run(programs["backward_update"].prog_base,
                                programs["backward_update"].prog_len)
    backward.raise_for_error()
    return {"loss": loss, "correct": correct, "logits": logits_bits, "forward": forward,
            "backward_update": backward, "programs": programs}


async def run_inference(driver, compiled: CompiledTraining, x,
                        program: Program | None = None) -> np.ndarray:
    """Write a batch, run the ``inference`` program (or ``program``, already in DRAM: e.g.
    :func:`drowsy_inference_program`'s), read the logits (FP32 bits)."""
    layout = compiled.layout
    batch = layout.regions[f"{layout.layers[0].name}.input"]
    await driver.write_dram(batch.addr, layout.region_bytes(batch.name, batch_bits(layout, x)))
    program = compiled.programs["inference"] if program is None else program
    (await driver.run(program.prog_base, program.prog_len)).raise_for_error()
    logits = layout.regions["logits"]
    raw = await driver.read_dram(logits.addr, logits.rows * logits.stride)
    return read_matrix(bytearray(raw), 0, logits.stride, logits.rows, logits.cols, "fp32")


# -- the reference --------------------------------------------------------------------------------

@dataclasses.dataclass
class ReferenceStep:
    """What :func:`reference_step` computed.

    Attributes
    ----------
    state : dict of str -> uint32 array
        The FP32 masters after the update (training) or as given (inference).
    tensors : dict of str -> array
        Bit patterns by region name (``TrainingLayout.regions``) of everything the programs
        leave in DRAM: layer inputs, ReLU outputs, logits, dY, masters, operand copies.
    loss : float or None
    """
    state: dict
    tensors: dict
    loss: float | None


def reference_step(layout: TrainingLayout, state: dict, x, labels=None, *, lr: float = 1.0,
                   weight_decay: float = 0.0, dropout_seed: int = 0, step: int = 0,
                   training: bool = True) -> ReferenceStep:
    """The training step (or, ``training=False``, the inference pass) computed directly:
    :func:`sim.gemm.gemm` on operand bits and :mod:`sim.epilogue` on FP32 bits, whole tensors,
    in the op order of the module docstring, with no program and no accelerator model.

    ``state`` holds the FP32 masters (:func:`initial_state`); the operand copies are their
    conversions, the masks :func:`sim.epilogue.dropout_keep` of each whole tensor. A
    convolution is :func:`sim.nn.im2col.im2col` and one GEMM; its backward data the GEMM of
    ``im2col(dY)`` and the flipped kernel (module docstring), not :mod:`sim.nn`'s col2im."""
    fmt, batch = layout.formats, layout.batch
    seeds = _seeds(layout, dropout_seed, step) if training else {}
    ones = _ones_column(layout)
    tensors: dict = {}
    copies = {p.name: _weight_copy(layout, p, state[p.name]) for p in layout.layers}
    x_bits = _input_values(layout, x)       # a layer's input: (B, I), or (B, H, W, C) images
    saved, operands = {}, {}

    def conv_columns(images):
        return im2col(images, kernel=CONV_KERNEL, stride=CONV_STRIDE, padding=CONV_PADDING)

    for index, layer in enumerate(layout.layers):
        name = f"{layer.name}.input"
        if layer.image is not None:
            tensors[name] = layout.images[name].bits(x_bits)
        elif layer.bias:
            tensors[name] = np.concatenate([x_bits, np.full((batch, 1), ones)], axis=1)
        else:
            tensors[name] = x_bits
        # the GEMM's A: rows are output pixels (a convolution) or samples
        a = conv_columns(x_bits) if layer.conv else x_bits.reshape(batch, -1)
        operands[layer.name] = a
        master = state[layer.name]
        bias = master[layer.in_features:] if layer.bias else None
        y = gemm(a, copies[layer.name], a_fmt=fmt.activation, b_fmt=fmt.weight, c_bits=bias)
        for act in layer.activations:
            if act.kind == "relu":
                y, _ = relu(y)
                saved[act.name] = y
                if training:
                    tensors[f"{act.name}.output"] = y
            elif training and act.threshold:
                keep = dropout_keep(batch, layer.out_features, seeds[act.name], act.threshold)
                y = dropout(y, keep, np.uint32(act.scale))
        if layer.last:
            tensors["logits"] = y
        else:
            x_bits = convert("fp32", fmt.activation, y)
            if layer.conv:
                x_bits = x_bits.reshape((batch,) + layer.image[:2] + (layer.out_features,))
    if not training:
        return ReferenceStep(dict(state), tensors, None)

    loss, dlogits, _ = host_loss_gradient(tensors["logits"], labels)
    tensors["dlogits"] = dlogits

    def backward(activations, dy):
        for act in reversed(activations):
            if act.kind == "dropout" and act.threshold:
                dy = dropout(dy, dropout_keep(*dy.shape, seeds[act.name], act.threshold),
                             np.uint32(act.scale))
            elif act.kind == "relu":
                dy = relu_backward(dy, saved[act.name])
        return dy

    last = layout.layers[-1]
    if last.activations:
        dy = convert("fp32", fmt.gradient, backward(last.activations, dlogits))
        tensors[f"{last.name}.grad_output"] = dy
    else:
        dy = convert("fp32", fmt.gradient, dlogits)      # the loads' conversion
    new_state = {}
    for index in reversed(range(len(layout.layers))):
        layer = layout.layers[index]        # dy: its dY, rows as its GEMM's (pixels or samples)
        if not layer.first:
            before = layout.layers[index - 1]
            if layer.conv:
                height, width, c_in = layer.image
                flipped = copies[layer.name].reshape(_TAPS, c_in, layer.out_features)[::-1]
                flipped = flipped.transpose(0, 2, 1).reshape(-1, c_in)
                columns = conv_columns(dy.reshape(batch, height, width, layer.out_features))
                dx = gemm(columns, flipped, a_fmt=fmt.gradient, b_fmt=fmt.weight)
            else:
                dx = gemm(dy, copies[layer.name], a_fmt=fmt.gradient, b_fmt=fmt.weight,
                          transpose_b=True)
                if before.conv:             # the flattened pixels, back to pixels x channels
                    dx = dx.reshape(-1, before.out_features)
            dx = convert("fp32", fmt.gradient, backward(before.activations, dx))
            name = f"{before.name}.grad_output"
            if before.conv:
                dx_image = dx.reshape((batch,) + before.image[:2] + (before.out_features,))
                tensors[name] = layout.images[name].bits(dx_image)
            else:
                tensors[name] = dx
        grads = [gemm(operands[layer.name], dy, a_fmt=fmt.activation, b_fmt=fmt.gradient,
                      transpose_a=True)]
        if layer.bias:      # column sums of dY in row order: a ones row times dY
            grads.append(gemm(np.full((1, dy.shape[0]), ones), dy, a_fmt=fmt.activation,
                              b_fmt=fmt.gradient))
        master = sgd(state[layer.name], np.concatenate(grads), np.uint32(_fp32_bits(lr)),
                     np.uint32(_fp32_bits(weight_decay)))
        new_state[layer.name] = master
        tensors[f"{layer.name}.master"] = master
        tensors[f"{layer.name}.weight"] = _weight_copy(layout, layer, master)
        if not layer.first:
            dy = dx
    return ReferenceStep(new_state, tensors, loss)


# -- a summary ------------------------------------------------------------------------------------

def describe(compiled: CompiledTraining) -> str:
    """A plain-text summary of the compiled programs: instructions by kind, ``EPILOGUE`` ops,
    GEMM commands, the DMA bytes each program moves (the compiler's prediction; instruction
    fetches included and also given apart), the im2col ``LOAD`` s and their bytes, and the
    host's interactions per step (with the bytes of the programs it writes for their dropout
    seeds)."""
    layout = compiled.layout
    lines = [f"batch {layout.batch}, formats act {layout.formats.activation} / weight "
             f"{layout.formats.weight} / grad {layout.formats.gradient}, image "
             f"{layout.size} bytes"]
    for name, program in compiled.programs.items():
        counts = ", ".join(f"{k} {v}" for k, v in program.counts.items())
        ops = ", ".join(f"{k} {v}" for k, v in program.epilogue_counts.items()) or "none"
        im2col = (f"; im2col LOADs {program.im2col_loads} ({program.im2col_taps} tap rows, "
                  f"{program.im2col_bytes} bytes)" if program.im2col_loads else "")
        lines.append(f"{name}: {program.prog_len} instructions ({counts}); EPILOGUE ops: {ops};"
                     f" bytes read {program.bytes_read} (instruction fetch "
                     f"{program.fetch_bytes}), written {program.bytes_written}{im2col}")
    step = [compiled.programs[n] for n in ("forward", "backward_update")]
    lines.append(f"training step (forward + backward_update): bytes read "
                 f"{sum(p.bytes_read for p in step)}, written "
                 f"{sum(p.bytes_written for p in step)}, GEMM commands "
                 f"{sum(p.counts['GEMM'] for p in step)}")
    interactions = ", ".join(f"{k} {v}" for k, v in compiled.host_interactions.items())
    if layout.has_dropout:      # the step's dropout seeds are in the programs
        interactions += f" (the programs' write: {sum(len(p.code) for p in step)} bytes)"
    lines.append(f"host per step: {interactions}")
    return "\n".join(lines)
