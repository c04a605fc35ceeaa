"""The host driver (sim.accel_driver) on its golden-model back end (sim.accel_model_backend),
without a simulator: discover() against the configuration, compiled GEMM programs (bit for bit
against sim.gemm), the register sequence (IRQ or polling), errors with their index, DRAM
error ranges, soft reset, start while busy, the emulated register block's bus rules, and bad
arguments."""

import asyncio
import dataclasses
import math
import os

import numpy as np
import pytest

from sim.accel_driver import (AcceleratorDriver, AcceleratorNotFound, AcceleratorTimeout,
                              BusError, ProgramError)
from sim.accel_model import AcceleratorModel, assemble
from sim.accel_model_backend import ModelBackend
from sim.accel_spec import (ACCEL_ID, COUNTERS, FORMAT_BITS, VERSION, AccelError, Ctrl, Feature,
                            Opcode, Reg, Resp, Target, counter_offset)
from sim.compiler import compile_gemms
from sim.config import AccelConfig, ArrayConfig, EngineConfig
from sim.gemm import gemm
from tb.engine_api import random_gemms

#: SPARTA_SEED reruns a case (make regress sets a random one)
SEED = int(os.environ.get("SPARTA_SEED", "1"))

SMALL = EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=32, b_rows=32,
                     acc_width=32, acc_rows=32)
CONFIGS = {
    "default": AccelConfig(),
    "ws": AccelConfig(engine=EngineConfig(array=ArrayConfig(dataflow="ws", a_formats=("fp16",),
                                                            b_formats=("fp16",),
                                                            psum_stages=3))),
    "interleaved": AccelConfig(engine=EngineConfig(array=ArrayConfig(mul_stages=3,
                                                                     acc_interleave=5))),
    "small-128-a64": AccelConfig(engine=SMALL, data_width=128, addr_width=64),
    "fp8-skip": AccelConfig(
        engine=EngineConfig(array=ArrayConfig(rows=5, cols=3, mul_stages=2,
                                              a_formats=("e4m3",), b_formats=("e4m3", "e5m2"),
                                              skip_zeros=True, skip_window=2),
                            spad_width=64, a_rows=300, b_rows=100, acc_width=32, acc_rows=1000,
                            out_formats=("fp32", "bf16"), output_mask=True),
        data_width=256, reads_outstanding=7),
}
DRAM = 1 << 16


def run(coroutine):
    return asyncio.run(coroutine)


def _driver(config, **kwargs):
    return AcceleratorDriver(ModelBackend(config, DRAM, **kwargs))


def _bits(n: int) -> int:
    return 0 if n == 1 else math.ceil(math.log2(n))


@pytest.mark.parametrize("name", CONFIGS)
def test_discover_describes_the_configuration(name):
    config = CONFIGS[name]
    info = run(_driver(config).discover())
    engine, array = config.engine, config.engine.array
    assert info.version == VERSION
    assert dataclasses.astuple(info.array) == (array.rows, array.cols, array.dataflow,
                                               array.mul_stages, array.skip_window,
                                               array.acc_interleave, array.psum_stages)
    assert (set(info.formats.a), set(info.formats.b), set(info.formats.out)) == (
        set(array.a_formats), set(array.b_formats), set(engine.out_formats))
    assert dataclasses.astuple(info.memory) == (
        _bits(max(engine.a_rows, engine.b_rows)), _bits(engine.spad_width),
        _bits(engine.acc_rows), _bits(engine.acc_width))
    assert info.memory.acc_rows_max >= engine.acc_rows > info.memory.acc_rows_max // 2
    assert (info.bus.data_width, info.bus.addr_bits, info.bus.reads_outstanding) == (
        config.data_width, config.addr_width, config.reads_outstanding)
    assert bool(info.features & Feature.SKIP_ZEROS) == (array.skip_window >= 2)
    assert bool(info.features & Feature.OUTPUT_MASK) == engine.output_mask
    assert bool(info.features & Feature.FGMP) == (len(array.a_formats) > 1
                                                  or len(array.b_formats) > 1)


class _Impostor(ModelBackend):
    """A model back end whose ID or VERSION reads something else."""

    def __init__(self, *args, words, **kwargs):
        super().__init__(*args, **kwargs)
        self.words = words

    async def read_csr(self, offset):
        if offset in self.words:
            return self.words[offset], Resp.OKAY
        return await super().read_csr(offset)


@pytest.mark.parametrize("words, match", [
    ({Reg.ID: 0xDEADBEEF}, "ID register reads 0xdeadbeef, not 0x53505254"),
    ({Reg.ID: 0}, "no Sparta accelerator"),
    ({Reg.VERSION: (VERSION[0] + 1) << 16}, f"speaks major version {VERSION[0]}"),
])
def test_discover_rejects_another_device(words, match):
    driver = AcceleratorDriver(_Impostor(AccelConfig(), DRAM, words=words))
    with pytest.raises(AcceleratorNotFound, match=match):
        run(driver.discover())
    assert ACCEL_ID == int.from_bytes(b"SPRT", "big")


@pytest.mark.parametrize("irq", [True, False], ids=["irq", "polled"])
@pytest.mark.parametrize("name", ["default", "small-128-a64"])
def test_compiled_gemms_through_the_driver(name, irq):
    config = CONFIGS[name]
    rng = np.random.default_rng([SEED, sum(map(ord, name)), irq])
    print(f"seed {SEED} (SPARTA_SEED)")
    gemms = random_gemms(rng, config.engine, 3, 40)
    compiled = compile_gemms(config, gemms, base=0x100)
    driver = _driver(config)

    async def host():
        await driver.discover()
        await driver.load_image(compiled.image)
        first = await driver.run(compiled.prog_base, compiled.prog_len, irq=irq)
        second = await driver.run(compiled.prog_base, compiled.prog_len, irq=irq)
        return first, second, await driver.read_dram(0, DRAM), await driver.status()

    first, second, dram, status = run(host())
    for result in (first, second):
        assert result.ok and result.irq == irq and result.cycles_waited is None
        assert (result.counters["bytes_read"], result.counters["bytes_written"]) == (
            compiled.bytes_read, compiled.bytes_written)
        # a dense engine computes every product
        assert not config.engine.array.skip_zeros and result.counters["products_skipped"] == 0
        assert all(result.counters[name] is None for name in COUNTERS
                   if name not in ("bytes_read", "bytes_written", "products_skipped"))
        result.raise_for_error()
    assert not status.irq_pending and status.irq_enabled == irq and status.done
    for index, g in enumerate(gemms):
        want = gemm(g.a_bits, g.b_bits, a_fmt=g.a_tags, b_fmt=g.b_tags, c_bits=g.c_bits,
                    transpose_a=g.transpose_a, transpose_b=g.transpose_b)
        got = compiled.output_bits(bytearray(dram), index)
        assert (got == want).all(), f"GEMM {index}: {np.argwhere(got != want)[:4]}"
    # the same program on the model directly leaves the same DRAM
    direct = bytearray(DRAM)
    direct[:len(compiled.image)] = compiled.image
    AcceleratorModel(config).run(direct, compiled.prog_base, compiled.prog_len)
    assert dram == bytes(direct)


FP16, FP32 = FORMAT_BITS.index("fp16"), FORMAT_BITS.index("fp32")
LOAD = dict(target=Target.A, dram_format=FP16, operand_format=FP16, dram_stride=64,
            dram_addr=0x1000, rows=2, cols=4)
STORE = dict(target=Target.ACC, dram_format=FP32, dram_stride=64, dram_addr=0x3000, rows=2,
             cols=2)
GOOD = [(Opcode.LOAD, LOAD), (Opcode.LOAD, {**LOAD, "target": Target.B}),
        (Opcode.GEMM, dict(m=2, n=2, k=2)), (Opcode.STORE, STORE)]


@pytest.mark.parametrize("last, errors, error", [
    ((Opcode.LOAD, {**LOAD, "dram_addr": 0x1004}), (), AccelError.MISALIGNED),
    ((Opcode.LOAD, {**LOAD, "mem_row": 31}), (), AccelError.SPAD_OVERFLOW),
    ((Opcode.GEMM, dict(m=2, n=2, k=0)), (), AccelError.BAD_FIELD),
    ((Opcode.LOAD, {**LOAD, "dram_addr": DRAM - 64}), (), AccelError.DRAM_RESPONSE),
    ((Opcode.STORE, {**STORE, "dram_addr": 0x8000}), [(0x8040, 0x8048)],
     AccelError.DRAM_RESPONSE),
], ids=["misaligned", "spad-overflow", "bad-field", "past-the-end", "error-range"])
def test_errors_report_their_instruction(last, errors, error):
    config = CONFIGS["small-128-a64"]
    driver = _driver(config, dram_errors=errors)
    program = assemble(GOOD + [last])

    async def host():
        await driver.write_dram(0x1000, np.ones(64, np.float16).tobytes())
        await driver.write_dram(0x2000, program)
        result = await driver.run(0x2000, len(GOOD) + 1)
        return result, await driver.status(), await driver.read_dram(0x8000, 0x80)

    result, status, stored = run(host())
    assert (result.done, result.error, result.error_index) == (True, error, len(GOOD))
    assert (status.error, status.error_index, status.irq_pending) == (error, len(GOOD), False)
    with pytest.raises(ProgramError, match=f"{error.name} at instruction {len(GOOD)}"):
        result.raise_for_error()
    if errors:      # the faulting store wrote its first row, not the second
        assert stored[:8] != bytes(8) and stored[0x40:0x48] == bytes(8)


def test_illegal_opcode_and_start_errors():
    config = CONFIGS["default"]
    driver = _driver(config)
    illegal = bytes([0x42]) + bytes(31)

    async def host():
        await driver.write_dram(0x2000, assemble(GOOD) + illegal)
        await driver.write_dram(DRAM - 32, assemble(GOOD[:1]))      # the second fetch fails
        results = [await driver.run(0x2000, len(GOOD) + 1), await driver.run(0x2000, 0),
                   await driver.run(0x2010, 3), await driver.run(DRAM - 32, 2)]
        return results

    got = [(r.error, r.error_index) for r in run(host())]
    assert got == [(AccelError.ILLEGAL_OPCODE, len(GOOD)), (AccelError.EMPTY_PROGRAM, 0),
                   (AccelError.MISALIGNED, 0), (AccelError.DRAM_RESPONSE, 1)]


def test_soft_reset_and_start_while_busy():
    config = CONFIGS["default"]
    driver = _driver(config)
    image = bytearray(np.random.default_rng(SEED).integers(0, 256, DRAM, np.uint8).tobytes())
    image[0x2000:0x2000 + 160] = assemble(GOOD + [(Opcode.DONE, {})])

    async def host():
        await driver.load_image(image)
        await driver.start(0x2000, 5)
        busy = await driver.status()
        after_reset = await driver.soft_reset()
        untouched = await driver.read_dram(0, DRAM)
        await driver.start(0x2000, 5)
        await driver.write_csr(Reg.CTRL, Ctrl.START | Ctrl.IRQ_ENABLE)
        twice = await driver.wait()
        return busy, after_reset, untouched, twice, await driver.read_dram(0, DRAM)

    busy, after_reset, untouched, twice, dram = run(host())
    assert busy.busy and not busy.done
    assert not (after_reset.busy or after_reset.done or after_reset.irq_pending)
    assert after_reset.irq_enabled and after_reset.error is AccelError.NONE
    assert untouched == bytes(image), "a soft reset before the wait runs nothing of the program"
    assert (twice.done, twice.error, twice.error_index) == (True, AccelError.START_WHILE_BUSY, 0)
    want = bytearray(image)
    AcceleratorModel(config).run(want, 0x2000, 5)
    assert dram == bytes(want), "the program went on after the start while busy"


def test_waiting_without_the_irq_times_out():
    driver = _driver(CONFIGS["default"])

    async def host():
        await driver.write_dram(0x2000, assemble(GOOD))
        await driver.start(0x2000, len(GOOD), irq=False)
        await driver.wait(irq=True, timeout_cycles=100)

    with pytest.raises(AcceleratorTimeout, match="no IRQ within 100 cycles; STATUS busy 0 "
                                                 "done 1 error NONE"):
        run(host())


@pytest.mark.parametrize("name", ["default", "small-128-a64"])
def test_register_block_rules(name):
    config = CONFIGS[name]
    driver = _driver(config)
    backend = driver.backend

    async def host():
        out = {}
        for reg in (Reg.STATUS, Reg.CAP_BUS, counter_offset("cycles") + 4):
            out[f"write {reg:#x}"] = await backend.write_csr(reg, 1)
        out["unmapped read"] = await backend.read_csr(0x1C)
        out["alias"] = await backend.read_csr(0x100 + Reg.ID + 2)
        await driver.write_csr(Reg.PROG_BASE_LO, 0x11223344)
        await driver.write_csr(Reg.PROG_BASE_LO, 0xFFAABBFF, 0b0110)   # bytes 1 and 2
        out["lo"] = await driver.read_csr(Reg.PROG_BASE_LO)
        await driver.write_csr(Reg.PROG_BASE_HI, 0x5)
        out["hi"] = await driver.read_csr(Reg.PROG_BASE_HI)
        await driver.write_csr(Reg.CTRL, Ctrl.IRQ_ENABLE, 0b0010)
        out["ctrl without byte 0"] = await driver.read_csr(Reg.CTRL)
        return out

    out = run(host())
    assert all(out[f"write {reg:#x}"] == Resp.SLVERR
               for reg in (Reg.STATUS, Reg.CAP_BUS, counter_offset("cycles") + 4))
    assert out["unmapped read"] == (0, Resp.SLVERR)
    assert out["alias"] == (ACCEL_ID, Resp.OKAY)
    assert out["lo"] == 0x11AABB44
    assert out["hi"] == (0x5 if config.addr_width > 32 else 0)
    assert out["ctrl without byte 0"] == 0
    with pytest.raises(BusError, match=r"read of register 0x1c answered SLVERR"):
        run(driver.read_csr(0x1C))
    with pytest.raises(BusError, match=r"write to register STATUS \(0x24\) answered SLVERR"):
        run(driver.write_csr(Reg.STATUS, 0))


def test_bad_arguments():
    config = CONFIGS["default"]
    driver = _driver(config)
    run(driver.discover())
    with pytest.raises(ValueError, match=r"prog_base must be an integer in 0\.\.4294967295"):
        run(driver.start(1 << 32, 1))
    with pytest.raises(ValueError, match="prog_len must be an integer"):
        run(driver.start(0, -1))
    with pytest.raises(ValueError, match="strobe must be a contiguous run"):
        run(driver.write_csr(Reg.PROG_LEN, 1, 0b0101))
    with pytest.raises(ValueError, match="offset must be an integer in 0..255"):
        run(driver.read_csr(0x100))
    with pytest.raises(ValueError, match="DRAM bytes 0xffff..0x10001 are outside"):
        run(driver.write_dram(DRAM - 1, b"ab"))
    with pytest.raises(ValueError, match="dram_size must be an integer in 1..4294967296"):
        ModelBackend(config, 0)
    with pytest.raises(ValueError, match="dram_errors must hold"):
        ModelBackend(config, DRAM, dram_errors=[5])
    with pytest.raises(ValueError, match="config must be an AccelConfig"):
        ModelBackend(config.engine, DRAM)
    with pytest.raises(ValueError, match=r"Backend protocol; object has no read_csr\(\)"):
        AcceleratorDriver(object())
