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
from scripts.yosys_area import print_unit_rows, unit_row
from sim.elaborate import Design

__all__ = ["UNITS", "main"]

#: Unit name -> ``AipSelect`` options: the 8x8 engine's lanes with a 64-output row and the top-8
#: list, and the VGG-style network's FC layers (512 outputs, top-10: every class).
UNITS = {
    "aip_select_8x64_top8": dict(lanes=8, max_len=64, max_n=8),
    "aip_select_8x512_top10": dict(lanes=8, max_len=512, max_n=10),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    area = {name: unit_row(Design(AipSelect, **options), name, options)
            for name, options in UNITS.items()}
    print_unit_rows(area)
    from scripts import report

    path = record("aip_area", {"units_area": area}, writer=__name__, config=UNITS)
    print(f"wrote units_area of {path}")
    report.rewrite("inference.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
