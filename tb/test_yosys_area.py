"""scripts.yosys_area's synthesis by parts, without Yosys: which submodules are parts, and which
instances count as one part type (the same Verilog up to names, port order and the back end's
serial numbers). The sums themselves are checked against a flat run by ``sparta area skip``
(``by_parts_check`` in docs/results/skip_area.json)."""

import pytest

from scripts import yosys_area
from scripts.yosys_area import _normal_form, _verilog_modules


def _module(name, ports, body, serial):
    return (f"module {name}({', '.join(ports)});\n"
            f"  reg \\$auto$verilog_backend.cc:2355:dump_module${serial}  = 0;\n"
            f"{body}endmodule\n")


ADD = "  assign y = a + b;\n"
SUB = "  assign y = a - b;\n"
VERILOG = "".join([
    _module("top", ["a", "b", "y"], "  \\top.pe_0 pe_0 (.a(a), .b(b));\n", 1),
    _module("\\top.pe_0 ", ["a", "b", "y"], ADD, 2),
    _module("\\top.pe_1 ", ["b", "a", "y"], ADD, 3),     # same PE, ports in another order
    _module("\\top.pe_2 ", ["a", "b", "y"], SUB, 4),     # another PE type
    _module("\\top.pe_2.inner ", ["a"], "", 5),          # a submodule of pe_2
])


def test_modules_and_normal_forms():
    modules = _verilog_modules(VERILOG)
    assert list(modules) == ["top", "\\top.pe_0", "\\top.pe_1", "\\top.pe_2", "\\top.pe_2.inner"]
    forms = {name: _normal_form(name, modules) for name in modules if ".pe_" in name
             and not name.endswith("inner")}
    assert forms["\\top.pe_0"] == forms["\\top.pe_1"]
    assert forms["\\top.pe_0"] != forms["\\top.pe_2"]
    assert "inner" in forms["\\top.pe_2"]          # a part carries its submodules


def test_by_parts_sums_rest_and_parts(monkeypatch):
    """The rest's figures (its black-box instances not counted as cells) plus each distinct
    part's figures times its instances."""
    calls = []

    def synthesize(verilog, top, blackboxes=()):
        calls.append((top, blackboxes))
        rest = top == "top"
        cells = 100 if rest else (10 if "a + b" in verilog else 7)
        generic = {"$_AND_": cells, **({f"top.pe_{i}": 1 for i in range(3)} if rest else {})}
        return {"cells": cells + (3 if rest else 0), "memories": 0, "memory_bits": 64 * rest,
                "ecp5_lut": cells, "ecp5_ff": 1, "ecp5_dsp": 0, "ecp5_bram": 0,
                "generic_cells_by_type": generic, "ecp5_cells_by_type": {}}

    monkeypatch.setattr(yosys_area, "synthesize", synthesize)
    monkeypatch.setattr(yosys_area, "generate_verilog", lambda design, top: VERILOG)
    result = yosys_area.area_by_parts(object(), "top", r"pe_\d+")
    assert calls[0] == ("top", ("top.pe_0", "top.pe_1", "top.pe_2"))
    assert result["rest"]["cells"] == 100
    assert result["cells"] == 100 + 2 * 10 + 7 and result["ecp5_lut"] == 127
    assert result["ecp5_ff"] == 1 + 3 and result["memory_bits"] == 64
    assert [(p["instances"], p["path"]) for p in result["parts"]] == [(2, "pe_0"), (1, "pe_2")]
    with pytest.raises(ValueError, match="no submodule of top matches"):
        yosys_area.area_by_parts(object(), "top", r"nothing")
