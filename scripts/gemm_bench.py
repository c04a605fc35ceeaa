"""GEMM engine benchmark: cycles (exact cycle model) vs ideal vs SCALE-Sim v3, per shape.

For each array size and dataflow, every shape is timed by ``sim.engine_model.command_cycles``
(asserted equal to the RTL by the engine benches) and, in the same run, by SCALE-Sim v3
(``scripts.scalesim_peer``, its own virtual environment). Shapes: square GEMMs and the forward,
backward-data and weight-gradient GEMMs of the digits CNN and of the ResNet-18 topology
(``sim.lowering``: a layer with a bias has its bias gradient folded into the weight gradient as
one more row, labelled ``+ bias row``). Writes ``docs/results/gemm.json`` (``shapes``) and
``docs/gemm_bench.md``.

The engine configuration used for timing has scratchpads large enough for every shape: the
cycle model does not depend on memory sizes, only the command check does.

SCALE-Sim's figure of a shape does not change when our engine does, and a 512-cube takes it
minutes: figures already in ``gemm.json`` for the same array, dataflow and shape are reused
unless ``--rerun-scalesim`` is given.

Usage: python -m scripts.gemm_bench [--arrays 8x8,4x4] [--dataflows os,ws]
       [--squares 64,128,256,512] [--nets digits_cnn,resnet18] [--no-scalesim]
       [--rerun-scalesim]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from scripts.results import DOCS_DIR, RESULTS_DIR, update_results
from scripts.scalesim_peer import scalesim_cycles
from scripts.cli import comma_subset
from sim.config import DATAFLOWS, ArrayConfig, EngineConfig
from sim.engine_model import EngineCommand, command_cycles, ideal_cycles

NETS = {"digits_cnn": ({}, 32), "resnet18": ({"width": 8}, 4)}    # build kwargs, batch size


def timing_config(rows, cols, dataflow) -> EngineConfig:
    return EngineConfig(array=ArrayConfig(rows=rows, cols=cols, dataflow=dataflow),
                        spad_width=4096, a_rows=65536, b_rows=65536, acc_width=4096,
                        acc_rows=65536)


def layer_shapes(nets):
    from sim.nn.networks import build_network

    shapes = {}
    for net in nets:
        kwargs, batch = NETS[net]
        for command in build_network(net, **kwargs).commands(batch_size=batch):
            label = f"{net}:{command.name}" + (" + bias row" if command.bias_row else "")
            shapes.setdefault((command.M, command.N, command.K), label)
    return shapes


def known_scalesim(path) -> dict:
    """SCALE-Sim figures of an earlier run: ``{(rows, cols, dataflow, M, N, K): cycles}``."""
    try:
        shapes = json.loads(path.read_text()).get("shapes", [])
    except FileNotFoundError:
        return {}
    return {(r["rows"], r["cols"], r["dataflow"], r["M"], r["N"], r["K"]): r["scalesim_cycles"]
            for r in shapes if r.get("scalesim_cycles")}


def _parse_arrays(text):
    out = []
    for item in text.split(","):
        rows, _, cols = item.partition("x")
        out.append((int(rows), int(cols)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", default="8x8", help="comma-separated RxC list")
    parser.add_argument("--dataflows", type=comma_subset("dataflows", DATAFLOWS),
                        default=DATAFLOWS)
    parser.add_argument("--squares", default="64,128,256,512")
    parser.add_argument("--nets", type=comma_subset("nets", NETS), default=tuple(NETS))
    parser.add_argument("--no-scalesim", action="store_true", help="skip the peer tool")
    parser.add_argument("--rerun-scalesim", action="store_true",
                        help="run SCALE-Sim even for shapes it already has a figure for")
    args = parser.parse_args(argv)
    arrays = _parse_arrays(args.arrays)
    dataflows = args.dataflows
    squares = [int(s) for s in args.squares.split(",") if s]
    nets = args.nets

    labelled = {(s, s, s): f"square {s}" for s in squares}
    for shape, label in layer_shapes(nets).items():
        labelled.setdefault(shape, label)
    shapes = list(labelled)
    known = known_scalesim(RESULTS_DIR / "gemm.json")
    rows_out = []
    for rows, cols in arrays:
        for dataflow in dataflows:
            config = timing_config(rows, cols, dataflow)
            peer = {}
            if not args.no_scalesim:
                peer = {} if args.rerun_scalesim else {
                    (m, n, k): known[(rows, cols, dataflow, m, n, k)] for m, n, k in shapes
                    if (rows, cols, dataflow, m, n, k) in known}
                missing = [shape for shape in shapes if shape not in peer]
                began = time.perf_counter()
                if missing:
                    peer.update(zip(missing, scalesim_cycles(rows, cols, dataflow, missing)))
                print(f"{rows}x{cols} {dataflow}: SCALE-Sim ran {len(missing)} shapes in "
                      f"{time.perf_counter() - began:.0f} s, reused {len(shapes) - len(missing)}",
                      flush=True)
            for m, n, k in shapes:
                scalesim = peer.get((m, n, k))
                command = EngineCommand(m=m, n=n, k=k)
                rows_out.append({
                    "rows": rows, "cols": cols, "dataflow": dataflow, "M": m, "N": n, "K": k,
                    "label": labelled[(m, n, k)],
                    "cycles": command_cycles(config, command),
                    "ideal_cycles": ideal_cycles(config, command),
                    "scalesim_cycles": scalesim,
                })

    lines = ["# GEMM engine cycles vs ideal vs SCALE-Sim v3", "",
             f"Generated by `python -m scripts.gemm_bench {' '.join(argv or sys.argv[1:])}`. "
             "cycles: the engine's exact cycle model (accept to done); ideal: MACs / PEs; "
             "SCALE-Sim: compute cycles of the same array and dataflow.", "",
             "| array | dataflow | shape (M, N, K) | from | cycles | ideal | utilization | SCALE-Sim | ours / SCALE-Sim |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows_out:
        util = r["ideal_cycles"] / r["cycles"]
        ratio = f"{r['cycles'] / r['scalesim_cycles']:.3f}" if r["scalesim_cycles"] else "-"
        lines.append(f"| {r['rows']}x{r['cols']} | {r['dataflow']} | {r['M']}x{r['N']}x{r['K']} | "
                     f"{r['label']} | {r['cycles']} | {r['ideal_cycles']} | {util:.1%} | "
                     f"{r['scalesim_cycles'] or '-'} | {ratio} |")
    compared = [r for r in rows_out if r["scalesim_cycles"]]
    fewer = sum(r["cycles"] < r["scalesim_cycles"] for r in compared)
    summary = f"fewer cycles than SCALE-Sim on {fewer} of {len(compared)} (array, dataflow, shape) rows"
    big = [r for r in rows_out if min(r["M"], r["N"], r["K"]) >= 256]
    if big:
        worst = min(r["ideal_cycles"] / r["cycles"] for r in big)
        summary += f"; lowest utilization with M, N, K >= 256: {worst:.2%}"
    slower = [r for r in compared if r["cycles"] >= r["scalesim_cycles"]]
    lines += ["", summary]
    if slower:
        lines += ["", "Not fewer cycles than SCALE-Sim:", ""]
        for r in slower:
            if r["dataflow"] == "os":
                tiles = -(-r["M"] // r["rows"]) * -(-r["N"] // r["cols"])
                what = "output tile(s)"
            else:
                tiles = -(-r["K"] // r["rows"]) * -(-r["N"] // r["cols"])
                what = "weight tile(s)"
            lines.append(f"* {r['rows']}x{r['cols']} {r['dataflow']} {r['M']}x{r['N']}x{r['K']} "
                         f"({r['label']}): {r['cycles']} vs {r['scalesim_cycles']}, "
                         f"{tiles} {what}")
    (DOCS_DIR / "gemm_bench.md").write_text("\n".join(lines) + "\n")
    path = update_results("gemm", shapes=rows_out)
    print(summary)
    print(f"wrote {DOCS_DIR / 'gemm_bench.md'} and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
