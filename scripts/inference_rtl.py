"""Inference techniques on the RTL: AIP's FC layers and one DrowsyNet convolution of the trained
digits CNN run by their cocotb benches, with the RTL's cycles beside the cycle model's.

* :func:`aip_rtl_layers`: the AIP procedure on :class:`hw.aip.engine.AipEngine` for ``fc1``
  (``THRESHOLD`` at the experiment's ``alpha = 0``) and ``fc2`` (top-3) of each policy
  (bench ``aip_network`` of :mod:`tb.aip_engine_tb`, case :func:`tb.aip_case.network_case`);
* :func:`drowsy_rtl_layer`: ``conv2`` with the engine's dropout plane (bench ``drowsy_conv`` of
  :mod:`tb.drowsy_tb`, case :func:`tb.drowsy_case.conv_case`).

The benches assert bit-exact results and cycles equal to the model and fail otherwise, so a
figure returned here is one that passed those checks; the figures are read from what the bench
recorded (:func:`sim.runner.read_metrics`). No recording or report here: the caller
(``scripts/inference_bench.py --rtl``) records them.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from sim.runner import SIMULATORS, build_root, read_metrics, run_bench

__all__ = ["aip_rtl_layers", "drowsy_rtl_layer"]


def _check_simulator(simulator):
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {list(SIMULATORS)}, not {simulator!r}")


@contextlib.contextmanager
def _work_dir():
    """A directory for one run's case file, removed afterwards (the bench's run directory,
    which holds its metrics, is the runner's)."""
    root = build_root() / "inference_rtl"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as work:
        yield Path(work)


def aip_rtl_layers(simulator: str = "icarus", *, policies=("stride", "magnitude"),
                   samples: int = 4, top_n: int = 3) -> dict:
    """AIP's FC layers of the trained digits CNN on the RTL, per policy: for ``fc1`` and
    ``fc2`` the approximate pass's, selection's and exact pass's RTL cycles, the cycle model's
    for both passes (``equal``), the dense exact pass (no skipping, and with the lookahead
    window but no selection), the kept outputs of ``samples x outputs`` and ``bit_exact``.
    Icarus takes ~1.5 min per policy (fc1's weight loads and 8k-cycle exact pass); Verilator
    ~40 s to build the engine once, then ~4 s per policy."""
    from tb.aip_case import AIP_ENGINE, MAX_N, design, network_case
    from sim.config import config_to_dict

    _check_simulator(simulator)
    out = {"engine": config_to_dict(AIP_ENGINE), "selection_max_n": MAX_N,
           "simulator": simulator, "network": "digits_cnn (FP32-trained)",
           "samples": samples, "top_n": top_n,
           "thresholds": "alpha = 0 of sim.experiments.aip: t_j = -0 for every fc1 output",
           "inputs": "each layer from the golden model's operands (sim.aip.aip, accel "
                     "backend): fc2's input is fc1's golden AIP output after the ReLU",
           "policies": {}}
    for policy in policies:
        started = time.perf_counter()
        with _work_dir() as work:
            spec = network_case(work / f"aip_{policy}.npz", samples=samples, policy=policy,
                                top_n=top_n)
            run_dir = run_bench(design(), toplevel="aip_engine",
                                bench_module="tb.aip_engine_tb", simulator=simulator,
                                testcase="aip_network", case=spec, quiet=True)
        recorded = {row["layer"]: row for row in read_metrics(run_dir)}
        layers = {}
        for layer in spec["layers"]:
            row = recorded[layer["name"]]
            layers[layer["name"]] = {
                "mode": layer["mode"], "top_n": layer["n_select"] or None,
                "m": layer["m"], "n": layer["n"], "k": layer["k"],
                "k_approx": layer["k_approx"],
                "rtl_cycles": {"approx": row["approx_cycles"],
                               "select": row["select_cycles"],
                               "exact": row["exact_cycles"]},
                "model_cycles": {"approx": layer["approx_cycles"],
                                 "exact": layer["exact_cycles"]},
                "equal": row["approx_cycles"] == layer["approx_cycles"]
                and row["exact_cycles"] == layer["exact_cycles"],
                "dense_cycles": layer["dense_cycles"],
                "dense_window_cycles": layer["dense_window_cycles"],
                "bit_exact": bool(row["bit_exact"]),
                "kept": row["kept"], "total": row["total"], "union_columns": layer["union"]}
        out["policies"][policy] = {"layers": layers,
                                   "wall_time_s": round(time.perf_counter() - started, 1)}
    return out


def drowsy_rtl_layer(simulator: str = "icarus", *, trained: bool = True) -> dict:
    """DrowsyNet's ``conv2`` of the digits CNN (``trained``: FP32-trained, else as
    initialised with random biases, the pytest's case) with the engine's dropout plane on the
    RTL: RTL cycles, the cycle model's, ``equal``, ``bit_exact`` and the dropped outputs."""
    from tb.drowsy_case import RTL_ENGINE, RTL_LAYER, conv_case, design
    from sim.config import config_to_dict

    _check_simulator(simulator)
    started = time.perf_counter()
    with _work_dir() as work:
        spec = conv_case(work / "conv.npz", trained=trained)
        run_dir = run_bench(design(), toplevel="gemm_engine", bench_module="tb.drowsy_tb",
                            simulator=simulator, testcase="drowsy_conv", case=spec, quiet=True)
    (row,) = read_metrics(run_dir)
    return {"engine": config_to_dict(RTL_ENGINE), "simulator": simulator,
            "network": f"digits_cnn ({'FP32-trained' if trained else 'initialised, seed 0'})",
            "layer": RTL_LAYER, "m": spec["m"], "n": spec["n"], "k": spec["k"],
            "threshold": spec["threshold"], "rtl_cycles": row["cycles"],
            "model_cycles": spec["cycles"], "equal": row["cycles"] == spec["cycles"],
            "bit_exact": True,     # the bench fails on any output that differs
            "dropped": spec["dropped"], "total": spec["m"] * spec["n"],
            "wall_time_s": round(time.perf_counter() - started, 1)}
