"""The board build (``hw/board``): its configuration and the byte protocol of its serial link.

A board build is the accelerator (``hw/accel``) with an on-chip RAM as its DRAM and a UART
bridge as its host link, so that a board with nothing but a USB serial port (the ULX3S: an
FTDI FT231X on the FPGA's UART pins) can run compiled programs. The host speaks the frames
below to the bridge; the bridge turns each into AXI4-Lite accesses of the accelerator's
registers (``CSR``) or of the RAM (``MEM``).

Frames (every number little-endian; ``addr`` a byte address, 4-aligned for ``MEM``)::

    WRITE_CSR  01 addr:4 strobe:1 data:4                  -> status:1
    READ_CSR   02 addr:4                                  -> data:4 status:1
    WRITE_MEM  03 addr:4 count:1 strobe:1 data:4*(count+1) -> status:1
    READ_MEM   04 addr:4 count:1                          -> data:4*(count+1) status:1
    STATUS     05                                         -> data:4 status:1

Every frame ends with one status byte: the AXI response (:class:`~sim.accel_spec.Resp`; for
``MEM`` frames the worst one of the words, i.e. the largest code), or :data:`BAD_OPCODE` (the
only byte of the answer) for an unknown first byte. A ``MEM`` frame moves ``count + 1`` words
(1..256) at ``addr``, ``addr + 4``, ...; ``strobe`` (bits 3:0) selects the bytes of each word
written. ``STATUS`` answers :class:`LinkStatus`: the accelerator's ``irq`` line, the
receiver's sticky overrun and framing-error flags (cleared by this read) and
:data:`LINK_MAGIC`, by which a host recognises the bridge. A frame whose next byte does not
come within :data:`FRAME_TIMEOUT_BYTES` byte times is dropped without an answer: the bridge
waits for an opcode again, so a host that lost its place recovers by waiting that long.

Pure Python: shared by the gateware, the host's serial back end (:mod:`sim.board_link`) and
the benches.
"""

from __future__ import annotations

import dataclasses
import enum

from .config import FAST_ARRAY, AccelConfig, ArrayConfig, EngineConfig

__all__ = ["Op", "BAD_OPCODE", "LINK_MAGIC", "LINK_VERSION", "LinkStatus", "MEM_WORDS_MAX",
           "FRAME_TIMEOUT_BYTES", "BOARD_ARRAY", "BOARD_ACCEL", "BoardConfig", "answer_bytes"]


class Op(enum.IntEnum):
    """First byte of a frame."""
    WRITE_CSR = 0x01
    READ_CSR = 0x02
    WRITE_MEM = 0x03
    READ_MEM = 0x04
    STATUS = 0x05


#: The answer to an unknown opcode (one byte, no data)
BAD_OPCODE = 0x80
#: Bits 31:24 of the ``STATUS`` word
LINK_MAGIC = 0xA5
#: Bits 23:16 of the ``STATUS`` word: this protocol's version
LINK_VERSION = 1
#: Words a ``MEM`` frame moves at most (its count byte + 1)
MEM_WORDS_MAX = 256
#: Byte times of silence after which the bridge drops an unfinished frame
FRAME_TIMEOUT_BYTES = 8


class LinkStatus(enum.IntFlag):
    """Bits 2:0 of the ``STATUS`` word."""
    IRQ = 1 << 0
    OVERRUN = 1 << 1        # a byte arrived before the bridge took the previous one
    FRAMING = 1 << 2        # a byte's stop bit was low


def answer_bytes(op: Op, words: int = 1) -> int:
    """Bytes of the bridge's answer to a frame of ``op`` moving ``words`` words."""
    return {Op.WRITE_CSR: 1, Op.READ_CSR: 5, Op.WRITE_MEM: 1, Op.READ_MEM: 1 + 4 * words,
            Op.STATUS: 5}[op]


#: The array of a board build: 4x4 OS, the small fast PE (three multiplier stages, five
#: accumulations in rotation, operands decoded at the array's edge, the wide multiplier only;
#: ``docs/engine.md``, "ECP5 maximum frequency")
BOARD_ARRAY = ArrayConfig(rows=4, cols=4, **FAST_ARRAY)
#: The accelerator of a board build by default: :data:`BOARD_ARRAY` with 64 x 64 scratchpads
#: and accumulators (an 8x8 array with the rest of the accelerator needs more LUTs than the
#: largest ECP5 has), 64-bit bus, three registers in each of the epilogue's multipliers and
#: adders (without them the epilogue's single-cycle multiply-add is the critical path:
#: ``docs/board.md``)
BOARD_ACCEL = AccelConfig(engine=EngineConfig(array=BOARD_ARRAY, spad_width=64,
                                              a_rows=64, b_rows=64, acc_width=64, acc_rows=64),
                          epilogue_stages=3)


@dataclasses.dataclass(frozen=True)
class BoardConfig:
    """A board build.

    Parameters
    ----------
    accel : AccelConfig
        The accelerator (its DMA's data width is the RAM's width); :data:`BOARD_ACCEL` by
        default.
    clock_hz : int
        The system clock (the PLL's output on a board); 20 MHz by default, which the default
        accelerator meets (``docs/board.md``: its longest path is then the controller's decode
        of a ``STORE``'s DRAM span into the interlock, 25.95 MHz after routing).
    baud : int
        Serial link bits per second (8N1).
    ram_bytes : int
        On-chip RAM, the accelerator's DRAM from address 0: a power of two, 4 KiB .. 1 MiB.
    """

    accel: AccelConfig = BOARD_ACCEL
    clock_hz: int = 20_000_000
    baud: int = 115_200
    ram_bytes: int = 64 * 1024

    def __post_init__(self):
        if not isinstance(self.accel, AccelConfig):
            raise ValueError(f"accel must be an AccelConfig, not {self.accel!r}")
        for name in ("clock_hz", "baud", "ram_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.ram_bytes & (self.ram_bytes - 1) or not 4096 <= self.ram_bytes <= 1 << 20:
            raise ValueError(f"ram_bytes must be a power of two in 4096..1048576, "
                             f"not {self.ram_bytes!r}")
        if self.divisor < 4:
            raise ValueError(f"baud must be at most clock_hz / 4 = {self.clock_hz // 4}, "
                             f"not {self.baud!r}")
        if self.baud_error > 0.02:
            raise ValueError(f"baud {self.baud} is {self.baud_error:.1%} off clock_hz / "
                             f"{self.divisor}: pick one within 2%")

    @property
    def divisor(self) -> int:
        """Clock cycles per serial bit."""
        return round(self.clock_hz / self.baud)

    @property
    def baud_error(self) -> float:
        """Relative error of the bit time the divisor gives."""
        return abs(self.clock_hz / self.divisor - self.baud) / self.baud

    @property
    def frame_timeout_cycles(self) -> int:
        """Cycles of silence after which the bridge drops an unfinished frame."""
        return FRAME_TIMEOUT_BYTES * 10 * self.divisor
