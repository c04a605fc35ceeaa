"""Size and element-to-bank mapping of the two-dimensional skewed banked scratchpad: what the
gateware (``hw.engine.scratchpad``, the engine's sequencers) is built from and the golden model
(:mod:`sim.scratchpad_model`, which re-exports it) shadows.

A scratchpad holds ``rows`` x ``width`` elements. It is split over ``banks`` memories (the next
power of two >= ``lanes``); element ``(i, j)`` (row ``i``, column ``j``) lives in

    bank    = (i + j) % banks
    address = i * (width // banks) + j // banks

so any ``lanes`` consecutive elements of one row, ``(i, j .. j+lanes-1)``, or of one column,
``(i .. i+lanes-1, j)``, sit in distinct banks and one access reaches them all, whatever ``i``
and ``j`` (no alignment). :class:`ScratchpadGeometry` is that mapping.

Pure Python and numpy: no Amaranth here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["MAX_LANES", "ScratchpadGeometry"]

#: Most elements per access.
MAX_LANES = 32


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class ScratchpadGeometry:
    """Size and element-to-bank mapping of a skewed scratchpad.

    Parameters
    ----------
    lanes : int
        Elements per access, 1..32.
    width : int
        Elements per row, a power of two >= ``banks``.
    rows : int
        Rows, >= 1.
    """

    lanes: int
    width: int
    rows: int

    def __post_init__(self):
        if not _is_int(self.lanes) or not 1 <= self.lanes <= MAX_LANES:
            raise ValueError(f"lanes must be an integer in 1..{MAX_LANES}, not {self.lanes!r}")
        if (not _is_int(self.width) or self.width < self.banks
                or self.width & (self.width - 1)):
            raise ValueError(f"width must be a power of two >= {self.banks} (the bank count), "
                             f"not {self.width!r}")
        if not _is_int(self.rows) or self.rows < 1:
            raise ValueError(f"rows must be an integer >= 1, not {self.rows!r}")

    # -- sizes ---------------------------------------------------------------------------

    @property
    def banks(self) -> int:
        """Memories: the next power of two >= ``lanes``."""
        return 1 << (self.lanes - 1).bit_length()

    @property
    def bank_bits(self) -> int:
        """log2(banks): bits of a column index that select the bank offset."""
        return self.banks.bit_length() - 1

    @property
    def words_per_row(self) -> int:
        """Words each bank holds for one scratchpad row (``width // banks``)."""
        return self.width // self.banks

    @property
    def depth(self) -> int:
        """Words per bank."""
        return self.rows * self.words_per_row

    @property
    def row_bits(self) -> int:
        """Width of a row index on the ports (at least 1)."""
        return max(1, (self.rows - 1).bit_length())

    @property
    def col_bits(self) -> int:
        """Width of a column index on the ports (at least 1)."""
        return max(1, (self.width - 1).bit_length())

    @property
    def elements(self) -> int:
        return self.rows * self.width

    # -- mapping -------------------------------------------------------------------------

    def contains(self, i, j):
        """Whether ``(i, j)`` lies inside the scratchpad (works on arrays)."""
        i, j = np.asarray(i), np.asarray(j)
        return (i >= 0) & (i < self.rows) & (j >= 0) & (j < self.width)

    def bank(self, i, j):
        """Bank holding element ``(i, j)`` (works on arrays)."""
        return (np.asarray(i) + np.asarray(j)) % self.banks

    def address(self, i, j):
        """Word address of element ``(i, j)`` inside its bank (works on arrays)."""
        return np.asarray(i) * self.words_per_row + np.asarray(j) // self.banks

    def element(self, bank: int, address: int) -> tuple[int, int]:
        """Inverse mapping: the ``(i, j)`` stored in word ``address`` of ``bank``."""
        if not (0 <= bank < self.banks and 0 <= address < self.depth):
            raise ValueError(f"no word {address} in bank {bank} (banks {self.banks}, "
                             f"depth {self.depth})")
        i, group = divmod(address, self.words_per_row)
        # j = group * banks + offset with (i + j) % banks == bank
        offset = (bank - i) % self.banks
        return i, group * self.banks + offset

    def lane_positions(self, row: int, col: int, column_mode: bool):
        """Coordinates ``(i, j)`` (arrays of ``lanes``) of one access: lane ``t`` is
        ``(row, col + t)`` in row mode, ``(row + t, col)`` in column mode."""
        t = np.arange(self.lanes)
        if column_mode:
            return row + t, np.full(self.lanes, col)
        return np.full(self.lanes, row), col + t

    def bank_images(self, matrix) -> np.ndarray:
        """Contents of every bank for a ``rows`` x ``width`` matrix: an array
        ``(banks, depth)`` with ``images[bank(i, j), address(i, j)] = matrix[i, j]``."""
        matrix = np.asarray(matrix)
        if matrix.shape != (self.rows, self.width):
            raise ValueError(f"matrix must have shape {(self.rows, self.width)}, "
                             f"not {matrix.shape}")
        i, j = np.indices(matrix.shape)
        images = np.zeros((self.banks, self.depth), dtype=matrix.dtype)
        images[self.bank(i, j), self.address(i, j)] = matrix
        return images

    def matrix_of(self, images) -> np.ndarray:
        """Inverse of :meth:`bank_images`: the ``rows`` x ``width`` matrix the banks hold."""
        images = np.asarray(images)
        if images.shape != (self.banks, self.depth):
            raise ValueError(f"images must have shape {(self.banks, self.depth)}, "
                             f"not {images.shape}")
        i, j = np.indices((self.rows, self.width))
        return images[self.bank(i, j), self.address(i, j)]
