"""Bench: OperandDecoder against the golden FP8/fp16 -> fp16 conversion."""

import cocotb
import numpy as np

from hw.fp.operand import Operand, OperandFormat
from sim.formats import FP16
from sim.numerics import convert
from tb.harness import case, drive_and_check, make_rng
from tb.packing import pack
from tb.vectors import operand_vectors


@cocotb.test()
async def decode_matches_golden(dut):
    cfg = case()
    rng = make_rng(dut)
    tags, bits = operand_vectors(rng, cfg["vectors"])
    expected = np.empty(len(bits), dtype=np.uint16)
    for tag in OperandFormat:
        sel = tags == tag.value
        expected[sel] = convert(tag.fmt, FP16, bits[sel] & ((1 << tag.fmt.width) - 1))
    inputs = pack(Operand, bits=bits, fmt=tags)

    def describe(k):
        return f"operand {OperandFormat(int(tags[k])).name} 0x{int(bits[k]):04x}"

    await drive_and_check(dut, rng, inputs, expected.tolist(), describe)
