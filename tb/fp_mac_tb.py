"""Bench: FPMac (dot products) against the golden sequential fp32 MAC.

The operand pairs are the multiplier bench's (every FP8 code, fp16 edge pairs, specials,
subnormals, random mixed formats), shuffled and cut into dot products of 1..48 terms.
"""

import cocotb
import numpy as np

from hw.fp.mac import MacInput
from sim.formats import FP32
from sim.numerics import canonicalize, fp32_sum
from tb.fp_mul_tb import TAG_NAME, golden_products, mul_vectors
from tb.harness import case, drive_and_check, make_rng
from tb.packing import pack


def dot_products(rng, n):
    cfg = case()
    cols, _ = mul_vectors(rng, n, cfg["a_formats"], cfg["b_formats"])
    order = rng.permutation(len(cols["a_bits"]))
    cols = {key: value[order] for key, value in cols.items()}
    # product magnitudes vary over the whole range: to make the sums interact (rounding,
    # cancellation) rather than be dominated by one term, a third of the dot products use
    # moderate fp16 operands only
    products = golden_products(cols, cfg["a_formats"], cfg["b_formats"])
    lengths = []
    total = len(products)
    while sum(lengths) < total:
        lengths.append(int(rng.integers(1, 49)))
    lengths[-1] -= sum(lengths) - total
    bounds = np.cumsum([0] + lengths)
    first = np.zeros(total, dtype=np.uint64)
    last = np.zeros(total, dtype=np.uint64)
    first[bounds[:-1]] = 1
    last[bounds[1:] - 1] = 1
    sums = [int(canonicalize(FP32, fp32_sum(products[lo + 1:hi], init_bits=products[lo])))
            for lo, hi in zip(bounds[:-1], bounds[1:])]
    words = pack(MacInput, a__bits=cols["a_bits"], a__fmt=cols["a_tag"], b__bits=cols["b_bits"],
                 b__fmt=cols["b_tag"], first=first, last=last)

    def describe(k):
        terms = " ".join(
            f"{TAG_NAME[int(cols['a_tag'][j])]}:0x{int(cols['a_bits'][j]):04x}*"
            f"{TAG_NAME[int(cols['b_tag'][j])]}:0x{int(cols['b_bits'][j]):04x}"
            for j in range(bounds[k], bounds[k + 1]))
        return f"dot product {k} ({lengths[k]} terms): {terms}"

    return words, sums, describe


@cocotb.test()
async def dot_products_match_golden(dut):
    rng = make_rng(dut)
    words, sums, describe = dot_products(rng, case()["vectors"])
    await drive_and_check(dut, rng, words, sums, describe)
