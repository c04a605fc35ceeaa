# amaranth: UnusedElaboratable=no
"""Runner: FPMultiplier on Icarus and Verilator, and its parameter checks."""

import re

import pytest
from amaranth.back import rtlil

from hw.fp.multiplier import FPMultiplier, ProductDatapath
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors

FULL = ("fp16", "e4m3", "e5m2")
NARROW = ("e4m3", "e5m2")

CONFIGURATIONS = {
    "full-comb": dict(a_formats=FULL, b_formats=FULL, stages=0),
    "full-piped": dict(a_formats=FULL, b_formats=FULL, stages=FPMultiplier.CUT_POINTS),
    # without the tag-selected narrow FP8 x FP8 path (the full configurations have it)
    "full-wide-only": dict(a_formats=FULL, b_formats=FULL, stages=2, narrow_path=False),
    "narrow": dict(a_formats=NARROW, b_formats=NARROW, stages=1),
    # unequal significand widths (11 x 4) and a partly registered pipeline
    "fp16-x-fp8": dict(a_formats=("fp16",), b_formats=NARROW, stages=2),
    # a narrow 4 x 4 path next to an 11 x 4 wide multiplier
    "mixed-x-fp8": dict(a_formats=FULL, b_formats=NARROW, stages=1),
}


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_fp_mul(simulator, config):
    params = CONFIGURATIONS[config]
    run_bench(Design(FPMultiplier, **params), toplevel="fp_mul", bench_module="tb.fp_mul_tb",
              simulator=simulator,
              case={"config": config, "a_formats": list(params["a_formats"]),
                    "b_formats": list(params["b_formats"]), "stages": params["stages"],
                    "narrow_path": params.get("narrow_path", True), "vectors": unit_vectors(len(CONFIGURATIONS))})


def multiplier_cells(component):
    """``(A_WIDTH, B_WIDTH)`` of every ``$mul`` cell in the design's RTLIL, sorted."""
    text = rtlil.convert(component)
    cells = re.findall(r"cell \$mul .*?\n\s*end", text, re.S)
    return sorted(tuple(int(re.search(rf"parameter \\{port}_WIDTH (\d+)", cell).group(1))
                        for port in "AB")
                  for cell in cells)


@pytest.mark.parametrize("a_formats, b_formats, narrow_path, widths, narrow", [
    (FULL, FULL, False, (11, 11), None),
    (FULL, FULL, True, (11, 11), (4, 4)),
    (FULL, ("fp16", "e5m2"), True, (11, 11), (4, 3)),
    (FULL, NARROW, True, (11, 4), (4, 4)),
    # nothing to separate: FP8-only (already narrow), or no FP8 x FP8 pair possible
    (NARROW, NARROW, True, (4, 4), None),
    (("e4m3",), ("e5m2",), True, (4, 3), None),
    (("fp16",), NARROW, True, (11, 4), None),
])
def test_significand_multiplier_width(a_formats, b_formats, narrow_path, widths, narrow):
    mul = FPMultiplier(a_formats=a_formats, b_formats=b_formats, narrow_path=narrow_path)
    assert (mul.a_sig_width, mul.b_sig_width) == widths
    assert mul.has_narrow_path == (narrow is not None)
    assert multiplier_cells(mul) == sorted([widths] + ([narrow] if narrow else []))


@pytest.mark.parametrize("narrow_path", [1, 0, None, "yes"])
@pytest.mark.parametrize("unit", [FPMultiplier, ProductDatapath])
def test_rejects_bad_narrow_path(unit, narrow_path):
    with pytest.raises(ValueError, match=rf"^narrow_path must be True or False, not {narrow_path!r}$"):
        unit(narrow_path=narrow_path)


@pytest.mark.parametrize("field", ["a_formats", "b_formats"])
@pytest.mark.parametrize("formats, message", [
    (("fp16", "bf16"), r"operand format must be one of \['e4m3', 'e5m2', 'fp16'\], not 'bf16'"),
    (("fp32",), r"operand format must be one of \['e4m3', 'e5m2', 'fp16'\], not 'fp32'"),
    ((), r"must be a non-empty collection of \['e4m3', 'e5m2', 'fp16'\], not \(\)"),
    ("fp16", r"must be a non-empty collection of \['e4m3', 'e5m2', 'fp16'\], not 'fp16'"),
    (3, r"must be a non-empty collection of \['e4m3', 'e5m2', 'fp16'\], not 3"),
])
def test_fp_mul_rejects_bad_formats(field, formats, message):
    with pytest.raises(ValueError, match=rf"^{field}.*{message}"):
        FPMultiplier(**{field: formats})


@pytest.mark.parametrize("stages", [-1, 4, 1.0, "1", None])
def test_fp_mul_rejects_bad_stages(stages):
    with pytest.raises(ValueError, match=r"stages must be an integer in 0\.\.3"):
        FPMultiplier(stages=stages)
