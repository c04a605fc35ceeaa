"""sim/compiler.py: GEMMs of any size compiled into accelerator programs and DRAM images; the
golden model of programs (sim.accel_model) runs them, and every output equals sim.gemm on the
same operands bit for bit; the compiler's byte prediction equals the model's bus counts."""

import dataclasses
import os

import numpy as np
import pytest

from sim.accel_model import AcceleratorModel
from sim.accel_spec import AccelError, Opcode
from sim.compiler import compile_gemms
from sim.config import AccelConfig, ArrayConfig, EngineConfig
from sim.gemm import gemm
from tb.conftest import scaled
from tb.engine_api import workload_gemm

#: SPARTA_SEED reruns a case (make regress sets a random one)
SEED = int(os.environ.get("SPARTA_SEED", "1"))

SMALL = EngineConfig(array=ArrayConfig(rows=4, cols=4, a_formats=("fp16", "e4m3", "e5m2"),
                                       b_formats=("fp16", "e4m3", "e5m2")),
                     spad_width=32, a_rows=24, b_rows=40, acc_width=32, acc_rows=20)
CONFIGS = {
    "default-64": AccelConfig(),
    "small-64": AccelConfig(engine=SMALL),
    # a 256-bit beat holds 32 FP8 elements: a block split in DRAM columns starts on one
    "small-256": AccelConfig(engine=dataclasses.replace(SMALL, spad_width=64, a_rows=64,
                                                         b_rows=64, acc_width=64, acc_rows=64),
                             data_width=256, addr_width=64),
}


def _random_gemm(rng, name, shape, *, a_format, b_format, transpose_a, transpose_b, accumulate):
    m, n, k = shape
    a = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(np.float32)
    a[rng.random(a.shape) < 0.2] = 0.0
    c = rng.standard_normal((m, n)).astype(np.float32) if accumulate else None
    g = workload_gemm(a, b, c, a_format=a_format, b_format=b_format,
                      transpose_a=transpose_a, transpose_b=transpose_b)
    return g


def _reference(g):
    return gemm(g.a_bits, g.b_bits, a_fmt=g.a_tags, b_fmt=g.b_tags, c_bits=g.c_bits,
                transpose_a=g.transpose_a, transpose_b=g.transpose_b)


@pytest.mark.parametrize("name", CONFIGS)
def test_compiled_gemms_are_bit_exact(name):
    config = CONFIGS[name]
    rng = np.random.default_rng([SEED, sum(map(ord, name))])
    print(f"seed {SEED} (SPARTA_SEED)")
    formats = [f for f in ("fp16", "e4m3", "e5m2") if f in config.engine.array.a_formats]
    gemms = []
    for index in range(scaled(4)):
        shape = tuple(int(v) for v in rng.integers(1, 70, 3))
        gemms.append(_random_gemm(
            rng, f"g{index}", shape, a_format=str(rng.choice(formats)),
            b_format=str(rng.choice(formats)), transpose_a=bool(rng.integers(2)),
            transpose_b=bool(rng.integers(2)), accumulate=bool(rng.integers(2))))
    compiled = compile_gemms(config, gemms)
    dram = bytearray(compiled.image)
    result = AcceleratorModel(config).run(dram, compiled.prog_base, compiled.prog_len)
    assert result.error is AccelError.NONE, (result.error, result.error_index)
    assert result.executed == compiled.prog_len
    for index, g in enumerate(gemms):
        got, want = compiled.output_bits(dram, index), _reference(g)
        bad = np.argwhere(got != want)
        assert not len(bad), (f"{g.name} {g.M}x{g.N}x{g.K} transposes {g.transpose_a}/"
                              f"{g.transpose_b} accumulate {g.accumulate}: {len(bad)} words "
                              f"differ, first at {tuple(bad[0])}: got {got[tuple(bad[0])]:#010x}"
                              f" want {want[tuple(bad[0])]:#010x}")
    assert (result.bytes_read, result.bytes_written) == (compiled.bytes_read,
                                                         compiled.bytes_written)
    assert result.products == sum(g.M * g.N * g.K for g in gemms)


def test_tiling_fits_the_small_engine_and_is_beat_aligned():
    config = CONFIGS["small-64"]
    rng = np.random.default_rng(1)
    g = _random_gemm(rng, "big", (50, 45, 70), a_format="fp16", b_format="e4m3",
                     transpose_a=False, transpose_b=True, accumulate=True)
    compiled = compile_gemms(config, [g])
    gemm_count = sum(op is Opcode.GEMM for op, _ in compiled.instructions)
    assert gemm_count > 1                               # the GEMM had to be split
    for op, fields in compiled.instructions:
        if op in (Opcode.LOAD, Opcode.STORE):
            assert fields["dram_addr"] % config.beat_bytes == 0
            assert fields["dram_stride"] % config.beat_bytes == 0
    assert compiled.instructions[-1][0] is Opcode.DONE
    # an accumulate GEMM loads each block's C_in once, before its first k slice
    acc_loads = sum(op is Opcode.LOAD and f["target"] == 2 for op, f in compiled.instructions)
    stores = sum(op is Opcode.STORE for op, _ in compiled.instructions)
    assert acc_loads == stores


def test_bad_inputs_are_refused():
    rng = np.random.default_rng(2)
    g = _random_gemm(rng, "g", (4, 4, 4), a_format="fp16", b_format="fp16",
                     transpose_a=False, transpose_b=False, accumulate=False)
    with pytest.raises(ValueError, match="config must be an AccelConfig"):
        compile_gemms(SMALL, [g])
    with pytest.raises(ValueError, match="at least one"):
        compile_gemms(AccelConfig(), [])
    with pytest.raises(ValueError, match="base must be"):
        compile_gemms(AccelConfig(), [g], base=4)
    mixed = _random_gemm(rng, "m", (4, 4, 4), a_format="fp16", b_format="fp16",
                         transpose_a=False, transpose_b=False, accumulate=False)
    mixed.a_tags[0, 0] = 1
    with pytest.raises(ValueError, match="mixes operand formats"):
        compile_gemms(AccelConfig(), [mixed])
    fp16_only = AccelConfig(engine=EngineConfig(array=ArrayConfig(a_formats=("fp16",),
                                                                  b_formats=("fp16",))))
    e4m3 = _random_gemm(rng, "e", (4, 4, 4), a_format="e4m3", b_format="fp16",
                        transpose_a=False, transpose_b=False, accumulate=False)
    with pytest.raises(ValueError, match="does not take"):
        compile_gemms(fp16_only, [e4m3])
