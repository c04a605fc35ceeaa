"""Design study of zero skipping on the output-stationary engine, on captured training tensors.

For every GEMM command of a captured training step (``sim.lowering`` commands of a network:
forward, weight gradient with the bias gradient folded in as its last row, backward data),
:func:`capture_gemms` rebuilds the operands exactly as the engine stores them from the
capture's layer tensors (encoded fp16, im2col, the bias row's ones, never zero, as a column
appended to the stored ``X_col``), with the output mask of backward data (the AND of the
ReLU/dropout masks of the layer's input, through im2col for a convolution);
:func:`verify_reconstruction` checks them bit for bit against the capture's own GEMM operands
where the capture has them (the network computes the bias gradient as a GEMM of its own, whose
A is the ones and whose B is the weight gradient's). :func:`study_step` then gives each command's
cycles on the 8 x 8 OS engine (:func:`timing_config`) under every skipping design of
:data:`DESIGNS` (:mod:`sim.skip_model`), asserting the dense design equal to
``sim.engine_model.command_cycles``, with the ideal ``ceil(non-zero MACs / 64)`` per command (a
non-zero MAC: both operands non-zero and the output kept), and the backward data of stride-1
convolutions lowered as a transposed convolution (:func:`transposed_conv_gemm`, ``dX =
im2col(dY) . rot180(W)``, K = k*k*C_out instead of C_out), a lowering proposed for
``sim/lowering.py``. :func:`areas` gives each design's modelled skip-logic area,
:func:`study_section` and :func:`setup` the ``study`` and ``setup`` keys of
``docs/results/sparsity_study.json``.

Used by ``scripts/sparsity_study.py`` (``sparta measure sparsity``); the capture reconstruction
(:func:`find_captures`, :func:`sparse_commands`) and :func:`gemm_statistics` also by
:mod:`sim.experiments.skip`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np

from sim import engine_model
from sim.config import ArrayConfig, EngineConfig
from sim.lfsr import DropoutMask
from sim.nn import AccelBackend
from sim.nn.im2col import im2col
from sim.skip_model import (DENSE, SkipOption, SparseGemm, command_cycles, ideal_cycles,
                            skip_area, tile_bound_cycles)
from sim.sparsity import zero_bitmap

__all__ = ["ROWS", "COLS", "NETS", "WIDTH", "Design", "DESIGNS", "DESIGN_NAMES", "DEFAULT",
           "TABLE_DESIGNS", "PLOT_DESIGNS", "AREA_BUDGET", "TARGET_SPEEDUP", "TARGET_OF_IDEAL",
           "timing_config", "find_captures", "input_keep", "capture_gemms", "sparse_commands",
           "verify_reconstruction", "transposed_conv_gemm", "evaluate", "gemm_statistics",
           "study_step", "speedup", "of_ideal", "areas", "study_section", "setup"]

ROWS = COLS = 8
#: The networks whose captures the study reads by default.
NETS = ("digits_cnn", "resnet18")
WIDTH = 8
#: Output skipping and lane compaction, shared by the skipping designs below.
OUT = {"skip_empty_tiles": True, "compact_lanes": True}


@dataclasses.dataclass(frozen=True)
class Design:
    """A hardware option plus how the compiler uses it.

    ``swap_weight_grad``: weight-gradient GEMMs are issued with A and B exchanged (``dW^T =
    dY^T . X``), so that the array rows choose by the zeros of ``dY``, the sparser operand; on
    a square array this is the option with ``side="b"`` (tested in
    ``tb/test_golden_sparsity.py``).
    """

    option: SkipOption
    summary: str
    swap_weight_grad: bool = False

    @property
    def name(self) -> str:
        return self.option.name + ("_swap" if self.swap_weight_grad else "")

    def option_for(self, kind: str) -> SkipOption:
        if self.swap_weight_grad and kind == "weight_grad":
            return dataclasses.replace(self.option, side="b")
        return self.option


def _lookahead(name, depth, *, fetch=None, side="a", out=True):
    extra = dict(OUT, over_needed_steps=True) if out else {}
    return SkipOption(name, schedule="lookahead", depth=depth, fetch=fetch, side=side, **extra)


DESIGNS = [
    Design(DENSE, "dense engine"),
    Design(SkipOption("steps", schedule="steps"),
           "(b) tile step skipping: steps whose A band or B band is all zero are dropped by the "
           "sequencer (bitmaps from zero detect); no PE change"),
    Design(SkipOption("steps_out", schedule="steps", **OUT),
           "(b) + (d) output skipping: empty tiles not run, rows/columns without work or with "
           "all outputs masked dropped by the loader"),
    Design(SkipOption("steps_reorder", schedule="steps", reorder_rows=True, **OUT),
           "(b) + (d) + (e) the scheduler orders output rows by similar zero patterns"),
    Design(_lookahead("la2", 2, out=False), "(c) lookahead window d=2, rows choose (TensorDash-"
           "like, no bitmaps)"),
    Design(_lookahead("la3", 3, out=False), "(c) lookahead d=3"),
    Design(_lookahead("la4", 4, out=False), "(c) lookahead d=4"),
    Design(_lookahead("la2_out", 2), "(c) d=2 over the needed steps + (d)"),
    Design(_lookahead("la4_out", 4), "(c) d=4 over the needed steps + (d)"),
    Design(_lookahead("la4f2_out", 4, fetch=2),
           "(c) d=4, window advancing at most 2 steps per cycle (2x scratchpad reads) + (d)"),
    Design(_lookahead("la2_out", 2), "la2_out, weight-gradient operands swapped",
           swap_weight_grad=True),
    Design(_lookahead("la4f2_out", 4, fetch=2), "la4f2_out, weight-gradient operands swapped",
           swap_weight_grad=True),
    Design(_lookahead("pe2_out", 2, side="pe"),
           "every PE chooses within a d=2 window of both operands + (d)"),
    Design(_lookahead("pe4f2_out", 4, fetch=2, side="pe"), "per-PE window d=4, fetch 2 + (d)"),
    Design(_lookahead("pe4_out", 4, side="pe"), "per-PE window d=4, fetch 4 + (d)"),
]
DESIGN_NAMES = [d.name for d in DESIGNS]
#: The recommended default for the RTL (see the conclusion written into the document).
DEFAULT = "la4f2_out_swap"
#: Designs shown in the per-command tables of the document (all are in the JSON).
TABLE_DESIGNS = ["steps_out", "la4_out", "la4f2_out_swap", "pe2_out", "pe4f2_out"]
PLOT_DESIGNS = ["steps_out", "la4", "la4f2_out_swap", "pe4f2_out"]
#: Area budget of the skip logic (issue 5: <= 10% of the array).
AREA_BUDGET = 0.10
#: Targets of issue 5: the backward speedup on the digits CNN and the fraction of the ideal.
TARGET_SPEEDUP = 1.5
TARGET_OF_IDEAL = 0.8


def timing_config() -> EngineConfig:
    """The 8x8 OS engine with memories large enough for every command (the cycle model does
    not depend on memory sizes, only the command check does)."""
    return EngineConfig(array=ArrayConfig(rows=ROWS, cols=COLS), spad_width=4096,
                        a_rows=65536, b_rows=65536, acc_width=4096, acc_rows=65536)


# ----------------------------------------------------------------------------- captures

def find_captures(capture_dir: Path, net: str, steps=None) -> list[Path]:
    """The capture files ``<capture_dir>/<net>/accel/step_<step>.npz`` of ``steps`` (default:
    every capture but step 0); raises ``FileNotFoundError`` naming the missing files (or the
    folder, when it holds none) and the command that writes them."""
    folder = capture_dir / net / "accel"
    paths = sorted(folder.glob("step_*.npz"))
    chosen = [p for p in paths if int(re.findall(r"\d+", p.stem)[0]) != 0] if steps is None \
        else [folder / f"step_{s:06d}.npz" for s in steps]
    missing = [str(p) for p in chosen if not p.exists()]
    if missing or not chosen:
        raise FileNotFoundError(f"no captures {missing or folder}: run `python -m scripts.train "
                                f"--net {net} --backends accel` first")
    return chosen


def _columns(spec, x):
    if spec.kind == "conv2d" and not spec.im2col_identity:
        return im2col(x, kernel=spec.kernel, stride=spec.stride, padding=spec.padding)
    return x.reshape(-1, x.shape[-1])


def input_keep(spec, z, batch) -> np.ndarray | None:
    """AND of the captured ReLU/dropout keep masks gating the layer's input, shaped
    ``(batch,) + in_shape``; None when no mask gates it."""
    keep = None
    for name in spec.input_mask:
        mask = z[f"{name}/mask"]
        shape = (batch,) + spec.in_shape
        if mask.size != int(np.prod(shape)) or mask.shape[0] != batch:
            raise ValueError(f"{name}/mask has shape {mask.shape}, expected {shape} (or a "
                             f"shape that flattens to it) for {spec.name}")
        mask = mask.reshape(shape)            # through a flatten layer
        keep = mask.copy() if keep is None else keep & mask
    return keep


def capture_gemms(net, z, batch):
    """``(command, a_bits, b_bits, out_keep)`` of every GEMM of the captured step, operands as
    stored (the layers' own computation: encode, im2col, reshape; a weight gradient with a
    bias row gets the ones the layer encodes for its bias gradient as the last column of the
    stored ``X_col``)."""
    backend = AccelBackend()
    specs = {s.name: s for s in net.specs()}
    encoded = {}
    for command in net.commands(batch_size=batch):
        spec = specs[command.layer]
        if spec.name not in encoded:
            x = backend.encode(z[f"{spec.name}/input"])
            cols = _columns(spec, x)
            weight = backend.encode(z[f"{spec.name}/weight"])
            dy = backend.encode(z[f"{spec.name}/grad_output"].reshape(cols.shape[0],
                                                                       spec.features))
            encoded[spec.name] = (cols, weight, dy)
        cols, weight, dy = encoded[spec.name]
        keep = None
        if command.kind == "forward":
            a, b = cols, weight
        elif command.kind == "weight_grad":
            a, b = cols, dy
            if command.bias_row:
                ones = backend.encode(np.ones((cols.shape[0], 1), dtype=np.float32))
                a = np.concatenate([cols, ones], axis=1)
        else:
            a, b = dy, weight
            mask = input_keep(spec, z, batch)
            if mask is not None:
                keep = _columns(spec, mask.astype(np.uint8)).astype(bool)
        yield command, a, b, keep


def sparse_commands(config, net, z, batch):
    """``(command, gemm, engine_command)`` of every GEMM of a captured step: the lowering's
    command, its :class:`~sim.skip_model.SparseGemm` (operands' non-zero maps as stored, the
    output mask of backward data) and the dense engine command, checked to fit ``config``."""
    for command, a, b, keep in capture_gemms(net, z, batch):
        gemm = SparseGemm.from_bits(a, b, transpose_a=command.transpose_a,
                                    transpose_b=command.transpose_b, out_mask=keep,
                                    accumulate=command.accumulate)
        engine_command = gemm.command(a_transpose=command.transpose_a,
                                      b_transpose=command.transpose_b)
        if engine_model.validate(config, engine_command) is not engine_model.EngineError.NONE:
            raise AssertionError(f"{command.name} does not fit the timing configuration")
        yield command, gemm, engine_command


def verify_reconstruction(net, path: Path) -> int:
    """Operands rebuilt from a capture's layer tensors equal its captured GEMM operands (for the
    captures that have them; a folded weight gradient against the captured weight gradient and
    bias gradient); returns the number of commands checked."""
    z = np.load(path)
    if not any(key.startswith("gemm/") for key in z.files):
        return 0
    batch = len(json.loads(str(z["meta"]))["labels"])
    checked = 0
    for command, a, b, _ in capture_gemms(net, z, batch):
        pairs = [(command.name, "a", a), (command.name, "b", b)]
        if command.bias_row:
            # the network's own GEMMs: dW (A = X_col), db (A = the ones as a row, B = dY)
            bias = f"{command.layer}.bias_grad"
            pairs = [(command.name, "a", a[:, :-1]), (command.name, "b", b),
                     (bias, "a", a[:, -1:].T), (bias, "b", b)]
        for name, key, value in pairs:
            stored = z[f"gemm/{name}/{key}"]
            if not np.array_equal(stored, value):
                raise AssertionError(f"{path}: rebuilt {command.name} operand {key} differs "
                                     f"from the captured {name} one")
        checked += 1
    return checked


def transposed_conv_gemm(spec, z, batch) -> SparseGemm | None:
    """Backward data of a stride-1 k x k convolution as a transposed convolution: ``dX
    (B*H*W x C_in) = im2col(dY, padding k-1-p) . rot180(W)`` with K = k*k*C_out, output mask
    the input's keep mask itself. None for other layers."""
    if spec.kind != "conv2d" or not spec.input_grad or spec.stride != 1 or spec.kernel == 1:
        return None
    backend = AccelBackend()
    dy = backend.encode(z[f"{spec.name}/grad_output"])
    dy_nonzero = ~zero_bitmap(dy, "fp16")
    k = spec.kernel
    a = im2col(dy_nonzero.astype(np.uint8), kernel=k, stride=1,
               padding=k - 1 - spec.padding).astype(bool)
    w = ~zero_bitmap(backend.encode(z[f"{spec.name}/weight"]), "fp16")
    c_in = spec.in_shape[2]
    b = w.reshape(k, k, c_in, spec.features)[::-1, ::-1].transpose(0, 1, 3, 2)
    b = np.ascontiguousarray(b).reshape(k * k * spec.features, c_in)
    mask = input_keep(spec, z, batch)
    keep = None if mask is None else mask.reshape(-1, c_in)
    if a.shape[0] != batch * spec.in_shape[0] * spec.in_shape[1]:
        raise AssertionError(f"{spec.name}: transposed convolution rows {a.shape[0]}")
    return SparseGemm(a_nonzero=a, b_nonzero=b, out_keep=keep)


# ----------------------------------------------------------------------------- evaluation

def evaluate(config, gemm: SparseGemm, kind: str) -> dict:
    """:func:`gemm_statistics` of one command plus its cycles under every design."""
    cycles = {}
    for design in DESIGNS:
        if design.name not in cycles:
            cycles[design.name] = command_cycles(config, gemm, design.option_for(kind))
    return {**gemm_statistics(config, gemm), "cycles": cycles}


def gemm_statistics(config, gemm: SparseGemm) -> dict:
    """Shape, measured sparsity, non-zero MACs, ideal and tile-bound cycles of a command."""
    m, n, k = gemm.shape
    macs = gemm.nonzero_macs
    return {"M": m, "N": n, "K": k,
            "zero_a": float(1 - gemm.a_nonzero.mean()),
            "zero_b": float(1 - gemm.b_nonzero.mean()),
            "masked_out": None if gemm.out_keep is None else float(1 - gemm.out_keep.mean()),
            "nonzero_macs": macs, "mac_sparsity": 1 - macs / (m * n * k),
            "ideal": ideal_cycles(config, gemm), "tile_bound": tile_bound_cycles(config, gemm)}


def _annotate(entry) -> None:
    """Add each design's speedup over dense and fraction of the ideal (ideal / cycles)."""
    cycles = entry["cycles"]
    entry["speedup"] = {name: cycles["dense"] / value for name, value in cycles.items()}
    entry["of_ideal"] = {name: entry["ideal"] / value for name, value in cycles.items()}


def _sum(rows):
    total = {"dense_macs": 0, "nonzero_macs": 0, "ideal": 0, "tile_bound": 0,
             "cycles": {name: 0 for name in DESIGN_NAMES}}
    for r in rows:
        total["dense_macs"] += r["M"] * r["N"] * r["K"]
        total["nonzero_macs"] += r["nonzero_macs"]
        total["ideal"] += r["ideal"]
        total["tile_bound"] += r["tile_bound"]
        for name in DESIGN_NAMES:
            total["cycles"][name] += r["cycles"][name]
    return total


def study_step(config, net, path: Path, log=print) -> dict:
    """Every GEMM command of one captured step (the file ``path`` of ``net``) under every
    design: per command its statistics, cycles, speedups and fractions of the ideal (and its
    transposed-convolution alternative), totals of forward, backward, the step and the
    backward with the proposed lowering, and the captured dropout masks' keep rates against
    the LFSR's regenerated ones. ``log`` gets one line per command and the wall time."""
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    batch = len(meta["labels"])
    specs = {s.name: s for s in net.specs()}
    rows = []
    start = time.perf_counter()
    for command, gemm, engine_command in sparse_commands(config, net, z, batch):
        row = {"name": command.name, "layer": command.layer, "kind": command.kind,
               "bias_row": command.bias_row,
               **evaluate(config, gemm, command.kind)}
        dense = engine_model.command_cycles(config, engine_command)
        if row["cycles"]["dense"] != dense:
            raise AssertionError(f"{command.name}: dense model {row['cycles']['dense']} != "
                                 f"sim.engine_model.command_cycles {dense}")
        if command.kind == "backward_data":
            alternative = transposed_conv_gemm(specs[command.layer], z, batch)
            if alternative is not None:
                row["transposed_conv"] = evaluate(config, alternative, "backward_data")
        rows.append(row)
        log(f"  {command.name:34s} {row['M']:6d}x{row['N']:4d}x{row['K']:6d} dense "
            f"{row['cycles']['dense']:7d}  {DEFAULT} x"
            f"{row['cycles']['dense'] / row['cycles'][DEFAULT]:.2f}  ideal x"
            f"{row['cycles']['dense'] / max(1, row['ideal']):.2f}")
    for row in rows:
        _annotate(row)
        if "transposed_conv" in row:
            _annotate(row["transposed_conv"])
    forward = [r for r in rows if r["kind"] == "forward"]
    backward = [r for r in rows if r["kind"] != "forward"]
    proposed = [r.get("transposed_conv", r) for r in backward]
    totals = {"forward": _sum(forward), "backward": _sum(backward),
              "step": _sum(rows), "backward_transposed_conv": _sum(proposed)}
    for total in totals.values():
        _annotate(total)
    dropout = {}
    for name, spec in specs.items():
        if spec.kind == "dropout" and f"{name}/mask" in z.files:
            captured = z[f"{name}/mask"]
            regenerated = DropoutMask.for_layer(spec.p, run_seed=meta["config"]["seed"],
                                                layer=name, step=meta["step"]).keep(captured.shape)
            dropout[name] = {"p": spec.p, "captured_keep": float(captured.mean()),
                             "lfsr_keep": float(regenerated.mean()),
                             "shape": list(captured.shape)}
    log(f"  ({time.perf_counter() - start:.0f} s)")
    return {"capture": str(path).replace(str(Path.home()), "~"), "step": meta["step"],
            "epoch": meta["epoch"], "batch": batch, "commands": rows, "totals": totals,
            "dropout": dropout}


# ----------------------------------------------------------------------------- results

def speedup(total, name):
    """Dense cycles over ``name``'s cycles (of a command or of a total)."""
    return total["cycles"]["dense"] / total["cycles"][name]


def of_ideal(total, name):
    """Ideal cycles over ``name``'s cycles."""
    return total["ideal"] / total["cycles"][name]


def areas(config) -> dict:
    """Design name -> its modelled skip-logic area on ``config``
    (:func:`sim.skip_model.skip_area`, floats rounded to 4 digits)."""
    out = {}
    for design in DESIGNS:
        area = skip_area(design.option, config)
        out[design.name] = {key: (round(value, 4) if isinstance(value, float) else value)
                            for key, value in area.items()}
    return out


def study_section(networks, area) -> dict:
    """The ``study`` key: the array, every design (summary, option, swap, ``area`` of it from
    :func:`areas`), the default and ``networks`` (network -> ``{"steps": [study_step, ...]}``)."""
    return {"array": {"rows": ROWS, "cols": COLS, "dataflow": "os"},
            "designs": {d.name: {"summary": d.summary, "option": dataclasses.asdict(d.option),
                                 "swap_weight_grad": d.swap_weight_grad,
                                 "area": area[d.name]} for d in DESIGNS},
            "default": DEFAULT,
            "networks": networks}


def setup(config) -> dict:
    """The ``setup`` key: what the page needs besides the figures (the designs in order, those
    of the per-command tables, the engine's timing constants, the area budget and targets)."""
    timing = engine_model.EngineTiming.of(config)
    return {"design_order": list(DESIGN_NAMES), "table_designs": list(TABLE_DESIGNS),
            "engine": {"rows": ROWS, "cols": COLS, "min_tile_slots": timing.min_tile_slots,
                       "overhead": timing.overhead(False),
                       "overhead_accumulate": timing.overhead(True)},
            "area_budget": AREA_BUDGET,
            "targets": {"backward_speedup": TARGET_SPEEDUP, "of_ideal": TARGET_OF_IDEAL}}
