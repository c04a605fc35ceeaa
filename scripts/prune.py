"""Prune the workload networks by magnitude with fine-tuning; accuracy against sparsity.

    python -m scripts.prune --nets digits_cnn,digits_mlp        (sparta prune; ~3 min)
    python -m scripts.prune --nets resnet18                     (~55 min on one core)

Runs :func:`sim.experiments.pruning.prune_network` for each network (dense training with the
accelerator numerics, then 50/70/80/90% per layer, fine-tuned level by level) and records
``docs/results/pruning.json`` (one key per network; other networks' keys are kept) and the plot
``docs/pruning.png``. The weights of each level go to ``--weights-dir`` (default
``$SPARTA_BUILD_DIR/pruned``), where the scheduler's measurement (:mod:`scripts.schedule_bench`)
takes them.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # as scripts.train: small matmuls

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

from scripts.cli import comma_subset  # noqa: E402
from scripts.results import DOCS_DIR, load, record  # noqa: E402
from sim.elaborate import build_root  # noqa: E402
from sim.experiments.pruning import FINETUNE_EPOCHS, prune_network  # noqa: E402

NETS = tuple(FINETUNE_EPOCHS)
PLOT = DOCS_DIR / "pruning.png"


def default_weights_dir() -> Path:
    return build_root() / "pruned"


def plot(results: dict, path: Path) -> None:
    """Test accuracy after fine-tuning (and right after pruning, dotted) against sparsity."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for net in NETS:
        entry = results.get(net)
        if not entry:
            continue
        xs = [0.0] + [level["sparsity"] for level in entry["levels"]]
        tuned = [entry["test_accuracy_dense"]] + [level["test_accuracy_finetuned"]
                                                  for level in entry["levels"]]
        line, = axis.plot(xs, tuned, "o-", label=f"{net} (fine-tuned)")
        axis.plot(xs[1:], [level["test_accuracy_pruned"] for level in entry["levels"]], "x:",
                  color=line.get_color(), label=f"{net} (just pruned)")
    axis.set_xlabel("fraction of each pruned layer's weights set to zero")
    axis.set_ylabel("test accuracy (accelerator numerics)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title("Iterative magnitude pruning, per layer, fine-tuned between levels")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.prune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", type=comma_subset("nets", NETS), default=("digits_cnn",
                                                                            "digits_mlp"),
                        help=f"comma-separated subset of {','.join(NETS)}")
    parser.add_argument("--dense-epochs", type=int, help="(default: the workload's epochs)")
    parser.add_argument("--finetune-epochs", type=int,
                        help=f"per level (default {FINETUNE_EPOCHS})")
    parser.add_argument("--train-samples", type=int, help="first N training samples (smoke)")
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true", help="do not record the results")
    args = parser.parse_args(argv)
    weights_dir = args.weights_dir or default_weights_dir()
    entries = {}
    for net in args.nets:
        entry = prune_network(net, weights_dir=weights_dir, dense_epochs=args.dense_epochs,
                              finetune_epochs=args.finetune_epochs,
                              train_samples=args.train_samples, log=print)
        entry["reproduce"] = f"python -m scripts.prune --nets {net}"
        entries[net] = entry
        print(f"{net}: dense {entry['test_accuracy_dense']:.4f}; " + "; ".join(
            f"{level['sparsity']:.0%} {level['test_accuracy_pruned']:.4f} -> "
            f"{level['test_accuracy_finetuned']:.4f}" for level in entry["levels"]))
    if args.no_write:
        return 0
    for net, entry in entries.items():
        record("pruning", {net: entry}, writer=__name__, config=entry["config"])
    plot(load("pruning", reader=__name__), PLOT)
    print(f"recorded docs/results/pruning.json and {PLOT.relative_to(DOCS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
