"""Bench: FP32Multiplier against the golden fp32 multiplication (sim.numerics.fp32_multiply)."""

import cocotb
import numpy as np

from hw.fp.fp32_multiplier import MulFP32Operands
from sim.formats import FP32
from sim.numerics import fp32_multiply
from tb.harness import case, check_latency, drive_and_check, make_rng
from tb.packing import pack
from tb.vectors import describe_pair, edge_bits, fp32_vectors

MAN_BITS = FP32.man_bits


def _encode(sign, exp_field, man):
    return ((np.asarray(sign, dtype=np.uint64) << np.uint64(31))
            | (np.asarray(exp_field, dtype=np.uint64) << np.uint64(MAN_BITS))
            | np.asarray(man, dtype=np.uint64))


def edge_pairs():
    """Every pair of fp32 edge cases (zeros, subnormals, one, largest finite, inf, NaNs)."""
    edges = edge_bits(FP32)
    return np.repeat(edges, len(edges)), np.tile(edges, len(edges))


def exponent_pairs(rng, n, low, high):
    """Random significands and signs whose biased exponents sum to ``127 + low .. 127 + high``:
    products near the subnormal range, the underflow to zero, or overflow."""
    exp_a = rng.integers(1, FP32.exp_max_field, n)
    target = FP32.bias + rng.integers(low, high + 1, n)
    exp_b = np.clip(target - exp_a, 0, FP32.exp_max_field - 1)
    signs = rng.integers(0, 2, (2, n))
    mans = rng.integers(0, 1 << MAN_BITS, (2, n))
    return _encode(signs[0], exp_a, mans[0]), _encode(signs[1], exp_b, mans[1])


def tie_pairs(rng, n):
    """Products exactly halfway between two fp32 numbers: ``(1 + 2^-23 u) * (1 + 2^-1)``
    style pairs whose 48-bit product ends in a single one just below the rounding point,
    found by drawing odd significands and keeping the products with guard set and sticky
    clear (both evenness cases of the last kept bit occur)."""
    a, b = [], []
    while len(a) < n:
        sa = int(rng.integers(1 << MAN_BITS, 1 << (MAN_BITS + 1)))
        # b's significand: a power-of-two multiple of 3 or 1.5 so that few low bits are set
        sb = (3 << int(rng.integers(MAN_BITS - 1, MAN_BITS + 1))) >> 1
        if not 1 << MAN_BITS <= sb < 1 << (MAN_BITS + 1):
            continue
        product = sa * sb
        top = product.bit_length()
        low = product & ((1 << (top - MAN_BITS - 1)) - 1)
        if low == 1 << (top - MAN_BITS - 2):
            exp_a, exp_b = rng.integers(60, 190, 2)
            a.append(int(_encode(rng.integers(0, 2), exp_a, sa & ((1 << MAN_BITS) - 1))))
            b.append(int(_encode(rng.integers(0, 2), exp_b, sb & ((1 << MAN_BITS) - 1))))
    return np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64)


def subnormal_pairs(rng, n):
    """A subnormal times a value of any magnitude (and two subnormals)."""
    sign = rng.integers(0, 2, (2, n), dtype=np.uint64) << np.uint64(31)
    a = sign[0] | rng.integers(1, 1 << MAN_BITS, n, dtype=np.uint64)
    b = sign[1] | fp32_vectors(rng, n) & np.uint64(0x7FFFFFFF)
    return a, b


def multiplier_vectors(rng, n):
    """Directed pairs (edges, ties, subnormal and underflow products, overflow) and then ``n``
    random mixed pairs; the directed pairs are also tried swapped."""
    groups = [edge_pairs(), tie_pairs(rng, 300), subnormal_pairs(rng, 500),
              exponent_pairs(rng, 500, -160, -120), exponent_pairs(rng, 300, -30, 30),
              exponent_pairs(rng, 300, 120, 130),
              (fp32_vectors(rng, n), fp32_vectors(rng, n))]
    a = np.concatenate([g[0] for g in groups])
    b = np.concatenate([g[1] for g in groups])
    directed = len(a) - n
    return np.concatenate([a, b[:directed]]), np.concatenate([b, a[:directed]])


@cocotb.test()
async def multiply_matches_golden(dut):
    cfg = case()
    rng = make_rng(dut)
    a, b = multiplier_vectors(rng, cfg["vectors"])
    expected = fp32_multiply(a, b)
    inputs = pack(MulFP32Operands, a=a, b=b)
    await drive_and_check(dut, rng, inputs, expected.tolist(), describe_pair(a, b))


@cocotb.test()
async def multiply_latency_and_throughput(dut):
    """Without idle cycles or backpressure, one product per cycle, each ``stages`` cycles
    after its operands."""
    stages = case()["stages"]
    rng = make_rng(dut, salt=1)
    n = 200
    a, b = fp32_vectors(rng, n), fp32_vectors(rng, n)
    expected = fp32_multiply(a, b).tolist()
    inputs = pack(MulFP32Operands, a=a, b=b)
    describe = describe_pair(a, b)
    await check_latency(dut, inputs, expected, stages=stages, describe=describe,
                        noun="product")
