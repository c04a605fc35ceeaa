# amaranth: UnusedElaboratable=no
"""Runner: GemmEngine on Icarus and Verilator (random GEMMs, bad commands, speed), and the
Python-side checks of the engine's configuration, commands and cycle model."""

import dataclasses
import math

import numpy as np
import pytest

from hw.engine.commands import ErrorCode, GemmCommand, command_layout
from hw.engine.mask import MaskError
from hw.engine.engine import GemmEngine
from hw.engine.sequencer import OutputStationarySequencer
from hw.engine.skip_sequencer import SkipSequencer
from hw.engine.ws_sequencer import WeightStationarySequencer
from sim.array_timing import OutputStationaryTiming, WeightStationaryTiming
from sim.config import PRESETS, ArrayConfig, EngineConfig
from hw.sparsity.dropout_mask import DropoutError
from sim.engine_model import (SPAD_READ_LATENCY, EngineCommand, EngineError, EngineTiming,
                              command_cycles, done_cycles, ideal_cycles, tiles, utilization,
                              validate)
from sim.runner import Design, run_bench
from sim.skip_model import SparseGemm
from sim.skip_timing import engine_cycles, lookahead_latency, mask_write_cycles, with_window
from tb.conftest import engine_commands, regress
from tb.engine_driver import config_to_case
from tb.engines import CONFIGS
from tb.packing import fields

REGRESS = regress()


def commands(config, simulator) -> int:
    """Random commands of a bench run on ``config`` (:func:`tb.conftest.engine_commands`)."""
    return engine_commands(simulator, config.array.rows, config.array.cols)


def run_random(config, simulator):
    run_bench(Design(GemmEngine, config), toplevel="gemm_engine", bench_module="tb.engine_tb",
              simulator=simulator, testcase="random_gemms",
              case={**config_to_case(config), "commands": commands(config, simulator)})


@pytest.mark.parametrize("name", ["4x4", "8x8", "4x4 ws"])
def test_engine(simulator, name):
    if name == "8x8":
        verilator_below_regress(simulator)
    run_random(CONFIGS[name], simulator)


def icarus_below_regress(simulator):
    """Configurations that make test runs on Icarus only (it builds in seconds, a cold
    Verilator build costs 30-60 s of the fast-flow budget); make regress runs both."""
    if simulator == "verilator" and not REGRESS:
        pytest.skip("Verilator: make regress (make test runs this configuration on Icarus)")


def verilator_below_regress(simulator):
    """The 8x8 engine in make test: Verilator only (Icarus simulates it at about 60 cycles per
    second: 30-65 s of make test for what the 4x4 engines check on Icarus); make regress runs
    both."""
    if simulator == "icarus" and not REGRESS:
        pytest.skip("Icarus: make regress (make test runs the 8x8 engine on Verilator)")


@pytest.mark.parametrize("name", ["3x5", "5x3 ws"])
def test_engine_odd_shape(simulator, name):
    """Arrays that are not square, deeper multiplier pipelines, restricted operand formats."""
    icarus_below_regress(simulator)
    run_random(CONFIGS[name], simulator)


@pytest.mark.parametrize("name", ["4x4 l5", "3x5 l2", "4x4 ws p3"])
def test_engine_interleaved(simulator, name):
    """Pipelined accumulation. OS: the sequencer issues tiles in groups of ``L`` (partial
    last groups, the flush, accumulating and overwriting commands); WS: the partial-sum adder
    pipelined, K slices chained through the accumulator memory. Bit-exact, cycles equal to
    the model. make test builds ``4x4 l5`` on Verilator, the others on Icarus only."""
    if name != "4x4 l5":
        icarus_below_regress(simulator)
    run_random(CONFIGS[name], simulator)


def test_engine_output_mask(simulator):
    """Output masks without a window: ``+0`` where the host or dropout plane says so, dense
    cycles; bad dropout mask commands raise ``mask_status`` errors."""
    icarus_below_regress(simulator)
    run_random(CONFIGS["5x3 mask"], simulator)


@pytest.mark.skipif(not REGRESS, reason="make regress only ($SPARTA_VECTORS >= 100000)")
@pytest.mark.parametrize("name", ["16x16", "16x16 ws"])
def test_engine_large(simulator, name):
    run_random(CONFIGS[name], simulator)


def test_engine_skip_zeros(simulator):
    """The zero gate in the engine: accumulate path (``C_old`` from the accumulator memory as
    the first tile's start), per-element tags, sparsity 0..100 %, ``-0`` starts, zeros next to
    infinities and NaNs; golden :func:`sim.sparsity.gemm_skip`."""
    run_random(CONFIGS["4x4 skip"], simulator)


def run_step_lists(config, simulator, share=3):
    """The step-list bench with :func:`commands` scheduled commands, a ``share`` of them
    below make regress (20 in make test)."""
    count = commands(config, simulator)
    run_bench(Design(GemmEngine, config), toplevel="gemm_engine",
              bench_module="tb.step_list_tb", simulator=simulator,
              testcase="scheduled_gemms", case={**config_to_case(config),
                                                "commands": count if REGRESS else count // share})


def test_engine_step_lists(simulator):
    """Scheduled commands (step lists): random pruning patterns (random per filter, all-zero
    filters, one non-zero, dense, all zero), random groupings and lane orders, tables at random
    positions, dense commands between; bits of :func:`sim.step_lists.gemm_step_lists`, cycles
    of :func:`sim.engine_model.scheduled_cycles`; rejected commands, errors met as a command
    runs and bad table writes. Verilator (one more engine build) in make regress."""
    icarus_below_regress(simulator)
    run_step_lists(CONFIGS["4x4 steps"], simulator)


@pytest.mark.skipif(not REGRESS, reason="make regress only (the 4x4 step-list bench runs in "
                    "make test)")
def test_engine_step_lists_odd_shape(simulator):
    """Step lists on a 3 x 5 array (8 accumulator banks for 5 lanes), FP8 weights."""
    run_step_lists(CONFIGS["3x5 steps"], simulator)


@pytest.mark.parametrize("name", ["3x5 window3", "4x4 window4", "4x4 window2"])
def test_engine_skip_window(simulator, name):
    """The lookahead window: every row takes its own next non-zero step (sparsity 0..100 %,
    whole zero lines and tiles, zeros next to infinities and NaNs, accumulate onto ``-0``);
    bits of :func:`sim.sparsity.gemm_skip`, cycles of :func:`sim.skip_timing.engine_cycles`
    for every command; the 3 x 5 and the depth-4 engines also have output masks (random host
    and dropout masks, nothing kept, bad dropout mask commands: ``gemm_skip`` with
    ``out_mask``, ``engine_cycles`` with ``out_keep``). Both simulators run every window."""
    run_random(CONFIGS[name], simulator)


def test_engine_skip_zeros_ws(simulator):
    """The zero gate with weight-stationary K slices chained through the accumulator memory
    (and padded with skipped rows)."""
    run_random(CONFIGS["4x4 ws skip"], simulator)


#: GEMM of the hardware-alone bench: the whole 64 x 64 scratchpads on Verilator; Icarus
#: simulates the 8x8 engine at ~100 cycles per second, so it gets a GEMM of 32^3 (the same
#: path, 8x fewer products: 1 minute less of make test)
HARDWARE_ALONE_GEMMS = {"verilator": [64, 64, 64], "icarus": [32, 32, 32]}


@pytest.mark.parametrize("name", ["8x8", "8x8 l5"])
def test_engine_hardware_alone(simulator, name):
    """8x8, one GEMM with nothing but the clock in Python; checked bit for bit and cycle for
    cycle (the speed figures come from scripts/flow_bench.py, not from this test). ``8x8 l5``:
    interleaved accumulation, a multi-group GEMM with a partial last group."""
    if name != "8x8":
        icarus_below_regress(simulator)
    else:
        verilator_below_regress(simulator)
    config = CONFIGS[name]
    run_bench(Design(GemmEngine, config), toplevel="gemm_engine", bench_module="tb.engine_tb",
              simulator=simulator, testcase="hardware_alone",
              case={**config_to_case(config), "gemm": HARDWARE_ALONE_GEMMS[simulator]})


# -- configuration and commands ------------------------------------------------------------

def test_engine_rejects_bad_config():
    with pytest.raises(ValueError, match="config must be an EngineConfig"):
        GemmEngine(ArrayConfig())
    # interleaved accumulation: not with step lists (their sequencer issues one tile at a time)
    with pytest.raises(ValueError, match=r"step lists \(step_entries > 0\) need "
                                         r"array.acc_interleave = 1, not 2"):
        EngineConfig(array=ArrayConfig(acc_interleave=2, skip_zeros=True), step_entries=4,
                     tile_entries=2)
    with pytest.raises(ValueError, match="config must be an EngineConfig"):
        OutputStationarySequencer(None)


@pytest.mark.parametrize("sequencer, wrong, right", [(OutputStationarySequencer, "ws", "os"),
                                                    (WeightStationarySequencer, "os", "ws")])
def test_sequencer_rejects_other_dataflow(sequencer, wrong, right):
    with pytest.raises(ValueError, match=f"config.array.dataflow must be '{right}'"):
        sequencer(EngineConfig(array=ArrayConfig(dataflow=wrong)))


def test_skip_sequencer_needs_a_window():
    with pytest.raises(ValueError, match="skip_window must be 2..4 for SkipSequencer, not 1"):
        SkipSequencer(EngineConfig(array=ArrayConfig(skip_zeros=True)))


def _random_sparse_gemm(rng, m, n, k, zeros):
    a = rng.random((m, k)) >= zeros
    b = rng.random((k, n)) >= zeros
    return SparseGemm(a_nonzero=a, b_nonzero=b)


@pytest.mark.parametrize("window", [2, 3, 4])
def test_window_cycles_against_dense(window):
    """Without zeros every row needs every step: each tile takes K window cycles and the
    window engine is the dense engine plus its flag latency; with zeros it is never slower
    than that, and with no non-zero operand at all a tile takes ceil(K / d) cycles (floored at
    2R)."""
    config = with_window(CONFIGS["4x4 skip"], window)
    rng = np.random.default_rng(window)
    for m, n, k, accumulate in ((9, 5, 31, False), (4, 4, 1, True), (5, 9, 17, True)):
        command = EngineCommand(m=m, n=n, k=k, accumulate=accumulate)
        dense = command_cycles(config, command)
        latency = lookahead_latency(config, accumulate)
        full = SparseGemm(a_nonzero=np.ones((m, k), bool), b_nonzero=np.ones((k, n), bool),
                          accumulate=accumulate)
        assert engine_cycles(config, command, full) == dense + latency
        for zeros in (0.3, 0.7, 0.95):
            gemm = dataclasses.replace(_random_sparse_gemm(rng, m, n, k, zeros),
                                       accumulate=accumulate)
            assert engine_cycles(config, command, gemm) <= dense + latency
        empty = SparseGemm(a_nonzero=np.zeros((m, k), bool), b_nonzero=np.ones((k, n), bool),
                           accumulate=accumulate)
        timing = EngineTiming.of(config)
        tiles = -(-m // 4) * -(-n // 4)
        want = (tiles * max(-(-k // window), timing.min_tile_slots)
                + timing.overhead(accumulate) + latency)
        assert engine_cycles(config, command, empty) == want


def test_engine_cycles_rejects_bad_arguments():
    config = CONFIGS["4x4 window2"]
    gemm = SparseGemm(a_nonzero=np.ones((2, 3), bool), b_nonzero=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match=r"gemm is \(2, 4, 3\) \(M, N, K\), the command"):
        engine_cycles(config, EngineCommand(m=2, n=4, k=4), gemm)
    with pytest.raises(ValueError, match="gemm must be a SparseGemm"):
        engine_cycles(config, EngineCommand(m=2, n=4, k=3), None)
    masked = dataclasses.replace(gemm, out_keep=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="out_keep must be given exactly when the command"):
        engine_cycles(config, EngineCommand(m=2, n=4, k=3), masked)
    with pytest.raises(ValueError, match="need an engine with output_mask=True"):
        engine_cycles(config, EngineCommand(m=2, n=4, k=3, mask_host=True), masked)
    with_planes = CONFIGS["4x4 window4"]
    with pytest.raises(ValueError, match="out_keep must be given exactly when the command"):
        engine_cycles(with_planes, EngineCommand(m=2, n=4, k=3, mask_dropout=True), gemm)


def test_masked_window_cycles():
    """Output masks in the window model: a command that selects a mask waits for its first
    tile's summary (``R`` rows read); nothing kept runs every tile in ``ceil(K / d)`` window
    cycles (the floor then decides); everything kept is the unmasked window."""
    config = CONFIGS["4x4 window4"]
    timing = EngineTiming.of(config)
    m, n, k = 9, 6, 30
    rng = np.random.default_rng(5)
    gemm = SparseGemm(a_nonzero=rng.random((m, k)) < 0.4, b_nonzero=rng.random((k, n)) < 0.7)
    command = EngineCommand(m=m, n=n, k=k)
    masked = EngineCommand(m=m, n=n, k=k, mask_host=True)
    assert validate(config, masked) is EngineError.NONE
    plain = engine_cycles(config, command, gemm)
    everything = engine_cycles(config, masked, dataclasses.replace(
        gemm, out_keep=np.ones((m, n), bool)))
    assert lookahead_latency(config, False, True) == timing.rows + SPAD_READ_LATENCY
    assert everything - plain == (lookahead_latency(config, False, True)
                                  - lookahead_latency(config, False))
    nothing = engine_cycles(config, masked, dataclasses.replace(
        gemm, out_keep=np.zeros((m, n), bool)))
    tiles = math.ceil(m / 4) * math.ceil(n / 4)
    floor = max(math.ceil(k / 4), timing.min_tile_slots)
    assert nothing == tiles * floor + timing.overhead(False) + lookahead_latency(config, False,
                                                                                 True)
    # accumulating commands hide part of the summary read behind the C_old shift
    assert lookahead_latency(config, True, True) == max(
        0, timing.rows + SPAD_READ_LATENCY - timing.first_tile_issue)


def test_output_mask_config():
    with pytest.raises(ValueError, match="output_mask needs dataflow 'os', not 'ws'"):
        EngineConfig(array=ArrayConfig(dataflow="ws"), output_mask=True)
    with pytest.raises(ValueError, match="output_mask must be a bool"):
        EngineConfig(output_mask=1)
    with pytest.raises(ValueError, match="mask_host must be a bool"):
        EngineCommand(m=1, n=1, k=1, mask_host=1)
    with pytest.raises(ValueError, match="need an engine with output_mask=True"):
        validate(CONFIGS["4x4"], EngineCommand(m=1, n=1, k=1, mask_dropout=True))
    with pytest.raises(ValueError, match="n must be an integer >= 1, not 0"):
        mask_write_cycles(CONFIGS["5x3 mask"], 3, 0)
    # one tile: setup R, tile C, drain R (+ the accept cycle)
    assert mask_write_cycles(CONFIGS["5x3 mask"], 1, 1) == 1 + 5 + 3 + 5


def test_mask_errors_extend_dropout_errors():
    assert {e.name: e.value for e in DropoutError}.items() <= \
        {e.name: e.value for e in MaskError}.items()


def test_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="config must be an EngineConfig"):
        command_cycles(ArrayConfig(), EngineCommand(m=1, n=1, k=1))
    with pytest.raises(ValueError, match="command must be an EngineCommand"):
        validate(CONFIGS["4x4"], (1, 1, 1))


def test_error_codes_agree():
    assert {e.name: e.value for e in ErrorCode} == {e.name: e.value for e in EngineError}


def test_command_layout_matches_model():
    assert set(fields(GemmCommand)) == set(EngineCommand.NUMBERS + EngineCommand.FLAGS)
    masked = fields(command_layout(CONFIGS["5x3 mask"]))
    assert set(masked) == set(EngineCommand.NUMBERS + EngineCommand.FLAGS
                              + EngineCommand.MASK_FLAGS)
    # the mask flags sit above the plain command's bits
    assert all(masked[name] == offset for name, offset in fields(GemmCommand).items())


@pytest.mark.parametrize("field, value", [("m", -1), ("k", 1 << 16), ("a_row", 1.0),
                                          ("c_col", True), ("accumulate", 1)])
def test_command_rejects_bad_fields(field, value):
    good = dict(m=1, n=1, k=1)
    with pytest.raises(ValueError, match=f"{field} must be"):
        EngineCommand(**{**good, field: value})


# -- validation and cycle model ------------------------------------------------------------

CONFIG = CONFIGS["4x4"]


@pytest.mark.parametrize("command, error", [
    (EngineCommand(m=0, n=3, k=3), EngineError.ZERO_SIZE),
    (EngineCommand(m=3, n=3, k=0, a_row=1000), EngineError.ZERO_SIZE),     # sizes first
    (EngineCommand(m=40, n=1, k=32), EngineError.NONE),                   # A fills its memory
    (EngineCommand(m=41, n=1, k=1), EngineError.A_RANGE),
    (EngineCommand(m=1, n=1, k=33), EngineError.A_RANGE),
    (EngineCommand(m=32, n=1, k=36, a_transpose=True), EngineError.NONE),
    (EngineCommand(m=33, n=1, k=1, a_transpose=True), EngineError.A_RANGE),
    (EngineCommand(m=1, n=1, k=1, a_col=32), EngineError.A_RANGE),
    (EngineCommand(m=1, n=1, k=37), EngineError.A_RANGE),
    (EngineCommand(m=1, n=1, k=32, b_row=5), EngineError.B_RANGE),
    (EngineCommand(m=1, n=1, k=30, b_row=7), EngineError.B_RANGE),
    (EngineCommand(m=1, n=33, k=1), EngineError.B_RANGE),
    (EngineCommand(m=1, n=37, k=1, b_transpose=True), EngineError.B_RANGE),
    (EngineCommand(m=1, n=33, k=1, c_col=1), EngineError.B_RANGE),       # B before C
    (EngineCommand(m=1, n=31, k=1, c_col=2), EngineError.C_RANGE),
    (EngineCommand(m=40, n=1, k=1, c_row=5), EngineError.C_RANGE),
    (EngineCommand(m=40, n=32, k=32, c_row=4), EngineError.NONE),
])
def test_validate(command, error):
    assert validate(CONFIG, command) is error
    if error is not EngineError.NONE:
        assert done_cycles(CONFIG, command) == 1        # the RTL's reject
        with pytest.raises(ValueError, match=f"does not fit this engine.*{error.name}"):
            command_cycles(CONFIG, command)
    else:
        assert done_cycles(CONFIG, command) == command_cycles(CONFIG, command) > 1


def test_command_takes_numpy_integers_and_bools():
    command = EngineCommand(m=np.int64(4), n=np.uint8(3), k=np.int32(2), a_transpose=np.bool_(True))
    assert command == EngineCommand(m=4, n=3, k=2, a_transpose=True)
    assert type(command.m) is int and type(command.a_transpose) is bool
    with pytest.raises(ValueError, match="m must be an integer"):
        EngineCommand(m=np.float32(4), n=1, k=1)
    with pytest.raises(ValueError, match="n must be an integer"):
        EngineCommand(m=1, n=np.bool_(True), k=1)


@pytest.mark.parametrize("name", ["4x4", "8x8", "3x5"])
def test_os_timing_matches_array_contract(name):
    config = CONFIGS[name]
    timing = EngineTiming.of(config)
    array = OutputStationaryTiming(config.array)
    assert timing.min_tile_slots == array.min_tile_cycles == 2 * array.rows
    assert timing.first_tile_issue == array.first_tile_start    # equal read latencies
    assert timing.group_delay >= 1


@pytest.mark.parametrize("name", ["4x4 ws", "5x3 ws"])
def test_ws_timing_matches_array_contract(name):
    config = CONFIGS[name]
    timing = EngineTiming.of(config)
    array = WeightStationaryTiming(config.array)
    assert timing.min_tile_slots >= array.min_tile_cycles
    assert timing.load_slot == array.last_swap_offset
    assert timing.first_tile_issue == array.first_tile_start
    assert timing.result_latency == array.result_latency


def test_cycle_model_formula():
    config = PRESETS["8x8"]
    command = EngineCommand(m=64, n=64, k=64)
    assert tiles(config, command) == 64
    assert ideal_cycles(config, command) == 4096
    # 64 tiles of 64 slots, plus accept and check 1, the flush group 8 + 7 after its step,
    # read 2, result deskew 7, done 1; an accumulate adds the initial shifts of C_old, 8
    assert command_cycles(config, command) == 64 * 64 + 26
    assert command_cycles(config, dataclasses.replace(command, accumulate=True)) == 64 * 64 + 34
    assert command_cycles(config, EngineCommand(m=1, n=1, k=1)) == 16 + 26   # 2R slots
    assert utilization(config, EngineCommand(m=256, n=256, k=256)) >= 0.95


def test_cycle_model_ws_formula():
    config = EngineConfig(array=ArrayConfig(dataflow="ws"))
    command = EngineCommand(m=64, n=64, k=64)
    assert tiles(config, command) == 64
    # 63 tiles of 64 slots and the last of M = 64, plus accept and check 1, weight loads 8, read 2,
    # the array's result latency 15, write 1, done 1, less the last step's own cycle
    assert command_cycles(config, command) == 64 * 64 + 27
    # M = 1: tiles of max(2R + C - 2, result latency + write-back + read) = 22 slots
    assert command_cycles(config, EngineCommand(m=1, n=16, k=16)) == 3 * 22 + 1 + 27


def test_step_list_config():
    """Step lists need both memories, an output-stationary array with the zero gate, and no
    window or output masks."""
    with pytest.raises(ValueError, match="step_entries and tile_entries must both be 0"):
        EngineConfig(array=ArrayConfig(skip_zeros=True), step_entries=8)
    with pytest.raises(ValueError, match="step_entries must be an integer in 0..65536"):
        EngineConfig(array=ArrayConfig(skip_zeros=True), step_entries=70000, tile_entries=4)
    with pytest.raises(ValueError, match=r"need array.skip_zeros = True, not False"):
        EngineConfig(step_entries=8, tile_entries=4)
    with pytest.raises(ValueError, match=r"need array.dataflow = 'os', not 'ws'"):
        EngineConfig(array=ArrayConfig(dataflow="ws", skip_zeros=True), step_entries=8,
                     tile_entries=4)
    with pytest.raises(ValueError, match=r"need array.skip_window = 1, not 2"):
        EngineConfig(array=ArrayConfig(skip_zeros=True, skip_window=2), step_entries=8,
                     tile_entries=4)
    assert CONFIGS["4x4 steps"].step_lists and not CONFIGS["4x4 skip"].step_lists
    layout = command_layout(CONFIGS["4x4 steps"])
    assert set(fields(layout)) == set(EngineCommand.NUMBERS + EngineCommand.FLAGS
                                      + EngineCommand.SCHEDULE_FIELDS)


def test_step_list_commands():
    """What the model says of scheduled commands: checks in the hardware's order, and cycles
    that are the dense command's when every tile has K steps."""
    from sim.engine_model import scheduled_cycles
    from sim.engine_spec import tile_entry_error

    config = CONFIGS["4x4 steps"]
    good = EngineCommand(m=9, n=10, k=7, scheduled=True, tile_first=2, tile_count=3)
    assert validate(config, good) is EngineError.NONE
    with pytest.raises(ValueError, match="needs an engine with step lists"):
        validate(CONFIGS["4x4 skip"], good)
    cases = {EngineError.ZERO_SIZE: dict(tile_count=0),
             EngineError.B_RANGE: dict(b_row=config.b_rows),
             EngineError.C_RANGE: dict(c_col=config.acc_width - 9)}
    cases[EngineError.SCHEDULE] = dict(tile_first=config.tile_entries - 2)
    for code, change in cases.items():
        assert validate(config, dataclasses.replace(good, **change)) is code, change
    assert validate(config, dataclasses.replace(good, b_transpose=True)) is EngineError.SCHEDULE
    assert validate(config, dataclasses.replace(good, accumulate=True)) is EngineError.NONE
    # a B region no bigger than one compacted row: K x N of the dense command may not fit
    wide = dataclasses.replace(good, n=30, b_col=config.spad_width - 4)
    assert validate(config, wide) is EngineError.NONE
    dense = EngineCommand(m=9, n=12, k=7)
    natural = dataclasses.replace(dense, scheduled=True, tile_count=3)
    assert scheduled_cycles(config, natural, [7, 7, 7]) == command_cycles(config, dense)
    floor = EngineTiming.of(config).min_tile_slots
    assert scheduled_cycles(config, natural, [0, 1, 20]) - scheduled_cycles(
        config, natural, [7, 7, 7]) == 3 * (floor + floor + 20 - 3 * max(7, floor))
    accumulating = dataclasses.replace(dense, accumulate=True)
    assert scheduled_cycles(config, dataclasses.replace(natural, accumulate=True),
                            [7, 7, 7]) == command_cycles(config, accumulating)
    with pytest.raises(ValueError, match="lengths must be 3 step counts"):
        scheduled_cycles(config, natural, [7, 7])
    with pytest.raises(ValueError, match="is scheduled"):
        command_cycles(config, natural)
    assert tile_entry_error(config, 0, 5, (0, 1, 2, 3)) is EngineError.NONE
    assert tile_entry_error(config, 0, 5, (3, 6, 1, 12)) is EngineError.NONE
    for first, length, columns in ((0, 5, (3, 7)), (44, 5, (0,)), (0, 1, ()),
                                   (0, 1, (0, 1, 2, 3, 4)), (0, 1, (config.acc_width,))):
        assert tile_entry_error(config, first, length, columns) is EngineError.SCHEDULE, \
            (first, length, columns)
