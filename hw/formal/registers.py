"""Formal properties of the AXI4-Lite register slave (:class:`hw.accel.registers.Registers`).

The manager is free (every bus input is a solver choice each cycle) and so are the
controller's inputs. Promised, on the bus:

* a B or R response, once valid, holds with its payload until taken (``bvalid`` & ``bresp``,
  ``rvalid`` & ``rdata`` & ``rresp``);
* no response without a request: every B follows an AW and a W handshake not yet answered,
  every R an AR handshake, and at most two of each are outstanding: exactly one per request
  waiting in its buffer (its ``ready`` low) and one being answered (``bvalid`` / ``rvalid``);

and to the controller: ``start`` is a single-cycle pulse that comes only with a non-zero
``PROG_LEN``, a 32-byte aligned ``PROG_BASE``, and neither ``busy`` nor a start pulse in the
cycle of the write that asked for it.

Covers: an ``OKAY`` and a ``SLVERR`` write response, a read response, a ``start`` and a
``soft_reset`` pulse, the interrupt raised. Mutant ``b_drop``: the observed ``bvalid`` drops
at the solver's choice (the B stability property must fail).
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Cover

from hw.accel.registers import Registers
from sim.accel_spec import INSTRUCTION_BYTES, Resp
from sim.config import AccelConfig

from .common import History, Properties

__all__ = ["RegistersProperties"]


class RegistersProperties(Properties):
    """:class:`~hw.accel.registers.Registers` of ``config`` with its properties (module
    docstring)."""

    NAME = "registers"
    DESCRIPTION = "AXI4-Lite register slave (the demo accelerator's configuration)"
    #: ``prove``: k-induction; the counts' exact values (buffer + response) make it inductive
    TASKS = {"bmc": 24, "cover": 24, "prove": 2}
    MUTANTS = ("b_drop",)

    def __init__(self, config: AccelConfig | None = None, *, mutant: str | None = None):
        self.config = config or AccelConfig()
        super().__init__(Registers(self.config), mutant=mutant)

    def elaborate(self, platform):
        m = Module()
        dut = self.instantiate(m)
        bus = dut.bus
        past = History(m)

        bvalid = bus.bvalid
        if self.mutant == "b_drop":
            bvalid = bus.bvalid & ~AnySeq(1)

        # -- responses hold until taken ----------------------------------------------------
        # (past values are registered outside any m.If: inside one they would only update
        # when its condition holds)
        b_stall, bresp = past(bvalid & ~bus.bready, "b_stall"), past(bus.bresp, "bresp")
        r_stall, rdata = past(bus.rvalid & ~bus.rready, "r_stall"), past(bus.rdata, "rdata")
        rresp = past(bus.rresp, "rresp")
        with m.If(past.valid & b_stall):
            m.d.comb += [Assert(bvalid, "bvalid dropped before bready"),
                         Assert(bus.bresp == bresp, "bresp changed")]
        with m.If(past.valid & r_stall):
            m.d.comb += [Assert(bus.rvalid, "rvalid dropped before rready"),
                         Assert(bus.rdata == rdata, "rdata changed"),
                         Assert(bus.rresp == rresp, "rresp changed")]

        # -- no response without a request -------------------------------------------------
        pending = {}
        for name, request, response in (
                ("aw", bus.awvalid & bus.awready, bvalid & bus.bready),
                ("w", bus.wvalid & bus.wready, bvalid & bus.bready),
                ("ar", bus.arvalid & bus.arready, bus.rvalid & bus.rready)):
            count = Signal(3, name=f"pending_{name}")
            m.d.sync += count.eq(count + request - response)
            pending[name] = count
            m.d.comb += Assert(count <= 2, f"more than two {name} requests outstanding")
        m.d.comb += [
            Assert(~bvalid | ((pending["aw"] >= 1) & (pending["w"] >= 1)),
                   "B response without an unanswered AW and W"),
            Assert(~bus.rvalid | (pending["ar"] >= 1), "R response without an unanswered AR"),
            # exactly: one waiting in the buffer (ready low), one answered (valid); this also
            # makes the counts inductive for the prove task
            Assert(pending["aw"] == ~bus.awready + bvalid, "AW count is not buffer + B"),
            Assert(pending["w"] == ~bus.wready + bvalid, "W count is not buffer + B"),
            Assert(pending["ar"] == ~bus.arready + bus.rvalid, "AR count is not buffer + R"),
        ]

        # -- the start pulse -----------------------------------------------------------------
        aligned = dut.prog_base[:(INSTRUCTION_BYTES - 1).bit_length()] == 0
        start_before, busy_before = past(dut.start, "start"), past(dut.busy, "busy")
        with m.If(dut.start):
            m.d.comb += [Assert(dut.prog_len != 0, "start with PROG_LEN 0"),
                         Assert(aligned, "start with a misaligned PROG_BASE")]
            with m.If(past.valid):
                m.d.comb += [Assert(~start_before, "start longer than a cycle"),
                             Assert(~busy_before, "start while busy")]

        # -- covers --------------------------------------------------------------------------
        m.d.comb += [
            Cover(bvalid & (bus.bresp == int(Resp.OKAY))),
            Cover(bvalid & (bus.bresp == int(Resp.SLVERR))),
            Cover(bus.rvalid),
            Cover(dut.start),
            Cover(dut.soft_reset),
            Cover(dut.irq),
        ]
        return m
