"""Timing contract of the systolic array: the one source of truth for the RTL, its sequencer,
the benches and the cycle model.

:class:`hw.engine.array.SystolicArray` implements these numbers; the tile sequencer and
:mod:`sim.engine_model` read them from here (pure Python, no Amaranth). Cycles are counted
from the cycle in which a step's inputs are presented, unskewed, at the array's ports; "an
action happens at cycle ``x``" means the register update at the clock edge that ends cycle ``x``.

Output stationary (:class:`OutputStationaryTiming`), with ``S = mul_stages``:

* PE ``(r, c)`` multiplies a step entered at cycle ``t`` at ``t + r + c`` and accumulates (or
  swaps its accumulator with its shadow, on ``first``) at ``t + r + c + S``;
* the swap of a tile whose ``first`` step entered at ``t`` starts at ``t + S`` (PE (0, 0)) and
  is done everywhere at ``t + swap_done_offset`` with ``swap_done_offset = R + C - 2 + S``;
  column ``c`` is done at ``t + c + column_swap_done_offset``, ``column_swap_done_offset =
  R - 1 + S``;
* a shift presented at cycle ``x`` moves column ``c``'s shadow chain at ``x + c`` (the array
  skews it, and the init row, like the operands), and the result row it takes out is at
  ``result_out``, deskewed, during ``x + shift_result_latency`` with ``shift_result_latency =
  C - 1``;
* the ``R`` shifts that move the finished tile out of the shadow chains (and the next tile's
  init rows in) go anywhere in ``[t + column_swap_done_offset + 1, t_next + S - 1]``, where
  ``t_next`` is the entry cycle of the next ``first``: hence ``t_next - t >= min_tile_cycles =
  2R``, whatever ``C``.

Weight stationary (:class:`WeightStationaryTiming`), with ``P = psum_stages`` registers in
each PE's adder (0: none):

* PE ``(r, c)`` multiplies a step at ``t + r (1 + P) + c``, with the weight it swapped in at
  that very cycle when the step carries ``first``; its partial sum leaves it at
  ``t + r (1 + P) + c + S + P``;
* the aligned output row of a step entered at ``t`` is at ``result_out`` during cycle
  ``t + result_latency`` with ``result_latency = R (1 + P) + C - 1 + S``;
* the ``R`` weight loads of the next tile go anywhere in ``[t + (R - 1)(1 + P) + C - 1,
  t_next - 1]``: ``t_next - t >= min_tile_cycles = (R - 1)(1 + P) + C - 1 + R`` (``2R + C
  - 2`` for ``P = 0``).

``schedule`` builds the tightest legal cycle-by-cycle schedule of a sequence of tiles (the
reference the benches drive and the sequencer follows); ``command_cycles`` is its length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .config import ArrayConfig

__all__ = ["OSCycle", "WSCycle", "OutputStationaryTiming", "WeightStationaryTiming",
           "array_timing"]


def _checked(config, dataflow):
    if not isinstance(config, ArrayConfig):
        raise ValueError(f"config must be an ArrayConfig, not {config!r}")
    if config.dataflow != dataflow:
        raise ValueError(f"config.dataflow must be {dataflow!r} here, not {config.dataflow!r}")
    return config


def _check_tiles(tiles, what):
    tiles = [list(tile) for tile in tiles]
    if not tiles:
        raise ValueError("tiles must hold at least one tile")
    for index, tile in enumerate(tiles):
        if not tile:
            raise ValueError(f"tile {index} has no step: a tile needs at least one {what} slot")
    return tiles


@dataclasses.dataclass
class OSCycle:
    """What the output-stationary array is driven with, and gives, in one cycle.

    Attributes
    ----------
    step : (tile, k) or None
        The operands entered this cycle (``valid=1``): column ``k`` of the tile's A block on
        ``a_in``, row ``k`` of its B block on ``b_in``. ``None``: a bubble (``valid=0``).
    first : bool
        ``first`` input: a tile starts (or, after the last tile, the flush step).
    shift : bool
        ``shift`` input: the shadow chain moves down by one row.
    shift_in : (tile, row) or None
        Init row entering on ``init_in`` during a shift (``None``: nothing useful).
    result : (tile, row) or None
        Result row at ``result_out`` this cycle (``None``: not a result); it was taken out by
        the shift ``shift_result_latency`` cycles earlier.
    """
    step: tuple[int, int] | None = None
    first: bool = False
    shift: bool = False
    shift_in: tuple[int, int] | None = None
    result: tuple[int, int] | None = None


@dataclasses.dataclass
class WSCycle:
    """What the weight-stationary array is driven with, and gives, in one cycle.

    Attributes
    ----------
    step : (tile, m) or None
        Row ``m`` of the tile's A stream (and its init row) entered this cycle (``valid=1``);
        ``None``: a bubble.
    first : bool
        ``first`` input: the step starts a tile (the PEs swap in the loaded weights).
    load : bool
        ``load`` input: the weight chain moves down by one row.
    load_row : (tile, row) or None
        Weight row of B entering on ``weight_in`` during a load.
    result : (tile, m) or None
        The aligned result row at ``result_out`` (``result_valid=1``).
    """
    step: tuple[int, int] | None = None
    first: bool = False
    load: bool = False
    load_row: tuple[int, int] | None = None
    result: tuple[int, int] | None = None


class _Timing:
    def __init__(self, config):
        self.config = config
        self.rows = config.rows
        self.cols = config.cols
        self.mul_stages = config.mul_stages

    def pe_offset(self, row: int, col: int) -> int:
        """Cycles from a step's entry to its multiply in PE ``(row, col)``."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise ValueError(f"PE ({row}, {col}) is outside the {self.rows}x{self.cols} array")
        return row + col

    def accumulate_offset(self, row: int, col: int) -> int:
        """Cycles from a step's entry to the accumulator (OS) or partial-sum (WS) register
        update of PE ``(row, col)`` that uses its product."""
        return self.pe_offset(row, col) + self.mul_stages

    def tile_cycles(self, steps: int) -> int:
        """Step slots a tile of ``steps`` steps occupies when another tile follows it."""
        return max(steps, self.min_tile_cycles)

    def command_cycles(self, steps_per_tile: Sequence[int]) -> int:
        """Length of :meth:`schedule` for tiles of these step counts (bubbles included)."""
        return len(self.schedule([[None] * n for n in steps_per_tile]))

    def __repr__(self):
        return f"{type(self).__name__}({self.config!r})"


class OutputStationaryTiming(_Timing):
    """Timing contract of the output-stationary array (see the module docstring).

    Parameters
    ----------
    config : ArrayConfig
        With ``dataflow="os"``.
    """

    def __init__(self, config):
        super().__init__(_checked(config, "os"))
        #: ``L``: tiles in flight at once, their steps interleaved (``acc_interleave``)
        self.interleave = config.acc_interleave

    @property
    def first_swap_offset(self) -> int:
        """Cycles from a ``first`` step's entry to the earliest swap (PE (0, 0))."""
        return self.mul_stages

    @property
    def swap_done_offset(self) -> int:
        """Cycles from a group's first ``first`` step's entry to the last swap (PE (R-1, C-1),
        the group's last tile)."""
        return self.rows + self.cols - 2 + self.mul_stages + self.interleave - 1

    @property
    def column_swap_done_offset(self) -> int:
        """Cycles from a group's first ``first`` step's entry, plus the column index ``c``, to
        the last swap of column ``c`` (PE (R-1, c)): the shifts a column sees come after it."""
        return self.rows - 1 + self.mul_stages + self.interleave - 1

    @property
    def shift_result_latency(self) -> int:
        """Cycles from a shift at the ports to its result row at ``result_out`` (column ``c``
        shifts ``c`` cycles late and is delayed ``C - 1 - c`` more to align the row)."""
        return self.cols - 1

    @property
    def shifts_per_tile(self) -> int:
        """Shift cycles that move one group's results out and the next group's init rows in
        (the row pushed in first ends at the bottom): ``R L``, shift ``j`` carrying row
        ``R - 1 - j // L`` of the group's tile ``j % L`` (``L = 1``: rows R-1, ..., 0)."""
        return self.rows * self.interleave

    def shift_row(self, j: int) -> tuple[int, int]:
        """``(tile within its group, row)`` that shift ``j`` of a group's shifts carries."""
        return j % self.interleave, self.rows - 1 - j // self.interleave

    @property
    def min_tile_cycles(self) -> int:
        """Fewest cycles between the first ``first`` steps of consecutive groups: in every
        column the swaps of one group, then its shifts, all before the next group's first swap
        in row 0 (``2R`` for ``L = 1``, ``R L + R + L - 1`` in general)."""
        return self.column_swap_done_offset - self.first_swap_offset + self.shifts_per_tile + 1

    @property
    def first_tile_start(self) -> int:
        """Entry cycle of the first tile's ``first`` step when its init rows are shifted in at
        cycles ``0 .. R-1`` (the last init shift precedes PE (0, 0)'s swap)."""
        return max(0, self.shifts_per_tile - self.first_swap_offset)

    def shift_window(self, first_cycle: int, next_first_cycle: int) -> range:
        """Cycles in which the shifts after the tile entered at ``first_cycle`` may be
        presented, when the next ``first`` step (a tile or the flush) enters at
        ``next_first_cycle``."""
        return range(first_cycle + self.column_swap_done_offset + 1,
                     next_first_cycle + self.first_swap_offset)

    def schedule(self, tiles: Sequence[Sequence[int | None]]) -> list[OSCycle]:
        """Cycle-by-cycle reference schedule of a command.

        ``tiles[T]`` lists the step slots of tile ``T`` in order: ``k`` (a step) or ``None``
        (a bubble); ``first`` goes on the first slot, whatever it holds. Tiles go in groups of
        ``L`` (the last group may hold fewer): slot ``i`` of a group's tile ``l`` is entered
        at ``i L + l`` cycles after the group starts, each tile padded with bubbles to the
        group's longest and the group to at least :attr:`min_tile_cycles`. The init rows of
        group 0 are shifted in at cycles ``0 .. R L - 1``; after each group's swaps its
        ``R L`` shifts come as early as possible; after the last group ``L`` flush steps
        (``valid=0, first=1``) swap the last results into the shadows and ``R L`` more shifts
        bring them out. Every cycle of the command is listed, up to the last result row.
        ``L = 1``: one tile after the other.
        """
        tiles = _check_tiles(tiles, "step")
        interleave = self.interleave
        groups = [tiles[i:i + interleave] for i in range(0, len(tiles), interleave)]
        fewest = -(-self.min_tile_cycles // interleave)        # slots per tile of a group
        lengths = [max(fewest, *(len(tile) for tile in group)) for group in groups]
        starts = [self.first_tile_start]
        for length in lengths:
            starts.append(starts[-1] + length * interleave)
        flush = starts[-1]
        shift_start = self.column_swap_done_offset + 1
        shifts = self.shifts_per_tile
        cycles = [OSCycle() for _ in range(flush + shift_start + shifts
                                           + self.shift_result_latency)]
        for g, (group, start, length) in enumerate(zip(groups, starts, lengths)):
            for lane in range(interleave):
                tile = group[lane] if lane < len(group) else []
                for index in range(length):
                    cycle = cycles[start + index * interleave + lane]
                    k = tile[index] if index < len(tile) else None
                    cycle.step = None if k is None else (g * interleave + lane, k)
                    cycle.first = index == 0
        for lane in range(interleave):
            cycles[flush + lane].first = True
        for j in range(shifts):
            lane, row = self.shift_row(j)
            cycles[j].shift = True
            if lane < len(groups[0]):
                cycles[j].shift_in = (lane, row)
        for g, start in enumerate(starts):           # a group's swaps, or the flush
            for j in range(shifts):
                lane, row = self.shift_row(j)
                shift = start + shift_start + j
                cycles[shift].shift = True
                if g + 1 < len(groups) and lane < len(groups[g + 1]):
                    cycles[shift].shift_in = ((g + 1) * interleave + lane, row)
                if g >= 1 and lane < len(groups[g - 1]):
                    cycles[shift + self.shift_result_latency].result = (
                        (g - 1) * interleave + lane, row)
        return cycles


class WeightStationaryTiming(_Timing):
    """Timing contract of the weight-stationary array (see the module docstring).

    Parameters
    ----------
    config : ArrayConfig
        With ``dataflow="ws"``.
    """

    def __init__(self, config):
        super().__init__(_checked(config, "ws"))
        #: ``P``: pipeline registers in each PE's adder (``psum_stages``); a step spends
        #: ``1 + P`` cycles in each row
        self.psum_stages = config.psum_stages

    @property
    def row_cycles(self) -> int:
        """Cycles a step spends in one row of PEs: ``1 + P``."""
        return 1 + self.psum_stages

    def pe_offset(self, row: int, col: int) -> int:
        """Cycles from a step's entry to its multiply in PE ``(row, col)``: ``row (1 + P) +
        col``."""
        super().pe_offset(row, col)
        return row * self.row_cycles + col

    def accumulate_offset(self, row: int, col: int) -> int:
        """Cycles from a step's entry to the partial-sum register update of PE ``(row,
        col)`` that holds its sum (after the multiplier's ``S`` and the adder's ``P``
        registers)."""
        return self.pe_offset(row, col) + self.mul_stages + self.psum_stages

    @property
    def result_latency(self) -> int:
        """Cycles from a step's entry to its aligned result row at ``result_out``."""
        return self.rows * self.row_cycles + self.cols - 1 + self.mul_stages

    @property
    def loads_per_tile(self) -> int:
        """Load cycles that bring a tile's weights in (B row R-1 first, row 0 last)."""
        return self.rows

    @property
    def last_swap_offset(self) -> int:
        """Cycles from a ``first`` step's entry to the last PE's weight swap (PE (R-1, C-1));
        the next tile's loads may start in that very cycle."""
        return self.pe_offset(self.rows - 1, self.cols - 1)

    @property
    def min_tile_cycles(self) -> int:
        """Fewest cycles between the ``first`` steps of consecutive tiles: the next weights
        load after the last swap and before the next tile's first swap (PE (0, 0))."""
        return self.last_swap_offset + self.loads_per_tile

    @property
    def first_tile_start(self) -> int:
        """Entry cycle of the first tile's ``first`` step when its weights load at
        ``0 .. R-1``."""
        return self.loads_per_tile

    def load_window(self, first_cycle: int, next_first_cycle: int) -> range:
        """Cycles in which the next tile's weight loads may go, between the tile entered at
        ``first_cycle`` and the next tile entered at ``next_first_cycle``."""
        return range(first_cycle + self.last_swap_offset, next_first_cycle)

    def schedule(self, tiles: Sequence[Sequence[int | None]]) -> list[WSCycle]:
        """Cycle-by-cycle reference schedule of a sequence of weight tiles.

        ``tiles[T]`` lists the step slots of tile ``T``: ``m`` (a row of the A stream) or
        ``None`` (a bubble); ``first`` goes on the first slot. Tile 0's weights load at
        ``0 .. R-1``; each next tile's weights load as early as possible; tiles other than the
        last are padded with bubbles to :attr:`min_tile_cycles`. The list ends with the last
        result row.
        """
        tiles = _check_tiles(tiles, "row")
        rows = self.rows
        starts = [self.first_tile_start]
        for tile in tiles[:-1]:
            starts.append(starts[-1] + self.tile_cycles(len(tile)))
        end = starts[-1] + len(tiles[-1]) + self.result_latency
        cycles = [WSCycle() for _ in range(end)]
        for index, (start, tile) in enumerate(zip(starts, tiles)):
            load_start = 0 if index == 0 else starts[index - 1] + self.last_swap_offset
            for j in range(rows):
                cycles[load_start + j].load = True
                cycles[load_start + j].load_row = (index, rows - 1 - j)
            for offset, m in enumerate(tile):
                cycle = cycles[start + offset]
                cycle.first = offset == 0
                if m is not None:
                    cycle.step = (index, m)
                    cycles[start + offset + self.result_latency].result = (index, m)
        return cycles


def array_timing(config):
    """The timing contract of ``config.dataflow``."""
    if not isinstance(config, ArrayConfig):
        raise ValueError(f"config must be an ArrayConfig, not {config!r}")
    return {"os": OutputStationaryTiming, "ws": WeightStationaryTiming}[config.dataflow](config)
