"""make demo: the main job on the default configuration.

1. generate Verilog for the default MAC unit (mixed-precision multiplier + FP32 accumulator);
2. simulate it on Verilator with cocotb, checking every dot product bit for bit against the
   numpy golden model (random mixed fp16/e4m3/e5m2 operands, edge cases, idle cycles and
   backpressure);
3. print its area from Yosys (generic cells, ECP5 LUT/FF/DSP).

Usage: python -m scripts.demo [--simulator icarus|verilator] [--vectors N]
"""

from __future__ import annotations

import argparse
import sys
import time

from hw.fp.mac import FPMac
from scripts.yosys_area import area_of
from sim.formats import OPERAND_FORMATS
from sim.runner import SIMULATORS, build_root, generate_verilog, read_metrics, run_bench


FORMATS = list(OPERAND_FORMATS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", default="verilator", choices=SIMULATORS)
    parser.add_argument("--vectors", type=int, default=20_000, help="product terms to check")
    args = parser.parse_args(argv)
    if args.vectors < 1:
        parser.error(f"--vectors must be >= 1, not {args.vectors}")

    mac = FPMac(a_formats=FORMATS, b_formats=FORMATS)
    verilog = generate_verilog(mac, "fp_mac")
    out = build_root() / "demo" / "fp_mac.v"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(verilog)
    print(f"[1/3] Verilog for FPMac (fp16/e4m3/e5m2 operands, FP32 accumulation, "
          f"multiplier stages {mac.mul_stages}): {out} ({len(verilog.splitlines())} lines)")

    print(f"[2/3] cocotb on {args.simulator}: dot products against the golden model ...",
          flush=True)
    began = time.perf_counter()
    run_dir = run_bench(mac, toplevel="fp_mac", bench_module="tb.fp_mac_tb",
                        simulator=args.simulator, verilog=verilog, quiet=True,
                        case={"config": "demo", "a_formats": FORMATS, "b_formats": FORMATS,
                              "mul_stages": mac.mul_stages, "vectors": args.vectors})
    metrics = read_metrics(run_dir)
    terms = sum(m["vectors"] for m in metrics)
    cycles = sum(m["cycles"] for m in metrics)
    seconds = sum(m["seconds"] for m in metrics)
    print(f"      PASS: {terms} product terms checked bit for bit, {cycles} cycles simulated, "
          f"{cycles / seconds:,.0f} cycles/s (wall {time.perf_counter() - began:.1f} s incl. build)")
    print(f"      log and results: {run_dir}")

    print("[3/3] area (Yosys) ...", flush=True)
    area = area_of(FPMac(a_formats=FORMATS, b_formats=FORMATS), "fp_mac")
    print(f"      generic cells {area['cells']}, ECP5 LUT {area['ecp5_lut']}, "
          f"FF {area['ecp5_ff']}, DSP {area['ecp5_dsp']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
