"""The GEMM engine configurations the benches build (shared by the pytest runners, the replay
bench and the scripts that run benches), each a :class:`sim.config.EngineConfig`."""

from sim.config import ArrayConfig, EngineConfig

__all__ = ["CONFIGS"]

# small memories keep the Verilog (and the build) small; sizes not powers of two on purpose
CONFIGS = {
    "4x4": EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=40,
                        b_rows=36, acc_width=32, acc_rows=44),
    # also the hardware-alone bench's engine (a 64 x 64 x 64 GEMM fits)
    "8x8": EngineConfig(array=ArrayConfig(rows=8, cols=8, mul_stages=1), spad_width=64,
                        a_rows=72, b_rows=64, acc_width=64, acc_rows=68,
                        out_formats=("fp32", "bf16", "e4m3")),
    "4x4 ws": EngineConfig(array=ArrayConfig(rows=4, cols=4, dataflow="ws"), spad_width=32,
                           a_rows=36, b_rows=44, acc_width=32, acc_rows=40),
    "5x3 ws": EngineConfig(array=ArrayConfig(rows=5, cols=3, dataflow="ws", mul_stages=3,
                                             a_formats=("fp16", "e5m2"), b_formats=("e4m3",)),
                           spad_width=16, a_rows=19, b_rows=21, acc_width=16, acc_rows=23,
                           out_formats=("e4m3", "fp32")),
    "3x5": EngineConfig(array=ArrayConfig(rows=3, cols=5, mul_stages=2,
                                          a_formats=("e4m3", "fp16"), b_formats=("e5m2", "e4m3")),
                        spad_width=16, a_rows=20, b_rows=24, acc_width=16, acc_rows=18,
                        out_formats=("fp16", "fp32", "e5m2")),
    # the zero gate (golden: sim.sparsity.gemm_skip)
    "4x4 skip": EngineConfig(array=ArrayConfig(rows=4, cols=4, skip_zeros=True), spad_width=32,
                             a_rows=40, b_rows=36, acc_width=32, acc_rows=44),
    # the lookahead window (cycles: sim.skip_timing.engine_cycles)
    "4x4 window2": EngineConfig(array=ArrayConfig(rows=4, cols=4, skip_zeros=True, skip_window=2),
                                spad_width=32, a_rows=40, b_rows=36, acc_width=32, acc_rows=44),
    "3x5 window3": EngineConfig(array=ArrayConfig(rows=3, cols=5, mul_stages=2, skip_zeros=True,
                                                  skip_window=3, a_formats=("e4m3", "fp16"),
                                                  b_formats=("e5m2", "e4m3")),
                                spad_width=16, a_rows=20, b_rows=24, acc_width=16, acc_rows=18,
                                out_formats=("fp16", "fp32", "e5m2"), output_mask=True),
    "4x4 window4": EngineConfig(array=ArrayConfig(rows=4, cols=4, skip_zeros=True, skip_window=4),
                                spad_width=32, a_rows=40, b_rows=36, acc_width=32, acc_rows=44,
                                output_mask=True),
    # output masks without a window: +0 where masked, dense cycles; R > C, so the dropout
    # mask writer (R cycles per tile) holds the generator back (C cycles per tile)
    "5x3 mask": EngineConfig(array=ArrayConfig(rows=5, cols=3), spad_width=32, a_rows=40,
                             b_rows=36, acc_width=32, acc_rows=44, output_mask=True),
    "4x4 ws skip": EngineConfig(array=ArrayConfig(rows=4, cols=4, dataflow="ws", skip_zeros=True),
                                spad_width=32, a_rows=36, b_rows=44, acc_width=32, acc_rows=40),
    # step lists (hw/engine/step_list_sequencer.py): scheduled commands
    "4x4 steps": EngineConfig(array=ArrayConfig(rows=4, cols=4, skip_zeros=True), spad_width=32,
                              a_rows=40, b_rows=36, acc_width=32, acc_rows=44, step_entries=48,
                              tile_entries=12),
    "3x5 steps": EngineConfig(array=ArrayConfig(rows=3, cols=5, mul_stages=2, skip_zeros=True,
                                                a_formats=("e4m3", "fp16"),
                                                b_formats=("e5m2", "e4m3")),
                              spad_width=16, a_rows=20, b_rows=24, acc_width=16, acc_rows=18,
                              out_formats=("fp16", "fp32", "e5m2"), step_entries=21,
                              tile_entries=7),
    # interleaved accumulation (ArrayConfig.acc_interleave): tiles in groups of L, the loop's
    # adder pipelined; L = 5 with a 3-stage multiplier (the Fmax point), and L = 2 with none
    # on an odd shape with output masks and the operands decoded at the array's edge
    "4x4 l5": EngineConfig(array=ArrayConfig(rows=4, cols=4, mul_stages=3, acc_interleave=5),
                           spad_width=32, a_rows=40, b_rows=36, acc_width=32, acc_rows=44),
    "8x8 l5": EngineConfig(array=ArrayConfig(rows=8, cols=8, mul_stages=3, acc_interleave=5),
                           spad_width=64, a_rows=72, b_rows=64, acc_width=64, acc_rows=68,
                           out_formats=("fp32", "bf16", "e4m3")),
    "3x5 l2": EngineConfig(array=ArrayConfig(rows=3, cols=5, acc_interleave=2, edge_decode=True,
                                             a_formats=("e4m3", "fp16"),
                                             b_formats=("e5m2", "e4m3")),
                           spad_width=16, a_rows=20, b_rows=24, acc_width=16, acc_rows=18,
                           out_formats=("fp16", "fp32", "e5m2"), output_mask=True),
    # the weight-stationary partial-sum adder pipelined (psum_stages)
    "4x4 ws p3": EngineConfig(array=ArrayConfig(rows=4, cols=4, dataflow="ws", mul_stages=3,
                                                psum_stages=3),
                              spad_width=32, a_rows=36, b_rows=44, acc_width=32, acc_rows=40),
    "16x16": EngineConfig(array=ArrayConfig(rows=16, cols=16, mul_stages=2), spad_width=64,
                          a_rows=80, b_rows=72, acc_width=64, acc_rows=76),
    "16x16 ws": EngineConfig(array=ArrayConfig(rows=16, cols=16, dataflow="ws"), spad_width=64,
                             a_rows=72, b_rows=80, acc_width=64, acc_rows=68),
}
