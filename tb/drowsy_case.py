"""One DrowsyNet convolution as a case for the RTL bench ``drowsy_conv`` of
:mod:`tb.drowsy_tb` (built by its pytest runner in ``tb/test_drowsy.py`` and by
:mod:`scripts.inference_rtl`).

:func:`conv_case` runs the digits CNN's ``conv2`` on one test digit in the accelerator's
numerics (a 64 x 16 x 72 GEMM, the bias as the accumulator start, the input after conv1's ReLU
so that it has zeros), initialised or trained, applies the dropout mask of :mod:`sim.drowsy` and saves the operands as
:data:`RTL_ENGINE` stores them, the golden outputs and the cycle model's count.
"""

from __future__ import annotations

import numpy as np

from hw.engine.engine import GemmEngine
from sim.config import ArrayConfig, EngineConfig
from sim.drowsy import DrowsyBackend, DrowsyPlan, conv_layers
from sim.engine_model import EngineCommand, EngineError, validate
from sim.runner import Design
from sim.skip_model import SparseGemm
from sim.skip_timing import engine_cycles
from tb.engine_driver import config_to_case

__all__ = ["RTL_ENGINE", "RTL_LAYER", "RTL_THRESHOLD", "RTL_SEED", "design", "conv_case"]

#: The engine of the RTL check: 4 x 4, zero gate, lookahead window 4, output masks; memories
#: that hold conv2's GEMM in one command (A stored transposed: K x M = 72 x 64).
RTL_ENGINE = EngineConfig(array=ArrayConfig(rows=4, cols=4, skip_zeros=True, skip_window=4),
                          spad_width=64, a_rows=72, b_rows=72, acc_width=16, acc_rows=64,
                          output_mask=True)
RTL_LAYER, RTL_THRESHOLD, RTL_SEED = "conv2", 128, 5


def conv_case(path, *, trained: bool = False) -> dict:
    """Save conv2's operands as the engine stores them, the mask's seed and threshold, the
    output of :mod:`sim.drowsy` and the cycle model's count to ``path``; return the case.

    ``trained``: the digits CNN trained in FP32 (:func:`sim.experiments.training.
    fp32_trained`, cached) and its first test digit; else the network as initialised (seed 0)
    with random non-zero conv biases (a dropped output must be +0, not the bias)."""
    from sim.nn import StepContext, load_digits_split, make_backend
    from sim.nn.networks import digits_cnn

    if not isinstance(trained, bool):
        raise ValueError(f"trained must be a bool, not {trained!r}")
    if trained:
        from sim.experiments.training import fp32_trained

        fp32 = fp32_trained("digits_cnn")
        net, digit = fp32.network, fp32.data.x_test[:1]
    else:
        net, digit = digits_cnn(seed=0), load_digits_split().x_test[:1]
        rng = np.random.default_rng(18)
        for conv in conv_layers(net):
            conv.params["bias"] = (0.1 * rng.standard_normal(conv.spec.features)
                                   ).astype(np.float32)
    calls = {}
    backend = make_backend("accel")
    backend.listener = lambda call: calls.setdefault(call.name, call)
    net.forward(digit, StepContext(backend=backend))
    call = calls[f"{RTL_LAYER}.forward"]
    plan = DrowsyPlan({RTL_LAYER: RTL_THRESHOLD}, seed=RTL_SEED)
    model = DrowsyBackend(make_backend("accel"), plan, convs=[RTL_LAYER])
    out = model.gemm(call.a, call.b, name=call.name, kind="forward", c=call.c)
    keep = model.masks[RTL_LAYER]
    a_stored = np.ascontiguousarray(call.a.T)
    command = EngineCommand(m=call.M, n=call.N, k=call.K, a_transpose=True, accumulate=True,
                            mask_dropout=True)
    assert validate(RTL_ENGINE, command) is EngineError.NONE
    cycles = engine_cycles(RTL_ENGINE, command, SparseGemm.from_bits(
        a_stored, call.b, transpose_a=True, out_mask=keep, accumulate=True))
    np.savez(path, a_bits=a_stored, b_bits=call.b,
             c_bits=np.ascontiguousarray(call.c).view(np.uint32), out_bits=out.view(np.uint32))
    return {**config_to_case(RTL_ENGINE), "data": str(path), "m": call.M, "n": call.N,
            "k": call.K, "seed": plan.mask_seed(RTL_LAYER, 0), "threshold": RTL_THRESHOLD,
            "cycles": cycles, "dropped": int((~keep).sum()), "trained": trained}


def design() -> Design:
    """The engine the bench runs on."""
    return Design(GemmEngine, RTL_ENGINE)
