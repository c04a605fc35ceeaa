"""Bench: one DrowsyNet convolution on :class:`hw.engine.engine.GemmEngine` with the engine's
dropout plane, against :mod:`sim.drowsy`.

``drowsy_conv``: the GEMM saved by the pytest runner (:func:`tb.drowsy_case.conv_case`:
operands as the engine stores them, A transposed, the bias as the accumulator start) is loaded,
the engine regenerates the dropout plane from the layer's seed and threshold, and one
``mask_dropout`` command runs. The outputs read back must equal the golden model's bit for bit
and the command's cycles the cycle model's (:func:`sim.skip_timing.engine_cycles`); the driver
also checks both against its own shadow-memory model, and the mask writer's cycles.

The engine configuration, the data file, seed, threshold and cycle count come from the runner.
"""

import cocotb
import numpy as np

from sim.engine_model import EngineCommand
from sim.gemm import TAG_OF
from tb.engine_driver import EngineDriver, config_from_case, operand_words
from tb.harness import case, make_rng, record_metrics


@cocotb.test()
async def drowsy_conv(dut):
    """The runner's GEMM with the dropout plane: outputs and cycles against the models."""
    settings = case()
    cfg = config_from_case(settings)
    driver = EngineDriver(dut, cfg, make_rng(dut), p_idle=0.1, p_stall=0.1)
    with np.load(settings["data"]) as data:
        a_bits, b_bits, c_bits, want = (data[k] for k in ("a_bits", "b_bits", "c_bits",
                                                          "out_bits"))
    m, n, k = settings["m"], settings["n"], settings["k"]
    fp16 = TAG_OF["fp16"]
    await driver.start()
    await driver.load(a=(operand_words(a_bits, np.full(a_bits.shape, fp16)), 0, 0),
                      b=(operand_words(b_bits, np.full(b_bits.shape, fp16)), 0, 0),
                      acc=(c_bits.astype(np.uint64), 0, 0))
    await driver.dropout_mask(seed=settings["seed"], threshold=settings["threshold"], m=m, n=n,
                              row=0, col=0)
    command = EngineCommand(m=m, n=n, k=k, a_transpose=True, accumulate=True,
                            mask_dropout=True)
    cycles = await driver.command(command, hardware_alone=True)
    answers = await driver.read_matrix(0, 0, m, n)
    got = np.array(answers, dtype=np.uint32).reshape(m, -1)[:, :n]
    wrong = np.argwhere(got != want)
    assert not wrong.size, (f"{len(wrong)} outputs differ from sim.drowsy; first "
                            f"{tuple(wrong[0])}: rtl {got[tuple(wrong[0])]:#010x}, model "
                            f"{want[tuple(wrong[0])]:#010x}")
    assert cycles == settings["cycles"], (cycles, settings["cycles"])
    dut._log.info("drowsy conv %dx%dx%d, %d of %d outputs dropped: %d cycles (cycle model %d)",
                  m, n, k, settings["dropped"], m * n, cycles, settings["cycles"])
    record_metrics(cycles=cycles, model_cycles=settings["cycles"], dropped=settings["dropped"])
