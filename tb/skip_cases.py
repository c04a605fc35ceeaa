"""Stimulus and bookkeeping of the zero-skipping benches (``ArrayConfig(skip_zeros=True)``).

A skipping array or engine must match :func:`sim.sparsity.gemm_skip`; it differs from the dense
:func:`sim.gemm.gemm` only where a ``-0`` start meets a skipped ``+0`` product and where a zero
meets an infinity or a NaN. The benches draw operands at several sparsities (:data:`MODES`:
0 %, 50 %, 90 %, 100 % random zeros, whole lines of zeros, zero blocks, zeros next to
infinities and NaNs) and ``-0`` starts, and a :class:`SkipTally` records, result by result,
whether those differing cases were really hit and that every result without them is the
dense one too.

Zeros are written in each element's own format: ``+-0`` in fp16, ``+-0`` in the low byte of an
FP8 word whose high byte keeps its garbage (the zero detect must ignore it).
"""

from __future__ import annotations

import numpy as np

from sim.formats import FP32, OPERAND_FORMATS
from sim.gemm import OPERAND_TAGS, decode_operands, gemm
from sim.sparsity import gemm_skip

__all__ = ["MODES", "sparsify", "negative_zero_starts", "golden", "SkipTally"]

#: Zero patterns of an operand matrix: name -> share of zeros (None: structured).
MODES = {"dense": 0.0, "half": 0.5, "sparse": 0.9, "empty": 1.0, "lines": None,
         "blocks": None, "specials": None}
#: In ``"specials"``: share of infinities / NaNs, and of zeros.
SPECIAL_SHARE, SPECIAL_ZERO_SHARE = 0.15, 0.4
NEGATIVE_ZERO = 0x80000000


def _zero_words(rng, tags, words, where):
    """``words`` with the elements at ``where`` replaced by a random signed zero of their tag
    (the high byte of an FP8 word is kept)."""
    words = words.copy()
    for tag, name in OPERAND_TAGS.items():
        fmt = OPERAND_FORMATS[name]
        sel = where & (tags == tag)
        count = int(sel.sum())
        signs = (rng.random(count) < 0.5).astype(np.uint64) * np.uint64(fmt.sign_mask)
        keep = np.uint64(0xFF00) if fmt.width == 8 else np.uint64(0)
        words[sel] = (words[sel] & keep) | signs
    return words


def _special_words(rng, tags, words, where):
    """``words`` with the elements at ``where`` replaced by infinities or NaNs of their tag
    (quiet, signalling and negative NaNs; E4M3 has no infinity)."""
    words = words.copy()
    for tag, name in OPERAND_TAGS.items():
        fmt = OPERAND_FORMATS[name]
        choices = [fmt.nan_bits, fmt.nan_bits | fmt.sign_mask,
                   (fmt.exp_max_field << fmt.man_bits) | 1]          # any NaN encoding
        if fmt.has_inf:
            choices += [fmt.inf_bits, fmt.inf_bits | fmt.sign_mask]
        sel = where & (tags == tag)
        count = int(sel.sum())
        picked = np.asarray(choices, dtype=np.uint64)[rng.integers(0, len(choices), count)]
        keep = np.uint64(0xFF00) if fmt.width == 8 else np.uint64(0)
        words[sel] = (words[sel] & keep) | picked
    return words


def sparsify(rng, tags, words, mode, block=(4, 4)):
    """Operand words ``words`` (2-D, tags ``tags``) with zeros placed as ``mode`` says.

    ``"dense"`` / ``"half"`` / ``"sparse"`` / ``"empty"``: that share of random elements;
    ``"lines"``: whole rows or whole columns (one axis at random, each line with probability
    1/2); ``"blocks"``: ``block``-sized blocks (array tiles), each with probability 1/2;
    ``"specials"``: infinities / NaNs and zeros sprinkled together.
    """
    tags = np.asarray(tags, dtype=np.uint64)
    words = np.asarray(words, dtype=np.uint64)
    shape = words.shape
    share = MODES[mode]
    if share is not None:
        return _zero_words(rng, tags, words, rng.random(shape) < share)
    if mode == "lines":
        axis = int(rng.integers(0, 2))
        lines = rng.random(shape[axis]) < 0.5
        where = lines[:, None] if axis == 0 else lines[None, :]
        return _zero_words(rng, tags, words, np.broadcast_to(where, shape))
    if mode == "blocks":
        rows, cols = block
        picked = rng.random((-(-shape[0] // rows), -(-shape[1] // cols))) < 0.5
        where = np.kron(picked, np.ones((rows, cols), dtype=bool))[:shape[0], :shape[1]]
        return _zero_words(rng, tags, words, where.astype(bool))
    kind = rng.random(shape)
    words = _special_words(rng, tags, words, kind < SPECIAL_SHARE)
    return _zero_words(rng, tags, words, kind > 1 - SPECIAL_ZERO_SHARE)


#: fp32 NaNs other than the canonical one: a skipped product must still canonicalize them.
ODD_NANS = (0x7F800001, 0xFFC00000, 0x7FFFFFFF, 0xFF800123)


def negative_zero_starts(rng, c_bits, share=0.3, nan_share=0.05):
    """fp32 start values with a ``share`` of them replaced by ``-0`` and a ``nan_share`` by
    non-canonical NaNs."""
    c_bits = np.asarray(c_bits, dtype=np.uint64)
    kind = rng.random(c_bits.shape)
    nans = np.asarray(ODD_NANS, dtype=np.uint64)[rng.integers(0, len(ODD_NANS), c_bits.shape)]
    c_bits = np.where(kind < share, np.uint64(NEGATIVE_ZERO), c_bits)
    return np.where(kind > 1 - nan_share, nans, c_bits)


def golden(skip_zeros, a_bits, b_bits, **kwargs):
    """:func:`sim.sparsity.gemm_skip` for a skipping design, :func:`sim.gemm.gemm` otherwise."""
    return (gemm_skip if skip_zeros else gemm)(a_bits, b_bits, **kwargs)


def _interactions(a_bits, a_tags, b_bits, b_tags, transpose_a, transpose_b):
    """(M, N) booleans: some product of the output has a zero and an inf / NaN operand; every
    product of the output has a zero operand."""
    a = decode_operands(a_bits, a_tags, field="a")
    b = decode_operands(b_bits, b_tags, field="b")
    a = a.T if transpose_a else a               # (M, K)
    b = b.T if transpose_b else b               # (K, N)
    count = lambda x, y: x.astype(np.int64) @ y.astype(np.int64)
    meets = (count(a == 0, ~np.isfinite(b)) + count(~np.isfinite(a), b == 0)) > 0
    return meets, count(a != 0, b != 0) == 0


class SkipTally:
    """What the skipping results of a bench covered (see the module docstring)."""

    def __init__(self):
        self.results = 0
        self.negative_zero_kept = 0     # skip -0 where dense +0: a -0 start kept
        self.special_skipped = 0        # dense NaN, skip not: 0 * inf / NaN skipped
        self.odd_nan_start_skipped = 0  # non-canonical NaN start, every product skipped
        self.plain = 0                  # results with neither interaction (dense == skip)

    def observe(self, a_bits, a_tags, b_bits, b_tags, c_bits=None, *, transpose_a=False,
                transpose_b=False, result=None):
        """Check a skipping result (``gemm_skip`` of the arguments, or ``result``) against the
        dense GEMM; returns the skipping result."""
        kwargs = dict(a_fmt=a_tags, b_fmt=b_tags, c_bits=c_bits, transpose_a=transpose_a,
                      transpose_b=transpose_b)
        skip = gemm_skip(a_bits, b_bits, **kwargs) if result is None else result
        dense = gemm(a_bits, b_bits, **kwargs)
        meets, all_skipped = _interactions(a_bits, a_tags, b_bits, b_tags, transpose_a,
                                           transpose_b)
        starts = odd_nans = np.zeros(skip.shape, dtype=bool)
        if c_bits is not None:
            c = np.broadcast_to(np.asarray(c_bits, dtype=np.uint64), skip.shape)
            starts = c == NEGATIVE_ZERO
            odd_nans = np.isin(c, np.asarray(ODD_NANS, dtype=np.uint64))
        plain = ~meets & ~starts
        if not np.array_equal(skip[plain], dense[plain]):
            index = tuple(int(i) for i in np.argwhere(plain & (skip != dense))[0])
            raise AssertionError(f"gemm_skip 0x{int(skip[index]):08x} and gemm "
                                 f"0x{int(dense[index]):08x} differ at {index} without a -0 "
                                 f"start or a zero meeting inf / NaN")
        self.results += skip.size
        self.plain += int(plain.sum())
        self.negative_zero_kept += int(((skip == NEGATIVE_ZERO) & (dense == 0)).sum())
        self.special_skipped += int(((dense == FP32.nan_bits) & (skip != FP32.nan_bits)).sum())
        self.odd_nan_start_skipped += int((odd_nans & all_skipped).sum())
        return skip

    def check_coverage(self):
        """The bench hit both differing cases, a non-canonical NaN start whose products were
        all skipped (it must come out canonical) and plain results, each at least once."""
        assert (self.negative_zero_kept and self.special_skipped and self.odd_nan_start_skipped
                and self.plain), f"skip cases not covered: {self}"

    def __repr__(self):
        return (f"SkipTally(results={self.results}, plain={self.plain}, "
                f"negative_zero_kept={self.negative_zero_kept}, "
                f"special_skipped={self.special_skipped}, "
                f"odd_nan_start_skipped={self.odd_nan_start_skipped})")
