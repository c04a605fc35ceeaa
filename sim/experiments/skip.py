"""Cycles of the zero-skipping design the RTL implements (issue 5, item 8), on captured training
steps, and the area arithmetic that picks its default.

The hardware is one design family: the 8 x 8 output-stationary engine with a lookahead window of
``d`` steps on side a (each array row picks its own next non-zero step, the B rows of the whole
window flow down the columns, the window advances up to ``d`` steps per cycle; ``d = 1`` is the
dense engine): ``SkipOption(schedule="lookahead", depth=d, fetch=d, side="a")`` of
:mod:`sim.skip_model`, applied with ``out_keep=None``, or, for the ``_mask`` variants (the
engine's output masks, ``EngineConfig(output_mask=True)``), with the backward-data command's
forward mask. Its cycles are :func:`sim.skip_timing.engine_cycles` (that window schedule plus
the flag-read latency), which the RTL benches assert equal. The host adds two things that need
no hardware: lane compaction (:func:`sim.skip_model.compact`; a command compacted away costs 0
engine cycles) and the operand swap of the weight gradient (``dW^T = dY^T . X_col``). A
:class:`Variant` is the window depth plus those host steps; :data:`VARIANTS` lists the measured
ones.

:func:`measure_gemm` gives one command's cycles under every variant (the dense variant asserted
equal to ``sim.engine_model.command_cycles``); :func:`measure_step` every command of a captured
step, rebuilt from the capture exactly as the design study does
(:func:`sim.experiments.sparsity.sparse_commands`); :func:`totals` sums them. :func:`headline`,
:func:`measurement_section` and :func:`setup` are the keys of ``docs/results/skip_measure.json``;
:func:`area_overheads` composes the skip logic's Yosys area (``docs/results/skip_area.json``)
into its fraction of the dense array, :func:`area_fraction` reads it back and
:func:`choose_default` picks the fastest design within :data:`AREA_BUDGET`.

Used by ``scripts/skip_measure.py`` (``sparta measure skip``), ``scripts/skip_area.py`` (the area
arithmetic) and ``scripts/user_network.py`` (``sparta measure skip --network-file``: a user's
network).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from sim import engine_model
from sim.experiments.sparsity import COLS, ROWS, gemm_statistics, sparse_commands, timing_config
from sim.skip_model import SkipOption, SparseGemm, compact
from sim.skip_timing import engine_cycles, lookahead_latency, window_option, with_window

__all__ = ["BACKWARD_KINDS", "DEPTHS", "TARGET_SPEEDUP", "TARGET_OF_IDEAL", "HEADLINE_FIELDS",
           "Variant", "VARIANTS", "VARIANT_NAMES", "DEFAULT", "AREA_BUDGET", "area_overheads",
           "area_fraction", "choose_default", "stored", "issued", "measure_gemm", "total",
           "totals", "measure_step", "speedup", "of_ideal", "layers", "headline",
           "measurement_section", "setup"]

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


# ----------------------------------------------------------------------------- area

def area_overheads(area, dense_area, windows, mask_windows=(), *, engines) -> dict:
    """Skip-logic area and its fraction of the dense array, per window and per output-mask
    window, from the Yosys area of the measured units.

    ``area``: unit name -> ``{"cells": ..., "memory_bits": ...}`` of the units of
    ``scripts/skip_area.py`` (window PEs, dense and window sequencers of the 8x8 and 4x4
    engines, the dense and window 4x4 engines, and for ``mask_windows`` the masked 8x8
    sequencers and the dropout mask writer); ``dense_area``: the dense arrays
    (``array_os_4x4``, ``array_os_8x8``) of ``docs/results/engine_area.json``; ``engines``: the whole 8x8 engines
    synthesised by parts (``engine_os_8x8``, ``engine_os_8x8_window<d>`` and
    ``engine_os_8x8_window<d>_mask``: cells, ``ecp5_lut``, ``ecp5_ff``, ``ecp5_dsp``,
    ``memory_bits``).

    Both figures are differences of two syntheses of a whole engine: the 4x4 one ``(window
    engine - dense engine) / dense 4x4 array``, the 8x8 one ``(window engine - dense engine) /
    dense 8x8 array`` (``cells_8x8``, ``fraction_8x8``; the ECP5 LUT and FF differences and
    the memory bits beside them). ``composed_cells_8x8`` keeps the estimate this replaced:
    ``64 x (window PE - dense PE) + (window sequencer - dense sequencer) + 2 x the rest``, the
    rest being the 4x4 engine's increase less its 16 PEs and its sequencer. An output-mask
    entry is the masked engine less the engine with the same window (``cells_8x8``) and less
    the dense engine (``with_window_fraction_8x8``), with the sequencer's and the mask
    writer's share of it measured alone.
    """
    result = {}
    pe = area["pe_os"]["cells"]
    dense8 = engines["engine_os_8x8"]
    array8 = dense_area["array_os_8x8"]["cells"]

    def increase(name, base):
        row = engines[name]
        return {"cells_8x8": row["cells"] - base["cells"],
                "fraction_8x8": (row["cells"] - base["cells"]) / array8,
                "fraction_engine_8x8": (row["cells"] - base["cells"]) / dense8["cells"],
                "ecp5_lut_8x8": row["ecp5_lut"] - base["ecp5_lut"],
                "ecp5_ff_8x8": row["ecp5_ff"] - base["ecp5_ff"],
                "ecp5_dsp_8x8": row["ecp5_dsp"] - base["ecp5_dsp"],
                "memory_bits_8x8": row["memory_bits"] - base["memory_bits"]}

    for d in windows:
        d_pe = area[f"pe_os_window{d}"]["cells"] - pe
        d_seq8 = area[f"sequencer_os_8x8_window{d}"]["cells"] - area["sequencer_os_8x8"]["cells"]
        d_seq4 = area[f"sequencer_os_4x4_window{d}"]["cells"] - area["sequencer_os_4x4"]["cells"]
        d_engine4 = area[f"engine_os_4x4_window{d}"]["cells"] - area["engine_os_4x4"]["cells"]
        rest4 = d_engine4 - 16 * d_pe - d_seq4
        result[f"window{d}"] = {
            "pe_cells": d_pe, "sequencer_8x8_cells": d_seq8, "sequencer_4x4_cells": d_seq4,
            "engine_4x4_cells": d_engine4, "rest_4x4_cells": rest4,
            "fraction_4x4": d_engine4 / dense_area["array_os_4x4"]["cells"],
            "memory_bits_4x4": (area[f"engine_os_4x4_window{d}"].get("memory_bits", 0)
                                - area["engine_os_4x4"].get("memory_bits", 0)),
            **increase(f"engine_os_8x8_window{d}", dense8),
            "composed_cells_8x8": 64 * d_pe + d_seq8 + 2 * rest4,
        }
    for d in mask_windows:
        # output masks on top of window d: the sequencer's summary reader, summary queue,
        # wider flag queue and result-lane AND, the dropout mask writer, and the keep planes
        # (memories)
        masked = f"engine_os_8x8_window{d}_mask"
        d_seq = (area[f"sequencer_os_8x8_window{d}_mask"]["cells"]
                 - area[f"sequencer_os_8x8_window{d}"]["cells"])
        result[f"mask_window{d}"] = {
            "sequencer_8x8_cells": d_seq, "writer_8x8_cells": area["mask_writer_8x8"]["cells"],
            **increase(masked, engines[f"engine_os_8x8_window{d}"]),
            "with_window_fraction_8x8": (engines[masked]["cells"] - dense8["cells"]) / array8,
        }
    return result


def area_fraction(skip_area, design: str):
    """The 8x8 skip-logic area of ``design`` as a fraction of the dense 8x8 array (window, plus
    the output-mask logic for a ``_mask`` design), or None when it has not been
    synthesised; 0 for the dense engine. ``skip_area``: the ``skip_area`` key of
    ``skip_area.json`` (its ``overhead`` is :func:`area_overheads`)."""
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


# ----------------------------------------------------------------------------- measurement

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
    """Every GEMM command of one captured step (the file ``path`` of ``net``), measured
    (:func:`measure_gemm`) and totalled (:func:`totals`); ``log`` gets one line per command,
    with ``design``'s speedup, and the wall time."""
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
    ``skip_area.json``, :func:`area_fraction`), 0 for the dense engine, None when that window
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
