"""Running the replay bench (``tb/replay_tb.py``): one whole training step of a network, as
engine commands, through the RTL engine (used by ``tb/test_replay.py`` and
``scripts/replay.py``)."""

from hw.engine.engine import GemmEngine
from sim.runner import Design, run_bench
from tb.engine_driver import config_to_case
from tb.engines import CONFIGS

__all__ = ["REPLAY_ENGINE", "P_IDLE", "P_STALL", "replay_case", "run_replay"]

#: The replay's engine: the engine bench's 8x8 output-stationary configuration (multiplier
#: stages 1, scratchpads of 64 columns by 72 / 64 rows, accumulator memory 64 x 68). Being the
#: same Verilog, it shares that bench's Verilator build (the build, not the replay, is what a
#: cold run of ``make test`` waits for); larger memories would cut the step into fewer
#: commands (68 instead of 309 with 128 x 256) but save only 3% of the cycles (and 14% of the
#: words written).
REPLAY_ENGINE = CONFIGS["8x8"]

#: Few idle cycles and little backpressure: the replay is about bit-exactness on real data.
P_IDLE = P_STALL = 0.02


def replay_case(config=REPLAY_ENGINE, *, p_idle=P_IDLE, p_stall=P_STALL, **extra) -> dict:
    """The replay bench's case: the engine, the idle and stall probabilities, and ``extra``
    (the ``gemms`` test's file names)."""
    return {**config_to_case(config), "p_idle": p_idle, "p_stall": p_stall, **extra}


def run_replay(simulator, config=REPLAY_ENGINE, **kwargs):
    """Run the replay bench; returns the run directory (its metrics: ``sim.runner``)."""
    return run_bench(Design(GemmEngine, config), toplevel="gemm_engine", bench_module="tb.replay_tb",
                     simulator=simulator, testcase="training_step", case=replay_case(config),
                     **kwargs)
