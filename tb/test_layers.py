"""The layers read one way: gateware imports only the specification modules of sim/ (never a
golden or cycle model, never a bench), golden models never import Amaranth, scripts never import
tests. Checked on the import statements of every file."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What the gateware is built from (configuration, formats, field widths, error codes, timing)
SPEC_MODULES = {"sim.config", "sim.formats", "sim.engine_spec", "sim.array_timing"}
#: Golden-model modules whose constants the gateware still reads (to be split into spec
#: modules like sim.engine_spec): FGMP formats and thresholds, the LFSR constants and jump
#: matrices, the scratchpad geometry
NOT_YET_SPLIT = {"sim.fgmp", "sim.lfsr", "sim.scratchpad_model"}


def _imported(path: Path, *, module_level: bool = False) -> set[str]:
    """Absolute imports of a file; ``module_level``: not those inside functions (lazy
    imports, which run only when the function is called)."""
    names = set()

    def visit(node):
        if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def _files(package):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("hw"), ids=lambda p: str(p.relative_to(ROOT)))
def test_gateware_imports_only_the_specification(path):
    project = {name for name in _imported(path) if name.split(".")[0] in ("sim", "tb", "scripts")}
    assert project <= SPEC_MODULES | NOT_YET_SPLIT, \
        f"{path.relative_to(ROOT)} imports {sorted(project - SPEC_MODULES - NOT_YET_SPLIT)}"


@pytest.mark.parametrize("path", _files("sim"), ids=lambda p: str(p.relative_to(ROOT)))
def test_models_import_neither_amaranth_nor_gateware(path):
    """At module level (the simulator runner and the elaboration cache import Amaranth and
    cocotb inside the functions that need them; ``FPFormat.layout`` imports Amaranth when a
    gateware asks for it)."""
    top = {name.split(".")[0] for name in _imported(path, module_level=True)}
    assert not top & {"amaranth", "cocotb", "cocotb_tools", "hw", "tb", "scripts"}, path


@pytest.mark.parametrize("path", _files("scripts") + _files("examples"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_never_import_tests(path):
    tests = {name for name in _imported(path) if name.startswith("tb.test_")}
    assert not tests, f"{path.relative_to(ROOT)} imports the tests {sorted(tests)}"
