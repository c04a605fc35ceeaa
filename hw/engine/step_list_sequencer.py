"""Output-stationary sequencer that also runs *scheduled* commands: every tile steps through
its own list of ``k`` (the union of its filters' non-zero steps, chosen by the scheduler of
:mod:`sim.schedule`) and writes its lanes to their own columns (``EngineConfig.step_entries``).

A scheduled GEMM is laid out by the compiler in the format of :mod:`sim.step_lists`:

* the **step memory** (``step_entries`` entries of :func:`sim.engine_spec.step_index_bits`
  bits): every tile's steps, one list after the other;
* the **tile table** (``tile_entries`` entries): per tile, its first entry in the step memory,
  its length, its width (lanes used) and the column of each lane;
* B **compacted** in the B scratchpad: row ``b_row + p``, lanes from ``b_col`` on, holds the
  weights of step-memory entry ``p`` for the lanes of its tile.

The host writes both memories (``steps_write``, ``tiles_write``: one entry per cycle, checked
as written, :func:`sim.engine_spec.tile_entry_error`) and issues a command with ``scheduled``,
``tile_first`` and ``tile_count``. For each band of ``R`` rows of A, the sequencer runs the
tiles ``tile_first ..`` in table order (the *dispatcher*: the table is the schedule's tile
order and column permutation): tile ``g`` occupies ``max(length_g, min_tile_slots)`` issue
slots; slot ``j < length_g`` reads the step index ``k = steps[first_g + j]``, then
``A[m0 .. m0+R-1, k]`` and B row ``b_row + first_g + j`` (lanes of the tile's width, ``+0``
beyond; a tile of no steps makes one step of ``+0`` weights, so that its results are those of
an all-zero column of a dense command bit for bit). Shift groups, result latency and flush are
those of the dense sequencer, and each
result row is written with one *scatter* write: lane ``c`` to column ``c_col + cols_g[c]``
(the accumulator memory's banks select their lane, :class:`~hw.engine.scratchpad.
SkewedScratchpad` with ``scatter``; the table check keeps a tile's columns in distinct banks).
A dense command runs as before (its tiles are the natural ones), so this sequencer replaces
the dense one on an engine with step lists.

Both memories are read combinationally (the index and the tile entry reach the scratchpad
read requests in the cycle they are needed): the cycles are those of the dense schedule with
per-tile lengths, :func:`sim.engine_model.scheduled_cycles`.

``accumulate`` reads each tile's ``C_old`` rows with scatter reads of the same columns (a GEMM
whose K is split over several commands, each with its own step lists).

Errors: a scheduled command with ``b_transpose`` or tiles beyond the table is rejected
(``SCHEDULE``), as is one with ``tile_count = 0`` (``ZERO_SIZE``); met while running,
a step index ``>= k``, a compacted B row beyond the B scratchpad or a lane column ``>= n``
(that lane is not written) end the command with ``SCHEDULE``. The host's bad table writes
raise ``ACCESS_RANGE`` (address) or ``SCHEDULE`` (content) and are dropped. What the hardware
cannot see: two tiles writing one column, or a column no tile writes; the compiler's format
(:func:`sim.step_lists.step_lists`) refuses both.
"""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from hw.engine.commands import ErrorCode, step_write_layout, tile_write_layout
from hw.engine.scratchpad import scatter_read_layout, scatter_write_layout
from hw.engine.sequencer import (WIDE, OutputStationarySequencer, _advance_tile, _lane_mask,
                                 _step_read)
from sim.config import EngineConfig
from sim.engine_spec import step_index_bits

__all__ = ["StepListSequencer", "tile_entry_layout"]


def tile_entry_layout(config):
    """One tile-table entry as stored: ``first``, ``length``, ``width`` and the lanes'
    columns (``cols``, relative to the command's ``c_col``)."""
    col_bits = max(1, (config.acc_width - 1).bit_length())
    return data.StructLayout({
        "first": range(config.step_entries + 1),
        "length": range(config.step_entries + 1),
        "width": range(config.array.cols + 1),
        "cols": data.ArrayLayout(col_bits, config.array.cols),
    })


class StepListSequencer(OutputStationarySequencer):
    """The output-stationary sequencer with scheduled commands (module docstring).

    Parameters
    ----------
    config : EngineConfig
        With ``step_entries`` and ``tile_entries`` > 0.

    Latency: :func:`sim.engine_model.scheduled_cycles` of a scheduled command from accept to
    ``status.done``, :func:`sim.engine_model.command_cycles` of a dense one. Throughput: one
    command at a time; one step per cycle while a tile has ``>= min_tile_slots`` steps; one
    table entry per cycle on each write port.

    Ports
    -----
    Those of :class:`~hw.engine.sequencer.OutputStationarySequencer`, with ``acc_write`` a
    stream of :func:`~hw.engine.scratchpad.scatter_write_layout`, and:

    steps_write : stream of :func:`~hw.engine.commands.step_write_layout` (in, always ready)
    tiles_write : stream of :func:`~hw.engine.commands.tile_write_layout` (in, always ready)
    """

    def __init__(self, config):
        if isinstance(config, EngineConfig) and not config.step_lists:
            raise ValueError("config.step_entries and tile_entries must be > 0 for "
                             "StepListSequencer (without them: OutputStationarySequencer)")
        super().__init__(config)

    def _acc_write_layout(self):
        return scatter_write_layout(self.acc_geometry, unsigned(32))

    def _acc_read_layout(self):
        return scatter_read_layout(self.acc_geometry)

    def _extra_ports(self):
        return {"steps_write": In(stream.Signature(step_write_layout())),
                "tiles_write": In(stream.Signature(tile_write_layout(self.config)))}

    def _command_checks(self, incoming, zero_size, b_outside):
        cfg = self.config
        scheduled = incoming.scheduled
        zero_size = zero_size | (scheduled & (incoming.tile_count == 0))
        # compacted B: C lanes from b_col on (its rows are checked as they are read)
        compact_outside = ((incoming.b_row >= cfg.b_rows)
                           | (incoming.b_col + cfg.array.cols > cfg.spad_width))
        b_outside = Mux(scheduled, compact_outside, b_outside)
        bad = scheduled & (incoming.b_transpose
                           | (incoming.tile_first + incoming.tile_count > cfg.tile_entries))
        return zero_size, b_outside, Mux(bad, ErrorCode.SCHEDULE, ErrorCode.NONE)

    def _tile_step(self, cmd):
        return Mux(cmd.scheduled, 1, self.config.array.cols)

    def _tile_extent(self, cmd):
        return Mux(cmd.scheduled, cmd.tile_count, cmd.n)

    def elaborate(self, platform):
        m = Module()
        steps, tiles, table_error = self._memories(m)
        host_error = Signal(ErrorCode, name="host_error_all")
        m.d.comb += host_error.eq(Mux(self.host_error != ErrorCode.NONE, self.host_error,
                                      table_error))
        # met while running: sticky until the next command; with the last write, done
        # carries SCHEDULE
        bad = Signal(name="schedule_bad")
        bad_now = Signal(name="schedule_bad_now")
        self._run = {"steps": steps, "tiles": tiles, "bad_reasons": []}
        front = self._front_end(m, lambda cmd: cmd.k, host_error=host_error,
                                run_error=bad | bad_now)
        step_first = self._issue_steps(m, front)
        self._shift_groups(m, front, step_first)
        m.d.comb += bad_now.eq(Cat(self._run["bad_reasons"]).any())
        with m.If(front["begin"]):
            m.d.sync += bad.eq(0)
        with m.Elif(bad_now):
            m.d.sync += bad.eq(1)
        return m

    def _issue_steps(self, m, front):
        """Issue stream A: as the dense sequencer's, with per-tile lengths and the step
        index, B row and lanes of a scheduled command's tile. Returns the boundary signal."""
        cfg = self.config
        timing = self.timing
        rows, cols = cfg.array.rows, cfg.array.cols
        cmd = front["cmd"]
        scheduled = cmd.scheduled
        # n0: the first column (dense) or the tile's index in the table (scheduled)
        armed, stepping, flush, slot, m0, n0 = self._issue_counters(m, front)

        # the tile's entry and the slot's step (combinational reads)
        table = self._run["tiles"].read_port(domain="comb")
        entry = table.data
        m.d.comb += table.addr.eq(cmd.tile_first + n0)
        position = Signal(WIDE, name="step_position")
        m.d.comb += position.eq(entry.first + slot)
        index_port = self._run["steps"].read_port(domain="comb")
        m.d.comb += index_port.addr.eq(position)
        length = Signal(WIDE, name="tile_length")
        slots = Signal(WIDE, name="tile_slots_now")
        m.d.comb += [
            length.eq(Mux(scheduled, entry.length, cmd.k)),
            slots.eq(Mux(length > timing.min_tile_slots, length, timing.min_tile_slots)),
        ]
        k = Signal(WIDE, name="step_k")
        m.d.comb += k.eq(Mux(scheduled, index_port.data, slot))

        # a tile without steps still makes one step of +0 weights (skipped by the zero gate,
        # as the products of an all-zero column of a dense command are)
        empty = Signal(name="tile_empty")
        listed = Signal(name="step_listed")
        step_valid = Signal(name="step_valid")
        step_first = Signal(name="step_first")
        m.d.comb += [
            empty.eq(length == 0),
            listed.eq(stepping & (slot < length)),
            step_valid.eq(listed | (stepping & empty & (slot == 0))),
            step_first.eq((stepping & (slot == 0)) | flush),
        ]
        m.d.sync += flush.eq(0)
        with m.If(stepping):
            with m.If(slot == slots - 1):
                m.d.sync += slot.eq(0)
                _advance_tile(m, m0, n0, cmd, rows, self._tile_step(cmd),
                              [armed.eq(0), flush.eq(1)], extent=self._tile_extent(cmd))
            with m.Else():
                m.d.sync += slot.eq(slot + 1)
        self._run["bad_reasons"].append(
            listed & scheduled & ((k >= cmd.k) | (cmd.b_row + position >= cfg.b_rows)))

        m.d.comb += [self.a_read.valid.eq(step_valid), self.b_read.valid.eq(step_valid),
                     *_step_read(self.a_read, cmd, "a", m0, k)]
        with m.If(scheduled):           # compacted B: row b_row + position, from b_col on
            m.d.comb += [self.b_read.payload.row.eq(cmd.b_row + position),
                         self.b_read.payload.col.eq(cmd.b_col),
                         self.b_read.payload.column_mode.eq(0)]
        with m.Else():
            m.d.comb += _step_read(self.b_read, cmd, "b", n0, slot)
        a_lanes = _lane_mask(m, m0, cmd.m, rows, name="step_a_lanes")
        b_lanes = Signal(cols, name="step_b_lanes")
        m.d.comb += b_lanes.eq(Mux(scheduled,
                                   Mux(empty, 0, Cat(c < entry.width for c in range(cols))),
                                   _lane_mask(m, n0, cmd.n, cols, name="step_dense_lanes")))
        self._drive_array(m, step_valid, step_first, a_lanes, b_lanes)
        return step_first

    def _lanes(self, m, cmd, n0, row, valid, address, *, name):
        """Fill the scatter ``address`` (a read or write request) of row ``row`` of the tile
        at ``n0``: lane ``c`` at ``c_col + cols[c]`` of the tile's entry (scheduled) or
        ``c_col + n0 + c`` (dense); a scheduled lane whose column is ``>= n`` is left out and
        ends the command with ``SCHEDULE`` (when ``valid``)."""
        cols = self.config.array.cols
        table = self._run["tiles"].read_port(domain="comb")
        entry = table.data
        m.d.comb += table.addr.eq(cmd.tile_first + n0)
        dense = _lane_mask(m, n0, cmd.n, cols, name=f"{name}_dense_lanes")
        outside = []
        for c in range(cols):
            used = Signal(name=f"{name}_lane_{c}_used")
            m.d.comb += used.eq(c < entry.width)
            beyond = used & (entry.cols[c] >= cmd.n)
            outside.append(beyond)
            m.d.comb += [
                address.cols[c].eq(cmd.c_col + Mux(cmd.scheduled, entry.cols[c], n0 + c)),
                address.mask[c].eq(Mux(cmd.scheduled, used & ~beyond, dense[c])),
            ]
        m.d.comb += address.row.eq(cmd.c_row + row)
        self._run["bad_reasons"].append(valid & cmd.scheduled & Cat(outside).any())

    def _out_address(self, m, cmd, n0, row, valid):
        address = Signal(self._acc_write_layout(), name="out_address")
        self._lanes(m, cmd, n0, row, valid, address, name="out")
        return address

    def _init_read(self, m, cmd, n0, row, valid):
        request = self.acc_read.payload
        self._lanes(m, cmd, n0, row, valid, request, name="init")
        lanes = Signal(self.config.array.cols, name="init_lanes")
        m.d.comb += [self.acc_read.valid.eq(valid),
                     lanes.eq(Mux(valid, request.mask, 0))]
        return lanes

    # ---- the memories -------------------------------------------------------------------------

    def _memories(self, m):
        """The step memory and the tile table with their host write ports (checked); returns
        ``(steps, tiles, error)``: the memories and the host error code of this cycle."""
        cfg = self.config
        cols = cfg.array.cols
        steps = m.submodules.step_memory = Memory(shape=unsigned(step_index_bits(cfg)),
                                                  depth=cfg.step_entries, init=[])
        tiles = m.submodules.tile_table = Memory(shape=tile_entry_layout(cfg),
                                                 depth=cfg.tile_entries, init=[])
        m.d.comb += [self.steps_write.ready.eq(1), self.tiles_write.ready.eq(1)]

        step = self.steps_write.payload
        step_port = steps.write_port()
        step_outside = self.steps_write.valid & (step.addr >= cfg.step_entries)
        step_wide = self.steps_write.valid & (step.index >> step_index_bits(cfg) != 0)
        m.d.comb += [step_port.addr.eq(step.addr), step_port.data.eq(step.index),
                     step_port.en.eq(self.steps_write.valid & ~step_outside & ~step_wide)]

        entry = self.tiles_write.payload
        banks = cfg.acc_banks
        bank_bits = (banks - 1).bit_length()
        used = [Signal(name=f"tile_write_lane_{c}") for c in range(cols)]
        m.d.comb += [lane.eq(c < entry.width) for c, lane in enumerate(used)]
        clashes = [used[d] & ((entry.cols[c] ^ entry.cols[d])[:bank_bits] == 0)
                   for d in range(cols) for c in range(d)] if bank_bits else \
            [used[d] for d in range(1, cols)]
        column_outside = [used[c] & (entry.cols[c] >= cfg.acc_width) for c in range(cols)]
        bad_entry = Signal(name="tile_write_bad")
        m.d.comb += bad_entry.eq((entry.first + entry.length > cfg.step_entries)
                                 | (entry.width == 0) | (entry.width > cols)
                                 | Cat(*clashes, *column_outside).any())
        tile_outside = self.tiles_write.valid & (entry.addr >= cfg.tile_entries)
        tile_bad = self.tiles_write.valid & ~tile_outside & bad_entry
        tile_port = tiles.write_port()
        stored = Signal(tile_entry_layout(cfg), name="tile_write_entry")
        m.d.comb += [
            stored.first.eq(entry.first), stored.length.eq(entry.length),
            stored.width.eq(entry.width),
            *[stored.cols[c].eq(entry.cols[c]) for c in range(cols)],
            tile_port.addr.eq(entry.addr), tile_port.data.eq(stored),
            tile_port.en.eq(self.tiles_write.valid & ~tile_outside & ~bad_entry),
        ]
        error = Signal(ErrorCode, name="table_error")
        m.d.comb += error.eq(Mux(step_outside | tile_outside, ErrorCode.ACCESS_RANGE,
                                 Mux(step_wide | tile_bad, ErrorCode.SCHEDULE,
                                     ErrorCode.NONE)))
        return steps, tiles, error
