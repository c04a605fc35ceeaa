# amaranth: UnusedElaboratable=no
"""Runner: FP32Multiplier (IEEE binary32, rounded) on Icarus and Verilator."""

import pytest

from hw.fp.fp32_multiplier import FP32Multiplier
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors, verilator_builds_first_only


@pytest.mark.parametrize("stages", [0, FP32Multiplier.CUT_POINTS])
def test_fp32_mul(simulator, stages):
    verilator_builds_first_only(simulator, stages, 0)
    run_bench(Design(FP32Multiplier, stages=stages), toplevel="fp32_multiplier",
              bench_module="tb.fp32_mul_tb", simulator=simulator,
              case={"stages": stages, "vectors": unit_vectors(2)}, player=True)


@pytest.mark.parametrize("stages", [-1, FP32Multiplier.CUT_POINTS + 1, "1", None])
def test_fp32_mul_rejects_bad_stages(stages):
    with pytest.raises(ValueError, match=r"stages must be an integer in 0\.\.3, not"):
        FP32Multiplier(stages=stages)
