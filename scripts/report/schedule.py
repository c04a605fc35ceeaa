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
        "Cycle model (`sim.schedule.grouped_cycles`; the sequencer mode that runs these "
        "schedules is not built yet, so no figure here is from the RTL). Scheduled GEMMs: the "
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
        lines.append(
            f"- **{net}** ({len(layers)} GEMMs over the four levels): ratio to the proven "
            f"bound max {max(ratios):.3f} ({worst['layer']} {worst['kind']}, "
            f"{worst['K']}x{worst['N']}), mean {sum(ratios) / len(ratios):.3f}: the goal "
            f"(max <= 1.05, mean <= 1.02) is **{'met' if met else 'not met'}**. "
            f"{proven} GEMMs are proven optimal."
            + (f" Where no proof exists, the best schedule is within "
               f"{max(estimates):.3f}x of the LP estimate (median "
               f"{sorted(estimates)[len(estimates) // 2]:.3f}; not a bound)."
               if estimates else ""))
    return "\n".join(lines + [
        "",
        "The goal is missed where the proven bound is weak, on the large layers (many filters, "
        "long supports). The exact solver cannot close those instances, and the LP's column "
        "generation stops before it can prove its value. Against the LP estimate the "
        "schedulers land close, which suggests that the gap is mostly in the bound. That is "
        "not a proof: the estimate is not a bound.",
        "",
        "_Generated from `docs/results/schedule.json`._"])


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
                            + [f"{layer['bound_slots']:,}", f"{layer['ratio_to_bound']:.3f}",
                               f"{layer['ratio_to_lp_estimate']:.3f}"
                               if layer.get("ratio_to_lp_estimate") else "-",
                               f"{layer['speedup_vs_dense']:.3f}",
                               f"{layer['speedup_vs_natural']:.3f}", _storage(layer)])
        body = table(["sparsity", "layer", "GEMM", "B (KxN)", "non-zero", "dense"]
                     + list(METHODS) + ["bound", "ratio", "ratio to LP estimate", "x dense",
                                        "x natural", "format / dense B"], rows)
        parts.append(f"<details><summary>{net}: issue slots of one row band per scheduler"
                     f"</summary>\n\n{body}\n\n</details>")
    return "\n\n".join(parts + [
        "Slots: `sum over tiles of max(|U|, 2R)` (one band of 8 output rows; the command's "
        "cycles are that times the bands plus the fixed overhead). `-` under exact: more than "
        "`EXACT_MAX_FILTERS` filters, not run. Ratio to LP estimate: not a bound (see the "
        "summary). `x dense`, `x natural`: the command's cycles (cycle model). Format / dense "
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
