"""The compressed weight format of a scheduled GEMM: per tile, the list of the steps it runs,
its columns, and B compacted to those steps (the compiler's side of the scheduler, and the
golden model of a GEMM run from it).

A grouping of the columns of B (``sim.schedule``: tile ``g`` holds the filters ``groups[g]``)
becomes a :class:`StepLists`:

* ``tiles[g] = (first, length, columns)``: tile ``g`` runs the steps ``steps[first : first +
  length]`` (ascending ``k``: the union of its filters' non-zero ``k``) and its lane ``c``
  computes the original column ``columns[c]``;
* ``steps``: every tile's step list, one after the other (``sum_g |U_g|`` entries of
  ``ceil(log2 K)`` bits);
* ``b``: B compacted, ``sum_g |U_g|`` rows of ``C`` lanes: row ``first + j``, lane ``c`` is
  ``B[steps[first + j], columns[c]]`` (``+0`` in a lane the tile does not use).

A tile therefore reads ``A[:, k]`` by index and B row by row: ``length`` steps instead of
``K``. Steps left out of a tile's list have a zero weight in every column of the tile, so, with
the zero-skip semantics of the engine (``sim.sparsity.gemm_skip``: a product with a zero operand
never touches the accumulator), the results are those of the whole GEMM bit for bit, and each
lands in its own column (:func:`gemm_step_lists`). Storage of the format:
:meth:`StepLists.storage_bits`. The engine runs the format as it is
(``hw/engine/step_list_sequencer.py``: ``steps`` in its step memory, ``tiles`` in its tile
table, ``b`` in the B scratchpad), when every tile's columns fall in distinct accumulator banks
(:func:`sim.engine_spec.tile_entry_error`).

Pure numpy; no Amaranth here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .gemm import decode_operands
from .sparsity import gemm_skip

__all__ = ["StepLists", "step_lists", "gemm_step_lists"]


@dataclasses.dataclass(frozen=True, eq=False)
class StepLists:
    """A GEMM's B in the scheduled format (module docstring)."""

    k: int
    n: int
    cols: int
    tiles: tuple[tuple[int, int, tuple[int, ...]], ...]
    steps: np.ndarray
    b: np.ndarray

    def storage_bits(self, operand_bits: int) -> dict[str, int]:
        """Bits of each part: the compacted B (``operand_bits`` per element), the step lists
        (``ceil(log2 K)`` bits per entry) and the tile table (first step, length, and a
        column index per lane, each ``ceil(log2(...))`` bits), against dense B."""
        index = max(1, math.ceil(math.log2(self.k)))
        entries = max(1, math.ceil(math.log2(len(self.steps) + 1)))
        column = max(1, math.ceil(math.log2(self.n)))
        lanes = max(1, math.ceil(math.log2(self.cols + 1)))
        return {"b": self.b.size * operand_bits, "steps": len(self.steps) * index,
                "tiles": len(self.tiles) * (2 * entries + lanes + self.cols * column),
                "dense_b": self.k * self.n * operand_bits}


def step_lists(b_bits, groups, *, cols: int, b_fmt="fp16") -> StepLists:
    """The scheduled format of ``b_bits`` (K x N, as stored untransposed) for ``groups``
    (a partition of the N columns into tiles of at most ``cols``; ValueError otherwise)."""
    b_bits = np.asarray(b_bits)
    if b_bits.ndim != 2 or 0 in b_bits.shape:
        raise ValueError(f"b_bits must be a non-empty K x N array, not of shape {b_bits.shape}")
    k, n = b_bits.shape
    groups = tuple(tuple(int(f) for f in group) for group in groups)
    for index, group in enumerate(groups):
        if not 1 <= len(group) <= cols:
            raise ValueError(f"groups[{index}] holds {len(group)} columns: a tile takes 1 to "
                             f"{cols}")
    if sorted(f for group in groups for f in group) != list(range(n)):
        raise ValueError(f"groups must hold every column 0..{n - 1} exactly once")
    nonzero = decode_operands(b_bits, b_fmt, field="b") != 0
    zero = np.zeros((), dtype=b_bits.dtype)
    tiles, steps, rows = [], [], []
    for group in groups:
        union = np.flatnonzero(nonzero[:, list(group)].any(axis=1))
        tiles.append((len(steps), len(union), group))
        steps.extend(int(s) for s in union)
        block = np.full((len(union), cols), zero, dtype=b_bits.dtype)
        block[:, :len(group)] = b_bits[np.ix_(union, list(group))]
        rows.append(block)
    b = np.concatenate(rows) if rows else np.zeros((0, cols), dtype=b_bits.dtype)
    return StepLists(k=k, n=n, cols=cols, tiles=tuple(tiles),
                     steps=np.array(steps, dtype=np.int64), b=b)


def gemm_step_lists(a_bits, lists: StepLists, *, a_fmt="fp16", b_fmt="fp16",
                    c_bits=None) -> np.ndarray:
    """``C = A . B (+ C_in)`` run tile by tile from ``lists``: each tile multiplies the A
    columns its step list names by its compacted B rows (zero skipping), and writes its lanes
    to their own columns. Returns fp32 bits (M x N) in the original column order.

    ``a_fmt`` / ``b_fmt`` are format names, or per-element tags shaped like ``a_bits`` /
    ``lists.b`` (the engine's operands); ``c_bits`` is the fp32 start, broadcastable to
    (M, N)."""
    a_bits = np.asarray(a_bits)
    if a_bits.ndim != 2 or a_bits.shape[1] != lists.k:
        raise ValueError(f"a_bits must be M x {lists.k}, not of shape {a_bits.shape}")
    m = a_bits.shape[0]
    start = np.zeros((m, lists.n), dtype=np.uint32) if c_bits is None else \
        np.broadcast_to(np.asarray(c_bits, dtype=np.uint32), (m, lists.n))
    out = np.zeros((m, lists.n), dtype=np.uint32)
    for first, length, columns in lists.tiles:
        lanes = list(columns)
        c_in = start[:, lanes]
        steps = lists.steps[first:first + length]
        block = lists.b[first:first + length, :len(lanes)]
        a_tags, b_tags = a_fmt, b_fmt
        if length == 0:             # no step: a zero step, skipped, leaves C_in (canonical)
            steps, block = [0], np.zeros((1, len(lanes)), dtype=lists.b.dtype)
        elif np.ndim(b_fmt) == 2:
            b_tags = np.asarray(b_fmt)[first:first + length, :len(lanes)]
        if np.ndim(a_fmt) == 2:
            a_tags = np.asarray(a_fmt)[:, steps]
        if length == 0 and np.ndim(b_fmt) == 2:
            b_tags = np.broadcast_to(np.asarray(b_fmt).flat[0], block.shape)
        out[:, lanes] = gemm_skip(a_bits[:, steps], block, a_fmt=a_tags, b_fmt=b_tags,
                                  c_bits=c_in)
    return out
