"""Area of the accelerator's blocks (``hw/accel``) apart from the GEMM engine (its area:
``sparta area engine``): the AXI4-Lite register slave, the AXI4 DMA master, the controller
(with its instruction decoder, also shown alone), the load path and the store path, per bus
configuration (the loader's and storer's also depend on the engine: the default 8x8 one); the
epilogue (``Epilogue``, which depends on the engine only: the default 8x8 one, measured once)
and the FP32 multiplier it has one of per lane (``FP32Multiplier``, combinational as there);
with ``--top`` also the whole top level (``Accelerator``, the demo's 8x8 engine with 64 x 64
memories, the configuration of ``sparta measure accel``) with its systolic array a black box:
the top without the array, measured in one synthesis. The top with the array is that plus the
8x8 array's own synthesis (``array_os_8x8`` of ``sparta area engine``; the report adds them:
composed, the two syntheses not optimised across the boundary). The flat top with the array is
not synthesised: with YoWASP's Yosys on two cores its generic synthesis took 24 minutes and
``synth_ecp5`` had not finished after another 40.

Records ``docs/results/accel_area.json`` (its only writer; key ``area``) and prints the
figures; ``sparta report`` makes the table of ``docs/accel.md`` from it.

Usage: python -m scripts.accel_area   (sparta area accel)
"""

from __future__ import annotations

import argparse
import sys

from hw.accel.accelerator import Accelerator
from hw.accel.controller import Controller
from hw.accel.decoder import InstructionDecoder
from hw.accel.dma import Dma
from hw.accel.epilogue import Epilogue
from hw.accel.loader import Loader
from hw.accel.registers import Registers
from hw.accel.storer import Storer
from hw.fp.fp32_multiplier import FP32Multiplier
from scripts.accel_bench import CONFIG as DEMO
from scripts.progress import spinner
from scripts.results import record
from scripts.yosys_area import area_of
from sim.config import AccelConfig, config_to_dict
from sim.elaborate import Design

__all__ = ["CONFIGS", "UNITS", "TOP_UNITS", "main"]

#: Bus configurations measured: the default and the widest
CONFIGS = {
    "d64_a32": AccelConfig(),
    "d256_a64": AccelConfig(data_width=256, addr_width=64, reads_outstanding=8),
}

UNITS = {f"{block}_{label}": (Design(factory, config), config)
         for label, config in CONFIGS.items()
         for block, factory in (("registers", Registers), ("dma", Dma),
                                ("decoder", InstructionDecoder), ("controller", Controller),
                                ("loader", Loader), ("storer", Storer))}
# the epilogue does not depend on the bus: the default configuration only
UNITS["epilogue_d64_a32"] = (Design(Epilogue, CONFIGS["d64_a32"]), CONFIGS["d64_a32"])
UNITS["fp32multiplier_d64_a32"] = (Design(FP32Multiplier, stages=0), CONFIGS["d64_a32"])
# --top: the whole top level, its systolic array a black box (the demo's engine, the default
# bus)
TOP_UNITS = {"accelerator_d64_a32": (Design(Accelerator, DEMO), DEMO)}
#: the submodules --top keeps as black boxes (paths below the top)
BLACKBOXES = {"accelerator_d64_a32": ("engine.array",)}

FIELDS = ("cells", "memories", "memory_bits", "ecp5_lut", "ecp5_ff", "ecp5_dsp", "ecp5_bram")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", action="store_true",
                        help="also the whole top level without its array (minutes)")
    args = parser.parse_args(argv)
    area = {}
    units = {**UNITS, **(TOP_UNITS if args.top else {})}
    for name, (design, config) in units.items():
        with spinner(f"Yosys: {name}"):
            result = area_of(design, name, BLACKBOXES.get(name, ()))
        area[name] = {key: result[key] for key in FIELDS}
        # distributed RAM (the DMA's small queues): not in ecp5_lut
        area[name]["ecp5_lutram"] = result["ecp5_cells_by_type"].get("TRELLIS_DPR16X4", 0)
        area[name]["bus"] = {"data_width": config.data_width, "addr_width": config.addr_width,
                             "reads_outstanding": config.reads_outstanding}
        row = area[name]
        print(f"{name:20s} cells {row['cells']:6d}  LUT {row['ecp5_lut']:6d}  "
              f"FF {row['ecp5_ff']:6d}  DSP {row['ecp5_dsp']:3d}  BRAM {row['ecp5_bram']:3d}")
    configs = {label: {k: v for k, v in config_to_dict(config).items() if k != "engine"}
               for label, config in CONFIGS.items()}
    path = record("accel_area", {"area": area}, writer=__name__, config=configs, replace=True)
    print(f"wrote {path}; `sparta report` updates docs/accel.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
