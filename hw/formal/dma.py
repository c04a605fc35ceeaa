"""Formal properties of the accelerator's AXI4 DMA manager (:class:`hw.accel.dma.Dma`), with
64-bit beats, 32-bit addresses and two read bursts in flight.

Free: the commands of both sides, the ``read_data`` consumer's ``ready``, the ``write_data``
beats, and every input of the bus. Assumed:

* to keep the solver's work small, a command (bad ones too: ``rows`` or ``row_bytes`` 0, or
  misaligned) has at most 2 rows of at most 16 bytes, ``addr`` below 16 KiB and ``stride``
  below 8 KiB; a row may still cross a 4 KiB boundary;
* the subordinate keeps AXI's rules: R and B hold with their payload until taken; R beats come
  only for bursts whose AR was taken in an earlier cycle, in order, with ``rlast`` on the last
  beat of each; a B response only for a burst whose AW and last W beat (``wlast``) were taken
  in earlier cycles;
* ``write_data`` keeps the stream rule: a beat on offer holds with its payload until taken.

Promised, on the bus:

* AR, AW and W hold ``valid`` and every payload field until taken;
* **no burst crosses a 4 KiB boundary**, none has more than 256 beats, all start on a beat;
* no AR beyond the beats of the accepted good read commands, at most ``reads_outstanding``
  read bursts in flight, ``rready`` only with one in flight; likewise no AW beyond the accepted
  write commands, at most :data:`~hw.accel.dma.WRITES_OUTSTANDING` writes in flight, and
  ``bready`` only while a burst whose W beats were all sent is unanswered;
* W data only for a burst whose AW was taken in an earlier cycle; the W beats of each burst
  are exactly its ``AWLEN + 1``, ``wlast`` on the last only; no burst spans two transfers.

and on the streams and status (the solver picks one transfer of each side):

* ``read_data`` holds its beat until taken; ``last`` marks the final beat of each transfer;
* a transfer is done only after all its responses arrived, in order: ``read_done`` the cycle
  after its last R beat, ``write_done`` once its last B response was taken (no B of a later
  burst before); a rejected command with no bus activity, after the transfers before it;
* ``error`` and ``error_code`` with the done: ``BAD_FIELD`` or ``MISALIGNED`` for a rejected
  command (:func:`sim.accel_spec.dma_command_error`, restated), ``DRAM_RESPONSE`` when some
  RRESP/BRESP of the transfer was SLVERR or DECERR, else ``NONE``; the code changes only with
  a done (the design keeps no sticky error: the controller latches it), ``error`` only pulses
  with a done and the two dones never pulse together;
* **bounded liveness** (when the solver's choice ``prompt`` is set: every ready high, every
  response as soon as AXI allows, ``write_data`` always valid): a transfer accepted with its
  side idle is done exactly ``2 + beats`` cycles after it was accepted (read; a rejected one
  after 2), a write within ``3 + beats`` plus one cycle per ``read_done`` meanwhile (a write
  completion waits for a cycle without a read completion).

Covers: a burst ending at a 4 KiB boundary, AR held under backpressure then taken, a
two-beat W burst ending with ``wlast``, a four-beat read and write finished, ``DRAM_RESPONSE``,
``MISALIGNED`` and ``BAD_FIELD`` on each side, each side's liveness bound reached. Mutants
``early_wlast``: ``wlast`` raised at the solver's choice; ``lost_error``: the observed
``error`` cleared at the solver's choice.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover

from hw.accel.dma import AXI_BURST_INCR, WRITES_OUTSTANDING, Dma, ErrorCode
from sim.accel_spec import BURST_BOUNDARY, MAX_BURST_BEATS
from sim.config import AccelConfig

from .common import History, Properties

__all__ = ["DmaProperties"]

#: The DMA the properties are checked on: the narrowest bus, two read bursts in flight
CONFIG = AccelConfig(data_width=64, addr_width=32, reads_outstanding=2)


class DmaProperties(Properties):
    """The DMA of ``config`` with its properties (module docstring)."""

    NAME = "dma"
    DESCRIPTION = ("AXI4 DMA manager (64-bit beats, 32-bit addresses, 2 reads in flight), "
                   "commands of up to 2 rows of up to 16 bytes")
    TASKS = {"bmc": 9, "cover": 9}
    MUTANTS = ("early_wlast", "lost_error")
    MAX_ROWS = 2
    MAX_ROW_BYTES = 16
    #: addresses below 2 ** ADDR_BITS, strides below 2 ** STRIDE_BITS (assumed)
    ADDR_BITS, STRIDE_BITS = 14, 13
    #: bits of the harness's counters (commands, bursts, beats since the start)
    COUNT_BITS = 5

    def __init__(self, config: AccelConfig = CONFIG, *, mutant: str | None = None):
        self.config = config
        super().__init__(Dma(config), mutant=mutant)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dut = self.instantiate(m)
        bus = dut.bus
        past = History(m)
        N = self.COUNT_BITS
        beat = cfg.beat_bytes
        shift = (beat - 1).bit_length()
        boundary_bits = (BURST_BOUNDARY - 1).bit_length()

        wlast = bus.wlast
        if self.mutant == "early_wlast":
            wlast = bus.wlast | AnySeq(1)
        error = dut.error
        if self.mutant == "lost_error":
            error = dut.error & ~AnySeq(1)
        prompt = Signal(name="prompt")
        m.d.comb += prompt.eq(AnyConst(1))

        def counter(name):
            return Signal(N, name=name)

        # -- commands: the assumption, the specification's verdict and size ------------------
        def command_facts(side, stream):
            c = stream.payload
            with m.If(stream.valid):
                m.d.comb += Assume((c.rows <= self.MAX_ROWS)
                                   & (c.row_bytes <= self.MAX_ROW_BYTES)
                                   & (c.addr[self.ADDR_BITS:] == 0)
                                   & (c.stride[self.STRIDE_BITS:] == 0))
            code = Signal(ErrorCode, name=f"{side}_spec_code")
            misaligned = (c.addr[:shift] != 0) | (c.row_bytes[:shift] != 0) \
                | (c.stride[:shift] != 0)
            with m.If((c.rows == 0) | (c.row_bytes == 0)):
                m.d.comb += code.eq(ErrorCode.BAD_FIELD)
            with m.Elif(misaligned):
                m.d.comb += code.eq(ErrorCode.MISALIGNED)
            with m.Else():
                m.d.comb += code.eq(ErrorCode.NONE)
            # (the assumption bounds rows and row_bytes: their low bits are enough)
            row_beats = self.MAX_ROW_BYTES // beat
            beats = Signal(range(self.MAX_ROWS * row_beats + 1), name=f"{side}_spec_beats")
            size = (c.rows[:self.MAX_ROWS.bit_length()]
                    * c.row_bytes[shift:][:row_beats.bit_length()])
            m.d.comb += beats.eq(Mux(code == ErrorCode.NONE, size, 0))
            return code, beats

        read_code, read_beats = command_facts("read", dut.read_cmd)
        write_code, write_beats = command_facts("write", dut.write_cmd)

        # -- address and W channels hold until taken; 4 KiB; beats ------------------------------
        for prefix in ("ar", "aw"):
            valid, ready = getattr(bus, f"{prefix}valid"), getattr(bus, f"{prefix}ready")
            names = ("id", "addr", "len", "size", "burst", "lock", "cache", "prot")
            fields = [getattr(bus, f"{prefix}{name}") for name in names]
            stalled = past(valid & ~ready, f"{prefix}_stall")
            before = [past(field, f"{prefix}{name}") for field, name in zip(fields, names)]
            with m.If(past.valid & stalled):
                m.d.comb += Assert(valid, f"{prefix}valid dropped before {prefix}ready")
                m.d.comb += [Assert(now == then, f"{prefix} payload changed while offered")
                             for now, then in zip(fields, before)]
            addr, length = getattr(bus, f"{prefix}addr"), getattr(bus, f"{prefix}len")
            with m.If(valid):
                m.d.comb += [
                    Assert(addr[:boundary_bits] + ((length + 1) << shift) <= BURST_BOUNDARY,
                           f"an {prefix} burst crosses a 4 KiB boundary"),
                    Assert(length + 1 <= MAX_BURST_BEATS, f"an {prefix} burst of > 256 beats"),
                    Assert(addr[:shift] == 0, f"an {prefix} burst starts inside a beat"),
                    Assert((getattr(bus, f"{prefix}size") == shift)
                           & (getattr(bus, f"{prefix}burst") == AXI_BURST_INCR),
                           f"an {prefix} burst that is not INCR of full beats"),
                ]
        w_fields = [bus.wdata, bus.wstrb, wlast]
        w_stalled = past(bus.wvalid & ~bus.wready, "w_stall")
        w_before = [past(bus.wdata, "wdata"), past(bus.wstrb, "wstrb"), past(wlast, "wlast")]
        with m.If(past.valid & w_stalled):
            m.d.comb += Assert(bus.wvalid, "wvalid dropped before wready")
            m.d.comb += [Assert(now == then, "W payload changed while offered")
                         for now, then in zip(w_fields, w_before)]

        # -- the subordinate keeps AXI's rules (assumed) ----------------------------------------
        for name, valid, ready, payload in (
                ("r", bus.rvalid, bus.rready, [bus.rid, bus.rdata, bus.rresp, bus.rlast]),
                ("b", bus.bvalid, bus.bready, [bus.bid, bus.bresp]),
                ("write_data", dut.write_data.valid, dut.write_data.ready,
                 [dut.write_data.payload.as_value()])):
            stalled = past(valid & ~ready, f"{name}_env_stall")
            before = [past(value, f"{name}_env_{i}") for i, value in enumerate(payload)]
            with m.If(past.valid & stalled):
                m.d.comb += Assume(valid)
                m.d.comb += [Assume(now == then) for now, then in zip(payload, before)]

        # -- read side: bursts, beats and the subordinate's queue of bursts ---------------------
        ar_beat = bus.arvalid & bus.arready
        r_beat = bus.rvalid & bus.rready
        read_cmd_taken = dut.read_cmd.valid & dut.read_cmd.ready
        read_cmd_beats = counter("read_cmd_beats")      # beats of the accepted good commands
        ar_beats = counter("ar_beats")                  # beats asked for on AR
        r_taken = counter("r_taken")                    # R beats taken
        with m.If(read_cmd_taken):
            m.d.sync += read_cmd_beats.eq(read_cmd_beats + read_beats)
        with m.If(ar_beat):
            m.d.sync += ar_beats.eq(ar_beats + bus.arlen + 1)
        with m.If(r_beat):
            m.d.sync += r_taken.eq(r_taken + 1)
        with m.If(bus.arvalid):
            m.d.comb += Assert(ar_beats + bus.arlen + 1 <= read_cmd_beats,
                               "an AR burst beyond the accepted read commands")

        depth = cfg.reads_outstanding
        ends = [Signal(N, name=f"r_burst_end{i}") for i in range(depth)]
        in_flight = Signal(range(depth + 2), name="reads_in_flight")
        pop = r_beat & bus.rlast
        slot = Signal(range(depth + 2), name="r_burst_slot")
        m.d.comb += slot.eq(in_flight - pop)
        m.d.sync += in_flight.eq(in_flight + ar_beat - pop)
        for i in range(depth):
            with m.If(ar_beat & (slot == i)):
                m.d.sync += ends[i].eq(ar_beats + bus.arlen + 1)
            with m.Elif(pop):
                m.d.sync += ends[i].eq(ends[i + 1] if i + 1 < depth else 0)
        m.d.comb += [
            Assert(~ar_beat | (slot < depth), "more read bursts in flight than reads_outstanding"),
            Assert(~bus.rready | (in_flight != 0), "rready without a read burst in flight"),
            Assert(~r_beat | (r_taken < ar_beats), "an R beat taken that was not asked for"),
        ]
        with m.If(bus.rvalid):
            m.d.comb += Assume((in_flight != 0) & (bus.rlast == (r_taken + 1 == ends[0])))

        rd = dut.read_data
        rd_stalled = past(rd.valid & ~rd.ready, "read_data_stall")
        rd_before = past(rd.payload.as_value(), "read_data_payload")
        with m.If(past.valid & rd_stalled):
            m.d.comb += Assert(rd.valid & (rd.payload.as_value() == rd_before),
                               "read_data changed or dropped before taken")

        # -- write side: bursts, W beats, B responses ------------------------------------------
        aw_beat = bus.awvalid & bus.awready
        w_beat = bus.wvalid & bus.wready
        b_beat = bus.bvalid & bus.bready
        write_cmd_taken = dut.write_cmd.valid & dut.write_cmd.ready
        write_cmd_beats = counter("write_cmd_beats")
        aw_beats, aw_count = counter("aw_beats"), counter("aw_count")
        w_sent, w_bursts = counter("w_sent"), counter("w_bursts")   # W beats, beats with wlast
        b_taken = counter("b_taken")
        with m.If(write_cmd_taken):
            m.d.sync += write_cmd_beats.eq(write_cmd_beats + write_beats)
        with m.If(aw_beat):
            m.d.sync += [aw_beats.eq(aw_beats + bus.awlen + 1), aw_count.eq(aw_count + 1)]
        with m.If(w_beat):
            m.d.sync += [w_sent.eq(w_sent + 1), w_bursts.eq(w_bursts + wlast)]
        with m.If(b_beat):
            m.d.sync += b_taken.eq(b_taken + 1)
        m.d.comb += [
            Assert(~bus.awvalid | (aw_beats + bus.awlen + 1 <= write_cmd_beats),
                   "an AW burst beyond the accepted write commands"),
            Assert(~bus.wvalid | (w_sent < aw_beats), "W data without its AW taken before"),
            Assert(aw_count - b_taken <= WRITES_OUTSTANDING,
                   "more writes in flight than WRITES_OUTSTANDING"),
            Assert(~bus.bready | (w_bursts != b_taken),
                   "bready without a burst whose W beats were all sent"),
        ]
        with m.If(bus.bvalid):
            m.d.comb += Assume((w_bursts != b_taken) & (aw_count != b_taken))

        # the chosen write burst: its W beats are exactly AWLEN + 1, wlast on the last only
        chosen_burst = Signal(N, name="chosen_aw")
        m.d.comb += chosen_burst.eq(AnyConst(N))
        cb_seen = Signal(name="chosen_aw_taken")
        cb_start, cb_end = counter("chosen_aw_start"), counter("chosen_aw_end")
        with m.If(aw_beat & (aw_count == chosen_burst)):
            m.d.sync += [cb_seen.eq(1), cb_start.eq(aw_beats),
                         cb_end.eq(aw_beats + bus.awlen + 1)]
        with m.If(bus.wvalid & cb_seen & (w_sent >= cb_start) & (w_sent < cb_end)):
            m.d.comb += Assert(wlast == (w_sent + 1 == cb_end),
                               "wlast not on exactly the burst's AWLEN + 1-th beat")

        # -- status: the two dones and the error --------------------------------------------------
        done_any = dut.read_done | dut.write_done
        code_before = past(dut.error_code.as_value(), "error_code")
        m.d.comb += [
            Assert(~(dut.read_done & dut.write_done), "read_done and write_done together"),
            Assert(~error | done_any, "error without a done"),
            Assert(~done_any | (error == (dut.error_code != ErrorCode.NONE)),
                   "error disagrees with error_code at a done"),
        ]
        with m.If(past.valid & (dut.error_code.as_value() != code_before)):
            m.d.comb += Assert(done_any, "error_code changed without a done")

        read_dones, write_dones = counter("read_dones"), counter("write_dones")
        read_cmds, write_cmds = counter("read_cmds"), counter("write_cmds")
        with m.If(dut.read_done):
            m.d.sync += read_dones.eq(read_dones + 1)
        with m.If(dut.write_done):
            m.d.sync += write_dones.eq(write_dones + 1)
        with m.If(read_cmd_taken):
            m.d.sync += read_cmds.eq(read_cmds + 1)
        with m.If(write_cmd_taken):
            m.d.sync += write_cmds.eq(write_cmds + 1)
        m.d.comb += [Assert(~dut.read_done | (read_dones < read_cmds), "read_done without one"),
                     Assert(~dut.write_done | (write_dones < write_cmds),
                            "write_done without one")]

        # the chosen transfer of each side (its index among the side's accepted commands)
        covers = []
        for side in ("read", "write"):
            taken = read_cmd_taken if side == "read" else write_cmd_taken
            cmds = read_cmds if side == "read" else write_cmds
            dones = read_dones if side == "read" else write_dones
            done = dut.read_done if side == "read" else dut.write_done
            spec_code = read_code if side == "read" else write_code
            spec_beats = read_beats if side == "read" else write_beats
            cmd_beats = read_cmd_beats if side == "read" else write_cmd_beats
            index = Signal(N, name=f"chosen_{side}")
            m.d.comb += index.eq(AnyConst(N))
            seen = Signal(name=f"chosen_{side}_taken")
            code = Signal(ErrorCode, name=f"chosen_{side}_code")
            start, end = counter(f"chosen_{side}_start"), counter(f"chosen_{side}_end")
            beats = counter(f"chosen_{side}_beats")
            idle = Signal(name=f"chosen_{side}_idle")        # its side had nothing in flight
            bad = Signal(name=f"chosen_{side}_bad_response")
            since = Signal(N, name=f"chosen_{side}_since")
            slack = Signal(N, name=f"chosen_{side}_slack")   # read_dones while it waited
            finished = Signal(name=f"chosen_{side}_done")
            with m.If(taken & (cmds == index)):
                m.d.sync += [seen.eq(1), code.eq(spec_code), start.eq(cmd_beats),
                             end.eq(cmd_beats + spec_beats), beats.eq(spec_beats),
                             idle.eq(dones == cmds), since.eq(1), slack.eq(0)]
            with m.Elif(seen & ~finished):
                m.d.sync += [since.eq(since + 1), slack.eq(slack + dut.read_done)]
            mine = done & (dones == index)
            with m.If(mine):
                m.d.sync += finished.eq(1)
                m.d.comb += Assert(seen, f"{side}_done of a transfer not accepted")
            if side == "read":
                with m.If(r_beat & seen & (r_taken >= start) & (r_taken < end)):
                    m.d.comb += Assert(rd.payload.last == (r_taken + 1 == end),
                                       "read_data.last not on the transfer's final beat")
                    with m.If(bus.rresp[1]):
                        m.d.sync += bad.eq(1)
                last_beat = past(r_beat, "r_beat")
                with m.If(mine):
                    m.d.comb += Assert(r_taken == end, "read_done before or after its beats")
                    with m.If(code == ErrorCode.NONE):
                        m.d.comb += Assert(last_beat, "read_done not the cycle after its last beat")
                # no AR burst spans two transfers
                with m.If(ar_beat & seen & (ar_beats < end)):
                    m.d.comb += Assert(ar_beats + bus.arlen + 1 <= end,
                                       "an AR burst spans two read transfers")
                bound = 2 + beats
            else:
                first_burst, last_burst = counter("chosen_write_first"), counter("chosen_write_end")
                with m.If(taken & (cmds == index)):
                    m.d.sync += [first_burst.eq(aw_count), last_burst.eq(aw_count)]
                with m.If(aw_beat & seen & (aw_beats < end)):
                    m.d.comb += Assert(aw_beats + bus.awlen + 1 <= end,
                                       "an AW burst spans two write transfers")
                    m.d.sync += last_burst.eq(aw_count + 1)
                with m.If(b_beat & seen & (b_taken >= first_burst) & (b_taken < last_burst)
                          & bus.bresp[1]):
                    m.d.sync += bad.eq(1)
                with m.If(mine):
                    m.d.comb += [Assert(aw_beats >= end, "write_done before all its AW bursts"),
                                 Assert(w_sent >= end, "write_done before all its W beats"),
                                 Assert(b_taken == last_burst,
                                        "write_done not right after its last B response")]
                bound = 3 + beats + slack
            want = Signal(ErrorCode, name=f"chosen_{side}_want")
            m.d.comb += want.eq(Mux(code != ErrorCode.NONE, code,
                                    Mux(bad, ErrorCode.DRAM_RESPONSE, ErrorCode.NONE)))
            with m.If(mine & seen):
                m.d.comb += [Assert(dut.error_code == want, f"{side}_done with a wrong code"),
                             Assert(error == (want != ErrorCode.NONE),
                                    f"{side}_done with a wrong error")]
            # bounded liveness
            rejected_bound = 2 if side == "read" else 2 + slack
            limit = Mux(code == ErrorCode.NONE, bound, rejected_bound)
            timed = prompt & seen & idle
            with m.If(timed & ~finished):
                m.d.comb += Assert(since <= limit, f"a {side} transfer past its cycle bound")
            if side == "read":
                with m.If(timed & mine):
                    m.d.comb += Assert(since == limit, "read_done not exactly at its bound")
            covers += [Cover(mine & seen & (code == ErrorCode.NONE) & ~bad & (beats >= 3)),
                       Cover(mine & seen & bad),
                       Cover(timed & mine & (code == ErrorCode.NONE) & (beats >= 2)),
                       Cover(mine & seen & (code == ErrorCode.MISALIGNED)),
                       Cover(mine & seen & (code == ErrorCode.BAD_FIELD))]

        with m.If(prompt):
            m.d.comb += Assume(bus.arready & bus.awready & bus.wready & rd.ready
                               & dut.write_data.valid)
            m.d.comb += Assume(bus.rvalid == (in_flight != 0))
            m.d.comb += Assume(bus.bvalid == ((w_bursts != b_taken) & (aw_count != b_taken)))

        # -- covers --------------------------------------------------------------------------
        ar_waited = past(bus.arvalid & ~bus.arready, "ar_waited")
        m.d.comb += covers + [
            Cover(ar_beat & (bus.araddr[:boundary_bits] + ((bus.arlen + 1) << shift)
                             == BURST_BOUNDARY) & (bus.arlen != 0)),
            Cover(past.valid & ar_waited & ar_beat),
            Cover(w_beat & wlast & cb_seen & (w_sent + 1 == cb_end) & (cb_end - cb_start >= 2)),
        ]
        return m
