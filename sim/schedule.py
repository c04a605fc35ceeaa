"""Scheduling pruned filters onto the systolic array: the problems, their lower bounds, and the
schedulers (one interface, :func:`schedule`).

The problems are written down, with the bounds' proofs, in ``docs/schedule.md``. In short:

Tile grouping (:class:`TileProblem`)
    A GEMM ``C = A . B`` on the output-stationary ``R x C`` array whose B (the weights, ``K x
    N``: filter ``n`` is column ``n``) has exact zeros. The columns of one tile share the A
    stream, so a tile with the filter set ``g`` steps through ``U_g``, the union of its filters'
    non-zero ``k``, and occupies ``max(|U_g|, floor)`` issue slots (``floor`` =
    ``min_tile_slots``, ``2R``: the result shift-out of a tile). Jobs: the ``N`` filters;
    machines: tiles of at most ``C`` columns, as many as wanted; objective: ``sum_g max(|U_g|,
    floor)`` (the same for every row band of ``R`` outputs, so the command's cycles are that sum
    times ``ceil(M/R)`` plus the dense engine's overhead, :func:`grouped_cycles`). Filter
    order is free: each tile's results go back to their filters' own columns.

    With ``banks`` (the hardware's accumulator banks, :attr:`TileProblem.banks`) a tile also
    holds at most one filter of each residue class ``n % banks``: the engine writes a tile's
    ``C`` result lanes to their original columns in one cycle, column ``n`` through bank ``n %
    banks`` of the accumulator memory, so two columns of one tile must not share a bank.

Units (:class:`UnitProblem`)
    Tiles with known lengths spread over ``P`` independent units (engines): ``P || C_max``,
    minimise the largest sum of a unit's lengths.

Every scheduler returns a :class:`Schedule` with its cost, the problem's lower bound and the
solver time; ``exact`` (CP-SAT, OR-Tools) also returns the bound it proved, so its gap is
known even when it stops at its time limit.

Pure Python, numpy and OR-Tools; no Amaranth here.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import numbers
import time
from typing import Callable

import numpy as np

from .config import EngineConfig
from .engine_spec import EngineTiming

__all__ = ["EXACT_MAX_FILTERS", "TileProblem", "UnitProblem", "Schedule", "TILE_SCHEDULERS", "UNIT_SCHEDULERS",
           "schedule", "tile_cost", "tile_bound", "tile_bounds", "makespan", "unit_bound",
           "grouped_cycles", "union_sizes", "check_groups", "check_assignment", "max_groups", "lp_bound"]


def _positive(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{field} must be an integer >= 1, not {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True, eq=False)
class TileProblem:
    """Group the filters (columns of ``nonzero``) into tiles of at most ``cols`` filters.

    Parameters
    ----------
    nonzero : bool array (K, N)
        ``nonzero[k, n]``: weight ``B[k, n]`` is not zero.
    cols : int
        Columns of the array (filters per tile).
    floor : int
        Fewest issue slots a tile occupies (``min_tile_slots``).
    banks : int or None
        ``None``: any ``cols`` filters may share a tile. Otherwise the accumulator memory's
        bank count, a power of two ``>= cols``: the filters of a tile must be pairwise
        distinct modulo ``banks`` (the one-cycle write-back of a tile's lanes to their
        original columns, column ``n`` through bank ``n % banks``).
    """

    nonzero: np.ndarray
    cols: int
    floor: int
    banks: int | None = None

    def __post_init__(self):
        nonzero = np.asarray(self.nonzero)
        if nonzero.dtype != np.bool_ or nonzero.ndim != 2 or 0 in nonzero.shape:
            raise ValueError(f"nonzero must be a non-empty 2-D bool array (K x N), not "
                             f"{nonzero.dtype} {nonzero.shape}")
        object.__setattr__(self, "nonzero", nonzero)
        _positive(self.cols, "cols")
        _positive(self.floor, "floor")
        banks = self.banks
        if banks is not None and (isinstance(banks, bool) or not isinstance(
                banks, numbers.Integral) or banks < self.cols or banks & (banks - 1)):
            raise ValueError(f"banks must be None or a power of two >= cols ({self.cols}), "
                             f"not {banks!r}")

    @classmethod
    def of(cls, config: EngineConfig, nonzero, *, banked: bool = False) -> "TileProblem":
        """The problem on ``config``'s output-stationary array: unconstrained, or with
        ``banked`` the tiles the hardware accepts (``banks = config.acc_banks``)."""
        timing = EngineTiming.of(config)
        if config.array.dataflow != "os":
            raise ValueError(f"config.array.dataflow must be 'os' for tile grouping, not "
                             f"{config.array.dataflow!r}")
        if not isinstance(banked, bool):
            raise ValueError(f"banked must be a bool (True or False), not {banked!r}")
        return cls(nonzero=np.asarray(nonzero), cols=config.array.cols,
                   floor=timing.min_tile_slots, banks=config.acc_banks if banked else None)

    @property
    def filters(self) -> int:
        return self.nonzero.shape[1]

    @property
    def steps(self) -> int:
        return self.nonzero.shape[0]

    @property
    def min_groups(self) -> int:
        """Fewest tiles: ``ceil(N/C)``. Under ``banks`` a tile holds one filter of each residue
        class, so at least ``ceil(N/banks)`` tiles (the largest class), never more than
        ``ceil(N/C)`` since ``banks >= C``: the constraint does not raise it."""
        return -(-self.filters // self.cols)

    def bank_of(self) -> np.ndarray | None:
        """Each filter's residue class ``n % banks`` (``None`` when unconstrained)."""
        return None if self.banks is None else np.arange(self.filters) % self.banks


@dataclasses.dataclass(frozen=True, eq=False)
class UnitProblem:
    """Spread jobs of lengths ``times`` over ``units`` identical units (``P || C_max``)."""

    times: tuple[int, ...]
    units: int

    def __post_init__(self):
        times = tuple(self.times)
        if not times:
            raise ValueError("times must hold at least one job")
        for index, value in enumerate(times):
            _positive(value, f"times[{index}]")
        object.__setattr__(self, "times", tuple(int(t) for t in times))
        _positive(self.units, "units")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A scheduler's answer.

    ``groups`` (tile problems: the filters of each tile, in run order) or ``assignment``
    (unit problems: the unit of each job); ``cost`` its objective; ``bound`` the problem's
    lower bound (:func:`tile_bound` / :func:`unit_bound`, raised to the exact solver's proven
    bound when it ran); ``proven`` the exact solver's own bound (``None`` for heuristics);
    ``optimal`` when ``cost`` equals a proven bound.
    """

    method: str
    cost: int
    bound: int
    solver_time_s: float
    groups: tuple[tuple[int, ...], ...] | None = None
    assignment: tuple[int, ...] | None = None
    proven: int | None = None

    @property
    def optimal(self) -> bool:
        return self.cost == self.bound

    @property
    def ratio_to_bound(self) -> float:
        return self.cost / self.bound

    def permutation(self) -> list[int]:
        """The filters in tile order (tile ``g`` holds the next ``len(groups[g])``)."""
        if self.groups is None:
            raise ValueError("a unit schedule has no filter permutation")
        return [f for group in self.groups for f in group]


# ---------------------------------------------------------------------------- tile problem

def check_groups(problem: TileProblem, groups) -> tuple[tuple[int, ...], ...]:
    """``groups`` as tuples, checked: a partition of the filters into non-empty groups of at
    most ``cols``, under ``banks`` each group's filters pairwise distinct modulo ``banks``
    (ValueError naming what is wrong)."""
    groups = tuple(tuple(int(f) for f in group) for group in groups)
    seen = [f for group in groups for f in group]
    for index, group in enumerate(groups):
        if not 1 <= len(group) <= problem.cols:
            raise ValueError(f"groups[{index}] holds {len(group)} filters: a tile takes 1 to "
                             f"{problem.cols}")
    if sorted(seen) != list(range(problem.filters)):
        raise ValueError(f"groups must hold every filter 0..{problem.filters - 1} exactly once")
    if problem.banks is not None:
        for index, group in enumerate(groups):
            holder = {}
            for f in group:
                other = holder.setdefault(f % problem.banks, f)
                if other != f:
                    raise ValueError(f"groups[{index}]: columns {other} and {f} share "
                                     f"accumulator bank {f % problem.banks} (banks = "
                                     f"{problem.banks}): a tile writes its lanes back in one "
                                     f"cycle, one column per bank")
    return groups


def union_sizes(problem: TileProblem, groups) -> list[int]:
    """``|U_g|`` of each group: the steps its tile runs (groups as given, not checked)."""
    return [int(np.count_nonzero(problem.nonzero[:, list(group)].any(axis=1)))
            for group in groups]


def tile_cost(problem: TileProblem, groups) -> int:
    """``sum_g max(|U_g|, floor)``: issue slots of one row band of the command."""
    groups = check_groups(problem, groups)
    return sum(max(size, problem.floor) for size in union_sizes(problem, groups))


def max_groups(problem: TileProblem) -> int:
    """Most tiles an optimal grouping needs: two tiles holding ``cols`` filters or fewer
    together can merge at no cost (``docs/schedule.md``), so some optimum has at most one tile
    of ``h = cols // 2`` filters or fewer.

    Under ``banks`` two tiles merge only if their residue classes are disjoint as well. In an
    optimum with the fewest tiles the small tiles (``h`` filters or fewer) then pairwise share
    a class; each shares one with a first small tile, whose at most ``h`` classes of at most
    ``m = ceil(N/banks)`` filters each lie in at most ``m - 1`` other tiles: at most ``S = 1 +
    h (m - 1)`` small tiles, the others holding ``h + 1`` filters or more, so at most ``S +
    (N - S) // (h + 1)`` tiles."""
    n, half = problem.filters, problem.cols // 2
    if problem.banks is None:
        most = 1 + n // (half + 1)
    else:
        small = min(n, 1 + half * (-(-n // problem.banks) - 1))
        most = small + (n - small) // (half + 1)
    return max(problem.min_groups, min(n, most))


def tile_bounds(problem: TileProblem) -> dict[str, int]:
    """The lower bounds of the tile objective (``docs/schedule.md`` proves each):

    * ``floor``: ``ceil(N/C)`` tiles of at least ``floor`` slots;
    * ``largest``: the ``i``-th largest tile's union holds at least the ``((i-1)C+1)``-th
      largest filter: ``sum_i max(s_((i-1)C+1), floor)``; under ``banks`` also at least the
      ``i``-th largest filter of any residue class (the ``i`` largest of a class lie in ``i``
      different tiles);
    * ``cover``: step ``k``, non-zero in ``n_k`` filters, is in at least ``ceil(n_k / C)``
      tiles: ``sum_k ceil(n_k / C)``; under ``banks`` in at least as many tiles as the
      filters of one residue class non-zero at ``k``;
    * ``pairs``: inclusion-exclusion cut after the pairs, ``|U_g| >= sum_f s_f - sum_{f<h in
      g} |S_f & S_h|``, and filter ``f`` shares a tile with at most ``C-1`` others:
      ``sum_f s_f - (1/2) sum_f (its C-1 largest overlaps)``;
    * ``shared``: ``|U_g| = sum_{f in g} sum_{k in S_f} 1 / (1 + x_fk)`` with ``x_fk`` the
      tile-mates of ``f`` non-zero at ``k``; ``x_fk <= min(C, n_k) - 1`` and ``sum_k x_fk`` is
      at most ``T_f``, the sum of ``f``'s ``C-1`` largest overlaps; ``1/(1+x)`` is convex, so
      each filter's term is at least its value with ``T_f`` spread evenly under the caps
      (water-filling), :func:`_shared_term`.

    Under ``banks`` every grouping the constraint allows is a grouping of the unconstrained
    problem, so each bound stays a lower bound; ``pairs`` and ``shared`` ignore the
    constraint, ``floor`` gains nothing from it (:attr:`TileProblem.min_groups`).
    """
    nz = problem.nonzero
    cols, groups = problem.cols, problem.min_groups
    support = nz.sum(axis=0)
    ordered = np.sort(support)[::-1]
    tops = [int(ordered[i * cols]) for i in range(groups)]
    per_step = -(-nz.sum(axis=1) // cols)
    if problem.banks is not None:
        banks = problem.bank_of()
        for bank in range(min(problem.banks, problem.filters)):
            members = banks == bank
            in_class = np.sort(support[members])[::-1]
            tops = [max(top, int(in_class[i])) if i < in_class.size else top
                    for i, top in enumerate(tops)]
            per_step = np.maximum(per_step, nz[:, members].sum(axis=1))
    largest = sum(max(top, problem.floor) for top in tops)
    cover = int(np.sum(per_step))
    top = _top_overlaps(problem)
    pairs = int(support.sum()) - int(top.sum()) // 2
    shared = float(_shared_terms(problem, top).sum())
    return {"floor": groups * problem.floor, "largest": largest, "cover": cover,
            "pairs": max(0, pairs), "shared": math.ceil(shared - 1e-9)}


def _top_overlaps(problem: TileProblem) -> np.ndarray:
    """Per filter, the sum of its ``C-1`` largest overlaps ``|S_f & S_h|``."""
    dense = problem.nonzero.astype(np.int64)
    overlap = dense.T @ dense
    np.fill_diagonal(overlap, 0)
    return (-np.sort(-overlap, axis=1)[:, :problem.cols - 1]).sum(axis=1)


def _shared_terms(problem: TileProblem, top: np.ndarray) -> np.ndarray:
    """Per filter, the least its steps can add to a tile's union (the ``shared`` bound)."""
    nz = problem.nonzero
    caps = np.minimum(problem.cols, nz.sum(axis=1)) - 1
    return np.array([_shared_term(caps[nz[:, f]], int(top[f]))
                     for f in range(problem.filters)])


def _shared_term(caps: np.ndarray, budget: int) -> float:
    """``min sum_k 1 / (1 + x_k)`` over ``0 <= x_k <= caps[k]``, ``sum_k x_k <= budget``: the
    budget spread evenly, each ``x_k`` stopping at its cap (the minimiser of a separable
    convex function under a sum constraint)."""
    if caps.size == 0:
        return 0.0
    caps = np.sort(caps.astype(np.float64))
    if caps.sum() <= budget:
        return float(np.sum(1.0 / (1.0 + caps)))
    # level l with sum_k min(caps_k, l) = budget: the first j caps are below it
    n, before = caps.size, 0.0
    for j in range(n):
        level = (budget - before) / (n - j)
        if level <= caps[j]:
            return float(np.sum(1.0 / (1.0 + caps[:j])) + (n - j) / (1.0 + level))
        before += caps[j]
    return float(np.sum(1.0 / (1.0 + caps)))


def tile_bound(problem: TileProblem) -> int:
    """The best of :func:`tile_bounds`."""
    return max(tile_bounds(problem).values())


def _solve(model, time_limit: float):
    """CP-SAT on one worker with a fixed seed, time-limited (a search stopped by its limit
    may end elsewhere on a slower machine): ``(solver, whether a solution was found)``."""
    from ortools.sat.python import cp_model

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    status = solver.solve(model)
    return solver, status in (cp_model.OPTIMAL, cp_model.FEASIBLE)


def _proven(solver) -> int:
    """The solver's proven lower bound of an integer objective."""
    return int(math.ceil(solver.best_objective_bound - 1e-6))


def _greedy_columns(nz: np.ndarray, cols: int, floor: int, prices: np.ndarray,
                    limit: int) -> list[tuple[int, ...]]:
    """Tiles of negative reduced cost ``max(|U|, floor) - sum prices``, grown greedily from
    each filter (the next filter is the one whose price most exceeds the slots it adds)."""
    found = {}
    weights = nz.astype(np.float32)
    for seed in np.argsort(-prices, kind="stable")[:limit]:
        group, union = [int(seed)], nz[:, seed].copy()
        size = int(union.sum())
        value = max(size, floor) - prices[seed]
        best_value, best_size = value, 1
        while len(group) < cols:        # the best next filter even at a loss: keep the best prefix
            growth = (~union).astype(np.float32) @ weights
            gain = prices - (np.maximum(size + growth, floor) - max(size, floor))
            gain[group] = -np.inf
            best = int(np.argmax(gain))
            group.append(best)
            union |= nz[:, best]
            size = int(union.sum())
            value -= gain[best]
            if value < best_value - 1e-9:
                best_value, best_size = value, len(group)
        group, value = _polish(nz, weights, cols, floor, prices, group[:best_size])
        if value < -1e-7:
            found[tuple(sorted(group))] = value
    return sorted(found, key=found.get)


def _polish(nz, weights, cols, floor, prices, group):
    """Local search on one pricing answer: swap a member for an outsider, add an outsider or
    drop a member, best move first, while the reduced cost falls."""
    group = list(group)

    def value_of(members):
        return max(int(np.count_nonzero(nz[:, members].any(axis=1))), floor) - \
            float(prices[members].sum())

    value = value_of(group)
    while True:
        counts = nz[:, group].sum(axis=1)
        best_value, best_group = value, None
        outside = np.ones(nz.shape[1], dtype=bool)
        outside[group] = False
        if len(group) < cols:                       # add h
            size = int(np.count_nonzero(counts))
            added = size + (counts == 0).astype(np.float32) @ weights
            values = np.maximum(added, floor) - (float(prices[group].sum()) + prices)
            values[~outside] = np.inf
            h = int(np.argmin(values))
            if values[h] < best_value - 1e-9:
                best_value, best_group = float(values[h]), group + [h]
        for f in group:
            base = counts - nz[:, f]
            size = int(np.count_nonzero(base))
            rest = float(prices[group].sum() - prices[f])
            if len(group) > 1 and max(size, floor) - rest < best_value - 1e-9:   # drop f
                best_value, best_group = max(size, floor) - rest, [g for g in group if g != f]
            swapped = size + (base == 0).astype(np.float32) @ weights          # f -> h
            values = np.maximum(swapped, floor) - (rest + prices)
            values[~outside] = np.inf
            h = int(np.argmin(values))
            if values[h] < best_value - 1e-9:
                best_value, best_group = float(values[h]), [g for g in group if g != f] + [h]
        if best_group is None:
            return group, value
        group, value = best_group, best_value


def _price_exact(nz: np.ndarray, cols: int, floor: int, prices: np.ndarray,
                 time_limit: float):
    """CP-SAT: the tile of least ``max(|U|, floor) - sum prices`` (prices in integer units).
    Returns ``(tile or None, proven lower bound of that least value)``."""
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    n = nz.shape[1]
    x = [model.new_bool_var(f"x{f}") for f in range(n)]
    model.add(sum(x) <= cols)
    model.add(sum(x) >= 1)
    steps = []
    for k in np.flatnonzero(nz.any(axis=1)):
        y = model.new_bool_var(f"y{k}")
        for f in np.flatnonzero(nz[k]):
            model.add_implication(x[f], y)
        steps.append(y)
    length = model.new_int_var(floor, max(floor, nz.shape[0]), "length")
    model.add(length >= sum(steps))
    model.minimize(length * SCALE - sum(int(p) * v for p, v in zip(prices, x)))
    solver, found = _solve(model, time_limit)
    bound = math.floor(solver.best_objective_bound + 1e-6)
    if found and solver.objective_value < 0:
        return tuple(f for f in range(n) if solver.value(x[f])), bound
    return None, bound


#: Prices of :func:`lp_bound` are multiples of ``1 / SCALE`` slots (integers for CP-SAT).
SCALE = 1000


def lp_bound(problem: TileProblem, *, time_limit: float = 10.0, start=()) -> dict:
    """The configuration-LP (Lagrangian) lower bound of the tile objective, by column
    generation (``docs/schedule.md``).

    The LP covers every filter by fractions of tiles (``sum_T max(|U_T|, floor) l_T``,
    ``sum_{T containing f} l_T >= 1``); its duals are prices ``p_f >= 0``. For *any* prices,
    ``sum_f p_f + G * min(0, r)`` is a lower bound of every grouping into at most ``G =``
    :func:`max_groups` tiles, ``r`` being a lower bound of the least reduced cost
    ``max(|U_T|, floor) - sum_{f in T} p_f`` over tiles (some optimum uses at most ``G``
    tiles). Columns come from ``start`` (groupings), the singletons and a greedy pricing; when
    the greedy finds no column, CP-SAT prices exactly (its proven bound is ``r``). The prices
    are rounded down to multiples of ``1/SCALE`` so that the bound is exact arithmetic.
    Returns ``{"bound", "iterations", "columns", "converged", "estimate"}``; ``estimate`` is
    the restricted LP's value when the greedy pricing last found no column: the LP optimum if
    no column was missed, but not proven (``None`` if that never happened).

    The columns and the pricing ignore ``banks``: under the constraint the LP is a relaxation
    (every allowed tile is among its columns), its bound still a lower bound (with ``G`` the
    constrained :func:`max_groups`), and ``estimate`` that of the unconstrained LP.
    """
    from scipy.optimize import linprog

    nz, cols, floor = problem.nonzero, problem.cols, problem.floor
    n = problem.filters
    deadline = time.perf_counter() + time_limit
    columns = {(f,): None for f in range(n)}
    for grouping in start:
        for group in grouping:
            columns[tuple(sorted(group))] = None
    iterations, best, converged, estimate = 0, 0, False, None
    # a filter adds at least terms[f] slots to any tile: the reduced cost of a tile is at
    # least the sum of its members' (terms - prices), at most C of them (negative ones)
    terms = _shared_terms(problem, _top_overlaps(problem))

    def cost(group):
        return max(int(np.count_nonzero(nz[:, list(group)].any(axis=1))), floor)

    while True:
        iterations += 1
        for group in columns:
            if columns[group] is None:
                columns[group] = cost(group)
        keys = list(columns)
        costs = np.array([columns[g] for g in keys], dtype=np.float64)
        cover = np.zeros((n, len(keys)))
        for j, group in enumerate(keys):
            cover[list(group), j] = 1.0
        result = linprog(costs, A_ub=-cover, b_ub=-np.ones(n), bounds=(0, None),
                         method="highs")
        if result.status != 0:
            raise RuntimeError(f"the covering LP failed: {result.message}")
        prices = np.floor(np.maximum(-result.ineqlin.marginals, 0) * SCALE)
        remaining = deadline - time.perf_counter()
        new = [] if remaining <= 0 else [
            g for g in _greedy_columns(nz, cols, floor, prices / SCALE, n) if g not in columns]
        if not new:
            estimate = float(result.fun)
            tile, least = _price_exact(nz, cols, floor, prices,
                                       max(1.0, min(remaining, time_limit / 10)))
            slack = np.sort(np.minimum(terms * SCALE - prices, 0))[:cols]
            least = max(least, math.floor(float(slack.sum())))
            bound = (int(prices.sum()) + max_groups(problem) * min(0, least)) / SCALE
            best = max(best, math.ceil(bound - 1e-9))
            if tile is None or tile in columns or remaining <= 0:
                converged = tile is None and least >= 0
                break
            new = [tile]
        for group in new:
            columns[group] = None
    return {"bound": best, "iterations": iterations, "columns": len(columns),
            "converged": converged, "estimate": estimate}


def grouped_cycles(config: EngineConfig, m: int, accumulate: bool, union_sizes) -> int:
    """Cycles of a command run as tiles stepping only through their filters' union (the cycle
    model of the scheduled engine): ``ceil(M/R) * sum_g max(|U_g|, floor) + overhead``, the
    dense engine's formula with each tile's own length (equal to
    :func:`sim.engine_model.command_cycles` when every union is the full ``K``; what the RTL
    takes: :func:`sim.engine_model.scheduled_cycles`)."""
    return EngineTiming.of(config).scheduled_cycles(_positive(m, "m"), union_sizes, accumulate)


def _chunks(order, cols: int):
    order = list(order)
    return tuple(tuple(order[i:i + cols]) for i in range(0, len(order), cols))


def _first_fit(problem, order):
    """The filters in ``order``, each into the first tile with a free column and, under
    ``banks``, no filter of its residue class (a new tile if none): ``C`` per tile in order
    when unconstrained."""
    groups, classes = [], []
    for f in order:
        bank = None if problem.banks is None else f % problem.banks
        for group, taken in zip(groups, classes):
            if len(group) < problem.cols and bank not in taken:
                break
        else:
            group, taken = [], set()
            groups.append(group)
            classes.append(taken)
        group.append(f)
        if bank is not None:
            taken.add(bank)
    return tuple(tuple(group) for group in groups)


def _natural(problem, **_):
    """``C`` consecutive filters per tile: pairwise distinct modulo any ``banks >= C``."""
    return _chunks(range(problem.filters), problem.cols)


def _sorted(problem, **_):
    support = problem.nonzero.sum(axis=0)
    order = sorted(range(problem.filters), key=lambda f: (-int(support[f]), f))
    return _first_fit(problem, order)


def _similarity(problem, **_):
    """Greedy: open a tile with the remaining filter of largest support, then add the filter
    that grows its union least (ties: the larger filter, then the lower index); under
    ``banks`` only filters of a residue class the tile does not hold yet (the tile closes
    early when every remaining filter clashes)."""
    nz = problem.nonzero
    support = nz.sum(axis=0)
    banks = problem.bank_of()
    left = sorted(range(problem.filters), key=lambda f: (-int(support[f]), f))
    groups = []
    while left:
        seed = left.pop(0)
        group, union = [seed], nz[:, seed].copy()
        while left and len(group) < problem.cols:
            candidates = np.array(left)
            allowed = range(len(left)) if banks is None else \
                np.flatnonzero(~np.isin(banks[candidates], banks[group])).tolist()
            if not allowed:
                break
            growth = (nz[:, candidates] & ~union[:, None]).sum(axis=0)
            best = min(allowed,
                       key=lambda i: (int(growth[i]), -int(support[left[i]]), left[i]))
            chosen = left.pop(best)
            group.append(chosen)
            union |= nz[:, chosen]
        groups.append(tuple(group))
    return tuple(groups)


def _improve(problem, groups, deadline: float):
    """Local search on a grouping: swap two filters of different tiles, or move one into a tile
    with a free column, while the cost falls (first improvement, until none or ``deadline``);
    under ``banks`` only moves and swaps that keep every tile's residue classes distinct."""
    nz = problem.nonzero.astype(np.int32)
    floor, cols = problem.floor, problem.cols
    groups = [list(g) for g in groups]
    counts = [nz[:, g].sum(axis=1) for g in groups]
    banks = problem.bank_of()

    def cost_of(count):
        return max(int(np.count_nonzero(count)), floor)

    def fits(f, group, leaving=None):
        """Whether ``f`` can join ``group`` once ``leaving`` has left it."""
        return banks is None or all(banks[g] != banks[f] for g in group if g != leaving)

    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                base = cost_of(counts[a]) + cost_of(counts[b])
                for f in list(groups[a]):
                    ca = counts[a] - nz[:, f]
                    if len(groups[b]) < cols and fits(f, groups[b]):     # move f to b
                        cb = counts[b] + nz[:, f]
                        if len(groups[a]) > 1 and cost_of(ca) + cost_of(cb) < base:
                            groups[a].remove(f)
                            groups[b].append(f)
                            counts[a], counts[b] = ca, cb
                            improved = True
                            break
                    for h in groups[b]:                 # swap f and h
                        if not (fits(f, groups[b], h) and fits(h, groups[a], f)):
                            continue
                        cb = counts[b] - nz[:, h] + nz[:, f]
                        if cost_of(ca + nz[:, h]) + cost_of(cb) < base:
                            groups[a][groups[a].index(f)] = h
                            groups[b][groups[b].index(h)] = f
                            counts[a], counts[b] = ca + nz[:, h], cb
                            improved = True
                            break
                    if improved:
                        break
                if improved or time.perf_counter() >= deadline:
                    break
            if improved or time.perf_counter() >= deadline:
                break
    return tuple(tuple(g) for g in groups if g)


def _reassign_banks(problem, groups, deadline: float):
    """Under ``banks``, one residue class at a time: take its filters out of their tiles and
    put each back where it costs least, into a tile with a free column (one of the class per
    tile) or alone in a new tile. With the other filters fixed, a tile's added slots depend on
    its own new filter only, so a linear assignment places the class at its best; repeated
    while the cost falls (until ``deadline``). Full tiles leave the pairwise swaps of
    :func:`_improve` only filters of one class to exchange: this moves a whole class at
    once."""
    from scipy.optimize import linear_sum_assignment

    nz, floor, banks, n = problem.nonzero, problem.floor, problem.banks, problem.filters
    groups = [list(g) for g in groups]
    cost = sum(max(size, floor) for size in union_sizes(problem, groups))
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        for bank in range(min(banks, n)):
            members = list(range(bank, n, banks))
            rest = [[f for f in g if f % banks != bank] for g in groups]
            unions = np.array([nz[:, g].any(axis=1) for g in rest])
            sizes = unions.sum(axis=1)
            base = np.where([len(g) > 0 for g in rest], np.maximum(sizes, floor), 0)
            support = nz[:, members]
            grown = sizes[:, None] + (~unions).astype(np.int32) @ support.astype(np.int32)
            added = (np.maximum(grown, floor) - base[:, None]).astype(np.float64)
            added[[len(g) >= problem.cols for g in rest]] = np.inf
            alone = np.repeat(np.maximum(support.sum(axis=0), floor)[:, None], len(members),
                              axis=1)
            table = np.concatenate([added.T, alone], axis=1)
            rows, places = linear_sum_assignment(table)
            total = int(base.sum() + table[rows, places].sum())
            if total < cost:
                tiles = len(rest)
                for row, place in zip(rows, places):
                    if place < tiles:
                        rest[place].append(members[row])
                    else:
                        rest.append([members[row]])
                groups, cost, improved = [g for g in rest if g], total, True
            if time.perf_counter() >= deadline:
                break
    return tuple(tuple(g) for g in groups)


def _similarity_swap(problem, *, time_limit: float = 10.0, **_):
    """:func:`_similarity`, then :func:`_improve`; under ``banks`` :func:`_reassign_banks`
    (the faster, larger move) and :func:`_improve` in turn while the cost falls (all within
    ``time_limit``)."""
    deadline = time.perf_counter() + time_limit
    if problem.banks is None:
        return _improve(problem, _similarity(problem), deadline)
    groups = _similarity(problem)
    cost = sum(max(size, problem.floor) for size in union_sizes(problem, groups))
    while time.perf_counter() < deadline:
        better = _improve(problem, _reassign_banks(problem, groups, deadline), deadline)
        value = sum(max(size, problem.floor) for size in union_sizes(problem, better))
        if value >= cost:
            break
        groups, cost = better, value
    return groups


def _exact_tiles(problem, *, time_limit: float = 10.0, hint=None, **_):
    """CP-SAT over every grouping into at most :func:`max_groups` tiles (under ``banks``: at
    most one filter of each residue class per tile), started from the best heuristic grouping
    (``hint``). A tile costs at least ``floor``, so an optimum has at most ``cost(hint) //
    floor`` tiles: the model has no more. Returns ``(groups, proven bound)``."""
    from ortools.sat.python import cp_model

    nz = problem.nonzero
    n, count = problem.filters, max_groups(problem)
    if hint is not None:
        count = min(count, tile_cost(problem, hint) // problem.floor)
        # tile g's filters are >= g (symmetry breaking below): tiles in order of their first
        hint = sorted(hint, key=min)
    active = [k for k in range(problem.steps) if nz[k].any()]
    model = cp_model.CpModel()
    x = [[model.new_bool_var(f"x{f}_{g}") if g <= f else None for g in range(count)]
         for f in range(n)]
    used = [model.new_bool_var(f"used{g}") for g in range(count)]
    length = [model.new_int_var(0, max(problem.steps, problem.floor), f"len{g}")
              for g in range(count)]
    for f in range(n):
        model.add_exactly_one(v for v in x[f] if v is not None)
    for g in range(count):
        members = [x[f][g] for f in range(n) if x[f][g] is not None]
        model.add(sum(members) <= problem.cols)
        if problem.banks is not None:
            for bank in range(min(problem.banks, n)):
                model.add_at_most_one(x[f][g] for f in range(bank, n, problem.banks)
                                      if x[f][g] is not None)
        for v in members:
            model.add_implication(v, used[g])
        if g + 1 < count:
            model.add_implication(used[g + 1], used[g])
        steps = []
        for k in active:
            holders = [x[f][g] for f in np.flatnonzero(nz[k]) if x[f][g] is not None]
            if not holders:
                continue
            y = model.new_bool_var(f"y{g}_{k}")
            for v in holders:
                model.add_implication(v, y)
            steps.append(y)
        model.add(length[g] >= sum(steps))
        model.add(length[g] >= problem.floor * used[g])
    model.minimize(sum(length))
    if hint is not None:
        for g, group in enumerate(hint):
            for f in group:
                for h in range(count):
                    if x[f][h] is not None:
                        model.add_hint(x[f][h], h == g)
    solver, found = _solve(model, time_limit)
    if not found:
        return None, _proven(solver)
    groups = [[] for _ in range(count)]
    for f in range(n):
        for g in range(count):
            if x[f][g] is not None and solver.value(x[f][g]):
                groups[g].append(f)
    return tuple(tuple(g) for g in groups if g), _proven(solver)


#: Largest tile problem (filters) the exact solver takes: its model has a variable per filter
#: and tile and an implication per non-zero weight and tile, too many to build beyond this.
EXACT_MAX_FILTERS = 64

#: Tile-grouping heuristics by name (each ``problem -> groups``); ``exact`` is added by
#: :func:`schedule`.
TILE_SCHEDULERS: dict[str, Callable] = {
    "natural": _natural,
    "sorted": _sorted,
    "similarity": _similarity,
    "similarity_swap": _similarity_swap,
    "exact": _exact_tiles,
}


# ---------------------------------------------------------------------------- unit problem

def check_assignment(problem: UnitProblem, assignment) -> tuple[int, ...]:
    assignment = tuple(int(u) for u in assignment)
    if len(assignment) != len(problem.times):
        raise ValueError(f"assignment must give a unit to each of the {len(problem.times)} "
                         f"jobs, not {len(assignment)}")
    if any(not 0 <= u < problem.units for u in assignment):
        raise ValueError(f"assignment units must be in 0..{problem.units - 1}")
    return assignment


def makespan(problem: UnitProblem, assignment) -> int:
    loads = [0] * problem.units
    for job, unit in enumerate(check_assignment(problem, assignment)):
        loads[unit] += problem.times[job]
    return max(loads)


def unit_bound(problem: UnitProblem) -> int:
    """``max(ceil(sum p / P), max p)``."""
    return max(-(-sum(problem.times) // problem.units), max(problem.times))


def _round_robin(problem, **_):
    return tuple(job % problem.units for job in range(len(problem.times)))


def _lpt(problem, **_):
    """Longest processing time first onto the least loaded unit (Graham)."""
    loads = [(0, u) for u in range(problem.units)]
    assignment = [0] * len(problem.times)
    for job in sorted(range(len(problem.times)), key=lambda j: (-problem.times[j], j)):
        load, unit = heapq.heappop(loads)
        assignment[job] = unit
        heapq.heappush(loads, (load + problem.times[job], unit))
    return tuple(assignment)


def _karmarkar_karp(problem, **_):
    """Largest differencing, ``P``-way: each job starts as a partial partition (its length on
    one unit); the two partitions with the largest spread are merged, largest subset with
    smallest, until one is left."""
    units = problem.units
    heap = []
    for job, length in enumerate(problem.times):
        subsets = [(length, [job])] + [(0, []) for _ in range(units - 1)]
        heapq.heappush(heap, (-length, job, subsets))
    serial = len(problem.times)
    while len(heap) > 1:
        _, _, first = heapq.heappop(heap)
        _, _, second = heapq.heappop(heap)
        first = sorted(first, key=lambda s: -s[0])
        second = sorted(second, key=lambda s: s[0])
        merged = sorted(((a[0] + b[0], a[1] + b[1]) for a, b in zip(first, second)),
                        key=lambda s: -s[0])
        spread = merged[0][0] - merged[-1][0]
        heapq.heappush(heap, (-spread, serial, merged))
        serial += 1
    assignment = [0] * len(problem.times)
    for unit, (_, jobs) in enumerate(heap[0][2]):
        for job in jobs:
            assignment[job] = unit
    return tuple(assignment)


def _multifit(problem, *, rounds: int = 12, **_):
    """Multifit (Coffman, Garey, Johnson): binary search on a capacity for which first-fit
    decreasing packs the jobs into ``P`` units."""
    order = sorted(range(len(problem.times)), key=lambda j: (-problem.times[j], j))

    def ffd(capacity):
        loads = [0] * problem.units
        assignment = [0] * len(problem.times)
        for job in order:
            for unit in range(problem.units):
                if loads[unit] + problem.times[job] <= capacity:
                    loads[unit] += problem.times[job]
                    assignment[job] = unit
                    break
            else:
                return None
        return tuple(assignment)

    low = unit_bound(problem)
    high = max(low, max(-(-2 * sum(problem.times) // problem.units), max(problem.times)))
    best = ffd(high) or _lpt(problem)
    for _ in range(rounds):
        if low >= high:
            break
        middle = (low + high) // 2
        packed = ffd(middle)
        if packed is None:
            low = middle + 1
        else:
            best, high = packed, middle
    return best


def _exact_units(problem, *, time_limit: float = 10.0, hint=None, **_):
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    jobs = range(len(problem.times))
    x = [[model.new_bool_var(f"x{j}_{u}") for u in range(problem.units)] for j in jobs]
    top = sum(problem.times)
    span = model.new_int_var(unit_bound(problem), top, "makespan")
    for j in jobs:
        model.add_exactly_one(x[j])
    for u in range(problem.units):
        model.add(sum(problem.times[j] * x[j][u] for j in jobs) <= span)
    model.add(x[0][0] == 1)                               # units are interchangeable
    if hint is not None:
        for j, unit in enumerate(hint):
            for u in range(problem.units):
                model.add_hint(x[j][u], u == unit)
    model.minimize(span)
    solver, found = _solve(model, time_limit)
    if not found:
        return None, _proven(solver)
    assignment = tuple(next(u for u in range(problem.units) if solver.value(x[j][u]))
                       for j in jobs)
    return assignment, _proven(solver)


#: Unit schedulers by name (each ``problem -> assignment``).
UNIT_SCHEDULERS: dict[str, Callable] = {
    "natural": _round_robin,
    "lpt": _lpt,
    "kk": _karmarkar_karp,
    "multifit": _multifit,
    "exact": _exact_units,
}


# ---------------------------------------------------------------------------- interface

def schedule(problem: TileProblem | UnitProblem, method: str, *,
             time_limit: float = 10.0) -> Schedule:
    """Solve ``problem`` with the scheduler ``method`` (:data:`TILE_SCHEDULERS` or
    :data:`UNIT_SCHEDULERS`). ``time_limit`` (seconds) bounds ``exact`` and the local search;
    ``exact`` starts from the best heuristic's answer, so it is never worse than them."""
    if isinstance(problem, TileProblem):
        table, cost, bound = TILE_SCHEDULERS, tile_cost, tile_bound
    elif isinstance(problem, UnitProblem):
        table, cost, bound = UNIT_SCHEDULERS, makespan, unit_bound
    else:
        raise ValueError(f"problem must be a TileProblem or a UnitProblem, not {problem!r}")
    if method not in table:
        raise ValueError(f"method must be one of {sorted(table)}, not {method!r}")
    if isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real) or \
            not time_limit > 0:
        raise ValueError(f"time_limit must be a number of seconds > 0, not {time_limit!r}")
    if method == "exact" and isinstance(problem, TileProblem) and \
            problem.filters > EXACT_MAX_FILTERS:
        raise ValueError(f"exact: the problem has {problem.filters} filters; the exact solver "
                         f"takes at most EXACT_MAX_FILTERS = {EXACT_MAX_FILTERS}")
    start = time.perf_counter()
    lower = bound(problem)
    proven = None
    if method == "exact":
        answers = [table[name](problem, time_limit=time_limit)
                   for name in table if name != "exact"]
        hint = min(answers, key=lambda answer: cost(problem, answer))
        answer, proven = table["exact"](problem, time_limit=time_limit, hint=hint)
        if answer is None or cost(problem, hint) < cost(problem, answer):
            answer = hint
        lower = max(lower, proven)
    else:
        answer = table[method](problem, time_limit=time_limit)
    elapsed = time.perf_counter() - start
    value = cost(problem, answer)
    if value < lower:
        raise AssertionError(f"{method}: cost {value} below the lower bound {lower}: a bound "
                             f"or the cost is wrong")
    if isinstance(problem, TileProblem):
        return Schedule(method=method, cost=value, bound=lower, solver_time_s=elapsed,
                        groups=check_groups(problem, answer), proven=proven)
    return Schedule(method=method, cost=value, bound=lower, solver_time_s=elapsed,
                    assignment=check_assignment(problem, answer), proven=proven)
