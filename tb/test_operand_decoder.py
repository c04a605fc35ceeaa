# amaranth: UnusedElaboratable=no
"""Runner: OperandDecoder on Icarus and Verilator."""

import pytest

from hw.fp.operand import OperandDecoder
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors


@pytest.mark.parametrize("stages", [0, 1])
def test_operand_decoder(simulator, stages):
    run_bench(Design(OperandDecoder, stages=stages), toplevel="operand_decoder",
              bench_module="tb.operand_decoder_tb", simulator=simulator,
              case={"stages": stages, "vectors": unit_vectors(2)}, player=True)


@pytest.mark.parametrize("stages", [-1, 2, "1", True])
def test_operand_decoder_rejects_bad_stages(stages):
    with pytest.raises(ValueError, match="stages must be an integer in 0..1"):
        OperandDecoder(stages=stages)
