"""docs/schedule.md: pruning (``docs/results/pruning.json``, written by ``scripts.prune``) and
the schedulers against the lower bound (``docs/results/schedule.json``, written by
``scripts.schedule_bench``)."""

from scripts.report import block, measured_at, results, table

__all__ = []

NETS = ("digits_cnn", "digits_mlp", "resnet18")
METHODS = ("natural", "sorted", "similarity", "similarity_swap", "exact")
UNIT_METHODS = ("natural", "lpt", "kk", "multifit", "exact")


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _present(name: str) -> list[str]:
    data = results(name)
    return [net for net in NETS if net in data]


@block("schedule.pruning")
def pruning() -> str:
    data = results("pruning")
    rows, sources = [], []
    for net in _present("pruning"):
        entry = data[net]
        cells = [net, _percent(entry["test_accuracy_dense"])]
        cells += [f"{_percent(level['test_accuracy_pruned'])} -> "
                  f"{_percent(level['test_accuracy_finetuned'])}"
                  for level in entry["levels"]]
        cells += [f"{entry['config']['epochs']} + {len(entry['levels'])} x "
                  f"{entry['finetune']['epochs']}", f"{entry['wall_time_s']:,.0f}"]
        rows.append(cells)
        sources.append(f"{net}: {measured_at(data['provenance'][net])}")
    levels = [f"{round(100 * level['sparsity'])}%: pruned -> fine-tuned"
              for level in data[_present("pruning")[0]]["levels"]]
    return "\n".join([
        table(["network", "dense"] + levels + ["epochs (dense + levels x fine-tune)",
                                               "wall time (s)"], rows),
        "",
        f"Test accuracy on the {data[_present('pruning')[0]]['test_samples']}-sample test set, "
        f"golden model (`sim.nn` with the accelerator numerics: fp16 operands, FP32 "
        f"accumulation) in training and test; no RTL ran. "
        f"Plot: [pruning.png](pruning.png).",
        "",
        f"_From `docs/results/pruning.json`, measured by `sparta prune --nets NET`; "
        f"{'; '.join(sources)}._"])


def _best_cycles(layer: dict) -> int:
    return layer["methods"][layer["best"]]["cycles"]


@block("schedule.summary")
def summary() -> str:
    data = results("schedule")
    rows, sources = [], []
    for net in _present("schedule"):
        entry = data[net]
        for level in entry["levels"]:
            network = level["network"]
            solver = sum(m["solver_time_s"] for layer in level["layers"]
                         for m in layer["methods"].values())
            proven = sum(layer["ratio_to_bound"] == 1 for layer in level["layers"])
            estimates = [layer.get("ratio_to_lp_estimate") or layer["ratio_to_bound"]
                         for layer in level["layers"]
                         if layer.get("ratio_to_lp_estimate") or layer["ratio_to_bound"] == 1]
            rows.append((net, f"{round(100 * level['sparsity'])}%", len(level["layers"]),
                         proven, f"{level['ratio_to_bound_max']:.3f}",
                         f"{level['ratio_to_bound_mean']:.3f}",
                         f"{max(estimates):.3f} ({len(estimates)})" if estimates else "-",
                         f"{network['inference']['speedup_natural_vs_dense']:.3f}",
                         f"{network['inference']['speedup_vs_dense']:.3f}",
                         f"{network['training_step']['speedup_vs_dense']:.3f}",
                         f"{solver:,.1f}"))
        sources.append(f"{net}: {measured_at(data['provenance'][net])}")
    return "\n".join([
        table(("network", "sparsity", "scheduled GEMMs", "proven optimal", "ratio to bound, max",
               "mean", "ratio to the LP estimate, max (GEMMs)", "inference x, natural order", "inference x, best schedule",
               "training step x, best", "solver time (s)"), rows),
        "",
        "Cycle model (`sim.schedule.grouped_cycles`: the cycles of the step-list engine, "
        "which the benches hold the RTL to; no figure here is from simulation, see "
        "[step_lists.md](step_lists.md) for RTL runs). Scheduled GEMMs: the "
        "forward and backward-data GEMMs of every pruned layer. Ratio to bound: issue slots of "
        "the best scheduler over the largest lower bound (analytic, the exact solver's proven "
        "bound, the LP bound). Ratio to the LP estimate: over the restricted LP's value where "
        "column generation stopped without a proof (the LP optimum unless the greedy pricing "
        "missed a column: an estimate, **not a bound**), over the proven optimum elsewhere; "
        "in brackets, the GEMMs where either exists. x = dense cycles / cycles, over the whole network's GEMMs at "
        "batch 32 (training step: forward, weight gradient dense, backward data). Solver time "
        "is host work, paid once per pruning mask by the compiler.",
        "",
        f"_From `docs/results/schedule.json`, measured by `sparta measure schedule`; "
        f"{'; '.join(sources)}._"])


def _storage(layer: dict) -> str:
    bits = layer["storage_bits"]
    return f"{(bits['b'] + bits['steps'] + bits['tiles']) / bits['dense_b']:.3f}"


@block("schedule.goal")
def goal() -> str:
    data = results("schedule")
    lines = []
    for net in _present("schedule"):
        layers = [layer for level in data[net]["levels"] for layer in level["layers"]]
        ratios = [layer["ratio_to_bound"] for layer in layers]
        proven = sum(r == 1 for r in ratios)
        worst = max(layers, key=lambda layer: layer["ratio_to_bound"])
        estimates = [layer["ratio_to_lp_estimate"] for layer in layers
                     if layer.get("ratio_to_lp_estimate")]
        met = max(ratios) <= 1.05 and sum(ratios) / len(ratios) <= 1.02
        banked = [layer["banked"]["ratio_to_bound"] for layer in layers if "banked" in layer]
        lines.append(
            f"- **{net}** ({len(layers)} GEMMs over the four levels): ratio to the proven "
            f"bound max {max(ratios):.3f} ({worst['layer']} {worst['kind']}, "
            f"{worst['K']}x{worst['N']}), mean {sum(ratios) / len(ratios):.3f}: the goal "
            f"(max <= 1.05, mean <= 1.02) is **{'met' if met else 'not met'}**. "
            f"{proven} GEMMs are proven optimal."
            + (f" Where no proof exists, the best schedule is within "
               f"{max(estimates):.3f}x of the LP estimate (median "
               f"{sorted(estimates)[len(estimates) // 2]:.3f}; not a bound)."
               if estimates else "")
            + (f" Under the bank constraint (what the hardware runs): max "
               f"{max(banked):.3f}, mean {sum(banked) / len(banked):.3f} of the same bound."
               if len(banked) == len(layers) else ""))
    return "\n".join(lines + [
        "",
        "The goal is missed where the proven bound is weak, on the large layers (many filters, "
        "long supports). The exact solver cannot close those instances, and the LP's column "
        "generation stops before it can prove its value. Against the LP estimate the "
        "schedulers land close, which suggests that the gap is mostly in the bound. That is "
        "not a proof: the estimate is not a bound.",
        "",
        "_Generated from `docs/results/schedule.json`._"])


@block("schedule.banked")
def banked() -> str:
    data = results("schedule")
    rows, sources = [], []
    for net in _present("schedule"):
        for level in data[net]["levels"]:
            layers = level["layers"]
            if not all("banked" in layer for layer in layers):
                continue
            network = level["network"]
            extra = [layer["banked"]["ratio_to_unconstrained"] for layer in layers]
            proven = sum(layer["banked"]["slots"] == layer["banked"]["bound_slots"]
                         for layer in layers)
            estimates = [layer["banked"]["ratio_to_lp_estimate"] for layer in layers
                         if layer["banked"].get("ratio_to_lp_estimate")]
            rows.append((net, f"{round(100 * level['sparsity'])}%",
                         f"{level['ratio_to_bound_max']:.3f} / "
                         f"{level['ratio_to_bound_mean']:.3f}",
                         f"{level['banked_ratio_to_bound_max']:.3f} / "
                         f"{level['banked_ratio_to_bound_mean']:.3f}",
                         f"{proven} of {len(layers)}",
                         f"{max(estimates):.3f} ({len(estimates)})" if estimates else "-",
                         f"{min(extra):.3f} / {sum(extra) / len(extra):.3f} / "
                         f"{max(extra):.3f}",
                         f"{network['inference']['speedup_natural_vs_dense']:.3f}",
                         f"{network['inference']['speedup_vs_dense']:.3f}",
                         f"{network['inference']['speedup_banked_vs_dense']:.3f}",
                         f"{network['training_step']['speedup_vs_dense']:.3f}",
                         f"{network['training_step']['speedup_banked_vs_dense']:.3f}"))
        sources.append(f"{net}: {measured_at(data['provenance'][net])}")
    banks = sorted({str(data[net]["acc_banks"]) for net in _present("schedule")
                    if "acc_banks" in data[net]})
    return "\n".join([
        table(("network", "sparsity", "ratio to bound, unconstrained (max / mean)",
               "banked (max / mean)", "banked proven optimal",
               "banked ratio to the LP estimate, max (GEMMs)",
               "banked / unconstrained slots (min / mean / max)", "inference x, natural order",
               "inference x, unconstrained", "inference x, banked",
               "training step x, unconstrained", "training step x, banked"), rows),
        "",
        f"Banked: the best of every scheduler under the bank constraint of the engine "
        f"({' and '.join(banks)} accumulator banks for the 8x8 array: a tile's columns "
        f"pairwise distinct modulo that), the groupings the hardware accepts; unconstrained: "
        f"the best grouping without it (the summary above). Ratio to bound: issue slots over "
        f"the same lower bound for both (a bound of the unconstrained problem bounds the "
        f"constrained one too). Banked proven optimal: GEMMs whose banked best meets the "
        f"constrained problem's own bound (the analytic bounds with their bank terms, the "
        f"exact solver's proof under the constraint). Banked ratio to the LP estimate: over "
        f"the unconstrained problem's LP estimate where one was recorded (**not a bound**, see "
        f"the summary); in brackets, the GEMMs where it exists. Banked / unconstrained: the "
        f"best slots of each, per GEMM; below 1 where the banked search (its bank-by-bank "
        f"reassignment) found a grouping that the unconstrained heuristics missed. x = dense "
        f"cycles / cycles over the whole network "
        "(cycle model, batch 32; natural order respects the banks).",
        "",
        f"_From `docs/results/schedule.json` (`levels[].layers[].banked`), measured by `sparta "
        f"measure schedule`; {'; '.join(sources)}._"])


@block("schedule.layers")
def layers() -> str:
    data = results("schedule")
    parts = []
    for net in _present("schedule"):
        rows = []
        for level in data[net]["levels"]:
            for layer in level["layers"]:
                methods = layer["methods"]
                rows.append([f"{round(100 * level['sparsity'])}%", layer["layer"],
                             layer["kind"].replace("backward_data", "bwd data"),
                             f"{layer['K']}x{layer['N']}",
                             _percent(layer["nonzero_fraction"]),
                             f"{layer['dense_slots']:,}"]
                            + [f"{methods[m]['slots']:,}" if m in methods else "-"
                               for m in METHODS]
                            + [f"{layer['banked']['slots']:,}" if "banked" in layer else "-"]
                            + [f"{layer['bound_slots']:,}", f"{layer['ratio_to_bound']:.3f}",
                               f"{layer['ratio_to_lp_estimate']:.3f}"
                               if layer.get("ratio_to_lp_estimate") else "-",
                               f"{layer['speedup_vs_dense']:.3f}",
                               f"{layer['banked']['speedup_vs_dense']:.3f}"
                               if "banked" in layer else "-",
                               f"{layer['speedup_vs_natural']:.3f}", _storage(layer)])
        body = table(["sparsity", "layer", "GEMM", "B (KxN)", "non-zero", "dense"]
                     + list(METHODS) + ["banked", "bound", "ratio", "ratio to LP estimate",
                                        "x dense", "x dense, banked", "x natural",
                                        "format / dense B"], rows)
        parts.append(f"<details><summary>{net}: issue slots of one row band per scheduler"
                     f"</summary>\n\n{body}\n\n</details>")
    return "\n\n".join(parts + [
        "Slots: `sum over tiles of max(|U|, 2R)` (one band of 8 output rows; the command's "
        "cycles are that times the bands plus the fixed overhead). `-` under exact: more than "
        "`EXACT_MAX_FILTERS` filters, not run. The scheduler columns, bound, ratio and `x "
        "dense`: unconstrained; `banked`: the best slots under the bank constraint (every "
        "scheduler again, what the hardware runs), `x dense, banked` its speedup. Ratio to LP "
        "estimate: not a bound (see the summary). `x dense`, `x natural`: the command's cycles "
        "(cycle model). Format / dense "
        "B: bits of the best grouping's scheduled weight format (`sim.step_lists`: B "
        "compacted to each tile's steps, fp16, plus the step lists and the tile table) over "
        "dense fp16 B.",
        "",
        "_From `docs/results/schedule.json` (`levels[].layers`), measured by `sparta measure "
        "schedule`._"])


@block("schedule.units")
def units() -> str:
    data = results("schedule")
    rows = []
    for net in _present("schedule"):
        for level in data[net]["levels"]:
            for units, label in (("2", "2 engines"), ("4", "4 engines")):
                ratios = {m: [] for m in UNIT_METHODS}
                for layer in level["layers"]:
                    if "units" not in layer:
                        continue
                    for m in UNIT_METHODS:
                        ratios[m].append(layer["units"][units]["ratio_to_bound"][m])
                rows.append([net, f"{round(100 * level['sparsity'])}%", label]
                            + [f"{max(ratios[m]):.3f} / {sum(ratios[m]) / len(ratios[m]):.3f}"
                               for m in UNIT_METHODS])
    return "\n".join([
        table(["network", "sparsity", "units"] + [f"{m} (max / mean)" for m in UNIT_METHODS],
              rows),
        "",
        "Makespan over `max(ceil(sum p / P), max p)` (raised to the exact solver's proven bound) "
        "for the tiles of each pruned layer's forward GEMM (best grouping, every row band), "
        "spread over P engines; max and mean over the layers. Cycle model.",
        "",
        "_From `docs/results/schedule.json` (`levels[].layers[].units`), measured by `sparta "
        "measure schedule`._"])


@block("schedule.transposed")
def transposed() -> str:
    data = results("schedule")
    rows, sources = [], []
    for net in _present("schedule"):
        for level in data[net]["levels"]:
            by_kind = {(layer["layer"], layer["kind"]): layer for layer in level["layers"]}
            network = level["network"]
            if "training_step_transposed" not in network:
                continue
            transposed_step = network["training_step_transposed"]
            for (name, kind), layer in by_kind.items():
                if kind != "backward_data_transposed":
                    continue
                original = by_kind[(name, "backward_data")]
                rows.append((net, f"{round(100 * level['sparsity'])}%", name,
                             f"{original['K']}x{original['N']}",
                             f"{original['dense_cycles']:,}",
                             f"{original['banked']['cycles']:,}",
                             f"{layer['K']}x{layer['N']}", f"{layer['dense_cycles']:,}",
                             f"{layer['banked']['cycles']:,}",
                             f"{original['dense_cycles'] / layer['banked']['cycles']:.2f}",
                             f"{network['training_step']['speedup_banked_vs_dense']:.3f}",
                             f"{transposed_step['speedup_banked_vs_dense']:.3f}"))
        sources.append(f"{net}: {measured_at(data['provenance'][net])}")
    if not rows:
        return "_No results with transposed backward data yet: run `sparta measure schedule`._"
    return "\n".join([
        table(("network", "sparsity", "layer", "backward data K x N", "dense cycles",
               "banked cycles", "transposed K x N", "dense cycles", "banked cycles",
               "x vs dense backward data", "training step x, banked",
               "training step x, banked, transposed"), rows),
        "",
        "Backward data of every pruned stride-1 convolution, lowered as today (`dY . W^T`, "
        "K = C_out, then col2im) and as a transposed convolution (`im2col(dY) . W'`, K = "
        "kernel^2 x C_out, N = C_in; `sim.lowering.transposed_backward_data`), each scheduled "
        "under the bank constraint. Cycle model (no simulation) of the 8x8 output-stationary "
        "engine (`sim.experiments.sparsity.timing_config`), batch 32. x vs dense backward "
        "data: the "
        "original lowering's dense cycles over the transposed GEMM's banked cycles. Training "
        "step x: the whole step's dense cycles (original lowering) over its cycles with the "
        "banked schedules, without and with the transposed backward data. Host reshaping "
        "(col2im of dX's columns today, im2col of dY transposed) is not priced in either.",
        "",
        f"_From `docs/results/schedule.json`, measured by `sparta measure schedule`; "
        f"{'; '.join(sources)}._"])


@block("schedule.transposed_dynamic")
def transposed_dynamic() -> str:
    data = results("transposed")
    rows, totals, rtl, sources = [], [], [], []
    for net, entry in data.items():
        if net == "provenance":
            continue
        for layer, kinds in entry.get("rtl", {}).get("layers", {}).items():
            base = kinds["original"]["rtl_cycles"]
            for kind, run in kinds.items():
                rtl.append((net, layer, kind, f"{run['rtl_cycles']:,}", run["commands"],
                            f"{run['model_cycles']:,}", "yes" if run["equal"] else "**no**",
                            "yes" if run["bit_exact"] else "**no**",
                            f"{base / run['rtl_cycles']:.2f}"))
        for layer, row in entry["layers"].items():
            shape = f"{row['transposed']['M']}x{row['transposed']['N']}x{row['transposed']['K']}"
            kinds = [("original", row["original"]), ("transposed", row["transposed"])]
            kinds += [(f"transposed, rows by {method.replace('_', ' ')} "
                       f"({e['solver_time_s']:.1f} s)", {**e, **row["transposed"],
                                                          "cycles": e["cycles"]})
                      for method, e in row.get("reordered", {}).items() if method != "natural"]
            for kind, e in kinds:
                cycles = e["cycles"]
                dims = f"{e['M']}x{e['N']}x{e['K']}" if kind == "original" else shape
                rows.append((net, layer, kind, dims,
                             f"{cycles['dense']:,}", f"{cycles['la3']:,}",
                             f"{cycles['la3_mask']:,}", f"{cycles['la3_compact_swap']:,}",
                             f"{e['ideal']:,}",
                             f"{row['original']['cycles']['dense'] / cycles['la3']:.2f}"))
        back = entry["backward"]
        for kind in ("original", "transposed", "reordered"):
            if kind not in back:
                continue
            speedups = back[f"speedup_{kind}"]
            totals.append((net, f"step {entry['step']}",
                           "transposed, rows reordered" if kind == "reordered" else kind,
                           f"{back[kind]['dense']:,}" if kind == "original" else "(same)",
                           f"{back[kind]['la3']:,}", f"{speedups['la3']:.3f}",
                           f"{speedups['la3_mask']:.3f}", f"{speedups['la3_compact_swap']:.3f}"))
        sources.append(f"{net}: {measured_at(data['provenance'][net])}")
    return "\n".join([
        table(("network", "layer", "backward data", "M x N x K", "dense", "window d = 3",
               "+ output masks", "+ host compaction, swap", "ideal", "x, window alone"), rows),
        "",
        table(("network", "captured", "backward data lowered", "backward pass, dense",
               "window d = 3", "x, window alone", "x, + output masks",
               "x, + host compaction, swap"), totals),
        "",
        *([table(("network", "layer", "backward data (RTL)", "RTL cycles", "commands",
                  "model cycles", "equal", "bit-exact", "x over original"), rtl),
           "",
           "RTL: both GEMMs of the step on the 8x8 engine with the window d = 3 (no output "
           "masks, no host work) in Verilator, split by `sim.replay.split_gemm` into commands "
           "that fit its 64-wide memories (the commands' overhead is in the cycles); the model "
           "is `sim.skip_timing.engine_cycles` summed over the same commands, the golden "
           "`sim.sparsity.gemm_skip`.", ""] if rtl else []),
        "Cycle model (no simulation) of the 8x8 zero-skipping engine "
        "(`sim.experiments.sparsity.timing_config`; `sim.experiments.skip.measure_gemm`, the "
        "measurement of [skip_measure.md](skip_measure.md)) on the last captured training "
        "step, dense weights, with the operands and masks the step produced. The window's "
        "benches hold the RTL to this model on every command they run. Both lowerings do the "
        "same non-zero MACs and have the same ideal. Rows by a scheduler: the transposed "
        "GEMM's rows reordered into bands of R with similar zero patterns "
        "(`sim.experiments.transposed.row_order`, the tile grouping of `sim.schedule` on A's "
        "rows; a band of fewer rows is padded with zero rows), solver time per step in "
        "brackets (host work, paid every step: the zeros change). x, window alone: the "
        "original lowering's dense cycles over these. The backward pass: weight gradients "
        "and backward data; the transposed rows are composed: the step's other GEMMs as "
        "measured, with the transposed GEMM of each stride-1 convolution in place of its "
        "backward data (with its best row order in the last row), all from the same model; "
        "the speedups are over the original dense pass. Host reshaping "
        "(col2im today, im2col of dY transposed) and the host's compaction and swap (the last "
        "columns) are host work, not priced.",
        "",
        f"_From `docs/results/transposed.json`, measured by `sparta measure transposed`; "
        f"{'; '.join(sources)}._"])
