"""The host link's bridge: frames of bytes (:mod:`sim.board_spec`) to AXI4-Lite accesses of the
accelerator's registers and of the on-chip RAM."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.accel.axi import AXI4LiteSignature
from hw.board.ram import HOST_ADDR_BITS
from sim.accel_spec import CSR_ADDR_BITS, Resp
from sim.board_spec import BAD_OPCODE, LINK_MAGIC, LINK_VERSION, Op

__all__ = ["SerialBridge"]


class SerialBridge(wiring.Component):
    """Runs the frames of :mod:`sim.board_spec` that arrive on ``i`` and answers on ``o``.

    One frame at a time: its bytes are taken as they come, each word's bus access starts when
    its last byte is in and must end before the next byte is taken (the receiver's FIFO
    holds the bytes that arrive meanwhile). A ``CSR`` address at or beyond ``2 **
    CSR_ADDR_BITS`` answers ``DECERR`` without a bus access. A frame left unfinished for
    ``timeout`` cycles is dropped (no answer).

    Parameters
    ----------
    timeout : int
        Cycles of silence within a frame before it is dropped
        (:attr:`sim.board_spec.BoardConfig.frame_timeout_cycles`).

    Latency: a word's access starts the cycle after its last byte is taken; an answer's first
    byte is offered the cycle after the access ends. Throughput: bounded by the serial line
    (the bus access of a word takes a few cycles, a byte ten bit times).

    Ports
    -----
    i : stream of received bytes
    o : stream of bytes to send
    csr : AXI4-Lite manager, the accelerator's registers (``CSR_ADDR_BITS``)
    mem : AXI4-Lite manager, the RAM's host port (:data:`~hw.board.ram.HOST_ADDR_BITS`)
    status : 3 bits in, :class:`~sim.board_spec.LinkStatus` (irq, overrun, framing)
    clear : 1-cycle pulse when ``STATUS`` has read the flags
    """

    def __init__(self, *, timeout: int):
        if not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"timeout must be a positive integer (cycles), not {timeout!r}")
        self.timeout = timeout
        super().__init__({
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "csr": Out(AXI4LiteSignature(CSR_ADDR_BITS)),
            "mem": Out(AXI4LiteSignature(HOST_ADDR_BITS)),
            "status": In(3),
            "clear": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        op = Signal(8)
        addr = Signal(32)
        count = Signal(8)                 # words after the current one
        strobe = Signal(4)
        word = Signal(32)                 # the word received or to send
        index = Signal(2)                 # its byte
        resp = Signal(2)                  # the frame's worst answer so far
        silence = Signal(range(self.timeout + 1))
        aw_done, w_done = Signal(), Signal()
        is_mem = (op == Op.WRITE_MEM) | (op == Op.READ_MEM)
        byte_in = self.i.valid & self.i.ready
        csr_ok = addr[CSR_ADDR_BITS:] == 0

        def worst(new):
            return resp.eq(Mux(new > resp, new, resp))

        def next_word(state_if_more, state_done):
            with m.If(count != 0):
                m.d.sync += [count.eq(count - 1), addr.eq(addr + 4), index.eq(0)]
                m.next = state_if_more
            with m.Else():
                m.next = state_done

        # the two buses carry the same access; only the addressed one sees valid
        for bus in (self.csr, self.mem):
            m.d.comb += [bus.awaddr.eq(addr), bus.araddr.eq(addr), bus.wdata.eq(word),
                         bus.wstrb.eq(strobe)]

        def bus_of(fsm_op_is_mem, member, value):
            m.d.comb += [getattr(self.mem, member).eq(value & fsm_op_is_mem),
                         getattr(self.csr, member).eq(value & ~fsm_op_is_mem)]

        receiving = Signal()
        with m.If(byte_in | ~receiving):
            m.d.sync += silence.eq(0)
        with m.Elif(silence != self.timeout):
            m.d.sync += silence.eq(silence + 1)

        with m.FSM():
            with m.State("OP"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(byte_in):
                    m.d.sync += [op.eq(self.i.payload), index.eq(0), resp.eq(Resp.OKAY),
                                 count.eq(0)]
                    with m.Switch(self.i.payload):
                        with m.Case(Op.STATUS):
                            m.d.sync += word.eq(Cat(self.status, Const(0, 13),
                                                    Const(LINK_VERSION, 8),
                                                    Const(LINK_MAGIC, 8)))
                            m.d.comb += self.clear.eq(1)
                            m.next = "SEND_WORD"
                        with m.Case(Op.WRITE_CSR, Op.READ_CSR, Op.WRITE_MEM, Op.READ_MEM):
                            m.next = "ADDR"
                        with m.Default():
                            m.next = "SEND_BAD"
            for state, after in (("ADDR", None), ("COUNT", None), ("STROBE", "DATA"),
                                 ("DATA", None)):
                with m.State(state):
                    m.d.comb += [self.i.ready.eq(1), receiving.eq(1)]
                    with m.If(silence == self.timeout):
                        m.next = "OP"                       # the frame is dropped
                    with m.Elif(byte_in):
                        byte = self.i.payload
                        if state == "ADDR":
                            m.d.sync += [addr.eq(Cat(addr[8:], byte)), index.eq(index + 1)]
                            with m.If(index == 3):
                                with m.Switch(op):
                                    with m.Case(Op.WRITE_CSR):
                                        m.next = "STROBE"
                                    with m.Case(Op.READ_CSR):
                                        m.next = "READ"
                                    with m.Default():
                                        m.next = "COUNT"
                        elif state == "COUNT":
                            m.d.sync += count.eq(byte)
                            m.next = "STROBE"
                            with m.If(op == Op.READ_MEM):
                                m.next = "READ"
                        elif state == "STROBE":
                            m.d.sync += [strobe.eq(byte[:4]), index.eq(0)]
                            m.next = after
                        else:
                            m.d.sync += [word.eq(Cat(word[8:], byte)), index.eq(index + 1)]
                            with m.If(index == 3):
                                m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                                m.next = "WRITE"
            with m.State("WRITE"):
                with m.If(~is_mem & ~csr_ok):
                    m.d.sync += worst(Resp.DECERR)
                    m.next = "SEND_RESP"
                with m.Else():
                    bus_of(is_mem, "awvalid", ~aw_done)
                    bus_of(is_mem, "wvalid", ~w_done)
                    awready = Mux(is_mem, self.mem.awready, self.csr.awready)
                    wready = Mux(is_mem, self.mem.wready, self.csr.wready)
                    with m.If(~aw_done & awready):
                        m.d.sync += aw_done.eq(1)
                    with m.If(~w_done & wready):
                        m.d.sync += w_done.eq(1)
                    with m.If((aw_done | awready) & (w_done | wready)):
                        m.next = "WRITE_B"
            with m.State("WRITE_B"):
                bus_of(is_mem, "bready", 1)
                bvalid = Mux(is_mem, self.mem.bvalid, self.csr.bvalid)
                with m.If(bvalid):
                    m.d.sync += worst(Mux(is_mem, self.mem.bresp, self.csr.bresp))
                    next_word("DATA", "SEND_RESP")
            with m.State("READ"):
                with m.If(~is_mem & ~csr_ok):
                    m.d.sync += [worst(Resp.DECERR), word.eq(0), index.eq(0)]
                    m.next = "SEND_WORD"
                with m.Else():
                    bus_of(is_mem, "arvalid", 1)
                    with m.If(Mux(is_mem, self.mem.arready, self.csr.arready)):
                        m.next = "READ_R"
            with m.State("READ_R"):
                bus_of(is_mem, "rready", 1)
                with m.If(Mux(is_mem, self.mem.rvalid, self.csr.rvalid)):
                    m.d.sync += [worst(Mux(is_mem, self.mem.rresp, self.csr.rresp)),
                                 word.eq(Mux(is_mem, self.mem.rdata, self.csr.rdata)),
                                 index.eq(0)]
                    m.next = "SEND_WORD"
            with m.State("SEND_WORD"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(word[:8])]
                with m.If(self.o.ready):
                    m.d.sync += [word.eq(word >> 8), index.eq(index + 1)]
                    with m.If(index == 3):
                        with m.If(op == Op.READ_MEM):
                            next_word("READ", "SEND_RESP")
                        with m.Else():
                            m.next = "SEND_RESP"
            with m.State("SEND_RESP"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(resp)]
                with m.If(self.o.ready):
                    m.next = "OP"
            with m.State("SEND_BAD"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(BAD_OPCODE)]
                with m.If(self.o.ready):
                    m.next = "OP"
        return m
