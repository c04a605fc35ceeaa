"""A user's own network and data from a Python file: train it, replay its training step on the
RTL engine.

The file defines ``build()`` returning a :class:`sim.nn.Network` (or a PyTorch ``nn.Module``,
converted by :func:`sim.nn.model_import.from_torch`) and ``load()`` returning a
:class:`sim.nn.Dataset` (see ``examples/``); or it is an ONNX model (``.onnx``, converted by
:func:`sim.nn.model_import.from_onnx`) with its data from ``--data FILE.py`` defining ``load()``.
Results go to the file ``--out`` names (never into the project's ``docs/results``), with the
provenance of the run.

    sparta train --network-file examples/wine_mlp.py --epochs 15 --backends accel,fgmp,fp32
    sparta replay --network-file examples/wine_mlp.py --preset 4x4 --simulator verilator
    sparta measure inference --network-file examples/strided_cnn.py
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["load_network_file", "train_main", "replay_main"]

BACKENDS = ("accel", "fgmp", "fp32")


def _python_file(path: Path, option: str):
    if not path.is_file():
        raise ValueError(f"{option} {path}: no such file")
    spec = importlib.util.spec_from_file_location(f"sparta_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_network_file(path, data=None) -> tuple:
    """``(build, load)`` of a network file (ValueError naming what is missing). ``build()``
    returns what the file gives: a Network, a torch module, or for an ``.onnx`` file the
    ``onnx.ModelProto``; ``load`` comes from the ``data`` file when one is given."""
    path = Path(path)
    if path.suffix == ".onnx":
        if data is None:
            raise ValueError(f"--network-file {path}: an ONNX model needs --data FILE.py "
                             f"defining load() -> Dataset (images NHWC, as sim.nn takes them)")
        if not path.is_file():
            raise ValueError(f"--network-file {path}: no such file")
        build, load = (lambda: _load_onnx(path)), None
    else:
        module = _python_file(path, "--network-file")
        names = ("build",) if data is not None else ("build", "load")
        missing = [name for name in names if not callable(getattr(module, name, None))]
        if missing:
            raise ValueError(f"--network-file {path} must define build() -> Network (or a "
                             f"torch nn.Module) and load() -> Dataset; missing: "
                             f"{', '.join(missing)}")
        build, load = module.build, getattr(module, "load", None)
    if data is not None:
        data_module = _python_file(Path(data), "--data")
        if not callable(getattr(data_module, "load", None)):
            raise ValueError(f"--data {data} must define load() -> Dataset")
        load = data_module.load
    return build, load


def _load_onnx(path: Path):
    try:
        import onnx
    except ImportError:
        raise ValueError("an ONNX model needs the onnx package: pip install -e '.[import]'") \
            from None
    return onnx.load(str(path))


def _source_kind(made) -> str | None:
    """``"network"``, ``"torch"`` or ``"onnx"``: what a build() made (None: none of them)."""
    from sim.nn import Network

    torch, onnx = sys.modules.get("torch"), sys.modules.get("onnx")
    if isinstance(made, Network):
        return "network"
    if torch is not None and isinstance(made, torch.nn.Module):
        return "torch"
    if onnx is not None and isinstance(made, onnx.ModelProto):
        return "onnx"
    return None


def _network_and_data(path, data_file=None):
    from sim.nn import Dataset
    from sim.nn.model_import import from_onnx, from_torch

    path = Path(path)
    build, load = load_network_file(path, data_file)
    made = build()
    kind = _source_kind(made)
    if kind is None:
        raise ValueError(f"{path}: build() must return a sim.nn.Network, not {made!r} (or a "
                         f"torch nn.Module, converted)")
    data = load()
    if not isinstance(data, Dataset):
        raise ValueError(f"{data_file or path}: load() must return a sim.nn.Dataset, not "
                         f"{data!r}")
    if kind == "network":
        return build, made, data
    # the model's input shape from the data's: NHWC images are NCHW to the model
    shape = data.input_shape
    shape = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
    network = from_torch(made, shape, name=path.stem) if kind == "torch" else \
        from_onnx(made, input_shape=shape, name=path.stem)
    template = copy.deepcopy(network)          # every build() the same initial weights

    def build_copy():
        return copy.deepcopy(template)
    return build_copy, network, data


def _backend(name):
    from sim.nn import AccelBackend, Fp32Backend
    from sim.nn.backend import FgmpBackend

    return {"accel": AccelBackend, "fgmp": FgmpBackend, "fp32": Fp32Backend}[name]()


def _write(path: Path, data: dict):
    from scripts.results import provenance

    path.write_text(json.dumps({"provenance": provenance(), **data}, indent=1) + "\n")
    print(f"wrote {path}")


def _common(parser):
    parser.add_argument("--network-file", type=Path, required=True,
                        help="Python file defining build() -> Network (or a torch nn.Module) "
                             "and load() -> Dataset, or an ONNX model (.onnx, with --data)")
    parser.add_argument("--data", type=Path,
                        help="Python file defining load() -> Dataset (needed for an ONNX model; "
                             "replaces the network file's load())")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--loss-scale", type=float, default=1024.0)
    parser.add_argument("--seed", type=int, default=0, help="sample order and dropout masks")


def _config(args, name):
    from sim.nn.train import TrainConfig

    return TrainConfig(net=name, epochs=getattr(args, "epochs", 1), batch_size=args.batch_size,
                       lr=args.lr, loss_scale=args.loss_scale, seed=args.seed)


def train_main(argv=None) -> int:
    from scripts.cli import comma_subset
    from sim.nn import train

    parser = argparse.ArgumentParser(prog="sparta train --network-file",
                                     description="Train your network with accelerator, FGMP "
                                                 "and FP32 numerics.")
    _common(parser)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--backends", type=comma_subset("backends", BACKENDS),
                        default=list(BACKENDS), help=f"comma-separated subset of {BACKENDS}")
    parser.add_argument("--out", type=Path, help="results JSON (default <network>-train.json)")
    args = parser.parse_args(argv)
    try:
        build, network, data = _network_and_data(args.network_file, args.data)
        config = _config(args, network.name)
    except ValueError as exc:
        parser.error(str(exc))
    results = {}
    for name in args.backends:
        net = network if name == args.backends[0] else build()     # same initial weights
        result = train(config, _backend(name), data, network=net,
                       log=lambda line: print(line, flush=True))
        results[name] = {"test_accuracy": result.test_accuracy, "curve": result.curve,
                         "wall_time_s": round(result.wall_time_s, 2), "source": "golden model"}
        print(f"{network.name} {name}: test accuracy {result.test_accuracy:.4f}")
    _write(args.out or Path(f"{network.name}-train.json"),
           {"network": network.name, "network_file": str(args.network_file),
            "config": {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                       "loss_scale": config.loss_scale, "seed": config.seed},
            "backends": results})
    return 0


def replay_main(argv=None) -> int:
    from scripts.sparta import add_config_arguments, config_from_args
    from sim.config import config_to_dict
    from sim.replay import training_step_gemms
    from tb.engine_api import model_cycles, run_gemms

    parser = argparse.ArgumentParser(prog="sparta replay --network-file",
                                     description="Your network's first training step, every "
                                                 "GEMM on the generated engine, bit for bit.")
    _common(parser)
    add_config_arguments(parser)
    parser.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    parser.add_argument("--operand-format", default="fp16", help="fp16, e4m3 or e5m2")
    parser.add_argument("--out", type=Path, help="results JSON (default <network>-replay.json)")
    args = parser.parse_args(argv)
    try:
        _, network, data = _network_and_data(args.network_file, args.data)
        engine = config_from_args(args)
        gemms = training_step_gemms(_config(args, network.name), network=network, data=data,
                                    operand_format=args.operand_format)
    except ValueError as exc:
        parser.error(str(exc))
    began = time.perf_counter()
    runs = run_gemms(engine, gemms, backend=args.simulator, seed=args.seed)
    rows, wrong_total = [], 0
    for g, run in zip(gemms, runs):
        predicted = model_cycles(engine, g)
        wrong = int(np.count_nonzero(run.out_bits != g.out_bits))
        wrong_total += wrong
        rows.append({"gemm": g.name, "M": g.M, "N": g.N, "K": g.K, "commands": run.commands,
                     "cycles": run.cycles, "model_cycles": predicted,
                     "words_differing": wrong})
        print(f"  {g.name:24s} {g.M}x{g.N}x{g.K}: {run.commands} commands, {run.cycles} cycles "
              f"(model {predicted}), "
              f"{'bit-exact' if not wrong else f'{wrong} words DIFFER'}")
    cycles = sum(row["cycles"] for row in rows)
    exact = wrong_total == 0 and all(r["cycles"] == r["model_cycles"] for r in rows)
    print(f"{network.name}: {len(gemms)} GEMMs of a training step on the "
          f"{engine.array.rows}x{engine.array.cols} engine ({args.simulator}): "
          f"{'bit-exact, cycles equal to the model' if exact else 'MISMATCH'}; {cycles} cycles; "
          f"{time.perf_counter() - began:.0f} s")
    _write(args.out or Path(f"{network.name}-replay.json"),
           {"network": network.name, "network_file": str(args.network_file),
            "simulator": args.simulator, "engine": config_to_dict(engine),
            "bit_exact": wrong_total == 0, "cycles": cycles, "source": f"rtl:{args.simulator}",
            "gemms": rows})
    return 0 if exact else 1


def _measure_fgmp(args, build, network, data) -> dict:
    import tempfile

    from sim.experiments.fgmp import price_captures, train_fgmp
    from sim.fgmp import FgmpBlockFormat
    from sim.fgmp_control import FgmpPolicy
    from sim.nn import Fp32Backend, train

    config = _config(args, network.name)
    policy = FgmpPolicy()
    steps = config.epochs * -(-len(data.x_train) // config.batch_size)
    with tempfile.TemporaryDirectory(prefix="sparta-fgmp-") as captures:
        fgmp, controller = train_fgmp(config, data, policy=policy, network=network,
                                      capture_dir=captures, capture_steps=[steps - 1],
                                      log=lambda line: print(line, flush=True))
        step, _, figures = price_captures(network, fgmp.captures[-1:], policy=policy,
                                          history=controller.history,
                                          block_format=FgmpBlockFormat())[-1]
    fp32 = train(config, Fp32Backend(), data, network=build())
    traffic = figures["traffic"]
    e16, e8 = figures["energy_fp16"]["total_pj"], figures["energy_fgmp"]["total_pj"]
    print(f"{network.name}: FGMP last step {traffic['bytes_fgmp']} B on the bus against "
          f"{traffic['bytes_fp16']} B in fp16 ({100 * traffic['reduction']:.2f} % less), FP8 "
          f"share {traffic['fp8_share']:.3f}; test accuracy FGMP {fgmp.test_accuracy:.4f}, "
          f"FP32 {fp32.test_accuracy:.4f}; energy fp16 / FGMP {e16 / e8:.3f} (model)")
    return {"step": step, "bytes_fp16": traffic["bytes_fp16"],
            "bytes_fgmp": traffic["bytes_fgmp"],
            "traffic_reduction_percent": round(100 * traffic["reduction"], 3),
            "fp8_share": round(traffic["fp8_share"], 6),
            "test_accuracy_fgmp": fgmp.test_accuracy, "test_accuracy_fp32": fp32.test_accuracy,
            "energy_efficiency_ratio": round(e16 / e8, 4),
            "source": "golden model (traffic and energy: sim.fgmp_traffic, sim.fgmp_energy "
                      "models of the captured last step)"}


def _measure_skip(args, build, network, data) -> dict:
    from sim.experiments.skip import measure_gemm, totals
    from sim.experiments.sparsity import timing_config
    from sim.nn import AccelBackend, train
    from sim.replay import training_step_gemms
    from sim.skip_model import SparseGemm

    config = _config(args, network.name)
    train(config, AccelBackend(), data, network=network,
          log=lambda line: print(line, flush=True))
    engine = timing_config()           # the measurement engine of docs/skip_measure.md
    rows = []
    for g in training_step_gemms(config, network=network, data=data):
        sparse = SparseGemm.from_bits(g.a_bits, g.b_bits, a_fmt=g.a_tags, b_fmt=g.b_tags,
                                      transpose_a=g.transpose_a, transpose_b=g.transpose_b,
                                      accumulate=g.accumulate)
        rows.append({"name": g.name, "kind": g.kind,
                     **measure_gemm(engine, sparse, g.kind, a_transpose=g.transpose_a,
                                    b_transpose=g.transpose_b)})
    backward = totals(rows)["backward"]
    cycles = backward["cycles"]
    print(f"{network.name}: backward pass of a training step after {config.epochs} epochs, "
          f"{engine.array.rows}x{engine.array.cols} engine, design {args.design}: "
          f"{cycles[args.design]} cycles, dense {cycles['dense']} "
          f"({cycles['dense'] / cycles[args.design]:.2f}x), ideal {backward['ideal']} "
          f"(cycle model; no output masks: the step's GEMMs carry none)")
    return {"design": args.design, "backward": backward,
            "backward_speedup": round(cycles["dense"] / cycles[args.design], 4),
            "gemms": rows,
            "source": "cycle model (sim.experiments.skip.measure_gemm, the measurement of "
                      "docs/skip_measure.md; sim.skip_timing.engine_cycles is asserted against "
                      "the RTL by tb/test_engine.py); host compaction and the weight-gradient "
                      "swap of the _compact / _swap designs are host work, not priced here"}


def _measure_schedule(args, build, network, data) -> dict:
    import tempfile

    from scripts.schedule_rtl import ROWS, RTL_CONFIG, level_gemms, run_on_rtl
    from sim.config import config_to_dict
    from sim.experiments.pruning import prune
    from sim.experiments.schedule import measure_level
    from sim.experiments.sparsity import timing_config

    config = _config(args, network.name)
    with tempfile.TemporaryDirectory(prefix="sparta-prune-") as folder:
        pruned = prune(network, config, data, weights_dir=Path(folder) / network.name,
                       finetune_epochs=args.finetune_epochs,
                       log=lambda line: print(line, flush=True))
        levels, on_rtl = [], []
        for level in pruned["levels"]:
            with np.load(Path(folder) / level["weights"]) as stored:
                params = {name: stored[name] for name in stored.files}
            measured = measure_level(network, params, timing_config(), args.time_limit)
            level.pop("weights")
            levels.append({**level, **measured})
            if args.rtl:
                on_rtl += level_gemms(level["sparsity"], measured["layers"], params,
                                      time_limit=args.time_limit)
            print(f"{network.name} {level['sparsity']:.0%}: test accuracy "
                  f"{level['test_accuracy_finetuned']:.4f}; ratio to bound max "
                  f"{measured['ratio_to_bound_max']:.3f} mean "
                  f"{measured['ratio_to_bound_mean']:.3f}; inference x"
                  f"{measured['network']['inference']['speedup_vs_dense']:.3f} vs dense "
                  f"(cycle model)")
    result = {"test_accuracy_dense": pruned["test_accuracy_dense"],
              "finetune": pruned["finetune"], "levels": levels,
              "source": "golden model (accuracy) and cycle model (sim.schedule.grouped_cycles, "
                        "the cycles of the step-list engine's scheduled commands)"}
    if args.rtl:
        rows = run_on_rtl(on_rtl, log=lambda line: print(line, flush=True))
        result["rtl"] = {"gemms": rows, "rows": ROWS, "engine": config_to_dict(RTL_CONFIG),
                         "simulator": "verilator",
                         "source": "RTL (scripts.schedule_rtl.run_on_rtl: every command's "
                                   "cycles checked against the model, every result word "
                                   "against the golden model)"}
        print(f"{network.name}: {len(rows)} pruned GEMMs on the RTL, all equal to the cycle "
              f"model: {all(row['equal'] for row in rows.values())}")
    return result


def _aip_line(name: str, entry: dict) -> str:
    """The chosen point of each AIP policy, one line."""
    from sim.experiments.aip import BATCH, MAX_LOSS_POINTS

    dense = entry["dense"]["test"]["accuracy"]["top1"]
    parts = []
    for policy, result in entry["policies"].items():
        chosen = result["chosen"]
        if chosen is None:
            parts.append(f"{policy}: no point within {MAX_LOSS_POINTS:g} validation point")
            continue
        test = chosen["test"]
        parts.append(f"{policy} alpha {chosen['alpha']} top-n {chosen['top_n']}: top-1 "
                     f"{test['accuracy']['top1']:.4f}, FC weight bytes x"
                     f"{test['batch_1']['fc_weight_bytes']:.3f} (batch 1) x"
                     f"{test[f'batch_{BATCH}']['fc_weight_bytes']:.3f} (batch {BATCH})")
    return (f"{name} AIP on {', '.join(entry['planned_layers'])}, test (dense top-1 "
            f"{dense:.4f}): {'; '.join(parts)} (model figures)")


def _drowsy_line(name: str, entry: dict) -> str:
    """The chosen rates at the engine point, one line."""
    point = f"{entry['engine_point']['skip']:g}"
    chosen = entry["methods"]["chosen"]["rescale"][point]
    uniform = entry["methods"]["uniform"]["rescale"][point]
    channels = entry["methods"]["channel_removal"][point]
    dense_point, chosen_point = entry["engine_point"]["dense"], entry["engine_point"]["chosen"]
    rates = ", ".join(f"{conv} {t}/256" for conv, t in entry["chosen_thresholds"][point].items())
    return (f"{name} DrowsyNet, chosen drop rates {rates} "
            f"(conv MACs skipped {chosen['expected_skip']:.3f} expected, "
            f"{chosen['measured_skip_test']:.3f} measured): test top-1 "
            f"{chosen['test']['top1']:.4f} (dense {entry['dense']['test_accel']['top1']:.4f}, "
            f"uniform {uniform['test']['top1']:.4f}, channel removal "
            f"{channels['test']['top1']:.4f}); conv MAC energy "
            f"-{100 * chosen_point['energy_saved_vs_dense_zero_gated']:.1f} % (model), "
            f"cycles {chosen_point['cycles']['window_mask']} with the mask vs "
            f"{dense_point['cycles']['window']} (cycle model)")


def _measure_inference(args, build, network, data) -> dict:
    from sim.drowsy import conv_layers
    from sim.experiments.aip import measure_network, planned_layers
    from sim.experiments.drowsy import measure_net
    from sim.experiments.training import fp32_train

    config = _config(args, network.name)
    trained = fp32_train(network, config, data, log=lambda line: print(line, flush=True))

    def quiet(line):            # the measurements' own logs: the summary lines below say it
        pass

    result = {"training": trained.info(), "quick": args.quick}
    if planned_layers(network):
        result["aip"] = measure_network(trained, quick=args.quick, log=quiet)
        print(_aip_line(network.name, result["aip"]), flush=True)
    else:
        result["aip"] = {"not_applicable": "no fully connected layer AIP runs (a top-level "
                                           "Linear followed by a ReLU, or a Linear last layer)"}
        print(f"{network.name} AIP: not applicable: {result['aip']['not_applicable']}")
    if conv_layers(network):
        result["drowsy"] = measure_net(trained, quick=args.quick, log=quiet)
        print(_drowsy_line(network.name, result["drowsy"]), flush=True)
    else:
        result["drowsy"] = {"not_applicable": "no convolution (DrowsyNet drops convolution "
                                              "outputs)"}
        print(f"{network.name} DrowsyNet: not applicable: {result['drowsy']['not_applicable']}")
    result["source"] = ("golden model (accuracy: FP32 training, accelerator numerics at "
                        "inference), model figures (AIP bytes and MACs: sim.experiments.aip."
                        "traffic; DrowsyNet energy: sim.fgmp_energy table) and cycle model "
                        "(DrowsyNet cycles: sim.skip_timing.engine_cycles)")
    return result


MEASURES = {"fgmp": _measure_fgmp, "skip": _measure_skip, "schedule": _measure_schedule,
            "inference": _measure_inference}


def measure_main(what: str, argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"sparta measure {what} --network-file",
                                     description=f"{what} measurement of your network.")
    _common(parser)
    parser.add_argument("--epochs", type=int, default=5)
    if what == "skip":
        from sim.experiments.skip import VARIANT_NAMES

        # the design the RTL builds by default (d = 3, docs/skip_measure.md)
        parser.add_argument("--design", default="la3_compact_swap", choices=VARIANT_NAMES,
                            help="design whose cycles are reported (all are recorded)")
    if what == "schedule":
        parser.add_argument("--finetune-epochs", type=int, default=2,
                            help="fine-tuning epochs per sparsity level")
        parser.add_argument("--time-limit", type=float, default=5.0,
                            help="seconds per exact solve and local search")
        parser.add_argument("--rtl", action="store_true",
                            help="also run every pruned GEMM's banked schedule on the RTL "
                                 "engine (Verilator): cycles against the model, bit-exact")
    if what == "inference":
        parser.add_argument("--quick", action="store_true",
                            help="short sweeps on at most 96 validation and test rows (a "
                                 "smoke run)")
    parser.add_argument("--out", type=Path, help=f"results JSON (default <network>-{what}.json)")
    args = parser.parse_args(argv)
    try:
        build, network, data = _network_and_data(args.network_file, args.data)
        _config(args, network.name)
    except ValueError as exc:
        parser.error(str(exc))
    result = MEASURES[what](args, build, network, data)
    _write(args.out or Path(f"{network.name}-{what}.json"),
           {"network": network.name, "network_file": str(args.network_file), what: result})
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
