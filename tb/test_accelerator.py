# amaranth: UnusedElaboratable=no
"""Runner: the whole accelerator (AXI4-Lite registers, controller, AXI4 DMA, load and store
paths, GEMM engine) running compiled GEMM programs from DRAM, on Verilator and Icarus."""

import pytest

from hw.accel.accelerator import Accelerator
from sim.config import AccelConfig, ArrayConfig, EngineConfig, accel_config_to_dict
from sim.runner import Design, run_bench
from tb.conftest import verilator_builds_first_only

#: small memories so that the GEMMs are tiled and Icarus stays affordable
SMALL = EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=32, b_rows=32,
                     acc_width=32, acc_rows=32)
CASES = {
    "4x4-d64": (AccelConfig(engine=SMALL), {"programs": 2, "gemms": 3, "largest": 40}),
    "4x4-d128-a64": (AccelConfig(engine=SMALL, data_width=128, addr_width=64),
                     {"programs": 1, "gemms": 2, "largest": 40}),
}


def _spec(config):
    return accel_config_to_dict(config)


@pytest.mark.parametrize("name", CASES)
def test_accelerator_runs_compiled_gemms(simulator, name):
    config, sizes = CASES[name]
    verilator_builds_first_only(simulator, name, next(iter(CASES)))
    run_bench(Design(Accelerator, config), toplevel="accelerator",
              bench_module="tb.accelerator_tb", simulator=simulator,
              case={"config": _spec(config), "pause": 0.2, **sizes})


def test_accelerator_rejects_a_bad_config():
    with pytest.raises(ValueError, match="config must be an AccelConfig"):
        Accelerator(SMALL)
