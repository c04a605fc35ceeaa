"""Golden model of the epilogue arithmetic (sim.numerics.fp32_multiply, sim.epilogue) against
independent references: numpy float32 arithmetic (each operation rounded to nearest even) and
ml_dtypes casts, on special values, subnormals, overflow and underflow, ties and random bits."""

import os

import ml_dtypes
import numpy as np
import pytest

from sim import epilogue
from sim.accel_spec import EPILOGUE_MAX_THRESHOLD, EpilogueOp
from sim.formats import FP32
from sim.lfsr import dropout_keep_mask
from sim.numerics import fp32_mul, fp32_multiply
from tb.vectors import edge_bits, mixed_bits, moderate_bits

SEED = int(os.environ.get("SPARTA_SEED", "1"))
NAN = FP32.nan_bits
DTYPES = {"fp16": np.float16, "bf16": ml_dtypes.bfloat16, "e4m3": ml_dtypes.float8_e4m3fn,
          "e5m2": ml_dtypes.float8_e5m2}


def rng_for(test: str):
    print(f"{test}: seed {SEED} (SPARTA_SEED)")
    return np.random.default_rng([SEED, sum(map(ord, test))])


def f32(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint64).astype(np.uint32).view(np.float32)


def bits_of(values) -> np.ndarray:
    """float32 values -> bit patterns, every NaN canonical (the contract's NaN)."""
    values = np.asarray(values, dtype=np.float32)
    out = values.view(np.uint32).copy()
    out[np.isnan(values)] = NAN
    return out


def assert_bits(got, want, **inputs):
    got, want = np.asarray(got), np.asarray(want)
    bad = np.flatnonzero(got.ravel() != want.ravel())
    if len(bad):
        k = bad[0]
        shown = ", ".join(f"{name}=0x{int(np.ravel(v)[k]):08x}" for name, v in inputs.items())
        raise AssertionError(f"{len(bad)} of {got.size} differ; first: {shown}: golden "
                             f"0x{int(got.ravel()[k]):08x}, reference 0x{int(want.ravel()[k]):08x}")


def fp32_words(rng, n):
    """Every FP32 edge, values near one, any magnitude, random bits and subnormals."""
    edges = edge_bits(FP32)
    sub = rng.integers(0, 1 << 23, n, dtype=np.uint64) | (rng.integers(0, 2, n, dtype=np.uint64)
                                                          << np.uint64(31))
    return np.concatenate([edges, moderate_bits(rng, FP32, n),
                           moderate_bits(rng, FP32, n, span_fraction=1),
                           mixed_bits(rng, FP32, n), sub]).astype(np.uint32)


def pairs(rng, n):
    """Every pair of edges; random pairs; exponent sums around the subnormal range, the
    underflow to zero and the overflow."""
    edges = edge_bits(FP32)
    a = [np.repeat(edges, len(edges))]
    b = [np.tile(edges, len(edges))]
    words = fp32_words(rng, n)
    a.append(words)
    b.append(rng.permutation(words))
    for low, high in ((-160, -120), (-30, 30), (120, 130)):
        exp_a = rng.integers(1, 255, n)
        exp_b = np.clip(127 + rng.integers(low, high + 1, n) - exp_a, 0, 254)
        man = rng.integers(0, 1 << 23, (2, n))
        sign = rng.integers(0, 2, (2, n))
        a.append((sign[0] << 31) | (exp_a << 23) | man[0])
        b.append((sign[1] << 31) | (exp_b << 23) | man[1])
    return (np.concatenate(a).astype(np.uint64).astype(np.uint32),
            np.concatenate(b).astype(np.uint64).astype(np.uint32))


# -- FP32 multiplication ------------------------------------------------------------------------

def test_fp32_multiply_matches_numpy():
    rng = rng_for("fp32_multiply")
    a, b = pairs(rng, 20_000)
    with np.errstate(all="ignore"):
        want = bits_of(f32(a) * f32(b))
    assert_bits(fp32_multiply(a, b), want, a=a, b=b)
    assert_bits(fp32_multiply(b, a), want, a=b, b=a)


def test_fp32_multiply_ties_round_to_even():
    """Products exactly halfway between two FP32 numbers round to the even one, and a
    subnormal halfway case likewise (numpy agrees, and the expected patterns are known)."""
    # (1 + 2^-23) * (1 + 2^-1) = 1.5 + 1.5 * 2^-23: the 24th bit is a tie -> even
    a = np.array([0x3F800001, 0x3F800003, 0x00000001, 0x00000003], dtype=np.uint32)
    b = np.array([0x3FC00000, 0x3FC00000, 0x3F000000, 0x3F000000], dtype=np.uint32)
    want = np.array([0x3FC00002, 0x3FC00004, 0x00000000, 0x00000002], dtype=np.uint32)
    assert_bits(fp32_multiply(a, b), want, a=a, b=b)
    with np.errstate(all="ignore"):
        assert_bits(bits_of(f32(a) * f32(b)), want, a=a, b=b)


def test_fp32_multiply_specials():
    inf, ninf, zero, nzero = 0x7F800000, 0xFF800000, 0, 0x80000000
    cases = [(inf, zero, NAN), (nzero, ninf, NAN), (inf, 0x3F800000, inf), (inf, 0xBF800000, ninf),
             (0xFFC00123, 0x3F800000, NAN), (0x7F800001, zero, NAN), (nzero, 0x3F800000, nzero),
             (nzero, 0xBF800000, zero), (0x7F7FFFFF, 0x40000000, inf),
             (0x00000001, 0x00000001, zero), (0x80000001, 0x00000001, nzero)]
    a, b, want = (np.array(column, dtype=np.uint32) for column in zip(*cases))
    assert_bits(fp32_multiply(a, b), want, a=a, b=b)


def test_fp32_mul_of_operand_formats_unchanged():
    """The exact operand-format product keeps its meaning (callers of the engine's MAC)."""
    got = fp32_mul("fp16", np.array([0x3C00, 0x7C00]), "e4m3", np.array([0x38, 0x00]))
    assert got.tolist() == [0x3F800000, NAN]
    with pytest.raises(ValueError, match="a_fmt"):
        fp32_mul("fp32", np.array([0]), "fp16", np.array([0]))


# -- the epilogue ops ---------------------------------------------------------------------------

def test_add_matches_numpy():
    rng = rng_for("epilogue add")
    a, b = pairs(rng, 5000)
    with np.errstate(all="ignore"):
        assert_bits(epilogue.epilogue_add(a, b), bits_of(f32(a) + f32(b)), dst=a, src=b)


def test_relu_and_its_keep_rule():
    rng = rng_for("epilogue relu")
    x = fp32_words(rng, 5000)
    out, keep = epilogue.relu(x)
    values = f32(x)
    want = bits_of(np.where(np.isnan(values), values, np.maximum(values, np.float32(0))))
    want[(values == 0)] = 0                   # -0 -> +0 (numpy's maximum may keep -0)
    assert_bits(out, want, dst=x)
    assert np.array_equal(keep, values > 0)
    assert np.array_equal(epilogue.kept(x), values > 0)
    special = np.array([0x80000000, 0x7F800000, 0xFF800000, 0x7F800001, 0xFFC00000, 1,
                        0x80000001], dtype=np.uint32)
    out, keep = epilogue.relu(special)
    assert out.tolist() == [0, 0x7F800000, 0, NAN, NAN, 1, 0]
    assert keep.tolist() == [False, True, False, False, False, True, False]


def test_relu_backward():
    rng = rng_for("epilogue relu_backward")
    d, s = fp32_words(rng, 3000), rng.permutation(fp32_words(rng, 3000))
    values = f32(d)
    want = np.where(f32(s) > 0, bits_of(values), np.uint32(0))
    assert_bits(epilogue.relu_backward(d, s), want, dst=d, src=s)


def test_scale_and_dropout():
    rng = rng_for("epilogue scale")
    d, factors = pairs(rng, 3000)
    with np.errstate(all="ignore"):
        product = bits_of(f32(d) * f32(factors))
    assert_bits(epilogue.scale(d, factors), product, dst=d, imm0=factors)
    keep = rng.random(d.shape) < 0.6
    assert_bits(epilogue.dropout(d, keep, factors), np.where(keep, product, np.uint32(0)),
                dst=d, imm0=factors)


@pytest.mark.parametrize("saturate", [False, True])
@pytest.mark.parametrize("fmt", ["fp16", "bf16", "e4m3", "e5m2", "fp32"])
def test_cast_matches_ml_dtypes(fmt, saturate):
    rng = rng_for(f"epilogue cast {fmt}")
    x = fp32_words(rng, 4000)
    values = f32(x)
    if fmt == "fp32":                   # no rounding: saturate is ignored
        want = bits_of(values)
    else:
        if saturate:
            top = np.float32(float(ml_dtypes.finfo(DTYPES[fmt]).max))
            values = np.clip(values, -top, top)
        with np.errstate(all="ignore"):
            want = bits_of(values.astype(DTYPES[fmt]).astype(np.float32))
    assert_bits(epilogue.cast(x, fmt, saturate), want, dst=x)


def test_sgd_matches_numpy_in_its_order():
    """``t = wd * w; t = dw + t; t = lr * t; w - t``, each a float32 operation."""
    rng = rng_for("epilogue sgd")
    w, dw = pairs(rng, 3000)
    specials = np.array([0, 0x80000000, 0x3A83126F, 0x7F800000, 0x7FC00000, 0x00000001,
                         0x7F7FFFFF, 0xBF800000], dtype=np.uint32)
    for lr in specials:
        for wd in specials[[0, 2, 5, 6]]:
            with np.errstate(all="ignore"):
                t = np.float32(f32(wd)) * f32(w)
                t = f32(dw) + t
                t = np.float32(f32(lr)) * t
                want = bits_of(f32(w) - t)
            assert_bits(epilogue.sgd(w, dw, lr, wd), want, w=w, dw=dw)


def test_dropout_keep_is_the_projects_mask():
    """Thresholds 1..255: sim.lfsr.dropout_keep_mask of the region's shape; 0 keeps and 256
    drops everything; a larger threshold never keeps an element a smaller one drops."""
    rows, cols, seed = 5, 37, 0x1234567
    for threshold in (1, 64, 200, 255):
        assert np.array_equal(epilogue.dropout_keep(rows, cols, seed, threshold),
                              dropout_keep_mask((rows, cols), seed=seed, threshold=threshold))
    assert epilogue.dropout_keep(rows, cols, seed, 0).all()
    assert not epilogue.dropout_keep(rows, cols, seed, EPILOGUE_MAX_THRESHOLD).any()
    masks = [epilogue.dropout_keep(rows, cols, seed, t) for t in range(0, 257, 16)]
    for wider, narrower in zip(masks, masks[1:]):
        assert not (narrower & ~wider).any()
    for bad in ({"seed": 0, "threshold": 64}, {"seed": 0, "threshold": 256},
                {"seed": 1, "threshold": 300}):
        with pytest.raises(ValueError):
            epilogue.dropout_keep(rows, cols, **bad)


def test_apply_dispatches_every_op():
    rng = rng_for("epilogue apply")
    d, s = fp32_words(rng, 200), rng.permutation(fp32_words(rng, 200))
    keep = rng.random(d.shape) < 0.5
    imm0, imm1 = 0x3DCCCCCD, 0x38D1B717
    want = {EpilogueOp.ADD: epilogue.epilogue_add(d, s),
            EpilogueOp.RELU: epilogue.relu(d)[0],
            EpilogueOp.RELU_BACKWARD: epilogue.relu_backward(d, s),
            EpilogueOp.DROPOUT: epilogue.dropout(d, keep, imm0),
            EpilogueOp.SCALE: epilogue.scale(d, imm0),
            EpilogueOp.CAST: epilogue.cast(d, "e4m3", True),
            EpilogueOp.SGD: epilogue.sgd(d, s, imm0, imm1)}
    for op, expected in want.items():
        out, mask = epilogue.apply(op, d, s, imm0=imm0, imm1=imm1, fmt="e4m3", saturate=True,
                                   keep=keep)
        assert np.array_equal(out, expected), op.name
        assert (mask is not None) == (op == EpilogueOp.RELU)


def test_bad_inputs_name_the_problem():
    with pytest.raises(TypeError, match="integer array"):
        epilogue.relu(np.array([1.0]))
    with pytest.raises(ValueError, match="0..2"):
        epilogue.scale(np.array([1 << 33]), 0)
    with pytest.raises(ValueError, match="fmt"):
        epilogue.cast(np.array([0], dtype=np.uint32), "fp8")
    with pytest.raises(ValueError, match="EpilogueOp"):
        epilogue.apply(9, np.array([0], dtype=np.uint32))
