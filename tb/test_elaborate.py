# amaranth: UnusedElaboratable=no
"""The elaboration cache (sim.elaborate) and the lean Verilator build (sim.runner): a key known
before elaboration that no change of gateware source or configuration can leave stale."""

import dataclasses
import enum
import shutil

import numpy as np
import pytest
from amaranth import unsigned

import sim.elaborate as elaborate
from hw.engine.engine import GemmEngine
from hw.fp.adder import FP32Adder
from hw.fp.operand import Operand
from sim.config import ArrayConfig, EngineConfig
from sim.elaborate import (REPO_ROOT, Design, design_key, gateware_sources, source_digest,
                           verilog_of)
from sim.runner import _control_file, build_model, generate_verilog, opt_fast


@pytest.fixture
def tree(tmp_path):
    """A copy of the project's Python packages to edit."""
    for package in ("hw", "sim"):
        shutil.copytree(REPO_ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _edit(path):
    path.write_text(path.read_text() + "\n# edited\n")


def test_every_gateware_file_changes_the_digest(tree):
    """Editing any file under hw/ changes the source digest, one file at a time."""
    files = sorted((tree / "hw").rglob("*.py"))
    assert len(files) > 20
    digests = {source_digest(root=tree)}
    for path in files:
        _edit(path)
        digest = source_digest(root=tree)
        assert digest not in digests, f"editing {path.relative_to(tree)} left the digest as it was"
        digests.add(digest)


def test_imported_golden_modules_are_sources_and_others_are_not(tree):
    """A module that gateware imports (sim/config.py, sim/formats.py, and what they import) is
    part of the key; a golden model no gateware imports (sim/gemm.py) is not."""
    names = {str(path.relative_to(tree)) for path in gateware_sources(root=tree)}
    assert {"sim/config.py", "sim/formats.py", "sim/__init__.py"} <= names
    assert "sim/gemm.py" not in names and "sim/runner.py" not in names
    before = source_digest(root=tree)
    _edit(tree / "sim" / "gemm.py")
    assert source_digest(root=tree) == before
    _edit(tree / "sim" / "formats.py")
    assert source_digest(root=tree) != before


def test_factory_module_outside_hw_is_a_source(tree, monkeypatch):
    """A wrapper top defined outside hw/ (tb/fgmp_tops.py) is hashed with what it imports."""
    shutil.copytree(REPO_ROOT / "tb", tree / "tb", ignore=shutil.ignore_patterns("__pycache__"))
    extra = [tree / "tb" / "fgmp_tops.py"]
    assert str(extra[0]) in {str(p) for p in gateware_sources(extra, root=tree)}
    before = source_digest(extra, root=tree)
    _edit(extra[0])
    assert source_digest(extra, root=tree) != before


def test_key_follows_the_configuration():
    base = Design(GemmEngine, EngineConfig())
    same = Design(GemmEngine, EngineConfig())
    assert design_key(base, "gemm_engine") == design_key(same, "gemm_engine")
    variants = [
        Design(GemmEngine, EngineConfig(array=ArrayConfig(mul_stages=1))),
        Design(GemmEngine, EngineConfig(a_rows=65)),
        Design(GemmEngine, dataclasses.replace(EngineConfig(), out_formats=("fp32",))),
    ]
    keys = {design_key(base, "gemm_engine"), design_key(base, "other_top")}
    for variant in variants:
        keys.add(design_key(variant, "gemm_engine"))
    assert len(keys) == 2 + len(variants)


def test_key_of_arguments_is_canonical():
    assert design_key(Design(FP32Adder, stages=1), "a") == design_key(
        Design(FP32Adder, stages=np.int64(1)), "a")
    assert design_key(Design(FP32Adder, stages=1), "a") != design_key(
        Design(FP32Adder, stages=True), "a")
    # keyword order does not matter; classes and shapes are keyed by name
    from hw.engine.scratchpad import SkewedScratchpad
    one = Design(SkewedScratchpad, lanes=4, width=16, rows=16, element=Operand)
    two = Design(SkewedScratchpad, element=Operand, rows=16, width=16, lanes=4)
    other = Design(SkewedScratchpad, lanes=4, width=16, rows=16, element=unsigned(32))
    assert design_key(one, "s") == design_key(two, "s") != design_key(other, "s")


class _Opaque:
    pass


class _Color(enum.Enum):
    RED = 1


def test_unkeyable_arguments_are_refused():
    with pytest.raises(TypeError, match="cannot build a cache key from a _Opaque"):
        design_key(Design(FP32Adder, stages=_Opaque()), "a")
    with pytest.raises(TypeError, match="no stable qualified name"):
        design_key(Design(lambda: FP32Adder()), "a")
    with pytest.raises(TypeError, match="factory must be callable"):
        Design(3)
    assert design_key(Design(FP32Adder, stages=_Color.RED), "a")


def test_verilog_is_elaborated_once(tmp_path, monkeypatch):
    """The second request of the same design reads the cache; a changed design elaborates."""
    monkeypatch.setenv("SPARTA_BUILD_DIR", str(tmp_path))
    calls = []
    convert = elaborate.convert
    monkeypatch.setattr(elaborate, "convert",
                        lambda component, top: calls.append(top) or convert(component, top))
    first = verilog_of(Design(FP32Adder, stages=0), "fp32_adder")
    assert verilog_of(Design(FP32Adder, stages=0), "fp32_adder") == first
    assert generate_verilog(Design(FP32Adder, stages=0), "fp32_adder") == first
    assert calls == ["fp32_adder"]
    assert verilog_of(Design(FP32Adder, stages=1), "fp32_adder") != first
    assert calls == ["fp32_adder"] * 2
    assert "module fp32_adder" in first
    # a cached file is what the back end wrote for the same component
    assert first == convert(FP32Adder(stages=0), "fp32_adder")


def test_nested_designs_are_built_inside_out():
    from hw.fgmp.packer import FgmpPacker
    from tb.fgmp_tops import PackerTop

    top = Design(PackerTop, Design(FgmpPacker, block=16, bus_bytes=8)).build()
    assert isinstance(top, PackerTop)
    a = Design(PackerTop, Design(FgmpPacker, block=16, bus_bytes=8))
    b = Design(PackerTop, Design(FgmpPacker, block=16, bus_bytes=4))
    assert design_key(a, "p") != design_key(b, "p")


def test_verilog_of_needs_a_design():
    with pytest.raises(TypeError, match="expected a sim.elaborate.Design"):
        verilog_of(FP32Adder(), "fp32_adder")


def test_control_file_makes_only_the_top_and_declared_signals_public():
    text = _control_file("fp_mul", [("fp_mul_inner", "sig*")])
    assert text.splitlines() == ["`verilator_config",
                                 'public_flat_rw -module "fp_mul" -var "*"',
                                 'public_flat_rw -module "fp_mul_inner" -var "sig*"']


def test_verilator_build_is_lean():
    """The Verilator command has no --public-flat-rw, make gets OPT_FAST, and a second build
    of the same Verilog is the cached one (the build of tb/test_fp_add.py's combinational
    adder: no extra build in a full run)."""
    verilog = generate_verilog(Design(FP32Adder, stages=0), "fp32_adder")
    _, build_dir, _ = build_model(verilog, toplevel="fp32_adder", simulator="verilator")
    # Verilator records its command line in the first lines of Vtop__verFiles.dat
    (command,) = [line for line in (build_dir / "Vtop__verFiles.dat").read_text().splitlines()
                  if line.startswith("C ")]
    assert "--vpi" in command and "public.vlt" in command
    assert "--public-flat-rw" not in command and "--threads" not in command
    # the model's C++ (Vtop.cpp, or Vtop__ALL.cpp for a small model) is compiled with OPT_FAST
    (compile_model,) = [line for line in (build_dir / "build.log").read_text().splitlines()
                        if line.startswith("c++") and line.endswith((" Vtop.cpp", " Vtop__ALL.cpp"))]
    assert compile_model.startswith(f"c++ {opt_fast()} ")
    stamp = (build_dir / ".built").stat().st_mtime_ns
    _, again, _ = build_model(verilog, toplevel="fp32_adder", simulator="verilator")
    assert again == build_dir and (build_dir / ".built").stat().st_mtime_ns == stamp
