"""Stimulus shared by the benches: edge cases first, then random values."""

from __future__ import annotations

import numpy as np

from sim.formats import FP32, FPFormat, OPERAND_FORMATS

__all__ = ["edge_bits", "moderate_bits", "operand_vectors", "fp32_vectors", "mixed_bits",
           "describe_pair"]


def edge_bits(fmt: FPFormat) -> np.ndarray:
    """Interesting bit patterns of ``fmt`` (both signs): zeros, subnormal boundaries,
    smallest/largest normals, largest finite, infinities, NaNs, one and its neighbours."""
    m = fmt.man_bits
    one = fmt.bias << m
    patterns = [
        0, 1, 2, 3,                                   # zero, smallest subnormals
        (1 << m) - 1, 1 << m, (1 << m) + 1,           # largest subnormal, smallest normals
        one - 1, one, one + 1,                        # around 1.0
        fmt.max_finite_bits - 1, fmt.max_finite_bits, fmt.nan_bits,
        (fmt.exp_max_field << m) | ((1 << m) - 1),    # all-ones magnitude
    ]
    if fmt.has_inf:
        patterns += [fmt.inf_bits, fmt.inf_bits + 1]  # infinity, signalling NaN
    patterns = np.array(patterns, dtype=np.int64)
    return np.concatenate([patterns, patterns | fmt.sign_mask]).astype(np.uint64)


def moderate_bits(rng, fmt: FPFormat, n: int, *, span_fraction: int = 4) -> np.ndarray:
    """Random finite patterns of ``fmt`` whose exponent lies within ``+-(exponent range /
    span_fraction)`` of the bias: magnitudes near one, so that sums and products round and
    cancel rather than overflow. Draws exponent, mantissa, sign, in that order."""
    span = max(1, fmt.exp_max_field // span_fraction)
    exp = rng.integers(fmt.bias - span, fmt.bias + span + 1, n).astype(np.uint64)
    man = rng.integers(0, 1 << fmt.man_bits, n, dtype=np.uint64)
    sign = rng.integers(0, 2, n, dtype=np.uint64)
    return (sign << np.uint64(fmt.width - 1)) | (exp << np.uint64(fmt.man_bits)) | man


def mixed_bits(rng, fmt: FPFormat, n: int) -> np.ndarray:
    """Random patterns of ``fmt``: uniform bits, edge cases, zeros and numbers of moderate
    magnitude (so that sums and products interact rather than saturate)."""
    kind = rng.integers(0, 8, n)
    uniform = rng.integers(0, 1 << fmt.width, n, dtype=np.uint64)
    edges = edge_bits(fmt)
    edge = edges[rng.integers(0, len(edges), n)]
    moderate = moderate_bits(rng, fmt, n)
    sign = moderate >> np.uint64(fmt.width - 1)
    # subnormal and just-above-subnormal magnitudes
    tiny = (sign << np.uint64(fmt.width - 1)) | rng.integers(0, 2 << fmt.man_bits, n, dtype=np.uint64)
    out = np.where(kind < 3, moderate, uniform)
    out = np.where(kind == 5, edge, out)
    out = np.where(kind == 6, tiny, out)
    out = np.where(kind == 7, sign << np.uint64(fmt.width - 1), out)  # signed zeros
    return out.astype(np.uint64)


def operand_vectors(rng, n: int, formats=None) -> tuple[np.ndarray, np.ndarray]:
    """``(tags, bits)`` for ``n``+ operands: every code of each FP8 format and the fp16 edge
    cases first, then random operands of random formats. ``formats`` restricts the formats
    (names); tags are :class:`~hw.fp.operand.OperandFormat` values (fp16=0, e4m3=1, e5m2=2)."""
    names = list(formats or OPERAND_FORMATS)
    tag_of = {"fp16": 0, "e4m3": 1, "e5m2": 2}
    tags, bits = [], []
    for name in names:
        fmt = OPERAND_FORMATS[name]
        codes = fmt.all_codes().astype(np.uint64) if fmt.width == 8 else edge_bits(fmt)
        tags.append(np.full(len(codes), tag_of[name]))
        bits.append(codes)
    count = max(0, n - sum(len(b) for b in bits))
    choice = rng.integers(0, len(names), count)
    random_bits = np.zeros(count, dtype=np.uint64)
    for index, name in enumerate(names):
        sel = choice == index
        random_bits[sel] = mixed_bits(rng, OPERAND_FORMATS[name], int(sel.sum()))
    tags.append(np.array([tag_of[names[c]] for c in choice], dtype=np.int64))
    bits.append(random_bits)
    return np.concatenate(tags).astype(np.uint64), np.concatenate(bits).astype(np.uint64)


def fp32_vectors(rng, n: int) -> np.ndarray:
    """``n`` fp32 patterns: edge cases first, then :func:`mixed_bits`."""
    edges = edge_bits(FP32)
    return np.concatenate([edges, mixed_bits(rng, FP32, max(0, n - len(edges)))])


def describe_pair(a, b):
    """``index -> text`` naming two FP32 operands (hex and value), for failure messages."""
    def show(bits):
        value = float(np.array([bits], dtype=np.uint32).view(np.float32)[0])
        return f"0x{int(bits):08x} ({value!r})"
    return lambda k: f"a={show(a[k])} b={show(b[k])}"
