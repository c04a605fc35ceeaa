# amaranth: UnusedElaboratable=no
"""Runner: FPMac (multiplier + accumulator) on Icarus and Verilator."""

import pytest

from hw.fp.mac import FPMac
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors

FULL = ["fp16", "e4m3", "e5m2"]
CONFIGURATIONS = {
    "full": dict(a_formats=FULL, b_formats=FULL, mul_stages=3),
    "narrow-comb": dict(a_formats=["e4m3", "e5m2"], b_formats=["e4m3", "e5m2"], mul_stages=0),
}


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_fp_mac(simulator, config):
    params = CONFIGURATIONS[config]
    run_bench(Design(FPMac, **params), toplevel="fp_mac", bench_module="tb.fp_mac_tb",
              simulator=simulator, case={"config": config, **params, "vectors": unit_vectors(len(CONFIGURATIONS))},
              player=True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mul_stages=4), "stages must be an integer in 0..3"),
    (dict(a_formats=["fp32"]), "operand format must be one of"),
])
def test_fp_mac_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FPMac(**kwargs)
