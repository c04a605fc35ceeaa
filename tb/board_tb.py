"""Bench: the board build's system (``hw.board.system.BoardSystem``: the accelerator, its on-chip
RAM and the UART bridge) driven only through its two serial pins, by the host driver
(:mod:`sim.accel_driver`) on the serial back end (:mod:`sim.board_link`), beside the golden
model's back end.

:class:`UartLink` is the host's side of the line: it sends bytes on ``rx`` bit by bit at the
configuration's bit time and decodes ``tx`` into a queue. Every compiled program runs on both
back ends through :class:`tb.accelerator_tb.Pair`; after each the DRAM images (read back over
the line), ``STATUS``, the IRQ and the counters must agree. The protocol's own rules (bad
opcode, addresses beyond the registers or the RAM, a dropped half frame, a framing error) are
checked byte for byte.
"""

from __future__ import annotations

import collections
import struct

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from sim.accel_driver import AcceleratorDriver
from sim.accel_model_backend import ModelBackend
from sim.accel_spec import Reg, Resp
from sim.board_link import LinkError, SerialBackend
from sim.board_spec import BAD_OPCODE, BoardConfig, LinkStatus, Op, answer_bytes
from sim.compiler import compile_gemms
from sim.config import accel_config_from
from tb.accelerator_tb import Pair
from tb.engine_api import random_gemms
from tb.harness import PERIOD_NS, case, make_rng, record_metrics, reset


def _config() -> BoardConfig:
    data = case()
    return BoardConfig(accel=accel_config_from(data["config"]), clock_hz=data["clock_hz"],
                       baud=data["baud"], ram_bytes=data["ram_bytes"])


class UartLink:
    """:class:`sim.board_link.Link` on the ``rx`` / ``tx`` pins of a simulated board."""

    def __init__(self, dut, divisor: int):
        self.dut, self.divisor = dut, divisor
        self.received = collections.deque()
        self.byte_cycles = 10 * divisor
        dut.rx.value = 1
        cocotb.start_soon(self._monitor())

    async def _monitor(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.tx)
            await ClockCycles(dut.clk, self.divisor // 2)
            if dut.tx.value:
                continue                       # not a start bit
            value = 0
            for bit in range(8):
                await ClockCycles(dut.clk, self.divisor)
                value |= int(dut.tx.value) << bit
            await ClockCycles(dut.clk, self.divisor)
            assert dut.tx.value, f"tx: the stop bit after {value:#04x} is low"
            self.received.append(value)

    async def send_bits(self, bits):
        for bit in bits:
            self.dut.rx.value = bit
            await ClockCycles(self.dut.clk, self.divisor)

    async def send(self, data: bytes, *, stop: int = 1):
        for byte in data:
            await self.send_bits([0, *((byte >> i) & 1 for i in range(8)), stop])
        self.dut.rx.value = 1

    async def receive(self, count: int, timeout_cycles: int) -> bytes:
        waited = 0
        while len(self.received) < count and waited < timeout_cycles:
            await ClockCycles(self.dut.clk, self.divisor)
            waited += self.divisor
        return bytes(self.received.popleft() for _ in range(min(count, len(self.received))))

    async def wait_cycles(self, cycles: int):
        await ClockCycles(self.dut.clk, cycles)

    def cycle(self) -> int:
        return int(cocotb.utils.get_sim_time("ns") // PERIOD_NS)


class BoardBackend(SerialBackend):
    """The serial back end with the bench's reset (the board's reset pin)."""

    def __init__(self, dut, link: UartLink):
        super().__init__(link)
        self.dut = dut

    async def reset(self):
        await reset(self.dut)


async def _start(dut, config: BoardConfig):
    dut.rst.value = 1
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    link = UartLink(dut, config.divisor)
    await reset(dut)
    return link


@cocotb.test()
async def compiled_gemms_over_the_serial_line(dut):
    """Discover the accelerator, load an image, run compiled GEMM programs and read the RAM
    back, all through the two serial pins; everything equal to the golden model."""
    config = _config()
    data = case()
    rng = make_rng(dut)
    link = await _start(dut, config)
    backend = BoardBackend(dut, link)
    assert await backend.link_status() == LinkStatus(0), "STATUS flags after reset"
    driver = AcceleratorDriver(backend)
    info = await driver.discover()
    engine = config.accel.engine
    assert (info.array.rows, info.array.cols) == (engine.array.rows, engine.array.cols), \
        f"discovered {info.array}, configured {engine.array}"
    pair = Pair(dut, backend, ModelBackend(config.accel, config.ram_bytes))
    for index in range(data["programs"]):
        gemms = random_gemms(rng, engine, data["gemms"], data["largest"])
        compiled = compile_gemms(config.accel, gemms)
        assert len(compiled.image) <= config.ram_bytes, "the bench's GEMMs outgrow the RAM"
        started = link.cycle()
        await pair.load_image(compiled.image)
        loaded = link.cycle()
        result = await pair.run(compiled.prog_base, compiled.prog_len, f"program {index}")
        assert result.ok, f"program {index}: {result.error.name} at {result.error_index}"
        moved = (result.counters["bytes_read"], result.counters["bytes_written"])
        assert moved == (compiled.bytes_read, compiled.bytes_written), \
            f"program {index}: bus bytes {moved}, compiler {compiled.bytes_read}/" \
            f"{compiled.bytes_written}"
        record_metrics(program=index, gemms=len(gemms), image_bytes=len(compiled.image),
                       load_cycles=loaded - started, run_cycles=result.counters["cycles"],
                       total_cycles=link.cycle() - started)
        dut._log.info("program %d (%d GEMMs): image %d bytes loaded in %d cycles, ran in %d, "
                      "equal to the golden model", index, len(gemms), len(compiled.image),
                      loaded - started, result.counters["cycles"])
    assert await backend.link_status() == LinkStatus(0), "a serial byte was lost"


@cocotb.test()
async def host_script_runs_a_gemm(dut):
    """``scripts.board_host``'s host code (what a user runs against a real board) through the
    simulated line: discover, load, run, read back, equal to ``sim.gemm`` bit for bit."""
    from scripts.board_host import run
    config = _config()
    link = await _start(dut, config)
    shape = tuple(case()["host_gemm"])
    seed = int(cocotb.RANDOM_SEED)
    dut._log.info("seed %d (rerun with SPARTA_SEED=%d)", seed, seed)
    seen = await run(BoardBackend(dut, link), config, shape, seed=seed)
    assert not len(seen["wrong"]), f"host GEMM {shape}: {len(seen['wrong'])} results differ, " \
        f"first at {seen['first_wrong'][0]}: RTL {seen['first_wrong'][1]:#010x}, golden " \
        f"{seen['first_wrong'][2]:#010x}"
    dut._log.info("host GEMM %s: %d accelerator cycles, equal to sim.gemm", shape,
                  seen["cycles"])


async def _exchange(link, frame: bytes, answer: int) -> bytes:
    await link.send(frame)
    return await link.receive(answer, (len(frame) + answer + 4) * link.byte_cycles)


@cocotb.test()
async def protocol_errors_are_answered(dut):
    """Each rule of the frame protocol, byte for byte, and the link works after each."""
    config = _config()
    link = await _start(dut, config)
    backend = SerialBackend(link)
    csr_id = struct.pack("<I", Reg.ID)

    async def healthy(what):
        data, resp = await backend.read_csr(Reg.ID)
        assert resp == Resp.OKAY and data != 0, f"after {what}: ID read {data:#x} {resp.name}"

    for op in (0x00, 0x06, 0x7F, 0xFF):
        got = await _exchange(link, bytes([op]), 1)
        assert got == bytes([BAD_OPCODE]), f"opcode {op:#04x}: answered {got.hex()}"
        await healthy(f"opcode {op:#04x}")
    # a register beyond the block's window: DECERR without a bus access, data 0
    got = await _exchange(link, bytes([Op.READ_CSR]) + struct.pack("<I", 0x100), 5)
    assert got == bytes(4) + bytes([Resp.DECERR]), f"READ_CSR 0x100: {got.hex()}"
    got = await _exchange(link, bytes([Op.WRITE_CSR]) + struct.pack("<IBI", 0x1000, 0xF, 1), 1)
    assert got == bytes([Resp.DECERR]), f"WRITE_CSR 0x1000: {got.hex()}"
    # RAM words beyond its end: DECERR; the words inside the frame are still moved
    last = config.ram_bytes - 4
    got = await _exchange(link, bytes([Op.WRITE_MEM]) + struct.pack("<IBB", last, 1, 0xF)
                          + struct.pack("<II", 0x11223344, 0x55667788), 1)
    assert got == bytes([Resp.DECERR]), f"WRITE_MEM across the end: {got.hex()}"
    got = await _exchange(link, bytes([Op.READ_MEM]) + struct.pack("<IB", last, 1), 9)
    assert got == struct.pack("<IIB", 0x11223344, 0, Resp.DECERR), \
        f"READ_MEM across the end: {got.hex()}"
    # byte strobes
    got = await _exchange(link, bytes([Op.WRITE_MEM]) + struct.pack("<IBB", last, 0, 0b0101)
                          + struct.pack("<I", 0xAABBCCDD), 1)
    assert got == bytes([Resp.OKAY]), f"WRITE_MEM with strobes: {got.hex()}"
    got = await _exchange(link, bytes([Op.READ_MEM]) + struct.pack("<IB", last, 0), 5)
    assert got == struct.pack("<IB", 0x11BB33DD, Resp.OKAY), f"strobed word: {got.hex()}"
    # half a frame, then silence: dropped without an answer, the next frame works
    await link.send(bytes([Op.READ_CSR]) + csr_id[:2])
    got = await link.receive(1, config.frame_timeout_cycles + 4 * link.byte_cycles)
    assert got == b"", f"half a frame was answered: {got.hex()}"
    await healthy("a dropped frame")
    # a byte whose stop bit is low: FRAMING in STATUS, cleared by that read
    await link.send(bytes([Op.STATUS]), stop=0)
    await ClockCycles(dut.clk, 2 * link.byte_cycles)
    assert link.received == collections.deque(), "a byte with a bad stop bit was taken"
    flags = await backend.link_status()
    assert flags == LinkStatus.FRAMING, f"STATUS after a framing error: {flags!r}"
    assert await backend.link_status() == LinkStatus(0), "STATUS flags not cleared by the read"
    assert not dut.link_error.value, "link_error still high after STATUS"
    # the driver's errors: a DRAM access beyond the RAM raises, naming it
    try:
        await backend.write_dram(config.ram_bytes, b"\x01\x02\x03")
    except LinkError as error:
        assert "DECERR" in str(error), str(error)
    else:
        raise AssertionError("a DRAM write beyond the RAM did not raise")
    await healthy("a refused DRAM write")
    assert answer_bytes(Op.READ_CSR) == 5
