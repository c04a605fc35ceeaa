"""The schedulers measured on a pruned network (``sparta measure schedule``, also on a user's
network with ``--network-file``).

For every pruned layer (:func:`sim.pruning.prunable`), the layer's forward GEMM (B = the
weights, a filter per column) and its backward-data GEMM (B = the weights transposed, an input
feature per column) are scheduled by every scheduler of :mod:`sim.schedule` at batch
:data:`BATCH`. Per command: ``dense_cycles`` (:func:`sim.engine_model.command_cycles`), each
scheduler's cycles (:func:`sim.schedule.grouped_cycles`, the cycle model of tiles stepping only
through their filters' non-zero steps), its tile objective, the lower bounds
(:func:`sim.schedule.tile_bounds`, the exact solver's proven bound and, where these do not prove
the best schedule optimal, :func:`sim.schedule.lp_bound` with four times the time limit) and
``ratio_to_bound`` of the best scheduler; where the LP's column generation stopped without a
proof, ``lp_estimate`` (its restricted LP's value when the greedy pricing found no more columns:
the LP optimum unless a column was missed, **not a proven bound**) and the ratio to it; solver
times (host work, paid once per pruning mask); the size of the best grouping's scheduled
weight format (:mod:`sim.step_lists`, fp16 B) against dense B.

Per command also ``banked``: every scheduler again under the bank constraint of the engine
(``TileProblem.of(config, pattern, banked=True)``: a tile's columns pairwise distinct modulo
``config.acc_banks``, the groupings the hardware can run), its best cycles, its ratio to the
same bound and LP estimate as the unconstrained best (valid for the constrained problem too),
to the constrained problem's own best bound (the analytic bounds with the bank terms and the
exact solver's proof under the constraint) and to the unconstrained best, its speedups over
dense and natural order (natural order respects the banks).

Each pruned stride-1 convolution also gets its backward data lowered as a transposed
convolution (:data:`TRANSPOSED`, :func:`sim.lowering.transposed_backward_data`: K = kernel^2 x
C_out, N = C_in, B the flipped weight), measured the same way.

Per network: inference (forward GEMMs) and training-step (forward, weight gradient dense,
backward data) cycles, the training step also with the transposed backward data
(``training_step_transposed``: its ``dense`` is the original lowering's, ``dense_transposed``
the transposed GEMMs' run dense), dense against natural order against the best schedule, unconstrained
(``best``) and banked (``banked``); and the multi-unit case: the tiles of each forward GEMM
(best unconstrained grouping) over :data:`UNITS` engines.
"""

from __future__ import annotations

import numpy as np

from sim.engine_model import EngineCommand, command_cycles
from sim.engine_spec import EngineTiming
from sim.lowering import layer_commands, transposed_backward_data
from sim.nn import Network
from sim.nn.im2col import transposed_weight
from sim.pruning import prunable
from sim.schedule import (EXACT_MAX_FILTERS, TILE_SCHEDULERS, UNIT_SCHEDULERS, TileProblem,
                          UnitProblem, grouped_cycles, lp_bound, schedule, tile_bounds,
                          union_sizes)
from sim.step_lists import step_lists

__all__ = ["BATCH", "UNITS", "KINDS", "TRANSPOSED", "measure_command", "measure_units",
           "measure_level"]

BATCH = 32
UNITS = (2, 4)
KINDS = ("forward", "backward_data")
#: The backward data of a stride-1 convolution lowered as a transposed convolution
#: (:func:`sim.lowering.transposed_backward_data`), measured beside ``backward_data``.
TRANSPOSED = "backward_data_transposed"


def _pattern(weight: np.ndarray, kind: str, spec=None) -> np.ndarray:
    """The non-zero pattern of B (K x N) of the layer's ``kind`` GEMM (``TRANSPOSED``: the
    flipped weight of the transposed convolution, for the layer ``spec``)."""
    nonzero = weight != 0
    if kind == TRANSPOSED:
        return transposed_weight(nonzero, kernel=spec.kernel, channels=spec.in_shape[2])
    return nonzero if kind == "forward" else nonzero.T


def _command(config, gemm) -> EngineCommand:
    return EngineCommand(m=gemm.M, n=gemm.N, k=gemm.K, a_transpose=gemm.transpose_a,
                         b_transpose=gemm.transpose_b, accumulate=gemm.accumulate)


def _run_schedulers(config, gemm, problem: TileProblem, time_limit: float):
    """Every tile scheduler on ``problem``: ``(per method slots, cycles, tiles, solver time
    and the exact solver's proven bound; per method the grouping; the best method)``."""
    methods, groups = {}, {}
    for method in TILE_SCHEDULERS:
        if method == "exact" and problem.filters > EXACT_MAX_FILTERS:
            continue                                # recorded as absent
        result = schedule(problem, method, time_limit=time_limit)
        sizes = union_sizes(problem, result.groups)
        methods[method] = {
            "slots": result.cost,
            "cycles": grouped_cycles(config, gemm.M, gemm.accumulate, sizes),
            "tiles": len(result.groups),
            "solver_time_s": round(result.solver_time_s, 4),
        }
        if result.proven is not None:
            methods[method]["proven_bound"] = result.proven
        groups[method] = result.groups
    best = min(methods, key=lambda m: (methods[m]["slots"], m != "natural"))
    return methods, groups, best


def measure_command(config, gemm, pattern, time_limit: float) -> dict:
    """Every tile scheduler on one command, unconstrained and under the engine's bank
    constraint (module docstring)."""
    problem = TileProblem.of(config, pattern)
    dense = command_cycles(config, _command(config, gemm))
    bounds = tile_bounds(problem)
    methods, groups, best = _run_schedulers(config, gemm, problem, time_limit)
    if "exact" in methods:
        bounds["exact"] = methods["exact"]["proven_bound"]
    slots = methods[best]["slots"]
    lp = None
    if max(bounds.values()) < slots:        # not proven optimal yet: the LP bound
        lp = lp_bound(problem, time_limit=4 * time_limit, start=list(groups.values()))
        bounds["lp"] = lp["bound"]
    bound = max(bounds.values())
    # the scheduled weight format of the best grouping, B in fp16 (sim.step_lists)
    ones = np.where(pattern, np.uint16(0x3C00), np.uint16(0))
    storage = step_lists(ones, groups[best], cols=problem.cols).storage_bits(16)
    estimate = lp and lp["estimate"]
    return {
        "M": gemm.M, "N": gemm.N, "K": gemm.K,
        "storage_bits": storage,
        "nonzero_fraction": round(float(pattern.mean()), 6),
        "dense_cycles": dense,
        "dense_slots": problem.min_groups * max(problem.steps, problem.floor),
        "bounds": bounds, "bound_slots": bound,
        "lp": lp and {key: lp[key] for key in ("iterations", "columns", "converged")},
        "lp_estimate": lp and lp["estimate"] and round(lp["estimate"], 3),
        "ratio_to_lp_estimate": lp and lp["estimate"] and round(slots / lp["estimate"], 6),
        "methods": methods, "best": best,
        "ratio_to_bound": round(slots / bound, 6),
        "speedup_vs_dense": round(dense / methods[best]["cycles"], 6),
        "speedup_vs_natural": round(methods["natural"]["cycles"] / methods[best]["cycles"], 6),
        "banked": _measure_banked(config, gemm, pattern, time_limit, dense, bound, estimate,
                                  methods),
        "_groups": groups[best],
    }


def _measure_banked(config, gemm, pattern, time_limit: float, dense: int, bound: int,
                    estimate, unconstrained: dict) -> dict:
    """Every tile scheduler under the engine's bank constraint; ``bound`` and ``estimate``:
    the unconstrained problem's (a lower bound, an estimate, of the constrained one too)."""
    problem = TileProblem.of(config, pattern, banked=True)
    methods, _, best = _run_schedulers(config, gemm, problem, time_limit)
    slots, cycles = methods[best]["slots"], methods[best]["cycles"]
    own = max([bound, *tile_bounds(problem).values()]
              + [m["proven_bound"] for m in methods.values() if "proven_bound" in m])
    least = min(m["slots"] for m in unconstrained.values())
    return {
        "banks": problem.banks, "methods": methods, "best": best, "slots": slots,
        "cycles": cycles, "bound_slots": own,
        "ratio_to_bound": round(slots / bound, 6),
        "ratio_to_own_bound": round(slots / own, 6),
        "ratio_to_lp_estimate": estimate and round(slots / estimate, 6),
        "ratio_to_unconstrained": round(slots / least, 6),
        "speedup_vs_dense": round(dense / cycles, 6),
        "speedup_vs_natural": round(unconstrained["natural"]["cycles"] / cycles, 6),
    }


def measure_units(config, gemm, pattern, groups, time_limit: float) -> dict:
    """The forward GEMM's tiles (best grouping, every row band) over ``P`` engines."""
    timing = EngineTiming.of(config)
    bands = -(-gemm.M // timing.rows)
    problem = TileProblem(pattern, cols=timing.cols, floor=timing.min_tile_slots)
    lengths = [timing.tile_slots(size) for size in union_sizes(problem, groups)]
    times = tuple(length for _ in range(bands) for length in lengths)
    entry = {}
    for units in UNITS:
        problem = UnitProblem(times, units)
        results = {m: schedule(problem, m, time_limit=time_limit) for m in UNIT_SCHEDULERS}
        bound = max(r.bound for r in results.values())
        entry[str(units)] = {
            "jobs": len(times), "bound": bound,
            "makespan": {m: r.cost for m, r in results.items()},
            "solver_time_s": {m: round(r.solver_time_s, 4) for m, r in results.items()},
            "ratio_to_bound": {m: round(r.cost / bound, 6) for m, r in results.items()},
        }
    return entry


def _cycles(config, gemm) -> dict:
    """A GEMM's cycles run dense, for every way of counting them."""
    dense = command_cycles(config, _command(config, gemm))
    return {"dense": dense, "natural": dense, "best": dense, "banked": dense}


def _scheduled_cycles(entry: dict) -> dict:
    """A measured GEMM's cycles in natural order, by the best schedule and the best banked."""
    return {"natural": entry["methods"]["natural"]["cycles"],
            "best": entry["methods"][entry["best"]]["cycles"],
            "banked": entry["banked"]["cycles"]}


def measure_level(net: Network, params: dict, config, time_limit: float,
                  on_command=None) -> dict:
    """Every pruned layer of ``net`` with the weights ``params`` (by qualified name), the
    whole network's inference and training-step cycles (module docstring)."""
    layers, totals = [], {}
    pruned = {name.rsplit(".", 1)[0] for name in prunable(net)}
    for spec in net.specs():
        if spec.kind not in ("conv2d", "linear"):
            continue
        weight = params[f"{spec.name}.weight"]
        transposed = transposed_backward_data(spec, batch_size=BATCH) \
            if spec.name in pruned else None
        for gemm in layer_commands(spec, batch_size=BATCH):
            cycles = _cycles(config, gemm)
            if spec.name in pruned and gemm.kind in KINDS:
                entry = measure_command(config, gemm, _pattern(weight, gemm.kind), time_limit)
                groups = entry.pop("_groups")
                if gemm.kind == "forward":
                    entry["units"] = measure_units(config, gemm, _pattern(weight, "forward"),
                                                   groups, time_limit)
                layers.append({"layer": spec.name, "kind": gemm.kind, **entry})
                cycles.update(_scheduled_cycles(entry))
                if on_command:
                    on_command()
            scopes = {"training_step": cycles}
            if gemm.kind == "forward":
                scopes["inference"] = cycles
            # the step with stride-1 convolutions' backward data transposed (dense: the
            # original lowering's, the same baseline as the training step)
            scopes["training_step_transposed"] = cycles
            if transposed is not None and gemm.kind == "backward_data":
                entry = measure_command(config, transposed,
                                        _pattern(weight, TRANSPOSED, spec), time_limit)
                entry.pop("_groups")
                layers.append({"layer": spec.name, "kind": TRANSPOSED, **entry})
                scopes["training_step_transposed"] = {
                    **_scheduled_cycles(entry), "dense": cycles["dense"],
                    "dense_transposed": entry["dense_cycles"]}
                if on_command:
                    on_command()
            for scope, values in scopes.items():
                for key, value in values.items():
                    totals.setdefault(scope, {}).setdefault(key, 0)
                    totals[scope][key] += value
                if scope == "training_step_transposed" and "dense_transposed" not in values:
                    totals[scope].setdefault("dense_transposed", 0)
                    totals[scope]["dense_transposed"] += values["dense"]
    for scope in totals.values():
        scope["speedup_vs_dense"] = round(scope["dense"] / scope["best"], 6)
        scope["speedup_natural_vs_dense"] = round(scope["dense"] / scope["natural"], 6)
        scope["speedup_banked_vs_dense"] = round(scope["dense"] / scope["banked"], 6)
    ratios = [layer["ratio_to_bound"] for layer in layers]
    banked = [layer["banked"]["ratio_to_bound"] for layer in layers]
    return {"layers": layers, "network": totals,
            "ratio_to_bound_max": max(ratios), "ratio_to_bound_mean":
            round(float(np.mean(ratios)), 6),
            "banked_ratio_to_bound_max": max(banked), "banked_ratio_to_bound_mean":
            round(float(np.mean(banked)), 6)}


