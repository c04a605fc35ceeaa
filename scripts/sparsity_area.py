# amaranth: UnusedElaboratable=no
"""Area of the sparsity units: zero detect and the dropout mask generator.

Records ``units_area`` in ``docs/results/sparsity_area.json`` and has ``sparta report`` rewrite
the table of ``docs/sparsity_hw.md`` that shows it (:mod:`scripts.report.sparsity`).

Usage: python -m scripts.sparsity_area
"""

from __future__ import annotations

import argparse
import sys

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.sparsity.dropout_mask import DropoutMaskGenerator, jump_network
from hw.sparsity.zero_detect import ZeroDetector
from scripts.results import record
from scripts.yosys_area import print_unit_rows, unit_row
from sim.elaborate import Design
from sim.lfsr import ROW_STRIDE, WIDTH

__all__ = ["UNITS", "main"]


#: Unit name -> constructor options (``zero_detect*``: ZeroDetector, ``dropout_mask*``:
#: DropoutMaskGenerator). ``dropout_mask_u4`` unrolls 4 LFSR steps per cycle (16 cycles per
#: 8 x 8 tile, as in the sim/lfsr.py docstring) instead of 8. ``jump_network`` is the row-stride
#: jump alone (combinational, 32 bits in and out): what each extra jump network would cost.
UNITS = {
    "zero_detect": dict(lanes=8, stages=1),
    "zero_detect_index_list": dict(lanes=8, stages=1, index_list=True),
    "dropout_mask": dict(rows=8, cols=8, bits=8),
    "dropout_mask_u4": dict(rows=8, cols=8, bits=8, steps_per_cycle=4),
    "jump_network": dict(),
}

class JumpNetwork(wiring.Component):
    """The row-stride jump of the dropout mask LFSRs alone (combinational)."""

    def __init__(self):
        super().__init__({"state": In(WIDTH), "jumped": Out(WIDTH)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.jumped.eq(jump_network(self.state, ROW_STRIDE))
        return m


def _design(name, options) -> Design:
    if name.startswith("zero_detect"):
        return Design(ZeroDetector, **options)
    if name == "jump_network":
        return Design(JumpNetwork)
    return Design(DropoutMaskGenerator, **options)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    area = {}
    for name, options in UNITS.items():
        design = _design(name, options)
        row = unit_row(design, name, options)
        if name.startswith("dropout_mask"):
            unit = design.build()
            row["tile_cycles"] = unit.tile_cycles
            row["setup_cycles_per_band"] = unit.setup_cycles
        area[name] = row
    print_unit_rows(area)
    from scripts import report

    path = record("sparsity_area", {"units_area": area}, writer=__name__, config=UNITS)
    print(f"wrote units_area of {path}")
    report.rewrite("sparsity_hw.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
