"""Bench: FP32Adder against the golden fp32 addition (sim.numerics.fp32_add)."""

import cocotb
import numpy as np

from hw.fp.adder import AddOperands
from sim.formats import FP32
from sim.numerics import fp32_add
from tb.harness import case, check_latency, drive_and_check, make_rng
from tb.packing import pack
from tb.vectors import describe_pair, edge_bits, fp32_vectors

SIGN = np.uint64(FP32.sign_mask)
MAN_BITS = FP32.man_bits
SIG_BITS = MAN_BITS + 1


def _encode(sign, exp_field, man):
    return ((np.uint64(sign) << np.uint64(31)) | (np.uint64(exp_field) << np.uint64(MAN_BITS))
            | np.uint64(man))


def edge_pairs():
    """Every pair of fp32 edge cases."""
    edges = edge_bits(FP32)
    return np.repeat(edges, len(edges)), np.tile(edges, len(edges))


def cancellation_pairs(rng, n):
    """``x + (-x)``: exact cancellation to +0 (and NaN/inf cases among the edges)."""
    x = fp32_vectors(rng, n)
    return x, x ^ SIGN


def tie_pairs(rng):
    """Pairs whose exponents differ by 0..40, with the bits of the smaller operand that fall
    below the larger one's last place set to exactly half a place, or one unit below or above
    it. The tail is also taken one place longer, with the larger operand's top bits set so
    that a sum carries out, and one place shorter, with them clear so that a difference shifts
    left. The larger operand's last bit is both even and odd."""
    a, b = [], []
    for diff in range(41):
        top_bits = ((1 << min(diff, MAN_BITS)) - 1) << (MAN_BITS - min(diff, MAN_BITS))
        for a_lsb in (0, 1):
            for subtract in (0, 1):
                for tail in (diff - 1, diff, diff + 1):
                    for delta in (-1, 0, 1):
                        for _ in range(2):
                            exp_a = int(rng.integers(diff + 1, FP32.exp_max_field))
                            man_a = int(rng.integers(0, 1 << MAN_BITS))
                            if tail > diff:
                                man_a |= top_bits
                            elif tail < diff:
                                man_a &= ~top_bits
                            man_a = (man_a & ~1) | a_lsb
                            sig_b = int(rng.integers(0, 1 << MAN_BITS)) | (1 << MAN_BITS)
                            if 1 <= tail <= SIG_BITS:
                                low = ((1 << (tail - 1)) + delta) & ((1 << tail) - 1)
                                sig_b = (sig_b & ~((1 << tail) - 1)) | low | (1 << MAN_BITS)
                            sign_a = int(rng.integers(0, 2))
                            a.append(_encode(sign_a, exp_a, man_a))
                            b.append(_encode(sign_a ^ subtract, exp_a - diff,
                                             sig_b & ((1 << MAN_BITS) - 1)))
    return np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64)


def subnormal_pairs(rng, n):
    """Subnormal + subnormal (either sign), and subnormal + smallest normals."""
    sign = rng.integers(0, 2, (2, n), dtype=np.uint64) << np.uint64(31)
    a = sign[0] | rng.integers(0, 1 << MAN_BITS, n, dtype=np.uint64)
    b = sign[1] | rng.integers(0, 2 << MAN_BITS, n, dtype=np.uint64)
    return a, b


def overflow_pairs(rng, n):
    """Large operands of one sign whose sum overflows or rounds up to infinity, and the largest
    finite value plus half its last place (a tie that rounds to infinity) or just under it."""
    sign = rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(31)
    top = np.uint64(FP32.exp_max_field - 1)
    a = sign | (top << np.uint64(MAN_BITS)) | rng.integers(0, 1 << MAN_BITS, n, dtype=np.uint64)
    exp_b = rng.integers(int(top) - 30, int(top) + 1, n).astype(np.uint64)
    b = sign | (exp_b << np.uint64(MAN_BITS)) | rng.integers(0, 1 << MAN_BITS, n, dtype=np.uint64)
    half_ulp = np.uint64((FP32.exp_max_field - 1 - SIG_BITS) << MAN_BITS)
    biggest = np.uint64(FP32.max_finite_bits)
    fixed_a = [biggest, biggest, biggest | SIGN, biggest | SIGN, biggest - np.uint64(1)]
    fixed_b = [half_ulp, half_ulp - np.uint64(1), half_ulp | SIGN, (half_ulp - np.uint64(1)) | SIGN,
               half_ulp]
    return (np.concatenate([a, np.array(fixed_a, dtype=np.uint64)]),
            np.concatenate([b, np.array(fixed_b, dtype=np.uint64)]))


def adder_vectors(rng, n):
    """Directed pairs (edges, cancellation, ties, subnormals, overflow) and then ``n`` random
    mixed pairs; the operands of every pair are also tried swapped."""
    groups = [edge_pairs(), cancellation_pairs(rng, 500), tie_pairs(rng),
              subnormal_pairs(rng, 500), overflow_pairs(rng, 200),
              (fp32_vectors(rng, n), fp32_vectors(rng, n))]
    a = np.concatenate([g[0] for g in groups])
    b = np.concatenate([g[1] for g in groups])
    directed = len(a) - n
    # swap the directed pairs (the random ones are symmetric already)
    return (np.concatenate([a, b[:directed]]), np.concatenate([b, a[:directed]]))


@cocotb.test()
async def add_matches_golden(dut):
    cfg = case()
    rng = make_rng(dut)
    a, b = adder_vectors(rng, cfg["vectors"])
    expected = fp32_add(a, b)
    inputs = pack(AddOperands, a=a, b=b)
    await drive_and_check(dut, rng, inputs, expected.tolist(), describe_pair(a, b))


@cocotb.test()
async def add_latency_and_throughput(dut):
    """Without idle cycles or backpressure, one sum per cycle, each ``stages`` cycles after its
    operands."""
    stages = case()["stages"]
    rng = make_rng(dut, salt=1)
    n = 200
    a, b = fp32_vectors(rng, n), fp32_vectors(rng, n)
    expected = fp32_add(a, b).tolist()
    inputs = pack(AddOperands, a=a, b=b)
    describe = describe_pair(a, b)
    await check_latency(dut, inputs, expected, stages=stages, describe=describe,
                        noun="sum")
