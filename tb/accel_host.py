"""The cocotb back end of the host driver (:mod:`sim.accel_driver`): the generated accelerator
(``hw.accel.accelerator.Accelerator``, Verilog ports ``s_axil__*``, ``m_axi__*``, ``irq``,
``clk``, ``rst``) in a cocotb simulation.

* registers: cocotbext-axi's ``AxiLiteMaster`` on ``s_axil`` (every access has a watchdog: a
  bus that never answers fails the test with the register named, instead of hanging);
* DRAM: :class:`Dram`, cocotbext-axi's ``AxiRam`` on ``m_axi`` with the golden model's error
  rule: a beat with a byte at or beyond ``dram_size`` answers DECERR (no memory there, as an
  interconnect answers), a beat in a ``dram_errors`` range SLVERR (a memory that fails);
* the clock (:data:`tb.harness.PERIOD_NS`) and, in :meth:`RtlBackend.reset`, the reset;
* optional random pauses on all ten AXI channels (cocotbext-axi's pause generators), i.e.
  random idle cycles on the manager channels and backpressure on the subordinate ones.

cocotbext-axi 0.1.28 works with cocotb 2.1 (its calls of APIs that cocotb 2.1 deprecates only
warn; the warnings are filtered here).
"""

from __future__ import annotations

import logging
import warnings

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

from sim.accel_spec import COUNTERS, Resp
from sim.config import AccelConfig
from tb.harness import PERIOD_NS, reset

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam  # noqa: E402

__all__ = ["Dram", "RtlBackend", "CSR_WATCHDOG_CYCLES", "pauses"]

#: Cycles a register access may take before the bench fails (pauses included)
CSR_WATCHDOG_CYCLES = 5_000


def pauses(rng, probability, *, stall: float = 0.0, longest: int = 0):
    """An endless pause pattern for a cocotbext-axi channel (True: paused this cycle): each
    cycle paused with ``probability``; with ``stall``, a cycle may instead begin a long stall
    of 1..``longest`` cycles."""
    while True:
        if stall and rng.random() < stall:
            yield from [True] * int(rng.integers(1, longest + 1))
        else:
            yield bool(rng.random() < probability)


class Dram:
    """``AxiRam`` on the ``m_axi`` port, ``size`` bytes from address 0, answering errors as the
    golden model defines them (module docstring). AxiRam answers SLVERR for a beat whose memory
    access raises; the access hooks raise for a beat (its whole aligned span, whatever its
    strobes) past the end or in an error range, so a refused write changes nothing, and the
    R/B hooks turn SLVERR into DECERR for the beats past the end."""

    def __init__(self, dut, config: AccelConfig, size: int, errors=()):
        self.size, self.beat = size, config.beat_bytes
        self.errors = [(int(start), int(end)) for start, end in errors]
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=size)
        logging.getLogger(f"cocotb.{dut._name}.m_axi_").setLevel(logging.ERROR)
        self._answer = {"read": Resp.SLVERR, "write": Resp.SLVERR}
        #: beats refused so far, per response
        self.refused = {Resp.SLVERR: 0, Resp.DECERR: 0}
        read_if, write_if = self.ram.read_if, self.ram.write_if
        read_if._read = self._refuse(read_if._read, "read")
        write_if._write = self._refuse(write_if._write, "write")
        read_if.r_channel.send = self._respond(read_if.r_channel.send, "rresp", "read")
        write_if.b_channel.send = self._respond(write_if.b_channel.send, "bresp", "write")
        self.channels = (read_if.ar_channel, read_if.r_channel, write_if.aw_channel,
                         write_if.w_channel, write_if.b_channel)

    def answer(self, address: int) -> Resp:
        """The response of the beat at ``address``."""
        start = address - address % self.beat
        end = start + self.beat
        if end > self.size:
            return Resp.DECERR
        if any(start < high and low < end for low, high in self.errors):
            return Resp.SLVERR
        return Resp.OKAY

    def _refuse(self, access, side):
        async def hooked(address, *args):
            response = self.answer(address)
            if response != Resp.OKAY:
                self._answer[side] = response
                self.refused[response] += 1
                raise RuntimeError(f"{side} at {address:#x}: {response.name}")
            return await access(address, *args)
        return hooked

    def _respond(self, send, field, side):
        async def hooked(transaction):
            if int(getattr(transaction, field)) == Resp.SLVERR:
                setattr(transaction, field, int(self._answer[side]))
            await send(transaction)
        return hooked

    def check_span(self, addr: int, length: int):
        if addr < 0 or length < 0 or addr + length > self.size:
            raise ValueError(f"DRAM bytes {addr:#x}..{addr + length:#x} are outside the "
                             f"{self.size} bytes of DRAM (addresses 0..{self.size:#x})")


class RtlBackend:
    """The driver's back end on the RTL (module docstring).

    Parameters
    ----------
    dut
        cocotb handle of the ``Accelerator`` top level.
    config : AccelConfig
        The configuration it was generated from (bus width of the DRAM model).
    dram_size : int
        Bytes of DRAM from address 0.
    dram_errors : iterable of (start, end)
        Byte ranges whose beats answer SLVERR.
    rng : numpy.random.Generator, optional
        Draws the pauses (required with ``pause``).
    pause : float
        Probability that a channel pauses in a cycle, on all ten AXI channels (0: none).

    Make one with :meth:`create` (it starts the clock with ``rst`` high and attaches the bus
    models once the inputs have values); call :meth:`reset` before the first register access
    (DRAM may be written before).
    """

    #: Every counter is measured by the hardware
    measured_counters = frozenset(COUNTERS)

    @classmethod
    async def create(cls, dut, config: AccelConfig, **kwargs) -> RtlBackend:
        dut.rst.value = 1
        Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
        await FallingEdge(dut.clk)
        return cls(dut, config, **kwargs)

    def __init__(self, dut, config: AccelConfig, *, dram_size: int, dram_errors=(), rng=None,
                 pause: float = 0.0):
        if pause and rng is None:
            raise ValueError("pause needs an rng to draw the pauses from")
        self.dut = dut
        self.dram = Dram(dut, config, dram_size, dram_errors)
        self.host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        logging.getLogger(f"cocotb.{dut._name}.s_axil_").setLevel(logging.WARNING)
        if pause:
            self.set_pauses(lambda: pauses(rng, pause))

    def set_pauses(self, patterns):
        """Give each of the ten AXI channels its own pause pattern, ``patterns()`` (an endless
        iterator of booleans, True: paused this cycle); ``None``: no pauses."""
        host = self.host
        for channel in (*self.dram.channels, host.write_if.aw_channel, host.write_if.w_channel,
                        host.write_if.b_channel, host.read_if.ar_channel,
                        host.read_if.r_channel):
            channel.set_pause_generator(patterns() if patterns else None)

    async def reset(self):
        await reset(self.dut)

    # -- Backend -----------------------------------------------------------------------------

    async def _watched(self, access, what):
        try:
            return await with_timeout(access, CSR_WATCHDOG_CYCLES * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"{what}: no bus response within {CSR_WATCHDOG_CYCLES} "
                                 f"cycles") from None

    async def read_csr(self, offset: int) -> tuple[int, Resp]:
        response = await self._watched(self.host.read(offset, 4), f"read of {offset:#04x}")
        return int.from_bytes(response.data, "little"), Resp(int(response.resp))

    async def write_csr(self, offset: int, value: int, strobe: int = 0b1111) -> Resp:
        first = (strobe & -strobe).bit_length() - 1
        lanes = bin(strobe).count("1")
        data = value.to_bytes(4, "little")[first:first + lanes]
        response = await self._watched(self.host.write(offset + first, data),
                                       f"write of {value:#010x} to {offset:#04x}")
        return Resp(int(response.resp))

    async def wait_irq(self, timeout_cycles: int) -> bool:
        if self.dut.irq.value:
            return True
        try:
            await with_timeout(RisingEdge(self.dut.irq), timeout_cycles * PERIOD_NS, "ns")
        except SimTimeoutError:
            return False
        return True

    async def wait_cycles(self, cycles: int) -> None:
        await ClockCycles(self.dut.clk, cycles)

    def cycle(self) -> int:
        return int(get_sim_time("ns")) // PERIOD_NS

    async def write_dram(self, addr: int, data: bytes) -> None:
        self.dram.check_span(addr, len(data))
        self.dram.ram.write(addr, data)

    async def read_dram(self, addr: int, length: int) -> bytes:
        self.dram.check_span(addr, length)
        return bytes(self.dram.ram.read(addr, length))
