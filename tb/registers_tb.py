"""Bench: the accelerator's AXI4-Lite register slave (``hw.accel.registers.Registers``).

Layers:

* bus driver: cocotbext-axi's ``AxiLiteMaster`` with a random pause generator on each of its
  five channels (AW and W arrive in either order, B and R are back-pressured), plus raw
  AW/W/B transfers for arbitrary (non-contiguous) ``wstrb``;
* controller side (:class:`Side`): drives ``busy``/``pc``/``finish``/``fault`` from a planned
  fake program that starts on the ``start`` pulse, and the counter events, every cycle; it
  records every ``start`` and ``soft_reset`` pulse and keeps the bench's own count of every
  counter event it drove;
* model (:class:`RegisterModel`): what each register must read, from :mod:`sim.accel_spec`
  and the configuration (capabilities computed here, independently of the gateware);
* checker: every read against the model, ``irq`` against the model's pending bit.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, RisingEdge, Timer, with_timeout

from sim.accel_spec import (ACCEL_ID, COUNTERS, CSR_BYTES, FORMAT_BITS, VERSION, AccelError, Ctrl,
                            Feature, Reg, Resp, counter_offset)
from sim.config import AccelConfig, accel_config_from
from tb.harness import PERIOD_NS, case, make_rng, record_metrics, reset

# cocotbext-axi 0.1.28 still calls cocotb 1.x APIs that cocotb 2.1 deprecates
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")
from cocotbext.axi import AxiLiteBus, AxiLiteMaster  # noqa: E402
from cocotbext.axi.axil_channels import AxiLiteAWTransaction, AxiLiteWTransaction  # noqa: E402

PREFIX = "bus_"
#: the counters and the input that feeds each (1-bit inputs count cycles)
EVENT_INPUTS = {"cycles": "busy", "engine_busy_cycles": "engine_busy",
                "dma_stall_cycles": "dma_stall", "bytes_read": "bytes_read",
                "bytes_written": "bytes_written", "products_skipped": "products_skipped"}
DATAPATH_EVENTS = ("engine_busy_cycles", "dma_stall_cycles", "bytes_read", "bytes_written",
                   "products_skipped")
EVENT_WIDTH = {"engine_busy_cycles": 1, "dma_stall_cycles": 1, "bytes_read": 16,
               "bytes_written": 16, "products_skipped": 16}
#: codes a controller may report through ``fault``
CONTROLLER_ERRORS = (AccelError.ILLEGAL_OPCODE, AccelError.DRAM_RESPONSE, AccelError.MISALIGNED,
                     AccelError.SPAD_OVERFLOW, AccelError.BAD_FIELD)
WRITABLE = (Reg.CTRL, Reg.IRQ, Reg.PROG_BASE_LO, Reg.PROG_BASE_HI, Reg.PROG_LEN)
#: watchdogs (simulated time): a wait for the controller side; a whole test, with room for the
#: random operations of the case (an operation takes ~0.2 us) and the counter test's hold
WATCHDOG_US = 200
TEST_TIMEOUT_US = 1000 + 10 * case().get("operations", 0)
COUNTER_TIMEOUT_US = 1000 + 10 * case().get("counter_reads", 0) + case().get("wrap_cycles", 0) // 10


def config_of(data: dict) -> AccelConfig:
    """The :class:`AccelConfig` a runner passed (``case()["config"]``)."""
    return accel_config_from(data)


def expected_capabilities(config: AccelConfig) -> dict[int, int]:
    """ID, VERSION and the CAP_* words of ``config``, field by field from the register map of
    :mod:`sim.accel_spec` (sizes as ceil(log2); scratchpad rows: the larger scratchpad)."""
    engine, array = config.engine, config.engine.array

    def log2(n):
        return math.ceil(math.log2(n))

    def mask(formats):
        return sum(1 << FORMAT_BITS.index(name) for name in formats)

    features = Feature.ACCUMULATE
    if array.skip_window >= 2:
        features |= Feature.SKIP_ZEROS
    if engine.output_mask:
        features |= Feature.OUTPUT_MASK
    if max(len(array.a_formats), len(array.b_formats)) >= 2:
        features |= Feature.FGMP
    return {
        Reg.ID: ACCEL_ID,
        Reg.VERSION: VERSION[0] * 0x10000 + VERSION[1],
        Reg.CAP_ARRAY: (array.rows + (array.cols << 8) + ((array.dataflow == "ws") << 16)
                        + (array.mul_stages << 17) + (array.skip_window << 20)
                        + (array.acc_interleave << 24) + (array.psum_stages << 27)),
        Reg.CAP_FORMATS: mask(array.a_formats) + (mask(array.b_formats) << 4)
                         + (mask(engine.out_formats) << 8),
        Reg.CAP_MEMORY: (log2(max(engine.a_rows, engine.b_rows)) + (log2(engine.spad_width) << 8)
                         + (log2(engine.acc_rows) << 16) + (log2(engine.acc_width) << 24)),
        Reg.CAP_FEATURES: int(features),
        Reg.CAP_BUS: (config.data_width // 8) + (config.addr_width << 8)
                     + (config.reads_outstanding << 16),
    }


def strobe_merge(old: int, data: int, strobe: int) -> int:
    for byte in range(4):
        if strobe >> byte & 1:
            old = (old & ~(0xFF << 8 * byte)) | (data & (0xFF << 8 * byte))
    return old


class RegisterModel:
    """What every register reads; updated by the bench's writes and the controller's pulses."""

    def __init__(self, config: AccelConfig):
        self.config = config
        self.constants = expected_capabilities(config)
        self.prog = {Reg.PROG_BASE_LO: 0, Reg.PROG_BASE_HI: 0, Reg.PROG_LEN: 0}
        self.irq_enable = self.irq_pending = 0
        self.done = self.error = self.code = self.index = 0

    @property
    def prog_base(self) -> int:
        high = self.prog[Reg.PROG_BASE_HI] if self.config.addr_width == 64 else 0
        return high << 32 | self.prog[Reg.PROG_BASE_LO]

    def clear_status(self):
        self.done = self.error = self.code = self.index = 0

    def set_error(self, code, index):
        if not self.error:
            self.error, self.code, self.index = 1, int(code), index

    # -- events ------------------------------------------------------------------------------

    def write(self, offset: int, data: int, strobe: int, *, busy: bool, pc: int):
        """A write as the register block must perform it; returns (bresp, action) with action
        one of None, "start", "soft_reset", "start_while_busy", "start_error"."""
        word = offset & ~3
        if word not in WRITABLE:
            return Resp.SLVERR, None
        if word in self.prog:
            if word != Reg.PROG_BASE_HI or self.config.addr_width == 64:
                self.prog[word] = strobe_merge(self.prog[word], data, strobe)
            return Resp.OKAY, None
        if not strobe & 1:
            return Resp.OKAY, None
        if word == Reg.IRQ:
            if data & 1:
                self.irq_pending = 0
            return Resp.OKAY, None
        self.irq_enable = int(bool(data & Ctrl.IRQ_ENABLE))
        if data & Ctrl.SOFT_RESET:
            self.clear_status()
            self.irq_pending = 0
            return Resp.OKAY, "soft_reset"
        if not data & Ctrl.START:
            return Resp.OKAY, None
        if busy:
            self.set_error(AccelError.START_WHILE_BUSY, pc)
            return Resp.OKAY, "start_while_busy"
        self.clear_status()
        if self.prog[Reg.PROG_LEN] == 0 or self.prog_base % 32:
            self.done = 1
            self.set_error(AccelError.EMPTY_PROGRAM if self.prog[Reg.PROG_LEN] == 0
                           else AccelError.MISALIGNED, 0)
            self.irq_pending |= self.irq_enable
            return Resp.OKAY, "start_error"
        return Resp.OKAY, "start"

    def finish(self):
        self.done = 1
        self.irq_pending |= self.irq_enable

    # -- reads -------------------------------------------------------------------------------

    def read(self, offset: int, *, busy: bool, counts: dict, latches: dict):
        """(rresp, rdata) of a read of ``offset`` (counters: the bench's own counts)."""
        word = offset & ~3
        if word in self.constants:
            return Resp.OKAY, self.constants[word]
        if word in self.prog:
            return Resp.OKAY, self.prog[word] if (word != Reg.PROG_BASE_HI
                                                  or self.config.addr_width == 64) else 0
        simple = {Reg.CTRL: self.irq_enable * Ctrl.IRQ_ENABLE,
                  Reg.STATUS: int(busy) | self.done << 1 | self.error << 2 | self.code << 8,
                  Reg.ERROR_INDEX: self.index, Reg.IRQ: self.irq_pending}
        if word in simple:
            return Resp.OKAY, int(simple[word])
        for name in COUNTERS:
            if word == counter_offset(name):
                return Resp.OKAY, counts[name] & 0xFFFF_FFFF
            if word == counter_offset(name) + 4:
                return Resp.OKAY, latches[name]
        return Resp.SLVERR, 0


@dataclasses.dataclass
class Program:
    """A fake program the controller side runs when it sees ``start``."""
    steps: int
    delay: int = 1                  # cycles from the start pulse to busy (0 or 1)
    pc0: int = 0                    # pc of the first step
    faults: dict = dataclasses.field(default_factory=dict)   # step -> (code, index)
    hold_at: int | None = None      # hold busy at this step until ``release`` is set
    release: Event = dataclasses.field(default_factory=Event)
    ended: Event = dataclasses.field(default_factory=Event)
    held: Event = dataclasses.field(default_factory=Event)   # reached the hold step
    busy_cycles: int = 0
    aborted: bool = False


class Side:
    """The controller and datapath side, one decision per cycle at the falling edge."""

    def __init__(self, dut, rng, model: RegisterModel):
        self.dut, self.rng, self.model = dut, rng, model
        self.cycle = 0
        self.starts: list[tuple[int, int, int]] = []     # (cycle, prog_base, prog_len)
        self.soft_resets: list[int] = []
        self.counts = dict.fromkeys(COUNTERS, 0)          # counted (sampled by the DUT)
        self.pending = dict.fromkeys(COUNTERS, 0)         # driven now, counted at the next edge
        self.events = None        # "random", "while_running", a dict of constants, or None
        self.program: Program | None = None
        self.running: Program | None = None
        self.step = self.wait = 0
        self.pc = 0
        self.previous_start = 0
        self.fired = set()
        self.hold_for = 0
        self.hold_done = Event()

    @staticmethod
    def idle(dut):
        for name in ("busy", "finish", "fault", "fault_code", "fault_index", "pc", "engine_busy",
                     "dma_stall", "bytes_read", "bytes_written", "products_skipped"):
            getattr(dut, name).value = 0

    def clear_counts(self):
        """The bench's counts restart (a start or soft reset written while nothing counts)."""
        assert not any(self.pending.values()), f"events driven during a clear: {self.pending}"
        self.counts = dict.fromkeys(COUNTERS, 0)

    def hold(self, values: dict, cycles: int) -> Event:
        """Drive constant counter events for exactly ``cycles`` cycles."""
        self.events, self.hold_for = dict(values), cycles
        self.hold_done = Event()
        return self.hold_done

    async def run(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            self.cycle += 1
            for name in COUNTERS:
                self.counts[name] += self.pending[name]
            start, soft = int(dut.start.value), int(dut.soft_reset.value)
            if start:
                if self.previous_start:
                    raise AssertionError(f"cycle {self.cycle}: start high two cycles in a row")
                self.starts.append((self.cycle, int(dut.prog_base.value),
                                    int(dut.prog_len.value)))
            self.previous_start = start
            if soft:
                self.soft_resets.append(self.cycle)
            events = self.draw_events()
            self.controller(start, soft, events.pop("cycles"))
            for name, value in events.items():
                getattr(dut, EVENT_INPUTS[name]).value = value
                self.pending[name] = value
            if isinstance(self.events, dict) and self.hold_for >= 2 and self.running is None:
                await self.fast_forward()

    def controller(self, start, soft, idle_busy):
        """busy, pc, finish, fault of this cycle: the running program's, else ``idle_busy``
        (the register block counts busy cycles whoever drives them)."""
        dut, program = self.dut, self.running
        busy, finish, fault = idle_busy, 0, 0
        if soft and program is not None:
            program.aborted = True
            program.ended.set()
            self.running = program = None
        if start:
            if self.program is None or self.running is not None:
                raise AssertionError(f"cycle {self.cycle}: start pulse with no program planned "
                                     f"(or one running)")
            self.running = program = self.program
            self.program = None
            self.step, self.wait, self.fired = 0, program.delay, set()
        if program is not None:
            if self.wait:
                self.wait -= 1
            else:
                busy = 1
                program.busy_cycles += 1
                self.pc = program.pc0 + self.step
                if self.step in program.faults and self.step not in self.fired:
                    self.fired.add(self.step)
                    code, index = program.faults[self.step]
                    fault = 1
                    dut.fault_code.value = int(code)
                    dut.fault_index.value = index
                    self.model.set_error(code, index)
                if self.step == program.hold_at and not program.release.is_set():
                    program.held.set()
                elif self.step == program.steps - 1:
                    finish = 1
                    self.model.finish()
                    self.running = None
                    program.ended.set()
                else:
                    self.step += 1
        dut.busy.value, dut.finish.value, dut.fault.value = busy, finish, fault
        dut.pc.value = self.pc
        self.pending["cycles"] = busy

    async def fast_forward(self):
        """Most of a long hold without waking up every cycle (a Python wake-up per cycle
        would be most of the counter test's time on Icarus): the constant events just driven stay on the inputs while
        ``hold_for - 1`` falling edges pass, each counted as if it had been driven; the loop
        goes on at the edge that drives the hold's last cycle. ``start``/``soft_reset`` are not
        watched meanwhile (the bench writes nothing during a hold)."""
        skip = self.hold_for - 1
        for name in COUNTERS:
            self.counts[name] += self.pending[name] * skip
        self.cycle += skip
        self.hold_for -= skip
        # wake up a quarter period after the last skipped falling edge (before its rising edge)
        await Timer(skip * PERIOD_NS + PERIOD_NS / 4, unit="ns")

    def draw_events(self) -> dict:
        """Counter events of this cycle (``cycles``: busy while no program runs)."""
        rng, events = self.rng, self.events
        if events == "while_running":
            events = "random" if self.running is not None and not self.wait else None
        if events == "random":
            values = {name: int(rng.integers(0, 1 << EVENT_WIDTH[name]))
                      if rng.random() < 0.5 else 0 for name in DATAPATH_EVENTS}
            values["cycles"] = int(self.events == "random" and rng.random() < 0.5)
        elif isinstance(events, dict):
            values = {name: events.get(name, 0) for name in COUNTERS}
            self.hold_for -= 1
            if self.hold_for == 0:
                self.events = None
                self.hold_done.set()
        else:
            values = dict.fromkeys(COUNTERS, 0)
        return values


def pauses(rng, probability):
    while True:
        yield bool(rng.random() < probability)


class Bench:
    def __init__(self, dut, rng):
        data = case()
        self.dut, self.rng = dut, rng
        self.config = config_of(data["config"])
        self.model = RegisterModel(self.config)
        self.side = Side(dut, rng, self.model)
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, PREFIX), dut.clk, dut.rst)
        self.latches = dict.fromkeys(COUNTERS, 0)
        self.reads = self.writes = 0

    # -- bus pauses ----------------------------------------------------------------------------

    def channels(self):
        w, r = self.master.write_if, self.master.read_if
        return (w.aw_channel, w.w_channel, w.b_channel, r.ar_channel, r.r_channel)

    def random_pauses(self):
        for channel in self.channels():
            channel.set_pause_generator(pauses(self.rng, float(self.rng.uniform(0.1, 0.6))))

    def no_pauses(self):
        for channel in self.channels():
            channel.clear_pause_generator()
            channel.pause = False

    # -- bus operations ------------------------------------------------------------------------

    async def read(self, offset: int) -> tuple[int, int]:
        response = await self.master.read(offset, 4)
        self.reads += 1
        return int(response.resp), int.from_bytes(response.data, "little")

    async def write(self, offset: int, data: int, strobe: int = 0xF) -> int:
        """A write with any ``wstrb``: through the master for contiguous strobes (the address
        then points at the first byte), else as raw AW/W/B transfers on its channels (AW or
        W first at random; the address as given, low bits included)."""
        self.writes += 1
        lanes = [byte for byte in range(4) if strobe >> byte & 1]
        if lanes and lanes == list(range(lanes[0], lanes[-1] + 1)):
            payload = (data >> 8 * lanes[0] & 0xFFFF_FFFF).to_bytes(4, "little")[:len(lanes)]
            response = await self.master.write((offset & ~3) + lanes[0], payload)
            return int(response.resp)
        await self.master.wait_write()
        write_if = self.master.write_if
        aw = AxiLiteAWTransaction(awaddr=offset, awprot=0)
        w = AxiLiteWTransaction(wdata=data, wstrb=strobe)
        sends = [write_if.aw_channel.send(aw), write_if.w_channel.send(w)]
        if self.rng.random() < 0.5:
            sends.reverse()
        for send in sends:
            await send
        b = await write_if.b_channel.recv()
        return int(b.bresp)

    # -- checks against the model -------------------------------------------------------------

    def expected(self, offset):
        return self.model.read(offset, busy=self.busy(), counts=self.side.counts,
                               latches=self.latches)

    async def check_reads(self, offsets, what=""):
        """Read ``offsets`` (all in flight together) and compare each with the model; the
        design must be quiet (nothing counts, no program changes state)."""
        tasks = [cocotb.start_soon(self.read(offset)) for offset in offsets]
        for offset, task in zip(offsets, tasks):
            resp, value = await task
            self.take_latch(offset)
            want_resp, want = self.expected(offset)
            if (resp, value) != (want_resp, want):
                raise AssertionError(
                    f"{what}read {offset:#04x} ({register_name(offset)}): rtl {Resp(resp).name} "
                    f"0x{value:08x}, expected {Resp(want_resp).name} 0x{want:08x}")

    def take_latch(self, offset):
        for name in COUNTERS:
            if offset & ~3 == counter_offset(name):
                self.latches[name] = self.side.counts[name] >> 32 & 0xFFFF_FFFF

    async def check_all(self, what=""):
        await self.check_reads(list(range(0, CSR_BYTES, 4)), what)

    async def write_checked(self, offset, data, strobe=0xF):
        """A write with the controller quiet; checks ``bresp`` and returns the model's action."""
        want, action = self.model.write(offset, data, strobe, busy=self.busy(),
                                        pc=self.side.pc)
        if action in ("start", "start_error", "soft_reset"):
            self.side.clear_counts()
            self.latches = dict.fromkeys(COUNTERS, 0)
        got = await self.write(offset, data, strobe)
        if got != want:
            raise AssertionError(f"write {offset:#04x} ({register_name(offset)}) data "
                                 f"0x{data:08x} wstrb {strobe:#x}: bresp {Resp(got).name}, "
                                 f"expected {Resp(want).name}")
        return action

    def busy(self):
        return self.side.running is not None

    def check_irq(self, what):
        level = int(self.dut.irq.value)
        if level != self.model.irq_pending:
            raise AssertionError(f"{what}: irq output {level}, IRQ pending should be "
                                 f"{self.model.irq_pending}")

    async def cycles(self, n):
        for _ in range(n):
            await RisingEdge(self.dut.clk)

    async def settle(self):
        """A few cycles for pulses driven by the controller side to reach the registers."""
        await self.cycles(3)


def register_name(offset):
    word = offset & ~3
    for name in COUNTERS:
        if word == counter_offset(name):
            return f"{name} low"
        if word == counter_offset(name) + 4:
            return f"{name} high"
    try:
        return Reg(word).name
    except ValueError:
        return "unmapped"


async def start(dut) -> Bench:
    rng = make_rng(dut)
    dut.rst.value = 1
    Side.idle(dut)
    # the simulator's own clock (no Python wake-up per edge): the counter test holds events
    # for 65,537 cycles
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    await FallingEdge(dut.clk)          # the bus master samples the ports from its start
    bench = Bench(dut, rng)
    await reset(dut)
    cocotb.start_soon(bench.side.run())
    bench.random_pauses()
    await bench.cycles(2)
    return bench


async def finish_program(bench, program, what):
    await with_timeout(program.ended.wait(), WATCHDOG_US, "us")
    await bench.settle()
    bench.check_irq(what)


def random_bits(rng, bits):
    return int.from_bytes(rng.bytes(8), "little") & ((1 << bits) - 1)


def plan(bench, steps=None, hold_at=None, delay=None, **kwargs) -> Program:
    """The next program of the controller side (it starts on the next start pulse)."""
    rng = bench.rng
    steps = steps or int(rng.integers(1, 40))
    program = Program(steps=steps, delay=int(rng.integers(0, 2)) if delay is None else delay,
                      hold_at=None if hold_at is None else min(hold_at, steps - 1), **kwargs)
    bench.side.program = program
    return program


async def set_program(bench, base=None, length=None):
    rng = bench.rng
    if base is None:
        base = random_bits(rng, bench.config.addr_width) & ~31
    if length is None:
        length = int(rng.integers(1, 1 << 32))
    await bench.write_checked(Reg.PROG_BASE_LO, base & 0xFFFF_FFFF)
    await bench.write_checked(Reg.PROG_BASE_HI, base >> 32)
    await bench.write_checked(Reg.PROG_LEN, length)
    return base, length


def check_starts(bench, before, expected, what):
    got = bench.side.starts[before:]
    if len(got) != expected:
        raise AssertionError(f"{what}: {len(got)} start pulses, expected {expected}: {got}")
    for _, base, length in got:
        if (base, length) != (bench.model.prog_base, bench.model.prog[Reg.PROG_LEN]):
            raise AssertionError(f"{what}: start with prog_base 0x{base:x} prog_len 0x{length:x}, "
                                 f"registers hold 0x{bench.model.prog_base:x} "
                                 f"0x{bench.model.prog[Reg.PROG_LEN]:x}")


# -- tests -------------------------------------------------------------------------------------

@cocotb.test(timeout_time=TEST_TIMEOUT_US, timeout_unit="us")
async def register_map(dut):
    """Every word of the map after reset (capabilities from the configuration, SLVERR and 0
    outside the map); then writes to every read-only and unmapped word answer SLVERR and
    change nothing."""
    bench = await start(dut)
    await bench.check_all("after reset: ")
    read_only = [offset for offset in range(0, CSR_BYTES, 4) if offset not in WRITABLE]
    for offset in read_only:
        data = int(bench.rng.integers(0, 1 << 32))
        await bench.write_checked(offset + int(bench.rng.integers(0, 4)), data,
                                  int(bench.rng.integers(0, 16)))
    await bench.check_all("after writes to read-only and unmapped words: ")
    bench.check_irq("after the map")
    assert not bench.side.starts and not bench.side.soft_resets


@cocotb.test(timeout_time=TEST_TIMEOUT_US, timeout_unit="us")
async def write_read_back(dut):
    """Random writes with random ``wstrb`` (non-contiguous ones as raw transfers, contiguous
    ones through the master, several in flight) to the writable registers, read back."""
    bench = await start(dut)
    rng = bench.rng
    operations = case()["operations"]
    begin = time.perf_counter()
    done = 0
    pending = []

    async def flush():
        for offset, data, strobe, want, task in pending:
            got = await task
            if got != want:
                raise AssertionError(f"write {offset:#04x} data 0x{data:08x} wstrb {strobe:#x}: "
                                     f"bresp {Resp(got).name}, expected {Resp(want).name}")
        pending.clear()

    while done < operations:
        batch = int(rng.integers(1, 9))
        for _ in range(batch):
            offset = int(rng.choice([Reg.PROG_BASE_LO, Reg.PROG_BASE_HI, Reg.PROG_LEN, Reg.CTRL,
                                     Reg.IRQ]))
            data = int(rng.integers(0, 1 << 32))
            if offset == Reg.CTRL:
                data &= ~int(Ctrl.START | Ctrl.SOFT_RESET)      # programs: other tests
            strobe = int(rng.integers(0, 16))
            if strobe in (1, 2, 4, 8, 3, 6, 12, 7, 14, 15):     # through the master, queued
                want, _ = bench.model.write(offset, data, strobe, busy=False, pc=0)
                pending.append((offset, data, strobe, want,
                                cocotb.start_soon(bench.write(offset, data, strobe))))
            else:                                               # raw: after the queued ones
                await flush()
                await bench.write_checked(offset, data, strobe)
        await flush()
        done += batch
        await bench.check_reads([Reg.PROG_BASE_LO, Reg.PROG_BASE_HI, Reg.PROG_LEN, Reg.CTRL,
                                 Reg.IRQ, Reg.ID, 0x1C], "read back: ")
    await bench.check_all("after the writes: ")
    assert not bench.side.starts and not bench.side.soft_resets
    record_metrics(writes=bench.writes, reads=bench.reads, seconds=time.perf_counter() - begin)
    dut._log.info("%d writes, %d reads checked", bench.writes, bench.reads)


@cocotb.test(timeout_time=TEST_TIMEOUT_US, timeout_unit="us")
async def programs(dut):
    """Start -> one start pulse with the program registers; busy while it runs; finish ->
    done, IRQ level (if enabled), write-1-to-clear; the cycles and event counters equal the
    bench's own counts; with the IRQ disabled nothing is raised."""
    bench = await start(dut)
    rng, side, model = bench.rng, bench.side, bench.model
    side.events = "while_running"
    for run in range(6):
        enable = run % 3 != 2
        await set_program(bench)
        program = plan(bench, hold_at=int(rng.integers(0, 3)) if run % 2 else None)
        before = len(side.starts)
        ctrl = Ctrl.START | (Ctrl.IRQ_ENABLE if enable else 0)
        assert await bench.write_checked(Reg.CTRL, int(ctrl)) == "start"
        if program.hold_at is not None:
            await with_timeout(program.held.wait(), WATCHDOG_US, "us")
            side.events = None
            await bench.settle()
            await bench.check_reads([Reg.STATUS, Reg.ERROR_INDEX, Reg.IRQ, Reg.CTRL],
                                    f"program {run} running: ")
            side.events = "while_running"
            program.release.set()
        await finish_program(bench, program, f"program {run} ended")
        check_starts(bench, before, 1, f"program {run}")
        if side.counts["cycles"] != program.busy_cycles:
            raise AssertionError(f"bench count {side.counts['cycles']} != "
                                 f"{program.busy_cycles}")
        await bench.check_all(f"program {run} ({program.steps} steps, irq enable {enable}): ")
        if enable:
            assert model.irq_pending
            await bench.write_checked(Reg.IRQ, 0xFFFF_FFFE)      # bit 0 clear: no effect
            await bench.write_checked(Reg.IRQ, 1, 0xE)           # no strobe on byte 0
            bench.check_irq("IRQ written without bit 0")
            await bench.write_checked(Reg.IRQ, 1)
            bench.check_irq("after IRQ write-1-to-clear")
            await bench.check_reads([Reg.IRQ, Reg.STATUS], "after the clear: ")
        else:
            bench.check_irq("program with the IRQ disabled")
            assert not model.irq_pending
    assert not side.soft_resets

    # STATUS read in the cycles around a start, with no bus pauses and a controller that
    # raises busy one cycle after the pulse: every read sees the state before the start
    # (done, not busy) or after it (busy, not done), never neither
    side.events = None
    bench.no_pauses()
    for lag in range(6):
        program = plan(bench, steps=3, hold_at=0, delay=1)
        assert model.done
        write = cocotb.start_soon(bench.write(Reg.CTRL, int(Ctrl.START)))
        await bench.cycles(lag)
        resp, status = await bench.read(Reg.STATUS)
        assert await write == Resp.OKAY and resp == Resp.OKAY
        busy, done = status & 1, status >> 1 & 1
        if busy == done:
            raise AssertionError(f"STATUS 0x{status:08x} read {lag} cycles after a start "
                                 f"write: busy {busy} and done {done}")
        await with_timeout(program.held.wait(), WATCHDOG_US, "us")
        program.release.set()
        await finish_program(bench, program, f"program {lag} cycles")
        model.write(Reg.CTRL, int(Ctrl.START), 0xF, busy=False, pc=0)
        model.finish()
        side.counts = dict.fromkeys(COUNTERS, 0)
        side.counts["cycles"] = program.busy_cycles
        bench.latches = dict.fromkeys(COUNTERS, 0)
        await bench.check_all(f"program after a STATUS read {lag} cycles after its start: ")


@cocotb.test(timeout_time=TEST_TIMEOUT_US, timeout_unit="us")
async def start_errors(dut):
    """Start while busy (code, ERROR_INDEX = pc, no pulse, the program goes on, the error is
    sticky), two starts back to back, empty program, misaligned base (IRQ raised only if
    enabled), START without wstrb[0], START with SOFT_RESET."""
    bench = await start(dut)
    rng, side, model = bench.rng, bench.side, bench.model

    # start while busy
    await set_program(bench)
    pc0 = int(rng.integers(0, 1 << 31))
    program = plan(bench, steps=int(rng.integers(4, 30)), hold_at=int(rng.integers(1, 4)),
                   pc0=pc0)
    before = len(side.starts)
    await bench.write_checked(Reg.CTRL, int(Ctrl.START | Ctrl.IRQ_ENABLE))
    await with_timeout(program.held.wait(), WATCHDOG_US, "us")
    assert await bench.write_checked(Reg.CTRL, int(Ctrl.START | Ctrl.IRQ_ENABLE)) == \
        "start_while_busy"
    await bench.check_reads([Reg.STATUS, Reg.ERROR_INDEX, Reg.IRQ], "start while busy: ")
    program.release.set()
    await finish_program(bench, program, "program after a start while busy")
    check_starts(bench, before, 1, "start while busy")
    await bench.check_all("program ended after a start while busy: ")
    await bench.write_checked(Reg.IRQ, 1)

    # two starts back to back: without bus pauses the second write is performed in the cycle
    # of the first one's start pulse, where a controller that raises busy one cycle later
    # (delay 1) is not busy yet; with pauses, some cycle later. pc does not change from
    # before the start until the hold.
    for paused, delay in ((False, 1), (False, 0), (True, 1), (True, 0)):
        if not paused:
            bench.no_pauses()
        program = plan(bench, steps=int(rng.integers(2, 10)), hold_at=0, pc0=side.pc,
                       delay=delay)
        before = len(side.starts)
        assert model.write(Reg.CTRL, int(Ctrl.START), 0xF, busy=False, pc=0)[1] == "start"
        assert model.write(Reg.CTRL, int(Ctrl.START), 0xF, busy=True, pc=side.pc)[1] == \
            "start_while_busy"
        side.clear_counts()
        bench.latches = dict.fromkeys(COUNTERS, 0)
        first = cocotb.start_soon(bench.write(Reg.CTRL, int(Ctrl.START)))
        second = cocotb.start_soon(bench.write(Reg.CTRL, int(Ctrl.START)))
        assert (await first, await second) == (Resp.OKAY, Resp.OKAY)
        await with_timeout(program.held.wait(), WATCHDOG_US, "us")
        bench.random_pauses()
        await bench.settle()
        what = f"two starts back to back (bus pauses {paused}, busy delay {delay})"
        await bench.check_reads([Reg.STATUS, Reg.ERROR_INDEX], f"{what}: ")
        program.release.set()
        await finish_program(bench, program, what)
        check_starts(bench, before, 1, what)
        await bench.check_all(f"{what}, ended: ")

    # empty program and misaligned base, IRQ enabled or not
    for enable, low_bits in ((1, 16), (0, 1), (1, int(rng.integers(1, 32)))):
        for error in ("empty", "misaligned", "empty and misaligned"):
            misaligned = random_bits(rng, bench.config.addr_width) & ~31 | low_bits
            if error == "empty":
                await set_program(bench, length=0)
            elif error == "misaligned":
                await set_program(bench, base=misaligned)
            else:
                await set_program(bench, base=misaligned, length=0)
            before = len(side.starts)
            ctrl = Ctrl.START | (Ctrl.IRQ_ENABLE if enable else 0)
            assert await bench.write_checked(Reg.CTRL, int(ctrl)) == "start_error"
            await bench.settle()
            check_starts(bench, before, 0, error)
            bench.check_irq(f"{error} program, irq enable {enable}")
            await bench.check_all(f"{error} program, irq enable {enable}: ")
            await bench.write_checked(Reg.IRQ, 1)
            bench.check_irq(f"{error} program, after the clear")

    # START with no strobe on byte 0; START together with SOFT_RESET
    await set_program(bench)
    before, resets = len(side.starts), len(side.soft_resets)
    await bench.write_checked(Reg.CTRL, int(Ctrl.START), 0xE)
    await bench.write_checked(Reg.CTRL, int(Ctrl.START | Ctrl.SOFT_RESET | Ctrl.IRQ_ENABLE))
    await bench.settle()
    check_starts(bench, before, 0, "START without wstrb[0] / with SOFT_RESET")
    assert len(side.soft_resets) == resets + 1, side.soft_resets
    await bench.check_all("after START with SOFT_RESET: ")


@cocotb.test(timeout_time=TEST_TIMEOUT_US, timeout_unit="us")
async def faults_and_soft_reset(dut):
    """A fault sets error, code and ERROR_INDEX (the first one is kept), finish sets done;
    the next start clears them; soft reset clears status, IRQ and counters and keeps the
    program registers and the IRQ enable, also while a program runs."""
    bench = await start(dut)
    rng, side, model = bench.rng, bench.side, bench.model
    side.events = "while_running"
    for run in range(4):
        await set_program(bench)
        steps = int(rng.integers(3, 30))
        faults = {}
        for _ in range(run % 3 + 1):
            faults[int(rng.integers(0, steps))] = (CONTROLLER_ERRORS[rng.integers(0, 5)],
                                                  int(rng.integers(0, 1 << 32)))
        program = plan(bench, steps=steps, faults=faults, pc0=int(rng.integers(0, 1000)))
        await bench.write_checked(Reg.CTRL, int(Ctrl.START | Ctrl.IRQ_ENABLE))
        await finish_program(bench, program, f"program {run} with faults {faults}")
        await bench.check_all(f"program {run} with faults at steps {sorted(faults)}: ")
        await bench.check_reads([Reg.STATUS, Reg.ERROR_INDEX], "error still there: ")

    # soft reset when idle: everything cleared but the program registers and the IRQ enable
    resets = len(side.soft_resets)
    assert model.error and model.irq_pending and any(side.counts.values())
    await bench.write_checked(Reg.CTRL, int(Ctrl.SOFT_RESET | Ctrl.IRQ_ENABLE))
    await bench.settle()
    assert len(side.soft_resets) == resets + 1
    bench.check_irq("after soft reset")
    await bench.check_all("after soft reset: ")

    # a start clears a previous error (checked while the next program runs)
    await set_program(bench)
    program = plan(bench, steps=5, faults={1: (AccelError.BAD_FIELD, 77)})
    await bench.write_checked(Reg.CTRL, int(Ctrl.START))
    await finish_program(bench, program, "program with a fault")
    program = plan(bench, steps=8, hold_at=2)
    await bench.write_checked(Reg.CTRL, int(Ctrl.START))
    await with_timeout(program.held.wait(), WATCHDOG_US, "us")
    side.events = None
    await bench.settle()
    await bench.check_reads([Reg.STATUS, Reg.ERROR_INDEX], "next program running: ")

    # soft reset while a program runs: the controller drops busy in the cycle of the pulse,
    # so the busy cycles before it are cleared and none after it counts
    before = len(side.starts)
    model.write(Reg.CTRL, int(Ctrl.SOFT_RESET), 0xF, busy=True, pc=0)
    assert await bench.write(Reg.CTRL, int(Ctrl.SOFT_RESET)) == Resp.OKAY
    await with_timeout(program.ended.wait(), WATCHDOG_US, "us")
    assert program.aborted
    await bench.settle()
    side.clear_counts()
    bench.latches = dict.fromkeys(COUNTERS, 0)
    bench.check_irq("after a soft reset while busy")
    await bench.check_all("after a soft reset while busy: ")
    await set_program(bench)
    program = plan(bench, steps=int(rng.integers(1, 20)))
    await bench.write_checked(Reg.CTRL, int(Ctrl.START | Ctrl.IRQ_ENABLE))
    await finish_program(bench, program, "program after a soft reset")
    check_starts(bench, before, 1, "program after a soft reset")
    await bench.check_all("program after a soft reset: ")


@cocotb.test(timeout_time=COUNTER_TIMEOUT_US, timeout_unit="us")
async def counters(dut):
    """Random events every cycle while counter pairs (low then high) are read: each value lies
    between the bench's counts before and after the read; then exact values once quiet; then
    the latch rule across a carry into the high word: +0xFFFF per cycle for 65,537 cycles is
    2**32 - 1; the low words are read, one more cycle adds 1, 2, 3 (every 16-bit counter
    carries), the high words still read the latched 0, a new low read latches 1."""
    bench = await start(dut)
    rng, side = bench.rng, bench.side
    side.events = "random"
    begin = time.perf_counter()
    for _ in range(case()["counter_reads"]):
        name = COUNTERS[int(rng.integers(0, len(COUNTERS)))]
        low_at = {k: side.counts[k] for k in COUNTERS}
        resp_low, low = await bench.read(counter_offset(name))
        resp_high, high = await bench.read(counter_offset(name) + 4)
        top = side.counts[name] + side.pending[name]
        value = high << 32 | low
        if (resp_low, resp_high) != (Resp.OKAY, Resp.OKAY) or not low_at[name] <= value <= top:
            raise AssertionError(f"{name}: read 0x{value:x} ({Resp(resp_low).name}, "
                                 f"{Resp(resp_high).name}), bench count went from "
                                 f"0x{low_at[name]:x} to 0x{top:x} during the reads")
    side.events = None
    await bench.settle()
    await bench.check_reads([counter_offset(name) + k for name in COUNTERS for k in (0, 4)],
                            "after random events: ")
    record_metrics(phase="random", seconds=time.perf_counter() - begin)

    # carry into the high word: clear, then +0xFFFF per cycle
    await bench.write_checked(Reg.CTRL, int(Ctrl.SOFT_RESET))
    await bench.settle()
    begin = time.perf_counter()
    cycles = case()["wrap_cycles"]
    steps = {"bytes_read": 0xFFFF, "bytes_written": 0xFFFF, "products_skipped": 0xFFFF,
             "engine_busy_cycles": 1, "dma_stall_cycles": 1, "cycles": 1}
    bench.no_pauses()
    await with_timeout(side.hold(steps, cycles).wait(), 100 * cycles, "us")
    await bench.settle()
    bench.random_pauses()
    record_metrics(phase="wrap", cycles=cycles, seconds=time.perf_counter() - begin)
    lows = [counter_offset(name) for name in COUNTERS]
    await bench.check_reads(lows, "before the carry: ")             # latches the high words
    # one more cycle: the low words carry (0xFFFF * 65537 = 2**32 - 1)
    await with_timeout(side.hold({"bytes_read": 1, "bytes_written": 2, "products_skipped": 3,
                                  "engine_busy_cycles": 1, "dma_stall_cycles": 1, "cycles": 1},
                                 1).wait(),
                       WATCHDOG_US, "us")
    await bench.settle()
    await bench.check_reads([offset + 4 for offset in lows], "high words latched before the "
                                                             "carry: ")
    await bench.check_reads(lows, "after the carry: ")
    await bench.check_reads([offset + 4 for offset in lows], "high words after the carry: ")
    carried = [name for name in COUNTERS if side.counts[name] >> 32]
    dut._log.info("counters past 2**32: %s", ", ".join(carried) or "none")
    if cycles >= 65537:
        assert {"bytes_read", "bytes_written", "products_skipped"} <= set(carried), side.counts
