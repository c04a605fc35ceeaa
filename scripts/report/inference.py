"""Inference-time approximation: the tables of docs/inference.md.

* ``docs/results/inference.json`` (``scripts.inference_bench``): ``aip`` (per network, per
  subset policy, the point chosen on validation and the test Pareto front) and ``drowsy`` (per
  network, per method and rescaling, the accuracy at each fraction of convolution MACs
  skipped; one engine point per method);
* ``docs/results/aip_area.json`` (``scripts.aip_area``): the AIP selection unit's area.
"""

from __future__ import annotations

from scripts.report import block, measured_at, results, table

__all__ = []


def _ratio(value) -> str:
    return f"x{value:.3f}"


def _pct(value) -> str:
    return f"{100 * value:.2f}"


def _aip():
    return results("inference", missing_ok=True).get("aip")


def _drowsy():
    return results("inference", missing_ok=True).get("drowsy")


def _footer(key: str, what: str) -> str:
    data = results("inference", missing_ok=True)
    return (f"_From `docs/results/inference.json` (`{key}`), measured by `sparta measure "
            f"inference` ({what}); {measured_at(data.get('provenance', {}).get(key))}._")


@block("inference.aip_area")
def aip_area() -> str:
    data = results("aip_area", missing_ok=True)
    if "units_area" not in data:
        return "_Not synthesised yet: run `sparta area aip`._"
    rows = []
    for name, row in data["units_area"].items():
        o = row["options"]
        rows.append((f"`AipSelect(lanes={o['lanes']}, max_len={o['max_len']}, "
                     f"max_n={o['max_n']})`", f"{row['cells']:,}", f"{row['ecp5_lut']:,}",
                     f"{row['ecp5_ff']:,}", row["ecp5_lutram"], row["ecp5_bram"]))
    return "\n".join([
        table(("unit", "generic cells", "ECP5 LUT", "ECP5 FF", "ECP5 LUTRAM (DPR16X4)",
               "ECP5 BRAM"), rows),
        "",
        f"_From `docs/results/aip_area.json`, measured by `sparta area aip` (Yosys: generic "
        f"cells after `synth`, ECP5 cells after `synth_ecp5`); "
        f"{measured_at(data['provenance'].get('units_area'))}._"])


@block("inference.aip")
def aip() -> str:
    entry = _aip()
    if not entry:
        return "_No AIP results yet: run `sparta measure inference --only aip`._"
    rows = []
    for net, network in entry["networks"].items():
        dense = network["dense"]["test"]["accuracy"]
        classes = network["classes"]
        for name, policy in network["policies"].items():
            chosen = policy["chosen"]
            if chosen is None:
                rows.append((net, name, "none within 1 point on validation", "", "", "", "", "",
                             "", "", ""))
                continue
            test, val = chosen["test"], chosen["validation"]
            top_n = "exact" if chosen["top_n"] is None else chosen["top_n"]
            top5 = (f"{_pct(test['accuracy']['top5'])} ({_pct(dense['top5'])})"
                    if classes > 5 else "-")
            rows.append((
                net, name, f"{chosen['alpha']:g}, {top_n}",
                _pct(network["dense"]["validation"]["accuracy"]["top1"]
                     - val["accuracy"]["top1"]),
                f"{_pct(test['accuracy']['top1'])} ({_pct(dense['top1'])})", top5,
                f"{_ratio(test['batch_1']['fc_weight_bytes'])} "
                f"({_ratio(test['batch_32']['fc_weight_bytes'])})",
                f"{_ratio(test['batch_1']['dram_bytes'])} "
                f"({_ratio(test['batch_32']['dram_bytes'])})",
                _ratio(test["batch_1"]["macs"]), _ratio(test["batch_1"]["macs_nonzero"]),
                _ratio(test["batch_1"]["energy_pj"])))
    goal = entry["vgg_goal"]
    vgg = entry["networks"].get("vgg_small", {}).get("policies", {})
    energy = "; ".join(f"`{name}` x{policy['chosen']['test']['batch_1']['energy_pj']:.3f}"
                       for name, policy in vgg.items()
                       if policy["chosen"] and "energy_pj" in policy["chosen"]["test"]["batch_1"])
    met = [name for name, g in goal.items() if g["met"] and not name.endswith("_per_layer")]
    lines = [
        table(("network", "policy", "alpha, top-n", "validation top-1 loss (points)",
               "test top-1 % (dense)", "test top-5 % (dense)",
               "FC weight bytes / dense, batch 1 (batch 32)",
               "DRAM bytes / dense, batch 1 (batch 32)", "MACs / dense", "non-zero MACs / dense",
               "energy / dense (model)"),
              rows, align="lllrrrrrrrr"),
        "",
        "Goal on `vgg_small` (at least 50% less FC weight traffic, at most 1 point of test "
        "top-1 lost, batch 1): "
        + "; ".join(f"`{name}` -{100 * g['fc_traffic_saving']:.1f}% at "
                    f"{g['test_top1_loss_points']:.2f} points ({'met' if g['met'] else 'not met'})"
                    for name, g in goal.items() if not name.endswith("_per_layer"))
        + f". {'Met by ' + ', '.join(met) if met else 'Not met'}. Published AIP point: DRAM "
        f"access energy x{entry['published']['dram_access_energy_ratio']} for "
        f"{entry['published']['top5_loss_points']:g} points of top-5 (VGG-f, ImageNet)"
        + (f"; the chosen `vgg_small` points' energy per inference over dense (model: DRAM, "
           f"SRAM and MAC energy of the per-op table, batch 1): {energy}." if energy else "."),
        "",
        _footer("aip", "model figures: byte and MAC counts of the golden procedure "
                "`sim.aip.aip`, which assume a DMA that fetches only the selected weight rows (not "
                "built: the engine's masked exact pass reads every row), and energy from the "
                "per-op table `sim.fgmp_energy.HOROWITZ_45NM`, "
                "accuracy in the accelerator's numerics; networks trained in FP32; operating "
                "points chosen on the validation rows, test rows only reported")]
    return "\n".join(lines)


@block("inference.drowsy")
def drowsy() -> str:
    entry = _drowsy()
    if not entry:
        return "_No DrowsyNet results yet: run `sparta measure inference --only drowsy`._"
    rows = []
    for net, network in entry["networks"].items():
        dense = network["dense"]["test_accel"]["top1"]
        methods = network["methods"]
        for target in sorted(methods["uniform"]["rescale"], key=float):
            def cell(method):
                scaled = methods[method]["rescale"][target]["test"]["top1"]
                plain = methods[method]["no_rescale"][target]["test"]["top1"]
                return f"{_pct(scaled)} ({_pct(plain)})"
            removal = methods["channel_removal"][target]
            thresholds = network["chosen_thresholds"][target]
            if len(thresholds) > 4:      # a deep network: the range (every layer in the JSON)
                chosen = (f"{len(thresholds)} convolutions, {min(thresholds.values())} to "
                          f"{max(thresholds.values())}")
            else:
                chosen = ", ".join(f"{layer} {t}" for layer, t in thresholds.items())
            rows.append((f"{net} ({_pct(dense)})", f"{100 * float(target):g}%",
                         cell("uniform"), cell("chosen"), _pct(removal["test"]["top1"]),
                         chosen))
    lines = [table(("network (dense test top-1 %)", "conv MACs skipped",
                    "uniform rates: top-1 % rescaled (not rescaled)",
                    "chosen rates: top-1 % rescaled (not rescaled)",
                    "whole channels removed: top-1 %", "chosen thresholds (of 256)"), rows,
                   align="lrrrrl"), ""]
    for net, network in entry["networks"].items():
        goal = network["goal"]
        lines.append(
            f"- `{net}`: at {100 * goal['skip']:g}% of conv MACs skipped the chosen rates "
            f"({goal['chosen_rescaling'].replace('_', ' ')}) lose "
            f"{goal['chosen_test_top1_loss_points']:.2f} points of test top-1: goal "
            f"{'met' if goal['met_skip_at_loss'] else 'not met'}; chosen better than uniform "
            f"at every measured saving: {'yes' if goal['chosen_better_everywhere'] else 'no'}.")
    lines += ["", _footer("drowsy", "accuracy in the accelerator's numerics on the test rows, "
                          "mean over the mask seeds; rates chosen on the validation rows in FP32 "
                          "numerics; networks trained in FP32")]
    return "\n".join(lines)


@block("inference.drowsy_engine")
def drowsy_engine() -> str:
    entry = _drowsy()
    if not entry:
        return "_No DrowsyNet results yet: run `sparta measure inference --only drowsy`._"
    rows = []
    for net, network in entry["networks"].items():
        point = network["engine_point"]
        for method in ("dense", "uniform", "chosen", "channel_removal"):
            p = point[method]
            c = p["cycles"]
            rows.append((net, method.replace("_", " "), f"{c['dense']:,}", f"{c['window']:,}",
                         f"{c['window_mask']:,}", f"{c['mask_write']:,}",
                         f"{c['window_compact']:,}",
                         f"{100 * p['energy_saved_vs_dense_zero_gated']:.1f}%",
                         f"{100 * p['energy_saved_if_masks_gated']:.1f}%"
                         if "energy_saved_if_masks_gated" in p else "-"))
        batch, skip = point["batch"], point["skip"]
    return "\n".join([
        table(("network", "method", "dense engine", "window-4 engine, no mask",
               "window-4 engine, output mask", "dropout plane writes",
               "window-4, dropped rows and channels compacted by the host",
               "conv MAC energy saved (vs zero-gated dense), window-4 engine with the mask, "
               "as built",
               "the same if the PEs also gated masked outputs (not built)"),
              rows, align="llrrrrrrr"),
        "",
        f"Cycles of the convolutions' forward GEMMs for one batch of {batch} test images at "
        f"{100 * skip:g}% of conv MACs skipped: cycle model (`sim.skip_timing.engine_cycles`, "
        f"8x8 output-stationary engine; the RTL holds to it, `tb/test_drowsy.py`); energy: model "
        f"(per-op table, conv forward MACs and the rescaling multiplies, no memory traffic) of "
        f"the products the PEs compute (`sim.skip_timing.computed_products`, which the RTL's "
        f"`products` count equals on every bench command): a PE computes the products of a "
        f"masked output whose tile row still has a kept one; the last column prices only the "
        f"non-zero products of kept outputs. The compacted column is an estimate of host work "
        f"that is not priced.",
        "",
        _footer("drowsy", "cycle and energy models")])


@block("inference.rtl")
def rtl() -> str:
    data = results("inference", missing_ok=True)
    entry = data.get("rtl")
    if not entry:
        return "_No RTL runs recorded yet: run `sparta measure inference --only rtl`._"
    aip_runs, d = entry["aip"], entry["drowsy"]
    rows = []
    for policy, run in aip_runs["policies"].items():
        for layer, row in run["layers"].items():
            c, model = row["rtl_cycles"], row["model_cycles"]
            mode = row["mode"] if row["top_n"] is None else f"{row['mode']} {row['top_n']}"
            rows.append((f"AIP `{policy}`", f"{layer} ({mode})",
                         f"{row['m']}x{row['n']}x{row['k']} (approximate K {row['k_approx']})",
                         f"{c['approx']:,} / {model['approx']:,}", f"{c['select']:,}",
                         f"{c['exact']:,} / {model['exact']:,}",
                         f"{row['dense_window_cycles']:,}", f"{row['dense_cycles']:,}",
                         f"{row['kept']}/{row['total']}",
                         "yes" if row["bit_exact"] else "NO"))
    rows.append(("DrowsyNet", f"{d['layer']} (threshold {d['threshold']}/256)",
                 f"{d['m']}x{d['n']}x{d['k']}", "-", "-",
                 f"{d['rtl_cycles']:,} / {d['model_cycles']:,}", "-", "-",
                 f"{d['total'] - d['dropped']}/{d['total']}", "yes" if d["bit_exact"] else "NO"))
    return "\n".join([
        table(("technique", "layer", "M x N x K", "approximate pass: RTL / model cycles",
               "selection: RTL cycles (the bench idles its ports at random)", "exact (masked) pass: RTL / model cycles",
               "exact pass unmasked, same engine (model)", "dense engine (model)",
               "outputs kept", "bit-exact"), rows, align="llllrrrrrl"),
        "",
        f"AIP: {aip_runs['network']}, {aip_runs['samples']} test digits, "
        f"{aip_runs['thresholds']}; DrowsyNet: {d['network']}. Engines: "
        f"{aip_runs['engine']['array']['rows']}x{aip_runs['engine']['array']['cols']} with a "
        f"lookahead window of {aip_runs['engine']['array']['skip_window']} and output masks; "
        f"simulator {aip_runs['simulator']}.",
        "",
        f"_From `docs/results/inference.json` (`rtl`), measured by `sparta measure inference "
        f"--only rtl` (RTL cycles from the benches, which fail unless every result word is the "
        f"golden model's and the cycles equal the cycle model); "
        f"{measured_at(data.get('provenance', {}).get('rtl'))}._"])


@block("inference.drowsy_accel")
def drowsy_accel() -> str:
    """DrowsyNet's inference program on the accelerator's RTL beside the plain one."""
    data = results("accel", missing_ok=True)
    step = data.get("digits_cnn_drowsy")
    if step is None or "drowsy_inference" not in step.get("programs", {}):
        return "_Not measured yet: `python -m scripts.accel_bench --only digits_cnn_drowsy`._"
    rows = []
    for kind, label in (("inference", "plain inference program"),
                        ("drowsy_inference", "DrowsyNet's program")):
        p = step["programs"][kind]
        computed = p["products"] - p["products_skipped"]
        rows.append((label, f"{p['instructions']:,}", f"{p['cycles']:,}",
                     f"{p['engine_cycles']:,}", f"{p['products']:,}",
                     f"{p['products_skipped']:,}", f"{computed:,}",
                     f"{p['bytes_read']:,}", f"{p['bytes_written']:,}"))
    plain, masked = (step["programs"][k] for k in ("inference", "drowsy_inference"))
    computed = {name: p["products"] - p["products_skipped"]
                for name, p in (("plain", plain), ("masked", masked))}
    plan = step["drowsy"]
    thresholds = ", ".join(f"{name} {t}/256" for name, t in plan["thresholds"].items())
    return "\n".join([
        table(("program", "instructions", "cycles (RTL)", "engine alone (cycle model)",
               "products (M x N x K)", "products skipped (RTL counter)", "products computed",
               "bytes read (bus)", "bytes written (bus)"), rows, "lrrrrrrrr"),
        "",
        f"The same batch of {step['batch']} digits on the same engine after the same "
        f"{step['steps']} training steps ({step['variant']}); plan: {thresholds}, "
        f"{'with' if plan['rescale'] else 'without'} rescaling, seed {plan['seed']}. "
        f"DrowsyNet's program takes {masked['cycles'] / plain['cycles']:.3f}x the cycles and "
        f"computes {computed['masked'] / computed['plain']:.3f}x the products of the plain "
        f"one; both bit-exact against the golden model.",
        "",
        *_drowsy_sections(step),
        f"_From `docs/results/accel.json` (`digits_cnn_drowsy`), measured by `python -m "
        f"scripts.accel_bench --only digits_cnn_drowsy` (RTL on Verilator; the products "
        f"counted by the RTL; the layer table: the golden model, as it says); "
        f"{measured_at(data['provenance'].get('digits_cnn_drowsy'))}._"])


def _drowsy_sections(step: dict) -> list:
    """The layer-by-layer products of both programs (a model figure), as table lines."""
    sections = step.get("drowsy_sections_model")
    if not sections:
        return []
    rows = []
    for plain, masked in zip(sections["plain"], sections["drowsy"]):
        computed = [r["products"] - r["products_skipped"] for r in (plain, masked)]
        rows.append((f"`{plain['section']}`", f"{plain['products']:,}", f"{computed[0]:,}",
                     f"{computed[1]:,}",
                     f"{computed[1] / computed[0]:.3f}" if computed[0] else "-"))
    return [f"Layer by layer ({sections['source']}):", "",
            table(("section", "products (M x N x K)", "computed, plain program",
                   "computed, DrowsyNet's program", "ratio"), rows, "lrrrr"), ""]
