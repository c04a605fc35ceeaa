"""docs/formal.md: the formal checks (``docs/results/formal.json``, written by
``scripts.formal``)."""

from scripts.report import block, measured_at, results, table

__all__ = []


@block("formal.results")
def formal_results() -> str:
    data = results("formal")
    rows = []
    for name, entry in data.items():
        if name in ("provenance", "tools"):
            continue
        for mode, task in entry["tasks"].items():
            rows.append((name, mode, task["depth"], task["verdict"], f"{task['seconds']:.1f}"))
        for mutant, task in entry["mutants"].items():
            rows.append((name, f"mutant `{mutant}` ({task['mode']})", task["depth"],
                         task["verdict"] + (" (caught)" if task["verdict"] == "FAIL" else ""),
                         f"{task['seconds']:.1f}"))
    tools = ", ".join(f"{k} {v}" for k, v in data["tools"].items())
    sources = "; ".join(f"{name}: {measured_at(where)}"
                        for name, where in data["provenance"].items() if name != "tools")
    return "\n".join([
        table(("harness", "task", "depth (steps)", "verdict", "wall time (s)"), rows),
        "",
        f"SymbiYosys, engine `smtbmc boolector`, one job; {tools}. `bmc`: every assertion "
        f"holds in every trace of up to the depth, from the initial state, with a reset "
        f"allowed in any cycle; `cover`: every cover statement is reached within the depth; a "
        f"mutant must FAIL.",
        "",
        f"_From `docs/results/formal.json`, measured by `sparta formal`; {sources}._"])
