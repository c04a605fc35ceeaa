"""docs/dse.md: the example design-space sweep (``docs/results/dse.json``, written by
``scripts.dse_bench``)."""

from scripts.report import block, measured_at, results, table

__all__ = []

VIEW_TITLES = {"cycles_vs_lut": ("ECP5 LUT", "ecp5_lut", "cycles", "cycles per step"),
               "energy_vs_accuracy": ("energy per step (pJ)", "energy_pj", "accuracy",
                                      "test accuracy"),
               "traffic_vs_accuracy": ("DRAM bytes per step", "dram_bytes", "accuracy",
                                       "test accuracy")}


def _example() -> tuple[dict, dict]:
    data = results("dse")
    return data["example"], data["provenance"]["example"]


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 1 else f"{value:,.0f}"
    return f"{value:,}"


@block("dse.run")
def run() -> str:
    data = results("dse")
    entry, where = data["example"], data["provenance"]["example"]
    reruns = data["example_reruns"]
    runs = [("cold, 2 workers", entry["cold_2_workers"]),
            ("cold, 1 worker", entry.get("cold_1_worker"))]
    runs += [("rerun after a source change (Verilog unchanged)",
              reruns.get("after_source_change")),
             ("rerun, nothing changed", reruns["from_cache"])]
    rows = [(label, f"{t['wall_s']:,.1f}", f"{t['tasks']:,}", f"{t['computed']:,}",
             f"{t['from_cache']:,}", f"{t['failed_tasks']:,}") for label, t in runs if t]
    kinds = ", ".join(f"{n} {k}" for k, n in entry["tasks_by_kind"].items() if n)
    speedup = entry.get("speedup_2_vs_1_worker")
    equal = entry.get("rows_equal_1_vs_2_workers")
    rerun_note = (f" The reruns ran in {reruns['build_root']} build root "
                  f"({measured_at(data['provenance']['example_reruns'])}); their rows are "
                  f"{'identical to' if reruns['rows_equal'] else 'NOT the same as'} the cold "
                  f"run's.")
    return "\n".join([
        table(("run", "wall time (s)", "tasks", "computed", "from the cache", "failed"), rows),
        "",
        f"`{entry['spec']}`: {entry['configurations']} configurations, {entry['points']} "
        f"points (configurations x numerics, the base included) x "
        f"{len(entry['workloads'])} workloads ({', '.join(entry['workloads'])}); tasks: "
        f"{kinds}. Speed-up of the second worker: "
        f"{f'{speedup:.2f}x' if speedup else 'not measured'} on a machine with "
        f"{entry['machine_cpus']} cores; the rows of the 1-worker and 2-worker runs are "
        f"{'identical' if equal else 'NOT identical' if equal is False else 'not compared'}."
        f"{rerun_note}",
        "",
        f"_From `docs/results/dse.json` (`example`, `example_reruns`), measured by `sparta "
        f"measure dse` (each cold run in an empty build root: elaboration, Yosys and the sweep "
        f"cache all empty); {measured_at(where)}._"])


@block("dse.pareto")
def pareto() -> str:
    data = results("dse")
    answers, where = data["example_pareto"], data["provenance"]["example_pareto"]
    rows = []
    for workload, views in answers["pareto"].items():
        for view, front in views.items():
            x_title, x, y, y_title = VIEW_TITLES[view]
            for place in front:
                rows.append((workload, f"{y_title} vs {x_title}", place["label"],
                             _number(place[x]), _number(place[y])))
    return "\n".join([
        table(("workload", "view", "Pareto-optimal points (equal ones together)", "x", "y"),
              rows, "lllrr"),
        "",
        f"_From `docs/results/dse.json` (`example_pareto`), computed by `sparta measure dse` "
        f"from the rows of the 2-worker run; {measured_at(where)}._"])


@block("dse.configurations")
def configurations() -> str:
    entry, where = _example()
    workloads = entry["workloads"]
    seen, rows = {}, []
    for row in entry["rows"]:
        if row["numerics"] != "fp16" or row["error"]:
            continue
        cell = seen.setdefault(row["point"], {"row": row, "cycles": {}})
        cell["cycles"][row["workload"]] = (row["cycles"], row["utilization"])
    for point in sorted(seen.values(), key=lambda c: (c["row"]["ecp5_lut"], c["row"]["label"])):
        row = point["row"]
        cycles = [f"{point['cycles'][w][0]:,} ({point['cycles'][w][1]:.1%})"
                  if w in point["cycles"] else "-" for w in workloads]
        rows.append((row["label"].split(" / ")[0] + (" (default)" if row["default"] else ""),
                     f"{row['cells']:,}", f"{row['ecp5_lut']:,}", f"{row['ecp5_ff']:,}",
                     f"{row['ecp5_dsp']:,}", f"{row['ecp5_bram']:,}", *cycles))
    failed = [r for r in entry["rows"] if r["error"]]
    return "\n".join([
        table(("configuration", "generic cells", "ECP5 LUT", "ECP5 FF", "ECP5 DSP",
               "ECP5 BRAM", *[f"{w}: cycles per step (utilization)" for w in workloads]), rows),
        "",
        f"{len(failed)} failed rows. _From `docs/results/dse.json` (`example`, `rows`), "
        f"measured by `sparta measure dse`: area from Yosys (whole engine, 64 x 64 memories), "
        f"cycles from the engine's cycle model (equal to the RTL on every command the benches "
        f"run) over one training step's GEMMs, batch 32; {measured_at(where)}._"])


@block("dse.numerics")
def numerics() -> str:
    entry, where = _example()
    seen = {}
    for row in entry["rows"]:
        if row["error"] or row.get("accuracy") is None:
            continue
        seen.setdefault((row["workload"], row["numerics"]), row)
    train = entry["train"]
    rows = [(workload, numerics, f"{row['dram_bytes']:,}", f"{row['energy_pj'] / 1e6:,.1f}",
             f"{row['accuracy']:.4f}",
             f"{train[workload]['epochs']} epoch(s)"
             + (f", {train[workload]['train_samples']} samples"
                if train[workload].get("train_samples") else ", all training samples"))
            for (workload, numerics), row in seen.items()]
    return "\n".join([
        table(("workload", "numerics", "DRAM bytes per step (model)",
               "energy per step (uJ, estimate)", "test accuracy", "training run"), rows,
              "llrrrl"),
        "",
        f"_From `docs/results/dse.json` (`example`, `rows`), measured by `sparta measure dse`: "
        f"the last whole step of the training run priced by `sim.fgmp_traffic` and "
        f"`sim.fgmp_energy`; the same for every array configuration; {measured_at(where)}._"])
