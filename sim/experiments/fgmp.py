"""FGMP measured on training: traffic, FP8 share, accuracy and energy of a network trained with
FGMP numerics, and the analysis of why elements of a captured step stay fp16.

Training measurement (``sparta measure fgmp``, :mod:`scripts.fgmp_bench`; on a user's network,
``sparta measure fgmp --network-file``, :mod:`scripts.user_network`): :func:`train_fgmp` trains
with :class:`sim.nn.backend.FgmpBackend` and its controller, keeping the tensors of the steps
asked for; :func:`price_step` / :func:`price_captures` price a captured step with the traffic
model of :mod:`sim.fgmp_traffic` (fp16 against FGMP) and the energy table of
:mod:`sim.fgmp_energy`; :func:`run_network` does all of it, with the FP32 reference run, for a
workload network and returns its ``fgmp_bench.json`` figures.

Gap analysis (``sparta measure fgmp-gap``, :mod:`scripts.fgmp_gap`): :func:`capture_for_gap`
trains once and keeps the tensors and the controller's history; :func:`analyse_gap` splits
every fp16 element moved on the bus by the reason the rule of :mod:`sim.fgmp` gave it
(:data:`REASONS`), checks the controller's raises (:func:`control_check`), measures the effect
of flushing the gradients' FP8 underflow (:func:`flush_effect`) and re-prices the step under
alternative policies (:func:`variants`, :func:`price`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from sim.experiments.training import DEFAULTS, workload_config, workload_data
from sim.fgmp import FgmpBlockFormat, code_table, encode_tags, stream_bytes
from sim.fgmp_control import TENSOR_CLASSES, FgmpController, FgmpPolicy
from sim.fgmp_energy import HOROWITZ_45NM, step_energy
from sim.fgmp_traffic import (derived_tensors, gemm_products, shared_tensor_groups,
                              step_accesses, step_traffic)
from sim.formats import E4M3, FP16
from sim.nn import Dataset, Fp32Backend, Network, TrainConfig, train
from sim.nn.backend import FgmpBackend
from sim.nn.train import TrainResult
from sim.numerics import convert, from_float32, to_float32, unpack

__all__ = ["NETS", "TAIL_STEPS", "REASONS", "FP16_REASONS", "PricedStep", "config_for",
           "capture_steps", "load_capture", "thresholds_by_step", "thresholds_of", "train_fgmp",
           "price_step", "price_captures", "per_epoch", "run_network", "model_entry",
           "reason_table", "priced_tensors", "fp16_bits", "breakdown", "price", "variants",
           "probe_errors", "control_check", "flush_effect", "capture_for_gap",
           "gap_history_path", "load_gap_run", "analyse_gap"]

#: The workload networks the FGMP measurement covers.
NETS = ("digits_cnn", "resnet18")
#: Steps before the last one that :func:`capture_for_gap` keeps as well (is the last step
#: typical?).
TAIL_STEPS = 4
#: Why an element is stored as it is (index = code of :func:`reason_table`).
REASONS = ("zero", "fp8_normal", "fp8_subnormal",                 # FP8
           "nan_inf", "overflow", "underflow", "subnormal_error",   # fp16 at the start t
           "raised_t")                                              # fp16 only because t > start
FP16_REASONS = REASONS[3:]

#: ``progress_bar(description)``: a context manager giving the ``progress(done, total)``
#: callback of :func:`sim.nn.train.train` (e.g. ``scripts.progress.bar``), or None.
ProgressBar = Callable[[str], contextlib.AbstractContextManager]


class PricedStep(NamedTuple):
    """A captured training step and its figures (:func:`price_step`)."""
    step: int
    epoch: int
    figures: dict


def _no_bar(description: str):
    return contextlib.nullcontext()


def _quiet(line: str) -> None:
    pass


# -- training measurement ------------------------------------------------------------------------
def config_for(net: str, epochs: int, loss_scale: float | None = None) -> TrainConfig:
    """The training configuration of the workload network ``net`` (as in workloads.json),
    trained ``epochs`` epochs, with another static loss scale if given."""
    overrides = {"epochs": epochs}
    if loss_scale is not None:
        overrides["loss_scale"] = loss_scale
    return workload_config(net, **overrides)


def capture_steps(epochs: int, train_samples: int, batch_size: int) -> list[int]:
    """First step of every epoch and the last step with a whole batch (global 0-based
    indices); the last one is the headline."""
    steps_per_epoch = -(-train_samples // batch_size)
    last = epochs * steps_per_epoch - 1
    if train_samples % batch_size and steps_per_epoch > 1:
        last -= 1
    return sorted({e * steps_per_epoch for e in range(epochs)} | {last})


def load_capture(path) -> tuple[dict, dict]:
    """``(meta, tensors)`` of a step captured by :func:`sim.nn.train.train`."""
    with np.load(path) as archive:
        meta = json.loads(str(archive["meta"]))
        tensors = {key: archive[key] for key in archive.files if key != "meta"}
    return meta, tensors


def thresholds_by_step(history: list[dict]) -> dict:
    """``{(layer, step): {class: t}}`` from a controller's history."""
    return {(entry["layer"], entry["step"]): entry["t"] for entry in history}


def thresholds_of(history: list[dict], step: int):
    """``threshold(layer, cls)`` of ``step`` from a controller's history."""
    table = thresholds_by_step(history)
    return lambda layer, cls: table[(layer, step)][cls]


def train_fgmp(config: TrainConfig, data: Dataset, *, policy: FgmpPolicy,
               network: Network | None = None, capture_dir=None, capture_steps=(),
               log: Callable[[str], None] | None = None,
               progress: Callable[[int, int], None] | None = None
               ) -> tuple[TrainResult, FgmpController]:
    """Train with FGMP numerics (``network``, trained in place, or ``config``'s built-in
    network), the thresholds of layers that share a stored tensor tied; returns the result
    and the controller, flushed (its ``history`` has the ``t`` of every layer, class and
    step)."""
    groups = shared_tensor_groups(config.build() if network is None else network)
    backend = FgmpBackend(policy=policy, groups=groups)
    result = train(config, backend, data, network=network, capture_dir=capture_dir,
                   capture_steps=capture_steps, log=log, progress=progress)
    backend.controller.flush()
    return result, backend.controller


def price_step(net, tensors: dict, step: int, *, policy: FgmpPolicy, thresholds: dict,
               block_format: FgmpBlockFormat) -> dict:
    """Traffic, products and energy of one captured step (``thresholds`` as
    :func:`thresholds_by_step` gives them)."""
    def threshold(layer, cls):
        return thresholds[(layer, step)][cls]

    traffic = step_traffic(net, tensors, formats=policy.format_of, threshold=threshold,
                           block=block_format, flush_underflow=policy.flushes)
    products = gemm_products(net, tensors, formats=policy.format_of, threshold=threshold,
                             flush_underflow=policy.flushes)
    dense = {"fp8_fp8": 0, "fp8_fp16": 0, "fp16_fp16": products["macs"],
             "macs": products["macs"]}
    return {"traffic": traffic, "products": products,
            "energy_fp16": step_energy(products=dense, dram_bytes=traffic["bytes_fp16"]),
            "energy_fgmp": step_energy(products=products, dram_bytes=traffic["bytes_fgmp"])}


def price_captures(net, paths, *, policy: FgmpPolicy, history: list[dict],
                   block_format: FgmpBlockFormat) -> list[PricedStep]:
    """:func:`price_step` of every captured step in ``paths``, with the thresholds of the
    controller ``history`` of the run."""
    thresholds = thresholds_by_step(history)
    priced = []
    for path in paths:
        meta, tensors = load_capture(path)
        figures = price_step(net, tensors, meta["step"], policy=policy, thresholds=thresholds,
                             block_format=block_format)
        priced.append(PricedStep(meta["step"], meta["epoch"], figures))
    return priced


def per_epoch(history: list[dict], steps_per_epoch: int, epochs: int, field: str) -> dict:
    """``{layer: {class: [mean over each epoch's steps]}}`` of a history field."""
    sums: dict = {}
    for entry in history:
        epoch = entry["step"] // steps_per_epoch
        if epoch >= epochs:
            continue
        for cls, value in entry[field].items():
            if value is None:
                continue
            cell = sums.setdefault(entry["layer"], {}).setdefault(cls, [[0.0, 0] for _ in
                                                                        range(epochs)])
            cell[epoch][0] += value
            cell[epoch][1] += 1
    return {layer: {cls: [round(s / n, 6) if n else None for s, n in cells]
                    for cls, cells in by_class.items()}
            for layer, by_class in sums.items()}


def run_network(net: str, *, epochs: int, policy: FgmpPolicy, block_format: FgmpBlockFormat,
                capture_root, loss_scale: float | None = None,
                train_samples: int | None = None, log: Callable[[str], None] | None = None,
                progress_bar: ProgressBar | None = None) -> dict:
    """Train the workload network ``net`` with FGMP numerics and in FP32 (same seed, samples
    and dropout masks), capture under ``capture_root`` the steps of :func:`capture_steps` and
    price them; the figures of the last one are the headline.

    Returns the network's entry of ``fgmp_bench.json`` (see :func:`model_entry` for what the
    figures mean), among them ``fp8_share_over_training`` and ``t_over_training`` (per layer,
    class and epoch). ``log`` gets progress lines; ``progress_bar(description)`` wraps each
    training run (see :data:`ProgressBar`).
    """
    log = log or _quiet
    progress_bar = progress_bar or _no_bar
    config = config_for(net, epochs, loss_scale)
    data = workload_data(net, train_samples)
    steps_per_epoch = -(-len(data.x_train) // config.batch_size)
    steps = capture_steps(epochs, len(data.x_train), config.batch_size)
    network = config.build()
    with progress_bar(f"{net}, FGMP numerics: training steps") as progress:
        fgmp, controller = train_fgmp(config, data, policy=policy, capture_dir=capture_root,
                                      capture_steps=steps, log=log, progress=progress)
    with progress_bar(f"{net}, FP32: training steps") as progress:
        fp32 = train(config, Fp32Backend(), data, log=log, progress=progress)
    priced = price_captures(network, fgmp.captures, policy=policy, history=controller.history,
                            block_format=block_format)
    for step, _, figures in priced:
        traffic = figures["traffic"]
        log(f"[{net}] step {step}: traffic fp16 {traffic['bytes_fp16']} B, FGMP "
            f"{traffic['bytes_fgmp']} B ({100 * traffic['reduction']:.2f} % less), FP8 share "
            f"{traffic['fp8_share']:.4f}")
    step, epoch, last = priced[-1]
    traffic = last["traffic"]
    e16, e8 = last["energy_fp16"], last["energy_fgmp"]
    with_optimizer = 1 - ((traffic["bytes_fgmp"] + traffic["optimizer_fp32_bytes"]) /
                          (traffic["bytes_fp16"] + traffic["optimizer_fp32_bytes"]))
    final_t = {}
    for entry in controller.history:
        final_t.setdefault(entry["layer"], {}).update(entry["t"])
    return {
        "bytes_fp16": traffic["bytes_fp16"],
        "bytes_fgmp": traffic["bytes_fgmp"],
        "traffic_reduction_percent": round(100 * traffic["reduction"], 3),
        "fp8_share": round(traffic["fp8_share"], 6),
        "test_accuracy_fgmp": fgmp.test_accuracy,
        "test_accuracy_fp32": fp32.test_accuracy,
        "accuracy_gap_points": round(100 * (fp32.test_accuracy - fgmp.test_accuracy), 4),
        "energy_pj_fp16": round(e16["total_pj"], 1),
        "energy_pj_fgmp": round(e8["total_pj"], 1),
        "energy_efficiency_ratio": round(e16["total_pj"] / e8["total_pj"], 4),
        "energy_breakdown_pj": {"fp16": {k: round(v, 1) for k, v in e16.items()},
                                "fgmp": {k: round(v, 1) for k, v in e8.items()}},
        "products": last["products"],
        "traffic_step": step,
        "traffic_step_epoch": epoch,
        "traffic_by_class": traffic["by_class"],
        "traffic_by_direction": traffic["by_direction"],
        "optimizer_fp32_bytes": traffic["optimizer_fp32_bytes"],
        "traffic_reduction_with_optimizer_percent": round(100 * with_optimizer, 3),
        "traffic_reduction_mean_over_training_percent": round(100 * (1 - sum(
            f["traffic"]["bytes_fgmp"] for _, _, f in priced) / sum(
            f["traffic"]["bytes_fp16"] for _, _, f in priced)), 3),
        "traffic_over_training": [
            {"step": s, "epoch": e, "bytes_fp16": f["traffic"]["bytes_fp16"],
             "bytes_fgmp": f["traffic"]["bytes_fgmp"],
             "reduction_percent": round(100 * f["traffic"]["reduction"], 3),
             "fp8_share": round(f["traffic"]["fp8_share"], 6),
             "energy_ratio": round(f["energy_fp16"]["total_pj"] / f["energy_fgmp"]["total_pj"],
                                   4)}
            for s, e, f in priced],
        "stored_tensors_last_step": [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in entry.items()}
            for entry in traffic["tensors"]],
        "fp8_share_over_training": per_epoch(controller.history, steps_per_epoch, epochs,
                                             "fp8_share"),
        "t_over_training": per_epoch(controller.history, steps_per_epoch, epochs, "t"),
        "t_final": final_t,
        "t_decisions": controller.decisions,
        "curve": {"epoch": fgmp.curve["epoch"],
                  "test_accuracy_fgmp": [round(v, 6) for v in fgmp.curve["test_accuracy"]],
                  "test_accuracy_fp32": [round(v, 6) for v in fp32.curve["test_accuracy"]]},
        "epochs": epochs,
        "train_samples": len(data.x_train),
        "config": dataclasses.asdict(config),
        "policy": dataclasses.asdict(policy),
        "block_format": dataclasses.asdict(block_format),
        "wall_time_s": {"fgmp": round(fgmp.wall_time_s, 1), "fp32": round(fp32.wall_time_s, 1)},
    }


def model_entry() -> dict:
    """What the figures of :func:`run_network` mean (the ``model`` entry of fgmp_bench.json)."""
    return {
        "energy_table_pj": dataclasses.asdict(HOROWITZ_45NM),
        "tensor_classes": list(TENSOR_CLASSES),
        "units": "bytes per training step on the DRAM bus (traffic model of docs/fgmp.md); "
                 "energies in pJ per training step; accuracies are fractions of the 360-image "
                 "test set; accuracy_gap_points = 100 * (fp32 - fgmp)",
        "headline_step": "the last training step with a whole batch (tensors of the trained "
                         "network); traffic_over_training lists the first step of every epoch",
    }


# -- gap analysis: why elements stay fp16 --------------------------------------------------------
def reason_table(fmt8, t: int, t_start: int) -> np.ndarray:
    """Reason code (index into :data:`REASONS`) of every fp16 code under the rule at ``t``."""
    codes = FP16.all_codes()
    y = convert(FP16, fmt8, codes, saturate=False)
    _, x_sig, _, x_nan, x_inf = unpack(FP16, codes)
    _, y_sig, y_exp, y_nan, y_inf = unpack(fmt8, y)
    # x below the FP8 normal range (its FP8 value is a subnormal, or 2**emin after rounding)
    y_subnormal = _below_normal(codes, fmt8)
    tag = encode_tags(codes, fmt8, t)
    tag_start = encode_tags(codes, fmt8, t_start)
    x_zero = (x_sig == 0) & ~x_nan & ~x_inf
    out = np.full(codes.size, -1, dtype=np.int8)
    out[tag & x_zero] = 0
    out[tag & ~x_zero & ~y_subnormal] = 1
    out[tag & ~x_zero & y_subnormal] = 2
    fp16 = ~tag
    out[fp16 & (x_nan | x_inf)] = 3
    out[fp16 & ~x_nan & ~x_inf & (y_nan | y_inf)] = 4
    out[fp16 & ~x_nan & ~x_inf & ~y_nan & ~y_inf & (y_sig == 0)] = 5
    rest = fp16 & (out < 0)
    out[rest & ~tag_start] = 6       # fails at the start threshold: an FP8 subnormal
    out[rest & tag_start] = 7        # would be FP8 at the start threshold
    assert not np.any(rest & ~tag_start & ~y_subnormal), "an FP8 normal fails at t_start"
    assert np.all(out >= 0)
    return out


def _below_normal(bits: np.ndarray, fmt8) -> np.ndarray:
    """Finite fp16 values below the FP8 format's smallest normal (2**emin), zeros excluded."""
    _, x_sig, x_exp, x_nan, x_inf = unpack(FP16, bits)
    magnitude = x_sig.astype(np.float64) * np.exp2(x_exp.astype(np.float64))
    return (x_sig != 0) & ~x_nan & ~x_inf & (magnitude < 2.0 ** fmt8.emin)


def priced_tensors(net, tensors: dict) -> list[dict]:
    """The stored tensors of a step with their access counts (as :func:`step_traffic`)."""
    values = dict(tensors)
    values.update(derived_tensors(net, tensors))
    out: dict = {}
    for access in step_accesses(net):
        key = (access.tensor, access.cls, access.owner)
        if key not in out:
            out[key] = {"tensor": access.tensor, "cls": access.cls, "owner": access.owner,
                        "values": values[access.tensor], "accesses": 0}
        out[key]["accesses"] += 1
    return list(out.values())


def fp16_bits(values: np.ndarray) -> np.ndarray:
    """fp16 bit patterns of float values (no saturation)."""
    return from_float32(FP16, np.ascontiguousarray(values, dtype=np.float32), saturate=False)


def breakdown(net, tensors: dict, policy: FgmpPolicy, threshold) -> list[dict]:
    """Elements moved per reason, per class and per stored tensor (each element counted once
    per access), and the bytes the fp16 ones cost."""
    rows = []
    for entry in priced_tensors(net, tensors):
        if entry["cls"] == "fp32":
            continue
        cls, owner = entry["cls"], entry["owner"]
        fmt8 = policy.format_of(cls)
        t = threshold(owner, cls)
        table = reason_table(fmt8, t, policy.start(cls))
        counts = np.bincount(table[fp16_bits(entry["values"]).ravel()], minlength=len(REASONS))
        rows.append({"tensor": entry["tensor"], "class": cls, "owner": owner, "t": t,
                     "accesses": entry["accesses"], "elements": int(entry["values"].size),
                     **{r: int(c) for r, c in zip(REASONS, counts)}})
    return rows


def price(net, tensors: dict, tags_of, block: FgmpBlockFormat) -> dict:
    """Bytes of one step when ``tags_of(entry, fp16 bits)`` gives each stored tensor's tags."""
    total = {"fp16": 0, "fgmp": 0}
    by_class: dict = {}
    for entry in priced_tensors(net, tensors):
        n = int(entry["values"].size)
        if entry["cls"] == "fp32":
            fp16 = fgmp = block.padded(4 * n)
        else:
            fp16 = block.padded(2 * n)
            fgmp = stream_bytes(tags_of(entry, fp16_bits(entry["values"])), block)
        cell = by_class.setdefault(entry["cls"], {"fp16": 0, "fgmp": 0})
        for scheme, nbytes in (("fp16", fp16), ("fgmp", fgmp)):
            total[scheme] += nbytes * entry["accesses"]
            cell[scheme] += nbytes * entry["accesses"]
    return {"bytes_fp16": total["fp16"], "bytes_fgmp": total["fgmp"],
            "reduction_percent": 100 * (1 - total["fgmp"] / total["fp16"]),
            "by_class_percent": {cls: 100 * (1 - c["fgmp"] / c["fp16"])
                                 for cls, c in by_class.items()}}


def variants(policy: FgmpPolicy, threshold, gradient_amax: float) -> dict:
    """Alternative policies priced on the same tensors: ``name -> (what, tags_of)``."""
    def rule(entry, bits, *, t=None, flush=()):
        cls = entry["cls"]
        t = threshold(entry["owner"], cls) if t is None else t
        return code_table(policy.format_of(cls), t, flush_underflow=cls in flush)[0][bits]

    def as_run(entry, bits):
        return rule(entry, bits)

    def start_t(entry, bits):
        return rule(entry, bits, t=policy.start(entry["cls"]))

    def flush(classes, start=False):
        def tags(entry, bits):
            t = policy.start(entry["cls"]) if start else None
            return rule(entry, bits, t=t, flush=classes)
        return tags

    def subnormals_free(classes, base=as_run):
        def tags(entry, bits):
            out = base(entry, bits)
            if entry["cls"] in classes:
                fmt8 = policy.format_of(entry["cls"])
                out = out | _below_normal(bits, fmt8)
            return out
        return tags

    def scaled(k, base=as_run):
        def tags(entry, bits):
            if entry["cls"] == "gradient":
                bits = fp16_bits(entry["values"] * np.float32(2.0 ** k))
            return base(entry, bits)
        return tags

    def amax_scaled(margin, base=as_run, amax=None):
        def tags(entry, bits):
            if entry["cls"] == "gradient":
                fmt8 = policy.format_of("gradient")
                top = amax if amax is not None else float(np.max(np.abs(entry["values"])))
                k = int(np.floor(np.log2(fmt8.max_finite / top))) - margin if top else 0
                bits = fp16_bits(entry["values"] * np.float32(2.0 ** k))
            return base(entry, bits)
        return tags

    def gradient_e4m3(entry, bits):
        if entry["cls"] == "gradient":
            return code_table(E4M3, E4M3.man_bits + 1)[0][bits]
        return as_run(entry, bits)

    grad = ("gradient",)
    every = ("weight", "activation", "gradient")
    return {
        "as_run": ("the run's rule and thresholds", as_run),
        "start_t": ("every t at its start value (no raise by the control)", start_t),
        "flush_gradient": ("gradients: FP8 underflow stored as an FP8 zero", flush(grad)),
        "flush_all": ("every class: FP8 underflow stored as an FP8 zero", flush(every)),
        "flush_gradient_start_t": ("flush_gradient and start_t", flush(grad, start=True)),
        "subnormal_gradient": ("gradients: every value below the FP8 normal range is FP8 "
                               "(subnormal or zero, t applies to normals only)",
                               subnormals_free(grad)),
        "subnormal_all": ("every class: as subnormal_gradient", subnormals_free(every)),
        **{f"gradient_x{2 ** k}": (f"gradients scaled by 2**{k} (a {2 ** k}x larger loss "
                                   f"scale on the same tensors)", scaled(k))
           for k in (1, 2, 3, 4, 5, 7, 10)},
        "gradient_global_amax": (f"every gradient tensor scaled by one power of two, the "
                                 f"largest that keeps the step's largest gradient "
                                 f"({gradient_amax:g}) below the FP8 maximum (what a dynamic "
                                 f"loss scale would reach)", amax_scaled(0, amax=gradient_amax)),
        "gradient_amax": ("each gradient tensor scaled by a power of two so that its largest "
                          "magnitude is just below the FP8 maximum", amax_scaled(0)),
        "gradient_amax_margin1": ("as gradient_amax, one binade of headroom", amax_scaled(1)),
        "gradient_e4m3": ("gradients in e4m3 at t = 4", gradient_e4m3),
    }


def _values(bits: np.ndarray) -> np.ndarray:
    return to_float32(FP16, bits).astype(np.float64)


def _rel(got, reference) -> float:
    scale = float(np.linalg.norm(reference))
    return float(np.linalg.norm(got - reference)) / scale if scale else 0.0


def probe_errors(net, tensors: dict, policy: FgmpPolicy, t_of) -> dict:
    """The control's error signal on a captured step: per layer and class, the worst relative
    GEMM-output error with that operand alone through FGMP at ``t_of(layer, cls)`` (float64
    products, both-fp16 reference), as :class:`sim.nn.backend.FgmpBackend` reports it."""
    def quantized(bits, layer, cls):
        return _values(code_table(policy.format_of(cls), t_of(layer, cls))[2][bits])

    out = {}
    for layer in net.weight_layers():
        name = layer.name
        x_bits = fp16_bits(tensors[f"{name}/input"])
        cols_bits = layer._columns(x_bits)
        w_bits = fp16_bits(tensors[f"{name}/weight"])
        dy_bits = fp16_bits(tensors[f"{name}/grad_output"]).reshape(cols_bits.shape[0], -1)
        cols, w, dy = _values(cols_bits), _values(w_bits), _values(dy_bits)
        cols_q = quantized(cols_bits, name, "activation")
        w_q = quantized(w_bits, name, "weight")
        dy_q = quantized(dy_bits, name, "gradient")
        forward, weight_grad = cols @ w, cols.T @ dy
        act = max(_rel(cols_q @ w, forward), _rel(cols_q.T @ dy, weight_grad))
        wgt = [_rel(cols @ w_q, forward)]
        grad = [_rel(cols.T @ dy_q, weight_grad)]
        if layer.spec.input_grad:
            backward = dy @ w.T
            wgt.append(_rel(dy @ w_q.T, backward))
            grad.append(_rel(dy_q @ w.T, backward))
        dw_bits = fp16_bits(weight_grad.astype(np.float32))
        grad.append(_rel(quantized(dw_bits, name, "gradient"), weight_grad))
        out[name] = {"activation": act, "weight": max(wgt), "gradient": max(grad)}
    return out


def _underflows(bits: np.ndarray, fmt8) -> np.ndarray:
    """Elements the rule stores as fp16 only because their FP8 value is a zero."""
    flushed = code_table(fmt8, 0, flush_underflow=True)[0]
    return (flushed & ~code_table(fmt8, 0)[0])[bits]


def control_check(net, tensors: dict, policy: FgmpPolicy, threshold) -> list[dict]:
    """For every layer and class whose ``t`` the control raised: the error signal of the step
    at the start ``t`` and at the raised ``t``, against the class budget."""
    at_start = probe_errors(net, tensors, policy, lambda layer, cls: policy.start(cls))
    at_run = probe_errors(net, tensors, policy, threshold)
    return [{"layer": layer, "class": cls, "t": threshold(layer, cls),
             "t_start": policy.start(cls), "budget": policy.budget(cls),
             "error_at_start": round(at_start[layer][cls], 4),
             "error_at_t": round(at_run[layer][cls], 4)}
            for layer in at_run for cls in at_run[layer]
            if threshold(layer, cls) > policy.start(cls)]


def flush_effect(net, tensors: dict, labels, policy: FgmpPolicy) -> dict:
    """What storing the gradients' FP8 underflow as zeros changes, per layer: the share of dY
    elements concerned, and the relative change of the weight gradient ``X^T dY`` and the input
    gradient ``dY W^T`` (float64 products of the fp16 values); and how the underflows spread
    over the samples of the batch by their loss."""
    fmt8 = policy.format_of("gradient")
    layers = net.weight_layers()
    logits = tensors[f"{layers[-1].name}/output"].astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(len(labels)), np.asarray(labels)]
    confident = loss < 1e-3
    per_layer = {}
    under_total = under_confident = 0
    for layer in layers:
        name = layer.name
        cols = _values(layer._columns(fp16_bits(tensors[f"{name}/input"])))
        dy_bits = fp16_bits(tensors[f"{name}/grad_output"])
        under = _underflows(dy_bits, fmt8)
        per_sample = under.reshape(under.shape[0], -1).sum(axis=1)
        under_total += int(per_sample.sum())
        under_confident += int(per_sample[confident].sum())
        dy = _values(dy_bits).reshape(cols.shape[0], -1)
        flushed = np.where(under.reshape(dy.shape), 0.0, dy)
        row = {"underflow_share": round(float(under.mean()), 4),
               "weight_grad_change": float(f"{_rel(cols.T @ flushed, cols.T @ dy):.3g}")}
        if layer.spec.input_grad:
            w = _values(fp16_bits(tensors[f"{name}/weight"]))
            row["input_grad_change"] = float(f"{_rel(flushed @ w.T, dy @ w.T):.3g}")
        per_layer[name] = row
    return {"layers": per_layer,
            "samples_with_loss_below_1e-3": int(confident.sum()), "batch": int(loss.size),
            "underflows_in_those_samples": round(under_confident / under_total, 4)
            if under_total else None}


def gap_history_path(root: Path, net: str) -> Path:
    """Where :func:`capture_for_gap` keeps the run of ``net`` (its tensors are beside it,
    under ``fgmp/``)."""
    return Path(root) / net / "fgmp_history.json"


def capture_for_gap(net: str, root, *, epochs: int | None = None,
                    train_samples: int | None = None, log: Callable[[str], None] | None = None,
                    progress_bar: ProgressBar | None = None) -> tuple[Path, dict]:
    """Train the workload network ``net`` with ``FgmpPolicy()`` (no flush), keep under
    ``root`` the tensors of the steps of :func:`capture_steps` and of the :data:`TAIL_STEPS`
    before the last, and the controller's history (``epochs`` and ``train_samples`` shorten
    the run, for smoke tests). Returns the path of the run's file and its content."""
    progress_bar = progress_bar or _no_bar
    config = config_for(net, epochs or DEFAULTS[net]["epochs"])
    data = workload_data(net, train_samples)
    steps = capture_steps(config.epochs, len(data.x_train), config.batch_size)
    last = steps[-1]
    steps = sorted(set(steps) | set(range(max(0, last - TAIL_STEPS), last)))
    start = time.perf_counter()
    with progress_bar(f"{config.net}: training steps") as progress:
        result, controller = train_fgmp(config, data, policy=FgmpPolicy(), capture_dir=root,
                                        capture_steps=steps, log=log, progress=progress)
    run = {"history": controller.history, "decisions": controller.decisions,
           "test_accuracy": result.test_accuracy, "curve": result.curve,
           "captures": result.captures, "last_step": last, "epochs": config.epochs,
           "wall_time_s": round(time.perf_counter() - start, 1)}
    path = gap_history_path(root, net)
    path.write_text(json.dumps(run, indent=1))
    return path, run


def load_gap_run(root, net: str) -> dict:
    """The run :func:`capture_for_gap` kept under ``root`` (FileNotFoundError if none)."""
    path = gap_history_path(root, net)
    if not path.exists():
        raise FileNotFoundError(f"no capture of {net} under {root}")
    return json.loads(path.read_text())


def analyse_gap(net_name: str, root, step: int | None = None,
                block: FgmpBlockFormat = FgmpBlockFormat(), *, run: dict | None = None) -> dict:
    """The gap report of a step captured by :func:`capture_for_gap` (default: the last one):
    its traffic, the fp16 elements by class and reason (in points of traffic reduction: each
    costs one byte more than an FP8 one), the :func:`variants` priced on its tensors, the
    :func:`control_check` and the :func:`flush_effect`; ``run`` is the captured run if already
    loaded (:func:`load_gap_run`)."""
    root = Path(root)
    run = load_gap_run(root, net_name) if run is None else run
    policy = FgmpPolicy()
    network = config_for(net_name, run["epochs"]).build()
    step = run["last_step"] if step is None else step
    meta, tensors = load_capture(str(root / net_name / "fgmp" / f"step_{step:06d}.npz"))
    threshold = thresholds_of(run["history"], step)
    reference = step_traffic(network, tensors, formats=policy.format_of, threshold=threshold,
                             block=block)
    rows = breakdown(network, tensors, policy, threshold)
    fp16_total = reference["bytes_fp16"]
    by_class: dict = {}
    for row in rows:
        cell = by_class.setdefault(row["class"], {r: 0 for r in REASONS})
        for r in REASONS:
            cell[r] += row[r] * row["accesses"]
    points = {cls: {r: round(100 * cell[r] / fp16_total, 3) for r in FP16_REASONS}
              for cls, cell in by_class.items()}
    priced = {}
    gradient_amax = max(float(np.max(np.abs(e["values"]))) for e in
                        priced_tensors(network, tensors) if e["cls"] == "gradient")
    for name, (what, tags_of) in variants(policy, threshold, gradient_amax).items():
        figures = price(network, tensors, tags_of, block)
        priced[name] = {"what": what, "reduction_percent": round(figures["reduction_percent"], 3),
                        "by_class_percent": {k: round(v, 3) for k, v in
                                             figures["by_class_percent"].items()}}
    assert priced["as_run"]["reduction_percent"] == round(100 * reference["reduction"], 3)
    return {"test_accuracy_fgmp": run["test_accuracy"],
            "step": step, "epoch": meta["epoch"], "bytes_fp16": fp16_total,
            "bytes_fgmp": reference["bytes_fgmp"],
            "reduction_percent": round(100 * reference["reduction"], 3),
            "ceiling_percent": round(100 * (1 - (block.tag_bytes + block.block) /
                                            (2 * block.block)), 3),
            "fp16_elements_moved_points": points,
            "elements_moved_by_class": by_class,
            "variants": priced,
            "raised_t_check": control_check(network, tensors, policy, threshold),
            "flush_gradient_effect": flush_effect(network, tensors, meta["labels"], policy),
            "tensors": rows}

