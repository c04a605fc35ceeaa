"""docs/accel.md: the accelerator top level's tables (``docs/results/accel_area.json``)."""

from scripts.report import block, measured_at, results, table

__all__ = []

BLOCKS = {"registers": "AXI4-Lite registers (`Registers`)", "dma": "AXI4 DMA (`Dma`)",
          "controller": "controller (`Controller`, decoder included)",
          "decoder": "instruction decoder (`InstructionDecoder`)",
          "loader": "load path (`Loader`, 8x8 engine)", "storer": "store path (`Storer`, 8x8 engine)",
          "epilogue": "epilogue (`Epilogue`, 8x8 engine)",
          "fp32multiplier": "FP32 multiplier (`FP32Multiplier`, combinational; one per lane)",
          "accelerator": "the whole top without its systolic array (`Accelerator`, 8x8 "
                         "engine, 64 x 64 memories; the array a black box)"}


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
    composed = []
    engine = results("engine_area")
    array = engine["area"].get("array_os_8x8")
    if "accelerator_d64_a32" in area and array is not None:
        top = area["accelerator_d64_a32"]
        composed = [f"The top with its array (composed: the top without it above plus the 8x8 "
                    f"array's own synthesis, `array_os_8x8` of `docs/results/engine_area.json`, "
                    f"{measured_at(engine['provenance']['area'])}; not optimised across the "
                    f"boundary): {top['cells'] + array['cells']:,} generic cells, "
                    f"{top['ecp5_lut'] + array['ecp5_lut']:,} ECP5 LUT, "
                    f"{top['ecp5_ff'] + array['ecp5_ff']:,} FF, "
                    f"{top['ecp5_dsp'] + array['ecp5_dsp']:,} DSP, "
                    f"{top['ecp5_bram'] + array.get('ecp5_bram', 0):,} BRAM; the array is "
                    f"{array['ecp5_lut'] / (top['ecp5_lut'] + array['ecp5_lut']):.0%} of the "
                    f"LUTs.", ""]
    return "\n".join([
        table(("block", "configuration", "generic cells", "ECP5 LUT", "ECP5 FF",
               "ECP5 LUTRAM (DPR16X4)", "ECP5 DSP", "ECP5 BRAM"), rows, "llrrrrrr"),
        "", *composed,
        f"_From `docs/results/accel_area.json` (`area`), measured by `sparta area accel` "
        f"(Yosys: generic cells after `synth`, ECP5 cells after `synth_ecp5`); "
        f"{measured_at(where)}._"])


@block("accel.gemm_programs")
def gemm_programs() -> str:
    data = results("accel")
    rows, where = data["gemm_programs"], data["provenance"]["gemm_programs"]
    return "\n".join([
        table(("GEMM (m x n x k)", "formats", "engine commands",
               "cycles, overlapped (RTL)", "cycles, serial (RTL, fenced)", "speedup",
               "engine alone, same commands (cycle model)",
               "overlap efficiency (model / RTL: composed)",
               "engine alone, single-buffered commands (cycle model)", "bytes read",
               "bytes written", "bus efficiency (read + write)"),
              [("x".join(map(str, r["gemm"])), f"{r['a_format']} x {r['b_format']}",
                r["commands"], f"{r['cycles']:,}", f"{r['cycles_serial']:,}",
                f"{r['speedup_vs_serial']:.2f}x", f"{r['engine_cycles']:,}",
                f"{r['overlap_efficiency']:.1%}", f"{r['engine_cycles_single_buffer']:,}",
                f"{r['bytes_read']:,}", f"{r['bytes_written']:,}",
                f"{r['bus_efficiency']:.1%}") for r in rows],
              "llrrrrrrrrrr"),
        "",
        f"_From `docs/results/accel.json` (`gemm_programs`), measured by `sparta measure accel` "
        f"(cycles, bytes: RTL on Verilator, every run bit-exact against the golden model; "
        f"serial: the same program with every instruction fenced; engine alone: the cycle "
        f"model of the program's commands, and of the larger commands a single-buffered "
        f"compile makes; overlap = engine alone (same commands) / overlapped cycles; the "
        f"compiler's tiling and DRAM layout are host work done before the run, not counted); "
        f"{measured_at(where)}._"])


@block("accel.training")
def training_steps() -> str:
    data = results("accel")
    keys = [key for key in ("digits_cnn_step", "digits_mlp_step", "digits_cnn_step_bus128",
                            "digits_cnn_step_default") if key in data]
    rows = []
    for key in keys:
        step = data[key]
        for kind in ("forward", "backward_update", "inference"):
            p = step["programs"][kind]
            beat = step["beat_bytes"]
            floor = max(p["engine_cycles"], p["bytes_read"] // beat, p["bytes_written"] // beat)
            rows.append((key, kind, f"{p['instructions']:,}", f"{p['gemm_commands']:,}",
                         f"{p['cycles']:,}", f"{p['engine_cycles']:,}",
                         f"{p['overlap_efficiency']:.1%}", f"{floor:,}",
                         f"{p['cycles'] / floor:.2f}x", f"{p['bytes_read']:,}",
                         f"{p['bytes_written']:,}",
                         "yes" if (p["bytes_read"], p["bytes_written"]) ==
                         (p["predicted_bytes_read"], p["predicted_bytes_written"]) else "NO"))
    lines = [table(("measurement", "program", "instructions", "GEMM commands",
                    "cycles (RTL)", "engine alone (cycle model)",
                    "overlap efficiency (model / RTL: composed)",
                    "floor: max(engine, read beats, write beats) (model)",
                    "cycles / floor", "bytes read (bus)", "bytes written (bus)",
                    "bus bytes = compiler's prediction"), rows, "llrrrrrrrrrl"), ""]
    for key in keys:
        step = data[key]
        where = data["provenance"][key]
        hosts = ", ".join(f"{name.replace('_', ' ')} {count}"
                          for name, count in step["host_interactions"].items())
        bus = f"{step['beat_bytes'] * 8}-bit bus"
        lines.append(
            f"- `{key}`: {step['network']}, batch {step['batch']}, "
            f"{step.get('variant', bus)}, {step['steps']} steps in a row, every program "
            f"bit-exact against the golden model (DRAM image, status, counters); a training "
            f"step (forward + backward_update) takes {step['cycles']:,} cycles against {step['engine_cycles']:,} of its GEMMs alone "
            f"(overlap efficiency {step['overlap_efficiency']:.1%}); DRAM "
            f"{step['dram_bytes_read']:,} bytes read, {step['dram_bytes_written']:,} written "
            f"per step; the host per step: {hosts} ({step['host_bytes_written']:,} bytes "
            f"written: the batch, dLogits and, with dropout, the step's two programs with "
            f"their new seeds; {step['host_bytes_read']:,} bytes of logits read; the loss "
            f"gradient computed on the host; generating the step's programs takes "
            f"{step['host_program_seconds'] * 1000:.0f} ms of host Python on the measuring "
            f"machine, not in the cycles); losses of the steps "
            f"{', '.join(f'{loss:.4f}' for loss in step['losses'])}. Measured at "
            f"{measured_at(where)}.")
    lines += ["", "_From `docs/results/accel.json`, measured by `sparta measure accel` (RTL on "
              "Verilator; engine alone and the floor: the cycle model and the byte counts, "
              "composed with the RTL cycles in the ratios; the compiler's layout and first image "
              "are host work done once, before the first step)._"]
    return "\n".join(lines)


#: the controller's phases (``hw.accel.controller.Phase``) in the profile table's order
PHASES = ("FETCH", "DECODE", "LOAD", "GEMM", "EPILOGUE", "STORE", "END")


@block("accel.profile")
def cycle_profile() -> str:
    data = results("accel")
    if "profile" not in data:
        return "_Not measured yet: `sparta measure accel`._"
    profile, where = data["profile"], data["provenance"]["profile"]
    rows = []
    for kind in sorted(profile["programs"], key=("forward", "backward_update",
                                                  "inference").index):
        program = profile["programs"][kind]
        total = program["cycles"]
        phases = program["phases"]
        for phase in [p for p in PHASES if p in phases] + sorted(set(phases) - set(PHASES)):
            p = phases[phase]
            rows.append((kind, phase, f"{p['cycles']:,}", f"{p['cycles'] / total:.1%}",
                         f"{p['engine_busy'] / p['cycles']:.0%}",
                         f"{p['read_beats'] / p['cycles']:.0%}",
                         f"{p['write_beats'] / p['cycles']:.0%}"))
        busy = sum(p["engine_busy"] for p in phases.values())
        reads = sum(p["read_beats"] for p in phases.values())
        writes = sum(p["write_beats"] for p in phases.values())
        rows.append((kind, "**all**", f"{total:,}", "100%", f"{busy / total:.0%}",
                     f"{reads / total:.0%}", f"{writes / total:.0%}"))
    return "\n".join([
        table(("program", "controller phase", "cycles (RTL)", "share", "engine busy",
               "read beat", "write beat"), rows, "llrrrrr"), "",
        f"_From `docs/results/accel.json` (`profile`), measured by `sparta measure accel`: "
        f"step {profile.get('step', 0)} of {profile['network']} (batch {profile['batch']}, the "
        f"run of `digits_cnn_step` above) and the inference pass after it, on Verilator, "
        f"bit-exact, every cycle sampled; the last three columns are the share of "
        f"the phase's cycles with the engine busy, an R beat and a W beat moving; "
        f"{measured_at(where)}._"])



@block("accel.sections")
def section_profile() -> str:
    data = results("accel")
    profile = data.get("profile", {})
    if not any("sections" in p for p in profile.get("programs", {}).values()):
        return "_Not measured yet: `sparta measure accel`._"
    where = data["provenance"]["profile"]
    rows = []
    for kind in ("forward", "backward_update", "inference"):
        program = profile["programs"].get(kind)
        if program is None:
            continue
        for s in program["sections"]:
            name = s["name"]
            floor = max(s["engine_cycles"], s["read_beats"], s["write_beats"])
            rows.append((kind, f"`{name}`", f"{s['instructions']:,}", f"{s['gemm_commands']:,}",
                         f"{s['cycles']:,}", f"{s['cycles'] / program['cycles']:.1%}",
                         f"{s['engine_cycles']:,}", f"{s['read_beats']:,}",
                         f"{s['write_beats']:,}",
                         f"{s['engine_cycles'] / s['cycles']:.0%}" if s["cycles"] else "-",
                         f"{s['cycles'] / floor:.2f}x" if floor else "-"))
    return "\n".join([
        table(("program", "section", "instructions", "GEMM commands", "cycles (RTL)", "share",
               "engine alone (cycle model)", "read beats (compiler)", "write beats (compiler)",
               "engine / cycles", "cycles / floor"), rows, "llrrrrrrrrr"), "",
        f"_From `docs/results/accel.json` (`profile`, `sections`), measured by `sparta measure "
        f"accel`: the same run and programs as the phase table above; a section is a GEMM's "
        f"instructions with its blocks' epilogues and stores "
        f"(`sim.train_compiler.Program.sections`), its cycles those the controller spent on "
        f"its instructions (the `pc` sampled in every cycle: waiting included, so work in "
        f"flight from a section counts in the one after); engine alone: the cycle model of "
        f"its GEMM commands; beats: the compiler's count of its transfers and instruction "
        f"fetches on the {data['digits_cnn_step']['beat_bytes'] * 8}-bit bus; floor: the largest "
        f"of the three (a model, not a run); {measured_at(where)}._"])
