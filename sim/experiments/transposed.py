"""Backward data of stride-1 convolutions lowered as a transposed convolution, with the
*dynamic* zeros of a captured training step (ReLU/dropout zeros of dY, the output masks of dX):
what the zero-skipping engine gains from the longer K.

The lowering of :mod:`sim.lowering` computes backward data as ``dCols = dY . W^T`` (``K =
C_out``), then col2im. For a stride-1 convolution the same dX is ``im2col(dY) . W'`` (``K =
kernel^2 x C_out``, ``N = C_in``, :func:`sim.lowering.transposed_backward_data`,
:func:`sim.nn.im2col.transposed_weight`). With ``K = C_out`` at or near the per-tile floor of
``2R`` slots, the lookahead window cannot turn dY's zeros into fewer cycles; with ``kernel^2``
times the steps it can (docs/sparsity_study.md). :func:`measure_layers` rebuilds both GEMMs of
every such layer from a captured step (operands as the accelerator stores them) and runs every
zero-skipping variant of :mod:`sim.experiments.skip` on each (cycle model,
:func:`sim.experiments.skip.measure_gemm`). Host reshaping is not priced: today's col2im of
``dCols`` and the transposed lowering's im2col of ``dY`` are both host work.

Pure numpy; no Amaranth here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sim.experiments.skip import measure_gemm
from sim.experiments.sparsity import capture_gemms, input_keep
from sim.lowering import transposed_backward_data
from sim.nn.im2col import im2col, transposed_weight
from sim.skip_model import SparseGemm

__all__ = ["transposed_gemms", "measure_layers"]


def transposed_gemms(net, z, batch):
    """``(layer, original, transposed, operands)`` of the backward data of every stride-1
    convolution of a captured step ``z``: the SparseGemms of both lowerings (original: as the
    lowering stores it, B transposed) and the transposed one's operand bits ``(A', B')``."""
    specs = {spec.name: spec for spec in net.specs()}
    for command, a, b, keep in capture_gemms(net, z, batch):
        spec = specs[command.layer]
        if command.kind != "backward_data" or \
                transposed_backward_data(spec, batch_size=batch) is None:
            continue
        original = SparseGemm.from_bits(a, b, transpose_a=command.transpose_a,
                                        transpose_b=command.transpose_b, out_mask=keep)
        out_h, out_w, _ = spec.out_shape
        height, width, channels = spec.in_shape
        dy = a.reshape(batch, out_h, out_w, spec.features)
        cols = im2col(dy, kernel=spec.kernel, stride=1,
                      padding=spec.kernel - 1 - spec.padding)
        weight = transposed_weight(b, kernel=spec.kernel, channels=channels)
        mask = input_keep(spec, z, batch)
        out_keep = None if mask is None else \
            mask.reshape(batch * height * width, channels).astype(bool)
        yield (spec.name, original, SparseGemm.from_bits(cols, weight, out_mask=out_keep),
               (cols, weight))


def measure_layers(config, net, path: Path, variants=None) -> dict:
    """Both lowerings of every stride-1 convolution's backward data in the captured step
    ``path``: per layer ``original`` and ``transposed``, each :func:`measure_gemm`'s entry
    (shape, sparsity, cycles of every variant, ideal)."""
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    batch = len(meta["labels"])
    kwargs = {} if variants is None else {"variants": variants}
    layers = {}
    for name, original, transposed, _ in transposed_gemms(net, z, batch):
        layers[name] = {
            "original": measure_gemm(config, original, "backward_data", b_transpose=True,
                                     **kwargs),
            "transposed": measure_gemm(config, transposed, "backward_data", **kwargs)}
    return {"capture": str(path).replace(str(Path.home()), "~"), "step": meta["step"],
            "batch": batch, "layers": layers}
