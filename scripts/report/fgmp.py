"""Tables of the FGMP pages: docs/fgmp.md from ``docs/results/fgmp_bench.json``
(``scripts.fgmp_bench``: the trained networks, their variants and the energy table) and
``docs/results/fgmp_gap.json`` (``scripts.fgmp_gap``: why elements of a step stay fp16);
the area table of docs/fgmp_hw.md from ``docs/results/fgmp_area.json`` (``scripts.fgmp_area``)."""

from decimal import ROUND_HALF_UP, Decimal

from scripts.report import block, results, table
from scripts.report import measured_at
from sim.fgmp_control import FgmpPolicy

__all__ = ["fixed", "source", "images"]


def fixed(value: float, places: int, *, scale: int = 0) -> str:
    """``value`` times ``10**scale`` with ``places`` decimals, its decimal form rounded half up
    (a figure recorded as 41.405 reads 41.41, as it would by hand; binary rounding would give
    41.40; ``scale=2`` makes a fraction a percentage without a binary product)."""
    exact = Decimal(repr(value)).scaleb(scale)
    return str(exact.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def source(name: str, keys, command: str) -> str:
    """The line under a generated table: results file, keys, the command that measured them
    (Markdown) and where they were measured."""
    provenance = results(name).get("provenance", {})
    where = "; ".join(dict.fromkeys(measured_at(provenance.get(key)) for key in keys))
    listed = ", ".join(f"`{key}`" for key in keys)
    return f"_From `docs/results/{name}.json` ({listed}), measured by {command}; {where}._"


def images(gap_points: float, test_samples: int) -> str:
    """An accuracy gap in test images, ``(2 images)``; empty for no image."""
    count = round(gap_points * test_samples / 100)
    return "" if count == 0 else f" ({count} image{'s' if abs(count) != 1 else ''})"


# -- docs/fgmp.md: energy table ------------------------------------------------------------------
_ENERGY_ROWS = (("mul_fp16_fp16", "fp16 x fp16 multiply"),
                ("mul_fp8_fp8", "FP8 x FP8 multiply"),
                ("mul_fp8_fp16", "FP8 x fp16 multiply"),
                ("add_fp32", "fp32 add (accumulate, every product)"),
                ("dram_per_byte", "DRAM, per byte"),
                ("sram_per_byte", "SRAM, per byte"))


@block("fgmp.energy_table")
def energy_table() -> str:
    energy = results("fgmp_bench")["model"]["energy_table_pj"]
    rows = [(label, f"{energy[key]:g} pJ") for key, label in _ENERGY_ROWS]
    return "\n".join([table(("operation", "energy"), rows), "",
                      f"Sources: {energy['source']}.", "",
                      source("fgmp_bench", ["model"], "`python -m scripts.fgmp_bench`")])


# -- docs/fgmp.md: the trained networks ----------------------------------------------------------
def _networks(data: dict) -> list[str]:
    """The default entries of fgmp_bench.json: those named after their network."""
    return [key for key, entry in data.items()
            if isinstance(entry, dict) and entry.get("config", {}).get("net") == key]


def _variants(data: dict) -> list[str]:
    return sorted((key for key, entry in data.items() if isinstance(entry, dict)
                   and "config" in entry and entry["config"]["net"] != key),
                  key=lambda key: (key[len(data[key]["config"]["net"]):], key))


def _test_samples(net: str) -> int:
    return results("workloads")["networks"][net]["test_samples"]


def _percent(value: float) -> str:
    return f"{fixed(value, 2)} %"


def _share(part: int, whole: int) -> str:
    return fixed(100 * part / whole, 1)


@block("fgmp.default_policy")
def default_policy() -> str:
    data = results("fgmp_bench")
    nets = _networks(data)
    entries = [data[net] for net in nets]
    samples = {_test_samples(net) for net in nets}

    def row(label, cell):
        return (label, *(cell(entry) for entry in entries))

    def energy(e):
        return (f"{e['energy_pj_fp16'] / 1e6:.4g} / {e['energy_pj_fgmp'] / 1e6:.4g} uJ "
                f"({fixed(e['energy_efficiency_ratio'], 2)}x)")

    def products(e):
        p = e["products"]
        return " / ".join(_share(p[k], p["macs"]) for k in ("fp8_fp8", "fp8_fp16",
                                                             "fp16_fp16")) + " %"

    rows = [
        row("bytes per training step, fp16", lambda e: f"{e['bytes_fp16']:,}"),
        row("bytes per training step, FGMP (last step)", lambda e: f"{e['bytes_fgmp']:,}"),
        row("traffic reduction, last step",
            lambda e: f"**{_percent(e['traffic_reduction_percent'])}**"),
        row("traffic reduction, first step / mean over the sampled steps",
            lambda e: f"{_percent(e['traffic_over_training'][0]['reduction_percent'])} / "
                      f"{_percent(e['traffic_reduction_mean_over_training_percent'])}"),
        row("FP8 share of the elements moved (last step)", lambda e: fixed(e["fp8_share"], 3)),
        row("reduction counting the optimizer's FP32 masters too",
            lambda e: f"{fixed(e['traffic_reduction_with_optimizer_percent'], 1)} %"),
        row(f"test accuracy FGMP / FP32 ({' / '.join(map(str, sorted(samples)))} images)",
            lambda e: f"{fixed(e['test_accuracy_fgmp'], 4)} / {fixed(e['test_accuracy_fp32'], 4)}"),
        row("accuracy gap (FP32 - FGMP)",
            lambda e: f"{fixed(e['accuracy_gap_points'], 2)} points"
                      f"{images(e['accuracy_gap_points'], _test_samples(e['config']['net']))}"),
        row("energy per step fp16 / FGMP (ratio)", energy),
        row("products FP8 x FP8 / FP8 x fp16 / fp16 x fp16", products),
        row("threshold changes by the control", lambda e: len(e["t_decisions"])),
    ]
    return "\n".join([table(("", *nets), rows),
                      "", source("fgmp_bench", nets, "`python -m scripts.fgmp_bench`")])


_BUDGETS = ("budget_weight", "budget_activation", "budget_gradient")


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe(entry: dict, default: dict) -> str:
    """What a variant entry changes against its network's default entry (policy, training
    configuration, stream format, samples), in words. A policy recorded without
    ``flush_underflow`` predates it: nothing flushed."""
    changes = []
    policy, base = entry["policy"], default["policy"]
    flushed = sorted(policy.get("flush_underflow", []))
    if flushed != sorted(base.get("flush_underflow", [])):
        changes.append(f"FP8 underflow stored as zero for {', '.join(flushed)}" if flushed
                       else "FP8 underflow kept as fp16 (no flush)")
    if policy["adaptive"] != base["adaptive"]:
        changes.append("no control, start thresholds" if not policy["adaptive"]
                       else "with the threshold control")
    if policy["adaptive"] and any(policy[key] != base[key] for key in _BUDGETS):
        changes.append("budgets " + " / ".join(_value(policy[key]) for key in _BUDGETS)
                       + " (weights / activations / gradients)")
    for key in sorted(set(policy) - set(_BUDGETS) - {"flush_underflow", "adaptive"}):
        if policy[key] != base.get(key):
            changes.append(f"{key} {_value(policy[key])} instead of {_value(base.get(key))}")
    for part in ("config", "block_format"):
        for key, value in sorted(entry[part].items()):
            if key != "net" and value != default[part].get(key):
                changes.append(f"{key.replace('_', ' ')} {_value(value)} instead of "
                               f"{_value(default[part].get(key))}")
    if entry["train_samples"] != default["train_samples"]:
        changes.append(f"{entry['train_samples']} training samples")
    return "; ".join(changes) or "the default policy"


@block("fgmp.variants")
def variants() -> str:
    data = results("fgmp_bench")
    keys = _variants(data)
    rows = []
    for key in keys:
        entry = data[key]
        default = data.get(entry["config"]["net"])
        rows.append((f"`{key}`", describe(entry, default) if default else "",
                     f"{_percent(entry['traffic_reduction_percent'])} / "
                     f"{_percent(entry['traffic_reduction_mean_over_training_percent'])}",
                     f"{fixed(entry['test_accuracy_fgmp'], 4)} "
                     f"({fixed(entry['accuracy_gap_points'], 2)})",
                     f"{fixed(entry['energy_efficiency_ratio'], 2)}x", len(entry["t_decisions"])))
    return "\n".join([
        table(("entry", "what it changes against the default entry of its network",
               "reduction last / mean", "accuracy FGMP (gap)", "energy ratio", "`t` changes"),
              rows, "llrrrr"),
        "", source("fgmp_bench", keys, "the command in each entry's `reproduce`")])


# -- docs/fgmp.md: the gap analysis --------------------------------------------------------------
_REASONS = {"underflow": "FP8 underflow (value rounds to an FP8 zero)",
            "subnormal_error": "below the FP8 normal range, subnormal errs more than `2**-t`",
            "raised_t": "`t` raised by the control",
            "overflow": "FP8 overflow",
            "nan_inf": "NaN or infinity"}
_CLASSES = {"gradient": "gradients", "activation": "activations", "weight": "weights"}


def _points(value: float) -> str:
    return "0" if value == 0 else fixed(value, 2)


def _gap(net: str) -> dict:
    return results("fgmp_gap")[f"gap_{net}"]


@block("fgmp.gap_reasons")
def gap_reasons(net: str = "resnet18") -> str:
    points = _gap(net)["fp16_elements_moved_points"]
    reasons = [r for r in _REASONS if any(cell.get(r) for cell in points.values())]
    policy = FgmpPolicy()         # the policy scripts.fgmp_gap analyses
    classes = sorted(points, key=lambda cls: -sum(points[cls][r] for r in reasons))
    rows = [(f"{_CLASSES.get(cls, cls)} ({policy.format_of(cls).name})",
             *(_points(points[cls][r]) for r in reasons),
             _points(sum(points[cls][r] for r in reasons))) for cls in classes]
    rows.append(("all", *(_points(sum(points[cls][r] for cls in classes)) for r in reasons),
                 _points(sum(points[cls][r] for cls in classes for r in reasons))))
    return "\n".join([table(("class", *(_REASONS[r] for r in reasons), "total"), rows),
                      "", source("fgmp_gap", [f"gap_{net}"],
                                 f"`python -m scripts.fgmp_gap analyse --net {net} --record`")])


@block("fgmp.gap_raised_t")
def gap_raised_t(net: str = "resnet18") -> str:
    rows = [(f"`{r['layer']}`", r["class"], f"{r['t_start']} -> {r['t']}",
             fixed(r["error_at_start"], 3), fixed(r["error_at_t"], 3), f"{r['budget']:g}")
            for r in _gap(net)["raised_t_check"]]
    return "\n".join([table(("layer", "class", "`t`", "error at the start `t`",
                             "error at the raised `t`", "budget"), rows, "lllrrr"),
                      "", source("fgmp_gap", [f"gap_{net}"],
                                 f"`python -m scripts.fgmp_gap analyse --net {net} --record`")])


@block("fgmp.gap_variants")
def gap_variants(net: str = "resnet18") -> str:
    report = _gap(net)
    priced = report["variants"]
    names = ["as_run"] + sorted((n for n in priced if n != "as_run"),
                                key=lambda n: -priced[n]["reduction_percent"])
    rows = [(f"`{name}`", priced[name]["what"], _percent(priced[name]["reduction_percent"]))
            for name in names if name in priced]
    return "\n".join([table(("variant", "what", f"reduction, step {report['step']}"), rows,
                            "llr"),
                      "", source("fgmp_gap", [f"gap_{net}"],
                                 f"`python -m scripts.fgmp_gap analyse --net {net} --record`")])


# -- docs/fgmp_hw.md: area ----------------------------------------------------------------------
#: the units in the order of ``scripts.fgmp_area.UNITS``, with what each one is
_AREA_UNITS = {"fgmp_packer": "FP32 -> fp16 -> encode -> blocks",
               "fgmp_unpacker": "",
               "fgmp_encoder": "the rule alone, both formats",
               "pe_fp16": "",
               "pe_fgmp": "narrow FP8 x FP8 path",
               "pe_fp8": "reference"}
_AREA_FIELDS = (("cells", "generic cells"), ("memory_bits", "memory bits"),
                ("ecp5_lut", "ECP5 LUT"), ("ecp5_ff", "ECP5 FF"), ("ecp5_dsp", "ECP5 DSP"),
                ("ecp5_lutram", "ECP5 LUT RAM"))


@block("fgmp.area")
def area() -> str:
    section = results("fgmp_area")["area"]
    units, pe_formats = section["units"], section["config"].get("pe_formats", {})
    names = [n for n in _AREA_UNITS if n in units] + sorted(set(units) - set(_AREA_UNITS))
    rows = []
    for name in names:
        what = [f"{section['config'].get('pe', 'PE')}, " + " / ".join(pe_formats[name])
                + " on both sides"] if name in pe_formats else []
        what += [_AREA_UNITS[name]] if _AREA_UNITS.get(name) else []
        rows.append((f"`{name}`" + (f" ({', '.join(what)})" if what else ""),
                     *(units[name][key] for key, _ in _AREA_FIELDS)))
    return "\n".join([table(("unit", *(label for _, label in _AREA_FIELDS)), rows),
                      "", source("fgmp_area", ["area"], "`python -m scripts.fgmp_area`")])


@block("fgmp.engine_area")
def engine_area() -> str:
    """The whole 8x8 engine with FGMP operands against the one with fp16 operands only, both
    synthesised by parts (``fgmp_area.json`` ``area.engines_8x8``)."""
    section = results("fgmp_area")["area"]
    whole, formats = section["engines_8x8"], section["engine_formats"]
    fields = (("cells", "generic cells"), ("ecp5_lut", "ECP5 LUT"), ("ecp5_ff", "ECP5 FF"),
              ("ecp5_dsp", "ECP5 DSP"), ("ecp5_bram", "ECP5 BRAM"),
              ("memory_bits", "memory bits"))
    names = sorted(formats, key=lambda name: len(formats[name]))   # fewest formats first
    rows = [(f"`{name}` (" + " / ".join(formats[name]) + " operands)",
             *(f"{whole[name][key]:,}" for key, _ in fields)) for name in names]
    small, big = whole[names[0]], whole[names[-1]]
    rows.append(("FGMP operands' cost", *(f"{big[key] - small[key]:+,} ("
                                 f"{100 * (big[key] - small[key]) / small[key]:+.1f} %)"
                                 if small[key] else f"{big[key] - small[key]:+,}"
                                 for key, _ in fields)))
    return "\n".join([table(("8x8 engine, 64 x 64 scratchpads, by parts",
                             *(label for _, label in fields)), rows),
                      "", source("fgmp_area", ["area"], "`python -m scripts.fgmp_area`")])
