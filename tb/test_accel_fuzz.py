# amaranth: UnusedElaboratable=no
"""Runner: the accelerator fuzzed (tb/accel_fuzz_tb.py) on Verilator and Icarus, and the program
fuzzer (tb/accel_fuzz.py) on the golden model alone.

``make test`` runs a short fuzzing run on Verilator (its build of the 4x4-d64 configuration is
the one tb/test_accelerator.py makes) and thousands of programs on the model; ``make regress``
runs SHARDS runs of SHARD programs per configuration and simulator (10,200 in all), each
shard with its own random stream (the seed and the shard number).
``SPARTA_FUZZ_PROGRAMS=N`` sets the number of programs, ``SPARTA_FUZZ_PROBE=1`` compares the
accumulators after every program (tb/accel_fuzz_tb.py), ``SPARTA_SEED`` reruns a seed."""

import collections
import os

import numpy as np
import pytest

from hw.accel.accelerator import Accelerator
from sim.accel_model import AcceleratorModel
from sim.accel_spec import AccelError
from sim.config import AccelConfig, ArrayConfig, EngineConfig, accel_config_to_dict
from sim.runner import Design, run_bench
from tb.accel_fuzz import (Layout, ProgramFuzzer, assemble_words, initial_image,
                           resync_program, store_spans)
from tb.conftest import regress

SEED = int(os.environ.get("SPARTA_SEED", "1"))

SMALL = EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=32, b_rows=32,
                     acc_width=32, acc_rows=32)
#: fuzzed configurations: the 4x4-d64 of tb/test_accelerator.py (same Verilog, same build), and
#: one with FP8 operands, zero skipping, output masks, a 128-bit bus and 64-bit addresses
CONFIGS = {
    "4x4-d64": AccelConfig(engine=SMALL),
    "4x4-fp8-skip-mask-d128-a64": AccelConfig(
        engine=EngineConfig(array=ArrayConfig(rows=4, cols=4, a_formats=("fp16", "e4m3"),
                                              b_formats=("fp16", "e5m2"), skip_zeros=True,
                                              skip_window=2),
                            spad_width=32, a_rows=32, b_rows=32, acc_width=32, acc_rows=32,
                            out_formats=("fp32", "fp16", "bf16", "e4m3", "e5m2"),
                            output_mask=True),
        data_width=128, addr_width=64),
}
#: programs of make test's run (Verilator, the first configuration only)
TEST_PROGRAMS = 40
#: make regress: runs of SHARD[simulator] programs each (tests of their own, so that the two
#: workers share them out), SHARDS per configuration and simulator: 10,200 programs in all.
#: Icarus runs a program about 5x slower than Verilator (a 500-program shard: 320-430 s against
#: 54-81 s), so Verilator runs nearly all of them and Icarus one short shard.
SHARD = {"verilator": 500, "icarus": 100}
SHARDS = {"verilator": 10, "icarus": 1}
#: AXI pauses: per-cycle probability, long stalls' start probability and longest stall
STALLS = {"pause": 0.15, "stall": 0.002, "longest": 300, "soft_reset": 0.04}


def fuzz_runs() -> list:
    """(simulator, configuration, shard) of every fuzzing run: make test's one, or make
    regress's shards."""
    if not regress():
        return [pytest.param("verilator", next(iter(CONFIGS)), 0,
                             id=f"verilator-{next(iter(CONFIGS))}")]
    return [pytest.param(simulator, name, shard, id=f"{simulator}-{name}-shard{shard}")
            for simulator, shards in SHARDS.items() for name in CONFIGS
            for shard in range(shards)]


@pytest.mark.parametrize("simulator, name, shard", fuzz_runs())
def test_random_programs_on_the_rtl(simulator, name, shard):
    config = CONFIGS[name]
    programs = int(os.environ.get("SPARTA_FUZZ_PROGRAMS", 0)) or (
        SHARD[simulator] if regress() else TEST_PROGRAMS)
    run_bench(Design(Accelerator, config), toplevel="accelerator",
              bench_module="tb.accel_fuzz_tb", simulator=simulator,
              testcase="random_programs",
              case={"config": accel_config_to_dict(config), "programs": programs, **STALLS,
                    "shard": shard, "probe": os.environ.get("SPARTA_FUZZ_PROBE", "0") == "1"})


@pytest.mark.parametrize("name", CONFIGS)
def test_random_programs_on_the_model(name):
    """The fuzzer's programs on the golden model alone: no exception, DRAM changed only inside
    the rows of the STOREs the program reached, every error code reached (so the fuzzer
    really draws every kind of bad program), and most programs run whole."""
    config, layout = CONFIGS[name], Layout()
    print(f"seed {SEED} (SPARTA_SEED)")
    rng = np.random.default_rng([SEED, sum(map(ord, name))])
    fuzzer = ProgramFuzzer(config, rng, layout)
    model = AcceleratorModel(config)
    image = initial_image(rng, layout)
    endings = collections.Counter()
    for index in range(1500):
        program = fuzzer.program()
        words = program.words
        image[program.base:program.base + len(words)] = words[:layout.size - program.base]
        before = bytes(image)
        result = model.run(image, program.base, program.length, dram_errors=program.dram_errors)
        endings[result.error] += 1
        spans = store_spans(config, [(r.opcode, r.fields) for r in result.instructions])
        changed = np.flatnonzero(np.frombuffer(before, np.uint8) != np.frombuffer(image,
                                                                                 np.uint8))
        outside = [a for a in changed.tolist() if not any(s <= a < e for s, e in spans)]
        assert not outside, (f"seed {SEED}, program {index}: DRAM changed outside the STOREs "
                             f"at {outside[0]:#x}\n{program.describe()}")
    missing = set(AccelError) - {AccelError.START_WHILE_BUSY} - set(endings)
    assert not missing, f"seed {SEED}: no program ended with {sorted(e.name for e in missing)}"
    assert endings[AccelError.NONE] > 0.4 * sum(endings.values()), \
        f"seed {SEED}: too few programs run whole: {dict(endings)}"


@pytest.mark.parametrize("name", CONFIGS)
def test_resync_program_is_valid(name):
    """The program the fuzzing bench runs after a soft reset runs whole on the model."""
    config, layout = CONFIGS[name], Layout()
    image = bytearray(layout.size)
    program = resync_program(config, layout)
    words = assemble_words(program)
    image[layout.programs[0]:layout.programs[0] + len(words)] = words
    result = AcceleratorModel(config).run(image, layout.programs[0], len(program))
    assert result.error is AccelError.NONE, (result.error, result.error_index)


def test_resync_program_refuses_a_config_too_big():
    with pytest.raises(ValueError, match="config: its memories need"):
        resync_program(AccelConfig())


@pytest.mark.parametrize("name", CONFIGS)
def test_the_fuzzer_draws_many_programs(name):
    """The generator alone, many more programs than the runs above: it never fails to draw one
    (a spoiled field of any value, faults over any span), and every instruction drawn valid is
    accepted by the controller's checks."""
    config, layout = CONFIGS[name], Layout()
    rng = np.random.default_rng([SEED, 7, sum(map(ord, name))])
    fuzzer = ProgramFuzzer(config, rng, layout)
    for _ in range(4_000):
        program = fuzzer.program()
        assert all(0 <= start < end <= layout.size for start, end in program.dram_errors), \
            f"seed {SEED}: a SLVERR range outside DRAM\n{program.describe()}"
        assert len(program.words) == 32 * len(program.instructions)
