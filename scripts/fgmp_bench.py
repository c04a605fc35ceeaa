"""FGMP measurement: training with FGMP numerics, FP8 share, memory traffic and energy.

    python -m scripts.fgmp_bench                       # digits_cnn and resnet18
    python -m scripts.fgmp_bench --nets digits_cnn     # one network (a few minutes)

For each network, with the configuration of ``scripts.train`` (the one recorded in
``docs/results/workloads.json``, which this script reads for its FP32 accuracy):

1. trains with FGMP numerics (:class:`sim.nn.backend.FgmpBackend`, adaptive per-layer
   thresholds) and with the FP32 reference, same seed, samples and dropout masks;
2. captures the tensors of training steps (first step of every epoch and the last step) and
   prices one whole training step of each with the traffic model of :mod:`sim.fgmp_traffic`
   (fp16 against FGMP, exact stream bytes) and the energy table of :mod:`sim.fgmp_energy`;
3. records ``docs/results/fgmp_bench.json`` (one top-level entry per network and variant,
   and ``model``: what the figures mean) and plots ``docs/fgmp_share_<net>.png`` (FP8 share
   and threshold per layer over training); ``sparta report`` makes docs/fgmp.md's tables.

The figures of the last training step with a whole batch are the headline (the tensors of
the trained network). Steps 1 and 2 are :func:`sim.experiments.fgmp.run_network`; this script
parses the options, plots and records.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # small matmuls, shared machines

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from scripts.cli import comma_subset  # noqa: E402
from scripts.progress import bar  # noqa: E402
from scripts.results import DOCS_DIR, load, record  # noqa: E402
from sim.experiments.fgmp import NETS, config_for, model_entry, run_network  # noqa: E402
from sim.experiments.training import DEFAULTS  # noqa: E402
from sim.fgmp import BLOCK_SIZES, BUS_BYTES, FgmpBlockFormat  # noqa: E402
from sim.fgmp_control import TENSOR_CLASSES, FgmpPolicy  # noqa: E402
from sim.fgmp_energy import HOROWITZ_45NM  # noqa: E402

#: the fields of an entry its figures depend on (hashed into the entry's provenance)
MEASURED_WITH = ("config", "policy", "block_format", "train_samples")
PLOT_CLASSES = {"activation": "activations (X)", "weight": "weights (W)",
                "gradient": "gradients (dY, dW)"}


def _budgets(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"budgets must be three comma-separated numbers "
                                         f"(weights, activations, gradients), not {text!r}")
    return values


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.fgmp_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", type=comma_subset("nets", NETS), default=tuple(NETS),
                        help="comma-separated subset of digits_cnn,resnet18 (default both)")
    parser.add_argument("--resnet-epochs", type=int, default=DEFAULTS["resnet18"]["epochs"],
                        help="training epochs of resnet18 (default: as workloads.json)")
    parser.add_argument("--digits-epochs", type=int, default=DEFAULTS["digits_cnn"]["epochs"],
                        help="training epochs of digits_cnn (default: as workloads.json)")
    parser.add_argument("--train-samples", type=int, default=None,
                        help="use only the first N training samples (smoke runs)")
    parser.add_argument("--block", type=int, default=16, help=f"FGMP block size B "
                        f"{list(BLOCK_SIZES)} (default 16)")
    parser.add_argument("--bus-bytes", type=int, default=16, help=f"bus word W in bytes "
                        f"{list(BUS_BYTES)} (default 16)")
    parser.add_argument("--fixed", action="store_true",
                        help="keep the starting thresholds (no dynamic control); the results go "
                             "to the entry <net>_fixed_t (an ablation)")
    parser.add_argument("--budgets", type=_budgets, default=None, metavar="W,A,G",
                        help="error budgets of weights, activations, gradients (default: those "
                             "of FgmpPolicy)")
    parser.add_argument("--loss-scale", type=float, default=None,
                        help="static loss scale of both runs (default: as workloads.json, 1024; a "
                             "power of two leaves the FP32 run bit for bit unchanged)")
    parser.add_argument("--flush-underflow", type=comma_subset("classes", TENSOR_CLASSES, allow_empty=True),
                        default=("gradient",),
                        metavar="CLASSES",
                        help="tensor classes (comma-separated among weight,activation,gradient) "
                             "whose FP8 underflow is stored as an FP8 zero (default gradient; "
                             "'' for none)")
    parser.add_argument("--label", default="", help="suffix of the fgmp_bench.json entry and "
                        "plot names (<net>_<label>), for variants of the policy")
    parser.add_argument("--capture-dir", default=None,
                        help="where the step captures go (default: a temporary directory)")
    parser.add_argument("--plot-dir", default=str(DOCS_DIR))
    args = parser.parse_args(argv)
    try:
        args.block_format = FgmpBlockFormat(block=args.block, bus_bytes=args.bus_bytes)
        for field in ("resnet_epochs", "digits_epochs"):
            if getattr(args, field) < 1:
                raise ValueError(f"--{field.replace('_', '-')} must be >= 1, "
                                 f"not {getattr(args, field)}")
        if args.train_samples is not None and args.train_samples < 1:
            raise ValueError(f"--train-samples must be >= 1, not {args.train_samples}")
    except ValueError as error:
        parser.error(str(error))
    budgets = {}
    if args.budgets is not None:
        budgets = dict(zip(("budget_weight", "budget_activation", "budget_gradient"),
                           args.budgets))
    if args.label and not args.label.replace("_", "").isalnum():
        parser.error(f"--label must be letters, digits and underscores, not {args.label!r}")
    try:
        if args.loss_scale is not None:
            config_for("digits_cnn", 1, args.loss_scale)      # validates the value
        args.policy = FgmpPolicy(adaptive=not args.fixed, flush_underflow=args.flush_underflow,
                                 **budgets)
    except ValueError as error:
        parser.error(str(error))
    return args


def plot_shares(path: Path, net: str, shares: dict, thresholds: dict, epochs: int) -> None:
    """FP8 share per layer and class over the epochs, and the thresholds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "os^vD<>ph*"
    x = list(range(1, epochs + 1))
    layers = list(shares)
    for axis, cls in zip(axes, PLOT_CLASSES):
        for index, layer in enumerate(layers):
            values = shares[layer].get(cls)
            if values:
                axis.plot(x, [np.nan if v is None else v for v in values],
                          color=colours[index % len(colours)],
                          marker=markers[(index // len(colours)) % len(markers)], markersize=3,
                          label=layer)
        axis.set_title(f"FP8 share of {PLOT_CLASSES[cls]}")
        axis.set_ylim(0, 1.02)
        axis.set_ylabel("FP8 elements / elements")
    axis = axes[3]
    for index, layer in enumerate(layers):
        for cls, style in (("activation", "-"), ("weight", "--"), ("gradient", ":")):
            values = thresholds[layer].get(cls)
            if values:
                jitter = 0.04 * (index - len(layers) / 2) / max(len(layers), 1)
                axis.plot(x, [np.nan if v is None else v + jitter for v in values], style,
                          color=colours[index % len(colours)], marker=".", markersize=3)
    axis.set_title("threshold t (solid X, dashed W, dotted dY)")
    axis.set_ylabel("t (epoch mean)")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center right", fontsize=7 if len(layers) > 8 else 9)
    figure.suptitle(f"{net}: FGMP FP8 share per layer over training (GEMM operands as read; "
                    f"epoch means)")
    figure.tight_layout(rect=(0, 0, 0.88, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _workloads_fp32(net: str) -> float | None:
    entry = load("workloads", reader=__name__, missing_ok=True).get("networks", {}).get(net, {})
    return entry.get("test_accuracy_fp32")


def result_key(net: str, args) -> str:
    """Entry name in fgmp_bench.json: the network, with ``_fixed_t`` for the ablation without
    control and ``_<label>`` for a labelled variant."""
    return net + ("_fixed_t" if args.fixed else "") + (f"_{args.label}" if args.label else "")


def measure(net: str, args, capture_root: Path, log) -> dict:
    """The library's measurement of ``net`` with the options of ``args``, its plot, the FP32
    accuracy of workloads.json and how to reproduce it."""
    entry = run_network(net, epochs=args.resnet_epochs if net == "resnet18" else
                        args.digits_epochs, policy=args.policy, block_format=args.block_format,
                        capture_root=capture_root, loss_scale=args.loss_scale,
                        train_samples=args.train_samples, log=log, progress_bar=bar)
    plot_path = Path(args.plot_dir) / f"fgmp_share_{result_key(net, args)}.png"
    plot_shares(plot_path, net, entry["fp8_share_over_training"], entry["t_over_training"],
                entry["epochs"])
    entry["test_accuracy_fp32_workloads_json"] = _workloads_fp32(net)
    entry["plot"] = str(plot_path.relative_to(DOCS_DIR.parent)) \
        if plot_path.is_relative_to(DOCS_DIR.parent) else str(plot_path)
    entry["reproduce"] = "python -m scripts.fgmp_bench " + " ".join(
        args.argv if args.argv is not None else sys.argv[1:])
    return entry


def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = argv
    log = lambda line: print(line, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="sparta_fgmp_") as scratch:
        capture_root = Path(args.capture_dir).expanduser() if args.capture_dir else Path(scratch)
        for net in args.nets:
            start = time.perf_counter()
            entry = measure(net, args, capture_root, log)
            path = record("fgmp_bench", {result_key(net, args): entry}, writer=__name__,
                          config={key: entry[key] for key in MEASURED_WITH})
            print(f"{net}: traffic fp16 {entry['bytes_fp16']} B -> FGMP {entry['bytes_fgmp']} B "
                  f"({entry['traffic_reduction_percent']:.2f} % less; target >= 38.9 %, "
                  f"ceiling 43.75 % with B={args.block}), FP8 share {entry['fp8_share']:.4f}; "
                  f"test accuracy FGMP {entry['test_accuracy_fgmp']:.4f} vs FP32 "
                  f"{entry['test_accuracy_fp32']:.4f} (gap {entry['accuracy_gap_points']:+.2f} "
                  f"points); energy {entry['energy_pj_fp16'] / 1e6:.2f} uJ -> "
                  f"{entry['energy_pj_fgmp'] / 1e6:.2f} uJ per step "
                  f"({entry['energy_efficiency_ratio']:.3f}x); "
                  f"{time.perf_counter() - start:.0f} s; wrote {path}", flush=True)
    record("fgmp_bench", {"model": model_entry()}, writer=__name__, config=HOROWITZ_45NM)
    print("`sparta report` updates docs/fgmp.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
