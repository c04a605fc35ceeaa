"""AIP (approximate inner products) on the fully connected layers of trained networks: accuracy,
DRAM traffic and MACs of the golden procedure :func:`sim.aip.aip` against dense inference.

For each network (:data:`NETS`):

1. **Training.** The network trains from scratch in FP32 numerics with its workload
   configuration on the training rows minus a validation split
   (:func:`sim.nn.data.validation_split`, 20 %, stratified); the test rows are never seen
   before the final report. Weights are cached as npz: :func:`sim.experiments.training.
   fp32_trained`, the same trained networks as the DrowsyNet study.
2. **Offline.** For each policy of :data:`sim.aip.POLICIES` the compact weights of every
   planned FC layer (:func:`sim.aip.approximate_weights`, budget 1/16 of the layer's fp16
   bytes). The per-output spread ``s_j`` of the approximation error (RMS of approximate minus
   exact pre-activation, dense inputs, up to :data:`CALIBRATION_SAMPLES` training rows) sets
   the thresholds ``t_j = -alpha * s_j`` of the ReLU layers.
3. **Sweep.** Every ``(alpha, top_n)`` of :data:`ALPHAS` x :data:`TOP_NS` runs
   :func:`sim.aip.aip` with the accelerator backend (FP16 operands, FP32 accumulation) on the
   validation rows and on the test rows. Planned layers: every top-level ``Linear`` followed by
   a ReLU (``THRESHOLD``) and the last layer (``TOP_N``; ``top_n = None`` is the last layer
   exact). Layers before the first planned one run once (exact, accel backend).
4. **Choice.** Per policy the point with the fewest FC weight bytes per inference (batch 1) on
   the *validation* rows among those whose validation top-1 accuracy is at most
   :data:`MAX_LOSS_POINTS` below dense; its test figures are the result. ``pareto_test``
   lists the points on the test Pareto curve (FC bytes vs top-1), for the plot only.
   ``chosen_per_layer`` refines the chosen point with one ``alpha`` per ReLU layer (a greedy
   descent on the validation rows, :func:`_refine`) where a network has more than one.

Traffic and MACs are model figures (:func:`traffic`), per inference, at batch 1 and at the
engine's batch ``B`` (:data:`BATCH`), where the exact pass of a batch fetches the union of its
samples' selected weight rows.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from sim.aip import (BIAS_BYTES, POLICIES, WEIGHT_BYTES, AipPlan, aip, aip_rank,
                     approximate_pass, approximate_weights)
from sim.aip_spec import SelectMode
from sim.experiments.training import Fp32Trained, fp32_trained
from sim.fgmp_energy import step_energy
from sim.nn import Linear, Network, ReLU, StepContext, make_backend

__all__ = ["NETS", "ALPHAS", "TOP_NS", "BATCH", "MAX_LOSS_POINTS", "CALIBRATION_SAMPLES",
           "PUBLISHED", "planned_layers", "traffic", "measure_network", "measure_aip"]

#: Networks measured: the workload networks and an MLP on the breast-cancer table.
NETS = ("digits_mlp", "digits_cnn", "vgg_small", "resnet18", "cancer_mlp")
#: Threshold offsets swept: ``t_j = -alpha * s_j`` (0: keep where the approximation is > 0;
#: negative: keep only outputs predicted clearly positive).
ALPHAS = (-3.0, -2.0, -1.5, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
#: Candidates of the last layer swept (those above the class count are dropped; ``None``: the
#: last layer exact).
TOP_NS = (1, 2, 3, 5, None)
#: The engine's batch for the batch figures (a batch's exact pass fetches the union of rows).
BATCH = 32
#: Accuracy loss (top-1, points) allowed on the validation rows for the chosen point.
MAX_LOSS_POINTS = 1.0
#: Training rows used to measure the approximation error spread ``s_j``.
CALIBRATION_SAMPLES = 512
#: AIP's published operating point (VGG-f on ImageNet) for the plot beside ours.
PUBLISHED = {"label": "AIP, published (VGG-f, ImageNet)", "fraction": 1 / 16,
             "dram_access_energy_ratio": 0.52, "top5_loss_points": 2.0,
             "note": "DRAM access energy, which we compare with our DRAM bytes ratio"}

def planned_layers(net: Network) -> dict[str, SelectMode]:
    """The top-level Linear layers AIP runs: those followed by a ReLU (``THRESHOLD``) and the
    last layer (``TOP_N``), in forward order."""
    plans = {}
    for index, layer in enumerate(net.layers):
        if not isinstance(layer, Linear):
            continue
        if index == len(net.layers) - 1:
            plans[layer.name] = SelectMode.TOP_N
        elif isinstance(net.layers[index + 1], ReLU):
            plans[layer.name] = SelectMode.THRESHOLD
    return plans


def _forward(net: Network, x: np.ndarray, backend, start: int, stop: int,
             batch: int = 128) -> np.ndarray:
    ctx = StepContext(backend=backend)
    outputs = []
    for first in range(0, len(x), batch):
        part = x[first:first + batch]
        for layer in net.layers[start:stop]:
            part = layer.forward(part, ctx)
        outputs.append(part)
    return np.concatenate(outputs)


def _error_spread(net: Network, x: np.ndarray, start: int, approx: dict, backend) -> dict:
    """Per planned THRESHOLD layer, ``s_j``: RMS over the rows of ``x`` of approximate minus
    exact pre-activation, dense inputs (float64, non-finite differences ignored), float32."""
    ctx = StepContext(backend=backend)
    spread = {}
    for layer in net.layers[start:]:
        y = layer.forward(x, ctx)
        if layer.name in approx:
            a = approximate_pass(backend, backend.encode(x), approx[layer.name],
                                 layer.params.get("bias"), name=layer.name)
            with np.errstate(all="ignore"):
                error = (a.astype(np.float64) - y) ** 2
            error[~np.isfinite(error)] = np.nan
            rms = np.sqrt(np.nan_to_num(np.nanmean(error, axis=0), nan=0.0))
            spread[layer.name] = rms.astype(np.float32)
        x = y
    return spread


def _groups(samples: int, batch: int) -> list[slice]:
    return [slice(i, min(samples, i + batch)) for i in range(0, samples, batch)]


def traffic(net: Network, keeps: dict, approx: dict, *, samples: int, batch: int) -> dict:
    """Model figures per inference of ``samples`` inferences run in consecutive batches of
    ``batch`` (the last may be smaller), for AIP (``keeps``: planned layer -> keep mask
    ``(samples, n)``, ``approx``: planned layer -> :class:`sim.aip.ApproxWeights`; empty dicts
    for dense):

    * ``fc_weight_bytes``: the Linear layers' DRAM weight bytes: dense ``2 k n`` (fp16) plus
      ``4 n`` (fp32 bias) per batch; planned: compact weights (values + indices) + bias once
      per batch, plus ``2 k`` per weight row in the batch's union of selected outputs;
    * ``dram_bytes``: every weight layer's weight bytes (conv layers dense, per batch) plus
      its fp16 input and output tensors per sample (a conv's stored input, not the im2col
      matrix; an AIP layer's input read once, its full output written; the low-rank
      intermediate and the approximate results stay on chip);
    * ``macs``: as the engine runs them, per sample: dense layers ``outputs x k x n``, planned
      layers the approximate pass (:attr:`sim.aip.ApproxWeights.macs`) plus ``k`` per column
      of the batch's union; ``macs_nonzero`` counts the magnitude policy's approximate pass at
      its kept weights only;
    * ``energy_pj``: a model, :func:`sim.fgmp_energy.step_energy` with the per-op table
      :data:`sim.fgmp_energy.HOROWITZ_45NM`: an fp16 product and an FP32 add per non-zero MAC
      (the zero gate spends nothing on a zero weight), and every DRAM byte with its SRAM write
      and read.
    """
    groups = _groups(samples, batch)
    fc_bytes = dram = macs = nonzero = 0
    for layer in net.weight_layers():
        spec = layer.spec
        k, n = layer.params["weight"].shape
        bias = BIAS_BYTES * n if "bias" in layer.params else 0
        positions = math.prod(spec.out_shape[:-1]) if spec.kind == "conv2d" else 1
        activations = WEIGHT_BYTES * (math.prod(spec.in_shape) + math.prod(spec.out_shape)) \
            * samples
        if layer.name in approx:
            compact, keep = approx[layer.name], keeps[layer.name]
            weights = layer_macs = layer_nonzero = 0
            for group in groups:
                union = int(np.count_nonzero(keep[group].any(axis=0)))
                rows = group.stop - group.start
                weights += compact.weight_bytes + bias + WEIGHT_BYTES * k * union
                layer_macs += rows * (compact.macs + k * union)
                layer_nonzero += rows * (compact.nonzero_macs + k * union)
        else:
            weights = len(groups) * (WEIGHT_BYTES * k * n + bias)
            layer_macs = layer_nonzero = samples * positions * k * n
        if spec.kind == "linear":
            fc_bytes += weights
        dram += weights + activations
        macs += layer_macs
        nonzero += layer_nonzero
    products = nonzero / samples          # the zero gate: a zero weight costs no product
    energy = step_energy(products={"fp8_fp8": 0, "fp8_fp16": 0, "fp16_fp16": products,
                                   "macs": products}, dram_bytes=dram / samples)
    return {"fc_weight_bytes": fc_bytes / samples, "dram_bytes": dram / samples,
            "macs": macs / samples, "macs_nonzero": nonzero / samples,
            "energy_pj": energy["total_pj"]}


def _accuracy(rank: np.ndarray, labels: np.ndarray, classes: int) -> dict:
    top1 = float(np.mean(rank[:, 0] == labels))
    top5 = float(np.mean((rank[:, :5] == labels[:, None]).any(axis=1))) if classes > 5 else None
    return {"top1": top1, "top5": top5}


def _round(value, digits=6):
    return None if value is None else round(value, digits)


def _evaluate(net, x, labels, plans, start, backend, classes, batch):
    """Accuracy and figures of one operating point on one split."""
    result = aip(net, x, plans, backend=backend, start=start)
    last = net.layers[-1].name
    keep = result.keeps.get(last)
    rank = aip_rank(result.output, keep, result.approx.get(last))
    approx = {plan.layer: plan.approx for plan in plans}
    figures = {"accuracy": _accuracy(rank, labels, classes),
               "batch_1": traffic(net, result.keeps, approx, samples=len(x), batch=1),
               f"batch_{batch}": traffic(net, result.keeps, approx, samples=len(x),
                                         batch=batch),
               "kept_fraction": {name: _round(float(keep.mean()))
                                 for name, keep in result.keeps.items()}}
    return figures


def _ratios(point: dict, dense: dict, batch: int, *, absolute: bool = True) -> dict:
    """Per batch size, each figure over dense (and, with ``absolute``, its value per
    inference as ``<figure>_per_inference``)."""
    out = {}
    for size in ("batch_1", f"batch_{batch}"):
        out[size] = {key: _round(point[size][key] / dense[size][key]) for key in point[size]}
        if absolute:
            out[size].update({f"{key}_per_inference": _round(point[size][key], 1)
                              for key in point[size]})
    return out


def _within_loss(point: dict, dense_val: float) -> bool:
    return 100 * (dense_val - point["validation"]["accuracy"]["top1"]) <= MAX_LOSS_POINTS + 1e-9


def _choose(points: list, dense_val: float) -> dict | None:
    """The point with the fewest validation FC weight bytes (batch 1) within the validation
    loss (ties: the higher validation top-1), or None."""
    eligible = [p for p in points if _within_loss(p, dense_val)]
    return min(eligible, key=lambda p: (p["validation"]["batch_1"]["fc_weight_bytes"],
                                        -p["validation"]["accuracy"]["top1"]), default=None)


def _refine(run, chosen: dict, layers: list, alphas, dense_val: float) -> dict:
    """Per-layer offsets from the chosen shared one: layer by layer, in forward order and
    round after round until nothing changes, move one layer's ``alpha`` to the next lower
    value of ``alphas`` when that keeps the validation loss and lowers the validation FC
    bytes (validation rows only); the test rows are run once, on the result."""
    grid = sorted(a for a in alphas if a is not None)
    alpha_of = {name: chosen["alpha"] for name in layers}
    best = {"validation": chosen["validation"]}
    tried = 0
    changed = True
    while changed:
        changed = False
        for name in layers:
            lower = [a for a in grid if a < alpha_of[name]]
            if not lower:
                continue
            candidate = dict(alpha_of, **{name: lower[-1]})
            point = run(candidate, chosen["top_n"], ("validation",))
            tried += 1
            if _within_loss(point, dense_val) and \
                    point["validation"]["batch_1"]["fc_weight_bytes"] < \
                    best["validation"]["batch_1"]["fc_weight_bytes"]:
                alpha_of, best, changed = candidate, point, True
    return {"alphas": alpha_of, "top_n": chosen["top_n"], "validation_points_tried": tried,
            **run(alpha_of, chosen["top_n"])}


def _dominates(q: dict, p: dict) -> bool:
    """``q`` has no more test FC weight bytes (batch 1) and no lower test top-1 than ``p``,
    and is better in one of them (the Pareto curve drawn beside the published point; the
    choice itself uses the validation rows)."""
    qb, pb = q["test"]["batch_1"]["fc_weight_bytes"], p["test"]["batch_1"]["fc_weight_bytes"]
    qa, pa = q["test"]["accuracy"]["top1"], p["test"]["accuracy"]["top1"]
    return qb <= pb and qa >= pa and (qb < pb or qa > pa)


def measure_network(net: str | Fp32Trained, *, quick: bool = False,
                    cache_dir: Path | None = None, policies=POLICIES,
                    log: Callable[[str], None] | None = None) -> dict:
    """The AIP entry of one network (module docstring): dense accuracy and figures, per
    policy the curve of operating points and the chosen one.

    ``net`` is a name of :data:`NETS` (trained by :func:`sim.experiments.training.
    fp32_trained`, ``quick``: 2 epochs) or a network already trained
    (:func:`sim.experiments.training.fp32_train`: a user's); ``quick`` also shortens the
    sweep. Raises ValueError naming the network when it has no layer AIP plans
    (:func:`planned_layers`)."""
    start_time = time.perf_counter()
    trained = net if isinstance(net, Fp32Trained) else \
        fp32_trained(net, cache_dir=cache_dir, quick=quick, log=log)
    network, config, data, fit = trained.network, trained.config, trained.data, trained.fit
    net = network.name
    backend = make_backend("accel")
    modes = planned_layers(network)
    if not modes:
        raise ValueError(f"{net} has no fully connected layer AIP runs (a top-level Linear "
                         f"followed by a ReLU, or a Linear last layer)")
    names = [layer.name for layer in network.layers]
    start = min(names.index(name) for name in modes)
    classes = int(network.layers[-1].out_shape[-1])
    x_cal, x_val, y_val = fit.x_train[:CALIBRATION_SAMPLES], fit.x_test, fit.y_test
    x_test, y_test = data.x_test, data.y_test
    alphas, top_ns = ALPHAS, TOP_NS
    if quick:
        x_cal, alphas, top_ns = x_cal[:64], (0.0, 1.0), (1, None)
        x_val, y_val, x_test, y_test = x_val[:96], y_val[:96], x_test[:96], y_test[:96]
    if not any(mode == SelectMode.THRESHOLD for mode in modes.values()):
        alphas = (None,)
    top_ns = tuple(n for n in top_ns if n is None or n < classes)
    splits = {"validation": (_forward(network, x_val, backend, 0, start), y_val),
              "test": (_forward(network, x_test, backend, 0, start), y_test)}
    thresholded = [name for name, mode in modes.items() if mode == SelectMode.THRESHOLD]
    if not thresholded:                 # no thresholds to calibrate (ResNet-18: one FC layer)
        x_cal = x_cal[:0]
    cal = _forward(network, x_cal, backend, 0, start) if len(x_cal) else None
    dense = {split: _evaluate(network, x, y, [], start, backend, classes, BATCH)
             for split, (x, y) in splits.items()}
    if log:
        log(f"[aip {net}] dense: validation {dense['validation']['accuracy']}, "
            f"test {dense['test']['accuracy']}")
    dense_val = dense["validation"]["accuracy"]["top1"]
    policies_out = {}
    for policy in policies:
        compact = {name: approximate_weights(network.layers[names.index(name)]
                                             .params["weight"], policy) for name in modes}
        spread = {} if cal is None else _error_spread(
            network, cal, start, {name: compact[name] for name in thresholded}, backend)

        def run(alpha_of: dict, top_n, split_names=("validation", "test")) -> dict | None:
            plans = []
            for name, mode in modes.items():
                if mode == SelectMode.THRESHOLD:
                    t = (np.float32(-alpha_of[name]) * spread[name]).astype(np.float32)
                    plans.append(AipPlan(name, compact[name], mode, thresholds=t))
                elif top_n is not None:
                    plans.append(AipPlan(name, compact[name], mode, top_n=top_n))
            if not plans:
                return None
            point = {}
            for split in split_names:
                x, y = splits[split]
                figures = _evaluate(network, x, y, plans, start, backend, classes, BATCH)
                point[split] = {"accuracy": figures["accuracy"],
                                "kept_fraction": figures["kept_fraction"],
                                **_ratios(figures, dense[split], BATCH,
                                          absolute=split == "test")}
            return point

        points = []
        for alpha in alphas:
            for top_n in top_ns:
                point = run({name: alpha for name in thresholded}, top_n)
                if point is not None:
                    points.append({"alpha": alpha, "top_n": top_n, **point})
        chosen = _choose(points, dense_val)
        refined = None
        if chosen is not None and len(thresholded) > 1:
            refined = _refine(run, chosen, thresholded, alphas, dense_val)
        pareto = [i for i, p in enumerate(points)
                  if not any(_dominates(q, p) for q in points)]
        policies_out[policy] = {
            "layers": {name: {"k": c.k, "n": c.n, "kept": c.kept,
                              "approx_weight_bytes": c.weight_bytes,
                              "index_bytes": c.index_bytes,
                              "dense_weight_bytes": WEIGHT_BYTES * c.k * c.n}
                       for name, c in compact.items()},
            "points": points,
            "pareto_test": pareto,
            "chosen": chosen,
            "chosen_per_layer": refined,
        }
        if log and chosen:
            test = chosen["test"]
            log(f"[aip {net}] {policy}: chosen alpha {chosen['alpha']} top_n "
                f"{chosen['top_n']}: test {test['accuracy']} fc bytes "
                f"{test['batch_1']['fc_weight_bytes']} (batch 1), "
                f"{test[f'batch_{BATCH}']['fc_weight_bytes']} (batch {BATCH})")
            if refined:
                test = refined["test"]
                log(f"[aip {net}] {policy}: per layer {refined['alphas']}: test "
                    f"{test['accuracy']} fc bytes {test['batch_1']['fc_weight_bytes']} "
                    f"(batch 1), {test[f'batch_{BATCH}']['fc_weight_bytes']} (batch {BATCH})")
        elif log:
            log(f"[aip {net}] {policy}: no point within {MAX_LOSS_POINTS} point")
    dense_out = {}
    for split, figures in dense.items():
        dense_out[split] = {"accuracy": figures["accuracy"]}
        for size in ("batch_1", f"batch_{BATCH}"):
            dense_out[split][size] = {key: _round(value, 1)
                                      for key, value in figures[size].items()}
    return {
        "config": dataclasses.asdict(config),
        "training_backend": "fp32",
        "evaluation_backend": backend.name,
        "classes": classes,
        "samples": {"fit": len(fit.y_train), "calibration": len(x_cal),
                    "validation": len(y_val), "test": len(y_test)},
        "planned_layers": {name: mode.name for name, mode in modes.items()},
        "dense": dense_out,
        "policies": policies_out,
        "wall_time_s": round(time.perf_counter() - start_time, 1),
    }


def measure_aip(nets=NETS, quick: bool = False, log: Callable[[str], None] | None = print, *,
                cache_dir: Path | None = None) -> dict:
    """AIP on every network of ``nets`` (:func:`measure_network`), JSON-able.

    ``quick`` trains 2 epochs and sweeps 2 x 2 points on 96 validation and test rows (a
    smoke test, seconds for the digits MLP); ``cache_dir`` holds the trained weights
    (default :func:`sim.experiments.training.default_cache_dir`).
    """
    if isinstance(nets, str) or not all(net in NETS for net in nets) or not nets:
        raise ValueError(f"nets must be a non-empty collection of {list(NETS)}, not {nets!r}")
    if not isinstance(quick, bool):
        raise ValueError(f"quick must be a bool, not {quick!r}")
    start = time.perf_counter()
    networks = {net: measure_network(net, quick=quick, cache_dir=cache_dir, log=log)
                for net in nets}
    vgg = networks.get("vgg_small")
    goal = None
    if vgg is not None:
        dense_top1 = vgg["dense"]["test"]["accuracy"]["top1"]
        goal = {}
        for policy, entry in vgg["policies"].items():
            for key in ("chosen", "chosen_per_layer"):
                chosen = entry[key]
                name = policy if key == "chosen" else f"{policy}_per_layer"
                if chosen is None:
                    goal[name] = {"met": False, "reason": "no point within the validation loss"}
                    continue
                saving = 1 - chosen["test"]["batch_1"]["fc_weight_bytes"]
                loss = 100 * (dense_top1 - chosen["test"]["accuracy"]["top1"])
                goal[name] = {"fc_traffic_saving": _round(saving), "test_top1_loss_points":
                              _round(loss, 4), "met": saving >= 0.5 and loss <= 1.0}
    return {
        "fraction": "1/16 of each FC layer's fp16 weight bytes (index bytes included)",
        "policies": list(POLICIES),
        "alphas": list(ALPHAS), "top_ns": list(TOP_NS), "batch": BATCH,
        "max_validation_loss_points": MAX_LOSS_POINTS,
        "quick": quick,
        "published": PUBLISHED,
        "figures_are": "model figures (byte and MAC counts of the golden procedure), not RTL "
                       "measurements",
        "networks": networks,
        "vgg_goal": goal,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
