"""Golden model of the accelerator's programs (sim/accel_model.py) against independent
computations: DRAM images laid out and read back here with numpy, programs encoded with
sim.accel_spec.encode, conversions by ml_dtypes / numpy casts, exact GEMMs by float64 matmul,
the others by sim.gemm on the matrices as the test placed them."""

import dataclasses
import os
import subprocess
import sys
from itertools import product

import ml_dtypes
import numpy as np
import pytest

from sim.accel_model import (AcceleratorModel, assemble, instruction_error, read_matrix,
                             write_matrix)
from sim.accel_spec import (EPILOGUE_ACC_OPS, EPILOGUE_FIELDS, EPILOGUE_SOURCE_OPS, FETCH_BLOCK,
                            FORMAT_BITS,
                            AccelError, EpilogueOp, Opcode, Target, encode)
from sim.config import AccelConfig, ArrayConfig, EngineConfig
from sim.epilogue import dropout_keep
from sim.formats import FP16
from sim.gemm import gemm
from sim.lfsr import dropout_keep_mask
from tb.vectors import moderate_bits

SEED = int(os.environ.get("SPARTA_SEED", "1"))

ENGINE = EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=48, b_rows=40,
                      acc_width=32, acc_rows=36,
                      out_formats=("fp32", "fp16", "bf16", "e4m3", "e5m2"))
CONFIG = AccelConfig(engine=ENGINE)

DTYPES = {"fp16": np.float16, "bf16": ml_dtypes.bfloat16, "e4m3": ml_dtypes.float8_e4m3fn,
          "e5m2": ml_dtypes.float8_e5m2}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32}
SIZE = {"fp16": 2, "bf16": 2, "e4m3": 1, "e5m2": 1, "fp32": 4}
CANONICAL_NAN = {"fp16": 0x7E00, "bf16": 0x7FC0, "e4m3": 0x7F, "e5m2": 0x7E}
#: operand format tags of the engine (hw.fp.operand.OperandFormat)
TAGS = {"fp16": 0, "e4m3": 1, "e5m2": 2}


def code(name: str) -> int:
    return FORMAT_BITS.index(name)


def rng_for(test: str):
    print(f"{test}: seed {SEED} (SPARTA_SEED)")
    return np.random.default_rng([SEED, sum(map(ord, test))])


def hexes(array) -> str:
    return np.array2string(np.asarray(array), formatter={"int": lambda v: f"{v:#x}"})


# -- DRAM images, made here without the model's helpers ----------------------------------------

def put(dram, addr, stride, bits, size):
    for r, row in enumerate(np.asarray(bits)):
        data = row.astype(f"<u{size}").tobytes()
        dram[addr + r * stride:addr + r * stride + len(data)] = data


def get(dram, addr, stride, rows, cols, size):
    return np.stack([np.frombuffer(bytes(dram[addr + r * stride:addr + r * stride + cols * size]),
                                   dtype=f"<u{size}") for r in range(rows)]).astype(UINT[size])


def place_program(dram, base, instructions):
    """``instructions``: (opcode, fields) pairs or raw 32-byte words."""
    for i, item in enumerate(instructions):
        word = item if isinstance(item, bytes) else encode(item[0], **item[1])
        dram[base + 32 * i:base + 32 * (i + 1)] = word
    return len(instructions)


def run(instructions, *, config=CONFIG, dram=None, size=1 << 15, base=0x100, prog_len=None,
        errors=None, model=None):
    dram = bytearray(size) if dram is None else dram
    count = place_program(dram, base, instructions)
    model = AcceleratorModel(config) if model is None else model
    result = model.run(dram, base, count if prog_len is None else prog_len,
                       dram_errors=errors)
    return result, dram, model


def load(target, dram_format, addr, stride, rows, cols, *, operand_format=None, mem_row=0,
         mem_col=0, saturate=0):
    return (Opcode.LOAD, dict(target=target, dram_format=code(dram_format),
                              operand_format=code(operand_format or dram_format),
                              dram_addr=addr, dram_stride=stride, rows=rows, cols=cols,
                              mem_row=mem_row, mem_col=mem_col, saturate=saturate))


def store(dram_format, addr, stride, rows, cols, *, mem_row=0, mem_col=0, saturate=0,
          target=Target.ACC):
    return (Opcode.STORE, dict(target=target, dram_format=code(dram_format), dram_addr=addr,
                               dram_stride=stride, rows=rows, cols=cols, mem_row=mem_row,
                               mem_col=mem_col, saturate=saturate))


def gemm_op(m, n, k, **fields):
    return (Opcode.GEMM, dict(m=m, n=n, k=k, **fields))


DONE = (Opcode.DONE, {})
GEMM_1 = (Opcode.GEMM, dict(m=1, n=1, k=1))


def beats(row_bytes, beat):
    return -(-row_bytes // beat)


def reference_cast(bits32, fmt: str, saturate: bool):
    """FP32 bit patterns rounded to ``fmt`` by numpy / ml_dtypes (round to nearest even);
    ``saturate``: clamped to the largest finite value first; NaNs canonical."""
    x = np.asarray(bits32, dtype=np.uint32).view(np.float32)
    if saturate:
        top = float(np.finfo(np.float16).max if fmt == "fp16" else ml_dtypes.finfo(DTYPES[fmt]).max)
        x = np.clip(x, np.float32(-top), np.float32(top))
    with np.errstate(all="ignore"):
        values = x.astype(DTYPES[fmt])
    out = values.view(UINT[SIZE[fmt]]).copy()
    out[np.isnan(values.astype(np.float32))] = CANONICAL_NAN[fmt]
    return out


def fp32_edges():
    """FP32 bit patterns around the formats' limits, ties and specials, both signs."""
    values = [0.0, 1.0, 1.0625, 1.1875, 2.0 ** -10, 3 * 2.0 ** -10, 2.0 ** -17, 2.0 ** -25,
              448.0, 463.9, 464.0, 465.0, 480.0, 1000.0, 57344.0, 61439.0, 61440.0, 65504.0,
              65519.0, 65520.0, 1e6, 3.3895314e38, 3.39e38, 1e-40]
    bits = list(np.array(values, dtype=np.float32).view(np.uint32))
    bits += [0x7F800000, 0x7FC00000, 0x7F800001, 0x7FFFFFFF, 0x7F7FFFFF, 0x00000001]
    bits = np.array(bits, dtype=np.uint32)
    return np.concatenate([bits, bits | np.uint32(0x80000000)])


def random_fp32(rng, n):
    values = rng.normal(size=n) * np.exp2(rng.integers(-30, 30, n))
    return values.astype(np.float32).view(np.uint32)


def random_operands(rng, fmt, shape):
    if fmt == "fp16":
        return moderate_bits(rng, FP16, int(np.prod(shape))).reshape(shape).astype(np.uint16)
    return rng.integers(0, 256, shape).astype(np.uint8)       # every FP8 code, NaNs included


def small_integers(rng, shape):
    """fp16 bit patterns of non-zero integers in -8..8: products and short sums are exact."""
    values = rng.integers(1, 9, shape) * rng.choice([-1, 1], shape)
    return values.astype(np.float16).view(np.uint16)


def assert_bits(got, want, what, **inputs):
    if not np.array_equal(got, want):
        bad = np.argwhere(np.asarray(got) != np.asarray(want))
        details = "".join(f"\n{name} =\n{hexes(value)}" for name, value in inputs.items())
        raise AssertionError(f"{what}: {len(bad)} mismatches, first at {tuple(bad[0])}"
                             f"\ngot =\n{hexes(got)}\nwant =\n{hexes(want)}{details}")


# -- programs that compute --------------------------------------------------------------------

@pytest.mark.parametrize("data_width", [64, 128, 256])
@pytest.mark.parametrize("a_fmt,b_fmt", [("fp16", "fp16"), ("e4m3", "e5m2")])
def test_gemm_program(data_width, a_fmt, b_fmt):
    """LOAD A, LOAD B, GEMM, STORE fp32 equals sim.gemm of the matrices; counters in beats."""
    rng = rng_for(f"gemm_program {data_width} {a_fmt} {b_fmt}")
    config = AccelConfig(engine=ENGINE, data_width=data_width)
    beat = data_width // 8
    m, n, k = 6, 11, 13
    a, b = random_operands(rng, a_fmt, (m, k)), random_operands(rng, b_fmt, (k, n))
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a, SIZE[a_fmt])
    put(dram, 0x2000, 96, b, SIZE[b_fmt])
    program = [load(Target.A, a_fmt, 0x1000, 64, m, k, mem_row=3, mem_col=5),
               load(Target.B, b_fmt, 0x2000, 96, k, n, mem_row=7, mem_col=2),
               gemm_op(m, n, k, a_row=3, a_col=5, b_row=7, b_col=2, c_row=4, c_col=9),
               store("fp32", 0x4000, 64, m, n, mem_row=4, mem_col=9), DONE]
    result, dram, model = run(program, config=config, dram=dram)
    assert result.error == AccelError.NONE and result.error_index is None
    assert result.executed == 5 and len(result.instructions) == 5
    got = get(dram, 0x4000, 64, m, n, 4)
    assert_bits(got, gemm(a, b, a_fmt=a_fmt, b_fmt=b_fmt), "C", a=a, b=b)
    assert result.products == m * n * k
    read = 5 * 32 + (m * beats(k * SIZE[a_fmt], beat) + k * beats(n * SIZE[b_fmt], beat)) * beat
    assert result.bytes_read == read
    assert result.bytes_written == m * beats(4 * n, beat) * beat
    assert [r.opcode for r in result.instructions] == [Opcode.LOAD, Opcode.LOAD, Opcode.GEMM,
                                                       Opcode.STORE, Opcode.DONE]
    assert [r.products for r in result.instructions] == [0, 0, m * n * k, 0, 0]


def test_gemm_exact_against_numpy():
    """Integer-valued fp16 operands: the stored fp32 C is numpy's float64 product, exactly;
    accumulating a second GEMM (the K split in two) gives the full product."""
    rng = rng_for("gemm_exact")
    m, n, k1, k2 = 7, 9, 10, 6
    a, b = small_integers(rng, (m, k1 + k2)), small_integers(rng, (k1 + k2, n))
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a, 2)
    put(dram, 0x2000, 64, b, 2)
    program = [load(Target.A, "fp16", 0x1000, 64, m, k1 + k2),
               load(Target.B, "fp16", 0x2000, 64, k1 + k2, n),
               gemm_op(m, n, k1),
               gemm_op(m, n, k2, a_col=k1, b_row=k1, accumulate=1),
               store("fp32", 0x4000, 64, m, n)]
    result, dram, _ = run(program, dram=dram)
    assert result.error == AccelError.NONE and result.executed == 5
    assert result.products == m * n * (k1 + k2)
    values = (a.view(np.float16).astype(np.float64) @ b.view(np.float16).astype(np.float64))
    assert_bits(get(dram, 0x4000, 64, m, n, 4), values.astype(np.float32).view(np.uint32),
                "C", a=a, b=b)


def test_accumulate_across_gemms():
    """Two GEMMs into one C with accumulate: sim.gemm of the second from the first's result."""
    rng = rng_for("accumulate")
    m, n, k = 5, 6, 9
    a1, a2 = random_operands(rng, "fp16", (m, k)), random_operands(rng, "fp16", (m, k))
    b1, b2 = random_operands(rng, "fp16", (k, n)), random_operands(rng, "fp16", (k, n))
    dram = bytearray(1 << 15)
    for i, (a, b) in enumerate(((a1, b1), (a2, b2))):
        put(dram, 0x1000 + 0x800 * i, 64, a, 2)
        put(dram, 0x3000 + 0x800 * i, 64, b, 2)
    program = [load(Target.A, "fp16", 0x1000, 64, m, k),
               load(Target.A, "fp16", 0x1800, 64, m, k, mem_row=m),
               load(Target.B, "fp16", 0x3000, 64, k, n),
               load(Target.B, "fp16", 0x3800, 64, k, n, mem_row=k),
               gemm_op(m, n, k, c_row=2),
               gemm_op(m, n, k, a_row=m, b_row=k, c_row=2, accumulate=1),
               store("fp32", 0x6000, 64, m, n, mem_row=2), DONE]
    result, dram, _ = run(program, dram=dram)
    assert result.error == AccelError.NONE
    want = gemm(a2, b2, c_bits=gemm(a1, b1))
    assert_bits(get(dram, 0x6000, 64, m, n, 4), want, "C", a1=a1, b1=b1, a2=a2, b2=b2)


@pytest.mark.parametrize("a_transpose,b_transpose", list(product([0, 1], repeat=2)))
def test_transposed_operands(a_transpose, b_transpose):
    """Operands stored transposed in DRAM and the scratchpads, read transposed by the GEMM."""
    rng = rng_for(f"transpose {a_transpose} {b_transpose}")
    m, n, k = 7, 5, 10
    a, b = random_operands(rng, "fp16", (m, k)), random_operands(rng, "e4m3", (k, n))
    a_stored = a.T.copy() if a_transpose else a
    b_stored = b.T.copy() if b_transpose else b
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a_stored, 2)
    put(dram, 0x2000, 64, b_stored, 1)
    program = [load(Target.A, "fp16", 0x1000, 64, *a_stored.shape, mem_row=1, mem_col=2),
               load(Target.B, "e4m3", 0x2000, 64, *b_stored.shape, mem_row=3, mem_col=4),
               gemm_op(m, n, k, a_row=1, a_col=2, b_row=3, b_col=4, a_transpose=a_transpose,
                       b_transpose=b_transpose),
               store("fp32", 0x4000, 64, m, n)]
    result, dram, _ = run(program, dram=dram)
    assert result.error == AccelError.NONE
    assert_bits(get(dram, 0x4000, 64, m, n, 4), gemm(a, b, a_fmt="fp16", b_fmt="e4m3"), "C",
                a=a, b=b)


def test_load_acc_then_accumulate():
    """LOAD ACC (fp32 words as they are, NaN payloads too), GEMM accumulate, STORE fp32."""
    rng = rng_for("load_acc")
    m, n, k = 6, 8, 7
    a, b = random_operands(rng, "e5m2", (m, k)), random_operands(rng, "fp16", (k, n))
    c0 = random_fp32(rng, m * n).reshape(m, n)
    c0.flat[:4] = [0x80000000, 0x7F800000, 0x7FA00001, 0xFFC12345]
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a, 1)
    put(dram, 0x2000, 64, b, 2)
    put(dram, 0x3000, 64, c0, 4)
    program = [load(Target.ACC, "fp32", 0x3000, 64, m, n, mem_row=5, mem_col=3),
               store("fp32", 0x5000, 64, m, n, mem_row=5, mem_col=3),
               load(Target.A, "e5m2", 0x1000, 64, m, k),
               load(Target.B, "fp16", 0x2000, 64, k, n),
               gemm_op(m, n, k, c_row=5, c_col=3, accumulate=1),
               store("fp32", 0x6000, 64, m, n, mem_row=5, mem_col=3)]
    result, dram, model = run(program, dram=dram)
    assert result.error == AccelError.NONE and result.executed == 6
    assert_bits(get(dram, 0x5000, 64, m, n, 4), c0, "ACC round trip")
    want = gemm(a, b, a_fmt="e5m2", b_fmt="fp16", c_bits=c0)
    assert_bits(get(dram, 0x6000, 64, m, n, 4), want, "C", a=a, b=b, c0=c0)
    assert_bits(model.acc[5:5 + m, 3:3 + n], want, "accumulator memory")


@pytest.mark.parametrize("saturate", [0, 1])
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2", "fp16"])
def test_load_converts_fp32(fmt, saturate):
    """LOAD A from fp32 into an operand format: ml_dtypes' / numpy's round to nearest even
    (non-saturating: overflow is infinity, or NaN in e4m3; saturating: the largest finite
    value, infinities too); NaNs canonical; the tags say the format."""
    rng = rng_for(f"load_convert {fmt} {saturate}")
    values = np.concatenate([fp32_edges(), random_fp32(rng, 200)])
    cols = 13                       # 52 bytes: a partly used last beat
    rows = -(-len(values) // cols)
    values = np.resize(values, rows * cols).reshape(rows, cols)
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, values, 4)
    program = [load(Target.A, "fp32", 0x1000, 64, rows, cols, operand_format=fmt, mem_row=2,
                    mem_col=1, saturate=saturate)]
    result, _, model = run(program, dram=dram)
    assert result.error == AccelError.NONE
    assert result.bytes_read == 32 + rows * 56
    want = reference_cast(values, fmt, bool(saturate))
    assert_bits(model.a_bits[2:2 + rows, 1:1 + cols], want, "A bits", fp32=values)
    assert (model.a_tags[2:2 + rows, 1:1 + cols] == TAGS[fmt]).all()
    outside = np.ones(model.a_bits.shape, dtype=bool)
    outside[2:2 + rows, 1:1 + cols] = False
    assert not model.a_bits[outside].any() and not model.a_tags[outside].any()


@pytest.mark.parametrize("saturate", [0, 1])
@pytest.mark.parametrize("fmt", ["fp16", "bf16", "e4m3", "e5m2"])
def test_store_converts(fmt, saturate):
    """STORE from the accumulator memory to an output format, as numpy / ml_dtypes cast."""
    rng = rng_for(f"store_convert {fmt} {saturate}")
    values = np.concatenate([fp32_edges(), random_fp32(rng, 150)])
    cols = 16
    rows = -(-len(values) // cols)
    values = np.resize(values, rows * cols).reshape(rows, cols)
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, values, 4)
    program = [load(Target.ACC, "fp32", 0x1000, 64, rows, cols, mem_row=1, mem_col=8),
               store(fmt, 0x4000, 32, rows, cols, mem_row=1, mem_col=8, saturate=saturate)]
    result, dram, _ = run(program, dram=dram)
    assert result.error == AccelError.NONE
    got = get(dram, 0x4000, 32, rows, cols, SIZE[fmt])
    assert_bits(got, reference_cast(values, fmt, bool(saturate)), f"{fmt} store", fp32=values)


@pytest.mark.parametrize("data_width,fmt,cols", [(64, "e4m3", 5), (64, "fp16", 7),
                                                 (256, "fp16", 7), (128, "bf16", 9),
                                                 (256, "fp32", 3)])
def test_partial_rows(data_width, fmt, cols):
    """Rows that end inside a beat: a STORE changes exactly cols * bytes per row (all else in
    DRAM untouched) and counts whole beats; a LOAD drops the bytes past cols."""
    rng = rng_for(f"partial_rows {data_width} {fmt} {cols}")
    config = AccelConfig(engine=ENGINE, data_width=data_width)
    beat, rows, stride = data_width // 8, 5, 2 * (data_width // 8)
    values = random_fp32(rng, rows * cols).reshape(rows, cols)
    dram = bytearray(rng.integers(0, 256, 1 << 14, dtype=np.uint8).tobytes())
    put(dram, 0x1000, 128, values, 4)
    program = [load(Target.ACC, "fp32", 0x1000, 128, rows, cols),
               store(fmt, 0x2000, stride, rows, cols)]
    place_program(dram, 0x100, program)
    before = bytes(dram)
    result, dram, _ = run(program, config=config, dram=dram)
    assert result.error == AccelError.NONE
    row_bytes = cols * SIZE[fmt]
    assert result.bytes_written == rows * beats(row_bytes, beat) * beat
    assert result.bytes_read == 2 * 32 + rows * beats(4 * cols, beat) * beat
    want = bytearray(before)
    data = values if fmt == "fp32" else reference_cast(values, fmt, False)
    put(want, 0x2000, stride, data, SIZE[fmt])
    changed = np.flatnonzero(np.frombuffer(bytes(dram), np.uint8)
                             != np.frombuffer(bytes(want), np.uint8))
    assert changed.size == 0, f"bytes {hexes(changed[:16])} differ from the expected image"
    # the LOAD back into A (fp16 rows of 7 elements) keeps nothing past cols
    if fmt == "fp16":
        program = [load(Target.A, "fp16", 0x2000, stride, rows, cols)]
        result, _, model = run(program, config=config, dram=dram, base=0x3000)
        assert result.error == AccelError.NONE
        assert_bits(model.a_bits[:rows, :cols], data, "A")
        assert not model.a_bits[:, cols:].any() and not model.a_bits[rows:].any()


def test_address_wrap_walks_backwards():
    """A 32-bit configuration: a stride of 2**32 - 64 reads the rows upwards in memory in
    reverse; the same stride with 64-bit addresses leaves the image (DRAM_RESPONSE)."""
    rng = rng_for("address_wrap")
    rows, cols = 4, 8
    a = random_operands(rng, "fp16", (rows, cols))
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a[::-1], 2)           # row r of A at 0x10C0 - 64 r
    program = [load(Target.A, "fp16", 0x10C0, (1 << 32) - 64, rows, cols)]
    result, _, model = run(program, dram=dram)
    assert result.error == AccelError.NONE
    assert_bits(model.a_bits[:rows, :cols], a, "A")
    wide = AccelConfig(engine=ENGINE, addr_width=64)
    result, _, _ = run(program, config=wide, dram=dram)
    assert (result.error, result.error_index) == (AccelError.DRAM_RESPONSE, 0)


def test_state_persists_between_runs():
    """Scratchpads and the accumulator memory keep their contents from one program to the
    next (as the hardware's memories; a soft reset does not clear them)."""
    rng = rng_for("persist")
    m, n, k = 4, 4, 4
    a, b = small_integers(rng, (m, k)), small_integers(rng, (k, n))
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a, 2)
    put(dram, 0x2000, 64, b, 2)
    _, dram, model = run([load(Target.A, "fp16", 0x1000, 64, m, k),
                          load(Target.B, "fp16", 0x2000, 64, k, n)], dram=dram)
    result, dram, _ = run([gemm_op(m, n, k), store("fp32", 0x4000, 64, m, n)], dram=dram,
                          model=model, base=0x800)
    assert result.error == AccelError.NONE
    assert_bits(get(dram, 0x4000, 64, m, n, 4), gemm(a, b), "C")


# -- output masks and zero skipping -----------------------------------------------------------

@pytest.mark.parametrize("host,dropout", [(1, 0), (0, 1), (1, 1)])
def test_output_masks(host, dropout):
    """With output_mask: the selected keep planes (ANDed) write +0 where they are 0; the rest
    is the dense GEMM (accumulate included)."""
    rng = rng_for(f"masks {host} {dropout}")
    config = AccelConfig(engine=EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32,
                                             a_rows=32, b_rows=32, acc_width=32, acc_rows=32,
                                             output_mask=True))
    m, n, k = 6, 7, 5
    a, b = random_operands(rng, "fp16", (m, k)), random_operands(rng, "fp16", (k, n))
    c0 = random_fp32(rng, m * n).reshape(m, n)
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a, 2)
    put(dram, 0x2000, 64, b, 2)
    put(dram, 0x3000, 64, c0, 4)
    model = AcceleratorModel(config)
    model.keep_host[:] = rng.integers(0, 2, model.keep_host.shape).astype(bool)
    model.keep_dropout[:] = rng.integers(0, 2, model.keep_dropout.shape).astype(bool)
    program = [load(Target.A, "fp16", 0x1000, 64, m, k), load(Target.B, "fp16", 0x2000, 64, k, n),
               load(Target.ACC, "fp32", 0x3000, 64, m, n, mem_row=2, mem_col=3),
               gemm_op(m, n, k, c_row=2, c_col=3, accumulate=1, mask_host=host,
                       mask_dropout=dropout),
               store("fp32", 0x4000, 64, m, n, mem_row=2, mem_col=3)]
    result, dram, _ = run(program, config=config, dram=dram, model=model)
    assert result.error == AccelError.NONE
    keep = np.ones((m, n), dtype=bool)
    if host:
        keep &= model.keep_host[2:2 + m, 3:3 + n]
    if dropout:
        keep &= model.keep_dropout[2:2 + m, 3:3 + n]
    want = np.where(keep, gemm(a, b, c_bits=c0), 0).astype(np.uint32)
    assert_bits(get(dram, 0x4000, 64, m, n, 4), want, "C", keep=keep.astype(int))


def test_zero_skipping_engine():
    """An engine with skip_zeros skips zero products, as its hardware: a -0 start stays -0 and
    0 * inf leaves the accumulator alone (the dense GEMM gives +0 and NaN)."""
    rng_for("skip_zeros")
    config = AccelConfig(engine=EngineConfig(
        array=ArrayConfig(rows=4, cols=4, skip_zeros=True), spad_width=16, a_rows=16,
        b_rows=16, acc_width=16, acc_rows=16))
    a = np.zeros((2, 3), dtype=np.uint16)                      # all +0
    b = np.full((3, 2), 0x7C00, dtype=np.uint16)               # all +inf
    c0 = np.array([[0x80000000, 0x3F800000], [0x80000000, 0xC0000000]], dtype=np.uint32)
    dram = bytearray(1 << 14)
    put(dram, 0x1000, 64, a, 2)
    put(dram, 0x2000, 64, b, 2)
    put(dram, 0x3000, 64, c0, 4)
    program = [load(Target.A, "fp16", 0x1000, 64, 2, 3), load(Target.B, "fp16", 0x2000, 64, 3, 2),
               load(Target.ACC, "fp32", 0x3000, 64, 2, 2),
               gemm_op(2, 2, 3, accumulate=1), store("fp32", 0x3800, 64, 2, 2)]
    result, dram, _ = run(program, config=config, dram=dram)
    assert result.error == AccelError.NONE
    assert_bits(get(dram, 0x3800, 64, 2, 2, 4), c0, "C")
    assert result.products_skipped == 2 * 2 * 3        # every product has a +0 operand
    dense, dram, _ = run(program, config=AccelConfig(engine=EngineConfig(
        array=ArrayConfig(rows=4, cols=4), spad_width=16, a_rows=16, b_rows=16, acc_width=16,
        acc_rows=16)), dram=bytearray(dram))
    assert dense.error == AccelError.NONE
    assert (get(dram, 0x3800, 64, 2, 2, 4) == 0x7FC00000).all()    # the dense engine: NaN
    assert dense.products_skipped == 0


@pytest.mark.parametrize("zeros", [0.0, 0.6, 1.0])
def test_engine_cycles_with_the_window(zeros):
    """RunResult.engine_cycles: the dense timing of each GEMM on a dense engine; on an engine
    with a lookahead window the window's timing with the zeros the program loaded, which
    zeros shorten and never lengthen past the dense count plus the window's latency."""
    from sim.engine_model import EngineCommand, command_cycles
    from sim.skip_model import SparseGemm
    from sim.skip_timing import engine_cycles, with_window

    rng = rng_for(f"engine_cycles {zeros}")
    dense = EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=32,
                         b_rows=32, acc_width=32, acc_rows=32)
    window = with_window(dense, 3)
    m, n, k = 9, 6, 23
    a = small_integers(rng, (m, k))
    a[rng.random((m, k)) < zeros] = 0
    b = small_integers(rng, (k, n))
    dram = bytearray(1 << 14)
    put(dram, 0x1000, 64, a, 2)
    put(dram, 0x2000, 64, b, 2)
    program = [load(Target.A, "fp16", 0x1000, 64, m, k), load(Target.B, "fp16", 0x2000, 64, k, n),
               gemm_op(m, n, k), gemm_op(m, n, k, accumulate=1), DONE]
    command = EngineCommand(m=m, n=n, k=k)
    results, skipped = {}, {}
    for engine in (dense, window):
        result, _, _ = run(program, config=AccelConfig(engine=engine), dram=bytearray(dram))
        assert result.error == AccelError.NONE
        results[engine is window] = result.engine_cycles
        skipped[engine is window] = result.products_skipped
    # products_skipped: none on the dense engine; on the window's, per GEMM the products
    # with a zero operand (the window reaches every other one), counted here by brute force
    live = np.einsum("ik,kj->", (a.view(np.float16) != 0).astype(np.int64),
                     (b.view(np.float16) != 0).astype(np.int64))
    assert skipped == {False: 0, True: 2 * (m * n * k - int(live))}, (skipped, live)
    assert results[False] == command_cycles(dense, command) + command_cycles(
        dense, dataclasses.replace(command, accumulate=True))
    sparse = SparseGemm.from_bits(a, b)
    want = (engine_cycles(window, command, sparse)
            + engine_cycles(window, dataclasses.replace(command, accumulate=True),
                            dataclasses.replace(sparse, accumulate=True)))
    assert results[True] == want, f"A =\n{hexes(a)}"
    if zeros == 1.0:
        assert results[True] < results[False]


# -- errors -----------------------------------------------------------------------------------

GOOD_A = load(Target.A, "fp16", 0x1000, 64, 4, 8)
GOOD_B = load(Target.B, "fp16", 0x1000, 64, 4, 8)
GOOD_ACC = load(Target.ACC, "fp32", 0x1000, 64, 4, 8)
FP8_ONLY = AccelConfig(engine=EngineConfig(array=ArrayConfig(rows=4, cols=4, a_formats=("e4m3",),
                                                             b_formats=("e5m2", "e4m3")),
                                           spad_width=32, a_rows=32, b_rows=32, acc_width=32,
                                           acc_rows=32, out_formats=("fp32", "fp16")))


def raw_opcode(value: int) -> bytes:
    return bytes([value]) + bytes(31)


def with_fields(instruction, **changes):
    opcode, fields = instruction
    return opcode, {**fields, **changes}


def bad_load(**changes):
    return with_fields(GOOD_A, **changes)


def bad_store(**changes):
    return with_fields(store("fp32", 0x2000, 64, 4, 8), **changes)


# (id, config, instructions, error, index, beats the faulting instruction moved (read, written))
ERROR_CASES = [
    *[("illegal opcode %d" % v, CONFIG, [GOOD_A, GOOD_B, raw_opcode(v)], AccelError.ILLEGAL_OPCODE,
       2, (0, 0)) for v in (0, 5, 6, 8, 0x83, 0xFF)],
    # LOAD, BAD_FIELD: each cause
    ("load rows 0", CONFIG, [GOOD_B, bad_load(rows=0)], AccelError.BAD_FIELD, 1, (0, 0)),
    ("load cols 0", CONFIG, [bad_load(cols=0)], AccelError.BAD_FIELD, 0, (0, 0)),
    ("load target 3", CONFIG, [bad_load(target=3)], AccelError.BAD_FIELD, 0, (0, 0)),
    *[(f"load dram_format {v}", CONFIG, [bad_load(dram_format=v)], AccelError.BAD_FIELD, 0,
       (0, 0)) for v in (5, 6, 7)],
    *[(f"load operand_format {v}", CONFIG, [bad_load(operand_format=v)], AccelError.BAD_FIELD,
       0, (0, 0)) for v in (3, 4, 5, 7)],
    ("load fp16 into e4m3", CONFIG, [bad_load(operand_format=code("e4m3"))],
     AccelError.BAD_FIELD, 0, (0, 0)),
    ("load bf16 into fp16", CONFIG, [bad_load(dram_format=code("bf16"))], AccelError.BAD_FIELD,
     0, (0, 0)),
    ("load e5m2 into e4m3", CONFIG,
     [bad_load(dram_format=code("e5m2"), operand_format=code("e4m3"))], AccelError.BAD_FIELD,
     0, (0, 0)),
    ("load fp16 into ACC", CONFIG, [with_fields(GOOD_ACC, dram_format=code("fp16"))],
     AccelError.BAD_FIELD, 0, (0, 0)),
    ("load A format not in a_formats", FP8_ONLY,
     [bad_load(dram_format=code("e5m2"), operand_format=code("e5m2"))],
     AccelError.BAD_FIELD, 0, (0, 0)),
    ("load B fp16 not in b_formats", FP8_ONLY, [GOOD_B], AccelError.BAD_FIELD, 0, (0, 0)),
    ("load address beyond 32 bits", CONFIG, [bad_load(dram_addr=1 << 32)], AccelError.BAD_FIELD,
     0, (0, 0)),
    # STORE, BAD_FIELD
    *[(f"store target {t}", CONFIG, [bad_store(target=t)], AccelError.BAD_FIELD, 0, (0, 0))
      for t in (0, 1, 3)],
    ("store bf16 not in out_formats", FP8_ONLY, [bad_store(dram_format=code("bf16"))],
     AccelError.BAD_FIELD, 0, (0, 0)),
    ("store format 7", CONFIG, [bad_store(dram_format=7)], AccelError.BAD_FIELD, 0, (0, 0)),
    ("store rows 0", CONFIG, [bad_store(rows=0)], AccelError.BAD_FIELD, 0, (0, 0)),
    ("store cols 0", CONFIG, [bad_store(cols=0)], AccelError.BAD_FIELD, 0, (0, 0)),
    # GEMM, BAD_FIELD
    *[(f"gemm {f} 0", CONFIG, [GOOD_A, gemm_op(**{"m": 2, "n": 2, "k": 2, f: 0})],
       AccelError.BAD_FIELD, 1, (0, 0)) for f in "mnk"],
    *[(f"gemm {f} without output_mask", CONFIG, [gemm_op(2, 2, 2, **{f: 1})],
       AccelError.BAD_FIELD, 0, (0, 0)) for f in ("mask_host", "mask_dropout")],
    # MISALIGNED
    ("load address", CONFIG, [bad_load(dram_addr=0x1004)], AccelError.MISALIGNED, 0, (0, 0)),
    ("load stride", CONFIG, [bad_load(dram_stride=60)], AccelError.MISALIGNED, 0, (0, 0)),
    ("load stride, one row", CONFIG, [bad_load(rows=1, dram_stride=4)], AccelError.MISALIGNED,
     0, (0, 0)),
    ("store address", CONFIG, [bad_store(dram_addr=0x2002)], AccelError.MISALIGNED, 0, (0, 0)),
    ("store stride", CONFIG, [bad_store(dram_stride=72 + 4)], AccelError.MISALIGNED, 0, (0, 0)),
    # SPAD_OVERFLOW, one edge past each memory's end (the exact fits are good cases below)
    ("load A rows", CONFIG, [bad_load(mem_row=45)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("load A cols", CONFIG, [bad_load(mem_col=25)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("load B rows", CONFIG, [with_fields(GOOD_B, mem_row=37)], AccelError.SPAD_OVERFLOW, 0,
     (0, 0)),
    ("load B cols", CONFIG, [with_fields(GOOD_B, mem_col=25)], AccelError.SPAD_OVERFLOW, 0,
     (0, 0)),
    ("load ACC rows", CONFIG, [with_fields(GOOD_ACC, mem_row=33)], AccelError.SPAD_OVERFLOW, 0,
     (0, 0)),
    ("load ACC cols", CONFIG, [with_fields(GOOD_ACC, mem_col=25)], AccelError.SPAD_OVERFLOW, 0,
     (0, 0)),
    ("load A 16-bit sum", CONFIG, [bad_load(mem_row=0xFFFF)], AccelError.SPAD_OVERFLOW, 0,
     (0, 0)),
    ("store rows", CONFIG, [bad_store(mem_row=33)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("store cols", CONFIG, [bad_store(mem_col=25)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("gemm A", CONFIG, [gemm_op(4, 4, 8, a_row=45)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("gemm A transposed", CONFIG, [gemm_op(4, 4, 30, a_row=20, a_transpose=1)],
     AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("gemm A cols", CONFIG, [gemm_op(4, 4, 8, a_col=25)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("gemm B", CONFIG, [gemm_op(4, 4, 8, b_row=33)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("gemm B transposed", CONFIG, [gemm_op(4, 30, 8, b_row=20, b_transpose=1)],
     AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("gemm B cols", CONFIG, [gemm_op(4, 4, 8, b_col=29)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("gemm C rows", CONFIG, [gemm_op(4, 4, 8, c_row=33)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    ("gemm C cols", CONFIG, [gemm_op(4, 4, 8, c_col=29)], AccelError.SPAD_OVERFLOW, 0, (0, 0)),
    # precedence
    ("bad field before misaligned and overflow", CONFIG,
     [bad_load(rows=0, dram_addr=0x1004, mem_col=30)], AccelError.BAD_FIELD, 0, (0, 0)),
    ("misaligned before overflow", CONFIG, [bad_store(dram_stride=4, mem_row=40)],
     AccelError.MISALIGNED, 0, (0, 0)),
    ("gemm zero size before overflow", CONFIG, [gemm_op(4, 0, 8, c_row=40)],
     AccelError.BAD_FIELD, 0, (0, 0)),
    ("gemm mask flag before overflow", CONFIG, [gemm_op(4, 4, 8, c_row=40, mask_host=1)],
     AccelError.BAD_FIELD, 0, (0, 0)),
    # exact fits and flags that a good instruction may carry
    ("exact fits", CONFIG,
     [bad_load(mem_row=44, mem_col=24), with_fields(GOOD_B, mem_row=36, mem_col=24),
      with_fields(GOOD_ACC, mem_row=32, mem_col=24), bad_store(mem_row=32, mem_col=24),
      gemm_op(4, 4, 8, a_row=44, a_col=24, b_row=32, b_col=28, c_row=32, c_col=28),
      gemm_op(8, 4, 4, a_row=44, a_col=24, a_transpose=1, b_row=36, b_col=24, b_transpose=1),
      bad_load(saturate=1, fence=1, rows=1, dram_stride=0), DONE],
     AccelError.NONE, None, (0, 0)),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[case[0] for case in ERROR_CASES])
def test_errors(case):
    """Each error with its index; the faulting instruction changes nothing (compared with the
    run of the instructions before it) and moves no data but its fetch."""
    name, config, instructions, error, index, (read, written) = case
    print(f"{name}: {[i.hex() if isinstance(i, bytes) else i for i in instructions]}")
    rng = rng_for(f"errors {name}")
    image = bytearray(rng.integers(0, 256, 1 << 15, dtype=np.uint8).tobytes())
    result, dram, model = run(instructions, config=config, dram=bytearray(image))
    assert (result.error, result.error_index) == (error, index), result
    if error == AccelError.NONE:
        assert result.executed == len(instructions)
        return
    assert result.executed == index and len(result.instructions) == index + 1
    assert result.instructions[-1].error == error
    want_dram = bytearray(image)
    place_program(want_dram, 0x100, instructions)
    want_model, base_read, base_written = AcceleratorModel(config), 0, 0
    if index:
        before = want_model.run(want_dram, 0x100, index)
        assert before.error == AccelError.NONE
        base_read, base_written = before.bytes_read, before.bytes_written
    assert result.bytes_read == base_read + 32 + read
    assert result.bytes_written == base_written + written
    assert dram == want_dram
    for memory in ("a_bits", "a_tags", "b_bits", "b_tags", "acc"):
        assert np.array_equal(getattr(model, memory), getattr(want_model, memory)), memory


def test_dram_response_on_load():
    """A LOAD beat in an error range, in the unused bytes of a row's last beat, or past the
    end of the image: DRAM_RESPONSE at the LOAD, every beat counted, the program stops."""
    m, k = 4, 5                 # rows of 10 bytes: two beats, the second partly used
    for errors, size in [([(0x1040 + 3, 0x1040 + 4)], 1 << 15),     # row 1, first beat
                         ([(0x10CA, 0x10CB)], 1 << 15),             # row 3, byte past cols
                         ([], 0x10C8 + 4)]:          # row 3's last beat past the end
        program = [with_fields(GOOD_B, dram_addr=0x800), load(Target.A, "fp16", 0x1000, 64, m, k),
                   gemm_op(1, 1, 1)]
        result, _, model = run(program, size=size, errors=errors)
        assert (result.error, result.error_index, result.executed) == (
            AccelError.DRAM_RESPONSE, 1, 1), (errors, size)
        # the GEMM after it was fetched in the same block: its 32 bytes count, it never runs
        assert result.bytes_read == 3 * 32 + 4 * 2 * 8 + m * 2 * 8
        assert result.instructions[1].bytes_read == 32 + m * 2 * 8
        assert not model.a_bits.any()           # the model leaves the target unchanged


@pytest.mark.parametrize("case", ["loads behind it", "block end", "fence", "check error",
                                  "second failure", "non-LOAD", "failed store first"])
def test_loads_behind_a_failing_load(case):
    """Loads in flight: after a LOAD whose read fails, the LOADs right behind it in its
    fetch block run (their bytes count) until an instruction that waits for the loads; the
    error is the first failing LOAD's (a failed STORE before it wins)."""
    failing = with_fields(GOOD_A, dram_addr=0x7000)            # past the end of the image
    size = 0x7000
    stopper = {"fence": with_fields(GOOD_B, fence=1),
               "check error": with_fields(GOOD_B, dram_addr=0x1001),
               "second failure": failing, "non-LOAD": gemm_op(1, 1, 1)}
    errors = None
    if case == "loads behind it":
        program, ran = [GOOD_B, failing, GOOD_A, GOOD_ACC, GEMM_1, DONE], [0, 1, 2, 3]
        want = (1, 3)
    elif case == "block end":           # the run stops at the block: the next one is not read
        at = FETCH_BLOCK - 2
        program = [GOOD_B] * at + [failing] + [GOOD_A] * (FETCH_BLOCK + 2) + [DONE]
        ran, want = list(range(FETCH_BLOCK)), (at, FETCH_BLOCK - 1)
    elif case == "failed store first":  # a LOAD waiting for the failed store ends the run
        program = [GOOD_ACC, store("fp32", 0x6000, 64, 4, 8), failing, GOOD_B,
                   with_fields(GOOD_A, dram_addr=0x6000), DONE]
        ran, want, errors = [0, 1, 2, 3], (1, 2), [(0x6000, 0x6001)]
    else:
        program = [GOOD_B, failing, GOOD_A, stopper[case], GOOD_ACC, DONE]
        # a second failing LOAD runs too (and so does the LOAD after it); the first is named
        ran = [0, 1, 2, 3, 4] if case == "second failure" else [0, 1, 2]
        want = (1, 3 if case == "second failure" else 2)
    result, _, _ = run(program, size=size, errors=errors)
    print(case, result.error.name, result.error_index, result.executed, result.bytes_read)
    assert (result.error, result.error_index, result.executed) == (
        AccelError.DRAM_RESPONSE, *want), case
    assert [r.index for r in result.instructions] == ran, case
    beat = CONFIG.beat_bytes
    moved = sum(f["rows"] * beats(f["cols"] * (4 if f["dram_format"] == code("fp32") else 2),
                                  beat) * beat
                for op, f in (program[i] for i in ran) if op == Opcode.LOAD)
    assert result.bytes_read == fetched(ran[-1] + 1, len(program)) + moved, case


@pytest.mark.parametrize("target", [Target.A, Target.ACC])
def test_grouped_sliding_window_load(target):
    """A LOAD of G groups of K copies (the im2col gather of one kernel row) writes what its
    G * K single LOADs write, and reads each DRAM row once."""
    rng = rng_for("grouped_load")
    fmt = "fp16" if target == Target.A else "fp32"
    size = SIZE[fmt]
    image = bytearray(rng.integers(0, 256, 1 << 15, dtype=np.uint8).tobytes())
    groups, copies, rows, cols = 3, 3, 6, 2          # 6 DRAM rows per group: 4 memory rows
    pixel, group_stride, copy_cols = 16, 128, 3
    grouped = with_fields(load(target, fmt, 0x1000, pixel, rows, cols, mem_row=1, mem_col=2),
                          groups=groups, group_stride=group_stride, copies=copies,
                          copy_cols=copy_cols)
    singles = [with_fields(load(target, fmt, 0x1000 + g * group_stride + k * pixel, pixel,
                                rows - copies + 1, cols, mem_row=1 + g * (rows - copies + 1),
                                mem_col=2 + k * copy_cols))
               for g in range(groups) for k in range(copies)]
    one, _, model = run([grouped], dram=bytearray(image))
    many, _, want = run(singles, dram=bytearray(image))
    assert one.error == many.error == AccelError.NONE, (one.error, many.error)
    for memory in ("a_bits", "a_tags", "acc"):
        assert np.array_equal(getattr(model, memory), getattr(want, memory)), memory
    beat = CONFIG.beat_bytes
    assert one.bytes_read == 32 + groups * rows * beats(cols * size, beat) * beat
    height = CONFIG.engine.a_rows if target == Target.A else CONFIG.engine.acc_rows
    # the checks: overlapping copies, a window longer than the rows, a STORE's copies and
    # groups, the last copy's columns and the last group's rows past the memory
    for change, error in [({"copy_cols": cols - 1}, AccelError.BAD_FIELD),
                          ({"rows": copies - 1}, AccelError.BAD_FIELD),
                          ({"mem_col": 32 - 2 * copy_cols - cols + 1}, AccelError.SPAD_OVERFLOW),
                          ({"mem_row": height - groups * (rows - copies + 1) + 1},
                           AccelError.SPAD_OVERFLOW)]:
        result, _, _ = run([with_fields(grouped, **change)], dram=bytearray(image))
        assert result.error == error, (change, result.error)
    for change in ({"copies": 2, "copy_cols": 8}, {"groups": 2, "group_stride": 64}):
        result, _, _ = run([with_fields(store("fp32", 0x2000, 64, 2, 2), **change)])
        assert result.error == AccelError.BAD_FIELD, change


def test_dram_response_on_store():
    """A STORE whose beats touch an error range: DRAM_RESPONSE at the STORE; every other beat
    is written, the faulting beats' bytes keep their old values."""
    rng = rng_for("store_fault")
    rows, cols = 4, 6              # fp16: 12 bytes, two beats per row
    values = random_fp32(rng, rows * cols).reshape(rows, cols)
    image = bytearray(rng.integers(0, 256, 1 << 15, dtype=np.uint8).tobytes())
    put(image, 0x1000, 64, values, 4)
    errors = [(0x2040 + 9, 0x2040 + 10), (0x20C0, 0x20C1)]       # row 1 beat 1, row 3 beat 0
    program = [load(Target.ACC, "fp32", 0x1000, 64, rows, cols),
               store("fp16", 0x2000, 64, rows, cols), gemm_op(1, 1, 1)]
    result, dram, _ = run(program, dram=bytearray(image), errors=errors)
    # the GEMM after it writes the rows the store read: it waits for the store path only, so
    # it runs; the error is reported at the end of the program
    assert (result.error, result.error_index, result.executed) == (AccelError.DRAM_RESPONSE, 1, 2)
    assert result.bytes_written == rows * 2 * 8
    want = bytearray(image)
    place_program(want, 0x100, program)
    put(want, 0x2000, 64, reference_cast(values, "fp16", False), 2)
    for start in (0x2048, 0x20C0):                               # the refused beats
        want[start:start + 8] = image[start:start + 8]
    assert dram == want


def test_dram_response_on_fetch():
    """A fetch touching an error range, or past the end of the image: DRAM_RESPONSE with the
    index of the instruction fetched, the whole block's bytes counted (the DONE after the
    faulting instruction too), nothing of it executed."""
    program = [GOOD_A, GOOD_B, GOOD_ACC, DONE]
    result, _, model = run(program, errors=[(0x100 + 2 * 32 + 31, 0x100 + 2 * 32 + 32)])
    assert (result.error, result.error_index, result.executed) == (AccelError.DRAM_RESPONSE, 2, 2)
    assert result.instructions[-1].opcode is None and not model.acc.any()
    assert result.bytes_read == 4 * 32 + 2 * 4 * 16
    dram = bytearray(0x1100 + 32 * 3)
    place_program(dram, 0x1100, program[:3])
    result = AcceleratorModel(CONFIG).run(dram, 0x1100, 5)
    assert (result.error, result.error_index, result.executed) == (AccelError.DRAM_RESPONSE, 3, 3)
    huge = AccelConfig(engine=ENGINE, addr_width=64)
    result = AcceleratorModel(huge).run(bytearray(64), (1 << 64) - 32, 2)
    assert (result.error, result.error_index) == (AccelError.DRAM_RESPONSE, 0)


def test_done_and_program_length():
    """DONE ends the program (nothing after it runs; the rest of its block is fetched and
    counted); without DONE the program ends after
    PROG_LEN instructions with no error; an empty program and a misaligned base are the
    register block's errors, at index 0, without any bus activity."""
    store_c = store("fp32", 0x2000, 64, 4, 8)
    after = [raw_opcode(0x55)]
    result, dram, _ = run([GOOD_ACC, DONE, store_c] + after, prog_len=4)
    assert (result.error, result.error_index, result.executed) == (AccelError.NONE, None, 2)
    assert result.bytes_read == 4 * 32 + 4 * 32 and result.bytes_written == 0
    assert not any(dram[0x2000:0x2200])
    result, dram, _ = run([GOOD_ACC, store_c, raw_opcode(0x55)], prog_len=2)
    assert (result.error, result.executed) == (AccelError.NONE, 2)
    assert result.bytes_read == 2 * 32 + 4 * 32 and result.bytes_written == 4 * 32
    result, _, _ = run([DONE], prog_len=1)
    assert (result.error, result.executed, result.bytes_read) == (AccelError.NONE, 1, 32)
    for base, length, error in [(0x100, 0, AccelError.EMPTY_PROGRAM),
                                (0x110, 0, AccelError.EMPTY_PROGRAM),
                                (0x110, 3, AccelError.MISALIGNED)]:
        result = AcceleratorModel(CONFIG).run(bytearray(1 << 12), base, length)
        assert (result.error, result.error_index, result.executed, result.bytes_read) == (
            error, 0, 0, 0)


# -- instruction fetch in blocks (module docstring, "Instruction fetch") -----------------------

WIDTHS = [AccelConfig(engine=ENGINE, data_width=width) for width in (64, 256)]


def load_bytes(config) -> int:
    """Bus bytes of GOOD_A: 4 rows of 8 fp16 in whole beats."""
    beat = config.beat_bytes
    return 4 * beats(16, beat) * beat


def fetched(first_unread: int, prog_len: int) -> int:
    """Instruction bytes read once instructions ``[0, first_unread)`` were reached: every
    block they lie in, whole (the last one cut at ``prog_len``)."""
    blocks = -(-first_unread // FETCH_BLOCK)
    return 32 * min(blocks * FETCH_BLOCK, prog_len)


def test_fetch_block_is_a_power_of_two():
    assert isinstance(FETCH_BLOCK, int) and FETCH_BLOCK >= 1
    assert FETCH_BLOCK & (FETCH_BLOCK - 1) == 0, FETCH_BLOCK


@pytest.mark.parametrize("config", WIDTHS, ids=lambda c: f"bus{c.data_width}")
@pytest.mark.parametrize("where", ["first byte", "last byte", "two instructions"])
def test_fetch_error_in_the_middle_of_a_block(config, where):
    """A failing beat faults only the instruction(s) whose bytes it holds, when the program
    reaches the first of them: the instructions of the block before it run, the good ones
    after it in the same block are fetched (counted) but never run."""
    length = 2 * FETCH_BLOCK + 3
    for bad in sorted({FETCH_BLOCK // 2, FETCH_BLOCK + FETCH_BLOCK // 2, length - 2}):
        base = 0x100
        start = base + 32 * bad
        errors = {"first byte": [(start, start + 1)], "last byte": [(start + 31, start + 32)],
                  "two instructions": [(start + 31, start + 33)]}[where]
        dram = bytearray(1 << 15)
        dram[0x1000:0x1100] = bytes(range(1, 256)) + b"\x01"  # GOOD_A's rows: not all zero
        result, _, model = run([GOOD_A] * (length - 1) + [DONE], config=config, base=base,
                               dram=dram, errors=errors)
        print(f"bus {config.data_width}, bad instruction {bad}: {result}")
        assert (result.error, result.error_index, result.executed) == (
            AccelError.DRAM_RESPONSE, bad, bad), (where, bad)
        assert result.instructions[-1].opcode is None
        assert [r.index for r in result.instructions] == list(range(bad + 1))
        assert result.bytes_read == fetched(bad + 1, length) + bad * load_bytes(config)
        assert model.a_bits.any()       # the loads before it ran


@pytest.mark.parametrize("config", WIDTHS, ids=lambda c: f"bus{c.data_width}")
def test_done_in_the_middle_of_a_block(config):
    """DONE ends the program: the rest of its block is fetched and counted but never runs
    (the illegal opcodes after it are no error); the next block is not read (an error range
    there answers nothing)."""
    done_at = FETCH_BLOCK + FETCH_BLOCK // 2
    length = 3 * FETCH_BLOCK
    program = [GOOD_A] * done_at + [DONE] + [raw_opcode(0x55)] * (length - done_at - 1)
    next_block = 0x100 + 32 * 2 * FETCH_BLOCK
    result, _, _ = run(program, config=config, errors=[(next_block, next_block + 32)])
    assert (result.error, result.error_index, result.executed) == (
        AccelError.NONE, None, done_at + 1)
    assert result.bytes_read == 32 * 2 * FETCH_BLOCK + done_at * load_bytes(config)
    assert len(result.instructions) == done_at + 1


@pytest.mark.parametrize("config", WIDTHS, ids=lambda c: f"bus{c.data_width}")
@pytest.mark.parametrize("length", sorted({1, 3, FETCH_BLOCK - 1, FETCH_BLOCK, FETCH_BLOCK + 3,
                                           2 * FETCH_BLOCK + 1}))
def test_blocks_stop_at_the_program_length(config, length):
    """A program shorter than a block, or whose length is not a multiple of the block: the
    last block stops at PROG_LEN (an error range right after the program answers nothing);
    without DONE it ends there with no error."""
    base = 0x1200                        # after GOOD_A's rows, so the image may end here
    end = base + 32 * length
    dram = bytearray(1 << 15)
    result, _, _ = run([GOOD_A] * length, config=config, base=base, dram=dram,
                       errors=[(end, end + 32)])
    assert (result.error, result.executed) == (AccelError.NONE, length), length
    assert result.bytes_read == 32 * length + length * load_bytes(config)
    # the image ends right after the program: the same
    image = bytearray(dram[:end])
    result = AcceleratorModel(config).run(image, base, length)
    assert (result.error, result.executed) == (AccelError.NONE, length), length


@pytest.mark.parametrize("config", WIDTHS, ids=lambda c: f"bus{c.data_width}")
def test_block_across_a_4k_page(config):
    """A block that crosses a 4 KiB boundary (the DMA splits the burst there) reads the same
    instructions; an error on the first beat past the boundary faults the instruction there
    and no other."""
    before = 3                           # instructions below the boundary
    base = 0x2000 - 32 * before
    length = FETCH_BLOCK + before + 1
    program = [GOOD_A] * (length - 1) + [DONE]
    result, _, _ = run(program, config=config, base=base)
    assert (result.error, result.executed) == (AccelError.NONE, length)
    assert result.bytes_read == 32 * length + (length - 1) * load_bytes(config)
    result, _, _ = run(program, config=config, base=base,
                       errors=[(0x2000, 0x2000 + config.beat_bytes)])
    assert (result.error, result.error_index, result.executed) == (
        AccelError.DRAM_RESPONSE, before, before)
    assert result.bytes_read == fetched(before + 1, length) + before * load_bytes(config)


# -- helpers and arguments --------------------------------------------------------------------

def test_helpers_match_the_layout():
    """assemble is the instructions' encode() concatenated; write_matrix / read_matrix lay
    rows out as this test does."""
    rng = rng_for("helpers")
    program = [GOOD_A, gemm_op(3, 4, 5, accumulate=1), DONE]
    assert assemble(program) == b"".join(encode(op, **fields) for op, fields in program)
    for fmt, size in SIZE.items():
        bits = rng.integers(0, 1 << (8 * size), (3, 5), dtype=np.uint64).astype(UINT[size])
        mine = bytearray(rng.bytes(512))
        theirs = bytearray(mine)
        put(mine, 40, 100, bits, size)
        write_matrix(theirs, 40, 100, bits, fmt)
        assert mine == theirs, fmt
        got = read_matrix(memoryview(theirs), 40, 100, 3, 5, fmt)
        assert got.dtype == UINT[size] and np.array_equal(got, bits), fmt


def test_no_amaranth():
    """The golden model imports numpy and sim only."""
    script = ("import sys, sim.accel_model; bad = [m for m in sys.modules if m.split('.')[0] in "
             "('amaranth', 'hw', 'tb', 'scripts', 'cocotb')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("call", [
    lambda: AcceleratorModel(ENGINE),
    lambda: AcceleratorModel(None),
    lambda: AcceleratorModel(CONFIG).run(bytes(64), 0, 1),
    lambda: AcceleratorModel(CONFIG).run(memoryview(bytes(64)), 0, 1),
    lambda: AcceleratorModel(CONFIG).run(memoryview(bytearray(64)).cast("I"), 0, 1),
    lambda: AcceleratorModel(CONFIG).run([0] * 64, 0, 1),
    lambda: AcceleratorModel(CONFIG).run(bytearray(64), -32, 1),
    lambda: AcceleratorModel(CONFIG).run(bytearray(64), 1 << 32, 1),
    lambda: AcceleratorModel(CONFIG).run(bytearray(64), 0, 1 << 32),
    lambda: AcceleratorModel(CONFIG).run(bytearray(64), 0, True),
    lambda: AcceleratorModel(CONFIG).run(bytearray(64), 0, 1, dram_errors=[(8, 4)]),
    lambda: AcceleratorModel(CONFIG).run(bytearray(64), 0, 1, dram_errors=[8]),
    lambda: AcceleratorModel(CONFIG).run(bytearray(64), 0, 1, dram_errors=[(-1, 4)]),
    lambda: assemble([(Opcode.LOAD, {"m": 1})]),
    lambda: assemble([(9, {})]),
    lambda: assemble([Opcode.DONE]),
    lambda: write_matrix(bytearray(64), 0, 8, np.ones((2, 2), dtype=np.float32), "fp32"),
    lambda: write_matrix(bytearray(64), 0, 8, np.full((2, 2), 256), "e4m3"),
    lambda: write_matrix(bytearray(64), 60, 8, np.ones((2, 2), dtype=np.uint8), "e4m3"),
    lambda: write_matrix(bytearray(64), 0, 8, np.ones((2, 2), dtype=np.uint8), "int8"),
    lambda: read_matrix(bytes(64), 0, 8, 2, 2, "fp16"),
    lambda: read_matrix(bytearray(64), 0, 32, 3, 2, "fp16"),
])
def test_bad_arguments(call):
    with pytest.raises(ValueError):
        call()



# -- EPILOGUE ------------------------------------------------------------------------------------
# The ops against numpy float32 arithmetic and ml_dtypes casts on the regions as placed here;
# every check of the instruction with its precedence.

MASK_CONFIG = AccelConfig(engine=dataclasses.replace(ENGINE, output_mask=True))


def epilogue(op, rows, cols, dst_row=0, dst_col=0, **fields):
    return (Opcode.EPILOGUE, dict(op=int(op), rows=rows, cols=cols, dst_row=dst_row,
                                  dst_col=dst_col, **fields))


def as_f32(bits):
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def f32_bits(values):
    """float32 values -> bit patterns, NaN canonical."""
    values = np.asarray(values, dtype=np.float32)
    out = values.view(np.uint32).copy()
    out[np.isnan(values)] = 0x7FC00000
    return out


def acc_contents(rng, rows, cols):
    """FP32 words: ordinary values, the FP32 edges and random bits."""
    words = random_fp32(rng, rows * cols)
    edges = fp32_edges()
    pick = rng.random(rows * cols)
    words = np.where(pick < 0.2, rng.choice(edges, rows * cols), words)
    words = np.where(pick > 0.9, rng.integers(0, 1 << 32, rows * cols, dtype=np.uint64)
                     .astype(np.uint32), words)
    return words.astype(np.uint32).reshape(rows, cols)


def filled_model(rng, config=CONFIG):
    """A model whose whole accumulator memory was loaded with :func:`acc_contents`."""
    engine = config.engine
    contents = acc_contents(rng, engine.acc_rows, engine.acc_width)
    dram = bytearray(1 << 16)
    put(dram, 0x4000, engine.acc_width * 4, contents, 4)
    result, _, model = run([load(Target.ACC, "fp32", 0x4000, engine.acc_width * 4,
                                 engine.acc_rows, engine.acc_width)], config=config, dram=dram)
    assert result.error == AccelError.NONE
    return model, contents


def reference(op, d, s, imm0, imm1, fmt, saturate, keep):
    """The op by numpy float32 arithmetic and ml_dtypes casts, NaN canonical."""
    x, y = as_f32(d), as_f32(s) if s is not None else None
    a, b = np.float32(as_f32(np.uint32(imm0))), np.float32(as_f32(np.uint32(imm1)))
    with np.errstate(all="ignore"):
        if op == EpilogueOp.ADD:
            return f32_bits(x + y)
        if op == EpilogueOp.RELU:
            return np.where(np.isnan(x), np.uint32(0x7FC00000), np.where(x > 0, d, 0))
        if op == EpilogueOp.RELU_BACKWARD:
            return np.where(y > 0, f32_bits(x), np.uint32(0))
        if op == EpilogueOp.SCALE:
            return f32_bits(x * a)
        if op == EpilogueOp.DROPOUT:
            return np.where(keep, f32_bits(x * a), np.uint32(0))
        if op == EpilogueOp.CAST:
            if fmt == "fp32":
                return f32_bits(x)
            narrow = reference_cast(d, fmt, saturate)
            return f32_bits(narrow.view(DTYPES[fmt]).astype(np.float32))
        t = b * x                                       # SGD, in its order
        t = y + t
        t = a * t
        return f32_bits(x - t)


@pytest.mark.parametrize("op", EPILOGUE_ACC_OPS)
def test_epilogue_ops(op):
    """Random regions (broadcast or not, the source the destination itself now and then) and
    immediates: the region as numpy computes it, everything else unchanged; ``RELU`` with
    ``write_mask`` writes its keep bits (``x > 0``) into the host plane at the region."""
    rng = rng_for(f"epilogue {op.name}")
    config = MASK_CONFIG
    engine = config.engine
    immediates = [0x3F800000, 0x3DCCCCCD, 0x3A83126F, 0x80000000, 0x7F800000, 0x7FC00000,
                  0x00000001, 0x7F7FFFFF, 0xC0400000]
    for trial in range(12):
        model, _ = filled_model(rng, config)
        model.keep_host[:] = rng.integers(0, 2, model.keep_host.shape).astype(bool)
        rows, cols = int(rng.integers(1, 9)), int(rng.integers(1, 20))
        dst_row = int(rng.integers(0, 10))
        dst_col = int(rng.integers(0, engine.acc_width - cols + 1))
        fields = dict(imm0=int(rng.choice(immediates)), imm1=int(rng.choice(immediates)),
                      broadcast=int(rng.random() < 0.4), saturate=int(rng.integers(2)),
                      cast_format=code(str(rng.choice(engine.out_formats))),
                      seed=int(rng.integers(1, 1 << 32)), threshold=int(rng.integers(0, 257)),
                      write_mask=int(op == EpilogueOp.RELU and trial % 2))
        height = 1 if fields["broadcast"] else rows
        same = trial % 4 == 3 and not fields["broadcast"]
        src_row = dst_row if same else 20 + int(rng.integers(0, engine.acc_rows - 20 - height + 1))
        src_col = dst_col if same else int(rng.integers(0, engine.acc_width - cols + 1))
        before, plane = model.acc.copy(), model.keep_host.copy()
        instruction = epilogue(op, rows, cols, dst_row, dst_col, src_row=src_row,
                               src_col=src_col, **fields)
        result, _, _ = run([instruction], config=config, model=model)
        assert result.error == AccelError.NONE and result.bytes_read == 32, result
        region = (slice(dst_row, dst_row + rows), slice(dst_col, dst_col + cols))
        src = np.broadcast_to(before[src_row:src_row + height, src_col:src_col + cols],
                              (rows, cols))
        keep = dropout_keep_mask((rows, cols), seed=fields["seed"],
                                 threshold=fields["threshold"]) \
            if 0 < fields["threshold"] < 256 else np.full((rows, cols), fields["threshold"] == 0)
        want = before.copy()
        want[region] = reference(op, before[region], src, fields["imm0"], fields["imm1"],
                                 FORMAT_BITS[fields["cast_format"]], bool(fields["saturate"]),
                                 keep)
        assert_bits(model.acc, want, f"{op.name} {instruction[1]}", dst=before[region], src=src)
        want_plane = plane.copy()
        if fields["write_mask"]:
            want_plane[region] = as_f32(before[region]) > 0
        assert np.array_equal(model.keep_host, want_plane)


def test_epilogue_relu_mask_gates_a_later_gemm():
    """The keep bits RELU writes are the host plane a GEMM with ``mask_host`` at the same
    region reads: the backward-data outputs of the non-positive activations are +0."""
    rng = rng_for("epilogue relu mask")
    config = MASK_CONFIG
    m, n, k = 5, 6, 4
    a, b = random_operands(rng, "fp16", (m, k)), random_operands(rng, "fp16", (k, n))
    act = random_fp32(rng, m * n).reshape(m, n)
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a, 2)
    put(dram, 0x2000, 64, b, 2)
    put(dram, 0x3000, 64, act, 4)
    program = [load(Target.ACC, "fp32", 0x3000, 64, m, n, mem_row=3, mem_col=2),
               epilogue(EpilogueOp.RELU, m, n, 3, 2, write_mask=1),
               load(Target.A, "fp16", 0x1000, 64, m, k), load(Target.B, "fp16", 0x2000, 64, k, n),
               gemm_op(m, n, k, c_row=3, c_col=2, mask_host=1),
               store("fp32", 0x4000, 64, m, n, mem_row=3, mem_col=2)]
    result, dram, _ = run(program, config=config, dram=dram)
    assert result.error == AccelError.NONE
    want = np.where(as_f32(act) > 0, gemm(a, b), 0).astype(np.uint32)
    assert_bits(get(dram, 0x4000, 64, m, n, 4), want, "masked C", act=act)


def test_dropout_plane_gates_a_later_gemm():
    """DROPOUT_PLANE writes the dropout plane at its region with DROPOUT's mask of the same seed
    and threshold and leaves the accumulators alone; a GEMM with ``mask_dropout`` over the
    region then writes +0 where the mask drops (bias included), its exact sums elsewhere;
    without output masks, and with DROPOUT's bad seeds, thresholds and row lengths, the
    instruction is BAD_FIELD."""
    rng = rng_for("dropout plane")
    m, n, k = 6, 7, 5
    a, b = random_operands(rng, "fp16", (m, k)), random_operands(rng, "fp16", (k, n))
    bias = random_fp32(rng, n).reshape(1, n)
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a, 2)
    put(dram, 0x2000, 64, b, 2)
    put(dram, 0x3000, 64, bias, 4)
    for threshold in (0, 1, 100, 255, 256):
        seed = int(rng.integers(1, 1 << 32))
        program = [load(Target.A, "fp16", 0x1000, 64, m, k),
                   load(Target.B, "fp16", 0x2000, 64, k, n),
                   load(Target.ACC, "fp32", 0x3000, 0, m, n, mem_row=2, mem_col=1),
                   epilogue(EpilogueOp.DROPOUT_PLANE, m, n, 2, 1, seed=seed,
                            threshold=threshold),
                   gemm_op(m, n, k, c_row=2, c_col=1, accumulate=1, mask_dropout=1),
                   store("fp32", 0x4000, 64, m, n, mem_row=2, mem_col=1)]
        result, out, model = run(program, config=MASK_CONFIG, dram=bytearray(dram))
        assert result.error == AccelError.NONE, result
        keep = dropout_keep(m, n, seed, threshold)
        assert np.array_equal(model.keep_dropout[2:2 + m, 1:1 + n], keep)
        assert not model.keep_dropout[:2].any() and not model.keep_dropout[:, :1].any()
        dense = gemm(a, b, c_bits=np.broadcast_to(bias, (m, n)).astype(np.uint32))
        want = np.where(keep, dense, 0).astype(np.uint32)
        assert_bits(get(out, 0x4000, 64, m, n, 4), want, f"threshold {threshold}", seed=seed)
    plane = epilogue(EpilogueOp.DROPOUT_PLANE, 2, 2, 0, 0, seed=1, threshold=10)
    assert run([plane])[0].error == AccelError.BAD_FIELD            # no output masks
    for bad in (dict(seed=0), dict(threshold=257)):
        bad_plane = (plane[0], {**plane[1], **bad})
        assert run([bad_plane], config=MASK_CONFIG)[0].error == AccelError.BAD_FIELD, bad
    assert run([epilogue(EpilogueOp.DROPOUT_PLANE, 2, 2, MASK_CONFIG.engine.acc_rows - 1, 0,
                         seed=1, threshold=10)], config=MASK_CONFIG)[0].error == \
        AccelError.SPAD_OVERFLOW


def test_epilogue_layer_forward():
    """GEMM, bias add (broadcast), ReLU, cast to fp16 in place, STORE fp16: numpy's float32
    computation of the same layer."""
    rng = rng_for("epilogue layer")
    m, n, k = 7, 9, 6
    a, b = small_integers(rng, (m, k)), small_integers(rng, (k, n))
    bias = random_fp32(rng, n).reshape(1, n)
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, a, 2)
    put(dram, 0x2000, 64, b, 2)
    put(dram, 0x3000, 64, bias, 4)
    program = [load(Target.A, "fp16", 0x1000, 64, m, k), load(Target.B, "fp16", 0x2000, 64, k, n),
               load(Target.ACC, "fp32", 0x3000, 64, 1, n, mem_row=30),
               gemm_op(m, n, k),
               epilogue(EpilogueOp.ADD, m, n, broadcast=1, src_row=30),
               epilogue(EpilogueOp.RELU, m, n),
               epilogue(EpilogueOp.CAST, m, n, cast_format=code("fp16")),
               store("fp16", 0x4000, 64, m, n), DONE]
    result, dram, _ = run(program, dram=dram)
    assert result.error == AccelError.NONE and result.executed == len(program)
    x = (a.view(np.float16).astype(np.float64) @ b.view(np.float16).astype(np.float64))
    with np.errstate(all="ignore"):
        y = np.maximum(x.astype(np.float32) + as_f32(bias), np.float32(0))
        want = y.astype(np.float16).view(np.uint16)
    assert_bits(get(dram, 0x4000, 64, m, n, 2), want, "layer", bias=bias)


def test_epilogue_sgd_updates_master_and_operand_copy():
    """SGD on FP32 masters, then the operand copy by a STORE in fp16 and a LOAD into B: the
    weights a next GEMM uses are the updated masters rounded once."""
    rng = rng_for("epilogue sgd")
    rows, cols = 4, 6
    w, dw = random_fp32(rng, rows * cols).reshape(rows, cols), \
        random_fp32(rng, rows * cols).reshape(rows, cols)
    lr, wd = np.float32(0.01), np.float32(1e-4)
    dram = bytearray(1 << 15)
    put(dram, 0x1000, 64, w, 4)
    put(dram, 0x2000, 64, dw, 4)
    program = [load(Target.ACC, "fp32", 0x1000, 64, rows, cols, mem_row=0),
               load(Target.ACC, "fp32", 0x2000, 64, rows, cols, mem_row=8),
               epilogue(EpilogueOp.SGD, rows, cols, src_row=8,
                        imm0=int(lr.view(np.uint32)), imm1=int(wd.view(np.uint32))),
               store("fp32", 0x3000, 64, rows, cols), store("fp16", 0x5000, 64, rows, cols),
               load(Target.B, "fp16", 0x5000, 64, rows, cols)]
    result, dram, model = run(program, dram=dram)
    assert result.error == AccelError.NONE
    x, g = as_f32(w), as_f32(dw)
    with np.errstate(all="ignore"):
        master = f32_bits(x - lr * (g + wd * x))
    assert_bits(get(dram, 0x3000, 64, rows, cols, 4), master, "master", w=w, dw=dw)
    assert_bits(model.b_bits[:rows, :cols], reference_cast(master, "fp16", False), "copy")


def test_epilogue_overlap_rule():
    """A source region that overlaps the destination without being it is BAD_FIELD for the ops
    with a source; the same region, a region just beside it and the ops without a source run."""
    f = dict(rows=3, cols=4, dst_row=5, dst_col=6)
    for op in EPILOGUE_ACC_OPS:
        source = op in EPILOGUE_SOURCE_OPS
        for src, broadcast, overlaps in [((5, 6), 0, False), ((7, 9), 0, True), ((8, 6), 0, False),
                                         ((5, 10), 0, False), ((3, 3), 0, True),
                                         ((5, 6), 1, True), ((7, 6), 1, True), ((8, 6), 1, False),
                                         ((4, 6), 1, False), ((6, 2), 1, False)]:
            fields = dict(f, op=int(op), src_row=src[0], src_col=src[1], broadcast=broadcast,
                          cast_format=code("fp16"), seed=1)
            want = AccelError.BAD_FIELD if source and overlaps else AccelError.NONE
            assert instruction_error(CONFIG, Opcode.EPILOGUE, {**dict.fromkeys(
                EPILOGUE_FIELDS, 0), **fields}) == want, (op.name, src, broadcast)


GOOD_EPILOGUE = dict(op=int(EpilogueOp.ADD), rows=3, cols=5, dst_row=2, dst_col=1, src_row=10,
                     src_col=4, seed=7, threshold=64, cast_format=code("fp16"))


def bad_epilogue(**changes):
    return (Opcode.EPILOGUE, {**GOOD_EPILOGUE, **changes})


EPILOGUE_ERRORS = [
    ("op 7", CONFIG, bad_epilogue(op=7), AccelError.BAD_FIELD),
    ("op 15 with overflow", CONFIG, bad_epilogue(op=15, dst_row=40), AccelError.BAD_FIELD),
    ("cast to fp32 missing", AccelConfig(engine=dataclasses.replace(ENGINE, out_formats=(
        "fp16", "e4m3"))), bad_epilogue(op=int(EpilogueOp.CAST), cast_format=code("fp32")),
     AccelError.BAD_FIELD),
    ("cast format 6", CONFIG, bad_epilogue(op=int(EpilogueOp.CAST), cast_format=6),
     AccelError.BAD_FIELD),
    ("scale without fp32 reads", AccelConfig(engine=dataclasses.replace(ENGINE, out_formats=(
        "fp16",))), bad_epilogue(op=int(EpilogueOp.SCALE)), AccelError.BAD_FIELD),
    ("cast without fp32 reads", AccelConfig(engine=dataclasses.replace(ENGINE, out_formats=(
        "fp16",))), bad_epilogue(op=int(EpilogueOp.CAST)), AccelError.NONE),
    ("rows 0", CONFIG, bad_epilogue(rows=0), AccelError.BAD_FIELD),
    ("cols 0", CONFIG, bad_epilogue(cols=0, dst_col=40), AccelError.BAD_FIELD),
    ("write_mask without output_mask", CONFIG,
     bad_epilogue(op=int(EpilogueOp.RELU), write_mask=1), AccelError.BAD_FIELD),
    ("write_mask on ADD", MASK_CONFIG, bad_epilogue(write_mask=1), AccelError.BAD_FIELD),
    ("write_mask on RELU", MASK_CONFIG, bad_epilogue(op=int(EpilogueOp.RELU), write_mask=1),
     AccelError.NONE),
    ("dropout seed 0", CONFIG, bad_epilogue(op=int(EpilogueOp.DROPOUT), seed=0),
     AccelError.BAD_FIELD),
    ("dropout threshold 257", CONFIG, bad_epilogue(op=int(EpilogueOp.DROPOUT), threshold=257),
     AccelError.BAD_FIELD),
    ("dropout threshold 256", CONFIG, bad_epilogue(op=int(EpilogueOp.DROPOUT), threshold=256),
     AccelError.NONE),
    ("scale seed 0", CONFIG, bad_epilogue(op=int(EpilogueOp.SCALE), seed=0), AccelError.NONE),
    ("dst rows out", CONFIG, bad_epilogue(dst_row=34), AccelError.SPAD_OVERFLOW),
    ("dst cols out", CONFIG, bad_epilogue(dst_col=28), AccelError.SPAD_OVERFLOW),
    ("dst sum past 16 bits", CONFIG, bad_epilogue(dst_row=0xFFFF), AccelError.SPAD_OVERFLOW),
    ("src rows out", CONFIG, bad_epilogue(src_row=34), AccelError.SPAD_OVERFLOW),
    ("src row out broadcast", CONFIG, bad_epilogue(src_row=36, broadcast=1),
     AccelError.SPAD_OVERFLOW),
    ("src row last broadcast", CONFIG, bad_epilogue(src_row=35, broadcast=1), AccelError.NONE),
    ("src cols out", CONFIG, bad_epilogue(src_col=28), AccelError.SPAD_OVERFLOW),
    ("src ignored by RELU", CONFIG, bad_epilogue(op=int(EpilogueOp.RELU), src_row=0xFFFF),
     AccelError.NONE),
    ("overlap before overflow", CONFIG, bad_epilogue(src_row=3, src_col=31, dst_col=30),
     AccelError.BAD_FIELD),
]


@pytest.mark.parametrize("case", EPILOGUE_ERRORS, ids=[case[0] for case in EPILOGUE_ERRORS])
def test_epilogue_errors(case):
    """Each check with its precedence; a rejected EPILOGUE changes no memory and stops the
    program at its index."""
    name, config, instruction, error = case
    rng = rng_for(f"epilogue error {name}")
    model, _ = filled_model(rng, config)
    before = model.acc.copy()
    assert instruction_error(config, Opcode.EPILOGUE, {**dict.fromkeys(EPILOGUE_FIELDS, 0),
                                                       **instruction[1]}) == error
    result, _, _ = run([instruction, DONE], config=config, model=model)
    assert result.error == error, result
    if error != AccelError.NONE:
        assert result.error_index == 0 and result.executed == 0
        assert np.array_equal(model.acc, before)
