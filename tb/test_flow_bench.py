"""scripts/flow_bench.py: targets judged the right way round (docs/flow.md is generated from
docs/results/flow.json: tb/test_docs.py)."""


from scripts.flow_bench import TARGETS, summarise


def _speed(verilator, icarus):
    return {f"{sim}_{mode}": {"cycles_per_cpu_s": value * (1 if mode == "hardware_alone" else 0.5)}
            for sim, value in (("verilator", verilator), ("icarus", icarus))
            for mode in ("hardware_alone", "python_per_cycle")}


def _cold(demo, test):
    return {"demo": {"cold_s": demo, "warm_s": 1.0}, "test": {"cold_s": test, "warm_s": 2.0}}


def test_targets_are_minimum_speeds_and_maximum_times():
    good = summarise(_speed(60_000, 100), _cold(100.0, 600.0))
    assert good["verilator_over_icarus"] == 600.0
    assert good["met"] == {key: True for key in TARGETS}
    slow = summarise(_speed(40_000, 400), _cold(200.0, 800.0))
    assert slow["met"] == {key: False for key in TARGETS}


def test_missing_parts_are_not_judged():
    assert summarise({}, {})["met"] == {}
