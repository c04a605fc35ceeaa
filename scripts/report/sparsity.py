"""Zero skipping and sparsity: docs/skip_measure.md and docs/sparsity_study.md (whole pages) and
the tables of docs/sparsity_hw.md.

* ``docs/results/skip_measure.json`` (``scripts.skip_measure``): ``measurement`` (every variant,
  step and command), the headline keys ``digits_cnn`` / ``resnet18`` and ``setup`` (the
  variants in order, the engine's timing constants, the targets, the default design);
* ``docs/results/sparsity_study.json`` (``scripts.sparsity_study``): ``study`` and ``setup``;
* ``docs/results/skip_area.json`` (``scripts.skip_area``) with ``engine_area.json``'s dense
  figures, ``docs/results/sparsity_area.json`` (``scripts.sparsity_area``) and the per-window
  RTL replays of ``docs/results/replay.json`` (``replay``, ``scripts.replay``).

The page functions :func:`skip_measure_markdown` and :func:`sparsity_study_markdown` take the
results' content, so that the measuring scripts' tests can render what they measured in memory.
"""

from __future__ import annotations

from scripts.report import block, page, results, table
from scripts.report import measured_at

__all__ = ["skip_measure_markdown", "sparsity_study_markdown"]

STUDY_ANCHOR = "sparsity_study.md#why-the-ideal-is-out-of-reach-and-what-would-be-needed"


def _speedup(entry, name) -> float:
    """Dense cycles over ``name``'s cycles (of a command or of a total)."""
    return entry["cycles"]["dense"] / entry["cycles"][name]


def _of_ideal(entry, name) -> float:
    """Ideal cycles over ``name``'s cycles."""
    return entry["ideal"] / entry["cycles"][name]


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _pct1(value) -> str:
    return f"{100 * value:.2f}%"


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# ----------------------------------------------------------------------------- skip_measure.md

def _variants(setup) -> list[dict]:
    return setup["variants"]


def _headline_section(networks, design, headlines) -> list[str]:
    rows = []
    for net in networks:
        h = headlines[net]
        area = h["skip_area_overhead"]
        area = "not synthesised" if area is None else \
            (f"{100 * area:.1f}%" if isinstance(area, float) else str(area))
        rows.append((f"{net}, {h['step']}", h["backward_cycles_dense"], h["backward_cycles_skip"],
                     h["backward_cycles_ideal"], f"{h['backward_speedup']:.2f}",
                     f"{100 * h['backward_of_ideal']:.0f}%", h["step_cycles_dense"],
                     h["step_cycles_skip"], f"{h['step_speedup']:.2f}", area))
    return [f"## Headline (`{design}`, last captured step)", "",
            table(("network, step", "backward dense", "backward skip", "backward ideal",
                   "backward x", "% of ideal", "step dense", "step skip", "step x",
                   "area overhead"), rows), ""]


def _targets_section(networks, design, setup) -> list[str]:
    target_speedup = setup["targets"]["backward_speedup"]
    target_of_ideal = setup["targets"]["of_ideal"]
    engine = setup["engine"]
    lines = ["## Targets", ""]
    if "digits_cnn" in networks:
        steps = networks["digits_cnn"]["steps"]
        last = steps[-1]["totals"]["backward"]
        x = _speedup(last, design)
        met = "met" if x >= target_speedup else f"missed by {target_speedup - x:.2f}x"
        every = ", ".join(f"{_speedup(s['totals']['backward'], design):.2f}x at step "
                          f"{s['step']}" for s in steps)
        lines += [f"* **Backward speedup >= {target_speedup}x on the digits CNN: {met}.** "
                  f"`{design}` takes {last['cycles'][design]} backward cycles against "
                  f"{last['cycles']['dense']} dense at step {steps[-1]['step']}: {x:.2f}x "
                  f"(every captured step: {every})."]
    else:
        lines += [f"* Backward speedup >= {target_speedup}x on the digits CNN: not measured "
                  "in this run."]
    parts = []
    for net, result in networks.items():
        back = result["steps"][-1]["totals"]["backward"]
        parts.append(f"{100 * _of_ideal(back, design):.0f}% on {net} (ideal "
                     f"{back['ideal']} cycles, `{design}` {back['cycles'][design]}; the tile "
                     f"bound itself is {100 * back['ideal'] / back['tile_bound']:.0f}% of the "
                     f"ideal, and `{design}` reaches "
                     f"{100 * back['tile_bound'] / back['cycles'][design]:.0f}% of the tile "
                     "bound)")
    lasts = [r["steps"][-1]["totals"]["backward"] for r in networks.values()]
    met = "met" if all(_of_ideal(b, design) >= target_of_ideal for b in lasts) else "missed"
    lines += [f"* **Backward cycles >= {100 * target_of_ideal:.0f}% of the ideal (ideal / "
              f"cycles): {met}.** Measured at the last step: " + "; ".join(parts) + "."]
    bounded = [net for net, b in zip(networks, lasts)
               if b["ideal"] / b["tile_bound"] < target_of_ideal]
    if bounded:
        lines[-1] += (" On " + " and ".join(bounded) + " no compacted design of this tiling can "
                      "reach it: even with every PE of a tile busy with its own non-zero "
                      "products (the tile bound) the backward pass stays below "
                      f"{100 * target_of_ideal:.0f}% of the ideal, bounded by the "
                      f"{engine['rows']}x{engine['cols']} tiling with shared operand streams, "
                      f"the {engine['min_tile_slots']}-slot tile floor and the PEs of a tile "
                      "with unequal work, as the design study explains ([why the ideal is out "
                      f"of reach]({STUDY_ANCHOR})).")
    else:
        lines[-1] += (" The tile bound is within the target on every network; see the design "
                      f"study for what bounds the rest ([why the ideal is out of reach]"
                      f"({STUDY_ANCHOR})).")
    return lines + [""]


def _method(design, setup) -> list[str]:
    engine = setup["engine"]
    slots = engine["min_tile_slots"]
    variant = next(v for v in _variants(setup) if v["name"] == design)
    lines = [
        "## Method", "",
        "**Workload.** The GEMM commands (forward, weight gradient with the bias gradient "
        "folded in as its last row, backward data) of captured training steps of the digits "
        "CNN and of the ResNet-18 topology (width 8), rebuilt from the captured layer tensors "
        "exactly as the engine stores them, with the output mask of backward data "
        "(`sim.experiments.sparsity.capture_gemms`, checked bit for bit against step 0's "
        "captured operands by the study). Every capture but step 0 is measured; the last "
        "captured step of each network is the headline.", "",
        "**Hardware (what the RTL does).** The "
        f"{engine['rows']}x{engine['cols']} output-stationary engine with a lookahead window of "
        "`d` steps: in each "
        "tile, every array row issues its own next step whose A value is non-zero (and whose "
        "B band is not all zero) within a window of `d` steps; the B rows of the whole window "
        "flow down the columns and each PE muxes the one its row chose; the window advances "
        "up to `d` steps per cycle (TensorDash-like; `d = 1` is the dense engine). Each PE "
        "gates its accumulator update with the operands' zero flags, so the bits never "
        "depend on the schedule. Without output masks the engine computes every output "
        "(`out_keep=None`; the host's result scatter writes the masked ones). With them "
        "(`EngineConfig(output_mask=True)`, the `_mask` variants) a backward-data command "
        "reads its forward mask from the engine's keep planes (after compaction, the mask of "
        "the kept lanes): masked outputs are written +0, and the window skips the rows and "
        "columns of a tile whose outputs are all masked. Model: "
        "`sim.skip_timing.engine_cycles` (the window schedule "
        "`sim.skip_model.command_cycles(config, gemm, SkipOption(schedule=\"lookahead\", "
        "depth=d, fetch=d, side=\"a\"))` with the command's `out_keep`, plus "
        f"{engine['flag_read_latency']} cycles per command for reading the first zero flags, "
        f"{engine['flag_read_latency_masked']} for a masked one, "
        "which also reads its first tile's mask summary), which the RTL benches "
        "(`tb/test_engine.py`, `test_engine_skip_window`) assert equal for every command. The "
        "dropout plane is written by the engine's mask writer, which runs beside the engine "
        "(the host starts it before the GEMMs that precede the backward-data command); its "
        "cycles are not in these counts. A tile occupies at least "
        f"`min_tile_slots = {slots}` issue slots; each command "
        f"adds {engine['overhead']} fixed cycles "
        f"(+{engine['overhead_accumulate'] - engine['overhead']} when accumulating).", "",
        "**Host (scheduler, no hardware).** (1) *Lane compaction* "
        "(`sim.skip_model.compact`): before issuing a command the host drops the rows of A "
        "that are all zero or whose outputs are all masked, and the columns of B likewise; "
        "the engine runs the smaller GEMM and the host's result scatter writes the dropped "
        "outputs (`C_in` or +0 for all-zero lanes, +0 for masked ones) and +0 over the masked "
        "outputs the engine computed in the kept lanes. A command with nothing left is not "
        "issued: 0 engine cycles. (2) *Weight-gradient swap*: weight gradients are issued as "
        "`dW^T = dY^T . X_col`, so the array rows choose by the zeros of `dY`.", "",
        "**Reference points.** `dense` is asserted equal to "
        "`sim.engine_model.command_cycles` for every command. Ideal = "
        "`sim.skip_model.ideal_cycles` = `ceil(non-zero MACs / "
        f"{engine['rows'] * engine['cols']})` per command, a non-zero "
        "MAC having both operands non-zero and its output kept (the real mask). Tile bound = "
        "`sim.skip_model.tile_bound_cycles`: after compaction, each tile takes at least its "
        f"busiest PE's non-zero products and at least {slots} slots (a lower bound for every "
        "compacted variant). x = dense cycles / cycles; % of ideal = ideal / cycles. "
        "Backward = weight-gradient and backward-data commands; step = all commands.", ""]

    def yes(flag):
        return "yes" if flag else "no"

    rows = [(f"`{v['name']}`" + (" (default)" if v["name"] == design else ""), v["depth"],
             yes(v["compact"]), yes(v["swap_weight_grad"]), yes(v["mask"]))
            for v in _variants(setup)]
    lines += [table(("variant", "window d", "host compaction", "weight-gradient swap",
                     "output masks"), rows, "lrlll"),
              "", f"The default design is `{design}` ({variant['summary']}).", ""]
    return lines


def _choice_section(networks, design, setup, skip_area=None, replay=None) -> list[str]:
    """Window depth against speedup and measured area (``skip_area``), the RTL replay
    (``replay``) and the default."""
    overhead = (skip_area or {}).get("overhead", {})
    depths = setup["depths"]
    budget = setup["area_budget"]
    target_speedup = setup["targets"]["backward_speedup"]
    rows = []
    for d in (1, *depths):
        name = "compact" if d == 1 else f"la{d}_compact_swap"
        speeds = [f"{_speedup(result['steps'][-1]['totals']['backward'], name):.2f}"
                  for result in networks.values()]
        area = overhead.get(f"window{d}")
        cells = ("0", "0") if d == 1 else ("-", "-") if area is None else (
            _pct1(area["fraction_4x4"]), _pct1(area["fraction_8x8"]))
        copies = "none" if d == 1 else f"{d - 1} of A and of B, {d} flag planes each"
        rows.append((d, *speeds, *cells, copies))
    lines = ["## Choosing the default", "",
             "Backward speedup at the last captured step (with host compaction and the "
             "weight-gradient swap) against the Yosys area of the window (`python -m "
             "scripts.skip_area`: `4x4` = whole 4x4 engine with the window minus the dense "
             "4x4 engine, over the dense 4x4 array; `8x8` = whole 8x8 engine with the window "
             "minus the dense 8x8 engine, both synthesised by parts (the PEs once per PE "
             "type), over the dense 8x8 array; not measured: -):", "",
             table(("window d", *(f"{net} backward x" for net in networks), "area 4x4",
                    "area 8x8", "extra scratchpad copies"), rows, "r" * (len(networks) + 4))]
    masks = [d for d in depths if f"mask_window{d}" in overhead]
    if masks:
        rows = []
        for d in masks:
            row = overhead[f"mask_window{d}"]
            lasts = [r["steps"][-1]["totals"]["backward"] for r in networks.values()]
            speeds = [f"{_speedup(back, f'la{d}_compact_swap_mask'):.2f} / "
                      f"{_speedup(back, f'la{d}_compact_swap'):.2f}" for back in lasts]
            rows.append((d, *speeds, _pct1(row["fraction_8x8"]),
                         _pct1(row["with_window_fraction_8x8"]), f"{row['memory_bits_8x8']:,}"))
        lines += ["", "With the engine's output masks (`_mask` variants: keep planes, mask "
                  "summaries for the window, +0 on masked result lanes, the dropout mask "
                  "writer; the whole 8x8 engine with masks minus the one with the same window, "
                  "both by parts; the keep planes are memory, 2 planes x 2 copies of 1 bit per "
                  "accumulator, their bits from the engines' Verilog):",
                  "", table(("window d", *(f"{net} backward x, masks / without"
                                           for net in networks),
                             "mask logic 8x8", "with the window 8x8", "keep-plane bits 8x8"),
                            rows, "r" * (len(networks) + 4)),
                  "", "Output masks act on whole tile rows and columns only (a PE of an "
                  "output-stationary array cannot leave its shared operand streams), and the "
                  "element-wise ReLU and dropout masks of these networks rarely mask a whole "
                  "row or column of a tile that compaction kept: they add at most a percent "
                  "of backward speed here. What they bring is the +0 writes in hardware (no "
                  "scatter pass over masked outputs) and dropout masks regenerated from a "
                  "seed instead of stored."]
    depth = next(v["depth"] for v in _variants(setup) if v["name"] == design)
    chosen = overhead.get(f"window{depth}")
    rule = setup["rule_default"]
    lines += ["", f"**Default: `{design}`.** "]
    if rule == design:
        reasons = [f"The rule: the window with the largest mean backward speedup whose skip "
                   f"logic fits the budget ({_pct(budget)} of the dense 8x8 array, "
                   f"measured), with compaction and the swap; d = {depth} is that window"]
    else:
        reasons = [f"Chosen with --default (the rule, the fastest window inside the "
                   f"{_pct(budget)} area budget, picks `{rule}`)"]
    if chosen is not None:
        reasons.append(f"its skip logic measures {_pct1(chosen['fraction_8x8'])} of the dense "
                       f"8x8 array ({_pct1(chosen['fraction_4x4'])} on the 4x4 engine measured "
                       f"whole, where the sequencer weighs more against 16 PEs)")
    over = [d for d in depths if overhead.get(f"window{d}", {}).get("fraction_8x8", 0) > budget]
    if over:
        reasons.append(f"d = {', '.join(str(d) for d in over)} is faster but over the budget")
    if "digits_cnn" in networks:
        back = networks["digits_cnn"]["steps"][-1]["totals"]["backward"]
        small = [d for d in depths if _speedup(back, f"la{d}_compact_swap") < target_speedup]
        if small:
            reasons.append(f"smaller windows miss the {target_speedup}x backward target on the "
                           f"digits CNN (d = {', '.join(str(d) for d in small)})")
    lines[-1] += "; ".join(reasons) + ". The window depth stays a parameter " \
        "(`ArrayConfig(skip_window=d)`); compaction and the swap are the host's and cost no " \
        "hardware. The memory cost is not in the cell counts: the window needs its " \
        "scratchpad copies and flag planes (above)."
    if replay:
        rows = []
        for name, run in sorted(replay.items()):
            total = run["per_kind"]["total"]
            rows.append((name, run["commands"], run["backward_cycles"],
                         run["backward_cycles_dense"],
                         f"{run['backward_cycles_dense'] / run['backward_cycles']:.2f}",
                         total["cycles"], total["dense_cycles"],
                         f"{total['dense_cycles'] / total['cycles']:.2f}"))
        lines += ["", "**On the RTL.** The digits CNN's training step 0 (the lowering's "
                  "commands as they are: no compaction, no swap) on the generated 8x8 engine "
                  "under Verilator (`python -m scripts.replay --skip-window D`), every result "
                  "word bit-exact and every command's cycles equal to the model:", "",
                  table(("window", "commands", "backward cycles", "dense", "backward x",
                         "step cycles", "dense", "step x"), rows)]
    return lines + [""]


def _summary_section(networks, setup) -> list[str]:
    lines = ["## Every variant, per network and step", ""]
    names = [v["name"] for v in _variants(setup)]
    for net, result in networks.items():
        for step in result["steps"]:
            back, whole = step["totals"]["backward"], step["totals"]["step"]
            rows = [(f"`{name}`", back["cycles"][name], f"{_speedup(back, name):.2f}",
                     f"{100 * _of_ideal(back, name):.0f}%", whole["cycles"][name],
                     f"{_speedup(whole, name):.2f}", f"{100 * _of_ideal(whole, name):.0f}%")
                    for name in names]
            for label, key in (("tile bound", "tile_bound"), ("ideal", "ideal")):
                rows.append((label, back[key], f"{back['cycles']['dense'] / back[key]:.2f}",
                             f"{100 * back['ideal'] / back[key]:.0f}%", whole[key],
                             f"{whole['cycles']['dense'] / whole[key]:.2f}",
                             f"{100 * whole['ideal'] / whole[key]:.0f}%"))
            lines += [f"### {net}, step {step['step']} (epoch {step['epoch']}, batch "
                      f"{step['batch']})", "",
                      table(("variant", "backward cycles", "backward x", "backward % of ideal",
                             "step cycles", "step x", "step % of ideal"), rows),
                      "", f"Non-zero MACs: {_pct(back['nonzero_macs'] / back['dense_macs'])} "
                      f"of the backward MACs, {_pct(whole['nonzero_macs'] / whole['dense_macs'])}"
                      " of the step's.", ""]
    return lines


def _layers_section(networks, design) -> list[str]:
    lines = ["## Per command, last captured step", "",
             "zeros A / B: fraction of the operand elements that are zero; masked: fraction of "
             "the outputs masked; sparsity: 1 - non-zero MACs / MACs; kept: rows x columns "
             "left after lane compaction (natural orientation).", ""]
    for net, result in networks.items():
        step = result["steps"][-1]
        rows = []
        for r in step["commands"]:
            cycles, dense, ideal = r["cycles"][design], r["cycles"]["dense"], r["ideal"]
            rows.append((r["name"], f"{r['M']}x{r['N']}x{r['K']}", _pct(r["zero_a"]),
                         _pct(r["zero_b"]), _pct(r["masked_out"]), _pct(r["mac_sparsity"]),
                         f"{r['kept_rows']}x{r['kept_cols']}", dense, cycles, ideal,
                         f"{dense / cycles:.2f}" if cycles else "not issued",
                         f"{dense / max(1, ideal):.2f}",
                         f"{100 * ideal / cycles:.0f}%" if cycles else "-"))
        lines += [f"### {net}, step {step['step']}", "",
                  table(("command", "M x N x K", "zeros A", "zeros B", "masked", "sparsity",
                         "kept", "dense", f"`{design}`", "ideal", "x", "ideal x", "% of ideal"),
                        rows, "llrrrrlrrrrrr"), ""]
    return lines


def skip_measure_markdown(data: dict, skip_area: dict | None = None,
                          replay: dict | None = None) -> str:
    """docs/skip_measure.md from the content of ``skip_measure.json`` (``measurement``,
    ``setup`` and the headline keys), the ``skip_area`` key of ``skip_area.json`` and the
    ``replay`` key of ``replay.json`` (per-window RTL replays; None: not run)."""
    setup = data["setup"]
    networks = data["measurement"]["networks"]
    design = setup["default"]
    provenance = data.get("provenance", {}).get("measurement")
    lines = ["# Zero skipping: measurement of the RTL design (issue 5, item 8)", "",
             "Generated by `sparta report` (do not edit by hand) from "
             "`docs/results/skip_measure.json` (headline keys "
             + ", ".join(f"`{net}`" for net in networks) + "; every variant, step and command "
             "under `measurement`, measured by `python -m scripts.skip_measure`, "
             f"{measured_at(provenance)}), `skip_area.json` (`python -m scripts.skip_area`) and "
             "`replay.json` (`replay`). Plot: [skip_measure.png](skip_measure.png) (left: "
             "backward GEMMs of the digits CNN, cycles; right: speedup of each backward GEMM "
             "against its measured sparsity). The design study that chose this family: "
             "[sparsity_study.md](sparsity_study.md).", ""]
    lines += _headline_section(networks, design, data)
    lines += _targets_section(networks, design, setup)
    lines += _method(design, setup)
    lines += _choice_section(networks, design, setup, skip_area, replay)
    lines += _summary_section(networks, setup)
    lines += _layers_section(networks, design)
    lines += ["## Reproduce", "", "```",
              "python -m scripts.train --net digits_cnn --backends accel   # captures",
              "python -m scripts.train --net resnet18 --backends accel     # captures",
              "nice python -m scripts.skip_measure                         # the measurement",
              "python -m scripts.skip_measure --report-only                # after skip_area",
              "python -m scripts.report                                    # this document",
              "python -m pytest tb/test_skip_measure.py tb/test_golden_sparsity.py -q",
              "```", ""]
    return "\n".join(lines)


@page("skip_measure.md")
def skip_measure_page() -> str:
    return skip_measure_markdown(results("skip_measure"),
                                 results("skip_area", missing_ok=True).get("skip_area"),
                                 results("replay", missing_ok=True).get("replay"))


# ----------------------------------------------------------------------------- sparsity_study.md

ONE_SAMPLE_TEXT = """\
Not modelled as a separate option: a mapping that gives one sample's work to the PEs sharing a
stream. In the output-stationary array the PEs sharing an A stream (an array row) already hold
one sample's (forward, backward data of FC layers) or one pixel's (convolutions) outputs, and
in the weight gradient every step (k = sample or pixel) is one sample's work for the whole
array, so sample-level structure is aligned by construction. What is not aligned are the zeros
*within* a sample across the rows of a tile, which is what the row window decouples; putting
a single sample on a whole tile would need a different B operand per PE column and row, i.e. a
different dataflow. Reordering by the scheduler is modelled (`steps_reorder`)."""

CHOICE_TEXT = """\
Reading the table:

* Step skipping alone (`steps`, no PE change, <1% area) only drops a step when all 8 rows of a
  band (or all 8 columns) are zero at once. Unstructured ReLU zeros rarely line up over 8
  rows; it helps where zeros are spatially structured (the blank borders of the digits, the
  deep ResNet layers).
* Output skipping and lane compaction (`_out`) cost almost nothing (index lists, row-clear
  flags) and add on every design: fully masked or all-zero rows and columns, and tiles
  without work, disappear. Row reordering by the scheduler (`steps_reorder`) helps the
  forward and backward-data GEMMs of some layers and hurts others (it breaks the spatial
  alignment of the natural order), a few percent either way: not worth a compiler pass.
* A lookahead window where each array row picks its own next non-zero (TensorDash-like) is
  what turns unaligned zeros into cycles. Sliding it over the needed-step list of the
  bitmaps (`la*_out`) instead of over every step adds the structured gains of step skipping.
  Depth 4 gains over depth 2, but a depth-4 window rarely needs to advance more than 2 steps
  per cycle: `la4f2` (4-deep window, scratchpads read 2 steps per cycle) is within 1% of
  `la4` at a third of its extra scratchpad logic.
* The rows choose by the zeros of A. In forward and backward data A is the sparse operand
  (X, dY) and B the dense weights; in the weight gradient both are sparse and in the digits
  CNN dY is the sparser one, so the compiler exchanges the operands of weight-gradient GEMMs
  (`_swap`, computing dW^T; no hardware cost): on the digits CNN the largest gain after the
  window itself, on the ResNet (X and dY about equally sparse) a small one.
* Letting every PE choose by both operands (`pe*`) is a few percent faster than the swapped
  row window and costs twice its in-array area (both operand windows travel through every
  PE, two muxes and a chooser per PE)."""

WHY_TEXT = """## Why the ideal is out of reach, and what would be needed

The ideal (non-zero MACs / 64 PEs) assumes every PE does a needed product every cycle. Three
things of the 8x8 OS engine stand between it and any schedule (the *tile bound* column above
removes the third and keeps the first two):

1. **The tile floor.** A tile occupies at least 2R = 16 slots (its results shift out while the
   next tile computes). GEMMs with K <= 16 cannot get faster by skipping steps at all: the
   digits CNN's `conv2.backward_data` (K = 16 output channels, a quarter of its backward
   cycles) and the small `fc2` GEMMs; GEMMs with K = 32 (`fc1.weight_grad`, batch 32) at most
   2x. Only removing whole tiles helps there, and masks are not structured enough for that.
2. **Shared streams.** The 64 products of a step share 8 A and 8 B operands; a tile lasts as
   long as its busiest PE. (The bias gradients, once single-row GEMMs that used one array row
   of 8, are folded into the weight gradients as one more row of ones, never zero.)
3. **The window.** A row can run at most d steps ahead of the slowest row of its tile.

What would be needed to get closer:

* **Backward data of a stride-1 convolution as a transposed convolution** (`dX = im2col(dY) .
  rot180(W)`, K = 9 C_out instead of C_out, no col2im): the same MACs and the same or fewer
  dense cycles (fewer where C_out < 16 hits the tile floor), K long enough for the window, and
  the output mask is the input's mask itself. The last column of
  the summary table measures it: the digits CNN's backward speedup rises substantially. It is
  a change of `sim/lowering.py` and `sim/nn/layers.py` (and of the numerics of dX: one fp32
  accumulation over k, C_out, taps in order instead of per-tap sums added on the host), so it
  is proposed here, not made.
* A larger batch per GEMM (K = batch for the FC weight gradients) or a smaller tile floor.
* 80% of the ideal would need per-PE independent operand streams (an unstructured-sparse
  dataflow such as an outer-product or a gather-based design), not a systolic array with
  shared streams; the published 1.7-5x backward speedups of comparable designs are against
  their dense baselines, like ours, not fractions of this ideal."""


def _x(total, name) -> str:
    return f"{_speedup(total, name):.2f}"


def _bound_x(total) -> float:
    return total["cycles"]["dense"] / total["tile_bound"]


def _ideal_x(total) -> float:
    return total["cycles"]["dense"] / total["ideal"]


def _backward_alt_x(totals, name) -> float:
    return totals["backward"]["cycles"]["dense"] / \
        totals["backward_transposed_conv"]["cycles"][name]


def _study_summary(study, setup) -> list[str]:
    networks, designs = study["networks"], study["designs"]
    default = study["default"]
    rows = []
    names = [n for n in setup["design_order"] if n != "dense"]
    for net, result in networks.items():
        for step in result["steps"]:
            t = step["totals"]
            back = t["backward"]
            best = max(names, key=lambda n: _speedup(back, n))
            rows.append((f"{net}, {step['step']}",
                         f"{100 * back['nonzero_macs'] / back['dense_macs']:.0f}%",
                         f"{_ideal_x(back):.2f}", f"{_bound_x(back):.2f}", _x(back, default),
                         f"{100 * _of_ideal(back, default):.0f}%", f"`{best}` ({_x(back, best)})",
                         _x(t["step"], default), f"{_backward_alt_x(t, default):.2f}"))
    lines = ["## Summary", "",
             "Backward pass = weight-gradient (with the bias gradient folded in as one more "
             "row) and backward-data GEMMs of one training step. x = speedup over the dense "
             f"engine (cycles, {setup['engine']['rows']}x{setup['engine']['cols']} OS).", "",
             table(("network, step", "non-zero MACs of the backward pass", "ideal x",
                    "tile bound x", f"`{default}` x", "% of ideal", "best design (x)",
                    "whole step x", "backward x with transposed-conv backward data"),
                   rows, "lrrrrrlrr"), ""]
    digits = [s["totals"] for s in networks.get("digits_cnn", {"steps": []})["steps"]]
    a = designs[default]["area"]
    in_array = 100 * a["in_array"] / a["array_cells"]
    lines += [f"**Default for the RTL: `{default}`** ({designs[default]['summary']}). Estimated "
              f"cost: {a['in_array']} cells in the array ({in_array:.1f}% "
              f"of the dense array's {a['array_cells']}), {a['sequencer']} in the sequencer and "
              f"zero detect, {a['outside_array']} for the second scratchpad read path: "
              f"{100 * a['fraction']:.1f}% in all.", "",
              "What was built afterwards is a simpler member of this family (a sliding window "
              "over every step, no step bitmaps, no output mask in the engine, host lane "
              "compaction; its depth chosen by measured Yosys area): its cycles, asserted "
              "equal to the RTL, and its area are in [skip_measure.md](skip_measure.md).", ""]
    target = setup["targets"]["backward_speedup"]
    if digits:
        worst = min(_speedup(t["backward"], default) for t in digits)
        verdict = "meets" if worst >= target else f"misses by {target - worst:.2f}x"
        lines += [f"Target 1 (backward speedup >= {target}x on the digits CNN): the default "
                  f"reaches {worst:.2f}x at the least favourable captured step, so it "
                  f"{verdict}.", ""]
        pct = max(_of_ideal(t["backward"], default) for t in digits)
        bound = max(t["backward"]["ideal"] / t["backward"]["tile_bound"] for t in digits)
        lines += [f"Target 2 (>= {100 * setup['targets']['of_ideal']:.0f}% of the ideal): "
                  f"missed. The default reaches at most "
                  f"{100 * pct:.0f}% of the ideal on the digits CNN; even the tile bound (every "
                  f"PE of a tile busy with its own non-zero products, no window limit, only the "
                  f"{setup['engine']['rows']}x{setup['engine']['cols']} tiling and its "
                  f"{setup['engine']['min_tile_slots']}-slot floor kept) reaches "
                  f"{100 * bound:.0f}%. The gap is explained in *Why the ideal is out of reach* "
                  "below.", ""]
    reach = {net: [t["totals"]["backward"]["tile_bound"] /
                   t["totals"]["backward"]["cycles"][default] for t in r["steps"]]
             for net, r in networks.items()}
    lines += ["Against the tile bound, the best any schedule can do on this tiling in the natural "
              "row order, the default "
              "reaches " + "; ".join(f"{', '.join(f'{100 * x:.0f}%' for x in xs)} on {net}"
                                     for net, xs in reach.items()) +
              ": the window loses little, the tiling and the shared streams lose the rest.", ""]
    return lines


def _study_choice(study, setup) -> list[str]:
    designs, default = study["designs"], study["default"]
    budget = setup["area_budget"]
    target = setup["targets"]["backward_speedup"]
    names = [n for n in setup["design_order"] if n != "dense"]
    steps = {net: [s["totals"] for s in r["steps"]] for net, r in study["networks"].items()}
    first = next(iter(steps))

    def mean_x(name, net):
        return _mean(_speedup(t["backward"], name) for t in steps[net])

    def fraction(name):
        return designs[name]["area"]["fraction"]

    rows = []
    for name in names:
        xs = [mean_x(name, net) for net in steps]
        rows.append((f"`{name}`", *(f"{x:.2f}" for x in xs), f"{100 * fraction(name):.1f}%",
                     f"{(xs[0] - 1) / (100 * fraction(name)):.2f}"))
    lines = ["## Choosing the default", "",
             "Mean backward speedup over the captured steps against the estimated area "
             "(in-array, sequencer and scratchpad cells over the dense array):", "",
             table(("design", *(f"{net} backward x" for net in steps), "area",
                    f"({first} x - 1) per % of area"), rows),
             "", CHOICE_TEXT, ""]

    def overall(name):
        return _mean(mean_x(name, net) for net in steps)

    fastest = max((n for n in names if fraction(n) <= budget), key=overall)
    over = [n for n in names if overall(n) > overall(fastest)]
    meeting = [n for n in names if "digits_cnn" in steps and
               min(_speedup(t["backward"], n) for t in steps["digits_cnn"]) >= target]
    cheapest = min(meeting, key=fraction) if meeting else None
    text = (f"Within the {100 * budget:.0f}% area budget the fastest design on both "
            f"networks is `{fastest}` (mean backward speedup " +
            ", ".join(f"{mean_x(fastest, net):.2f}x on {net}" for net in steps) +
            f", {100 * fraction(fastest):.1f}% area).")
    if over:
        text += (" Faster designs exist only outside the budget: " +
                 ", ".join(f"`{n}` (+{100 * (overall(n) / overall(fastest) - 1):.0f}% speed, "
                           f"{100 * fraction(n):.1f}% area)" for n in over) + ".")
    if cheapest is not None and cheapest != fastest:
        text += (f" The cheapest design that meets {target}x at every captured digits step is "
                 f"`{cheapest}` ({100 * fraction(cheapest):.1f}% area, " +
                 ", ".join(f"{mean_x(cheapest, net):.2f}x on {net}" for net in steps) +
                 "): the same hardware with a 2-deep window, the fallback if the RTL's area "
                 "comes out above the estimate.")
    verdict = (f"So the default is `{default}`" +
               (": the fastest inside the budget, with the margin of a 4-deep window over the "
                f"{target}x target, and no change to the PE's datapath beyond an operand mux, "
                "the window registers and the zero gate. The window depth (1 = dense, tested "
                "equal to the dense engine) and the fetch width stay parameters."
                if default == fastest else f" (note: `{fastest}` measured faster within the "
                                           f"budget in this run)."))
    return lines + [text, "", verdict, ""]


def _study_network(net, result, setup) -> list[str]:
    lines = [f"## {net}", ""]
    order = setup["design_order"]
    for step in result["steps"]:
        t = step["totals"]
        rows = [(f"`{name}`", _x(t["forward"], name), _x(t["backward"], name),
                 f"{100 * _of_ideal(t['backward'], name):.0f}%", _x(t["step"], name),
                 f"{_backward_alt_x(t, name):.2f}") for name in order]
        back, whole, forward = t["backward"], t["step"], t["forward"]
        forward_nonzero = 100 * forward["nonzero_macs"] / forward["dense_macs"]
        lines += [f"### Step {step['step']} (epoch {step['epoch']}, batch {step['batch']})", "",
                  table(("design", "forward x", "backward x", "backward % of ideal",
                         "whole step x", "backward x, transposed-conv backward data"), rows),
                  "", f"Cycles: backward dense {back['cycles']['dense']}, tile bound "
                  f"{back['tile_bound']} (x{_bound_x(back):.2f}), ideal {back['ideal']} "
                  f"(x{_ideal_x(back):.2f}); whole step dense {whole['cycles']['dense']}, "
                  f"ideal {whole['ideal']} (x{_ideal_x(whole):.2f}). Non-zero MACs: "
                  f"{100 * back['nonzero_macs'] / back['dense_macs']:.1f}% of the "
                  f"backward MACs, {forward_nonzero:.1f}% of the forward MACs.", ""]
        for name, d in step["dropout"].items():
            lines.append(f"Dropout `{name}` (p = {d['p']}): the captured mask keeps "
                         f"{100 * d['captured_keep']:.1f}%, the LFSR mask of the same shape "
                         f"{100 * d['lfsr_keep']:.1f}%.")
        if step["dropout"]:
            lines.append("")
    step = result["steps"][-1]
    shown = setup["table_designs"]
    rows = []
    for r in step["commands"]:
        dense = r["cycles"]["dense"]
        rows.append((r["name"], f"{r['M']}x{r['N']}x{r['K']}", _pct(r["zero_a"]),
                     _pct(r["zero_b"]), _pct(r["masked_out"]), dense,
                     f"{dense / max(1, r['ideal']):.2f}", f"{dense / r['tile_bound']:.2f}",
                     *(f"{dense / r['cycles'][n]:.2f}" for n in shown)))
    lines += [f"Per command, step {step['step']} (zeros: fraction of the A / B elements that "
              "are zero; masked: fraction of the outputs; x = speedup over dense):", "",
              table(("command", "M x N x K", "zeros A", "zeros B", "masked", "dense", "ideal x",
                     "tile bound x", *(f"`{n}` x" for n in shown)), rows,
                    "ll" + "r" * (6 + len(shown))), ""]
    return lines


def sparsity_study_markdown(data: dict) -> str:
    """docs/sparsity_study.md from the content of ``sparsity_study.json`` (``study``,
    ``setup``)."""
    study, setup = data["study"], data["setup"]
    engine = setup["engine"]
    provenance = data.get("provenance", {}).get("study")
    lines = ["# Zero skipping: design study (issue 5, before RTL)", "",
             "Generated by `sparta report` (do not edit by hand) from "
             "`docs/results/sparsity_study.json` (`study`, measured by `python -m "
             f"scripts.sparsity_study`, {measured_at(provenance)}). Golden semantics: "
             "`sim/sparsity.py`; dropout masks from an LFSR: `sim/lfsr.py`; cycle models of "
             "the skip options: `sim/skip_model.py`; tests: `tb/test_golden_sparsity.py`. "
             "Plot: [sparsity_study.png](sparsity_study.png) (speedup of each GEMM against its "
             "measured sparsity).", "",
             "Method: the captures of trained steps hold the layer tensors (inputs, weights, "
             "the output gradients dY, the ReLU and dropout masks) but not the GEMM operands "
             "(only step 0 has those). So the GEMM commands of captured training steps of the "
             "digits CNN and of the ResNet-18 topology (width 8) are rebuilt from the layer "
             "tensors "
             "exactly as the engine stores them (fp16 encode, im2col; equal bit for bit to "
             "the captured operands of step 0), with the output mask of backward data (the "
             "ReLU/dropout masks of the layer's input, through im2col). Each design's cycle "
             "model runs on their actual zero bitmaps. "
             f"Engine: {engine['rows']}x{engine['cols']} output-stationary array, fewest slots "
             f"per tile `min_tile_slots = {engine['min_tile_slots']}` (2R), fixed overhead "
             f"{engine['overhead']} cycles per command "
             f"(+{engine['overhead_accumulate'] - engine['overhead']} when accumulating); dense "
             "cycles are asserted equal to `sim.engine_model.command_cycles` for every "
             "command. Ideal = `ceil(non-zero MACs / "
             f"{engine['rows'] * engine['cols']})` per command, a non-zero MAC being a "
             "product with both operands non-zero and its output kept. `% of ideal` = ideal "
             "cycles / cycles. Tile bound = `sim.skip_model.tile_bound_cycles`.", ""]
    lines += _study_summary(study, setup)
    lines += ["## Semantics (`sim/sparsity.py`, `sim/lfsr.py`)", "",
              "A product whose A or B operand is +0 or -0 is skipped and never touches the "
              "accumulator; an output whose mask is 0 is written +0 and nothing is computed "
              "for it (`gemm_skip`). Against the dense GEMM this differs only when an "
              "accumulator *starting* at -0 (C_in = -0) meets a skipped +0 product (dense: +0, "
              "skipping: -0) and when a zero meets an infinity or a NaN (dense: NaN, skipping: "
              "the product is ignored); elsewhere both agree bit for bit (tested). Every design "
              "computes exactly these bits: each PE gates its accumulator update with the zero "
              "flags travelling with its operands and the result path zeroes masked outputs, "
              "so a schedule changes cycles, never bits.", "",
              "Dropout masks are regenerated from a 32-bit seed by a maximal-length Galois "
              "LFSR (x^32 + x^22 + x^2 + x + 1); row r of the mask (a sample, or a pixel of an "
              "NHWC tensor) starts 2^16 steps after row r-1, each element takes 8 bits and is "
              "dropped when they are below round(p 256); per-layer, per-step seeds are derived "
              "by BLAKE2b on the host. The captured runs drew their masks from numpy; the "
              "keep fractions of the LFSR masks of the same shapes are listed per step below.",
              ""]
    designs = study["designs"]
    dense_cells = designs["dense"]["area"]["array_cells"]
    rows = []
    for name in setup["design_order"]:
        a = designs[name]["area"]
        rows.append((f"`{name}`", designs[name]["summary"], a["in_array"], a["sequencer"],
                     a["outside_array"], f"{100 * a['fraction']:.1f}%"))
    lines += ["## Designs and their estimated hardware cost", "",
              "Cells from `sim.skip_model.skip_area` (assumptions in its docstring: OS PE = "
              "2846 generic cells, an operand with its zero flag = 19 bits, a d:1 mux of w bits "
              "~ w(d-1) cells). `in array` = PE and array-edge additions, `sequencer` = zero "
              "detect, bitmap scan, index lists, output-mask gate, `scratchpad` = extra read "
              "paths for windows that advance more than one step per cycle (memories are not "
              "cells: those designs also need 2-4x the scratchpad banks or copies).", "",
              table(("design", "what it is", "in array", "sequencer", "scratchpad",
                     "total / array"), rows, "llrrrr"),
              "", f"Dense array: {dense_cells} cells ({engine['rows'] * engine['cols']} PEs).",
              "", ONE_SAMPLE_TEXT, ""]
    lines += _study_choice(study, setup)
    lines += [WHY_TEXT, ""]
    for net, result in study["networks"].items():
        lines += _study_network(net, result, setup)
    lines += ["## Hooks needed outside this study's files", "",
              "* `sim/nn/layers.py` `Dropout.forward`: draw the mask with "
              "`sim.lfsr.DropoutMask.for_layer(p, run_seed=..., layer=name, step=...)` "
              "`.keep(x.shape)` instead of `ctx.rng.random(x.shape) >= p` (the step index "
              "and run seed would have to reach the `StepContext`), so the golden model "
              "regenerates the bits the hardware regenerates; p = 0.25 is exact with 8 bits.",
              "* `sim/lowering.py`: weight-gradient commands with the operands exchanged for "
              "the default design (`dW^T = dY^T . X_col`: A = dY read transposed, B = X_col as "
              "stored, the result read back transposed; no copy); the transposed-convolution "
              "backward data proposed above.",
              "* Engine RTL (`hw/engine/`): the zero flag on each operand and the accumulator "
              "gate in the PE, the output-mask gate on the result path, the step bitmaps and "
              "the window (see `sim/skip_model.py` for the exact cycle behaviour the RTL and "
              "its benches must reproduce).", "",
              "## Reproduce", "",
              "```",
              "python -m scripts.train --net digits_cnn --backends accel   # captures, ~1 min",
              "python -m scripts.train --net resnet18 --backends accel     # captures, ~30 min",
              "nice python -m scripts.sparsity_study                       # this study, ~10 min",
              "nice python -m scripts.sparsity_study --report-only         # document and plot "
              "from the JSON",
              "python -m pytest tb/test_golden_sparsity.py -q             # golden models, < 1 min",
              "```", ""]
    return "\n".join(lines)


@page("sparsity_study.md")
def sparsity_study_page() -> str:
    return sparsity_study_markdown(results("sparsity_study"))


# ----------------------------------------------------------------------------- sparsity_hw.md

def _cells(value) -> str:
    return f"{value:,}"


def _skip_area_source() -> str:
    """Where the ``skip_area.json`` tables come from: the tool, the method and the run."""
    where = results("skip_area")["provenance"]["skip_area"]
    return ("_From `docs/results/skip_area.json`, measured by `python -m scripts.skip_area` "
            "(Yosys; the 8x8 engines and the check's array by parts: the sum of a synthesis "
            "of the rest and one per PE type, each measured; the dense arrays from "
            f"`engine_area.json`); {measured_at(where)}._")


def _window(name: str, prefix: str) -> int | None:
    """``window3`` -> 3 (for ``prefix`` ``window``), None for other names."""
    rest = name[len(prefix):]
    return int(rest) if name.startswith(prefix) and rest.isdigit() else None


@block("sparsity.dropout_errors")
def dropout_errors_block() -> str:
    """The error codes of the dropout mask generator, from its enum (a specification, not a
    measurement), in the order they are checked."""
    from hw.sparsity.dropout_mask import DropoutError
    from sim.lfsr import ROW_STRIDE

    when = {
        "NONE": "",
        "ZERO_SEED": "`seed` is 0, the LFSR's fixed point",
        "BAD_THRESHOLD": "`threshold > 2^b`",
        "ZERO_SIZE": "`m` or `n` is 0",
        "ROW_TOO_LONG": "`n b > ROW_STRIDE` (the rows' segments of the sequence would overlap): "
                        f"`n > {ROW_STRIDE // 8}` for `b = 8`; cannot happen for `b = 1`",
    }
    return table(("code", "value", "when"),
                 [(f"`{code.name}`", code.value, when[code.name]) for code in DropoutError],
                 "lll")


@block("sparsity.replay_windows")
def replay_windows_block() -> str:
    """The per-window RTL replays of the digits CNN's step 0 (``replay.json`` ``replay``), the
    dense engine's cycles of the same commands first."""
    runs = sorted(((_window(name, "window"), run)
                   for name, run in results("replay")["replay"].items()), key=lambda r: r[0])
    kinds = ("forward", "backward_data", "weight_grad", "total")
    dense = {kind: runs[0][1]["per_kind"][kind]["dense_cycles"] for kind in kinds}
    for d, run in runs:
        if any(run["per_kind"][kind]["dense_cycles"] != dense[kind] for kind in kinds):
            raise ValueError(f"replay.json: the window{d} replay's dense cycles differ from "
                             f"the window{runs[0][0]} one's: rerun `sparta replay`")
    backward_dense = dense["backward_data"] + dense["weight_grad"]
    rows = [("dense", *(_cells(dense[kind]) for kind in kinds), "1.00", "1.00")]
    for d, run in runs:
        cycles = {kind: run["per_kind"][kind]["cycles"] for kind in kinds}
        rows.append((f"d = {d}", *(_cells(cycles[kind]) for kind in kinds),
                     f"{backward_dense / (cycles['backward_data'] + cycles['weight_grad']):.2f}",
                     f"{dense['total'] / cycles['total']:.2f}"))
    return table(("window", "forward", "backward data", "weight gradient", "whole step",
                  "backward x", "step x"), rows)


@block("sparsity.skip_area")
def skip_area_block() -> str:
    """Yosys cells of the window's units and engines against the dense ones, and the skip
    logic's share of the dense arrays (``skip_area.json``, dense engine and arrays from
    ``engine_area.json``)."""
    skip = results("skip_area")["skip_area"]
    units, overhead = skip["units"], skip["overhead"]
    dense = results("engine_area")["area"]
    windows = sorted(d for d in map(lambda n: _window(n, "window"), overhead) if d is not None)

    def row(label, first, each):
        return (label, first, *(each(d) for d in windows))

    rows = [
        row("OS PE (8x8 formats)", _cells(units["pe_os"]["cells"]),
            lambda d: _cells(units[f"pe_os_window{d}"]["cells"])),
        row("8x8 sequencer", _cells(units["sequencer_os_8x8"]["cells"]),
            lambda d: _cells(units[f"sequencer_os_8x8_window{d}"]["cells"])),
        row("4x4 sequencer", _cells(units["sequencer_os_4x4"]["cells"]),
            lambda d: _cells(units[f"sequencer_os_4x4_window{d}"]["cells"])),
        row("4x4 engine, 64 x 64 scratchpads", _cells(units["engine_os_4x4"]["cells"]),
            lambda d: _cells(units[f"engine_os_4x4_window{d}"]["cells"])),
        row("4x4 engine memory bits", _cells(units["engine_os_4x4"].get("memory_bits", 0)),
            lambda d: _cells(units[f"engine_os_4x4_window{d}"].get("memory_bits", 0))),
        row(f"skip logic / dense 4x4 array ({_cells(dense['array_os_4x4']['cells'])}), "
            "measured whole", "",
            lambda d: f"{100 * overhead[f'window{d}']['fraction_4x4']:.1f} %"),
    ]
    whole = skip.get("engines_8x8")
    array8 = dense["array_os_8x8"]["cells"]
    if whole:
        rows += [
            row("8x8 engine, 64 x 64 scratchpads (by parts)",
                _cells(whole["engine_os_8x8"]["cells"]),
                lambda d: _cells(whole[f"engine_os_8x8_window{d}"]["cells"])),
            row("8x8 engine ECP5 LUT / FF", "{:,} / {:,}".format(
                whole["engine_os_8x8"]["ecp5_lut"], whole["engine_os_8x8"]["ecp5_ff"]),
                lambda d: "{:,} / {:,}".format(whole[f"engine_os_8x8_window{d}"]["ecp5_lut"],
                                               whole[f"engine_os_8x8_window{d}"]["ecp5_ff"])),
            row("8x8 engine memory bits", _cells(whole["engine_os_8x8"]["memory_bits"]),
                lambda d: _cells(whole[f"engine_os_8x8_window{d}"]["memory_bits"])),
            row(f"skip logic / dense 8x8 array ({_cells(dense['array_os_8x8']['cells'])}), "
                "measured whole (by parts)", "",
                lambda d: f"{100 * overhead[f'window{d}']['fraction_8x8']:.2f} %"),
            row("the same, composed from units (the estimate it replaced)", "",
                lambda d: f"{100 * overhead[f'window{d}']['composed_cells_8x8'] / array8:.2f} %"),
        ]
    return "\n".join([table(("unit", "dense", *(f"d = {d}" for d in windows)), rows), "",
                      _skip_area_source()])


@block("sparsity.by_parts_check")
def by_parts_check_block() -> str:
    """The dense 8x8 array synthesised by parts against its one flat synthesis
    (``skip_area.json`` ``by_parts_check``)."""
    check = results("skip_area")["skip_area"]["by_parts_check"]
    labels = {"cells": "generic cells", "ecp5_lut": "ECP5 LUT", "ecp5_ff": "ECP5 FF",
              "ecp5_dsp": "ECP5 DSP"}
    rows = [(label, _cells(check["flat"][key]), _cells(check["by_parts"][key]),
             f"{100 * check['difference'][key]:+.2f} %") for key, label in labels.items()]
    return "\n".join([table((f"{check['unit']}", "flat", f"by parts ({check['pe_types']} PE "
                                                        "types)", "difference"), rows, "lrrr"),
                      "", _skip_area_source()])


@block("sparsity.mask_area")
def mask_area_block() -> str:
    """Cells of the output-mask logic per window (``skip_area.json`` ``overhead``
    ``mask_window<d>``)."""
    overhead = results("skip_area")["skip_area"]["overhead"]
    rows = []
    for d in sorted(d for d in map(lambda n: _window(n, "mask_window"), overhead)
                    if d is not None):
        m = overhead[f"mask_window{d}"]
        rows.append((d, _cells(m["sequencer_8x8_cells"]), _cells(m["writer_8x8_cells"]),
                     _cells(m["cells_8x8"]), f"{m['ecp5_lut_8x8']:,} / {m['ecp5_ff_8x8']:,}",
                     _cells(m["memory_bits_8x8"]), f"{100 * m['fraction_8x8']:.2f} %",
                     f"{100 * m['with_window_fraction_8x8']:.2f} %"))
    return table(("window", "sequencer + (alone)", "mask writer (alone)",
                  "whole engine +, cells", "ECP5 LUT / FF +", "memory bits +",
                  "of the dense 8x8 array", "with the window's skip logic"), rows, "rrrrrrrr") \
        + "\n\n" + _skip_area_source()


#: the units of scripts.sparsity_area in the order of its UNITS (units not listed follow, by
#: name), and each constructor's parameters in the order of its signature
UNIT_ORDER = ("zero_detect", "zero_detect_index_list", "dropout_mask", "dropout_mask_u4",
              "jump_network")
PARAMETERS = ("lanes", "stages", "index_list", "rows", "cols", "bits", "steps_per_cycle")


def _unit_configuration(name: str, options: dict) -> str:
    from sim.lfsr import WIDTH

    keys = [k for k in PARAMETERS if k in options] + sorted(set(options) - set(PARAMETERS))
    call = ", ".join(f"{key}={options[key]}" for key in keys)
    if name.startswith("zero_detect"):
        return f"`ZeroDetector({call})`"
    if name.startswith("dropout_mask"):
        text = f"`DropoutMaskGenerator({call})`"
        return text if "steps_per_cycle" in options else f"{text} (U = {options['bits']})"
    if name == "jump_network":
        return f"the row-stride jump `J` alone ({WIDTH} bits, combinational)"
    raise KeyError(f"sparsity_area.json: no description of the unit {name!r}")


@block("sparsity.units_area")
def units_area_block() -> str:
    """Yosys area of zero detect and the dropout mask generator (``sparsity_area.json``)."""
    units = results("sparsity_area")["units_area"]
    rows = []
    for name in [n for n in UNIT_ORDER if n in units] + sorted(set(units) - set(UNIT_ORDER)):
        unit = units[name]
        cycles = "" if "tile_cycles" not in unit else \
            f"{unit['tile_cycles']} (+{unit['setup_cycles_per_band']} per band)"
        rows.append((f"`{name}`", _unit_configuration(name, unit["options"]), unit["cells"],
                     unit["ecp5_lut"], unit["ecp5_ff"], cycles))
    return table(("unit", "configuration", "generic cells", "ECP5 LUT", "ECP5 FF",
                  "cycles per tile"), rows, "llrrrr")
