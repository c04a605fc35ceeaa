"""make demo: the main job on the default configuration.

1. generate Verilog for the default MAC unit (mixed-precision multiplier + FP32 accumulator);
2. simulate it on Verilator with cocotb, checking every dot product bit for bit against the
   numpy golden model (random mixed fp16/e4m3/e5m2 operands, edge cases, idle cycles and
   backpressure);
3. print its area from Yosys (generic cells, ECP5 LUT/FF/DSP);
4. run a GEMM on the default 8x8 output-stationary engine (64 x 64 scratchpads) with the
   hardware alone: random mixed fp16/e4m3/e5m2 operands written to the scratchpads, one
   command, the bench sleeps until ``done``, then the result is read back and checked bit for
   bit against ``sim.gemm`` and the cycle count against ``sim.engine_model``; prints cycles,
   ideal cycles, utilization and the SCALE-Sim figure recorded in docs/results/gemm_bench.json;
5. print the area of the PE, the 8x8 array and the 4x4 engine from
   docs/results/engine_area.json (``python -m scripts.engine_report`` measures them; the demo
   synthesises only the PE itself);
6. generate the accelerator (AXI4-Lite registers, AXI4 DMA, controller, epilogue, the demo's
   8x8 engine) and run one training step of the digits CNN (batch 8) from a DRAM image compiled by
   ``sim.train_compiler``, then one inference pass, through the host driver on the RTL and on
   the golden model (``tb/accelerator_tb.py``); prints the cycles, the overlap against the
   GEMMs alone, the DRAM bytes (bus counters = compiler prediction) and the verdict.

Usage: python -m scripts.demo [--simulator icarus|verilator] [--vectors N] [--gemm M,N,K]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time

from hw.fp.mac import FPMac
from hw.fp.multiplier import ProductDatapath
from scripts.engine_report import SPEED_CONFIG, run_hardware_alone
from scripts.results import load
from scripts.yosys_area import area_of
from sim.engine_model import (EngineCommand, EngineError, command_cycles, ideal_cycles,
                              validate)
from sim.formats import OPERAND_FORMATS
from sim.runner import SIMULATORS, Design, build_root, generate_verilog, read_metrics, run_bench


FORMATS = list(OPERAND_FORMATS)
#: FPMac's default multiplier pipeline (the demo's MAC)
MAC_STAGES = ProductDatapath.CUT_POINTS
STEPS = 6


def _gemm_shape(text: str) -> tuple[int, int, int]:
    try:
        m, n, k = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gemm must be M,N,K (three integers), not {text!r}")
    return m, n, k


def _scalesim(config, m, n, k):
    """SCALE-Sim cycles of the same array, dataflow and shape from gemm_bench's results."""
    array = config.array
    for row in load("gemm_bench", reader=__name__, missing_ok=True).get("shapes", []):
        if ((row.get("M"), row.get("N"), row.get("K")) == (m, n, k)
                and (row.get("rows"), row.get("cols")) == (array.rows, array.cols)
                and row.get("dataflow") == array.dataflow and row.get("scalesim_cycles")):
            return row["scalesim_cycles"]
    return None


def _area(recorded: dict, name: str) -> tuple[dict, str]:
    """Area of a block of scripts.engine_report: recorded, else synthesised now (cached).

    Only blocks that synthesise in minutes are synthesised here; the arrays and engines take
    Yosys a quarter of an hour to more than an hour, so for them the recorded figures are used
    and a missing one is reported with the command that measures it."""
    if name in recorded.get("area", {}):
        return recorded["area"][name], "docs/results/engine_area.json"
    from scripts.engine_report import AREA_UNITS

    if not name.startswith("pe_"):
        raise KeyError(f"{name} is not in docs/results/engine_area.json "
                       f"(python -m scripts.engine_report --skip-fmax --units {name})")
    _, factory = AREA_UNITS[name]
    print(f"      {name} is not in docs/results/engine_area.json: synthesising it now (cached)",
          flush=True)
    return area_of(factory, name), "Yosys now"


def run_mac(args):
    mac = Design(FPMac, a_formats=FORMATS, b_formats=FORMATS)
    verilog = generate_verilog(mac, "fp_mac")
    out = build_root() / "demo" / "fp_mac.v"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(verilog)
    print(f"[1/{STEPS}] Verilog for FPMac (fp16/e4m3/e5m2 operands, FP32 accumulation, "
          f"multiplier stages {MAC_STAGES}): {out} ({len(verilog.splitlines())} lines)")

    print(f"[2/{STEPS}] cocotb on {args.simulator}: dot products against the golden model ...",
          flush=True)
    began = time.perf_counter()
    run_dir = run_bench(mac, toplevel="fp_mac", bench_module="tb.fp_mac_tb",
                        simulator=args.simulator, quiet=True,
                        case={"config": "demo", "a_formats": FORMATS, "b_formats": FORMATS,
                              "mul_stages": MAC_STAGES, "vectors": args.vectors})
    metrics = read_metrics(run_dir)
    terms = sum(m["vectors"] for m in metrics)
    cycles = sum(m["cycles"] for m in metrics)
    seconds = sum(m["seconds"] for m in metrics)
    print(f"      PASS: {terms} product terms checked bit for bit, {cycles} cycles simulated, "
          f"{cycles / seconds:,.0f} cycles/s (wall {time.perf_counter() - began:.1f} s incl. build)")
    print(f"      log and results: {run_dir}")

    print(f"[3/{STEPS}] area (Yosys) ...", flush=True)
    area = area_of(mac, "fp_mac")
    print(f"      generic cells {area['cells']}, ECP5 LUT {area['ecp5_lut']}, "
          f"FF {area['ecp5_ff']}, DSP {area['ecp5_dsp']}")


def run_gemm(args):
    config = SPEED_CONFIG
    array = config.array
    m, n, k = args.gemm
    command = EngineCommand(m=m, n=n, k=k)
    print(f"[4/{STEPS}] {m}x{n}x{k} GEMM on the {array.rows}x{array.cols} {array.dataflow.upper()} "
          f"engine ({config.a_rows}x{config.spad_width} scratchpads, multiplier stages "
          f"{array.mul_stages}), cocotb on {args.simulator}, hardware alone ...", flush=True)
    began = time.perf_counter()
    metrics = run_hardware_alone(config, args.simulator, args.gemm)
    cycles = metrics["cycles"]
    model = command_cycles(config, command)
    ideal = ideal_cycles(config, command)
    utilization = m * n * k / (array.pes * cycles)
    print(f"      PASS: C ({m}x{n}, FP32) equal bit for bit to sim.gemm; hardware alone: "
          f"{metrics['cycles_per_cpu_second']:,.0f} cycles per CPU second, "
          f"{metrics['cycles_per_second']:,.0f} per wall second "
          f"(wall {time.perf_counter() - began:.1f} s incl. build, load and read-back)")
    print(f"      cycles (accept to done) {cycles}; cycle model {model} "
          f"({'equal' if model == cycles else 'DIFFERENT'}); ideal (MACs / PEs) {ideal}; "
          f"utilization {utilization:.1%}")
    scalesim = _scalesim(config, m, n, k)
    if scalesim:
        print(f"      SCALE-Sim v3 ({array.rows}x{array.cols} {array.dataflow.upper()}, "
              f"docs/results/gemm_bench.json): {scalesim} cycles; ours / SCALE-Sim "
              f"{cycles / scalesim:.3f}")
    else:
        print("      SCALE-Sim: this shape is not in docs/results/gemm_bench.json "
              "(python -m scripts.gemm_bench)")
    print(f"      log and results: {metrics['run_dir']}")


def prebuild_accelerator(simulator: str) -> str:
    """Build (or find in the cache) the simulation model of step 6's accelerator: run in a
    second process at the start of the demo, so that its compile (minutes for Verilator on a
    fresh machine) overlaps steps 1-5 on the second core. Returns the build directory."""
    from hw.accel.accelerator import Accelerator
    from scripts.accel_bench import CONFIG
    from sim.runner import build_model
    verilog = generate_verilog(Design(Accelerator, CONFIG), "accelerator")
    return str(build_model(verilog, toplevel="accelerator", simulator=simulator)[1])


def run_training_step(args, prebuilt=None):
    from scripts.accel_bench import CONFIG, TRAININGS, measure_training
    # batch 8 keeps the demo within its time budget; `sparta measure accel` runs batch 32
    # (three steps) and records it in docs/results/accel.json
    training = {**TRAININGS["digits_cnn_step"], "steps": 1, "batch": 8}
    engine = CONFIG.engine
    print(f"[6/{STEPS}] accelerator ({engine.array.rows}x{engine.array.cols} engine, "
          f"{CONFIG.data_width}-bit AXI4): one digits-CNN training step (batch "
          f"{training['batch']}) and one inference pass from DRAM, cocotb on {args.simulator}, "
          f"RTL and golden model ...", flush=True)
    began = time.perf_counter()
    if prebuilt is not None:        # wait for the build started with the demo (its errors too)
        prebuilt.result()
    row = measure_training(CONFIG, training, simulator=args.simulator)
    forward, backward = row["programs"]["forward"], row["programs"]["backward_update"]
    print(f"      PASS: DRAM image after every program (weights, FP32 masters, saved "
          f"activations, logits) equal bit for bit to the golden model "
          f"(wall {time.perf_counter() - began:.1f} s incl. build)")
    print(f"      training step: {row['cycles']:,} cycles (forward {forward['cycles']:,}, "
          f"backward + update {backward['cycles']:,}); its GEMMs alone "
          f"{row['engine_cycles']:,} (cycle model): overlap efficiency "
          f"{row['overlap_efficiency']:.1%}")
    print(f"      DRAM: {row['dram_bytes_read']:,} bytes read, {row['dram_bytes_written']:,} "
          f"written (bus counters, equal to the compiler's prediction); the host: "
          f"{row['host_interactions']}")
    inference = row["programs"]["inference"]
    print(f"      inference pass: {inference['cycles']:,} cycles, GEMMs alone "
          f"{inference['engine_cycles']:,} ({inference['overlap_efficiency']:.1%}); batch 32, "
          f"three steps: `sparta measure accel` (docs/accel.md)")


def print_area():
    rows, cols = SPEED_CONFIG.array.rows, SPEED_CONFIG.array.cols
    print(f"[5/{STEPS}] area of the {rows}x{cols} OS PE and array, and of a whole engine ...",
          flush=True)
    blocks = (("pe_os", "PE"), (f"array_os_{rows}x{cols}", f"{rows}x{cols} array"),
              ("engine_os_4x4", "4x4 engine, 64x64 scratchpads"))
    recorded = load("engine_area", reader=__name__, missing_ok=True)
    for name, label in blocks:
        try:
            area, source = _area(recorded, name)
        except KeyError as exc:
            print(f"      {label}: no area: {exc.args[0]}")
            continue
        memory = (f", {area['memory_bits']} memory bits ({area.get('ecp5_bram', 0)} DP16KD)"
                  if area.get("memory_bits") else "")
        print(f"      {label}: generic cells {area['cells']}, ECP5 LUT {area['ecp5_lut']}, "
              f"FF {area['ecp5_ff']}, DSP {area['ecp5_dsp']}{memory}  [{source}]")
    fmax = recorded.get("fmax_mhz_ecp5_4x4")
    if fmax:
        print(f"      ECP5 fmax of the 4x4 OS array: {fmax} MHz (docs/results/engine_area.json)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", default="verilator", choices=SIMULATORS)
    parser.add_argument("--vectors", type=int, default=20_000, help="product terms to check")
    parser.add_argument("--gemm", type=_gemm_shape, default=(64, 64, 64),
                        help="GEMM shape M,N,K on the 8x8 engine (default 64,64,64)")
    args = parser.parse_args(argv)
    if args.vectors < 1:
        parser.error(f"--vectors must be >= 1, not {args.vectors}")
    try:
        error = validate(SPEED_CONFIG, EngineCommand(m=args.gemm[0], n=args.gemm[1],
                                                     k=args.gemm[2]))
    except ValueError as exc:
        parser.error(f"--gemm: {exc}")
    if error is not EngineError.NONE:
        parser.error(f"--gemm {args.gemm} does not fit the demo engine's 64 x 64 memories "
                     f"({error.name})")

    began = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        prebuilt = pool.submit(prebuild_accelerator, args.simulator)
        run_mac(args)
        run_gemm(args)
        print_area()
        run_training_step(args, prebuilt)
    print(f"demo done in {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
