"""Bench: ZeroDetector against the golden zero bitmap (sim.sparsity.zero_bitmap).

* ``flags_match_golden``: words of ``lanes`` tagged operands (+0 and -0 of every format, FP8
  zeros with a non-zero high byte, every FP8 code, fp16 edges: NaN, infinities, subnormals;
  all-zero and all-non-zero words; random words with every density of zeros) in, the same word
  with ``nonzero``, ``count``, ``any``, ``first`` (and ``indices``) out, all derived from
  ``~zero_bitmap(bits, tags)``.
* ``unknown_tag_raises_error``: lanes tagged with the unknown code 3 are passed through and
  reported non-zero, and raise the sticky ``error`` the cycle after acceptance; ``clear_error``
  clears it except against a fault in the same cycle.

Random idle cycles on the input and random backpressure on the output. The configuration
(lanes, stages, index_list, vectors) comes from the pytest runner.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly

from hw.fp.operand import Operand, OperandFormat
from hw.sparsity.zero_detect import zero_detect_layout
from sim.formats import OPERAND_FORMATS
from sim.gemm import OPERAND_TAGS
from sim.sparsity import zero_bitmap
from tb.harness import StreamChecker, case, make_rng, next_cycle, reset, start_clock
from tb.packing import fields
from tb.vectors import edge_bits, mixed_bits, operand_vectors

UNKNOWN_TAG = 3
OPERAND = fields(Operand)
LANE_BITS = OPERAND["fmt"][0] + OPERAND["fmt"][1]


def format_of(tag: int):
    return OPERAND_FORMATS[OPERAND_TAGS[tag]]


def fp8_high_bytes(rng, tags, bits):
    """FP8 lanes get a random high byte (ignored by the format, so it must not matter)."""
    fp8 = (tags == OperandFormat.E4M3.value) | (tags == OperandFormat.E5M2.value)
    noise = rng.integers(0, 256, bits.shape, dtype=np.uint64) << np.uint64(8)
    return np.where(fp8, (bits & np.uint64(0xFF)) | noise, bits)


def random_lanes(rng, tags):
    """Random bit patterns of each lane's format (mixed_bits: signed zeros, edges, moderate)."""
    bits = np.zeros(tags.shape, dtype=np.uint64)
    for tag, name in OPERAND_TAGS.items():
        sel = tags == tag
        bits[sel] = mixed_bits(rng, OPERAND_FORMATS[name], int(sel.sum()))
    return bits


def signed_zeros(rng, tags):
    """+0 or -0 (random sign) of each lane's format."""
    sign = rng.integers(0, 2, tags.shape).astype(np.uint64)
    widths = np.array([format_of(t).width for t in range(len(OPERAND_TAGS))], dtype=np.uint64)
    return sign << (widths[tags.astype(np.int64)] - np.uint64(1))


def stimulus(rng, lanes: int, n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tags, bits)``, each ``(words, lanes)``: edge words first, then random ones."""
    blocks = []

    def add(tags, bits):
        blocks.append((np.asarray(tags, dtype=np.uint64).reshape(-1, lanes),
                       np.asarray(bits, dtype=np.uint64).reshape(-1, lanes)))

    def lanes_of(tags, bits):
        """Flat lists cut into words (the last one padded with random operands)."""
        tags, bits = np.asarray(tags, dtype=np.uint64), np.asarray(bits, dtype=np.uint64)
        pad = -len(tags) % lanes
        extra = rng.integers(0, len(OPERAND_TAGS), pad).astype(np.uint64)
        add(np.concatenate([tags, extra]), np.concatenate([bits, random_lanes(rng, extra)]))

    # +0 and -0 of every format in every lane position, FP8 zeros with noise in the high byte
    for tag in OPERAND_TAGS:
        width = format_of(tag).width
        for sign in (0, 1):
            for high in (0, 0x5A) if width == 8 else (0,):
                value = (sign << (width - 1)) | (high << 8)
                add(np.full((lanes, lanes), tag), np.full((lanes, lanes), value))
    # one zero lane among non-zero ones, and one non-zero lane among zeros, at every position
    for zero_lane_is_odd in (False, True):
        tags = rng.integers(0, len(OPERAND_TAGS), (lanes, lanes)).astype(np.uint64)
        moderate = np.zeros((lanes, lanes), dtype=np.uint64)
        for tag, name in OPERAND_TAGS.items():
            sel = tags == tag
            fmt = OPERAND_FORMATS[name]
            moderate[sel] = (np.uint64(fmt.bias) << np.uint64(fmt.man_bits)) | \
                rng.integers(0, 1 << fmt.man_bits, int(sel.sum()), dtype=np.uint64)
        zeros = signed_zeros(rng, tags)
        diagonal = np.eye(lanes, dtype=bool)
        add(tags, np.where(diagonal ^ zero_lane_is_odd, zeros, moderate))
    # all-zero and all-non-zero words of mixed formats
    for _ in range(4):
        tags = rng.integers(0, len(OPERAND_TAGS), lanes).astype(np.uint64)
        add(tags, fp8_high_bytes(rng, tags, signed_zeros(rng, tags)))
        bits = random_lanes(rng, tags)
        bits = np.where(zero_bitmap(bits, tags), bits | np.uint64(1), bits)   # 1 ulp: non-zero
        add(tags, bits)
    # every FP8 code and the fp16 edges (NaN, infinities, subnormals, both signs)
    tags, bits = operand_vectors(rng, 0)
    lanes_of(tags, fp8_high_bytes(rng, tags, bits))
    for tag, name in OPERAND_TAGS.items():
        codes = edge_bits(OPERAND_FORMATS[name])
        lanes_of(np.full(len(codes), tag), codes)
    # random words, each with its own density of zeros
    done = sum(len(t) for t, _ in blocks)
    count = max(0, n_words - done)
    tags = rng.integers(0, len(OPERAND_TAGS), (count, lanes)).astype(np.uint64)
    bits = random_lanes(rng, tags)
    density = rng.random((count, 1))
    bits = np.where(rng.random((count, lanes)) < density, signed_zeros(rng, tags), bits)
    add(tags, fp8_high_bytes(rng, tags, bits))
    return (np.concatenate([t for t, _ in blocks]), np.concatenate([b for _, b in blocks]))


def input_words(tags, bits) -> list[int]:
    """Port words of ``lanes`` operands (lane ``i`` in bits ``18 i ..``)."""
    words = []
    for word_tags, word_bits in zip(tags.tolist(), bits.tolist()):
        word = 0
        for lane, (tag, value) in enumerate(zip(word_tags, word_bits)):
            operand = (value << OPERAND["bits"][0]) | (tag << OPERAND["fmt"][0])
            word |= operand << (lane * LANE_BITS)
        words.append(word)
    return words


def golden_nonzero(tags, bits) -> np.ndarray:
    """``~zero_bitmap``; lanes with the unknown tag are non-zero by the unit's definition
    (the golden model refuses the tag)."""
    unknown = tags == UNKNOWN_TAG
    nonzero = np.ones(tags.shape, dtype=bool)
    nonzero[~unknown] = ~zero_bitmap(bits[~unknown], tags[~unknown], field="lane")
    return nonzero


def expected_words(cfg, words: list[int], nonzero: np.ndarray) -> list[int]:
    """Output words: the input word and the fields derived from the non-zero bitmap."""
    layout = fields(zero_detect_layout(cfg["lanes"], cfg["index_list"]))
    out = []
    for word, flags in zip(words, nonzero):
        lanes_set = np.flatnonzero(flags).tolist()
        values = {
            "operands": word,
            "nonzero": sum(1 << lane for lane in lanes_set),
            "count": len(lanes_set),
            "any": int(bool(lanes_set)),
            "first": lanes_set[0] if lanes_set else 0,
        }
        result = 0
        for name, value in values.items():
            result |= value << layout[name][0]
        if cfg["index_list"]:
            offset, width = layout["indices"]
            entry_bits = width // cfg["lanes"]
            for entry, lane in enumerate(lanes_set):
                result |= lane << (offset + entry * entry_bits)
        out.append(result)
    return out


def describer(tags, bits, nonzero):
    def describe(k):
        lanes = ", ".join(
            f"{OperandFormat(t).name if t != UNKNOWN_TAG else 'tag3'} 0x{b:04x}"
            for t, b in zip(tags[k].tolist(), bits[k].tolist()))
        flags = "".join(str(int(f)) for f in nonzero[k][::-1])
        return f"word {k}: lanes [{lanes}]; golden nonzero (lane 0 rightmost) {flags}"
    return describe


async def start(dut, rng, **kwargs) -> StreamChecker:
    checker = StreamChecker(dut, rng, **kwargs)
    checker.idle()
    dut.clear_error.value = 0
    await start_clock(dut)
    await reset(dut)
    return checker


@cocotb.test()
async def flags_match_golden(dut):
    cfg = case()
    rng = make_rng(dut)
    tags, bits = stimulus(rng, cfg["lanes"], cfg["vectors"])
    nonzero = golden_nonzero(tags, bits)
    assert not (tags == UNKNOWN_TAG).any()
    counts = nonzero.sum(axis=1)
    assert counts.min() == 0 and counts.max() == cfg["lanes"], "stimulus lacks extremes"
    words = input_words(tags, bits)
    checker = await start(dut, rng)
    cycles = await checker.run(words, expected_words(cfg, words, nonzero),
                               describer(tags, bits, nonzero))
    dut._log.info("checked %d words in %d cycles", len(words), cycles)
    assert int(dut.error.value) == 0, "error raised by words with known tags"


async def pulse_clear(dut):
    dut.clear_error.value = 1
    await next_cycle(dut)
    dut.clear_error.value = 0


@cocotb.test()
async def unknown_tag_raises_error(dut):
    cfg = case()
    rng = make_rng(dut, salt=1)
    lanes = cfg["lanes"]
    tags, bits = stimulus(rng, lanes, 200)
    tags, bits = tags[-200:].copy(), bits[-200:].copy()
    stray = rng.random(tags.shape) < 0.05
    stray[0] = False                                   # the run starts with a clean word
    stray[7, rng.integers(0, lanes)] = True
    tags[stray] = UNKNOWN_TAG
    nonzero = golden_nonzero(tags, bits)
    words = input_words(tags, bits)
    checker = await start(dut, rng)
    await checker.run(words, expected_words(cfg, words, nonzero), describer(tags, bits, nonzero))
    assert int(dut.error.value) == 1, "no error after words with the unknown tag"
    await pulse_clear(dut)
    await ReadOnly()
    assert int(dut.error.value) == 0, "error not cleared by clear_error"
    await next_cycle(dut)

    # exact timing: one word at a time with ready high
    clean, bad = words[0], words[7]
    dut.o__ready.value = 1

    async def send(word, clear=0):
        """Offer ``word`` until accepted (``clear_error`` with it); returns ``error`` as seen
        in the accepting cycle."""
        dut.i__valid.value = 1
        dut.i__payload.value = word
        dut.clear_error.value = clear
        while True:
            await ReadOnly()
            accepted = bool(dut.i__ready.value)
            before = int(dut.error.value)
            await next_cycle(dut)
            if accepted:
                break
        dut.i__valid.value = 0
        dut.clear_error.value = 0
        return before

    assert await send(clean) == 0
    await ReadOnly()
    assert int(dut.error.value) == 0, "error raised by a clean word"
    await next_cycle(dut)
    assert await send(bad) == 0, "error raised before the bad word was accepted"
    await ReadOnly()
    assert int(dut.error.value) == 1, "error not raised the cycle after the bad word"
    await next_cycle(dut)
    assert await send(clean) == 1
    await ReadOnly()
    assert int(dut.error.value) == 1, "error not sticky"
    await next_cycle(dut)
    await send(bad, clear=1)
    await ReadOnly()
    assert int(dut.error.value) == 1, "a fault in the clearing cycle was lost"
    await next_cycle(dut)
    await send(clean, clear=1)
    await ReadOnly()
    assert int(dut.error.value) == 0, "clear_error with a clean word did not clear"
    await next_cycle(dut)
