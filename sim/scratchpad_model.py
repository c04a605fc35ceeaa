"""Golden model of the two-dimensional skewed banked scratchpad (``hw.engine.scratchpad``).

:class:`ScratchpadModel` is a shadow copy with the hardware's port semantics (reads and writes
of ``lanes`` elements, zero beyond the edges, out-of-range writes dropped), used by the bench
and by drivers that lay matrices into a scratchpad. The element-to-bank mapping and the sizes,
:class:`ScratchpadGeometry` (the hardware derives its sizes from it too), are in
:mod:`sim.scratchpad_spec`, re-exported here.

Pure Python and numpy: no Amaranth here.
"""

from __future__ import annotations

import numpy as np

# the specification the gateware is built from (re-exported: the model's users import it here)
from .scratchpad_spec import MAX_LANES, ScratchpadGeometry

__all__ = ["ScratchpadModel",
           # from sim.scratchpad_spec
           "MAX_LANES", "ScratchpadGeometry"]


class ScratchpadModel:
    """Shadow copy of a scratchpad with the hardware's port semantics.

    Elements are non-negative integers (the raw bits of the hardware element), zero after
    reset.

    Parameters
    ----------
    geometry : ScratchpadGeometry
    """

    def __init__(self, geometry: ScratchpadGeometry):
        if not isinstance(geometry, ScratchpadGeometry):
            raise ValueError(f"geometry must be a ScratchpadGeometry, not {geometry!r}")
        self.geometry = geometry
        self.contents = np.zeros((geometry.rows, geometry.width), dtype=object)

    def write(self, row: int, col: int, data, mask: int):
        """Row-mode write: lane ``t`` stores ``data[t]`` at ``(row, col + t)`` when bit ``t``
        of ``mask`` is set and that element lies inside the scratchpad (others are dropped)."""
        rows, cols = self.geometry.lane_positions(row, col, column_mode=False)
        inside = self.geometry.contains(rows, cols)
        for t in range(self.geometry.lanes):
            if mask >> t & 1 and inside[t]:
                self.contents[rows[t], cols[t]] = int(data[t])

    def read(self, row: int, col: int, column_mode: bool) -> list[int]:
        """Lane ``t`` = element ``(row, col + t)`` (row mode) or ``(row + t, col)`` (column
        mode); zero where that element lies outside the scratchpad."""
        rows, cols = self.geometry.lane_positions(row, col, column_mode)
        inside = self.geometry.contains(rows, cols)
        return [int(self.contents[rows[t], cols[t]]) if inside[t] else 0
                for t in range(self.geometry.lanes)]

    def load(self, matrix, *, row: int = 0, col: int = 0):
        """Place a matrix with its top-left element at ``(row, col)`` (as a driver would, one
        row-mode write per ``lanes`` elements); returns the writes as
        ``(row, col, data, mask)`` tuples in the order issued."""
        matrix = np.asarray(matrix)
        lanes = self.geometry.lanes
        writes = []
        for i in range(matrix.shape[0]):
            for j in range(0, matrix.shape[1], lanes):
                chunk = [int(v) for v in matrix[i, j:j + lanes]]
                mask = (1 << len(chunk)) - 1
                chunk += [0] * (lanes - len(chunk))
                writes.append((row + i, col + j, chunk, mask))
                self.write(row + i, col + j, chunk, mask)
        return writes
