# amaranth: UnusedElaboratable=no
"""Area of the AIP output selection unit (:class:`hw.aip.select.AipSelect`).

Records ``units_area`` in ``docs/results/aip_area.json`` and has ``sparta report`` rewrite the
table of ``docs/inference.md`` that shows it (:mod:`scripts.report.inference`).

Usage: python -m scripts.aip_area
"""

from __future__ import annotations

import argparse
import sys

from hw.aip.select import AipSelect
from scripts.results import record
from scripts.yosys_area import area_of
from sim.elaborate import Design

__all__ = ["UNITS", "main"]

#: Unit name -> ``AipSelect`` options: the 8x8 engine's lanes with a 64-output row and the top-8
#: list, and the VGG-style network's FC layers (512 outputs, top-10: every class).
UNITS = {
    "aip_select_8x64_top8": dict(lanes=8, max_len=64, max_n=8),
    "aip_select_8x512_top10": dict(lanes=8, max_len=512, max_n=10),
}

FIELDS = ("cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp", "ecp5_bram")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    area = {}
    for name, options in UNITS.items():
        print(f"synthesising {name} {options} ...", flush=True)
        result = area_of(Design(AipSelect, **options), name)
        row = {key: result[key] for key in FIELDS}
        row["ecp5_lutram"] = result["ecp5_cells_by_type"].get("TRELLIS_DPR16X4", 0)
        row["options"] = options
        area[name] = row
    print(f"{'unit':26s} {'cells':>7s} {'LUT':>6s} {'FF':>5s} {'LUTRAM':>6s}")
    for name, row in area.items():
        print(f"{name:26s} {row['cells']:7d} {row['ecp5_lut']:6d} {row['ecp5_ff']:5d} "
              f"{row['ecp5_lutram']:6d}")
    from scripts import report

    path = record("aip_area", {"units_area": area}, writer=__name__, config=UNITS)
    print(f"wrote units_area of {path}")
    report.rewrite("inference.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
