"""Inference-time approximation, measured against accuracy (issue 18): AIP on the fully
connected layers (:mod:`sim.experiments.aip`) and DrowsyNet on the convolutions
(:mod:`sim.experiments.drowsy`).

Every network is trained in FP32 numerics (cached under ``$SPARTA_BUILD_DIR``) and evaluated
in the accelerator's numerics (the golden model of the engine, every GEMM bit-exact to the
RTL). Byte, MAC, cycle and energy figures are model figures (counts of the golden procedures
and the engine's cycle model); the RTL checks of both techniques are the benches
``tb/test_aip_select.py`` and ``tb/test_drowsy.py``.

With ``--rtl``, AIP's two FC layers of the trained digits CNN (per policy) and one DrowsyNet
convolution run on the RTL (:mod:`scripts.inference_rtl`; the benches fail unless every result
is bit-exact and the cycles equal the cycle model), recorded under ``rtl``.

Records ``docs/results/inference.json`` (``aip``, ``drowsy``, ``rtl``) and the plots
``docs/inference_aip.png`` and ``docs/inference_drowsy.png``; ``sparta report`` renders the
tables of ``docs/inference.md``.

Usage: python -m scripts.inference_bench [--only aip|drowsy|rtl] [--nets NET,...] [--quick]
       [--rtl] [--simulator icarus|verilator]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

from scripts.results import DOCS_DIR, record

__all__ = ["AIP_PLOT", "DROWSY_PLOT", "trim_aip", "plot_aip", "plot_drowsy", "main"]

AIP_PLOT = DOCS_DIR / "inference_aip.png"
DROWSY_PLOT = DOCS_DIR / "inference_drowsy.png"


def trim_aip(entry: dict) -> dict:
    """The AIP measurement with each policy's swept points cut to its test Pareto front (the
    chosen points stay whole): the file keeps what the tables and plots show, and the count
    of points swept."""
    entry = copy.deepcopy(entry)
    for network in entry["networks"].values():
        for policy in network["policies"].values():
            front = policy.pop("pareto_test")
            policy["points_swept"] = len(policy["points"])
            policy["points"] = [policy["points"][i] for i in front]
    return entry


def plot_aip(entry: dict, path) -> None:
    """Per network with a planned FC layer: test top-1 loss against the FC weight bytes per
    inference (batch 1, ratio to dense), each policy's Pareto front, its chosen point, and
    AIP's published point (DRAM energy ratio, top-5 loss). Networks without a point under 10
    points of loss are left out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def loss(network, point):
        return 100 * (network["dense"]["test"]["accuracy"]["top1"]
                      - point["test"]["accuracy"]["top1"])

    # networks with a point inside the plot (ResNet-18's lone 64 -> 10 FC layer has none)
    networks = [n for n, e in entry["networks"].items()
                if any(loss(e, p) < 10 for policy in e["policies"].values()
                       for p in policy["points"])]
    figure, axes = plt.subplots(1, len(networks), figsize=(4.2 * len(networks), 4), sharey=True,
                                squeeze=False)
    published = entry["published"]
    for axis, net in zip(axes[0], networks):
        network = entry["networks"][net]
        dense = 100 * network["dense"]["test"]["accuracy"]["top1"]
        for name, policy in network["policies"].items():
            points = sorted(policy["points"], key=lambda p: p["test"]["batch_1"]["fc_weight_bytes"])
            xs = [p["test"]["batch_1"]["fc_weight_bytes"] for p in points]
            ys = [dense - 100 * p["test"]["accuracy"]["top1"] for p in points]
            line, = axis.plot(xs, ys, ".-", label=name)
            if policy["chosen"]:
                chosen = policy["chosen"]["test"]
                axis.plot(chosen["batch_1"]["fc_weight_bytes"],
                          dense - 100 * chosen["accuracy"]["top1"], "o", markersize=9,
                          markerfacecolor="none", color=line.get_color())
        axis.plot(published["dram_access_energy_ratio"], published["top5_loss_points"], "k*",
                  markersize=11, label="AIP published (VGG-f, top-5, DRAM energy)")
        axis.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        axis.set_xlim(0, 1.1)
        axis.set_ylim(-1, 10)
        axis.set_title(net, fontsize=10)
        axis.set_xlabel("FC weight bytes per inference / dense (batch 1)")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("test top-1 loss, points (accelerator numerics)")
    axes[0][-1].legend(fontsize=7)
    figure.suptitle("AIP: Pareto fronts of three subset policies (circles: chosen on validation)",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


#: How each DrowsyNet method is drawn: (method, rescaling, line style, colour, label).
DROWSY_LINES = (("uniform", "rescale", "o-", "C0", "uniform rates"),
                ("chosen", "rescale", "s-", "C1", "chosen rates (greedy on sensitivity)"),
                ("uniform", "no_rescale", "o:", "C0", "uniform, no rescaling"),
                ("chosen", "no_rescale", "s:", "C1", "chosen, no rescaling"),
                ("channel_removal", None, "^--", "C4", "whole channels removed (smallest L1)"))


def plot_drowsy(entry: dict, path) -> None:
    """Per network: test top-1 (accelerator numerics, mean over the mask seeds) against the
    fraction of convolution MACs skipped, for every method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    networks = list(entry["networks"])
    figure, axes = plt.subplots(1, len(networks), figsize=(4.2 * len(networks), 4), sharey=True,
                                squeeze=False)
    for axis, net in zip(axes[0], networks):
        network = entry["networks"][net]
        for method, rescaling, style, colour, label in DROWSY_LINES:
            curve = network["methods"][method]
            if rescaling is not None:
                curve = curve[rescaling]
            targets = sorted(curve, key=float)
            axis.plot([curve[t]["measured_skip_test"] for t in targets],
                      [100 * curve[t]["test"]["top1"] for t in targets], style, color=colour,
                      label=label, markersize=4)
        dense = 100 * network["dense"]["test_accel"]["top1"]
        axis.axhline(dense, color="black", linewidth=1, label="dense")
        axis.axhline(dense - 5, color="grey", linestyle=":", linewidth=1,
                     label="goal: 5 points below dense")
        axis.axvline(0.5, color="grey", linestyle=":", linewidth=1)
        axis.set_title(net, fontsize=10)
        axis.set_xlabel("fraction of convolution MACs skipped (measured)")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("test top-1, % (accelerator numerics)")
    axes[0][-1].legend(fontsize=7)
    figure.suptitle("DrowsyNet: random dropout of convolution outputs at inference", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("aip", "drowsy", "rtl"),
                        help="one technique only, or only the RTL runs")
    parser.add_argument("--rtl", action="store_true",
                        help="also run AIP's FC layers and a DrowsyNet convolution of the "
                             "trained digits CNN on the RTL (cycles against the model)")
    parser.add_argument("--simulator", default="verilator", choices=("icarus", "verilator"),
                        help="simulator of the RTL runs (default verilator)")
    parser.add_argument("--nets", help="comma-separated networks (default: each technique's)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny training and sweeps (a smoke run; records nothing)")
    args = parser.parse_args(argv)
    nets = None if args.nets is None else tuple(args.nets.split(","))
    entries = {}
    if args.only in (None, "aip"):
        from sim.experiments.aip import NETS, measure_aip

        began = time.perf_counter()
        entry = trim_aip(measure_aip(nets or NETS, quick=args.quick))
        entry["command"] = "python -m scripts.inference_bench --only aip"
        entries["aip"] = entry
        print(f"AIP measured in {time.perf_counter() - began:.0f} s")
        for name, goal in entry["vgg_goal"].items():
            print(f"AIP vgg_small {name}: FC traffic -{100 * goal['fc_traffic_saving']:.1f}% at "
                  f"{goal['test_top1_loss_points']:.2f} points top-1 loss: goal "
                  f"{'met' if goal['met'] else 'not met'} (model figures)")
    if args.only in (None, "drowsy"):
        from sim.experiments.drowsy import NETS, measure_drowsy

        began = time.perf_counter()
        entry = measure_drowsy(nets or NETS, quick=args.quick)
        entry["command"] = "python -m scripts.inference_bench --only drowsy"
        entries["drowsy"] = entry
        print(f"DrowsyNet measured in {time.perf_counter() - began:.0f} s")
    if args.rtl or args.only == "rtl":
        from scripts.inference_rtl import aip_rtl_layers, drowsy_rtl_layer

        began = time.perf_counter()
        rtl = {"aip": aip_rtl_layers(args.simulator), "drowsy": drowsy_rtl_layer(args.simulator),
               "command": f"python -m scripts.inference_bench --only rtl --simulator "
                          f"{args.simulator}"}
        for policy, run in rtl["aip"]["policies"].items():
            for layer, row in run["layers"].items():
                print(f"AIP RTL {policy} {layer}: approximate {row['rtl_cycles']['approx']}, "
                      f"selection {row['rtl_cycles']['select']}, exact "
                      f"{row['rtl_cycles']['exact']} cycles (model equal: {row['equal']}), "
                      f"kept {row['kept']}/{row['total']}, bit-exact {row['bit_exact']}")
        d = rtl["drowsy"]
        print(f"DrowsyNet RTL {d['layer']}: {d['rtl_cycles']} cycles, model {d['model_cycles']}, "
              f"dropped {d['dropped']}/{d['total']}, bit-exact {d['bit_exact']}")
        print(f"RTL runs took {time.perf_counter() - began:.0f} s")
        entries["rtl"] = rtl
    if args.quick:
        print("quick run: nothing recorded")
        return 0
    from scripts import report

    if "aip" in entries:
        plot_aip(entries["aip"], AIP_PLOT)
        print(f"wrote {AIP_PLOT}")
    if "drowsy" in entries:
        plot_drowsy(entries["drowsy"], DROWSY_PLOT)
        print(f"wrote {DROWSY_PLOT}")
    path = record("inference", entries, writer=__name__)
    print(f"wrote {path}")
    report.rewrite("inference.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
