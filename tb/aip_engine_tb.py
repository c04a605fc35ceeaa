"""Bench: the AIP procedure on :class:`hw.aip.engine.AipEngine` against the golden models.

``aip_layers``: fully connected layers ``y = x . W`` (``M`` samples, ``K`` inputs, ``N``
outputs) run as AIP on the RTL: the approximate pass (the first ``ceil(K / 4)`` inputs: the
compact weights are the first quarter of ``W``'s rows) into an accumulator region, the
selection of its results (``THRESHOLD`` with ReLU-like thresholds, ``TOP_N`` with ``n`` of 1, a
random one and ``N``) streamed from ``rd_data`` into the keep plane, then the exact pass masked
by that plane. Checked: the approximate results (golden GEMM), the exact pass's results
(golden :func:`sim.sparsity.gemm_skip` with the keep mask of :func:`sim.aip.select_keep` of the
golden approximate results: a keep bit the RTL got wrong shows as a result that is, or is not,
``+0``), and the cycles of both passes against the engine's cycle model. The selection's
cycles (selection command accepted to ``select_status.busy`` low) are logged and recorded.

The engine configuration and selection limits come from the pytest runner.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from hw.aip.select import SelectStatus, select_command_layout, threshold_write_layout
from sim.aip import select_keep
from sim.aip_spec import SelectMode
from sim.engine_model import EngineCommand, EngineError, command_cycles, validate
from tb.aip_select_tb import pack_word
from tb.engine_driver import EngineDriver, config_from_case
from tb.engine_tb import operand_matrix
from tb.harness import case, make_rng, record_metrics
from tb.packing import fields


def select_status(dut) -> dict[str, int]:
    word = int(dut.select_status.value)
    return {name: (word >> offset) & ((1 << width) - 1)
            for name, (offset, width) in fields(SelectStatus).items()}


async def send(driver, name, words):
    """Offer words on one of the selection ports (random idle cycles)."""
    port = getattr(driver.dut, f"{name}__valid"), getattr(driver.dut, f"{name}__payload")
    for word in words:
        while driver.rng.random() < driver.p_idle:
            port[0].value = 0
            await FallingEdge(driver.dut.clk)
        port[0].value = 1
        port[1].value = word
        while True:
            await ReadOnly()
            taken = bool(getattr(driver.dut, f"{name}__ready").value)
            await FallingEdge(driver.dut.clk)
            if taken:
                break
    port[0].value = 0


def thresholds_for(rng, y: np.ndarray) -> np.ndarray:
    """FP32 thresholds of a ReLU-like layer: 0 (+0 or -0), or a value among the approximate
    results (so that some are equal to their threshold), or the results' median."""
    N = y.shape[1]
    finite = y[np.isfinite(y)]
    median = np.float32(np.median(finite)) if finite.size else np.float32(0)
    choices = np.stack([np.zeros(N, np.float32), np.full(N, -0.0, np.float32),
                        y[rng.integers(0, y.shape[0], N), np.arange(N)],
                        np.full(N, median, np.float32)])
    t = choices[rng.integers(0, 4, N), np.arange(N)]
    return np.where(np.isnan(t), np.float32(0), t).astype(np.float32)


async def aip_layer(driver, rng, *, M, K, N, mode, n=0, Y=None) -> dict:
    """One layer through the AIP procedure; returns its cycles."""
    dut, cfg, C = driver.dut, driver.config, driver.config.array.cols
    Y = cfg.acc_rows - M if Y is None else Y
    a = operand_matrix(rng, (M, K), cfg.array.a_formats, "moderate")
    b = operand_matrix(rng, (K, N), cfg.array.b_formats, "moderate")
    await driver.load(a=(a, 0, 0), b=(b, 0, 0))
    approx = EngineCommand(m=M, n=N, k=-(-K // 4), c_row=Y)
    exact = EngineCommand(m=M, n=N, k=K, mask_host=True)
    for command in (approx, exact):
        assert validate(cfg, command) is EngineError.NONE, f"{command}: {validate(cfg, command)}"
    approx_cycles = await driver.command(approx)

    # the golden selection of the golden approximate results (the driver's shadow holds them)
    y = np.array(driver.acc.contents[Y:Y + M, :N], dtype=np.uint32).view(np.float32)
    thresholds = thresholds_for(rng, y) if mode == SelectMode.THRESHOLD else None
    keep = select_keep(y, mode, thresholds=thresholds, n=n)
    what = (f"{SelectMode(mode).name}{f' n={n}' if mode == SelectMode.TOP_N else ''} "
            f"M={M} K={K} N={N}")
    if thresholds is not None:
        words = []
        t = np.zeros(-(-N // C) * C, np.float32)
        t[:N] = thresholds
        for beat in range(-(-N // C)):
            data = sum(int(w) << (32 * lane)
                       for lane, w in enumerate(t[beat * C:(beat + 1) * C].view(np.uint32)))
            words.append(pack_word(threshold_write_layout(C), beat=beat, data=data,
                                   mask=(1 << C) - 1))
        await send(driver, "select_threshold", words)

    # selection: the approximate results stream from rd_data into the keep plane
    dut.route.value = 1
    start = driver.cycle()
    await send(driver, "select_cmd", [pack_word(select_command_layout(), mode=int(mode), n=n,
                                                length=N, rows=M, row=0, col=0)])
    requests = [driver.pack_read(row=Y + i, col=g * C, fmt=0, saturate=0)
                for i in range(M) for g in range(-(-N // C))]
    await driver._send("rd_req", requests)
    for _ in range(20 * len(requests) * (N + 4) + 100):
        await ReadOnly()
        status = select_status(dut)
        if not status["busy"]:
            break
        await FallingEdge(dut.clk)
    else:
        raise AssertionError(f"{what}: selection still busy")
    assert not status["error"], f"{what}: selection error {status}"
    select_cycles = driver.cycle() - start
    await FallingEdge(dut.clk)
    dut.route.value = 0
    driver.mask_host.contents[:M, :N] = keep.astype(np.int64).astype(object)

    exact_cycles = await driver.command(exact)
    await driver.read_matrix(0, 0, M, N)
    dense = command_cycles(cfg, EngineCommand(m=M, n=N, k=K))
    dut._log.info("%s: approximate pass %d cycles, selection %d, exact pass %d (dense %d), "
                  "%d of %d outputs kept", what, approx_cycles, select_cycles, exact_cycles,
                  dense, int(keep.sum()), keep.size)
    row = dict(mode=SelectMode(mode).name, n=n, M=M, K=K, N=N, approx_cycles=approx_cycles,
               select_cycles=select_cycles, exact_cycles=exact_cycles, dense_cycles=dense,
               kept=int(keep.sum()))
    record_metrics(**row)
    return row


@cocotb.test()
async def aip_layers(dut):
    spec = case()
    cfg = config_from_case(spec)
    rng = make_rng(dut)
    for name in ("select_cmd", "select_threshold"):
        getattr(dut, f"{name}__valid").value = 0
        getattr(dut, f"{name}__payload").value = 0
    dut.route.value = 0
    driver = EngineDriver(dut, cfg, rng, p_idle=0.2, p_stall=0.2)
    await driver.start()
    max_len = min(spec["max_len"], cfg.acc_width)
    R = cfg.array.rows
    layers = []       # THRESHOLD and TOP_N in turn, n = 1, the largest, random, ...
    for index in range(spec.get("layers", 4)):
        M = int(rng.integers(1, 2 * R + 2))
        N = int(rng.integers(1, max_len + 1)) if index else max_len
        K = int(rng.integers(4, cfg.spad_width + 1))
        top = min(N, spec.get("max_n") or spec["max_len"])
        mode = SelectMode.THRESHOLD if index % 2 == 0 else SelectMode.TOP_N
        n = [1, top, int(rng.integers(1, top + 1))][index // 2 % 3] \
            if mode == SelectMode.TOP_N else 0
        layers.append(await aip_layer(driver, rng, M=M, K=K, N=N, mode=mode, n=n))
    # the full size: a layer as large as the engine's memories allow, a random n
    top = min(max_len, spec.get("max_n") or spec["max_len"])
    layers.append(await aip_layer(driver, rng, M=2 * R, K=cfg.spad_width, N=max_len,
                                  mode=SelectMode.TOP_N, n=int(rng.integers(1, top + 1))))
    assert select_status(dut) == {"busy": 0, "error": 0, "error_code": 0}
