# amaranth: UnusedElaboratable=no
"""Runner: AipSelect benches on Icarus and Verilator, and its parameter checks."""

import pytest

from hw.aip.engine import AipEngine
from hw.aip.select import AipSelect
from sim.aip_spec import N_BITS
from sim.config import MAX_DIM
from sim.runner import Design, read_metrics, run_bench
from tb.aip_case import design, network_case
from tb.conftest import regress, unit_vectors, vectors, verilator_builds_first_only
from tb.engine_driver import config_to_case
from tb.engines import CONFIGS as ENGINES

# (lanes, max_len, max_n): rows of up to 20 with the full insertion list (n = N reachable);
# 3 lanes (not a power of two) with max_n < max_len (RANGE on n), rows of 13 (not a multiple)
CONFIGS = [(4, 20, None), (3, 13, 5)]


def _bench(simulator, lanes, max_len, max_n, n_vectors):
    unit = Design(AipSelect, lanes=lanes, max_len=max_len, max_n=max_n)
    run_bench(unit, toplevel="aip_select", bench_module="tb.aip_select_tb", simulator=simulator,
              case={"lanes": lanes, "max_len": max_len, "max_n": max_n, "vectors": n_vectors},
              player=True)


@pytest.mark.parametrize("lanes,max_len,max_n", CONFIGS)
def test_aip_select(simulator, lanes, max_len, max_n):
    verilator_builds_first_only(simulator, (lanes, max_len, max_n), CONFIGS[0])
    _bench(simulator, lanes, max_len, max_n, unit_vectors(len(CONFIGS)))


def test_aip_select_one_lane():
    """One lane (a beat is an element) and the shortest rows, on Icarus only."""
    _bench("icarus", 1, 3, None, vectors() // 4)


def test_aip_engine():
    """The AIP procedure on a 4 x 4 engine with a lookahead window (approximate pass,
    selection from rd_data into the keep plane, masked exact pass), on Icarus."""
    config = ENGINES["4x4 window4"]
    unit = Design(AipEngine, config, max_len=config.acc_width, max_n=8)
    run_bench(unit, toplevel="aip_engine", bench_module="tb.aip_engine_tb", simulator="icarus",
              testcase="aip_layers",
              case={**config_to_case(config), "max_len": config.acc_width, "max_n": 8,
                    "layers": 4})


def _trained_layers(tmp_path, layers, simulator="icarus"):
    spec = network_case(tmp_path / "aip.npz", samples=4, policy="stride", layers=layers)
    run_dir = run_bench(design(), toplevel="aip_engine", bench_module="tb.aip_engine_tb",
                        simulator=simulator, testcase="aip_network", case=spec)
    rows = {row["layer"]: row for row in read_metrics(run_dir)}
    assert set(rows) == set(layers)
    for layer in spec["layers"]:
        row = rows[layer["name"]]
        assert (row["approx_cycles"], row["exact_cycles"], row["kept"]) == \
            (layer["approx_cycles"], layer["exact_cycles"], layer["kept"])


def test_aip_engine_trained_fc2(tmp_path):
    """The last layer of the trained digits CNN (64 -> 10, top-3; stride policy, 4 test
    digits) as AIP on the engine, bit for bit and cycle for cycle against sim.aip and the
    cycle model, on Icarus."""
    _trained_layers(tmp_path, ("fc2",))


@pytest.mark.skipif(not regress(), reason="make regress only (fc1's weight loads and "
                    "8k-cycle exact pass: ~75 s on Icarus; a ~40 s Verilator build)")
def test_aip_engine_trained_layers(tmp_path, simulator):
    """Both FC layers of the trained digits CNN (fc1 1024 -> 64 with the thresholds of
    alpha = 0, then fc2 top-3), as the fc2 test, on both simulators."""
    _trained_layers(tmp_path, ("fc1", "fc2"), simulator)


def test_aip_engine_needs_output_mask():
    with pytest.raises(ValueError, match="output_mask=True"):
        AipEngine(ENGINES["4x4"], max_len=16)


@pytest.mark.parametrize("field,value,low,high", [
    ("lanes", 0, 1, MAX_DIM), ("lanes", MAX_DIM + 1, 1, MAX_DIM), ("lanes", "4", 1, MAX_DIM),
    ("lanes", True, 1, MAX_DIM), ("max_len", 0, 1, (1 << N_BITS) - 1),
    ("max_len", 1 << N_BITS, 1, (1 << N_BITS) - 1), ("max_len", 8.0, 1, (1 << N_BITS) - 1),
    ("max_n", 0, 1, 16), ("max_n", 17, 1, 16), ("max_n", False, 1, 16),
])
def test_aip_select_rejects_bad_parameters(field, value, low, high):
    kwargs = {"lanes": 4, "max_len": 16, field: value}
    with pytest.raises(ValueError, match=rf"{field} must be an integer in {low}\.\.{high}, not"):
        AipSelect(**kwargs)


@pytest.mark.parametrize("lanes,max_len,max_n,beats", [(4, 20, 20, 5), (3, 13, 5, 5), (1, 3, 3, 3),
                                                       (8, 1, 1, 1)])
def test_aip_select_sizes(lanes, max_len, max_n, beats):
    unit = AipSelect(lanes=lanes, max_len=max_len, max_n=max_n)
    assert (unit.beats, unit.max_n) == (beats, max_n)
    assert unit.row_cycles(0, max_len) == beats
    assert unit.row_cycles(1, max_len) == max_len + beats + 1
