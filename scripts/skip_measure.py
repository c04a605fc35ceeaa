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

Writes the ``measurement`` section and the per-network headline keys (``digits_cnn``,
``resnet18``) of ``docs/results/sparsity.json`` (other keys kept; an existing non-None
``skip_area_overhead`` is never overwritten), ``docs/skip_measure.md`` and
``docs/skip_measure.png``.

Usage: python -m scripts.skip_measure [--nets digits_cnn,resnet18] [--steps 405,899]
       [--capture-dir ~/.cache/sparta/captures] [--default la4_compact_swap] [--no-write]
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

from scripts.results import DOCS_DIR, RESULTS_DIR, update_results  # noqa: E402
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
STUDY_ANCHOR = "sparsity_study.md#why-the-ideal-is-out-of-reach-and-what-would-be-needed"
#: Target of the backward speedup on the digits CNN, and of the fraction of the ideal.
TARGET_SPEEDUP = 1.5
TARGET_OF_IDEAL = 0.8
#: Fields of a network's headline entry in ``sparsity.json`` (besides ``layers``).
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
#: The design whose numbers go to the top-level keys of ``sparsity.json`` when the area of the
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
    the design window's 8x8 figure from ``skip_area`` (the ``skip_area`` section of
    ``sparsity.json``, :mod:`scripts.skip_area`), 0 for the dense engine, None when that window
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


def _pct1(value) -> str:
    return f"{100 * value:.2f}%"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _method(design: str) -> list[str]:
    timing = engine_model.EngineTiming.of(timing_config())
    slots = timing.min_tile_slots
    variant = next(v for v in VARIANTS if v.name == design)
    lines = [
        "## Method", "",
        "**Workload.** The GEMM commands (forward, weight gradient with the bias gradient "
        "folded in as its last row, backward data) of captured training steps of the digits "
        "CNN and of the ResNet-18 topology (width 8), rebuilt from the captured layer tensors "
        "exactly as the engine stores them, with the output mask of backward data "
        "(`scripts.sparsity_study.capture_gemms`, checked bit for bit against step 0's "
        "captured operands by the study). Every capture but step 0 is measured; the last "
        "captured step of each network is the headline.", "",
        "**Hardware (what the RTL does).** The "
        f"{ROWS}x{COLS} output-stationary engine with a lookahead window of `d` steps: in each "
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
        f"{lookahead_latency(with_window(timing_config(), 2), False)} cycles per command for "
        "reading the first zero flags, "
        f"{lookahead_latency(with_window(timing_config(), 2), False, True)} for a masked one, "
        "which also reads its first tile's mask summary), which the RTL benches "
        "(`tb/test_engine.py`, `test_engine_skip_window`) assert equal for every command. The "
        "dropout plane is written by the engine's mask writer, which runs beside the engine "
        "(the host starts it before the GEMMs that precede the backward-data command); its "
        "cycles are not in these counts. A tile occupies at least "
        f"`min_tile_slots = {slots}` issue slots; each command "
        f"adds {timing.overhead(False)} fixed cycles "
        f"(+{timing.overhead(True) - timing.overhead(False)} when accumulating).", "",
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
        "`sim.skip_model.ideal_cycles` = `ceil(non-zero MACs / 64)` per command, a non-zero "
        "MAC having both operands non-zero and its output kept (the real mask). Tile bound = "
        "`sim.skip_model.tile_bound_cycles`: after compaction, each tile takes at least its "
        f"busiest PE's non-zero products and at least {slots} slots (a lower bound for every "
        "compacted variant). x = dense cycles / cycles; % of ideal = ideal / cycles. "
        "Backward = weight-gradient and backward-data commands; step = all commands.", "",
        "| variant | window d | host compaction | weight-gradient swap | output masks |",
        "|---|---:|---|---|---|"]
    for v in VARIANTS:
        mark = " (default)" if v.name == design else ""
        lines.append(f"| `{v.name}`{mark} | {v.depth} | {'yes' if v.compact else 'no'} | "
                     f"{'yes' if v.swap_weight_grad else 'no'} | {'yes' if v.mask else 'no'} |")
    lines += ["", f"The default design is `{design}` ({variant.summary}).", ""]
    return lines


def _headline_section(networks, design, existing, skip_area=None) -> list[str]:
    lines = [f"## Headline (`{design}`, last captured step)", "",
             "| network, step | backward dense | backward skip | backward ideal | backward x | "
             "% of ideal | step dense | step skip | step x | area overhead |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for net, result in networks.items():
        step = result["steps"][-1]
        h = headline(step, design, existing.get(net), skip_area)
        area = h["skip_area_overhead"]
        area = "not synthesised" if area is None else \
            (f"{100 * area:.1f}%" if isinstance(area, float) else str(area))
        lines.append(f"| {net}, {h['step']} | {h['backward_cycles_dense']} | "
                     f"{h['backward_cycles_skip']} | {h['backward_cycles_ideal']} | "
                     f"{h['backward_speedup']:.2f} | {100 * h['backward_of_ideal']:.0f}% | "
                     f"{h['step_cycles_dense']} | {h['step_cycles_skip']} | "
                     f"{h['step_speedup']:.2f} | {area} |")
    return lines + [""]


def _targets_section(networks, design) -> list[str]:
    lines = ["## Targets", ""]
    if "digits_cnn" in networks:
        steps = networks["digits_cnn"]["steps"]
        last = steps[-1]["totals"]["backward"]
        x = speedup(last, design)
        met = "met" if x >= TARGET_SPEEDUP else f"missed by {TARGET_SPEEDUP - x:.2f}x"
        every = ", ".join(f"{speedup(s['totals']['backward'], design):.2f}x at step "
                          f"{s['step']}" for s in steps)
        lines += [f"* **Backward speedup >= {TARGET_SPEEDUP}x on the digits CNN: {met}.** "
                  f"`{design}` takes {last['cycles'][design]} backward cycles against "
                  f"{last['cycles']['dense']} dense at step {steps[-1]['step']}: {x:.2f}x "
                  f"(every captured step: {every})."]
    else:
        lines += [f"* Backward speedup >= {TARGET_SPEEDUP}x on the digits CNN: not measured "
                  "in this run."]
    parts = []
    for net, result in networks.items():
        back = result["steps"][-1]["totals"]["backward"]
        parts.append(f"{100 * of_ideal(back, design):.0f}% on {net} (ideal "
                     f"{back['ideal']} cycles, `{design}` {back['cycles'][design]}; the tile "
                     f"bound itself is {100 * back['ideal'] / back['tile_bound']:.0f}% of the "
                     f"ideal, and `{design}` reaches "
                     f"{100 * back['tile_bound'] / back['cycles'][design]:.0f}% of the tile "
                     "bound)")
    lasts = [r["steps"][-1]["totals"]["backward"] for r in networks.values()]
    met = "met" if all(of_ideal(b, design) >= TARGET_OF_IDEAL for b in lasts) else "missed"
    lines += [f"* **Backward cycles >= {100 * TARGET_OF_IDEAL:.0f}% of the ideal (ideal / "
              f"cycles): {met}.** Measured at the last step: " + "; ".join(parts) + "."]
    bounded = [net for net, b in zip(networks, lasts)
               if b["ideal"] / b["tile_bound"] < TARGET_OF_IDEAL]
    if bounded:
        slots = engine_model.EngineTiming.of(timing_config()).min_tile_slots
        lines[-1] += (" On " + " and ".join(bounded) + " no compacted design of this tiling can "
                      "reach it: even with every PE of a tile busy with its own non-zero "
                      "products (the tile bound) the backward pass stays below "
                      f"{100 * TARGET_OF_IDEAL:.0f}% of the ideal, bounded by the {ROWS}x{COLS} "
                      f"tiling with shared operand streams, the {slots}-slot tile floor and the "
                      "PEs of a tile with unequal work, as the design study explains ([why the "
                      f"ideal is out of reach]({STUDY_ANCHOR})).")
    else:
        lines[-1] += (" The tile bound is within the target on every network; see the design "
                      f"study for what bounds the rest ([why the ideal is out of reach]"
                      f"({STUDY_ANCHOR})).")
    return lines + [""]


def _summary_section(networks) -> list[str]:
    lines = ["## Every variant, per network and step", ""]
    for net, result in networks.items():
        for step in result["steps"]:
            t = step["totals"]
            back, whole = t["backward"], t["step"]
            lines += [f"### {net}, step {step['step']} (epoch {step['epoch']}, batch "
                      f"{step['batch']})", "",
                      "| variant | backward cycles | backward x | backward % of ideal | "
                      "step cycles | step x | step % of ideal |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for name in VARIANT_NAMES:
                lines.append(f"| `{name}` | {back['cycles'][name]} | {speedup(back, name):.2f} "
                             f"| {100 * of_ideal(back, name):.0f}% | {whole['cycles'][name]} | "
                             f"{speedup(whole, name):.2f} | {100 * of_ideal(whole, name):.0f}% |")
            for label, key in (("tile bound", "tile_bound"), ("ideal", "ideal")):
                lines.append(f"| {label} | {back[key]} | "
                             f"{back['cycles']['dense'] / back[key]:.2f} | "
                             f"{100 * back['ideal'] / back[key]:.0f}% | {whole[key]} | "
                             f"{whole['cycles']['dense'] / whole[key]:.2f} | "
                             f"{100 * whole['ideal'] / whole[key]:.0f}% |")
            lines += ["", f"Non-zero MACs: {_pct(back['nonzero_macs'] / back['dense_macs'])} "
                      f"of the backward MACs, {_pct(whole['nonzero_macs'] / whole['dense_macs'])}"
                      " of the step's.", ""]
    return lines


def _choice_section(networks, design: str, skip_area=None, replay=None) -> list[str]:
    """Window depth against speedup and measured area (``skip_area`` section of
    ``sparsity.json``, from ``scripts.skip_area``), the RTL replay, and the default."""
    overhead = (skip_area or {}).get("overhead", {})
    lines = ["## Choosing the default", "",
             "Backward speedup at the last captured step (with host compaction and the "
             "weight-gradient swap) against the Yosys area of the window (`python -m "
             "scripts.skip_area`: `4x4` = whole 4x4 engine with the window minus the dense "
             "4x4 engine, over the dense 4x4 array; `8x8` = 64 x the PE's increase + the 8x8 "
             "sequencer's increase + twice the rest of the 4x4 engine's increase (array-edge "
             "registers, scratchpad copies' and flag planes' logic, write zero detect), over "
             "the dense 8x8 array, every term synthesised except that doubling; not "
             "measured: -):", "",
             "| window d | " + " | ".join(f"{net} backward x" for net in networks) +
             " | area 4x4 | area 8x8 | extra scratchpad copies |",
             "|---:|" + "---:|" * len(networks) + "---:|---:|---:|"]
    for d in (1, *DEPTHS):
        name = "compact" if d == 1 else f"la{d}_compact_swap"
        speeds = [f"{speedup(result['steps'][-1]['totals']['backward'], name):.2f}"
                  for result in networks.values()]
        area = overhead.get(f"window{d}")
        cells = ("0", "0") if d == 1 else ("-", "-") if area is None else (
            _pct1(area["fraction_4x4"]), _pct1(area["fraction_8x8"]))
        copies = "none" if d == 1 else f"{d - 1} of A and of B, {d} flag planes each"
        lines.append(f"| {d} | " + " | ".join(speeds) + f" | {cells[0]} | {cells[1]} | "
                     f"{copies} |")
    masks = [d for d in DEPTHS if f"mask_window{d}" in overhead]
    if masks:
        lines += ["", "With the engine's output masks (`_mask` variants: keep planes, mask "
                  "summaries for the window, +0 on masked result lanes, the dropout mask "
                  "writer; 8x8 sequencer with and without masks and the writer synthesised; "
                  "the keep planes are memory, 2 planes x 2 copies of 1 bit per accumulator):",
                  "", "| window d | " + " | ".join(f"{net} backward x, masks / without"
                                                   for net in networks) +
                  " | mask logic 8x8 | with the window 8x8 | keep-plane bits 8x8 |",
                  "|---:|" + "---:|" * len(networks) + "---:|---:|---:|"]
        for d in masks:
            row = overhead[f"mask_window{d}"]
            speeds = [f"{speedup(r['steps'][-1]['totals']['backward'], f'la{d}_compact_swap_mask'):.2f}"
                      f" / {speedup(r['steps'][-1]['totals']['backward'], f'la{d}_compact_swap'):.2f}"
                      for r in networks.values()]
            lines.append(f"| {d} | " + " | ".join(speeds) + f" | {_pct1(row['fraction_8x8'])} "
                         f"| {_pct1(row['with_window_fraction_8x8'])} | "
                         f"{row['memory_bits_8x8']:,} |")
        lines += ["", "Output masks act on whole tile rows and columns only (a PE of an "
                  "output-stationary array cannot leave its shared operand streams), and the "
                  "element-wise ReLU and dropout masks of these networks rarely mask a whole "
                  "row or column of a tile that compaction kept: they add at most a percent "
                  "of backward speed here. What they bring is the +0 writes in hardware (no "
                  "scatter pass over masked outputs) and dropout masks regenerated from a "
                  "seed instead of stored."]
    depth = VARIANTS[VARIANT_NAMES.index(design)].depth
    chosen = overhead.get(f"window{depth}")
    rule = choose_default(networks, skip_area)
    lines += ["", f"**Default: `{design}`.** "]
    if rule == design:
        reasons = [f"The rule: the window with the largest mean backward speedup whose skip "
                   f"logic fits the budget ({_pct(AREA_BUDGET)} of the dense 8x8 array, "
                   f"measured), with compaction and the swap; d = {depth} is that window"]
    else:
        reasons = [f"Chosen with --default (the rule, the fastest window inside the "
                   f"{_pct(AREA_BUDGET)} area budget, picks `{rule}`)"]
    if chosen is not None:
        reasons.append(f"its skip logic measures {_pct1(chosen['fraction_8x8'])} of the dense "
                       f"8x8 array ({_pct1(chosen['fraction_4x4'])} on the 4x4 engine measured "
                       f"whole, where the sequencer weighs more against 16 PEs)")
    over = [d for d in DEPTHS if overhead.get(f"window{d}", {}).get("fraction_8x8", 0)
            > AREA_BUDGET]
    if over:
        reasons.append(f"d = {', '.join(str(d) for d in over)} is faster but over the budget")
    if "digits_cnn" in networks:
        back = networks["digits_cnn"]["steps"][-1]["totals"]["backward"]
        small = [d for d in DEPTHS if speedup(back, f"la{d}_compact_swap") < 1.5]
        if small:
            reasons.append("smaller windows miss the 1.5x backward target on the digits CNN "
                           f"(d = {', '.join(str(d) for d in small)})")
    lines[-1] += "; ".join(reasons) + ". The window depth stays a parameter " \
        "(`ArrayConfig(skip_window=d)`); compaction and the swap are the host's and cost no " \
        "hardware. The memory cost is not in the cell counts: the window needs its " \
        "scratchpad copies and flag planes (above)."
    if replay:
        lines += ["", "**On the RTL.** The digits CNN's training step 0 (the lowering's "
                  "commands as they are: no compaction, no swap) on the generated 8x8 engine "
                  "under Verilator (`python -m scripts.replay --skip-window D`), every result "
                  "word bit-exact and every command's cycles equal to the model:", "",
                  "| window | commands | backward cycles | dense | backward x | step cycles | "
                  "dense | step x |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, run in sorted(replay.items()):
            total = run["per_kind"]["total"]
            lines.append(f"| {name} | {run['commands']} | {run['backward_cycles']} | "
                         f"{run['backward_cycles_dense']} | "
                         f"{run['backward_cycles_dense'] / run['backward_cycles']:.2f} | "
                         f"{total['cycles']} | {total['dense_cycles']} | "
                         f"{total['dense_cycles'] / total['cycles']:.2f} |")
    return lines + [""]


def _layers_section(networks, design) -> list[str]:
    lines = ["## Per command, last captured step", "",
             "zeros A / B: fraction of the operand elements that are zero; masked: fraction of "
             "the outputs masked; sparsity: 1 - non-zero MACs / MACs; kept: rows x columns "
             "left after lane compaction (natural orientation).", ""]
    for net, result in networks.items():
        step = result["steps"][-1]
        lines += [f"### {net}, step {step['step']}", "",
                  f"| command | M x N x K | zeros A | zeros B | masked | sparsity | kept | dense | "
                  f"`{design}` | ideal | x | ideal x | % of ideal |",
                  "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in step["commands"]:
            cycles, dense, ideal = r["cycles"][design], r["cycles"]["dense"], r["ideal"]
            x = f"{dense / cycles:.2f}" if cycles else "not issued"
            of = f"{100 * ideal / cycles:.0f}%" if cycles else "-"
            lines.append(f"| {r['name']} | {r['M']}x{r['N']}x{r['K']} | {_pct(r['zero_a'])} | "
                         f"{_pct(r['zero_b'])} | {_pct(r['masked_out'])} | "
                         f"{_pct(r['mac_sparsity'])} | {r['kept_rows']}x{r['kept_cols']} | "
                         f"{dense} | {cycles} | {ideal} | {x} | {dense / max(1, ideal):.2f} | "
                         f"{of} |")
        lines.append("")
    return lines


def markdown(networks, design: str, existing=None, skip_area=None, replay=None) -> str:
    """The whole of ``docs/skip_measure.md`` from the measurement (and, when given, the
    ``skip_area`` and ``replay`` sections of ``sparsity.json``)."""
    existing = existing or {}
    lines = ["# Zero skipping: measurement of the RTL design (issue 5, item 8)", "",
             "Generated by `python -m scripts.skip_measure` (do not edit by hand). Numbers: "
             "`docs/results/sparsity.json` (headline keys `digits_cnn`, `resnet18`; every "
             "variant, step and command under `measurement`). Plot: "
             "[skip_measure.png](skip_measure.png) (left: backward GEMMs of the digits CNN, "
             "cycles; right: speedup of each backward GEMM against its measured sparsity). The "
             "design study that chose this family: [sparsity_study.md](sparsity_study.md).", ""]
    lines += _headline_section(networks, design, existing, skip_area)
    lines += _targets_section(networks, design)
    lines += _method(design)
    lines += _choice_section(networks, design, skip_area, replay)
    lines += _summary_section(networks)
    lines += _layers_section(networks, design)
    lines += ["## Reproduce", "", "```",
              "python -m scripts.train --net digits_cnn --backends accel   # captures",
              "python -m scripts.train --net resnet18 --backends accel     # captures",
              "nice python -m scripts.skip_measure                         # this document",
              "python -m pytest tb/test_skip_measure.py tb/test_golden_sparsity.py -q",
              "```", ""]
    return "\n".join(lines)


def write_report(networks, design: str, docs_dir: Path, existing=None, skip_area=None,
                 replay=None) -> tuple[Path, Path]:
    """Write ``skip_measure.md`` and ``skip_measure.png`` into ``docs_dir``."""
    md, png = docs_dir / "skip_measure.md", docs_dir / "skip_measure.png"
    plot(networks, design, png)
    md.write_text(markdown(networks, design, existing, skip_area, replay))
    return md, png


# ----------------------------------------------------------------------------- main

def publish(networks, design, data) -> None:
    """Write the headline keys (``design`` at each network's last step), the ``measurement``
    section, ``skip_measure.md`` and the plot; ``data`` is ``sparsity.json`` as read."""
    section = measurement_section(networks, design, data.get("measurement"))
    entries = {net: headline(networks[net]["steps"][-1], design, data.get(net),
                             data.get("skip_area"))
               for net in section["networks"] if net in networks}
    path = update_results("sparsity", measurement=section, **entries)
    print(f"wrote {path} (default {design})")
    existing = {**{net: data[net] for net in section["networks"] if net in data}, **entries}
    for written in write_report(section["networks"], design, DOCS_DIR, existing,
                                data.get("skip_area"), data.get("replay")):
        print(f"wrote {written}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_capture_arguments(parser)
    parser.add_argument("--default", default=None, choices=VARIANT_NAMES,
                        help="the design of the headline keys (default: the fastest window "
                             "whose measured area fits the budget, see choose_default)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the headline keys, document and plot from "
                             "docs/results/sparsity.json (after scripts.skip_area or a replay)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    path = RESULTS_DIR / "sparsity.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if args.report_only:
        networks = data["measurement"]["networks"]
        publish(networks, args.default or choose_default(networks, data.get("skip_area")), data)
        return 0
    config = timing_config()
    steps = None if args.steps is None else [int(s) for s in args.steps.split(",")]
    capture_dir = Path(args.capture_dir).expanduser()
    results = {}
    for net_name in args.nets:
        net = build_network(net_name, width=WIDTH)
        results[net_name] = {"steps": []}
        for path in find_captures(capture_dir, net_name, steps):
            print(f"{net_name}: {path}")
            results[net_name]["steps"].append(
                measure_step(config, net, path, design=args.default or DEFAULT))
        for step in results[net_name]["steps"]:
            back = step["totals"]["backward"]
            print(f"{net_name} step {step['step']}: backward x (% of ideal): " +
                  ", ".join(f"{name} {speedup(back, name):.2f} "
                            f"({100 * of_ideal(back, name):.0f}%)" for name in VARIANT_NAMES))
    if not args.no_write:
        networks = {**data.get("measurement", {}).get("networks", {}), **results}
        publish(results, args.default or choose_default(networks, data.get("skip_area")), data)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
