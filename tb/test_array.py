# amaranth: UnusedElaboratable=no
"""Runner: the systolic array (output and weight stationary) on Icarus and Verilator, and the
timing contract of :mod:`sim.array_timing`."""

import dataclasses

import pytest

from hw.engine.array import OutputStationaryArray, SystolicArray, WeightStationaryArray
from hw.engine.pe import OutputStationaryPE, WeightStationaryPE
from sim.array_timing import array_timing
from sim.config import ArrayConfig
from sim.runner import Design, generate_verilog, run_bench
from tb.conftest import regress

FULL = ("fp16", "e4m3", "e5m2")
FP8 = ("e4m3", "e5m2")

# name: (ArrayConfig fields, bench sizes). Each dataflow gets the smallest array, an odd shape,
# 4x4 with every format, 4x4 with restricted formats and a deep multiplier, and 8x8. Icarus
# simulates a 4x4 array at a few hundred cycles per second and an 8x8 one at a few tens (hence
# the small 8x8 run); Verilator is ~100 times faster once built, so it runs more tiles.
CONFIGURATIONS = {
    "os-1x1": (dict(dataflow="os", rows=1, cols=1, mul_stages=0), dict(tiles=12)),
    "os-3x5-s1": (dict(dataflow="os", rows=3, cols=5, mul_stages=1), dict(tiles=8)),
    "os-4x4": (dict(dataflow="os", rows=4, cols=4, mul_stages=0), dict(tiles=8)),
    "os-4x4-fp8-s2": (dict(dataflow="os", rows=4, cols=4, mul_stages=2, a_formats=FP8,
                           b_formats=FP8), dict(tiles=6)),
    "os-8x8-s2": (dict(dataflow="os", rows=8, cols=8, mul_stages=2), dict(tiles=3, commands=1)),
    # interleaved accumulation: L tiles in flight, the loop's adder pipelined (sim.array_timing)
    "os-1x1-l3": (dict(dataflow="os", rows=1, cols=1, mul_stages=0, acc_interleave=3),
                  dict(tiles=12)),
    "os-3x5-l2-s1": (dict(dataflow="os", rows=3, cols=5, mul_stages=1, acc_interleave=2),
                     dict(tiles=8)),
    "os-4x4-l4-s3": (dict(dataflow="os", rows=4, cols=4, mul_stages=3, acc_interleave=4),
                     dict(tiles=9)),
    "os-4x4-skip-l4": (dict(dataflow="os", rows=4, cols=4, mul_stages=0, skip_zeros=True,
                            acc_interleave=4), dict(tiles=8)),
    "os-4x4-l5-s3": (dict(dataflow="os", rows=4, cols=4, mul_stages=3, acc_interleave=5),
                     dict(tiles=10)),
    # operands decoded once at the array's edge (edge_decode), with the zero gate reading the
    # decoded class, and with interleaved accumulation
    "os-4x4-edge-skip-s1": (dict(dataflow="os", rows=4, cols=4, mul_stages=1, skip_zeros=True,
                                 edge_decode=True), dict(tiles=8)),
    "os-3x5-edge-l5-s3": (dict(dataflow="os", rows=3, cols=5, mul_stages=3, acc_interleave=5,
                               edge_decode=True, a_formats=FP8, b_formats=FULL),
                          dict(tiles=11)),
    # FP8 products on the wide multiplier alone (no narrow one)
    "os-4x4-wide-only": (dict(dataflow="os", rows=4, cols=4, mul_stages=1, narrow_path=False),
                         dict(tiles=8)),
    "ws-1x1-s3": (dict(dataflow="ws", rows=1, cols=1, mul_stages=3), dict(tiles=12)),
    "ws-5x3-s1": (dict(dataflow="ws", rows=5, cols=3, mul_stages=1), dict(tiles=8)),
    "ws-4x4": (dict(dataflow="ws", rows=4, cols=4, mul_stages=0), dict(tiles=8)),
    "ws-4x4-a-fp16-s3": (dict(dataflow="ws", rows=4, cols=4, mul_stages=3, a_formats=("fp16",),
                              b_formats=FULL), dict(tiles=6)),
    "ws-8x8-s2": (dict(dataflow="ws", rows=8, cols=8, mul_stages=2), dict(tiles=3, commands=1)),
    # the partial-sum adder pipelined (psum_stages): rows of A skewed 1 + P apart
    "ws-4x4-p3-s3": (dict(dataflow="ws", rows=4, cols=4, mul_stages=3, psum_stages=3),
                     dict(tiles=6)),
    "ws-5x3-skip-p1": (dict(dataflow="ws", rows=5, cols=3, mul_stages=0, psum_stages=1,
                            skip_zeros=True), dict(tiles=6)),
    # the zero gate (golden: sim.sparsity.gemm_skip); the OS one with a multiplier pipeline
    # that the skip flag must travel through
    "os-4x4-skip-s1": (dict(dataflow="os", rows=4, cols=4, mul_stages=1, skip_zeros=True),
                       dict(tiles=8)),
    "ws-4x4-skip": (dict(dataflow="ws", rows=4, cols=4, mul_stages=0, skip_zeros=True),
                    dict(tiles=8)),
}
VERILATOR_TILES = 4         # times more tiles per command on Verilator
#: configurations make test runs on Icarus only (a Verilator build costs 15-30 s of the
#: fast-flow budget, 35-55 s for an 8x8 array; the 8x8 engine's Verilator build in make test
#: holds an 8x8 array too); make regress runs them on both
ICARUS_BELOW_REGRESS = {"os-4x4-edge-skip-s1", "os-3x5-edge-l5-s3", "ws-5x3-skip-p1",
                        "os-8x8-s2", "ws-8x8-s2"}


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_array(simulator, name):
    if simulator == "verilator" and name in ICARUS_BELOW_REGRESS and not regress():
        pytest.skip("Verilator: make regress (make test runs this configuration on Icarus)")
    fields, sizes = CONFIGURATIONS[name]
    config = ArrayConfig(**fields)
    case = {**dataclasses.asdict(config), "commands": 2, **sizes, "config": name}
    if simulator == "verilator":
        case["tiles"] *= VERILATOR_TILES
    run_bench(Design(SystolicArray, config), toplevel="systolic_array",
              bench_module="tb.array_tb", simulator=simulator, case=case)


def _swap_cycles(timing, starts):
    """Cycles in which each PE swaps, for ``first`` steps entered at ``starts``."""
    return {(r, c): {t + timing.accumulate_offset(r, c) for t in starts}
            for r in range(timing.rows) for c in range(timing.cols)}


@pytest.mark.parametrize("rows, cols, stages, interleave",
                         [(1, 1, 0, 1), (1, 1, 3, 1), (3, 5, 1, 1), (8, 2, 0, 1), (2, 8, 3, 1),
                          (32, 32, 2, 1), (1, 1, 0, 4), (3, 5, 1, 2), (4, 4, 3, 4), (8, 2, 0, 3),
                          (4, 4, 3, 5)])
def test_os_schedule_keeps_shifts_and_swaps_apart(rows, cols, stages, interleave):
    timing = array_timing(ArrayConfig(rows=rows, cols=cols, mul_stages=stages,
                                      acc_interleave=interleave))
    tiles = [[0], [None, 0, 1], list(range(3 * rows + cols)), [0, None]]
    schedule = timing.schedule(tiles)
    starts = [t for t, cycle in enumerate(schedule) if cycle.first]
    shifts = [t for t, cycle in enumerate(schedule) if cycle.shift]
    swaps = _swap_cycles(timing, starts)
    groups = -(-len(tiles) // interleave)
    # every tile of every group (a short last group padded with empty tiles) and the flush
    assert len(starts) == (groups + 1) * interleave
    chain = rows * interleave                  # shadow registers in a column's chain
    for (r, c), swapped in swaps.items():
        # column c's chain moves c cycles after the shift input
        moves = sorted(t + c for t in shifts)
        assert not set(moves) & swapped, (r, c)
        # a group's swaps come in consecutive cycles; between two groups' the chain is shifted
        # exactly R L times (loaded, emptied)
        edges = sorted(swapped)
        for before, after in zip(edges, edges[1:]):
            between = len([t for t in moves if before < t < after])
            assert between == (0 if after - before == 1 else chain), (r, c, before)
    group_starts = starts[::interleave]
    assert timing.min_tile_cycles == rows * interleave + rows + interleave - 1
    assert min(b - a for a, b in zip(group_starts, group_starts[1:])) >= timing.min_tile_cycles
    results = [(t, cycle.result) for t, cycle in enumerate(schedule) if cycle.result]
    assert [r for _, r in results] == [
        (g * interleave + j % interleave, rows - 1 - j // interleave)
        for g in range(groups) for j in range(chain) if g * interleave + j % interleave < len(tiles)]
    # a result row is at the output shift_result_latency after its shift
    assert all(schedule[t - timing.shift_result_latency].shift for t, _ in results)
    assert results[-1][0] == len(schedule) - 1 or groups * interleave > len(tiles)
    assert timing.command_cycles([len(t) for t in tiles]) == len(schedule)
    # a lone long tile: init shifts, K steps (in every L-th cycle), drain
    k = 2 * rows + cols + 7
    assert timing.command_cycles([k]) == (max(0, chain - stages) + interleave * k + rows - 1
                                          + stages + interleave - 1 + 1 + chain + cols - 1)


@pytest.mark.parametrize("rows, cols, stages, psum", [(1, 1, 0, 0), (1, 1, 3, 0), (3, 5, 1, 0),
                                                      (8, 2, 0, 0), (2, 8, 3, 0), (32, 32, 2, 0),
                                                      (1, 1, 0, 3), (3, 5, 1, 2), (8, 2, 3, 3)])
def test_ws_schedule_loads_before_use(rows, cols, stages, psum):
    timing = array_timing(ArrayConfig(rows=rows, cols=cols, mul_stages=stages, dataflow="ws",
                                      psum_stages=psum))
    tiles = [[0], [None, 0, 1], list(range(3 * rows + cols)), [0, None, 1]]
    schedule = timing.schedule(tiles)
    starts = [t for t, cycle in enumerate(schedule) if cycle.first]
    loads = [t for t, cycle in enumerate(schedule) if cycle.load]
    assert len(starts) == len(tiles)
    # each tile's R loads come after every PE swapped in the previous weights (same cycle
    # allowed: the swap reads the register before the load changes it), before PE (0, 0)
    # swaps them in
    previous = None
    for index, start in enumerate(starts):
        mine = [t for t in loads if schedule[t].load_row[0] == index]
        assert len(mine) == rows and max(mine) < start
        if previous is not None:
            assert min(mine) >= previous + timing.pe_offset(rows - 1, cols - 1)
        previous = start
    assert len(loads) == rows * len(tiles)
    results = [(t, cycle.result) for t, cycle in enumerate(schedule) if cycle.result]
    steps = [(t, cycle.step) for t, cycle in enumerate(schedule) if cycle.step]
    assert [(t + timing.result_latency, s) for t, s in steps] == results
    assert timing.result_latency == rows * (1 + psum) + cols - 1 + stages
    assert timing.command_cycles([len(t) for t in tiles]) == len(schedule)


@pytest.mark.parametrize("factory, config, message", [
    (SystolicArray, "4x4", "SystolicArray: config must be an ArrayConfig, not '4x4'"),
    (SystolicArray, dict(rows=4, cols=4), "config must be an ArrayConfig"),
    (OutputStationaryArray, ArrayConfig(dataflow="ws"),
     "OutputStationaryArray: config.dataflow must be 'os', not 'ws'"),
    (WeightStationaryArray, ArrayConfig(dataflow="os"),
     "WeightStationaryArray: config.dataflow must be 'ws', not 'os'"),
    (OutputStationaryPE, ArrayConfig(dataflow="ws"), "config.dataflow must be 'os'"),
    (WeightStationaryPE, None, "WeightStationaryPE: config must be an ArrayConfig, not None"),
    (array_timing, (4, 4), "config must be an ArrayConfig"),
])
def test_array_rejects_bad_configuration(factory, config, message):
    with pytest.raises(ValueError, match=message):
        factory(config)


@pytest.mark.parametrize("fields, message", [
    (dict(rows=0), "rows must be an integer in 1..32, not 0"),
    (dict(cols=33), "cols must be an integer in 1..32, not 33"),
    (dict(dataflow="is"), "dataflow must be one of"),
    (dict(mul_stages=4), "mul_stages must be an integer in 0..3"),
    (dict(a_formats=("fp32",)), "a_formats must contain only"),
    (dict(skip_zeros=1), r"skip_zeros must be a bool \(True or False\), not 1"),
    (dict(skip_zeros="yes"), "skip_zeros must be a bool"),
    (dict(skip_zeros=True, skip_window=0), "skip_window must be an integer in 1..4, not 0"),
    (dict(skip_zeros=True, skip_window=5), "skip_window must be an integer in 1..4, not 5"),
    (dict(skip_zeros=True, skip_window=2.0), "skip_window must be an integer in 1..4"),
    (dict(skip_window=2), r"skip_window 2 needs skip_zeros=True and dataflow 'os' \(got "
                          r"skip_zeros=False"),
    (dict(skip_zeros=True, skip_window=2, dataflow="ws"), "dataflow 'ws'"),
    (dict(narrow_path=1), r"narrow_path must be a bool \(True or False\), not 1"),
    (dict(acc_interleave=0), "acc_interleave must be an integer in 1..5, not 0"),
    (dict(acc_interleave=6), "acc_interleave must be an integer in 1..5, not 6"),
    (dict(acc_interleave=2, dataflow="ws"),
     r"acc_interleave 2 needs dataflow 'os' and skip_window 1 \(got 'ws', skip_window 1\)"),
    (dict(acc_interleave=3, skip_zeros=True, skip_window=2),
     r"acc_interleave 3 needs dataflow 'os' and skip_window 1 \(got 'os', skip_window 2\)"),
])
def test_array_config_is_validated(fields, message):
    with pytest.raises(ValueError, match=message):
        SystolicArray(ArrayConfig(**fields))


def test_schedule_rejects_empty_tiles():
    timing = array_timing(ArrayConfig())
    with pytest.raises(ValueError, match="tiles must hold at least one tile"):
        timing.schedule([])
    with pytest.raises(ValueError, match="tile 1 has no step"):
        timing.schedule([[0], []])
    with pytest.raises(ValueError, match=r"PE \(8, 0\) is outside the 8x8 array"):
        timing.pe_offset(8, 0)


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_skip_zeros_is_part_of_the_configuration(dataflow):
    """A skipping array is another configuration (another Verilog, another build cache
    entry); the default builds the dense PE unchanged."""
    dense = ArrayConfig(rows=2, cols=2, dataflow=dataflow)
    skip = dataclasses.replace(dense, skip_zeros=True)
    assert ArrayConfig(rows=2, cols=2, dataflow=dataflow, skip_zeros=False) == dense
    assert skip != dense and hash(skip) == hash(dataclasses.replace(dense, skip_zeros=True))
    skip_verilog = generate_verilog(Design(SystolicArray, skip), "systolic_array")
    dense_verilog = generate_verilog(Design(SystolicArray, dense), "systolic_array")
    assert skip_verilog != dense_verilog
    assert "product_live" in skip_verilog and "product_live" not in dense_verilog


def test_array_dispatches_on_dataflow():
    assert type(SystolicArray(ArrayConfig(dataflow="os"))) is OutputStationaryArray
    ws = SystolicArray(ArrayConfig(rows=3, cols=2, dataflow="ws", mul_stages=1))
    assert type(ws) is WeightStationaryArray
    assert ws.timing.result_latency == 5
