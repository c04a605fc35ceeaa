"""Cycle model and command checks of the GEMM engine (``hw.engine.engine.GemmEngine``).

:func:`command_cycles` gives, for any command, exactly the number of cycles the RTL takes from
the cycle the command is accepted (``cmd.valid & cmd.ready``) to the cycle ``status.done`` is
high; the benches assert equality on every command they run. :func:`validate` gives the error
code the hardware raises for a command (``EngineError.NONE`` for a good one). Both are closed
formulas: users run them for workloads far too big to simulate.

Output stationary (``R`` x ``C`` array, ``hw.engine.sequencer``)
----------------------------------------------------------------
* cycle 0: the command is accepted and checked. A rejected command raises ``done`` in cycle
  1. A good one starts issuing in cycle 1 (issue time 0).
* The output is cut into ``ceil(M/R) * ceil(N/C)`` tiles, taken in row-major order. Each tile
  occupies ``L = max(K, min_tile_slots)`` issue slots: ``K`` steps (one scratchpad read of A and
  of B each), then bubbles. ``min_tile_slots`` is what the result shift-out of one tile needs
  before the next tile's accumulators swap: ``2R`` for the output-stationary array (its shifts
  are skewed per column like the operands). With ``accumulate`` the first tile starts at issue
  time ``first_tile_issue``, after the ``C_old`` rows of tile 0 have been shifted in; without,
  it starts at once (between commands every shadow register holds ``+0``, the init of an
  overwrite, because the last shift group of a command pushes in zeros). One flush step follows
  the last tile.
* A group of ``R`` shift cycles follows each tile boundary (``shift_start`` cycles after the
  boundary step enters the array): it pushes out the results of the tile before the previous
  one and pushes in the initial rows (``+0`` or ``C_old``) of the next one; the group after the
  flush pushes out the last tile. A result row leaves the array ``shift_result_latency``
  cycles after its shift and is written to the accumulator memory in that cycle; ``done``
  rises the cycle after the last write.

So ``cycles = tiles * L + overhead`` with a constant ``overhead`` per configuration and value of
``accumulate`` (:meth:`OutputStationaryEngineTiming.overhead`).

Weight stationary (``hw.engine.ws_sequencer``)
----------------------------------------------
Accept and check as above. The weight tiles are the ``ceil(N/C) * ceil(K/R)`` blocks of B
(``k`` inner); the first tile's ``R`` weight loads take issue times ``0 .. R-1``, then each tile
streams the ``M`` rows of A in ``L = max(M, min_tile_slots)`` slots (the last tile only ``M``),
loading the next tile's weights meanwhile. So ``cycles = (tiles - 1) * L + M + overhead``
(:attr:`WeightStationaryEngineTiming.overhead`: the loads, the array's result latency, the
write and ``done``).

Pure Python: no Amaranth here.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers

import numpy as np

from .array_timing import OutputStationaryTiming, WeightStationaryTiming
from .config import EngineConfig

__all__ = ["FIELD_BITS", "EngineError", "EngineCommand", "EngineTiming",
           "OutputStationaryEngineTiming", "WeightStationaryEngineTiming", "validate", "tiles",
           "command_cycles", "done_cycles", "ideal_cycles", "utilization"]

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
    """Error codes of the engine's status (``hw.engine.commands.ErrorCode`` has the same
    values)."""

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


@dataclasses.dataclass(frozen=True)
class EngineCommand:
    """One GEMM command, ``C[c_row + i, c_col + j] (+)= sum_k A[i, k] * B[k, j]``.

    The field values are those of ``hw.engine.commands.GemmCommand``; each must fit in
    :data:`FIELD_BITS` bits (a command that does not is a host programming error: ValueError).
    Whether it is *valid* for an engine (non-zero sizes, regions inside the memories) is what
    :func:`validate` decides, like the hardware does.

    Parameters
    ----------
    m, n, k : int
        Rows of C, columns of C, inner dimension.
    a_row, a_col : int
        Position of A's first stored element in the A scratchpad. A is stored ``m x k``, or
        ``k x m`` with ``a_transpose``.
    b_row, b_col : int
        Position of B in the B scratchpad, stored ``k x n``, or ``n x k`` with ``b_transpose``.
    c_row, c_col : int
        Position of C in the accumulator memory.
    a_transpose, b_transpose : bool
        The operand is stored transposed (read in the other order, no copy).
    accumulate : bool
        Start from the accumulator memory's ``C`` (``C_old``) instead of ``+0``.
    mask_host, mask_dropout : bool
        Output masking (engines with ``EngineConfig.output_mask`` only): the keep mask of
        ``C`` is the host-written plane (``mask_host``) AND the generated dropout plane
        (``mask_dropout``), each read at ``(c_row + i, c_col + j)``; masked outputs are
        written ``+0``.
    """

    m: int
    n: int
    k: int
    a_row: int = 0
    a_col: int = 0
    b_row: int = 0
    b_col: int = 0
    c_row: int = 0
    c_col: int = 0
    a_transpose: bool = False
    b_transpose: bool = False
    accumulate: bool = False
    mask_host: bool = False
    mask_dropout: bool = False

    NUMBERS = ("m", "n", "k", "a_row", "a_col", "b_row", "b_col", "c_row", "c_col")
    FLAGS = ("a_transpose", "b_transpose", "accumulate")
    #: Fields of the command word of an engine with ``output_mask`` only.
    MASK_FLAGS = ("mask_host", "mask_dropout")

    def __post_init__(self):
        top = (1 << FIELD_BITS) - 1
        for name in self.NUMBERS:
            value = getattr(self, name)
            if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
                    or not 0 <= value <= top):
                raise ValueError(f"{name} must be an integer in 0..{top}, not {value!r}")
            object.__setattr__(self, name, int(value))      # numpy integers become ints
        for name in self.FLAGS + self.MASK_FLAGS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, not {value!r}")
            object.__setattr__(self, name, bool(value))

    @property
    def a_shape(self) -> tuple[int, int]:
        """(rows, columns) of A as stored."""
        return (self.k, self.m) if self.a_transpose else (self.m, self.k)

    @property
    def b_shape(self) -> tuple[int, int]:
        """(rows, columns) of B as stored."""
        return (self.n, self.k) if self.b_transpose else (self.k, self.n)

    @property
    def masked(self) -> bool:
        """The command selects an output mask."""
        return self.mask_host or self.mask_dropout

    def fields(self, *, masks: bool = False) -> dict[str, int]:
        """Field values as integers (for packing the hardware command word); ``masks``: with
        the mask flags (the command word of an engine with ``output_mask``)."""
        names = self.NUMBERS + self.FLAGS + (self.MASK_FLAGS if masks else ())
        return {name: int(getattr(self, name)) for name in names}


def _check_config(config):
    if not isinstance(config, EngineConfig):
        raise ValueError(f"config must be an EngineConfig, not {config!r}")


def _check_command(command):
    if not isinstance(command, EngineCommand):
        raise ValueError(f"command must be an EngineCommand, not {command!r}")


def validate(config: EngineConfig, command: EngineCommand) -> EngineError:
    """The error code the engine raises for ``command`` (checked in this order), or
    ``EngineError.NONE``. A command selecting an output mask for an engine without
    ``output_mask`` cannot even be encoded: ValueError."""
    _check_config(config)
    _check_command(command)
    if command.masked and not config.output_mask:
        raise ValueError(f"mask_host / mask_dropout need an engine with output_mask=True "
                         f"(this one has output_mask=False): {command}")
    c = command
    if min(c.m, c.n, c.k) == 0:
        return EngineError.ZERO_SIZE
    a_rows, a_cols = c.a_shape
    if c.a_row + a_rows > config.a_rows or c.a_col + a_cols > config.spad_width:
        return EngineError.A_RANGE
    b_rows, b_cols = c.b_shape
    if c.b_row + b_rows > config.b_rows or c.b_col + b_cols > config.spad_width:
        return EngineError.B_RANGE
    if c.c_row + c.m > config.acc_rows or c.c_col + c.n > config.acc_width:
        return EngineError.C_RANGE
    return EngineError.NONE


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
    """

    rows: int
    cols: int
    spad_read_latency: int
    acc_read_latency: int

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
                result_latency=array.shift_result_latency, **common)
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

    Parameters
    ----------
    first_swap : int
        From a tile's first step entering the array to the first accumulator swap (PE (0, 0)).
    last_swap : int
        From a tile's first step entering the array to the last accumulator swap of column 0
        (PE (R-1, 0)); column ``c`` swaps, and sees the shifts, ``c`` cycles later.
    result_latency : int
        From a shift at the array's ports to its result row at the array's output.
    """

    first_swap: int = 0
    last_swap: int = 0
    result_latency: int = 0

    @property
    def shift_start(self) -> int:
        """From a tile's first step entering the array to its group of shift cycles (the
        cycle after the last swap of column 0)."""
        return self.last_swap + 1

    @property
    def min_tile_slots(self) -> int:
        """Fewest issue slots per tile: the ``R`` shifts after one tile boundary must end
        before the first swap of the next (``2R`` for the output-stationary array)."""
        return self.shift_start + self.rows - self.first_swap

    @property
    def first_tile_issue(self) -> int:
        """Issue time of the first step of an ``accumulate`` command: the ``R`` initial shifts
        (issued from time 0) end before the first swap. An overwrite starts at 0."""
        return max(0, self.acc_read_latency + self.rows - self.spad_read_latency
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
                + self.group_delay + self.rows - 1 + self.acc_read_latency
                + self.result_latency + 1)

    def tile_slots(self, k: int) -> int:
        """Issue slots per tile, ``L = max(K, min_tile_slots)``."""
        return max(k, self.min_tile_slots)

    def tiles(self, command: EngineCommand) -> int:
        """Output tiles: ``ceil(M/R) * ceil(N/C)``."""
        return math.ceil(command.m / self.rows) * math.ceil(command.n / self.cols)

    def cycles(self, command: EngineCommand) -> int:
        return self.tiles(command) * self.tile_slots(command.k) + self.overhead(command.accumulate)


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


def tiles(config: EngineConfig, command: EngineCommand) -> int:
    """Tiles of a command: output tiles ``ceil(M/R) * ceil(N/C)`` (output stationary) or
    weight tiles ``ceil(N/C) * ceil(K/R)`` (weight stationary)."""
    _check_command(command)
    return EngineTiming.of(config).tiles(command)


def command_cycles(config: EngineConfig, command: EngineCommand) -> int:
    """Cycles from the command's accept cycle to the cycle ``done`` is high, exactly as the RTL,
    of a command the engine accepts. A command it would reject (sizes of zero, regions outside
    its memories) raises ValueError naming the error code; :func:`done_cycles` gives the timing
    of any command, the rejected ones included."""
    error = validate(config, command)
    if error is not EngineError.NONE:
        raise ValueError(f"{command} does not fit this engine: the engine rejects it with "
                         f"{error.name}")
    return EngineTiming.of(config).cycles(command)


def done_cycles(config: EngineConfig, command: EngineCommand) -> int:
    """Cycles from accept to ``done`` of any command, as the RTL: ``REJECT_CYCLES`` for one the
    engine rejects (its ``status.error`` is then :func:`validate`'s code)."""
    if validate(config, command) is not EngineError.NONE:
        return REJECT_CYCLES
    return EngineTiming.of(config).cycles(command)


def ideal_cycles(config: EngineConfig, command: EngineCommand) -> int:
    """``ceil(M * N * K / (R * C))``: every PE busy every cycle."""
    _check_config(config)
    _check_command(command)
    return math.ceil(command.m * command.n * command.k / config.array.pes)


def utilization(config: EngineConfig, command: EngineCommand) -> float:
    """MACs per PE per cycle, ``M * N * K / (R * C * cycles)``."""
    macs = command.m * command.n * command.k
    return macs / (config.array.pes * command_cycles(config, command))
