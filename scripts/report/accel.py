"""docs/accel.md: the accelerator top level's tables (``docs/results/accel_area.json``)."""

from scripts.report import block, measured_at, results, table

__all__ = []

BLOCKS = {"registers": "AXI4-Lite registers (`Registers`)", "dma": "AXI4 DMA (`Dma`)",
          "controller": "controller (`Controller`, decoder included)",
          "decoder": "instruction decoder (`InstructionDecoder`)",
          "loader": "load path (`Loader`, 8x8 engine)", "storer": "store path (`Storer`, 8x8 engine)",
          "epilogue": "epilogue (`Epilogue`, 8x8 engine)",
          "fp32multiplier": "FP32 multiplier (`FP32Multiplier`, combinational; one per lane)",
          "accelerator": "the whole top (`Accelerator`, the demo's dense 8x8 engine, 64 x 64 "
                         "memories; by parts: the PEs once per type)"}
#: the whole tops with a feature: name -> its description
TOP_FEATURES = {"accelerator_d64_a32_window3_mask": (
    "the whole top with zero skipping (the same engine with a lookahead window of 3 and "
    "output masks; by parts)")}


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
        rows.append((TOP_FEATURES.get(name) or BLOCKS.get(block_name, block_name),
                     f"{bus['data_width']}-bit data, {bus['addr_width']}-bit addresses, "
                     f"{bus['reads_outstanding']} reads outstanding",
                     f"{row['cells']:,}", f"{row['ecp5_lut']:,}", f"{row['ecp5_ff']:,}",
                     f"{row['ecp5_lutram']:,}", f"{row['ecp5_dsp']:,}",
                     f"{row['ecp5_bram']:,}"))
    whole = []
    top = area.get("accelerator_d64_a32")
    if top is not None and "parts" in top:
        pes = {key: sum(part["instances"] * part[key] for part in top["parts"])
               for key in ("cells", "ecp5_lut")}
        whole = [f"The PEs are {pes['ecp5_lut'] / top['ecp5_lut']:.0%} of the whole top's ECP5 "
                 f"LUTs ({pes['cells'] / top['cells']:.0%} of its generic cells)."]
        for name in TOP_FEATURES:
            if name in area:
                other = area[name]
                whole[-1] += (" Zero skipping on the whole top (the difference of the two "
                              "syntheses): " + ", ".join(
                                  f"{other[key] - top[key]:+,} {label} "
                                  f"({(other[key] - top[key]) / top[key]:+.1%})"
                                  for key, label in (("cells", "generic cells"),
                                                     ("ecp5_lut", "ECP5 LUT"),
                                                     ("ecp5_ff", "FF"),
                                                     ("memory_bits", "memory bits"),
                                                     ("ecp5_bram", "BRAM"))
                                  if top.get(key)) + ".")
        whole.append("")
    return "\n".join([
        table(("block", "configuration", "generic cells", "ECP5 LUT", "ECP5 FF",
               "ECP5 LUTRAM (DPR16X4)", "ECP5 DSP", "ECP5 BRAM"), rows, "llrrrrrr"),
        "", *whole,
        f"_From `docs/results/accel_area.json` (`area`), measured by `sparta area accel` "
        f"(Yosys: generic cells after `synth`, ECP5 cells after `synth_ecp5`; the whole tops "
        f"by parts, the sum of a synthesis of the rest and one per PE type, each measured); "
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
                            "digits_cnn_step_default", "digits_cnn_step_window3") if key in data]
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
            f"{step.get('variant', bus)}, {step['steps']} steps in a row"
            f"{_seed(step)}, every program "
            f"bit-exact against the golden model (DRAM image, status, counters); a training "
            f"step (forward + backward_update) takes {step['cycles']:,} cycles "
            f"{_against(step, data)}; DRAM "
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


@block("accel.energy")
def step_energy() -> str:
    """Energy per training step: the per-op table priced with the RTL's counters."""
    data = results("accel")
    keys = [key for key in ("digits_cnn_step", "digits_cnn_step_window3")
            if "energy" in data.get(key, {})]
    if not keys:
        return "_No training measurement with the products counter yet (`sparta measure accel`)._"
    dense = data[keys[0]]["energy"]["total_pj"] if keys[0] == "digits_cnn_step" else None
    rows = []
    for key in keys:
        step, energy = data[key], data[key]["energy"]
        micro = {name: energy[f"{name}_pj"] / 1e6
                 for name in ("multiply", "accumulate", "dram", "sram", "total")}
        rows.append((f"`{key}`", f"{step['products']:,}", f"{step['products_skipped']:,}",
                     f"{energy['products_computed']:,}", f"{energy['dram_bytes']:,}",
                     *(f"{micro[name]:.1f}" for name in ("multiply", "accumulate", "dram",
                                                          "sram", "total")),
                     f"{energy['total_pj'] / dense:.3f}" if dense else "-"))
    where = "; ".join(f"`{key}`: {measured_at(data['provenance'][key])}" for key in keys)
    return "\n".join([
        table(("measurement", "products (M x N x K of the GEMMs)",
               "products skipped (RTL counter)", "products computed",
               "DRAM bytes (RTL AXI counters)", "multiply uJ", "accumulate uJ", "DRAM uJ",
               "SRAM uJ", "total uJ", "total / dense"), rows, "lrrrrrrrrrr"),
        "",
        f"_From `docs/results/accel.json` (`energy` of each training measurement), measured "
        f"by `sparta measure accel`: one training step (forward + backward_update) of the "
        f"runs above, every program bit-exact; the counts are the RTL's (the "
        f"`products_skipped` and byte counters, read over AXI4-Lite) and the programs' GEMM "
        f"sizes; the energy is an estimate: those counts priced with the per-op table "
        f"`sim.fgmp_energy.HOROWITZ_45NM` ({data[keys[0]]['energy']['table']}; SRAM: every "
        f"DRAM byte written into and read out of an on-chip buffer once; not counted: "
        f"control, the scratchpads' operand reads, leakage). {where}._"])


def _seed(step: dict) -> str:
    """The bench seed of a training measurement (the batches it drew), where recorded."""
    return f" (bench seed {step['seed']})" if "seed" in step else ""


def _against(step: dict, data: dict) -> str:
    """What a training step's cycles compare with: its GEMMs alone (the cycle model), and for
    a zero-skipping engine also the dense engine's step of the same programs
    (``digits_cnn_step``), RTL against RTL."""
    text = (f"against {step['engine_cycles']:,} of its GEMMs alone (overlap efficiency "
            f"{step['overlap_efficiency']:.1%})")
    dense = data.get("digits_cnn_step")
    programs = step["programs"]
    if dense is None or all(p.get("engine_cycles_dense", p["engine_cycles"])
                            == p["engine_cycles"] for p in programs.values()):
        return text
    alone = sum(programs[k]["engine_cycles_dense"] for k in ("forward", "backward_update"))
    ratios = ", ".join(
        f"{kind.replace('_', ' ')} {dense['programs'][kind]['cycles'] / p['cycles']:.3f}x"
        for kind, p in programs.items())
    return (f"{text}; the engine alone with the window, from the cycle model with the "
            f"operands' zeros (the RTL's busy counter equal to it in the run), against "
            f"{alone:,} dense ({alone / step['engine_cycles']:.3f}x); against the dense "
            f"engine's `digits_cnn_step`, RTL cycles over RTL cycles: step "
            f"{dense['cycles'] / step['cycles']:.3f}x ({ratios})")


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
