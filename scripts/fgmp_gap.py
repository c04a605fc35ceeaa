"""Where FGMP's FP8 share goes: per class and layer, why elements of a step stay fp16.

    python -m scripts.fgmp_gap capture --net resnet18         # train once, keep the tensors
    python -m scripts.fgmp_gap analyse --net resnet18         # offline, seconds
    python -m scripts.fgmp_gap analyse --net resnet18 --record    # -> docs/results/fgmp_gap.json

``capture`` trains a network with FGMP numerics exactly as ``scripts.fgmp_bench
--flush-underflow ''`` does (same configuration and seed, the policy ``FgmpPolicy()`` without
the gradient flush that the bench now sets by default: this is the analysis that led to it;
the FP32 reference run is skipped) and keeps, under
``--capture-dir`` (default ``~/.cache/sparta/fgmp_gap``), the tensors of the steps that
fgmp_bench prices plus the last steps of the run, and the controller's history (the ``t`` of
every layer and class in every step).

``analyse`` prices a captured step with the traffic model of :mod:`sim.fgmp_traffic` and
splits every fp16 element moved on the bus by the reason the rule of :mod:`sim.fgmp` gave it
(FP8 overflow, underflow below the FP8 format's smallest subnormal, a value below the FP8
normal range whose FP8 value errs by more than ``2**-t``, a value that would be FP8 at the
start threshold but not at the ``t`` the controller raised, NaN or infinity), per tensor class
and per stored tensor, in points of traffic reduction (each fp16 element costs one byte more
than an FP8 one). It checks the controller's raises on the step (the error signal at the start
``t`` against the budget), measures what flushing the gradients' FP8 underflow to zero does to
the weight and input gradients, and where those underflows come from (the per-sample loss).
It then re-prices the same tensors under alternative policies (see
``variants``): what-if figures for the traffic, not for the training (a policy that changes
the numerics has to be trained end to end with ``scripts.fgmp_bench``).
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

from scripts.fgmp_bench import NETS, capture_steps, config_for  # noqa: E402
from scripts.progress import bar  # noqa: E402
from scripts.results import record  # noqa: E402
from scripts.train import DEFAULTS, UPSAMPLE  # noqa: E402
from sim.fgmp import FgmpBlockFormat, code_table, encode_tags, stream_bytes  # noqa: E402
from sim.fgmp_control import FgmpPolicy  # noqa: E402
from sim.fgmp_traffic import (derived_tensors, shared_tensor_groups, step_accesses,  # noqa: E402
                              step_traffic)
from sim.formats import E4M3, FP16  # noqa: E402
from sim.numerics import convert, from_float32, to_float32, unpack  # noqa: E402
from sim.nn import load_digits_split, train  # noqa: E402
from sim.nn.backend import FgmpBackend  # noqa: E402

DEFAULT_CAPTURE_DIR = Path("~/.cache/sparta/fgmp_gap")
#: Steps before the last one that ``capture`` keeps as well (is the last step typical?).
TAIL_STEPS = 4


def _history_path(root: Path, net: str) -> Path:
    return root / net / "fgmp_history.json"


def capture(net: str, root: Path, log, *, epochs: int | None = None,
            train_samples: int | None = None) -> None:
    """Train ``net`` with ``FgmpPolicy()`` (no flush), keep tensors and thresholds under ``root``
    (``epochs`` and ``train_samples`` shorten the run, for smoke tests)."""
    config = config_for(net, epochs or DEFAULTS[net]["epochs"])
    data = load_digits_split(upsample=UPSAMPLE[net])
    if train_samples is not None:
        data = dataclasses.replace(data, x_train=data.x_train[:train_samples],
                                   y_train=data.y_train[:train_samples])
    steps = capture_steps(config.epochs, len(data.x_train), config.batch_size)
    last = steps[-1]
    steps = sorted(set(steps) | set(range(max(0, last - TAIL_STEPS), last)))
    network = config.build()
    policy = FgmpPolicy()
    backend = FgmpBackend(policy=policy, groups=shared_tensor_groups(network))
    start = time.perf_counter()
    with bar(f"{config.net}: training steps") as progress:
        result = train(config, backend, data, capture_dir=root, capture_steps=steps, log=log,
                       progress=progress)
    backend.controller.flush()
    path = _history_path(root, net)
    path.write_text(json.dumps({
        "history": backend.controller.history, "decisions": backend.controller.decisions,
        "test_accuracy": result.test_accuracy, "curve": result.curve,
        "captures": result.captures, "last_step": last, "epochs": config.epochs,
        "wall_time_s": round(time.perf_counter() - start, 1)}, indent=1))
    log(f"[{net}] test accuracy {result.test_accuracy:.4f}; wrote {path}")


#: Why an element is stored as it is (index = code of :func:`reason_table`).
REASONS = ("zero", "fp8_normal", "fp8_subnormal",                 # FP8
           "nan_inf", "overflow", "underflow", "subnormal_error",   # fp16 at the start t
           "raised_t")                                              # fp16 only because t > start
FP16_REASONS = REASONS[3:]


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


def load_run(root: Path, net: str) -> dict:
    path = _history_path(root, net)
    if not path.exists():
        raise SystemExit(f"no capture of {net} under {root}: run "
                         f"`python -m scripts.fgmp_gap capture --net {net}` first")
    return json.loads(path.read_text())


def load_step(path: str) -> tuple[dict, dict]:
    with np.load(path) as archive:
        meta = json.loads(str(archive["meta"]))
        tensors = {key: archive[key] for key in archive.files if key != "meta"}
    return meta, tensors


def thresholds_of(history: list[dict], step: int):
    table = {(e["layer"], e["step"]): e["t"] for e in history}
    return lambda layer, cls: table[(layer, step)][cls]


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
    return from_float32(FP16, np.ascontiguousarray(values, dtype=np.float32), saturate=False)


def breakdown(net, tensors: dict, policy: FgmpPolicy, threshold) -> dict:
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


def _below_normal(bits: np.ndarray, fmt8) -> np.ndarray:
    """Finite fp16 values below the FP8 format's smallest normal (2**emin), zeros excluded."""
    _, x_sig, x_exp, x_nan, x_inf = unpack(FP16, bits)
    magnitude = x_sig.astype(np.float64) * np.exp2(x_exp.astype(np.float64))
    return (x_sig != 0) & ~x_nan & ~x_inf & (magnitude < 2.0 ** fmt8.emin)


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


def analyse(net_name: str, root: Path, step: int | None, block: FgmpBlockFormat) -> dict:
    run = load_run(root, net_name)
    policy = FgmpPolicy()
    network = config_for(net_name, run["epochs"]).build()
    step = run["last_step"] if step is None else step
    path = root / net_name / "fgmp" / f"step_{step:06d}.npz"
    meta, tensors = load_step(str(path))
    threshold = thresholds_of(run["history"], step)
    reference = step_traffic(network, tensors, formats=policy.format_of, threshold=threshold,
                             block=block)
    rows = breakdown(network, tensors, policy, threshold)
    fp16_total = reference["bytes_fp16"]
    # every fp16 element costs one byte more than an FP8 one (padding aside)
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
    controls = control_check(network, tensors, policy, threshold)
    flushing = flush_effect(network, tensors, meta["labels"], policy)
    return {"capture": f"python -m scripts.fgmp_gap capture --net {net_name}",
            "reproduce": f"python -m scripts.fgmp_gap analyse --net {net_name}"
                         + ("" if step == run["last_step"] else f" --step {step}"),
            "test_accuracy_fgmp": run["test_accuracy"],
            "step": step, "epoch": meta["epoch"], "bytes_fp16": fp16_total,
            "bytes_fgmp": reference["bytes_fgmp"],
            "reduction_percent": round(100 * reference["reduction"], 3),
            "ceiling_percent": round(100 * (1 - (block.tag_bytes + block.block) /
                                            (2 * block.block)), 3),
            "fp16_elements_moved_points": points,
            "elements_moved_by_class": by_class,
            "variants": priced, "raised_t_check": controls, "flush_gradient_effect": flushing,
            "tensors": rows}


def print_report(net: str, report: dict) -> None:
    print(f"{net}, step {report['step']} (epoch {report['epoch']}): reduction "
          f"{report['reduction_percent']:.2f} % (ceiling {report['ceiling_percent']:.2f} %)")
    print("points of reduction lost to fp16 elements, by class and reason:")
    print(f"  {'class':11s}" + "".join(f"{r:>17s}" for r in FP16_REASONS))
    for cls, cell in report["fp16_elements_moved_points"].items():
        print(f"  {cls:11s}" + "".join(f"{cell[r]:17.3f}" for r in FP16_REASONS))
    print("stored tensors with fp16 elements (elements x accesses, by reason):")
    rows = sorted(report["tensors"], key=lambda r: -sum(r[x] for x in FP16_REASONS) *
                  r["accesses"])
    for row in rows[:25]:
        fp16 = sum(row[x] for x in FP16_REASONS)
        if not fp16:
            continue
        print(f"  {row['tensor']:32s} {row['class']:10s} t={row['t']:2d} x{row['accesses']} "
              f"FP8 {1 - fp16 / row['elements']:.3f} "
              + " ".join(f"{r}={row[r]}" for r in FP16_REASONS if row[r]))
    print("variants priced on the same tensors (reduction %, by class):")
    for name, v in report["variants"].items():
        classes = ", ".join(f"{k} {x:.2f}" for k, x in v["by_class_percent"].items()
                            if k != "fp32")
        print(f"  {name:24s} {v['reduction_percent']:7.3f}   ({classes})  {v['what']}")
    print("thresholds the control raised: the step's error signal at the start t and at t:")
    for row in report["raised_t_check"]:
        print(f"  {row['layer']:20s} {row['class']:10s} t {row['t_start']} -> {row['t']}: "
              f"error {row['error_at_start']:.4f} -> {row['error_at_t']:.4f} "
              f"(budget {row['budget']})")
    effect = report["flush_gradient_effect"]
    share = effect["underflows_in_those_samples"]
    print("flushing the gradients' FP8 underflow: " + (
        "no gradient underflows in this step" if share is None else
        f"{share:.1%} of the underflows are in the {effect['samples_with_loss_below_1e-3']} "
        f"of {effect['batch']} samples with a loss below 1e-3") + "; per layer:")
    for name, row in effect["layers"].items():
        print(f"  {name:20s} " + ", ".join(f"{k} {v:g}" for k, v in row.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.fgmp_gap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("capture", "analyse"))
    parser.add_argument("--net", choices=NETS, default="resnet18")
    parser.add_argument("--capture-dir", default=str(DEFAULT_CAPTURE_DIR))
    parser.add_argument("--step", type=int, default=None,
                        help="captured step to analyse (default: the headline, last step)")
    parser.add_argument("--record", action="store_true",
                        help="analyse: record the report as gap_<net> in "
                             "docs/results/fgmp_gap.json")
    parser.add_argument("--epochs", type=int, default=None,
                        help="capture: training epochs (default: as workloads.json)")
    parser.add_argument("--train-samples", type=int, default=None,
                        help="capture: only the first N training samples (smoke runs)")
    args = parser.parse_args(argv)
    for field in ("epochs", "train_samples"):
        value = getattr(args, field)
        if value is not None and value < 1:
            parser.error(f"--{field.replace('_', '-')} must be >= 1, not {value}")
    root = Path(args.capture_dir).expanduser()
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.mode == "capture":
        capture(args.net, root, log, epochs=args.epochs, train_samples=args.train_samples)
    else:
        block = FgmpBlockFormat()
        report = analyse(args.net, root, args.step, block)
        print_report(args.net, report)
        if args.record:
            path = record("fgmp_gap", {f"gap_{args.net}": report}, writer=__name__,
                          config={"policy": FgmpPolicy(), "block_format": block,
                                  "step": report["step"]})
            print(f"wrote gap_{args.net} in {path}; `sparta report` updates docs/fgmp.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
