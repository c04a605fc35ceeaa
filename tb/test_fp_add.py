# amaranth: UnusedElaboratable=no
"""Runner: FP32Adder on Icarus and Verilator."""

import pytest

from hw.fp.adder import FP32Adder
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors


@pytest.mark.parametrize("stages", [0, FP32Adder.CUT_POINTS])
def test_fp_add(simulator, stages):
    run_bench(Design(FP32Adder, stages=stages), toplevel="fp32_adder", bench_module="tb.fp_add_tb",
              simulator=simulator, case={"stages": stages, "vectors": unit_vectors(2)}, player=True)


@pytest.mark.parametrize("stages", [-1, FP32Adder.CUT_POINTS + 1, "1", None])
def test_fp_add_rejects_bad_stages(stages):
    with pytest.raises(ValueError, match=r"stages must be an integer in 0\.\.3, not"):
        FP32Adder(stages=stages)
