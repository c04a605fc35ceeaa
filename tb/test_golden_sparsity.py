"""Zero skipping golden models against independent references.

* ``sim.sparsity.gemm_skip``: against a per-element loop decoding with ml_dtypes and adding in
  numpy float32 scalars (every format, per-element tags, signed zeros, specials, ``C_in``,
  output masks, transposes); equal to the dense ``sim.gemm.gemm`` without skipping, and with
  skipping whenever the documented corner cases (a ``-0`` accumulator start, a zero meeting an
  infinity or a NaN) are absent; the corner cases themselves.
* ``sim.lfsr``: the output against a plain bit-list LFSR, periods of small maximal LFSRs, the
  32-bit polynomial's primitivity, jumps, dropout masks element by element, keep fractions.
* ``sim.skip_model``: dense equals ``sim.engine_model.command_cycles``; the window model
  against a plain per-tile simulation of its docstring; depth 1 is dense; all-zero operands
  give the minimum; no option beats the ideal; the host's lane compaction (``compact``)
  against plain loops and equal to ``compact_lanes`` of the cycle models.
* Bad input raises ValueError naming the field.

Plain pytest, no simulator, no Amaranth.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest

from sim import lfsr
from sim.config import ArrayConfig, EngineConfig
from sim.engine_model import EngineCommand
from sim.engine_model import command_cycles as engine_cycles
from sim.formats import FP32, OPERAND_FORMATS
from sim.gemm import OPERAND_TAGS, gemm
from sim.numerics import canonicalize
from sim.skip_model import (DENSE, MAX_DEPTH, SkipOption, SparseGemm, command_cycles,
                            compact, ideal_cycles, issued_products, reorder_rows, skip_area,
                            tile_bound_cycles, tile_cycles, window_cycles)
from sim.sparsity import (check_mask, combine_masks, gemm_skip, lane_bitmaps, nonzero_macs,
                          tile_zero_counts, zero_bitmap)
from tb.vectors import edge_bits, mixed_bits, moderate_bits

SEED = int(os.environ.get("SPARTA_SEED", "5"))
FORMATS = ["fp16", "e4m3", "e5m2"]
CANONICAL_NAN = 0x7FC00000


# --------------------------------------------------------------------------- references

def decode_reference(bits, fmt):
    """float32 values via ml_dtypes (independent of sim.numerics); tags: FP8 in the low byte."""
    bits = np.asarray(bits)
    if isinstance(fmt, str):
        spec = OPERAND_FORMATS[fmt]
        store = np.uint16 if spec.width == 16 else np.uint8
        return bits.astype(store).view(spec.dtype).astype(np.float32)
    out = np.empty(bits.shape, dtype=np.float32)
    for tag, name in OPERAND_TAGS.items():
        where = np.asarray(fmt) == tag
        width = OPERAND_FORMATS[name].width
        out[where] = decode_reference(bits[where] & ((1 << width) - 1), name)
    return out


def skip_reference(a, b, a_fmt, b_fmt, c=None, *, skip_a=True, skip_b=True, keep=None):
    """The semantics of sim.sparsity one output and one step at a time (A is M x K, B K x N)."""
    av, bv = decode_reference(a, a_fmt), decode_reference(b, b_fmt)
    m_size, k_size = av.shape
    n_size = bv.shape[1]
    out = np.zeros((m_size, n_size), dtype=np.uint32)
    with np.errstate(all="ignore"):
        for m in range(m_size):
            for n in range(n_size):
                if keep is not None and not keep[m, n]:
                    continue                      # written +0, nothing computed
                acc = np.uint32(0 if c is None else c[m, n]).view(np.float32)
                for k in range(k_size):
                    x, y = av[m, k], bv[k, n]
                    if (skip_a and x == 0) or (skip_b and y == 0):
                        continue
                    acc = np.float32(acc + np.float32(x * y))
                bits = np.float32(acc).view(np.uint32)
                out[m, n] = CANONICAL_NAN if np.isnan(acc) else bits
    return out


def hexdiff(got, want):
    bad = np.argwhere(got != want)
    m, n = bad[0]
    return (f"{len(bad)} mismatches; first at C[{m},{n}]: got {int(got[m, n]):#010x} "
            f"want {int(want[m, n]):#010x} (seed {SEED})")


def zero_heavy(rng, fmt, shape, zero_fraction=0.4):
    """Mixed patterns (edges, specials, moderate values) with many +0 and -0."""
    spec = OPERAND_FORMATS[fmt]
    n = math.prod(shape)
    bits = mixed_bits(rng, spec, n)
    zeros = rng.random(n) < zero_fraction
    signs = rng.integers(0, 2, n).astype(np.uint64) << np.uint64(spec.width - 1)
    return np.where(zeros, signs, bits).reshape(shape).astype(np.int64)


def finite_zero_heavy(rng, fmt, shape, zero_fraction=0.5):
    """Moderate finite values with many +0 and -0 (no infinities, no NaN)."""
    spec = OPERAND_FORMATS[fmt]
    n = math.prod(shape)
    bits = moderate_bits(rng, spec, n)
    zeros = rng.random(n) < zero_fraction
    signs = rng.integers(0, 2, n).astype(np.uint64) << np.uint64(spec.width - 1)
    return np.where(zeros, signs, bits).reshape(shape)


# --------------------------------------------------------------------------- zero detect

@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_bitmap_every_code(fmt):
    spec = OPERAND_FORMATS[fmt]
    codes = spec.all_codes()
    got = zero_bitmap(codes, fmt)
    assert np.flatnonzero(got).tolist() == [0, spec.sign_mask], [hex(c) for c in codes[got]]


def test_zero_bitmap_tags_read_fp8_low_byte():
    bits = np.array([0x0000, 0x8000, 0x0080, 0x1280, 0x1200, 0x0001, 0xFF00, 0x7C00])
    tags = np.array([0, 0, 1, 2, 1, 1, 2, 0])
    # fp16 +-0; e4m3 -0 (0x80); e5m2 -0 in the low byte of 0x1280; e4m3 +0 in 0x1200; e4m3
    # 0x01 subnormal; e5m2 +0 in 0xFF00; fp16 infinity
    assert zero_bitmap(bits, tags).tolist() == [True, True, True, True, True, False, True,
                                                False]


def test_tile_zero_counts_and_lane_bitmaps():
    zeros = np.zeros((5, 7), dtype=bool)
    zeros[0, 0] = zeros[4, 6] = zeros[2, 3] = zeros[3, 3] = True
    counts = tile_zero_counts(zeros, tile_rows=4, tile_cols=3)
    assert counts.tolist() == [[1, 2, 0], [0, 0, 1]]
    bands, any_lane = lane_bitmaps(~zeros, lanes=4)
    assert bands.shape == (2, 4, 7) and any_lane.shape == (2, 7)
    assert not bands[1, 1:].any()                        # past the last row: zero
    assert any_lane[0].all() and any_lane[1].tolist() == [True] * 6 + [False]


# --------------------------------------------------------------------------- gemm_skip

@pytest.mark.parametrize("a_fmt,b_fmt", [("fp16", "fp16"), ("e4m3", "e5m2"), ("e5m2", "fp16"),
                                         ("e4m3", "e4m3")])
@pytest.mark.parametrize("skip_a,skip_b", [(True, True), (True, False), (False, True)])
def test_gemm_skip_matches_reference(a_fmt, b_fmt, skip_a, skip_b):
    rng = np.random.default_rng([SEED, FORMATS.index(a_fmt), FORMATS.index(b_fmt),
                                 int(skip_a), int(skip_b)])
    m, n, k = 5, 4, 9
    a = zero_heavy(rng, a_fmt, (m, k))
    b = zero_heavy(rng, b_fmt, (k, n))
    c = np.where(rng.random((m, n)) < 0.3, 0x80000000,
                 mixed_bits(rng, FP32, m * n).reshape(m, n)).astype(np.uint32)
    keep = rng.random((m, n)) < 0.7
    for c_bits, mask in ((None, None), (c, None), (c, keep), (None, keep.astype(np.uint8))):
        want = skip_reference(a, b, a_fmt, b_fmt, c_bits, skip_a=skip_a, skip_b=skip_b,
                              keep=None if mask is None else mask.astype(bool))
        got = gemm_skip(a, b, a_fmt=a_fmt, b_fmt=b_fmt, c_bits=c_bits, skip_a=skip_a,
                        skip_b=skip_b, out_mask=mask)
        assert got.dtype == np.uint32 and got.shape == (m, n)
        assert np.array_equal(got, want), hexdiff(got, want)


def test_gemm_skip_tags_and_transposes():
    rng = np.random.default_rng([SEED, 7])
    m, n, k = 4, 6, 11
    tags_a = rng.integers(0, 3, (m, k))
    tags_b = rng.integers(0, 3, (k, n))
    a = np.where(tags_a == 0, zero_heavy(rng, "fp16", (m, k)),
                 zero_heavy(rng, "e4m3", (m, k)) | (rng.integers(0, 256, (m, k)) << 8))
    b = np.where(tags_b == 0, zero_heavy(rng, "fp16", (k, n)), zero_heavy(rng, "e5m2", (k, n)))
    keep = rng.random((m, n)) < 0.5
    want = skip_reference(a, b, tags_a, tags_b, keep=keep)
    got = gemm_skip(a.T.copy(), b.T.copy(), a_fmt=tags_a.T.copy(), b_fmt=tags_b.T.copy(),
                    transpose_a=True, transpose_b=True, out_mask=keep)
    assert np.array_equal(got, want), hexdiff(got, want)


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_skipping_is_the_dense_gemm(fmt):
    rng = np.random.default_rng([SEED, 11, FORMATS.index(fmt)])
    a, b = zero_heavy(rng, fmt, (7, 13)), zero_heavy(rng, fmt, (13, 6))
    c = np.where(rng.random((7, 6)) < 0.3, 0x80000000,
                 mixed_bits(rng, FP32, 42).reshape(7, 6)).astype(np.uint32)
    for c_bits in (None, c):
        dense = gemm(a, b, a_fmt=fmt, b_fmt=fmt, c_bits=c_bits)
        got = gemm_skip(a, b, a_fmt=fmt, b_fmt=fmt, c_bits=c_bits, skip_a=False, skip_b=False)
        assert np.array_equal(got, dense), hexdiff(got, dense)


@pytest.mark.parametrize("fmt", FORMATS)
def test_skipping_equals_dense_without_the_corner_cases(fmt):
    """Finite operands, accumulators never starting at -0: skipping changes no bit."""
    rng = np.random.default_rng([SEED, 13, FORMATS.index(fmt)])
    m, n, k = 16, 12, 40
    for zero_fraction in (0.0, 0.5, 0.9, 1.0):
        a = finite_zero_heavy(rng, fmt, (m, k), zero_fraction)
        b = finite_zero_heavy(rng, fmt, (k, n), zero_fraction)
        c = moderate_bits(rng, FP32, m * n).reshape(m, n).astype(np.uint32)
        c[c == 0x80000000] = 0
        for c_bits in (None, c, np.zeros((m, n), dtype=np.uint32)):
            dense = gemm(a, b, a_fmt=fmt, b_fmt=fmt, c_bits=c_bits)
            for skip_a, skip_b in ((True, True), (True, False), (False, True)):
                got = gemm_skip(a, b, a_fmt=fmt, b_fmt=fmt, c_bits=c_bits, skip_a=skip_a,
                                skip_b=skip_b)
                assert np.array_equal(got, dense), hexdiff(got, dense)


def test_corner_case_negative_zero_accumulator():
    """acc = -0 meeting a skipped +0 product: dense gives +0, skipping keeps -0."""
    a = np.array([[0x0000, 0x8000]], dtype=np.uint16)        # +0, -0
    b = np.array([[0x3C00], [0xBC00]], dtype=np.uint16)      # 1, -1: products +0, +0
    c = np.array([[0x80000000]], dtype=np.uint32)
    assert gemm(a, b, c_bits=c)[0, 0] == 0x00000000
    assert gemm_skip(a, b, c_bits=c)[0, 0] == 0x80000000
    assert gemm_skip(a, b, c_bits=c, skip_a=False)[0, 0] == 0x00000000   # B has no zero
    # a -0 product (skipped or not) leaves -0 alone either way
    b_neg = np.array([[0xBC00], [0x3C00]], dtype=np.uint16)  # products -0, -0
    assert gemm(a, b_neg, c_bits=c)[0, 0] == gemm_skip(a, b_neg, c_bits=c)[0, 0] == 0x80000000


@pytest.mark.parametrize("special", [0x7C00, 0xFC00, 0x7E00, 0x7C01])
def test_corner_case_zero_times_special(special):
    """0 x inf and 0 x NaN: dense NaN, skipped (the accumulator keeps its value)."""
    a = np.array([[0x0000, 0x3C00]], dtype=np.uint16)        # +0, 1
    b = np.array([[special], [0x4000]], dtype=np.uint16)     # special, 2
    assert gemm(a, b)[0, 0] == CANONICAL_NAN
    assert gemm_skip(a, b)[0, 0] == 0x40000000                 # 1 * 2 only
    assert gemm_skip(a, b, skip_a=False)[0, 0] == CANONICAL_NAN  # B has no zero


def test_out_mask_writes_positive_zero_and_keeps_the_rest():
    rng = np.random.default_rng([SEED, 17])
    a, b = zero_heavy(rng, "fp16", (6, 10)), zero_heavy(rng, "fp16", (10, 5))
    c = np.full((6, 5), 0xBF800000, dtype=np.uint32)          # -1 everywhere
    keep = rng.random((6, 5)) < 0.5
    full = gemm_skip(a, b, c_bits=c)
    masked = gemm_skip(a, b, c_bits=c, out_mask=keep)
    assert np.array_equal(masked[keep], full[keep])
    assert (masked[~keep] == 0).all()
    assert (gemm_skip(a, b, c_bits=c, out_mask=np.zeros((6, 5), bool)) == 0).all()


def test_gemm_skip_bad_input():
    a = np.zeros((2, 3), dtype=np.uint16)
    b = np.zeros((3, 4), dtype=np.uint16)
    with pytest.raises(ValueError, match="out_mask must have shape \\(2, 4\\)"):
        gemm_skip(a, b, out_mask=np.ones((4, 2), bool))
    with pytest.raises(ValueError, match="out_mask must hold only 0 and 1"):
        gemm_skip(a, b, out_mask=np.full((2, 4), 2))
    with pytest.raises(ValueError, match="out_mask must be a boolean"):
        gemm_skip(a, b, out_mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match="skip_a must be a bool"):
        gemm_skip(a, b, skip_a=1)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        gemm_skip(a, b.T)
    with pytest.raises(ValueError, match="c_bits of shape"):
        gemm_skip(a, b, c_bits=np.zeros((3, 3), dtype=np.uint32))
    with pytest.raises(ValueError, match="a_fmt"):
        gemm_skip(a, b, a_fmt="bf16")
    with pytest.raises(ValueError, match="masks\\[1\\] must have shape"):
        combine_masks(np.ones((2, 3), bool), np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="at least one mask"):
        combine_masks()
    assert combine_masks(np.array([1, 1, 0]), np.array([True, False, True])).tolist() == \
        [True, False, False]
    with pytest.raises(ValueError, match="keep must have shape"):
        check_mask(np.ones(3, bool), (4,), "keep")


def test_nonzero_macs():
    a = np.array([[1, 0, 1], [0, 0, 0]], bool)
    b = np.array([[1, 1], [1, 1], [0, 1]], bool)
    assert nonzero_macs(a, b) == 3
    assert nonzero_macs(a, b, np.array([[False, True], [True, True]])) == 2


def _issued_reference(a, b, keep, rows, cols, depth):
    """issued_products, element by element: for each tile, each array row, each step and each
    PE, whether the row takes the step and the PE's operands are both non-zero."""
    m, k = a.shape
    n = b.shape[1]
    keep = np.ones((m, n), bool) if keep is None else keep
    count = 0
    for m0 in range(0, m, rows):
        for n0 in range(0, n, cols):
            tile_rows = range(m0, min(m0 + rows, m))
            tile_cols = range(n0, min(n0 + cols, n))
            kept_cols = [c for c in tile_cols if any(keep[r, c] for r in tile_rows)]
            for r in tile_rows:
                row_kept = any(keep[r, c] for c in tile_cols)
                for step in range(k):
                    takes = a[r, step] and (depth == 1 or (
                        row_kept and any(b[step, c] for c in kept_cols)))
                    if takes:
                        count += sum(bool(b[step, c]) for c in tile_cols)
    return count


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_issued_products(depth):
    """The products an output-stationary array with the zero gate accumulates: without a mask
    exactly the non-zero products (the window reaches every one); with one, at least the kept
    non-zero products and at most all of them (a tile row or column whose outputs are all
    masked is passed over, the others still compute their masked outputs), and the element by
    element count of the rule."""
    rng = np.random.default_rng(SEED)
    config = EngineConfig(array=ArrayConfig(rows=4, cols=4, skip_zeros=depth > 1,
                                            skip_window=depth))
    for trial in range(40):
        m, n, k = (int(x) for x in rng.integers(1, 14, size=3))
        a = rng.random((m, k)) < rng.random()
        b = rng.random((k, n)) < rng.random()
        keep = rng.random((m, n)) < rng.random() if trial % 2 else None
        got = issued_products(config, SparseGemm(a_nonzero=a, b_nonzero=b, out_keep=keep),
                              depth)
        assert got == _issued_reference(a, b, keep, 4, 4, depth), (trial, m, n, k)
        if keep is None or depth == 1:
            assert got == nonzero_macs(a, b)
        else:
            assert nonzero_macs(a, b, keep) <= got <= nonzero_macs(a, b)


# --------------------------------------------------------------------------- LFSR

def reference_lfsr(seed: int, count: int, width: int, taps: list[int]) -> list[int]:
    """Right-shifting Galois LFSR as a list of bits: ``state[i]`` is bit ``i``; the bit that
    leaves at the bottom is the output and is XORed into the positions of ``taps``."""
    state = [(seed >> i) & 1 for i in range(width)]
    out = []
    for _ in range(count):
        bit = state[0]
        out.append(bit)
        state = state[1:] + [0]
        if bit:
            for tap in taps:
                state[tap] ^= 1
    return out


def taps_of(mask: int, width: int) -> list[int]:
    return [i for i in range(width) if mask >> i & 1]


@pytest.mark.parametrize("seed", [1, 0xDEADBEEF, 0xFFFFFFFF, 0x80000000])
def test_lfsr_matches_bit_list_reference(seed):
    bits, state = lfsr.lfsr_bits(seed, 300)
    want = reference_lfsr(seed, 300, 32, [0, 1, 21, 31])      # x^32 + x^22 + x^2 + x + 1
    assert bits.tolist() == want
    assert int(state) == int(lfsr.lfsr_jump(seed, 300))


@pytest.mark.parametrize("width", [3, 4, 5, 8, 16])
def test_small_lfsr_is_maximal(width):
    mask = lfsr.MAXIMAL_MASKS[width]
    period = (1 << width) - 1
    _, successor = lfsr.lfsr_step(np.arange(1, period + 1), width=width, mask=mask)
    successor = [0] + successor.astype(int).tolist()          # successor[state]
    state, seen = 1, set()
    for _ in range(period):
        seen.add(state)
        state = successor[state]
    assert state == 1 and len(seen) == period              # every non-zero state, once
    bits, _ = lfsr.lfsr_bits(1, 2 * period, width=width, mask=mask)
    assert bits[:period].tolist() == bits[period:].tolist()
    assert bits[:period].tolist() == reference_lfsr(1, period, width, taps_of(mask, width))
    assert int(bits[:period].sum()) == 1 << (width - 1)    # a maximal sequence's ones


def _polymulmod(x: int, y: int, poly: int, degree: int) -> int:
    out = 0
    while y:
        if y & 1:
            out ^= x
        y >>= 1
        x <<= 1
        if x >> degree & 1:
            x ^= poly
    return out


def _polypow_x(exponent: int, poly: int, degree: int) -> int:
    result, base = 1, 2
    while exponent:
        if exponent & 1:
            result = _polymulmod(result, base, poly, degree)
        base = _polymulmod(base, base, poly, degree)
        exponent >>= 1
    return result


def galois_polynomial(mask: int) -> int:
    """``1 + sum_i b_i x^(i+1)`` for the feedback bits ``b_i`` of a right-shifting Galois LFSR
    (e.g. 0xB400 is x^16 + x^14 + x^13 + x^11 + 1)."""
    return (mask << 1) | 1


def is_primitive(poly: int, degree: int, prime_factors) -> bool:
    order = (1 << degree) - 1
    assert math.prod(prime_factors) == order
    return _polypow_x(order, poly, degree) == 1 and \
        all(_polypow_x(order // q, poly, degree) != 1 for q in prime_factors)


def test_32_bit_polynomial_is_primitive():
    """x has multiplicative order 2^32 - 1 modulo x^32 + x^22 + x^2 + x + 1: the polynomial is
    primitive, so the LFSR's period from any non-zero state is 2^32 - 1. The same check holds
    for the small masks whose periods are measured above, and fails for a non-maximal one."""
    assert galois_polynomial(lfsr.FEEDBACK_MASK) == (1 << 32) | (1 << 22) | 0b111
    assert is_primitive(galois_polynomial(lfsr.FEEDBACK_MASK), 32, (3, 5, 17, 257, 65537))
    assert is_primitive(galois_polynomial(lfsr.MAXIMAL_MASKS[16]), 16, (3, 5, 17, 257))
    assert is_primitive(galois_polynomial(lfsr.MAXIMAL_MASKS[8]), 8, (3, 5, 17))
    # the AES polynomial x^8 + x^4 + x^3 + x + 1 is irreducible but not primitive: the check
    # says so, and that LFSR's sequence from 1 repeats early
    aes = 0x8D
    assert not is_primitive(galois_polynomial(aes), 8, (3, 5, 17))
    bits, _ = lfsr.lfsr_bits(1, 2 * 51, width=8, mask=aes)
    assert bits[:51].tolist() == bits[51:].tolist()


def test_jump_equals_stepping():
    seeds = np.array([1, 12345, 0xFFFFFFFF], dtype=np.uint64)
    for steps in (0, 1, 31, 32, 1000):
        _, stepped = lfsr.lfsr_bits(seeds, steps)
        assert np.array_equal(lfsr.lfsr_jump(seeds, steps), stepped)


@pytest.mark.parametrize("threshold,bits,cols", [(77, 8, 5), (4, 3, 40), (1, 1, 60)])
def test_dropout_mask_element_by_element(threshold, bits, cols):
    seed, rows = 0x1234ABCD, 3
    got = lfsr.dropout_keep_mask((rows, cols), seed=seed, threshold=threshold, bits=bits)
    taps = taps_of(lfsr.FEEDBACK_MASK, 32)
    for r in range(rows):
        stream = reference_lfsr(seed, r * lfsr.ROW_STRIDE + cols * bits, 32, taps)
        row = stream[r * lfsr.ROW_STRIDE:]
        for j in range(cols):
            value = int("".join(map(str, row[j * bits:(j + 1) * bits])), 2)
            assert got[r, j] == (value >= threshold), (r, j, value)


def test_dropout_mask_shape_and_rows():
    spec = lfsr.DropoutMask(seed=99, threshold=64)
    four_d = spec.keep((2, 3, 4, 6))
    assert four_d.shape == (2, 3, 4, 6)
    assert np.array_equal(four_d.reshape(24, 6), spec.keep((24, 6)))
    # a row does not depend on how many rows follow it
    assert np.array_equal(spec.keep((5, 6))[:2], spec.keep((2, 6)))


@pytest.mark.parametrize("p", [0.25, 0.5, 0.1])
def test_keep_fraction_close_to_p(p):
    """Keep fraction within 5 standard deviations of a binomial with the exact probability
    ``1 - threshold / 2^bits`` (false alarm probability ~6e-7 for independent draws)."""
    spec = lfsr.DropoutMask.for_layer(p, run_seed=3, layer="drop", step=11)
    assert abs(spec.p - p) <= 2 ** -9
    keep = spec.keep((512, 256))
    n = keep.size
    q = 1 - spec.p
    assert abs(keep.mean() - q) < 5 * math.sqrt(q * (1 - q) / n), keep.mean()
    # rows are not copies of each other, nor columns of the first row
    assert len({row.tobytes() for row in np.packbits(keep, axis=1)}) == 512


def test_layer_seeds():
    seeds = {lfsr.layer_seed(0, layer, step) for layer in ("drop", "drop2") for step in range(50)}
    assert len(seeds) == 100 and all(0 < s < 1 << 32 for s in seeds)
    assert lfsr.layer_seed(0, "drop", 3) == lfsr.layer_seed(0, "drop", 3)
    assert lfsr.layer_seed(1, "drop", 3) != lfsr.layer_seed(0, "drop", 3)


def test_lfsr_bad_input():
    with pytest.raises(ValueError, match="seed must be an integer in 1.."):
        lfsr.DropoutMask(seed=0, threshold=64)
    with pytest.raises(ValueError, match="seed must be an integer in 1.."):
        lfsr.DropoutMask(seed=1 << 32, threshold=64)
    with pytest.raises(ValueError, match="seed must be in 1.."):
        lfsr.lfsr_bits(0, 5)
    with pytest.raises(ValueError, match="seed must be"):
        lfsr.dropout_keep_mask((4, 4), seed=-1, threshold=3)
    for p in (0, 1, 1.5, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match="p must be a number in \\(0, 1\\)"):
            lfsr.drop_threshold(p)
    with pytest.raises(ValueError, match="rounds to a threshold of 0"):
        lfsr.drop_threshold(0.001, bits=4)
    with pytest.raises(ValueError, match="threshold must be an integer in 1..255"):
        lfsr.DropoutMask(seed=5, threshold=256)
    with pytest.raises(ValueError, match="bits must be an integer in 1..16"):
        lfsr.DropoutMask(seed=5, threshold=1, bits=17)
    with pytest.raises(ValueError, match="rows"):
        lfsr.dropout_keep_mask((lfsr.MAX_ROWS + 1, 1), seed=5, threshold=3)
    with pytest.raises(ValueError, match="row stride"):
        lfsr.dropout_keep_mask((2, lfsr.ROW_STRIDE), seed=5, threshold=3)
    with pytest.raises(ValueError, match="shape must be"):
        lfsr.dropout_keep_mask((), seed=5, threshold=3)
    with pytest.raises(ValueError, match="mask must be a 8-bit integer"):
        lfsr.lfsr_bits(1, 4, width=8, mask=0x38)
    with pytest.raises(ValueError, match="layer must be"):
        lfsr.layer_seed(0, "", 1)
    with pytest.raises(ValueError, match="step must be"):
        lfsr.layer_seed(0, "drop", -1)


# --------------------------------------------------------------------------- skip models

def timing_config(rows=8, cols=8):
    return EngineConfig(array=ArrayConfig(rows=rows, cols=cols), spad_width=4096,
                        a_rows=65536, b_rows=65536, acc_width=4096, acc_rows=65536)


def random_gemm(rng, m, n, k, density=0.5, keep_density=None, accumulate=False):
    keep = None if keep_density is None else rng.random((m, n)) < keep_density
    return SparseGemm(a_nonzero=rng.random((m, k)) < density,
                      b_nonzero=rng.random((k, n)) < density, out_keep=keep,
                      accumulate=accumulate)


def reference_window(lanes, depth, length, fetch=None):
    """The docstring's loop, one tile, plain Python."""
    fetch = depth if fetch is None else fetch
    work = [[j for j in range(length) if lane[j]] for lane in lanes]
    nxt = [w[0] if w else length for w in work]
    index = [0] * len(work)
    base = cycles = 0
    while base < length:
        for lane, w in enumerate(work):
            if nxt[lane] < base + depth:
                index[lane] += 1
                nxt[lane] = w[index[lane]] if index[lane] < len(w) else length
        base = min(base + fetch, min(nxt))
        cycles += 1
    return cycles


@pytest.mark.parametrize("depth,fetch", [(1, None), (2, None), (3, None), (4, None), (4, 2),
                                         (8, 3)])
def test_window_matches_reference(depth, fetch):
    rng = np.random.default_rng([SEED, 23, depth])
    lanes = rng.random((40, 5, 30)) < rng.random((40, 1, 1))
    lengths = rng.integers(0, 31, 40)
    for t in range(40):
        lanes[t, :, lengths[t]:] = False
    got = window_cycles(lanes, depth=depth, lengths=lengths, fetch=fetch)
    want = [reference_window(lanes[t], depth, int(lengths[t]), fetch) for t in range(40)]
    assert got.tolist() == want


@pytest.mark.parametrize("rows,cols", [(8, 8), (4, 4), (3, 5)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_dense_option_is_the_engine_model(rows, cols, accumulate):
    rng = np.random.default_rng([SEED, 29, rows, cols])
    config = timing_config(rows, cols)
    for m, n, k in ((1, 1, 1), (8, 8, 8), (37, 19, 50), (64, 10, 3), (5, 70, 200)):
        gemm_ = random_gemm(rng, m, n, k, accumulate=accumulate)
        want = engine_cycles(config, EngineCommand(m=m, n=n, k=k, accumulate=accumulate))
        assert command_cycles(config, gemm_, DENSE) == want
        assert command_cycles(config, gemm_, SkipOption("la1", schedule="lookahead")) == want


def test_lookahead_over_needed_steps_depth_one_is_step_skipping():
    rng = np.random.default_rng([SEED, 31])
    config = timing_config()
    steps = SkipOption("steps", schedule="steps", scan_width=1024)
    window = SkipOption("w1", schedule="lookahead", over_needed_steps=True)
    for density in (0.05, 0.2, 0.6):
        gemm_ = random_gemm(rng, 40, 24, 100, density)
        got = tile_cycles(config, gemm_, window)
        want = tile_cycles(config, gemm_, steps)
        has_work = got > 0
        assert np.array_equal(got[has_work], want[has_work])
        assert (want[~has_work] == 1).all()          # one scan finds nothing


def test_all_zero_operand_gives_the_minimum():
    config = timing_config()
    zeros = SparseGemm(a_nonzero=np.zeros((20, 30), bool), b_nonzero=np.ones((30, 17), bool))
    overhead = engine_cycles(config, EngineCommand(m=1, n=1, k=1)) - 16   # one tile of 2R
    tiles = 3 * 3
    for option in (SkipOption("s", schedule="steps"),
                   SkipOption("l", schedule="lookahead", depth=4),
                   SkipOption("p", schedule="lookahead", depth=2, side="pe")):
        assert command_cycles(config, zeros, option) == tiles * 16 + overhead
        skip_tiles = SkipOption("e", schedule=option.schedule, depth=option.depth,
                                side=option.side, skip_empty_tiles=True)
        assert command_cycles(config, zeros, skip_tiles) == overhead
    masked = SparseGemm(a_nonzero=np.ones((20, 30), bool), b_nonzero=np.ones((30, 17), bool),
                        out_keep=np.zeros((20, 17), bool))
    assert command_cycles(config, masked, SkipOption("c", schedule="steps",
                                                     compact_lanes=True)) == overhead


@pytest.mark.parametrize("option", [
    SkipOption("steps", schedule="steps"),
    SkipOption("steps_all", schedule="steps", skip_empty_tiles=True, compact_lanes=True,
               reorder_rows=True),
    SkipOption("la2", schedule="lookahead", depth=2),
    SkipOption("la4_c", schedule="lookahead", depth=4, over_needed_steps=True,
               skip_empty_tiles=True, compact_lanes=True),
    SkipOption("la3_b", schedule="lookahead", depth=3, side="b"),
    SkipOption("pe4_f2", schedule="lookahead", depth=4, fetch=2, side="pe",
               over_needed_steps=True),
], ids=lambda o: o.name)
def test_options_between_ideal_and_dense(option):
    rng = np.random.default_rng([SEED, 37])
    config = timing_config()
    for density, keep in ((0.0, None), (0.1, 0.5), (0.5, None), (0.9, 0.3), (1.0, 1.0)):
        gemm_ = random_gemm(rng, 45, 30, 70, density, keep)
        cycles = command_cycles(config, gemm_, option)
        dense = command_cycles(config, gemm_, DENSE)
        ideal = ideal_cycles(config, gemm_)
        assert ideal <= cycles <= dense, (density, keep)
        bound = tile_bound_cycles(config, gemm_)
        assert ideal <= bound
        if option.compact_lanes and not option.reorder_rows:
            assert bound <= cycles, (density, keep)


def test_lookahead_helps_and_deeper_is_not_slower():
    rng = np.random.default_rng([SEED, 41])
    config = timing_config()
    gemm_ = random_gemm(rng, 64, 32, 256, 0.3)
    cycles = [command_cycles(config, gemm_, SkipOption(f"la{d}", schedule="lookahead", depth=d))
              for d in range(1, 5)]
    assert cycles[0] == command_cycles(config, gemm_, DENSE)
    assert all(later <= earlier for earlier, later in zip(cycles, cycles[1:]))
    assert cycles[3] < cycles[0] * 0.75


def test_side_b_is_side_a_of_the_transposed_gemm():
    rng = np.random.default_rng([SEED, 43])
    config = timing_config()
    gemm_ = random_gemm(rng, 33, 21, 90, 0.4, 0.6)
    swapped = SparseGemm(a_nonzero=gemm_.b_nonzero.T, b_nonzero=gemm_.a_nonzero.T,
                         out_keep=gemm_.out_keep.T)
    for d in (2, 4):
        side_b = SkipOption("b", schedule="lookahead", depth=d, side="b")
        side_a = SkipOption("a", schedule="lookahead", depth=d, side="a")
        assert command_cycles(config, gemm_, side_b) == command_cycles(config, swapped, side_a)


def test_reorder_rows_groups_equal_patterns():
    rng = np.random.default_rng([SEED, 47])
    patterns = rng.random((4, 30)) < 0.4
    patterns[0] = False
    rows = patterns[rng.integers(0, 4, 64)]
    order = reorder_rows(rows, lanes=8)
    assert sorted(order.tolist()) == list(range(64))
    ordered = rows[order]
    assert not ordered[:np.count_nonzero(~rows.any(axis=1))].any()   # all-zero rows first
    changes = np.count_nonzero((ordered[1:] != ordered[:-1]).any(axis=1))
    assert changes == len({row.tobytes() for row in rows}) - 1       # equal rows adjacent


def test_tile_bound_small_case():
    """Rows 3 and 9 (two bands) are the only rows with work: compaction puts them in one tile,
    whose busiest PE has 20 products."""
    config = timing_config()
    a = np.zeros((16, 40), bool)
    b = np.zeros((40, 8), bool)
    a[3, :20] = True
    b[:20, 5] = True
    a[9, 30] = b[30, 0] = True
    gemm_ = SparseGemm(a_nonzero=a, b_nonzero=b)
    overhead = command_cycles(config, gemm_) - 2 * 40
    assert tile_bound_cycles(config, gemm_) == 20 + overhead
    a[3] = b[:, 1] = True                   # now the PE of row 3, column 1 has 40
    assert tile_bound_cycles(config, SparseGemm(a_nonzero=a, b_nonzero=b)) == 40 + overhead
    assert ideal_cycles(config, gemm_) == 1


def reference_compact(gemm_):
    """Kept rows and columns by plain loops over the bitmaps."""
    a, b, keep = gemm_.a_nonzero.tolist(), gemm_.b_nonzero.T.tolist(), gemm_.out_keep
    m, n, _ = gemm_.shape
    rows = [r for r in range(m) if any(a[r]) and (keep is None or any(keep[r, :]))]
    cols = [c for c in range(n) if any(b[c]) and (keep is None or any(keep[:, c]))]
    return rows, cols


@pytest.mark.parametrize("density,keep_density", [(0.02, None), (0.05, 0.3), (0.3, 0.05),
                                                  (1.0, None)])
def test_compact_against_reference(density, keep_density):
    rng = np.random.default_rng([SEED, 53])
    gemm_ = random_gemm(rng, 50, 30, 12, density, keep_density, accumulate=True)
    compacted, rows, cols = compact(gemm_)
    want_rows, want_cols = reference_compact(gemm_)
    assert rows.tolist() == want_rows and cols.tolist() == want_cols
    assert rows.dtype == cols.dtype == np.int64
    assert compacted.shape == (len(want_rows), len(want_cols), 12)
    assert compacted.out_keep is None and compacted.accumulate
    assert np.array_equal(compacted.a_nonzero, gemm_.a_nonzero[want_rows])
    assert np.array_equal(compacted.b_nonzero, gemm_.b_nonzero[:, want_cols])
    if keep_density is None:       # nothing of the products is lost
        assert compacted.nonzero_macs == gemm_.nonzero_macs
    else:                          # the masked products inside the kept lanes are computed
        assert compacted.nonzero_macs >= gemm_.nonzero_macs


@pytest.mark.parametrize("option", [
    SkipOption("dense"),
    SkipOption("la1", schedule="lookahead"),
    SkipOption("la4", schedule="lookahead", depth=4, fetch=4),
    SkipOption("la3_b", schedule="lookahead", depth=3, side="b"),
    SkipOption("steps_e", schedule="steps", skip_empty_tiles=True),
], ids=lambda o: o.name)
def test_compact_is_the_compaction_of_tile_cycles(option):
    rng = np.random.default_rng([SEED, 59])
    config = timing_config()
    with_compaction = dataclasses.replace(option, compact_lanes=True)
    for density in (0.03, 0.1, 0.4):
        gemm_ = random_gemm(rng, 45, 37, 60, density)
        gemm_.a_nonzero[rng.random(45) < 0.3] = False     # lanes to drop at every density
        gemm_.b_nonzero[:, rng.random(37) < 0.3] = False
        compacted, rows, cols = compact(gemm_)
        assert len(rows) < 45 and len(cols) < 37
        want = tile_cycles(config, gemm_, with_compaction)
        assert np.array_equal(tile_cycles(config, compacted, option), want)
        assert (command_cycles(config, compacted, option)
                == command_cycles(config, gemm_, with_compaction))


def test_compact_empty_result():
    zero_rows = SparseGemm(a_nonzero=np.zeros((5, 4), bool), b_nonzero=np.ones((4, 3), bool))
    compacted, rows, cols = compact(zero_rows)
    assert compacted is None and rows.size == 0 and cols.tolist() == [0, 1, 2]
    masked = SparseGemm(a_nonzero=np.ones((5, 4), bool), b_nonzero=np.ones((4, 3), bool),
                        out_keep=np.zeros((5, 3), bool))
    compacted, rows, cols = compact(masked)
    assert compacted is None and rows.size == 0 and cols.size == 0
    b = np.ones((4, 3), bool)
    b[:, 1] = False
    only = np.zeros((5, 3), bool)
    only[2, 1] = True             # the only kept output is in the all-zero column
    compacted, rows, cols = compact(SparseGemm(a_nonzero=np.ones((5, 4), bool), b_nonzero=b,
                                               out_keep=only))
    assert compacted is None and rows.tolist() == [2] and cols.size == 0
    with pytest.raises(ValueError, match="gemm must be a SparseGemm"):
        compact("gemm")


def test_from_bits_reads_transposed_operands():
    a = np.array([[0x0000, 0x3C00, 0x8000]], dtype=np.uint16).T      # stored K x M (3 x 1)
    b = np.array([[0x3C00, 0x0000, 0x3C00]], dtype=np.uint16)        # stored N x K (1 x 3)
    gemm_ = SparseGemm.from_bits(a, b, transpose_a=True, transpose_b=True)
    assert gemm_.shape == (1, 1, 3)
    assert gemm_.a_nonzero.tolist() == [[False, True, False]]
    assert gemm_.b_nonzero.T.tolist() == [[True, False, True]]
    assert gemm_.nonzero_macs == 0


def test_skip_area():
    config = timing_config()
    assert skip_area(DENSE, config)["total"] == 0
    fractions = [skip_area(SkipOption(f"la{d}", schedule="lookahead", depth=d), config)
                 ["fraction"] for d in range(1, 5)]
    assert all(later > earlier for earlier, later in zip(fractions, fractions[1:]))
    steps = skip_area(SkipOption("s", schedule="steps"), config)
    assert steps["in_array"] < 0.01 * steps["array_cells"]


def test_skip_model_bad_input():
    config = timing_config()
    for depth in (0, MAX_DEPTH + 1, 2.0, True):
        with pytest.raises(ValueError, match="depth must be an integer in 1..8"):
            SkipOption("x", schedule="lookahead", depth=depth)
    with pytest.raises(ValueError, match="depth must be 1 unless"):
        SkipOption("x", schedule="steps", depth=2)
    with pytest.raises(ValueError, match="schedule must be one of"):
        SkipOption("x", schedule="sparse")
    with pytest.raises(ValueError, match="side must be one of"):
        SkipOption("x", schedule="lookahead", side="c")
    with pytest.raises(ValueError, match="fetch must be an integer in 1..2"):
        SkipOption("x", schedule="lookahead", depth=2, fetch=3)
    with pytest.raises(ValueError, match="over_needed_steps needs"):
        SkipOption("x", over_needed_steps=True)
    with pytest.raises(ValueError, match="out_keep must have shape \\(3, 4\\)"):
        SparseGemm(a_nonzero=np.ones((3, 2), bool), b_nonzero=np.ones((2, 4), bool),
                   out_keep=np.ones((4, 3), bool))
    with pytest.raises(ValueError, match="inner dimensions differ"):
        SparseGemm(a_nonzero=np.ones((3, 2), bool), b_nonzero=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="a_nonzero must be a 2-D boolean"):
        SparseGemm(a_nonzero=np.ones((3, 2)), b_nonzero=np.ones((2, 4), bool))
    gemm_ = SparseGemm(a_nonzero=np.ones((3, 2), bool), b_nonzero=np.ones((2, 4), bool))
    ws = EngineConfig(array=ArrayConfig(dataflow="ws"))
    with pytest.raises(ValueError, match="dataflow must be 'os'"):
        command_cycles(ws, gemm_)
    with pytest.raises(ValueError, match="option must be a SkipOption"):
        command_cycles(config, gemm_, "dense")
    with pytest.raises(ValueError, match="gemm must be a SparseGemm"):
        command_cycles(config, "gemm")
    with pytest.raises(ValueError, match="lengths must be"):
        window_cycles(np.ones((2, 1, 3), bool), depth=1, lengths=[4, 1])


def test_compaction_with_host_scatter_is_bit_exact():
    """What the host does around the engine gives the bits of :func:`gemm_skip` with the mask:
    the engine computes the compacted GEMM without a mask, the host's scatter puts its results
    at ``rows x cols``, keeps ``C_in`` (NaNs canonical, as every result) or ``+0`` in the dropped
    lanes and writes ``+0`` over the masked outputs."""
    rng = np.random.default_rng([SEED, 61])
    fp16, fp32 = OPERAND_FORMATS["fp16"], FP32
    for trial in range(40):
        m, n, k = (int(v) for v in rng.integers(1, 14, 3))
        a = mixed_bits(rng, fp16, m * k).reshape(m, k)
        b = mixed_bits(rng, fp16, k * n).reshape(k, n)
        a[rng.random(m) < 0.3] = 0                          # all-zero rows of A
        b[:, rng.random(n) < 0.3] = 0x8000                  # all -0 columns of B
        keep = rng.random((m, n)) < 0.6
        keep[rng.random(m) < 0.2] = False                   # fully masked rows
        c_in = None if trial % 2 else mixed_bits(rng, fp32, m * n).reshape(m, n)
        want = gemm_skip(a, b, c_bits=c_in, out_mask=keep)
        compacted, rows, cols = compact(SparseGemm.from_bits(a, b, out_mask=keep))
        got = (np.zeros((m, n), np.uint32) if c_in is None
               else canonicalize(fp32, c_in).astype(np.uint32))
        if compacted is not None:
            sub_c = None if c_in is None else c_in[np.ix_(rows, cols)]
            got[np.ix_(rows, cols)] = gemm_skip(a[rows], b[:, cols], c_bits=sub_c)
        got[~keep] = 0
        assert np.array_equal(got, want), (trial, a, b, keep, c_in)
