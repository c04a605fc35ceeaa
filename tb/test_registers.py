# amaranth: UnusedElaboratable=no
"""Runner: the AXI4-Lite register slave (``hw.accel.registers``) on Icarus and Verilator;
its capability words against the bench's independent computation; construction errors."""

import dataclasses
import math

import pytest

from hw.accel.registers import Registers, capability_words, ceil_log2
from sim.accel_spec import FORMAT_BITS
from sim.config import AccelConfig, ArrayConfig, EngineConfig, accel_config_to_dict
from sim.formats import OPERAND_FORMATS, STORE_FORMATS
from sim.runner import Design, generate_verilog, run_bench
from tb.conftest import scaled, verilator_builds_first_only
from tb.registers_tb import config_of, expected_capabilities

CONFIGS = {
    "default": AccelConfig(),
    # weight stationary, every bus field different from the default, sizes that are not
    # powers of two, FP8-only operands (no FGMP), bf16 among the output formats
    "ws4x4": AccelConfig(
        engine=EngineConfig(array=ArrayConfig(rows=4, cols=4, dataflow="ws", mul_stages=2,
                                              a_formats=("e4m3",), b_formats=("e4m3", "e5m2")),
                            spad_width=64, a_rows=300, b_rows=100, acc_width=32, acc_rows=1000,
                            out_formats=("fp32", "bf16", "e5m2")),
        data_width=128, addr_width=64, reads_outstanding=7),
}


def case_config(config: AccelConfig) -> dict:
    return accel_config_to_dict(config)


@pytest.mark.parametrize("name", CONFIGS)
def test_registers(simulator, name):
    verilator_builds_first_only(simulator, name, next(iter(CONFIGS)))
    # a register operation costs ~2 ms of Icarus time: make test runs 125 random writes and 40
    # counter read pairs, make regress (1e6 vectors) 100 times more
    config = CONFIGS[name]
    run_bench(Design(Registers, config), toplevel="registers", bench_module="tb.registers_tb",
              simulator=simulator,
              case={"name": name, "config": case_config(config),
                    "operations": scaled(125), "counter_reads": scaled(40),
                    "wrap_cycles": 65537})


# -- capabilities ----------------------------------------------------------------------------

CAPABILITY_CONFIGS = [
    *CONFIGS.values(),
    AccelConfig(engine=EngineConfig(array=ArrayConfig(skip_zeros=True, skip_window=4, rows=32,
                                                      cols=1, mul_stages=3),
                                    output_mask=True, a_rows=65536, b_rows=1, acc_rows=1,
                                    acc_width=4096, spad_width=4096),
                data_width=256, reads_outstanding=16),
    AccelConfig(engine=EngineConfig(array=ArrayConfig(skip_zeros=True, skip_window=2, rows=5,
                                                      cols=3, a_formats=("fp16",),
                                                      b_formats=("fp16",)),
                                    a_rows=3, b_rows=513, acc_rows=257,
                                    out_formats=("fp16",)),
                reads_outstanding=1),
    # skip_zeros without a lookahead window: products gated, no time saved
    AccelConfig(engine=EngineConfig(array=ArrayConfig(skip_zeros=True, dataflow="ws"))),
    # pipelined accumulation: the largest L, and the largest P
    AccelConfig(engine=EngineConfig(array=ArrayConfig(mul_stages=3, acc_interleave=5))),
    AccelConfig(engine=EngineConfig(array=ArrayConfig(dataflow="ws", psum_stages=3))),
]


@pytest.mark.parametrize("config", CAPABILITY_CONFIGS, ids=range(len(CAPABILITY_CONFIGS)))
def test_capability_words(config):
    got, want = capability_words(config), expected_capabilities(config)
    assert got.keys() == want.keys()
    for reg in want:
        assert got[reg] == want[reg], f"{reg.name}: 0x{got[reg]:08x} != 0x{want[reg]:08x}"


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_case_round_trip(config):
    assert config_of(case_config(config)) == config


def test_every_format_has_a_bit():
    assert set(OPERAND_FORMATS) | set(STORE_FORMATS) | {"fp32"} <= set(FORMAT_BITS)
    assert len(FORMAT_BITS) <= 8


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 255, 256, 257, 1000, 65535, 65536])
def test_ceil_log2(n):
    assert ceil_log2(n) == math.ceil(math.log2(n))


@pytest.mark.parametrize("name", CONFIGS)
def test_ports(name):
    config = CONFIGS[name]
    verilog = generate_verilog(Design(Registers, config), "registers")
    assert f"output [{config.addr_width - 1}:0] prog_base;" in verilog
    assert "input [7:0] bus__awaddr;" in verilog and "output [31:0] bus__rdata;" in verilog


# -- construction errors ---------------------------------------------------------------------

@pytest.mark.parametrize("config", [EngineConfig(), None, {"data_width": 64}, "default",
                                    dataclasses.asdict(AccelConfig())])
def test_rejects_a_config_that_is_not_an_accel_config(config):
    with pytest.raises(ValueError, match=r"config must be an AccelConfig, not"):
        Registers(config)
