"""Formal properties of the engine's dropout mask writer
(:class:`hw.engine.mask.DropoutMaskWriter`), with 2 x 2 tiles (``R = C = 2``) on a dropout plane
of 4 rows x 4 columns.

All inputs are free: the commands (``seed``, ``threshold``, ``m``, ``n``, ``row``, ``col``,
every bit) and ``clear_error``. Nothing is assumed. The harness restates the command check of
the module docstrings (``RANGE`` first, then the generator's ``ZERO_SEED``, ``BAD_THRESHOLD``,
``ZERO_SIZE``, ``ROW_TOO_LONG``) and follows each good command's region. Promised:

* a bad command raises ``status.error`` the next cycle with exactly its code when the error was
  down or ``clear_error`` was high; otherwise a generator fault's code replaces ``RANGE`` and
  the first generator fault's code is kept (``MaskStatus``); it starts nothing and writes
  nothing;
* the error is sticky: while it is up and ``clear_error`` is low it stays, and so does its
  code (but for a generator fault over ``RANGE``); ``clear_error`` without a fault clears it,
  and nothing else raises it;
* every plane write belongs to the oldest good command whose elements are not all written, and
  every lane it writes lies inside that command's ``m x n`` region at ``(row, col)``; the solver
  picks one element of one command, which is written exactly once;
* **bounded liveness, exactly**: ``busy`` is high from the cycle after a good command is
  accepted to :func:`sim.skip_timing.mask_write_cycles` cycles after it (restated), then low
  with every element of the region written, unless another good command was accepted meanwhile.

Covers: each reachable error code (``ROW_TOO_LONG`` needs ``n > 8192``, which never fits the
plane: asserted never raised), a good command of two bands and two tile columns finished, the
chosen element written. Mutant ``drop_lane``: a lane of a write dropped at the solver's choice.

The harness found a fault in the block, since fixed: a command taken while the last tile was
being written moved that tile's rows (``docs/formal.md``, section ``mask_writer``).
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Cover

from hw.engine.mask import DROPOUT_BITS, DropoutMaskWriter, MaskError
from sim.engine_spec import FIELD_BITS
from sim.lfsr_spec import ROW_STRIDE
from sim.scratchpad_spec import ScratchpadGeometry

from .common import History, Properties

__all__ = ["MaskWriterProperties"]

#: The dropout plane: 2 lanes, 4 columns, 4 rows
GEOMETRY = ScratchpadGeometry(lanes=2, width=4, rows=4)
#: The array's rows (tile height)
ROWS = 2


class MaskWriterProperties(Properties):
    """The dropout mask writer of ``geometry`` and ``rows`` with its properties (module
    docstring)."""

    NAME = "mask_writer"
    DESCRIPTION = "dropout mask writer, 2x2 tiles, 4 x 4 dropout plane"
    TASKS = {"bmc": 20, "cover": 20}
    MUTANTS = ("drop_lane",)
    #: bits of the harness's counters
    COUNT_BITS = 5

    def __init__(self, geometry: ScratchpadGeometry = GEOMETRY, rows: int = ROWS, *,
                 mutant: str | None = None):
        for name, value in (("rows", rows), ("geometry.lanes", geometry.lanes)):
            if value & (value - 1):
                raise ValueError(f"{name} must be a power of two, not {value!r}")
        self.geometry, self.rows = geometry, rows
        super().__init__(DropoutMaskWriter(geometry, rows), mutant=mutant)

    def elaborate(self, platform):
        m = Module()
        geo, R, C = self.geometry, self.rows, self.geometry.lanes
        N = self.COUNT_BITS
        dut = self.instantiate(m)
        past = History(m)
        status = dut.status
        write = dut.write.payload
        lanes = write.mask
        if self.mutant == "drop_lane":
            lanes = write.mask & ~AnySeq(C)

        # -- the command check, restated -------------------------------------------------------
        c = dut.i.payload
        code = Signal(MaskError, name="spec_code")
        fits = (c.row + c.m <= geo.rows) & (c.col + c.n <= geo.width)
        with m.If(~fits):
            m.d.comb += code.eq(MaskError.RANGE)
        with m.Elif(c.seed == 0):
            m.d.comb += code.eq(MaskError.ZERO_SEED)
        with m.Elif(c.threshold > (1 << DROPOUT_BITS)):
            m.d.comb += code.eq(MaskError.BAD_THRESHOLD)
        with m.Elif((c.m == 0) | (c.n == 0)):
            m.d.comb += code.eq(MaskError.ZERO_SIZE)
        with m.Elif(c.n * DROPOUT_BITS > ROW_STRIDE):
            m.d.comb += code.eq(MaskError.ROW_TOO_LONG)
        with m.Else():
            m.d.comb += code.eq(MaskError.NONE)
        accepted = dut.i.valid & dut.i.ready
        good = accepted & (code == MaskError.NONE)
        fault = accepted & (code != MaskError.NONE)

        # -- the error ----------------------------------------------------------------------------
        p_fault, p_code = past(fault, "fault"), past(code.as_value(), "spec_code")
        p_error, p_clear = past(status.error, "error"), past(dut.clear_error, "clear_error")
        p_status_code = past(status.error_code.as_value(), "error_code")
        now_code = status.error_code.as_value()
        with m.If(past.valid & p_fault):
            m.d.comb += Assert(status.error, "a bad command did not raise the error")
            with m.If(~p_error | p_clear):
                m.d.comb += Assert(now_code == p_code, "a bad command raised another code")
            with m.Elif(p_code == MaskError.RANGE):
                m.d.comb += Assert(now_code == p_status_code, "RANGE replaced an earlier code")
            with m.Elif(p_status_code == MaskError.RANGE):
                m.d.comb += Assert(now_code == p_code,
                                   "a generator fault's code did not replace RANGE")
            with m.Else():
                m.d.comb += Assert(now_code == p_status_code,
                                   "the first generator fault's code was not kept")
        with m.If(past.valid & ~p_fault):
            with m.If(p_error & ~p_clear):
                m.d.comb += Assert(status.error & (now_code == p_status_code),
                                   "the error or its code changed without clear_error")
            with m.Else():
                m.d.comb += Assert(~status.error, "the error rose without a bad command")
        m.d.comb += [
            Assert(status.error == (now_code != MaskError.NONE),
                   "error and error_code disagree"),
            Assert(now_code != MaskError.ROW_TOO_LONG, "ROW_TOO_LONG raised"),
        ]

        # -- the good commands' regions: the oldest not fully written (a), the next (b) ----------
        def region(name):
            return {key: Signal(FIELD_BITS, name=f"{name}_{key}")
                    for key in ("row", "col", "m", "n")} | {
                "valid": Signal(name=f"{name}_valid"), "index": Signal(N, name=f"{name}_index")}

        a, b = region("region_a"), region("region_b")
        goods = Signal(N, name="good_commands")
        with m.If(good):
            m.d.sync += goods.eq(goods + 1)
        written = Signal(N, name="region_a_written")  # lanes of a written so far
        lane_count = Signal(range(C + 1), name="write_lanes")
        m.d.comb += lane_count.eq(sum(lanes[t] for t in range(C)))
        writing = dut.write.valid & (lanes != 0)
        m.d.comb += Assert(~writing | a["valid"], "a plane write without a good command")
        with m.If(writing):
            m.d.comb += Assert((write.row >= a["row"]) & (write.row < a["row"] + a["m"]),
                               "a write outside its command's rows")
            for t in range(C):
                with m.If(lanes[t]):
                    m.d.comb += Assert((write.col + t >= a["col"])
                                       & (write.col + t < a["col"] + a["n"]),
                                       "a lane written outside its command's columns")
        # a fits the plane: m <= rows, n <= width
        total = a["m"][:geo.rows.bit_length()] * a["n"][:geo.width.bit_length()]
        a_done = writing & (written + lane_count == total)
        m.d.comb += Assert(~good | ~(a["valid"] & b["valid"] & ~a_done),
                           "a third good command while two are being written")

        def load(target, source):
            return [target[key].eq(source[key]) for key in target]

        incoming = {"row": c.row, "col": c.col, "m": c.m, "n": c.n, "valid": 1, "index": goods}
        with m.If(writing):
            m.d.sync += written.eq(written + lane_count)
        with m.If(a_done):
            m.d.sync += written.eq(0)
            with m.If(b["valid"]):
                m.d.sync += load(a, b) + [b["valid"].eq(0)]
                with m.If(good):
                    m.d.sync += load(b, incoming)
            with m.Elif(good):
                m.d.sync += load(a, incoming)
            with m.Else():
                m.d.sync += a["valid"].eq(0)
        with m.Elif(good):
            with m.If(a["valid"]):
                m.d.sync += load(b, incoming)
            with m.Else():
                m.d.sync += load(a, incoming) + [written.eq(0)]

        # -- one element of one good command: written exactly once ------------------------------
        chosen = Signal(N, name="chosen_command")
        at_row, at_col = Signal(2, name="chosen_i"), Signal(2, name="chosen_j")
        m.d.comb += [chosen.eq(AnyConst(N)), at_row.eq(AnyConst(2)), at_col.eq(AnyConst(2))]
        mine = a["valid"] & (a["index"] == chosen) & (at_row < a["m"]) & (at_col < a["n"])
        hits = Signal(2, name="chosen_writes")
        hit = writing & (write.row == a["row"] + at_row) & \
            sum(lanes[t] & (write.col + t == a["col"] + at_col) for t in range(C)).bool()
        with m.If(mine & hit):
            m.d.sync += hits.eq(hits + 1)
            m.d.comb += Assert(hits == 0, "the chosen element written twice")
        with m.If(mine & a_done):
            m.d.comb += Assert((hits == 1) | hit, "the chosen element never written")

        # -- bounded liveness, exactly ------------------------------------------------------------
        # (a good command fits the plane, so m and n are small)
        size_bits = max(geo.rows, geo.width).bit_length()
        bands = (c.m[:size_bits] + R - 1) >> (R.bit_length() - 1)
        groups = (c.n[:size_bits] + C - 1) >> (C.bit_length() - 1)
        tile = C                                # T = C cycles per tile (bits = steps = 8)
        cycles = Signal(N + 2, name="spec_cycles")
        m.d.comb += cycles.eq(1 + bands * (R + tile) + bands * (groups - 1) * max(tile, R) + R)
        timed = Signal(name="timed")            # a good command since, nothing accepted after
        since = Signal(N + 2, name="since")
        deadline = Signal(N + 2, name="deadline")
        just_good = past(good, "good")
        with m.If(good):
            m.d.sync += [timed.eq(1), since.eq(1), deadline.eq(cycles)]
        with m.Elif(timed):
            m.d.sync += since.eq(since + 1)
            with m.If(since == deadline):
                m.d.sync += timed.eq(0)
        with m.If(timed & ~good):
            m.d.comb += Assert(status.busy == (since < deadline),
                               "busy not high exactly until mask_write_cycles")
        with m.If(timed & (since == deadline)):
            m.d.comb += Assert(~a["valid"] & ~b["valid"],
                               "busy low before every element was written")
        with m.If(~timed & ~just_good):
            m.d.comb += Assert(~status.busy, "busy without a command")

        # -- covers ---------------------------------------------------------------------------
        m.d.comb += [Cover(past.valid & p_fault & (p_code == code_value)
                           & (now_code == code_value))
                     for code_value in (MaskError.ZERO_SEED, MaskError.BAD_THRESHOLD,
                                        MaskError.ZERO_SIZE, MaskError.RANGE)]
        m.d.comb += [
            # finished: two bands of one tile column, one band of two, two bands of two
            Cover(timed & (since == deadline) & (deadline == 11)),
            Cover(timed & (since == deadline) & (deadline == 9)),
            Cover(timed & (since == deadline) & (deadline == 15)),
            Cover(mine & hit & (a["m"] >= 2) & (a["n"] >= 2)),
        ]
        return m
