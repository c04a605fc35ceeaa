"""The FGMP golden model (sim/fgmp.py) against independent references.

* The encoding rule: exhaustive over all 65536 fp16 codes x both FP8 formats x every threshold
  ``t``, against the rule computed in float64 on ml_dtypes casts.
* Decoding: every FP8 code against ml_dtypes.
* The byte stream: against a plain-Python packer written from the format description, stream
  length against :func:`stream_bytes`, round trips over block sizes, bus widths and lengths.
* Corrupt streams and bad parameters raise ``ValueError`` naming the problem.

Plain pytest, no simulator, no Amaranth.
"""

from __future__ import annotations


import numpy as np
import pytest

from sim import fgmp
from sim.fgmp import (BLOCK_SIZES, T_MAX, FgmpBlockFormat, decode, encode_tags, fp8_of, pack,
                      quantize, stream_bytes, stream_bytes_fp16, unpack)
from sim.formats import E4M3, E5M2, FP16
from tb.vectors import edge_bits, mixed_bits

SEED = 0xF6_3F8
FP8 = [E4M3, E5M2]
ALL_FP16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def _hex16(v) -> str:
    return f"0x{int(v):04x}"


def reference_tags(fp16_bits: np.ndarray, fmt8, t: int, flush: bool = False) -> np.ndarray:
    """The encoding rule in float64 on ml_dtypes casts (independent of sim.numerics)."""
    x = fp16_bits.view(np.float16).astype(np.float64)
    with np.errstate(all="ignore"):
        y = fp16_bits.view(np.float16).astype(fmt8.dtype).astype(np.float64)
        close = np.abs(y - x) * 2.0 ** t <= np.abs(x)
    usable = np.isfinite(x) & (x != 0) & np.isfinite(y) & (y != 0)
    underflow = np.isfinite(x) & (x != 0) & (y == 0)
    return (x == 0) | (usable & close) | (flush & underflow)


# -- the rule --------------------------------------------------------------------------------------
@pytest.mark.parametrize("flush", [False, True], ids=["fp16_underflow", "flush_underflow"])
@pytest.mark.parametrize("fmt8", FP8, ids=str)
def test_tags_exhaustive(fmt8, flush):
    for t in range(T_MAX + 1):
        got = encode_tags(ALL_FP16, fmt8, t, flush_underflow=flush)
        expected = reference_tags(ALL_FP16, fmt8, t, flush)
        bad = np.flatnonzero(got != expected)
        assert bad.size == 0, f"{fmt8} t={t} flush={flush}: {bad.size} tags differ, e.g. " + \
            ", ".join(f"x={_hex16(ALL_FP16[i])} golden={bool(got[i])} "
                      f"reference={bool(expected[i])}" for i in bad[:8])
        table = fgmp.code_table(fmt8, t, flush_underflow=flush)[0]
        assert np.array_equal(table, got), f"{fmt8} t={t} flush={flush}: code_table differs"


@pytest.mark.parametrize("fmt8", FP8, ids=str)
def test_flush_underflow_stores_signed_zeros(fmt8):
    # exactly the FP8 underflows change: they become FP8 zeros of their sign; the smallest
    # values that do not underflow (half the smallest subnormal rounds to even = zero, just
    # above it rounds up) keep the rule's verdict
    half = fmt8.min_subnormal / 2
    for t in range(T_MAX + 1):
        plain, plain_tags = quantize(ALL_FP16, fmt8, t)
        out, tags = quantize(ALL_FP16, fmt8, t, flush_underflow=True)
        changed = tags != plain_tags
        assert not np.any(plain_tags & ~tags), f"{fmt8} t={t}: flushing removed an FP8 tag"
        x = ALL_FP16[changed].view(np.float16).astype(np.float64)
        assert x.size and np.all((x != 0) & (np.abs(x) <= half)), f"{fmt8} t={t}"
        y = out[changed]
        assert np.array_equal(y, ALL_FP16[changed] & 0x8000), f"{fmt8} t={t}: not signed zeros"
        assert np.array_equal(out[~changed], plain[~changed])
        assert np.array_equal(fp8_of(ALL_FP16[changed], fmt8),
                              np.where(np.signbit(x), 0x80, 0x00).astype(np.uint8))


@pytest.mark.parametrize("fmt8", FP8, ids=str)
def test_tags_special_values(fmt8):
    # zeros are FP8 at every t; NaN, infinities, overflow and underflow are fp16 at every t
    big = 0x7BFF                                    # 65504: beyond both FP8 ranges
    tiny = 0x0001                                   # 2**-24: below both FP8 subnormals
    cases = {0x0000: True, 0x8000: True, 0x7C00: False, 0xFC00: False, 0x7E00: False,
             0xFE01: False, big: False, big | 0x8000: False, tiny: False, tiny | 0x8000: False}
    bits = np.array(list(cases), dtype=np.uint16)
    for t in range(T_MAX + 1):
        got = encode_tags(bits, fmt8, t)
        for b, g in zip(bits, got):
            assert g == cases[int(b)], f"{fmt8} t={t} x={_hex16(b)}: tag {g}"
        # flushing underflow changes only the underflow: NaN, infinities, overflow stay fp16
        flushed = {**cases, tiny: True, tiny | 0x8000: True}
        got = encode_tags(bits, fmt8, t, flush_underflow=True)
        for b, g in zip(bits, got):
            assert g == flushed[int(b)], f"{fmt8} t={t} x={_hex16(b)} flushing: tag {g}"


@pytest.mark.parametrize("fmt8", FP8, ids=str)
def test_tags_exact_fp8_values_at_every_t(fmt8):
    # every finite non-zero FP8 value is exact in fp16, so it is FP8 even at t = T_MAX
    codes = fmt8.all_codes()
    values = codes.view(fmt8.dtype).astype(np.float64)
    finite = np.isfinite(values) & (values != 0)
    as_fp16 = codes[finite].view(fmt8.dtype).astype(np.float16).view(np.uint16)
    assert np.all(encode_tags(as_fp16, fmt8, T_MAX))
    assert np.array_equal(fp8_of(as_fp16, fmt8), codes[finite])


def test_tags_threshold_monotone():
    # a larger t is stricter: the FP8 set can only shrink
    for fmt8 in FP8:
        previous = encode_tags(ALL_FP16, fmt8, 0)
        for t in range(1, T_MAX + 1):
            current = encode_tags(ALL_FP16, fmt8, t)
            assert not np.any(current & ~previous), f"{fmt8}: t={t} tags an element t-1 did not"
            previous = current


def test_tags_boundary_hand_checked():
    # 1.0625 = 1 + 2**-4 rounds to 1.0 in e4m3 (tie to even): relative error 1/17 <= 2**-4
    # only for t <= 4; 1.125 is exact in e4m3
    bits = np.array([0x3C40, 0x3C80], dtype=np.uint16)
    assert np.float16(1.0625).view(np.uint16) == 0x3C40
    assert list(encode_tags(bits, E4M3, 4)) == [True, True]
    assert list(encode_tags(bits, E4M3, 5)) == [False, True]


# -- payload and decode ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt8", FP8, ids=str)
def test_fp8_of_matches_ml_dtypes(fmt8):
    got = fp8_of(ALL_FP16, fmt8)
    with np.errstate(all="ignore"):
        narrow = ALL_FP16.view(np.float16).astype(fmt8.dtype)
    expected = narrow.view(np.uint8)
    nan = np.isnan(narrow.astype(np.float32))
    expected = np.where(nan, fmt8.nan_bits, expected)
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, ", ".join(f"x={_hex16(ALL_FP16[i])} golden={got[i]:#04x} "
                                    f"ml_dtypes={expected[i]:#04x}" for i in bad[:8])


@pytest.mark.parametrize("fmt8", FP8, ids=str)
def test_decode_every_fp8_code(fmt8):
    codes = fmt8.all_codes()
    got = decode(np.ones(256, dtype=bool), codes.astype(np.uint16), fmt8)
    values = codes.view(fmt8.dtype).astype(np.float16)
    expected = np.where(np.isnan(values), FP16.nan_bits, values.view(np.uint16))
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, ", ".join(f"code={codes[i]:#04x} golden={_hex16(got[i])} "
                                    f"ml_dtypes={_hex16(expected[i])}" for i in bad[:8])


def test_decode_passes_fp16_through():
    got = decode(np.zeros(1 << 16, dtype=bool), ALL_FP16, E4M3)
    assert np.array_equal(got, ALL_FP16)


@pytest.mark.parametrize("fmt8", FP8, ids=str)
def test_quantize_relative_error_bound(fmt8):
    for t in range(T_MAX + 1):
        out, tags = quantize(ALL_FP16, fmt8, t)
        assert np.array_equal(out[~tags], ALL_FP16[~tags])
        x = ALL_FP16[tags].view(np.float16).astype(np.float64)
        y = out[tags].view(np.float16).astype(np.float64)
        assert np.all(np.abs(y - x) * 2.0 ** t <= np.abs(x))
        assert np.array_equal(np.signbit(x), np.signbit(y))


@pytest.mark.parametrize("fmt8", FP8, ids=str)
def test_quantize_lossless_from_t_11(fmt8):
    # a non-zero rounding error of an fp16 value is more than 2**-11 of it (docs/fgmp.md)
    finite = ~np.isnan(ALL_FP16.view(np.float16))
    for t in range(11, T_MAX + 1):
        out, _ = quantize(ALL_FP16, fmt8, t)
        assert np.array_equal(out[finite], ALL_FP16[finite]), f"{fmt8} t={t}"
    out, _ = quantize(ALL_FP16, fmt8, 10)
    assert not np.array_equal(out[finite], ALL_FP16[finite])


def test_decode_rejects_wide_fp8_payload():
    with pytest.raises(ValueError, match="8-bit code"):
        decode(np.array([True]), np.array([0x100], dtype=np.uint16), E4M3)
    with pytest.raises(ValueError, match="shape"):
        decode(np.array([True, False]), np.array([1], dtype=np.uint16), E4M3)


# -- the byte stream -------------------------------------------------------------------------------
def reference_pack(values: np.ndarray, fmt8, t: int, block: int, bus_bytes: int) -> bytes:
    """Plain-Python packer written from the format description in docs/fgmp.md."""
    tags = reference_tags(values, fmt8, t)
    out = bytearray()
    n = len(values)
    for start in range(0, n, block):
        mask = 0
        payload = bytearray()
        for i in range(block):
            k = start + i
            if k >= n:                                  # padding element: FP8 +0
                mask |= 1 << i
                payload.append(0)
            elif tags[k]:
                mask |= 1 << i
                with np.errstate(all="ignore"):
                    payload.append(int(values[k:k + 1].view(np.float16).astype(fmt8.dtype)
                                       .view(np.uint8)[0]))
            else:
                payload += int(values[k]).to_bytes(2, "little")
        out += mask.to_bytes(block // 8, "little") + payload
    out += bytes(-len(out) % bus_bytes)
    return bytes(out)


def _stream_values(rng, n):
    # mixed magnitudes: FP8-exact values, values needing fp16, zeros, specials
    pool = np.concatenate([mixed_bits(rng, FP16, 4 * n + 8).astype(np.uint16),
                           edge_bits(FP16).astype(np.uint16)])
    return rng.choice(pool, size=n)


GEOMETRIES = [(b, w) for b in BLOCK_SIZES for w in (1, 4, 16, 64)]


@pytest.mark.parametrize("block,bus_bytes", GEOMETRIES, ids=lambda v: str(v))
@pytest.mark.parametrize("fmt8", FP8, ids=str)
def test_pack_matches_reference_and_round_trips(fmt8, block, bus_bytes):
    rng = np.random.default_rng(SEED + block * 131 + bus_bytes)
    fmt = FgmpBlockFormat(block=block, bus_bytes=bus_bytes)
    for n in sorted({0, 1, block - 1, block, block + 1, 3 * block + 5, 257}):
        values = _stream_values(rng, n)
        t = int(rng.integers(0, T_MAX + 1))
        data = pack(values, fmt8, t, fmt)
        expected = reference_pack(values, fmt8, t, block, bus_bytes)
        assert data == expected, (f"seed={SEED:#x} {fmt8} B={block} W={bus_bytes} n={n} t={t}: "
                                  f"golden {data.hex()} reference {expected.hex()}")
        tags = encode_tags(values, fmt8, t)
        assert len(data) == stream_bytes(tags, fmt)
        assert len(data) % bus_bytes == 0
        out, got_tags = unpack(data, n, fmt8, fmt)
        assert np.array_equal(got_tags, tags)
        assert np.array_equal(out, quantize(values, fmt8, t)[0])
        # flushing: the same stream layout with the rule's flushed tags, zeros on load
        data = pack(values, fmt8, t, fmt, flush_underflow=True)
        tags = encode_tags(values, fmt8, t, flush_underflow=True)
        assert len(data) == stream_bytes(tags, fmt)
        out, got_tags = unpack(data, n, fmt8, fmt)
        assert np.array_equal(got_tags, tags)
        assert np.array_equal(out, quantize(values, fmt8, t, flush_underflow=True)[0])


def test_pack_hand_checked_bytes():
    # B=8, W=4: 1.0 (e4m3 0x38), 1.001 (fp16 0x3c01 at t=15), -0.0, then five padding zeros
    values = np.array([0x3C00, 0x3C01, 0x8000], dtype=np.uint16)
    data = pack(values, E4M3, 15, FgmpBlockFormat(block=8, bus_bytes=4))
    #            mask 0b11111101, 0x38, 0x01 0x3c, 0x80, 5 x 0x00, 3 bytes bus padding
    assert data == bytes([0xFD, 0x38, 0x01, 0x3C, 0x80, 0, 0, 0, 0, 0, 0, 0])


def test_stream_bytes_ceiling_and_baseline():
    fmt = FgmpBlockFormat(block=16, bus_bytes=16)
    n = 16 * 1000
    all_fp8 = stream_bytes(np.ones(n, dtype=bool), fmt)
    assert all_fp8 == 1000 * 18
    assert stream_bytes(np.zeros(n, dtype=bool), fmt) == 1000 * 34
    assert stream_bytes_fp16(n, fmt) == 2 * n
    assert 1 - all_fp8 / stream_bytes_fp16(n, fmt) == pytest.approx(0.4375)
    assert stream_bytes_fp16(3, fmt) == 16
    assert stream_bytes_fp16(0, fmt) == 0
    assert stream_bytes(np.zeros(0, dtype=bool), fmt) == 0


# -- corrupt streams -------------------------------------------------------------------------------
def _fp16_stream(block=8, bus_bytes=1):
    fmt = FgmpBlockFormat(block=block, bus_bytes=bus_bytes)
    values = np.full(block, 0x3C01, dtype=np.uint16)     # all fp16 at t=15
    return fmt, values, bytearray(pack(values, E4M3, 15, fmt))


def test_unpack_payload_shorter_than_tags():
    fmt, values, data = _fp16_stream()
    with pytest.raises(ValueError, match="payload bytes"):
        unpack(bytes(data[:-1]), values.size, E4M3, fmt)
    with pytest.raises(ValueError, match="tag mask"):
        unpack(b"", values.size, E4M3, fmt)


def test_unpack_tag_mask_disagrees_with_length():
    fmt, values, data = _fp16_stream()
    data[0] |= 0x01                                      # claims one FP8 element: one byte too many
    with pytest.raises(ValueError, match="tag masks give"):
        unpack(bytes(data), values.size, E4M3, fmt)


def test_unpack_trailing_bytes_and_bus_padding():
    fmt, values, data = _fp16_stream(bus_bytes=1)
    with pytest.raises(ValueError, match="tag masks give"):
        unpack(bytes(data) + b"\0", values.size, E4M3, fmt)
    fmt4 = FgmpBlockFormat(block=8, bus_bytes=4)
    good = bytearray(pack(values[:3], E4M3, 15, fmt4))   # 1 + 6 + 5 = 12 bytes, no bus padding
    odd = bytearray(pack(values[:2], E4M3, 15, fmt4))    # 1 + 4 + 6 = 11 bytes, 1 byte padding
    assert len(good) == 12 and len(odd) == 12
    odd[-1] = 0x55
    with pytest.raises(ValueError, match="nonzero stream padding"):
        unpack(bytes(odd), 2, E4M3, fmt4)
    with pytest.raises(ValueError, match="whole number"):
        unpack(bytes(good[:-1]), 3, E4M3, fmt4)


def test_unpack_bad_padding_elements():
    fmt = FgmpBlockFormat(block=8, bus_bytes=1)
    data = bytearray(pack(np.array([0x3C00], dtype=np.uint16), E4M3, 3, fmt))
    assert data == bytearray([0xFF, 0x38, 0, 0, 0, 0, 0, 0, 0])
    nonzero = bytearray(data)
    nonzero[4] = 0x01
    with pytest.raises(ValueError, match="padding element 3"):
        unpack(bytes(nonzero), 1, E4M3, fmt)
    fp16_pad = bytearray(data)
    fp16_pad[0] = 0x7F                                   # element 7 claims fp16: one more byte
    with pytest.raises(ValueError, match="payload bytes"):
        unpack(bytes(fp16_pad), 1, E4M3, fmt)
    with pytest.raises(ValueError, match="padding element 7"):
        unpack(bytes(fp16_pad) + b"\0", 1, E4M3, fmt)


# -- bad parameters --------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [-1, T_MAX + 1, 1.5, True, "3", None])
def test_bad_threshold(t):
    with pytest.raises(ValueError, match=r"t must be an integer in 0\.\.15"):
        encode_tags(np.zeros(1, dtype=np.uint16), E4M3, t)
    with pytest.raises(ValueError, match=r"t must be an integer in 0\.\.15"):
        pack(np.zeros(1, dtype=np.uint16), E4M3, t, FgmpBlockFormat())


@pytest.mark.parametrize("flag", [1, 0, None, "yes", np.uint8(1)])
def test_bad_flush_underflow(flag):
    zeros = np.zeros(1, dtype=np.uint16)
    for call in (lambda: encode_tags(zeros, E4M3, 4, flush_underflow=flag),
                 lambda: quantize(zeros, E4M3, 4, flush_underflow=flag),
                 lambda: fgmp.code_table(E4M3, 4, flush_underflow=flag),
                 lambda: pack(zeros, E4M3, 4, FgmpBlockFormat(), flush_underflow=flag)):
        with pytest.raises(ValueError, match="flush_underflow must be True or False"):
            call()


@pytest.mark.parametrize("fmt8", ["fp16", "bf16", "e3m4", FP16, None])
def test_bad_fp8_format(fmt8):
    with pytest.raises(ValueError, match=r"fmt8 must be one of \['e4m3', 'e5m2'\]"):
        encode_tags(np.zeros(1, dtype=np.uint16), fmt8, 0)
    with pytest.raises(ValueError, match="fmt8 must be one of"):
        unpack(b"", 0, fmt8, FgmpBlockFormat())
    with pytest.raises(ValueError, match="fmt8 must be one of"):
        decode(np.zeros(1, dtype=bool), np.zeros(1, dtype=np.uint16), fmt8)


@pytest.mark.parametrize("block", [0, 4, 12, 128, True, 16.0])
def test_bad_block(block):
    with pytest.raises(ValueError, match=r"block must be one of \[8, 16, 32, 64\]"):
        FgmpBlockFormat(block=block, bus_bytes=16)


@pytest.mark.parametrize("bus_bytes", [0, 3, 12, 128, -4, True])
def test_bad_bus_bytes(bus_bytes):
    with pytest.raises(ValueError, match="bus_bytes must be a power of two in 1..64"):
        FgmpBlockFormat(block=16, bus_bytes=bus_bytes)


def test_format_is_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        FgmpBlockFormat(16, 16)                                  # noqa: the point of the test
    fmt = FgmpBlockFormat(block=32, bus_bytes=8)
    with pytest.raises(AttributeError):
        fmt.block = 8                                            # type: ignore[misc]
    assert (fmt.tag_bytes, fmt.blocks(65), fmt.padded(13)) == (4, 3, 16)


def test_bad_stream_arguments():
    fmt = FgmpBlockFormat()
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        unpack(b"", -1, E4M3, fmt)
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        stream_bytes_fp16(2.0, fmt)
    with pytest.raises(ValueError, match="fmt must be an FgmpBlockFormat"):
        stream_bytes_fp16(4, 16)
    with pytest.raises(TypeError, match="data must be bytes"):
        unpack([0] * 16, 1, E4M3, fmt)
    with pytest.raises(ValueError, match="fp16 bit patterns"):
        encode_tags(np.array([0x10000]), E4M3, 0)
    with pytest.raises(TypeError, match="integer array"):
        encode_tags(np.array([1.0]), E4M3, 0)
    with pytest.raises(TypeError, match="bool array"):
        stream_bytes(np.zeros(4, dtype=np.uint8), fmt)


def test_public_api():
    assert fgmp.T_MAX == 15
    assert set(fgmp.FGMP_FORMATS) == {"e4m3", "e5m2"}
    assert all(callable(getattr(fgmp, name)) for name in
               ("encode_tags", "fp8_of", "decode", "pack", "unpack", "stream_bytes",
                "stream_bytes_fp16", "quantize"))
