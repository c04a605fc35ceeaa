"""Replay one whole training step of the digits CNN on the RTL GEMM engine, bit for bit.

    python -m scripts.replay [--simulator verilator|icarus] [--no-results]

Runs the replay bench (``tb/replay_tb.py``, the one ``pytest tb/test_replay.py`` runs) through
:func:`sim.runner.run_bench`: step 0 of the digits CNN as trained for
``docs/results/workloads.json`` is recomputed with the accelerator's numerics, its GEMMs
(forward, backward-data, weight-gradient; the 15 the network computes, as 11 engine GEMMs: each
bias gradient folded into its layer's weight gradient as one more row,
:func:`sim.replay.fold_bias_grads`) are split into commands that fit the engine
(:mod:`sim.replay`), and every command runs on the generated :class:`~hw.engine.engine.GemmEngine`
with its cycles checked against the cycle model and every result word (weight and bias
gradients included) checked against the golden model. Prints commands, MACs, cycles and
utilization per GEMM kind, and the wall time.

On success it sets ``replay_bit_exact: true`` and ``replay`` (simulator, engine configuration,
counts, cycles, wall time) in ``docs/results/workloads.json`` (other keys kept); on a failure
``replay_bit_exact: false`` with the reason, and the exit status is 1. Verilator takes one to
a few minutes (plus its build on a cold cache); Icarus takes hours.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time

from scripts.results import update_results
from sim.engine_model import ideal_cycles
from sim.lowering import GEMM_KINDS
from sim.replay import REPLAY_CONFIG, split_step, step_statistics, training_step_gemms
from sim.runner import SIMULATORS, read_metrics
from tb.engine_driver import config_to_case
from tb.test_replay import P_IDLE, P_STALL, REPLAY_ENGINE, run_replay

COMMAND = "python -m scripts.replay"


def _table(per_kind: dict, pes: int) -> str:
    lines = [f"{'GEMM kind':<15}{'commands':>10}{'MACs':>14}{'cycles':>11}{'ideal':>11}"
             f"{'utilization':>13}"]
    for kind, entry in per_kind.items():
        lines.append(f"{kind:<15}{entry['commands']:>10,}{entry['macs']:>14,}"
                     f"{entry['cycles']:>11,}{entry['ideal_cycles']:>11,}"
                     f"{entry['macs'] / (pes * entry['cycles']):>12.1%}")
    return "\n".join(lines)


def measured_per_kind(metrics: dict, commands, config) -> dict:
    """The bench's per-kind counts and cycles, with the ideal cycles and a total row."""
    ideal = {}
    for command in commands:
        ideal[command.kind] = ideal.get(command.kind, 0) + ideal_cycles(config, command.command)
    rows = {kind: {**metrics["per_kind"][kind], "ideal_cycles": ideal[kind]}
            for kind in GEMM_KINDS if kind in metrics["per_kind"]}
    rows["total"] = {key: sum(row[key] for row in rows.values())
                     for key in ("commands", "macs", "cycles", "ideal_cycles")}
    for row in rows.values():
        row["utilization"] = round(row["macs"] / (config.array.pes * row["cycles"]), 4)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    parser.add_argument("--no-results", action="store_true",
                        help="do not write docs/results/workloads.json")
    args = parser.parse_args(argv)
    config = REPLAY_ENGINE
    gemms = training_step_gemms()
    commands = split_step(gemms, config)
    model = step_statistics(commands, config)
    print(f"digits CNN step 0 (batch {REPLAY_CONFIG.batch_size}): {len(gemms)} GEMMs, "
          f"{len(commands)} engine commands on {config.array.rows}x{config.array.cols} "
          f"{config.array.dataflow.upper()}; running on {args.simulator}...", flush=True)
    began = time.perf_counter()
    try:
        run_dir = run_replay(args.simulator, quiet=True)
    except AssertionError as error:
        print(f"replay FAILED: {error}", file=sys.stderr)
        if not args.no_results:
            update_results("workloads", replay_bit_exact=False,
                           replay_note=f"The last RTL replay ({COMMAND} --simulator "
                                       f"{args.simulator}) failed: {error}")
        return 1
    wall = time.perf_counter() - began
    (metrics,) = read_metrics(run_dir)
    per_kind = measured_per_kind(metrics, commands, config)
    total = per_kind["total"]
    # the bench checked every command's cycles against the model; the totals must agree too
    for kind, entry in model.items():
        if (entry["commands"], entry["cycles"]) != (per_kind[kind]["commands"],
                                                    per_kind[kind]["cycles"]):
            raise AssertionError(f"{kind}: bench {per_kind[kind]} differs from the cycle "
                                 f"model {entry}")
    print(_table(per_kind, config.array.pes))
    print(f"every result word bit-exact; {metrics['words_written']:,} words written, "
          f"{metrics['words_read']:,} read; replay {metrics['seconds']:.1f} s, "
          f"{wall:.1f} s wall with Verilog generation and build ({run_dir})")
    if args.no_results:
        return 0
    details = {
        "simulator": args.simulator,
        "net": REPLAY_CONFIG.net,
        "step": 0,
        "train_config": dataclasses.asdict(REPLAY_CONFIG),
        "engine": config_to_case(config),
        "gemms": len(gemms),
        "bias_grads_folded": True,
        "commands": total["commands"],
        "macs": total["macs"],
        "cycles": total["cycles"],
        "ideal_cycles": total["ideal_cycles"],
        "utilization": total["utilization"],
        "per_kind": per_kind,
        "words_written": metrics["words_written"],
        "words_read": metrics["words_read"],
        "p_idle": P_IDLE,
        "p_stall": P_STALL,
        "wall_time_s": {"replay": round(metrics["seconds"], 1), "total": round(wall, 1)},
        "load_average": round(os.getloadavg()[0], 1),
        "machine": platform.processor() or platform.machine(),
        "reproduce": f"{COMMAND} --simulator {args.simulator}",
    }
    note = (f"Step 0 of the digits CNN (all {len(gemms)} GEMMs: forward, backward-data, weight "
            f"gradient with the bias gradient folded in as one more row) ran as "
            f"{total['commands']} commands on the generated "
            f"{config.array.rows}x{config.array.cols} GemmEngine under {args.simulator}; every "
            f"result word matched the golden model bit for bit and every command took the "
            f"cycles of the cycle model ({COMMAND}; details under 'replay').")
    path = update_results("workloads", replay_bit_exact=True, replay_note=note, replay=details)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
