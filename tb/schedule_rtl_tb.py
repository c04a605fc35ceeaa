"""Bench: pruned layers run on the RTL engine from their schedules (``scripts.schedule_rtl``).

``schedule_layers``: the case names an engine configuration (``config``, plain data of
:func:`sim.config.config_to_dict`) and an npz file of GEMMs written by ``scripts.schedule_rtl``:
per GEMM ``<name>.a`` (A, fp16 bits, M x K), ``<name>.b`` (B bits, K x N, format
``<name>.fmt``) and ``<name>.groups`` (the schedule's tiles, columns in lane order, ``-1``
padded). Each is laid out in the scheduled format (:func:`sim.step_lists.step_lists`) and run
with the hardware alone (no Python per cycle) as the engine's memories allow: K in chunks of
``spad_width`` (each chunk its own step lists, accumulating onto the previous chunk's
results), and each chunk's tiles in runs whose steps fit the step memory, one command per run.
(and table entries). The driver checks every command's cycles against :func:`sim.engine_model.scheduled_cycles` and
every result word against :func:`sim.step_lists.gemm_step_lists`. Records per GEMM the
commands, the RTL's cycles and the model's.
"""

import json

import cocotb
import numpy as np

from sim.config import engine_config_from
from sim.engine_model import EngineCommand, scheduled_cycles
from sim.gemm import OPERAND_TAGS
from sim.step_lists import StepLists, step_lists
from tb.engine_driver import EngineDriver, operand_words
from tb.harness import case, make_rng, record_metrics

TAG_OF = {name: tag for tag, name in OPERAND_TAGS.items()}


def passes(lists, capacity: int, tiles: int):
    """The tiles of ``lists`` in consecutive runs of at most ``tiles`` tiles whose steps fit
    ``capacity`` entries (a tile longer than that is a ValueError)."""
    runs, run, used = [], [], 0
    for tile in lists.tiles:
        length = tile[1]
        if length > capacity:
            raise ValueError(f"a tile of {length} steps does not fit {capacity} entries")
        if run and (used + length > capacity or len(run) == tiles):
            runs.append(run)
            run, used = [], 0
        run.append(tile)
        used += length
    return runs + [run]


@cocotb.test()
async def schedule_layers(dut):
    cfg = engine_config_from(case()["config"])
    rng = make_rng(dut)
    driver = EngineDriver(dut, cfg, rng, p_idle=0.0, p_stall=0.0)
    await driver.start()
    inputs = np.load(case()["inputs"])
    names = json.loads(str(inputs["names"]))
    chunk = cfg.spad_width
    capacity = min(cfg.step_entries, cfg.b_rows)
    for name in names:
        a_all = inputs[f"{name}.a"].astype(np.uint64)           # fp16 bits, M x K
        b_all = inputs[f"{name}.b"]
        fmt = str(inputs[f"{name}.fmt"])
        groups = [tuple(int(c) for c in row if c >= 0) for row in inputs[f"{name}.groups"]]
        m, k = a_all.shape
        n = b_all.shape[1]
        cycles = model = commands = 0
        for k0 in range(0, k, chunk):            # K in chunks of one scratchpad row
            a_bits = a_all[:, k0:k0 + chunk]
            a_words = operand_words(a_bits, np.full(a_bits.shape, TAG_OF["fp16"],
                                                    dtype=np.uint64))
            await driver.load(a=(a_words, 0, 0))
            lists = step_lists(b_all[k0:k0 + chunk], groups, cols=cfg.array.cols, b_fmt=fmt)
            for run in passes(lists, capacity, cfg.tile_entries):  # tiles in runs that fit the step memory
                first = run[0][0]
                size = sum(length for _, length, _ in run)
                part = StepLists(k=lists.k, n=n, cols=lists.cols,
                                 tiles=tuple((f - first, length, columns)
                                             for f, length, columns in run),
                                 steps=lists.steps[first:first + size],
                                 b=lists.b[first:first + size])
                compact = operand_words(part.b, np.full(part.b.shape, TAG_OF[fmt],
                                                        dtype=np.uint64))
                await driver.load_step_lists(part, step_base=0, tile_base=0,
                                             b=(compact, 0, 0) if size else None)
                command = EngineCommand(m=m, n=n, k=a_bits.shape[1], scheduled=True,
                                        tile_first=0, tile_count=len(run),
                                        accumulate=k0 > 0)
                # the driver checks the cycles against the model and, below, every result
                cycles += await driver.command(command, hardware_alone=True)
                model += scheduled_cycles(cfg, command, [length for _, length, _ in run])
                commands += 1
        await driver.read_matrix(0, 0, m, n)
        record_metrics(gemm=name, cycles=cycles, model_cycles=model, commands=commands,
                       m=m, k=k, n=n, tiles=len(groups))
        dut._log.info(f"{name}: {commands} commands, {cycles} cycles (model {model})")
