"""Area of the FGMP hardware: packer, unpacker, encoder, and the FGMP PE against a plain fp16 PE.

Also the whole 8x8 engine (64 x 64 scratchpads, the configuration of ``sparta area skip``)
with FGMP operands (fp16 / e4m3 / e5m2, tagged element by element) against the same engine
with fp16 operands only, each synthesised by parts (:func:`scripts.yosys_area.by_parts_row`:
the engine with its PEs as black boxes, each PE type once; ``sparta area skip`` checks the
sum against a flat 8x8 array): the per-element formats' cost measured on a whole engine, not
composed from PEs.

Records the ``area`` section of ``docs/results/fgmp_area.json`` and prints the figures;
``sparta report`` makes the table of ``docs/fgmp_hw.md`` from it.

Usage: python -m scripts.fgmp_area
"""

from __future__ import annotations

import argparse
import sys

from hw.engine.pe import OutputStationaryPE
from hw.fgmp.encoder import FgmpEncoder
from hw.fgmp.packer import FgmpPacker
from hw.fgmp.unpacker import FgmpUnpacker
from scripts.results import record
from sim.config import ArrayConfig
from sim.elaborate import Design
from scripts.yosys_area import area_of

__all__ = ["UNITS", "PE_FORMATS", "ENGINE_FORMATS", "engines", "main"]

#: Block size and bus width of the reference packer / unpacker (the golden model's defaults).
BLOCK, BUS_BYTES = 16, 16

#: Operand formats (both sides) of the compared output-stationary PEs.
PE_FORMATS = {
    "pe_fp16": ("fp16",),                       # plain fp16 PE
    "pe_fgmp": ("fp16", "e4m3", "e5m2"),        # FGMP PE: fp16 and both FP8 tags
    "pe_fp8": ("e4m3", "e5m2"),                 # FP8-only PE, for reference
}


UNITS = {
    "fgmp_packer": Design(FgmpPacker, block=BLOCK, bus_bytes=BUS_BYTES),
    "fgmp_unpacker": Design(FgmpUnpacker, block=BLOCK, bus_bytes=BUS_BYTES),
    "fgmp_encoder": Design(FgmpEncoder, stages=1),
    **{name: Design(OutputStationaryPE, ArrayConfig(a_formats=formats, b_formats=formats))
       for name, formats in PE_FORMATS.items()},
}

#: Operand formats of the compared whole 8x8 engines (name -> formats on both sides)
ENGINE_FORMATS = {"engine_os_8x8_fp16": ("fp16",),
                  "engine_os_8x8": ("fp16", "e4m3", "e5m2")}


def engines() -> dict:
    """name -> :class:`sim.elaborate.Design` of the whole 8x8 engines of
    :data:`ENGINE_FORMATS` (the name is also the Verilog top; ``engine_os_8x8`` is the dense
    engine of ``scripts.skip_area``, so one synthesis serves both)."""
    import dataclasses

    from hw.engine.engine import GemmEngine
    from scripts.engine_report import engine_config

    base = engine_config("8x8")
    return {name: Design(GemmEngine, dataclasses.replace(base, array=dataclasses.replace(
        base.array, a_formats=formats, b_formats=formats)))
        for name, formats in ENGINE_FORMATS.items()}


FIELDS = ("cells", "memories", "memory_bits", "ecp5_lut", "ecp5_ff", "ecp5_dsp", "ecp5_bram")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    area = {}
    for name, design in UNITS.items():
        print(f"synthesising {name} ...", flush=True)
        result = area_of(design, name)
        area[name] = {key: result[key] for key in FIELDS}
        area[name]["ecp5_lutram"] = result["ecp5_cells_by_type"].get("TRELLIS_DPR16X4", 0)
    from scripts.yosys_area import by_parts_row

    whole = {}
    for name, design in engines().items():
        print(f"synthesising {name} by parts ...", flush=True)
        whole[name] = by_parts_row(design, name)
    fgmp, plain = area["pe_fgmp"], area["pe_fp16"]
    big, small = whole["engine_os_8x8"], whole["engine_os_8x8_fp16"]
    section = {
        "units": area,
        "config": {"block": BLOCK, "bus_bytes": BUS_BYTES, "packer_convert_stages": 3,
                   "packer_encode_stages": 1, "encoder_stages": 1, "pe": "OutputStationaryPE",
                   "pe_mul_stages": 0, "pe_formats": {k: list(v) for k, v in PE_FORMATS.items()}},
        "fgmp_pe_over_fp16_pe": {key: round(fgmp[key] / plain[key], 3)
                                 for key in ("cells", "ecp5_lut", "ecp5_ff") if plain[key]},
        "engines_8x8": whole,
        "engine_formats": {k: list(v) for k, v in ENGINE_FORMATS.items()},
        "fgmp_engine_minus_fp16_engine": {
            key: big[key] - small[key]
            for key in ("cells", "ecp5_lut", "ecp5_ff", "ecp5_dsp", "memory_bits")},
    }
    print(f"{'unit':15s} {'cells':>7s} {'mem bits':>8s} {'LUT':>6s} {'FF':>5s} {'DSP':>4s} "
          f"{'LUTRAM':>6s}")
    for name, row in area.items():
        print(f"{name:15s} {row['cells']:7d} {row['memory_bits']:8d} {row['ecp5_lut']:6d} "
              f"{row['ecp5_ff']:5d} {row['ecp5_dsp']:4d} {row['ecp5_lutram']:6d}")
    print("FGMP PE / fp16 PE: " + ", ".join(f"{k} x{v}" for k, v in
                                             section["fgmp_pe_over_fp16_pe"].items()))
    print("whole 8x8 engine, FGMP operands - fp16 operands: " + ", ".join(
        f"{k} {v:+,} ({100 * v / small[k]:+.1f}%)"
        for k, v in section["fgmp_engine_minus_fp16_engine"].items() if small[k]))
    path = record("fgmp_area", {"area": section}, writer=__name__, config=section["config"])
    print(f"wrote the area section of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
