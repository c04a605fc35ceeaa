"""The accelerator's AXI4-Lite register slave: identification, capabilities, control and status,
program address, interrupt and performance counters (register map: :mod:`sim.accel_spec`).

The host talks to the accelerator only through this block; the controller sees it as a few
pulses and levels (``start``, ``soft_reset``, ``prog_base``, ``prog_len``, ``irq`` out; ``busy``,
``pc``, ``finish``, ``fault`` in) and the datapath as counter events.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sim.accel_spec import (CAP_FIELDS, COUNTERS, CSR_ADDR_BITS, INSTRUCTION_BYTES, AccelError,
                            Reg, Resp, capability_words, ceil_log2, counter_offset)
from sim.config import AccelConfig

from .axi import AXI4LiteSignature

__all__ = ["CapArray", "CapFormats", "CapMemory", "CapBus", "CtrlBits", "Status",
           "COUNTER_PORTS", "ceil_log2", "capability_words", "Registers"]


# -- register fields (bit positions: the tables in sim.accel_spec) --------------------------------

def _capability_layout(reg: Reg) -> data.FlexibleLayout:
    return data.FlexibleLayout(32, {name: data.Field(width, low)
                                    for name, (low, width) in CAP_FIELDS[reg].items()})


CapArray = _capability_layout(Reg.CAP_ARRAY)
CapFormats = _capability_layout(Reg.CAP_FORMATS)
CapMemory = _capability_layout(Reg.CAP_MEMORY)
CapBus = _capability_layout(Reg.CAP_BUS)
CtrlBits = data.StructLayout({"start": 1, "soft_reset": 1, "irq_enable": 1})
Status = data.FlexibleLayout(32, {"busy": data.Field(1, 0), "done": data.Field(1, 1),
                                  "error": data.Field(1, 2), "code": data.Field(8, 8)})

#: The input port that drives each counter (1 bit: count the cycles it is high; 16 or 64 bits:
#: add it)
COUNTER_PORTS = {"cycles": "busy", "engine_busy_cycles": "engine_busy",
                 "dma_stall_cycles": "dma_stall", "bytes_read": "bytes_read",
                 "bytes_written": "bytes_written", "products_skipped": "products_skipped"}

# ``capability_words(config)``: the ID, VERSION and CAP_* constants, computed in the spec
# (sim.accel_spec.capability_words), where the host driver's model back end computes them too.


def _merge_bytes(old, new, strobe):
    """``old`` with the bytes of ``new`` whose ``strobe`` bit is set."""
    return Cat(*(Mux(strobe[i], new[8 * i:8 * i + 8], old[8 * i:8 * i + 8])
                 for i in range(len(old) // 8)))


class Registers(wiring.Component):
    """AXI4-Lite register slave of the accelerator (map: :mod:`sim.accel_spec`).

    Parameters
    ----------
    config : AccelConfig
        The capability registers describe it; ``addr_width`` sets the width of ``prog_base``.

    Ports
    -----
    bus : In(AXI4LiteSignature(CSR_ADDR_BITS))
        The host's port (32-bit data). Address bits [1:0] are ignored (a register is a word;
        ``wstrb`` selects its bytes), ``awprot``/``arprot`` too.
    start, soft_reset : Out(1)
        One-cycle pulses to the controller, one cycle after the write that asked for them.
        ``start`` comes only if no program runs (``busy`` low and no start pulse in flight),
        ``PROG_LEN != 0`` and ``PROG_BASE`` is 32-byte aligned.
    prog_base : Out(config.addr_width), prog_len : Out(32)
        The program registers.
    irq : Out(1)
        Level of ``IRQ.pending``.
    busy, pc : In(1), In(32)
        The controller runs a program / the index of the instruction it executes. The
        controller must raise ``busy`` at the latest in the cycle after the ``start`` pulse
        and hold it until its ``finish`` pulse.
    finish : In(1)
        One-cycle pulse: the program ended (normally or after a fault). Sets ``STATUS.done``
        and, with ``CTRL.irq_enable``, ``IRQ.pending``.
    fault, fault_code, fault_index : In(1), In(8), In(32)
        One-cycle pulse with an :class:`~sim.accel_spec.AccelError` code and the index of the
        faulting instruction. Sets ``STATUS.error``, ``STATUS.code`` and ``ERROR_INDEX``; the
        first error since the last start or soft reset is kept.
    engine_busy, dma_stall, bytes_read, bytes_written, products_skipped
        Counter events of the cycle (1, 1, 16, 16, 64 bits); ``products_skipped`` is added
        modulo ``2 ** 64``, so that it can also take products away (two's complement).

    Bus behaviour
    -------------
    One write and one read are in progress at a time, each with a one-entry buffer in front:
    ``awready`` and ``wready`` are high while no address / data waits, ``arready`` while no
    read address waits (none depends combinationally on another input). A write is performed
    in the first cycle where both its address and its data are present (from the buffers or
    the bus, in either order or together) and the B channel is free (``bvalid`` low or
    ``bready`` high); ``bvalid`` rises in the next cycle and holds with ``bresp`` until taken.
    A read is performed when its address is present and the R channel is free; ``rvalid``,
    ``rdata`` and ``rresp`` come in the next cycle and hold until taken.
    Latency: one cycle from the last of AW/W (or AR) handshakes to B (or R) valid.
    Throughput: one write and one read per cycle with ready managers.

    Responses: an address outside the map or a write to a read-only register answers
    ``SLVERR``; the write changes nothing and a read returns 0. ``PROG_BASE_HI`` with a
    32-bit address width is writable (``OKAY``) but keeps and reads 0. ``wstrb`` writes byte
    by byte; a write to ``CTRL`` or ``IRQ`` without ``wstrb[0]`` does nothing.

    Control (in one cycle, highest priority first):

    * soft reset (``CTRL.SOFT_RESET`` written 1; a ``START`` in the same write is ignored):
      pulse ``soft_reset``; clear ``STATUS`` done/error/code, ``ERROR_INDEX``, ``IRQ.pending``
      and the counters (and their latched high words); keep ``PROG_BASE`` and ``PROG_LEN``;
      the soft reset leaves the IRQ enable alone, which takes bit 2 of the same write like any
      ``CTRL`` write (write ``SOFT_RESET | IRQ_ENABLE`` to keep it on); drop the controller's
      ``finish``/``fault`` of that cycle.
    * start (``CTRL.START`` written 1): while busy (``busy`` or a start pulse in flight)
      -> error ``START_WHILE_BUSY``, ``ERROR_INDEX = pc``, no pulse, nothing else changes;
      else clear done/error/code/index and the counters, then with ``PROG_LEN == 0`` ->
      ``EMPTY_PROGRAM`` (checked first), with ``PROG_BASE % 32 != 0`` -> ``MISALIGNED``
      (``ERROR_INDEX`` 0, ``STATUS.done`` set, ``IRQ.pending`` set if the IRQ is enabled,
      with the enable written in the same write), else pulse ``start``.
    * ``finish`` sets done (and IRQ pending if enabled); ``fault`` sets the error if none is
      set; a write of 1 to ``IRQ[0]`` clears pending unless a finish sets it in that cycle.

    Counters count every cycle their event input is non-zero (``cycles`` every cycle with
    ``busy`` high) from the cycle after the write that cleared them; 64 bits, wrapping. A read
    of a counter's low word stores its high word (from the same cycle) in a latch that the
    high word's address returns.
    """

    def __init__(self, config):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        self.capabilities = capability_words(config)
        super().__init__({
            "bus": In(AXI4LiteSignature(CSR_ADDR_BITS)),
            "start": Out(1), "soft_reset": Out(1), "prog_base": Out(config.addr_width),
            "prog_len": Out(32), "irq": Out(1),
            "busy": In(1), "pc": In(32), "finish": In(1), "fault": In(1), "fault_code": In(8),
            "fault_index": In(32),
            "engine_busy": In(1), "dma_stall": In(1), "bytes_read": In(16),
            "bytes_written": In(16), "products_skipped": In(64),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        wide = self.config.addr_width > 32

        # -- write channel: one-entry AW and W buffers, B register ----------------------------
        aw_held, w_held = Signal(), Signal()
        aw_addr = Signal(CSR_ADDR_BITS - 2)
        w_data, w_strb = Signal(32), Signal(4)
        b_valid, b_resp = Signal(), Signal(2)
        m.d.comb += [bus.awready.eq(~aw_held), bus.wready.eq(~w_held),
                     bus.bvalid.eq(b_valid), bus.bresp.eq(b_resp)]
        write_fire = Signal()
        m.d.comb += write_fire.eq((aw_held | bus.awvalid) & (w_held | bus.wvalid)
                                  & (~b_valid | bus.bready))
        waddr, wdata, wstrb = Signal(CSR_ADDR_BITS - 2), Signal(32), Signal(4)
        m.d.comb += [waddr.eq(Mux(aw_held, aw_addr, bus.awaddr[2:])),
                     wdata.eq(Mux(w_held, w_data, bus.wdata)),
                     wstrb.eq(Mux(w_held, w_strb, bus.wstrb))]
        with m.If(write_fire):
            m.d.sync += aw_held.eq(0)
        with m.Elif(bus.awvalid & ~aw_held):
            m.d.sync += [aw_held.eq(1), aw_addr.eq(bus.awaddr[2:])]
        with m.If(write_fire):
            m.d.sync += w_held.eq(0)
        with m.Elif(bus.wvalid & ~w_held):
            m.d.sync += [w_held.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]

        # -- read channel: one-entry AR buffer, R register ------------------------------------
        ar_held = Signal()
        ar_addr = Signal(CSR_ADDR_BITS - 2)
        r_valid, r_data, r_resp = Signal(), Signal(32), Signal(2)
        m.d.comb += [bus.arready.eq(~ar_held), bus.rvalid.eq(r_valid), bus.rdata.eq(r_data),
                     bus.rresp.eq(r_resp)]
        read_fire = Signal()
        m.d.comb += read_fire.eq((ar_held | bus.arvalid) & (~r_valid | bus.rready))
        raddr = Signal(CSR_ADDR_BITS - 2)
        m.d.comb += raddr.eq(Mux(ar_held, ar_addr, bus.araddr[2:]))
        with m.If(read_fire):
            m.d.sync += ar_held.eq(0)
        with m.Elif(bus.arvalid & ~ar_held):
            m.d.sync += [ar_held.eq(1), ar_addr.eq(bus.araddr[2:])]

        # -- registers ------------------------------------------------------------------------
        irq_enable, irq_pending = Signal(), Signal()
        prog_base_lo, prog_base_hi, prog_len = Signal(32), Signal(32), Signal(32)
        status = Signal(Status)
        error_index = Signal(32)
        start, soft_reset = Signal(), Signal()
        m.d.comb += [self.start.eq(start), self.soft_reset.eq(soft_reset),
                     self.prog_base.eq(Cat(prog_base_lo, prog_base_hi) if wide else prog_base_lo),
                     self.prog_len.eq(prog_len), self.irq.eq(irq_pending)]
        busy_now = Signal()
        m.d.comb += busy_now.eq(self.busy | start)

        counters = {name: Signal(64, name=f"count_{name}") for name in COUNTERS}
        latches = {name: Signal(32, name=f"high_{name}") for name in COUNTERS}

        # -- read: the addressed word, or SLVERR and 0 ----------------------------------------
        read_word, read_ok = Signal(32), Signal()
        reading = {reg: Const(value, 32) for reg, value in self.capabilities.items()}
        reading[Reg.CTRL] = Cat(Const(0, 2), irq_enable)
        reading[Reg.STATUS] = Cat(busy_now, status.as_value()[1:])
        reading[Reg.ERROR_INDEX] = error_index
        reading[Reg.IRQ] = irq_pending
        reading[Reg.PROG_BASE_LO] = prog_base_lo
        reading[Reg.PROG_BASE_HI] = prog_base_hi if wide else Const(0, 32)
        reading[Reg.PROG_LEN] = prog_len
        for name in COUNTERS:
            reading[counter_offset(name)] = counters[name][:32]
            reading[counter_offset(name) + 4] = latches[name]
        with m.Switch(raddr):
            for offset, value in reading.items():
                with m.Case(offset >> 2):
                    m.d.comb += [read_word.eq(value), read_ok.eq(1)]
        with m.If(read_fire):
            m.d.sync += [r_valid.eq(1), r_data.eq(read_word),
                         r_resp.eq(Mux(read_ok, int(Resp.OKAY), int(Resp.SLVERR)))]
        with m.Elif(bus.rready):
            m.d.sync += r_valid.eq(0)

        # -- write: decode, byte strobes ------------------------------------------------------
        writable = {Reg.CTRL, Reg.IRQ, Reg.PROG_BASE_LO, Reg.PROG_BASE_HI, Reg.PROG_LEN}
        write_ok = Signal()
        with m.Switch(waddr):
            with m.Case(*(reg >> 2 for reg in writable)):
                m.d.comb += write_ok.eq(1)
        with m.If(write_fire):
            m.d.sync += [b_valid.eq(1), b_resp.eq(Mux(write_ok, int(Resp.OKAY), int(Resp.SLVERR)))]
        with m.Elif(bus.bready):
            m.d.sync += b_valid.eq(0)

        def writes(reg):
            return write_fire & (waddr == reg >> 2)

        for reg, register in ((Reg.PROG_BASE_LO, prog_base_lo), (Reg.PROG_LEN, prog_len),
                              *(((Reg.PROG_BASE_HI, prog_base_hi),) if wide else ())):
            with m.If(writes(reg)):
                m.d.sync += register.eq(_merge_bytes(register, wdata, wstrb))

        ctrl = Signal(CtrlBits)
        m.d.comb += ctrl.eq(wdata[:len(ctrl.as_value())])
        ctrl_write = writes(Reg.CTRL) & wstrb[0]
        irq_enable_next = Mux(ctrl_write, ctrl.irq_enable, irq_enable)
        with m.If(ctrl_write):
            m.d.sync += irq_enable.eq(ctrl.irq_enable)
        soft_request = ctrl_write & ctrl.soft_reset
        start_request = ctrl_write & ctrl.start & ~ctrl.soft_reset
        aligned = prog_base_lo[:(INSTRUCTION_BYTES - 1).bit_length()] == 0
        start_while_busy = start_request & busy_now
        start_checked = start_request & ~busy_now          # clears status and counters
        empty = start_checked & (prog_len == 0)
        misaligned = start_checked & (prog_len != 0) & ~aligned
        m.d.sync += [start.eq(start_checked & ~empty & ~misaligned),
                     soft_reset.eq(soft_request)]
        clear = Signal()
        m.d.comb += clear.eq(soft_request | start_checked)

        irq_clear = writes(Reg.IRQ) & wstrb[0] & wdata[0]
        with m.If(soft_request):
            m.d.sync += [status.eq(0), error_index.eq(0), irq_pending.eq(0)]
        with m.Elif(start_checked):
            m.d.sync += [status.eq(0), error_index.eq(0)]
            with m.If(empty | misaligned):
                m.d.sync += [status.done.eq(1), status.error.eq(1),
                             status.code.eq(Mux(empty, int(AccelError.EMPTY_PROGRAM),
                                                int(AccelError.MISALIGNED)))]
                with m.If(irq_enable_next):
                    m.d.sync += irq_pending.eq(1)
        with m.Else():
            with m.If(irq_clear):
                m.d.sync += irq_pending.eq(0)
            with m.If(self.finish):
                m.d.sync += status.done.eq(1)
                with m.If(irq_enable):
                    m.d.sync += irq_pending.eq(1)
            with m.If(~status.error):
                with m.If(self.fault):
                    m.d.sync += [status.error.eq(1), status.code.eq(self.fault_code),
                                 error_index.eq(self.fault_index)]
                with m.Elif(start_while_busy):
                    m.d.sync += [status.error.eq(1),
                                 status.code.eq(int(AccelError.START_WHILE_BUSY)),
                                 error_index.eq(self.pc)]

        # -- counters -------------------------------------------------------------------------
        for name in COUNTERS:
            count, high = counters[name], latches[name]
            with m.If(clear):
                m.d.sync += [count.eq(0), high.eq(0)]
            with m.Else():
                m.d.sync += count.eq(count + getattr(self, COUNTER_PORTS[name]))
            # after the clear: the latch pairs with the low word this read returns
            with m.If(read_fire & (raddr == counter_offset(name) >> 2)):
                m.d.sync += high.eq(count[32:])
        return m
