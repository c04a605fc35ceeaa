"""The AIP output selection: rows of approximate FP32 results in, rows of keep bits out.

The selection of :mod:`sim.aip_spec` (read its docstring; the golden model is
:func:`sim.aip.select_keep`): ``THRESHOLD`` keeps ``y[j] > t[j]`` in IEEE order or ``y[j]`` NaN;
``TOP_N`` keeps the ``n`` largest ``y`` of a row, NaN above every number, ``-0 == +0``, ties by
the lower column.

Order key
---------
Both modes compare 32-bit *order keys* as unsigned numbers: ``+0`` and ``-0`` map to
``0x8000_0000``, a positive value ``x`` to ``x | 0x8000_0000``, a negative one to ``~x``, any
NaN to ``0xFFFF_FFFF`` (above ``+inf``'s ``0xFF80_0000``). For non-NaN values ``a > b`` in
IEEE order exactly when ``key(a) > key(b)``.

Data path
---------
* ``THRESHOLD``: a two-stage pipeline. Stage A holds the beat and, read from the threshold
  memory in the same edge (a synchronous read port, one memory row of ``C`` thresholds per
  beat), its thresholds; the ``C`` key comparisons run between stage A and the output register.
  Thresholds are checked for NaN at the command: a flag per threshold, set when a NaN is
  written, cleared when a number is.
* ``TOP_N``: an insertion list of ``max_n`` entries ``(key, column)``, sorted by decreasing
  key, one element inserted per cycle: the new element goes above every entry whose key is
  strictly smaller (so an equal key, which came from a lower column, stays above it) and the
  last entry falls out. A command with ``n < max_n`` *blocks* the top ``max_n - n`` entries
  (nothing goes above them), so the entry that falls out is always the physical last one.
  Beside the list, a keep bitmap of the row (``max_len`` bits): set for the column inserted,
  cleared for the column that falls out. After the row's last element the bitmap goes out
  beat by beat, and the list and bitmap are cleared for the next row.

Timing
------
With a good command accepted in cycle 0 (its check), input beats are taken from cycle 1 on.
``G = ceil(N / C)`` beats per row; a row's last beat carries ``N - (G - 1) C`` elements (the
other lanes are ignored; their keep bits and ``mask`` bits are 0).

* ``THRESHOLD``: one beat per cycle; the keep beat of an input beat taken in cycle ``t`` is
  valid in cycle ``t + 2``. Backpressure on ``o`` stalls the whole pipeline.
* ``TOP_N``: one element per cycle. With the row's first beat taken in cycle ``t0`` and no
  idle input or backpressure, element ``j`` is inserted in cycle ``t0 + 1 + j``, keep beat
  ``g`` is valid in cycle ``t0 + N + 2 + g`` and the next row's first beat is taken in cycle
  ``t0 + N + G + 1``: ``N + G + 1`` cycles per row.

The next command is accepted once the previous one's last keep beat has entered the output
register (``status.busy`` low) and stage A is empty.

Bad commands and writes
-----------------------
A command is checked in the cycle it is accepted; the first fault in this order is reported
as a sticky ``status.error`` with its :class:`SelectFault` (the first fault's code is kept until
``clear_error``): ``BAD_MODE`` (a mode code outside :class:`~sim.aip_spec.SelectMode`),
``ZERO_SIZE`` (``rows`` or ``length`` 0), ``RANGE`` (``length > max_len``), ``BAD_N``
(``TOP_N`` with ``n`` 0 or above ``length``), ``RANGE`` (``TOP_N`` with ``n > max_n``),
``BAD_THRESHOLD`` (``THRESHOLD`` with a NaN among the first ``length`` thresholds). A bad
command takes no input and produces no output; the unit takes the next command in the
following cycle. A threshold write to a beat at or beyond ``ceil(max_len / C)`` is dropped
with ``RANGE``.

The keep-plane destination ``(row + i, col + g C)`` is 16-bit arithmetic (it wraps); the
engine checks it (``ACCESS_RANGE`` on ``wr_mask``). The host must not write thresholds from the
cycle a ``THRESHOLD`` command is accepted until ``status.busy`` falls (the NaN check reads the
flags before that cycle's write; the compare reads the memory as the row streams).
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.engine.commands import host_write_layout
from hw.spec_enum import hardware_enum
from sim.aip_spec import N_BITS, SelectError, SelectMode
from sim.config import MAX_DIM
from sim.engine_spec import FIELD_BITS
from sim.formats import FP32

__all__ = ["SelectModeCode", "SelectFault", "SelectStatus", "select_command_layout",
           "threshold_write_layout", "keep_layout", "order_key", "AipSelect"]

SelectModeCode = hardware_enum(
    SelectMode, name="SelectModeCode", module=__name__, shape=2,
    doc="The mode field of a selection command (:class:`sim.aip_spec.SelectMode`); codes "
        "2 and 3 are refused (``BAD_MODE``).")


class SelectFault(enum.Enum, shape=3):
    """Why :class:`AipSelect` raised ``status.error``: the codes of
    :class:`sim.aip_spec.SelectError`; ``RANGE`` is a limit of this instance (``length >
    max_len``, ``n > max_n``, a threshold write beyond ``max_len``)."""
    NONE = SelectError.NONE.value
    BAD_THRESHOLD = SelectError.BAD_THRESHOLD.value
    BAD_N = SelectError.BAD_N.value
    ZERO_SIZE = SelectError.ZERO_SIZE.value
    BAD_MODE = SelectError.BAD_MODE.value
    RANGE = SelectError.RANGE.value


assert {m.name: m.value for m in SelectError}.items() <= \
    {m.name: m.value for m in SelectFault}.items()


class SelectStatus(data.Struct):
    """Status of :class:`AipSelect` (one CSR word). ``busy``: from the cycle after a good
    command is accepted until its last keep beat has entered the output register. ``error``
    is sticky (the first fault's ``error_code``) until ``clear_error``; a fault in the same
    cycle as ``clear_error`` is kept."""
    busy: 1
    error: 1
    error_code: SelectFault


def select_command_layout():
    """Selection command: ``rows`` rows of ``length`` elements each, ``mode``, ``n`` (``TOP_N``)
    and the keep-plane position ``(row, col)`` of the first row's first element."""
    return data.StructLayout({"mode": SelectModeCode, "n": N_BITS, "length": N_BITS,
                              "rows": N_BITS, "row": FIELD_BITS, "col": FIELD_BITS})


def threshold_write_layout(lanes):
    """Threshold write: lane ``t`` of ``data`` (FP32) is the threshold of column
    ``beat * lanes + t``, written when bit ``t`` of ``mask`` is set."""
    return data.StructLayout({"beat": FIELD_BITS, "data": data.ArrayLayout(32, lanes),
                              "mask": lanes})


def keep_layout(lanes):
    """A keep beat: the engine's ``wr_mask`` word (:func:`hw.engine.commands.host_write_layout`
    of 1-bit elements): ``data[t]`` is the keep bit of ``(row, col + t)``, ``mask`` the lanes
    inside the row."""
    return host_write_layout(lanes, unsigned(1))


def order_key(m, word, name):
    """``(key, nan)`` of an FP32 word: the 32-bit order key of the module docstring and
    whether the word is a NaN."""
    view = Signal(FP32.layout, name=f"{name}_fp32")
    key = Signal(32, name=f"{name}_key")
    nan = Signal(name=f"{name}_nan")
    magnitude = Cat(view.man, view.exp)
    m.d.comb += [
        view.eq(word),
        nan.eq((view.exp == FP32.exp_max_field) & (view.man != 0)),
        key.eq(Mux(nan, Const(0xFFFF_FFFF, 32),
                   Mux(view.sign & (magnitude != 0), ~magnitude, Cat(magnitude, Const(1, 1))))),
    ]
    return key, nan


class _State(enum.Enum, shape=3):
    IDLE = 0
    THRESHOLD = 1     # taking beats into the pipeline
    TOP_IN = 2        # waiting for a beat of a TOP_N row
    TOP_INSERT = 3    # inserting the held beat's elements, one per cycle
    TOP_EMIT = 4      # sending the row's keep bits, one beat per cycle


def _check_int(field, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be an integer in {low}..{high}, not {value!r}")


class AipSelect(wiring.Component):
    """Stream unit: rows of FP32 results in, keep beats for the engine's host keep plane out,
    bit for bit :func:`sim.aip.select_keep` (module docstring: data path, timing, faults).

    Parameters
    ----------
    lanes : int
        Elements per beat ``C``, 1 .. ``sim.config.MAX_DIM``: the engine's ``config.array.cols``
        (so ``i`` takes ``rd_data`` and ``o`` drives ``wr_mask`` unchanged).
    max_len : int
        Longest row ``N`` a command may have, 1 .. ``2^N_BITS - 1``: the threshold memory has
        ``ceil(max_len / C)`` rows of ``C`` words, the ``TOP_N`` keep bitmap that many bits.
    max_n : int or None
        Entries of the ``TOP_N`` insertion list (the largest ``n``), 1 .. ``max_len``;
        ``None``: ``max_len``.

    Latency and throughput
    ----------------------
    ``THRESHOLD``: one beat of ``C`` elements per cycle, keep beat 2 cycles after its input.
    ``TOP_N``: one element per cycle; a row of ``N`` elements takes ``N + G + 1`` cycles
    (``G = ceil(N / C)``), its keep beat ``g`` valid ``N + 2 + g`` cycles after its first beat
    is taken.

    Ports
    -----
    cmd : stream of :func:`select_command_layout` (in)
    wr_threshold : stream of :func:`threshold_write_layout` ``(C)`` (in), always ready
    i : stream of ``ArrayLayout(32, C)`` (in): the engine's ``rd_data`` words (FP32)
    o : stream of :func:`keep_layout` ``(C)`` (out): the engine's ``wr_mask`` words
    status : :class:`SelectStatus` (out)
    clear_error : 1 bit (in)
    """

    def __init__(self, *, lanes, max_len, max_n=None):
        _check_int("lanes", lanes, 1, MAX_DIM)
        _check_int("max_len", max_len, 1, (1 << N_BITS) - 1)
        if max_n is None:
            max_n = max_len
        _check_int("max_n", max_n, 1, max_len)
        self.lanes, self.max_len, self.max_n = lanes, max_len, max_n
        #: Memory rows of thresholds (beats of a longest row).
        self.beats = -(-max_len // lanes)
        super().__init__({
            "cmd": In(stream.Signature(select_command_layout())),
            "wr_threshold": In(stream.Signature(threshold_write_layout(lanes))),
            "i": In(stream.Signature(data.ArrayLayout(32, lanes))),
            "o": Out(stream.Signature(keep_layout(lanes))),
            "status": Out(SelectStatus),
            "clear_error": In(1),
        })

    def row_cycles(self, mode, length):
        """Cycles per row at full rate (no idle input, no backpressure)."""
        beats = -(-length // self.lanes)
        return beats if SelectMode(mode) == SelectMode.THRESHOLD else length + beats + 1

    def elaborate(self, platform):
        m = Module()
        C, L, E, G = self.lanes, self.max_len, self.max_n, self.beats

        state = Signal(_State, name="state")
        length = Signal(N_BITS, name="length")
        rows = Signal(N_BITS, name="rows")
        dest_row = Signal(FIELD_BITS, name="dest_row")
        dest_col = Signal(FIELD_BITS, name="dest_col")
        row_index = Signal(N_BITS, name="row_index")       # row of the input side
        col_in = Signal(N_BITS + 1, name="col_in")         # first column of the next input beat
        beat_in = Signal(range(max(G, 2)), name="beat_in")

        fault_now = Signal(SelectFault, name="fault_now")  # a fault this cycle (command or write)

        # -- threshold memory and NaN flags --
        thresholds = m.submodules.thresholds = Memory(
            shape=data.ArrayLayout(32, C), depth=G, init=[])
        t_write = thresholds.write_port(granularity=1)
        t_read = thresholds.read_port()
        nan_flags = Signal(G * C, name="threshold_nan")
        wr = self.wr_threshold.payload
        wr_inside = Signal(name="wr_threshold_inside")
        m.d.comb += [
            self.wr_threshold.ready.eq(1),
            wr_inside.eq(wr.beat < G),
            t_write.addr.eq(wr.beat),
            t_write.data.eq(wr.data),
            t_write.en.eq(Mux(self.wr_threshold.valid & wr_inside, wr.mask, 0)),
        ]
        written_nan = [order_key(m, wr.data[lane], f"wr_threshold{lane}")[1] for lane in range(C)]
        with m.If(self.wr_threshold.valid & wr_inside):
            for lane, nan in enumerate(written_nan):
                with m.If(wr.mask[lane]):
                    m.d.sync += nan_flags.word_select(wr.beat * C + lane, 1).eq(nan)
        wr_fault = self.wr_threshold.valid & ~wr_inside

        # -- output register --
        out_free = Signal(name="out_free")
        m.d.comb += out_free.eq(~self.o.valid | self.o.ready)
        load = Signal(name="out_load")
        load_payload = Signal(keep_layout(C), name="out_next")
        with m.If(load):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(load_payload)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def lanes_inside(first_col):
            """Mask of the lanes of a beat starting at column ``first_col`` inside the row."""
            return Cat(*[(first_col + lane) < length for lane in range(C)])

        # -- command check --
        stage_valid = Signal(name="stage_valid")
        cmd = self.cmd.payload
        m.d.comb += self.cmd.ready.eq((state == _State.IDLE) & ~stage_valid)
        accepted = self.cmd.valid & self.cmd.ready
        cmd_fault = Signal(SelectFault, name="cmd_fault")
        nan_in_row = Signal(name="nan_in_row")
        m.d.comb += nan_in_row.eq(
            Cat(*[nan_flags[j] & (j < cmd.length) for j in range(G * C)]).any())
        with m.If((cmd.mode != SelectModeCode.THRESHOLD) & (cmd.mode != SelectModeCode.TOP_N)):
            m.d.comb += cmd_fault.eq(SelectFault.BAD_MODE)
        with m.Elif((cmd.rows == 0) | (cmd.length == 0)):
            m.d.comb += cmd_fault.eq(SelectFault.ZERO_SIZE)
        with m.Elif(cmd.length > L):
            m.d.comb += cmd_fault.eq(SelectFault.RANGE)
        with m.Elif((cmd.mode == SelectModeCode.TOP_N) & ((cmd.n == 0) | (cmd.n > cmd.length))):
            m.d.comb += cmd_fault.eq(SelectFault.BAD_N)
        with m.Elif((cmd.mode == SelectModeCode.TOP_N) & (cmd.n > E)):
            m.d.comb += cmd_fault.eq(SelectFault.RANGE)
        with m.Elif((cmd.mode == SelectModeCode.THRESHOLD) & nan_in_row):
            m.d.comb += cmd_fault.eq(SelectFault.BAD_THRESHOLD)
        good = Signal(name="cmd_good")
        m.d.comb += good.eq(accepted & (cmd_fault == SelectFault.NONE))

        # -- TOP_N insertion list and bitmap --
        keys = [Signal(32, name=f"entry{e}_key") for e in range(E)]
        columns = [Signal(range(max(L, 2)), name=f"entry{e}_col") for e in range(E)]
        empty = [Signal(name=f"entry{e}_empty") for e in range(E)]
        blocked = [Signal(name=f"entry{e}_blocked") for e in range(E)]
        bitmap = Signal(G * C, name="keep_bitmap")

        with m.If(good):
            m.d.sync += [
                length.eq(cmd.length), rows.eq(cmd.rows),
                dest_row.eq(cmd.row), dest_col.eq(cmd.col), row_index.eq(0), col_in.eq(0),
                beat_in.eq(0), bitmap.eq(0),
                state.eq(Mux(cmd.mode == SelectModeCode.THRESHOLD, _State.THRESHOLD,
                             _State.TOP_IN)),
            ]
            for e in range(E):
                m.d.sync += [empty[e].eq(1), blocked[e].eq(e < E - cmd.n)]

        last_beat_of_row = Signal(name="last_beat_of_row")
        last_row = Signal(name="last_row")
        m.d.comb += [last_beat_of_row.eq(col_in + C >= length), last_row.eq(row_index + 1 == rows)]

        # -- THRESHOLD: input -> stage A (+ threshold read) -> compare -> output register --
        advance = out_free
        stage_y = Signal(data.ArrayLayout(32, C), name="stage_y")
        stage_mask = Signal(C, name="stage_mask")
        stage_row = Signal(FIELD_BITS, name="stage_row")
        stage_col = Signal(FIELD_BITS, name="stage_col")
        take_threshold = Signal(name="take_threshold")
        m.d.comb += [
            take_threshold.eq((state == _State.THRESHOLD) & advance),
            t_read.addr.eq(beat_in),
            t_read.en.eq(advance),
        ]
        threshold_taken = take_threshold & self.i.valid
        with m.If(advance):
            m.d.sync += stage_valid.eq(threshold_taken)
        with m.If(threshold_taken):
            m.d.sync += [
                stage_y.eq(self.i.payload), stage_mask.eq(lanes_inside(col_in)),
                stage_row.eq(dest_row + row_index), stage_col.eq(dest_col + col_in),
            ]
            with m.If(last_beat_of_row):
                m.d.sync += [col_in.eq(0), beat_in.eq(0), row_index.eq(row_index + 1)]
                with m.If(last_row):
                    m.d.sync += state.eq(_State.IDLE)
            with m.Else():
                m.d.sync += [col_in.eq(col_in + C), beat_in.eq(beat_in + 1)]
        compare = Signal(C, name="threshold_keep")
        for lane in range(C):
            y_key, y_nan = order_key(m, stage_y[lane], f"y{lane}")
            t_key, _ = order_key(m, t_read.data[lane], f"t{lane}")
            m.d.comb += compare[lane].eq(stage_mask[lane] & (y_nan | (y_key > t_key)))

        # -- TOP_N: hold a beat, insert its elements one per cycle, then emit the bitmap --
        hold = Signal(data.ArrayLayout(32, C), name="hold_y")
        lane = Signal(range(max(C, 2)), name="hold_lane")
        element = Signal(N_BITS, name="element")            # column of the element inserted
        top_taken = Signal(name="top_taken")
        last_element = Signal(name="last_element")
        m.d.comb += last_element.eq(element + 1 == length)
        with m.If(state == _State.TOP_IN):
            m.d.comb += top_taken.eq(self.i.valid)
        with m.If((state == _State.TOP_INSERT) & (lane == C - 1) & ~last_element):
            m.d.comb += top_taken.eq(self.i.valid)
        m.d.comb += self.i.ready.eq(
            take_threshold | (state == _State.TOP_IN) |
            ((state == _State.TOP_INSERT) & (lane == C - 1) & ~last_element))

        value = Signal(32, name="insert_value")
        m.d.comb += value.eq(hold[lane])
        key, _ = order_key(m, value, "insert")
        above = [Signal(name=f"entry{e}_beaten") for e in range(E)]
        m.d.comb += [above[e].eq(~blocked[e] & (empty[e] | (key > keys[e]))) for e in range(E)]
        inserting = state == _State.TOP_INSERT
        with m.If(inserting):
            for e in range(E):
                with m.If(above[e]):
                    if e > 0:
                        with m.If(above[e - 1]):
                            m.d.sync += [keys[e].eq(keys[e - 1]), columns[e].eq(columns[e - 1]),
                                         empty[e].eq(empty[e - 1])]
                        with m.Else():
                            m.d.sync += [keys[e].eq(key), columns[e].eq(element),
                                         empty[e].eq(0)]
                    else:
                        m.d.sync += [keys[e].eq(key), columns[e].eq(element), empty[e].eq(0)]
            with m.If(above[E - 1]):
                with m.If(~empty[E - 1]):
                    m.d.sync += bitmap.word_select(columns[E - 1], 1).eq(0)
                m.d.sync += bitmap.word_select(element, 1).eq(1)
            m.d.sync += [element.eq(element + 1), lane.eq(lane + 1)]
            with m.If(last_element):
                m.d.sync += state.eq(_State.TOP_EMIT)
            with m.Elif((lane == C - 1) & ~self.i.valid):
                m.d.sync += state.eq(_State.TOP_IN)

        # after the insertion's updates: a beat taken in the cycle of lane C-1 wins
        with m.If(top_taken):
            m.d.sync += [hold.eq(self.i.payload), lane.eq(0), state.eq(_State.TOP_INSERT)]

        emit_col = Signal(N_BITS + 1, name="emit_col")
        emit_beat = Signal(range(max(G, 2)), name="emit_beat")
        emitting = Signal(name="emitting")
        m.d.comb += emitting.eq((state == _State.TOP_EMIT) & out_free)
        emit_mask = lanes_inside(emit_col)
        with m.If(emitting):
            with m.If(emit_col + C >= length):
                m.d.sync += [emit_col.eq(0), emit_beat.eq(0), element.eq(0), bitmap.eq(0),
                             row_index.eq(row_index + 1),
                             state.eq(Mux(last_row, _State.IDLE, _State.TOP_IN))]
                m.d.sync += [empty[e].eq(1) for e in range(E)]
            with m.Else():
                m.d.sync += [emit_col.eq(emit_col + C), emit_beat.eq(emit_beat + 1)]
        with m.If(good):
            m.d.sync += [element.eq(0), emit_col.eq(0), emit_beat.eq(0)]

        # -- output register input --
        with m.If(stage_valid):
            m.d.comb += [load.eq(advance), load_payload.row.eq(stage_row),
                         load_payload.col.eq(stage_col), load_payload.mask.eq(stage_mask),
                         load_payload.data.as_value().eq(compare)]
        with m.Else():
            m.d.comb += [load.eq(emitting), load_payload.row.eq(dest_row + row_index),
                         load_payload.col.eq(dest_col + emit_col), load_payload.mask.eq(emit_mask),
                         load_payload.data.as_value().eq(
                             bitmap.word_select(emit_beat, C) & emit_mask)]

        # -- status --
        with m.If(accepted & ~good):
            m.d.comb += fault_now.eq(cmd_fault)
        with m.Elif(wr_fault):
            m.d.comb += fault_now.eq(SelectFault.RANGE)
        error = Signal(name="error_flag")
        error_code = Signal(SelectFault, name="error_code")
        with m.If(fault_now != SelectFault.NONE):
            m.d.sync += error.eq(1)
            with m.If(~error | self.clear_error):
                m.d.sync += error_code.eq(fault_now)
        with m.Elif(self.clear_error):
            m.d.sync += [error.eq(0), error_code.eq(SelectFault.NONE)]
        m.d.comb += [self.status.busy.eq((state != _State.IDLE) | stage_valid),
                     self.status.error.eq(error), self.status.error_code.eq(error_code)]
        return m
