"""Golden GEMM of the accelerator: the reference the RTL engine must match bit for bit.

``C[m, n] = acc`` where ``acc`` starts at ``+0.0`` (or at ``C_in[m, n]`` when accumulating) and,
for ``k = 0, 1, ..., K-1`` in ascending order::

    acc = round_fp32(acc + A[m, k] * B[k, n])

Operands are bit patterns of the PE operand formats (fp16, e4m3, e5m2), decoded exactly; their
products are exact in fp32, so each step rounds once (:func:`sim.numerics.fp32_mac`). Every NaN
result is the canonical fp32 NaN ``0x7FC00000``.

This is the *dense* semantics: every product is added, zero or not. A hardware skip of a zero
product is equivalent except in two corner cases, which the skip-aware model has to define:
``acc = -0`` plus a ``+0`` product (dense gives ``+0``) and ``0 * inf`` (dense gives NaN).
"""

from __future__ import annotations

import functools

import numpy as np

from .formats import FP32, OPERAND_FORMATS, FPFormat, format_by_name
from .numerics import to_float32

__all__ = ["OPERAND_TAGS", "TAG_OF", "gemm", "decode_operands"]

#: Format tags of per-element operand formats (as :class:`hw.fp.operand.OperandFormat`).
OPERAND_TAGS: dict[int, str] = {0: "fp16", 1: "e4m3", 2: "e5m2"}
#: Format name -> operand tag (the inverse of :data:`OPERAND_TAGS`).
TAG_OF: dict[str, int] = {name: tag for tag, name in OPERAND_TAGS.items()}

# Products held at once by the chunked accumulation (bounds memory, not results).
_CHUNK_ELEMENTS = 1 << 20


@functools.cache
def _decode_table(name: str) -> np.ndarray:
    """float32 value of every code of an operand format, decoded by :mod:`sim.numerics`."""
    fmt = OPERAND_FORMATS[name]
    table = to_float32(fmt, fmt.all_codes())
    table.setflags(write=False)
    return table


@functools.cache
def _tagged_table() -> np.ndarray:
    """``table[tag, bits]`` for 16-bit operand words; FP8 formats read the low byte only,
    like :func:`hw.fp.operand.to_fp16`."""
    codes = np.arange(1 << 16)
    rows = []
    for tag in sorted(OPERAND_TAGS):
        fmt = OPERAND_FORMATS[OPERAND_TAGS[tag]]
        rows.append(_decode_table(fmt.name)[codes & ((1 << fmt.width) - 1)])
    table = np.stack(rows)
    table.setflags(write=False)
    return table


def _integer_array(values, field: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "ui":
        raise ValueError(f"{field} must be an integer array of bit patterns, not {array.dtype}")
    return array


def decode_operands(bits, fmt, *, field: str = "operand") -> np.ndarray:
    """Exact float32 values of operand bit patterns.

    Parameters
    ----------
    bits : array of unsigned integers
        Bit patterns. With a single FP8 format they must fit in 8 bits; with per-element tags
        they are 16-bit operand words and FP8 elements use the low byte (the high byte is
        ignored, as in the operand decoder).
    fmt : str, FPFormat or integer array
        One operand format (``"fp16"``, ``"e4m3"``, ``"e5m2"``) for every element, or an array of
        tags of the same shape as ``bits`` (see :data:`OPERAND_TAGS`).
    field : str
        Name used in error messages.
    """
    bits = _integer_array(bits, f"{field}_bits")
    if isinstance(fmt, (str, FPFormat)):
        fmt = format_by_name(fmt, OPERAND_FORMATS, field=f"{field}_fmt")
        if bits.size and (bits.min() < 0 or bits.max() >= (1 << fmt.width)):
            raise ValueError(f"{field}_bits out of range for {fmt.name} ({fmt.width} bits)")
        return _decode_table(fmt.name)[bits]
    tags = np.asarray(fmt)
    if tags.dtype.kind not in "ui":
        raise ValueError(f"{field}_fmt must be one of {sorted(OPERAND_FORMATS)} or an integer "
                         f"array of tags {OPERAND_TAGS}, not {fmt!r}")
    if tags.shape != bits.shape:
        raise ValueError(f"{field}_fmt tags must have the shape of {field}_bits {bits.shape}, "
                         f"not {tags.shape}")
    if tags.size and (tags.min() < 0 or tags.max() >= len(OPERAND_TAGS)):
        raise ValueError(f"{field}_fmt tags must be in {sorted(OPERAND_TAGS)} ({OPERAND_TAGS})")
    if bits.size and (bits.min() < 0 or bits.max() >= 1 << 16):
        raise ValueError(f"{field}_bits out of range for 16-bit operand words")
    return _tagged_table()[tags, bits]


def gemm(a_bits, b_bits, *, a_fmt="fp16", b_fmt="fp16", c_bits=None,
         transpose_a: bool = False, transpose_b: bool = False) -> np.ndarray:
    """``C = A . B`` (plus ``C_in``) with the accelerator's exact numerics.

    Parameters
    ----------
    a_bits : integer array, shape (M, K), or (K, M) with ``transpose_a``
        Bit patterns of A as stored.
    b_bits : integer array, shape (K, N), or (N, K) with ``transpose_b``
        Bit patterns of B as stored.
    a_fmt, b_fmt : str, FPFormat or integer array
        Operand format of every element, or per-element tags (0 fp16, 1 e4m3, 2 e5m2) of the
        shape of the stored operand; see :func:`decode_operands`.
    c_bits : integer array broadcastable to (M, N), optional
        fp32 bit patterns the accumulators start from (the accumulate flag); ``+0.0`` if omitted.
    transpose_a, transpose_b : bool
        The operand is stored transposed; the engine reads it in the other order (no copy).

    Returns
    -------
    numpy.ndarray of uint32, shape (M, N)
        fp32 bit patterns of the result, NaNs canonical.
    """
    for field, flag in (("transpose_a", transpose_a), ("transpose_b", transpose_b)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{field} must be a bool, not {flag!r}")
    a = decode_operands(a_bits, a_fmt, field="a")
    b = decode_operands(b_bits, b_fmt, field="b")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a_bits and b_bits must be 2-D, not of shapes {a.shape} and {b.shape}")
    a_km = a if transpose_a else a.T           # (K, M): row k is column k of A
    b_kn = b.T if transpose_b else b           # (K, N): row k is row k of B
    (k_a, m), (k_b, n) = a_km.shape, b_kn.shape
    if k_a != k_b:
        raise ValueError(f"inner dimensions differ: A is {m}x{k_a} and B is {k_b}x{n} "
                         f"(transpose_a={transpose_a}, transpose_b={transpose_b})")
    if min(m, n, k_a) < 1:
        raise ValueError(f"M, N and K must be at least 1, not M={m}, N={n}, K={k_a}")
    acc = np.zeros((m, n), dtype=np.float32)
    if c_bits is not None:
        c = _integer_array(c_bits, "c_bits")
        if c.size and (c.min() < 0 or c.max() >= 1 << 32):
            raise ValueError("c_bits out of range for fp32 (32 bits)")
        try:
            acc[...] = np.broadcast_to(c.astype(np.uint32), (m, n)).view(np.float32)
        except ValueError:
            raise ValueError(f"c_bits of shape {c.shape} does not broadcast to (M, N) = "
                             f"({m}, {n})") from None
    return _accumulate(acc, np.ascontiguousarray(a_km), np.ascontiguousarray(b_kn))


def _accumulate(acc: np.ndarray, a_km: np.ndarray, b_kn: np.ndarray) -> np.ndarray:
    """The k loop, vectorised over (M, N); the products of a chunk of k are formed at once.

    Products of decoded fp16/FP8 values are exact in float32, so forming them ahead changes
    nothing; each ``acc + product`` is then one float32 addition, rounded once, in k order,
    exactly :func:`sim.numerics.fp32_mac`. NaN is absorbing (a NaN operand or intermediate
    stays NaN whatever is added later), so replacing NaNs by the canonical pattern once at the
    end gives the same bits as canonicalising after every step.
    """
    k_total, m = a_km.shape
    n = b_kn.shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // (m * n))
    products = np.empty((min(chunk, k_total), m, n), dtype=np.float32)
    with np.errstate(all="ignore"):
        for k0 in range(0, k_total, chunk):
            k1 = min(k_total, k0 + chunk)
            block = products[:k1 - k0]
            np.multiply(a_km[k0:k1, :, None], b_kn[k0:k1, None, :], out=block)
            for product in block:
                np.add(acc, product, out=acc)
    bits = acc.view(np.uint32).copy()
    bits[np.isnan(acc)] = FP32.nan_bits
    return bits
