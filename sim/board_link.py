"""The host driver's back end for a board build (``hw/board``): the accelerator's registers and
its RAM through the serial bridge's frames (:mod:`sim.board_spec`).

:class:`SerialBackend` implements :class:`sim.accel_driver.Backend` over a :class:`Link`, a
byte pipe with a clock:

* ``tb.board_tb.UartLink``: the generated board system's ``rx`` / ``tx`` pins in cocotb;
* ``scripts.board_host.SerialPortLink``: a real board on a serial port (pyserial).

So the same host code (``AcceleratorDriver``: discover, load an image, run, read back) runs on
the simulated board and on the real one. DRAM bytes move in ``MEM`` frames of up to
:data:`~sim.board_spec.MEM_WORDS_MAX` words (a partial word at either end is written with its
byte strobes); the IRQ is polled with ``STATUS`` frames.

Pure Python: no Amaranth, no cocotb.
"""

from __future__ import annotations

import struct
from typing import Protocol

from .accel_driver import DriverError
from .accel_spec import COUNTERS, Resp
from .board_spec import (BAD_OPCODE, LINK_MAGIC, LINK_VERSION, MEM_WORDS_MAX, LinkStatus, Op,
                         answer_bytes)

__all__ = ["Link", "LinkError", "SerialBackend", "IRQ_POLL_CYCLES"]

#: Cycles between two ``STATUS`` frames while waiting for the IRQ
IRQ_POLL_CYCLES = 1_000


class Link(Protocol):
    """A byte pipe to the bridge, and the board's clock."""

    async def send(self, data: bytes) -> None:
        """Send ``data``."""

    async def receive(self, count: int, timeout_cycles: int) -> bytes:
        """The next ``count`` bytes received; fewer if ``timeout_cycles`` pass first."""

    async def wait_cycles(self, cycles: int) -> None:
        """Let ``cycles`` clock cycles pass."""

    def cycle(self) -> int | None:
        """Clock cycles since the link began."""

    @property
    def byte_cycles(self) -> int:
        """Clock cycles of one byte on the line."""


class LinkError(DriverError):
    """The bridge did not answer as the protocol says (no answer, a bad opcode, a wrong
    ``STATUS`` magic) or refused a DRAM access."""


class SerialBackend:
    """:class:`sim.accel_driver.Backend` over a :class:`Link` (module docstring).

    Parameters
    ----------
    link : Link
    slack_cycles : int
        Cycles an answer may take beyond its bytes' time on the line (the bus accesses).
    """

    #: every counter is the hardware's own
    measured_counters = frozenset(COUNTERS)

    def __init__(self, link: Link, *, slack_cycles: int = 10_000):
        self.link = link
        self.slack_cycles = slack_cycles

    async def _frame(self, op: Op, payload: bytes, answer: int, what: str) -> bytes:
        await self.link.send(bytes([op]) + payload)
        timeout = (len(payload) + 1 + answer) * self.link.byte_cycles + self.slack_cycles
        got = await self.link.receive(answer, timeout)
        # BAD_OPCODE is a whole answer of one byte: a longer answer may begin with the same
        # value as data (a read's first byte), a status byte never
        if got == bytes([BAD_OPCODE]) and (answer == 1 or len(got) < answer):
            raise LinkError(f"{what}: the bridge answered BAD_OPCODE to {op.name}")
        if len(got) != answer:
            raise LinkError(f"{what}: {len(got)} of the {answer} answer bytes of {op.name} came "
                            f"within {timeout} cycles ({got.hex()})")
        return got

    async def link_status(self) -> LinkStatus:
        """The ``STATUS`` word's flags (reading clears the link's error flags);
        :class:`LinkError` if the word is not the bridge's."""
        got = await self._frame(Op.STATUS, b"", answer_bytes(Op.STATUS), "STATUS")
        word, resp = struct.unpack("<IB", got)
        if word >> 24 != LINK_MAGIC or (word >> 16) & 0xFF != LINK_VERSION or resp:
            raise LinkError(f"STATUS answered {got.hex()}: not a version-{LINK_VERSION} bridge "
                            f"(magic {LINK_MAGIC:#04x})")
        return LinkStatus(word & 0x7)

    async def read_csr(self, offset: int) -> tuple[int, Resp]:
        got = await self._frame(Op.READ_CSR, struct.pack("<I", offset),
                                answer_bytes(Op.READ_CSR), f"register {offset:#x}")
        data, resp = struct.unpack("<IB", got)
        return data, Resp(resp)

    async def write_csr(self, offset: int, value: int, strobe: int = 0b1111) -> Resp:
        got = await self._frame(Op.WRITE_CSR, struct.pack("<IBI", offset, strobe, value),
                                answer_bytes(Op.WRITE_CSR), f"register {offset:#x}")
        return Resp(got[0])

    async def wait_irq(self, timeout_cycles: int) -> bool:
        start = self.link.cycle()
        while True:
            if LinkStatus.IRQ in await self.link_status():
                return True
            if self.link.cycle() - start >= timeout_cycles:
                return False
            await self.link.wait_cycles(IRQ_POLL_CYCLES)

    async def wait_cycles(self, cycles: int) -> None:
        await self.link.wait_cycles(cycles)

    def cycle(self) -> int | None:
        return self.link.cycle()

    def _check(self, resp: int, addr: int, words: int, write: bool):
        if resp != Resp.OKAY:
            kind = "write" if write else "read"
            raise LinkError(f"DRAM {kind} of {words} words at {addr:#x}: "
                            f"{Resp(resp).name} (beyond the board's RAM?)")

    async def _write_words(self, addr: int, data: bytes, strobe: int = 0xF):
        words = len(data) // 4
        payload = struct.pack("<IBB", addr, words - 1, strobe) + data
        got = await self._frame(Op.WRITE_MEM, payload, answer_bytes(Op.WRITE_MEM),
                                f"DRAM {addr:#x}")
        self._check(got[0], addr, words, True)

    async def write_dram(self, addr: int, data: bytes) -> None:
        data = bytes(data)
        end = addr + len(data)
        position = addr
        while position < end:
            word = position & ~3
            if position != word or end < word + 4:       # a partial word: strobes
                first, last = position - word, min(end, word + 4) - word
                strobe = sum(1 << i for i in range(first, last))
                chunk = bytes(first) + data[position - addr:word + last - addr] + bytes(4 - last)
                await self._write_words(word, chunk, strobe)
                position = word + last
                continue
            words = min(MEM_WORDS_MAX, (end - position) // 4)
            await self._write_words(position, data[position - addr:position - addr + 4 * words])
            position += 4 * words

    async def read_dram(self, addr: int, length: int) -> bytes:
        first = addr & ~3
        end = -(-(addr + length) // 4) * 4
        out = bytearray()
        position = first
        while position < end:
            words = min(MEM_WORDS_MAX, (end - position) // 4)
            got = await self._frame(Op.READ_MEM, struct.pack("<IB", position, words - 1),
                                    answer_bytes(Op.READ_MEM, words), f"DRAM {position:#x}")
            self._check(got[-1], position, words, False)
            out += got[:-1]
            position += 4 * words
        return bytes(out[addr - first:addr - first + length])
