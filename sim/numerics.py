"""Bit-exact golden numerics: conversions and the MAC of the numerics contract.

Everything works on arrays of *bit patterns* (unsigned integers of the format's width) and is
vectorised with numpy. Conversions are an integer algorithm (one rounding, round to nearest
even, explicit overflow policy), written independently of ml_dtypes so that the tests in
``tb/test_golden_numerics.py`` can check one against the other.

Contract
--------
* Conversion rounds once, to nearest even, with subnormals (no flush to zero).
* Overflow policy ``saturate=False`` (IEEE): a finite value whose rounded magnitude exceeds the
  largest finite value becomes infinity, or NaN in a format without infinities (E4M3FN);
  infinities stay infinities (NaN in E4M3FN).
  ``saturate=True``: such values, and infinities, become the largest finite value of the same
  sign.
* Every NaN result is the format's canonical NaN (:attr:`FPFormat.nan_bits`, positive, quiet).
* ``mac(acc, a, b) = round_fp32(acc + a*b)``; the product of two fp16/FP8 values is exact in
  fp32, so this is one rounding. Signed zeros and infinities follow IEEE 754 (``x + (-x) = +0``
  in round to nearest even; ``inf * 0`` and ``inf - inf`` are NaN).
"""

from __future__ import annotations

import numpy as np

from .formats import FP16, FP32, OPERAND_FORMATS, FPFormat, NanStyle, format_by_name

__all__ = ["unpack", "round_pack", "convert", "to_float32", "from_float32", "canonicalize",
           "fp32_mul", "fp32_add", "fp32_mac", "fp32_sum", "fp32_multiply"]

_MAX_SHIFT = 62


def _bits(fmt: FPFormat, bits) -> np.ndarray:
    array = np.asarray(bits)
    if array.dtype.kind not in "ui":
        raise TypeError(f"bit patterns must be an integer array, not {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= (1 << fmt.width)):
        raise ValueError(f"bit patterns out of range for {fmt.name} ({fmt.width} bits)")
    return array.astype(np.int64)


def unpack(fmt: FPFormat, bits):
    """Split bit patterns into ``(sign, sig, exp, is_nan, is_inf)``.

    For finite values the magnitude is exactly ``sig * 2**exp`` (``sig`` includes the hidden
    bit for normal numbers; ``sig == 0`` for zeros).
    """
    b = _bits(fmt, bits)
    sign = (b >> (fmt.width - 1)) & 1
    exp_field = (b >> fmt.man_bits) & fmt.exp_max_field
    man = b & ((1 << fmt.man_bits) - 1)
    top = exp_field == fmt.exp_max_field
    if fmt.nan_style is NanStyle.FN:
        is_nan = top & (man == (1 << fmt.man_bits) - 1)
        is_inf = np.zeros_like(is_nan)
    else:
        is_nan = top & (man != 0)
        is_inf = top & (man == 0)
    normal = exp_field != 0
    sig = np.where(normal, man | (1 << fmt.man_bits), man)
    exp = np.where(normal, exp_field, 1) - fmt.bias - fmt.man_bits
    return sign, sig, exp, is_nan, is_inf


def round_pack(fmt: FPFormat, sign, sig, exp, *, saturate: bool = False) -> np.ndarray:
    """Encode the finite values ``(-1)**sign * sig * 2**exp`` in ``fmt`` with one rounding.

    Round to nearest, ties to even; results beyond the largest finite value follow the overflow
    policy (see the module docstring). ``sig`` must be below ``2**52``.
    """
    sign = np.asarray(sign, dtype=np.int64)
    sig = np.asarray(sig, dtype=np.int64)
    exp = np.asarray(exp, dtype=np.int64)
    sign, sig, exp = np.broadcast_arrays(sign, sig, exp)
    m = fmt.man_bits
    emin = fmt.emin
    # exponent of the leading one (value in [2**lead, 2**(lead+1)))
    lead = exp + np.frexp(np.maximum(sig, 1).astype(np.float64))[1] - 1
    target = np.maximum(lead, emin)            # exponent of the result's leading bit position
    shift = (target - m) - exp                 # low-order bits of sig to drop (may be < 0)
    left = np.clip(-shift, 0, _MAX_SHIFT)
    right = np.clip(shift, 0, _MAX_SHIFT)
    q = (sig << left) >> right
    rem = sig & ((np.int64(1) << right) - 1)
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), np.int64(1) << 62)
    round_up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    q = q + round_up
    carry = q >> (m + 1) != 0                  # rounding carried into a new binade
    q = np.where(carry, q >> 1, q)
    target = target + carry
    normal = q >= (1 << m)
    exp_field = np.where(normal, target + fmt.bias, 0)
    man = q & ((1 << m) - 1)
    overflow = exp_field > fmt.emax + fmt.bias
    if fmt.nan_style is NanStyle.FN:
        overflow |= (exp_field == fmt.exp_max_field) & (man == (1 << m) - 1)
    magnitude = (exp_field << m) | man
    magnitude = np.where(overflow, _overflow_value(fmt, saturate), magnitude)
    out = magnitude | (sign << (fmt.width - 1))
    if fmt.nan_style is NanStyle.FN and not saturate:
        out = np.where(overflow, fmt.nan_bits, out)
    return out.astype(fmt.bits_dtype)


def _overflow_value(fmt: FPFormat, saturate: bool) -> int:
    if saturate:
        return fmt.max_finite_bits
    return fmt.inf_bits if fmt.has_inf else fmt.nan_bits


def convert(src, dst, bits, *, saturate: bool = False) -> np.ndarray:
    """Convert bit patterns from format ``src`` to format ``dst`` (one rounding)."""
    src = format_by_name(src, field="src")
    dst = format_by_name(dst, field="dst")
    if not isinstance(saturate, (bool, np.bool_)):
        raise ValueError(f"saturate must be a bool, not {saturate!r}")
    sign, sig, exp, is_nan, is_inf = unpack(src, bits)
    out = round_pack(dst, sign, sig, exp, saturate=saturate).astype(np.int64)
    inf = _overflow_value(dst, saturate) | (sign << (dst.width - 1))
    if dst.nan_style is NanStyle.FN and not saturate:
        inf = np.full_like(inf, dst.nan_bits)
    out = np.where(is_inf, inf, out)
    out = np.where(is_nan, dst.nan_bits, out)
    return out.astype(dst.bits_dtype)


def canonicalize(fmt: FPFormat, bits) -> np.ndarray:
    """Replace every NaN by the canonical NaN, leave other patterns alone."""
    b = _bits(fmt, bits)
    _, _, _, is_nan, _ = unpack(fmt, b)
    return np.where(is_nan, fmt.nan_bits, b).astype(fmt.bits_dtype)


def to_float32(fmt, bits) -> np.ndarray:
    """Exact float32 values of bit patterns of any format narrower than or equal to fp32."""
    fmt = format_by_name(fmt)
    return convert(fmt, FP32, bits).view(np.float32)


def from_float32(fmt, values, *, saturate: bool = False) -> np.ndarray:
    """Round float32 values to ``fmt`` bit patterns (one rounding)."""
    values = np.asarray(values)
    if values.dtype != np.float32:
        raise TypeError(f"values must be float32 (casting from float64 would round twice), "
                        f"not {values.dtype}")
    return convert(FP32, fmt, values.view(np.uint32), saturate=saturate)


def _fp32(values: np.ndarray) -> np.ndarray:
    return canonicalize(FP32, np.asarray(values, dtype=np.float32).view(np.uint32))


def fp32_mul(a_fmt, a_bits, b_fmt, b_bits) -> np.ndarray:
    """Exact product of two operands (fp16, e4m3 or e5m2) as fp32 bit patterns."""
    # other formats (bf16, fp32) would make the product inexact, so they are refused
    a_fmt = format_by_name(a_fmt, OPERAND_FORMATS, field="a_fmt")
    b_fmt = format_by_name(b_fmt, OPERAND_FORMATS, field="b_fmt")
    with np.errstate(all="ignore"):
        return _fp32(to_float32(a_fmt, a_bits) * to_float32(b_fmt, b_bits))


def fp32_multiply(a_bits, b_bits) -> np.ndarray:
    """``round_fp32(a * b)`` of fp32 bit patterns (IEEE binary32 multiplication): one rounding
    to nearest even of the exact product, subnormal operands and results (no flush to zero),
    overflow to the infinity of the product's sign, canonical NaN for a NaN operand and for
    ``inf * 0``, the sign of a zero or infinite product the XOR of the operand signs.

    An integer algorithm (the 48-bit product of the significands, rounded once by
    :func:`round_pack`), not numpy's multiplication, which the tests compare it with. Unlike
    :func:`fp32_mul` (operand formats, whose product is exact) this one rounds.
    """
    a_sign, a_sig, a_exp, a_nan, a_inf = unpack(FP32, a_bits)
    b_sign, b_sig, b_exp, b_nan, b_inf = unpack(FP32, b_bits)
    sign = a_sign ^ b_sign
    a_zero, b_zero = (a_sig == 0) & ~a_inf & ~a_nan, (b_sig == 0) & ~b_inf & ~b_nan
    # 24 x 24 bits: below 2**48, within round_pack's 2**52
    product = round_pack(FP32, sign, np.where(a_inf | b_inf, 0, a_sig * b_sig),
                         a_exp + b_exp).astype(np.int64)
    inf = np.int64(FP32.inf_bits) | (sign << 31)
    out = np.where(a_inf | b_inf, inf, product)
    nan = a_nan | b_nan | (a_inf & b_zero) | (b_inf & a_zero)
    return np.where(nan, FP32.nan_bits, out).astype(np.uint32)


def fp32_add(a_bits, b_bits) -> np.ndarray:
    """``round_fp32(a + b)`` of fp32 bit patterns, canonical NaN."""
    a = _bits(FP32, a_bits).astype(np.uint32).view(np.float32)
    b = _bits(FP32, b_bits).astype(np.uint32).view(np.float32)
    with np.errstate(all="ignore"):
        return _fp32(a + b)


def fp32_mac(acc_bits, a_fmt, a_bits, b_fmt, b_bits) -> np.ndarray:
    """``round_fp32(acc + a*b)``: one multiply-accumulate step of the numerics contract."""
    return fp32_add(acc_bits, fp32_mul(a_fmt, a_bits, b_fmt, b_bits))


def fp32_sum(addends_bits, *, init_bits=0) -> np.ndarray:
    """Sequential fp32 sum along the last axis, in index order (the defined order)."""
    addends = _bits(FP32, addends_bits).astype(np.uint32)
    init = _bits(FP32, init_bits).astype(np.uint32)
    acc = np.broadcast_to(init, addends.shape[:-1]).copy()
    for k in range(addends.shape[-1]):
        acc = fp32_add(acc, addends[..., k])
    return acc
