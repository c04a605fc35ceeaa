"""Bench: one whole training step of the digits CNN replayed on GemmEngine, bit for bit.

``training_step``: the bench recomputes step 0 of the digits CNN with the accelerator's
numerics (:func:`sim.replay.training_step_gemms`: every forward, backward-data and
weight-gradient GEMM, with its operands as stored and its golden result, each layer's bias
gradient folded into its weight gradient as the last row, :func:`sim.replay.fold_bias_grads`)
and splits each GEMM into commands that fit the engine (:func:`sim.replay.split_step`). For
every command it writes the operand blocks into the A and B scratchpads (skipped when the block
is already there) and, for the first ``k`` slice of an accumulating GEMM, the block of ``C_in``
into the accumulator memory, runs the command (its cycles must equal
:func:`sim.engine_model.command_cycles`) and, after the last ``k`` slice of a block, reads the
block back as FP32. Every word read is checked
twice: against the golden model run on the driver's shadow memories (which also covers the
lanes beyond the block), and against the workload GEMM's golden result (for a folded GEMM the
network's weight-gradient rows and, in its last row, its bias gradient), bit for bit, with the
GEMM's name and the element's indices in hex on a mismatch.

The write streams run with few idle cycles and ``rd_data`` with little backpressure
(``p_idle``/``p_stall`` from the case): bit-exactness on real data is the point here; random
stalls are the engine bench's job (``tb/engine_tb.py``). Records the step's commands, MACs and
cycles per GEMM kind (``tb.harness.record_metrics``).

``gemms``: the same loop over GEMMs a caller saved to a file, with the driver's checks off; it
writes what the engine answered and its cycles back to a file (the RTL backend of
:mod:`tb.engine_api`).
"""

import time

import cocotb
import numpy as np

from sim.replay import load_gemms, split_step, training_step_gemms
from tb.engine_driver import EngineDriver, config_from_case, operand_words
from tb.harness import case, make_rng, record_metrics


def check_block(gemm, command, answers):
    """Compare a block read back (rows of ``lanes``-wide words) with the workload GEMM's
    golden result."""
    m, n = command.command.m, command.command.n
    got = np.array(answers, dtype=np.uint64).reshape(m, -1)[:, :n]
    want = gemm.out_bits[command.c_slices].astype(np.uint64)
    wrong = np.argwhere(got != want)
    if wrong.size:
        (i, j), m0, n0 = wrong[0], command.rows[0], command.cols[0]
        row = " (the bias gradient row)" if gemm.bias_row and m0 + i == gemm.M - 1 else ""
        raise AssertionError(
            f"{gemm.name} ({gemm.M}x{gemm.N}x{gemm.K}): {len(wrong)} of {m * n} results of "
            f"block rows {command.rows} cols {command.cols} differ; first C[{m0 + i}, "
            f"{n0 + j}]{row}: rtl 0x{int(got[i, j]):08x} golden 0x{int(want[i, j]):08x} "
            f"(command {command.command})")


def write_words(shape, lanes):
    """Host write words that lay a block of ``shape`` (one per ``lanes`` elements of a row)."""
    rows, cols = shape
    return rows * -(-cols // lanes)


async def run_commands(driver, gemms, commands):
    """Run ``commands`` (split GEMMs) on the engine: operand blocks written when not already
    resident, ``C_in`` blocks for the first slice of an accumulating GEMM, each block read back
    after its last ``k`` slice. Returns ``(results, totals, words, cycles)``: per GEMM its
    ``M x N`` FP32 patterns as read, per kind the commands, MACs and cycles, per GEMM the host
    words written
    and read, and per GEMM its cycles. Each block read is checked against the workload GEMM's
    golden result when the GEMM has one and the driver checks (``driver.check``)."""
    cfg = driver.config
    resident = {"a": None, "b": None}       # which operand block each scratchpad holds
    lanes = {"a": cfg.array.rows, "b": cfg.array.cols, "acc": cfg.array.cols}
    totals = {}
    words = {"written": [0] * len(gemms), "read": [0] * len(gemms)}
    results = [np.zeros((g.M, g.N), dtype=np.uint32) for g in gemms]
    gemm_cycles = [0] * len(gemms)
    for command in commands:
        gemm = gemms[command.index]
        loads = {}
        for operand, bits, tags, slices in (
                ("a", gemm.a_bits, gemm.a_tags, command.a_slices),
                ("b", gemm.b_bits, gemm.b_tags, command.b_slices)):
            key = (command.index, slices)
            if resident[operand] != key:
                loads[operand] = (operand_words(bits[slices], tags[slices]), 0, 0)
                resident[operand] = key
        if command.first and gemm.accumulate:
            loads["acc"] = (gemm.c_bits[command.c_slices].astype(np.uint64), 0, 0)
        words["written"][command.index] += sum(write_words(block.shape, lanes[name])
                                for name, (block, _, _) in loads.items())
        await driver.load(**loads)
        cycles = await driver.command(command.command, hardware_alone=True)
        gemm_cycles[command.index] += cycles
        entry = totals.setdefault(command.kind, {"commands": 0, "macs": 0, "cycles": 0})
        entry["commands"] += 1
        entry["macs"] += command.macs
        entry["cycles"] += cycles
        if command.last(gemm.K):
            m, n = command.command.m, command.command.n
            try:
                answers = await driver.read_matrix(0, 0, m, n)
            except AssertionError as error:
                raise AssertionError(f"{gemm.name}, block rows {command.rows} cols "
                                     f"{command.cols}: {error}") from None
            words["read"][command.index] += len(answers)
            results[command.index][command.c_slices] = \
                np.array(answers, dtype=np.uint32).reshape(m, -1)[:, :n]
            if driver.check and gemm.out_bits is not None:
                check_block(gemm, command, answers)
    return results, totals, words, gemm_cycles


@cocotb.test()
async def training_step(dut):
    settings = case()
    cfg = config_from_case(settings)
    rng = make_rng(dut)
    driver = EngineDriver(dut, cfg, rng, p_idle=settings["p_idle"], p_stall=settings["p_stall"])
    gemms = training_step_gemms()
    commands = split_step(gemms, cfg)
    dut._log.info("%d GEMMs, %d engine commands", len(gemms), len(commands))
    await driver.start()
    start = time.perf_counter()
    _, totals, words, _ = await run_commands(driver, gemms, commands)
    seconds = time.perf_counter() - start
    total = {key: sum(entry[key] for entry in totals.values())
             for key in ("commands", "macs", "cycles")}
    record_metrics(**total, per_kind=totals, gemms=len(gemms),
                   words_written=sum(words["written"]), words_read=sum(words["read"]),
                   seconds=seconds)
    dut._log.info("training step replayed bit-exact: %d GEMMs, %d commands, %d MACs in %d "
                  "engine cycles (%.1f%% of %d PEs), %d words written, %d read, %.1f s",
                  len(gemms), total["commands"], total["macs"], total["cycles"],
                  100 * total["macs"] / (cfg.array.pes * total["cycles"]), cfg.array.pes,
                  sum(words["written"]), sum(words["read"]), seconds)


@cocotb.test()
async def gemms(dut):
    """The GEMMs of the file ``case["gemms"]`` (:func:`sim.replay.save_gemms`), run without
    any check (``EngineDriver(check=False)``); writes what the engine answered to
    ``case["results"]``: ``out_<i>`` (FP32 patterns) and ``cycles`` per GEMM."""
    settings = case()
    cfg = config_from_case(settings)
    driver = EngineDriver(dut, cfg, make_rng(dut), p_idle=settings["p_idle"],
                          p_stall=settings["p_stall"], check=False)
    workload = load_gemms(settings["gemms"])
    commands = split_step(workload, cfg)
    await driver.start()
    results, totals, words, cycles = await run_commands(driver, workload, commands)
    np.savez(settings["results"], cycles=np.array(cycles, dtype=np.int64),
             commands=np.array([sum(1 for c in commands if c.index == i)
                                for i in range(len(workload))], dtype=np.int64),
             words_written=np.array(words["written"], dtype=np.int64),
             words_read=np.array(words["read"], dtype=np.int64),
             **{f"out_{index}": result for index, result in enumerate(results)})
    dut._log.info("%d GEMMs, %d commands, %d cycles", len(workload), len(commands), sum(cycles))
