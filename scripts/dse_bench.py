"""The design-space sweep measured -> ``docs/results/dse.json`` (key ``example``) and the
example's table and plots in ``docs/dse/``.

Runs the example sweep (``docs/sweeps/example.toml``, :mod:`scripts.sweep`) three times:

1. cold on a ``LocalCluster`` of 2 workers: an empty build root (no elaborated Verilog, no
   synthesis, no sweep cache), its table and plots written to ``docs/dse/``;
2. again with the same cache: what a rerun costs when nothing changed (key
   ``example_reruns``);
3. cold on 1 worker (another empty build root): the speed-up of the second worker; the rows
   must equal those of run 1 (same figures whatever the number of workers).

``--rerun-in BUILD_ROOT`` measures only the reruns, in a build root a cold run left (its
elaboration, Yosys and task caches), twice: the first after whatever changed in the sources
since (the task cache misses when ``hw/``, ``sim/`` or the measuring scripts changed; the
Verilog and synthesis caches below it still hit where the Verilog did not change), the second
with nothing changed -> key ``example_reruns`` (the rows must equal the recorded example's).

``--replot`` redraws ``docs/dse/`` (table, Pareto sets, plots; key ``example_pareto``) from the
recorded rows, without running anything.

Usage: python -m scripts.dse_bench [--spec FILE] [--skip-one-worker] [--rerun-in DIR]
       [--replot]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from scripts.results import DOCS_DIR, load, record
from scripts import sweep

SPEC = DOCS_DIR / "sweeps" / "example.toml"
OUT = DOCS_DIR / "dse"


@contextlib.contextmanager
def _build_root(path: Path):
    """Every cache of the run (elaboration, Yosys, the sweep's) under ``path``; the workers
    inherit it."""
    before = os.environ.get("SPARTA_BUILD_DIR")
    os.environ["SPARTA_BUILD_DIR"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["SPARTA_BUILD_DIR"]
        else:
            os.environ["SPARTA_BUILD_DIR"] = before


def _run(spec, cache: Path, workers: int, what: str) -> sweep.SweepRun:
    print(f"dse: {what} ...", flush=True)
    run = sweep.run_sweep(spec, cache_dir=cache, workers=workers)
    print(f"dse: {what}: {run.wall_s:.1f} s, {run.computed} tasks computed, {run.from_cache} "
          f"from the cache, {run.failed_tasks} failed", flush=True)
    return run


def _timing(run: sweep.SweepRun) -> dict:
    return {"wall_s": run.wall_s, "workers": run.workers, "tasks": run.tasks,
            "computed": run.computed, "from_cache": run.from_cache,
            "failed_tasks": run.failed_tasks}


def _replot(spec) -> int:
    entry = load("dse", reader=__name__).get("example")
    if not entry:
        raise SystemExit("dse: nothing recorded to redraw: run without --replot first")
    timing = entry["cold_2_workers"]
    run = sweep.SweepRun(entry["rows"], timing["tasks"], timing["computed"],
                         timing["from_cache"], timing["failed_tasks"], timing["wall_s"],
                         timing["workers"])
    answers = _answers(sweep.write_outputs(spec, run, OUT))
    record("dse", {"example_pareto": answers}, writer=__name__)
    print(f"dse: redrew {', '.join(answers['plots'])} from the recorded rows")
    return 0


def _answers(document: dict) -> dict:
    """The Pareto sets and plots of a sweep's outputs (key ``example_pareto``)."""
    return {"pareto": document["pareto"],
            "plots": [str(Path(p).relative_to(DOCS_DIR.parent)) for p in document["plots"]]}


def _reruns(spec, root: Path) -> int:
    rows = (load("dse", reader=__name__).get("example") or {}).get("rows")
    if rows is None:
        raise SystemExit("dse: no recorded example to compare the reruns with: run without "
                         "--rerun-in first")
    with _build_root(root):
        changed = _run(spec, root / "sweep", 2, "rerun after a source change")
        again = _run(spec, root / "sweep", 2, "rerun, nothing changed")
    entry = {"after_source_change": _timing(changed), "from_cache": _timing(again),
             "rows_equal": changed.rows == rows and again.rows == rows,
             "build_root": "a copy of the 2-worker cold run's"}
    record("dse", {"example_reruns": entry}, writer=__name__)
    print(f"dse: reruns {changed.wall_s:.1f} s ({changed.computed} computed), "
          f"{again.wall_s:.1f} s ({again.computed} computed); rows as recorded: "
          f"{entry['rows_equal']}")
    return 0 if entry["rows_equal"] else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--skip-one-worker", action="store_true",
                        help="keep the recorded 1-worker run instead of redoing it")
    parser.add_argument("--rerun-in", type=Path, metavar="BUILD_ROOT",
                        help="measure the reruns only, in the build root of an earlier run")
    parser.add_argument("--replot", action="store_true",
                        help="redraw docs/dse/ from the recorded rows, run nothing")
    args = parser.parse_args(argv)
    spec = sweep.load_spec(args.spec)
    if args.replot:
        return _replot(spec)
    if args.rerun_in is not None:
        return _reruns(spec, args.rerun_in)
    configurations = len({repr(p.config) for p in spec.points if p.config is not None})
    with tempfile.TemporaryDirectory(prefix="sparta-dse-") as scratch:
        scratch = Path(scratch)
        with _build_root(scratch / "two"):
            two = _run(spec, scratch / "two" / "sweep", 2, "cold, 2 workers")
            again = _run(spec, scratch / "two" / "sweep", 2, "rerun, from the cache")
        document = sweep.write_outputs(spec, two, OUT)
        entry = {
            "spec": str(args.spec.resolve().relative_to(DOCS_DIR.parent)),
            "configurations": configurations, "points": len(spec.points),
            "workloads": [w.name for w in spec.workloads], "measure": list(spec.measure),
            "train": spec.train, "base": spec.base,
            "tasks_by_kind": {kind: sum(1 for t in sweep.plan(spec, {})[0].values()
                                        if t.kind == kind)
                              for kind in ("area", "fmax", "cycles", "train")},
            "cold_2_workers": _timing(two),
            "rows": two.rows, "machine_cpus": os.cpu_count(),
        }
        if args.skip_one_worker:
            old = load("dse", reader=__name__, missing_ok=True).get("example", {})
            entry["cold_1_worker"] = old.get("cold_1_worker")
            entry["rows_equal_1_vs_2_workers"] = old.get("rows_equal_1_vs_2_workers")
        else:
            with _build_root(scratch / "one"):
                one = _run(spec, scratch / "one" / "sweep", 1, "cold, 1 worker")
            entry["cold_1_worker"] = _timing(one)
            entry["rows_equal_1_vs_2_workers"] = one.rows == two.rows
        if entry.get("cold_1_worker"):
            entry["speedup_2_vs_1_worker"] = round(entry["cold_1_worker"]["wall_s"] /
                                                   two.wall_s, 3)
    reruns = {"after_source_change": None, "from_cache": _timing(again),
              "rows_equal": again.rows == two.rows, "build_root": "the 2-worker cold run's"}
    path = record("dse", {"example": entry, "example_reruns": reruns,
                          "example_pareto": _answers(document)}, writer=__name__)
    print(f"dse: {configurations} configurations, {len(two.rows)} rows; cold 2 workers "
          f"{two.wall_s:.0f} s, 1 worker {(entry.get('cold_1_worker') or {}).get('wall_s')} s "
          f"(speed-up {entry.get('speedup_2_vs_1_worker')}x), rerun {again.wall_s:.1f} s "
          f"({again.computed} computed); rows equal on 1 and 2 workers: "
          f"{entry.get('rows_equal_1_vs_2_workers')} -> {path}")
    return 0 if entry.get("rows_equal_1_vs_2_workers") is not False else 1


if __name__ == "__main__":
    sys.exit(main())
