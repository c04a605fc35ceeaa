"""The documentation's numbers come from the results: every page and generated block is exactly
what ``sparta report`` makes of ``docs/results/``, every numeric table is generated, and the
results files keep to their one writer and their declared readers."""

import ast
import json
from pathlib import Path

import pytest

from scripts import report
from scripts.results import READS, RESULTS, RESULTS_DIR, dependency_order, load, record

ROOT = Path(__file__).resolve().parent.parent
PAGES = report.DOCUMENTS()


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_page_is_what_the_results_give(path):
    assert report.render(path) == path.read_text(), \
        f"{path.relative_to(ROOT)} differs from docs/results/: `sparta report` regenerates it"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_numeric_table_is_generated(path):
    assert report.numeric_tables(path) == [], \
        f"{path.relative_to(ROOT)}: tables with numbers written by hand start at lines " \
        f"{report.numeric_tables(path)}; generate them (scripts/report/) from a results file"


def test_numeric_table_detection(tmp_path):
    page = tmp_path / "x.md"
    page.write_text("| a | b |\n|---|---:|\n| PE | `hw/pe.py` |\n\n| a | b |\n|---|---|\n"
                    "| adder | 1,083 |\n")
    assert report.numeric_tables(page) == [5]
    page.write_text("<!-- sparta-report: x -->\n| a | b |\n|---|---|\n| adder | 12.5% |\n"
                    "<!-- /sparta-report -->\n")
    assert report.numeric_tables(page) == []


def test_results_files_are_registered():
    on_disk = {path.stem for path in RESULTS_DIR.glob("*.json")}
    assert on_disk <= set(RESULTS), f"unregistered results files: {sorted(on_disk - set(RESULTS))}"
    assert set(dependency_order()) == set(RESULTS)
    for reader, names in READS.items():
        assert set(names) <= set(RESULTS), (reader, names)


def test_every_key_records_its_provenance():
    for name in RESULTS:
        path = RESULTS_DIR / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        keys = set(data) - {"provenance"}
        assert keys <= set(data.get("provenance", {})), \
            f"{name}.json: no provenance for {sorted(keys - set(data.get('provenance', {})))}"
        for key in keys:
            assert len(data["provenance"][key]["commit"]) == 40, (name, key)


def test_one_writer_and_declared_readers(tmp_path, monkeypatch):
    import scripts.results as results_module

    monkeypatch.setattr(results_module, "RESULTS_DIR", tmp_path)
    writer = RESULTS["gemm_bench"].writer
    record("gemm_bench", {"a": 1}, writer=writer, config={"rows": 8})
    record("gemm_bench", {"b": 2}, writer=writer)
    data = load("gemm_bench", reader=writer)
    assert (data["a"], data["b"]) == (1, 2)
    assert len(data["provenance"]["a"]["config_hash"]) == 16
    assert "config_hash" not in data["provenance"]["b"]
    with pytest.raises(PermissionError, match="written by scripts.gemm_bench only"):
        record("gemm_bench", {"a": 3}, writer="scripts.demo")
    with pytest.raises(PermissionError, match="without declaring it"):
        load("gemm_bench", reader="scripts.skip_area")
    with pytest.raises(FileNotFoundError, match="sparta area engine"):
        load("engine_area", reader="scripts.demo")
    with pytest.raises(ValueError, match="recorded by record"):
        record("gemm_bench", {"provenance": {}}, writer=writer)
    with pytest.raises(KeyError, match="unknown results file"):
        load("gemm", reader=writer)


def _calls(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) \
                in ("record", "load"):
            yield node


@pytest.mark.parametrize("path", sorted((ROOT / "scripts").glob("*.py")),
                         ids=lambda p: p.name)
def test_scripts_name_their_results_and_never_open_them_directly(path):
    """Every ``record``/``load`` names its file and its module literally (so this test can see
    the dependency), and no script builds a path into docs/results/ itself."""
    module = f"scripts.{path.stem}"
    text = path.read_text()
    if path.stem != "results":
        assert "RESULTS_DIR /" not in text and "RESULTS_DIR/" not in text, \
            f"{path.name} opens a results file directly: use scripts.results.load/record"
    for call in _calls(path):
        keywords = {k.arg: k.value for k in call.keywords}
        role = "writer" if "writer" in keywords else "reader" if "reader" in keywords else None
        if role is None or not call.args or not isinstance(call.args[0], ast.Constant):
            continue
        name = call.args[0].value
        who = keywords[role]
        assert isinstance(who, ast.Name) and who.id == "__name__", \
            f"{path.name}: {role}= must be __name__"
        if role == "writer":
            assert RESULTS[name].writer == module, (path.name, name)
        else:
            assert name in READS.get(module, ()) or RESULTS[name].writer == module, \
                (path.name, name)
