"""The FP units of the foundation, each in its reference configuration (for area and reports).

Each entry: ``name -> (factory, toplevel)``; the factory returns a fresh component. The benches
in ``tb/`` check more configurations than these; the table here is what ``make synth`` and the
docs report.
"""

from __future__ import annotations

__all__ = ["UNITS", "unit_of_record"]


def _decoder():
    from hw.fp.operand import OperandDecoder
    return OperandDecoder(stages=1)


def _mul_full(narrow_path=True):
    """fp16 / e4m3 / e5m2 on both sides, with (the default) or without the tag-selected narrow
    FP8 x FP8 significand multiplier."""
    def make():
        from hw.fp.multiplier import FPMultiplier
        return FPMultiplier(stages=FPMultiplier.CUT_POINTS, narrow_path=narrow_path)
    return make


def _mul_narrow():
    from hw.fp.multiplier import FPMultiplier
    return FPMultiplier(a_formats=("e4m3", "e5m2"), b_formats=("e4m3", "e5m2"),
                        stages=FPMultiplier.CUT_POINTS)


def _adder():
    from hw.fp.adder import FP32Adder
    return FP32Adder(stages=FP32Adder.CUT_POINTS)


def _accumulator():
    from hw.fp.adder import FP32Accumulator
    return FP32Accumulator(stages=1)


def _converter(fmt):
    def make():
        from hw.fp.converter import FP32Converter
        return FP32Converter(fmt=fmt, stages=FP32Converter.CUT_POINTS)
    return make


def _mac():
    from hw.fp.mac import FPMac
    return FPMac()


UNITS = {
    "operand_decoder": (_decoder, "operand_decoder"),
    "fp_mul": (_mul_full(narrow_path=True), "fp_mul"),
    "fp_mul_wide_only": (_mul_full(narrow_path=False), "fp_mul_wide_only"),
    "fp_mul_narrow": (_mul_narrow, "fp_mul_narrow"),
    "fp32_adder": (_adder, "fp32_adder"),
    "fp32_accumulator": (_accumulator, "fp32_accumulator"),
    "fp_mac": (_mac, "fp_mac"),
    **{f"fp32_to_{fmt}": (_converter(fmt), f"fp32_to_{fmt}") for fmt in ("fp16", "bf16", "e4m3", "e5m2")},
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
