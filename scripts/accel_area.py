"""Area of the accelerator's blocks (``hw/accel``) apart from the GEMM engine (its area:
``sparta area engine``): the AXI4-Lite register slave, the AXI4 DMA master, the controller
(with its instruction decoder, also shown alone), the load path and the store path, per bus
configuration (the loader's and storer's also depend on the engine: the default 8x8 one); the
epilogue (``Epilogue``, which depends on the engine only: the default 8x8 one, measured once)
and the FP32 multiplier it has one of per lane (``FP32Multiplier``, combinational as there);
with ``--top`` also the whole top level (``Accelerator``, the demo's 8x8 engine with 64 x 64
memories, the configuration of ``sparta measure accel``) with its systolic array, synthesised
by parts (:func:`scripts.yosys_area.by_parts_row`: the top with its 64 PEs as black boxes
once, each PE type once; ``sparta area skip`` checks that sum against a flat 8x8 array), and
the same top with the zero-skipping engine (lookahead window of 3, output masks): the
features' area on the whole top is the difference of the two. The flat top is not
synthesised: with YoWASP's Yosys on two cores its generic synthesis took 24 minutes and
``synth_ecp5`` had not finished after another 40.

Records ``docs/results/accel_area.json`` (its only writer; key ``area``) and prints the
figures; ``sparta report`` makes the table of ``docs/accel.md`` from it.

Usage: python -m scripts.accel_area   (sparta area accel)
"""

from __future__ import annotations

import argparse
import dataclasses
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
from scripts.yosys_area import by_parts_row
from scripts.yosys_area import area_of
from sim.config import AccelConfig, config_to_dict
from sim.elaborate import Design
from sim.skip_timing import with_window

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
#: the demo's engine with zero skipping: lookahead window of 3 and output masks
SKIP_DEMO = dataclasses.replace(DEMO, engine=dataclasses.replace(
    with_window(DEMO.engine, 3), output_mask=True))
# --top: the whole top level by parts (the demo's engine, the default bus; and with skipping)
TOP_UNITS = {"accelerator_d64_a32": (Design(Accelerator, DEMO), DEMO),
             "accelerator_d64_a32_window3_mask": (Design(Accelerator, SKIP_DEMO), SKIP_DEMO)}
#: the submodules of a --top unit synthesised once per distinct instance
TOP_PARTS = r"engine\.array\.pe_\d+_\d+"

FIELDS = ("cells", "memories", "memory_bits", "ecp5_lut", "ecp5_ff", "ecp5_dsp", "ecp5_bram")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", action="store_true",
                        help="also the whole top level, dense and with skipping, by parts "
                        "(about an hour on two cores)")
    args = parser.parse_args(argv)
    area = {}
    units = {**UNITS, **(TOP_UNITS if args.top else {})}
    for name, (design, config) in units.items():
        if name in TOP_UNITS:
            with spinner(f"Yosys: {name} (by parts)"):
                area[name] = by_parts_row(design, name, TOP_PARTS)
            area[name]["engine"] = {"skip_window": config.engine.array.skip_window,
                                    "output_mask": config.engine.output_mask}
        else:
            with spinner(f"Yosys: {name}"):
                result = area_of(design, name)
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
