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
:func:`sim.experiments.skip.measure_gemm`); then the transposed GEMM again with its rows
reordered by a scheduler into bands of similar zero patterns (:func:`row_order`): the host
emits im2col's rows in that order and takes dX's rows back in it (a gather it makes anyway),
and pays the solver's time per step. Host reshaping is not priced: today's col2im of
``dCols`` and the transposed lowering's im2col of ``dY`` are both host work.

Pure numpy; no Amaranth here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sim.engine_spec import EngineTiming
from sim.experiments.skip import measure_gemm
from sim.experiments.sparsity import capture_gemms, input_keep
from sim.lowering import transposed_backward_data
from sim.nn.im2col import im2col, transposed_weight
from sim.schedule import TileProblem, schedule
from sim.skip_model import SparseGemm

__all__ = ["REORDER_METHODS", "transposed_gemms", "row_order", "reordered",
           "measure_layers"]

#: Schedulers of :mod:`sim.schedule` that group the rows of A into bands (``natural`` keeps
#: them in place).
REORDER_METHODS = ("natural", "similarity", "similarity_swap")


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


def row_order(config, gemm: SparseGemm, method: str, *, time_limit: float = 10.0):
    """Reorder the rows of A into bands of ``R`` rows with similar zero patterns: the tile
    grouping problem of :mod:`sim.schedule` with A's rows as the filters (a band steps through
    the union of its rows' non-zero ``k``). Returns ``(order, schedule)``: the row of A in each
    position, ``-1`` for the all-zero rows that pad a band of fewer rows (the hardware's bands
    are ``R`` consecutive rows), and the :class:`~sim.schedule.Schedule` (its ``cost``: the
    slots of step lists over the bands, its ``solver_time_s``: host work per step)."""
    timing = EngineTiming.of(config)
    rows = config.array.rows
    problem = TileProblem(nonzero=np.ascontiguousarray(gemm.a_nonzero.T), cols=rows,
                          floor=timing.min_tile_slots)
    result = schedule(problem, method, time_limit=time_limit)
    order = [row for group in result.groups for row in (*group, *[-1] * (rows - len(group)))]
    return np.array(order, dtype=np.int64), result


def reordered(gemm: SparseGemm, order) -> SparseGemm:
    """``gemm`` with A's rows (and the output mask's) in ``order`` (``-1``: an all-zero row,
    its outputs masked)."""
    order = np.asarray(order)
    inside = order >= 0
    rows = np.maximum(order, 0)
    a = gemm.a_nonzero[rows] & inside[:, None]
    keep = None if gemm.out_keep is None else gemm.out_keep[rows] & inside[:, None]
    return SparseGemm(a_nonzero=a, b_nonzero=gemm.b_nonzero, out_keep=keep,
                      accumulate=gemm.accumulate)


def measure_layers(config, net, path: Path, variants=None, *, time_limit: float = 10.0) -> dict:
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
            "transposed": measure_gemm(config, transposed, "backward_data", **kwargs),
            "reordered": {}}
        for method in REORDER_METHODS:
            order, result = row_order(config, transposed, method, time_limit=time_limit)
            layers[name]["reordered"][method] = {
                "band_slots": int(result.cost), "bands": len(result.groups),
                "solver_time_s": round(result.solver_time_s, 3),
                **measure_gemm(config, reordered(transposed, order), "backward_data",
                               **kwargs)}
    return {"capture": str(path).replace(str(Path.home()), "~"), "step": meta["step"],
            "batch": batch, "layers": layers}
