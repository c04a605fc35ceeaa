"""What the GEMM engine's gateware is built from and its models predict with: the width of the
command fields, the error codes, the latencies, and the schedule constants of the tile
sequencers (:class:`EngineTiming`). One place, below the gateware (``hw/engine``) and the models
(:mod:`sim.engine_model`, :mod:`sim.skip_timing`) alike; it imports only the configuration and
the array's timing contract. Pure Python: no Amaranth here.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import TYPE_CHECKING

from .array_timing import OutputStationaryTiming, WeightStationaryTiming
from .config import EngineConfig

if TYPE_CHECKING:        # a command: anything with the fields of sim.engine_model.EngineCommand
    from .engine_model import EngineCommand

__all__ = ["step_index_bits", "tile_entry_error", "FIELD_BITS", "SPAD_READ_LATENCY", "ACCEPT_TO_ISSUE", "REJECT_CYCLES",
           "RESULT_WRITE_DELAY", "EngineError", "EngineTiming", "OutputStationaryEngineTiming",
           "WeightStationaryEngineTiming"]

#: Width of every size and position field of a command (``hw.engine.commands.GemmCommand``).
FIELD_BITS = 16

#: Scratchpad read latency (``hw.engine.scratchpad.SkewedScratchpad.READ_LATENCY``); the
#: engine checks at construction that the hardware agrees.
SPAD_READ_LATENCY = 2

#: Cycles from the accept cycle to the first issue cycle: the command is checked as it is
#: accepted.
ACCEPT_TO_ISSUE = 1
#: Cycles from the accept cycle to ``done`` for a rejected command.
REJECT_CYCLES = 1
#: Register between the weight-stationary array's result output and the accumulator memory's
#: write port (the output-stationary array's result output is a register already: written
#: directly).
RESULT_WRITE_DELAY = 1


class EngineError(enum.IntEnum):
    """Error codes of the engine's status (``hw.engine.commands.ErrorCode`` is built from these
    members: a code added here is one in the hardware)."""

    #: No error.
    NONE = 0
    #: ``m``, ``n`` or ``k`` is zero.
    ZERO_SIZE = 1
    #: The A operand region (``m x k`` at ``(a_row, a_col)``, ``k x m`` when ``a_transpose``)
    #: does not fit in the A scratchpad.
    A_RANGE = 2
    #: The B operand region (``k x n``, ``n x k`` when ``b_transpose``) does not fit in the B
    #: scratchpad.
    B_RANGE = 3
    #: The result region (``m x n`` at ``(c_row, c_col)``) does not fit in the accumulator
    #: memory.
    C_RANGE = 4
    #: A host write or read whose first element (``row``, ``col``) lies outside its memory:
    #: nothing is written, zeros are read.
    ACCESS_RANGE = 5
    #: A host read whose ``fmt`` index is not one of the configured output formats: zeros
    #: are read.
    READ_FORMAT = 6
    #: Step lists (``EngineConfig.step_entries``): a scheduled command the engine cannot run
    #: (``b_transpose``, or tiles beyond the tile table), rejected; or one
    #: whose tiles, met as it ran, name a step ``>= k``, a column ``>= n`` or a compacted B
    #: row outside the B scratchpad (the command runs to its end, such lanes are not written,
    #: and the error rises with ``done``); or a host write of a step index too wide for the
    #: step memory or of a tile entry it cannot run (steps beyond the step memory, two lanes
    #: in one accumulator bank), which is not written.
    SCHEDULE = 7


def step_index_bits(config: EngineConfig) -> int:
    """Bits of an entry of the step-index memory (``EngineConfig.step_entries``): a step ``k``
    is a column of A stored ``m x k`` (``< spad_width``) or a row of A stored transposed
    (``< a_rows``)."""
    return max(1, (max(config.spad_width, config.a_rows) - 1).bit_length())


def tile_entry_error(config: EngineConfig, first: int, length: int, columns) -> "EngineError":
    """``SCHEDULE`` for a tile-table entry the engine refuses to store (and does not write),
    else ``NONE``: its steps ``first .. first + length - 1`` must lie in the step memory, it
    has 1 to ``C`` lanes, and its columns must lie in the accumulator memory's row and fall in
    distinct banks (``column % acc_banks``), so that a result row is written in one cycle."""
    columns = [int(column) for column in columns]
    banks = [column % config.acc_banks for column in columns]
    if (first + length > config.step_entries or not 1 <= len(columns) <= config.array.cols
            or max(columns) >= config.acc_width or len(set(banks)) != len(banks)):
        return EngineError.SCHEDULE
    return EngineError.NONE


def _check_config(config):
    if not isinstance(config, EngineConfig):
        raise ValueError(f"config must be an EngineConfig, not {config!r}")


@dataclasses.dataclass(frozen=True)
class EngineTiming:
    """Latencies a tile sequencer is built on, all in cycles: one source of truth for the RTL
    and the cycle model. :meth:`of` gives the subclass of the configured dataflow, built from
    the array's timing contract (:mod:`sim.array_timing`); ``hw.engine.engine.GemmEngine``
    checks the numbers against its parts.

    Parameters
    ----------
    rows, cols : int
        Array size R x C.
    spad_read_latency : int
        Read request to data, A and B scratchpads.
    acc_read_latency : int
        Read request to data, accumulator memory.
    interleave : int
        Tiles the sequencer issues at once, their steps interleaved
        (``ArrayConfig.acc_interleave``, output stationary only; 1: one tile at a time).
    """

    rows: int
    cols: int
    spad_read_latency: int
    acc_read_latency: int
    interleave: int = 1

    @staticmethod
    def of(config: EngineConfig) -> EngineTiming:
        """Timing of the engine built for ``config``."""
        _check_config(config)
        common = {"spad_read_latency": SPAD_READ_LATENCY, "acc_read_latency": SPAD_READ_LATENCY}
        if config.array.dataflow == "os":
            array = OutputStationaryTiming(config.array)
            return OutputStationaryEngineTiming(
                rows=array.rows, cols=array.cols, first_swap=array.first_swap_offset,
                last_swap=array.column_swap_done_offset,
                result_latency=array.shift_result_latency, interleave=array.interleave,
                **common)
        array = WeightStationaryTiming(config.array)
        return WeightStationaryEngineTiming(
            rows=array.rows, cols=array.cols, result_latency=array.result_latency,
            last_swap=array.last_swap_offset, **common)

    def tiles(self, command: EngineCommand) -> int:
        raise NotImplementedError

    def cycles(self, command: EngineCommand) -> int:
        """Cycles from accept to ``done`` of a good command."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class OutputStationaryEngineTiming(EngineTiming):
    """Schedule constants of the output-stationary engine (``hw.engine.sequencer``).

    With interleaved accumulation (``interleave = L > 1``, ``ArrayConfig.acc_interleave``) the
    tiles go in groups of ``L``, their steps interleaved: slot ``i`` of a group's tile ``l``
    is issued ``i L + l`` cycles after the group starts, and a group's shift cycles are
    ``R L``. Every constant below is per group then; ``L = 1`` is one tile at a time.

    Parameters
    ----------
    first_swap : int
        From a group's first step entering the array to the first accumulator swap (PE (0, 0)).
    last_swap : int
        From a group's first step entering the array to the last accumulator swap of column 0
        (PE (R-1, 0), the group's last tile); column ``c`` swaps, and sees the shifts, ``c``
        cycles later.
    result_latency : int
        From a shift at the array's ports to its result row at the array's output.
    """

    first_swap: int = 0
    last_swap: int = 0
    result_latency: int = 0

    @property
    def shift_start(self) -> int:
        """From a group's first step entering the array to its shift cycles (the cycle after
        the last swap of column 0)."""
        return self.last_swap + 1

    @property
    def shifts_per_group(self) -> int:
        """Shift cycles of one group: ``R L``."""
        return self.rows * self.interleave

    @property
    def min_tile_slots(self) -> int:
        """Fewest issue slots per tile: the ``R L`` shifts after one group boundary must end
        before the first swap of the next group, ``L`` slots' cycles apart (``2R`` for
        ``L = 1``)."""
        return -(-(self.shift_start + self.shifts_per_group - self.first_swap)
                 // self.interleave)

    @property
    def first_tile_issue(self) -> int:
        """Issue time of the first step of an ``accumulate`` command: the ``R L`` initial
        shifts (issued from time 0) end before the first swap. An overwrite starts at 0."""
        return max(0, self.acc_read_latency + self.shifts_per_group - self.spad_read_latency
                   - self.first_swap)

    @property
    def group_delay(self) -> int:
        """Issue time from a tile-boundary step to the first acc read of its shift group."""
        return self.shift_start + self.spad_read_latency - self.acc_read_latency

    def overhead(self, accumulate: bool) -> int:
        """Cycles of a good command besides ``tiles * L``: accept and check, the initial
        shifts (``accumulate`` only), the flush step's shift group, the result latency, the
        write and ``done``."""
        return (ACCEPT_TO_ISSUE + (self.first_tile_issue if accumulate else 0)
                + self.group_delay + self.shifts_per_group - 1 + self.acc_read_latency
                + self.result_latency + 1)

    def tile_slots(self, k: int) -> int:
        """Issue slots per tile, ``max(K, min_tile_slots)``."""
        return max(k, self.min_tile_slots)

    def tiles(self, command: EngineCommand) -> int:
        """Output tiles: ``ceil(M/R) * ceil(N/C)``."""
        return math.ceil(command.m / self.rows) * math.ceil(command.n / self.cols)

    def cycles(self, command: EngineCommand) -> int:
        """``ceil(tiles / L) L max(K, min_tile_slots) + overhead``: a last group of fewer than
        ``L`` tiles takes the cycles of a whole one (its empty lanes issue bubbles)."""
        groups = math.ceil(self.tiles(command) / self.interleave)
        return (groups * self.interleave * self.tile_slots(command.k)
                + self.overhead(command.accumulate))

    def scheduled_cycles(self, m: int, lengths, accumulate: bool) -> int:
        """Cycles of a command whose tiles have their own step counts ``lengths`` (step
        lists, ``hw.engine.step_list_sequencer``): every band of ``R`` rows runs every tile
        for ``max(length, min_tile_slots)`` slots, ``ceil(M/R) * sum_g L_g + overhead``."""
        bands = math.ceil(m / self.rows)
        return (bands * sum(self.tile_slots(int(length)) for length in lengths)
                + self.overhead(bool(accumulate)))


@dataclasses.dataclass(frozen=True)
class WeightStationaryEngineTiming(EngineTiming):
    """Schedule constants of the weight-stationary engine (``hw.engine.ws_sequencer``).

    Parameters
    ----------
    result_latency : int
        From a step entering the array to its aligned result row at the array's output.
    last_swap : int
        From a tile's first step entering the array to the last PE's weight swap: the next
        tile's ``R`` weight loads may start then.
    """

    result_latency: int = 0
    last_swap: int = 0

    @property
    def load_slot(self) -> int:
        """Slot of a tile in which the next tile's weight loads start."""
        return self.last_swap

    @property
    def min_tile_slots(self) -> int:
        """Fewest issue slots per tile: the next tile's ``R`` weight loads must fit after the
        last swap (``2R + C - 2``), and a partial sum written back must be in the
        accumulator memory before the next K slice reads it for the same row."""
        loads = self.last_swap + self.rows
        write_back = self.result_latency + RESULT_WRITE_DELAY + 1 + self.acc_read_latency
        return max(loads, write_back)

    @property
    def first_tile_issue(self) -> int:
        """Issue time of the first step, after the ``R`` weight loads of tile 0."""
        return self.rows

    @property
    def overhead(self) -> int:
        """Cycles of a good command besides ``(tiles - 1) * L + M``: accept and check, the
        first loads, the array's latency, the result write and ``done``."""
        return (ACCEPT_TO_ISSUE + self.first_tile_issue + self.spad_read_latency
                + self.result_latency + RESULT_WRITE_DELAY + 1 - 1)

    def tile_slots(self, m: int) -> int:
        """Issue slots per tile (but the last), ``L = max(M, min_tile_slots)``."""
        return max(m, self.min_tile_slots)

    def tiles(self, command: EngineCommand) -> int:
        """Weight tiles: ``ceil(N/C) * ceil(K/R)``."""
        return math.ceil(command.n / self.cols) * math.ceil(command.k / self.rows)

    def cycles(self, command: EngineCommand) -> int:
        return ((self.tiles(command) - 1) * self.tile_slots(command.m) + command.m
                + self.overhead)
