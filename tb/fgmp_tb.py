"""Benches: the FGMP encoder, packer and unpacker against the golden model (sim/fgmp.py).

* ``encoder_matches_golden``: tag and payload of every element (threshold and rounding edges,
  every ``t``, both FP8 formats, ``flush`` on and off, unknown format codes).
* ``encoder_exhaustive``: every fp16 code, for every FP8 format built in, with ``flush`` off and
  on (each code with a random ``t``).
* ``packer_bytes_match_golden``: bus words of FP32 tensors == ``sim.fgmp.pack`` of their fp16
  rounding, tensor after tensor with its own ``t``, format and ``flush`` (tensors full of FP8
  underflow among them).
* ``unpacker_operands_match_golden``: operands from golden streams == ``sim.fgmp.unpack``.
* ``round_trip``: packer into unpacker == the golden store-then-load (``flush`` on and off,
  tensors full of FP8 underflow among them).
* ``unpacker_corrupt_streams`` / ``packer_bad_format``: corrupt streams and bad settings raise the error
  status, the tensor still ends (no hang) and the next one is correct.

All with random idle cycles on the inputs and random backpressure on the outputs. The
configuration (block, bus width, formats, vectors) comes from the pytest runner.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly

from hw.fgmp.encoder import EncodeInput
from hw.fgmp.interface import FgmpElement, FgmpError, UnpackedOperand, bus_word_layout
from hw.fp.operand import OperandFormat
from sim.fgmp import FgmpBlockFormat, encode_tags, fp8_of, pack, unpack
from sim.formats import FP16, FP32
from sim.numerics import convert
from tb.fgmp_tops import packer_input_layout, round_trip_input_layout, unpacker_input_layout
from tb.fgmp_vectors import Tensor, fp16_tensors, fp32_tensors, widen
from tb.harness import (StreamChecker, case, drive_and_check, make_rng, next_cycle, reset,
                        start_clock)
from tb.packing import fields

TAG = {"e4m3": OperandFormat.E4M3.value, "e5m2": OperandFormat.E5M2.value}


# -- port words ------------------------------------------------------------------------------------
def port_words(layout, **columns) -> list[int]:
    """Port words (Python ints of any width) from columns of field values."""
    geometry = fields(layout)
    length = max(len(c) for c in columns.values())
    words = [0] * length
    for name, column in columns.items():
        offset, width = geometry[name.replace("__", ".")]
        for k, value in enumerate(column):
            value = int(value)
            if value >> width:
                raise ValueError(f"{name}={value:#x} wider than {width} bits")
            words[k] |= value << offset
    return words


def bus_words(data: bytes, bus_bytes: int) -> tuple[list[int], list[int]]:
    """``(data, last)`` columns of the bus words of a stream."""
    chunks = [data[k:k + bus_bytes] for k in range(0, len(data), bus_bytes)]
    return ([int.from_bytes(c, "little") for c in chunks],
            [int(k == len(chunks) - 1) for k in range(len(chunks))])


def element_spans(data: bytes, tags, geometry: FgmpBlockFormat) -> tuple[np.ndarray, np.ndarray]:
    """Byte offset and width of each element in a stream with these tags (from the format:
    tag mask first in each block, then 1 or 2 bytes per element)."""
    n = len(tags)
    padded = np.ones(geometry.blocks(n) * geometry.block, dtype=bool)
    padded[:n] = tags
    widths = np.where(padded, 1, 2).reshape(-1, geometry.block)
    block_sizes = geometry.tag_bytes + widths.sum(axis=1)
    block_start = np.concatenate([[0], np.cumsum(block_sizes)[:-1]])
    starts = block_start[:, None] + geometry.tag_bytes + np.cumsum(widths, axis=1) - widths
    return starts.ravel()[:n], widths.ravel()[:n]


def operand_columns(data: bytes, tags, fmt8: str, geometry: FgmpBlockFormat) -> dict:
    """Expected unpacker outputs of a valid stream: the raw payload of each element (its FP8
    code or fp16 pattern as stored), its tag, zero flag and ``last``."""
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    starts, widths = element_spans(data, tags, geometry)
    high = np.where(widths == 2, raw[np.minimum(starts + 1, raw.size - 1)], 0)
    bits = raw[starts] | (high << 8)
    magnitude = np.where(tags, bits & 0x7F, bits & 0x7FFF)
    n = len(tags)
    return {"operand__bits": bits, "operand__fmt": np.where(tags, TAG[fmt8], 0),
            "zero": (magnitude == 0).astype(int), "last": (np.arange(n) == n - 1).astype(int)}


def zero_columns(count: int, n: int) -> dict:
    """The fp16 +0 operands an unpacker delivers after a fault, up to the tensor's ``n``."""
    return {"operand__bits": [0] * count, "operand__fmt": [0] * count, "zero": [1] * count,
            "last": [int(k == n - 1) for k in range(n - count, n)]}


def describe_operand(word: int) -> str:
    geometry = fields(UnpackedOperand)
    get = lambda name: (word >> geometry[name][0]) & ((1 << geometry[name][1]) - 1)
    return (f"bits=0x{get('operand.bits'):04x} fmt={get('operand.fmt')} zero={get('zero')} "
            f"last={get('last')}")


def geometry_of(cfg) -> FgmpBlockFormat:
    return FgmpBlockFormat(block=cfg["block"], bus_bytes=cfg["bus_bytes"])


# -- the encoding rule -----------------------------------------------------------------------------
def underflow_fp16(fmt8: str) -> np.ndarray:
    """Every finite non-zero fp16 code whose FP8 rounding is a zero (both signs): fp16
    subnormals, and for e4m3 the tiny normals too."""
    codes = FP16.all_codes()
    magnitude = codes & 0x7FFF
    finite_nonzero = (magnitude != 0) & (magnitude < 0x7C00)
    return codes[finite_nonzero & ((fp8_of(codes, fmt8) & 0x7F) == 0)]


def golden_elements(values, t, fmt, flush, formats):
    """Expected encoder outputs ``(fp8 tags, payloads)`` of elements with their own ``t``,
    format code and ``flush``; an unknown format code stores fp16."""
    fp8 = np.zeros(values.size, dtype=bool)
    payload = values.astype(np.int64)
    for name in formats:
        for threshold in range(16):
            for flush_underflow in (False, True):
                sel = (fmt == TAG[name]) & (t == threshold) & (flush == flush_underflow)
                tags = encode_tags(values[sel], name, threshold, flush_underflow=flush_underflow)
                fp8[sel] = tags
                payload[sel] = np.where(tags, fp8_of(values[sel], name), values[sel])
    return fp8, payload


async def check_encoder(dut, rng, values, t, fmt, flush, formats, **kwargs):
    fp8, payload = golden_elements(values, t, fmt, flush, formats)
    inputs = port_words(EncodeInput, value=values, t=t, fmt=fmt, flush=flush)
    expected = port_words(FgmpElement, payload=payload, fp8=fp8)

    def describe(k):
        return (f"fp16 0x{int(values[k]):04x} t={int(t[k])} fmt={int(fmt[k])} "
                f"flush={int(flush[k])}; expected tag {int(fp8[k])} "
                f"payload 0x{int(payload[k]):04x}")

    await drive_and_check(dut, rng, inputs, expected, describe, **kwargs)
    return fp8, payload


@cocotb.test()
async def encoder_matches_golden(dut):
    cfg = case()
    rng = make_rng(dut)
    tensors = fp16_tensors(rng, cfg["vectors"], block=16, fmt8s=tuple(cfg["formats"]))
    values = np.concatenate([x.values for x in tensors]).astype(np.int64)
    t = np.concatenate([np.full(x.values.size, x.t) for x in tensors])
    fmt = np.concatenate([np.full(x.values.size, TAG[x.fmt8]) for x in tensors])
    flush = np.concatenate([np.full(x.values.size, rng.integers(0, 2)) for x in tensors])
    # unknown format codes (fp16, the unused code, a format not built in) store fp16
    unknown = [c for c in range(4) if c not in [TAG[f] for f in cfg["formats"]]]
    stray = rng.random(values.size) < 0.05
    fmt = np.where(stray, np.array(unknown)[rng.integers(0, len(unknown), values.size)], fmt)
    await check_encoder(dut, rng, values, t, fmt, flush, cfg["formats"])


@cocotb.test()
async def encoder_exhaustive(dut):
    """All 65,536 fp16 codes per built format, each once with ``flush`` off and once on, in a
    random order (settings change from element to element), each with a random ``t``."""
    cfg = case()
    rng = make_rng(dut)
    formats = tuple(cfg["formats"])
    codes = FP16.all_codes().astype(np.int64)
    values = np.tile(codes, 2 * len(formats))
    fmt = np.repeat([TAG[name] for name in formats], 2 * codes.size)
    flush = np.tile(np.repeat([0, 1], codes.size), len(formats))
    t = rng.integers(0, 16, values.size)
    order = rng.permutation(values.size)
    values, fmt, flush, t = values[order], fmt[order], flush[order], t[order]
    # light handshake randomness: the sweep is long, the data benches cover the stream rules
    fp8, payload = await check_encoder(dut, rng, values, t, fmt, flush, formats,
                                       p_idle=0.02, p_stall=0.02)
    # the sweep must contain the cases flush decides: every underflow code stored as the FP8
    # zero of its sign with flush on, as fp16 with it off
    for name in formats:
        under = np.isin(values, underflow_fp16(name)) & (fmt == TAG[name])
        flushed = under & (flush == 1)
        assert flushed.any() and fp8[flushed].all() and not fp8[under & (flush == 0)].any(), \
            f"{name}: the golden tags do not separate flush on and off on underflow codes"
        assert np.array_equal(payload[flushed], (values[flushed] >> 8) & 0x80), \
            f"{name}: golden payload of a flushed underflow is not the FP8 signed zero"
        dut._log.info("%s: %d underflow codes checked with flush on and off", name,
                      np.count_nonzero(flushed))


# -- packer ----------------------------------------------------------------------------------------
def underflow_fp32(rng, fmt8: str, n: int) -> np.ndarray:
    """``n`` FP32 values that are mostly FP8 underflow after their fp16 rounding: fp16 codes that
    underflow (both signs), some with random low FP32 bits (rounded by the converter), FP32
    values below the fp16 range, zeros and the smallest codes that do not underflow."""
    under = underflow_fp16(fmt8)
    top = int((under & 0x7FFF).max())
    boundary = np.array([top + 1, top + 2, 0x8000 | (top + 1), 0, 0x8000], dtype=np.uint16)
    pick = rng.random(n)
    codes = np.where(pick < 0.85, under[rng.integers(0, under.size, n)],
                     boundary[rng.integers(0, boundary.size, n)]).astype(np.uint16)
    values = widen(codes).astype(np.uint32)
    jitter = rng.random(n) < 0.3
    values[jitter] ^= rng.integers(0, 1 << 13, np.count_nonzero(jitter)).astype(np.uint32)
    tiny = rng.random(n) < 0.05                              # below fp16's smallest subnormal
    values[tiny] = (rng.integers(0, 2, np.count_nonzero(tiny)).astype(np.uint32) << 31) | \
        rng.integers(1, 0x32800000, np.count_nonzero(tiny)).astype(np.uint32)
    return values


def underflow_tensors(rng, block: int, fmt8s) -> list[tuple[Tensor, bool]]:
    """``(tensor, flush)``: tensors full of FP8 underflow for each format, three with flush on
    (different lengths) and one with it off."""
    cases = []
    for fmt8 in fmt8s:
        for n, flush in ((4 * block + 3, True), (block, True), (block // 2 + 1, True),
                         (2 * block + 1, False)):
            cases.append((Tensor(underflow_fp32(rng, fmt8, n), int(rng.integers(0, 16)), fmt8,
                                 f"underflow, flush {'on' if flush else 'off'}"), flush))
    return cases


def packer_stimulus(tensors: list[Tensor], geometry: FgmpBlockFormat, flushes=None):
    """Input words, expected bus words and a describe function for FP32 tensors (``flushes``:
    the ``flush`` bit of each tensor, off by default)."""
    flushes = [False] * len(tensors) if flushes is None else [bool(f) for f in flushes]
    inputs, expected, owner = [], [], []
    for index, (x, flush) in enumerate(zip(tensors, flushes, strict=True)):
        n = x.values.size
        inputs += port_words(packer_input_layout, element__value=x.values,
                             element__last=np.arange(n) == n - 1, t=[x.t] * n,
                             fmt=[TAG[x.fmt8]] * n, flush=[flush] * n)
        data = pack(convert(FP32, FP16, x.values), x.fmt8, x.t, geometry, flush_underflow=flush)
        words, last = bus_words(data, geometry.bus_bytes)
        expected += port_words(bus_word_layout(geometry.bus_bytes), data=words, last=last)
        owner += [(index, w) for w in range(len(words))]

    def describe(k):
        index, w = owner[k]
        x = tensors[index]
        head = " ".join(f"{int(v):08x}" for v in x.values[:8])
        return (f"tensor {index} ({x.label}, n={x.values.size}, t={x.t}, {x.fmt8}, flush="
                f"{int(flushes[index])}), bus word {w}; fp32 inputs {head}"
                f"{' ...' if x.values.size > 8 else ''}")

    return inputs, expected, describe


@cocotb.test()
async def packer_bytes_match_golden(dut):
    cfg = case()
    rng = make_rng(dut)
    geometry = geometry_of(cfg)
    fmt8s = tuple(cfg["formats"])
    tensors = fp32_tensors(rng, cfg["vectors"], block=geometry.block, fmt8s=fmt8s)
    flushes = list(rng.integers(0, 2, len(tensors)).astype(bool))
    for x, flush in underflow_tensors(rng, geometry.block, fmt8s):
        tensors.append(x)
        flushes.append(flush)
    order = rng.permutation(len(tensors))
    tensors, flushes = [tensors[k] for k in order], [flushes[k] for k in order]
    inputs, expected, describe = packer_stimulus(tensors, geometry, flushes)
    dut.clear_error.value = 0
    await drive_and_check(dut, rng, inputs, expected, describe)
    assert int(dut.status.value) == 0, f"status {int(dut.status.value):#x} after valid tensors"


# -- unpacker --------------------------------------------------------------------------------------
def unpacker_inputs(data: bytes, n: int, fmt_code: int, geometry: FgmpBlockFormat) -> list[int]:
    words, last = bus_words(data, geometry.bus_bytes)
    return port_words(unpacker_input_layout(geometry.bus_bytes), word__data=words,
                      word__last=last, length=[n] * len(words), fmt=[fmt_code] * len(words))


@cocotb.test()
async def unpacker_operands_match_golden(dut):
    cfg = case()
    rng = make_rng(dut)
    geometry = geometry_of(cfg)
    tensors = fp16_tensors(rng, cfg["vectors"], block=geometry.block, fmt8s=tuple(cfg["formats"]))
    inputs, expected, owner = [], [], []
    for index, x in enumerate(tensors):
        n = x.values.size
        data = pack(x.values, x.fmt8, x.t, geometry)
        decoded, tags = unpack(data, n, x.fmt8, geometry)
        inputs += unpacker_inputs(data, n, TAG[x.fmt8], geometry)
        expected += port_words(UnpackedOperand, **operand_columns(data, tags, x.fmt8, geometry))
        owner += [(index, k, int(decoded[k]), bool(tags[k])) for k in range(n)]

    def describe(k):
        index, element, value, tag = owner[k]
        x = tensors[index]
        return (f"tensor {index} ({x.label}, n={x.values.size}, t={x.t}, {x.fmt8}) element "
                f"{element}: fp16 0x{value:04x} stored as {'fp8' if tag else 'fp16'}")

    dut.clear_error.value = 0
    await drive_and_check(dut, rng, inputs, expected, describe)
    assert int(dut.status.value) == 0, f"status {int(dut.status.value):#x} after valid tensors"


# -- round trip ------------------------------------------------------------------------------------
@cocotb.test()
async def round_trip(dut):
    cfg = case()
    rng = make_rng(dut)
    fmt8, n = cfg["fmt8"], cfg["length"]
    values = np.concatenate([x.values for x in fp32_tensors(
        rng, cfg["vectors"], block=cfg["block"], fmt8s=(fmt8,))])
    values = values[:values.size // n * n].astype(np.uint32)
    t = np.repeat(rng.integers(0, 16, values.size // n), n)
    t[:16 * n] = np.repeat(np.arange(16), n)[:values.size]           # every t at least once
    flush = np.repeat(rng.integers(0, 2, values.size // n), n)
    # tensors full of FP8 underflow: flush on for three of them, off for one
    adversarial = [underflow_fp32(rng, fmt8, n) for _ in range(4)]
    values = np.concatenate([values, *adversarial]).astype(np.uint32)
    t = np.concatenate([t, np.repeat(rng.integers(0, 16, 4), n)])
    flush = np.concatenate([flush, np.repeat([1, 1, 0, 1], n)])
    x16 = convert(FP32, FP16, values)
    tags = np.zeros(values.size, dtype=bool)
    for threshold in range(16):
        for flush_underflow in (False, True):
            sel = (t == threshold) & (flush == flush_underflow)
            tags[sel] = encode_tags(x16[sel], fmt8, threshold, flush_underflow=flush_underflow)
    bits = np.where(tags, fp8_of(x16, fmt8), x16).astype(np.int64)
    magnitude = np.where(tags, bits & 0x7F, bits & 0x7FFF)
    last = np.arange(values.size) % n == n - 1
    inputs = port_words(round_trip_input_layout, element__value=values, element__last=last, t=t,
                        flush=flush)
    expected = port_words(UnpackedOperand, operand__bits=bits,
                          operand__fmt=np.where(tags, TAG[fmt8], 0), zero=magnitude == 0,
                          last=last)

    def describe(k):
        return (f"tensor {k // n} element {k % n}: fp32 0x{int(values[k]):08x} -> fp16 "
                f"0x{int(x16[k]):04x}, t={int(t[k])}, flush={int(flush[k])}, {fmt8}")

    dut.fmt.value = TAG[fmt8]
    dut.length.value = n
    # the packer holds a tensor's last block until its last element: a long run is played in
    # chunks of whole tensors
    await drive_and_check(dut, rng, inputs, expected, describe,
                          cuts=range(n, len(inputs) + 1, n))
    assert int(dut.packer_status.value) == 0 and int(dut.unpacker_status.value) == 0


# -- errors ----------------------------------------------------------------------------------------
async def exchange(dut, rng, inputs, n_out, *, p_idle=0.25, p_stall=0.25, limit=256,
                   show=describe_operand):
    """Offer ``inputs`` (payload words) with random idle cycles, take ``n_out`` outputs with
    random backpressure (:meth:`tb.harness.StreamChecker.collect`); returns the outputs. Fails
    on a hang (no progress for about ``limit`` cycles), a broken stream rule, or an output
    beyond ``n_out``."""
    checker = StreamChecker(dut, rng, p_idle=p_idle, p_stall=p_stall)
    return await checker.collect(inputs, n_out, max_latency=limit, drain=16, show=show)


async def check_status(dut, code: FgmpError | None, what: str):
    """Status is ``code`` (``None``: any error); then clear it and check it cleared."""
    status = int(dut.status.value)
    error, got = status & 1, FgmpError(status >> 1)
    if code is None:
        assert error and got != FgmpError.NONE, f"{what}: no error raised (status {status:#x})"
    else:
        want = int(code != FgmpError.NONE)
        assert (error, got) == (want, code), \
            f"{what}: status error={error} {got.name}, expected error={want} {code.name}"
    dut.clear_error.value = 1
    await next_cycle(dut)
    dut.clear_error.value = 0
    await ReadOnly()
    assert int(dut.status.value) == 0, f"{what}: status {int(dut.status.value):#x} not cleared"
    await next_cycle(dut)


def compare(outputs, expected, what):
    assert len(outputs) == len(expected), f"{what}: {len(outputs)} outputs, {len(expected)} expected"
    for k, (got, want) in enumerate(zip(outputs, expected)):
        assert got == want, (f"{what}: output {k}: rtl {describe_operand(got)}, golden "
                             f"{describe_operand(want)}")


def golden_rejects(data: bytes, n: int, fmt8: str, geometry) -> bool:
    try:
        unpack(data, n, fmt8, geometry)
    except ValueError:
        return True
    return False


def corruptions(rng, x: Tensor, geometry: FgmpBlockFormat, bad_codes):
    """``(what, data, n, fmt code, expected outputs or None, expected code or None)`` for one
    valid tensor: deterministic faults with their exact outcome, then random bit flips (judged
    against the golden model)."""
    B, W = geometry.block, geometry.bus_bytes
    n, code = x.values.size, TAG[x.fmt8]
    data = pack(x.values, x.fmt8, x.t, geometry)
    _, tags = unpack(data, n, x.fmt8, geometry)
    good = operand_columns(data, tags, x.fmt8, geometry)
    starts, widths = element_spans(data, tags, geometry)
    ends = starts + widths
    content = int(ends[-1]) + (B - n % B) % B           # bytes before the stream padding

    def prefix(k):
        """The first ``k`` elements as in the valid stream, then the zeros of a fault."""
        columns = {key: list(value[:k]) for key, value in good.items()}
        zeros = zero_columns(n - k, n)
        return port_words(UnpackedOperand, **{key: columns[key] + zeros[key] for key in columns})

    cases = [("valid", data, n, code, prefix(n), FgmpError.NONE)]
    if len(data) > W:
        cut = len(data) - W * int(rng.integers(1, len(data) // W))
        k = int(np.count_nonzero(ends <= cut))
        cases.append((f"truncated to {cut} bytes", data[:cut], n, code, prefix(k),
                      FgmpError.TRUNCATED))
    if content < len(data):
        broken = bytearray(data)
        broken[-1] = int(rng.integers(1, 256))
        cases.append(("nonzero stream padding", bytes(broken), n, code, prefix(n),
                      FgmpError.BAD_PADDING))
    if n % B:
        broken = bytearray(data)
        broken[int(ends[-1])] = int(rng.integers(1, 256))
        cases.append(("padding element not +0", bytes(broken), n, code, prefix(n),
                      FgmpError.BAD_PADDING))
        broken = bytearray(data)
        header = int(starts[-1 - (n - 1) % B]) - geometry.tag_bytes
        broken[header + (n % B) // 8] &= ~(1 << (n % B % 8)) & 0xFF
        cases.append(("padding element tagged fp16", bytes(broken), n, code,
                      prefix(n - (n - 1) % B), FgmpError.BAD_PADDING))
    cases.append(("extra bus word", data + bytes(W), n, code, prefix(n),
                  FgmpError.EXTRA_DATA))
    for bad in bad_codes:
        cases.append((f"format code {bad}", data, n, bad, prefix(0), FgmpError.BAD_FORMAT))
    cases.append(("length 0", data, 0, code, [], FgmpError.BAD_LENGTH))
    cases.append(("length too long", data, n + B, code, None, None))
    for _ in range(3):
        broken = bytearray(data)
        position = int(rng.integers(0, content))
        broken[position] ^= 1 << int(rng.integers(0, 8))
        broken = bytes(broken)
        if golden_rejects(broken, n, x.fmt8, geometry):
            cases.append((f"bit flip at byte {position}", broken, n, code, None, None))
        else:
            _, flipped_tags = unpack(broken, n, x.fmt8, geometry)
            expected = port_words(UnpackedOperand,
                                  **operand_columns(broken, flipped_tags, x.fmt8, geometry))
            cases.append((f"harmless bit flip at byte {position}", broken, n, code, expected,
                          FgmpError.NONE))
    return cases


@cocotb.test()
async def unpacker_corrupt_streams(dut):
    cfg = case()
    rng = make_rng(dut)
    geometry = geometry_of(cfg)
    fmt8s = tuple(cfg["formats"])
    bad_codes = [c for c in range(4) if c not in [TAG[f] for f in fmt8s]]
    dut.clear_error.value = 0
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await start_clock(dut)
    await reset(dut)
    tensors = [x for x in fp16_tensors(rng, 0, block=geometry.block, fmt8s=fmt8s)
               if x.label.startswith(("length", "alternating", "nan"))]
    checked = 0
    for x in tensors:
        for what, data, n, code, expected, error in corruptions(rng, x, geometry, bad_codes):
            what = f"{x.label} (n={x.values.size}, {x.fmt8}, t={x.t}): {what}"
            outputs = await exchange(dut, rng, unpacker_inputs(data, n, code, geometry), n)
            if error is None:
                assert golden_rejects(data, n, x.fmt8, geometry), what
                last = [(word >> fields(UnpackedOperand)["last"][0]) & 1 for word in outputs]
                assert last == [int(k == n - 1) for k in range(n)], f"{what}: last flags {last}"
            else:
                compare(outputs, expected, what)
            await check_status(dut, error, what)
            checked += 1
    dut._log.info("checked %d valid and corrupt streams", checked)


@cocotb.test()
async def packer_bad_format(dut):
    cfg = case()
    rng = make_rng(dut)
    geometry = geometry_of(cfg)
    fmt8s = tuple(cfg["formats"])
    bad_codes = [c for c in range(4) if c not in [TAG[f] for f in fmt8s]]
    dut.clear_error.value = 0
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await start_clock(dut)
    await reset(dut)
    tensors = fp32_tensors(rng, 0, block=geometry.block, fmt8s=fmt8s)[::7]
    for index, x in enumerate(tensors):
        n = x.values.size
        bad = bad_codes[index % len(bad_codes)] if index % 2 else None
        what = f"tensor {index} ({x.label}, n={n}, fmt code {TAG[x.fmt8] if bad is None else bad})"
        if bad is None:
            inputs, expected, _ = packer_stimulus([x], geometry)
            outputs = await exchange(dut, rng, inputs, len(expected), show=hex)
            assert outputs == expected, f"{what}: bus words differ from golden pack"
            await check_status(dut, FgmpError.NONE, what)
            continue
        inputs = port_words(packer_input_layout, element__value=x.values,
                            element__last=np.arange(n) == n - 1, t=[x.t] * n, fmt=[bad] * n)
        # every element stored as fp16 (2 bytes), the padding as FP8 +0 (1 byte)
        size = geometry.blocks(n) * (geometry.tag_bytes + geometry.block) + n
        outputs = await exchange(dut, rng, inputs, geometry.padded(size) // geometry.bus_bytes,
                                 show=hex)
        offset, width = fields(bus_word_layout(geometry.bus_bytes))["data"]
        stream = b"".join(((word >> offset) & ((1 << width) - 1)).to_bytes(width // 8, "little")
                          for word in outputs)
        decoded, tags = unpack(stream, n, x.fmt8, geometry)
        assert not tags.any(), f"{what}: elements stored as FP8 with an unknown format"
        x16 = convert(FP32, FP16, x.values)
        assert np.array_equal(decoded, x16), f"{what}: fp16 payload differs from the rounding"
        await check_status(dut, FgmpError.BAD_FORMAT, what)
