"""Fine-grained mixed precision (FGMP): per-element FP8 / fp16 encoding and its storage format.

This is the golden model of the FGMP packer and unpacker. It is the one definition of the rule;
the hardware (``hw/fgmp/``) matches it bit for bit and the training backend
(:mod:`sim.nn.backend`) uses it for every stored operand. The rule and the format are written
down in ``docs/fgmp.md``. What the hardware is built from (the FP8 formats, ``T_MAX``, the stream
geometry :class:`FgmpBlockFormat`) is in :mod:`sim.fgmp_spec`, re-exported here.

Encoding rule
-------------
Each element is an fp16 value ``x`` (the store path first rounds the FP32 accumulator to fp16,
``convert(FP32, FP16, bits, saturate=False)``). Let ``y = convert(FP16, fmt8, x,
saturate=False)`` (round to nearest even, one rounding). The element is stored as FP8 (tag 1)

* when ``x`` is +0 or -0 (the FP8 signed zero), or
* when ``x`` is finite and not zero, ``y`` is finite and not zero, and
  ``|y - x| * 2**t <= |x|`` (exact comparison),

and as fp16 (tag 0) otherwise: NaN, infinities, FP8 overflow (``y`` NaN or infinite) and FP8
underflow (``y`` zero for a non-zero ``x``) keep fp16. ``t`` is the 4-bit threshold
(``0..T_MAX``): a larger ``t`` demands a smaller relative error and so selects fewer FP8
elements.

Option ``flush_underflow`` (a configuration bit per tensor, off by default): an FP8 underflow is
stored as FP8 (tag 1) with its payload ``y``, the FP8 zero of ``x``'s sign, i.e. the element is
flushed to a signed zero (its magnitude is at most half the FP8 format's smallest subnormal).
Nothing else changes: NaN, infinities and overflow stay fp16, and every other non-zero element
is still judged by the relative error.

Storage format
--------------
A tensor of ``n`` elements is ``ceil(n / B)`` blocks of ``B`` elements, back to back in one byte
stream (no per-block alignment; a block may straddle bus words). A block is its tag mask,
``ceil(B / 8)`` bytes little-endian (bit ``i`` set = element ``i`` is FP8), followed by the payload
of its elements in order: FP8 = 1 byte, fp16 = 2 bytes little-endian. The last block is padded
with +0 FP8 elements (tag 1, payload byte 0). The stream is padded with zero bytes to a whole
number of ``W``-byte bus words. The all-fp16 baseline is ``2 n`` bytes padded to the bus word,
without tags.
"""

from __future__ import annotations

import functools

import numpy as np

# the specification the gateware is built from (re-exported: the model's users import it here)
from .fgmp_spec import (BLOCK_SIZES, BUS_BYTES, FGMP_FORMATS, T_MAX, FgmpBlockFormat, _count,
                        _is_int)
from .formats import FP16, FPFormat, format_by_name
from .numerics import convert, unpack as unpack_fields

__all__ = ["encode_tags", "fp8_of", "decode", "quantize", "code_table", "fp8_share", "pack",
           "unpack", "stream_bytes", "stream_bytes_fp16",
           # from sim.fgmp_spec
           "T_MAX", "FGMP_FORMATS", "BLOCK_SIZES", "BUS_BYTES", "FgmpBlockFormat"]


def _fmt8(fmt8) -> FPFormat:
    return format_by_name(fmt8, FGMP_FORMATS, field="fmt8")


def _threshold(t) -> int:
    if not _is_int(t) or not 0 <= int(t) <= T_MAX:
        raise ValueError(f"t must be an integer in 0..{T_MAX}, not {t!r}")
    return int(t)


def _flag(value, field: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{field} must be True or False, not {value!r}")
    return bool(value)


def _fp16_bits(bits) -> np.ndarray:
    array = np.asarray(bits)
    if array.dtype.kind not in "ui":
        raise TypeError(f"fp16 bit patterns must be an integer array, not {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 0xFFFF):
        raise ValueError("fp16 bit patterns must lie in 0..0xffff")
    return array.astype(np.uint16)


def encode_tags(fp16_bits, fmt8, t, *, flush_underflow=False) -> np.ndarray:
    """Per-element FGMP tag: ``True`` where the element is stored as FP8.

    Parameters
    ----------
    fp16_bits : array of int
        fp16 bit patterns (any shape).
    fmt8 : FPFormat or str
        ``"e4m3"`` or ``"e5m2"``.
    t : int
        Threshold ``0..T_MAX``: FP8 iff the relative error of the FP8 value is at most ``2**-t``.
    flush_underflow : bool
        Store a non-zero value whose FP8 rounding is a zero as FP8 (that signed zero) instead of
        fp16.

    Returns
    -------
    numpy.ndarray of bool, same shape as ``fp16_bits``.
    """
    fmt8 = _fmt8(fmt8)
    t = _threshold(t)
    flush = _flag(flush_underflow, "flush_underflow")
    x = _fp16_bits(fp16_bits)
    y = convert(FP16, fmt8, x, saturate=False)
    _, x_sig, x_exp, x_nan, x_inf = unpack_fields(FP16, x)
    _, y_sig, y_exp, y_nan, y_inf = unpack_fields(fmt8, y)
    x_zero = (x_sig == 0) & ~x_nan & ~x_inf
    usable = ~x_nan & ~x_inf & ~x_zero & ~y_nan & ~y_inf & (y_sig != 0)
    # integer magnitudes on a common exponent: both values are sig * 2**exp; rounding keeps the
    # sign, so |y - x| is the difference of the magnitudes. Shifts stay below 40 bits.
    base = np.minimum(x_exp, y_exp)
    x_mag = np.where(usable, x_sig, 0) << np.where(usable, x_exp - base, 0)
    y_mag = np.where(usable, y_sig, 0) << np.where(usable, y_exp - base, 0)
    close = (np.abs(y_mag - x_mag) << t) <= x_mag
    tags = x_zero | (usable & close)
    if flush:
        tags |= ~x_nan & ~x_inf & ~x_zero & ~y_nan & ~y_inf & (y_sig == 0)
    return tags


def fp8_of(fp16_bits, fmt8) -> np.ndarray:
    """FP8 payload (uint8 bit patterns) of fp16 values: one rounding, IEEE overflow policy.

    Meaningful for the elements :func:`encode_tags` tags as FP8 (for them it is exact up to the
    allowed relative error); computed for every element.
    """
    fmt8 = _fmt8(fmt8)
    return convert(FP16, fmt8, _fp16_bits(fp16_bits), saturate=False)


def decode(tags, payload_bits, fmt8) -> np.ndarray:
    """fp16 bit patterns of FGMP elements.

    Parameters
    ----------
    tags : array of bool
        ``True`` where the element is FP8.
    payload_bits : array of int
        Per element: the FP8 code (0..255) where the tag is set, the fp16 bit pattern elsewhere.
    fmt8 : FPFormat or str
        FP8 format of the tagged elements. Decoding FP8 to fp16 is exact.
    """
    fmt8 = _fmt8(fmt8)
    tags = np.asarray(tags)
    if tags.dtype != np.bool_:
        raise TypeError(f"tags must be a bool array, not {tags.dtype}")
    payload = _fp16_bits(payload_bits)
    if tags.shape != payload.shape:
        raise ValueError(f"tags shape {tags.shape} differs from payload shape {payload.shape}")
    if np.any(payload[tags] > 0xFF):
        raise ValueError("an FP8-tagged payload must be an 8-bit code (0..0xff)")
    wide = convert(fmt8, FP16, np.where(tags, payload, 0).astype(np.uint8))
    return np.where(tags, wide, payload).astype(np.uint16)


def quantize(fp16_bits, fmt8, t, *, flush_underflow=False) -> tuple[np.ndarray, np.ndarray]:
    """Store-then-load of fp16 values through FGMP: ``(decoded fp16 bits, tags)``."""
    x = _fp16_bits(fp16_bits)
    tags = encode_tags(x, fmt8, t, flush_underflow=flush_underflow)
    payload = np.where(tags, fp8_of(x, fmt8), x)
    return decode(tags, payload, fmt8), tags


def code_table(fmt8, t, *, flush_underflow=False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rule for every fp16 code at once (read-only arrays indexed by the fp16 pattern).

    Returns ``(tags, payload, decoded)``: the tag of each code, its payload (FP8 code where
    tagged, the fp16 pattern elsewhere) and its value after store and load (fp16 bits). Looking
    a tensor up in these tables is :func:`encode_tags` / :func:`quantize` of it, only faster.
    """
    return _code_table(_fmt8(fmt8), _threshold(t), _flag(flush_underflow, "flush_underflow"))


@functools.cache
def _code_table(fmt8: FPFormat, t: int, flush: bool):
    codes = FP16.all_codes()
    tags = encode_tags(codes, fmt8, t, flush_underflow=flush)
    payload = np.where(tags, fp8_of(codes, fmt8), codes).astype(np.uint16)
    decoded = decode(tags, payload, fmt8)
    for table in (tags, payload, decoded):
        table.setflags(write=False)
    return tags, payload, decoded


def fp8_share(tags) -> float:
    """Fraction of elements tagged FP8 (0.0 for an empty tensor)."""
    tags = np.asarray(tags, dtype=bool)
    return float(tags.mean()) if tags.size else 0.0


def _block_format(fmt) -> FgmpBlockFormat:
    if not isinstance(fmt, FgmpBlockFormat):
        raise ValueError(f"fmt must be an FgmpBlockFormat, not {fmt!r}")
    return fmt


def _padded_tags(tags: np.ndarray, fmt: FgmpBlockFormat) -> np.ndarray:
    """Tags of whole blocks, shape ``(blocks, B)``: padding elements are FP8 zeros (tag 1)."""
    n = tags.size
    out = np.ones(fmt.blocks(n) * fmt.block, dtype=bool)
    out[:n] = tags
    return out.reshape(-1, fmt.block)


def stream_bytes(tags, fmt: FgmpBlockFormat) -> int:
    """Exact bus bytes of an FGMP tensor with these tags: tag masks, payload and all padding."""
    fmt = _block_format(fmt)
    tags = np.asarray(tags)
    if tags.dtype != np.bool_:
        raise TypeError(f"tags must be a bool array, not {tags.dtype}")
    whole = _padded_tags(tags.ravel(), fmt)
    payload = whole.size * 2 - int(np.count_nonzero(whole))
    return fmt.padded(whole.shape[0] * fmt.tag_bytes + payload)


def stream_bytes_fp16(n, fmt: FgmpBlockFormat) -> int:
    """Bus bytes of ``n`` fp16 elements stored plainly (the baseline): ``2 n`` padded, no tags."""
    fmt = _block_format(fmt)
    return fmt.padded(2 * _count(n))


def pack(fp16_bits, fmt8, t, fmt: FgmpBlockFormat, *, flush_underflow=False) -> bytes:
    """Encode fp16 values (flattened in C order) as an FGMP byte stream (``flush_underflow``:
    see :func:`encode_tags`)."""
    fmt = _block_format(fmt)
    x = _fp16_bits(fp16_bits).ravel()
    tags = encode_tags(x, fmt8, t, flush_underflow=flush_underflow)
    fp8 = fp8_of(x, fmt8)
    whole = _padded_tags(tags, fmt)
    nblocks = whole.shape[0]
    if nblocks == 0:
        return b""
    values = np.zeros(whole.size, dtype=np.uint16)
    values[:x.size] = x
    codes = np.zeros(whole.size, dtype=np.uint8)
    codes[:x.size] = fp8
    # per element byte run: FP8 -> [code], fp16 -> [low, high]; tag mask bytes ahead of each block
    block_widths = np.where(whole, 1, 2)
    block_length = fmt.tag_bytes + block_widths.sum(axis=1)
    block_start = np.cumsum(block_length) - block_length
    out = np.zeros(fmt.padded(int(block_length.sum())), dtype=np.uint8)
    mask_bytes = np.packbits(whole, axis=1, bitorder="little")[:, :fmt.tag_bytes]
    for i in range(fmt.tag_bytes):
        out[block_start + i] = mask_bytes[:, i]
    within = np.cumsum(block_widths, axis=1) - block_widths
    first = (block_start[:, None] + fmt.tag_bytes + within).ravel()
    narrow = whole.ravel()
    out[first[narrow]] = codes[narrow]
    out[first[~narrow]] = (values[~narrow] & 0xFF).astype(np.uint8)
    out[first[~narrow] + 1] = (values[~narrow] >> 8).astype(np.uint8)
    return out.tobytes()


def unpack(data, n, fmt8, fmt: FgmpBlockFormat) -> tuple[np.ndarray, np.ndarray]:
    """Decode an FGMP byte stream of ``n`` elements: ``(fp16 bits, tags)``, both of shape ``(n,)``.

    Raises
    ------
    ValueError
        On a corrupt stream: shorter than its tag masks say (payload missing), longer than the
        padded length, a padding element that is not an FP8 +0 (tag 1, byte 0), or nonzero stream
        padding bytes.
    """
    fmt = _block_format(fmt)
    fmt8 = _fmt8(fmt8)
    n = _count(n)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    raw = np.frombuffer(bytes(data), dtype=np.uint8)
    if raw.size % fmt.bus_bytes:
        raise ValueError(f"corrupt FGMP stream: {raw.size} bytes is not a whole number of "
                         f"{fmt.bus_bytes}-byte bus words")
    nblocks = fmt.blocks(n)
    tags = np.empty((nblocks, fmt.block), dtype=bool)
    payload = np.empty((nblocks, fmt.block), dtype=np.uint16)
    pos = 0
    for b in range(nblocks):
        # one block at a time: where a block starts depends on the tags of all before it
        if pos + fmt.tag_bytes > raw.size:
            raise ValueError(f"corrupt FGMP stream: block {b} tag mask at byte {pos} lies past the "
                             f"end of the {raw.size}-byte stream")
        mask = np.unpackbits(raw[pos:pos + fmt.tag_bytes], bitorder="little")[:fmt.block]
        pos += fmt.tag_bytes
        block_tags = mask.astype(bool)
        widths = np.where(block_tags, 1, 2)
        need = int(widths.sum())
        if pos + need > raw.size:
            raise ValueError(f"corrupt FGMP stream: block {b} tags call for {need} payload bytes "
                             f"at byte {pos}, only {raw.size - pos} remain")
        starts = pos + np.cumsum(widths) - widths
        low = raw[starts].astype(np.uint16)
        high = np.where(block_tags, 0, raw[np.minimum(starts + 1, raw.size - 1)]).astype(np.uint16)
        payload[b] = low | (high << 8)
        tags[b] = block_tags
        pos += need
    flat_tags = tags.ravel()
    flat_payload = payload.ravel()
    pad_tags, pad_payload = flat_tags[n:], flat_payload[n:]
    if not np.all(pad_tags) or np.any(pad_payload):
        bad = int(np.flatnonzero(~pad_tags | (pad_payload != 0))[0])
        raise ValueError(f"corrupt FGMP stream: padding element {n + bad} of the last block is "
                         f"not an FP8 +0 (tag {int(pad_tags[bad])}, "
                         f"payload {int(pad_payload[bad]):#x})")
    if raw.size != fmt.padded(pos):
        raise ValueError(f"corrupt FGMP stream: {raw.size} bytes, the tag masks give {pos} bytes "
                         f"padded to {fmt.padded(pos)}")
    if np.any(raw[pos:]):
        raise ValueError(f"corrupt FGMP stream: nonzero stream padding after byte {pos}")
    tags_n = flat_tags[:n].copy()
    return decode(tags_n, flat_payload[:n], fmt8), tags_n
