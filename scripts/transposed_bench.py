"""Backward data of stride-1 convolutions as a transposed convolution, on captured training
steps: what the zero-skipping engine gains from it (issue 17, part 5; cycle model).

For the last captured step of each network (``$SPARTA_BUILD_DIR/captures``, as
``sparta measure skip`` reads them), every GEMM of the step is measured under every zero-skipping
variant of :mod:`sim.experiments.skip` (:func:`sim.experiments.skip.measure_step`), and the
backward data of every stride-1 convolution is rebuilt as a transposed convolution from the same
operands (:mod:`sim.experiments.transposed`). Printed and recorded: per layer both lowerings'
cycles (dense, the window alone ``la3``, with output masks ``la3_mask``, with the host's
compaction and swap ``la3_compact_swap``) and ideal; per network the backward pass with each
lowering. Every figure is the cycle model; the window benches hold the RTL to it on every
command they run (``tb/test_engine.py``). Host work (col2im / im2col, compaction) is not
priced.

Records ``docs/results/transposed.json``; ``sparta report`` renders it in
``docs/schedule.md``.

Usage: python -m scripts.transposed_bench [--nets digits_cnn,resnet18] [--steps 899]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scripts.results import record
from scripts.sparsity_study import add_capture_arguments, captures
from sim.experiments.skip import measure_step
from sim.experiments.sparsity import WIDTH, timing_config
from sim.experiments.transposed import measure_layers
from sim.nn import build_network
from sim.skip_timing import with_window
from tb.engines import CONFIGS

__all__ = ["VARIANTS", "RTL_ENGINE", "network_entry", "rtl_runs", "main"]

#: The variants reported (all are measured): dense, the RTL's window (d = 3) alone, with
#: output masks, with the host's compaction and weight-gradient swap.
VARIANTS = ("dense", "la3", "la3_mask", "la3_compact_swap")
#: The engine of the RTL runs: the replay's 8x8 engine with the window of the RTL's default
#: design (d = 3).
RTL_ENGINE = with_window(CONFIGS["8x8"], 3)
#: The row reordering of the RTL run (deterministic: no time limit reached).
RTL_REORDER = "similarity"


def network_entry(config, net_name: str, path) -> dict:
    """One network's last captured step: both lowerings per layer and the backward pass."""
    net = build_network(net_name, width=WIDTH)
    step = measure_step(config, net, path, log=lambda line: None)
    measured = measure_layers(config, net, path)
    backward = step["totals"]["backward"]
    layers, swapped = {}, dict(backward["cycles"])
    ideal = backward["ideal"]
    reordered = dict(backward["cycles"])
    for name, entry in measured["layers"].items():
        original, transposed = entry["original"], entry["transposed"]
        layers[name] = {kind: {"M": e["M"], "N": e["N"], "K": e["K"], "ideal": e["ideal"],
                               "cycles": {v: e["cycles"][v] for v in VARIANTS}}
                        for kind, e in (("original", original), ("transposed", transposed))}
        layers[name]["reordered"] = {
            method: {"band_slots": e["band_slots"], "solver_time_s": e["solver_time_s"],
                     "M": e["M"], "cycles": {v: e["cycles"][v] for v in VARIANTS}}
            for method, e in entry["reordered"].items()}
        best = min(entry["reordered"].values(), key=lambda e: e["cycles"]["la3"])
        for variant in swapped:
            if variant == "dense":           # the baseline stays the original lowering
                continue
            swapped[variant] += transposed["cycles"][variant] - original["cycles"][variant]
            reordered[variant] += best["cycles"][variant] - original["cycles"][variant]
    dense = backward["cycles"]["dense"]
    return {"step": step["step"], "batch": step["batch"], "capture": step["capture"],
            "layers": layers,
            "backward": {"original": {v: backward["cycles"][v] for v in VARIANTS},
                         "transposed": {v: swapped[v] for v in VARIANTS},
                         "reordered": {v: reordered[v] for v in VARIANTS},
                         "ideal": ideal,
                         **{f"speedup_{kind}": {v: round(dense / cycles[v], 4)
                                                for v in VARIANTS}
                            for kind, cycles in (("original", backward["cycles"]),
                                                 ("transposed", swapped),
                                                 ("reordered", reordered))}}}


def rtl_runs(net_name: str, path, *, simulator: str = "verilator") -> dict:
    """Both lowerings of every stride-1 convolution's backward data of the captured step
    ``path``, and the transposed one with its rows reordered by :data:`RTL_REORDER` (zero rows
    padding the bands; its result rows must be the transposed GEMM's), on the RTL of
    :data:`RTL_ENGINE` (window d = 3, no output masks, no host work), split into commands by
    :func:`sim.replay.split_gemm`: per GEMM the RTL's cycles, the cycle
    model's summed over the same commands (:func:`sim.skip_timing.engine_cycles`), whether
    they are equal, and whether every result word is the golden model's
    (:func:`sim.sparsity.gemm_skip`)."""
    import json

    import numpy as np

    from sim.experiments.sparsity import capture_gemms
    from sim.replay import split_gemm
    from sim.skip_model import SparseGemm
    from sim.skip_timing import engine_cycles
    from sim.sparsity import gemm_skip
    from sim.experiments.transposed import row_order, transposed_gemms
    from tb.engine_api import run_gemms, workload_gemm

    net = build_network(net_name, width=WIDTH)
    with np.load(path) as z:
        batch = len(json.loads(str(z["meta"]))["labels"])
        originals = {command.layer: (a, b) for command, a, b, _ in capture_gemms(net, z, batch)
                     if command.kind == "backward_data"}
        layers = {name: (originals[name], operands)
                  for name, _, _, operands in transposed_gemms(net, z, batch)}
    gemms, orders = [], {}
    for name, ((a, b), (a_t, b_t)) in layers.items():
        order, _ = row_order(RTL_ENGINE, SparseGemm.from_bits(a_t, b_t), RTL_REORDER)
        orders[name] = order
        a_r = np.where((order >= 0)[:, None], a_t[np.maximum(order, 0)], 0).astype(a_t.dtype)
        gemms += [(name, "original", workload_gemm(a, b, transpose_b=True)),
                  (name, "transposed", workload_gemm(a_t, b_t)),
                  (name, f"transposed, rows by {RTL_REORDER}", workload_gemm(a_r, b_t))]
    results = run_gemms(RTL_ENGINE, [g for _, _, g in gemms], backend=simulator)
    out = {}
    for (name, kind, gemm), run in zip(gemms, results):
        model = 0
        for part in split_gemm(gemm, RTL_ENGINE):
            (m0, m1), (n0, n1), (k0, k1) = part.rows, part.cols, part.depth
            b = gemm.b_bits[n0:n1, k0:k1] if gemm.transpose_b else gemm.b_bits[k0:k1, n0:n1]
            sparse = SparseGemm.from_bits(gemm.a_bits[m0:m1, k0:k1], b,
                                          transpose_b=gemm.transpose_b,
                                          accumulate=part.command.accumulate)
            model += engine_cycles(RTL_ENGINE, part.command, sparse)
        golden = gemm_skip(gemm.a_bits, gemm.b_bits, transpose_b=gemm.transpose_b)
        exact = bool(np.array_equal(run.out_bits, golden))
        if kind.startswith("transposed, rows"):     # and its rows are the transposed GEMM's
            order = orders[name]
            plain = out[name]["transposed"]
            exact &= bool(np.array_equal(run.out_bits[order >= 0],
                                         plain.pop("_out")[order[order >= 0]]))
        out.setdefault(name, {})[kind] = {
            "rtl_cycles": run.cycles, "model_cycles": model, "equal": run.cycles == model,
            "commands": run.commands, "bit_exact": exact}
        if kind == "transposed":
            out[name][kind]["_out"] = run.out_bits
        print(f"{net_name} {name} {kind}: RTL {run.cycles} cycles in {run.commands} commands, "
              f"model {model}, bit-exact {out[name][kind]['bit_exact']}")
    return {"engine": "8x8 output stationary, window d = 3 (tb.engines 8x8 with the window)",
            "simulator": simulator, "layers": out}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_capture_arguments(parser)
    parser.set_defaults(nets=("digits_cnn",))
    parser.add_argument("--rtl", action="store_true",
                        help="also run both lowerings' GEMMs on the RTL engine with the window "
                             "(Verilator): cycles against the model, bit-exact")
    args = parser.parse_args(argv)
    config = timing_config()
    steps = None if args.steps is None else [int(s) for s in args.steps.split(",")]
    began = time.perf_counter()
    entries = {}
    for net_name in args.nets:
        paths = captures(Path(args.capture_dir).expanduser(), net_name, steps)
        entry = network_entry(config, net_name, paths[-1])
        if args.rtl:
            entry["rtl"] = rtl_runs(net_name, paths[-1])
        for layer, row in entry["layers"].items():
            for kind in ("original", "transposed"):
                e = row[kind]
                print(f"{net_name} {layer} {kind:10s} {e['M']}x{e['N']}x{e['K']}: "
                      + ", ".join(f"{v} {e['cycles'][v]}" for v in VARIANTS)
                      + f", ideal {e['ideal']}")
        back = entry["backward"]
        for layer, row in entry["layers"].items():
            for method, e in row["reordered"].items():
                print(f"{net_name} {layer} transposed, rows by {method}: la3 "
                      f"{e['cycles']['la3']} (solver {e['solver_time_s']} s)")
        print(f"{net_name} backward pass, window d = 3 alone: original "
              f"x{back['speedup_original']['la3']:.3f}, transposed "
              f"x{back['speedup_transposed']['la3']:.3f}, rows reordered "
              f"x{back['speedup_reordered']['la3']:.3f} vs dense (cycle model)")
        entries[net_name] = {**entry, "wall_time_s": round(time.perf_counter() - began, 1),
                             "command": "python -m scripts.transposed_bench"
                             + (" --rtl" if args.rtl else "")}
    if args.no_write:
        return 0
    from scripts import report

    path = record("transposed", entries, writer=__name__, config=config)
    print(f"wrote {path}")
    report.rewrite("schedule.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
