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

from scripts.results import DOCS_DIR, record
from scripts.sparsity_study import add_capture_arguments, captures
from sim.experiments.skip import measure_step
from sim.experiments.sparsity import WIDTH, timing_config
from sim.experiments.transposed import measure_layers
from sim.nn import build_network

__all__ = ["VARIANTS", "main"]

#: The variants reported (all are measured): dense, the RTL's window (d = 3) alone, with
#: output masks, with the host's compaction and weight-gradient swap.
VARIANTS = ("dense", "la3", "la3_mask", "la3_compact_swap")


def network_entry(config, net_name: str, path) -> dict:
    """One network's last captured step: both lowerings per layer and the backward pass."""
    net = build_network(net_name, width=WIDTH)
    step = measure_step(config, net, path, log=lambda line: None)
    measured = measure_layers(config, net, path)
    backward = step["totals"]["backward"]
    layers, swapped = {}, dict(backward["cycles"])
    ideal = backward["ideal"]
    for name, entry in measured["layers"].items():
        original, transposed = entry["original"], entry["transposed"]
        layers[name] = {kind: {"M": e["M"], "N": e["N"], "K": e["K"], "ideal": e["ideal"],
                               "cycles": {v: e["cycles"][v] for v in VARIANTS}}
                        for kind, e in (("original", original), ("transposed", transposed))}
        for variant in swapped:
            if variant == "dense":           # the baseline stays the original lowering
                continue
            swapped[variant] += transposed["cycles"][variant] - original["cycles"][variant]
    dense = backward["cycles"]["dense"]
    return {"step": step["step"], "batch": step["batch"], "capture": step["capture"],
            "layers": layers,
            "backward": {"original": {v: backward["cycles"][v] for v in VARIANTS},
                         "transposed": {v: swapped[v] for v in VARIANTS},
                         "ideal": ideal,
                         "speedup_original": {v: round(dense / backward["cycles"][v], 4)
                                              for v in VARIANTS},
                         "speedup_transposed": {v: round(dense / swapped[v], 4)
                                                for v in VARIANTS}}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_capture_arguments(parser)
    parser.set_defaults(nets=("digits_cnn",))
    args = parser.parse_args(argv)
    config = timing_config()
    steps = None if args.steps is None else [int(s) for s in args.steps.split(",")]
    began = time.perf_counter()
    entries = {}
    for net_name in args.nets:
        paths = captures(Path(args.capture_dir).expanduser(), net_name, steps)
        entry = network_entry(config, net_name, paths[-1])
        for layer, row in entry["layers"].items():
            for kind in ("original", "transposed"):
                e = row[kind]
                print(f"{net_name} {layer} {kind:10s} {e['M']}x{e['N']}x{e['K']}: "
                      + ", ".join(f"{v} {e['cycles'][v]}" for v in VARIANTS)
                      + f", ideal {e['ideal']}")
        back = entry["backward"]
        print(f"{net_name} backward pass: la3 x{back['speedup_original']['la3']:.3f} -> "
              f"x{back['speedup_transposed']['la3']:.3f}, la3_mask "
              f"x{back['speedup_original']['la3_mask']:.3f} -> "
              f"x{back['speedup_transposed']['la3_mask']:.3f} vs dense (cycle model)")
        entries[net_name] = {**entry, "wall_time_s": round(time.perf_counter() - began, 1),
                             "command": "python -m scripts.transposed_bench"}
    if args.no_write:
        return 0
    from scripts import report

    path = record("transposed", entries, writer=__name__, config=config)
    print(f"wrote {path}")
    for written in report.write([DOCS_DIR / "schedule.md"]):
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
