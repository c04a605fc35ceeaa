"""Flow benchmark: how long a new user waits, and how fast the simulators run.

Writes ``docs/results/flow.json`` (this script is its only writer; ``docs/flow.md`` is made from
it by ``sparta report``, :mod:`scripts.report.flow`):

* ``cold_demo_s`` / ``cold_test_s``: wall time of ``make demo`` and of ``make test`` (with
  ``CI=true``, as CI runs it), each in a fresh ``git clone`` of this commit with no virtual
  environment, an empty build cache and empty tool caches (``XDG_CACHE_HOME``: pip downloads
  every package from the registry again, YoWASP recompiles its WebAssembly). What a fresh
  machine would have and these runs do not need to redo: the system package ``iverilog``
  (``make`` installs it with apt-get when missing; ~10 s) and the operating system's file cache.
* warm times of both commands: the same again in the same clones (everything cached).
* simulation speed on the 8x8 OS engine (``scripts.engine_report.SPEED_CONFIG``, the demo's
  engine), one GEMM whose operands are preloaded, checked bit for bit: simulated cycles per CPU
  second of the simulator process, **hardware alone** (the bench sleeps until ``status``
  changes: no Python per cycle) and **Python per cycle** (the bench reads the status every
  cycle), on Verilator and on Icarus; ``verilator_over_icarus`` is their ratio.

Each figure says where it came from (``"source": "rtl"`` for a simulation, ``"wall clock"``
for a timed command); each key records its provenance (commit, dirty tree, configuration hash).

Usage: python -m scripts.flow_bench [--skip-cold] [--skip-speed] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.engine_report import SPEED_CONFIG, run_hardware_alone
from scripts.progress import spinner
from scripts.report import write as write_report
from scripts.results import DOCS_DIR, load, record
from sim.config import config_to_dict
from sim.runner import opt_fast

__all__ = ["measure_speed", "measure_cold", "main"]

#: GEMM of the speed runs per simulator: the whole 64 x 64 scratchpads on Verilator; Icarus
#: simulates the 8x8 engine at tens of cycles per CPU second, so it gets 32^3 (538 cycles)
SPEED_GEMMS = {"verilator": (64, 64, 64), "icarus": (32, 32, 32)}
#: targets of the fast-flow issue: at least these speeds, at most these times
TARGETS = {"verilator_cycles_per_cpu_s": 50_000, "verilator_over_icarus": 200,
           "cold_demo_s": 180, "cold_test_s": 720}
AT_MOST = ("cold_demo_s", "cold_test_s")
REPO = Path(__file__).resolve().parent.parent


def measure_speed(repeat: int = 3) -> dict:
    """Cycles per CPU second on both simulators, hardware alone and Python per cycle (the best
    of ``repeat`` runs, all listed)."""
    out = {}
    for simulator, gemm in SPEED_GEMMS.items():
        for per_cycle in (False, True):
            label = f"{simulator}_{'python_per_cycle' if per_cycle else 'hardware_alone'}"
            runs = []
            for _ in range(repeat):
                with spinner(f"{label}: {'x'.join(map(str, gemm))} GEMM"):
                    metrics = run_hardware_alone(SPEED_CONFIG, simulator, gemm,
                                                 per_cycle=per_cycle)
                runs.append(round(metrics["cycles_per_cpu_second"]))
                print(f"{label}: {metrics['cycles']} cycles, {runs[-1]:,} cycles per CPU second",
                      flush=True)
            out[label] = {"cycles_per_cpu_s": max(runs), "runs": runs,
                          "cycles": metrics["cycles"], "gemm": list(gemm), "source": "rtl",
                          "engine": config_to_dict(SPEED_CONFIG),
                          "opt_fast": opt_fast() if simulator == "verilator" else None}
    return out


def _timed(command: list[str], cwd: Path, env: dict, log: Path) -> float:
    began = time.perf_counter()
    with open(log, "w") as out:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - began
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed in {cwd} (exit {result.returncode}); "
                           f"log: {log}")
    return round(seconds, 1)


def measure_cold(target: str, work: Path) -> dict:
    """``make <target>`` in a fresh clone with empty caches, then again warm."""
    clone = work / f"clone-{target}"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("VIRTUAL_ENV", "PYTHON", "SPARTA_", "VERILATOR", "PIP_"))}
    env.update(CI="true", XDG_CACHE_HOME=str(work / f"xdg-{target}"),
               SPARTA_BUILD_DIR=str(work / f"build-{target}"))
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep)
                                  if ".venv" not in part)
    print(f"cold make {target} in {clone} ...", flush=True)
    with spinner(f"cold make {target}"):
        cold = _timed(["make", target], clone, env, work / f"{target}-cold.log")
    print(f"      {cold} s; warm ...", flush=True)
    warm = _timed(["make", target], clone, env, work / f"{target}-warm.log")
    print(f"      {warm} s", flush=True)
    return {"cold_s": cold, "warm_s": warm, "source": "wall clock",
            "log_tail": (work / f"{target}-cold.log").read_text().splitlines()[-3:]}


def _ratio(a, b):
    return round(a / b, 1) if a and b else None


def summarise(speed: dict, cold: dict) -> dict:
    data = {}
    if cold:
        data["cold_demo_s"] = cold["demo"]["cold_s"]
        data["warm_demo_s"] = cold["demo"]["warm_s"]
        data["cold_test_s"] = cold["test"]["cold_s"]
        data["warm_test_s"] = cold["test"]["warm_s"]
        data["commands"] = cold
    if speed:
        v = speed["verilator_hardware_alone"]["cycles_per_cpu_s"]
        i = speed["icarus_hardware_alone"]["cycles_per_cpu_s"]
        vp = speed["verilator_python_per_cycle"]["cycles_per_cpu_s"]
        ip = speed["icarus_python_per_cycle"]["cycles_per_cpu_s"]
        data.update(verilator_cycles_per_cpu_s=v, icarus_cycles_per_cpu_s=i,
                    verilator_over_icarus=_ratio(v, i),
                    verilator_python_per_cycle_cycles_per_cpu_s=vp,
                    icarus_python_per_cycle_cycles_per_cpu_s=ip,
                    python_per_cycle_verilator_over_icarus=_ratio(vp, ip),
                    speed=speed)
    data["targets"] = TARGETS
    data["met"] = {key: (data[key] <= goal if key in AT_MOST else data[key] >= goal)
                   for key, goal in TARGETS.items() if data.get(key) is not None}
    return data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true",
                        help="skip the fresh-clone runs of make demo / make test")
    parser.add_argument("--skip-speed", action="store_true", help="skip the simulation speed")
    parser.add_argument("--repeat", type=int, default=3, help="speed runs per case (best kept)")
    parser.add_argument("--keep", action="store_true", help="keep the clones and their caches")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, not {args.repeat}")
    previous = load("flow", reader=__name__, missing_ok=True)
    # a skipped part keeps its previous figures, with the provenance they were measured at
    speed, cold = previous.get("speed", {}), previous.get("commands", {})
    measured: set[str] = set()
    if not args.skip_speed:
        speed = measure_speed(args.repeat)
        measured = {"speed", *summarise(speed, {})}
    if not args.skip_cold:
        work = Path(tempfile.mkdtemp(prefix="sparta-flow-"))
        try:
            cold = {target: measure_cold(target, work) for target in ("demo", "test")}
            measured |= {"commands", *summarise({}, cold)}
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    data = summarise(speed, cold)
    if measured:
        record("flow", {key: data[key] for key in measured}, writer=__name__,
               config=SPEED_CONFIG if not args.skip_speed else None)
    write_report([DOCS_DIR / "flow.md", DOCS_DIR.parent / "README.md"])
    for key in ("cold_demo_s", "warm_demo_s", "cold_test_s", "warm_test_s",
                "verilator_cycles_per_cpu_s", "icarus_cycles_per_cpu_s", "verilator_over_icarus",
                "verilator_python_per_cycle_cycles_per_cpu_s",
                "icarus_python_per_cycle_cycles_per_cpu_s"):
        if key in data:
            print(f"{key}: {data[key]:,}")
    print("targets met:", data["met"])
    print("wrote docs/results/flow.json and docs/flow.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
