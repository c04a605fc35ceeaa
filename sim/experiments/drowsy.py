"""DrowsyNet (issue 18): choosing per-layer drop rates of convolution outputs, and what they
cost in accuracy and save in MACs, engine cycles and energy.

The golden model is :mod:`sim.drowsy` (definitions there). This module measures it on the
workload networks (digits CNN, ResNet-18 topology, ``vgg_small``) trained in FP32 on the
digits training split minus a validation split, never on the test set: the trained networks
of :func:`sim.experiments.training.fp32_trained`, shared with the AIP study.

Rate choice (:func:`choose_thresholds`): the papers do not say how DrowsyNet picks its rates;
we use **greedy allocation on per-layer sensitivity under a MAC budget**:

1. *Sensitivity*: for every convolution ``l`` and every probe threshold ``t`` of
   :data:`PROBES`, the increase of the mean validation cross-entropy when only ``l`` is
   dropped at ``t`` (rescaled kept outputs, averaged over :data:`SEARCH_SEEDS`), linear
   between probes and 0 at ``t = 0``. (Cross-entropy rather than accuracy: on a few hundred
   validation images accuracy moves in steps of a third of a point and is flat for small
   rates, which would make the greedy choice arbitrary.)
2. *Allocation*: start from all thresholds 0 and repeatedly move the one layer whose next
   probe threshold costs the least loss increase per conv MAC saved (``d loss / (t_step / 256
   x MACs_l)``, ties to the larger layer), until the expected fraction of conv MACs skipped
   reaches the target; the last move stops at the integer threshold that reaches it (so a
   chosen plan saves the target, up to one threshold step of one layer). The sensitivities are
   assumed additive; the chosen plans are then evaluated jointly.

Baselines at the same expected MAC fraction ``s``: **uniform** (every convolution at
``round(256 s)``), and **channel removal** (every convolution loses the ``round(s N_l)``
output channels of smallest filter L1 norm, no retraining, no rescaling: the structured
counterpart of the same output skipping; :class:`sim.drowsy.ChannelRemoval`).

Numerics: the search (sensitivities) and the validation curves run in FP32 (the
:class:`~sim.nn.Fp32Backend`, fast); the test curves in the accelerator's numerics (fp16
operands, golden FP32 accumulation: ``make_backend("accel")``). Accuracy of random dropout is
the mean over :data:`EVAL_SEEDS` mask seeds. Cycles: the conv forward GEMMs of one batch of
:data:`CYCLE_BATCH` test images at ``s = 0.5``, from the cycle model
(:func:`sim.skip_timing.engine_cycles`, the 8 x 8 engine); energy: MAC energy from the per-op
table :data:`sim.fgmp_energy.HOROWITZ_45NM` (a model) of the products the engine's PEs compute
(:func:`sim.skip_timing.computed_products`, the count the RTL's ``products`` port gives).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import numpy as np

from sim import engine_model
from sim.drowsy import (MAX_THRESHOLD, RATE_BITS, ChannelRemoval, DrowsyBackend, DrowsyPlan,
                        conv_layers, conv_macs, expected_skip, skip_counts)
from sim.experiments.skip import stored
from sim.experiments.sparsity import timing_config
from sim.experiments.training import VALIDATION_FRACTION, Fp32Trained, fp32_trained
from sim.fgmp_energy import HOROWITZ_45NM
from sim.lfsr import dropout_values
from sim.nn import Network, StepContext, make_backend
from sim.skip_model import SparseGemm, compact
from sim.skip_timing import computed_products, engine_cycles, mask_write_cycles, with_window

__all__ = ["NETS", "TARGETS", "PROBES", "SEARCH_SEEDS", "EVAL_SEEDS", "CYCLE_BATCH", "WINDOW",
           "GOAL_SKIP", "GOAL_LOSS_POINTS", "FP32_MUL_PJ", "Evaluator", "sensitivity",
           "choose_thresholds", "uniform_plan", "channel_plan", "chosen_plan",
           "cycles_and_energy", "measure_net", "measure_drowsy"]

NETS = ("digits_cnn", "resnet18", "vgg_small")
#: Expected fractions of conv MACs skipped at which the three methods are compared.
TARGETS = (0.25, 0.375, 0.5, 0.625)
#: Probe thresholds of the per-layer sensitivity (out of 256).
PROBES = (32, 64, 128, 192, 224)
#: Mask seeds (``DrowsyPlan.seed``) of the search and of the reported accuracies.
SEARCH_SEEDS = (101, 102)
EVAL_SEEDS = (1, 2, 3)
#: Test images whose conv GEMMs go through the cycle model; the engine's lookahead window.
CYCLE_BATCH = 2
WINDOW = 4
#: The issue's goal: this fraction of conv MACs skipped for at most this many top-1 points.
GOAL_SKIP = 0.5
GOAL_LOSS_POINTS = 5.0
#: fp32 multiply (pJ), the rescaling's epilogue op: Horowitz ISSCC 2014, 45 nm (the source of
#: :data:`sim.fgmp_energy.HOROWITZ_45NM`, which has no fp32 multiply).
FP32_MUL_PJ = 3.7
#: Inference batch (the training batch): a ResNet-18 batch's first conv GEMM has 32 x 1024
#: output rows, within the LFSR masks' :data:`sim.lfsr.MAX_ROWS` (65535).
BATCH = 32


def _metrics(logits: np.ndarray, y: np.ndarray) -> dict:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    return {"top1": float(np.mean(logits.argmax(axis=1) == y)),
            "top5": float(np.mean((top5 == y[:, None]).any(axis=1))),
            "nll": float(-np.mean(log_p[np.arange(len(y)), y]))}


class Evaluator:
    """Masked inference of ``net`` on fixed samples in batches of :data:`BATCH`, reusing the
    dense pass: the input of every top-level layer of each batch is kept, and a plan whose
    first masked convolution sits in top-level layer ``i`` runs only ``net.layers[i:]`` (the
    layers before it are unchanged). The LFSR values of each mask seed are generated once."""

    def __init__(self, net: Network, x: np.ndarray, y: np.ndarray, backend_name: str):
        self.net, self.x, self.y = net, x, y
        self.backend = make_backend(backend_name)
        self.convs = [conv.name for conv in conv_layers(net)]
        self.top_index = {sub.name: index for index, layer in enumerate(net.layers)
                          for sub in layer.sublayers()}
        self._values: dict = {}
        self._inputs = []           # per batch: input of each top-level layer
        logits = []
        ctx = StepContext(backend=self.backend)
        for start in range(0, len(x), BATCH):
            h = x[start:start + BATCH]
            inputs = []
            for layer in net.layers:
                inputs.append(h)
                h = layer.forward(h, ctx)
            self._inputs.append(inputs)
            logits.append(h)
        self.dense_logits = np.concatenate(logits)
        self.dense = _metrics(self.dense_logits, y)

    def _lfsr(self, layer, shape, seed):
        key = (seed, tuple(shape))
        if key not in self._values:
            self._values[key] = dropout_values(tuple(shape), seed=seed, bits=RATE_BITS)
        return self._values[key]

    def run(self, plan) -> tuple[dict, dict]:
        """``(metrics, skip counts)`` of ``plan`` (top-1, top-5, mean cross-entropy)."""
        plan.check(self.net)
        masked = [name for name in self.convs
                  if (plan.threshold(name) if isinstance(plan, DrowsyPlan)
                      else plan.removed.get(name))]
        first = min((self.top_index[name] for name in masked), default=len(self.net.layers))
        backend = DrowsyBackend(self.backend, plan, convs=self.convs,
                                values=self._lfsr if isinstance(plan, DrowsyPlan) else None)
        ctx = StepContext(backend=backend)
        logits = []
        for index, inputs in enumerate(self._inputs):
            backend.batch_index = index
            h = inputs[first] if first < len(inputs) else None
            if h is None:
                logits.append(self.dense_logits[index * BATCH:(index + 1) * BATCH])
                continue
            for layer in self.net.layers[first:]:
                h = layer.forward(h, ctx)
            logits.append(h)
        counts = backend.counts
        for conv in conv_layers(self.net):      # the convolutions before ``first``: all kept
            if conv.name not in counts:
                height, width, _ = conv.out_shape
                k = conv.params["weight"].shape[0]
                counts[conv.name] = [0, len(self.x) * height * width * conv.spec.features, k]
        return _metrics(np.concatenate(logits), self.y), counts

    def mean(self, plans) -> dict:
        """Metrics averaged over ``plans`` (one per mask seed), with their spread."""
        runs = [self.run(plan)[0] for plan in plans]
        out = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
        out["top1_min"] = min(r["top1"] for r in runs)
        out["top1_max"] = max(r["top1"] for r in runs)
        return out


def sensitivity(evaluator: Evaluator, *, probes=PROBES, seeds=SEARCH_SEEDS,
                rescale: bool = True) -> dict[str, list[float]]:
    """Per conv: increase of the mean validation cross-entropy at each probe threshold when
    only that convolution is dropped (mean over ``seeds``)."""
    base = evaluator.dense["nll"]
    curves = {}
    for name in evaluator.convs:
        curves[name] = [evaluator.mean([DrowsyPlan({name: t}, rescale=rescale, seed=s)
                                        for s in seeds])["nll"] - base for t in probes]
    return curves


def choose_thresholds(curves: Mapping[str, list[float]], macs: Mapping[str, int],
                      target: float, *, probes=PROBES) -> dict[str, int]:
    """Greedy allocation (module docstring): integer thresholds whose expected conv MAC
    fraction skipped, ``sum t_l / 256 x macs_l / sum macs``, reaches ``target``.

    ``curves[l][i]`` is the loss increase of layer ``l`` alone at ``probes[i]``. Raises
    ValueError naming ``target`` when it is not in ``(0, max(probes) / 256]``, and naming
    ``curves`` when its layers or lengths do not match."""
    probes = tuple(probes)
    if not probes or list(probes) != sorted(set(probes)) or probes[0] < 1 or \
            probes[-1] > MAX_THRESHOLD:
        raise ValueError(f"probes must be increasing thresholds in 1..{MAX_THRESHOLD}, "
                         f"not {probes!r}")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or \
            not 0 < target <= probes[-1] / (1 << RATE_BITS):
        raise ValueError(f"target must be a fraction in (0, {probes[-1]}/256], not {target!r}")
    if set(curves) != set(macs) or any(len(c) != len(probes) for c in curves.values()):
        raise ValueError("curves must give one value per probe for every layer of macs")
    total = sum(macs.values())
    budget = target * total * (1 << RATE_BITS)      # sum t_l macs_l to reach
    points = (0,) + probes
    losses = {name: (0.0,) + tuple(curves[name]) for name in macs}
    level = {name: 0 for name in macs}              # index into points
    thresholds = {name: 0 for name in macs}
    saved = 0
    while saved < budget:
        best = None
        for name in macs:
            i = level[name]
            if i + 1 == len(points) or macs[name] == 0:
                continue
            step = points[i + 1] - points[i]
            cost = max(0.0, losses[name][i + 1] - losses[name][i]) / (step * macs[name])
            key = (cost, -macs[name], name)
            if best is None or key < best[0]:
                best = (key, name)
        if best is None:          # every layer at the last probe: target was checked above
            break
        name = best[1]
        i = level[name]
        gain = (points[i + 1] - points[i]) * macs[name]
        if saved + gain >= budget:        # stop inside this step, at the threshold reaching it
            needed = -(-(budget - saved) // macs[name])
            thresholds[name] = points[i] + int(needed)
            saved += int(needed) * macs[name]
            break
        level[name] = i + 1
        thresholds[name] = points[i + 1]
        saved += gain
    return thresholds


def uniform_plan(net: Network, target: float, **kwargs) -> DrowsyPlan:
    """Every convolution at ``round(256 target)``."""
    return DrowsyPlan.uniform(net, round(target * (1 << RATE_BITS)), **kwargs)


def chosen_plan(thresholds: Mapping[str, int], **kwargs) -> DrowsyPlan:
    return DrowsyPlan(dict(thresholds), **kwargs)


def channel_plan(net: Network, target: float) -> ChannelRemoval:
    """Every convolution without its ``round(target N)`` filters of smallest L1 norm."""
    removed = {}
    for conv in conv_layers(net):
        count = round(target * conv.spec.features)
        norms = np.abs(conv.params["weight"]).sum(axis=0)
        removed[conv.name] = tuple(int(c) for c in np.argsort(norms, kind="stable")[:count])
    return ChannelRemoval(removed)


def _masked_command(command, plan):
    """The command reading the dropout plane (DrowsyNet) or the host plane (channels)."""
    if isinstance(plan, DrowsyPlan):
        return dataclasses.replace(command, mask_dropout=True)
    return dataclasses.replace(command, mask_host=True)


def cycles_and_energy(net: Network, x: np.ndarray, plan, *, window: int = WINDOW) -> dict:
    """Cycle model and MAC energy of the conv forward GEMMs of one batch ``x`` (batch index 0)
    in the accelerator's numerics, with ``plan``'s dropout plane (None: dense).

    Engines (8 x 8, :func:`sim.experiments.sparsity.timing_config`): ``dense`` (no skipping),
    ``window`` (lookahead window ``window``, zero gate; without an output mask), ``window_mask``
    (the same engine reading the plan's keep mask as its dropout plane: ``mask_dropout``),
    ``window_compact`` (the host first drops the rows and columns whose outputs are all masked,
    :func:`sim.skip_model.compact`: what a channel-pruned network runs). ``mask_write``: the
    dropout mask writer's cycles for the planes (:func:`sim.skip_timing.mask_write_cycles`),
    not overlapped. Energy: the products the ``window_mask`` engine's PEs compute
    (:func:`sim.skip_timing.computed_products`: both operands non-zero, in the steps each array
    row takes; a masked output in a row that still has a kept one is computed, then written
    ``+0``) x (fp16 multiply + fp32 add), plus one fp32 multiply per kept output when the plan
    rescales; beside it, what PEs that also gated the products of masked outputs would spend
    (only the non-zero products of kept outputs: such PEs are not built)."""
    calls = {}
    backend = make_backend("accel")
    convs = [conv.name for conv in conv_layers(net)]

    def record(call):
        if call.kind == "forward" and call.name[:-len(".forward")] in convs:
            calls[call.name[:-len(".forward")]] = call
    backend.listener = record
    net.forward(x, StepContext(backend=backend))
    config = timing_config()
    engines = {"dense": config, "window": with_window(config, window),
               "window_mask": dataclasses.replace(with_window(config, window), output_mask=True)}
    table = HOROWITZ_45NM
    mac_pj = table.mul_fp16_fp16 + table.add_fp32
    totals = {key: 0 for key in ("dense", "window", "window_mask", "window_compact",
                                 "mask_write", "macs_dense", "macs_kept", "macs_nonzero_dense",
                                 "macs_nonzero_kept", "macs_computed", "rescaled_outputs")}
    for name in convs:
        call = calls[name]
        keep = None if plan is None else plan.keep(name, (call.M, call.N), 0)
        accumulate = call.c is not None
        gemm = SparseGemm.from_bits(call.a, call.b, transpose_a=call.transpose_a,
                                    transpose_b=call.transpose_b, accumulate=accumulate)
        command = stored(config, gemm)
        totals["dense"] += engine_model.command_cycles(config, command)
        totals["window"] += engine_cycles(engines["window"], command, gemm)
        kept = call.M * call.N
        if keep is not None:
            masked = dataclasses.replace(gemm, out_keep=np.ascontiguousarray(keep))
            totals["window_mask"] += engine_cycles(
                engines["window_mask"], _masked_command(command, plan), masked)
            run, _, _ = compact(masked)
            totals["window_compact"] += 0 if run is None else engine_cycles(
                engines["window"], stored(config, run), run)
            if isinstance(plan, DrowsyPlan):
                totals["mask_write"] += mask_write_cycles(engines["window_mask"], call.M, call.N)
            kept = int(np.count_nonzero(keep))
            totals["macs_nonzero_kept"] += masked.nonzero_macs
            totals["macs_computed"] += computed_products(
                engines["window_mask"], _masked_command(command, plan), masked)
            if plan.factor(name) is not None:
                totals["rescaled_outputs"] += kept
        else:
            cycles = engine_cycles(engines["window"], command, gemm)
            totals["window_mask"] += cycles
            totals["window_compact"] += cycles
            totals["macs_nonzero_kept"] += gemm.nonzero_macs
            totals["macs_computed"] += computed_products(engines["window"], command, gemm)
        totals["macs_dense"] += call.M * call.N * call.K
        totals["macs_kept"] += kept * call.K
        totals["macs_nonzero_dense"] += gemm.nonzero_macs
    energy = {
        "all_products_pj": totals["macs_kept"] * mac_pj,
        "computed_pj": totals["macs_computed"] * mac_pj,
        "kept_zero_gated_pj": totals["macs_nonzero_kept"] * mac_pj,
        "rescale_pj": totals["rescaled_outputs"] * FP32_MUL_PJ,
        "dense_all_products_pj": totals["macs_dense"] * mac_pj,
        "dense_zero_gated_pj": totals["macs_nonzero_dense"] * mac_pj,
    }
    energy["total_pj"] = energy["computed_pj"] + energy["rescale_pj"]
    energy["total_if_masks_gated_pj"] = energy["kept_zero_gated_pj"] + energy["rescale_pj"]
    saved = 1 - energy["total_pj"] / energy["dense_zero_gated_pj"]
    saved_if_gated = 1 - energy["total_if_masks_gated_pj"] / energy["dense_zero_gated_pj"]
    return {"cycles": {k: totals[k] for k in ("dense", "window", "window_mask",
                                              "window_compact", "mask_write")},
            "cycles_source": f"cycle model (sim.skip_timing.engine_cycles, 8x8 engine, "
                             f"window {window}; dense: sim.engine_model.command_cycles)",
            "macs": {k: totals[k] for k in ("macs_dense", "macs_kept", "macs_nonzero_dense",
                                            "macs_nonzero_kept", "macs_computed")},
            "energy_pj": {k: round(v, 1) for k, v in energy.items()},
            "energy_saved_vs_dense_zero_gated": round(saved, 5),
            "energy_saved_if_masks_gated": round(saved_if_gated, 5),
            "energy_source": f"model: per-op table ({table.source}); fp32 multiply "
                             f"{FP32_MUL_PJ} pJ; conv forward MACs only, no memory traffic"}


def measure_net(net_name: str | Fp32Trained, *, quick: bool = False,
                log: Callable[[str], None] = print) -> dict:
    """The DrowsyNet measurement of one network (see :func:`measure_drowsy`).

    ``net_name`` is a name of :data:`NETS` (trained by :func:`sim.experiments.training.
    fp32_trained`, ``quick``: 2 epochs) or a network already trained
    (:func:`sim.experiments.training.fp32_train`: a user's); ``quick`` also shortens the
    measurement. Raises ValueError naming the network when it has no convolution."""
    start = time.perf_counter()
    trained = net_name if isinstance(net_name, Fp32Trained) else \
        fp32_trained(net_name, quick=quick, log=log)
    net, training = trained.network, trained.info()
    net_name = net.name
    if not conv_layers(net):
        raise ValueError(f"{net_name} has no convolution for DrowsyNet to drop outputs of")
    x_val, y_val = trained.x_val, trained.y_val
    x_test, y_test = trained.data.x_test, trained.data.y_test
    targets, probes = TARGETS, PROBES
    search_seeds, eval_seeds = SEARCH_SEEDS, EVAL_SEEDS
    if quick:
        targets, probes = (0.5,), (64, 128, 224)
        search_seeds, eval_seeds = SEARCH_SEEDS[:1], EVAL_SEEDS[:1]
        x_val, y_val, x_test, y_test = x_val[:64], y_val[:64], x_test[:64], y_test[:64]
    macs = conv_macs(net)
    val = Evaluator(net, x_val, y_val, "fp32")
    test = Evaluator(net, x_test, y_test, "accel")
    log(f"{net_name}: dense top-1 validation {val.dense['top1']:.4f} (fp32), test "
        f"{test.dense['top1']:.4f} (accel)")
    search_start = time.perf_counter()
    curves = sensitivity(val, probes=probes, seeds=search_seeds)
    search_time = time.perf_counter() - search_start

    def evaluate(make_plan, rescale=None):
        if rescale is None:
            plan = make_plan(0)
            point = {"expected_skip": expected_skip(net, plan)}
            (val_metrics, _), (test_metrics, counts) = val.run(plan), test.run(plan)
        else:
            plans = [make_plan(seed) for seed in eval_seeds]
            point = {"expected_skip": expected_skip(net, plans[0])}
            val_metrics, test_metrics = val.mean(plans), test.mean(plans)
            counts = test.run(plans[0])[1]
        point["measured_skip_test"] = skip_counts(counts)["fraction"]
        point["validation"], point["test"] = val_metrics, test_metrics
        return point

    methods = {"uniform": {}, "chosen": {}, "channel_removal": {}}
    chosen = {}
    for target in targets:
        key = f"{target:g}"
        thresholds = choose_thresholds(curves, macs, target, probes=probes)
        chosen[key] = thresholds
        for rescale in (True, False):
            tag = "rescale" if rescale else "no_rescale"
            methods["uniform"].setdefault(tag, {})[key] = evaluate(
                lambda seed: uniform_plan(net, target, rescale=rescale, seed=seed), rescale)
            methods["chosen"].setdefault(tag, {})[key] = evaluate(
                lambda seed: chosen_plan(thresholds, rescale=rescale, seed=seed), rescale)
        methods["channel_removal"][key] = evaluate(lambda seed: channel_plan(net, target))
        row = {m: (methods[m]["rescale"][key] if m != "channel_removal" else methods[m][key])
               for m in methods}
        log(f"{net_name}: skip {key}: test top-1 uniform {row['uniform']['test']['top1']:.4f}, "
            f"chosen {row['chosen']['test']['top1']:.4f}, channels "
            f"{row['channel_removal']['test']['top1']:.4f} (dense {test.dense['top1']:.4f})")
    point = f"{GOAL_SKIP:g}" if GOAL_SKIP in targets else f"{targets[-1]:g}"
    target = float(point)
    cycle_x = x_test[:CYCLE_BATCH]
    engine = {"dense": cycles_and_energy(net, cycle_x, None),
              "uniform": cycles_and_energy(net, cycle_x, uniform_plan(net, target, rescale=True,
                                                                       seed=eval_seeds[0])),
              "chosen": cycles_and_energy(net, cycle_x, chosen_plan(chosen[point], rescale=True,
                                                                     seed=eval_seeds[0])),
              "channel_removal": cycles_and_energy(net, cycle_x, channel_plan(net, target))}
    goal = _goal(methods, test.dense, point)
    return {
        "training": training,
        "samples": {"validation": len(y_val), "test": len(y_test)},
        "conv_macs_per_sample": macs,
        "dense": {"validation_fp32": val.dense, "test_accel": test.dense},
        "sensitivity": {"probes": list(probes), "seeds": list(search_seeds),
                        "metric": "validation cross-entropy increase, layer alone, rescaled, "
                                  "fp32", "curves": {k: [round(v, 5) for v in c]
                                                     for k, c in curves.items()},
                        "time_s": round(search_time, 1)},
        "chosen_thresholds": chosen,
        "methods": methods,
        "engine_point": {"skip": target, "batch": CYCLE_BATCH, **engine},
        "goal": goal,
        "time_s": round(time.perf_counter() - start, 1),
    }


def _goal(methods, dense, point) -> dict:
    uniform = methods["uniform"]["rescale"][point]
    chosen = methods["chosen"]["rescale"][point]
    # rescaling or not: the one with the better validation accuracy (never the test set)
    tag = max(methods["chosen"], key=lambda t: methods["chosen"][t][point]["validation"]["top1"])
    loss = 100 * (dense["top1"] - methods["chosen"][tag][point]["test"]["top1"])
    better = {f"{tag}/{key}": methods["chosen"][tag][key]["test"]["top1"] >
              methods["uniform"][tag][key]["test"]["top1"]
              for tag in methods["chosen"] for key in methods["chosen"][tag]}
    return {"skip": float(point), "chosen_skip_expected": chosen["expected_skip"],
            "uniform_skip_expected": uniform["expected_skip"],
            "chosen_rescaling": tag, "chosen_test_top1_loss_points": round(loss, 3),
            "met_skip_at_loss": loss <= GOAL_LOSS_POINTS,
            "chosen_better_than_uniform_test": better,
            "chosen_better_everywhere": all(better.values())}


def measure_drowsy(nets=NETS, quick: bool = False, log: Callable[[str], None] = print) -> dict:
    """DrowsyNet on each of ``nets``: dense accuracy, per method (uniform, chosen, channel
    removal) conv MAC fraction skipped against validation (FP32) and test (accel) accuracy,
    with and without rescaling, cycles (cycle model) and energy (model) at ``s = 0.5``.
    JSON-able. ``quick``: :data:`sim.experiments.training.QUICK_EPOCHS` training epochs, 64
    validation and test images, one target, one seed (a smoke test, seconds)."""
    start = time.perf_counter()
    results = {name: measure_net(name, quick=quick, log=log) for name in nets}
    return {
        "setup": {"targets": list(TARGETS if not quick else (0.5,)),
                  "search_seeds": list(SEARCH_SEEDS), "eval_seeds": list(EVAL_SEEDS),
                  "validation_fraction": VALIDATION_FRACTION, "quick": quick,
                  "search_numerics": "fp32", "test_numerics": "accel (fp16 operands, golden "
                  "fp32 accumulation)", "mask_bits": RATE_BITS, "batch": BATCH,
                  "goal": {"skip": GOAL_SKIP, "max_top1_loss_points": GOAL_LOSS_POINTS}},
        "networks": results,
        "time_s": round(time.perf_counter() - start, 1),
    }
