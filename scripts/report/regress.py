"""docs/regress.md: the long random regression (``docs/results/regress.json``, written by
``scripts.regress``: ``make regress``).

The blocks show the full run (key ``full``); before there is one, the last partial run
(``partial``, recorded with ``sparta regress --write``) under a heading that says so; before
either, that the regression has not been run."""

import functools
import shlex

from scripts.report import block, measured_at, results, table
from scripts.report.fp import UNIT_ORDER, _ordered

__all__ = []

NOT_RUN = ("_Not run yet: `make regress` (`sparta regress`) writes "
           "`docs/results/regress.json`, and `sparta report` this table from it._")
#: targets of issue 21: vectors per FP unit and simulator; commands per engine configuration,
#: over both simulators, each of which runs it (tb/conftest.py: 10,000 on Verilator, 10,000 /
#: PEs on Icarus)
TARGET_VECTORS = 1_000_000


def target_unit(name: str) -> str:
    """The unit whose 10^6 vectors a toplevel of ``scripts.fp_units.unit_of_record`` counts
    towards: the multiplier's configurations together, the converter's four formats together
    (``tb.conftest.unit_vectors`` shares a unit's vectors among its configurations)."""
    if name.startswith("fp_mul"):
        return "fp_mul"
    if name.startswith("fp32_to_"):
        return "fp32_converter"
    return name
TARGET_COMMANDS = 10_000
SIMULATORS = ("icarus", "verilator")
SLOWEST = 12


def _run():
    """``(key, entry, provenance)`` of the run the page shows, or ``None``."""
    data = results("regress", missing_ok=True)
    for key in ("full", "partial"):
        if key in data:
            return key, data[key], data.get("provenance", {}).get(key)
    return None


def _of_run(render):
    """A block of the run the page shows: ``render(key, entry, provenance)``, or
    :data:`NOT_RUN` before any run."""
    @functools.wraps(render)
    def block_text() -> str:
        run = _run()
        return NOT_RUN if run is None else render(*run)
    return block_text


def _label(key: str, entry: dict, where) -> str:
    what = (f"_From `docs/results/regress.json` (`{key}`), run by `sparta regress` "
            f"({measured_at(where)}, {where.get('cpus', '?') if where else '?'} CPUs)")
    if key == "partial":
        return (what + ". **A partial run** (" + "; ".join(entry["partial_because"]) + "), "
                "not the full regression: no full run is recorded yet._")
    return what + "._"


def _count(value) -> str:
    return "not recorded by any bench" if value is None else f"{value:,}"


@block("regress.summary")
@_of_run
def summary(key: str, entry: dict, where) -> str:
    tests, totals = entry["tests"], entry["totals"]
    rows = [
        ("seed (`SPARTA_SEED`)", entry["seed"]),
        ("vectors per unit and simulator (`SPARTA_VECTORS`)", f"{entry['vectors']:,}"),
        ("pytest-xdist workers", entry["jobs"]),
        ("selection (pytest arguments)", f"`{shlex.join(entry['selection'])}`"),
        ("wall time", f"{entry['wall_s']:,.0f} s ({entry['wall_s'] / 3600:.2f} h)"),
        ("tests passed / failed / error / skipped",
         " / ".join(f"{tests[k]:,}" for k in ("passed", "failed", "error", "skipped"))),
        ("wrong answers (tests failed or in error)", entry["wrong_answers"]),
        ("hangs (tests a watchdog stopped)", _count(totals["hangs"])),
        ("faults injected (accelerator programs run with a SLVERR range)",
         _count(totals["faults"])),
        ("soft resets", _count(totals["soft_resets"])),
        ("accelerator programs run (`programs` + one per `program` line)",
         f"{(totals['programs'] or 0) + totals['program_records']:,}"),
        ("seeds the benches ran with", ", ".join(map(str, entry["seeds"])) or "none recorded"),
    ]
    lines = [table(("", "value"), rows, "lr")]
    if entry["failures"]:
        lines += ["", "Failures, each with the command that reruns it alone:", ""]
        lines += [f"- `{f['nodeid']}` ({f['outcome']}): `{f['reproduce']}`"
                  for f in entry["failures"]]
    slowest = sorted(entry["per_test"], key=lambda t: -t["seconds"])[:SLOWEST]
    lines += ["", f"The {len(slowest)} slowest tests (setup + call + teardown, one worker):", "",
              table(("test", "outcome", "seconds"),
                    [(f"`{t['nodeid']}`", t["outcome"], f"{t['seconds']:,.1f}")
                     for t in slowest], "llr"),
              "", _label(key, entry, where)]
    return "\n".join(lines)


@block("regress.coverage")
@_of_run
def coverage(key: str, entry: dict, where) -> str:
    vectors = entry["vectors_checked"]

    def meets(counts: dict, target: int) -> str:
        return "yes" if all(counts.get(sim, 0) >= target for sim in SIMULATORS) else "no"

    groups: dict[str, list[str]] = {}       # the target's unit -> its toplevels (variants)
    for name in _ordered(vectors, UNIT_ORDER):
        groups.setdefault(target_unit(name), []).append(name)
    unit_rows = []
    for unit, names in groups.items():
        counts = {sim: sum(vectors[name].get(sim, 0) for name in names) for sim in SIMULATORS}
        unit_rows.append((f"`{unit}`", ", ".join(f"`{name}`" for name in names),
                          *(f"{counts[sim]:,}" for sim in SIMULATORS),
                          meets(counts, TARGET_VECTORS)))
    engine_rows = []
    for config, sims in sorted(entry["engine_commands"].items()):
        random = {sim: sims.get(sim, {}).get("commands", 0) for sim in SIMULATORS}
        scheduled = {sim: sims.get(sim, {}).get("scheduled", 0) + sims.get(sim, {}).get("dense", 0)
                     for sim in SIMULATORS}
        ran = [random[sim] + scheduled[sim] for sim in SIMULATORS]
        engine_rows.append((f"`{config}`", *(f"{random[sim]:,}" for sim in SIMULATORS),
                            *(f"{scheduled[sim]:,}" for sim in SIMULATORS),
                            "yes" if min(ran) > 0 and sum(ran) >= TARGET_COMMANDS else "no"))
    return "\n".join([
        f"Vectors checked per unit and simulator (target {TARGET_VECTORS:,} on each; a unit's "
        f"configurations, reported apart as toplevels, share it):",
        "",
        table(("unit", "toplevels", "Icarus", "Verilator", "target met"), unit_rows, "llrrl")
        if unit_rows else "_No bench recorded vectors._",
        "",
        f"Commands per engine configuration of `tb/engines.py` and simulator (target "
        f"{TARGET_COMMANDS:,} per configuration over both simulators, each of which runs it: "
        f"Verilator runs nearly all of them, Icarus a few, `tb/conftest.py`): random engine "
        f"commands of `tb/engine_tb.py` (good and bad; its bad host accesses and bad dropout "
        f"mask commands come on top, in `regress.json`), and scheduled plus dense commands of "
        f"the step-list bench:",
        "",
        table(("configuration", "random, Icarus", "random, Verilator", "step lists, Icarus",
               "step lists, Verilator", "target met"), engine_rows, "lrrrrl")
        if engine_rows else "_No engine bench ran._",
        "",
        _label(key, entry, where)])


@block("regress.formal")
@_of_run
def formal(key: str, entry: dict, where) -> str:
    rows = []
    for harness, summary in entry["formal"].items():
        for mode, task in summary["tasks"].items():
            rows.append((f"`{harness}`", mode, task["depth"], task["verdict"],
                         f"{task['seconds']:,.1f}", ""))
        rows.append((f"`{harness}`", "mutants", "", "", "",
                     f"{summary['mutants_caught']} of {summary['mutants']}"))
    if not rows:
        return "_No formal results (`sparta formal` writes `docs/results/formal.json`)._"
    dates = sorted({s["measured"]["date"] for s in entry["formal"].values()
                    if s["measured"].get("date")})
    return "\n".join([
        table(("harness", "task", "depth (steps)", "verdict", "seconds", "mutants caught"),
              rows, "llrlrr"),
        "",
        f"Copied into the regression's results from `docs/results/formal.json` (`sparta "
        f"formal`, measured {dates[0] if dates else '?'}"
        f"{f' to {dates[-1]}' if len(dates) > 1 else ''}); `tb/test_formal.py` reruns the same "
        f"checks in the regression (cached by RTLIL, task and tool versions).",
        "",
        _label(key, entry, where)])


@block("regress.fuzz")
@_of_run
def fuzz(key: str, entry: dict, where) -> str:
    if "fuzz" not in entry:
        return ("_This run's results have no per-configuration breakdown of the fuzzer (recorded "
                "from the next run of `sparta regress` on); its programs, faults and soft resets "
                "are in the summary above._\n\n" + _label(key, entry, where))
    runs = entry["fuzz"]
    if not runs:
        return "_The accelerator fuzzer did not run in this regression._\n\n" + \
            _label(key, entry, where)
    names = ("programs", "instructions", "spoiled", "soft_resets", "faults", "resyncs")
    rows = []
    for config, sims in sorted(runs.items()):
        for sim, counts in sorted(sims.items()):
            endings = ", ".join(f"{name.removeprefix('endings.')} {n:,}"
                                for name, n in sorted(counts.items())
                                if name.startswith("endings."))
            refused = ", ".join(f"{name.removeprefix('beats_refused.')} {n:,}"
                                for name, n in sorted(counts.items())
                                if name.startswith("beats_refused."))
            rows.append((config, sim, *(f"{counts.get(n, 0):,}" for n in names),
                         refused, endings, f"{counts.get('cycles', 0):,}"))
    return "\n".join([
        table(("configuration", "simulator", "programs", "instructions", "spoiled",
               "soft resets", "SLVERR ranges", "resyncs", "beats refused", "programs ended by",
               "cycles"), rows, "llrrrrrrllr"),
        "",
        "Every program was compared with the golden model (status, error index, counters, the "
        "whole DRAM) and checked for DRAM written outside its STOREs; a hang, a wrong answer "
        "or a lost byte fails the test (the regression's failures above).",
        "",
        _label(key, entry, where)])
