"""Area of zero skipping with the lookahead window (``ArrayConfig.skip_window``) against the
dense engine, by Yosys.

Measured units (generic cells of ``synth -flatten``, memories excluded, and ``synth_ecp5``; see
:mod:`scripts.yosys_area`):

* the OS PE: dense, with the zero gate, with the zero gate and a window of 2 and of 4 (the
  B-operand window registers and the operand mux);
* the tile sequencer of the 8x8 and of the 4x4 engine: dense and with the windows (flag reads,
  flag queue, the window's choosers, ``d`` operand reads);
* whole 4x4 engines with 64 x 64 scratchpads, dense and with each window (with the copies of
  the scratchpads, the flag planes and the zero detect on the write path); the dense arrays
  (the denominators) are taken from ``docs/results/engine_area.json``
  (``scripts.engine_report``);
* output masks (``EngineConfig(output_mask=True)``, windows of ``--mask-windows``): the 8x8
  sequencer with masks against the one without, plus the dropout mask writer
  (:class:`hw.engine.mask.DropoutMaskWriter`); the keep planes are memory;
* whole 8x8 engines (64 x 64 scratchpads): dense, with each window, and with each masked
  window, synthesised by parts (:func:`scripts.yosys_area.by_parts_row`: the engine with
  its PEs as black boxes once, each PE type once), because Yosys needs about an hour of CPU
  for one flat 8x8 array, and by parts about a minute for the array and a few minutes for a
  whole engine. The sum is checked against that one flat
  run: the dense 8x8 array by parts against ``array_os_8x8`` of
  ``docs/results/engine_area.json`` (``by_parts_check``).

The skip logic's overhead is the difference of two whole-engine syntheses, reported against
the dense array of the same configuration (:func:`sim.experiments.skip.area_overheads`):
``(engine with window - dense engine) / dense array``, on the 4x4 engine (flat) and on the 8x8
engine (by parts); the estimate composed from units that the 8x8 figure replaced is kept
beside it.

Memory bits (copies of the scratchpads: ``d`` of each operand scratchpad and ``d`` 1-bit flag
planes) are reported separately; they are not cells.

Records ``skip_area`` in ``docs/results/skip_area.json`` and has ``sparta report`` rewrite the
area tables of ``docs/sparsity_hw.md``. The headline keys of ``docs/results/skip_measure.json``
take their ``skip_area_overhead`` (and the default design its area rule) from it when
``python -m scripts.skip_measure --report-only`` runs next.

Usage: python -m scripts.skip_area [--windows 2,3,4] [--mask-windows 2,3,4]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from scripts.engine_report import engine_config
from scripts.results import load, record
from scripts.yosys_area import by_parts_row
from sim.config import ArrayConfig, MAX_SKIP_WINDOW
from sim.elaborate import Design
from sim.experiments.skip import area_overheads
from sim.skip_timing import with_window

__all__ = ["units", "engines", "main"]

FIELDS = ("cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp")
MEMORY_FIELDS = ("memories", "memory_bits", "ecp5_bram")


def _flat_top(inner):
    """``inner`` behind plain ports: a sequencer's always-ready streams have constant
    ``ready`` members, which cannot be top-level ports."""
    from amaranth import Const, Module, Value
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    pairs = []
    for path, member, value in inner.signature.flatten(inner):
        if isinstance(value, Const):
            continue
        pairs.append(("__".join(str(part) for part in path), member.flow,
                      Value.cast(value).shape(), value))

    class FlatTop(wiring.Component):
        def __init__(self):
            super().__init__({name: (In if flow == In else Out)(shape)
                              for name, flow, shape, _ in pairs})

        def elaborate(self, platform):
            m = Module()
            m.submodules.inner = inner
            for name, flow, _, value in pairs:
                ours = getattr(self, name)
                m.d.comb += value.eq(ours) if flow == In else ours.eq(value)
            return m

    return FlatTop()


def units(windows, mask_windows=()) -> dict:
    """name -> :class:`sim.elaborate.Design` (the name is also the Verilog top)."""
    from hw.engine.engine import GemmEngine
    from hw.engine.mask import DropoutMaskWriter
    from hw.engine.sequencer import geometries
    from hw.engine.pe import OutputStationaryPE
    from hw.engine.sequencer import OutputStationarySequencer
    from hw.engine.skip_sequencer import SkipSequencer

    table = {
        "pe_os": Design(OutputStationaryPE, ArrayConfig()),
        "pe_os_skip": Design(OutputStationaryPE, ArrayConfig(skip_zeros=True)),
    }
    for d in windows:
        table[f"pe_os_window{d}"] = Design(OutputStationaryPE,
                                           ArrayConfig(skip_zeros=True, skip_window=d))
    for preset in ("8x8", "4x4"):
        table[f"sequencer_os_{preset}"] = Design(
            _flat_top, Design(OutputStationarySequencer, engine_config(preset)))
        for d in windows:
            table[f"sequencer_os_{preset}_window{d}"] = Design(
                _flat_top, Design(SkipSequencer, with_window(engine_config(preset), d)))
    # the dense 4x4 engine is synthesised here, from the same sources as the window engines
    table["engine_os_4x4"] = Design(GemmEngine, engine_config("4x4"))
    for d in windows:
        table[f"engine_os_4x4_window{d}"] = Design(GemmEngine,
                                                   with_window(engine_config("4x4"), d))
    for d in mask_windows:
        table[f"sequencer_os_8x8_window{d}_mask"] = Design(
            _flat_top, Design(SkipSequencer, _masked(with_window(engine_config("8x8"), d))))
    if mask_windows:
        table["mask_writer_8x8"] = Design(_flat_top, Design(
            DropoutMaskWriter, geometries(engine_config("8x8"))[2],
            engine_config("8x8").array.rows))
    return table


def engines(windows, mask_windows=()) -> dict:
    """name -> :class:`sim.elaborate.Design` of the whole 8x8 engines (the name is also the
    Verilog top): dense, each window of ``windows`` and ``mask_windows``, and each masked
    window."""
    from hw.engine.engine import GemmEngine

    dense = engine_config("8x8")
    table = {"engine_os_8x8": Design(GemmEngine, dense)}
    for d in sorted(set(windows) | set(mask_windows)):
        table[f"engine_os_8x8_window{d}"] = Design(GemmEngine, with_window(dense, d))
    for d in mask_windows:
        table[f"engine_os_8x8_window{d}_mask"] = Design(GemmEngine,
                                                       _masked(with_window(dense, d)))
    return table


def by_parts_check(flat: dict) -> dict:
    """The dense 8x8 array by parts against its flat synthesis (``flat``: ``array_os_8x8``
    of ``engine_area.json``): both rows and the relative difference of each figure."""
    from hw.engine.array import SystolicArray

    parts = by_parts_row(Design(SystolicArray, ArrayConfig()), "array_os_8x8", r"pe_\d+_\d+")
    keys = ("cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp")
    return {"unit": "array_os_8x8", "by_parts": {key: parts[key] for key in keys},
            "pe_types": len(parts["parts"]), "flat": {key: flat[key] for key in keys},
            "difference": {key: (parts[key] - flat[key]) / flat[key] for key in keys}}


def _masked(config):
    return dataclasses.replace(config, output_mask=True)


def main(argv=None):
    from scripts.cli import comma_subset
    from scripts.yosys_area import area_of

    choices = tuple(str(d) for d in range(2, MAX_SKIP_WINDOW + 1))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=comma_subset("windows", choices),
                        default=("2", "3", "4"),
                        help=f"comma-separated subset of {','.join(choices)} (default 2,3,4)")
    parser.add_argument("--mask-windows", type=comma_subset("mask windows", choices),
                        default=("2", "3", "4"), help="windows whose output-mask logic is "
                        "measured (8x8 sequencer, dropout mask writer and whole 8x8 engine; "
                        "default 2,3,4)")
    args = parser.parse_args(argv)
    windows = tuple(int(d) for d in args.windows)
    mask_windows = tuple(int(d) for d in args.mask_windows)
    gemm_area = load("engine_area", reader=__name__)["area"]
    area = {}
    for name, design in units(windows, mask_windows).items():
        began = time.perf_counter()
        print(f"area: {name} ...", flush=True)
        result = area_of(design, name)
        row = {key: result[key] for key in FIELDS}
        if result.get("memory_bits") or result.get("ecp5_bram"):
            row.update({key: result.get(key, 0) for key in MEMORY_FIELDS})
        area[name] = row
        print(f"      {row}  ({time.perf_counter() - began:.0f} s)", flush=True)
    whole = {}
    for name, design in engines(windows, mask_windows).items():
        began = time.perf_counter()
        print(f"area: {name} (by parts) ...", flush=True)
        whole[name] = by_parts_row(design, name)
        figures = {k: v for k, v in whole[name].items() if k not in ("rest", "parts")}
        print(f"      {figures}  "
              f"({time.perf_counter() - began:.0f} s)", flush=True)
    check = by_parts_check(gemm_area["array_os_8x8"])
    print("by parts vs flat, dense 8x8 array: " + ", ".join(
        f"{key} {check['by_parts'][key]} vs {check['flat'][key]} "
        f"({100 * check['difference'][key]:+.2f}%)" for key in check["flat"]))
    summary = area_overheads(area, gemm_area, windows, mask_windows, engines=whole)
    for name, row in summary.items():
        if name.startswith("mask"):
            print(f"{name}: +{row['cells_8x8']} cells = {100 * row['fraction_8x8']:.2f}% of "
                  f"the dense 8x8 array ({100 * row['with_window_fraction_8x8']:.2f}% with "
                  f"the window), +{row['memory_bits_8x8']} memory bits")
            continue
        print(f"{name}: 4x4 engine +{row['engine_4x4_cells']} cells = "
              f"{100 * row['fraction_4x4']:.1f}% of the dense 4x4 array; 8x8 engine "
              f"+{row['cells_8x8']} = {100 * row['fraction_8x8']:.1f}% of the dense 8x8 array "
              f"(composed estimate: +{row['composed_cells_8x8']}), +{row['ecp5_lut_8x8']} "
              f"LUT, +{row['memory_bits_8x8']} memory bits")
    from scripts import report

    path = record("skip_area", {"skip_area": {
        "units": area, "engines_8x8": whole, "by_parts_check": check, "overhead": summary,
        "dense_from": "docs/results/engine_area.json area",
        "command": "python -m scripts.skip_area"}}, writer=__name__,
        config={"windows": windows, "mask_windows": mask_windows})
    print(f"wrote skip_area of {path}; run `python -m scripts.skip_measure --report-only` for "
          "the headline keys' area and the default design")
    report.rewrite("sparsity_hw.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
