"""The AIP layers of a trained network as a case for the RTL bench ``aip_network`` of
:mod:`tb.aip_engine_tb` (built by the pytest runner and by :mod:`scripts.inference_rtl`).

:func:`network_case` takes the digits CNN trained in FP32
(:func:`sim.experiments.training.fp32_trained`), a few test digits and the AIP plans of one
compact-weight policy for its two FC layers (``fc1``: ``THRESHOLD`` with the thresholds
:mod:`sim.experiments.aip` uses at ``alpha = 0``, ``t_j = -0 * s_j = -0`` for every output;
``fc2``: ``TOP_N``), runs the golden procedure :func:`sim.aip.aip` (accel backend) and saves,
per layer, the operands exactly as the golden model multiplies them (captured from the
backend's GEMM calls: the approximate pass's gathered input and encoded compact weights, the
bias as the accumulator start; the exact pass's encoded input and the full encoded weight),
the golden approximate results, keep mask and exact outputs, and the cycle model's counts of
both passes (:func:`sim.skip_timing.engine_cycles`) on :data:`AIP_ENGINE`.
"""

from __future__ import annotations

import numpy as np

from hw.aip.engine import AipEngine
from sim.aip import POLICIES, AipPlan, aip, approximate_weights
from sim.aip_spec import SelectMode
from sim.config import ArrayConfig, EngineConfig
from sim.engine_model import EngineCommand, EngineError, command_cycles, validate
from sim.runner import Design
from sim.skip_model import SparseGemm
from sim.skip_timing import engine_cycles
from tb.engine_driver import config_to_case

__all__ = ["AIP_ENGINE", "LAYERS", "MAX_N", "design", "layer_commands", "network_case"]

#: The engine of the real-layer check: 4 x 4, zero gate, lookahead window 4, output masks.
#: A is stored as it comes (M x K, samples x inputs), B transposed (N x K, the weight's
#: columns as rows), so that one scratchpad row of 1024 elements holds an input row or a
#: weight column of fc1 (1024 x 64) and the exact pass is one command; approximate and exact
#: operands are loaded one after the other. Accumulator rows 0..3: the exact pass (where the
#: keep plane is written), rows 4..7: the approximate pass.
AIP_ENGINE = EngineConfig(array=ArrayConfig(rows=4, cols=4, skip_zeros=True, skip_window=4),
                          spad_width=1024, a_rows=4, b_rows=64, acc_width=64, acc_rows=8,
                          output_mask=True)
#: The selection unit's largest ``TOP_N`` (``fc2`` runs with ``n = 3``).
MAX_N = 4
#: The planned layers of the digits CNN: name -> mode.
LAYERS = {"fc1": SelectMode.THRESHOLD, "fc2": SelectMode.TOP_N}
#: First accumulator row of the approximate pass's results.
APPROX_ROW = 4


def design() -> Design:
    """The AIP engine the bench runs on."""
    return Design(AipEngine, AIP_ENGINE, max_len=AIP_ENGINE.acc_width, max_n=MAX_N)


def layer_commands(m: int, n: int, k_approx: int, k: int) -> tuple[EngineCommand,
                                                                    EngineCommand]:
    """The approximate and exact pass commands of a layer on :data:`AIP_ENGINE` (both start
    from the bias in the accumulator memory; the exact pass is masked by the keep plane)."""
    approx = EngineCommand(m=m, n=n, k=k_approx, c_row=APPROX_ROW, b_transpose=True,
                           accumulate=True)
    exact = EngineCommand(m=m, n=n, k=k, b_transpose=True, accumulate=True, mask_host=True)
    for command in (approx, exact):
        if validate(AIP_ENGINE, command) is not EngineError.NONE:
            raise ValueError(f"{command} does not fit AIP_ENGINE: "
                             f"{validate(AIP_ENGINE, command).name}")
    return approx, exact


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.uint32)


def network_case(path, *, samples: int = 4, policy: str = "stride", top_n: int = 3,
                 layers=tuple(LAYERS), log=None) -> dict:
    """Run AIP on the trained digits CNN's first ``samples`` test digits with ``policy``'s
    compact weights (both layers planned), save the operands and golden results of the
    ``layers`` the bench runs to the npz ``path`` (keys ``<layer>.<what>``) and return the
    case for the bench (module docstring)."""
    from sim.experiments.training import fp32_trained
    from sim.nn import make_backend

    if policy not in ("stride", "magnitude"):          # lowrank: two GEMMs, not run here
        raise ValueError(f"policy must be 'stride' or 'magnitude' (of {list(POLICIES)}), "
                         f"not {policy!r}")
    if isinstance(layers, str) or not layers or not set(layers) <= set(LAYERS):
        raise ValueError(f"layers must be a non-empty collection of {list(LAYERS)}, not "
                         f"{layers!r}")
    trained = fp32_trained("digits_cnn", log=log)
    net = trained.network
    net_layers = {layer.name: layer for layer in net.layers}
    plans = []
    for name, mode in LAYERS.items():
        weight = net_layers[name].params["weight"]
        compact = approximate_weights(weight, policy)
        if mode == SelectMode.THRESHOLD:      # sim.experiments.aip at alpha 0: -0 * s_j
            plans.append(AipPlan(name, compact, mode,
                                 thresholds=np.full(weight.shape[1], -0.0, np.float32)))
        else:
            plans.append(AipPlan(name, compact, mode, top_n=top_n))
    backend = make_backend("accel")
    calls = {}
    backend.listener = lambda call: calls.setdefault(call.name, call)
    x = trained.data.x_test[:samples]
    result = aip(net, x, plans, backend=backend)

    arrays, entries = {}, []
    for plan in (plan for plan in plans if plan.layer in layers):
        name, layer = plan.layer, net_layers[plan.layer]
        approx_call, exact_call = calls[f"{name}.approx"], calls[f"{name}.exact"]
        keep = result.keeps[name]
        m, n = keep.shape
        k, k_approx = exact_call.K, approx_call.K
        union = np.flatnonzero(keep.any(axis=0))
        # the exact outputs where kept, +0 elsewhere (what the engine writes)
        out = np.zeros((m, n), np.float32)
        out[:, union] = np.where(keep[:, union], exact_call.out, np.float32(0))
        weight = backend.encode(layer.params["weight"])
        bias = np.asarray(layer.params["bias"], np.float32)
        assert np.array_equal(approx_call.c, np.broadcast_to(bias, (m, n)))
        approx_command, exact_command = layer_commands(m, n, k_approx, k)
        b_approx = np.ascontiguousarray(approx_call.b.T)          # stored N x K'
        b_exact = np.ascontiguousarray(weight.T)                  # stored N x K
        approx_cycles = engine_cycles(AIP_ENGINE, approx_command, SparseGemm.from_bits(
            approx_call.a, b_approx, transpose_b=True, accumulate=True))
        exact_cycles = engine_cycles(AIP_ENGINE, exact_command, SparseGemm.from_bits(
            exact_call.a, b_exact, transpose_b=True, out_mask=keep, accumulate=True))
        arrays.update({f"{name}.a_approx": approx_call.a, f"{name}.b_approx": b_approx,
                       f"{name}.a_exact": exact_call.a, f"{name}.b_exact": b_exact,
                       f"{name}.bias": _bits(bias), f"{name}.approx": _bits(result.approx[name]),
                       f"{name}.keep": keep, f"{name}.out": _bits(out)})
        if plan.mode == SelectMode.THRESHOLD:
            arrays[f"{name}.thresholds"] = _bits(plan.thresholds)
        entries.append({
            "name": name, "mode": plan.mode.name, "n_select": plan.top_n or 0,
            "m": m, "n": n, "k": k, "k_approx": k_approx,
            "approx_cycles": approx_cycles, "exact_cycles": exact_cycles,
            "dense_cycles": command_cycles(AIP_ENGINE, EngineCommand(
                m=m, n=n, k=k, b_transpose=True, accumulate=True)),
            "dense_window_cycles": engine_cycles(
                AIP_ENGINE, EngineCommand(m=m, n=n, k=k, b_transpose=True, accumulate=True),
                SparseGemm.from_bits(exact_call.a, b_exact, transpose_b=True,
                                     accumulate=True)),
            "kept": int(keep.sum()), "total": int(keep.size), "union": len(union)})
    np.savez(path, **arrays)
    return {**config_to_case(AIP_ENGINE), "max_len": AIP_ENGINE.acc_width, "max_n": MAX_N,
            "data": str(path), "policy": policy, "samples": samples, "layers": entries}
