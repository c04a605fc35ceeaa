"""The user-level engine API (tb.engine_api): GEMMs of any size on the RTL engine or the models,
results returned unchecked and compared here with the golden GEMM, independently."""

import numpy as np
import pytest

from sim.engine_model import command_cycles
from sim.formats import E4M3, FP16
from sim.gemm import gemm
from sim.numerics import from_float32
from sim.replay import split_gemm
from tb.engine_api import run_gemm, run_gemms, workload_gemm
from tb.engines import CONFIGS

CONFIG = CONFIGS["4x4"]         # 40 x 32 A, 36 x 32 B, 44 x 32 accumulators: the GEMMs are split
SEED = 0x5EED


def _operands(rng, m, n, k):
    a = (rng.standard_normal((m, k)) * 2.0 ** rng.integers(-8, 8, (m, k))).astype(np.float32)
    b = (rng.standard_normal((k, n))).astype(np.float32)
    a[rng.random((m, k)) < 0.2] = 0.0
    a[0, 0], b[0, 0] = -0.0, np.inf
    c = rng.standard_normal((m, n)).astype(np.float32)
    return a, b, c


def _golden(a, b, c, a_fmt=FP16, b_fmt=FP16):
    a_bits = from_float32(a_fmt, a, saturate=False).astype(np.uint16)
    b_bits = from_float32(b_fmt, b, saturate=False).astype(np.uint16)
    c_bits = None if c is None else c.view(np.uint32)
    return gemm(a_bits, b_bits, a_fmt=a_fmt, b_fmt=b_fmt, c_bits=c_bits)


def test_model_backend_tiles_any_size():
    rng = np.random.default_rng(SEED)
    a, b, c = _operands(rng, 50, 45, 70)
    run = run_gemm(CONFIG, a, b, c)
    assert np.array_equal(run.out_bits, _golden(a, b, c)), f"seed {SEED:#x}"
    commands = split_gemm(workload_gemm(a, b, c), CONFIG)
    assert run.commands == len(commands) > 1
    assert run.cycles == sum(command_cycles(CONFIG, cmd.command) for cmd in commands)
    assert run.source == "model" and run.out.dtype == np.float32


def test_model_backend_formats_and_transposes():
    rng = np.random.default_rng(SEED + 1)
    a, b, _ = _operands(rng, 9, 7, 11)
    run = run_gemm(CONFIG, a.T.copy(), b, a_format="e4m3", transpose_a=True)
    want = _golden(a, b, None, a_fmt=E4M3)
    assert np.array_equal(run.out_bits, want)
    # bit patterns are taken as they are
    bits = from_float32(FP16, b, saturate=False)
    assert np.array_equal(run_gemm(CONFIG, a, bits).out_bits, _golden(a, b, None))


def test_rtl_backend_returns_what_the_engine_computed(simulator):
    """Larger than every memory of the 4x4 engine (split in M, N and K), accumulating onto C,
    mixed formats over two GEMMs: bit for bit against the golden GEMM, cycles equal to the
    model's (both compared here, not in the API)."""
    rng = np.random.default_rng(SEED + 2)
    m, n, k = (45, 37, 50) if simulator == "verilator" else (21, 9, 40)
    a, b, c = _operands(rng, m, n, k)
    gemms = [workload_gemm(a, b, c, name="first"),
             workload_gemm(a[:5], b, None, a_format="e4m3", name="second")]
    runs = run_gemms(CONFIG, gemms, backend=simulator, seed=SEED)
    model = run_gemms(CONFIG, gemms, backend="model")
    assert np.array_equal(runs[0].out_bits, _golden(a, b, c)), f"seed {SEED + 2:#x}"
    assert np.array_equal(runs[1].out_bits, _golden(a[:5], b, None, a_fmt=E4M3))
    assert [r.cycles for r in runs] == [r.cycles for r in model]
    assert [r.commands for r in runs] == [r.commands for r in model]
    assert runs[0].commands > 1 and runs[0].source == f"rtl:{simulator}"
    # host words: A, B and C_in written (an operand block already resident is not), C read
    for run, rows in zip(runs, (m, 5)):
        assert run.words_written > 0 and run.words_read >= rows


@pytest.mark.parametrize("kwargs, message", [
    (dict(a=np.ones((2, 2)), b=np.ones((2, 2), np.float32)), "a must be float16, float32 .* float64"),
    (dict(a=np.ones((2, 3), np.float32), b=np.ones((2, 2), np.float32)), "inner dimensions differ"),
    (dict(a=np.ones(3, np.float32), b=np.ones((3, 1), np.float32)), "a must be a non-empty 2-D"),
    (dict(a=np.ones((2, 2), np.float32), b=np.ones((2, 2), np.float32), c=np.ones((2, 2))),
     "c must be float32"),
    (dict(a=np.ones((2, 2), np.float32), b=np.ones((2, 2), np.float32), a_format="fp32"),
     "a_format"),
    (dict(a=np.ones((2, 2), np.float32), b=np.ones((2, 2), np.float32), backend="spice"),
     r"backend must be one of \['model', 'verilator', 'icarus'\]"),
    (dict(a=np.full((2, 2), 300, np.uint16), b=np.ones((2, 2), np.float32), a_format="e4m3"),
     "wider than e4m3 bit patterns"),
])
def test_bad_input_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_gemm(CONFIG, **kwargs)
