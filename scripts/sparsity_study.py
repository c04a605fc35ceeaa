"""Design study of zero skipping on the output-stationary engine, on captured training tensors.

The study itself (operands rebuilt from the captures and checked against step 0's captured
GEMM operands, the skipping designs' cycles on the 8 x 8 OS engine, the ideal, the
transposed-convolution lowering of backward data) is :mod:`sim.experiments.sparsity`; this
script reads the captures of the digits CNN and of the ResNet-18 topology, prints, plots and
records.

Records ``study`` and ``setup`` (the designs in order, timing constants, budget and targets
the page states) into ``docs/results/sparsity_study.json``, writes ``docs/sparsity_study.png``
(speedup against measured sparsity) and has ``sparta report`` write ``docs/sparsity_study.md``
(:mod:`scripts.report.sparsity`). ``--report-only`` measures nothing: it records ``setup`` and
rewrites the plot and the page from the recorded ``study``.

Usage: python -m scripts.sparsity_study [--nets digits_cnn,resnet18] [--steps 405,899]
       [--capture-dir ~/.cache/sparta/captures] [--no-write] [--report-only]

Captures come from ``python -m scripts.train --net <net> --backends accel`` (layer tensors of
the first, a middle and the last step); step 0 (untrained) is only used to check the operand
reconstruction.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from scripts.cli import comma_subset  # noqa: E402
from scripts.progress import track  # noqa: E402
from scripts.results import DOCS_DIR, load, record  # noqa: E402
from sim.experiments.sparsity import (DESIGN_NAMES, NETS, PLOT_DESIGNS, WIDTH,  # noqa: E402
                                      areas, find_captures, of_ideal, setup, speedup,
                                      study_section, study_step, timing_config,
                                      verify_reconstruction)
from sim.nn import build_network  # noqa: E402


def plot(results, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(results)
    figure, axes = plt.subplots(1, len(nets), figsize=(6 * len(nets), 4.6), squeeze=False)
    markers = ["o", "s", "^", "D", "v"]
    for axis, net in zip(axes[0], nets):
        step = results[net]["steps"][-1]
        rows = [r for r in step["commands"] if r["M"] * r["N"] * r["K"] >= 4096]
        x = np.array([r["mac_sparsity"] for r in rows])
        curve = np.linspace(0, 0.97, 100)
        axis.plot(curve, 1 / (1 - curve), "k:", label="1 / (1 - sparsity)")
        axis.scatter(x, [r["cycles"]["dense"] / max(1, r["ideal"]) for r in rows], marker="_",
                     s=120, color="black", label="ideal (non-zero MACs / 64)")
        for marker, name in zip(markers, PLOT_DESIGNS):
            axis.scatter(x, [r["cycles"]["dense"] / r["cycles"][name] for r in rows],
                         marker=marker, s=22, alpha=0.75, label=name)
        axis.set_yscale("log")
        axis.set_ylim(0.9, 40)
        axis.set_xlim(0, 1)
        axis.set_xlabel("measured sparsity of the GEMM (1 - non-zero MACs / MACs)")
        axis.set_ylabel("speedup over the dense engine")
        axis.set_title(f"{net}, step {step['step']} (one point per GEMM)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def add_capture_arguments(parser) -> None:
    """``--nets``, ``--steps``, ``--capture-dir`` and ``--no-write``: which captured steps a
    script reads, and whether it writes its results."""
    parser.add_argument("--nets", type=comma_subset("nets", NETS), default=tuple(NETS),
                        help=f"comma-separated subset of {','.join(NETS)} (default all)")
    parser.add_argument("--steps", default=None,
                        help="comma-separated capture steps (default: every capture but step 0)")
    parser.add_argument("--capture-dir", default="~/.cache/sparta/captures")
    parser.add_argument("--no-write", action="store_true", help="print only")


def captures(capture_dir: Path, net: str, steps) -> list[Path]:
    """:func:`sim.experiments.sparsity.find_captures`, a missing capture ending the script."""
    try:
        return find_captures(capture_dir, net, steps)
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_capture_arguments(parser)
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: record setup, rewrite the plot and the page from "
                             "docs/results/sparsity_study.json")
    args = parser.parse_args(argv)
    config = timing_config()
    if args.report_only:
        study = load("sparsity_study", reader=__name__)["study"]
        publish({"setup": setup(config)}, study["networks"], only_changed=True)
        return 0
    nets = args.nets
    steps = None if args.steps is None else [int(s) for s in args.steps.split(",")]
    capture_dir = Path(args.capture_dir).expanduser()
    log = print
    results = {}
    for net_name in nets:
        net = build_network(net_name, width=WIDTH)
        initial = capture_dir / net_name / "accel" / "step_000000.npz"
        if initial.exists():
            checked = verify_reconstruction(net, initial)
            log(f"{net_name}: rebuilt operands equal the captured ones for {checked} commands "
                f"of step 0")
        results[net_name] = {"steps": []}
        for path in track(captures(capture_dir, net_name, steps),
                          f"{net_name}: captured steps"):
            log(f"{net_name}: {path}")
            results[net_name]["steps"].append(study_step(config, net, path, log))
        for step in results[net_name]["steps"]:
            t = step["totals"]["backward"]
            log(f"{net_name} step {step['step']}: backward speedup (% of ideal): " +
                ", ".join(f"{name} {speedup(t, name):.2f} ({100 * of_ideal(t, name):.0f}%)"
                          for name in DESIGN_NAMES))
    area = areas(config)
    if args.no_write:
        return 0
    publish({"study": study_section(results, area), "setup": setup(config)}, results)
    return 0


def publish(entries, networks, *, only_changed=False) -> None:
    """Record ``entries`` into ``docs/results/sparsity_study.json`` (``only_changed``: only
    those that differ from the recorded ones, the others keeping their provenance), plot
    ``networks`` and have ``sparta report`` write ``docs/sparsity_study.md``
    (:mod:`scripts.report.sparsity`)."""
    from scripts import report

    if only_changed:
        recorded = load("sparsity_study", reader=__name__, missing_ok=True)
        entries = {key: value for key, value in entries.items()
                   if json.loads(json.dumps(value)) != recorded.get(key)}
    if entries:
        path = record("sparsity_study", entries, writer=__name__, config=timing_config())
        print(f"wrote {', '.join(sorted(entries))} of {path}")
    plot(networks, DOCS_DIR / "sparsity_study.png")
    print(f"wrote {DOCS_DIR / 'sparsity_study.png'}")
    report.rewrite("sparsity_study.md")


if __name__ == "__main__":
    sys.exit(main())
