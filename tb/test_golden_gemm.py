"""Golden GEMM (sim/gemm.py) against sim.numerics.fp32_mac applied element by element."""

import os

import numpy as np
import pytest

from sim import gemm as gemm_module
from sim.formats import FP32, OPERAND_FORMATS
from sim.gemm import OPERAND_TAGS, TAG_OF, gemm
from sim.numerics import fp32_mac
from tb.vectors import edge_bits, fp32_vectors, mixed_bits, operand_vectors

SEED = int(os.environ.get("SPARTA_SEED", "1"))


def reference(a, b, a_fmt, b_fmt, c=None):
    """Plain loops: acc = fp32_mac(acc, A[m,k], B[k,n]) for k ascending, one element at a time.
    ``a``/``b`` are (M, K) and (K, N); formats are names or per-element tag arrays."""
    m_size, k_size = a.shape
    n_size = b.shape[1]
    out = np.zeros((m_size, n_size), dtype=np.uint32)

    def fmt_at(fmt, bits, index):
        if isinstance(fmt, str):
            return fmt, bits[index]
        name = OPERAND_TAGS[int(fmt[index])]
        return name, bits[index] & ((1 << OPERAND_FORMATS[name].width) - 1)

    for m in range(m_size):
        for n in range(n_size):
            acc = np.uint32(0 if c is None else c[m, n])
            for k in range(k_size):
                fa, va = fmt_at(a_fmt, a, (m, k))
                fb, vb = fmt_at(b_fmt, b, (k, n))
                acc = fp32_mac(acc, fa, va, fb, vb)
            out[m, n] = acc
    return out


def hexdiff(got, want, a, b):
    bad = np.argwhere(got != want)
    m, n = bad[0]
    return (f"{len(bad)} mismatches; first at C[{m},{n}]: got {got[m, n]:#010x} want "
            f"{want[m, n]:#010x}; A row {[hex(int(x)) for x in a[m]]}, "
            f"B column {[hex(int(x)) for x in b[:, n]]} (seed {SEED})")


def check(a, b, a_fmt, b_fmt, c=None, **flags):
    want = reference(a, b, a_fmt, b_fmt, c)
    def stored(array, transposed):
        """The operand (or its tag array) as stored: transposed operands are stored K-major."""
        return array if isinstance(array, str) or not transposed else array.T.copy()
    ta, tb = flags.get("transpose_a", False), flags.get("transpose_b", False)
    got = gemm(stored(a, ta), stored(b, tb), a_fmt=stored(a_fmt, ta), b_fmt=stored(b_fmt, tb),
               c_bits=c, **flags)
    assert got.dtype == np.uint32 and got.shape == want.shape
    assert np.array_equal(got, want), hexdiff(got, want, a, b)


FORMAT_PAIRS = [(x, y) for x in OPERAND_FORMATS for y in OPERAND_FORMATS]


@pytest.mark.parametrize("a_fmt,b_fmt", FORMAT_PAIRS)
@pytest.mark.parametrize("accumulate", [False, True])
def test_random_small_shapes(a_fmt, b_fmt, accumulate):
    rng = np.random.default_rng([SEED, FORMAT_PAIRS.index((a_fmt, b_fmt)), accumulate])
    for trial in range(6):
        m, n, k = (int(x) for x in rng.integers(1, 6, 3))
        a = mixed_bits(rng, OPERAND_FORMATS[a_fmt], m * k).reshape(m, k)
        b = mixed_bits(rng, OPERAND_FORMATS[b_fmt], k * n).reshape(k, n)
        c = fp32_vectors(rng, m * n)[rng.permutation(m * n)].reshape(m, n) if accumulate else None
        check(a, b, a_fmt, b_fmt, c, transpose_a=bool(trial & 1), transpose_b=bool(trial & 2))


def moderate(rng, size, scale=1.0):
    """fp16 patterns of moderate random values (finite sums that round at every step)."""
    return (rng.standard_normal(size) * scale).astype(np.float16).view(np.uint16)


def test_long_k_crosses_chunks(monkeypatch):
    """K longer than one chunk of the vectorised accumulation (chunks of 7 products here)."""
    monkeypatch.setattr(gemm_module, "_CHUNK_ELEMENTS", 7 * 6)
    rng = np.random.default_rng([SEED, 100])
    a = moderate(rng, (2, 40))
    b = moderate(rng, (40, 3), 1e-3)
    a[0, 5], b[7, 1] = 0x7C00, 0x0000                       # inf * 0 inside a chunk -> NaN
    c = fp32_vectors(rng, 6)[:6].reshape(2, 3)
    check(a, b, "fp16", "fp16", c, transpose_b=True)


def test_rounds_at_every_step():
    """1 + 2**-24 + 2**-24: sequential fp32 rounding loses both halves (ties to even), a wider
    accumulator would not."""
    one, half_ulp = 0x3C00, 0x0001                         # fp16 1.0 and 2**-24
    a = np.array([[one, half_ulp, half_ulp]], dtype=np.uint16)
    b = np.array([[one], [0x3C00], [0x3C00]], dtype=np.uint16)
    got = gemm(a, b)
    assert got[0, 0] == 0x3F800000, hex(got[0, 0])


def test_signed_zeros_and_specials():
    neg_zero, pos_zero, one, inf = 0x8000, 0x0000, 0x3C00, 0x7C00
    a = np.array([[neg_zero, neg_zero], [one, inf], [inf, inf]], dtype=np.uint16)
    b = np.array([[one], [one]], dtype=np.uint16)
    b_neg = np.array([[one], [0xFC00]], dtype=np.uint16)    # 1, -inf
    got = gemm(a, b)
    assert list(got[:, 0]) == [0x00000000, 0x7F800000, 0x7F800000]   # +0 + -0 = +0
    got = gemm(a, b, c_bits=np.full((3, 1), 0x80000000, dtype=np.uint32))
    assert got[0, 0] == 0x80000000                          # -0 + -0 + -0 stays -0
    got = gemm(a, b_neg)
    # 0 * inf and inf - inf are NaN
    assert list(got[:, 0]) == [FP32.nan_bits, 0xFF800000, FP32.nan_bits]
    nan_in = np.array([[0x7E01]], dtype=np.uint16)          # non-canonical fp16 NaN
    assert gemm(nan_in, np.array([[one]], dtype=np.uint16))[0, 0] == FP32.nan_bits
    c_nan = np.array([[0xFFC12345]], dtype=np.uint32)
    assert gemm(np.array([[one]], dtype=np.uint16), np.array([[one]], dtype=np.uint16),
                c_bits=c_nan)[0, 0] == FP32.nan_bits


def test_large_accumulator_absorbs_products():
    """fp16 products (at most 65504**2 < 2**32) cannot overflow fp32 on their own; next to the
    largest finite accumulator they are below half an ulp and vanish."""
    big = np.float16(65504).view(np.uint16)
    a = np.full((1, 3), big, dtype=np.uint16)
    c = np.array([[0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000]], dtype=np.uint32).reshape(3, 1)
    got = gemm(np.repeat(a, 3, axis=0), a.T.copy(), c_bits=c)
    assert list(got[:, 0]) == [0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000]
    check(np.repeat(a, 3, axis=0), a.T.copy(), "fp16", "fp16", c)


@pytest.mark.parametrize("a_fmt,b_fmt", FORMAT_PAIRS)
def test_every_product_of_edges_and_fp8_codes(a_fmt, b_fmt):
    """K = 1 outer product: every FP8 code (fp16 edge cases) of A times every one of B."""
    def codes(name):
        fmt = OPERAND_FORMATS[name]
        return (fmt.all_codes() if fmt.width == 8 else edge_bits(fmt)).astype(np.uint64)
    a, b = codes(a_fmt)[:, None], codes(b_fmt)[None, :]
    want = fp32_mac(np.uint32(0), a_fmt, a, b_fmt, b)    # vectorised over the outer product
    got = gemm(a, b, a_fmt=a_fmt, b_fmt=b_fmt)
    assert np.array_equal(got, want), hexdiff(got, want, a, b)


def test_mixed_tags():
    """Per-element formats (FP8 in the low byte; the high byte of an FP8 word is ignored)."""
    rng = np.random.default_rng([SEED, 200])
    for trial in range(8):
        m, n, k = (int(x) for x in rng.integers(1, 6, 3))
        a_tags, a_bits = operand_vectors(rng, 0)
        pick = rng.integers(0, len(a_bits), m * k)
        a_tags, a_bits = a_tags[pick].reshape(m, k), a_bits[pick].reshape(m, k)
        b_tags, b_bits = operand_vectors(rng, 0)
        pick = rng.integers(0, len(b_bits), k * n)
        b_tags, b_bits = b_tags[pick].reshape(k, n), b_bits[pick].reshape(k, n)
        junk = rng.integers(0, 256, (m, k)).astype(np.uint64) << np.uint64(8)
        a_bits = np.where(a_tags != TAG_OF["fp16"], a_bits | junk, a_bits)
        check(a_bits, b_bits, a_tags, b_tags, transpose_a=bool(trial & 1),
              transpose_b=bool(trial & 2))


def test_mixed_tags_equal_single_format():
    rng = np.random.default_rng([SEED, 300])
    a = mixed_bits(rng, OPERAND_FORMATS["e4m3"], 12).reshape(3, 4)
    b = mixed_bits(rng, OPERAND_FORMATS["fp16"], 8).reshape(4, 2)
    tags_a = np.full(a.shape, TAG_OF["e4m3"])
    tags_b = np.zeros(b.shape, dtype=np.int64)
    assert np.array_equal(gemm(a, b, a_fmt=tags_a, b_fmt=tags_b),
                          gemm(a, b, a_fmt="e4m3", b_fmt="fp16"))


ONE = np.full((2, 3), 0x3C00, dtype=np.uint16)      # fp16 1.0, not an FP8 code


@pytest.mark.parametrize("kwargs,match", [
    ({"b_bits": np.ones((2, 3), dtype=np.uint16)}, "inner dimensions differ"),
    ({"b_bits": np.ones((3,), dtype=np.uint16)}, "must be 2-D"),
    ({"a_bits": np.ones((2, 0), dtype=np.uint16), "b_bits": np.ones((0, 2), dtype=np.uint16)},
     "M, N and K must be at least 1"),
    ({"a_fmt": "bf16"}, r"a_fmt must be one of \['e4m3', 'e5m2', 'fp16'\]"),
    ({"b_fmt": "fp32"}, "b_fmt must be one of"),
    ({"a_fmt": "e4m3"}, "a_bits out of range for e4m3"),
    ({"a_bits": np.full((2, 3), 1 << 16)}, "a_bits out of range for fp16"),
    ({"a_bits": np.ones((2, 3), dtype=np.float32)}, "a_bits must be an integer array"),
    ({"a_fmt": np.zeros((3, 2), dtype=np.int64)}, "a_fmt tags must have the shape"),
    ({"a_fmt": np.full((2, 3), 3)}, r"a_fmt tags must be in \[0, 1, 2\]"),
    ({"a_fmt": np.zeros((2, 3))}, "a_fmt must be one of .* or an integer array of tags"),
    ({"c_bits": np.zeros((3, 3), dtype=np.uint32)}, "does not broadcast to"),
    ({"c_bits": np.zeros((2, 3), dtype=np.float32)}, "c_bits must be an integer array"),
    ({"c_bits": np.full((2, 3), 1 << 32)}, "c_bits out of range"),
    ({"transpose_a": 1}, "transpose_a must be a bool"),
])
def test_rejects_bad_input(kwargs, match):
    args = {"a_bits": ONE, "b_bits": ONE.T.copy(), **kwargs}
    a_bits, b_bits = args.pop("a_bits"), args.pop("b_bits")
    with pytest.raises(ValueError, match=match):
        gemm(a_bits, b_bits, **args)
