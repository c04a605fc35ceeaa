"""The schedulers and lower bounds of ``sim.schedule`` against brute force.

* Tile grouping: on small random instances (dense, empty, all-zero filters, one non-zero,
  random densities) the optimum is found by enumerating every partition of the filters into
  tiles of at most ``C`` (costs counted with Python sets, independently of the library); every
  lower bound (analytic and LP) is at most the optimum, every scheduler's grouping is valid and
  at least the optimum, ``exact`` finds it.
* The same under the accumulator-bank constraint (``TileProblem.banks``: a tile's filters
  pairwise distinct modulo ``banks``), against brute force over the partitions that respect it
  (checked with sets, not with ``check_groups``); on larger random patterns (``N`` below ``C``,
  not a multiple of ``banks``, all-zero filters) every scheduler's grouping respects it, the
  bounds stay below every cost and ``exact`` is never worse than the heuristics.
* ``grouped_cycles`` with every union full equals the dense engine's ``command_cycles``.
* Units (``P || C_max``): exact equals the brute-force optimum, LPT stays within Graham's
  ``4/3 - 1/(3P)``, largest differencing gives the textbook answer on its classic example.
* Bad input raises ValueError naming the field.

Plain pytest: no simulator, no Amaranth.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from sim.config import ArrayConfig, EngineConfig
from sim.engine_model import EngineCommand, command_cycles
from sim.schedule import (TILE_SCHEDULERS, UNIT_SCHEDULERS, TileProblem, UnitProblem,
                          check_groups, grouped_cycles, lp_bound, makespan, max_groups,
                          schedule, tile_bounds, tile_cost, unit_bound)

SEED = int(os.environ.get("SPARTA_SEED", "11"))


def partitions(items, cols):
    """Every partition of ``items`` into blocks of at most ``cols``."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for size in range(0, min(cols - 1, len(rest)) + 1):
        for mates in itertools.combinations(rest, size):
            left = [i for i in rest if i not in mates]
            for tail in partitions(left, cols):
                yield [(first,) + mates] + tail


def banked(grouping, banks) -> bool:
    """Whether every group's filters are pairwise distinct modulo ``banks``."""
    return all(len({f % banks for f in group}) == len(group) for group in grouping)


def brute_force(nonzero, cols, floor, banks=None):
    supports = [{k for k in range(nonzero.shape[0]) if nonzero[k, f]}
                for f in range(nonzero.shape[1])]
    best, argbest = None, None
    for grouping in partitions(list(range(nonzero.shape[1])), cols):
        if banks is not None and not banked(grouping, banks):
            continue
        cost = sum(max(len(set().union(*(supports[f] for f in g))), floor) for g in grouping)
        if best is None or cost < best:
            best, argbest = cost, grouping
    return best, argbest


def instances():
    rng = np.random.default_rng(SEED)
    print(f"test_schedule: seed {SEED} (SPARTA_SEED)")
    cases = [np.ones((5, 4), bool), np.zeros((5, 4), bool)]
    one = np.zeros((6, 5), bool)
    one[3, 2] = True
    cases.append(one)
    for _ in range(14):
        k, n = int(rng.integers(2, 9)), int(rng.integers(2, 8))
        nonzero = rng.random((k, n)) < rng.choice([0.2, 0.4, 0.7])
        nonzero[:, rng.integers(n)] = False                 # an all-zero filter
        cases.append(nonzero)
    return cases


CASES = instances()


@pytest.mark.parametrize("cols,floor", [(2, 1), (3, 3), (3, 1)])
@pytest.mark.parametrize("index", range(len(CASES)))
def test_tile_schedulers_against_brute_force(index, cols, floor):
    nonzero = CASES[index]
    problem = TileProblem(nonzero, cols=cols, floor=floor)
    optimum, grouping = brute_force(nonzero, cols, floor)
    hex_rows = [hex(int("".join("1" if b else "0" for b in row) or "0", 2)) for row in nonzero]
    context = f"nonzero rows (bit n = filter n) {hex_rows}, cols {cols}, floor {floor}"
    assert tile_cost(problem, grouping) == optimum, context
    assert len(grouping) <= max_groups(problem) or any(
        tile_cost(problem, g) == optimum for g in partitions(list(range(problem.filters)), cols)
        if len(g) <= max_groups(problem)), context
    for name, value in tile_bounds(problem).items():
        assert value <= optimum, f"bound {name} = {value} > optimum {optimum}: {context}"
    assert lp_bound(problem, time_limit=5)["bound"] <= optimum, context
    for method in TILE_SCHEDULERS:
        result = schedule(problem, method, time_limit=5)
        check_groups(problem, result.groups)
        assert result.cost == tile_cost(problem, result.groups)
        assert optimum <= result.cost, f"{method} below the optimum: {context}"
        assert result.bound <= optimum, context
    exact = schedule(problem, "exact", time_limit=10)
    assert exact.cost == optimum and exact.optimal, context


@pytest.mark.parametrize("cols,floor,banks", [(2, 1, 2), (2, 3, 2), (3, 1, 4), (2, 1, 4)])
@pytest.mark.parametrize("index", range(len(CASES)))
def test_banked_tile_schedulers_against_brute_force(index, cols, floor, banks):
    nonzero = CASES[index]
    problem = TileProblem(nonzero, cols=cols, floor=floor, banks=banks)
    optimum, grouping = brute_force(nonzero, cols, floor, banks)
    hex_rows = [hex(int("".join("1" if b else "0" for b in row) or "0", 2)) for row in nonzero]
    context = f"nonzero rows (bit n = filter n) {hex_rows}, cols {cols}, floor {floor}, " \
              f"banks {banks}"
    assert tile_cost(problem, grouping) == optimum, context
    fewest = min(len(g) for g in partitions(list(range(problem.filters)), cols)
                 if banked(g, banks) and tile_cost(problem, g) == optimum)
    assert problem.min_groups <= fewest <= max_groups(problem), context
    for name, value in tile_bounds(problem).items():
        assert value <= optimum, f"bound {name} = {value} > optimum {optimum}: {context}"
    assert lp_bound(problem, time_limit=5)["bound"] <= optimum, context
    for method in TILE_SCHEDULERS:
        result = schedule(problem, method, time_limit=5)
        assert banked(result.groups, banks), f"{method} breaks the banks: {context}"
        assert sorted(f for g in result.groups for f in g) == list(range(problem.filters))
        assert all(1 <= len(g) <= cols for g in result.groups)
        assert result.cost == tile_cost(problem, result.groups)
        assert optimum <= result.cost, f"{method} below the banked optimum: {context}"
        assert result.bound <= optimum, context
    exact = schedule(problem, "exact", time_limit=10)
    assert exact.cost == optimum and exact.optimal, context


def random_patterns():
    """Larger random patterns: ``(nonzero, cols)`` with ``N`` below ``C``, not a multiple of
    the 8 banks, all-zero filters, one filter's support repeated every 8 columns (so that the
    unconstrained schedulers like to put same-bank filters together)."""
    rng = np.random.default_rng([SEED, 8])
    cases = []
    for n, cols in ((3, 8), (13, 8), (20, 6), (37, 8), (16, 8), (29, 5)):
        k = int(rng.integers(10, 60))
        nonzero = rng.random((k, n)) < rng.choice([0.1, 0.3, 0.6])
        nonzero[:, rng.choice(n, size=max(1, n // 8), replace=False)] = False
        if n > 8:
            nonzero[:, 1::8] = nonzero[:, [1]]
        cases.append((nonzero, cols))
    return cases


PATTERNS = random_patterns()


@pytest.mark.parametrize("index", range(len(PATTERNS)))
def test_banked_schedulers_on_random_patterns(index):
    nonzero, cols = PATTERNS[index]
    problem = TileProblem(nonzero, cols=cols, floor=16, banks=8)
    free = TileProblem(nonzero, cols=cols, floor=16)
    context = f"pattern {index}: {nonzero.shape}, cols {cols}, seed {SEED}"
    bound = max(tile_bounds(problem).values())
    assert bound >= max(tile_bounds(free).values())
    results = {method: schedule(problem, method, time_limit=2) for method in TILE_SCHEDULERS}
    for method, result in results.items():
        assert banked(result.groups, 8), f"{method}: {context}"
        check_groups(problem, result.groups)
        assert bound <= result.cost == tile_cost(problem, result.groups), f"{method}: {context}"
        assert result.bound <= result.cost
    assert results["similarity_swap"].cost <= results["similarity"].cost
    assert results["exact"].cost <= min(r.cost for m, r in results.items() if m != "exact")
    assert results["exact"].proven <= results["exact"].cost
    assert lp_bound(problem, time_limit=2)["bound"] <= results["exact"].cost, context


def test_the_unconstrained_schedulers_break_the_banks_on_these_patterns():
    """The banked tests above are not vacuous: unconstrained, the schedulers group filters of
    one bank on these patterns."""
    broken = [method for nonzero, cols in PATTERNS if nonzero.shape[1] > 8
              for method in ("sorted", "similarity", "similarity_swap")
              if not banked(schedule(TileProblem(nonzero, cols=cols, floor=16), method,
                                     time_limit=1).groups, 8)]
    assert len(broken) >= 3, broken


def test_the_banks_cost_where_same_bank_filters_match():
    """Filters 0 and 2 share a support, as do 1 and 3, disjoint from it: unconstrained the
    optimum pairs them (3 + 3 slots); two banks forbid that, and every allowed pairing costs
    6 + 6. The same-bank filters non-zero at a step need one tile each: the banked cover bound
    proves 12, the unconstrained one 6."""
    nonzero = np.zeros((6, 4), bool)
    nonzero[0:3, [0, 2]] = True
    nonzero[3:6, [1, 3]] = True
    free = TileProblem(nonzero, cols=2, floor=1)
    problem = TileProblem(nonzero, cols=2, floor=1, banks=2)
    assert schedule(free, "exact").cost == 6
    assert sorted(map(sorted, schedule(free, "exact").groups)) == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match=r"groups\[0\]: columns 0 and 2 share accumulator "
                                         r"bank 0 \(banks = 2\)"):
        check_groups(problem, [(0, 2), (1, 3)])
    assert tile_bounds(free)["cover"] == 6 and tile_bounds(problem)["cover"] == 12
    for method in TILE_SCHEDULERS:
        result = schedule(problem, method, time_limit=2)
        assert result.cost == 12 and result.optimal, method
        assert banked(result.groups, 2), method


def test_the_banked_optimum_may_need_more_than_the_fewest_tiles():
    """Filters 0 and 4 share bank 0 of 4 and have large disjoint supports, 1, 2 and 3 a small
    common one: the optimum {0}, {4}, {1, 2, 3} takes 3 tiles where ceil(5/3) = 2 would do
    (every 2-tile grouping puts a small filter beside 0 or 4 and costs 2 more), so
    ``max_groups`` must allow more than ``min_groups`` and exact must search them."""
    nonzero = np.zeros((12, 5), bool)
    nonzero[0:5, 0] = True
    nonzero[5:10, 4] = True
    nonzero[10:12, 1:4] = True
    problem = TileProblem(nonzero, cols=3, floor=1, banks=4)
    optimum, _ = brute_force(nonzero, 3, 1, 4)
    assert optimum == 12 and problem.min_groups == 2 and max_groups(problem) >= 3
    exact = schedule(problem, "exact", time_limit=5)
    assert exact.cost == 12 and sorted(map(sorted, exact.groups)) == [[0], [1, 2, 3], [4]]


def test_banked_problem_of_a_config():
    nonzero = np.ones((5, 20), bool)
    for cols, banks in ((8, 8), (6, 8), (4, 4)):
        config = EngineConfig(array=ArrayConfig(rows=cols, cols=cols))
        assert TileProblem.of(config, nonzero).banks is None
        assert TileProblem.of(config, nonzero, banked=True).banks == banks == config.acc_banks
    with pytest.raises(ValueError, match="banked must be a bool"):
        TileProblem.of(config, nonzero, banked=1)


def test_lp_bound_is_tight_where_the_optimum_is_known():
    """On a 16-filter instance (two tiles) the LP bound reaches the exact optimum."""
    rng = np.random.default_rng(SEED)
    nonzero = rng.random((40, 16)) < 0.3
    problem = TileProblem(nonzero, cols=8, floor=16)
    exact = schedule(problem, "exact", time_limit=30)
    lp = lp_bound(problem, time_limit=30, start=[exact.groups])
    assert lp["bound"] <= exact.cost
    assert lp["bound"] >= 0.97 * exact.cost, (lp, exact.cost)


@pytest.mark.parametrize("rows,cols,m,n,k,accumulate", [
    (8, 8, 100, 64, 1024, False), (8, 8, 7, 10, 9, True), (4, 4, 33, 17, 5, False),
    (2, 3, 5, 7, 50, True)])
def test_dense_grouping_is_the_dense_engine(rows, cols, m, n, k, accumulate):
    config = EngineConfig(array=ArrayConfig(rows=rows, cols=cols), spad_width=4096,
                          a_rows=65536, b_rows=65536, acc_width=4096, acc_rows=65536)
    problem = TileProblem.of(config, np.ones((k, n), bool))
    groups = schedule(problem, "natural").groups
    sizes = [k] * len(groups)
    assert grouped_cycles(config, m, accumulate, sizes) == command_cycles(
        config, EngineCommand(m=m, n=n, k=k, accumulate=accumulate))


def brute_makespan(times, units):
    best = None
    for assignment in itertools.product(range(units), repeat=len(times) - 1):
        assignment = (0,) + assignment
        loads = [0] * units
        for t, u in zip(times, assignment):
            loads[u] += t
        best = max(loads) if best is None else min(best, max(loads))
    return best


@pytest.mark.parametrize("trial", range(12))
def test_unit_schedulers_against_brute_force(trial):
    rng = np.random.default_rng([SEED, trial])
    units = int(rng.integers(2, 4))
    times = tuple(int(t) for t in rng.integers(1, 40, size=int(rng.integers(1, 8))))
    problem = UnitProblem(times, units)
    optimum = brute_makespan(times, units)
    assert unit_bound(problem) <= optimum
    for method in UNIT_SCHEDULERS:
        result = schedule(problem, method, time_limit=5)
        assert result.cost == makespan(problem, result.assignment)
        assert result.cost >= optimum, f"{method} below the optimum: times {times}"
    assert schedule(problem, "exact").cost == optimum, f"times {times}, units {units}"
    assert schedule(problem, "lpt").cost <= (4 / 3 - 1 / (3 * units)) * optimum + 1e-9


def test_karmarkar_karp_classic_example():
    """Largest differencing on {8, 7, 6, 5, 4} in two: differences 1, 1, 3, 2: makespan 16,
    where 15 is optimal ({8, 7} and {6, 5, 4})."""
    problem = UnitProblem((8, 7, 6, 5, 4), 2)
    assert schedule(problem, "kk").cost == 16
    assert schedule(problem, "exact").cost == 15


def test_bad_input():
    good = np.ones((3, 4), bool)
    with pytest.raises(ValueError, match="nonzero"):
        TileProblem(np.ones((3, 4)), cols=2, floor=1)
    with pytest.raises(ValueError, match="cols"):
        TileProblem(good, cols=0, floor=1)
    with pytest.raises(ValueError, match="floor"):
        TileProblem(good, cols=2, floor=True)
    problem = TileProblem(good, cols=2, floor=1)
    with pytest.raises(ValueError, match="method must be one of"):
        schedule(problem, "lpt")
    with pytest.raises(ValueError, match="time_limit"):
        schedule(problem, "exact", time_limit=0)
    with pytest.raises(ValueError, match="groups\\[0\\] holds 3"):
        tile_cost(problem, [(0, 1, 2), (3,)])
    with pytest.raises(ValueError, match="exactly once"):
        tile_cost(problem, [(0, 1), (1, 3)])
    for banks in (3, 1, True, 2.0, 6):
        with pytest.raises(ValueError, match=r"banks must be None or a power of two >= cols "
                                             r"\(4\)"):
            TileProblem(good, cols=4, floor=1, banks=banks)
    wide = TileProblem(np.ones((3, 12), bool), cols=4, floor=1, banks=4)
    check_groups(wide, [(0, 1, 2, 3), (4, 9, 6, 11), (8, 5, 10, 7)])    # order inside is free
    with pytest.raises(ValueError, match=r"groups\[1\]: columns 4 and 8 share accumulator "
                                         r"bank 0"):
        tile_cost(wide, [(0, 1, 2, 3), (4, 8, 6, 7), (5, 9, 10, 11)])
    with pytest.raises(ValueError, match="times must hold"):
        UnitProblem((), 2)
    with pytest.raises(ValueError, match="times\\[1\\]"):
        UnitProblem((3, 0), 2)
    with pytest.raises(ValueError, match="units"):
        UnitProblem((3,), 0)
    with pytest.raises(ValueError, match="assignment units"):
        makespan(UnitProblem((3, 4), 2), (0, 2))
    with pytest.raises(ValueError, match="problem must be"):
        schedule("problem", "natural")
    config = EngineConfig(array=ArrayConfig(rows=2, cols=2, dataflow="ws"))
    with pytest.raises(ValueError, match="dataflow"):
        TileProblem.of(config, good)
