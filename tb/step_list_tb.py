"""Bench: scheduled commands of a GemmEngine with step lists
(``hw/engine/step_list_sequencer.py``) against :func:`sim.step_lists.gemm_step_lists` and
:func:`sim.engine_model.scheduled_cycles`.

``scheduled_gemms``: random pruned GEMMs. B (K x N, one format per command) gets a zero pattern
of one kind (:data:`PATTERNS`: random density per filter, all-zero filters, one non-zero per
filter, dense, all zero), its columns a random grouping into tiles of 1..C lanes in random
lane order with the tiles' columns in distinct accumulator banks (any permutation the
scheduler may choose), and the compiler's format (:func:`sim.step_lists.step_lists`) is laid
into the step memory and tile table at random positions and compacted B into the B
scratchpad. A (per-element formats, specials included) may be stored transposed; a command
overwrites or accumulates onto a random ``C_old`` (specials included). Every
command must take exactly the model's cycles; its results are read back and compared bit for
bit, and the columns it does not own must keep their old values. Dense commands run between
them (the natural tiles through the same sequencer). Then the errors: scheduled commands the
engine rejects (``b_transpose``, tiles beyond the table, no tiles), ones that
meet a bad entry as they run (a step ``>= k``, a column ``>= n``, compacted B past the
scratchpad: ``SCHEDULE`` with ``done``), and bad table writes (address outside:
``ACCESS_RANGE``; two lanes in one bank, steps past the memory, no lanes, a step index too
wide: ``SCHEDULE``, not written).
"""

import dataclasses

import cocotb
import numpy as np

from sim.engine_model import EngineCommand, EngineError
from sim.engine_spec import step_index_bits
from sim.step_lists import step_lists
from tb.engine_driver import EngineDriver, config_from_case, operand_words
from tb.engine_tb import TAG_OF, fp32_matrix, operand_matrix, random_command
from tb.harness import case, make_rng, record_metrics

#: Zero patterns of B (pruned weights).
PATTERNS = ("random", "zero_filters", "one_nonzero", "dense", "all_zero")


def pruned_b(rng, k, n, fmt, pattern):
    """Bits (K x N) of a pruned B in format ``fmt``: non-zeros around 1 (either sign), zeros
    ``+0`` or ``-0`` (both count as pruned)."""
    from sim.formats import OPERAND_FORMATS
    from tb.vectors import moderate_bits

    spec = OPERAND_FORMATS[fmt]
    values = moderate_bits(rng, spec, k * n, span_fraction=6).reshape(k, n)
    if pattern == "random":
        keep = rng.random((k, n)) < rng.random(n)            # a density per filter
    elif pattern == "zero_filters":
        keep = (rng.random((k, n)) < 0.5) & (rng.random(n) < 0.5)
    elif pattern == "one_nonzero":
        keep = np.zeros((k, n), dtype=bool)
        keep[rng.integers(0, k, n), np.arange(n)] = True
    elif pattern == "dense":
        keep = np.ones((k, n), dtype=bool)
    else:
        keep = np.zeros((k, n), dtype=bool)
    zeros = rng.integers(0, 2, (k, n), dtype=np.uint64) << np.uint64(spec.width - 1)
    nonzero = values & np.uint64(spec.sign_mask - 1)
    values = np.where(nonzero == 0, values | np.uint64(1), values)     # no zero kept by chance
    return np.where(keep, values, zeros)


def random_groups(rng, n, cols, banks):
    """A random grouping of columns ``0 .. n-1`` into tiles of 1..``cols`` lanes, in random
    lane order, no two columns of a tile in one bank (``column % banks``)."""
    groups = []
    for column in rng.permutation(n):
        column = int(column)
        open_groups = [g for g in groups if len(g) < g.width
                       and all(other % banks != column % banks for other in g)]
        if open_groups and rng.random() < 0.85:
            open_groups[int(rng.integers(0, len(open_groups)))].append(column)
        else:
            group = _Group([column])
            group.width = int(rng.integers(1, cols + 1))
            groups.append(group)
    return [tuple(g) for g in groups]


class _Group(list):
    width = 1


async def scheduled_command(driver, rng, pattern):
    """One random scheduled GEMM laid out and run; returns its cycles (None when it did not
    fit the memories)."""
    cfg = driver.config
    cols = cfg.array.cols
    m = int(rng.integers(1, min(3 * cfg.array.rows, cfg.acc_rows) + 1))
    n = int(rng.integers(1, min(3 * cols, cfg.acc_width) + 1))
    k = int(rng.integers(1, min(cfg.spad_width, cfg.a_rows, 3 * cfg.array.rows + 4) + 1))
    fmt = str(rng.choice(cfg.array.b_formats))
    b_bits = pruned_b(rng, k, n, fmt, pattern)
    groups = random_groups(rng, n, cols, cfg.acc_banks)
    lists = step_lists(b_bits, groups, cols=cols, b_fmt=fmt)
    entries, tiles = len(lists.steps), len(lists.tiles)
    if (entries > cfg.step_entries or tiles > cfg.tile_entries
            or max(entries, 1) > cfg.b_rows):
        return None
    # compacted B: row b_row + p holds step-memory entry p
    step_base = int(rng.integers(0, min(cfg.step_entries - entries,
                                        cfg.b_rows - max(entries, 1)) + 1))
    tile_base = int(rng.integers(0, cfg.tile_entries - tiles + 1))
    b_row = int(rng.integers(0, cfg.b_rows - step_base - max(entries, 1) + 1))
    b_col = int(rng.integers(0, cfg.spad_width - cols + 1))
    a_t = bool(rng.integers(0, 2))
    a_shape = (k, m) if a_t else (m, k)
    if a_shape[0] > cfg.a_rows or a_shape[1] > cfg.spad_width:
        return None
    a_row = int(rng.integers(0, cfg.a_rows - a_shape[0] + 1))
    a_col = int(rng.integers(0, cfg.spad_width - a_shape[1] + 1))
    c_row = int(rng.integers(0, cfg.acc_rows - m + 1))
    c_col = int(rng.integers(0, cfg.acc_width - n + 1))
    profile = str(rng.choice(["moderate", "special", "zeros"], p=[0.5, 0.3, 0.2]))
    a_words = operand_matrix(rng, a_shape, cfg.array.a_formats, profile)
    compact = operand_words(lists.b, np.full(lists.b.shape, TAG_OF[fmt], dtype=np.uint64))
    old = fp32_matrix(rng, (m, n), str(rng.choice(["moderate", "special", "zeros"])))
    await driver.load(a=(a_words, a_row, a_col), acc=(old, c_row, c_col))
    await driver.load_step_lists(lists, step_base=step_base, tile_base=tile_base,
                                 b=(compact, b_row + step_base, b_col) if entries else None)
    command = EngineCommand(m=m, n=n, k=k, a_row=a_row, a_col=a_col, b_row=b_row,
                            b_col=b_col, c_row=c_row, c_col=c_col, a_transpose=a_t,
                            accumulate=bool(rng.integers(0, 2)), scheduled=True,
                            tile_first=tile_base, tile_count=tiles)
    cycles = await driver.command(command)
    await driver.read_matrix(c_row, c_col, m, n)
    return cycles, lists


async def bad_schedules(driver, rng):
    """Rejected scheduled commands, ones that meet a bad entry as they run, and bad table
    writes; each error checked and cleared."""
    cfg = driver.config
    cols = cfg.array.cols
    # a good 1-tile schedule to break: steps 0..1 of step k = 0, 1, columns 0..
    await driver.load(a=(operand_matrix(rng, (2, 2), cfg.array.a_formats, "moderate"), 0, 0))
    width = min(cols, 2)
    await driver._send("wr_steps", driver.step_words([(0, 0), (1, 1)]))
    await driver._send("wr_tiles", driver.tile_words([(0, 0, 2, tuple(range(width)))]))
    good = EngineCommand(m=2, n=width, k=2, scheduled=True, tile_first=0, tile_count=1)
    rejected = [
        (dict(b_transpose=True), EngineError.SCHEDULE),
        (dict(tile_first=cfg.tile_entries), EngineError.SCHEDULE),
        (dict(tile_count=cfg.tile_entries + 1), EngineError.SCHEDULE),
        (dict(tile_count=0), EngineError.ZERO_SIZE),
        (dict(b_row=cfg.b_rows), EngineError.B_RANGE),
    ]
    for change, code in rejected:
        command = dataclasses.replace(good, **change)
        await driver.command(command)          # checks code and cycles (the reject's)
        await driver.clear_error()
    # met while running: step 1 >= k = 1; a column >= n; compacted B beyond the scratchpad
    running = [dataclasses.replace(good, k=1), dataclasses.replace(good, b_row=cfg.b_rows - 1)]
    if width > 1:
        running.append(dataclasses.replace(good, n=1))
    for command in running:
        await driver.command(command)
        await driver.clear_error()
    # bad table writes: none of them changes the memories
    bad_writes = [
        ("wr_steps", driver.step_words, [(cfg.step_entries, 0)], EngineError.ACCESS_RANGE),
        ("wr_steps", driver.step_words, [(0, 1 << step_index_bits(cfg))],
         EngineError.SCHEDULE),
        ("wr_tiles", driver.tile_words, [(cfg.tile_entries, 0, 1, (0,))],
         EngineError.ACCESS_RANGE),
        ("wr_tiles", driver.tile_words, [(0, cfg.step_entries, 1, (0,))],
         EngineError.SCHEDULE),
        ("wr_tiles", driver.tile_words, [(0, 0, 1, (cfg.acc_width,))], EngineError.SCHEDULE),
    ]
    if cols > 1:
        bad_writes.append(("wr_tiles", driver.tile_words,
                           [(0, 0, 1, (0, cfg.acc_banks))], EngineError.SCHEDULE))
    for name, words, entries, code in bad_writes:
        await driver._send(name, words(entries))
        await driver.check_error(code, f"{name} {entries}")
        await driver.clear_error()
    # the table still holds the good tile: it runs
    await driver.command(good)
    await driver.read_matrix(0, 0, good.m, good.n)


@cocotb.test()
async def scheduled_gemms(dut):
    cfg = config_from_case(case())
    rng = make_rng(dut)
    driver = EngineDriver(dut, cfg, rng)
    await driver.start()
    ran = {pattern: 0 for pattern in PATTERNS}
    dense = 0
    target = int(case().get("commands", 20))
    attempts = 0
    # every pattern at least once (a random one may not fit a small engine's memories on the
    # first tries), and the target in all
    while ((sum(ran.values()) < target or not all(ran.values()))
           and attempts < 40 * max(target, len(PATTERNS))):
        attempts += 1
        pattern = PATTERNS[attempts % len(PATTERNS)]
        outcome = await scheduled_command(driver, rng, pattern)
        if outcome is not None:
            ran[pattern] += 1
        if rng.random() < 0.2:        # a dense command through the same sequencer
            command = random_command(rng, cfg, 2 * cfg.array.cols + 1)
            (ah, aw), (bh, bw) = command.a_shape, command.b_shape
            await driver.load(
                a=(operand_matrix(rng, (ah, aw), cfg.array.a_formats, "moderate"),
                   command.a_row, command.a_col),
                b=(operand_matrix(rng, (bh, bw), cfg.array.b_formats, "moderate"),
                   command.b_row, command.b_col))
            await driver.command(command)
            await driver.read_matrix(command.c_row, command.c_col, command.m, command.n)
            dense += 1
    missing = [pattern for pattern, count in ran.items() if count == 0]
    assert not missing, f"patterns never run (memories too small?): {missing}"
    await bad_schedules(driver, rng)
    record_metrics(scheduled=sum(ran.values()), dense=dense, patterns=ran)
    dut._log.info(f"scheduled commands per pattern {ran}, dense {dense}")
