"""Cycles of the zero-skipping design the RTL implements (issue 5, item 8), on captured training
steps.

The hardware is one design family: the 8 x 8 output-stationary engine with a lookahead window of
``d`` steps on side a (each array row picks its own next non-zero step, the B rows of the whole
window flow down the columns, the window advances up to ``d`` steps per cycle; ``d = 1`` is the
dense engine): ``SkipOption(schedule="lookahead", depth=d, fetch=d, side="a")`` of
:mod:`sim.skip_model`, applied with ``out_keep=None``, or, for the ``_mask`` variants (the
engine's output masks, ``EngineConfig(output_mask=True)``), with the backward-data command's
forward mask. Its cycles are :func:`sim.skip_timing.engine_cycles` (that window schedule plus
the flag-read latency), which the RTL benches assert equal. The host adds two
things that need no hardware: lane compaction (:func:`sim.skip_model.compact`; a command
compacted away costs 0 engine cycles) and the operand swap of the weight gradient (``dW^T =
dY^T . X_col``).

The GEMM commands are rebuilt from the captures exactly as in ``scripts/sparsity_study.py``
(:func:`scripts.sparsity_study.capture_gemms`); every capture but step 0 is measured and the last
captured step of each network is the headline. The dense variant is asserted equal to
``sim.engine_model.command_cycles`` for every command.

Records into ``docs/results/skip_measure.json`` the ``measurement`` section, the per-network
headline keys (``digits_cnn``, ``resnet18``; their ``skip_area_overhead`` from
``docs/results/skip_area.json``, :mod:`scripts.skip_area`) and ``setup`` (the variants, timing
constants, targets and default the page states); other keys are kept. Then writes
``docs/skip_measure.png`` and has ``sparta report`` write ``docs/skip_measure.md``
(:mod:`scripts.report.sparsity`). ``--report-only`` measures nothing: it rewrites the headline
keys and ``setup`` from the recorded measurement (after a new ``scripts.skip_area``), the plot
and the page.

Usage: python -m scripts.skip_measure [--nets digits_cnn,resnet18] [--steps 405,899]
       [--capture-dir ~/.cache/sparta/captures] [--default la4_compact_swap] [--no-write]
       [--report-only]
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from scripts.progress import track  # noqa: E402
from scripts.results import DOCS_DIR, load, record  # noqa: E402
from scripts.sparsity_study import (COLS, ROWS, WIDTH, add_capture_arguments,  # noqa: E402
                                    find_captures, gemm_statistics, sparse_commands,
                                    timing_config)
from sim import engine_model  # noqa: E402
from sim.nn import build_network  # noqa: E402
from sim.skip_timing import (engine_cycles, lookahead_latency, window_option,  # noqa: E402
                             with_window)
from sim.skip_model import SkipOption, SparseGemm, compact  # noqa: E402

BACKWARD_KINDS = ("weight_grad", "backward_data")
DEPTHS = (2, 3, 4)
#: Target of the backward speedup on the digits CNN, and of the fraction of the ideal.
TARGET_SPEEDUP = 1.5
TARGET_OF_IDEAL = 0.8
#: Fields of a network's headline entry in ``skip_measure.json`` (besides ``layers``).
HEADLINE_FIELDS = ("backward_cycles_dense", "backward_cycles_skip", "backward_cycles_ideal",
                   "step_cycles_dense", "step_cycles_skip", "backward_speedup", "step_speedup",
                   "backward_of_ideal", "design", "window", "step", "skip_area_overhead")


@dataclasses.dataclass(frozen=True)
class Variant:
    """The hardware window depth plus what the host does before issuing each command.

    Parameters
    ----------
    name : str
    depth : int
        Lookahead window ``d`` of the engine (1: dense engine).
    compact : bool
        Host lane compaction (:func:`sim.skip_model.compact`).
    swap_weight_grad : bool
        Weight gradients issued as ``dW^T = dY^T . X_col`` (the array rows choose by the zeros
        of ``dY``).
    mask : bool
        The engine's output masks (``EngineConfig(output_mask=True)``): a backward-data command
        reads its forward mask (after compaction, the mask of the kept lanes), and the window
        skips the rows and columns of a tile whose outputs are all masked.
    """

    name: str
    depth: int = 1
    compact: bool = False
    swap_weight_grad: bool = False
    mask: bool = False

    @property
    def option(self) -> SkipOption:
        """The engine's window schedule (:func:`sim.skip_timing.window_option`)."""
        return window_option(self.depth)

    @property
    def summary(self) -> str:
        parts = ["dense engine" if self.depth == 1 else f"window d={self.depth}"]
        if self.compact:
            parts.append("lane compaction")
        if self.swap_weight_grad:
            parts.append("weight-gradient swap")
        if self.mask:
            parts.append("output masks")
        return " + ".join(parts)


VARIANTS = (Variant("dense"), Variant("compact", compact=True),
            *(v for d in DEPTHS for v in (
                Variant(f"la{d}", depth=d),
                Variant(f"la{d}_mask", depth=d, mask=True),
                Variant(f"la{d}_compact", depth=d, compact=True),
                Variant(f"la{d}_compact_swap", depth=d, compact=True, swap_weight_grad=True),
                Variant(f"la{d}_compact_swap_mask", depth=d, compact=True,
                        swap_weight_grad=True, mask=True))))
VARIANT_NAMES = tuple(v.name for v in VARIANTS)
#: The design whose numbers go to the headline keys of ``skip_measure.json`` when the area of the
#: windows is not known yet (otherwise :func:`choose_default` picks it).
DEFAULT = "la4_compact_swap"
#: Skip-logic area budget, a fraction of the dense 8x8 array's cells (issue 5).
AREA_BUDGET = 0.10


def area_fraction(skip_area, design: str):
    """The 8x8 skip-logic area of ``design`` as a fraction of the dense 8x8 array (window, plus
    the output-mask logic for a ``_mask`` design), or None when it has not been
    synthesised; 0 for the dense engine."""
    variant = VARIANTS[VARIANT_NAMES.index(design)]
    if variant.depth == 1:
        return 0.0
    overhead = (skip_area or {}).get("overhead", {})
    if variant.mask:
        entry = overhead.get(f"mask_window{variant.depth}")
        return None if entry is None else entry["with_window_fraction_8x8"]
    entry = overhead.get(f"window{variant.depth}")
    return None if entry is None else entry["fraction_8x8"]


def choose_default(networks, skip_area=None) -> str:
    """The default design: of ``la<d>_compact_swap`` and ``la<d>_compact_swap_mask``, the one
    with the largest mean backward speedup (last captured step, over the networks) among those
    whose measured 8x8 skip-logic area (:func:`area_fraction`) is within
    :data:`AREA_BUDGET`; :data:`DEFAULT` when none's area is known."""
    candidates = [name for d in DEPTHS for name in (f"la{d}_compact_swap",
                                                    f"la{d}_compact_swap_mask")]
    fits = [name for name in candidates
            if (area_fraction(skip_area, name) or AREA_BUDGET + 1) <= AREA_BUDGET]
    if not fits:
        return DEFAULT

    def mean_speedup(name):
        return sum(speedup(result["steps"][-1]["totals"]["backward"], name)
                   for result in networks.values()) / len(networks)

    return max(fits, key=mean_speedup)


def stored(config, gemm: SparseGemm):
    """The engine command of ``gemm`` with its operands laid out (transposed or not) so that
    they fit the memories of ``config`` (the host chooses; the cycles do not depend on it)."""
    for a_transpose in (False, True):
        for b_transpose in (False, True):
            command = gemm.command(a_transpose=a_transpose, b_transpose=b_transpose)
            if engine_model.validate(config, command) is engine_model.EngineError.NONE:
                return command
    raise AssertionError(f"a {gemm.shape} GEMM does not fit the timing configuration")


def issued(gemm: SparseGemm, kind: str, swap_weight_grad: bool) -> SparseGemm:
    """The GEMM as the host issues it: a weight gradient with its operands exchanged when
    ``swap_weight_grad`` (``C^T = B^T A^T``), anything else unchanged; ``out_keep`` kept (the
    host's compaction reads it)."""
    if not (swap_weight_grad and kind == "weight_grad"):
        return gemm
    keep = None if gemm.out_keep is None else gemm.out_keep.T
    return SparseGemm(a_nonzero=gemm.b_nonzero.T, b_nonzero=gemm.a_nonzero.T, out_keep=keep,
                      accumulate=gemm.accumulate)


def measure_gemm(config, gemm: SparseGemm, kind: str, *, a_transpose: bool = False,
                 b_transpose: bool = False, variants=VARIANTS) -> dict:
    """Cycles of one command under every variant, plus its shape, measured sparsity, ideal
    (``sim.skip_model.ideal_cycles`` with the real ``out_keep``) and tile bound.

    Without ``mask`` the engine gets no output mask: a variant without compaction runs
    ``gemm`` with ``out_keep=None``; with compaction, the host drops lanes using ``out_keep``
    and the engine runs the compacted GEMM (0 cycles when nothing is left). With ``mask`` the
    engine reads the command's ``out_keep`` (of the kept lanes, after compaction). A depth-1
    variant without compaction is asserted equal to ``sim.engine_model.command_cycles``.
    """
    dense_engine = engine_model.command_cycles(
        config, gemm.command(a_transpose=a_transpose, b_transpose=b_transpose))
    compacted, kept_rows, kept_cols = compact(gemm)
    hardware = {}           # (swapped, compacted) -> the GEMM the engine runs, or None
    cache = {}
    cycles = {}
    for variant in variants:
        swapped = variant.swap_weight_grad and kind == "weight_grad"
        masked = variant.mask and gemm.out_keep is not None
        key = (variant.depth, variant.compact, swapped, masked)
        if key not in cache:
            place = (swapped, variant.compact, masked)
            if place not in hardware:
                host = issued(gemm, kind, swapped)
                if not variant.compact:
                    run = host if masked else dataclasses.replace(host, out_keep=None)
                else:
                    run, rows, cols = (compacted, kept_rows, kept_cols) if host is gemm \
                        else compact(host)
                    if run is not None and masked:     # the kept lanes' mask
                        run = dataclasses.replace(run, out_keep=host.out_keep[np.ix_(rows,
                                                                                     cols)])
                hardware[place] = run
            run = hardware[place]
            engine = with_window(config, variant.depth)
            if masked:
                engine = dataclasses.replace(engine, output_mask=True)
            command = None if run is None else stored(config, run)
            if masked and command is not None:
                command = dataclasses.replace(command, mask_host=True)
            cache[key] = 0 if run is None else engine_cycles(engine, command, run)
        cycles[variant.name] = cache[key]
        if variant.depth == 1 and not variant.compact and cycles[variant.name] != dense_engine:
            raise AssertionError(f"{variant.name}: skip model {cycles[variant.name]} != "
                                 f"sim.engine_model.command_cycles {dense_engine}")
    return {**gemm_statistics(config, gemm),
            "kept_rows": int(kept_rows.size), "kept_cols": int(kept_cols.size),
            "cycles": cycles}


def total(rows, names=VARIANT_NAMES) -> dict:
    """Sums over commands: cycles per variant, ideal, tile bound, dense and non-zero MACs."""
    return {"dense_macs": sum(r["M"] * r["N"] * r["K"] for r in rows),
            "nonzero_macs": sum(r["nonzero_macs"] for r in rows),
            "ideal": sum(r["ideal"] for r in rows),
            "tile_bound": sum(r["tile_bound"] for r in rows),
            "cycles": {name: sum(r["cycles"][name] for r in rows) for name in names}}


def totals(rows, names=VARIANT_NAMES) -> dict:
    """``forward``, ``backward`` (weight gradient and backward data) and ``step`` (all)."""
    return {"forward": total([r for r in rows if r["kind"] == "forward"], names),
            "backward": total([r for r in rows if r["kind"] in BACKWARD_KINDS], names),
            "step": total(rows, names)}


def measure_step(config, net, path: Path, *, design: str = DEFAULT, log=print) -> dict:
    """Every GEMM command of one captured step, measured (``design`` only for the log)."""
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    batch = len(meta["labels"])
    rows = []
    start = time.perf_counter()
    for command, gemm, _ in sparse_commands(config, net, z, batch):
        row = {"name": command.name, "layer": command.layer, "kind": command.kind,
               **measure_gemm(config, gemm, command.kind, a_transpose=command.transpose_a,
                              b_transpose=command.transpose_b)}
        rows.append(row)
        log(f"  {command.name:34s} {row['M']:6d}x{row['N']:4d}x{row['K']:6d} dense "
            f"{row['cycles']['dense']:7d}  {design} x"
            f"{row['cycles']['dense'] / max(1, row['cycles'][design]):.2f}  ideal x"
            f"{row['cycles']['dense'] / max(1, row['ideal']):.2f}")
    log(f"  ({time.perf_counter() - start:.0f} s)")
    return {"capture": str(path).replace(str(Path.home()), "~"), "step": meta["step"],
            "epoch": meta["epoch"], "batch": batch, "commands": rows, "totals": totals(rows)}


# ----------------------------------------------------------------------------- results

def speedup(entry, name) -> float:
    """Dense cycles over ``name``'s cycles (of a command or of a total)."""
    return entry["cycles"]["dense"] / entry["cycles"][name]


def of_ideal(entry, name) -> float:
    """Ideal cycles over ``name``'s cycles."""
    return entry["ideal"] / entry["cycles"][name]


def layers(step) -> list[dict]:
    """Per-command entries of a step for the headline keys."""
    return [{"name": r["name"], "kind": r["kind"], "M": r["M"], "N": r["N"], "K": r["K"],
             "zero_a": r["zero_a"], "zero_b": r["zero_b"], "masked_out": r["masked_out"],
             "cycles": dict(r["cycles"]), "ideal": r["ideal"]} for r in step["commands"]]


def headline(step, design: str, existing=None, skip_area=None) -> dict:
    """A network's top-level entry: ``design``'s totals at ``step`` (:data:`HEADLINE_FIELDS`
    and ``layers``), merged into ``existing`` (its other keys kept). ``skip_area_overhead`` is
    the design window's 8x8 figure from ``skip_area`` (the ``skip_area`` key of
    ``skip_area.json``, :mod:`scripts.skip_area`), 0 for the dense engine, None when that window
    has not been synthesised."""
    back, whole = step["totals"]["backward"], step["totals"]["step"]
    window = VARIANTS[VARIANT_NAMES.index(design)].depth
    entry = {"backward_cycles_dense": back["cycles"]["dense"],
             "backward_cycles_skip": back["cycles"][design],
             "backward_cycles_ideal": back["ideal"],
             "step_cycles_dense": whole["cycles"]["dense"],
             "step_cycles_skip": whole["cycles"][design],
             "backward_speedup": speedup(back, design),
             "step_speedup": speedup(whole, design),
             "backward_of_ideal": of_ideal(back, design),
             "design": design, "window": window, "step": step["step"],
             "skip_area_overhead": area_fraction(skip_area, design),
             "layers": layers(step)}
    return {**(existing or {}), **entry}


def measurement_section(results, design: str, previous=None) -> dict:
    """The ``measurement`` section: every variant, step and command; networks measured in an
    earlier run with the same variants are kept when not measured now."""
    networks = {}
    if previous and previous.get("variants", {}).keys() == set(VARIANT_NAMES):
        networks.update(previous.get("networks", {}))
    networks.update(results)
    timing = engine_model.EngineTiming.of(timing_config())
    return {"array": {"rows": ROWS, "cols": COLS, "dataflow": "os",
                      "min_tile_slots": timing.min_tile_slots,
                      "overhead": timing.overhead(False),
                      "overhead_accumulate": timing.overhead(True)},
            "variants": {v.name: {"summary": v.summary, "depth": v.depth, "compact": v.compact,
                                  "swap_weight_grad": v.swap_weight_grad, "mask": v.mask,
                                  "option": dataclasses.asdict(v.option)} for v in VARIANTS},
            "default": design, "networks": networks}


# ----------------------------------------------------------------------------- report

def plot(networks, design: str, path: Path) -> None:
    """Left: backward commands of digits_cnn (last step), cycles dense / design / ideal.
    Right: speedup of every backward command against its measured sparsity, both networks."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    if "digits_cnn" in networks:
        step = networks["digits_cnn"]["steps"][-1]
        rows = [r for r in step["commands"] if r["kind"] in BACKWARD_KINDS]
        x = np.arange(len(rows))
        width = 0.27
        left.bar(x - width, [r["cycles"]["dense"] for r in rows], width, label="dense")
        left.bar(x, [r["cycles"][design] for r in rows], width, label=design)
        left.bar(x + width, [max(1, r["ideal"]) for r in rows], width,
                 label="ideal (non-zero MACs / 64)")
        left.set_xticks(x, [r["name"] for r in rows], rotation=35, ha="right", fontsize=7)
        left.set_yscale("log")
        left.set_ylabel("cycles")
        left.set_title(f"digits_cnn backward GEMMs, step {step['step']}")
        left.grid(True, axis="y", which="both", alpha=0.3)
        left.legend(fontsize=7)
    curve = np.linspace(0, 0.97, 100)
    right.plot(curve, 1 / (1 - curve), "k:", label="1 / (1 - sparsity)")
    styles = zip(["o", "s", "^"], ["tab:blue", "tab:purple", "tab:olive"])
    for (net, result), (marker, color) in zip(networks.items(), styles):
        step = result["steps"][-1]
        rows = [r for r in step["commands"] if r["kind"] in BACKWARD_KINDS]
        sparsity = [r["mac_sparsity"] for r in rows]
        right.scatter(sparsity, [speedup(r, design) for r in rows], marker=marker, s=26,
                      alpha=0.8, color=color, label=f"{net} (step {step['step']}), {design}")
        right.scatter(sparsity, [r["cycles"]["dense"] / max(1, r["ideal"]) for r in rows],
                      marker="_", s=90, alpha=0.6, color=color,
                      label=f"{net}, ideal (non-zero MACs / 64)")
    right.set_yscale("log")
    right.set_ylim(0.8, 60)
    right.set_xlim(0, 1)
    right.set_xlabel("measured sparsity of the GEMM (1 - non-zero MACs / MACs)")
    right.set_ylabel("speedup over the dense engine")
    right.set_title("backward GEMMs (one point per command)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def setup(design: str, rule: str) -> dict:
    """The ``setup`` key: what the page needs besides the figures (the variants in order, the
    engine's timing constants, the targets and the area budget), ``design`` (the design of the
    headline keys) and ``rule`` (the one :func:`choose_default` picks)."""
    timing = engine_model.EngineTiming.of(timing_config())
    window = with_window(timing_config(), 2)
    return {"variants": [{"name": v.name, "summary": v.summary, "depth": v.depth,
                          "compact": v.compact, "swap_weight_grad": v.swap_weight_grad,
                          "mask": v.mask} for v in VARIANTS],
            "depths": list(DEPTHS),
            "engine": {"rows": ROWS, "cols": COLS, "min_tile_slots": timing.min_tile_slots,
                       "overhead": timing.overhead(False),
                       "overhead_accumulate": timing.overhead(True),
                       "flag_read_latency": lookahead_latency(window, False),
                       "flag_read_latency_masked": lookahead_latency(window, False, True)},
            "targets": {"backward_speedup": TARGET_SPEEDUP, "of_ideal": TARGET_OF_IDEAL},
            "area_budget": AREA_BUDGET, "default": design, "rule_default": rule}


def markdown(networks, design: str, existing=None, skip_area=None, replay=None) -> str:
    """``docs/skip_measure.md`` as ``sparta report`` renders it
    (:func:`scripts.report.sparsity.skip_measure_markdown`) from a measurement held in memory
    (``skip_area``: the ``skip_area`` key of ``skip_area.json``; ``replay``: the ``replay``
    key of ``replay.json``)."""
    from scripts.report.sparsity import skip_measure_markdown

    existing = existing or {}
    data = {"measurement": {"networks": networks},
            "setup": setup(design, choose_default(networks, skip_area)),
            **{net: headline(result["steps"][-1], design, existing.get(net), skip_area)
               for net, result in networks.items()}}
    return skip_measure_markdown(data, skip_area, replay)


def write_report(networks, design: str, docs_dir: Path, existing=None, skip_area=None,
                 replay=None) -> tuple[Path, Path]:
    """Write ``skip_measure.md`` and ``skip_measure.png`` of a measurement held in memory into
    ``docs_dir`` (the published page is written by ``sparta report``)."""
    md, png = docs_dir / "skip_measure.md", docs_dir / "skip_measure.png"
    plot(networks, design, png)
    md.write_text(markdown(networks, design, existing, skip_area, replay))
    return md, png


# ----------------------------------------------------------------------------- main

def publish(design, skip_area, measured=None) -> None:
    """Record the headline keys (``design`` at each network's last step), ``setup`` and, after a
    measurement (``measured``: network -> steps), the ``measurement`` section into
    ``docs/results/skip_measure.json`` (without a measurement, only the keys that change); then
    the plot and ``docs/skip_measure.md``."""
    from scripts import report

    data = load("skip_measure", reader=__name__, missing_ok=True)
    entries = {}
    if measured is not None:
        entries["measurement"] = measurement_section(measured, design, data.get("measurement"))
        networks = entries["measurement"]["networks"]
    else:
        networks = data["measurement"]["networks"]
    entries.update({net: headline(networks[net]["steps"][-1], design, data.get(net), skip_area)
                    for net in (networks if measured is None else measured)})
    entries["setup"] = setup(design, choose_default(networks, skip_area))
    if measured is None:    # unchanged keys keep the provenance of the run that measured them
        entries = {key: value for key, value in entries.items()
                   if json.loads(json.dumps(value)) != data.get(key)}
    if entries:
        path = record("skip_measure", entries, writer=__name__, config=timing_config())
        print(f"wrote {', '.join(sorted(entries))} of {path} (default {design})")
    plot(networks, design, DOCS_DIR / "skip_measure.png")
    print(f"wrote {DOCS_DIR / 'skip_measure.png'}")
    for written in report.write([DOCS_DIR / "skip_measure.md"]):
        print(f"wrote {written}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_capture_arguments(parser)
    parser.add_argument("--default", default=None, choices=VARIANT_NAMES,
                        help="the design of the headline keys (default: the fastest window "
                             "whose measured area fits the budget, see choose_default)")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: rewrite the headline keys and setup of "
                             "docs/results/skip_measure.json from its measurement and "
                             "skip_area.json (after scripts.skip_area), the plot and the page")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    skip_area = load("skip_area", reader=__name__, missing_ok=True).get("skip_area")
    if args.report_only:
        networks = load("skip_measure", reader=__name__)["measurement"]["networks"]
        publish(args.default or choose_default(networks, skip_area), skip_area)
        return 0
    config = timing_config()
    steps = None if args.steps is None else [int(s) for s in args.steps.split(",")]
    capture_dir = Path(args.capture_dir).expanduser()
    results = {}
    for net_name in args.nets:
        net = build_network(net_name, width=WIDTH)
        results[net_name] = {"steps": []}
        for path in track(find_captures(capture_dir, net_name, steps),
                          f"{net_name}: captured steps"):
            print(f"{net_name}: {path}")
            results[net_name]["steps"].append(
                measure_step(config, net, path, design=args.default or DEFAULT))
        for step in results[net_name]["steps"]:
            back = step["totals"]["backward"]
            print(f"{net_name} step {step['step']}: backward x (% of ideal): " +
                  ", ".join(f"{name} {speedup(back, name):.2f} "
                            f"({100 * of_ideal(back, name):.0f}%)" for name in VARIANT_NAMES))
    if not args.no_write:
        previous = load("skip_measure", reader=__name__, missing_ok=True).get("measurement", {})
        networks = {**previous.get("networks", {}), **results}
        publish(args.default or choose_default(networks, skip_area), skip_area, results)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
