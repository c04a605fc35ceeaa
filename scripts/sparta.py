"""Sparta: generate, simulate, synthesise and measure DNN training accelerators.

``sparta`` is one command for every job (a console script; ``sparta <command> --help``).

Own commands:

* ``sparta generate``: a configuration -> Verilog of the GEMM engine and its datasheet (ports,
  command / status / read words, error codes, timing), from the elaboration cache when it can;
* ``sparta gemm``: a GEMM of any size on the generated engine (tiled into commands by
  :mod:`tb.engine_api`) in RTL simulation (Verilator or Icarus), compared here bit for bit with
  the golden GEMM and cycle for cycle with the model;
* ``sparta test``: the test suite (pytest on ``tb/``; arguments after ``--`` go to pytest).

The others run the measurement and report entry points under ``scripts/`` (each keeps its own
options: ``sparta <command> --help``): ``demo``, ``train``, ``replay``, ``synth``, ``bitstream``, ``board``, ``sweep``,
``area``, ``measure``, ``flow``, ``regress`` (``make regress``), ``report`` (the
documentation's tables from ``docs/results``).

A configuration comes from a TOML file (``--config``; keys of
:class:`sim.config.EngineConfig`, an ``[array]`` table of :class:`sim.config.ArrayConfig`,
optionally ``preset = "4x4"``), a preset (``--preset``) and ``--set key=value`` overrides
(``--set array.rows=4 --set 'array.a_formats=["e4m3"]'``); errors name the key and the allowed
values.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

__all__ = ["main", "config_from_args"]

REPO = Path(__file__).resolve().parent.parent

#: name -> (module with main(argv), help); subcommands of ``area`` and ``measure`` likewise
ENTRY_POINTS = {
    "demo": ("scripts.demo", "the main job on the default configuration (make demo)"),
    "train": ("scripts.train", "train a workload network (or yours: --network-file) with "
                               "accelerator numerics and FP32"),
    "replay": ("scripts.replay", "one training step's GEMMs (or your network's: --network-file) "
                                 "on the RTL engine, bit for bit"),
    "synth": ("scripts.synth", "Yosys area of the FP units -> docs/area.md"),
    "prune": ("scripts.prune", "magnitude pruning with fine-tuning of the workload networks: "
                               "accuracy at 50/70/80/90% sparsity"),
    "sweep": ("scripts.sweep", "a design-space sweep from a TOML file on Dask: area, fmax, cycles, "
                               "DRAM bytes, energy, accuracy; table and Pareto plots"),
    "bitstream": ("scripts.bitstream", "ULX3S (ECP5-85F) bitstream of the board build: clock, "
                                       "slack, resources (make bitstream)"),
    "board": ("scripts.board_host", "run a GEMM on a board over its serial port, checked bit "
                                    "for bit (--model: the golden model instead)"),
    "formal": ("scripts.formal", "formal checks of the gateware with SymbiYosys: properties "
                                 "proven to a depth, covers reached, mutants caught"),
    "flow": ("scripts.flow_bench", "cold/warm times of make demo and make test, simulation speed"),
    "regress": ("scripts.regress", "long random regressions of every bench on both simulators "
                                   "(make regress): seed, vectors, commands, failures"),
    "report": ("scripts.report", "regenerate the documentation's tables from docs/results "
                                 "(--check: list what is out of date; --deps: results order)"),
}
AREA = {
    "engine": ("scripts.engine_report", "PEs, arrays, engines; ECP5 fmax of the 4x4 array"),
    "fgmp": ("scripts.fgmp_area", "FGMP packer, unpacker, encoder and PE"),
    "sparsity": ("scripts.sparsity_area", "zero detect and dropout mask units"),
    "skip": ("scripts.skip_area", "lookahead window and output masks"),
    "accel": ("scripts.accel_area", "the accelerator's AXI4-Lite registers and AXI4 DMA"),
    "aip": ("scripts.aip_area", "the AIP output selection unit (threshold, top-n)"),
    "steps": ("scripts.step_list_area", "the step-list sequencer (runs a schedule) and the "
                                        "scatter accumulator memory"),
}
MEASURE = {
    "gemm": ("scripts.gemm_bench", "engine cycles vs ideal vs SCALE-Sim v3"),
    "fgmp": ("scripts.fgmp_bench", "FGMP training: DRAM bytes, FP8 share, accuracy, energy "
                                   "(yours: --network-file)"),
    "fgmp-gap": ("scripts.fgmp_gap", "why FGMP elements stay fp16"),
    "skip": ("scripts.skip_measure", "zero-skipping engine cycles on captured steps "
                                     "(yours: --network-file)"),
    "sparsity": ("scripts.sparsity_study", "cycle models of the zero-skip designs"),
    "fp": ("scripts.fp_report", "FP unit benches: vectors checked and speed"),
    "transposed": ("scripts.transposed_bench", "backward data of stride-1 convolutions as a "
                                               "transposed convolution, on captured steps: "
                                               "zero-skipping cycles of both lowerings"),
    "inference": ("scripts.inference_bench", "inference-time approximation: AIP on FC layers and "
                                             "DrowsyNet on convolutions, accuracy vs saving "
                                             "(yours: --network-file)"),
    "schedule-rtl": ("scripts.schedule_rtl", "the digits CNN's pruned layers on the RTL engine "
                                             "from their schedules: cycles vs the model"),
    "tool": ("scripts.tool_bench", "user code and waiting times of the examples, generate"),
    "accel": ("scripts.accel_bench", "the accelerator running compiled GEMM programs from DRAM "
                                     "(RTL): cycles, overlap, bus bytes"),
    "schedule": ("scripts.schedule_bench", "schedulers of pruned filters onto the array's tiles "
                                           "and units against the lower bound"),
    "dse": ("scripts.dse_bench", "the example design-space sweep on 1 and 2 Dask workers, "
                                 "cold and from the cache"),
}


def _set_value(text: str):
    """``key=value`` of ``--set``: the value as TOML (numbers, booleans, quoted strings,
    arrays), else the bare text as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes key=value, not {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def add_config_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--config", type=Path, help="TOML file (EngineConfig keys, [array] table)")
    parser.add_argument("--preset", help="base configuration: 4x4, 8x8 (default) or 16x16")
    parser.add_argument("--set", dest="overrides", type=_set_value, action="append", default=[],
                        metavar="KEY=VALUE", help="override one key (array.rows=4)")


def config_from_args(args):
    """The :class:`sim.config.EngineConfig` that ``--config``, ``--preset`` and ``--set``
    describe (ValueError naming the key on a bad one)."""
    from sim.config import engine_config_from

    data: dict = {}
    if args.config is not None:
        try:
            data = tomllib.loads(args.config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"--config {args.config}: {exc}") from None
    if args.preset is not None:
        data["preset"] = args.preset
    for key, value in args.overrides:
        table = data
        *parents, leaf = key.split(".")
        for parent in parents:
            table = table.setdefault(parent, {})
            if not isinstance(table, dict):
                raise ValueError(f"--set {key}: {parent} is not a table")
        table[leaf] = value
    return engine_config_from(data)


def cmd_generate(args) -> int:
    from scripts.datasheet import datasheet, datasheet_markdown
    from sim.config import config_to_dict
    from sim.elaborate import Design, design_key, verilog_cache_dir
    from sim.runner import generate_verilog
    from hw.engine.engine import GemmEngine

    config = config_from_args(args)
    design = Design(GemmEngine, config)
    cached = (verilog_cache_dir() / f"{args.top}-{design_key(design, args.top)}.v").exists()
    began = time.perf_counter()
    verilog = generate_verilog(design, args.top)
    seconds = time.perf_counter() - began
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {"verilog": args.out / f"{args.top}.v",
             "datasheet": args.out / f"{args.top}.datasheet.md",
             "json": args.out / f"{args.top}.datasheet.json"}
    paths["verilog"].write_text(verilog)
    sheet = datasheet(config)
    sheet["top"] = args.top
    paths["datasheet"].write_text(datasheet_markdown(sheet))
    paths["json"].write_text(json.dumps(sheet, indent=1) + "\n")
    array = config.array
    print(f"{array.rows}x{array.cols} {array.dataflow.upper()} engine: Verilog "
          f"{'from the elaboration cache' if cached else 'elaborated'} in {seconds:.1f} s "
          f"({len(verilog.splitlines())} lines)")
    for label, path in paths.items():
        print(f"  {label:9s} {path}")
    if args.echo:
        print(json.dumps(config_to_dict(config), indent=1))
    return 0


def cmd_gemm(args) -> int:
    import numpy as np

    from scripts.progress import spinner
    from sim.gemm import gemm
    from tb.engine_api import model_cycles, run_gemms, workload_gemm

    config = config_from_args(args)
    m, n, k = args.m, args.n, args.k
    for name, value in (("m", m), ("n", n), ("k", k)):
        if value < 1:
            raise ValueError(f"-{name} must be >= 1, not {value}")
    rng = np.random.default_rng(args.seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    a[rng.random(a.shape) < args.zeros] = 0.0
    problem = workload_gemm(a, b, a_format=args.a_format, b_format=args.b_format)
    want = gemm(problem.a_bits, problem.b_bits, a_fmt=problem.a_tags, b_fmt=problem.b_tags)
    if args.waves:
        os.environ["WAVES"] = "1"
    began = time.perf_counter()
    with spinner(f"{m}x{n}x{k} GEMM on {args.simulator}"):
        (run,) = run_gemms(config, [problem], backend=args.simulator, seed=args.seed)
    seconds = time.perf_counter() - began
    model = model_cycles(config, problem)
    wrong = int(np.count_nonzero(run.out_bits != want))
    macs = m * n * k
    ideal = -(-macs // config.array.pes)
    print(f"{m}x{n}x{k} GEMM ({args.a_format} x {args.b_format}, seed {args.seed}) on the "
          f"{config.array.rows}x{config.array.cols} {config.array.dataflow.upper()} engine, "
          f"{args.simulator}, {run.commands} command(s), {seconds:.1f} s wall")
    print(f"  result vs the golden GEMM (sim.gemm): "
          f"{'equal bit for bit' if not wrong else f'{wrong} of {m * n} words DIFFER'}")
    print(f"  cycles {run.cycles} (model {model}"
          f"{'' if run.cycles == model else ', DIFFERENT'}), ideal {ideal}, "
          f"utilization {macs / (config.array.pes * run.cycles):.1%}")
    if run.words_written is not None:
        print(f"  host words written {run.words_written}, read {run.words_read}")
    return 1 if wrong or run.cycles != model else 0


def cmd_test(args) -> int:
    command = [sys.executable, "-m", "pytest", "-n", str(args.jobs), "-q", "--durations=25",
               *(args.pytest_args or ["tb"])]
    return subprocess.call(command, cwd=REPO)


#: commands that take a user's network file instead (scripts/user_network.py)
USER_NETWORK = {"train": "train_main", "replay": "replay_main"}


def _dispatch(table: dict, name: str, argv: list[str]) -> int:
    if any(arg.split("=")[0] == "--network-file" for arg in argv):
        from scripts import user_network

        if table is ENTRY_POINTS and name in USER_NETWORK:
            return getattr(user_network, USER_NETWORK[name])(argv) or 0
        if table is MEASURE and name in user_network.MEASURES:
            return user_network.measure_main(name, argv) or 0
    module = importlib.import_module(table[name][0])
    return module.main(argv) or 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparta", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    generate = commands.add_parser("generate", help="configuration -> Verilog and datasheet")
    add_config_arguments(generate)
    generate.add_argument("--out", type=Path, default=Path("build"), help="output directory")
    generate.add_argument("--top", default="gemm_engine", help="Verilog top module name")
    generate.add_argument("--echo", action="store_true", help="print the configuration")
    generate.set_defaults(run=cmd_generate)

    gemm = commands.add_parser("gemm", help="a GEMM of any size on the generated engine "
                                            "(tiled into commands), checked against the golden model")
    add_config_arguments(gemm)
    for name in "mnk":
        gemm.add_argument(f"-{name}", type=int, default=64, help=f"{name.upper()} (default 64)")
    gemm.add_argument("--simulator", default="verilator", choices=("verilator", "icarus", "model"))
    gemm.add_argument("--a-format", default="fp16", help="A operand format (fp16, e4m3, e5m2)")
    gemm.add_argument("--b-format", default="fp16", help="B operand format")
    gemm.add_argument("--zeros", type=float, default=0.0, help="share of zeros in A")
    gemm.add_argument("--seed", type=int, default=1, help="operand seed")
    gemm.add_argument("--waves", action="store_true", help="record waveforms")
    gemm.set_defaults(run=cmd_gemm)

    test = commands.add_parser("test", help="the test suite (pytest on tb/)")
    test.add_argument("-j", "--jobs", type=int, default=2, help="pytest-xdist workers")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER,
                      help="arguments for pytest after -- (default: tb)")
    test.set_defaults(run=cmd_test)

    for name, (_, text) in ENTRY_POINTS.items():
        sub = commands.add_parser(name, help=text, add_help=False)
        sub.set_defaults(run=lambda args, name=name: _dispatch(ENTRY_POINTS, name, args.rest))
    for group, table, text in (("area", AREA, "Yosys area (and ECP5 fmax)"),
                               ("measure", MEASURE, "measurements -> docs/results")):
        sub = commands.add_parser(group, help=text)
        subs = sub.add_subparsers(dest="what", required=True, metavar="what")
        for name, (_, help_text) in table.items():
            leaf = subs.add_parser(name, help=help_text, add_help=False)
            leaf.set_defaults(run=lambda args, table=table, name=name:
                              _dispatch(table, name, args.rest))
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    args.rest = rest
    if rest and args.run in (cmd_generate, cmd_gemm):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.run is cmd_test and args.pytest_args[:1] == ["--"]:
        args.pytest_args = args.pytest_args[1:]
    try:
        return args.run(args)
    except ValueError as exc:
        parser.exit(2, f"sparta {args.command}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
