"""Tile sequencer of the weight-stationary GEMM engine.

The same command, front end and memories as the output-stationary sequencer
(:mod:`hw.engine.sequencer`); the schedule differs. A weight tile is an ``R x C`` block of B,
``B[k0 .. k0+R-1, n0 .. n0+C-1]`` (row ``r`` of the block in PE row ``r``); tiles are taken
``n0`` outer, ``k0`` inner, so each output column block is summed over ascending ``k``.

Schedule (times in cycles; constants in :class:`sim.engine_model.WeightStationaryEngineTiming`)
-----------------------------------------------------------------------------------------------
* **Accept and check** (cycle 0); issue time 0 is cycle 1, as for output stationary.
* **Weight loads**: ``R`` consecutive loads per tile, block row ``R-1`` first (a row access of
  B, or a column access when ``b_transpose``): tile 0's at issue times ``0 .. R-1``, tile
  ``T+1``'s from slot ``load_slot`` of tile ``T`` on (after the array's last weight swap of
  tile ``T``). Rows beyond ``K`` load ``+0``, columns beyond ``N`` too.
* **Steps**: tile ``T`` occupies ``L = max(M, min_tile_slots)`` slots from issue time
  ``R + T * L`` (the last tile only ``M``); slot ``m < M`` streams row ``m`` of A,
  ``A[m, k0 .. k0+R-1]`` (a row access, or a column access when ``a_transpose``; lanes beyond
  ``K`` get ``-0``, which the matching ``+0`` weight turns into a ``-0`` product that leaves
  any sum unchanged), with the partial sums it starts from: ``+0`` for the first K slice
  (``C_old`` when ``accumulate``), otherwise the previous K slice's results read back from the
  accumulator memory at ``(c_row + m, c_col + n0)``; slots ``m >= M`` are bubbles.
* **Results**: the array's aligned result rows come out in step order ``result_latency``
  cycles after their steps; each is written (lanes beyond ``N`` masked) to
  ``(c_row + m, c_col + n0)`` one cycle later. ``min_tile_slots`` leaves the write of row
  ``m`` in memory before the next K slice reads it. ``done`` rises the cycle after the last
  write.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from hw.engine.sequencer import WIDE, _delay, _lane_mask, _plus_zero, _Sequencer
from hw.fp.operand import Operand, OperandFormat

__all__ = ["WeightStationarySequencer"]


def _minus_zero(formats):
    """``-0`` as an :class:`~hw.fp.operand.Operand` of a format the PEs accept."""
    fmt = OperandFormat.of(formats[0])
    return Operand.const({"bits": fmt.fmt.sign_mask, "fmt": fmt}).as_value()


class WeightStationarySequencer(_Sequencer):
    """Runs GEMM commands on a weight-stationary array (schedule in the module docstring).

    Parameters
    ----------
    config : EngineConfig
        ``config.array.dataflow`` must be ``"ws"``.

    Latency: :func:`sim.engine_model.command_cycles` cycles from accepting a command to
    ``status.done``. Throughput: one command at a time; one step per cycle while
    ``M >= min_tile_slots``.

    Ports
    -----
    cmd, status, clear_error, host_error, a_read, a_data, b_read, b_data, acc_read,
    acc_read_claim, acc_data, acc_write
        As :class:`~hw.engine.sequencer.OutputStationarySequencer`.
    array_a : ``R`` x Operand; array_valid, array_first : 1 bit; array_init : ``C`` x 32 bits;
    array_weight : ``C`` x Operand; array_load : 1 bit (out) — the array's inputs
    array_result : ``C`` x 32 bits; array_result_valid : 1 bit (in) — its output
    """

    DATAFLOW = "ws"

    def _array_ports(self):
        rows, cols = self.config.array.rows, self.config.array.cols
        return {
            "array_a": Out(data.ArrayLayout(Operand, rows)),
            "array_valid": Out(1),
            "array_first": Out(1),
            "array_init": Out(data.ArrayLayout(32, cols)),
            "array_weight": Out(data.ArrayLayout(Operand, cols)),
            "array_load": Out(1),
            "array_result": In(data.ArrayLayout(32, cols)),
            "array_result_valid": In(1),
        }

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        timing = self.timing
        rows, cols = cfg.array.rows, cfg.array.cols
        front = self._front_end(m, lambda cmd: cmd.m)
        cmd, slots, begin, start = front["cmd"], front["slots"], front["begin"], front["start"]

        def advance(k0, n0):
            """Step a weight-tile position to the next tile (k0 inner)."""
            with m.If(k0 + rows >= cmd.k):
                m.d.sync += [k0.eq(0), n0.eq(n0 + cols)]
            with m.Else():
                m.d.sync += k0.eq(k0 + rows)

        # ---- steps ------------------------------------------------------------------------
        armed = Signal(name="step_armed")
        step_wait = Signal(range(timing.first_tile_issue + 1), name="step_wait")
        stepping = Signal(name="stepping")
        slot = Signal(WIDE, name="slot")
        k0 = Signal(WIDE, name="step_k0")
        n0 = Signal(WIDE, name="step_n0")
        last_tile = Signal(name="step_last_tile")
        m.d.comb += [
            stepping.eq(armed & (step_wait == 0)),
            last_tile.eq((k0 + rows >= cmd.k) & (n0 + cols >= cmd.n)),
        ]
        with m.If(begin):
            m.d.sync += [armed.eq(1), step_wait.eq(timing.first_tile_issue), slot.eq(0),
                         k0.eq(0), n0.eq(0)]
        with m.If(armed & (step_wait != 0)):
            m.d.sync += step_wait.eq(step_wait - 1)
        with m.If(stepping):
            with m.If(last_tile & (slot == cmd.m - 1)):
                m.d.sync += armed.eq(0)
            with m.Elif(slot == slots - 1):
                m.d.sync += slot.eq(0)
                advance(k0, n0)
            with m.Else():
                m.d.sync += slot.eq(slot + 1)

        step_valid = Signal(name="step_valid")
        step_first = Signal(name="step_first")
        needs_init = Signal(name="step_needs_init")      # partial sums from memory
        m.d.comb += [
            step_valid.eq(stepping & (slot < cmd.m)),
            step_first.eq(stepping & (slot == 0)),
            needs_init.eq(step_valid & ((k0 != 0) | cmd.accumulate)),
        ]
        # A stored M x K: row m from column k0 on; transposed (K x M): column m from row k0 on
        m.d.comb += [
            self.a_read.payload.row.eq(cmd.a_row + Mux(cmd.a_transpose, k0, slot)),
            self.a_read.payload.col.eq(cmd.a_col + Mux(cmd.a_transpose, slot, k0)),
            self.a_read.payload.column_mode.eq(cmd.a_transpose),
        ]
        m.d.comb += [
            self.a_read.valid.eq(step_valid),
            self.acc_read.valid.eq(needs_init),
            self.acc_read_claim.eq(needs_init),
            self.acc_read.payload.row.eq(cmd.c_row + slot),
            self.acc_read.payload.col.eq(cmd.c_col + n0),
            self.acc_read.payload.column_mode.eq(0),
        ]
        k_lanes = _lane_mask(m, k0, cmd.k, rows, name="step_k_lanes")
        n_lanes = _lane_mask(m, n0, cmd.n, cols, name="step_n_lanes")
        init_lanes = Signal(cols, name="init_lanes")
        m.d.comb += init_lanes.eq(Mux(needs_init, n_lanes, 0))

        latency = timing.spad_read_latency
        m.d.comb += [
            self.array_valid.eq(_delay(m, step_valid, latency, name="step_valid")),
            self.array_first.eq(_delay(m, step_first, latency, name="step_first")),
        ]
        k_lanes_at_array = _delay(m, k_lanes, latency, name="step_k_lanes")
        for r in range(rows):
            m.d.comb += self.array_a[r].eq(Mux(k_lanes_at_array[r], self.a_data.payload[r],
                                               _minus_zero(cfg.array.a_formats)))
        init_lanes_at_array = _delay(m, init_lanes, timing.acc_read_latency, name="init_lanes")
        for c in range(cols):
            m.d.comb += self.array_init[c].eq(Mux(init_lanes_at_array[c],
                                                  self.acc_data.payload[c], 0))

        # ---- weight loads -------------------------------------------------------------------
        loading = Signal(name="loading")
        load_row = Signal(range(rows), name="load_row")   # R-1-j for load j
        load_k0 = Signal(WIDE, name="load_k0")
        load_n0 = Signal(WIDE, name="load_n0")
        load_trigger = Signal(name="load_trigger")
        m.d.comb += load_trigger.eq(start | (stepping & (slot == timing.load_slot) & ~last_tile))
        with m.If(begin):
            m.d.sync += [load_k0.eq(0), load_n0.eq(0)]
        load_now = Signal(name="load_now")
        current_load_row = Signal(range(rows), name="load_row_now")
        m.d.comb += [
            load_now.eq(load_trigger | loading),
            current_load_row.eq(Mux(load_trigger, rows - 1, load_row)),
        ]
        if rows > 1:
            with m.If(load_trigger):
                m.d.sync += [loading.eq(1), load_row.eq(rows - 2)]
            with m.Elif(loading):
                m.d.sync += load_row.eq(load_row - 1)
                with m.If(load_row == 0):
                    m.d.sync += loading.eq(0)
        with m.If(load_now & (current_load_row == 0)):
            advance(load_k0, load_n0)
        weight_k = load_k0 + current_load_row
        weight_row_in = Signal(name="weight_row_inside")
        m.d.comb += weight_row_in.eq(load_now & (weight_k < cmd.k))
        # B stored K x N: row k from column n0 on; transposed (N x K): column k from row n0 on
        m.d.comb += [
            self.b_read.payload.row.eq(cmd.b_row + Mux(cmd.b_transpose, load_n0, weight_k)),
            self.b_read.payload.col.eq(cmd.b_col + Mux(cmd.b_transpose, weight_k, load_n0)),
            self.b_read.payload.column_mode.eq(cmd.b_transpose),
        ]
        weight_lanes = Signal(cols, name="weight_lanes")
        m.d.comb += [
            self.b_read.valid.eq(weight_row_in),
            weight_lanes.eq(Mux(weight_row_in,
                                _lane_mask(m, load_n0, cmd.n, cols, name="weight_n_lanes"), 0)),
        ]
        m.d.comb += self.array_load.eq(_delay(m, load_now, latency, name="load"))
        weight_lanes_at_array = _delay(m, weight_lanes, latency, name="weight_lanes")
        for c in range(cols):
            m.d.comb += self.array_weight[c].eq(Mux(weight_lanes_at_array[c],
                                                    self.b_data.payload[c],
                                                    _plus_zero(cfg.array.b_formats)))

        # ---- results ------------------------------------------------------------------------
        out_m = Signal(WIDE, name="out_m")
        out_k0 = Signal(WIDE, name="out_k0")
        out_n0 = Signal(WIDE, name="out_n0")
        with m.If(begin):
            m.d.sync += [out_m.eq(0), out_k0.eq(0), out_n0.eq(0)]
        out_last = Signal(name="out_last")              # the last row of the last tile
        m.d.comb += out_last.eq((out_m == cmd.m - 1) & (out_k0 + rows >= cmd.k)
                                & (out_n0 + cols >= cmd.n))
        with m.If(self.array_result_valid):
            with m.If(out_m == cmd.m - 1):
                m.d.sync += out_m.eq(0)
                advance(out_k0, out_n0)
            with m.Else():
                m.d.sync += out_m.eq(out_m + 1)
        write = self.acc_write.payload
        m.d.sync += [
            self.acc_write.valid.eq(self.array_result_valid),
            write.row.eq(cmd.c_row + out_m),
            write.col.eq(cmd.c_col + out_n0),
            write.mask.eq(_lane_mask(m, out_n0, cmd.n, cols, name="out_lanes")),
            write.data.eq(self.array_result),
            front["finished"].eq(self.array_result_valid & out_last),
        ]
        return m
