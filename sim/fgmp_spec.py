"""What the FGMP gateware (``hw/fgmp/``) is built from and the golden model (:mod:`sim.fgmp`)
checks against: the FP8 formats an element can take, the largest threshold, and the geometry of
the byte stream (:class:`FgmpBlockFormat`, which validates block size and bus width for hardware
and model alike). The encoding rule and the stream layout are written down in :mod:`sim.fgmp`
and ``docs/fgmp.md``. It imports only the number formats; no Amaranth here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .formats import E4M3, E5M2, FPFormat

__all__ = ["T_MAX", "FGMP_FORMATS", "BLOCK_SIZES", "BUS_BYTES", "FgmpBlockFormat"]

#: Largest threshold ``t`` (a 4-bit configuration / CSR field, 0..15).
T_MAX = 15
#: FP8 formats an FGMP element can take besides fp16.
FGMP_FORMATS: dict[str, FPFormat] = {f.name: f for f in (E4M3, E5M2)}
#: Allowed block sizes ``B``.
BLOCK_SIZES = (8, 16, 32, 64)
#: Allowed bus word widths ``W`` in bytes.
BUS_BYTES = (1, 2, 4, 8, 16, 32, 64)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _count(n) -> int:
    if not _is_int(n) or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")
    return int(n)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FgmpBlockFormat:
    """Geometry of the FGMP byte stream.

    Parameters
    ----------
    block : int
        Elements per block ``B`` (8, 16, 32 or 64); the tag mask is ``B / 8`` bytes.
    bus_bytes : int
        Bus word width ``W`` in bytes (a power of two, 1..64); the stream is padded to it.
    """

    block: int = 16
    bus_bytes: int = 16

    def __post_init__(self):
        if not _is_int(self.block) or self.block not in BLOCK_SIZES:
            raise ValueError(f"block must be one of {list(BLOCK_SIZES)}, not {self.block!r}")
        if not _is_int(self.bus_bytes) or self.bus_bytes not in BUS_BYTES:
            raise ValueError(f"bus_bytes must be a power of two in 1..64 "
                             f"({list(BUS_BYTES)}), not {self.bus_bytes!r}")

    @property
    def tag_bytes(self) -> int:
        """Bytes of one block's tag mask."""
        return (self.block + 7) // 8

    def blocks(self, n: int) -> int:
        """Number of blocks of an ``n``-element tensor."""
        return -(-_count(n) // self.block)

    def padded(self, nbytes: int) -> int:
        """``nbytes`` rounded up to whole bus words."""
        return -(-nbytes // self.bus_bytes) * self.bus_bytes
