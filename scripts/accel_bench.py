"""The accelerator running compiled GEMM programs from DRAM, in RTL (Verilator): cycles end to
end against the engine's cycles for the same commands -> docs/results/accel.json (its only
writer; ``sparta report`` makes the table of docs/accel.md).

Per GEMM shape, one program (:func:`sim.compiler.compile_gemms`) on the accelerator
(``tb/accelerator_tb.py``, test ``compiled_gemms_from_dram``: the DRAM image after the run is
checked byte for byte against the golden model, so every figure comes from a bit-exact run).
Recorded from the accelerator's own counters: ``cycles`` (busy cycles, start to the end),
``engine_busy_cycles``, ``dma_stall_cycles``, ``bytes_read``, ``bytes_written``. Computed:
``engine_cycles`` (the cycle model of the program's GEMM commands alone,
:func:`sim.engine_model.command_cycles`, the engine's exact timing),
``overlap_efficiency = engine_cycles / cycles`` and ``read_bus_efficiency`` (bytes read per
cycle over the bus width).

Usage: python -m scripts.accel_bench   (sparta measure accel)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from hw.accel.accelerator import Accelerator
from scripts.progress import spinner
from scripts.results import record
from sim.accel_spec import Opcode
from sim.compiler import compile_gemms
from sim.config import AccelConfig, ArrayConfig, EngineConfig, accel_config_to_dict
from sim.elaborate import Design
from sim.engine_model import EngineCommand, command_cycles
from sim.replay import WorkloadGemm
from sim.runner import read_metrics, run_bench

__all__ = ["CONFIG", "SHAPES", "main"]

#: the demo's engine (8x8 output stationary, 64 x 64 memories) on the default 64-bit bus
CONFIG = AccelConfig(engine=EngineConfig(array=ArrayConfig(rows=8, cols=8), spad_width=64,
                                         a_rows=64, b_rows=64, acc_width=64, acc_rows=64))
#: (m, n, k, A format, B format) of each measured program (one GEMM each)
SHAPES = [(64, 64, 64, "fp16", "fp16"), (128, 128, 128, "fp16", "fp16"),
          (128, 128, 128, "e4m3", "e4m3")]


def _placeholder(m, n, k, fa, fb) -> WorkloadGemm:
    """A GEMM of the shape and formats (the program depends on nothing else)."""
    tags = {"fp16": 0, "e4m3": 1, "e5m2": 2}
    return WorkloadGemm(name="gemm", kind="forward", transpose_a=False, transpose_b=False,
                        a_bits=np.zeros((m, k), np.uint16),
                        a_tags=np.full((m, k), tags[fa], np.uint8),
                        b_bits=np.zeros((k, n), np.uint16),
                        b_tags=np.full((k, n), tags[fb], np.uint8), c_bits=None, out_bits=None)


def engine_cycles(config: AccelConfig, shape) -> tuple[int, int]:
    """(GEMM commands, cycle-model cycles of them) of the compiled program of ``shape``."""
    program = compile_gemms(config, [_placeholder(*shape)])
    commands = [EngineCommand(**{name: f.get(name, 0) for name in EngineCommand.NUMBERS},
                              **{name: bool(f.get(name, 0)) for name in EngineCommand.FLAGS})
                for op, f in program.instructions if op is Opcode.GEMM]
    return len(commands), sum(command_cycles(config.engine, c) for c in commands)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    spec = accel_config_to_dict(CONFIG)
    rows = []
    for m, n, k, fa, fb in SHAPES:
        label = f"{m}x{n}x{k} {fa} x {fb}"
        with spinner(f"accelerator on Verilator: {label}"):
            run_dir = run_bench(Design(Accelerator, CONFIG), toplevel="accelerator",
                                bench_module="tb.accelerator_tb", simulator="verilator",
                                testcase="compiled_gemms_from_dram", quiet=True,
                                case={"config": spec, "pause": 0.0,
                                      "fixed": [[m, n, k, False, False, False, fa, fb]]})
        (metrics,) = [r for r in read_metrics(run_dir) if "cycles" in r]
        commands, engine = engine_cycles(CONFIG, (m, n, k, fa, fb))
        row = {"gemm": [m, n, k], "a_format": fa, "b_format": fb, "source": "rtl",
               "bit_exact": True, "commands": commands, "instructions": metrics["instructions"],
               **{key: metrics[key] for key in ("cycles", "engine_busy_cycles",
                                                 "dma_stall_cycles", "bytes_read",
                                                 "bytes_written")},
               "engine_cycles": engine, "engine_cycles_source": "cycle model",
               "overlap_efficiency": round(engine / metrics["cycles"], 4),
               "read_bus_efficiency": round(metrics["bytes_read"] /
                                            (metrics["cycles"] * CONFIG.beat_bytes), 4)}
        rows.append(row)
        print(f"{label}: {row['cycles']} cycles end to end, engine alone {engine} "
              f"({row['overlap_efficiency']:.1%}), {row['bytes_read']} bytes read, "
              f"{row['bytes_written']} written, read bus {row['read_bus_efficiency']:.1%}")
    path = record("accel", {"gemm_programs": rows}, writer=__name__, config=spec)
    print(f"wrote {path}; `sparta report` updates docs/accel.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
