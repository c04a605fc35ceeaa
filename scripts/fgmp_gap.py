"""Where FGMP's FP8 share goes: per class and layer, why elements of a step stay fp16.

    python -m scripts.fgmp_gap capture --net resnet18         # train once, keep the tensors
    python -m scripts.fgmp_gap analyse --net resnet18         # offline, seconds
    python -m scripts.fgmp_gap analyse --net resnet18 --record    # -> docs/results/fgmp_gap.json

``capture`` trains a network with FGMP numerics exactly as ``scripts.fgmp_bench
--flush-underflow ''`` does (same configuration and seed, the policy ``FgmpPolicy()`` without
the gradient flush that the bench now sets by default: this is the analysis that led to it;
the FP32 reference run is skipped) and keeps, under
``--capture-dir`` (default ``~/.cache/sparta/fgmp_gap``), the tensors of the steps that
fgmp_bench prices plus the last steps of the run, and the controller's history (the ``t`` of
every layer and class in every step).

``analyse`` prices a captured step with the traffic model of :mod:`sim.fgmp_traffic` and
splits every fp16 element moved on the bus by the reason the rule of :mod:`sim.fgmp` gave it
(FP8 overflow, underflow below the FP8 format's smallest subnormal, a value below the FP8
normal range whose FP8 value errs by more than ``2**-t``, a value that would be FP8 at the
start threshold but not at the ``t`` the controller raised, NaN or infinity), per tensor class
and per stored tensor, in points of traffic reduction (each fp16 element costs one byte more
than an FP8 one). It checks the controller's raises on the step (the error signal at the start
``t`` against the budget), measures what flushing the gradients' FP8 underflow to zero does to
the weight and input gradients, and where those underflows come from (the per-sample loss).
It then re-prices the same tensors under alternative policies (see
:func:`sim.experiments.fgmp.variants`): what-if figures for the traffic, not for the training
(a policy that changes the numerics has to be trained end to end with ``scripts.fgmp_bench``).

Both are computed by :mod:`sim.experiments.fgmp` (:func:`~sim.experiments.fgmp.capture_for_gap`,
:func:`~sim.experiments.fgmp.analyse_gap`); this script parses, prints and records.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from scripts.progress import bar  # noqa: E402
from scripts.results import record  # noqa: E402
from sim.experiments.fgmp import (FP16_REASONS, NETS, analyse_gap, capture_for_gap,  # noqa: E402
                                  load_gap_run)
from sim.fgmp import FgmpBlockFormat  # noqa: E402
from sim.fgmp_control import FgmpPolicy  # noqa: E402

DEFAULT_CAPTURE_DIR = Path("~/.cache/sparta/fgmp_gap")


def analyse(net: str, root: Path, step: int | None, block: FgmpBlockFormat) -> dict:
    """The library's report of a captured step, with the commands that make and reproduce it."""
    try:
        run = load_gap_run(root, net)
    except FileNotFoundError:
        raise SystemExit(f"no capture of {net} under {root}: run "
                         f"`python -m scripts.fgmp_gap capture --net {net}` first") from None
    report = analyse_gap(net, root, step, block, run=run)
    return {"capture": f"python -m scripts.fgmp_gap capture --net {net}",
            "reproduce": f"python -m scripts.fgmp_gap analyse --net {net}"
                         + ("" if report["step"] == run["last_step"] else
                            f" --step {report['step']}"),
            **report}


def print_report(net: str, report: dict) -> None:
    print(f"{net}, step {report['step']} (epoch {report['epoch']}): reduction "
          f"{report['reduction_percent']:.2f} % (ceiling {report['ceiling_percent']:.2f} %)")
    print("points of reduction lost to fp16 elements, by class and reason:")
    print(f"  {'class':11s}" + "".join(f"{r:>17s}" for r in FP16_REASONS))
    for cls, cell in report["fp16_elements_moved_points"].items():
        print(f"  {cls:11s}" + "".join(f"{cell[r]:17.3f}" for r in FP16_REASONS))
    print("stored tensors with fp16 elements (elements x accesses, by reason):")
    rows = sorted(report["tensors"], key=lambda r: -sum(r[x] for x in FP16_REASONS) *
                  r["accesses"])
    for row in rows[:25]:
        fp16 = sum(row[x] for x in FP16_REASONS)
        if not fp16:
            continue
        print(f"  {row['tensor']:32s} {row['class']:10s} t={row['t']:2d} x{row['accesses']} "
              f"FP8 {1 - fp16 / row['elements']:.3f} "
              + " ".join(f"{r}={row[r]}" for r in FP16_REASONS if row[r]))
    print("variants priced on the same tensors (reduction %, by class):")
    for name, v in report["variants"].items():
        classes = ", ".join(f"{k} {x:.2f}" for k, x in v["by_class_percent"].items()
                            if k != "fp32")
        print(f"  {name:24s} {v['reduction_percent']:7.3f}   ({classes})  {v['what']}")
    print("thresholds the control raised: the step's error signal at the start t and at t:")
    for row in report["raised_t_check"]:
        print(f"  {row['layer']:20s} {row['class']:10s} t {row['t_start']} -> {row['t']}: "
              f"error {row['error_at_start']:.4f} -> {row['error_at_t']:.4f} "
              f"(budget {row['budget']})")
    effect = report["flush_gradient_effect"]
    share = effect["underflows_in_those_samples"]
    print("flushing the gradients' FP8 underflow: " + (
        "no gradient underflows in this step" if share is None else
        f"{share:.1%} of the underflows are in the {effect['samples_with_loss_below_1e-3']} "
        f"of {effect['batch']} samples with a loss below 1e-3") + "; per layer:")
    for name, row in effect["layers"].items():
        print(f"  {name:20s} " + ", ".join(f"{k} {v:g}" for k, v in row.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.fgmp_gap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("capture", "analyse"))
    parser.add_argument("--net", choices=NETS, default="resnet18")
    parser.add_argument("--capture-dir", default=str(DEFAULT_CAPTURE_DIR))
    parser.add_argument("--step", type=int, default=None,
                        help="captured step to analyse (default: the headline, last step)")
    parser.add_argument("--record", action="store_true",
                        help="analyse: record the report as gap_<net> in "
                             "docs/results/fgmp_gap.json")
    parser.add_argument("--epochs", type=int, default=None,
                        help="capture: training epochs (default: as workloads.json)")
    parser.add_argument("--train-samples", type=int, default=None,
                        help="capture: only the first N training samples (smoke runs)")
    args = parser.parse_args(argv)
    for field in ("epochs", "train_samples"):
        value = getattr(args, field)
        if value is not None and value < 1:
            parser.error(f"--{field.replace('_', '-')} must be >= 1, not {value}")
    root = Path(args.capture_dir).expanduser()
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.mode == "capture":
        path, run = capture_for_gap(args.net, root, epochs=args.epochs,
                                    train_samples=args.train_samples, log=log, progress_bar=bar)
        log(f"[{args.net}] test accuracy {run['test_accuracy']:.4f}; wrote {path}")
    else:
        block = FgmpBlockFormat()
        report = analyse(args.net, root, args.step, block)
        print_report(args.net, report)
        if args.record:
            path = record("fgmp_gap", {f"gap_{args.net}": report}, writer=__name__,
                          config={"policy": FgmpPolicy(), "block_format": block,
                                  "step": report["step"]})
            print(f"wrote gap_{args.net} in {path}; `sparta report` updates docs/fgmp.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
