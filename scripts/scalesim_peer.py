"""Compute cycles of GEMMs on a systolic array from the peer simulator SCALE-Sim v3.

SCALE-Sim (PyPI ``scalesim``) needs ``numpy<2.4`` and so cannot share our virtual environment;
it gets its own, ``<build root>/scalesim-venv``, created on first use from the interpreter that
made ours (and from PyPI, so the first run needs the network). Every call of
:func:`scalesim_cycles` is one SCALE-Sim run: a GEMM topology with one layer per shape, run in a
temporary directory under the build root that is removed afterwards.

Shapes follow our convention ``C[M, N] = A[M, K] @ B[K, N]`` and SCALE-Sim's GEMM topology takes
them in the same order: it reads a row ``M, N, K`` as an ifmap of M rows by K columns, a 1 x K
filter and N filters, so its ifmap is our A, its filters are the columns of our B, and K is the
reduction. Output stationary holds a tile of C (M along the array rows, N along the columns)
and streams K; weight stationary holds a K x N tile of B and streams M; input stationary holds a
K x M tile of A and streams N.

The figure returned is the ``Total Cycles`` column of ``COMPUTE_REPORT.csv``: cycles from the
first operand entering the array to the last result leaving it, DRAM prefetch excluded. The
interface bandwidth is CALC (SCALE-Sim sizes it so that reads never stall) and the SRAMs are large
enough to hold every operand; a run that reports stall cycles anyway raises. No traces are
written. Reference point: 8 x 8 output stationary, M = N = K = 64 gives 4991 (ideal 4096).

SCALE-Sim steps through every cycle in Python and keeps per-cycle records: about 1 s of
start-up plus roughly 0.1 ms and 1.5 kB per simulated cycle, so M = N = K = 512 on an 8 x 8 array
(2.2 M cycles) takes 3 to 6 minutes and 3 GB of memory.

Usage: python -m scripts.scalesim_peer --rows 8 --cols 8 --dataflow os 64x64x64 256x256x256
"""

from __future__ import annotations

import argparse
import configparser
import csv
import fcntl
import math
import operator
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sim.runner import build_root

__all__ = ["DATAFLOWS", "SCALESIM_REQUIREMENTS", "ScaleSimUnavailable", "scalesim_python",
           "scalesim_cycles"]

DATAFLOWS = ("os", "ws", "is")
# The config keys, CSV formats and report columns used below are those of this release.
SCALESIM_REQUIREMENTS = ("scalesim==3.0.0", "numpy<2.4")

# SRAM sizes never go below this (KiB): with small SRAMs SCALE-Sim spends its time on refills.
_MIN_SRAM_KB = 4096
_RUN_NAME = "peer"

# Runs inside the SCALE-Sim venv. SCALE-Sim's own command line (scalesim.scale) ignores its
# "save trace" flag and always writes the traces, which are large and slow to write.
_DRIVER = """\
import sys
from scalesim.scale_sim import scalesim
config, topology, layout, out = sys.argv[1:]
run = scalesim(save_disk_space=True, verbose=False, config=config, topology=topology,
               layout=layout, input_type_gemm=True)
run.run_scale(top_path=out)
"""


class ScaleSimUnavailable(RuntimeError):
    """The SCALE-Sim virtual environment could not be created (typically: no network)."""


def _venv_dir() -> Path:
    return build_root() / "scalesim-venv"


def _base_python() -> str:
    exe = getattr(sys, "_base_executable", None) or shutil.which("python3")
    if not exe or not Path(exe).exists():
        raise ScaleSimUnavailable("no base python3 interpreter to create the SCALE-Sim venv with")
    return exe


def _run_setup_step(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ScaleSimUnavailable(f"{what} failed (exit {done.returncode}):\n{tail}")


def scalesim_python() -> Path:
    """Interpreter of the SCALE-Sim venv, creating or completing the venv first if needed.

    A stamp file naming :data:`SCALESIM_REQUIREMENTS` marks a finished install, so that a venv
    left half-made by an interrupted run is completed rather than trusted.
    """
    venv = _venv_dir()
    python = venv / "bin" / "python"
    stamp = venv / ".sparta-installed"
    wanted = "\n".join(SCALESIM_REQUIREMENTS) + "\n"
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers may get here together
    with open(venv.parent / "scalesim-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == wanted and python.exists():
            return python
        if not python.exists():
            _run_setup_step([_base_python(), "-m", "venv", str(venv)],
                            f"creating the SCALE-Sim venv at {venv}")
        _run_setup_step([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                         *SCALESIM_REQUIREMENTS],
                        f"installing {' '.join(SCALESIM_REQUIREMENTS)} into {venv}")
        stamp.write_text(wanted)
    return python


def _positive_int(value) -> int | None:
    """``value`` as an int if it is an integer >= 1 (numpy integers included, bools not)."""
    if isinstance(value, bool):
        return None
    try:
        number = operator.index(value)
    except TypeError:
        return None
    return number if number >= 1 else None


def _check_arguments(rows, cols, dataflow, shapes) -> list[tuple[int, int, int]]:
    for name, value in (("rows", rows), ("cols", cols)):
        if _positive_int(value) is None:
            raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {', '.join(DATAFLOWS)}, not {dataflow!r}")
    checked = []
    for shape in shapes:
        dims = tuple(_positive_int(d) for d in shape) if isinstance(shape, (tuple, list)) else ()
        if len(dims) != 3 or None in dims:
            raise ValueError(f"a GEMM shape must be three integers (M, N, K) >= 1, not {shape!r}")
        checked.append(dims)
    return checked


def _write_config(path: Path, rows: int, cols: int, dataflow: str, sram_kb: int) -> None:
    config = configparser.ConfigParser()
    config.optionxform = str  # keep SCALE-Sim's spelling (it reads case-insensitively anyway)
    config["general"] = {"run_name": _RUN_NAME}
    config["run_presets"] = {"InterfaceBandwidth": "CALC", "UseRamulatorTrace": "False"}
    config["architecture_presets"] = {
        "ArrayHeight": rows, "ArrayWidth": cols,
        "ifmapsramszkB": sram_kb, "filtersramszkB": sram_kb, "ofmapsramszkB": sram_kb,
        "IfmapOffset": 0, "FilterOffset": 10_000_000, "OfmapOffset": 20_000_000,
        "Dataflow": dataflow,
        "ReadRequestBuffer": 32, "WriteRequestBuffer": 32,
    }
    # Banked SRAM layouts are off: these numbers are parsed but not used.
    config["layout"] = {
        "IfmapCustomLayout": "False", "FilterCustomLayout": "False",
        "IfmapSRAMBankBandwidth": 10, "IfmapSRAMBankNum": 10, "IfmapSRAMBankPort": 2,
        "FilterSRAMBankBandwidth": 10, "FilterSRAMBankNum": 10, "FilterSRAMBankPort": 2,
    }
    config["sparsity"] = {"SparsitySupport": "False"}
    with open(path, "w") as f:
        config.write(f)


def _layer_names(count: int) -> list[str]:
    return [f"gemm{i}" for i in range(count)]


def _write_topology(path: Path, shapes: list[tuple[int, int, int]]) -> None:
    # SCALE-Sim drops the last comma-separated field of every row, hence the trailing commas.
    lines = ["Layer, M, N, K,"]
    lines += [f"{name}, {m}, {n}, {k}," for name, (m, n, k) in zip(_layer_names(len(shapes)), shapes)]
    path.write_text("\n".join(lines) + "\n")


def _write_layout(path: Path, count: int) -> None:
    # Read even with custom layouts off: intraline factors (ifmap H, W; filter H, W; channels;
    # filters), then ifmap intra/interline orders (3 + 3) and filter intra/interline orders (4 + 4).
    fields = [1] * 6 + [0, 1, 2] * 2 + [0, 1, 2, 3] * 2
    header = "Layer name," + ",".join(f"f{i}" for i in range(len(fields))) + ","
    row = ",".join(str(x) for x in fields)
    path.write_text("\n".join([header] + [f"{name},{row}," for name in _layer_names(count)]) + "\n")


def _sram_kb(shapes: list[tuple[int, int, int]]) -> int:
    # one-byte words; the active half of each double-buffered SRAM holds the largest operand
    largest = max(max(m * k, k * n, m * n) for m, n, k in shapes)
    return max(_MIN_SRAM_KB, 2 * math.ceil(largest / 1024))


def _read_compute_report(path: Path, count: int) -> list[int]:
    with open(path, newline="") as f:
        table = [[cell.strip() for cell in row] for row in csv.reader(f) if row]
    header, body = table[0], table[1:]
    layer_col = header.index("LayerID")
    cycles_col = header.index("Total Cycles")
    stall_col = header.index("Stall Cycles")
    if [int(row[layer_col]) for row in body] != list(range(count)):
        raise RuntimeError(f"{path} does not list layers 0..{count - 1} in order")
    stalled = [int(row[layer_col]) for row in body if int(row[stall_col]) != 0]
    if stalled:
        raise RuntimeError(f"SCALE-Sim reports memory stalls in layers {stalled}: its cycle "
                           f"counts are not compute-only")
    return [int(row[cycles_col]) for row in body]


def scalesim_cycles(rows: int, cols: int, dataflow: str,
                    shapes: list[tuple[int, int, int]]) -> list[int]:
    """SCALE-Sim compute cycles of each GEMM ``(M, N, K)`` on a ``rows`` x ``cols`` array.

    Parameters
    ----------
    rows, cols : int
        Systolic array height and width (>= 1).
    dataflow : str
        ``"os"`` (output stationary), ``"ws"`` (weight stationary) or ``"is"`` (input stationary).
    shapes : list of (M, N, K)
        GEMMs ``C[M, N] = A[M, K] @ B[K, N]``, all run in one SCALE-Sim invocation.

    Returns
    -------
    list of int
        Compute cycles per shape, in order (``Total Cycles`` of ``COMPUTE_REPORT.csv``).

    Raises
    ------
    ValueError
        On an unknown dataflow, an array size below 1 or a malformed shape.
    ScaleSimUnavailable
        When the SCALE-Sim venv is missing and cannot be created.
    RuntimeError
        When SCALE-Sim fails or reports memory stalls.
    """
    shapes = _check_arguments(rows, cols, dataflow, shapes)
    rows, cols = operator.index(rows), operator.index(cols)
    if not shapes:
        return []
    python = scalesim_python()
    runs = build_root() / "runs" / "scalesim"
    runs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{rows}x{cols}-{dataflow}-", dir=runs) as tmp:
        work = Path(tmp)
        _write_config(work / "config.cfg", rows, cols, dataflow, _sram_kb(shapes))
        _write_topology(work / "gemm.csv", shapes)
        _write_layout(work / "layout.csv", len(shapes))
        # -I: neither our PYTHONPATH nor the user's site-packages may leak into SCALE-Sim's venv
        done = subprocess.run(
            [str(python), "-I", "-c", _DRIVER, str(work / "config.cfg"), str(work / "gemm.csv"),
             str(work / "layout.csv"), str(work / "out")],
            cwd=work, capture_output=True, text=True)
        report = work / "out" / _RUN_NAME / "COMPUTE_REPORT.csv"
        if done.returncode != 0 or not report.exists():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
            raise RuntimeError(f"SCALE-Sim failed (exit {done.returncode}):\n{tail}")
        return _read_compute_report(report, len(shapes))


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        m, n, k = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is MxNxK, e.g. 64x64x64, not {text!r}") from None
    return m, n, k


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8, help="array height (default 8)")
    parser.add_argument("--cols", type=int, default=8, help="array width (default 8)")
    parser.add_argument("--dataflow", choices=DATAFLOWS, default="os", help="default os")
    parser.add_argument("shapes", nargs="+", type=_parse_shape, metavar="MxNxK",
                        help="GEMM C[M,N] = A[M,K] B[K,N]")
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        cycles = scalesim_cycles(args.rows, args.cols, args.dataflow, args.shapes)
        seconds = time.perf_counter() - start
    except ValueError as error:
        parser.error(str(error))
    print(f"SCALE-Sim {args.rows}x{args.cols} {args.dataflow}")
    print(f"{'M':>6} {'N':>6} {'K':>6} {'cycles':>10} {'ideal':>10} {'ratio':>6}")
    for (m, n, k), count in zip(args.shapes, cycles):
        ideal = math.ceil(m * n * k / (args.rows * args.cols))
        print(f"{m:>6} {n:>6} {k:>6} {count:>10} {ideal:>10} {count / ideal:>6.3f}")
    print(f"({len(cycles)} layer(s) in one SCALE-Sim run, {seconds:.1f} s)")


if __name__ == "__main__":
    main()
