"""The scheduled weight format (``sim.step_lists``) against the whole GEMM with zero skipping.

A GEMM run tile by tile from its step lists (only the steps where some column of the tile has
a non-zero weight, results written to their own columns) equals ``sim.sparsity.gemm_skip`` of
the whole GEMM bit for bit: operands with infinities, NaNs, subnormals and signed zeros,
``C_in`` starting at ``-0``, all-zero filters, tiles with no step, one non-zero weight, dense
B, every operand format and every scheduler's grouping. The format's size is counted.

Plain pytest: no simulator.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from sim.formats import OPERAND_FORMATS
from sim.schedule import TILE_SCHEDULERS, TileProblem, schedule
from sim.sparsity import gemm_skip
from sim.step_lists import gemm_step_lists, step_lists
from tb.vectors import mixed_bits

SEED = int(os.environ.get("SPARTA_SEED", "13"))


def pruned_b(rng, fmt, k, n, density, pattern):
    b = mixed_bits(rng, fmt, k * n).reshape(k, n)
    keep = rng.random((k, n)) < density
    if pattern == "dense":
        keep[:] = True
    elif pattern == "one":
        keep[:] = False
        keep[rng.integers(k), rng.integers(n)] = True
    elif pattern == "empty_filters":
        keep[:, rng.choice(n, size=n // 2, replace=False)] = False
    signs = rng.random((k, n)) < 0.5            # pruned: +0 or -0
    zero = np.where(signs, fmt.sign_mask, 0).astype(b.dtype)
    return np.where(keep, b, zero)


@pytest.mark.parametrize("a_fmt,b_fmt", [("fp16", "fp16"), ("e4m3", "e5m2"), ("e5m2", "fp16")])
@pytest.mark.parametrize("pattern", ["random", "dense", "one", "empty_filters"])
@pytest.mark.parametrize("method", sorted(TILE_SCHEDULERS))
def test_step_lists_are_the_whole_gemm(a_fmt, b_fmt, pattern, method):
    rng = np.random.default_rng([SEED, len(pattern), len(method), len(a_fmt + b_fmt)])
    print(f"test_step_lists: seed {SEED} (SPARTA_SEED)")
    fa, fb = OPERAND_FORMATS[a_fmt], OPERAND_FORMATS[b_fmt]
    m, k, n, cols = 5, 23, 11, 4
    a = mixed_bits(rng, fa, m * k).reshape(m, k)
    b = pruned_b(rng, fb, k, n, 0.2, pattern)
    c = rng.integers(0, 2**32, size=(m, n), dtype=np.uint64).astype(np.uint32)
    c[0, :] = 0x80000000                        # -0 starts
    problem = TileProblem(np.asarray(b & ~np.uint16(fb.sign_mask) != 0), cols=cols, floor=8)
    groups = schedule(problem, method, time_limit=2).groups
    lists = step_lists(b, groups, cols=cols, b_fmt=b_fmt)
    for c_bits in (None, c):
        got = gemm_step_lists(a, lists, a_fmt=a_fmt, b_fmt=b_fmt, c_bits=c_bits)
        want = gemm_skip(a, b, a_fmt=a_fmt, b_fmt=b_fmt, c_bits=c_bits)
        bad = np.argwhere(got != want)
        assert bad.size == 0, (
            f"{len(bad)} outputs differ, first at {tuple(bad[0])}: got {got[tuple(bad[0])]:#x},"
            f" want {want[tuple(bad[0])]:#x}; A row {[hex(v) for v in a[bad[0][0]]]}, B column "
            f"{[hex(v) for v in b[:, bad[0][1]]]}, groups {groups}")
    lengths = [length for _, length, _ in lists.tiles]
    assert sum(lengths) == len(lists.steps) == lists.b.shape[0]
    for first, length, columns in lists.tiles:
        steps = lists.steps[first:first + length]
        assert list(steps) == sorted(set(steps)), "a step list must ascend (the sum's order)"
        assert np.array_equal(lists.b[first:first + length, :len(columns)],
                              b[np.ix_(steps, list(columns))])


def test_storage_is_counted():
    b = np.zeros((64, 16), dtype=np.uint16)
    b[::4, :8] = 0x3C00                         # tile 0: 16 steps; tile 1: none
    lists = step_lists(b, [tuple(range(8)), tuple(range(8, 16))], cols=8)
    bits = lists.storage_bits(16)
    assert bits["b"] == 16 * 8 * 16 and bits["steps"] == 16 * 6
    assert bits["dense_b"] == 64 * 16 * 16
    assert [length for _, length, _ in lists.tiles] == [16, 0]


def test_bad_input():
    b = np.zeros((4, 3), dtype=np.uint16)
    with pytest.raises(ValueError, match="groups\\[0\\] holds 3"):
        step_lists(b, [(0, 1, 2)], cols=2)
    with pytest.raises(ValueError, match="exactly once"):
        step_lists(b, [(0, 1), (1,)], cols=2)
    with pytest.raises(ValueError, match="K x N"):
        step_lists(np.zeros(4, dtype=np.uint16), [(0,)], cols=2)
    lists = step_lists(b, [(0, 1), (2,)], cols=2)
    with pytest.raises(ValueError, match="a_bits must be M x 4"):
        gemm_step_lists(np.zeros((2, 3), dtype=np.uint16), lists)
