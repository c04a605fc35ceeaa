"""The digits CNN's pruned layers run on the RTL engine from their schedules: cycles of the
RTL against the cycle model, bit-exact results.

For every pruning level of ``docs/results/pruning.json`` and every pruned layer's forward and
backward-data GEMM (and a stride-1 convolution's backward data lowered as a transposed
convolution, :func:`sim.lowering.transposed_backward_data`), the pattern of the pruned weights
is scheduled again under the engine's bank constraint (``TileProblem.of(config, pattern,
banked=True)``) by the scheduler that ``docs/results/schedule.json`` found best for it
(``banked.best``, same time limit), laid out in the scheduled format and run on
:data:`RTL_CONFIG` (an 8x8 output-stationary engine with the zero gate and step lists) in
Verilator by ``tb/schedule_rtl_tb.py``: K in chunks of the scratchpad width (accumulating), a
chunk's tiles in as many commands as the step memory needs. The driver checks every command's
cycles against
:func:`sim.engine_model.scheduled_cycles` and every result word against
:func:`sim.step_lists.gemm_step_lists`. B is the fp16 weights (pruned weights are ``+0``), A a
random fp16 matrix of :data:`ROWS` rows: cycles grow by exactly one band's slots per ``R`` rows
(the model's formula, asserted by the benches on every command), so two bands measure every
tile of the schedule. The dense figure beside each is the cycle model of the dense command of
the same size split the same way in K (the model the dense benches hold the RTL to), and
``one_command_cycles`` what the cycle model gives for the whole GEMM as one command (an engine
with memories for the whole layer: the figure of ``docs/results/schedule.json`` at this M).

Records ``docs/results/schedule_rtl.json`` and has ``sparta report`` rewrite its table in
``docs/step_lists.md``.

Usage: python -m scripts.schedule_rtl [--levels 0.5,0.9]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from scripts.results import load, record
from sim.config import ArrayConfig, EngineConfig, config_to_dict
from sim.elaborate import Design
from sim.engine_model import EngineCommand, EngineTiming
from sim.runner import build_root, read_metrics, run_bench

__all__ = ["RTL_CONFIG", "ROWS", "NET", "level_gemms", "run_on_rtl", "main"]

NET = "digits_cnn"
#: Rows of A per GEMM: two bands of the 8x8 array.
ROWS = 16
#: The engine the layers run on: 8x8, zero gate, step lists, the default scratchpad width (fc1's
#: K = 1024 runs in four chunks); an accumulator row and a tile table for fc1's backward data
#: (1024 columns); a layer's tiles run in as many commands as the step memory needs.
RTL_CONFIG = EngineConfig(array=ArrayConfig(rows=8, cols=8, skip_zeros=True), spad_width=256,
                          a_rows=ROWS, b_rows=2048, acc_width=1024, acc_rows=ROWS,
                          out_formats=("fp32",), step_entries=2048, tile_entries=256)

def level_gemms(sparsity: float, layers, params: dict, *, time_limit: float, method=None,
                rng=None):
    """``(name, info, a_bits, b_bits, groups)`` of every pruned GEMM of one pruning level:
    ``layers`` are the level's entries of a schedule measurement
    (:func:`sim.experiments.schedule.measure_level`), ``params`` the level's weights by
    qualified name; each GEMM is scheduled again by its best banked method (or ``method``)."""
    from sim.experiments.schedule import TRANSPOSED
    from sim.experiments.sparsity import timing_config
    from sim.nn.im2col import transposed_weight
    from sim.schedule import TileProblem, grouped_cycles, schedule, union_sizes

    config = timing_config()
    rng = np.random.default_rng(2026) if rng is None else rng
    for layer in layers:
        weight = params[f"{layer['layer']}.weight"]
        b = {"forward": weight, "backward_data": weight.T}.get(layer["kind"])
        if layer["kind"] == TRANSPOSED:       # the flipped weight, C_in = N columns
            kernel = math.isqrt(weight.shape[0] // layer["N"])
            b = transposed_weight(weight, kernel=kernel, channels=layer["N"])
        b_bits = np.asarray(b, dtype=np.float32).astype(np.float16).view(np.uint16)
        if method is None and "banked" not in layer:
            raise SystemExit("the schedule measurement has no banked schedules: measure it "
                             "again (`python -m scripts.schedule_bench`)")
        chosen = method or layer["banked"]["best"]
        began = time.perf_counter()
        problem = TileProblem.of(config, b != 0, banked=True)
        result = schedule(problem, chosen, time_limit=time_limit)
        k = b.shape[0]
        a_bits = (rng.standard_normal((ROWS, k)).astype(np.float32)
                  .astype(np.float16).view(np.uint16))
        info = {"sparsity": sparsity, "layer": layer["layer"], "kind": layer["kind"],
                "K": int(k), "N": int(b.shape[1]), "method": chosen,
                "slots": int(result.cost),
                "one_command_cycles": grouped_cycles(config, ROWS, False,
                                                     union_sizes(problem, result.groups)),
                "measured_slots": layer.get("banked", {}).get("slots"),
                "solver_time_s": round(time.perf_counter() - began, 3)}
        name = f"{int(round(100 * sparsity))}.{layer['layer']}.{layer['kind']}"
        yield name, info, a_bits, b_bits, result.groups


def run_on_rtl(gemms, *, log=print) -> dict:
    """Run ``gemms`` (from :func:`level_gemms`) on :data:`RTL_CONFIG` in Verilator; returns
    per GEMM its info with the RTL's cycles, the model's, whether they are equal, the commands
    and the dense cycle model of the same split (module docstring)."""
    from hw.engine.engine import GemmEngine

    infos, arrays = {}, {}
    for name, info, a_bits, b_bits, groups in gemms:
        infos[name] = info
        width = max(len(group) for group in groups)
        padded = np.full((len(groups), width), -1, dtype=np.int64)
        for row, group in enumerate(groups):
            padded[row, :len(group)] = group
        arrays.update({f"{name}.a": a_bits, f"{name}.b": b_bits,
                       f"{name}.groups": padded, f"{name}.fmt": np.array("fp16")})
        log(f"{name}: {info['method']}, {info['slots']} slots (measured "
            f"{info['measured_slots']})")
    folder = build_root() / "schedule_rtl"
    folder.mkdir(parents=True, exist_ok=True)
    inputs = folder / "inputs.npz"
    np.savez(inputs, names=np.array(json.dumps(list(infos))), **arrays)
    run_dir = run_bench(Design(GemmEngine, RTL_CONFIG), toplevel="gemm_engine",
                        bench_module="tb.schedule_rtl_tb", simulator="verilator",
                        testcase="schedule_layers",
                        case={"config": config_to_dict(RTL_CONFIG), "inputs": str(inputs)})
    rows = {}
    timing = EngineTiming.of(RTL_CONFIG)
    chunk = RTL_CONFIG.spad_width          # as the bench splits K
    for metrics in read_metrics(run_dir):
        name = metrics["gemm"]
        info = infos[name]
        dense = sum(timing.cycles(EngineCommand(m=ROWS, n=info["N"],
                                                k=min(chunk, info["K"] - k0),
                                                accumulate=k0 > 0))
                    for k0 in range(0, info["K"], chunk))
        rows[name] = {**info, "rtl_cycles": metrics["cycles"],
                      "model_cycles": metrics["model_cycles"],
                      "equal": metrics["cycles"] == metrics["model_cycles"],
                      "tiles": metrics["tiles"], "commands": metrics["commands"],
                      "dense_model_cycles": dense,
                      "speedup_vs_dense": round(dense / metrics["cycles"], 4)}
        log(f"{name}: RTL {metrics['cycles']} cycles, model {metrics['model_cycles']}, "
            f"dense {dense} (x{dense / metrics['cycles']:.3f})")
    missing = sorted(set(infos) - set(rows))
    if missing:
        raise SystemExit(f"the bench recorded no cycles for {missing}")
    return rows


def main(argv=None):
    from scripts.cli import comma_subset
    from sim.schedule import TILE_SCHEDULERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = ("0.5", "0.7", "0.8", "0.9")
    parser.add_argument("--levels", type=comma_subset("levels", choices), default=choices,
                        help=f"comma-separated subset of {','.join(choices)} (default all)")
    parser.add_argument("--method", choices=TILE_SCHEDULERS, default=None,
                        help="schedule every GEMM with this scheduler (default: the best "
                             "banked one of docs/results/schedule.json)")
    args = parser.parse_args(argv)
    levels = {float(level) for level in args.levels}
    began = time.perf_counter()
    pruning = load("pruning", reader=__name__)[NET]
    results = load("schedule", reader=__name__)[NET]

    def gemms():
        for level in pruning["levels"]:
            if level["sparsity"] not in levels:
                continue
            path = build_root() / "pruned" / level["weights"]
            if not path.exists():
                raise SystemExit(f"{path} is missing: run `python -m scripts.prune --nets "
                                 f"{NET}`")
            with np.load(path) as stored:
                params = {name: stored[name] for name in stored.files}
            measured = next(entry for entry in results["levels"]
                            if entry["sparsity"] == level["sparsity"])
            yield from level_gemms(level["sparsity"], measured["layers"], params,
                                   time_limit=results["time_limit_s"], method=args.method)

    rows = run_on_rtl(gemms())
    wall = round(time.perf_counter() - began, 1)
    print(f"{len(rows)} GEMMs, all equal to the model: "
          f"{all(row['equal'] for row in rows.values())}; {wall} s")
    from scripts import report

    path = record("schedule_rtl", {NET: {
        "gemms": rows, "rows": ROWS, "engine": config_to_dict(RTL_CONFIG),
        "simulator": "verilator", "wall_time_s": wall,
        "command": "python -m scripts.schedule_rtl" + (
            f" --levels {','.join(args.levels)}" if len(levels) < len(choices) else "")
        + (f" --method {args.method}" if args.method else "")}},
        writer=__name__, config=RTL_CONFIG)
    print(f"wrote {path}")
    report.rewrite("step_lists.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
