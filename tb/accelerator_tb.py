"""Bench: the whole accelerator (``hw.accel.accelerator.Accelerator``) running compiled GEMM
programs from DRAM, against the golden model of programs.

* DRAM: cocotbext-axi's ``AxiRam`` on ``m_axi`` (random pauses on all five channels), loaded
  with the image :func:`sim.compiler.compile_gemms` made;
* host: cocotbext-axi's ``AxiLiteMaster`` on ``s_axil`` (random pauses): it writes
  ``PROG_BASE``, ``PROG_LEN`` and ``CTRL`` (start, IRQ enable) and waits for ``irq`` (watchdog);
* check: the whole DRAM image after the run equals :class:`sim.accel_model.AcceleratorModel`'s
  after the same program, byte for byte; ``STATUS`` (done, no error), the byte counters equal
  the model's and the compiler's prediction; ``IRQ`` clears on write-1; then the next program
  runs on the same hardware (state carried over, as in the model).
"""

import logging
import warnings

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer, with_timeout

from sim.accel_model import AcceleratorModel
from sim.accel_spec import COUNTERS, AccelError, Ctrl, Reg, counter_offset
from sim.compiler import compile_gemms
from sim.config import accel_config_from
from tb.engine_api import workload_gemm
from tb.harness import PERIOD_NS, case, make_rng, record_metrics, reset

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam  # noqa: E402

#: longest program the bench waits for (a watchdog: a hang fails the test)
WATCHDOG_US = 2_000


def _pauses(rng, probability):
    while True:
        yield bool(rng.random() < probability)


def _gemms(rng, config, count, largest):
    formats = [f for f in ("fp16", "e4m3", "e5m2") if f in config.engine.array.a_formats
               and f in config.engine.array.b_formats]
    out = []
    for _ in range(count):
        m, n, k = (int(v) for v in rng.integers(1, largest + 1, 3))
        ta, tb = bool(rng.integers(2)), bool(rng.integers(2))
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        a[rng.random(a.shape) < 0.2] = 0.0
        c = rng.standard_normal((m, n)).astype(np.float32) if rng.integers(2) else None
        out.append(workload_gemm(a, b, c, a_format=str(rng.choice(formats)),
                                 b_format=str(rng.choice(formats)), transpose_a=ta,
                                 transpose_b=tb))
    return out


def _fixed(rng, m, n, k, ta, tb, accumulate, fa, fb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32) if accumulate else None
    return workload_gemm(a, b, c, a_format=fa, b_format=fb, transpose_a=ta, transpose_b=tb)


class Host:
    def __init__(self, dut, rng, size, pause):
        self.dut = dut
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=size)
        self.host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        for name in ("m_axi_", "s_axil_"):
            logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
        if pause:
            read_if, write_if = self.ram.read_if, self.ram.write_if
            for channel in (read_if.ar_channel, read_if.r_channel, write_if.aw_channel,
                            write_if.w_channel, write_if.b_channel,
                            self.host.write_if.aw_channel, self.host.write_if.w_channel,
                            self.host.write_if.b_channel, self.host.read_if.ar_channel,
                            self.host.read_if.r_channel):
                channel.set_pause_generator(_pauses(rng, pause))

    async def write(self, reg, value):
        response = await self.host.write(int(reg), int(value).to_bytes(4, "little"))
        assert int(response.resp) == 0, f"write {reg:#x}: response {int(response.resp)}"

    async def read(self, reg) -> int:
        response = await self.host.read(int(reg), 4)
        assert int(response.resp) == 0, f"read {reg:#x}: response {int(response.resp)}"
        return int.from_bytes(response.data, "little")

    async def counter(self, name) -> int:
        low = await self.read(counter_offset(name))
        return low | (await self.read(counter_offset(name) + 4)) << 32

    async def run(self, base, length, what):
        await self.write(Reg.PROG_BASE_LO, base & 0xFFFFFFFF)
        await self.write(Reg.PROG_LEN, length)
        await self.write(Reg.CTRL, Ctrl.START | Ctrl.IRQ_ENABLE)
        began = cocotb.utils.get_sim_time("ns")
        if not self.dut.irq.value:
            await with_timeout(RisingEdge(self.dut.irq), WATCHDOG_US, "us")
        cycles = (cocotb.utils.get_sim_time("ns") - began) // PERIOD_NS
        self.dut._log.info("%s: IRQ after %d cycles", what, cycles)
        return cycles


@cocotb.test()
async def compiled_gemms_from_dram(dut):
    data = case()
    config = accel_config_from(data["config"])
    rng = make_rng(dut)
    dut.rst.value = 1
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    await FallingEdge(dut.clk)
    if "fixed" in data:          # a given list of GEMMs (m, n, k, ta, tb, accumulate, fa, fb)
        programs = [[_fixed(rng, *spec) for spec in data["fixed"]]]
    else:
        programs = [_gemms(rng, config, data["gemms"], data["largest"])
                    for _ in range(data["programs"])]
    compiled, base = [], 0
    for gemms in programs:
        c = compile_gemms(config, gemms, base=base)
        compiled.append(c)
        base = -(-len(c.image) // 4096) * 4096          # the next image on a 4 KiB page
    size = 1 << max(12, (base - 1).bit_length())
    image = bytearray(size)
    for c in compiled:
        image[c.prog_base:len(c.image)] = c.image[c.prog_base:]
    host = Host(dut, rng, size, data["pause"])
    host.ram.write(0, bytes(image))
    await reset(dut)
    model = AcceleratorModel(config)
    expected = bytearray(image)
    for index, (c, gemms) in enumerate(zip(compiled, programs)):
        what = f"program {index} ({len(gemms)} GEMMs, {c.prog_len} instructions)"
        result = model.run(expected, c.prog_base, c.prog_len)
        assert result.error is AccelError.NONE, f"{what}: the model stops with {result.error}"
        before = {name: await host.counter(name) for name in ("bytes_read", "bytes_written")}
        await host.run(c.prog_base, c.prog_len, what)
        status = await host.read(Reg.STATUS)
        code = (status >> 8) & 0xFF
        assert status & 0b110 == 0b010, (f"{what}: STATUS {status:#x} (done {status >> 1 & 1}, "
                                         f"error {status >> 2 & 1}, code {code}, index "
                                         f"{await host.read(Reg.ERROR_INDEX)})")
        moved = {name: await host.counter(name) for name in ("bytes_read", "bytes_written")}
        assert (moved["bytes_read"], moved["bytes_written"]) == (
            result.bytes_read, result.bytes_written) == (c.bytes_read, c.bytes_written), \
            f"{what}: bus bytes {moved} (before the reads {before}), model " \
            f"{result.bytes_read}/{result.bytes_written}, compiler {c.bytes_read}/{c.bytes_written}"
        got = host.ram.read(0, size)
        for out_index, g in enumerate(gemms):
            want_bits = c.output_bits(expected, out_index)
            got_bits = c.output_bits(bytearray(got), out_index)
            wrong = np.argwhere(got_bits != want_bits)
            if len(wrong):
                first = tuple(wrong[0])
                dut._log.error("%s: GEMM %d (%dx%dx%d, transposes %s/%s, accumulate %s, A %s, B "
                               "%s): %d of %d output words differ, first %s: got %#010x want "
                               "%#010x", what, out_index, g.M, g.N, g.K, g.transpose_a,
                               g.transpose_b, g.accumulate, c.regions[f"{out_index}.gemm.a"].fmt,
                               c.regions[f"{out_index}.gemm.b"].fmt, len(wrong), want_bits.size,
                               first, got_bits[first], want_bits[first])
        if got != bytes(expected):
            diff = np.flatnonzero(np.frombuffer(got, np.uint8) != np.frombuffer(bytes(expected),
                                                                                  np.uint8))
            names = {n: r for n, r in c.regions.items() if r.addr <= diff[0] < r.end + 64}
            raise AssertionError(
                f"{what}: {len(diff)} DRAM bytes differ from the golden model, first at "
                f"{diff[0]:#x} (got {got[diff[0]]:#04x}, want {expected[diff[0]]:#04x}; "
                f"region {list(names)})")
        record_metrics(program=index, gemms=len(gemms), instructions=c.prog_len,
                       **{name: await host.counter(name) for name in COUNTERS})
        await host.write(Reg.IRQ, 1)
        await Timer(3 * PERIOD_NS, unit="ns")
        assert not dut.irq.value, f"{what}: irq still high after write-1-to-clear"
        dut._log.info("%s: DRAM equal to the golden model (%d bytes), bus bytes %s", what,
                      size, moved)


def _bad_programs(config, rng):
    """Programs that stop with an error (each with the model's verdict), as (name, instructions)."""
    from sim.accel_spec import FORMAT_BITS, Opcode, encode
    engine = config.engine
    beat = config.beat_bytes
    load = dict(target=0, dram_format=FORMAT_BITS.index("fp16"),
                operand_format=FORMAT_BITS.index("fp16"), dram_stride=64, dram_addr=0x1000,
                rows=2, cols=4)
    gemm = dict(m=2, n=2, k=2)
    good = [(Opcode.LOAD, load), (Opcode.LOAD, {**load, "target": 1}), (Opcode.GEMM, gemm)]
    return [
        ("illegal opcode", good + [(0x42, {})]),
        ("misaligned address", good + [(Opcode.LOAD, {**load, "dram_addr": 0x1000 + beat // 2})]),
        ("scratchpad overflow", good + [(Opcode.LOAD, {**load, "mem_row": engine.a_rows - 1})]),
        ("format the memory does not take", good + [(Opcode.STORE, {**load, "target": 2,
                                                                     "dram_format": 7})]),
        ("GEMM of size zero (engine check)", good + [(Opcode.GEMM, {**gemm, "k": 0})]),
        ("GEMM outside the accumulators (engine check)",
         good + [(Opcode.GEMM, {**gemm, "c_row": engine.acc_rows - 1})]),
    ], encode


@cocotb.test()
async def bad_programs_stop_with_their_error(dut):
    """Each bad program stops at its instruction with the model's error, raises the IRQ and
    leaves the accelerator usable: a compiled GEMM program after it is bit-exact. Then start
    while busy, and a soft reset in the middle of a program, each followed by a good run."""
    data = case()
    config = accel_config_from(data["config"])
    rng = make_rng(dut)
    dut.rst.value = 1
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    await FallingEdge(dut.clk)
    size = 1 << 16
    image = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    image[0x1000:0x2000] = rng.standard_normal(2048).astype(np.float16).tobytes()
    bad, encode = _bad_programs(config, rng)
    bases = [0x2000 + 0x400 * i for i in range(len(bad))]
    for base, (_, program) in zip(bases, bad):
        words = b"".join(
            encode(op, **fields) if op in (1, 2, 3, 7)
            else (op | int.from_bytes(encode(7), "little")).to_bytes(32, "little")
            for op, fields in program)
        image[base:base + len(words)] = words
    good = compile_gemms(config, _gemms(rng, config, 2, 24), base=0x8000)
    image[0x8000:len(good.image)] = good.image[0x8000:]
    host = Host(dut, rng, size, data["pause"])
    host.ram.write(0, bytes(image))
    await reset(dut)
    model, expected = AcceleratorModel(config), bytearray(image)

    async def good_run(what):
        result = model.run(expected, good.prog_base, good.prog_len)
        assert result.error is AccelError.NONE
        await host.run(good.prog_base, good.prog_len, what)
        status = await host.read(Reg.STATUS)
        assert status & 0b110 == 0b010, f"{what}: STATUS {status:#x}"
        for index in range(2):
            got = good.output_bits(bytearray(host.ram.read(0, size)), index)
            assert (got == good.output_bits(expected, index)).all(), f"{what}: GEMM {index}"
        await host.write(Reg.IRQ, 1)

    for base, (name, program) in zip(bases, bad):
        result = model.run(expected, base, len(program))
        assert result.error is not AccelError.NONE, f"{name}: the model runs it"
        await host.run(base, len(program), name)
        status = await host.read(Reg.STATUS)
        index = await host.read(Reg.ERROR_INDEX)
        code = (status >> 8) & 0xFF
        assert status & 0b111 == 0b110 and code == result.error and index == result.error_index,\
            f"{name}: STATUS {status:#x} (code {code}), ERROR_INDEX {index}; model " \
            f"{result.error.name} at {result.error_index}"
        assert dut.irq.value, f"{name}: no IRQ"
        await host.write(Reg.IRQ, 1)
        await good_run(f"good program after '{name}'")
        dut._log.info("%s: %s at instruction %d, then a good program bit-exact", name,
                      result.error.name, index)

    # start while busy: the running program goes on and ends normally; the error is reported
    result = model.run(expected, good.prog_base, good.prog_len)
    await host.write(Reg.PROG_BASE_LO, good.prog_base)
    await host.write(Reg.PROG_LEN, good.prog_len)
    await host.write(Reg.CTRL, Ctrl.START | Ctrl.IRQ_ENABLE)
    await host.write(Reg.CTRL, Ctrl.START | Ctrl.IRQ_ENABLE)
    if not dut.irq.value:
        await with_timeout(RisingEdge(dut.irq), WATCHDOG_US, "us")
    status = await host.read(Reg.STATUS)
    assert (status >> 8) & 0xFF == AccelError.START_WHILE_BUSY, f"start while busy: {status:#x}"
    for index in range(2):
        got = good.output_bits(bytearray(host.ram.read(0, size)), index)
        assert (got == good.output_bits(expected, index)).all(), "start while busy: results"
    await host.write(Reg.IRQ, 1)

    # soft reset in the middle of a program: no hang, no IRQ, the next program is bit-exact
    await host.write(Reg.CTRL, Ctrl.START | Ctrl.IRQ_ENABLE)
    await Timer(int(rng.integers(50, 400)) * PERIOD_NS, unit="ns")
    await host.write(Reg.CTRL, Ctrl.SOFT_RESET | Ctrl.IRQ_ENABLE)
    for _ in range(2000):
        if not (await host.read(Reg.STATUS)) & 1:
            break
    else:
        raise AssertionError("soft reset: still busy after 2000 status reads")
    assert not dut.irq.value, "soft reset raised the IRQ"
    await good_run("good program after a soft reset")
