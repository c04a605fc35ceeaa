# amaranth: UnusedElaboratable=no
"""Runner: the load path (``hw.accel.loader``) on Icarus and Verilator against the golden
model's LOAD; its command layout against the instruction set; construction errors."""

import pytest
from amaranth.lib import data

from hw.accel.loader import FormatCode, LoadCommand, Loader, TargetCode
from sim.accel_spec import FORMAT_BITS, TRANSFER_FIELDS, Target
from sim.config import AccelConfig, ArrayConfig, EngineConfig, accel_config_to_dict
from sim.runner import Design, run_bench
from tb.conftest import scaled, verilator_builds_first_only
from tb.loader_tb import config_of

CONFIGS = {
    "default": AccelConfig(),
    # a beat holds more fp16 and FP8 elements than a word has lanes; FP8-only A, fp16-only B
    # (converters for three formats, four of each); memories that are not powers of two
    "4x4_d128": AccelConfig(
        engine=EngineConfig(array=ArrayConfig(rows=4, cols=4, a_formats=("e4m3", "e5m2"),
                                              b_formats=("fp16",)),
                            spad_width=64, a_rows=40, b_rows=24, acc_width=16, acc_rows=20),
        data_width=128),
}


def case_config(config: AccelConfig) -> dict:
    return accel_config_to_dict(config)


@pytest.mark.parametrize("name", CONFIGS)
def test_loader(simulator, name):
    verilator_builds_first_only(simulator, name, next(iter(CONFIGS)))
    config = CONFIGS[name]
    run_bench(Design(Loader, config), toplevel="loader", bench_module="tb.loader_tb",
              simulator=simulator,
              case={"name": name, "config": case_config(config),
                    # random LOADs (make regress: 100 times more)
                    "loads": max(16, scaled(25)), "throughput_beats": 16})


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_case_round_trip(config):
    assert config_of(case_config(config)) == config


def test_command_fields_are_the_instruction_fields():
    layout = {name: field.width for name, field in data.Layout.cast(LoadCommand)}
    # ``repeat`` is the controller's (dram_stride 0 with one copy), not an instruction field
    assert layout.pop("repeat") == 1
    assert layout == {name: TRANSFER_FIELDS[name][1] for name in layout}
    assert {member.name: member.value for member in TargetCode} == \
        {member.name: member.value for member in Target}
    assert [member.name.lower() for member in FormatCode] == list(FORMAT_BITS)
    assert [member.value for member in FormatCode] == list(range(len(FORMAT_BITS)))


@pytest.mark.parametrize("config, formats, converters", [
    (AccelConfig(), ("fp16", "e4m3", "e5m2"), 2),
    (CONFIGS["4x4_d128"], ("e4m3", "e5m2", "fp16"), 4),
    (AccelConfig(engine=EngineConfig(array=ArrayConfig(a_formats=("e5m2",),
                                                       b_formats=("e5m2",))),
                 data_width=256), ("e5m2",), 8),
])
def test_converters_follow_the_formats_and_the_bus(config, formats, converters):
    loader = Loader(config)
    assert loader.operand_formats == formats
    assert loader.converters_per_format == converters


@pytest.mark.parametrize("config", [None, 64, {"data_width": 64}, EngineConfig()])
def test_rejects_bad_config(config):
    with pytest.raises(ValueError, match=r"config must be an AccelConfig, not"):
        Loader(config)
