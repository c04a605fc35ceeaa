"""External memory traffic of one training step, FGMP against all-fp16 (the traffic model).

The model (written down in ``docs/fgmp.md``) lists, for one training step of a network, every
tensor that crosses the DRAM interface, who reads or writes it, its tensor class and the layer
whose threshold ``t`` encodes it (:func:`step_accesses`), then prices each access with the exact
stream length of :mod:`sim.fgmp` (:func:`step_traffic`), using the values of a real training
step (the ``tensors`` a :class:`sim.nn.layers.StepContext` keeps).

Rules
-----
* Every GEMM command of :mod:`sim.lowering` reads its operands from DRAM and writes its result
  to DRAM, each tensor once per command, as stored (NHWC activations; im2col and col2im are
  done on chip, so an operand is read once, not once per kernel tap; a transposed operand is
  the same stored tensor). The bias gradient is computed in the weight-gradient pass from the
  same read of dY.
* The elementwise host operations between GEMMs (ReLU, dropout, flatten, the residual add) are
  fused into the epilogue of the GEMM that produces their input: the stored activation is the
  next layer's input X, the stored gradient the previous layer's output gradient dY (masks
  applied). A residual add reads its second addend (the block input or the projection
  shortcut's stored output; in backward the skip-path gradient) in that epilogue. Global
  average pooling is a separate pass: it reads the last block's output and writes the pooled
  vector, and in backward reads the fully connected layer's input gradient and writes the
  last block's output gradient.
* Not counted: the network input written by the host (it is read), the loss (the host reads
  the logits and writes the last dY; the logits write and the dY reads are counted), the
  ReLU/dropout masks (1 bit per element, identical in both schemes).
* The optimizer reads dW and writes the new weight copy in the stored format; its FP32 master
  weights and momentum (16 bytes per parameter) are reported separately (identical in both).
* Biases and bias gradients are fp32 (4 bytes per element) in both schemes.
* Formats: fp16 baseline = 2 bytes per element, padded to the bus word
  (:func:`sim.fgmp.stream_bytes_fp16`); FGMP = the exact stream of :func:`sim.fgmp.pack`
  (tag masks, payload, last-block and bus padding) with the tensor's class format, ``t`` and
  ``flush_underflow`` bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .fgmp import FgmpBlockFormat, code_table, stream_bytes, stream_bytes_fp16
from .formats import FP16
from .lowering import network_commands
from .nn.im2col import im2col
from .nn.layers import BasicBlock, Conv2d, Dropout, Flatten, GlobalAvgPool, Linear, ReLU
from .nn.network import Network
from .numerics import from_float32

__all__ = ["TensorAccess", "step_accesses", "derived_tensors", "step_traffic", "gemm_products",
           "shared_tensor_groups"]

#: Access classes: the three FGMP tensor classes, and fp32 (biases, bias gradients).
ACCESS_CLASSES = ("weight", "activation", "gradient", "fp32")


@dataclasses.dataclass(frozen=True)
class TensorAccess:
    """One tensor crossing the DRAM interface in one direction.

    ``op`` is the GEMM command (``"conv1.forward"``) or pass (``"pool.forward"``,
    ``"optimizer"``) doing it; ``tensor`` the key of its values in the captured step (or a
    derived key, see :func:`derived_tensors`); ``owner`` the layer whose threshold for ``cls``
    encodes it.
    """

    op: str
    direction: str
    tensor: str
    cls: str
    owner: str

    def __post_init__(self):
        if self.direction not in ("read", "write"):
            raise ValueError(f"direction must be 'read' or 'write', not {self.direction!r}")
        if self.cls not in ACCESS_CLASSES:
            raise ValueError(f"cls must be one of {list(ACCESS_CLASSES)}, not {self.cls!r}")


def _check_network(net: Network) -> None:
    if not isinstance(net, Network):
        raise ValueError(f"net must be a Network, not {type(net).__name__}")
    for layer in net.layers:
        if not isinstance(layer, (Conv2d, Linear, ReLU, Dropout, Flatten, GlobalAvgPool,
                                  BasicBlock)):
            raise ValueError(f"{layer.name}: the traffic model does not know layers of type "
                             f"{type(layer).__name__}")


def step_accesses(net: Network) -> list[TensorAccess]:
    """Every DRAM access of one training step of ``net``, in execution order."""
    _check_network(net)
    uses: list[TensorAccess] = []

    def read(op, tensor, cls, owner):
        uses.append(TensorAccess(op, "read", tensor, cls, owner))

    def write(op, tensor, cls, owner):
        uses.append(TensorAccess(op, "write", tensor, cls, owner))

    def forward(layer, x_key, x_owner=None):
        op = f"{layer.name}.forward"
        read(op, x_key, "activation", x_owner or layer.name)
        read(op, f"{layer.name}/weight", "weight", layer.name)
        if layer.spec.bias:
            read(op, f"{layer.name}/bias", "fp32", layer.name)
        return op

    def weight_grad(layer, x_key, dy_key, x_owner=None, dy_owner=None):
        op = f"{layer.name}.weight_grad"
        read(op, x_key, "activation", x_owner or layer.name)
        read(op, dy_key, "gradient", dy_owner or layer.name)
        write(op, f"{layer.name}/grad_weight", "gradient", layer.name)
        if layer.spec.bias:
            write(f"{layer.name}.bias_grad", f"{layer.name}/grad_bias", "fp32", layer.name)

    def backward_data(layer, dy_key, dy_owner=None):
        op = f"{layer.name}.backward_data"
        read(op, dy_key, "gradient", dy_owner or layer.name)
        read(op, f"{layer.name}/weight", "weight", layer.name)
        return op

    # forward: `writer` is the pass whose epilogue stores the current activation
    writer = None
    last_gemm = None
    for index, layer in enumerate(net.layers):
        if isinstance(layer, (Conv2d, Linear)):
            x_key = f"{layer.name}/input"
            if writer:
                write(writer, x_key, "activation", layer.name)
            writer = forward(layer, x_key)
            last_gemm = layer
        elif isinstance(layer, GlobalAvgPool):
            key = f"{layer.name}/input"
            owner = last_gemm.name
            write(writer, key, "activation", owner)
            read(f"{layer.name}.forward", key, "activation", owner)
            writer = f"{layer.name}.forward"
        elif isinstance(layer, BasicBlock):
            conv1, conv2, shortcut = layer.conv1, layer.conv2, layer.shortcut
            x_key = f"{conv1.name}/input"
            if writer:
                write(writer, x_key, "activation", conv1.name)
            op1 = forward(conv1, x_key)
            write(op1, f"{conv2.name}/input", "activation", conv2.name)
            if shortcut is not None:
                op_sc = forward(shortcut, x_key, x_owner=shortcut.name)
                write(op_sc, f"{shortcut.name}/output", "activation", shortcut.name)
            op2 = forward(conv2, f"{conv2.name}/input")
            if shortcut is not None:
                read(op2, f"{shortcut.name}/output", "activation", shortcut.name)
            else:
                read(op2, x_key, "activation", conv1.name)
            writer = op2
            last_gemm = conv2
        # ReLU, Dropout, Flatten: fused into the writer's epilogue
    if writer:
        write(writer, f"{last_gemm.name}/output", "activation", last_gemm.name)

    # backward: `writer` is the pass whose epilogue stores the gradient flowing back
    writer = None                         # the host's loss writes the last dY
    after = None                          # the GEMM layer after the current position
    for layer in reversed(net.layers):
        if isinstance(layer, (Conv2d, Linear)):
            dy_key = f"{layer.name}/grad_output"
            if writer:
                write(writer, dy_key, "gradient", layer.name)
            weight_grad(layer, f"{layer.name}/input", dy_key)
            writer = backward_data(layer, dy_key) if layer.spec.input_grad else None
            after = layer
        elif isinstance(layer, GlobalAvgPool):
            key = f"{after.name}/grad_input"
            write(writer, key, "gradient", after.name)
            read(f"{layer.name}.backward", key, "gradient", after.name)
            writer = f"{layer.name}.backward"
        elif isinstance(layer, BasicBlock):
            conv1, conv2, shortcut = layer.conv1, layer.conv2, layer.shortcut
            g_key = f"{conv2.name}/grad_output"
            if writer:
                write(writer, g_key, "gradient", conv2.name)
            weight_grad(conv2, f"{conv2.name}/input", g_key)
            op2 = backward_data(conv2, g_key)
            write(op2, f"{conv1.name}/grad_output", "gradient", conv1.name)
            if shortcut is not None:
                weight_grad(shortcut, f"{conv1.name}/input", g_key)
                op_sc = backward_data(shortcut, g_key)
                write(op_sc, f"{shortcut.name}/grad_input", "gradient", shortcut.name)
            weight_grad(conv1, f"{conv1.name}/input", f"{conv1.name}/grad_output")
            op1 = backward_data(conv1, f"{conv1.name}/grad_output")
            if shortcut is not None:
                read(op1, f"{shortcut.name}/grad_input", "gradient", shortcut.name)
            else:
                read(op1, g_key, "gradient", conv2.name)
            writer = op1
            after = conv1
    for layer in net.weight_layers():
        read("optimizer", f"{layer.name}/grad_weight", "gradient", layer.name)
        write("optimizer", f"{layer.name}/weight", "weight", layer.name)
        if layer.spec.bias:
            read("optimizer", f"{layer.name}/grad_bias", "fp32", layer.name)
            write("optimizer", f"{layer.name}/bias", "fp32", layer.name)
    return uses


def derived_tensors(net: Network, tensors: dict) -> dict:
    """Stored tensors the layers do not keep: the input of a global average pool (the last
    block's output, ``relu(conv2 output + skip)`` in fp32, as the block computes it)."""
    out = {}
    previous = None
    for layer in net.layers:
        if isinstance(layer, GlobalAvgPool):
            if not isinstance(previous, BasicBlock):
                raise ValueError(f"{layer.name}: the traffic model expects a BasicBlock "
                                 f"before the pool, not {type(previous).__name__}")
            skip_key = (f"{previous.shortcut.name}/output" if previous.shortcut is not None
                        else f"{previous.conv1.name}/input")
            total = tensors[f"{previous.conv2.name}/output"] + tensors[skip_key]
            out[f"{layer.name}/input"] = np.where(total > 0, total, np.float32(0.0))
        previous = layer
    return out


def _fp16(values: np.ndarray) -> np.ndarray:
    return from_float32(FP16, np.ascontiguousarray(values, dtype=np.float32), saturate=False)


def _no_flush(cls: str) -> bool:
    return False


def step_traffic(net: Network, tensors: dict, *, formats: Callable[[str], object],
                 threshold: Callable[[str, str], int],
                 block: FgmpBlockFormat = FgmpBlockFormat(),
                 flush_underflow: Callable[[str], bool] = _no_flush) -> dict:
    """Bytes on the bus of one training step, FGMP and fp16, from its captured tensors.

    Parameters
    ----------
    net : Network
    tensors : dict
        ``"<layer>/<key>" -> float32 array`` of the step (as kept by a training step with
        ``tensors={}``).
    formats : callable
        Tensor class -> FP8 format (e.g. :meth:`sim.fgmp_control.FgmpPolicy.format_of`).
    threshold : callable
        ``(layer, class) -> t`` in effect in that step.
    block : FgmpBlockFormat
    flush_underflow : callable
        Tensor class -> the rule's ``flush_underflow`` bit (e.g.
        :meth:`sim.fgmp_control.FgmpPolicy.flushes`); default: off for every class.

    Returns
    -------
    dict
        ``bytes_fp16``, ``bytes_fgmp``, ``reduction`` (1 - fgmp / fp16), ``by_class`` and
        ``by_direction`` (each ``{"fp16": ..., "fgmp": ...}``), ``fp8_share`` (over the
        FGMP elements of all accesses), ``tensors`` (per stored tensor: class, elements, FP8
        share, bytes per access), ``optimizer_fp32_bytes`` and ``accesses`` (count).
    """
    if not isinstance(block, FgmpBlockFormat):
        raise ValueError(f"block must be an FgmpBlockFormat, not {block!r}")
    values = dict(tensors)
    values.update(derived_tensors(net, tensors))
    accesses = step_accesses(net)
    missing = sorted({a.tensor for a in accesses} - set(values))
    if missing:
        raise ValueError(f"the captured step lacks tensors {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")
    priced: dict = {}
    totals = {"fp16": 0, "fgmp": 0}
    by_class = {cls: {"fp16": 0, "fgmp": 0} for cls in ACCESS_CLASSES}
    by_direction = {d: {"fp16": 0, "fgmp": 0} for d in ("read", "write")}
    fp8_elements = fgmp_elements = 0
    for access in accesses:
        key = (access.tensor, access.cls, access.owner)
        if key not in priced:
            array = values[access.tensor]
            n = int(array.size)
            if access.cls == "fp32":
                fp16_bytes = fgmp_bytes = block.padded(4 * n)
                fp8 = 0
            else:
                t = threshold(access.owner, access.cls)
                tags = code_table(formats(access.cls), t,
                                  flush_underflow=flush_underflow(access.cls))[0][_fp16(array)]
                fp16_bytes = stream_bytes_fp16(n, block)
                fgmp_bytes = stream_bytes(tags, block)
                fp8 = int(np.count_nonzero(tags))
            priced[key] = {"tensor": access.tensor, "class": access.cls, "owner": access.owner,
                           "elements": n, "fp8": fp8, "bytes_fp16": fp16_bytes,
                           "bytes_fgmp": fgmp_bytes, "reads": 0, "writes": 0}
        entry = priced[key]
        entry["reads" if access.direction == "read" else "writes"] += 1
        for scheme in ("fp16", "fgmp"):
            nbytes = entry[f"bytes_{scheme}"]
            totals[scheme] += nbytes
            by_class[access.cls][scheme] += nbytes
            by_direction[access.direction][scheme] += nbytes
        if access.cls != "fp32":
            fp8_elements += entry["fp8"]
            fgmp_elements += entry["elements"]
    parameters = sum(p.size for layer in net.weight_layers() for p in layer.params.values())
    return {
        "bytes_fp16": totals["fp16"],
        "bytes_fgmp": totals["fgmp"],
        "reduction": 1 - totals["fgmp"] / totals["fp16"],
        "by_class": by_class,
        "by_direction": by_direction,
        "fp8_share": fp8_elements / fgmp_elements if fgmp_elements else 0.0,
        "tensors": [dict(v, fp8_share=v["fp8"] / v["elements"] if v["elements"] else 0.0)
                    for v in priced.values()],
        "optimizer_fp32_bytes": 16 * int(parameters),
        "accesses": len(accesses),
    }


def gemm_products(net: Network, tensors: dict, *, formats: Callable[[str], object],
                  threshold: Callable[[str, str], int],
                  flush_underflow: Callable[[str], bool] = _no_flush) -> dict:
    """Products of one training step by operand formats: ``{"fp8_fp8", "fp8_fp16",
    "fp16_fp16", "macs"}`` for FGMP (all dense: every product counted, zeros included).

    The operands are the stored tensors of the step as each GEMM reads them (the im2col matrix
    of a convolution's input, whose padding zeros are FP8 zeros). ``formats``, ``threshold``
    and ``flush_underflow`` as for :func:`step_traffic`.
    """
    _check_network(net)
    counts = {"fp8_fp8": 0, "fp8_fp16": 0, "fp16_fp16": 0, "macs": 0}
    layers = {layer.name: layer for layer in net.weight_layers()}
    first = f"{net.weight_layers()[0].name}/input"
    if first not in tensors:
        raise ValueError(f"the captured step lacks tensors ['{first}']")
    batch_size = int(tensors[first].shape[0])
    for command in network_commands(net.specs(), batch_size=batch_size):
        layer = layers[command.layer]
        spec = layer.spec

        def fp8(key, cls):
            tags = code_table(formats(cls), threshold(layer.name, cls),
                              flush_underflow=flush_underflow(cls))[0]
            return tags[_fp16(tensors[f"{layer.name}/{key}"])]

        def columns(tags):
            if spec.kind != "conv2d" or spec.im2col_identity:
                return tags.reshape(-1, tags.shape[-1] if spec.kind == "conv2d" else
                                    spec.in_shape[0])
            # im2col pads with +0, an FP8 zero: gather "is fp16" so that padding reads False
            wide = im2col((~tags).astype(np.uint8), kernel=spec.kernel, stride=spec.stride,
                          padding=spec.padding)
            return wide == 0

        features = spec.features
        if command.kind == "forward":
            a = columns(fp8("input", "activation"))                      # M x K
            b = fp8("weight", "weight")                                  # K x N
        elif command.kind == "weight_grad":
            a = columns(fp8("input", "activation")).T                    # depth x rows
            b = fp8("grad_output", "gradient").reshape(-1, features)     # rows x N
            if command.bias_row:        # the folded bias gradient: a row of ones (1.0 is FP8)
                a = np.vstack([a, np.ones((1, a.shape[1]), dtype=bool)])
        else:
            a = fp8("grad_output", "gradient").reshape(-1, features)     # rows x features
            b = fp8("weight", "weight").T                                # features x depth
        if a.shape != (command.M, command.K) or b.shape != (command.K, command.N):
            raise ValueError(f"{command.name}: operand shapes {a.shape} x {b.shape} do not match "
                             f"M={command.M}, N={command.N}, K={command.K}")
        a8 = a.sum(axis=0, dtype=np.int64)                 # per k: FP8 elements of A's column
        b8 = b.sum(axis=1, dtype=np.int64)                 # per k: FP8 elements of B's row
        both = int(np.dot(a8, b8))
        one = int(np.dot(a8, command.N - b8) + np.dot(command.M - a8, b8))
        counts["fp8_fp8"] += both
        counts["fp8_fp16"] += one
        counts["fp16_fp16"] += command.macs - both - one
        counts["macs"] += command.macs
    return counts


def shared_tensor_groups(net: Network) -> dict:
    """Threshold groups of layers that read one stored tensor (for
    :class:`sim.fgmp_control.FgmpController`): a block's projection shortcut reads the block
    input X of its first convolution and the output gradient dY of its second."""
    _check_network(net)
    groups = {}
    for layer in net.layers:
        if isinstance(layer, BasicBlock) and layer.shortcut is not None:
            groups[(layer.shortcut.name, "activation")] = (layer.conv1.name, "activation")
            groups[(layer.shortcut.name, "gradient")] = (layer.conv2.name, "gradient")
    return groups
