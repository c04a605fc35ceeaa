# amaranth: UnusedElaboratable=no
"""Runner: FPMultiplier on Icarus and Verilator, and its parameter checks."""

import re

import pytest
from amaranth.back import rtlil

from hw.fp.multiplier import FPMultiplier
from sim.runner import run_bench
from tb.conftest import vectors

FULL = ("fp16", "e4m3", "e5m2")
NARROW = ("e4m3", "e5m2")

CONFIGURATIONS = {
    "full-comb": dict(a_formats=FULL, b_formats=FULL, stages=0),
    "full-piped": dict(a_formats=FULL, b_formats=FULL, stages=FPMultiplier.CUT_POINTS),
    "narrow": dict(a_formats=NARROW, b_formats=NARROW, stages=1),
    # unequal significand widths (11 x 4) and a partly registered pipeline
    "fp16-x-fp8": dict(a_formats=("fp16",), b_formats=NARROW, stages=2),
}


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_fp_mul(simulator, config):
    params = CONFIGURATIONS[config]
    run_bench(FPMultiplier(**params), toplevel="fp_mul", bench_module="tb.fp_mul_tb",
              simulator=simulator,
              case={"config": config, "a_formats": list(params["a_formats"]),
                    "b_formats": list(params["b_formats"]), "stages": params["stages"],
                    "vectors": vectors()})


def multiplier_cells(component):
    """``(A_WIDTH, B_WIDTH)`` of every ``$mul`` cell in the design's RTLIL."""
    text = rtlil.convert(component)
    cells = re.findall(r"cell \$mul .*?\n\s*end", text, re.S)
    return [tuple(int(re.search(rf"parameter \\{port}_WIDTH (\d+)", cell).group(1)) for port in "AB")
            for cell in cells]


@pytest.mark.parametrize("a_formats, b_formats, widths", [
    (FULL, FULL, (11, 11)),
    (NARROW, NARROW, (4, 4)),
    (("e4m3",), ("e5m2",), (4, 3)),
    (("fp16",), NARROW, (11, 4)),
])
def test_significand_multiplier_width(a_formats, b_formats, widths):
    mul = FPMultiplier(a_formats=a_formats, b_formats=b_formats)
    assert (mul.a_sig_width, mul.b_sig_width) == widths
    assert multiplier_cells(mul) == [widths]


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
