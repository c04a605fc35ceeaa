"""scripts/flow_bench.py: targets judged the right way round, and docs/flow.md is exactly what
docs/results/flow.json gives (the page is generated, never edited)."""

import json

from scripts.flow_bench import TARGETS, summarise, write_markdown
from scripts.results import DOCS_DIR, RESULTS_DIR


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


def test_missing_parts_are_not_judged(tmp_path):
    data = {"provenance": None, **summarise({}, {})}
    assert data["met"] == {}
    write_markdown(data, tmp_path / "flow.md")
    assert "not measured" in (tmp_path / "flow.md").read_text()


def test_doc_is_generated_from_the_results(tmp_path):
    data = json.loads((RESULTS_DIR / "flow.json").read_text())
    write_markdown(data, tmp_path / "flow.md")
    assert (tmp_path / "flow.md").read_text() == (DOCS_DIR / "flow.md").read_text(), \
        "docs/flow.md differs from docs/results/flow.json: python -m scripts.flow_bench " \
        "--skip-cold --skip-speed regenerates it"


def test_every_result_key_records_its_provenance(tmp_path, monkeypatch):
    import pytest

    import scripts.results as results_module

    monkeypatch.setattr(results_module, "RESULTS_DIR", tmp_path)
    results_module.update_results("x", a=1)
    results_module.update_results("x", b=2)
    data = json.loads((tmp_path / "x.json").read_text())
    assert (data["a"], data["b"]) == (1, 2)
    assert set(data["provenance"]) == {"a", "b"}
    assert all(len(p["commit"]) == 40 and isinstance(p["dirty"], bool)
               for p in data["provenance"].values())
    with pytest.raises(ValueError, match="recorded by update_results itself"):
        results_module.update_results("x", provenance={})
