"""The schedulers on the pruned networks: cycles per layer against dense, natural order and the
lower bound (``sparta measure schedule``).

    python -m scripts.schedule_bench [--nets digits_cnn,digits_mlp,resnet18] [--time-limit 3]

For every network of ``docs/results/pruning.json`` (``sparta prune``) and sparsity level, runs
:func:`sim.experiments.schedule.measure_level` (every pruned layer's forward and backward-data
GEMMs, every scheduler, the bounds, the network's inference and training-step cycles, the
multi-unit case) on the 8x8 output-stationary engine of the sparsity study
(:func:`sim.experiments.sparsity.timing_config`), every scheduler both unconstrained and under
the engine's accumulator-bank constraint (``banked``: a tile's columns pairwise distinct modulo
``acc_banks``, what the hardware accepts). The sequencer mode that runs a schedule is not
built yet: every cycle figure is the **cycle model's**, none the RTL's. Solver times are
host work, paid once per pruning mask by the compiler. Writes ``docs/results/schedule.json``
(one key per network).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scripts.cli import comma_subset
from scripts.progress import bar
from scripts.results import load, record
from sim.elaborate import build_root
from sim.experiments.schedule import BATCH, measure_level
from sim.experiments.sparsity import timing_config
from sim.lowering import transposed_backward_data
from sim.nn import build_network
from sim.pruning import prunable

NETS = ("digits_cnn", "digits_mlp", "resnet18")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.schedule_bench",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", type=comma_subset("nets", NETS), default=None,
                        help="comma-separated subset (default: every network in pruning.json)")
    parser.add_argument("--time-limit", type=float, default=3.0,
                        help="seconds per exact solve and per local search; the LP bound gets "
                             "four times as long (default 3)")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="where `sparta prune` put the weights (default "
                             "$SPARTA_BUILD_DIR/pruned)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    pruning = load("pruning", reader=__name__)
    nets = args.nets or tuple(net for net in NETS if net in pruning)
    weights_dir = args.weights_dir or build_root() / "pruned"
    config = timing_config()
    for net in nets:
        if net not in pruning:
            raise SystemExit(f"docs/results/pruning.json has no {net}: run "
                             f"`python -m scripts.prune --nets {net}`")
        levels = pruning[net]["levels"]
        missing = [level["weights"] for level in levels
                   if not (weights_dir / level["weights"]).exists()]
        if missing:
            raise SystemExit(f"weights {missing} are not under {weights_dir}: run "
                             f"`python -m scripts.prune --nets {net}` (or give --weights-dir)")
        start = time.perf_counter()
        network = build_network(net)
        pruned = {name.rsplit(".", 1)[0] for name in prunable(network)}
        per_level = 2 * len(pruned) + sum(
            transposed_backward_data(spec, batch_size=BATCH) is not None
            for spec in network.specs() if spec.name in pruned)
        entry = {"engine": "8x8 output stationary (sim.experiments.sparsity.timing_config)",
                 "acc_banks": config.acc_banks, "batch": BATCH,
                 "time_limit_s": args.time_limit, "levels": []}
        total, done = len(levels) * per_level, [0]
        with bar(f"{net}: scheduling", total) as progress:
            def advance():
                done[0] += 1
                progress(done[0], total)
            for level in levels:
                with np.load(weights_dir / level["weights"]) as stored:
                    params = {name: stored[name] for name in stored.files}
                measured = measure_level(network, params, config, args.time_limit,
                                         on_command=advance)
                entry["levels"].append({"sparsity": level["sparsity"], **measured})
                totals = measured["network"]
                print(f"{net} {level['sparsity']:.0%}: ratio to bound max "
                      f"{measured['ratio_to_bound_max']:.3f} mean "
                      f"{measured['ratio_to_bound_mean']:.3f} (banked max "
                      f"{measured['banked_ratio_to_bound_max']:.3f} mean "
                      f"{measured['banked_ratio_to_bound_mean']:.3f}); inference x"
                      f"{totals['inference']['speedup_vs_dense']:.3f} (banked x"
                      f"{totals['inference']['speedup_banked_vs_dense']:.3f}), training step x"
                      f"{totals['training_step']['speedup_vs_dense']:.3f} (banked x"
                      f"{totals['training_step']['speedup_banked_vs_dense']:.3f}) vs dense "
                      f"(cycle model)")
        entry["wall_time_s"] = round(time.perf_counter() - start, 1)
        entry["reproduce"] = f"python -m scripts.schedule_bench --nets {net}"
        if not args.no_write:
            record("schedule", {net: entry}, writer=__name__,
                   config={"engine": entry["engine"], "acc_banks": config.acc_banks,
                           "batch": BATCH,
                           "time_limit_s": args.time_limit,
                           "pruning": pruning["provenance"][net]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
