"""make synth: Yosys area of every FP unit -> docs/results/fp_area.json (``area``), and
docs/area.md from it (``sparta report``, :mod:`scripts.report.fp`).

A run of every unit replaces the file; a run of some units (``python -m scripts.synth fp_mul``)
updates their rows and keeps the others'.

Usage: python -m scripts.synth [unit ...]
"""

from __future__ import annotations

import argparse
import sys

from scripts.fp_units import UNITS
from scripts.progress import spinner
from scripts.results import DOCS_DIR, load, record
from scripts.yosys_area import FLOW_VERSION, area_of

FIELDS = ("cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("units", nargs="*", help=f"subset of {sorted(UNITS)}")
    args = parser.parse_args(argv)
    unknown = set(args.units) - set(UNITS)
    if unknown:
        parser.error(f"unknown units {sorted(unknown)}; choose from {sorted(UNITS)}")
    names = args.units or list(UNITS)
    area = {}
    for name in names:
        design, top = UNITS[name]
        print(f"synthesising {name} ...", flush=True)
        with spinner(f"Yosys: {name}"):
            result = area_of(design, top)
        area[name] = row = {key: result[key] for key in FIELDS}
        print(f"{name:18s} cells {row['cells']:6d}  LUT {row['ecp5_lut']:6d}  "
              f"FF {row['ecp5_ff']:5d}  DSP {row['ecp5_dsp']:3d}")
    config = {"flow_version": FLOW_VERSION,
              "units": {name: UNITS[name][0].spec() for name in names}}
    if args.units:   # some units: keep the other units' rows
        kept = load("fp_area", reader=__name__, missing_ok=True).get("area", {})
        area = {**kept, **area}
    path = record("fp_area", {"area": area}, writer=__name__, config=config,
                  replace=not args.units)
    from scripts.report import write

    written = write([DOCS_DIR / "area.md", DOCS_DIR / "fp_units.md"])
    print(f"wrote {path}" + (f" and {', '.join(written)}" if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
