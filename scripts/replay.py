"""Replay one whole training step of the digits CNN on the RTL GEMM engine, bit for bit.

    python -m scripts.replay [--simulator verilator|icarus] [--no-results] [--skip-window D]

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

On success it records ``replay_bit_exact: true``, ``replay_note`` and ``replay_step``
(simulator, engine configuration, counts, cycles, wall time) in ``docs/results/replay.json``
(other keys kept); on a failure ``replay_bit_exact: false`` with the reason, and the exit
status is 1. With a lookahead window ``D >= 2`` it records the window's replay under
``replay.window<D>`` of the same file (other windows kept). Verilator takes one to a few
minutes (plus its build on a cold cache); Icarus takes hours.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time

from scripts.progress import spinner
from scripts.results import load, record
from sim.config import MAX_SKIP_WINDOW
from sim.engine_model import ideal_cycles
from sim.lowering import GEMM_KINDS
from sim.replay import REPLAY_CONFIG, split_step, step_statistics, training_step_gemms
from sim.runner import SIMULATORS, read_metrics
from sim.skip_timing import with_window
from tb.engine_driver import config_to_case
from tb.replay_runner import P_IDLE, P_STALL, REPLAY_ENGINE, run_replay

COMMAND = "python -m scripts.replay"


def _table(per_kind: dict, pes: int, label: str = "utilization") -> str:
    lines = [f"{'GEMM kind':<15}{'commands':>10}{'MACs':>14}{'cycles':>11}{'ideal':>11}"
             f"{label:>13}"]
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


def _measured_with(simulator: str, config) -> dict:
    """The configuration a replay's figures depend on: simulator, engine, trained step, and
    the stream's idle and stall rates."""
    return {"simulator": simulator, "engine": config_to_case(config),
            "train": dataclasses.asdict(REPLAY_CONFIG), "p_idle": P_IDLE, "p_stall": P_STALL}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    parser.add_argument("--no-results", action="store_true",
                        help="do not write docs/results/replay.json")
    parser.add_argument("--skip-window", type=int, default=1,
                        choices=range(1, MAX_SKIP_WINDOW + 1), metavar="D",
                        help=f"the engine's zero-skip lookahead window, 1..{MAX_SKIP_WINDOW} "
                             "(default 1: the dense engine); with D >= 2 the results go to "
                             "replay.window<D> of docs/results/replay.json")
    args = parser.parse_args(argv)
    config = REPLAY_ENGINE
    window = args.skip_window
    if window > 1:
        return replay_window(args, window)
    gemms = training_step_gemms()
    commands = split_step(gemms, config)
    model = step_statistics(commands, config)
    print(f"digits CNN step 0 (batch {REPLAY_CONFIG.batch_size}): {len(gemms)} GEMMs, "
          f"{len(commands)} engine commands on {config.array.rows}x{config.array.cols} "
          f"{config.array.dataflow.upper()}; running on {args.simulator}...", flush=True)
    began = time.perf_counter()
    try:
        with spinner(f"training step on the RTL engine ({args.simulator})"):
            run_dir = run_replay(args.simulator, quiet=True)
    except AssertionError as error:
        print(f"replay FAILED: {error}", file=sys.stderr)
        if not args.no_results:
            record("replay", {"replay_bit_exact": False,
                              "replay_note": f"The last RTL replay ({COMMAND} --simulator "
                                            f"{args.simulator}) failed: {error}"},
                   writer=__name__, config=_measured_with(args.simulator, config))
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
            f"cycles of the cycle model ({COMMAND}; details under 'replay_step').")
    path = record("replay", {"replay_bit_exact": True, "replay_note": note,
                             "replay_step": details},
                  writer=__name__, config=_measured_with(args.simulator, config))
    print(f"wrote {path}; `sparta report` updates docs/workloads.md")
    return 0


def replay_window(args, window: int) -> int:
    """The replay on the engine with a lookahead window of ``window`` steps: the bench checks
    every command's cycles against :func:`sim.skip_timing.engine_cycles` and every result word
    against the golden model; records ``replay.window<D>`` in ``replay.json``."""
    dense_config = REPLAY_ENGINE
    config = with_window(dense_config, window)
    gemms = training_step_gemms()
    commands = split_step(gemms, config)
    dense = step_statistics(commands, dense_config)
    print(f"digits CNN step 0: {len(commands)} engine commands on the 8x8 engine with a "
          f"lookahead window of {window}; running on {args.simulator}...", flush=True)
    began = time.perf_counter()
    with spinner(f"training step on the RTL engine ({args.simulator})"):
        run_dir = run_replay(args.simulator, config=config, quiet=True)
    wall = time.perf_counter() - began
    (metrics,) = read_metrics(run_dir)
    per_kind = measured_per_kind(metrics, commands, config)
    for kind, entry in per_kind.items():
        entry["dense_cycles"] = dense[kind]["cycles"]
        entry["speedup"] = round(dense[kind]["cycles"] / entry["cycles"], 4)
        # dense MACs per PE-cycle: above 1 where skipped products saved cycles
        entry["dense_macs_per_pe_cycle"] = entry.pop("utilization")
    print(_table(per_kind, config.array.pes, label="MACs/PE-cyc"))
    backward = {key: sum(per_kind[k][key] for k in ("weight_grad", "backward_data"))
                for key in ("cycles", "dense_cycles")}
    print(f"every result word bit-exact and every command's cycles equal to "
          f"sim.skip_timing.engine_cycles; step x{per_kind['total']['speedup']:.3f}, backward "
          f"x{backward['dense_cycles'] / backward['cycles']:.3f} over the dense engine "
          f"({wall:.0f} s wall with Verilog generation and build)")
    if args.no_results:
        return 0
    # one key holds every window: this run replaces its window's entry, keeps the others
    replays = load("replay", reader=__name__, missing_ok=True).get("replay", {})
    replays[f"window{window}"] = {
        "simulator": args.simulator, "net": REPLAY_CONFIG.net, "step": 0,
        "engine": config_to_case(config), "commands": per_kind["total"]["commands"],
        "per_kind": per_kind, "backward_cycles": backward["cycles"],
        "backward_cycles_dense": backward["dense_cycles"],
        "note": "no host compaction, no operand swap: the lowering's commands as they are",
        "wall_time_s": round(wall, 1),
        "reproduce": f"{COMMAND} --simulator {args.simulator} --skip-window {window}"}
    path = record("replay", {"replay": replays}, writer=__name__,
                  config={key: {"simulator": entry["simulator"], "engine": entry["engine"]}
                          for key, entry in replays.items()})
    print(f"wrote replay.window{window} of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
