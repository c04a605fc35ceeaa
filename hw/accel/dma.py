"""AXI4 DMA master: 2-D strided reads and writes between DRAM and the accelerator's streams.

A transfer is ``rows`` rows of ``row_bytes`` bytes, row ``r`` starting at ``addr + r * stride``
(addresses wrap modulo ``2 ** addr_width``); its data moves in address order. Each row is cut
into the INCR bursts of :func:`sim.accel_spec.burst_split` (at most 256 beats, never across a
4 KiB boundary); :func:`sim.accel_spec.dma_bursts` lists them and the hardware issues exactly
those, in that order. ``docs/accel.md`` (section "DMA") describes the block in full.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.accel.axi import AXI4Signature
from hw.spec_enum import hardware_enum
from sim.accel_spec import (BURST_BOUNDARY, DMA_ROW_BYTES_BITS, DMA_ROWS_BITS, MAX_BURST_BEATS,
                            AccelError)
from sim.config import AccelConfig

__all__ = ["TransferCommand", "ReadCommand", "WriteCommand", "ReadBeat", "WriteBeat", "ErrorCode",
           "WRITES_OUTSTANDING", "AXI_CACHE", "BurstGenerator", "Dma"]

#: Write bursts the DMA may have issued (AW accepted) whose B response has not arrived
WRITES_OUTSTANDING = 4
#: ``ARCACHE``/``AWCACHE``: normal, non-cacheable, bufferable memory
AXI_CACHE = 0b0011
#: ``ARBURST``/``AWBURST`` of an incrementing burst
AXI_BURST_INCR = 1


class TransferCommand(data.StructLayout):
    """A 2-D transfer: ``rows`` rows of ``row_bytes`` bytes, row ``r`` at
    ``addr + r * stride`` (``stride``: bytes between row starts; it may be smaller than
    ``row_bytes`` or zero, and wraps like an address). ``addr``, ``row_bytes`` and ``stride``
    must be multiples of the beat, ``rows`` and ``row_bytes`` non-zero
    (:func:`sim.accel_spec.dma_command_error`)."""

    def __init__(self, addr_width: int):
        super().__init__({"addr": addr_width, "row_bytes": DMA_ROW_BYTES_BITS,
                          "rows": DMA_ROWS_BITS, "stride": addr_width})


#: A read transfer (DRAM -> ``read_data``)
ReadCommand = TransferCommand
#: A write transfer (``write_data`` -> DRAM)
WriteCommand = TransferCommand


class ReadBeat(data.StructLayout):
    """One beat of read data; ``last`` marks the final beat of a transfer."""

    def __init__(self, data_width: int):
        super().__init__({"data": data_width, "last": 1})


class WriteBeat(data.StructLayout):
    """One beat of write data and its byte strobes (``strobe[i]``: byte ``i`` of ``data`` is
    written; a byte whose strobe is 0 leaves the memory as it was). Driven to ``WDATA`` and
    ``WSTRB``."""

    def __init__(self, data_width: int):
        super().__init__({"data": data_width, "strobe": data_width // 8})


#: :class:`sim.accel_spec.AccelError` as an 8-bit Amaranth enum (built member by member, so a
#: code added to the specification appears here).
ErrorCode = hardware_enum(
    AccelError, name="ErrorCode", module=__name__, shape=8,
    doc="The DMA's error codes: the members of :class:`sim.accel_spec.AccelError`, same names "
        "and values, 8 bits (the width of ``STATUS.error_code``).")


#: What the write side remembers of a burst from its AW to its last W beat
_WRITE_BURST = data.StructLayout({"len": 8, "last": 1})


def _burst_layout(addr_width: int):
    return data.StructLayout({"addr": addr_width, "len": 8, "last": 1})


class BurstGenerator(wiring.Component):
    """Cuts a valid 2-D transfer into the INCR bursts of :func:`sim.accel_spec.dma_bursts`.

    ``cmd`` is accepted when idle (the command must be valid: the :class:`Dma` checks it).
    ``burst`` then offers the bursts one after the other: ``addr``, ``len`` (beats - 1) and
    ``last`` (the final burst of the transfer). The burst on offer is computed from registers
    only, so it is stable while offered.

    Latency: the first burst is offered the cycle after ``cmd`` is accepted. Throughput: one
    burst per cycle; the next command is accepted the cycle after the last burst is taken.
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        super().__init__({
            "cmd": In(stream.Signature(TransferCommand(config.addr_width))),
            "burst": Out(stream.Signature(_burst_layout(config.addr_width))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        shift = (cfg.beat_bytes - 1).bit_length()        # log2 of the beat in bytes
        boundary_bits = (BURST_BOUNDARY - 1).bit_length()
        beat_bits = DMA_ROW_BYTES_BITS - shift

        busy = Signal()
        # the transfer's state: meaningful only while busy, so without reset
        addr = Signal(cfg.addr_width, reset_less=True)          # start of the next burst
        row_start = Signal(cfg.addr_width, reset_less=True)
        stride = Signal(cfg.addr_width, reset_less=True)
        rows_left = Signal(DMA_ROWS_BITS, reset_less=True)      # rows left, the current one too
        row_beats = Signal(beat_bits, reset_less=True)
        left = Signal(beat_bits, reset_less=True)               # beats of the row not yet issued

        to_boundary = Signal(range(BURST_BOUNDARY // cfg.beat_bytes + 1))
        beats = Signal(range(max(MAX_BURST_BEATS, BURST_BOUNDARY // cfg.beat_bytes) + 1))
        row_end = Signal()                                      # the burst ends the row
        m.d.comb += [
            to_boundary.eq((BURST_BOUNDARY >> shift) - addr[shift:boundary_bits]),
            row_end.eq((left <= MAX_BURST_BEATS) & (left <= to_boundary)),
        ]
        with m.If(row_end):
            m.d.comb += beats.eq(left)
        with m.Elif(to_boundary <= MAX_BURST_BEATS):
            m.d.comb += beats.eq(to_boundary)
        with m.Else():
            m.d.comb += beats.eq(MAX_BURST_BEATS)
        # a burst never crosses 4 KiB: the bits above the boundary increment at most by one
        within = Signal(boundary_bits + 1)
        m.d.comb += within.eq(addr[:boundary_bits] + (beats << shift))
        next_addr = addr[boundary_bits:].as_unsigned() + within[boundary_bits]

        m.d.comb += [
            self.cmd.ready.eq(~busy),
            self.burst.valid.eq(busy),
            self.burst.payload.addr.eq(addr),
            self.burst.payload.len.eq(beats - 1),
            self.burst.payload.last.eq(row_end & (rows_left == 1)),
        ]

        with m.If(self.cmd.valid & self.cmd.ready):
            command = self.cmd.payload
            m.d.sync += [
                busy.eq(1),
                addr.eq(command.addr),
                row_start.eq(command.addr),
                stride.eq(command.stride),
                rows_left.eq(command.rows),
                row_beats.eq(command.row_bytes[shift:]),
                left.eq(command.row_bytes[shift:]),
            ]
        with m.If(self.burst.valid & self.burst.ready):
            with m.If(~row_end):
                m.d.sync += [addr.eq(within[:boundary_bits] | (next_addr << boundary_bits)),
                             left.eq(left - beats)]
            with m.Elif(rows_left == 1):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += [
                    rows_left.eq(rows_left - 1),
                    row_start.eq(row_start + stride),
                    addr.eq(row_start + stride),
                    left.eq(row_beats),
                ]
        return m


class Dma(wiring.Component):
    """AXI4 DMA master with a read side and a write side that run independently.

    Bus (``bus``, manager): INCR bursts only, full-width beats (``size`` = log2 of the beat),
    write strobes from ``write_data``, ID 0, ``lock`` 0, ``cache`` :data:`AXI_CACHE` (normal
    non-cacheable bufferable), ``prot`` 0 (unprivileged, secure, data).

    Read side: a ``read_cmd`` (:class:`TransferCommand`) is accepted as soon as the address
    generator has issued every burst of the previous one, so transfers follow each other on
    AR without waiting for their data. At most ``config.reads_outstanding`` bursts are in
    flight (AR accepted, not all beats received). R beats go straight to ``read_data`` (no
    buffer: ``RREADY`` is ``read_data.ready``; the memory holds a beat until it is taken);
    ``last`` marks the final beat of each transfer. A transfer whose data came with SLVERR or
    DECERR still delivers all its beats (the data is whatever the memory returned).

    Write side: a ``write_cmd`` is accepted likewise; AW runs ahead of W by up to
    :data:`WRITES_OUTSTANDING` bursts (AW accepted, B not received). The ``write_data`` beats
    (:class:`WriteBeat`: data and byte strobes, to ``WDATA``/``WSTRB``) of a burst are sent on
    W after its AW was accepted (never before), with ``wlast`` on its final beat; every B
    response is taken.

    Status: ``read_done``/``write_done`` pulse for one cycle the cycle after a transfer
    completed (read: its last beat was taken from ``read_data``; write: its last B response
    arrived); a rejected command completes the same way, in order, without bus activity.
    ``error`` pulses together with the done of the transfer that failed, ``error_code``
    (:class:`ErrorCode`) says why: ``DRAM_RESPONSE`` (some RRESP/BRESP was SLVERR or DECERR),
    ``MISALIGNED`` or ``BAD_FIELD`` (:func:`sim.accel_spec.dma_command_error`). ``read_done``
    and ``write_done`` never pulse in the same cycle (a write completion waits for the first
    cycle without a read completion; meanwhile B is not taken), so an ``error`` always belongs
    to exactly one transfer.

    Counters: ``bytes_read``/``bytes_written`` are the bytes of the R/W beats of this cycle;
    ``stall`` is 1 in a cycle where a transfer is active (read: from the cycle after its
    command was accepted to its last R beat; write: to its last B response) and no beat moved
    on R or W, whatever the cause (memory latency or backpressure, ``read_data`` not ready,
    ``write_data`` not valid). A rejected command is no transfer.

    Latency and throughput: first AR the cycle after ``read_cmd`` is accepted (likewise AW);
    one beat per cycle on R and on W when the memory and the streams never pause and more than
    one burst may be in flight (bursts back to back: later ARs are issued while a burst's data
    flows); between two transfers of one side, one idle cycle on AR/AW. ``read_done`` comes
    the cycle after the last beat.
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        command = TransferCommand(config.addr_width)
        super().__init__({
            "bus": Out(AXI4Signature(config.addr_width, config.data_width, id_width=1)),
            "read_cmd": In(stream.Signature(command)),
            "read_data": Out(stream.Signature(ReadBeat(config.data_width))),
            "write_cmd": In(stream.Signature(command)),
            "write_data": In(stream.Signature(WriteBeat(config.data_width))),
            "read_done": Out(1),
            "write_done": Out(1),
            "error": Out(1),
            "error_code": Out(ErrorCode),
            "bytes_read": Out(16),
            "bytes_written": Out(16),
            "stall": Out(1),
        })

    def _command_error(self, m, command):
        """The :class:`ErrorCode` of a command (comb)."""
        shift = (self.config.beat_bytes - 1).bit_length()
        code = Signal(ErrorCode)
        misaligned = (command.addr[:shift].any() | command.row_bytes[:shift].any()
                      | command.stride[:shift].any())
        with m.If((command.rows == 0) | (command.row_bytes == 0)):
            m.d.comb += code.eq(ErrorCode.BAD_FIELD)
        with m.Elif(misaligned):
            m.d.comb += code.eq(ErrorCode.MISALIGNED)
        with m.Else():
            m.d.comb += code.eq(ErrorCode.NONE)
        return code

    def _address_channel(self, m, prefix, generator, accept):
        """Drive AR or AW from ``generator``'s bursts; ``accept`` gates the handshake."""
        bus = self.bus
        size = (self.config.beat_bytes - 1).bit_length()
        burst = generator.burst
        m.d.comb += [
            getattr(bus, f"{prefix}id").eq(0),
            getattr(bus, f"{prefix}addr").eq(burst.payload.addr),
            getattr(bus, f"{prefix}len").eq(burst.payload.len),
            getattr(bus, f"{prefix}size").eq(size),
            getattr(bus, f"{prefix}burst").eq(AXI_BURST_INCR),
            getattr(bus, f"{prefix}lock").eq(0),
            getattr(bus, f"{prefix}cache").eq(AXI_CACHE),
            getattr(bus, f"{prefix}prot").eq(0),
            getattr(bus, f"{prefix}valid").eq(burst.valid & accept),
            burst.ready.eq(getattr(bus, f"{prefix}ready") & accept),
        ]

    def _front(self, m, name, command, generator):
        """Command intake of one side: valid commands go to ``generator``, bad ones wait
        (registered) until the side is empty. Returns (reject pending, its code)."""
        reject = Signal(name=f"{name}_reject")
        reject_code = Signal(ErrorCode, name=f"{name}_reject_code")
        code = self._command_error(m, command.payload)
        m.d.comb += [
            command.ready.eq(generator.cmd.ready & ~reject),
            generator.cmd.valid.eq(command.valid & ~reject & (code == ErrorCode.NONE)),
            generator.cmd.payload.eq(command.payload),
        ]
        with m.If(command.valid & command.ready & (code != ErrorCode.NONE)):
            m.d.sync += [reject.eq(1), reject_code.eq(code)]
        return reject, reject_code

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        bus = self.bus

        # -- read side ---------------------------------------------------------------------
        m.submodules.read_bursts = read_bursts = BurstGenerator(cfg)
        # one entry per burst in flight: is it the transfer's last burst?
        m.submodules.reads_in_flight = reads = fifo.SyncFIFO(width=1,
                                                             depth=cfg.reads_outstanding)
        read_reject, read_reject_code = self._front(m, "read", self.read_cmd, read_bursts)
        self._address_channel(m, "ar", read_bursts, reads.w_rdy)
        m.d.comb += [
            reads.w_en.eq(bus.arvalid & bus.arready),
            reads.w_data.eq(read_bursts.burst.payload.last),
        ]

        r_beat = Signal()
        r_bad = bus.rresp[1]                    # SLVERR or DECERR
        read_error = Signal()                   # sticky over the transfer's beats
        m.d.comb += [
            self.read_data.valid.eq(bus.rvalid & reads.r_rdy),
            self.read_data.payload.data.eq(bus.rdata),
            self.read_data.payload.last.eq(bus.rlast & reads.r_data[0]),
            bus.rready.eq(self.read_data.ready & reads.r_rdy),
            r_beat.eq(bus.rvalid & bus.rready),
            reads.r_en.eq(r_beat & bus.rlast),
        ]
        read_end = Signal()
        read_end_code = Signal(ErrorCode)
        with m.If(r_beat & bus.rlast & reads.r_data[0]):
            m.d.comb += [
                read_end.eq(1),
                read_end_code.eq(Mux(read_error | r_bad, ErrorCode.DRAM_RESPONSE,
                                     ErrorCode.NONE)),
            ]
            m.d.sync += read_error.eq(0)
        with m.Elif(r_beat & r_bad):
            m.d.sync += read_error.eq(1)
        with m.If(read_reject & ~reads.r_rdy):
            m.d.comb += [read_end.eq(1), read_end_code.eq(read_reject_code)]
            m.d.sync += read_reject.eq(0)
        read_active = Signal()
        m.d.comb += read_active.eq(~read_bursts.cmd.ready | reads.r_rdy)

        # -- write side --------------------------------------------------------------------
        m.submodules.write_bursts = write_bursts = BurstGenerator(cfg)
        # bursts whose AW was accepted: (len, last) until their W beats are sent, then (last)
        # until their B response arrives
        m.submodules.writes_to_send = to_send = fifo.SyncFIFO(width=_WRITE_BURST.size,
                                                              depth=WRITES_OUTSTANDING)
        m.submodules.writes_to_answer = to_answer = fifo.SyncFIFO(width=1,
                                                                  depth=WRITES_OUTSTANDING)
        writes_in_flight = Signal(range(WRITES_OUTSTANDING + 1))
        write_reject, write_reject_code = self._front(m, "write", self.write_cmd, write_bursts)
        self._address_channel(m, "aw", write_bursts, writes_in_flight != WRITES_OUTSTANDING)
        aw_beat = bus.awvalid & bus.awready
        queued, head = data.View(_WRITE_BURST, to_send.w_data), data.View(_WRITE_BURST,
                                                                          to_send.r_data)
        m.d.comb += [
            to_send.w_en.eq(aw_beat),
            queued.len.eq(write_bursts.burst.payload.len),
            queued.last.eq(write_bursts.burst.payload.last),
        ]

        w_count = Signal(8)                     # beats of the head burst already sent
        w_beat = Signal()
        wlast = w_count == head.len
        m.d.comb += [
            bus.wvalid.eq(self.write_data.valid & to_send.r_rdy),
            bus.wdata.eq(self.write_data.payload.data),
            bus.wstrb.eq(self.write_data.payload.strobe),
            bus.wlast.eq(wlast),
            self.write_data.ready.eq(bus.wready & to_send.r_rdy),
            w_beat.eq(bus.wvalid & bus.wready),
            to_send.r_en.eq(w_beat & wlast),
            to_answer.w_en.eq(w_beat & wlast),
            to_answer.w_data.eq(head.last),
        ]
        with m.If(w_beat):
            m.d.sync += w_count.eq(Mux(wlast, 0, w_count + 1))

        # a write completion in the same cycle as a read completion is held for a cycle; while
        # it is held, no further write completes (B is not taken, no reject ends)
        write_held = Signal()
        write_held_code = Signal(ErrorCode)
        b_beat = Signal()
        b_bad = bus.bresp[1]
        write_error = Signal()
        m.d.comb += [
            bus.bready.eq(to_answer.r_rdy & ~write_held),
            b_beat.eq(bus.bvalid & bus.bready),
            to_answer.r_en.eq(b_beat),
        ]
        with m.If(aw_beat & ~b_beat):
            m.d.sync += writes_in_flight.eq(writes_in_flight + 1)
        with m.Elif(b_beat & ~aw_beat):
            m.d.sync += writes_in_flight.eq(writes_in_flight - 1)
        write_end = Signal()
        write_end_code = Signal(ErrorCode)
        with m.If(b_beat & to_answer.r_data[0]):
            m.d.comb += [
                write_end.eq(1),
                write_end_code.eq(Mux(write_error | b_bad, ErrorCode.DRAM_RESPONSE,
                                      ErrorCode.NONE)),
            ]
            m.d.sync += write_error.eq(0)
        with m.Elif(b_beat & b_bad):
            m.d.sync += write_error.eq(1)
        with m.If(write_reject & (writes_in_flight == 0) & ~write_held):
            m.d.comb += [write_end.eq(1), write_end_code.eq(write_reject_code)]
            m.d.sync += write_reject.eq(0)
        write_active = Signal()
        m.d.comb += write_active.eq(~write_bursts.cmd.ready | (writes_in_flight != 0))

        # -- status ------------------------------------------------------------------------
        m.d.sync += [self.read_done.eq(read_end), self.write_done.eq(0), self.error.eq(0)]
        with m.If(read_end):
            m.d.sync += [self.error.eq(read_end_code != ErrorCode.NONE),
                         self.error_code.eq(read_end_code)]
            with m.If(write_end):
                m.d.sync += [write_held.eq(1), write_held_code.eq(write_end_code)]
        with m.Elif(write_held):
            m.d.sync += [self.write_done.eq(1), write_held.eq(0),
                         self.error.eq(write_held_code != ErrorCode.NONE),
                         self.error_code.eq(write_held_code)]
        with m.Elif(write_end):
            m.d.sync += [self.write_done.eq(1),
                         self.error.eq(write_end_code != ErrorCode.NONE),
                         self.error_code.eq(write_end_code)]

        # -- counters ----------------------------------------------------------------------
        m.d.comb += [
            self.bytes_read.eq(Mux(r_beat, cfg.beat_bytes, 0)),
            self.bytes_written.eq(Mux(w_beat, cfg.beat_bytes, 0)),
            self.stall.eq((read_active | write_active) & ~r_beat & ~w_beat),
        ]
        return m
