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

``aip_network``: the planned FC layers of a trained network (:func:`tb.aip_case.network_case`:
the digits CNN's ``fc1`` with ``THRESHOLD``, ``fc2`` with ``TOP_N``), each from the operands the
golden procedure :func:`sim.aip.aip` multiplied (so a layer's input is the golden one, not the
previous layer's RTL output, which is checked equal to it anyway): the approximate pass with the
compact weights and the bias as the accumulator start, read back and compared bit for bit with
the golden approximate results; the selection into the keep plane; the exact pass with the full
weight masked by that plane, read back: the golden exact output where the golden selection kept
it, ``+0`` elsewhere (the golden model's ``TOP_N`` fill is ``-inf``; a wrong keep bit shows as a
result that is, or is not, ``+0``, and in the cycles). Both passes' cycles must equal the case's
cycle-model counts (:func:`sim.skip_timing.engine_cycles`, computed before the run; the driver
also checks them against its own shadow model). Each layer's figures are recorded
(:func:`tb.harness.record_metrics`) for :func:`sim.runner.read_metrics`.

The engine configuration and selection limits (and the network case) come from the pytest
runner.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from hw.aip.select import SelectStatus, select_command_layout, threshold_write_layout
from sim.aip import select_keep
from sim.aip_spec import SelectMode
from sim.engine_model import EngineCommand, EngineError, command_cycles, validate
from sim.gemm import TAG_OF
from tb.aip_case import layer_commands
from tb.packing import pack_word
from tb.engine_driver import EngineDriver, config_from_case, operand_words
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


async def select_into_plane(driver, *, Y, M, N, mode, n, thresholds, what) -> int:
    """The selection of the ``M x N`` approximate results at accumulator row ``Y`` into the
    keep plane at ``(0, 0)``: thresholds written (``THRESHOLD``), ``route = 1``, the selection
    command, read requests row by row, wait for ``select_status.busy`` low, ``route = 0``.
    Returns the cycles from the command's offer to ``busy`` low."""
    dut, C = driver.dut, driver.config.array.cols
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
    return select_cycles


async def aip_layer(driver, rng, *, M, K, N, mode, n=0, Y=None) -> dict:
    """One layer through the AIP procedure; returns its cycles."""
    dut, cfg = driver.dut, driver.config
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
    select_cycles = await select_into_plane(driver, Y=Y, M=M, N=N, mode=mode, n=n,
                                            thresholds=thresholds, what=what)
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


async def start(dut, cfg, rng, **kwargs) -> EngineDriver:
    """The selection ports idle, ``route = 0``, the engine driver started (clock, reset)."""
    for name in ("select_cmd", "select_threshold"):
        getattr(dut, f"{name}__valid").value = 0
        getattr(dut, f"{name}__payload").value = 0
    dut.route.value = 0
    driver = EngineDriver(dut, cfg, rng, **kwargs)
    await driver.start()
    return driver


@cocotb.test()
async def aip_layers(dut):
    spec = case()
    cfg = config_from_case(spec)
    rng = make_rng(dut)
    driver = await start(dut, cfg, rng, p_idle=0.2, p_stall=0.2)
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


# ----------------------------------------------------------------------- a trained network


def _compare(driver, got, want, row, what, *, keep=None):
    """``got`` (RTL words, the block at accumulator ``row``) against ``want`` bit for bit;
    the first difference is reported with its operands in hex (``keep``: where the golden
    selection kept the output)."""
    wrong = np.argwhere(got != want)
    if wrong.size:
        i, j = (int(v) for v in wrong[0])
        kept = "" if keep is None else f" (golden keep {bool(keep[i, j])})"
        raise AssertionError(f"{what}: {len(wrong)} outputs differ from sim.aip; first ({i}, "
                             f"{j}){kept}: rtl {int(got[i, j]):#010x}, golden "
                             f"{int(want[i, j]):#010x}; {driver.explain(row + i, j)}")


async def network_layer(driver, data, layer) -> dict:
    """One planned layer of the network case (:func:`tb.aip_case.network_case`) through the
    AIP procedure on the engine, checked bit for bit and cycle for cycle; returns its row."""
    dut = driver.dut
    name, m, n = layer["name"], layer["m"], layer["n"]
    mode = SelectMode[layer["mode"]]
    approx, exact = layer_commands(m, n, layer["k_approx"], layer["k"])

    def operands(key):
        bits = data[f"{name}.{key}"]
        return operand_words(bits, np.full(bits.shape, TAG_OF["fp16"]))

    bias_rows = np.tile(data[f"{name}.bias"].astype(np.uint64), (m, 1))
    # the approximate pass: compact weights, the bias as the accumulator start
    await driver.load(a=(operands("a_approx"), 0, 0), b=(operands("b_approx"), 0, 0),
                      acc=(bias_rows, approx.c_row, 0), p_idle=0)
    approx_cycles = await driver.command(approx, hardware_alone=True)
    answers = await driver.read_matrix(approx.c_row, 0, m, n)
    got = np.array(answers, dtype=np.uint32).reshape(m, -1)[:, :n]
    _compare(driver, got, data[f"{name}.approx"], approx.c_row, f"{name} approximate pass")

    # the selection into the keep plane, then the exact pass masked by it
    keep = data[f"{name}.keep"]
    thresholds = data[f"{name}.thresholds"].view(np.float32) \
        if mode == SelectMode.THRESHOLD else None
    select_cycles = await select_into_plane(driver, Y=approx.c_row, M=m, N=n, mode=mode,
                                            n=layer["n_select"], thresholds=thresholds,
                                            what=name)
    driver.mask_host.contents[:m, :n] = keep.astype(np.int64).astype(object)
    await driver.load(a=(operands("a_exact"), 0, 0), b=(operands("b_exact"), 0, 0),
                      acc=(bias_rows, exact.c_row, 0), p_idle=0)
    exact_cycles = await driver.command(exact, hardware_alone=True)
    answers = await driver.read_matrix(exact.c_row, 0, m, n)
    got = np.array(answers, dtype=np.uint32).reshape(m, -1)[:, :n]
    # kept: the golden exact output; not kept: +0 (a wrong keep bit shows here)
    _compare(driver, got, data[f"{name}.out"], exact.c_row, f"{name} exact pass", keep=keep)
    for what, cycles in (("approx", approx_cycles), ("exact", exact_cycles)):
        model = layer[f"{what}_cycles"]
        assert cycles == model, f"{name} {what} pass: {cycles} cycles, the cycle model says {model}"
    dut._log.info("%s (%s%s, %d x %d x %d, approximate K %d): approximate pass %d cycles, "
                  "selection %d, exact pass %d (model %d; dense %d, dense with the window %d), "
                  "%d of %d outputs kept", name, mode.name,
                  f" n={layer['n_select']}" if mode == SelectMode.TOP_N else "", m, n,
                  layer["k"], layer["k_approx"], approx_cycles, select_cycles, exact_cycles,
                  layer["exact_cycles"], layer["dense_cycles"], layer["dense_window_cycles"],
                  layer["kept"], layer["total"])
    row = dict(layer=name, mode=mode.name, n=layer["n_select"], M=m, K=layer["k"], N=n,
               K_approx=layer["k_approx"], approx_cycles=approx_cycles,
               approx_model_cycles=layer["approx_cycles"], select_cycles=select_cycles,
               exact_cycles=exact_cycles, exact_model_cycles=layer["exact_cycles"],
               dense_cycles=layer["dense_cycles"],
               dense_window_cycles=layer["dense_window_cycles"], kept=int(keep.sum()),
               total=int(keep.size), bit_exact=True)
    record_metrics(**row)
    return row


@cocotb.test()
async def aip_network(dut):
    """The planned layers of a trained network (:func:`tb.aip_case.network_case`, data from
    the runner) in order, each from the golden model's operands."""
    spec = case()
    driver = await start(dut, config_from_case(spec), make_rng(dut), p_idle=0.1, p_stall=0.1)
    with np.load(spec["data"]) as stored:
        data = {key: stored[key] for key in stored.files}
    for layer in spec["layers"]:
        await network_layer(driver, data, layer)
    assert select_status(dut) == {"busy": 0, "error": 0, "error_code": 0}
