"""The golden model (sim/numerics.py) against independent references.

* Conversions against ml_dtypes / numpy casts (one rounding from the source value): exhaustive
  over every code of the 8- and 16-bit formats, and over more than a million float32 inputs per
  narrowing target (random patterns, the target's dynamic range and subnormals, every tie between
  consecutive target values and the float32 neighbours of each tie, the overflow threshold).
* Arithmetic against float64 computed then rounded once to float32 (innocuous double rounding:
  53 >= 2*24 + 2, and fp16/FP8 products are exact in float32).

Plain pytest, no simulator, no Amaranth. Every random test has its seed in the test id and in
the failure message, which lists the failing inputs and both results in hex.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sim.formats import BF16, E4M3, E5M2, FP16, FP32, OPERAND_FORMATS, FPFormat
from sim.numerics import (canonicalize, convert, fp32_add, fp32_mac, fp32_mul, fp32_sum,
                          from_float32, to_float32)
from tb.vectors import edge_bits, fp32_vectors, mixed_bits

SEED = 0x5EED_0F32
NARROW = [FP16, BF16, E4M3, E5M2]
FP8 = [E4M3, E5M2]
OPERAND_PAIRS = list(itertools.product(OPERAND_FORMATS.values(), repeat=2))
FP32_NAN = FP32.nan_bits


def _seed_id(seed):
    return f"seed={seed:#x}"


def _hex(value, width) -> str:
    return f"0x{int(value):0{(width + 3) // 4}x}"


def check_bits(what, got, expected, *, dst: FPFormat, inputs, seed=None, nan=None):
    """Fail with a hex listing unless ``got == expected`` bit for bit.

    ``inputs`` is a list of ``(name, bits, width)``. Where ``nan`` is set, the expected result is
    the canonical NaN of ``dst`` whatever ``expected`` holds (references keep NaN payloads).
    """
    got = np.asarray(got).astype(np.uint64)
    expected = np.asarray(expected).astype(np.uint64)
    if nan is not None:
        expected = np.where(nan, np.uint64(dst.nan_bits), expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    bad = np.flatnonzero(got.ravel() != expected.ravel())
    if bad.size == 0:
        return
    seed_text = "none" if seed is None else hex(seed)
    lines = [f"{what}: {bad.size} of {got.size} results differ (seed={seed_text})"]
    for index in bad[:12]:
        operands = ", ".join(f"{name}={_hex(np.ravel(bits)[index], width)}"
                             for name, bits, width in inputs)
        lines.append(f"  {operands} -> golden {_hex(got.ravel()[index], dst.width)}, "
                     f"reference {_hex(expected.ravel()[index], dst.width)}")
    pytest.fail("\n".join(lines))


def values_of(fmt: FPFormat, bits) -> np.ndarray:
    """The numpy / ml_dtypes view of bit patterns (the reference's own decoding)."""
    return np.asarray(bits).astype(fmt.bits_dtype).view(fmt.dtype)


def reference_cast(dst: FPFormat, values: np.ndarray, *, saturate: bool):
    """ml_dtypes / numpy cast of ``values`` to ``dst``, with the saturating policy layered on.

    Returns ``(bits, nan)``: expected bit patterns and where the result must be the canonical NaN.
    """
    with np.errstate(all="ignore"):
        result = values.astype(dst.dtype)
    bits = result.view(dst.bits_dtype).astype(np.uint64)
    source = values.astype(np.float32)          # exact widening, to read NaN / sign / finiteness
    nan = np.isnan(result.astype(np.float32))
    if saturate:
        overflowed = ~np.isnan(source) & ~np.isfinite(result.astype(np.float32))
        limit = np.uint64(dst.max_finite_bits) | (np.signbit(source).astype(np.uint64)
                                                  << np.uint64(dst.width - 1))
        bits = np.where(overflowed, limit, bits)
        nan = np.isnan(source)
    return bits, nan


# -- 1. exhaustive decoding / conversion of every code ------------------------------------------

@pytest.mark.parametrize("fmt", NARROW, ids=str)
def test_to_float32_exhaustive(fmt):
    codes = fmt.all_codes()
    expected = values_of(fmt, codes).astype(np.float32)
    got = to_float32(fmt, codes)
    assert got.dtype == np.float32
    check_bits(f"to_float32({fmt})", got.view(np.uint32), expected.view(np.uint32), dst=FP32,
               inputs=[(fmt.name, codes, fmt.width)], nan=np.isnan(expected))


@pytest.mark.parametrize("saturate", [False, True], ids=["ieee", "saturate"])
@pytest.mark.parametrize("dst", NARROW, ids=str)
@pytest.mark.parametrize("src", NARROW, ids=str)
def test_convert_exhaustive(src, dst, saturate):
    """Every code of ``src`` to ``dst`` (includes FP8 -> fp16, which is exact)."""
    codes = src.all_codes()
    expected, nan = reference_cast(dst, values_of(src, codes), saturate=saturate)
    got = convert(src, dst.name, codes, saturate=saturate)
    assert got.dtype == dst.bits_dtype
    check_bits(f"convert({src}, {dst}, saturate={saturate})", got, expected, dst=dst,
               inputs=[(src.name, codes, src.width)], nan=nan)


@pytest.mark.parametrize("fmt", FP8, ids=str)
def test_fp8_to_fp16_is_exact(fmt):
    codes = fmt.all_codes()
    finite = np.isfinite(values_of(fmt, codes).astype(np.float32))
    widened = values_of(FP16, convert(fmt, "fp16", codes)).astype(np.float64)
    assert np.array_equal(widened[finite], values_of(fmt, codes[finite]).astype(np.float64))


@pytest.mark.parametrize("saturate", [False, True], ids=["ieee", "saturate"])
@pytest.mark.parametrize("fmt", NARROW, ids=str)
def test_round_trip_through_fp32(fmt, saturate):
    """Every code survives fp32 and back; NaNs become canonical, infinities saturate if asked."""
    codes = fmt.all_codes()
    expected = canonicalize(fmt, codes).astype(np.uint64)
    if saturate and fmt.has_inf:
        magnitude = expected & np.uint64(fmt.sign_mask - 1)
        expected = np.where(magnitude == fmt.inf_bits,
                            (expected & np.uint64(fmt.sign_mask)) | np.uint64(fmt.max_finite_bits),
                            expected)
    back = from_float32(fmt, to_float32(fmt, codes), saturate=saturate)
    check_bits(f"{fmt} -> fp32 -> {fmt} (saturate={saturate})", back, expected, dst=fmt,
               inputs=[(fmt.name, codes, fmt.width)])


# -- 2. narrowing fp32 -> target, one rounding ----------------------------------------------------

def _magnitude_value(fmt: FPFormat, code: np.ndarray) -> np.ndarray:
    """Value of magnitude code(s) from the field definition, also one past the largest finite
    code (the value the format would have next if its exponent range went on)."""
    exp_field = code >> fmt.man_bits
    man = code & ((1 << fmt.man_bits) - 1)
    sig = np.where(exp_field == 0, man, man | (1 << fmt.man_bits))
    return np.ldexp(sig.astype(np.float64), np.maximum(exp_field, 1) - fmt.bias - fmt.man_bits)


def narrowing_inputs(fmt: FPFormat, rng) -> np.ndarray:
    """float32 bit patterns that exercise rounding to ``fmt`` (about 1.1-1.4 million)."""
    n = 500_000
    sign = rng.integers(0, 2, n, dtype=np.uint32) << np.uint32(31)
    # uniform bit patterns (every fp32 class, NaN payloads, fp32 subnormals)
    uniform = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    # dynamic range of the target, from below its smallest subnormal to above its largest value
    lead = rng.integers(fmt.emin - fmt.man_bits - 3, min(fmt.emax + 2, 127) + 1, n)
    frac = rng.integers(0, 1 << 23, n)
    with np.errstate(all="ignore"):
        ranged = np.ldexp(1.0 + frac / 2.0 ** 23, lead).astype(np.float32).view(np.uint32)
    ranged = ranged | sign
    # every tie between consecutive magnitudes (the last one is the overflow threshold), and
    # the float32 neighbours at one and two ulps on either side
    lower = np.arange(fmt.max_finite_bits + 1, dtype=np.int64)
    midpoint64 = (_magnitude_value(fmt, lower) + _magnitude_value(fmt, lower + 1)) / 2
    midpoint = midpoint64.astype(np.float32)
    assert np.array_equal(midpoint.astype(np.float64), midpoint64), "ties must be exact in fp32"
    ties = (midpoint.view(np.uint32).astype(np.int64)[:, None] + np.arange(-2, 3)).ravel()
    ties = ties.astype(np.uint32)
    ties = np.concatenate([ties, ties | np.uint32(1 << 31)])
    # the overflow region: from the largest finite value to twice the threshold (or fp32 max)
    top = np.float32(min(2.0 ** (fmt.emax + 2), float(np.finfo(np.float32).max)))
    low = np.float32(fmt.max_finite).view(np.uint32)
    high = top.view(np.uint32)
    overflow = rng.integers(low, high, 100_000, endpoint=True, dtype=np.uint64).astype(np.uint32)
    overflow = overflow | sign[:100_000]
    edges = edge_bits(FP32).astype(np.uint32)
    return np.concatenate([edges, uniform, ranged, ties, overflow])


@pytest.mark.parametrize("seed", [SEED], ids=_seed_id)
@pytest.mark.parametrize("saturate", [False, True], ids=["ieee", "saturate"])
@pytest.mark.parametrize("fmt", NARROW, ids=str)
def test_from_float32(fmt, saturate, seed):
    bits = narrowing_inputs(fmt, np.random.default_rng([seed, fmt.width, fmt.man_bits]))
    assert bits.size >= 1_000_000
    values = bits.view(np.float32)
    expected, nan = reference_cast(fmt, values, saturate=saturate)
    got = from_float32(fmt, values, saturate=saturate)
    assert got.dtype == fmt.bits_dtype
    check_bits(f"from_float32({fmt}, saturate={saturate})", got, expected, dst=fmt, seed=seed,
               inputs=[("fp32", bits, 32)], nan=nan)
    if fmt is E4M3 and not saturate:
        # E4M3FN has no infinity: overflow is NaN, which the reference also says
        assert got[np.isinf(values)].astype(np.int64).tolist() == [E4M3.nan_bits] * int(
            np.isinf(values).sum())


@pytest.mark.parametrize("fmt", NARROW, ids=str)
def test_from_float32_ties_to_even(fmt):
    """Direct statement of the rule on every tie: the result's last mantissa bit is 0."""
    lower = np.arange(fmt.max_finite_bits, dtype=np.int64)   # ties below the overflow threshold
    midpoint = ((_magnitude_value(fmt, lower) + _magnitude_value(fmt, lower + 1)) / 2)
    got = from_float32(fmt, midpoint.astype(np.float32)).astype(np.int64)
    assert np.array_equal(got, np.where(lower % 2 == 0, lower, lower + 1))


# -- 3. arithmetic -------------------------------------------------------------------------------

def _f32(bits) -> np.ndarray:
    return np.asarray(bits).astype(np.uint32).view(np.float32)


def reference_fp32(values64: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round float64 results once to float32: ``(bits, nan)``."""
    with np.errstate(all="ignore"):
        rounded = values64.astype(np.float32)
    return rounded.view(np.uint32), np.isnan(rounded)


def addition_pairs(rng) -> tuple[np.ndarray, np.ndarray]:
    """About 1.1 million fp32 pairs: random, every edge pair, cancellations, alignment shifts
    around the rounding position, overflow and subnormal sums."""
    n = 700_000
    a = [fp32_vectors(rng, n).astype(np.uint32)]
    b = [fp32_vectors(rng, n).astype(np.uint32)]
    edges = edge_bits(FP32).astype(np.uint32)
    a.append(np.repeat(edges, edges.size))
    b.append(np.tile(edges, edges.size))
    m = 80_000
    base = mixed_bits(rng, FP32, m).astype(np.uint32)
    a += [base, base]
    b += [base ^ np.uint32(1 << 31),                                        # exact cancellation
          (base ^ np.uint32(1 << 31)) + rng.integers(-3, 4, m).astype(np.uint32)]  # near it
    # exponent differences 20..28: the smaller addend straddles the rounding position
    big = rng.integers(0x0C000000, 0x74000000, m, dtype=np.uint32) | (
        rng.integers(0, 2, m, dtype=np.uint32) << np.uint32(31))
    shift = rng.integers(20, 29, m, dtype=np.uint32) << np.uint32(23)
    small = ((big & np.uint32(0x7F800000)) - shift) | rng.integers(0, 1 << 23, m, dtype=np.uint32)
    small |= rng.integers(0, 2, m, dtype=np.uint32) << np.uint32(31)
    a.append(big)
    b.append(small)
    # near the top: sums that overflow or just fail to
    near_max = rng.integers(0x7F000000, 0x7F800000, (2, m), dtype=np.uint32)
    a.append(near_max[0])
    b.append(near_max[1] | (rng.integers(0, 2, m, dtype=np.uint32) << np.uint32(31)))
    # subnormal and smallest-normal operands
    tiny = rng.integers(0, 0x01000000, (2, m), dtype=np.uint32) | (
        rng.integers(0, 2, (2, m), dtype=np.uint32) << np.uint32(31))
    a.append(tiny[0])
    b.append(tiny[1])
    return np.concatenate(a), np.concatenate(b)


@pytest.mark.parametrize("seed", [SEED], ids=_seed_id)
def test_fp32_add(seed):
    a, b = addition_pairs(np.random.default_rng([seed, 1]))
    assert a.size >= 1_000_000
    with np.errstate(all="ignore"):
        expected, nan = reference_fp32(_f32(a).astype(np.float64) + _f32(b).astype(np.float64))
    got = fp32_add(a, b)
    check_bits("fp32_add", got, expected, dst=FP32, seed=seed, nan=nan,
               inputs=[("a", a, 32), ("b", b, 32)])
    # commutative bit for bit
    check_bits("fp32_add commuted", fp32_add(b, a), got, dst=FP32, seed=seed,
               inputs=[("a", a, 32), ("b", b, 32)])


@pytest.mark.parametrize("seed", [SEED], ids=_seed_id)
def test_fp32_add_signed_zeros(seed):
    """x + (-x) = +0 for every finite x (round to nearest even); -0 + -0 = -0; +0 + -0 = +0."""
    rng = np.random.default_rng([seed, 2])
    x = np.concatenate([edge_bits(FP32).astype(np.uint32), mixed_bits(rng, FP32, 100_000)
                        .astype(np.uint32)])
    x = x[np.isfinite(_f32(x))]
    check_bits("x + (-x)", fp32_add(x, x ^ np.uint32(1 << 31)), np.zeros_like(x), dst=FP32,
               seed=seed, inputs=[("x", x, 32)])
    zeros = np.array([0, 0x80000000], dtype=np.uint32)
    a, b = np.repeat(zeros, 2), np.tile(zeros, 2)
    check_bits("signed zero sums", fp32_add(a, b), [0, 0, 0, 0x80000000], dst=FP32,
               inputs=[("a", a, 32), ("b", b, 32)])


def test_fp32_add_nan_is_canonical():
    nans = np.array([0x7F800001, 0xFFC00000, 0x7FFFFFFF, 0xFFBADBAD, 0x7FC00000], np.uint32)
    others = np.array([0, 0x80000000, 0x3F800000, 0x7F800000, 0xFF800000], np.uint32)
    a = np.concatenate([nans, others[:, None].repeat(nans.size, 1).ravel(), [0x7F800000]])
    b = np.concatenate([others, np.tile(nans, others.size), [0xFF800000]])  # ... inf + -inf
    check_bits("NaN sums", fp32_add(a, b), np.full(a.size, FP32_NAN), dst=FP32,
               inputs=[("a", a, 32), ("b", b, 32)])


def operand_pairs(a_fmt: FPFormat, b_fmt: FPFormat, rng) -> tuple[np.ndarray, np.ndarray]:
    """Operand pairs: every code of an FP8 side crossed with the other side's codes (all of an
    FP8 side, or 256 edge-and-random fp16 patterns), then random mixed operands (>= 120 000)."""
    def side(fmt):
        if fmt.width == 8:
            return fmt.all_codes().astype(np.uint64)
        return np.concatenate([edge_bits(fmt), mixed_bits(rng, fmt, 256 - edge_bits(fmt).size)])
    a_side, b_side = side(a_fmt), side(b_fmt)
    a = [np.repeat(a_side, b_side.size)]
    b = [np.tile(b_side, a_side.size)]
    n = 60_000
    a.append(mixed_bits(rng, a_fmt, n))
    b.append(mixed_bits(rng, b_fmt, n))
    return np.concatenate(a), np.concatenate(b)


def _pair_id(pair):
    return f"{pair[0]}x{pair[1]}"


@pytest.mark.parametrize("seed", [SEED], ids=_seed_id)
@pytest.mark.parametrize("pair", OPERAND_PAIRS, ids=_pair_id)
def test_fp32_mul(pair, seed):
    a_fmt, b_fmt = pair
    rng = np.random.default_rng([seed, 3, a_fmt.width, a_fmt.man_bits,
                                 b_fmt.width, b_fmt.man_bits])
    a, b = operand_pairs(a_fmt, b_fmt, rng)
    with np.errstate(all="ignore"):
        product = values_of(a_fmt, a).astype(np.float64) * values_of(b_fmt, b).astype(np.float64)
    expected, nan = reference_fp32(product)
    got = fp32_mul(a_fmt, a, b_fmt.name, b)
    inputs = [(f"a:{a_fmt}", a, a_fmt.width), (f"b:{b_fmt}", b, b_fmt.width)]
    check_bits(f"fp32_mul({a_fmt} x {b_fmt})", got, expected, dst=FP32, seed=seed, nan=nan,
               inputs=inputs)
    # the product is exact: no rounding happened for any finite product
    finite = np.isfinite(product)
    exact = _f32(got).astype(np.float64) == product
    check_bits("fp32_mul exactness (1 = exact)", exact[finite], np.ones(int(finite.sum())),
               dst=FP32, seed=seed,
               inputs=[(name, bits[finite], width) for name, bits, width in inputs])


@pytest.mark.parametrize("seed", [SEED], ids=_seed_id)
@pytest.mark.parametrize("pair", OPERAND_PAIRS, ids=_pair_id)
def test_fp32_mac(pair, seed):
    a_fmt, b_fmt = pair
    rng = np.random.default_rng([seed, 4, a_fmt.width, a_fmt.man_bits,
                                 b_fmt.width, b_fmt.man_bits])
    a, b = operand_pairs(a_fmt, b_fmt, rng)
    acc = fp32_vectors(rng, a.size).astype(np.uint32)
    # half the accumulators are near the product's magnitude (either sign), so that the
    # addition really rounds or cancels instead of one term swamping the other
    with np.errstate(all="ignore"):
        product32 = values_of(a_fmt, a).astype(np.float32) * values_of(b_fmt, b).astype(np.float32)
        scale = np.ldexp(rng.uniform(-30, 30, a.size), rng.integers(-25, 5, a.size))
        near_product = (product32 * scale.astype(np.float32)).view(np.uint32)
    near = (rng.random(a.size) < 0.5) & np.isfinite(product32)
    acc = np.where(near, near_product, acc)
    with np.errstate(all="ignore"):
        product = values_of(a_fmt, a).astype(np.float64) * values_of(b_fmt, b).astype(np.float64)
    with np.errstate(all="ignore"):
        expected, nan = reference_fp32(_f32(acc).astype(np.float64) + product)
    got = fp32_mac(acc, a_fmt, a, b_fmt, b)
    check_bits(f"fp32_mac(acc + {a_fmt} x {b_fmt})", got, expected, dst=FP32, seed=seed, nan=nan,
               inputs=[("acc", acc, 32), (f"a:{a_fmt}", a, a_fmt.width),
                       (f"b:{b_fmt}", b, b_fmt.width)])


def _python_loop_sum(values: list[float], init: float = 0.0) -> int:
    """Sequential float32 sum, one numpy float32 scalar addition at a time."""
    acc = np.float32(init)
    for value in values:
        acc = np.float32(acc + np.float32(value))
    return int(np.array(acc).view(np.uint32))


def test_fp32_sum_order_is_sequential():
    """1 followed by many 2**-24: each addition is a tie that rounds back to 1 in index order,
    while numpy's pairwise np.sum (and the reversed order) adds the small terms first."""
    values = np.array([1.0] + [2.0 ** -24] * 1000, dtype=np.float32)
    loop = _python_loop_sum(values.tolist())
    assert loop == 0x3F800000
    pairwise = int(np.array(np.sum(values)).view(np.uint32))
    assert pairwise != loop, "the case must tell sequential from pairwise summation"
    got = fp32_sum(values.view(np.uint32))
    check_bits("fp32_sum([1, 2**-24, ...])", got, loop, dst=FP32,
               inputs=[("first", values.view(np.uint32)[:1], 32)])
    reversed_values = values[::-1].copy()
    reversed_loop = _python_loop_sum(reversed_values.tolist())
    assert reversed_loop == np.float32(1 + 1000 * 2.0 ** -24).view(np.uint32)
    check_bits("fp32_sum(reversed)", fp32_sum(reversed_values.view(np.uint32)), reversed_loop,
               dst=FP32, inputs=[("first", reversed_values.view(np.uint32)[:1], 32)])


@pytest.mark.parametrize("seed", [SEED], ids=_seed_id)
def test_fp32_sum_random(seed):
    """Rows of fp32 addends with an initial value: index order, one rounding per step."""
    rng = np.random.default_rng([seed, 5])
    rows, depth = 4000, 48
    # most rows finite, of mixed magnitudes and signs, so that every step rounds; the last
    # quarter draws from tb.vectors (specials, subnormals, signed zeros)
    finite = np.ldexp(rng.standard_normal((rows, depth)), rng.integers(-12, 13, (rows, depth)))
    addends = finite.astype(np.float32).view(np.uint32)
    special = slice(3 * rows // 4, rows)
    addends[special] = mixed_bits(rng, FP32, addends[special].size).reshape(-1, depth)
    init = fp32_vectors(rng, rows).astype(np.uint32)
    acc = _f32(init)
    with np.errstate(all="ignore"):
        for k in range(depth):
            step = acc.astype(np.float64) + _f32(addends[:, k]).astype(np.float64)
            acc = step.astype(np.float32)
    expected, nan = acc.view(np.uint32), np.isnan(acc)
    got = fp32_sum(addends, init_bits=init)
    check_bits("fp32_sum", got, expected, dst=FP32, seed=seed, nan=nan,
               inputs=[("init", init, 32), ("addend0", addends[:, 0], 32)])
    # the first rows again through the plain Python loop, as the contract states it
    for row in range(8):
        values = _f32(addends[row]).tolist()
        loop = _python_loop_sum(values, float(_f32(init[row])))
        want = FP32_NAN if np.isnan(_f32(np.uint32(loop))) else loop
        assert int(got[row]) == want, f"row {row} (seed={seed:#x})"


def test_fp32_sum_shapes():
    one, two = 0x3F800000, 0x40000000
    assert fp32_sum(np.zeros((3, 0), np.uint32), init_bits=two).tolist() == [two] * 3
    assert fp32_sum(np.array([[one, one], [two, two]], np.uint32)).tolist() == [two, 0x40800000]
    assert fp32_sum(np.array([one, one, 0x7F800000, 0xFF800000], np.uint32)) == FP32_NAN


# -- 4. bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("saturate", [1, 0, "yes", None, 1.0])
def test_convert_saturate_must_be_bool(saturate):
    with pytest.raises(ValueError, match=r"saturate must be a bool, not "):
        convert(E4M3, FP16, np.array([1], np.uint8), saturate=saturate)


def test_convert_unknown_format():
    with pytest.raises(ValueError, match=r"src must be one of \['bf16', 'e4m3', 'e5m2', 'fp16', "
                                         r"'fp32'\], not 'fp8'"):
        convert("fp8", FP16, [0])
    with pytest.raises(ValueError, match=r"dst must be one of .*, not 'e4m3fn'"):
        convert(FP16, "e4m3fn", [0])


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.uint32])
def test_from_float32_requires_float32(dtype):
    with pytest.raises(TypeError, match="values must be float32"):
        from_float32(E4M3, np.zeros(4, dtype=dtype))


@pytest.mark.parametrize("call", [
    pytest.param(lambda: convert(E4M3, FP16, np.array([256])), id="convert-e4m3-256"),
    pytest.param(lambda: convert(E5M2, FP16, np.array([-1])), id="convert-e5m2-negative"),
    pytest.param(lambda: to_float32(FP16, np.array([0, 1 << 16])), id="to_float32-fp16"),
    pytest.param(lambda: canonicalize(BF16, np.array([1 << 16], np.uint32)), id="canonicalize"),
    pytest.param(lambda: fp32_add(np.array([1 << 32]), np.array([0])), id="fp32_add-a"),
    pytest.param(lambda: fp32_add(np.array([0]), np.array([-1])), id="fp32_add-b"),
    pytest.param(lambda: fp32_mul(E4M3, np.array([300]), FP16, np.array([0])), id="fp32_mul"),
    pytest.param(lambda: fp32_mac(np.array([1 << 33]), FP16, [0], FP16, [0]), id="fp32_mac"),
    pytest.param(lambda: fp32_sum(np.array([[0, 1 << 32]])), id="fp32_sum"),
    pytest.param(lambda: fp32_sum(np.array([[0]]), init_bits=-1), id="fp32_sum-init"),
])
def test_bits_out_of_range(call):
    with pytest.raises(ValueError, match="bit patterns out of range"):
        call()


@pytest.mark.parametrize("bits", [np.array([1.0]), np.array([True]), np.array(["1"])],
                         ids=["float", "bool", "str"])
def test_bits_must_be_integers(bits):
    with pytest.raises(TypeError, match="bit patterns must be an integer array"):
        convert(E4M3, FP16, bits)


@pytest.mark.parametrize("fmt", ["bf16", "fp32"])
def test_fp32_mul_refuses_non_operand_formats(fmt):
    """A bf16 or fp32 operand would make the product inexact: refused, naming the field."""
    with pytest.raises(ValueError, match=r"a_fmt must be one of \['e4m3', 'e5m2', 'fp16'\]"):
        fp32_mul(fmt, [0], FP16, [0])
    with pytest.raises(ValueError, match=r"b_fmt must be one of \['e4m3', 'e5m2', 'fp16'\]"):
        fp32_mul(FP16, [0], fmt, [0])
