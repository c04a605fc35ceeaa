"""Bench: FP32Accumulator against the golden sequential fp32 sum.

The golden sum of ``x0 .. xn-1`` is ``fp32_sum(x[1:], init_bits=x[0])`` with NaN made canonical
(a single NaN addend is a NaN result): the accumulator starts from the first addend itself.
"""

import time

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly

from hw.fp.adder import AccInput
from sim.formats import FP32
from sim.numerics import canonicalize, fp32_sum
from tb.harness import StreamChecker, case, make_rng, next_cycle, record_metrics, reset, start_clock
from tb.packing import pack
from tb.vectors import mixed_bits

MAN_BITS = FP32.man_bits


def _finite(rng, n, exp_low, exp_high, sign=None):
    """Random finite patterns with biased exponent in ``exp_low..exp_high`` (0: subnormal)."""
    sign = rng.integers(0, 2, n, dtype=np.uint64) if sign is None else np.full(n, sign, np.uint64)
    exp = rng.integers(exp_low, exp_high + 1, n).astype(np.uint64)
    man = rng.integers(0, 1 << MAN_BITS, n, dtype=np.uint64)
    return (sign << np.uint64(31)) | (exp << np.uint64(MAN_BITS)) | man


def _close(rng, n):
    """One binade give or take three, both signs: heavy cancellation and renormalisation."""
    centre = int(rng.integers(4, FP32.exp_max_field - 4))
    return _finite(rng, n, centre - 3, centre + 3)


def _cancelling(rng, n):
    """``x, -x, y, -y, ...``: exact cancellation to +0 partway through a sum."""
    values = _finite(rng, (n + 1) // 2, FP32.bias - 10, FP32.bias + 10)
    return np.stack([values, values ^ np.uint64(FP32.sign_mask)], axis=1).reshape(-1)[:n]


SEQUENCE_KINDS = {
    # anything: uniform bits, edge cases (inf, NaN, subnormal), signed zeros, moderate values
    "mixed": lambda rng, n: mixed_bits(rng, FP32, n),
    "close": _close,
    # magnitudes across the whole finite range: large alignment shifts, sticky bits
    "spread": lambda rng, n: _finite(rng, n, 0, FP32.exp_max_field - 1),
    "zeros": lambda rng, n: rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(31),
    "tiny": lambda rng, n: _finite(rng, n, 0, 2),
    # near the largest finite value, one sign: overflow to infinity (a later opposite value
    # then cannot bring it back)
    "huge": lambda rng, n: _finite(rng, n, FP32.exp_max_field - 4, FP32.exp_max_field - 1,
                                   sign=int(rng.integers(0, 2))),
    "cancel": _cancelling,
}


def make_sequences(rng, addends):
    """Random sequences of 1..40 addends of varied kinds, about ``addends`` addends in all;
    one in five is short (1..3) so that sums follow each other closely."""
    sequences = []
    kinds = list(SEQUENCE_KINDS)
    total = 0
    while total < addends:
        length = int(rng.integers(1, 4) if rng.random() < 0.2 else rng.integers(1, 41))
        kind = kinds[int(rng.integers(0, len(kinds)))]
        sequences.append((kind, SEQUENCE_KINDS[kind](rng, length).astype(np.uint64)))
        total += length
    return sequences


def golden_sum(values):
    return int(canonicalize(FP32, fp32_sum(values[1:], init_bits=values[0])))


def stream_words(sequences):
    """Input words (``AccInput``) and, per word, whether it closes a sequence."""
    addends = np.concatenate([values for _, values in sequences])
    first = np.concatenate([np.arange(len(values)) == 0 for _, values in sequences])
    last = np.concatenate([np.arange(len(values)) == len(values) - 1 for _, values in sequences])
    words = pack(AccInput, addend=addends, first=first.astype(np.uint64),
                 last=last.astype(np.uint64))
    return words, last


def describe_sequence(sequences):
    def describe(k):
        kind, values = sequences[k]
        listed = " ".join(f"0x{int(v):08x}" for v in values)
        return f"sequence {k} ({kind}, {len(values)} addends): {listed}"
    return describe


async def run_sequences(dut, rng, sequences, *, p_idle, p_stall, max_latency=8):
    """Drive the addends with random idle cycles, take sums under random backpressure and
    check them in order (the shared :class:`~tb.harness.StreamChecker`). Returns cycles."""
    words, _ = stream_words(sequences)
    expected = [golden_sum(values) for _, values in sequences]
    checker = StreamChecker(dut, rng, p_idle=p_idle, p_stall=p_stall)
    return await checker.run(words, expected, describe_sequence(sequences), max_latency=max_latency)


async def start(dut):
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 0
    await start_clock(dut)
    await reset(dut)


@cocotb.test()
async def sums_match_golden(dut):
    """Half the addends under light backpressure, half under heavy backpressure (sums wait)."""
    rng = make_rng(dut)
    addends = case()["vectors"]
    await start(dut)
    began = time.perf_counter()
    cycles = count = 0
    for p_idle, p_stall in ((0.25, 0.25), (0.1, 0.75)):
        sequences = make_sequences(rng, addends // 2)
        cycles += await run_sequences(dut, rng, sequences, p_idle=p_idle, p_stall=p_stall)
        count += sum(len(values) for _, values in sequences)
    record_metrics(vectors=count, cycles=cycles, seconds=time.perf_counter() - began)
    dut._log.info("checked %d addends against the golden model in %d cycles", count, cycles)


@cocotb.test()
async def accumulate_latency_and_throughput(dut):
    """Without idle cycles or backpressure, one addend per cycle, and each sum ``stages + 1``
    cycles after its last addend."""
    latency = case()["stages"] + 1
    rng = make_rng(dut, salt=1)
    sequences = make_sequences(rng, 400)
    words, closes = stream_words(sequences)
    expected = [golden_sum(values) for _, values in sequences]
    await start(dut)
    dut.o__ready.value = 1
    closed_at = []                                  # cycle of each sequence's last addend
    sent = received = cycle = 0
    while received < len(expected):
        if cycle > len(words) + latency + 8:
            raise AssertionError(f"only {received} of {len(expected)} sums after {cycle} cycles")
        dut.i__valid.value = int(sent < len(words))
        if sent < len(words):
            dut.i__payload.value = words[sent]
        await ReadOnly()
        if sent < len(words):
            if not dut.i__ready.value:
                raise AssertionError(f"input not ready at cycle {cycle} without backpressure")
            if closes[sent]:
                closed_at.append(cycle)
            sent += 1
        if dut.o__valid.value:
            if received >= len(closed_at):
                raise AssertionError(f"sum {received} came out before its last addend went in")
            got, want = int(dut.o__payload.value), expected[received]
            if got != want:
                raise AssertionError(f"mismatch at {describe_sequence(sequences)(received)}; "
                                     f"rtl=0x{got:x} golden=0x{want:x}")
            if cycle - closed_at[received] != latency:
                raise AssertionError(f"sum {received} came {cycle - closed_at[received]} cycles "
                                     f"after its last addend, expected {latency}")
            received += 1
        await next_cycle(dut)
        cycle += 1
