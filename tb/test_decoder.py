# amaranth: UnusedElaboratable=no
"""Runner: the accelerator's InstructionDecoder on Icarus and Verilator."""

import pytest

from hw.accel.decoder import InstructionDecoder
from sim.config import AccelConfig, ArrayConfig, EngineConfig, accel_config_to_dict
from sim.runner import Design, run_bench
from tb.conftest import scaled, verilator_builds_first_only

CONFIGS = {
    "default": AccelConfig(),
    "4x4-mask-256": AccelConfig(
        engine=EngineConfig(array=ArrayConfig(rows=4, cols=4, a_formats=("e4m3", "e5m2"),
                                              b_formats=("fp16", "e4m3")),
                            spad_width=64, a_rows=40, b_rows=24, acc_width=32, acc_rows=20,
                            out_formats=("fp32", "bf16"), output_mask=True),
        data_width=256, addr_width=64),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_decoder(simulator, name):
    verilator_builds_first_only(simulator, name, next(iter(CONFIGS)))
    config = CONFIGS[name]
    spec = accel_config_to_dict(config)
    run_bench(Design(InstructionDecoder, config), toplevel="instruction_decoder",
              bench_module="tb.decoder_tb", simulator=simulator,
              case={"config": spec, "vectors": scaled(3000)})


def test_decoder_rejects_a_bad_config():
    with pytest.raises(ValueError, match="config must be an AccelConfig"):
        InstructionDecoder(EngineConfig())
