"""docs/accel.md: the accelerator top level's tables (``docs/results/accel_area.json``)."""

from scripts.report import block, results, table

__all__ = []

BLOCKS = {"registers": "AXI4-Lite registers (`Registers`)", "dma": "AXI4 DMA (`Dma`)",
          "controller": "controller (`Controller`, decoder included)",
          "decoder": "instruction decoder (`InstructionDecoder`)",
          "loader": "load path (`Loader`, 8x8 engine)", "storer": "store path (`Storer`, 8x8 engine)"}


@block("accel.area")
def accel_area() -> str:
    data = results("accel_area")
    area, where = data["area"], data["provenance"]["area"]
    rows = []
    order = list(BLOCKS)
    for name, row in sorted(area.items(), key=lambda item: (
            order.index(item[0].split("_")[0]) if item[0].split("_")[0] in order else len(order),
            item[1]["bus"]["data_width"])):
        block_name = name.split("_")[0]
        bus = row["bus"]
        rows.append((BLOCKS.get(block_name, block_name),
                     f"{bus['data_width']}-bit data, {bus['addr_width']}-bit addresses, "
                     f"{bus['reads_outstanding']} reads outstanding",
                     f"{row['cells']:,}", f"{row['ecp5_lut']:,}", f"{row['ecp5_ff']:,}",
                     f"{row['ecp5_lutram']:,}", f"{row['ecp5_dsp']:,}",
                     f"{row['ecp5_bram']:,}"))
    return "\n".join([
        table(("block", "configuration", "generic cells", "ECP5 LUT", "ECP5 FF",
               "ECP5 LUTRAM (DPR16X4)", "ECP5 DSP", "ECP5 BRAM"), rows, "llrrrrrr"),
        "",
        f"_From `docs/results/accel_area.json` (`area`), measured by `sparta area accel` "
        f"(Yosys: generic cells after `synth`, ECP5 cells after `synth_ecp5`); commit "
        f"{where['commit'][:10]}{' with uncommitted changes' if where['dirty'] else ''}, "
        f"{where['date']}._"])


@block("accel.gemm_programs")
def gemm_programs() -> str:
    data = results("accel")
    rows, where = data["gemm_programs"], data["provenance"]["gemm_programs"]
    return "\n".join([
        table(("GEMM (m x n x k)", "formats", "engine commands", "cycles (RTL, start to end)",
               "engine alone (cycle model)", "overlap efficiency (model / RTL: composed)", "bytes read", "bytes written",
               "read bus efficiency"),
              [("x".join(map(str, r["gemm"])), f"{r['a_format']} x {r['b_format']}",
                r["commands"], f"{r['cycles']:,}", f"{r['engine_cycles']:,}",
                f"{r['overlap_efficiency']:.1%}", f"{r['bytes_read']:,}",
                f"{r['bytes_written']:,}", f"{r['read_bus_efficiency']:.1%}") for r in rows],
              "llrrrrrrr"),
        "",
        f"_From `docs/results/accel.json` (`gemm_programs`), measured by `sparta measure accel` "
        f"(cycles, bytes: RTL on Verilator, every run bit-exact against the golden model; "
        f"engine alone: the cycle model of the same commands; overlap = their ratio; the "
        f"compiler's tiling and DRAM layout are host work done before the run, not counted); "
        f"commit "
        f"{where['commit'][:10]}{' with uncommitted changes' if where['dirty'] else ''}, "
        f"{where['date']}._"])
