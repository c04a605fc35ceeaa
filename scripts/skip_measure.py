"""Cycles of the zero-skipping design the RTL implements (issue 5, item 8), on captured training
steps.

The measurement (the engine's lookahead window plus the host's lane compaction and
weight-gradient swap, every variant's cycles per GEMM command of a captured step, the headline
keys and the default design within the area budget) is :mod:`sim.experiments.skip`; the GEMM
commands are rebuilt from the captures exactly as in the design study
(:func:`sim.experiments.sparsity.capture_gemms`). This script reads the captures, prints,
plots and records: every capture but step 0 is measured and the last captured step of each
network is the headline.

Records into ``docs/results/skip_measure.json`` the ``measurement`` section, the per-network
headline keys (``digits_cnn``, ``resnet18``; their ``skip_area_overhead`` from
``docs/results/skip_area.json``, :mod:`scripts.skip_area`) and ``setup`` (the variants, timing
constants, targets and default the page states); other keys are kept. Then writes
``docs/skip_measure.png`` and has ``sparta report`` write ``docs/skip_measure.md``
(:mod:`scripts.report.sparsity`). ``--report-only`` measures nothing: it rewrites the headline
keys and ``setup`` from the recorded measurement (after a new ``scripts.skip_area``), the plot
and the page.

Usage: python -m scripts.skip_measure [--nets digits_cnn,resnet18] [--steps 405,899]
       [--capture-dir ~/.cache/sparta/captures] [--default la4_compact_swap] [--no-write]
       [--report-only]
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from scripts.progress import track  # noqa: E402
from scripts.results import DOCS_DIR, load, record  # noqa: E402
from scripts.sparsity_study import add_capture_arguments, captures  # noqa: E402
from sim.experiments.skip import (BACKWARD_KINDS, DEFAULT, VARIANT_NAMES,  # noqa: E402
                                  choose_default, headline, measure_step, measurement_section,
                                  of_ideal, setup, speedup)
from sim.experiments.sparsity import WIDTH, timing_config  # noqa: E402
from sim.nn import build_network  # noqa: E402


def plot(networks, design: str, path: Path) -> None:
    """Left: backward commands of digits_cnn (last step), cycles dense / design / ideal.
    Right: speedup of every backward command against its measured sparsity, both networks."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    if "digits_cnn" in networks:
        step = networks["digits_cnn"]["steps"][-1]
        rows = [r for r in step["commands"] if r["kind"] in BACKWARD_KINDS]
        x = np.arange(len(rows))
        width = 0.27
        left.bar(x - width, [r["cycles"]["dense"] for r in rows], width, label="dense")
        left.bar(x, [r["cycles"][design] for r in rows], width, label=design)
        left.bar(x + width, [max(1, r["ideal"]) for r in rows], width,
                 label="ideal (non-zero MACs / 64)")
        left.set_xticks(x, [r["name"] for r in rows], rotation=35, ha="right", fontsize=7)
        left.set_yscale("log")
        left.set_ylabel("cycles")
        left.set_title(f"digits_cnn backward GEMMs, step {step['step']}")
        left.grid(True, axis="y", which="both", alpha=0.3)
        left.legend(fontsize=7)
    curve = np.linspace(0, 0.97, 100)
    right.plot(curve, 1 / (1 - curve), "k:", label="1 / (1 - sparsity)")
    styles = zip(["o", "s", "^"], ["tab:blue", "tab:purple", "tab:olive"])
    for (net, result), (marker, color) in zip(networks.items(), styles):
        step = result["steps"][-1]
        rows = [r for r in step["commands"] if r["kind"] in BACKWARD_KINDS]
        sparsity = [r["mac_sparsity"] for r in rows]
        right.scatter(sparsity, [speedup(r, design) for r in rows], marker=marker, s=26,
                      alpha=0.8, color=color, label=f"{net} (step {step['step']}), {design}")
        right.scatter(sparsity, [r["cycles"]["dense"] / max(1, r["ideal"]) for r in rows],
                      marker="_", s=90, alpha=0.6, color=color,
                      label=f"{net}, ideal (non-zero MACs / 64)")
    right.set_yscale("log")
    right.set_ylim(0.8, 60)
    right.set_xlim(0, 1)
    right.set_xlabel("measured sparsity of the GEMM (1 - non-zero MACs / MACs)")
    right.set_ylabel("speedup over the dense engine")
    right.set_title("backward GEMMs (one point per command)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(networks, design: str, existing=None, skip_area=None, replay=None) -> str:
    """``docs/skip_measure.md`` as ``sparta report`` renders it
    (:func:`scripts.report.sparsity.skip_measure_markdown`) from a measurement held in memory
    (``skip_area``: the ``skip_area`` key of ``skip_area.json``; ``replay``: the ``replay``
    key of ``replay.json``)."""
    from scripts.report.sparsity import skip_measure_markdown

    existing = existing or {}
    data = {"measurement": {"networks": networks},
            "setup": setup(design, choose_default(networks, skip_area)),
            **{net: headline(result["steps"][-1], design, existing.get(net), skip_area)
               for net, result in networks.items()}}
    return skip_measure_markdown(data, skip_area, replay)


def write_report(networks, design: str, docs_dir: Path, existing=None, skip_area=None,
                 replay=None) -> tuple[Path, Path]:
    """Write ``skip_measure.md`` and ``skip_measure.png`` of a measurement held in memory into
    ``docs_dir`` (the published page is written by ``sparta report``)."""
    md, png = docs_dir / "skip_measure.md", docs_dir / "skip_measure.png"
    plot(networks, design, png)
    md.write_text(markdown(networks, design, existing, skip_area, replay))
    return md, png


# ----------------------------------------------------------------------------- main

def publish(design, skip_area, measured=None) -> None:
    """Record the headline keys (``design`` at each network's last step), ``setup`` and, after a
    measurement (``measured``: network -> steps), the ``measurement`` section into
    ``docs/results/skip_measure.json`` (without a measurement, only the keys that change); then
    the plot and ``docs/skip_measure.md``."""
    from scripts import report

    data = load("skip_measure", reader=__name__, missing_ok=True)
    entries = {}
    if measured is not None:
        entries["measurement"] = measurement_section(measured, design, data.get("measurement"))
        networks = entries["measurement"]["networks"]
    else:
        networks = data["measurement"]["networks"]
    entries.update({net: headline(networks[net]["steps"][-1], design, data.get(net), skip_area)
                    for net in (networks if measured is None else measured)})
    entries["setup"] = setup(design, choose_default(networks, skip_area))
    if measured is None:    # unchanged keys keep the provenance of the run that measured them
        entries = {key: value for key, value in entries.items()
                   if json.loads(json.dumps(value)) != data.get(key)}
    if entries:
        path = record("skip_measure", entries, writer=__name__, config=timing_config())
        print(f"wrote {', '.join(sorted(entries))} of {path} (default {design})")
    plot(networks, design, DOCS_DIR / "skip_measure.png")
    print(f"wrote {DOCS_DIR / 'skip_measure.png'}")
    report.rewrite("skip_measure.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_capture_arguments(parser)
    parser.add_argument("--default", default=None, choices=VARIANT_NAMES,
                        help="the design of the headline keys (default: the fastest window "
                             "whose measured area fits the budget, see choose_default)")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: rewrite the headline keys and setup of "
                             "docs/results/skip_measure.json from its measurement and "
                             "skip_area.json (after scripts.skip_area), the plot and the page")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    skip_area = load("skip_area", reader=__name__, missing_ok=True).get("skip_area")
    if args.report_only:
        networks = load("skip_measure", reader=__name__)["measurement"]["networks"]
        publish(args.default or choose_default(networks, skip_area), skip_area)
        return 0
    config = timing_config()
    steps = None if args.steps is None else [int(s) for s in args.steps.split(",")]
    capture_dir = Path(args.capture_dir).expanduser()
    results = {}
    for net_name in args.nets:
        net = build_network(net_name, width=WIDTH)
        results[net_name] = {"steps": []}
        for path in track(captures(capture_dir, net_name, steps),
                          f"{net_name}: captured steps"):
            print(f"{net_name}: {path}")
            results[net_name]["steps"].append(
                measure_step(config, net, path, design=args.default or DEFAULT))
        for step in results[net_name]["steps"]:
            back = step["totals"]["backward"]
            print(f"{net_name} step {step['step']}: backward x (% of ideal): " +
                  ", ".join(f"{name} {speedup(back, name):.2f} "
                            f"({100 * of_ideal(back, name):.0f}%)" for name in VARIANT_NAMES))
    if not args.no_write:
        previous = load("skip_measure", reader=__name__, missing_ok=True).get("measurement", {})
        networks = {**previous.get("networks", {}), **results}
        publish(args.default or choose_default(networks, skip_area), skip_area, results)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
