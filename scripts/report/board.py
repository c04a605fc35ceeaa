"""docs/board.md: the board build's bitstreams (``docs/results/board.json``)."""

from scripts.report import block, measured_at, results, table

__all__ = []

#: the resource rows, in this order, with their names on the page
RESOURCES = {"lut": "LUT4 (TRELLIS_COMB)", "ff": "flip-flops", "dsp": "DSP (MULT18X18D)",
             "bram": "block RAM (DP16KD)", "lutram_writers": "distributed-RAM write ports",
             "pll": "PLL (EHXPLLL)", "io": "I/O pins"}


def _builds(data):
    """The bitstream keys, the default build first."""
    return sorted((key for key in data if key.startswith("ulx3s")), key=lambda k: (k != "ulx3s", k))


@block("board.ulx3s")
def board_ulx3s() -> str:
    data = results("board")
    board, where = data["ulx3s"], data["provenance"]["ulx3s"]
    verdict = "met" if board["timing_met"] else "**not met**"
    rows = [(RESOURCES.get(kind, kind), f"{use['used']:,}", f"{use['available']:,}",
             f"{use['used'] / use['available']:.1%}")
            for kind, use in sorted(board["resources"].items(),
                                    key=lambda item: list(RESOURCES).index(item[0])
                                    if item[0] in RESOURCES else len(RESOURCES))]
    builds = []
    for key in _builds(data):
        b = data[key]
        path = b.get("critical_path") or {}
        used = b["resources"]
        builds.append((f"`{key}`", b.get("array", "4x4 OS, S = 0, L = 1 (the PE of the time)"),
                       b["epilogue_stages"], f"{b['clock_mhz']:g}",
                       f"{b['fmax_mhz']:g}", f"{b['slack_ns']:+.2f}",
                       "yes" if b["timing_met"] else "no",
                       f"{used['lut']['used']:,}", f"{used['ff']['used']:,}",
                       f"{used['dsp']['used']:,}", f"{used['bram']['used']:,}",
                       f"`{path.get('from')}` -> `{path.get('to')}` ({path.get('ns')} ns)"
                       if path else "-",
                       measured_at(data["provenance"][key])))
    return "\n".join([
        f"{board['board']}: system clock {board['clock_mhz']:g} MHz from the PLL, achieved "
        f"{board['fmax_mhz']:g} MHz after routing, slack {board['slack_ns']:+.2f} ns: timing "
        f"{verdict} (nextpnr seed {board['seed']}); serial link {board['baud']:,} baud; "
        f"{board['ram_bytes'] // 1024} KiB of on-chip RAM as DRAM; array "
        f"{board.get('array', '4x4 OS, S = 0, L = 1')}; epilogue stages "
        f"{board['epilogue_stages']}."
        + (f" The build took {board['build_seconds']:,} s." if board["build_seconds"] else ""),
        "",
        table(("resource", "used", "available", "share"), rows, "lrrr"),
        "",
        "Every build measured (the default first):",
        "",
        table(("key", "array", "epilogue stages", "clock (MHz)", "Fmax (MHz)", "slack (ns)",
               "met", "LUT4", "FF", "DSP", "BRAM", "critical path (post-route)", "measured"),
              builds, "llrrrrcrrrrll"),
        "",
        f"_From `docs/results/board.json`, measured by `make bitstream` "
        f"(`python -m scripts.bitstream [--epilogue-stages S] [--clock-mhz F]`: YoWASP Yosys `synth_ecp5`, "
        f"nextpnr-ecp5's report, ecppack); the default build {measured_at(where)}._"])
