"""Bench: DropoutMaskGenerator against the golden dropout masks (sim.lfsr.dropout_keep_mask).

* ``masks_match_golden``: commands with p = 0, 0.25, 0.5, 1 (thresholds 0, ``drop_threshold``,
  ``2^bits``), several seeds (1, all ones, top bit only, ``layer_seed``, random), tensors of
  ``M x N`` with 1, not multiples of and larger than the tile, then random commands; every
  tile's keep bits (0 outside the tensor), coordinates and ``last`` against the golden mask.
* ``tile_timing_matches_formula``: without backpressure, tile ``k`` of a command accepted in
  cycle 0 is valid in cycle ``1 + (k // G + 1) R + (k + 1) T`` (``G = ceil(N / C)``,
  ``T = C bits / U``); the next command is taken in the cycle the last tile becomes valid; a
  bad command is answered in cycle 1 (error status, unit ready again).
* ``bad_commands_then_good``: each bad command (seed 0, threshold above ``2^bits``, ``m`` or
  ``n`` zero, a row longer than the row stride, several faults at once) produces no tile and
  the exact sticky error code; the good command after it is generated correctly; the first
  fault's code is kept; ``clear_error`` clears. The longest accepted row (``n`` at the limit,
  thousands of tiles) runs to its end: its first tiles and its last one are checked, and the
  cycle of the last one against the timing formula.

Random idle cycles on the command stream and random backpressure on the tile stream (except in
the timing test). The configuration (rows, cols, bits, steps_per_cycle, vectors) comes from the
pytest runner.
"""

from __future__ import annotations

import math

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly
from cocotb.utils import get_sim_time

from hw.sparsity.dropout_mask import (DropoutError, DropoutMaskGenerator, DropoutStatus,
                                      dropout_command_layout, dropout_tile_layout)
from sim.lfsr import WIDTH, drop_threshold, dropout_keep_mask, layer_seed
from tb.harness import clear_error, PERIOD_NS, StreamChecker, case, make_rng, next_cycle, reset, start_clock
from tb.packing import fields, pack_word


class Config:
    """The bench's view of the unit under test (built from the runner's case)."""

    def __init__(self, cfg):
        self.unit = DropoutMaskGenerator(rows=cfg["rows"], cols=cfg["cols"], bits=cfg["bits"],
                                         steps_per_cycle=cfg["steps_per_cycle"])
        self.R, self.C, self.bits = cfg["rows"], cfg["cols"], cfg["bits"]
        self.U = cfg["steps_per_cycle"]
        self.T = self.C * self.bits // self.U                   # documented cycles per tile
        assert self.unit.tile_cycles == self.T and self.unit.setup_cycles == self.R
        self.command = fields(dropout_command_layout(self.bits))
        self.tile = fields(dropout_tile_layout(self.R, self.C))
        self.status = fields(DropoutStatus)
        self.max_cols = self.unit.max_cols
        self.vectors = cfg.get("vectors", 0)


def get_field(geometry, word: int, name: str) -> int:
    offset, width = geometry[name]
    return (word >> offset) & ((1 << width) - 1)


class Command:
    def __init__(self, seed, threshold, m, n):
        self.seed, self.threshold, self.m, self.n = seed, threshold, m, n

    def word(self, cfg: Config) -> int:
        return pack_word(cfg.command, seed=self.seed, threshold=self.threshold, m=self.m,
                         n=self.n)

    def __repr__(self):
        return (f"seed=0x{self.seed:08x} threshold=0x{self.threshold:x} m={self.m} "
                f"n={self.n}")


def golden_keep(cfg: Config, command: Command) -> np.ndarray:
    """The golden mask; thresholds 0 and 2^bits (refused by the golden model as layer
    settings) keep every element / none, as ``u >= threshold`` says for any ``u < 2^bits``."""
    shape = (command.m, command.n)
    if command.threshold == 0:
        return np.ones(shape, dtype=bool)
    if command.threshold == 1 << cfg.bits:
        return np.zeros(shape, dtype=bool)
    return dropout_keep_mask(shape, seed=command.seed, threshold=command.threshold,
                             bits=cfg.bits)


def expected_tiles(cfg: Config, command: Command) -> tuple[list[int], list[str]]:
    """Tile words in engine order (bands of R rows, tiles of C columns), with descriptions."""
    keep = golden_keep(cfg, command)
    bands, groups = math.ceil(command.m / cfg.R), math.ceil(command.n / cfg.C)
    padded = np.zeros((bands * cfg.R, groups * cfg.C), dtype=bool)
    padded[:command.m, :command.n] = keep
    weights = [1 << (r * cfg.C + c) for r in range(cfg.R) for c in range(cfg.C)]
    words, notes = [], []
    for band in range(bands):
        for group in range(groups):
            block = padded[band * cfg.R:(band + 1) * cfg.R, group * cfg.C:(group + 1) * cfg.C]
            bits = sum(w for w, k in zip(weights, block.ravel().tolist()) if k)
            last = band == bands - 1 and group == groups - 1
            words.append(pack_word(cfg.tile, keep=bits, row=band * cfg.R, col=group * cfg.C,
                                   last=int(last)))
            rows = " ".join("".join(str(int(v)) for v in line) for line in block)
            notes.append(f"{command}: tile {len(notes)} at ({band * cfg.R}, {group * cfg.C}); "
                         f"golden keep rows (col 0 first) {rows}")
    return words, notes


def describe_tile(cfg: Config, word: int) -> str:
    keep = get_field(cfg.tile, word, "keep")
    rows = " ".join("".join(str(keep >> (r * cfg.C + c) & 1) for c in range(cfg.C))
                    for r in range(cfg.R))
    return (f"tile ({get_field(cfg.tile, word, 'row')}, {get_field(cfg.tile, word, 'col')}) "
            f"last={get_field(cfg.tile, word, 'last')} keep 0x{keep:x} = {rows}")


def status_of(cfg: Config, dut) -> tuple[int, int, DropoutError]:
    word = int(dut.status.value)
    return (get_field(cfg.status, word, "busy"), get_field(cfg.status, word, "error"),
            DropoutError(get_field(cfg.status, word, "error_code")))


def good_commands(cfg: Config, rng) -> list[Command]:
    """Every p of the brief with shapes at the tile edges, several seeds, then random ones."""
    R, C = cfg.R, cfg.C
    thresholds = [0, drop_threshold(0.25, bits=cfg.bits), drop_threshold(0.5, bits=cfg.bits),
                  1 << cfg.bits]
    shapes = [(1, 1), (1, C + 1), (R + 1, 1), (R, C), (2 * R + 1, 2 * C + 3), (3, 2 * C - 1),
              (R - 1 or 1, 3 * C + 1), (2 * R + 3, C - 1 or 1)]
    seeds = [1, (1 << WIDTH) - 1, 1 << (WIDTH - 1), layer_seed(2024, "fc1.dropout", 7),
             int(rng.integers(1, 1 << WIDTH))]
    commands = []
    for index in range(2 * len(shapes)):
        commands.append(Command(seeds[index % len(seeds)], thresholds[index % len(thresholds)],
                                *shapes[index % len(shapes)]))
    for _ in range(max(4, cfg.vectors // 1000)):
        m = int(rng.integers(1, 4 * R + 4))
        n = int(rng.integers(1, 4 * C + 4))
        threshold = int(rng.integers(0, (1 << cfg.bits) + 1))
        commands.append(Command(int(rng.integers(1, 1 << WIDTH)), threshold, m, n))
    return commands


async def start(dut) -> None:
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 0
    dut.clear_error.value = 0
    await start_clock(dut)
    await reset(dut)


@cocotb.test()
async def masks_match_golden(dut):
    cfg = Config(case())
    rng = make_rng(dut)
    commands = good_commands(cfg, rng)
    words, notes = [], []
    for command in commands:
        tiles, described = expected_tiles(cfg, command)
        words += tiles
        notes += described
    checker = StreamChecker(dut, rng, p_idle=0.3, p_stall=0.3)
    await start(dut)
    cycles = await checker.run([c.word(cfg) for c in commands], words, lambda k: notes[k],
                               max_latency=cfg.R + cfg.T + 4)
    dut._log.info("checked %d tiles of %d commands in %d cycles", len(words), len(commands),
                  cycles)
    assert status_of(cfg, dut) == (0, 0, DropoutError.NONE), f"status {status_of(cfg, dut)}"


async def exchange(cfg: Config, dut, rng, commands: list[Command], n_tiles: int, *,
                   p_idle=0.3, p_stall=0.3) -> list[int]:
    """Offer the commands with random idle cycles, take ``n_tiles`` tiles with random
    backpressure (:meth:`tb.harness.StreamChecker.collect`); fails on a hang, a broken stream
    rule or an extra tile."""
    checker = StreamChecker(dut, rng, p_idle=p_idle, p_stall=p_stall)
    try:
        return await checker.collect([c.word(cfg) for c in commands], n_tiles,
                                     max_latency=2 * (cfg.R + cfg.T), drain=cfg.R + cfg.T + 4,
                                     show=lambda word: f"tile {describe_tile(cfg, word)}")
    except AssertionError as error:
        raise AssertionError(f"{error} (commands {commands})") from error


def compare_tiles(cfg: Config, got: list[int], want: list[int], notes: list[str], what: str):
    assert len(got) == len(want), f"{what}: {len(got)} tiles, {len(want)} expected"
    for k, (rtl, golden) in enumerate(zip(got, want)):
        assert rtl == golden, (f"{what}: {notes[k]}; rtl {describe_tile(cfg, rtl)} "
                               f"(0x{rtl:x}), golden {describe_tile(cfg, golden)} (0x{golden:x})")


async def clear_status(cfg: Config, dut, what: str):
    await clear_error(dut, lambda: status_of(cfg, dut), DropoutError.NONE, what)


def bad_commands(cfg: Config, good: Command) -> list[tuple[Command, DropoutError]]:
    top = 1 << cfg.bits
    bad = [
        (Command(0, good.threshold, good.m, good.n), DropoutError.ZERO_SEED),
        (Command(good.seed, top + 1, good.m, good.n), DropoutError.BAD_THRESHOLD),
        (Command(good.seed, (top << 1) - 1, good.m, good.n), DropoutError.BAD_THRESHOLD),
        (Command(good.seed, good.threshold, 0, good.n), DropoutError.ZERO_SIZE),
        (Command(good.seed, good.threshold, good.m, 0), DropoutError.ZERO_SIZE),
        (Command(good.seed, good.threshold, 0, 0), DropoutError.ZERO_SIZE),
        # several faults: the first in DropoutError's order is reported
        (Command(0, top + 1, 0, 0), DropoutError.ZERO_SEED),
        (Command(good.seed, top + 1, 0, good.n), DropoutError.BAD_THRESHOLD),
    ]
    if cfg.max_cols < (1 << 16) - 1:
        bad += [(Command(good.seed, good.threshold, 1, cfg.max_cols + 1),
                 DropoutError.ROW_TOO_LONG),
                (Command(good.seed, good.threshold, (1 << 16) - 1, (1 << 16) - 1),
                 DropoutError.ROW_TOO_LONG),
                (Command(good.seed, good.threshold, 0, cfg.max_cols + 1),
                 DropoutError.ZERO_SIZE)]
    return bad


def golden_rejects(cfg: Config, command: Command) -> bool:
    """The golden model refuses the command too (thresholds 0 and 2^bits aside, which it
    refuses as layer settings but the hardware defines)."""
    threshold = min(max(command.threshold, 1), (1 << cfg.bits) - 1) \
        if command.threshold <= 1 << cfg.bits else command.threshold
    try:
        dropout_keep_mask((command.m, command.n), seed=command.seed, threshold=threshold,
                          bits=cfg.bits)
    except ValueError:
        return True
    return False


@cocotb.test()
async def bad_commands_then_good(dut):
    cfg = Config(case())
    rng = make_rng(dut, salt=2)
    await start(dut)
    goods = [Command(int(rng.integers(1, 1 << WIDTH)), drop_threshold(0.5, bits=cfg.bits),
                     int(rng.integers(1, 2 * cfg.R + 2)), int(rng.integers(1, 2 * cfg.C + 2)))
             for _ in range(3)]
    for index, (command, code) in enumerate(bad_commands(cfg, goods[0])):
        good = goods[index % len(goods)]
        what = f"bad command {command} (expected {code.name}) then good {good}"
        assert golden_rejects(cfg, command), f"{what}: the golden model accepts the bad command"
        want, notes = expected_tiles(cfg, good)
        got = await exchange(cfg, dut, rng, [command, good], len(want))
        compare_tiles(cfg, got, want, notes, what)
        assert status_of(cfg, dut) == (0, 1, code), f"{what}: status {status_of(cfg, dut)}"
        await clear_status(cfg, dut, what)

    # sticky: the first fault's code survives a second fault and good commands
    first, second = bad_commands(cfg, goods[0])[3], bad_commands(cfg, goods[0])[0]
    want, notes = expected_tiles(cfg, goods[1])
    got = await exchange(cfg, dut, rng, [first[0], goods[1], second[0]], len(want))
    compare_tiles(cfg, got, want, notes, "two faults")
    assert status_of(cfg, dut) == (0, 1, first[1]), f"two faults: status {status_of(cfg, dut)}"
    await clear_status(cfg, dut, "two faults")

    # the longest row the golden model allows is accepted and generated in full: the first
    # tiles and the last one are checked, the run's length against the timing formula (the
    # simulator runs free in between: thousands of tiles)
    longest = Command(int(rng.integers(1, 1 << WIDTH)), drop_threshold(0.25, bits=cfg.bits), 1,
                      cfg.max_cols)
    assert not golden_rejects(cfg, longest)
    await run_long_command(cfg, dut, longest)


async def run_long_command(cfg: Config, dut, command: Command, checked: int = 4):
    """Run ``command`` with the output always ready: its first ``checked`` tiles and its last
    one must match the golden mask, and the last one must become valid in the cycle the timing
    formula gives (the simulator runs free between the first tiles and the last)."""
    want, notes = expected_tiles(cfg, command)
    assert len(want) > checked + 1
    dut.o__ready.value = 1
    dut.i__valid.value = 1
    dut.i__payload.value = command.word(cfg)
    await ReadOnly()
    assert dut.i__ready.value, f"{command}: not ready"
    accept_edge = get_sim_time(unit="ns") + PERIOD_NS / 2        # the rising edge that takes it
    await next_cycle(dut)
    dut.i__valid.value = 0
    got = []
    while len(got) < checked:
        await ReadOnly()
        if dut.o__valid.value:
            got.append(int(dut.o__payload.value))
        await next_cycle(dut)
    compare_tiles(cfg, got, want[:checked], notes, f"first tiles of {command}")
    # busy falls at the rising edge that puts the last tile into the output register
    while True:
        await dut.status.value_change
        await ReadOnly()
        busy, error, code = status_of(cfg, dut)
        assert not error, f"{command}: error {code.name}"
        if not busy:
            break
    cycle = round((get_sim_time(unit="ns") - accept_edge) / PERIOD_NS) + 1
    assert dut.o__valid.value, f"{command}: no tile when busy fell"
    compare_tiles(cfg, [int(dut.o__payload.value)], want[-1:], notes[-1:],
                  f"last tile of {command}")
    k = len(want) - 1
    formula = 1 + (k // math.ceil(command.n / cfg.C) + 1) * cfg.R + (k + 1) * cfg.T
    assert cycle == formula, (f"{command}: last tile (k={k}) valid in cycle {cycle} after "
                              f"accept, documented {formula}")
    dut._log.info("%s: %d tiles, the last valid in cycle %d as documented", command, len(want),
                  cycle)
    await next_cycle(dut)


@cocotb.test()
async def tile_timing_matches_formula(dut):
    cfg = Config(case())
    rng = make_rng(dut, salt=3)
    await start(dut)
    R, C, T = cfg.R, cfg.C, cfg.T
    commands = [Command(int(rng.integers(1, 1 << WIDTH)), int(rng.integers(0, (1 << cfg.bits) + 1)),
                        m, n)
                for m, n in [(1, 1), (R, C), (2 * R + 1, 2 * C + 1), (R + 1, 1), (1, 3 * C - 1)]]
    commands.insert(2, Command(0, 1, 1, 1))                       # a bad one among them
    dut.o__ready.value = 1
    cycle = 0
    accepted_at = None
    pending = list(commands)
    valid_cycles: dict[int, list[int]] = {}
    got: dict[int, list[int]] = {}
    current = None
    while pending or current is not None:
        offering = bool(pending)
        dut.i__valid.value = int(offering)
        if offering:
            dut.i__payload.value = pending[0].word(cfg)
        await ReadOnly()
        if dut.o__valid.value:
            assert current is not None, f"tile {describe_tile(cfg, int(dut.o__payload.value))} " \
                                        f"with no command running"
            valid_cycles[current].append(cycle - accepted_at)
            word = int(dut.o__payload.value)
            got[current].append(word)
            if get_field(cfg.tile, word, "last"):
                finished, current = current, None
                command = commands[finished]
                if offering:
                    assert dut.i__ready.value, (f"{command}: next command not taken in the cycle "
                                                f"its last tile became valid")
        if offering and dut.i__ready.value:
            index = len(commands) - len(pending)
            command = pending.pop(0)
            accepted_at = cycle
            current = index
            valid_cycles[index], got[index] = [], []
            if command.seed == 0:
                await next_cycle(dut)
                cycle += 1
                dut.i__valid.value = 0
                await ReadOnly()
                assert status_of(cfg, dut) == (0, 1, DropoutError.ZERO_SEED), \
                    f"{command}: status {status_of(cfg, dut)} in cycle 1"
                assert dut.i__ready.value, f"{command}: not ready in cycle 1"
                current = None
        await next_cycle(dut)
        cycle += 1
        assert cycle < 100_000, "timing test does not end"
    for index, command in enumerate(commands):
        if command.seed == 0:
            assert valid_cycles[index] == [], f"{command}: tiles for a bad command"
            continue
        groups = math.ceil(command.n / C)
        tiles = math.ceil(command.m / R) * groups
        formula = [1 + (k // groups + 1) * R + (k + 1) * T for k in range(tiles)]
        assert valid_cycles[index] == formula, (
            f"{command}: tiles valid in cycles {valid_cycles[index]} after accept, documented "
            f"{formula} (R={R}, C={C}, T={T})")
        want, notes = expected_tiles(cfg, command)
        compare_tiles(cfg, got[index], want, notes, f"timing {command}")
    dut._log.info("tile timing of %d commands matches 1 + (k // G + 1) R + (k + 1) T",
                  len(commands))
