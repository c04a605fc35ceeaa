"""Zero detect and the golden *skipping* GEMM: the semantics every zero-skipping engine matches.

Zero detect
-----------
An operand element is *zero* when it decodes to ``+0`` or ``-0`` (the magnitude bits of its
format are all zero; a NaN is never zero). :func:`zero_bitmap` gives that bit for every element
of a stored operand (single format or per-element tags, like :func:`sim.gemm.decode_operands`);
:func:`tile_zero_counts` counts zeros per tile; :func:`lane_bitmaps` cuts an operand *as read*
(``M x K`` for A, ``N x K`` for B read by column) into bands of ``lanes`` rows and gives, per
band, the ``lanes x K`` non-zero bitmap and the per-step "any lane non-zero" bit: what the
loader writes next to the scratchpads and the sequencer consumes (:mod:`sim.skip_model`).

Skipping semantics (:func:`gemm_skip`)
--------------------------------------
``C[m, n] = acc`` where ``acc`` starts at ``+0`` (or ``C_in[m, n]``) and, for ``k`` ascending::

    if (skip_a and A[m, k] is +-0) or (skip_b and B[k, n] is +-0):
        pass                                  # skipped: the accumulator is not touched
    else:
        acc = round_fp32(acc + A[m, k] * B[k, n])

and, where ``out_mask[m, n]`` is 0, ``C[m, n] = +0`` (``0x00000000``) whatever ``C_in`` holds:
nothing is computed for it. NaN results are the canonical fp32 NaN.

Against the dense :func:`sim.gemm.gemm` (``skip_a = skip_b = False``, no mask, which is
:func:`gemm_skip` bit for bit) a skipped product can only differ in two ways:

* ``acc = -0`` meeting a skipped product ``+0``: dense gives ``-0 + +0 = +0``, skipping keeps
  ``-0``. The accumulator can only be ``-0`` if it *starts* there (``C_in = -0``): from ``+0``,
  adding exact non-zero products never gives ``-0`` (an exact cancellation is ``+0`` in round
  to nearest), and adding ``+-0`` to ``+0`` stays ``+0``;
* a zero times an infinity or a NaN: dense gives NaN, skipping leaves the accumulator alone.

Everywhere else (in particular: no ``-0`` accumulator start and no infinity or NaN operand
meeting a zero) the two agree bit for bit, because adding ``+-0`` to any other accumulator
value returns it unchanged. The tests (``tb/test_golden_sparsity.py``) check both statements.

A hardware engine meets these semantics whatever its schedule if every PE gates its
accumulator update with "both operands non-zero" (a zero flag travels with each operand) and
the result path writes ``+0`` where the output mask is 0: which steps a sequencer skips then
changes cycles, never bits.

Pure numpy; no Amaranth here.
"""

from __future__ import annotations

import math

import numpy as np

from .formats import FP32
from .gemm import decode_operands

__all__ = ["zero_bitmap", "tile_zero_counts", "lane_bitmaps", "combine_masks", "check_mask",
           "nonzero_macs", "gemm_skip"]

# Products held at once by the chunked accumulation (bounds memory, not results).
_CHUNK_ELEMENTS = 1 << 20


def _positive_int(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{field} must be an integer >= 1, not {value!r}")
    return int(value)


def _bool(value, field: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{field} must be a bool, not {value!r}")
    return bool(value)


def zero_bitmap(bits, fmt="fp16", *, field: str = "operand") -> np.ndarray:
    """``True`` where a stored operand element is ``+0`` or ``-0``.

    Parameters
    ----------
    bits : integer array
        Bit patterns, as for :func:`sim.gemm.decode_operands`.
    fmt : str, FPFormat or integer array
        One operand format, or per-element tags of the shape of ``bits``.
    field : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray of bool, the shape of ``bits``
    """
    return decode_operands(bits, fmt, field=field) == 0


def _bool_matrix(array, field: str, ndim: int = 2) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.bool_:
        raise ValueError(f"{field} must be a boolean array, not {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{field} must be {ndim}-D, not of shape {array.shape}")
    return array


def tile_zero_counts(zeros, *, tile_rows: int, tile_cols: int) -> np.ndarray:
    """Zeros per ``tile_rows x tile_cols`` tile of a 2-D zero bitmap.

    Edge tiles are partial; their missing elements are not counted (they are not part of the
    operand). Returns an integer array of shape ``(ceil(rows / tile_rows), ceil(cols /
    tile_cols))``.
    """
    zeros = _bool_matrix(zeros, "zeros")
    tile_rows = _positive_int(tile_rows, "tile_rows")
    tile_cols = _positive_int(tile_cols, "tile_cols")
    rows, cols = zeros.shape
    bands, groups = math.ceil(rows / tile_rows), math.ceil(cols / tile_cols)
    padded = np.zeros((bands * tile_rows, groups * tile_cols), dtype=np.int64)
    padded[:rows, :cols] = zeros
    return padded.reshape(bands, tile_rows, groups, tile_cols).sum(axis=(1, 3))


def lane_bitmaps(nonzero, *, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per band of ``lanes`` rows, the non-zero bitmap and its per-step OR.

    ``nonzero`` is ``(rows, K)``: A as read (``M x K``, row ``m`` is the stream of array row
    ``m mod R``), or B read by column (``N x K``, i.e. ``B^T``). Rows past the end of the last
    band read as zero, as the scratchpad returns zero for lanes outside the memory.

    Returns
    -------
    bands : bool array, shape ``(ceil(rows / lanes), lanes, K)``
    any_lane : bool array, shape ``(ceil(rows / lanes), K)``
        Some lane of the band is non-zero at step ``k``: the step cannot be skipped on this
        operand's account.
    """
    nonzero = _bool_matrix(nonzero, "nonzero")
    lanes = _positive_int(lanes, "lanes")
    rows, steps = nonzero.shape
    count = math.ceil(rows / lanes)
    bands = np.zeros((count * lanes, steps), dtype=np.bool_)
    bands[:rows] = nonzero
    bands = bands.reshape(count, lanes, steps)
    return bands, bands.any(axis=1)


def check_mask(mask, shape: tuple[int, ...], field: str = "out_mask") -> np.ndarray:
    """A keep mask as a boolean array of exactly ``shape``.

    Accepts booleans, or integers that are all 0 or 1; anything else (another shape, other
    values, floats) raises ValueError naming ``field``.
    """
    array = np.asarray(mask)
    if array.dtype != np.bool_:
        if array.dtype.kind not in "ui":
            raise ValueError(f"{field} must be a boolean or 0/1 integer array, not {array.dtype}")
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{field} must hold only 0 and 1 (or booleans)")
        array = array.astype(np.bool_)
    if array.shape != tuple(shape):
        raise ValueError(f"{field} must have shape {tuple(shape)}, not {array.shape}")
    return array


def combine_masks(*masks, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """AND of keep masks (ReLU ``x > 0``, dropout kept) that must all have the same shape.

    ``shape``, if given, is the shape they must have (else the first mask's). Raises
    ValueError on an empty list or a mask of another shape (naming its position).
    """
    if not masks:
        raise ValueError("combine_masks needs at least one mask")
    if shape is None:
        shape = np.shape(masks[0])
    keep = None
    for index, mask in enumerate(masks):
        mask = check_mask(mask, shape, field=f"masks[{index}]")
        keep = mask.copy() if keep is None else keep & mask
    return keep


def nonzero_macs(a_nonzero, b_nonzero, out_keep=None) -> int:
    """Multiply-accumulates an ideal skipping engine performs: products with both operands
    non-zero whose output is kept. ``a_nonzero`` (M, K), ``b_nonzero`` (K, N) as read,
    ``out_keep`` (M, N) or None (all kept)."""
    a_nonzero = _bool_matrix(a_nonzero, "a_nonzero")
    b_nonzero = _bool_matrix(b_nonzero, "b_nonzero")
    if a_nonzero.shape[1] != b_nonzero.shape[0]:
        raise ValueError(f"inner dimensions differ: a_nonzero is {a_nonzero.shape}, "
                         f"b_nonzero is {b_nonzero.shape}")
    # float64 counts are exact below 2**53
    counts = a_nonzero.astype(np.float64) @ b_nonzero.astype(np.float64)
    if out_keep is not None:
        counts = counts[check_mask(out_keep, counts.shape, field="out_keep")]
    return int(round(float(counts.sum())))


def _fp32_start(c_bits, shape) -> np.ndarray:
    acc = np.zeros(shape, dtype=np.float32)
    if c_bits is None:
        return acc
    c = np.asarray(c_bits)
    if c.dtype.kind not in "ui":
        raise ValueError(f"c_bits must be an integer array of bit patterns, not {c.dtype}")
    if c.size and (c.min() < 0 or c.max() >= 1 << 32):
        raise ValueError("c_bits out of range for fp32 (32 bits)")
    try:
        acc[...] = np.broadcast_to(c.astype(np.uint32), shape).view(np.float32)
    except ValueError:
        raise ValueError(f"c_bits of shape {c.shape} does not broadcast to (M, N) = "
                         f"{shape}") from None
    return acc


def gemm_skip(a_bits, b_bits, *, a_fmt="fp16", b_fmt="fp16", c_bits=None,
              transpose_a: bool = False, transpose_b: bool = False, skip_a: bool = True,
              skip_b: bool = True, out_mask=None) -> np.ndarray:
    """``C = A . B`` (plus ``C_in``) with zero skipping and output masking (module docstring).

    Parameters
    ----------
    a_bits, b_bits, a_fmt, b_fmt, c_bits, transpose_a, transpose_b
        As for :func:`sim.gemm.gemm` (bit patterns as stored, formats or per-element tags,
        fp32 start broadcastable to (M, N), operands stored transposed).
    skip_a, skip_b : bool
        Skip the products whose A (resp. B) operand is ``+0`` or ``-0``.
    out_mask : bool or 0/1 integer array of shape (M, N), optional
        Keep mask of the outputs; where it is 0 the output is ``+0`` and nothing is computed.

    Returns
    -------
    numpy.ndarray of uint32, shape (M, N)
        fp32 bit patterns, NaNs canonical.
    """
    for field, flag in (("transpose_a", transpose_a), ("transpose_b", transpose_b),
                        ("skip_a", skip_a), ("skip_b", skip_b)):
        _bool(flag, field)
    a = decode_operands(a_bits, a_fmt, field="a")
    b = decode_operands(b_bits, b_fmt, field="b")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a_bits and b_bits must be 2-D, not of shapes {a.shape} and {b.shape}")
    a_km = np.ascontiguousarray(a if transpose_a else a.T)     # (K, M)
    b_kn = np.ascontiguousarray(b.T if transpose_b else b)     # (K, N)
    (k_a, m), (k_b, n) = a_km.shape, b_kn.shape
    if k_a != k_b:
        raise ValueError(f"inner dimensions differ: A is {m}x{k_a} and B is {k_b}x{n} "
                         f"(transpose_a={transpose_a}, transpose_b={transpose_b})")
    if min(m, n, k_a) < 1:
        raise ValueError(f"M, N and K must be at least 1, not M={m}, N={n}, K={k_a}")
    keep = None if out_mask is None else check_mask(out_mask, (m, n))
    acc = _fp32_start(c_bits, (m, n))
    a_live = a_km != 0 if skip_a else np.ones(a_km.shape, dtype=np.bool_)
    b_live = b_kn != 0 if skip_b else np.ones(b_kn.shape, dtype=np.bool_)
    chunk = max(1, _CHUNK_ELEMENTS // (m * n))
    products = np.empty((min(chunk, k_a), m, n), dtype=np.float32)
    live = np.empty((min(chunk, k_a), m, n), dtype=np.bool_)
    with np.errstate(all="ignore"):
        for k0 in range(0, k_a, chunk):
            k1 = min(k_a, k0 + chunk)
            block, gate = products[:k1 - k0], live[:k1 - k0]
            # products of decoded fp16/FP8 values are exact in float32: forming them ahead
            # changes nothing; each live one is then added with one rounding, k ascending
            np.multiply(a_km[k0:k1, :, None], b_kn[k0:k1, None, :], out=block)
            np.logical_and(a_live[k0:k1, :, None], b_live[k0:k1, None, :], out=gate)
            if keep is not None:
                gate &= keep
            for product, step_gate in zip(block, gate):
                np.add(acc, product, out=acc, where=step_gate)
    bits = acc.view(np.uint32).copy()
    bits[np.isnan(acc)] = FP32.nan_bits
    if keep is not None:
        bits[~keep] = 0
    return bits
