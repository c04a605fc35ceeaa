"""Run ``C = A . B (+ C)`` of any size on a generated GEMM engine: in RTL simulation or on the
models. The library tiles each GEMM into engine commands; it returns what the engine computed
and how many cycles it took, and checks nothing itself (compare the result with your own
reference).

    from tb.engine_api import run_gemm
    run = run_gemm(config, a, b, backend="verilator")      # a: M x K, b: K x N, float32
    run.out        # float32 M x N, as the engine's accumulators hold it
    run.cycles     # engine cycles, accept to done, summed over its commands

Backends:

* ``"model"``: :func:`sim.replay.golden_replay` (the golden GEMM on the same commands) and the
  exact cycle model :func:`sim.engine_model.command_cycles`; no simulator;
* ``"verilator"`` / ``"icarus"``: the RTL of ``GemmEngine(config)`` (Verilog from the
  elaboration cache), driven by the replay bench (``tb/replay_tb.py``, test ``gemms``) with
  :class:`tb.engine_driver.EngineDriver` in its non-checking mode.

Operands: floating-point arrays (float16 or float32; float64 is refused, because rounding it
to float32 first and then to the operand format would round twice) are rounded once to the
operand format (:func:`sim.numerics.from_float32`, round to nearest even); unsigned integer
arrays are taken as bit patterns of that format. ``c`` is float32 (FP32 accumulator start).
What the host would pay to do this in a system (the tiling, the operand writes, the reads) is
counted in :attr:`GemmRun.words_written` / :attr:`GemmRun.words_read` of an RTL run.
"""

from __future__ import annotations

import dataclasses
import numbers
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sim.config import EngineConfig
from sim.engine_model import command_cycles
from sim.formats import OPERAND_FORMATS, format_by_name
from sim.gemm import TAG_OF
from sim.numerics import from_float32
from sim.replay import WorkloadGemm, golden_replay, save_gemms, split_gemm, split_step

__all__ = ["BACKENDS", "GemmRun", "run_gemm", "run_gemms", "model_cycles", "workload_gemm",
           "random_gemms"]

BACKENDS = ("model", "verilator", "icarus")


@dataclasses.dataclass(frozen=True)
class GemmRun:
    """What the engine computed for one GEMM.

    ``out_bits`` are the FP32 patterns read back (``out`` the same as float32), ``cycles`` the
    engine cycles from accept to ``done`` summed over its ``commands``; ``source`` says where
    the figures come from (``"rtl:verilator"``, ``"rtl:icarus"`` or ``"model"``).
    """

    out_bits: np.ndarray
    cycles: int
    commands: int
    source: str
    words_written: int | None = None
    words_read: int | None = None

    @property
    def out(self) -> np.ndarray:
        return self.out_bits.view(np.float32)


def _operand(values, fmt_name: str, field: str) -> tuple[np.ndarray, np.ndarray]:
    fmt = format_by_name(fmt_name, OPERAND_FORMATS, field=f"{field}_format")
    array = np.asarray(values)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{field} must be a non-empty 2-D array, not shape {array.shape}")
    if array.dtype.kind == "u":
        if int(array.max(initial=0)) >> (8 * fmt.dtype.itemsize):
            raise ValueError(f"{field} holds values wider than {fmt.name} bit patterns")
        bits = array.astype(np.uint16)
    elif array.dtype in (np.float16, np.float32):
        bits = from_float32(fmt, array.astype(np.float32), saturate=False).astype(np.uint16)
    else:
        raise ValueError(f"{field} must be float16, float32 or unsigned bit patterns, not "
                         f"{array.dtype} (round float64 to float32 first: one rounding to "
                         f"{fmt.name} then follows)")
    return bits, np.full(bits.shape, TAG_OF[fmt.name], dtype=np.uint8)


def workload_gemm(a, b, c=None, *, a_format: str = "fp16", b_format: str = "fp16",
                  transpose_a: bool = False, transpose_b: bool = False,
                  name: str = "gemm") -> WorkloadGemm:
    """``A . B (+ c)`` as the engine stores it (see the module doc for the operand forms)."""
    a_bits, a_tags = _operand(a, a_format, "a")
    b_bits, b_tags = _operand(b, b_format, "b")
    c_bits = None
    if c is not None:
        c = np.asarray(c)
        if c.dtype != np.float32:
            raise ValueError(f"c must be float32 (the accumulator start), not {c.dtype}")
        m = a_bits.shape[1 if transpose_a else 0]
        n = b_bits.shape[0 if transpose_b else 1]
        c_bits = np.ascontiguousarray(np.broadcast_to(c, (m, n))).view(np.uint32).copy()
    return WorkloadGemm(name=name, kind="forward", transpose_a=bool(transpose_a),
                        transpose_b=bool(transpose_b), a_bits=a_bits, a_tags=a_tags,
                        b_bits=b_bits, b_tags=b_tags, c_bits=c_bits, out_bits=None)


def model_cycles(config: EngineConfig, gemm: WorkloadGemm, commands=None) -> int:
    """The engine cycles of ``gemm`` from the cycle model alone (no golden GEMM), summed over
    its commands (``split_gemm``'s, unless given)."""
    commands = split_gemm(gemm, config) if commands is None else commands
    return sum(command_cycles(config, c.command) for c in commands)


def run_gemm(config: EngineConfig, a, b, c=None, *, backend: str = "model",
             a_format: str = "fp16", b_format: str = "fp16", transpose_a: bool = False,
             transpose_b: bool = False, **kwargs) -> GemmRun:
    """One GEMM on the engine of ``config`` (see the module doc); ``kwargs`` go to
    :func:`run_gemms`."""
    gemm = workload_gemm(a, b, c, a_format=a_format, b_format=b_format,
                         transpose_a=transpose_a, transpose_b=transpose_b)
    return run_gemms(config, [gemm], backend=backend, **kwargs)[0]


def run_gemms(config: EngineConfig, gemms: Sequence[WorkloadGemm], *, backend: str = "model",
              p_idle: float = 0.0, p_stall: float = 0.0, seed: int | None = None,
              waves: bool = False) -> list[GemmRun]:
    """Several GEMMs in one simulation (operand blocks already in a scratchpad are not written
    again). ``p_idle`` / ``p_stall``: idle cycles on the write streams and backpressure on
    the reads of an RTL run (they change the wall time, not the engine's cycles)."""
    if not isinstance(config, EngineConfig):
        raise ValueError(f"config must be an EngineConfig, not {config!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, not {backend!r}")
    gemms = list(gemms)
    for index, g in enumerate(gemms):
        if not isinstance(g, WorkloadGemm):
            raise ValueError(f"gemms[{index}] must be a WorkloadGemm, not {g!r}")
    for name, value in (("p_idle", p_idle), ("p_stall", p_stall)):
        if not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1), not {value!r}")
    if backend == "model":
        runs = []
        for g in gemms:
            commands = split_gemm(g, config)
            runs.append(GemmRun(out_bits=golden_replay(g, commands),
                                cycles=model_cycles(config, g, commands),
                                commands=len(commands), source="model"))
        return runs
    return _run_rtl(config, gemms, backend, p_idle, p_stall, seed, waves)


def _run_rtl(config, gemms, simulator, p_idle, p_stall, seed, waves) -> list[GemmRun]:
    from hw.engine.engine import GemmEngine
    from sim.runner import Design, run_bench
    from tb.replay_runner import replay_case

    split_step(gemms, config)       # every GEMM fits (ValueError naming it otherwise)
    with tempfile.TemporaryDirectory(prefix="sparta-gemms-") as work:
        source, answers = Path(work) / "gemms.npz", Path(work) / "results.npz"
        save_gemms(source, gemms)
        run_bench(Design(GemmEngine, config), toplevel="gemm_engine",
                  bench_module="tb.replay_tb", simulator=simulator, testcase="gemms",
                  seed=seed, waves=waves, quiet=True,
                  case=replay_case(config, p_idle=p_idle, p_stall=p_stall,
                                   gemms=str(source), results=str(answers)))
        with np.load(answers) as data:
            return [GemmRun(out_bits=data[f"out_{index}"].copy(),
                            cycles=int(data["cycles"][index]),
                            commands=int(data["commands"][index]),
                            source=f"rtl:{simulator}",
                            words_written=int(data["words_written"][index]),
                            words_read=int(data["words_read"][index]))
                    for index in range(len(gemms))]


def random_gemms(rng, engine: EngineConfig, count: int, largest: int) -> list[WorkloadGemm]:
    """``count`` random GEMMs for ``engine``: each dimension 1..``largest``, random transposes,
    operand formats both sides of the array take, 20% zeros in A, ``C_in`` half of the time."""
    formats = [f for f in ("fp16", "e4m3", "e5m2") if f in engine.array.a_formats
               and f in engine.array.b_formats]
    out = []
    for _ in range(count):
        m, n, k = (int(v) for v in rng.integers(1, largest + 1, 3))
        ta, tb = bool(rng.integers(2)), bool(rng.integers(2))
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        a[rng.random(a.shape) < 0.2] = 0.0
        c = rng.standard_normal((m, n)).astype(np.float32) if rng.integers(2) else None
        out.append(workload_gemm(a, b, c, a_format=str(rng.choice(formats)),
                                 b_format=str(rng.choice(formats)), transpose_a=ta,
                                 transpose_b=tb))
    return out
