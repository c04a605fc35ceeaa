"""On-chip RAM as the accelerator's DRAM: an AXI4 subordinate for the DMA and an AXI4-Lite one
for the host link, on one block RAM (one read port, one write port)."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from hw.accel.axi import AXI4LiteSignature, AXI4Signature
from sim.accel_spec import Resp

__all__ = ["BoardRam", "HOST_ADDR_BITS"]

#: Address bits of the host port (byte addresses; 32-bit words)
HOST_ADDR_BITS = 32

#: AXI ``AxBURST`` of an incrementing burst, the only kind the DMA issues
_INCR = 1


class BoardRam(wiring.Component):
    """``size`` bytes of block RAM from address 0.

    The error rule is the golden model's (``sim.accel_model``): a beat with a byte at or
    beyond ``size`` answers ``DECERR`` and writes nothing. A burst that is not ``INCR`` or
    whose beats are narrower than the bus answers ``SLVERR`` for every beat and writes
    nothing (the DMA issues neither).

    ``axi`` (the DMA) has one read burst and one write burst in flight; reads stream one beat
    per cycle, the first beat two cycles after ``AR``; writes take one beat per cycle after
    ``AW``, ``B`` follows the last. ``host`` (32-bit words of the same memory) is served when
    ``axi`` has nothing in flight on that side and asks for nothing new: one access in two
    cycles (read) or one (write) while the DMA is idle, none while it moves data.

    Parameters
    ----------
    size : int
        Bytes, a power of two, a multiple of the beat.
    addr_width, data_width : int
        Of ``axi`` (:class:`~hw.accel.axi.AXI4Signature`).

    Ports
    -----
    axi : AXI4 subordinate
    host : AXI4-Lite subordinate, :data:`HOST_ADDR_BITS` address bits, 32 data bits
    """

    def __init__(self, *, size: int, addr_width: int, data_width: int):
        beat = data_width // 8
        if not isinstance(size, int) or size < beat or size & (size - 1):
            raise ValueError(f"size must be a power of two of at least one beat ({beat} bytes), "
                             f"not {size!r}")
        self.size, self.beat = size, beat
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({
            "axi": In(AXI4Signature(addr_width, data_width)),
            "host": In(AXI4LiteSignature(HOST_ADDR_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        axi, host = self.axi, self.host
        depth = self.size // self.beat
        beat_bits = (self.beat - 1).bit_length()
        size_code = beat_bits                       # AxSIZE of a full-width beat
        m.submodules.memory = memory = Memory(shape=self.data_width, depth=depth, init=[])
        read = memory.read_port()
        write = memory.write_port(granularity=8)
        beat_index_bits = self.addr_width - beat_bits

        # -- DMA reads: one burst at a time, one beat per cycle ---------------------------------
        rd_active = Signal()
        rd_beat = Signal(beat_index_bits)           # the next beat's index from address 0
        rd_left = Signal(8)                         # beats after the next one
        rd_bad = Signal()                           # the burst's kind or size is refused
        m.d.comb += axi.arready.eq(~rd_active)
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [rd_active.eq(1), rd_beat.eq(axi.araddr[beat_bits:]),
                         rd_left.eq(axi.arlen), axi.rid.eq(axi.arid),
                         rd_bad.eq((axi.arburst != _INCR) | (axi.arsize != size_code))]
        advance = Signal()
        m.d.comb += read.en.eq(0)                  # the data holds unless a beat advances
        m.d.comb += advance.eq(rd_active & (~axi.rvalid | axi.rready))
        with m.If(advance):
            m.d.comb += [read.addr.eq(rd_beat), read.en.eq(1)]
            m.d.sync += [axi.rvalid.eq(1), axi.rlast.eq(rd_left == 0),
                         axi.rresp.eq(Mux(rd_bad, Resp.SLVERR,
                                          Mux(rd_beat >= depth, Resp.DECERR, Resp.OKAY))),
                         rd_beat.eq(rd_beat + 1), rd_left.eq(rd_left - 1)]
            with m.If(rd_left == 0):
                m.d.sync += rd_active.eq(0)
        with m.Elif(axi.rready):
            m.d.sync += axi.rvalid.eq(0)
        m.d.comb += axi.rdata.eq(Mux(axi.rresp == Resp.OKAY, read.data, 0))

        # -- DMA writes: one burst at a time, B after the last beat -----------------------------
        wr_active = Signal()
        wr_beat = Signal(beat_index_bits)
        wr_bad = Signal()
        wr_resp = Signal(2)                         # the worst answer of the burst so far
        m.d.comb += [axi.awready.eq(~wr_active & ~axi.bvalid), axi.wready.eq(wr_active)]
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += [wr_active.eq(1), wr_beat.eq(axi.awaddr[beat_bits:]),
                         axi.bid.eq(axi.awid), wr_resp.eq(Resp.OKAY),
                         wr_bad.eq((axi.awburst != _INCR) | (axi.awsize != size_code))]
        beat_resp = Signal(2)
        m.d.comb += beat_resp.eq(Mux(wr_bad, Resp.SLVERR,
                                     Mux(wr_beat >= depth, Resp.DECERR, Resp.OKAY)))
        with m.If(axi.wvalid & axi.wready):
            with m.If(beat_resp == Resp.OKAY):
                m.d.comb += [write.addr.eq(wr_beat), write.data.eq(axi.wdata),
                             write.en.eq(axi.wstrb)]
            worst = Mux(beat_resp > wr_resp, beat_resp, wr_resp)
            m.d.sync += [wr_beat.eq(wr_beat + 1), wr_resp.eq(worst)]
            with m.If(axi.wlast):
                m.d.sync += [wr_active.eq(0), axi.bvalid.eq(1), axi.bresp.eq(worst)]
        with m.If(axi.bvalid & axi.bready):
            m.d.sync += axi.bvalid.eq(0)

        # -- host words, when the DMA leaves the port free --------------------------------------
        words = self.beat // 4
        word_bits = (words - 1).bit_length()
        host_range = Signal()
        read_free = ~rd_active & ~axi.rvalid & ~axi.arvalid
        write_free = ~wr_active & ~axi.awvalid
        host_pending = Signal()                     # a host read issued last cycle
        host_lane = Signal(range(max(2, words)))
        # reads
        m.d.comb += [host.arready.eq(read_free & ~host_pending & ~host.rvalid),
                     host_range.eq(host.araddr[beat_bits:] < depth)]
        with m.If(host.arvalid & host.arready):
            m.d.comb += [read.addr.eq(host.araddr[beat_bits:]), read.en.eq(1)]
            m.d.sync += [host_pending.eq(1), host.rresp.eq(Mux(host_range, Resp.OKAY,
                                                               Resp.DECERR))]
            if word_bits:
                m.d.sync += host_lane.eq(host.araddr[2:beat_bits])
        with m.If(host_pending):
            lanes = [read.data[32 * i:32 * (i + 1)] for i in range(words)]
            data = lanes[0] if words == 1 else Mux(host_lane == 0, lanes[0], 0)
            for i in range(1, words):
                data = Mux(host_lane == i, lanes[i], data)
            m.d.sync += [host_pending.eq(0), host.rvalid.eq(1),
                         host.rdata.eq(Mux(host.rresp == Resp.OKAY, data, 0))]
        with m.If(host.rvalid & host.rready):
            m.d.sync += host.rvalid.eq(0)
        # writes: address and data together
        take = Signal()
        m.d.comb += [take.eq(host.awvalid & host.wvalid & write_free & ~host.bvalid),
                     host.awready.eq(take), host.wready.eq(take)]
        with m.If(take):
            in_range = host.awaddr[beat_bits:] < depth
            with m.If(in_range):
                lane = host.awaddr[2:beat_bits] if word_bits else 0
                m.d.comb += [write.addr.eq(host.awaddr[beat_bits:]),
                             write.data.eq(host.wdata.replicate(words)),
                             write.en.eq(host.wstrb << (lane * 4))]
            m.d.sync += [host.bvalid.eq(1), host.bresp.eq(Mux(in_range, Resp.OKAY,
                                                              Resp.DECERR))]
        with m.If(host.bvalid & host.bready):
            m.d.sync += host.bvalid.eq(0)
        return m
