"""docs/step_lists.md: the hardware that runs a schedule (``docs/results/step_list_area.json``,
written by ``scripts.step_list_area``; ``docs/results/schedule_rtl.json``, written by
``scripts.schedule_rtl``)."""

from scripts.report import block, measured_at, results, table

__all__ = []

_UNITS = {
    "sequencer_os_8x8": "8x8 tile sequencer, dense (zero gate)",
    "sequencer_os_8x8_steps": "8x8 tile sequencer with step lists",
    "acc_memory_8x8": "8x8 accumulator memory (64 x 64 FP32), row accesses",
    "acc_memory_8x8_scatter": "8x8 accumulator memory, scatter accesses",
    "engine_os_4x4": "4x4 engine (zero gate), dense",
    "engine_os_4x4_steps": "4x4 engine with step lists",
}
_ADDED = {"sequencer_8x8": "8x8 sequencer", "acc_memory_8x8": "8x8 accumulator memory",
          "engine_4x4": "4x4 engine"}


@block("step_lists.area")
def step_list_area() -> str:
    data = results("step_list_area")
    entry = data["step_list_area"]
    rows = [(label, entry["units"][name]["cells"], entry["units"][name]["ecp5_lut"],
             entry["units"][name]["ecp5_ff"], entry["units"][name].get("memory_bits", 0))
            for name, label in _UNITS.items()]
    added = [(label, f"+{row['cells']}", f"{100 * (row['cells_fraction'] or 0):+.1f}%",
              f"+{row['ecp5_lut']}", f"+{row['ecp5_ff']}", f"+{row['memory_bits']}")
             for name, label in _ADDED.items() for row in [entry["added"][name]]]
    return "\n".join([
        table(("unit", "Yosys cells", "ECP5 LUTs", "ECP5 FFs", "memory bits"), rows),
        "",
        table(("step lists add, to the", "cells", "of the unit", "ECP5 LUTs", "ECP5 FFs",
               "memory bits"), added),
        "",
        f"Measured by Yosys (`synth -flatten` cells, `synth_ecp5`), not composed: each "
        f"unit synthesised with and without step lists, the 8x8 and 4x4 presets with the "
        f"zero gate and 64 x 64 memories (`scripts.engine_report.engine_config`). "
        f"Step memory of {entry['step_entries']} entries, tile table of "
        f"{entry['tile_entries']}; both read combinationally, so Yosys keeps them as "
        f"memories in the generic count (memory bits) and maps them to LUTs on the ECP5.",
        "",
        f"_From `docs/results/step_list_area.json`, measured by `{entry['command']}`; "
        f"{measured_at(data['provenance']['step_list_area'])}._"])


@block("step_lists.rtl")
def schedule_rtl() -> str:
    data = results("schedule_rtl")
    entry = data["digits_cnn"]
    rows = []
    for name, row in entry["gemms"].items():
        rows.append((f"{row['sparsity']:.0%}", row["layer"], row["kind"].replace("_", " "),
                     f"{row['K']} x {row['N']}", row["method"].replace("_", " "),
                     row["tiles"], row["commands"], row["rtl_cycles"], row["model_cycles"],
                     "yes" if row["equal"] else "**no**", row["dense_model_cycles"],
                     f"{row['speedup_vs_dense']:.2f}x", row["one_command_cycles"]))
    equal = sum(row["equal"] for row in entry["gemms"].values())
    return "\n".join([
        table(("sparsity", "layer", "GEMM", "K x N", "scheduler (banked)", "tiles", "commands",
               "RTL cycles", "model cycles", "equal", "dense (model)", "vs dense",
               "one command (model)"), rows),
        "",
        f"{equal} of {len(entry['gemms'])} GEMMs take exactly the cycles of the model; every "
        f"result word equals the golden model's. M = {entry['rows']} rows of random fp16 A "
        f"(two bands of the 8x8 array), B the pruned fp16 weights, scheduled under the bank "
        f"constraint by the best banked scheduler of `docs/results/schedule.json` "
        f"(run again: its slots are in the results file beside the recorded ones). The "
        f"engine has a 256-wide scratchpad and a step memory of "
        f"{entry['engine']['step_entries']} entries: K runs in chunks of 256 (accumulating), "
        f"and a chunk's tiles in as many commands as the step memory needs (`commands`); "
        f"each command's overhead is in the RTL cycles. RTL cycles from "
        f"{entry['simulator']}; `dense (model)`: the cycle model of the dense GEMM split the "
        f"same way in K; `one command (model)`: the whole GEMM as one command on an engine "
        f"with memories for it (the objective of the scheduler). "
        f"Wall time {entry['wall_time_s']:.0f} s.",
        "",
        f"_From `docs/results/schedule_rtl.json`, measured by `{entry['command']}`; "
        f"{measured_at(data['provenance']['digits_cnn'])}._"])
