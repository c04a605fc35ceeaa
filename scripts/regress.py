"""make regress: every test of ``tb/`` with long random runs on both simulators, sharded over
the cores, with one recorded seed -> ``docs/results/regress.json``, ``docs/regress.md``.

Runs pytest on ``tb/`` with pytest-xdist (``--jobs`` workers, 2 by default: the tests are
handed out one at a time to whichever worker is free), ``SPARTA_VECTORS`` (1,000,000 by
default: every runner that reads it runs its long random bench and every configuration on both
simulators, ``tb.conftest.regress``) and one seed for everything (``SPARTA_SEED``; ``--seed``,
else ``$SPARTA_SEED``, else drawn at random; printed first). It collects:

* each test's outcome and seconds (setup + call + teardown), through this module loaded into
  pytest as a plugin (``-p scripts.regress``: the controller writes every report to
  ``$SPARTA_REGRESS_OUTCOMES``);
* what the benches checked: every line they record (``tb.harness.record_metrics``), labelled
  by ``sim.runner`` with toplevel, simulator, configuration and seed (``$SPARTA_METRICS_OUT``).

Recorded (``docs/results/regress.json``, key ``full``; a partial run under ``partial``):

* ``seed``, ``vectors``, ``jobs``, ``selection`` (pytest arguments), ``wall_s``;
* ``tests``: passed / failed / error / skipped; ``wrong_answers`` = failed + error;
  ``failures``: node id and the command that reruns that test alone with the same seed;
  ``per_test``: node id, outcome, seconds (and a skip's reason);
* ``vectors_checked``: {unit: {simulator: vectors}} (``vectors`` summed by
  ``scripts.fp_units.unit_of_record``: the toplevel, FP variants named apart);
* ``engine_commands``: {configuration of ``tb.engines``: {simulator: {commands (random:
  good and bad engine commands), accesses (bad host accesses), mask_commands (bad dropout
  mask commands), scheduled, dense (step-list bench)}}};
* ``bench_counts``: {toplevel: {simulator: {count: n}}} for every count key of :data:`COUNTS`;
* ``totals``: ``programs``, ``faults``, ``soft_resets`` summed over the benches that record
  them (``null``: no bench recorded it); ``hangs``: the failed tests whose report holds a
  watchdog's message (:data:`HANG_MARKERS`), counted once a bench ran under a watchdog (one
  that records ``watchdog_cycles``); ``program_records`` (lines with a
  ``program`` key: one per compiled program a bench ran);
* ``fuzz``: {configuration of ``tb/test_accel_fuzz.py``: {simulator: programs, instructions,
  spoiled, soft resets, SLVERR ranges (``faults``), resynchronisations, cycles, and per
  ``endings.<error>`` and ``beats_refused.<response>``}} of the accelerator fuzzer's runs;
* ``seeds``: the cocotb seeds the benches ran with (one, ``seed``, unless a test sets its own);
* ``formal``: per harness of ``docs/results/formal.json`` (``sparta formal``; ``make regress``
  reruns the same checks in ``tb/test_formal.py``), each task's depth, verdict and seconds and
  the mutants caught.

A run is *partial* when it selects tests (``-k``, pytest arguments after ``--``) or runs fewer
than :data:`FULL_VECTORS` vectors. A partial run prints its summary and writes nothing, unless
``--write``: then it is recorded under ``partial``, and a full run's figures (``full``) are never
replaced by a partial run.

Usage: sparta regress [--vectors N] [--seed S] [--jobs J] [-k EXPR] [--write] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.results import load, record

__all__ = ["main", "run", "summarise", "FULL_VECTORS", "COUNTS"]

ROOT = Path(__file__).resolve().parent.parent
#: ``SPARTA_VECTORS`` of the full regression: 10^6 per FP unit and simulator (issue 21); the
#: other benches' counts follow it (tb/conftest.py)
FULL_VECTORS = 1_000_000
#: the keys of a bench's metrics that count what it checked (summed in ``bench_counts``)
COUNTS = ("vectors", "commands", "scheduled", "dense", "accesses", "mask_commands", "transfers",
          "loads", "stores", "reads", "writes", "tiles", "programs", "instructions", "faults",
          "soft_resets", "spoiled", "resyncs")
#: what an engine bench counts per configuration (``engine_commands``)
ENGINE_COUNTS = ("commands", "scheduled", "dense", "accesses", "mask_commands")
#: totals over every bench (``null`` when none records the key)
TOTALS = ("programs", "faults", "hangs", "soft_resets")
#: what a watchdog says when it stops a bench that waited too long (the host driver's
#: ``AcceleratorTimeout``, the register bus's watchdog of ``tb.accel_host``): a failed test whose
#: report holds one of these counts as a hang
HANG_MARKERS = ("AcceleratorTimeout", "no IRQ within", "cycles of polling",
                "cycles after a soft reset", "no bus response within")
OUTCOMES_ENV = "SPARTA_REGRESS_OUTCOMES"
#: node ids of the tests that usually take minutes: simulator runs and SymbiYosys checks
LONG_KINDS = ("[icarus", "[verilator", "tb/test_formal.py")
#: this module, as pytest loads it (``__name__`` is ``__main__`` under ``python -m``)
PLUGIN = "scripts.regress"


# -- the pytest plugin (``-p scripts.regress``) -----------------------------------------------

_outcome_log: Path | None = None


def pytest_configure(config):
    """Log reports in the controller only: pytest-xdist's workers load the plugin too, and the
    controller sees every worker's reports (and a crashed worker's test as failed)."""
    global _outcome_log
    if os.environ.get(OUTCOMES_ENV) and not hasattr(config, "workerinput"):
        _outcome_log = Path(os.environ[OUTCOMES_ENV])


def _log(entry: dict):
    if _outcome_log is not None:
        with open(_outcome_log, "a") as out:
            out.write(json.dumps(entry) + "\n")


def _last_seconds() -> dict[str, float]:
    """Each test's seconds in the last recorded run (the full one, else the partial one)."""
    data = load("regress", reader=__name__, missing_ok=True)
    seconds: dict[str, float] = {}
    for key in ("partial", "full"):             # the full run's figures win
        for test in data.get(key, {}).get("per_test", []):
            seconds[test["nodeid"]] = test["seconds"]
    return seconds


def pytest_collection_modifyitems(session, config, items):
    """Longest tests first, by the last recorded run's seconds (unknown ones after them, the
    simulator runs and formal checks first among those), so that no long test starts last and
    keeps one worker busy after the other ran out of tests. Every worker collects the same
    order."""
    if not os.environ.get(OUTCOMES_ENV):
        return
    seconds = _last_seconds()

    def cost(item):
        long_kind = any(mark in item.nodeid for mark in LONG_KINDS)
        return (-seconds.get(item.nodeid, 0.0), not long_kind)

    items.sort(key=cost)


def pytest_runtest_logreport(report):
    entry = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
             "seconds": report.duration}
    if report.skipped and isinstance(report.longrepr, tuple):
        entry["reason"] = str(report.longrepr[2]).removeprefix("Skipped: ")
    if report.failed:
        entry["hang"] = any(marker in report.longreprtext for marker in HANG_MARKERS)
    _log(entry)


def pytest_collectreport(report):
    if report.failed:
        _log({"nodeid": report.nodeid, "when": "collect", "outcome": "failed", "seconds": 0.0})


# -- running -----------------------------------------------------------------------------------

def run(*, vectors: int, seed: int, jobs: int, selection: list[str]) -> dict:
    """Run pytest (``selection``: its arguments) with the regression's environment; returns
    ``{"returncode", "wall_s", "reports", "metrics"}`` (the plugin's and the benches' lines)."""
    with tempfile.TemporaryDirectory(prefix="sparta-regress-") as tmp:
        outcomes, metrics = Path(tmp) / "outcomes.jsonl", Path(tmp) / "metrics.jsonl"
        outcomes.touch()
        metrics.touch()
        env = dict(os.environ, SPARTA_VECTORS=str(vectors), SPARTA_SEED=str(seed),
                   SPARTA_METRICS_OUT=str(metrics), **{OUTCOMES_ENV: str(outcomes)})
        # one test at a time to a free worker: pytest-xdist's default hands a worker up to
        # half of the tests left in one step, and an idle worker cannot take them back (the
        # first full run sat on one worker for its last 231 tests)
        command = [sys.executable, "-m", "pytest", "-n", str(jobs), "--dist", "load",
                   "--maxschedchunk", "1", "-q", "-p", PLUGIN, *selection]
        python = Path(sys.executable)
        shown = [str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else str(python),
                 *command[1:]]
        print("$", shlex.join([f"SPARTA_VECTORS={vectors}", f"SPARTA_SEED={seed}", *shown]),
              flush=True)
        began = time.perf_counter()
        returncode = subprocess.call(command, cwd=ROOT, env=env)
        wall = time.perf_counter() - began
        return {"returncode": returncode, "wall_s": wall,
                "reports": _read_lines(outcomes), "metrics": _read_lines(metrics)}


def _read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def reproduce(nodeid: str, *, seed: int, vectors: int) -> str:
    """The command that reruns one test alone with the regression's seed and vectors (the node
    id in single quotes: parametrized ids hold brackets and spaces)."""
    quoted = "'" + nodeid.replace("'", "'\"'\"'") + "'"
    return f"SPARTA_SEED={seed} SPARTA_VECTORS={vectors} .venv/bin/python -m pytest {quoted}"


def _tests(reports: list[dict]) -> dict[str, dict]:
    """Node id -> outcome (passed, failed, error: a failure outside the test's call, skipped)
    and seconds over its phases."""
    tests: dict[str, dict] = {}
    for report in reports:
        test = tests.setdefault(report["nodeid"], {"outcome": "passed", "seconds": 0.0})
        test["seconds"] += report["seconds"]
        if report["outcome"] == "failed":
            test["hang"] = test.get("hang", False) or report.get("hang", False)
            if test["outcome"] != "failed":
                test["outcome"] = "failed" if report["when"] == "call" else "error"
        elif report["outcome"] == "skipped" and test["outcome"] == "passed":
            test["outcome"] = "skipped"
            if "reason" in report:
                test["reason"] = report["reason"]
    for test in tests.values():
        test["seconds"] = round(test["seconds"], 2)
    return tests


def _engine_names() -> dict[str, str]:
    """The configurations of ``tb.engines`` by their bench case (JSON text, as runners pass
    them to ``run_bench``)."""
    from tb.engine_driver import config_to_case
    from tb.engines import CONFIGS

    return {json.dumps(config_to_case(config), sort_keys=True): name
            for name, config in CONFIGS.items()}


def _engine_name(case: dict, names: dict[str, str], toplevel: str) -> str:
    """The name of a bench case's engine configuration (its keys beyond a configuration's, such
    as ``commands``, left out), else the toplevel with its shape."""
    for text, name in names.items():
        keys = json.loads(text).keys()
        if keys <= case.keys() and json.dumps({k: case[k] for k in keys}, sort_keys=True) == text:
            return name
    return f"{toplevel} {case.get('rows', '?')}x{case.get('cols', '?')}"


def _nested(depth: int):
    return collections.defaultdict(lambda: _nested(depth - 1)) if depth > 1 else \
        collections.defaultdict(int)


def _fuzz_name(case: dict) -> str:
    """A fuzzing run's configuration in a few words, from the configuration in its case."""
    config = case.get("config", {})
    engine = config.get("engine", {})
    array = engine.get("array", {})
    words = [f"{array.get('rows', '?')}x{array.get('cols', '?')} {array.get('dataflow', '')}",
             "A " + "/".join(array.get("a_formats", [])),
             "B " + "/".join(array.get("b_formats", [])),
             f"{config.get('data_width', '?')}-bit data", f"{config.get('addr_width', '?')}-bit "
             f"addresses"]
    if array.get("skip_zeros"):
        words.append(f"zero skipping (window {array.get('skip_window', 1)})")
    if engine.get("output_mask"):
        words.append("output masks")
    return ", ".join(words)


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in sorted(value.items())}
    return value


def summarise(outcome: dict, *, vectors: int, seed: int, jobs: int, selection: list[str],
              partial_because: list[str]) -> dict:
    """The results entry of a run (see the module's docstring)."""
    from scripts.fp_units import unit_of_record

    tests = _tests(outcome["reports"])
    counts = collections.Counter(test["outcome"] for test in tests.values())
    metrics = outcome["metrics"]
    names = _engine_names()
    vectors_checked, engine, bench = _nested(2), _nested(3), _nested(3)
    totals = {key: None for key in TOTALS}
    for line in metrics:
        simulator, toplevel = line.get("simulator", "?"), line.get("toplevel", "?")
        if isinstance(line.get("vectors"), int):
            vectors_checked[unit_of_record(line)][simulator] += line["vectors"]
        if any(isinstance(line.get(key), int) for key in ENGINE_COUNTS) \
                and "rows" in line.get("case", {}):
            config = _engine_name(line["case"], names, toplevel)
            for key in ENGINE_COUNTS:
                if isinstance(line.get(key), int):
                    engine[config][simulator][key] += line[key]
        for key in COUNTS:
            if isinstance(line.get(key), int) and not isinstance(line[key], bool):
                bench[toplevel][simulator][key] += line[key]
        for key in TOTALS:
            if isinstance(line.get(key), int):
                totals[key] = (totals[key] or 0) + line[key]
    # hangs: the tests a watchdog failed, counted when some bench ran under a watchdog (a bench
    # stops at its first hang, so it cannot count them itself)
    if any("watchdog_cycles" in line for line in metrics) or any(
            test.get("hang") for test in tests.values()):
        totals["hangs"] = sum(bool(test.get("hang")) for test in tests.values())
    fuzz = _nested(3)           # {configuration: {simulator: {count or "what.key": n}}}
    for line in metrics:
        if "endings" not in line:
            continue
        config = _fuzz_name(line.get("case", {}))
        tally = fuzz[config][line.get("simulator", "?")]
        for key in ("programs", "instructions", "spoiled", "soft_resets", "faults", "resyncs",
                    "cycles"):
            tally[key] += line.get(key, 0)
        for what in ("endings", "beats_refused"):
            for name, n in line.get(what, {}).items():
                tally[f"{what}.{name}"] += n
    failures = [{"nodeid": nodeid, "outcome": test["outcome"],
                 "reproduce": reproduce(nodeid, seed=seed, vectors=vectors)}
                for nodeid, test in tests.items() if test["outcome"] in ("failed", "error")]
    return {
        "seed": seed, "vectors": vectors, "jobs": jobs, "selection": selection,
        "partial": bool(partial_because), "partial_because": partial_because,
        "wall_s": round(outcome["wall_s"], 1), "pytest_returncode": outcome["returncode"],
        "tests": {key: counts.get(key, 0) for key in ("passed", "failed", "error", "skipped")},
        "wrong_answers": counts.get("failed", 0) + counts.get("error", 0),
        "failures": failures,
        "per_test": [{"nodeid": nodeid, **test} for nodeid, test in sorted(tests.items())],
        "vectors_checked": _plain(vectors_checked),
        "engine_commands": _plain(engine),
        "bench_counts": _plain(bench),
        "totals": {**totals, "program_records": sum("program" in line for line in metrics)},
        "fuzz": _plain(fuzz),
        "seeds": sorted({line["seed"] for line in metrics if line.get("seed") is not None}),
        "formal": formal_summary(),
    }


def formal_summary() -> dict:
    """Per harness of ``docs/results/formal.json``: each task's depth, verdict and seconds,
    mutants caught of mutants, and when it was measured (``{}`` before ``sparta formal``)."""
    data = load("formal", reader=__name__, missing_ok=True)
    where = data.get("provenance", {})
    summary = {}
    for name, entry in sorted(data.items()):
        if name in ("provenance", "tools"):
            continue
        summary[name] = {
            "tasks": {mode: {key: task[key] for key in ("depth", "verdict", "seconds")}
                      for mode, task in sorted(entry["tasks"].items())},
            "mutants": len(entry["mutants"]),
            "mutants_caught": sum(task["verdict"] == "FAIL" for task in entry["mutants"].values()),
            "measured": {key: where.get(name, {}).get(key) for key in ("commit", "date")}}
    return summary


def _print_summary(entry: dict):
    tests = entry["tests"]
    print(f"\nsparta regress: seed {entry['seed']}, {entry['vectors']:,} vectors, "
          f"{entry['jobs']} worker(s), {entry['wall_s']:.0f} s wall"
          + (f" (partial: {'; '.join(entry['partial_because'])})" if entry["partial"] else ""))
    print("  tests: " + ", ".join(f"{n} {key}" for key, n in tests.items())
          + f"; wrong answers {entry['wrong_answers']}")
    for unit, sims in entry["vectors_checked"].items():
        print(f"  {unit:22s} " + "  ".join(f"{sim} {n:>11,d}" for sim, n in sims.items())
              + " vectors")
    for config, sims in entry["engine_commands"].items():
        print(f"  engine {config:15s} " + "  ".join(
            f"{sim} " + ", ".join(f"{n:,} {key}" for key, n in keys.items())
            for sim, keys in sims.items()))
    totals = {key: value for key, value in entry["totals"].items() if value}
    if totals:
        print("  totals: " + ", ".join(f"{key} {value:,}" for key, value in totals.items()))
    for failure in entry["failures"]:
        print(f"  {failure['outcome'].upper()} {failure['nodeid']}\n    rerun alone: "
              f"{failure['reproduce']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparta regress", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog="A partial run (-k, pytest arguments, or fewer than "
               f"{FULL_VECTORS:,} vectors) writes nothing unless --write; it never replaces a "
               "full run's figures.")
    parser.add_argument("--vectors", type=int, default=FULL_VECTORS,
                        help=f"SPARTA_VECTORS: random vectors per unit and simulator; the other "
                             f"benches' counts follow it (default {FULL_VECTORS:,})")
    parser.add_argument("--seed", type=int, default=None,
                        help="SPARTA_SEED for every bench (default: $SPARTA_SEED, else random)")
    parser.add_argument("-j", "--jobs", type=int, default=2,
                        help="pytest-xdist workers (default 2)")
    parser.add_argument("-k", dest="keyword", default=None,
                        help="pytest -k expression: run the matching tests only (partial)")
    parser.add_argument("--write", action="store_true",
                        help="record a partial run too (key 'partial' of regress.json)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="after --: pytest arguments instead of 'tb' (partial)")
    args = parser.parse_args(argv)
    if args.vectors < 1:
        parser.error(f"--vectors must be >= 1, not {args.vectors}")
    if args.jobs < 0:
        parser.error(f"--jobs must be >= 0, not {args.jobs}")
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    seed = args.seed
    if seed is None:
        seed = int(os.environ["SPARTA_SEED"]) if os.environ.get("SPARTA_SEED") else \
            secrets.randbelow(2**31)
    if seed < 0:
        parser.error(f"--seed must be >= 0, not {seed}")
    selection = [*(["-k", args.keyword] if args.keyword else []), *(extra or ["tb"])]
    partial_because = ([f"-k {args.keyword}"] if args.keyword else []) + \
        ([f"pytest arguments {shlex.join(extra)}"] if extra else []) + \
        ([f"{args.vectors:,} vectors < {FULL_VECTORS:,}"] if args.vectors < FULL_VECTORS else [])
    print(f"sparta regress: seed {seed} (rerun with --seed {seed} or SPARTA_SEED={seed}), "
          f"{args.vectors:,} vectors per unit and simulator, {args.jobs} worker(s)", flush=True)
    outcome = run(vectors=args.vectors, seed=seed, jobs=args.jobs, selection=selection)
    if outcome["returncode"] not in (0, 1):
        print(f"sparta regress: pytest stopped with exit status {outcome['returncode']} "
              f"(interrupted, internal error, bad usage or no test collected); nothing recorded")
        return outcome["returncode"]
    entry = summarise(outcome, vectors=args.vectors, seed=seed, jobs=args.jobs,
                      selection=selection, partial_because=partial_because)
    _print_summary(entry)
    key = "partial" if entry["partial"] else "full"
    if entry["partial"] and not args.write:
        print("partial run: nothing recorded (--write records it under 'partial')")
    else:
        from scripts import report

        path = record("regress", {key: entry}, writer=__name__,
                      config={"vectors": args.vectors, "jobs": args.jobs, "selection": selection})
        print(f"wrote {path} ({key})")
        report.rewrite("regress.md")
    return 1 if entry["wrong_answers"] else 0


if __name__ == "__main__":
    sys.exit(main())
