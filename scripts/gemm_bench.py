"""GEMM engine benchmark: cycles (exact cycle model) vs ideal vs SCALE-Sim v3, per shape.

For each array size and dataflow, every shape is timed by ``sim.engine_model.command_cycles``
(asserted equal to the RTL by the engine benches) and, in the same run, by SCALE-Sim v3
(``scripts.scalesim_peer``, its own virtual environment). Shapes: square GEMMs and the forward,
backward-data and weight-gradient GEMMs of the digits CNN and of the ResNet-18 topology
(``sim.lowering``: a layer with a bias has its bias gradient folded into the weight gradient as
one more row, labelled ``+ bias row``). Writes ``docs/results/gemm_bench.json`` (``shapes``,
replaced by each run), then ``docs/gemm_bench.md`` from it (``sparta report``,
:mod:`scripts.report.gemm`).

The engine configuration used for timing has scratchpads large enough for every shape: the
cycle model does not depend on memory sizes, only the command check does.

SCALE-Sim's figure of a shape does not change when our engine does, and a 512-cube takes it
minutes: figures already in ``gemm_bench.json`` for the same array, dataflow and shape are reused
unless ``--rerun-scalesim`` is given.

Output-stationary shapes are also timed with interleaved accumulation
(``ArrayConfig.acc_interleave = L``, tiles in groups of ``L``: ``cycles_by_interleave``), and
weight-stationary ones with the partial-sum adder pipelined (``ArrayConfig.psum_stages = P``,
1..3: ``cycles_by_psum_stages``).

Usage: python -m scripts.gemm_bench [--arrays 8x8,4x4] [--dataflows os,ws]
       [--squares 64,128,256,512] [--nets digits_cnn,resnet18] [--interleave 2,3,4,5]
       [--no-scalesim]
       [--rerun-scalesim]
"""

from __future__ import annotations

import argparse
import sys
import time

from scripts.results import DOCS_DIR, load, record
from scripts.scalesim_peer import scalesim_cycles
from scripts.cli import comma_subset
from sim.config import ADD_CUT_POINTS, DATAFLOWS, MAX_ACC_INTERLEAVE, ArrayConfig, EngineConfig
from sim.engine_model import EngineCommand, command_cycles, ideal_cycles

NETS = {"digits_cnn": ({}, 32), "resnet18": ({"width": 8}, 4)}    # build kwargs, batch size
#: interleaved accumulations timed beside L = 1 by default (ArrayConfig.acc_interleave)
INTERLEAVES = tuple(range(2, MAX_ACC_INTERLEAVE + 1))
#: weight-stationary partial-sum adder registers timed beside P = 0 (ArrayConfig.psum_stages)
PSUM_STAGES = tuple(range(1, ADD_CUT_POINTS + 1))


def timing_config(rows, cols, dataflow, interleave=1, psum_stages=0) -> EngineConfig:
    return EngineConfig(array=ArrayConfig(rows=rows, cols=cols, dataflow=dataflow,
                                          acc_interleave=interleave, psum_stages=psum_stages),
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


def known_scalesim() -> dict:
    """SCALE-Sim figures of an earlier run: ``{(rows, cols, dataflow, M, N, K): cycles}``."""
    shapes = load("gemm_bench", reader=__name__, missing_ok=True).get("shapes", [])
    return {(r["rows"], r["cols"], r["dataflow"], r["M"], r["N"], r["K"]): r["scalesim_cycles"]
            for r in shapes if r.get("scalesim_cycles")}


def _parse_arrays(text):
    out = []
    for item in text.split(","):
        rows, _, cols = item.partition("x")
        out.append((int(rows), int(cols)))
    return out


def _parse_interleaves(text):
    levels = []
    for item in filter(None, text.split(",")):
        if not item.isdigit() or not 2 <= int(item) <= MAX_ACC_INTERLEAVE:
            raise SystemExit(f"--interleave: each L must be an integer in 2..{MAX_ACC_INTERLEAVE}, "
                             f"not {item!r}")
        levels.append(int(item))
    return tuple(dict.fromkeys(levels))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", default="8x8", help="comma-separated RxC list")
    parser.add_argument("--dataflows", type=comma_subset("dataflows", DATAFLOWS),
                        default=DATAFLOWS)
    parser.add_argument("--squares", default="64,128,256,512")
    parser.add_argument("--nets", type=comma_subset("nets", NETS), default=tuple(NETS))
    parser.add_argument("--interleave", default=",".join(map(str, INTERLEAVES)),
                        help="interleaved accumulations L timed beside L = 1 (output "
                             "stationary), comma-separated, each in 2..%d" % MAX_ACC_INTERLEAVE)
    parser.add_argument("--no-scalesim", action="store_true", help="skip the peer tool")
    parser.add_argument("--rerun-scalesim", action="store_true",
                        help="run SCALE-Sim even for shapes it already has a figure for")
    args = parser.parse_args(argv)
    arrays = _parse_arrays(args.arrays)
    dataflows = args.dataflows
    squares = [int(s) for s in args.squares.split(",") if s]
    interleaves = _parse_interleaves(args.interleave)
    nets = args.nets

    labelled = {(s, s, s): f"square {s}" for s in squares}
    for shape, label in layer_shapes(nets).items():
        labelled.setdefault(shape, label)
    shapes = list(labelled)
    known = known_scalesim()
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
            if dataflow == "os":
                pipelined = {level: timing_config(rows, cols, dataflow, interleave=level)
                             for level in interleaves}
            else:
                pipelined = {level: timing_config(rows, cols, dataflow, psum_stages=level)
                             for level in PSUM_STAGES}
            key = {"os": "cycles_by_interleave", "ws": "cycles_by_psum_stages"}[dataflow]
            for m, n, k in shapes:
                scalesim = peer.get((m, n, k))
                command = EngineCommand(m=m, n=n, k=k)
                row = {
                    "rows": rows, "cols": cols, "dataflow": dataflow, "M": m, "N": n, "K": k,
                    "label": labelled[(m, n, k)],
                    "cycles": command_cycles(config, command),
                    "ideal_cycles": ideal_cycles(config, command),
                    "scalesim_cycles": scalesim,
                }
                if pipelined:
                    row[key] = {str(level): command_cycles(timing, command)
                                for level, timing in pipelined.items()}
                rows_out.append(row)

    measured_with = {"arrays": arrays, "dataflows": list(dataflows), "squares": squares,
                     "interleave": list(interleaves),
                     "nets": {net: NETS[net] for net in nets}, "scalesim": not args.no_scalesim}
    path = record("gemm_bench", {"shapes": rows_out}, writer=__name__, config=measured_with)
    from scripts.report import write
    from scripts.report.gemm import summary

    write([DOCS_DIR / "gemm_bench.md"])
    print(summary(rows_out))
    print(f"wrote {path} and {DOCS_DIR / 'gemm_bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
