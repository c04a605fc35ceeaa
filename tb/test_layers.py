"""The layers read one way: gateware imports only the specification modules of sim/ (never a
golden or cycle model, never a bench), which import nothing above them; golden models never
import Amaranth, scripts never import tests. Checked on the import statements of every file."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What the gateware is built from (configuration, formats, field widths, error codes, timing,
#: the FGMP formats and stream geometry, the dropout LFSR, the scratchpad geometry, the AIP
#: output selection, the board build and its serial protocol)
SPEC_MODULES = {"sim.config", "sim.formats", "sim.engine_spec", "sim.array_timing",
                "sim.fgmp_spec", "sim.lfsr_spec", "sim.scratchpad_spec", "sim.accel_spec",
                "sim.aip_spec", "sim.board_spec"}
#: What a specification module may import besides the standard library and other
#: specification modules: numpy and its low-precision dtypes (``sim.formats``)
NUMERIC_LIBRARIES = {"numpy", "ml_dtypes"}


def _imported(path: Path, *, module_level: bool = False) -> set[str]:
    """Modules a file imports, relative imports made absolute (``from .config import`` in
    ``sim/engine_spec.py`` is ``sim.config``); ``module_level``: not those inside functions
    (lazy imports, which run only when the function is called) nor under ``if TYPE_CHECKING:``
    (for annotations only)."""
    package = list(path.relative_to(ROOT).parent.parts)
    names = set()

    def visit(node):
        if module_level and (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or
                             isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                             and node.test.id == "TYPE_CHECKING"):
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            names.add(".".join(base + ([node.module] if node.module else [])))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def _files(package):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("hw"), ids=lambda p: str(p.relative_to(ROOT)))
def test_gateware_imports_only_the_specification(path):
    project = {name for name in _imported(path) if name.split(".")[0] in ("sim", "tb", "scripts")}
    assert project <= SPEC_MODULES, \
        f"{path.relative_to(ROOT)} imports {sorted(project - SPEC_MODULES)}"


@pytest.mark.parametrize("module", sorted(SPEC_MODULES))
def test_specification_imports_nothing_above_it(module):
    """A specification module imports, at module level, only the standard library, numpy (and
    ml_dtypes) and other specification modules (``FPFormat.layout`` imports Amaranth inside the
    method a gateware calls)."""
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    outside = {name for name in _imported(path, module_level=True) if name not in SPEC_MODULES
               and name.split(".")[0] not in sys.stdlib_module_names | NUMERIC_LIBRARIES}
    assert not outside, f"{module} imports {sorted(outside)}"


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
