"""The schedulers and lower bounds of ``sim.schedule`` against brute force.

* Tile grouping: on small random instances (dense, empty, all-zero filters, one non-zero,
  random densities) the optimum is found by enumerating every partition of the filters into
  tiles of at most ``C`` (costs counted with Python sets, independently of the library); every
  lower bound (analytic and LP) is at most the optimum, every scheduler's grouping is valid and
  at least the optimum, ``exact`` finds it.
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


def brute_force(nonzero, cols, floor):
    supports = [{k for k in range(nonzero.shape[0]) if nonzero[k, f]}
                for f in range(nonzero.shape[1])]
    best, argbest = None, None
    for grouping in partitions(list(range(nonzero.shape[1])), cols):
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
