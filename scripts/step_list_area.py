"""Area of the hardware that runs a schedule (step lists, ``EngineConfig.step_entries``),
by Yosys, against the engine without it.

Measured units (generic cells of ``synth -flatten`` and ``synth_ecp5``, :mod:`scripts.yosys_area`;
memories are counted apart as bits):

* the tile sequencer of the 8x8 engine with the zero gate (``engine_config("8x8")`` and
  ``skip_zeros``): the dense :class:`~hw.engine.sequencer.OutputStationarySequencer` against
  the :class:`~hw.engine.step_list_sequencer.StepListSequencer` (the dispatcher over the tile
  table, the step-index path, the scatter addresses and the table-write checks) with a step
  memory of :data:`STEP_ENTRIES` and a tile table of :data:`TILE_ENTRIES` entries, both read
  combinationally (in LUTs on an FPGA: ``ecp5_lut`` counts them, the generic cells do not);
* the 8x8 engine's accumulator memory (64 x 64 FP32): row accesses (rotations) against scatter
  accesses (a one-hot lane select per bank, a bank select per read lane);
* whole 4x4 engines with the zero gate (``engine_config("4x4")``), without and with step lists.

Records ``docs/results/step_list_area.json`` and has ``sparta report`` rewrite the area table of
``docs/step_lists.md``.

Usage: python -m scripts.step_list_area
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from scripts.engine_report import engine_config
from scripts.results import record
from sim.elaborate import Design

__all__ = ["STEP_ENTRIES", "TILE_ENTRIES", "units", "main"]

#: Step-memory and tile-table entries of the measured sequencer: the digits CNN's largest pruned
#: layer at 50 % (conv2 forward, at most 72 steps x 2 tiles) and more; fc1 (K = 1024) runs in
#: K chunks of one scratchpad width, each with its own lists.
STEP_ENTRIES = 256
TILE_ENTRIES = 32
FIELDS = ("cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp")
MEMORY_FIELDS = ("memories", "memory_bits", "ecp5_bram")


def gated(preset: str, **changes):
    """``engine_config(preset)`` with the zero gate (step lists need it) and ``changes``."""
    config = engine_config(preset)
    array = dataclasses.replace(config.array, skip_zeros=True)
    return dataclasses.replace(config, array=array, **changes)


def with_steps(config):
    return dataclasses.replace(config, step_entries=STEP_ENTRIES, tile_entries=TILE_ENTRIES)


def units() -> dict:
    """name -> :class:`sim.elaborate.Design` (the name is also the Verilog top)."""
    from hw.engine.engine import GemmEngine
    from hw.engine.scratchpad import SkewedScratchpad
    from hw.engine.sequencer import OutputStationarySequencer
    from hw.engine.step_list_sequencer import StepListSequencer
    from scripts.skip_area import _flat_top

    config = gated("8x8")
    acc = dict(lanes=config.array.cols, width=config.acc_width, rows=config.acc_rows,
               element=32)
    return {
        "sequencer_os_8x8": Design(_flat_top, Design(OutputStationarySequencer, config)),
        "sequencer_os_8x8_steps": Design(_flat_top,
                                         Design(StepListSequencer, with_steps(config))),
        "acc_memory_8x8": Design(_flat_top, Design(SkewedScratchpad, **acc)),
        "acc_memory_8x8_scatter": Design(_flat_top, Design(SkewedScratchpad, **acc,
                                                           scatter=True)),
        "engine_os_4x4": Design(GemmEngine, gated("4x4")),
        "engine_os_4x4_steps": Design(GemmEngine, with_steps(gated("4x4"))),
    }


def overheads(area: dict) -> dict:
    """What step lists add, per pair of units (with - without), in cells, ECP5 LUTs and FFs,
    and as a fraction of the unit without."""
    pairs = {"sequencer_8x8": ("sequencer_os_8x8", "sequencer_os_8x8_steps"),
             "acc_memory_8x8": ("acc_memory_8x8", "acc_memory_8x8_scatter"),
             "engine_4x4": ("engine_os_4x4", "engine_os_4x4_steps")}
    result = {}
    for name, (without, with_) in pairs.items():
        row = {}
        for key in ("cells", "ecp5_lut", "ecp5_ff"):
            added = area[with_][key] - area[without][key]
            row[key] = added
            row[f"{key}_fraction"] = round(added / area[without][key], 4) \
                if area[without][key] else None
        row["memory_bits"] = (area[with_].get("memory_bits", 0)
                              - area[without].get("memory_bits", 0))
        result[name] = row
    return result


def main(argv=None):
    from scripts.yosys_area import area_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    area = {}
    for name, design in units().items():
        began = time.perf_counter()
        print(f"area: {name} ...", flush=True)
        result = area_of(design, name)
        row = {key: result[key] for key in FIELDS}
        row.update({key: result.get(key, 0) for key in MEMORY_FIELDS})
        area[name] = row
        print(f"      {row}  ({time.perf_counter() - began:.0f} s)", flush=True)
    added = overheads(area)
    for name, row in added.items():
        print(f"{name}: +{row['cells']} cells ({100 * (row['cells_fraction'] or 0):.1f}%), "
              f"+{row['ecp5_lut']} ECP5 LUTs, +{row['ecp5_ff']} FFs, "
              f"+{row['memory_bits']} memory bits")
    from scripts import report

    path = record("step_list_area", {"step_list_area": {
        "units": area, "added": added, "step_entries": STEP_ENTRIES,
        "tile_entries": TILE_ENTRIES, "command": "python -m scripts.step_list_area"}},
        writer=__name__, config={"step_entries": STEP_ENTRIES, "tile_entries": TILE_ENTRIES,
                                 "sequencer": gated("8x8"), "engine": gated("4x4")})
    print(f"wrote {path}")
    report.rewrite("step_lists.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
