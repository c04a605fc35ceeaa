"""Golden model of the accelerator's ``EPILOGUE`` operations: elementwise functions of FP32 bit
patterns, bit for bit what ``hw/accel/epilogue.py`` computes (``docs/numerics.md``, "Epilogue").

Every function takes and returns arrays of FP32 bit patterns (``uint32``). The arithmetic is
:func:`sim.numerics.fp32_multiply` and :func:`sim.numerics.fp32_add`: IEEE binary32, each
operation rounded to nearest even, subnormals kept, the canonical NaN (``0x7FC00000``) for every
NaN result. Rules shared by the ops:

* *Kept* (ReLU's rule): ``x > 0``, i.e. sign 0, not zero, not NaN. ``+inf`` and positive
  subnormals are kept; ``+-0``, negative values, ``-inf`` and every NaN are not.
* A value that is not kept by a mask becomes ``+0`` (whatever it was, NaN included).
* A value passed through unchanged keeps its bits, except that a NaN becomes the canonical NaN.

Ops (``d`` the destination element, ``s`` the source element, ``k`` a dropout keep bit):

========================  ==========================================================
``add(d, s)``             ``d + s``
``relu(d)``               ``d`` if kept(d), canonical NaN if ``d`` is NaN, else ``+0``;
                          the keep bits are kept(d)
``relu_backward(d, s)``   ``d`` (NaN canonical) if kept(s), else ``+0``
``dropout(d, k, scale)``  ``d * scale`` if ``k``, else ``+0``
``scale(d, scale)``       ``d * scale``
``cast(d, fmt, sat)``     ``convert(convert(d, fp32 -> fmt, sat), fmt -> fp32)``;
                          ``fmt = fp32``: ``d`` (NaN canonical), ``sat`` ignored
``sgd(w, dw, lr, wd)``    ``t = wd * w; t = dw + t; t = lr * t; w - t``, four roundings
                          in that order
========================  ==========================================================

``relu`` propagates a NaN (as ``numpy.maximum(x, 0)`` does) so that a diverged training shows,
but a NaN is never kept: its gradient through ``relu_backward`` is ``+0``.

Pure numpy: no Amaranth here.
"""

from __future__ import annotations

import numpy as np

from .accel_spec import EpilogueOp
from .formats import FP32, format_by_name
from .lfsr import dropout_keep_mask
from .numerics import canonicalize, convert, fp32_add, fp32_multiply

__all__ = ["kept", "epilogue_add", "relu", "relu_backward", "dropout", "scale", "cast", "sgd",
           "dropout_keep", "apply"]

_ONE = np.uint32(0x3F800000)


def _fp32(bits) -> np.ndarray:
    array = np.asarray(bits)
    if array.dtype.kind not in "ui":
        raise TypeError(f"FP32 bit patterns must be an integer array, not {array.dtype}")
    if array.size and (array.min() < 0 or int(array.max()) >= 1 << 32):
        raise ValueError("FP32 bit patterns must be in 0..2**32 - 1")
    return array.astype(np.uint32)


def kept(bits) -> np.ndarray:
    """ReLU's keep rule ``x > 0`` of FP32 bit patterns: sign 0, not zero, not NaN."""
    x = _fp32(bits)
    return (x >> np.uint32(31) == 0) & (x != 0) & (x <= np.uint32(FP32.inf_bits))


def epilogue_add(dst, src) -> np.ndarray:
    """``dst + src``."""
    return fp32_add(_fp32(dst), _fp32(src))


def relu(dst) -> tuple[np.ndarray, np.ndarray]:
    """``(relu(dst), keep)``: kept values unchanged, NaN canonical, everything else ``+0``."""
    x = _fp32(dst)
    keep = kept(x)
    out = np.where(keep, x, np.uint32(0))
    out = np.where((x & np.uint32(0x7FFFFFFF)) > np.uint32(FP32.inf_bits), FP32.nan_bits, out)
    return out.astype(np.uint32), keep


def relu_backward(dst, forward) -> np.ndarray:
    """``dst`` (NaN canonical) where ``forward`` is kept by ReLU's rule, else ``+0``."""
    return np.where(kept(forward), canonicalize(FP32, _fp32(dst)), np.uint32(0)).astype(np.uint32)


def scale(dst, factor) -> np.ndarray:
    """``dst * factor`` (``factor`` one FP32 pattern or an array)."""
    return fp32_multiply(_fp32(dst), _fp32(factor))


def dropout(dst, keep, factor) -> np.ndarray:
    """``dst * factor`` where ``keep``, else ``+0``."""
    keep = np.asarray(keep, dtype=bool)
    return np.where(keep, scale(dst, factor), np.uint32(0)).astype(np.uint32)


def cast(dst, fmt, saturate: bool = False) -> np.ndarray:
    """``dst`` rounded to ``fmt`` (one rounding, :func:`sim.numerics.convert` with
    ``saturate``) and widened back to FP32 (exact). ``fp32``: NaN made canonical, nothing else
    changes (``saturate`` is ignored, as by the engine's ``fp32`` read and ``STORE``)."""
    fmt = format_by_name(fmt, field="fmt")
    if fmt == FP32:
        return canonicalize(FP32, _fp32(dst))
    narrow = convert(FP32, fmt, _fp32(dst), saturate=bool(saturate))
    return convert(fmt, FP32, narrow).astype(np.uint32)


def sgd(w, dw, lr, wd) -> np.ndarray:
    """``w - lr * (dw + wd * w)`` as ``t = wd * w; t = dw + t; t = lr * t; w - t``, each an
    FP32 operation rounded to nearest even."""
    w = _fp32(w)
    t = fp32_multiply(_fp32(wd), w)
    t = fp32_add(_fp32(dw), t)
    t = fp32_multiply(_fp32(lr), t)
    return fp32_add(w, t ^ np.uint32(FP32.sign_mask))     # w - t is w + (-t) in IEEE 754


def dropout_keep(rows: int, cols: int, seed: int, threshold: int) -> np.ndarray:
    """The DROPOUT keep mask of a ``rows x cols`` region: :func:`sim.lfsr.dropout_keep_mask`
    of the shape ``(rows, cols)`` with 8 bits per element (element ``(r, c)`` of the region is
    element ``(r, c)`` of the mask), extended to the thresholds the hardware's generator
    defines: 0 keeps everything, ``2 ** 8`` drops everything."""
    if threshold == 0:
        return np.ones((rows, cols), dtype=bool)
    if threshold == 1 << 8:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 < seed < 1 << 32:
            raise ValueError(f"seed must be an integer in 1..{(1 << 32) - 1}, not {seed!r}")
        return np.zeros((rows, cols), dtype=bool)
    return dropout_keep_mask((rows, cols), seed=seed, threshold=threshold, bits=8)


def apply(op, dst, src=None, *, imm0: int = 0, imm1: int = 0, fmt: str = "fp32",
          saturate: bool = False, keep=None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(new dst, keep bits or None)`` of one epilogue op on arrays of the region's shape.

    ``src`` for the ops that read one (already broadcast to ``dst``'s shape), ``imm0`` /
    ``imm1`` FP32 patterns, ``fmt`` / ``saturate`` for ``CAST``, ``keep`` the dropout mask for
    ``DROPOUT``. The keep bits are returned for ``RELU`` only.
    """
    op = EpilogueOp(op)
    imm0, imm1 = np.uint32(imm0), np.uint32(imm1)
    if op == EpilogueOp.ADD:
        return epilogue_add(dst, src), None
    if op == EpilogueOp.RELU:
        return relu(dst)
    if op == EpilogueOp.RELU_BACKWARD:
        return relu_backward(dst, src), None
    if op == EpilogueOp.DROPOUT:
        return dropout(dst, keep, imm0), None
    if op == EpilogueOp.SCALE:
        return scale(dst, imm0), None
    if op == EpilogueOp.CAST:
        return cast(dst, fmt, saturate), None
    return sgd(dst, src, imm0, imm1), None
