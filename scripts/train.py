"""Train a workload network on the digits with the accelerator's numerics and in FP32.

    python -m scripts.train --net digits_cnn --epochs 20

Both runs use the same initial weights, sample order and dropout masks; only the GEMM numerics
differ (:mod:`sim.nn.backend`). Records (:func:`scripts.results.record`)

* ``docs/results/workloads.json``, ``networks.<net>``: the test accuracies, the training
  curve, the per-layer sparsity of the last epoch, the GEMM commands of each layer and their
  execution order (``gemm_order``); other networks' entries are kept;
* ``docs/results/sparsity_over_training.json``, ``<net>``: per-layer fractions of zeros over
  the epochs, and the plot ``docs/sparsity_<net>.png``;
* captures (npz) of weights, activations, gradients and masks, and of the GEMM operands of
  the replay step, under ``--capture-dir`` (default ``~/.cache/sparta/captures``).

The defaults, the data and the entry are those of :mod:`sim.experiments.training`.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # One BLAS thread: the FP32 reference's matmuls are small, and the machines are shared
    # (a second spinning thread slows them down 100x under load). Set before numpy loads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from scripts.cli import comma_subset  # noqa: E402
from scripts.progress import bar  # noqa: E402
from scripts.results import DOCS_DIR, load, record  # noqa: E402
from sim.experiments.training import (DEFAULTS, TRAINING, default_capture_steps,  # noqa: E402
                                      network_entry, workload_data)
from sim.nn import NETWORKS, TrainConfig, make_backend, train  # noqa: E402
from sim.nn.train import SPARSITY_KEYS  # noqa: E402

BACKEND_NAMES = ("accel", "fp32")
UNITS = ("accuracies are fractions of the 360-sample test set; "
         "accuracy_gap_points = 100 * (fp32 - accel)")


def _steps(text: str) -> list[int]:
    if not text.strip():
        return []
    try:
        steps = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated step numbers, not {text!r}")
    if any(s < 0 for s in steps):
        raise argparse.ArgumentTypeError(f"step numbers must be >= 0, not {text!r}")
    return steps


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", required=True, choices=sorted(NETWORKS))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--width", type=int, help="channel/unit scale (default 8)")
    parser.add_argument("--batch-size", type=int, default=TRAINING["batch_size"])
    parser.add_argument("--lr", type=float)
    parser.add_argument("--momentum", type=float, default=TRAINING["momentum"])
    parser.add_argument("--weight-decay", type=float, default=TRAINING["weight_decay"])
    parser.add_argument("--dropout", type=float, help="drop probability (not used by resnet18)")
    parser.add_argument("--loss-scale", type=float, help="static loss scale (default 1024)")
    parser.add_argument("--lr-schedule", default=TRAINING["lr_schedule"],
                        help="cosine (default) or constant")
    parser.add_argument("--seed", type=int, default=TRAINING["seed"])
    parser.add_argument("--backends", type=comma_subset("backends", BACKEND_NAMES),
                        default=tuple(BACKEND_NAMES),
                        help="comma-separated subset of accel,fp32 (default both)")
    parser.add_argument("--capture-dir", default="~/.cache/sparta/captures",
                        help="where the npz captures go (outside the source tree)")
    parser.add_argument("--capture-steps", type=_steps,
                        help="global steps to capture (default: first step, first step of the "
                             "middle epoch, last step); empty string for none")
    parser.add_argument("--gemm-capture-steps", type=_steps, default=[0],
                        help="steps whose GEMM operands are captured too (default 0)")
    parser.add_argument("--plot-dir", default=str(DOCS_DIR))
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.net].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.config = TrainConfig(net=args.net, width=args.width, epochs=args.epochs,
                                  batch_size=args.batch_size, lr=args.lr,
                                  momentum=args.momentum, weight_decay=args.weight_decay,
                                  dropout=args.dropout, loss_scale=args.loss_scale,
                                  lr_schedule=args.lr_schedule, seed=args.seed)
    except ValueError as error:
        parser.error(str(error))
    return args


def plot_sparsity(path: Path, net: str, epochs: list[int], sparsity: dict) -> None:
    """One panel per statistic, one line per layer; ``sparsity[backend][layer][key]`` lists
    the fractions per epoch (the layout of sparsity_over_training.json)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    titles = {"activation_zero_fraction": "zeros in input activations X",
              "grad_zero_fraction": "zeros in output gradients dY",
              "mask_zero_fraction": "zeros in the ReLU/dropout masks of dY"}
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "os^vD<>ph*"
    layers = list(next(iter(sparsity.values())))
    for axis, key in zip(axes, SPARSITY_KEYS):
        for backend, style in (("accel", "-"), ("fp32", ":")):
            for index, layer in enumerate(layers):
                values = sparsity.get(backend, {}).get(layer, {}).get(key)
                if not values or all(v is None for v in values):
                    continue
                colour = colours[index % len(colours)]
                marker = markers[(index // len(colours)) % len(markers)]
                axis.plot(epochs, [float("nan") if v is None else v for v in values], style,
                          color=colour, marker=marker if backend == "accel" else None,
                          markersize=3, label=layer if backend == "accel" else None)
        axis.set_title(titles[key])
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of zeros")
    axes[0].set_ylim(0, 1)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center right", fontsize=7 if len(layers) > 8 else 9)
    figure.suptitle(f"{net}: fraction of zeros per layer over training "
                    f"(solid: accelerator numerics, dotted: FP32 reference)")
    figure.tight_layout(rect=(0, 0, 0.89, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    args = parse_args(argv)
    config = args.config
    data = workload_data(config.net)
    capture_steps = args.capture_steps
    if capture_steps is None:
        capture_steps = default_capture_steps(config, len(data.x_train))
    results = {}
    for name in args.backends:
        backend = make_backend(name)
        with bar(f"{config.net}, {name} numerics: training steps") as progress:
            results[name] = train(config, backend, data, capture_dir=args.capture_dir,
                                  capture_steps=capture_steps if name == "accel" else (),
                                  gemm_capture_steps=args.gemm_capture_steps if name == "accel"
                                  else (),
                                  log=lambda line: print(line, flush=True), progress=progress)
    commands = config.build().commands(batch_size=config.batch_size)
    command_line = "python -m scripts.train " + " ".join(
        argv if argv is not None else sys.argv[1:])
    # one key holds every network: this run replaces its network's entry, keeps the others
    networks = load("workloads", reader=__name__, missing_ok=True).get("networks", {})
    networks[config.net] = network_entry(config, results, data, commands, command_line)
    path = record("workloads", {"networks": networks, "units": UNITS}, writer=__name__,
                  config={net: entry["config"] for net, entry in networks.items()})
    epochs = next(iter(results.values())).curve["epoch"][1:]
    record("sparsity_over_training", {config.net: {
        "epoch": epochs, "keys": list(SPARSITY_KEYS),
        **{name: result.sparsity for name, result in results.items()}}},
        writer=__name__, config=config)
    plot_sparsity(Path(args.plot_dir) / f"sparsity_{config.net}.png", config.net, epochs,
                  {name: result.sparsity for name, result in results.items()})
    for name, result in results.items():
        print(f"{config.net} {name}: test accuracy {result.test_accuracy:.4f} "
              f"after {config.epochs} epochs ({result.wall_time_s:.0f} s)")
    print(f"wrote networks.{config.net} of {path}; `sparta report` updates docs/workloads.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
