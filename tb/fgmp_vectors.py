"""Stimulus for the FGMP benches: tensors of fp16 / FP32 values with their threshold and format.

Edge cases of the encoding rule come first (computed from the golden model over every fp16
code), then patterns of the byte stream (all fp16, all FP8, alternating, specials, lengths
around the block size), then random values, each tensor with its own ``t`` and FP8 format.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from sim.fgmp import FGMP_FORMATS, T_MAX, encode_tags, fp8_of
from sim.formats import FP16, FP32
from sim.numerics import convert
from tb.vectors import edge_bits, fp32_vectors, mixed_bits

__all__ = ["Tensor", "threshold_edges", "encoder_edges", "fp16_tensors", "fp32_tensors",
           "widen"]

ALL_FP16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


@dataclasses.dataclass
class Tensor:
    """One tensor: values (fp16 or FP32 bit patterns), threshold, FP8 format name, a label."""
    values: np.ndarray
    t: int
    fmt8: str
    label: str


def widen(fp16_bits) -> np.ndarray:
    """FP32 patterns with exactly the values of fp16 patterns (the converter gives them back)."""
    return convert(FP16, FP32, np.asarray(fp16_bits, dtype=np.uint16))


@functools.cache
def threshold_edges(fmt8: str, t: int, count: int = 8) -> np.ndarray:
    """fp16 codes whose relative FP8 error is nearest to ``2**-t`` from either side (the
    comparison the encoder makes exactly), ``count`` on each side."""
    fmt = FGMP_FORMATS[fmt8]
    x = ALL_FP16.view(np.float16).astype(np.float64)
    with np.errstate(all="ignore"):
        y = convert(fmt, FP16, fp8_of(ALL_FP16, fmt)).view(np.float16).astype(np.float64)
        ratio = np.abs(y - x) * 2.0 ** t / np.abs(x)
    usable = np.isfinite(x) & (x != 0) & np.isfinite(y) & (y != 0) & (ratio != 0)
    codes, ratio = ALL_FP16[usable], ratio[usable]
    below = codes[ratio <= 1][np.argsort(1 - ratio[ratio <= 1], kind="stable")[:count]]
    above = codes[ratio > 1][np.argsort(ratio[ratio > 1] - 1, kind="stable")[:count]]
    return np.concatenate([below, above])


@functools.cache
def encoder_edges(fmt8: str) -> np.ndarray:
    """fp16 codes at the edges of FP8 rounding: every FP8 value and its fp16 neighbours, the
    midpoints between consecutive FP8 values (ties) and their neighbours, the overflow and
    underflow boundaries, fp16 subnormals, zeros, infinities and NaNs; both signs."""
    fmt = FGMP_FORMATS[fmt8]
    codes = fmt.all_codes()
    values = codes.view(fmt.dtype).astype(np.float64)
    finite = np.sort(np.unique(np.abs(values[np.isfinite(values)])))
    exact = finite.astype(np.float16).view(np.uint16)
    # midpoints of consecutive values, and half the smallest subnormal (underflow tie);
    # beyond the largest finite value, the overflow threshold (max + half an ulp)
    ulp_top = 2.0 ** (fmt.emax - fmt.man_bits)
    mids = np.concatenate([(finite[:-1] + finite[1:]) / 2, [finite[1] / 2],
                           [fmt.max_finite + ulp_top / 2]])
    mids = mids[mids <= float(np.finfo(np.float16).max)]
    mid_codes = mids.astype(np.float16)
    if not np.array_equal(mid_codes.astype(np.float64), mids):
        raise AssertionError("an FP8 midpoint is not exact in fp16")
    centres = np.concatenate([exact, mid_codes.view(np.uint16)]).astype(np.int64)
    around = np.concatenate([centres - 1, centres, centres + 1])
    around = around[(around >= 0) & (around < 0x7C00)]
    subnormals = np.arange(0, 1 << FP16.man_bits, 37)
    magnitudes = np.unique(np.concatenate([around, subnormals, edge_bits(FP16).astype(np.int64) & 0x7FFF]))
    return np.concatenate([magnitudes, magnitudes | 0x8000]).astype(np.uint16)


def _pattern_tensors(rng, block: int, fmt8s) -> list[Tensor]:
    """Byte-stream patterns: all fp16, all FP8, alternating, specials, lengths near ``B``."""
    tensors = []
    for fmt8 in fmt8s:
        fmt = FGMP_FORMATS[fmt8]
        codes = fmt.all_codes()
        values = codes.view(fmt.dtype).astype(np.float16)
        fp8_exact = values[np.isfinite(values)].view(np.uint16)
        # random fp16 values with their low mantissa bits set are never FP8 at t = 15
        wide = rng.integers(0x0400, 0x7800, 4 * block).astype(np.uint16) | 0x0001
        wide |= rng.integers(0, 2, wide.size).astype(np.uint16) << 15
        wide = wide[~encode_tags(wide, fmt, T_MAX)]
        narrow = fp8_exact[rng.integers(0, fp8_exact.size, 4 * block)]
        n = min(wide.size, narrow.size)
        alternating = np.empty(2 * n, dtype=np.uint16)
        alternating[0::2], alternating[1::2] = narrow[:n], wide[:n]
        specials = np.array([0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0xFFFF,
                             0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF], dtype=np.uint16)
        tensors += [
            Tensor(wide[:3 * block + 1], T_MAX, fmt8, "all fp16"),
            Tensor(narrow[:2 * block], int(rng.integers(0, T_MAX + 1)), fmt8, "all fp8"),
            Tensor(alternating[:2 * block + 3], T_MAX, fmt8, "alternating fp8/fp16"),
            Tensor(np.resize(specials, 2 * block + 5), int(rng.integers(0, T_MAX + 1)), fmt8,
                   "nan/inf/subnormal/zero"),
        ]
        for n in sorted({1, 2, block - 1, block, block + 1, 2 * block - 1}):
            tensors.append(Tensor(mixed_bits(rng, FP16, n).astype(np.uint16),
                                  int(rng.integers(0, T_MAX + 1)), fmt8, f"length {n}"))
    return tensors


def fp16_tensors(rng, n: int, *, block: int, fmt8s=("e4m3", "e5m2")) -> list[Tensor]:
    """At least ``n`` fp16 elements in tensors: for every format and ``t``, the threshold edges
    and a share of the rounding edges; the stream patterns; then random tensors."""
    tensors = []
    for fmt8 in fmt8s:
        edges = encoder_edges(fmt8)
        for t, chunk in enumerate(np.array_split(rng.permutation(edges), T_MAX + 1)):
            values = np.concatenate([threshold_edges(fmt8, t), chunk])
            tensors.append(Tensor(rng.permutation(values), t, fmt8, f"edges of t={t}"))
    tensors += _pattern_tensors(rng, block, fmt8s)
    total = sum(x.values.size for x in tensors)
    while total < n:
        length = int(rng.integers(1, 4 * block))
        fmt8 = fmt8s[int(rng.integers(0, len(fmt8s)))]
        tensors.append(Tensor(mixed_bits(rng, FP16, length).astype(np.uint16),
                              int(rng.integers(0, T_MAX + 1)), fmt8, "random"))
        total += length
    return tensors


def fp32_tensors(rng, n: int, *, block: int, fmt8s=("e4m3", "e5m2")) -> list[Tensor]:
    """FP32 tensors for the store path: the fp16 tensors widened exactly, then FP32 values
    that the fp16 rounding changes (edge cases, overflow to infinity, underflow, NaN payloads,
    random), at least ``n`` elements in all."""
    tensors = [Tensor(widen(x.values), x.t, x.fmt8, x.label)
               for x in fp16_tensors(rng, n // 2, block=block, fmt8s=fmt8s)]
    wide = fp32_vectors(rng, max(n - sum(x.values.size for x in tensors), 4 * block))
    start = 0
    while start < wide.size:
        length = int(rng.integers(1, 4 * block))
        fmt8 = fmt8s[int(rng.integers(0, len(fmt8s)))]
        tensors.append(Tensor(wide[start:start + length].astype(np.uint32),
                              int(rng.integers(0, T_MAX + 1)), fmt8, "random fp32"))
        start += length
    return tensors
