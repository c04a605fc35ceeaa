"""Zero-skipping tile sequencer of the output-stationary engine: a lookahead window of ``d``
steps in which every array row picks its own next step with work (``ArrayConfig.skip_window``).

The output-stationary sequencer (:mod:`hw.engine.sequencer`) issues every step ``k`` of a tile
to every row. This one issues, in each cycle and to each array row ``r``, the first step of the
window ``[b, b + d)`` that the row still *needs* (``A[m0 + r, k]`` non-zero and some
``B[k, n0 + c]`` non-zero), and slides the window to the first step some row still needs
(at most ``d`` steps per cycle). The B rows of the whole window flow down the columns; each
row's A operand carries the window position it took, and the PE multiplies it by that B
operand (:class:`~hw.engine.pe.OutputStationaryPE`); a row without a step gets ``+0``, which
the PEs' zero gate skips. The cycles are those of
``sim.skip_model.SkipOption(schedule="lookahead", depth=d)`` plus a constant:
:func:`sim.skip_timing.engine_cycles` (asserted by the benches).

Where the zero flags come from
------------------------------
The decisions need the zero flags of the window's steps before their operands are read. The
engine keeps, next to every operand scratchpad, a *flag plane*: a skewed scratchpad of 1-bit
elements written with ``operand_nonzero`` of every operand the host writes (zero detect on the
write path, :func:`hw.sparsity.zero_detect.operand_nonzero`). The sequencer reads the flag
planes ahead of the decisions, ``d`` steps per cycle in tile order (``d`` copies, one per
step of a group), and queues *groups* of ``d`` steps (per step: the ``R`` A flags of the tile's
rows and "some B flag of the tile's columns"); a read is made only while the queue and the
reads in flight leave room (:attr:`SkipSequencer.QUEUE_GROUPS`). The window takes its flags
from the queue's first two groups. Once decided, the window's ``d`` steps are read from ``d``
copies of each operand scratchpad (position ``b + j`` from copy ``j``) and meet the array
``spad_read_latency`` cycles later, as in the dense engine.

Output masks
------------
With ``EngineConfig.output_mask`` a command that selects a mask (``mask_host`` /
``mask_dropout``, :mod:`hw.engine.mask`) also needs, per tile, the rows and columns with a kept
output: :meth:`SkipSequencer._mask_summaries` reads them from the keep planes ahead of the
window, and the window ANDs them into the A flags and into the B flags before their OR (so the
flag queue keeps all ``C`` B flags per step). The first window cycle then also waits for the
first tile's summary (:func:`sim.skip_timing.lookahead_latency` with ``masked``).

Schedule
--------
* Accept and check as in the dense sequencer; the flag reads start at issue time 0, and the
  first window cycle is the first cycle whose flags are queued (issue time
  ``READ_LATENCY + 1``) or ``first_tile_issue`` with ``accumulate``, whichever is later
  (:func:`sim.skip_timing.lookahead_latency`).
* A tile runs for ``T`` window cycles (the window model), then idles until it has occupied
  ``max(T, min_tile_slots)`` cycles, as every tile of the dense engine; its first window cycle
  carries ``first``. Shift groups, ``C_old`` reads and result writes are those of the dense
  sequencer, timed from each tile's first cycle.
"""

from amaranth import Array, Cat, Mux, Signal, unsigned
from amaranth.lib import data, fifo
from amaranth.lib.wiring import Out

from hw.engine.pe import select_shape
from hw.engine.scratchpad import READ_LATENCY
from hw.engine.sequencer import (WIDE, OutputStationarySequencer, _advance_tile, _delay,
                                 _lane_mask, _plus_zero, _step_read)
from hw.fp.operand import Operand
from sim.config import MAX_SKIP_WINDOW, EngineConfig

__all__ = ["SkipSequencer"]


def _lowest(m, bits, width, *, name):
    """``(any, index)``: whether ``bits`` has a set bit, and the lowest one's index (``width``
    if none)."""
    index = Signal(range(width + 1), name=name)
    value = width
    for j in reversed(range(width)):
        value = Mux(bits[j], j, value)
    m.d.comb += index.eq(value)
    return bits.any(), index


class SkipSequencer(OutputStationarySequencer):
    """Output-stationary sequencer with a zero-skipping lookahead window (module docstring).

    Parameters
    ----------
    config : EngineConfig
        ``config.array``: ``dataflow="os"``, ``skip_zeros=True`` and ``skip_window = d >= 2``.

    Latency: :func:`sim.skip_timing.engine_cycles` from accept to ``status.done``. Throughput: one command at a time; up to ``d`` steps per cycle.

    Ports
    -----
    Those of :class:`~hw.engine.sequencer.OutputStationarySequencer`, with ``array_b`` of
    ``C`` x ``d`` operands (the window) and ``array_a_select`` (``R`` window positions), and:

    a_read_<j>, a_data_<j>, b_read_<j>, b_data_<j> : reads of operand scratchpad copy ``j``,
        ``j = 1 .. d-1`` (copy 0 is ``a_read`` / ``a_data``, ``b_read`` / ``b_data``)
    a_flag_read_<j>, a_flag_data_<j>, b_flag_read_<j>, b_flag_data_<j> : reads of flag plane
        copy ``j = 0 .. d-1`` (1-bit elements: operand non-zero)
    """

    #: Flag groups (``d`` steps each) the queue holds, reads in flight included.
    QUEUE_GROUPS = READ_LATENCY + 3
    #: Tiles whose mask summaries are read ahead (output masks; enough that only the first
    #: tile of a command ever waits for its summary, for any ``R``).
    SUMMARY_TILES = 4
    #: Read ports of each keep plane: the result writes' and the summary reader's.
    MASK_READERS = 2

    def __init__(self, config):
        # (the base class rejects anything but an EngineConfig)
        if isinstance(config, EngineConfig) and config.array.skip_window < 2:
            raise ValueError(f"config.array.skip_window must be 2..{MAX_SKIP_WINDOW} for "
                             f"SkipSequencer, not {config.array.skip_window} (1 is the dense "
                             f"OutputStationarySequencer)")
        super().__init__(config)

    def _array_ports(self):
        ports = super()._array_ports()
        rows, cols = self.config.array.rows, self.config.array.cols
        window = self.config.array.skip_window
        ports["array_b"] = Out(data.ArrayLayout(data.ArrayLayout(Operand, window), cols))
        ports["array_a_select"] = Out(data.ArrayLayout(select_shape(window), rows))
        return ports

    def _extra_ports(self):
        window = self.config.array.skip_window
        ports = {}
        for prefix, geometry in (("a", self.a_geometry), ("b", self.b_geometry)):
            for j in range(1, window):
                for name, port in self._read_ports(geometry, Operand).items():
                    ports[f"{prefix}_{name}_{j}"] = port
            for j in range(window):
                for name, port in self._read_ports(geometry, unsigned(1)).items():
                    ports[f"{prefix}_flag_{name}_{j}"] = port
        return ports

    def _copy(self, prefix, j, kind):
        """Port ``kind`` ("read" / "data") of operand copy or flag copy ``j``."""
        if prefix.endswith("flag") or j:
            return getattr(self, f"{prefix}_{kind}_{j}")
        return getattr(self, f"{prefix}_{kind}")

    def _mask_summaries(self, m, front):
        """Output masks (``config.output_mask``): ``(row_keep, col_keep, ready, pop)`` of the
        window's tile, from a queue of tile summaries; the window drives ``pop`` high in its
        tile's last cycle. A reader goes through the tiles in
        order from issue time 0 (a command that selects a mask only), reading the keep planes'
        ``R`` rows of each (one per cycle, read port 1) while fewer than
        :attr:`SUMMARY_TILES` tiles are read or queued; ``row_keep`` bit ``r`` is set when row
        ``r`` of the tile has a kept output, ``col_keep`` bit ``c`` when column ``c`` does
        (lanes outside the command never). The window pops a summary at its tile's end. Without
        ``output_mask``, no hardware (None)."""
        cfg = self.config
        rows, cols = cfg.array.rows, cfg.array.cols
        if not cfg.output_mask:
            return None
        cmd, incoming = front["cmd"], front["incoming"]
        masked = Signal(name="masked")
        m.d.comb += masked.eq(cmd.mask_host | cmd.mask_dropout)
        queue = m.submodules.mask_summaries = fifo.SyncFIFO(width=rows + cols,
                                                           depth=self.SUMMARY_TILES)
        pop = Signal(name="summary_pop")             # the window's tile ends
        popped = Signal(name="summary_popped")       # ... and it had a summary
        m.d.comb += popped.eq(pop & masked)
        s_armed = Signal(name="summary_armed")
        s_m0 = Signal(WIDE, name="summary_m0")
        s_n0 = Signal(WIDE, name="summary_n0")
        s_r = Signal(range(rows), name="summary_row")
        reserved = Signal(range(self.SUMMARY_TILES + 1), name="summary_reserved")
        reading = Signal(name="summary_read")
        starting = Signal(name="summary_tile_start")
        m.d.comb += [
            reading.eq(s_armed & ((s_r != 0) | (reserved < self.SUMMARY_TILES))),
            starting.eq(reading & (s_r == 0)),
        ]
        with m.If(front["begin"]):
            m.d.sync += [s_armed.eq(incoming.mask_host | incoming.mask_dropout),
                         s_m0.eq(0), s_n0.eq(0), s_r.eq(0), reserved.eq(0)]
        with m.Else():
            m.d.sync += reserved.eq(reserved + starting - popped)
            with m.If(reading):
                with m.If(s_r == rows - 1):
                    m.d.sync += s_r.eq(0)
                    _advance_tile(m, s_m0, s_n0, cmd, rows, cols, [s_armed.eq(0)])
                with m.Else():
                    m.d.sync += s_r.eq(s_r + 1)
        row = s_m0 + s_r
        kept = self._keep_row(m, cmd, 1, reading & (row < cmd.m), cmd.c_row + row,
                              cmd.c_col + s_n0)
        lanes = _delay(m, _lane_mask(m, s_n0, cmd.n, cols, name="summary_lanes"),
                       READ_LATENCY, name="summary_lanes")
        first = _delay(m, starting, READ_LATENCY, name="summary_first")
        last = _delay(m, reading & (s_r == rows - 1), READ_LATENCY, name="summary_last")
        index = _delay(m, s_r, READ_LATENCY, name="summary_row")
        arrived = Signal(cols, name="summary_arrived")
        m.d.comb += arrived.eq(kept & lanes)
        row_bits = Signal(rows, name="summary_rows")
        col_bits = Signal(cols, name="summary_cols")
        row_next = Mux(first, 0, row_bits) | Cat((index == r) & arrived.any()
                                                 for r in range(rows))
        col_next = Mux(first, 0, col_bits) | arrived
        m.d.sync += [row_bits.eq(row_next), col_bits.eq(col_next)]
        m.d.comb += [
            queue.w_en.eq(last),
            queue.w_data.eq(Cat(row_next, col_next)),
            queue.r_en.eq(popped),
        ]
        # a command without a mask keeps everything and never waits
        row_keep = Signal(rows, name="tile_row_keep")
        col_keep = Signal(cols, name="tile_col_keep")
        ready = Signal(name="summary_ready")
        m.d.comb += [
            row_keep.eq(Mux(masked, queue.r_data[:rows], (1 << rows) - 1)),
            col_keep.eq(Mux(masked, queue.r_data[rows:], (1 << cols) - 1)),
            ready.eq(queue.r_rdy | ~masked),
        ]
        return row_keep, col_keep, ready, pop

    def _issue_steps(self, m, front):
        cfg = self.config
        timing = self.timing
        rows, cols = cfg.array.rows, cfg.array.cols
        d = cfg.array.skip_window
        cmd, incoming = front["cmd"], front["incoming"]
        queue_groups = self.QUEUE_GROUPS
        masking = cfg.output_mask
        b_width = cols if masking else 1          # queued B flags per step

        # ---- flag reads, d steps per cycle in tile order ----------------------------------------
        f_armed = Signal(name="flag_armed")
        f_m0 = Signal(WIDE, name="flag_m0")
        f_n0 = Signal(WIDE, name="flag_n0")
        f_k = Signal(WIDE, name="flag_k")
        count = Signal(range(queue_groups + 1), name="queue_count")
        in_flight = Signal(range(READ_LATENCY + 1), name="flag_reads_in_flight")
        f_issue = Signal(name="flag_issue")
        m.d.comb += f_issue.eq(f_armed & (count + in_flight < queue_groups))
        issue_taps = [f_issue]
        for stage in range(READ_LATENCY):
            tap = Signal(name=f"flag_issue_d{stage + 1}")
            m.d.sync += tap.eq(issue_taps[-1])
            issue_taps.append(tap)
        m.d.comb += in_flight.eq(sum(issue_taps[1:READ_LATENCY + 1]))
        with m.If(front["begin"]):
            m.d.sync += [f_armed.eq(1), f_m0.eq(0), f_n0.eq(0), f_k.eq(0)]
        with m.Elif(f_issue):
            with m.If(f_k + d >= cmd.k):
                m.d.sync += f_k.eq(0)
                _advance_tile(m, f_m0, f_n0, cmd, rows, cols, [f_armed.eq(0)])
            with m.Else():
                m.d.sync += f_k.eq(f_k + d)
        f_a_lanes = _delay(m, _lane_mask(m, f_m0, cmd.m, rows, name="flag_a_lanes"),
                           READ_LATENCY, name="flag_a_lanes")
        f_b_lanes = _delay(m, _lane_mask(m, f_n0, cmd.n, cols, name="flag_b_lanes"),
                           READ_LATENCY, name="flag_b_lanes")
        group_a, group_b = [], []          # the arriving group: per step, A flags and B "any"
        for j in range(d):
            step_in = Signal(name=f"flag_step_{j}")
            m.d.comb += step_in.eq(f_issue & (f_k + j < cmd.k))
            for prefix, origin in (("a_flag", f_m0), ("b_flag", f_n0)):
                port = self._copy(prefix, j, "read")
                m.d.comb += [port.valid.eq(step_in),
                             *_step_read(port, cmd, prefix[0], origin, f_k + j)]
            # a step past the tile's K was not read: its flag planes' data are not valid
            a_data = self._copy("a_flag", j, "data")
            b_data = self._copy("b_flag", j, "data")
            a_bits = Signal(rows, name=f"group_a_{j}")
            b_lanes = Cat(b_data.payload[c] for c in range(cols)) & f_b_lanes
            m.d.comb += a_bits.eq(Mux(a_data.valid,
                                      Cat(a_data.payload[r] for r in range(rows)) & f_a_lanes,
                                      0))
            if masking:     # the B flags wait for the tile's column summary: all C queued
                b_any = Signal(cols, name=f"group_b_{j}")
                m.d.comb += b_any.eq(Mux(b_data.valid, b_lanes, 0))
            else:
                b_any = Signal(name=f"group_b_any_{j}")
                m.d.comb += b_any.eq(b_data.valid & b_lanes.any())
            group_a.append(a_bits)
            group_b.append(b_any)
        push = issue_taps[READ_LATENCY]
        group_layout = data.StructLayout({"a": rows * d, "b": b_width * d})
        pushed = Signal(group_layout, name="group_in")
        m.d.comb += [pushed.a.eq(Cat(group_a)), pushed.b.eq(Cat(group_b))]

        # ---- the queue of flag groups ---------------------------------------------------------
        entries = [Signal(group_layout, name=f"queue_{i}") for i in range(queue_groups)]
        pops = Signal(range(3), name="queue_pops")
        for i, entry in enumerate(entries):
            moved = Array([entries[i + p] if i + p < queue_groups else pushed
                           for p in range(3)])[pops]
            m.d.sync += entry.eq(Mux(i + pops < count, moved, pushed))
        m.d.sync += count.eq(count + push - pops)

        # ---- the window ---------------------------------------------------------------------
        armed = Signal(name="step_armed")           # tiles (or the flush) still to issue
        step_wait = Signal(range(timing.first_tile_issue + 1), name="step_wait")
        b = Signal(WIDE, name="window_base")         # first step of the window
        offset = Signal(range(d), name="window_offset")    # b - (first step of the head group)
        done = [Signal(d, name=f"window_done_{r}") for r in range(rows)]   # steps row r took
        in_window = Signal(init=1, name="window_phase")    # 0: the tile waits for its floor
        fresh = Signal(init=1, name="tile_fresh")          # the tile has not started
        tile_cycle = Signal(range(timing.min_tile_slots), name="tile_cycle")
        m0 = Signal(WIDE, name="step_m0")
        n0 = Signal(WIDE, name="step_n0")
        flush = Signal(name="flush")

        positions_a = [entry.a[j * rows:(j + 1) * rows] for entry in entries[:2]
                       for j in range(d)]
        positions_b = [entry.b[j * b_width:(j + 1) * b_width] for entry in entries[:2]
                       for j in range(d)]
        summaries = self._mask_summaries(m, front)
        if masking:
            row_keep, col_keep, summary_ready, summary_pop = summaries
        window_a, window_b, inside = [], [], []
        for j in range(d):
            a_j = Signal(rows, name=f"window_a_{j}")
            b_j = Signal(name=f"window_b_any_{j}")
            in_j = Signal(name=f"window_in_{j}")
            b_flags = Array(positions_b)[offset + j]
            a_flags = Array(positions_a)[offset + j]
            m.d.comb += [a_j.eq(a_flags & row_keep if masking else a_flags),
                         b_j.eq((b_flags & col_keep).any() if masking else b_flags),
                         in_j.eq(b + j < cmd.k)]
            window_a.append(a_j)
            window_b.append(b_j)
            inside.append(in_j)
        group_start = b - offset
        next_in_tile = Signal(name="window_next_group_in_tile")
        m.d.comb += next_in_tile.eq(group_start + d < cmd.k)
        flags_ready = Signal(name="window_flags_ready")
        m.d.comb += flags_ready.eq((count >= 1) & ((offset == 0) | ~next_in_tile | (count >= 2)))
        running = Signal(name="window_running")      # a window cycle of the current tile
        ready = flags_ready & summary_ready if masking else flags_ready
        m.d.comb += running.eq(armed & (step_wait == 0) & in_window & ready)

        issue = Signal(rows, name="row_issue")
        selects = [Signal(select_shape(d), name=f"row_select_{r}") for r in range(rows)]
        remaining = []
        taken = []
        for r in range(rows):
            avail = Signal(d, name=f"row_avail_{r}")
            m.d.comb += avail.eq(Cat(inside[j] & window_a[j][r] & window_b[j] & ~done[r][j]
                                     for j in range(d)))
            rest = Signal(d, name=f"row_rest_{r}")
            m.d.comb += rest.eq(avail & (avail - 1))          # all but the lowest
            any_avail, lowest = _lowest(m, avail, d, name=f"row_lowest_{r}")
            m.d.comb += [issue[r].eq(running & any_avail), selects[r].eq(lowest)]
            remaining.append(rest)
            taken.append(avail ^ rest)
        still_needed = Signal(d, name="window_still_needed")
        m.d.comb += still_needed.eq(Cat(Cat(rest[j] for rest in remaining).any()
                                        for j in range(d)))
        _, advance = _lowest(m, still_needed, d, name="window_advance")
        tile_end = Signal(name="window_tile_end")
        m.d.comb += tile_end.eq(running & (b + advance >= cmd.k))
        closing = Signal(name="tile_closing")        # the tile's last occupied cycle
        tile_open = Signal(name="tile_open")
        m.d.comb += [
            tile_open.eq(armed & (step_wait == 0) & (~fresh | running)),
            closing.eq(tile_open & (tile_end | ~in_window)
                       & (tile_cycle == timing.min_tile_slots - 1)),
        ]

        with m.If(front["begin"]):
            m.d.sync += [armed.eq(1),
                         step_wait.eq(Mux(incoming.accumulate, timing.first_tile_issue, 0)),
                         m0.eq(0), n0.eq(0), b.eq(0), offset.eq(0), in_window.eq(1),
                         fresh.eq(1), tile_cycle.eq(0), *[row.eq(0) for row in done]]
        with m.If(armed & (step_wait != 0)):
            m.d.sync += step_wait.eq(step_wait - 1)
        floor = timing.min_tile_slots - 1
        with m.If(tile_open):                         # counts to the floor, then holds
            m.d.sync += [tile_cycle.eq(Mux(tile_cycle >= floor, floor, tile_cycle + 1)),
                         fresh.eq(0)]
        m.d.comb += pops.eq(0)
        with m.If(running):
            with m.If(tile_end):
                m.d.sync += [b.eq(0), offset.eq(0), *[row.eq(0) for row in done],
                             in_window.eq(0)]
                if masking:
                    m.d.comb += summary_pop.eq(1)
                m.d.comb += pops.eq(1 + ((offset != 0) & next_in_tile))
            with m.Else():
                m.d.sync += b.eq(b + advance)
                wrapped = offset + advance
                m.d.sync += offset.eq(Mux(wrapped >= d, wrapped - d, wrapped))
                m.d.comb += pops.eq(wrapped >= d)
                for r in range(rows):
                    m.d.sync += done[r].eq((done[r] | taken[r]) >> advance)
        m.d.sync += flush.eq(0)
        with m.If(closing):
            m.d.sync += [tile_cycle.eq(0), fresh.eq(1), in_window.eq(1)]
            _advance_tile(m, m0, n0, cmd, rows, cols, [armed.eq(0), flush.eq(1)])

        step_first = Signal(name="step_first")
        m.d.comb += step_first.eq((running & fresh) | flush)

        # ---- operand reads of the window's steps, and the array ---------------------------------
        for j in range(d):
            read_j = Signal(name=f"step_read_{j}")
            m.d.comb += read_j.eq(running & inside[j])
            for prefix, origin in (("a", m0), ("b", n0)):
                port = self._copy(prefix, j, "read")
                m.d.comb += [port.valid.eq(read_j),
                             *_step_read(port, cmd, prefix, origin, b + j)]
        latency = timing.spad_read_latency
        b_lanes = _lane_mask(m, n0, cmd.n, cols, name="step_b_lanes")
        m.d.comb += [
            self.array_valid.eq(_delay(m, running, latency, name="step_valid")),
            self.array_first.eq(_delay(m, step_first, latency, name="step_first")),
        ]
        # (a row outside M never issues: its flags were masked as they were queued)
        issue_at_array = _delay(m, issue, latency, name="row_issue")
        b_lanes_at_array = _delay(m, b_lanes, latency, name="step_b_lanes")
        a_zero = _plus_zero(cfg.array.a_formats)
        b_zero = _plus_zero(cfg.array.b_formats)
        a_copies = [self._copy("a", j, "data").payload for j in range(d)]
        b_copies = [self._copy("b", j, "data").payload for j in range(d)]
        for r in range(rows):
            select_at_array = _delay(m, selects[r], latency, name=f"row_select_{r}")
            chosen = Array([copy[r] for copy in a_copies])[select_at_array]
            m.d.comb += [
                self.array_a[r].eq(Mux(issue_at_array[r], chosen, a_zero)),
                self.array_a_select[r].eq(select_at_array),
            ]
        for c in range(cols):
            for j in range(d):
                m.d.comb += self.array_b[c][j].eq(Mux(b_lanes_at_array[c], b_copies[j][c],
                                                      b_zero))
        return step_first
