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
import math
import numbers

import numpy as np

from .config import EngineConfig
# the specification the gateware is built from (re-exported: the model's users import it here)
from .engine_spec import (ACCEPT_TO_ISSUE, FIELD_BITS, REJECT_CYCLES, RESULT_WRITE_DELAY,
                          SPAD_READ_LATENCY, EngineError, EngineTiming,
                          OutputStationaryEngineTiming, WeightStationaryEngineTiming, _check_config)

__all__ = ["EngineCommand", "validate", "tiles", "command_cycles", "scheduled_cycles",
           "done_cycles",
           "ideal_cycles", "utilization",
           # from sim.engine_spec
           "FIELD_BITS", "SPAD_READ_LATENCY", "ACCEPT_TO_ISSUE", "REJECT_CYCLES",
           "RESULT_WRITE_DELAY", "EngineError", "EngineTiming", "OutputStationaryEngineTiming",
           "WeightStationaryEngineTiming"]

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
    scheduled, tile_first, tile_count : bool, int, int
        Step lists (engines with ``EngineConfig.step_entries`` only): the output's columns are
        computed by the ``tile_count`` tiles of the tile table from entry ``tile_first`` on,
        each stepping through its own list of ``k`` and reading B compacted from row
        ``b_row`` on (:mod:`sim.step_lists`; cycles: :func:`scheduled_cycles`).
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
    scheduled: bool = False
    tile_first: int = 0
    tile_count: int = 0

    NUMBERS = ("m", "n", "k", "a_row", "a_col", "b_row", "b_col", "c_row", "c_col")
    FLAGS = ("a_transpose", "b_transpose", "accumulate")
    #: Fields of the command word of an engine with ``output_mask`` only.
    MASK_FLAGS = ("mask_host", "mask_dropout")
    #: Fields of the command word of an engine with step lists only.
    SCHEDULE_FIELDS = ("scheduled", "tile_first", "tile_count")

    def __post_init__(self):
        top = (1 << FIELD_BITS) - 1
        for name in self.NUMBERS + ("tile_first", "tile_count"):
            value = getattr(self, name)
            if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
                    or not 0 <= value <= top):
                raise ValueError(f"{name} must be an integer in 0..{top}, not {value!r}")
            object.__setattr__(self, name, int(value))      # numpy integers become ints
        for name in self.FLAGS + self.MASK_FLAGS + ("scheduled",):
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

    def fields(self, *, masks: bool = False, schedule: bool = False) -> dict[str, int]:
        """Field values as integers (for packing the hardware command word); ``masks``: with
        the mask flags (the command word of an engine with ``output_mask``), ``schedule``:
        with the step-list fields (an engine with ``step_entries``)."""
        names = (self.NUMBERS + self.FLAGS + (self.MASK_FLAGS if masks else ())
                 + (self.SCHEDULE_FIELDS if schedule else ()))
        return {name: int(getattr(self, name)) for name in names}


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
    if command.scheduled and not config.step_lists:
        raise ValueError(f"scheduled needs an engine with step lists (step_entries > 0; this "
                         f"one has none): {command}")
    c = command
    if min(c.m, c.n, c.k) == 0 or (c.scheduled and c.tile_count == 0):
        return EngineError.ZERO_SIZE
    a_rows, a_cols = c.a_shape
    if c.a_row + a_rows > config.a_rows or c.a_col + a_cols > config.spad_width:
        return EngineError.A_RANGE
    b_rows, b_cols = c.b_shape
    if c.scheduled:     # compacted B: C lanes from b_col on, its rows checked as they are read
        b_rows, b_cols = 1, config.array.cols
    if c.b_row + b_rows > config.b_rows or c.b_col + b_cols > config.spad_width:
        return EngineError.B_RANGE
    if c.c_row + c.m > config.acc_rows or c.c_col + c.n > config.acc_width:
        return EngineError.C_RANGE
    if c.scheduled and (c.b_transpose
                        or c.tile_first + c.tile_count > config.tile_entries):
        return EngineError.SCHEDULE
    return EngineError.NONE


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
    if command.scheduled:
        raise ValueError(f"{command} is scheduled: its cycles depend on its tiles' step "
                         f"counts (scheduled_cycles)")
    return EngineTiming.of(config).cycles(command)


def scheduled_cycles(config: EngineConfig, command: EngineCommand, lengths) -> int:
    """Cycles from accept to ``done`` of a good scheduled command whose tiles (table entries
    ``tile_first ..``) have ``lengths`` steps: each band of ``R`` rows runs every tile for
    ``max(length, min_tile_slots)`` slots, the rest as a dense command:
    ``ceil(M/R) * sum_g max(len_g, 2R) + overhead``."""
    error = validate(config, command)
    if error is not EngineError.NONE or not command.scheduled:
        raise ValueError(f"{command} is not a scheduled command this engine accepts "
                         f"({error.name})")
    lengths = [int(length) for length in lengths]
    if len(lengths) != command.tile_count or min(lengths) < 0:
        raise ValueError(f"lengths must be {command.tile_count} step counts >= 0, not "
                         f"{lengths}")
    return EngineTiming.of(config).scheduled_cycles(command.m, lengths, command.accumulate)


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
