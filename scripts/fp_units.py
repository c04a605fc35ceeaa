"""The FP units of the foundation, each in its reference configuration (for area and reports).

Each entry: ``name -> (design, toplevel)`` (a :class:`sim.elaborate.Design`). The benches
in ``tb/`` check more configurations than these; the table here is what ``make synth`` and the
docs report.
"""

from __future__ import annotations

from hw.fp.adder import FP32Accumulator, FP32Adder
from hw.fp.converter import FP32Converter
from hw.fp.mac import FPMac
from hw.fp.multiplier import FPMultiplier
from hw.fp.operand import OperandDecoder
from sim.elaborate import Design

__all__ = ["UNITS", "unit_of_record"]

_FP8 = ("e4m3", "e5m2")

UNITS = {
    "operand_decoder": (Design(OperandDecoder, stages=1), "operand_decoder"),
    # fp16 / e4m3 / e5m2 on both sides, with (the default) or without the tag-selected narrow
    # FP8 x FP8 significand multiplier
    "fp_mul": (Design(FPMultiplier, stages=FPMultiplier.CUT_POINTS, narrow_path=True), "fp_mul"),
    "fp_mul_wide_only": (Design(FPMultiplier, stages=FPMultiplier.CUT_POINTS, narrow_path=False),
                         "fp_mul_wide_only"),
    "fp_mul_narrow": (Design(FPMultiplier, a_formats=_FP8, b_formats=_FP8,
                             stages=FPMultiplier.CUT_POINTS), "fp_mul_narrow"),
    "fp32_adder": (Design(FP32Adder, stages=FP32Adder.CUT_POINTS), "fp32_adder"),
    "fp32_accumulator": (Design(FP32Accumulator, stages=1), "fp32_accumulator"),
    "fp_mac": (Design(FPMac), "fp_mac"),
    **{f"fp32_to_{fmt}": (Design(FP32Converter, fmt=fmt, stages=FP32Converter.CUT_POINTS),
                          f"fp32_to_{fmt}") for fmt in ("fp16", "bf16", "e4m3", "e5m2")},
}


def unit_of_record(record: dict) -> str:
    """Report name of a bench run (``toplevel`` and ``case`` as the runner exported them)."""
    toplevel, case = record["toplevel"], record.get("case", {})
    if toplevel == "fp32_converter":
        return f"fp32_to_{case['fmt']}"
    if toplevel == "fp_mul" and case.get("config") == "narrow":
        return "fp_mul_narrow"
    if toplevel == "fp_mul" and case.get("config") == "full-wide-only":
        return "fp_mul_wide_only"
    return toplevel
