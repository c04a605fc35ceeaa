"""Cycle model of the zero-skipping GEMM engine as built (``ArrayConfig.skip_window``).

The engine with a lookahead window of ``d >= 2`` steps (:mod:`hw.engine.skip_sequencer`) runs
the window schedule of :mod:`sim.skip_model` (``SkipOption(schedule="lookahead", depth=d,
fetch=d, side="a")``: each array row takes its own next needed step within the window, a step
being needed by row ``r`` when ``A[m0 + r, k]`` is non-zero and some ``B[k, n0 + c]`` of the
tile is non-zero), every tile occupying ``max(T, min_tile_slots)`` cycles, plus the dense
engine's fixed overhead and :func:`lookahead_latency`. With ``d = 1`` it is the dense engine
(:func:`sim.engine_model.command_cycles`). The benches assert these counts cycle for cycle.

Pure Python and numpy; no Amaranth here.
"""

from __future__ import annotations

import dataclasses

from .config import EngineConfig
from .engine_model import (SPAD_READ_LATENCY, EngineCommand, EngineError, EngineTiming,
                           done_cycles, validate)
from .skip_model import SkipOption, SparseGemm, issued_products
from .skip_model import command_cycles as window_command_cycles

__all__ = ["with_window", "lookahead_latency", "window_option", "engine_cycles",
           "computed_products", "mask_write_cycles"]


def with_window(config: EngineConfig, depth: int) -> EngineConfig:
    """``config`` with the lookahead window ``depth`` (the zero gate on when ``depth >= 2``;
    ``depth = 1`` sets the dense schedule and leaves ``skip_zeros`` as it is)."""
    if not isinstance(config, EngineConfig):
        raise ValueError(f"config must be an EngineConfig, not {config!r}")
    skip_zeros = config.array.skip_zeros or depth > 1
    array = dataclasses.replace(config.array, skip_zeros=skip_zeros, skip_window=depth)
    return dataclasses.replace(config, array=array)


def lookahead_latency(config: EngineConfig, accumulate: bool, masked: bool = False) -> int:
    """Cycles a command of the skipping engine (``skip_window >= 2``) takes beyond the window
    model: the zero flags of the first steps are read from the flag planes and queued before
    the first window cycle (``SPAD_READ_LATENCY + 1`` cycles after issue time 0), which the
    dense schedule overlaps with the initial ``C_old`` shift only when it accumulates
    (``first_tile_issue``). A ``masked`` command also waits for its first tile's mask summary:
    ``R`` rows of the mask planes read from issue time 0 on, the last one in the summary queue
    ``SPAD_READ_LATENCY + 1`` cycles after its read (later tiles' summaries are read while
    earlier tiles run and never make the window wait)."""
    timing = EngineTiming.of(config)
    wait = timing.first_tile_issue if accumulate else 0
    ready = SPAD_READ_LATENCY + 1
    if masked:
        ready = max(ready, timing.rows + SPAD_READ_LATENCY)
    return max(0, ready - wait)


def window_option(depth: int) -> SkipOption:
    """The :class:`~sim.skip_model.SkipOption` the engine with ``skip_window = depth`` runs."""
    if depth == 1:
        return SkipOption(name="dense")
    return SkipOption(name=f"window{depth}", schedule="lookahead", depth=depth, fetch=depth)


def _check_command(config, command, gemm) -> None:
    """ValueError unless ``config`` is an EngineConfig and ``gemm`` a SparseGemm of the
    command's shape."""
    if not isinstance(config, EngineConfig):
        raise ValueError(f"config must be an EngineConfig, not {config!r}")
    if not isinstance(gemm, SparseGemm):
        raise ValueError(f"gemm must be a SparseGemm, not {gemm!r}")
    if gemm.shape != (command.m, command.n, command.k):
        raise ValueError(f"gemm is {gemm.shape} (M, N, K), the command "
                         f"{(command.m, command.n, command.k)}")


def engine_cycles(config: EngineConfig, command: EngineCommand, gemm: SparseGemm) -> int:
    """Cycles from accepting ``command`` to ``status.done`` on the engine of
    ``config``; ``gemm`` holds the non-zero maps of its operands as stored
    (:meth:`SparseGemm.from_bits` with the command's transpose flags) and, exactly when the
    command selects an output mask, ``out_keep``: the mask it reads (``M x N``)."""
    _check_command(config, command, gemm)
    bad = validate(config, command) is not EngineError.NONE     # (ValueError: mask, no planes)
    if (gemm.out_keep is not None) != command.masked:
        raise ValueError(f"gemm.out_keep must be given exactly when the command selects an "
                         f"output mask (mask_host={command.mask_host}, "
                         f"mask_dropout={command.mask_dropout}, out_keep "
                         f"{'given' if gemm.out_keep is not None else 'None'})")
    depth = config.array.skip_window
    if depth == 1 or bad:
        return done_cycles(config, command)           # dense, or rejected: 1 cycle
    return (window_command_cycles(config, gemm, window_option(depth))
            + lookahead_latency(config, command.accumulate, command.masked))


def computed_products(config: EngineConfig, command: EngineCommand, gemm: SparseGemm) -> int:
    """Products the PEs add for ``command`` on the engine of ``config`` (the sum of its
    ``products`` port, ``hw.engine.engine.GemmEngine.counts_products``): with ``skip_zeros``,
    :func:`sim.skip_model.issued_products` of its window (the weight-stationary array, which
    has none, adds every product with two non-zero operands once: depth 1), 0 for a rejected
    command; without the zero gate every product, ``M * N * K`` (nothing is skipped).
    ``gemm`` as for :func:`engine_cycles`."""
    _check_command(config, command, gemm)
    if config.step_lists:
        raise ValueError("computed_products: an engine with step lists takes the steps of its "
                         "lists (sim.step_lists), not this model's")
    if validate(config, command) is not EngineError.NONE:
        return 0
    if not config.array.skip_zeros:
        return command.m * command.n * command.k
    return issued_products(config, gemm, config.array.skip_window)


def mask_write_cycles(config: EngineConfig, m: int, n: int) -> int:
    """Cycles from accepting a good dropout mask command (``hw.engine.mask.DropoutMaskWriter``,
    ``EngineConfig(output_mask=True)``) for an ``m x n`` mask to ``mask_status.busy`` low.

    The generator loads a band's ``R`` row LFSRs (``R`` cycles) and makes a tile in
    ``T = C`` cycles (one element per row per cycle); the writer takes ``R`` cycles per tile,
    so tiles of a band follow each other every ``max(T, R)`` cycles; busy falls ``R`` cycles
    after the last tile is out: ``1 + bands (R + T) + (tiles - bands) max(T, R) + R``."""
    if not isinstance(config, EngineConfig):
        raise ValueError(f"config must be an EngineConfig, not {config!r}")
    for field, value in (("m", m), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be an integer >= 1, not {value!r}")
    rows, cols = config.array.rows, config.array.cols
    bands, groups = -(-m // rows), -(-n // cols)
    tile = cols
    return 1 + bands * (rows + tile) + bands * (groups - 1) * max(tile, rows) + rows
