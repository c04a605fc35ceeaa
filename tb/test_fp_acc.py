# amaranth: UnusedElaboratable=no
"""Runner: FP32Accumulator on Icarus and Verilator."""

import pytest

from hw.fp.adder import FP32Accumulator
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors


@pytest.mark.parametrize("stages", [0, 1])
def test_fp_acc(simulator, stages):
    run_bench(Design(FP32Accumulator, stages=stages), toplevel="fp32_accumulator",
              bench_module="tb.fp_acc_tb", simulator=simulator,
              case={"stages": stages, "vectors": unit_vectors(2)}, player=True)


@pytest.mark.parametrize("stages", [-1, 2, "1", None])
def test_fp_acc_rejects_bad_stages(stages):
    with pytest.raises(ValueError, match=r"stages must be an integer in 0\.\.1, not"):
        FP32Accumulator(stages=stages)
