"""Bench: FP32Converter against the golden FP32 -> store format conversion.

Stimulus, in order: FP32 edge cases; every target value (all codes of an FP8 format, a sample of
fp16/bf16 codes) converted exactly to FP32 and its neighbours one FP32 ulp away; the exact
midpoints between consecutive target values (rounding ties of both parities) and their
neighbours; the overflow region above the largest finite value; FP32 subnormals; infinities and
NaNs with payloads of both signs; then random values, half of them in the target's range. All
with both overflow policies.
"""

import cocotb
import numpy as np

from hw.fp.converter import ConvertInput
from sim.formats import FP32, STORE_FORMATS, FPFormat
from sim.numerics import convert, to_float32
from tb.harness import case, drive_and_check, make_rng
from tb.packing import pack
from tb.vectors import edge_bits, fp32_vectors

SIGN = np.uint64(FP32.sign_mask)
MAGNITUDE = np.uint64(FP32.sign_mask - 1)


def _exact_fp32(values) -> np.ndarray:
    """FP32 bit patterns of float64 values that must be exact in FP32."""
    values = np.asarray(values, dtype=np.float64)
    single = values.astype(np.float32)
    if not np.array_equal(single.astype(np.float64), values):
        raise AssertionError("a stimulus value is not exact in fp32")
    return single.view(np.uint32).astype(np.uint64)


def _with_neighbours(bits) -> np.ndarray:
    """Patterns, the FP32 values one ulp above and below their magnitude, both signs."""
    magnitude = np.asarray(bits, dtype=np.uint64) & MAGNITUDE
    near = np.concatenate([magnitude, magnitude + np.uint64(1), magnitude[magnitude > 0] - np.uint64(1)])
    near = near[near <= MAGNITUDE]
    return np.concatenate([near, near | SIGN])


def _target_magnitudes(rng, fmt: FPFormat) -> np.ndarray:
    """Non-negative codes of ``fmt`` whose neighbourhoods are tested: all of them for FP8; for
    16-bit formats the subnormals near zero and the normal boundary, the top of the range and a
    random sample."""
    top = fmt.sign_mask - 1
    if fmt.width == 8:
        return np.arange(top + 1, dtype=np.uint64)
    boundary = 1 << fmt.man_bits
    codes = np.concatenate([
        np.arange(0, 160),                                        # zero, smallest subnormals
        np.arange(boundary - 32, boundary + 33),                  # subnormal/normal boundary
        rng.integers(0, boundary, 64),                            # other subnormals
        np.arange(fmt.max_finite_bits - 64, fmt.max_finite_bits + 4),  # largest finite, inf, NaNs
        [fmt.nan_bits, top],
        edge_bits(fmt).astype(np.int64) & top,
        rng.integers(0, top + 1, 256),
    ])
    return np.unique(codes).astype(np.uint64)


def _midpoints(fmt: FPFormat, magnitudes) -> np.ndarray:
    """FP32 patterns of the exact midpoints between consecutive finite target values."""
    lower = magnitudes[magnitudes < fmt.max_finite_bits]
    low = to_float32(fmt, lower).astype(np.float64)
    high = to_float32(fmt, lower + np.uint64(1)).astype(np.float64)
    return _exact_fp32((low + high) / 2)


def _overflow_region(fmt: FPFormat) -> np.ndarray:
    """Values just above the largest finite one: ``max + j * ulp / 2`` and far beyond."""
    half_ulp = 2.0 ** (fmt.emax - fmt.man_bits - 1)
    steps = fmt.max_finite + half_ulp * np.arange(0, 9)
    far = [2 * fmt.max_finite, 2.0 ** (fmt.emax + 1), 2.0 ** min(fmt.emax + 8, 127),
           float(np.finfo(np.float32).max)]
    values = np.concatenate([steps, far])
    # bf16 shares FP32's exponent range: its overflow region is partly beyond FP32's
    return _exact_fp32(values[values <= float(np.finfo(np.float32).max)])


def _specials(rng) -> np.ndarray:
    """FP32 subnormals, infinities and NaNs with random payloads (quiet and signalling)."""
    subnormals = rng.integers(1, 1 << FP32.man_bits, 64, dtype=np.uint64)
    payloads = rng.integers(1, 1 << FP32.man_bits, 64, dtype=np.uint64)
    nans = np.uint64(FP32.inf_bits) | payloads
    quiet = nans | np.uint64(1 << (FP32.man_bits - 1))
    patterns = np.concatenate([subnormals, nans, quiet, [FP32.inf_bits]]).astype(np.uint64)
    return np.concatenate([patterns, patterns | SIGN])


def _in_range(rng, fmt: FPFormat, n: int) -> np.ndarray:
    """Random FP32 values from below the target's smallest subnormal to above its largest."""
    low = max(fmt.emin - fmt.man_bits - 3 + FP32.bias, 0)
    high = min(fmt.emax + 2 + FP32.bias, FP32.exp_max_field - 1)
    exp = rng.integers(low, high + 1, n, dtype=np.uint64)
    man = rng.integers(0, 1 << FP32.man_bits, n, dtype=np.uint64)
    sign = rng.integers(0, 2, n, dtype=np.uint64)
    return (sign << np.uint64(31)) | (exp << np.uint64(FP32.man_bits)) | man


def convert_vectors(rng, fmt: FPFormat, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, saturate)``: the structured stimulus with both policies, then random values
    with a random policy, at least ``n`` in all."""
    magnitudes = _target_magnitudes(rng, fmt)
    structured = np.concatenate([
        edge_bits(FP32),
        _with_neighbours(to_float32(fmt, magnitudes).view(np.uint32)),
        _with_neighbours(_midpoints(fmt, magnitudes)),
        _with_neighbours(_overflow_region(fmt)),
        _specials(rng),
    ]).astype(np.uint64)
    both = np.concatenate([structured, structured])
    both_saturate = np.repeat(np.array([0, 1], dtype=np.uint64), len(structured))
    count = max(n - len(both), n // 2)
    random = np.concatenate([fp32_vectors(rng, count // 2), _in_range(rng, fmt, count - count // 2)])
    random_saturate = rng.integers(0, 2, len(random), dtype=np.uint64)
    return (np.concatenate([both, random.astype(np.uint64)]),
            np.concatenate([both_saturate, random_saturate]))


def golden(fmt: FPFormat, values, saturate) -> np.ndarray:
    expected = np.empty(len(values), dtype=np.uint64)
    for policy in (False, True):
        sel = saturate == int(policy)
        expected[sel] = convert(FP32, fmt, values[sel].astype(np.uint32), saturate=policy)
    return expected


@cocotb.test()
async def convert_matches_golden(dut):
    cfg = case()
    fmt = STORE_FORMATS[cfg["fmt"]]
    rng = make_rng(dut)
    values, saturate = convert_vectors(rng, fmt, cfg["vectors"])
    expected = golden(fmt, values, saturate)
    inputs = pack(ConvertInput, value=values, saturate=saturate)
    floats = values.astype(np.uint32).view(np.float32)

    def describe(k):
        return (f"fp32 0x{int(values[k]):08x} ({float(floats[k])!r}) -> {fmt.name}, "
                f"saturate={int(saturate[k])}")

    cycles = await drive_and_check(dut, rng, inputs, expected.tolist(), describe)
    dut._log.info("checked %d %s conversions in %d cycles", len(inputs), fmt.name, cycles)
