# amaranth: UnusedElaboratable=no
"""Runner: FP32Converter (FP32 -> fp16 / bf16 / e4m3 / e5m2) on Icarus and Verilator."""

import pytest

from hw.fp.converter import FP32Converter
from sim.formats import E4M3, FP32
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors

# the deepest pipeline on two formats, the combinational one on the other two (keeps time modest)
STAGES = {"fp16": FP32Converter.CUT_POINTS, "e4m3": FP32Converter.CUT_POINTS, "bf16": 0, "e5m2": 0}


@pytest.mark.parametrize("fmt", sorted(STAGES))
def test_fp_convert(simulator, fmt):
    stages = STAGES[fmt]
    run_bench(Design(FP32Converter, fmt=fmt, stages=stages), toplevel="fp32_converter",
              bench_module="tb.fp_convert_tb", simulator=simulator,
              case={"fmt": fmt, "stages": stages, "vectors": unit_vectors(len(STAGES))}, player=True)


def test_fp_convert_accepts_format_object():
    assert FP32Converter(fmt=E4M3, stages=1).fmt is E4M3


@pytest.mark.parametrize("fmt", ["fp64", "fp32", FP32, "FP16", None])
def test_fp_convert_rejects_bad_format(fmt):
    with pytest.raises(ValueError, match=r"fmt must be one of \['bf16', 'e4m3', 'e5m2', 'fp16'\]"):
        FP32Converter(fmt=fmt, stages=1)


@pytest.mark.parametrize("stages", [-1, 4, "1", 1.0])
def test_fp_convert_rejects_bad_stages(stages):
    with pytest.raises(ValueError, match=r"stages must be an integer in 0\.\.3"):
        FP32Converter(fmt="fp16", stages=stages)
