"""Formal properties of the AIP output selection (:class:`hw.aip.select.AipSelect`): rows of
FP32 results in, keep beats out, in ``THRESHOLD`` and ``TOP_N`` mode.

A unit of 2 lanes, rows of at most 4 elements and ``n`` at most 2. Every input is free
(commands, threshold writes, input beats, the output's ``ready``, ``clear_error``) except the
host's promise (assumed): no threshold write while a command runs or is accepted; and, to keep
the solver's work small, commands of at most 2 rows (assumed; each row repeats the same
logic). The depth, 10 steps, holds a ``TOP_N`` row of 4 (its last keep beat is out 8 cycles
after the command); at 12 the ``bmc`` task ran for more than 10 minutes. The harness shadows
the threshold memory and its NaN flags, restates the command check of the module docstring and
counts beats. Promised:

* **keep bits**: for one input beat and lane chosen by the solver (any constant) in a
  ``THRESHOLD`` row, the keep bit that comes out for it is ``y > t`` in IEEE order (restated
  here from signs and magnitudes, not from the unit's order keys: ``-0 == +0``) or ``y`` NaN,
  and 0 past the row's end; in ``TOP_N`` every output row has exactly ``n`` keep bits, and of
  two chosen elements of a row the strictly greater one (NaN above every number) is kept when
  the other is;
* every keep beat's ``mask`` is the row's lanes (0 past its length) and no keep bit lies outside
  it; an input beat taken in ``THRESHOLD`` is on ``o`` two cycles later when ``o`` was ready
  in between;
* input is taken only for a good command and output comes only from one, exactly ``G`` beats
  per row each (``G = ceil(length / 2)``); no command is taken while input of the previous one
  is due, and the unit takes a command in the cycle after a bad one;
* a bad command (``BAD_MODE``, ``ZERO_SIZE``, ``RANGE``, ``BAD_N``, ``BAD_THRESHOLD``) or a
  threshold write out of range raises the sticky error with its code; the first fault's code is
  kept until ``clear_error``, and nothing else changes the error.

Covers: a ``THRESHOLD`` row of 3 and a ``TOP_N`` row of 4 (``n = 2``) sent, the chosen
element's keep bit 1, a positive ``TOP_N`` element kept over a negative one, each error code.
Mutants: ``keep_equal``, the chosen element's keep bit as if the compare were ``>=`` (kept when
equal to its threshold); ``drop_keep``, a ``TOP_N`` keep bit cleared at the solver's choice.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover

from hw.aip.select import AipSelect, SelectFault, SelectModeCode

from .common import History, Properties

__all__ = ["AipSelectProperties"]


def _nan(word):
    return (word[23:31] == 0xFF) & (word[:23] != 0)


def _greater(y, t):
    """``y > t`` in IEEE order for two non-NaN FP32 words (an expression)."""
    y_mag, t_mag = y[:31], t[:31]
    zeros = (y_mag == 0) & (t_mag == 0)
    return ~zeros & Mux(y[31], t[31] & (y_mag < t_mag), t[31] | (y_mag > t_mag))


def _equal(y, t):
    """``y == t`` in IEEE order for two non-NaN FP32 words."""
    return (y == t) | ((y[:31] == 0) & (t[:31] == 0))


class AipSelectProperties(Properties):
    """The selection unit with its properties (module docstring)."""

    NAME = "aip_select"
    DESCRIPTION = "AIP output selection, 2 lanes, rows of up to 4 elements, n up to 2"
    TASKS = {"bmc": 10, "cover": 10}
    MUTANTS = ("keep_equal", "drop_keep")
    LANES, MAX_LEN, MAX_N = 2, 4, 2
    #: most rows a command may have (an assumption)
    MAX_ROWS = 2
    #: width of the global beat counters (more than the depth)
    COUNT_BITS = 6

    def __init__(self, *, mutant: str | None = None):
        super().__init__(AipSelect(lanes=self.LANES, max_len=self.MAX_LEN, max_n=self.MAX_N),
                         mutant=mutant)

    def elaborate(self, platform):
        m = Module()
        dut = self.instantiate(m)
        past = History(m)
        C, L, E, G = dut.lanes, dut.max_len, dut.max_n, dut.beats
        cmd, wr, i, o = dut.cmd.payload, dut.wr_threshold.payload, dut.i, dut.o
        accepted = dut.cmd.valid & dut.cmd.ready
        taken_in = i.valid & i.ready
        taken_out = o.valid & o.ready
        busy = dut.status.busy

        def beats_of(length):
            """``ceil(length / C)`` for ``length <= L`` (an expression)."""
            return sum(length > g * C for g in range(G))

        def lanes_inside(beat, length):
            return Cat(*[beat * C + lane < length for lane in range(C)])

        # -- the host's promise: thresholds stay put while a command runs; and (to keep the
        # solver's work small: each row repeats the same logic) at most MAX_ROWS rows
        m.d.comb += Assume(~(dut.wr_threshold.valid & (busy | accepted)))
        with m.If(dut.cmd.valid):
            m.d.comb += Assume(cmd.rows <= self.MAX_ROWS)

        # -- shadow of the thresholds and their NaN flags ------------------------------------
        # the values are reset_less like the memory; the NaN flags are reset like the unit's
        thresholds = [Signal(32, name=f"shadow_threshold{j}", reset_less=True)
                      for j in range(G * C)]
        nan_flags = [Signal(name=f"shadow_nan{j}") for j in range(G * C)]
        wr_inside = wr.beat < G
        for j in range(G * C):
            beat, lane = divmod(j, C)
            with m.If(dut.wr_threshold.valid & (wr.beat == beat) & wr.mask[lane]):
                m.d.sync += [thresholds[j].eq(wr.data[lane]), nan_flags[j].eq(_nan(wr.data[lane]))]

        # -- the command check, restated --------------------------------------------------------
        fault = Signal(SelectFault, name="expected_fault")
        threshold_mode = cmd.mode == SelectModeCode.THRESHOLD
        top_mode = cmd.mode == SelectModeCode.TOP_N
        nan_in_row = Cat(*[nan_flags[j] & (j < cmd.length) for j in range(G * C)]).any()
        with m.If(~threshold_mode & ~top_mode):
            m.d.comb += fault.eq(SelectFault.BAD_MODE)
        with m.Elif((cmd.rows == 0) | (cmd.length == 0)):
            m.d.comb += fault.eq(SelectFault.ZERO_SIZE)
        with m.Elif(cmd.length > L):
            m.d.comb += fault.eq(SelectFault.RANGE)
        with m.Elif(top_mode & ((cmd.n == 0) | (cmd.n > cmd.length))):
            m.d.comb += fault.eq(SelectFault.BAD_N)
        with m.Elif(top_mode & (cmd.n > E)):
            m.d.comb += fault.eq(SelectFault.RANGE)
        with m.Elif(threshold_mode & nan_in_row):
            m.d.comb += fault.eq(SelectFault.BAD_THRESHOLD)
        good = accepted & (fault == SelectFault.NONE)
        fault_now = Signal(SelectFault, name="expected_fault_now")
        with m.If(accepted & ~good):
            m.d.comb += fault_now.eq(fault)
        with m.Elif(dut.wr_threshold.valid & ~wr_inside):
            m.d.comb += fault_now.eq(SelectFault.RANGE)

        # -- the error: raised with the first fault's code, sticky until clear_error -----------
        status = dut.status
        code = status.error_code.as_value()
        p_fault = past(fault_now, "fault")
        p_error = past(status.error, "error")
        p_code = past(code, "error_code")
        p_clear = past(dut.clear_error, "clear_error")
        p_bad = past(accepted & ~good, "bad_command")
        with m.If(past.valid):
            with m.If(p_fault != SelectFault.NONE):
                m.d.comb += Assert(status.error, "a fault did not raise the error")
                with m.If(~p_error | p_clear):
                    m.d.comb += Assert(code == p_fault, "wrong error code")
                with m.Else():
                    m.d.comb += Assert(code == p_code, "the first code was lost")
            with m.Elif(p_clear):
                m.d.comb += Assert(~status.error & (code == SelectFault.NONE),
                                   "clear_error did not clear the error")
            with m.Else():
                m.d.comb += Assert((status.error == p_error) & (code == p_code),
                                   "the error changed without a fault or clear_error")
            with m.If(p_bad):
                m.d.comb += Assert(dut.cmd.ready, "no command taken after a bad one")

        # -- the input side: beats due of the running command ----------------------------------
        row_beats = Signal(range(G + 1), name="cmd_row_beats")
        m.d.comb += row_beats.eq(beats_of(cmd.length))
        in_mode = Signal(SelectModeCode, name="in_mode")
        in_length = Signal(range(L + 1), name="in_length")
        in_left = Signal(cmd.rows.shape().width + 2, name="in_beats_due")
        in_beat = Signal(range(G), name="in_beat")
        m.d.comb += [Assert(~i.ready | (in_left != 0), "input taken without a good command"),
                     Assert(~accepted | (in_left == 0), "a command taken while input is due")]
        with m.If(taken_in):
            m.d.sync += [in_left.eq(in_left - 1),
                         in_beat.eq(Mux((in_beat + 1) * C >= in_length, 0, in_beat + 1))]
        with m.If(good):
            m.d.sync += [in_mode.eq(cmd.mode), in_length.eq(cmd.length), in_beat.eq(0),
                         in_left.eq(cmd.rows * row_beats)]

        # -- the output side: the command whose beats come out, and the one after it ----------
        cur_mode = Signal(SelectModeCode, name="out_mode")
        cur_length = Signal(range(L + 1), name="out_length")
        cur_n = Signal(range(E + 1), name="out_n")
        cur_left = Signal(cmd.rows.shape().width + 2, name="out_beats_due")
        cur_beat = Signal(range(G), name="out_beat")
        cur_kept = Signal(range(L + 1), name="out_kept")
        nxt_mode = Signal(SelectModeCode, name="next_mode")
        nxt_length = Signal(range(L + 1), name="next_length")
        nxt_n = Signal(range(E + 1), name="next_n")
        nxt_left = Signal(cmd.rows.shape().width + 2, name="next_beats_due")
        pending = Signal(name="next_pending")

        keep = Signal(C, name="observed_keep")
        m.d.comb += keep.eq(o.payload.data.as_value())
        if self.mutant == "drop_keep":
            with m.If(cur_mode == SelectModeCode.TOP_N):
                m.d.comb += keep.eq(o.payload.data.as_value() & ~AnySeq(C))

        row_end = (cur_beat + 1) * C >= cur_length
        kept = sum(keep[lane] for lane in range(C))
        m.d.comb += [
            Assert(~o.valid | (cur_left != 0), "a keep beat without a good command"),
            Assert(~accepted | ~pending, "a command taken with two commands' beats due"),
            Assert(~accepted | (cur_left == 0) | ((cur_left == 1) & o.valid),
                   "a command taken before the last keep beat was loaded"),
        ]
        with m.If(o.valid):
            m.d.comb += [Assert(o.payload.mask == lanes_inside(cur_beat, cur_length),
                                "mask is not the row's lanes"),
                         Assert((keep & ~o.payload.mask) == 0, "a keep bit outside the mask")]
        with m.If(taken_out & row_end & (cur_mode == SelectModeCode.TOP_N)):
            m.d.comb += Assert(cur_kept + kept == cur_n, "a TOP_N row without n keep bits")
        with m.If(taken_out):
            m.d.sync += [cur_left.eq(cur_left - 1), cur_beat.eq(Mux(row_end, 0, cur_beat + 1)),
                         cur_kept.eq(Mux(row_end, 0, cur_kept + kept))]
            with m.If((cur_left == 1) & pending):
                m.d.sync += [cur_mode.eq(nxt_mode), cur_length.eq(nxt_length), cur_n.eq(nxt_n),
                             cur_left.eq(nxt_left), cur_beat.eq(0), cur_kept.eq(0),
                             pending.eq(0)]
        with m.If(good):
            with m.If((cur_left == 0) | ((cur_left == 1) & taken_out)):
                m.d.sync += [cur_mode.eq(cmd.mode), cur_length.eq(cmd.length), cur_n.eq(cmd.n),
                             cur_left.eq(cmd.rows * row_beats), cur_beat.eq(0), cur_kept.eq(0)]
            with m.Else():
                m.d.sync += [nxt_mode.eq(cmd.mode), nxt_length.eq(cmd.length), nxt_n.eq(cmd.n),
                             nxt_left.eq(cmd.rows * row_beats), pending.eq(1)]

        # -- THRESHOLD: the chosen element's keep bit --------------------------------------------
        in_count = Signal(self.COUNT_BITS, name="in_count")
        out_count = Signal(self.COUNT_BITS, name="out_count")
        with m.If(taken_in):
            m.d.sync += in_count.eq(in_count + 1)
        with m.If(taken_out):
            m.d.sync += out_count.eq(out_count + 1)
        m.d.comb += Assert(~o.valid | (out_count < in_count), "a keep beat before its input")
        chosen = Signal(self.COUNT_BITS, name="chosen_beat")
        chosen_lane = Signal(range(C), name="chosen_lane")
        m.d.comb += [chosen.eq(AnyConst(self.COUNT_BITS)), chosen_lane.eq(AnyConst(range(C))),
                     Assume(chosen_lane < C)]
        picked = Signal(name="chosen_taken")
        y = Signal(32, name="chosen_y")
        t = Signal(32, name="chosen_threshold")
        inside = Signal(name="chosen_inside")
        with m.If(taken_in & (in_count == chosen) & (in_mode == SelectModeCode.THRESHOLD)):
            m.d.sync += [picked.eq(1), y.eq(i.payload.as_value().word_select(chosen_lane, 32)),
                         t.eq(Cat(*thresholds).word_select(in_beat * C + chosen_lane, 32)),
                         inside.eq(in_beat * C + chosen_lane < in_length)]
        want = inside & (_nan(y) | _greater(y, t))
        observed = keep.bit_select(chosen_lane, 1)
        if self.mutant == "keep_equal":
            observed = observed | (inside & ~_nan(y) & _equal(y, t))
        at_chosen = o.valid & picked & (out_count == chosen) & ~_nan(t)
        with m.If(at_chosen):
            m.d.comb += Assert(observed == want, "the chosen element's keep bit is not y > t")

        # -- TOP_N: of two chosen elements of a row, the strictly greater one is kept when the
        # other is (NaN above every number, -0 == +0)
        row_count = Signal(self.COUNT_BITS, name="in_row_count")
        with m.If(taken_in & ((in_beat + 1) * C >= in_length)):
            m.d.sync += row_count.eq(row_count + 1)
        top = []
        for name, beat_index, lane_index in (("first", chosen, chosen_lane),
                                             ("second", AnyConst(self.COUNT_BITS),
                                              AnyConst(range(C)))):
            element = {key: Signal(shape, name=f"top_{name}_{key}") for key, shape in (
                ("taken", 1), ("y", 32), ("row", self.COUNT_BITS), ("inside", 1),
                ("seen", 1), ("kept", 1))}
            index = Signal(self.COUNT_BITS, name=f"top_{name}_beat")
            lane_of = Signal(range(C), name=f"top_{name}_lane")
            m.d.comb += [index.eq(beat_index), lane_of.eq(lane_index), Assume(lane_of < C)]
            with m.If(taken_in & (in_count == index) & (in_mode == SelectModeCode.TOP_N)):
                m.d.sync += [element["taken"].eq(1), element["row"].eq(row_count),
                             element["y"].eq(i.payload.as_value().word_select(lane_of, 32)),
                             element["inside"].eq(in_beat * C + lane_of < in_length)]
            with m.If(taken_out & element["taken"] & (out_count == index)):
                m.d.sync += [element["seen"].eq(1), element["kept"].eq(keep.bit_select(lane_of, 1))]
            top.append(element)
        first, second = top
        first_greater = ((_nan(first["y"]) & ~_nan(second["y"]))
                         | (~_nan(first["y"]) & ~_nan(second["y"])
                            & _greater(first["y"], second["y"])))
        compared = (first["seen"] & second["seen"] & (first["row"] == second["row"])
                    & first["inside"] & second["inside"] & first_greater & second["kept"])
        with m.If(compared):
            m.d.comb += Assert(first["kept"], "a TOP_N element dropped for a smaller one")

        # cycle-exact: an input beat taken in THRESHOLD is out two cycles later when o was ready
        p_taken = past(taken_in & (in_mode == SelectModeCode.THRESHOLD), "threshold_taken")
        p_index = past(in_count, "threshold_index")
        pp_taken = past(p_taken, "threshold_taken_2")
        pp_index = past(p_index, "threshold_index_2")
        p_ready = past(o.ready, "out_ready")
        pp_valid = past(past.valid, "valid_2")
        with m.If(pp_valid & past.valid & pp_taken & p_ready):
            m.d.comb += Assert(o.valid & (out_count == pp_index),
                               "a THRESHOLD keep beat not two cycles after its input")

        # -- covers ---------------------------------------------------------------------------
        m.d.comb += [
            Cover(taken_out & row_end & (cur_mode == SelectModeCode.THRESHOLD)
                  & (cur_length == 3)),
            Cover(taken_out & row_end & (cur_mode == SelectModeCode.TOP_N) & (cur_length == 4)
                  & (cur_n == 2)),
            Cover(at_chosen & want & ~y[31] & (t != 0)),
            Cover(compared & first["kept"] & ~first["y"][31] & second["y"][31]),
        ]
        for fault_code in (SelectFault.BAD_MODE, SelectFault.ZERO_SIZE, SelectFault.RANGE,
                     SelectFault.BAD_N, SelectFault.BAD_THRESHOLD):
            m.d.comb += Cover(code == fault_code)
        return m
