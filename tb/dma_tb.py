"""Bench: the AXI4 DMA (hw/accel/dma.py) against cocotbext-axi's ``AxiRam`` as DRAM.

Layers: stream sources and a sink drive the DMA's command and data ports (random idle cycles
and backpressure; write beats carry random byte strobes on some beats); :class:`Dram` is the
memory model with random pauses on all five AXI channels and fault regions answering SLVERR or
DECERR; :class:`BusMonitor` watches the AXI bus (burst attributes, 4 KiB rule, bursts in
flight, W framing, the exact AR/AW sequence against :func:`sim.accel_spec.dma_bursts`);
:class:`Bench` plans each transfer from the specification and the memory (:func:`plan`), then
checks read data against the memory, each W beat's data and strobes against the beat sent, the
memory after writes byte by byte (bytes whose strobe is 0 unchanged), the done/error pulses,
the byte counters and ``stall`` cycle by cycle.
One loop drives the DMA's inputs at the falling edge and samples everything once the signals
have settled (``ReadOnly``), i.e. what the next rising edge will see.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import warnings
from collections import deque

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

from hw.accel.dma import (AXI_BURST_INCR, AXI_CACHE, WRITES_OUTSTANDING, ReadBeat,
                          TransferCommand, WriteBeat)
from sim.accel_spec import (BURST_BOUNDARY, MAX_BURST_BEATS, AccelError, Resp, dma_bursts,
                            dma_command_error)
from sim.config import AccelConfig
from tb.harness import case, make_rng, record_metrics, reset, start_clock
from tb.packing import fields, pack

# cocotbext-axi 0.1.28 uses cocotb APIs that cocotb 2.1 deprecates; those warnings only
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")
from cocotbext.axi import AxiBus, AxiRam  # noqa: E402

#: Cycles without any handshake or completion while work is pending before the bench fails
WATCHDOG = 3000


def _config() -> AccelConfig:
    cfg = case()
    return AccelConfig(data_width=cfg.get("data_width", 64), addr_width=cfg.get("addr_width", 32),
                       reads_outstanding=cfg.get("reads_outstanding", 4))


def _pauses(rng, probability):
    """An endless pause pattern for a cocotbext-axi channel (True: paused this cycle)."""
    return itertools.cycle((rng.random(4093) < probability).tolist())


# -- memory --------------------------------------------------------------------------------

class Dram:
    """``AxiRam`` on the DMA's bus, with fault regions and random pauses on every channel.

    AxiRam answers SLVERR for a beat whose memory access raises; the region hooks raise for
    a beat that overlaps a fault region (so a faulting write leaves the memory untouched; a
    beat whose strobes are all 0 accesses nothing and answers OKAY), and the
    R/B channel hooks turn that SLVERR into the region's response (DECERR, which AxiRam has no
    way to produce). The memory is ``2 ** min(addr_width, 48)`` bytes (a sparse memory cannot
    have ``2 ** 64``); bus addresses alias modulo its size, and :meth:`read` / :meth:`write`
    apply the same aliasing.
    """

    def __init__(self, dut, rng, config: AccelConfig, *, pause: float):
        self.size = 1 << min(config.addr_width, 48)
        self.beat = config.beat_bytes
        self.ram = AxiRam(AxiBus.from_prefix(dut, "bus_"), dut.clk, dut.rst, size=self.size)
        # one INFO line per burst otherwise; warnings (an injected fault) still show
        logging.getLogger(f"cocotb.{dut._name}.bus_").setLevel(logging.WARNING)
        self.faults: list[tuple[int, int, Resp]] = []
        self._answer = Resp.SLVERR
        read_if, write_if = self.ram.read_if, self.ram.write_if
        read_if._read = self._hook(read_if._read)
        write_if._write = self._hook(write_if._write)
        read_if.r_channel.send = self._respond(read_if.r_channel.send, "rresp")
        write_if.b_channel.send = self._respond(write_if.b_channel.send, "bresp")
        if pause:
            for channel in (read_if.ar_channel, read_if.r_channel, write_if.aw_channel,
                            write_if.w_channel, write_if.b_channel):
                channel.set_pause_generator(_pauses(rng, pause))

    def add_fault(self, address: int, length: int, response: Resp):
        self.faults.append((address, address + length, response))

    def fault_at(self, address: int, length: int) -> Resp | None:
        for start, end, response in self.faults:
            if address < end and start < address + length:
                return response
        return None

    def _hook(self, access):
        async def hooked(address, *args):
            length = args[0] if isinstance(args[0], int) else len(args[0])
            # the whole beat answers, whichever of its bytes the strobes select
            start = address - address % self.beat
            end = -(-(address + length) // self.beat) * self.beat
            response = self.fault_at(start, end - start)
            if response is not None:
                self._answer = response
                raise RuntimeError(f"fault region at {address:#x}")
            return await access(address, *args)
        return hooked

    def _respond(self, send, field):
        async def hooked(transaction):
            if int(getattr(transaction, field)) == Resp.SLVERR:
                setattr(transaction, field, int(self._answer))
            await send(transaction)
        return hooked

    def _spans(self, address, length):
        address %= self.size
        while length > 0:
            size = min(length, self.size - address)
            yield address, size
            address, length = 0, length - size

    def read(self, address: int, length: int) -> bytes:
        return b"".join(self.ram.read(a, n) for a, n in self._spans(address, length))

    def write(self, address: int, data: bytes):
        offset = 0
        for a, n in self._spans(address, len(data)):
            self.ram.write(a, data[offset:offset + n])
            offset += n


# -- transfers ------------------------------------------------------------------------------

@dataclasses.dataclass
class Transfer:
    """One command and what the DMA must do with it."""
    kind: str                  # "read" or "write"
    addr: int
    row_bytes: int
    rows: int
    stride: int
    code: AccelError = AccelError.NONE
    bursts: list = dataclasses.field(default_factory=list)
    beats: list = dataclasses.field(default_factory=list)     # read: expected (None: faulted)
    accepted: int | None = None                                # cycle of the command handshake
    ended: int | None = None                                   # cycle of the last R beat / B
    done: int | None = None                                    # cycle of its done pulse

    def describe(self) -> str:
        return (f"{self.kind} addr={self.addr:#x} row_bytes={self.row_bytes:#x} "
                f"rows={self.rows:#x} stride={self.stride:#x}")


def plan(config: AccelConfig, dram: Dram, kind: str, addr: int, row_bytes: int, rows: int,
         stride: int, write_data=None, write_strobes=None) -> Transfer:
    """A transfer with its expected error code, bursts and (read) data. A write faults if a
    beat with some strobe set overlaps a fault region (one with none accesses nothing)."""
    bb = config.beat_bytes
    t = Transfer(kind, addr, row_bytes, rows, stride,
                 code=dma_command_error(addr, row_bytes, rows, stride, bb))
    if t.code != AccelError.NONE:
        return t
    t.bursts = dma_bursts(addr, row_bytes, rows, stride, bb, config.addr_width)
    beat_addresses = [(a + k * bb) for a, beats in t.bursts for k in range(beats)]
    if kind == "read":
        faulted = any(dram.fault_at(a, beats * bb) for a, beats in t.bursts)
    else:
        strobes = write_strobes or [(1 << bb) - 1] * len(beat_addresses)
        faulted = any(strobe and dram.fault_at(a, bb)
                      for a, strobe in zip(beat_addresses, strobes))
    t.code = AccelError.DRAM_RESPONSE if faulted else AccelError.NONE
    if kind == "read":
        t.beats = [None if dram.fault_at(a, bb) else int.from_bytes(dram.read(a, bb), "little")
                   for a in beat_addresses]
    else:
        t.beats = list(write_data) if write_data is not None else None
        if t.beats is None:
            raise ValueError("a write transfer needs its data")
        if len(t.beats) != len(beat_addresses):
            raise ValueError(f"{len(t.beats)} data beats for {len(beat_addresses)} beats")
    return t


# -- port drivers ---------------------------------------------------------------------------

class Source:
    """Drives a stream sink port from a queue of words, idling with probability ``p_idle``."""

    def __init__(self, dut, name, rng, p_idle):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.p_idle = rng, p_idle
        self.queue: deque = deque()
        self.offering = False
        self.valid.value = 0

    def drive(self):
        if not self.offering and self.queue and self.rng.random() >= self.p_idle:
            self.payload.value = self.queue[0]
            self.offering = True
        self.valid.value = int(self.offering)

    def sample(self) -> bool:
        """Whether the offered word was taken this cycle."""
        if self.offering and self.ready.value:
            self.queue.popleft()
            self.offering = False
            return True
        return False


class Sink:
    """Drives ``ready`` of a stream source port low with probability ``p_stall``; checks that
    an offered word stays unchanged until taken."""

    def __init__(self, dut, name, rng, p_stall):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name, self.rng, self.p_stall = name, rng, p_stall
        self.held = None
        self.ready.value = 0

    def drive(self):
        self.accepting = self.rng.random() >= self.p_stall
        self.ready.value = int(self.accepting)

    def sample(self):
        """The word taken this cycle, or None."""
        valid = bool(self.valid.value)
        word = int(self.payload.value) if valid else None
        if self.held is not None and word != self.held:
            raise AssertionError(f"{self.name} 0x{self.held:x} offered but not taken changed to "
                                 f"{'nothing' if word is None else f'0x{word:x}'}")
        self.held = word if valid and not self.accepting else None
        return word if valid and self.accepting else None


# -- bus monitor ----------------------------------------------------------------------------

class BusMonitor:
    """Watches the AXI bus: address channel attributes, the 4 KiB and length rules, stable
    offers, bursts in flight, W framing; records each AR/AW (addr, beats) and the cycles of
    R-last and B handshakes."""

    def __init__(self, dut, config: AccelConfig):
        self.dut, self.config = dut, config
        self.size = (config.beat_bytes - 1).bit_length()
        self.ar, self.aw = [], []                 # (addr, beats) in handshake order
        self.r_bursts = self.b_responses = 0
        self.w_beats_in_burst = 0
        self.w_bursts = 0
        self.held = {}
        self.max_reads_in_flight = self.max_writes_in_flight = 0

    def _sig(self, name):
        return getattr(self.dut, f"bus__{name}")

    def _stable(self, channel, names):
        """A valid offer must not change or disappear until taken."""
        valid = bool(self._sig(f"{channel}valid").value)
        values = tuple(int(self._sig(n).value) for n in names) if valid else None
        held = self.held.get(channel)
        if held is not None and values != held:
            raise AssertionError(f"{channel.upper()} offer {held} changed to {values} before "
                                 f"it was taken")
        ready = bool(self._sig(f"{channel}ready").value)
        self.held[channel] = values if valid and not ready else None
        return valid and ready

    def _address(self, channel):
        fields_ = ["addr", "len", "size", "burst", "lock", "cache", "prot", "id"]
        if not self._stable(channel, [channel + f for f in fields_]):
            return None
        addr, length, size, burst, lock, cache, prot, id_ = (
            int(self._sig(channel + f).value) for f in fields_)
        beats = length + 1
        bb = self.config.beat_bytes
        problems = []
        if (size, burst, lock, cache, prot, id_) != (self.size, AXI_BURST_INCR, 0, AXI_CACHE, 0, 0):
            problems.append(f"size={size} burst={burst} lock={lock} cache={cache:#x} "
                            f"prot={prot} id={id_}")
        if addr % bb:
            problems.append("address not aligned to the beat")
        if addr % BURST_BOUNDARY + beats * bb > BURST_BOUNDARY:
            problems.append("crosses a 4 KiB boundary")
        if beats > MAX_BURST_BEATS:
            problems.append("longer than 256 beats")
        if problems:
            raise AssertionError(f"{channel.upper()} addr={addr:#x} len={length}: "
                                 f"{'; '.join(problems)}")
        return addr, beats

    def sample(self):
        """Check this cycle's handshakes; returns (R beat, R last, W beat, B response).
        (The bench checks each W beat's data and strobes against the beat it sent.)"""
        ar = self._address("ar")
        aw = self._address("aw")
        if ar:
            self.ar.append(ar)
        if aw:
            self.aw.append(aw)
        r_beat = bool(self._sig("rvalid").value and self._sig("rready").value)
        r_last = r_beat and bool(self._sig("rlast").value)
        w_beat = self._stable("w", ["wdata", "wstrb", "wlast"])
        b = bool(self._sig("bvalid").value and self._sig("bready").value)
        if w_beat:
            if self.w_bursts >= len(self.aw):
                raise AssertionError(f"W beat of burst {self.w_bursts} before its AW")
            beats = self.aw[self.w_bursts][1]
            last = self.w_beats_in_burst == beats - 1
            if bool(self._sig("wlast").value) != last:
                raise AssertionError(f"wlast={int(self._sig('wlast').value)} on beat "
                                     f"{self.w_beats_in_burst} of a {beats}-beat burst")
            self.w_beats_in_burst = 0 if last else self.w_beats_in_burst + 1
            self.w_bursts += last
        if r_last:
            self.r_bursts += 1
        if b:
            if self.b_responses >= self.w_bursts:
                raise AssertionError("B response before the burst's last W beat")
            self.b_responses += 1
        # bursts in flight, counting one whose last beat arrives in the same cycle as a new
        # address handshake (the slot is not reused within a cycle)
        reads = len(self.ar) - self.r_bursts + r_last
        writes = len(self.aw) - self.b_responses + b
        if reads > self.config.reads_outstanding:
            raise AssertionError(f"{reads} read bursts in flight, more than "
                                 f"reads_outstanding={self.config.reads_outstanding}")
        if writes > WRITES_OUTSTANDING:
            raise AssertionError(f"{writes} write bursts in flight, more than "
                                 f"{WRITES_OUTSTANDING}")
        self.max_reads_in_flight = max(self.max_reads_in_flight, reads)
        self.max_writes_in_flight = max(self.max_writes_in_flight, writes)
        return r_beat, r_last, w_beat, b


# -- the bench ------------------------------------------------------------------------------

class Bench:
    """Drivers, memory, monitor and checks; :meth:`run` moves a list of transfers."""

    def __init__(self, dut, rng, *, pause=0.25, p_idle=0.2, p_stall=0.2):
        self.dut, self.rng = dut, rng
        self.config = config = _config()
        self.command_layout = TransferCommand(config.addr_width)
        self.beat_fields = fields(ReadBeat(config.data_width))
        self.write_fields = fields(WriteBeat(config.data_width))
        self.w_expected: deque = deque()             # (data, strobe) of the W beats to come
        self.dram = Dram(dut, rng, config, pause=pause)
        self.read_cmd = Source(dut, "read_cmd", rng, p_idle)
        self.write_cmd = Source(dut, "write_cmd", rng, p_idle)
        self.write_data = Source(dut, "write_data", rng, p_idle)
        self.read_data = Sink(dut, "read_data", rng, p_stall)
        self.monitor = BusMonitor(dut, config)
        self.cycle = 0
        self.reads: deque[Transfer] = deque()        # accepted or waiting, not yet done
        self.writes: deque[Transfer] = deque()
        self.expected_ar, self.expected_aw = [], []  # (addr, beats) of every burst
        self.ar_owner, self.aw_owner = [], []          # the transfer of each
        self.read_beats: deque = deque()             # (transfer, index) of beats to come
        self.open_reads = self.open_writes = 0       # accepted valid transfers not yet ended
        self.r_last_ends: deque[Transfer] = deque()  # valid reads, by R-last count at their end
        self.b_ends: deque[Transfer] = deque()
        self.r_bursts_expected = self.b_expected = 0
        self.done_reads: list[Transfer] = []
        self.done_writes: list[Transfer] = []
        self.memory_image = {}                       # address -> byte the memory must hold
        self.beat_cycles = {"R": [], "W": []}        # cycles with a beat on R / W

    async def start(self):
        await start_clock(self.dut)
        await reset(self.dut)

    # -- submitting ---------------------------------------------------------------------

    def _pack(self, t: Transfer) -> int:
        return pack(self.command_layout, addr=t.addr, row_bytes=t.row_bytes, rows=t.rows,
                    stride=t.stride)[0]

    def read(self, addr, row_bytes, rows, stride) -> Transfer:
        t = plan(self.config, self.dram, "read", addr, row_bytes, rows, stride)
        self.read_cmd.queue.append(self._pack(t))
        self.reads.append(t)
        if t.bursts:
            self.expected_ar += t.bursts
            self.ar_owner += [t] * len(t.bursts)
            self.read_beats.extend((t, k) for k in range(len(t.beats)))
            self.r_bursts_expected += len(t.bursts)
            self.r_last_ends.append((self.r_bursts_expected, t))
        return t

    def _strobes(self, beats: int) -> list[int]:
        """All strobes on most beats; random strobes (now and then none) on about one in four."""
        bb = self.config.beat_bytes
        full = (1 << bb) - 1
        strobes = []
        for _ in range(beats):
            kind = self.rng.random()
            strobes.append(full if kind < 0.75 else 0 if kind < 0.77
                           else int(self.rng.integers(0, full + 1)))
        return strobes

    def write(self, addr, row_bytes, rows, stride, *, full_strobes=False) -> Transfer:
        """``full_strobes``: every byte of every beat written (a transfer meant to touch a
        fault region must not have all its strobes there at 0)."""
        bb = self.config.beat_bytes
        beats = 0
        if dma_command_error(addr, row_bytes, rows, stride, bb) == AccelError.NONE:
            beats = rows * row_bytes // bb
        data = [int.from_bytes(self.rng.bytes(bb), "little") for _ in range(beats)]
        strobes = [(1 << bb) - 1] * beats if full_strobes else self._strobes(beats)
        t = plan(self.config, self.dram, "write", addr, row_bytes, rows, stride, data, strobes)
        self.write_cmd.queue.append(self._pack(t))
        self.writes.append(t)
        if t.bursts:
            self.expected_aw += t.bursts
            self.aw_owner += [t] * len(t.bursts)
            data_offset, strobe_offset = (self.write_fields[name][0] for name in ("data", "strobe"))
            self.write_data.queue.extend(word << data_offset | strobe << strobe_offset
                                         for word, strobe in zip(data, strobes))
            self.w_expected.extend(zip(data, strobes))
            self.b_expected += len(t.bursts)
            self.b_ends.append((self.b_expected, t))
            addresses = [a + k * bb for a, n in t.bursts for k in range(n)]
            for address, word, strobe in zip(addresses, data, strobes):
                if strobe and self.dram.fault_at(address, bb) is None:
                    for i, byte in enumerate(word.to_bytes(bb, "little")):
                        if strobe >> i & 1:      # a byte whose strobe is 0 keeps its value
                            self.memory_image[(address + i) % self.dram.size] = byte
        return t

    def fill(self, address: int, length: int):
        """Random bytes into the memory (and into the image the end check compares)."""
        data = self.rng.bytes(length)
        self.dram.write(address, data)
        for i, byte in enumerate(data):
            self.memory_image[(address + i) % self.dram.size] = byte

    # -- running ------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until every submitted transfer is done; returns the cycles taken."""
        dut = self.dut
        start, quiet = self.cycle, 0
        pending_reads, pending_writes = list(self.reads), list(self.writes)
        while self.reads or self.writes:
            await FallingEdge(dut.clk)
            for port in (self.read_cmd, self.write_cmd, self.write_data, self.read_data):
                port.drive()
            await ReadOnly()
            progress = self._sample()
            quiet = 0 if progress else quiet + 1
            if quiet > WATCHDOG:
                raise AssertionError(
                    f"no progress for {WATCHDOG} cycles; reads not done: "
                    f"{[t.describe() for t in self.reads]}; writes not done: "
                    f"{[t.describe() for t in self.writes]}")
            self.cycle += 1
        # a few quiet cycles: nothing more may happen
        for _ in range(8):
            await FallingEdge(dut.clk)
            for port in (self.read_cmd, self.write_cmd, self.write_data, self.read_data):
                port.drive()
            await ReadOnly()
            if self._sample():
                raise AssertionError("activity after every transfer was done")
            self.cycle += 1
        self._check_bursts(final=True)
        if self.w_expected:
            raise AssertionError(f"{len(self.w_expected)} write beats sent never came out on W")
        self.check_memory()
        dut._log.info("%d reads and %d writes done in %d cycles",
                      len(pending_reads), len(pending_writes), self.cycle - start)
        return self.cycle - start

    def _sample(self) -> bool:
        dut, cycle, bb = self.dut, self.cycle, self.config.beat_bytes
        read_accept = self.read_cmd.sample()
        write_accept = self.write_cmd.sample()
        w_data = self.write_data.sample()
        beat = self.read_data.sample()
        r_beat, r_last, w_beat, b = self.monitor.sample()
        progress = read_accept or write_accept or w_data or r_beat or w_beat or b

        # stall: a transfer accepted in an earlier cycle and not ended before this one, and no
        # beat on R or W
        expected_stall = (self.open_reads or self.open_writes) and not (r_beat or w_beat)
        for name, got, want in (("stall", int(dut.stall.value), int(bool(expected_stall))),
                                ("bytes_read", int(dut.bytes_read.value), bb * r_beat),
                                ("bytes_written", int(dut.bytes_written.value), bb * w_beat)):
            if got != want:
                raise AssertionError(f"cycle {cycle}: {name}={got}, expected {want}")
        if r_beat:
            self.beat_cycles["R"].append(cycle)
        if w_beat:
            self.beat_cycles["W"].append(cycle)
        if w_beat != w_data:
            raise AssertionError(f"cycle {cycle}: W beat {w_beat} but write_data taken {w_data}")
        if w_beat:
            self._check_w_beat()

        if read_accept:
            self.open_reads += bool(self._accepted(self.reads).bursts)
        if write_accept:
            self.open_writes += bool(self._accepted(self.writes).bursts)
        if beat is not None:
            self._check_beat(beat)
        if r_last and self.r_last_ends and self.monitor.r_bursts == self.r_last_ends[0][0]:
            self.r_last_ends.popleft()[1].ended = cycle
            self.open_reads -= 1
        if b and self.b_ends and self.monitor.b_responses == self.b_ends[0][0]:
            self.b_ends.popleft()[1].ended = cycle
            self.open_writes -= 1
        self._check_bursts()
        progress |= self._check_status()
        return progress

    def _accepted(self, queue) -> Transfer:
        for t in queue:
            if t.accepted is None:
                t.accepted = self.cycle
                return t
        raise AssertionError("a command was accepted that the bench did not send")

    def _check_w_beat(self):
        """The W beat carries the data and strobes of the write_data beat it came from."""
        if not self.w_expected:
            raise AssertionError(f"cycle {self.cycle}: W beat with no write beat sent")
        want = self.w_expected.popleft()
        got = (int(self.dut.bus__wdata.value), int(self.dut.bus__wstrb.value))
        if got != want:
            raise AssertionError(f"cycle {self.cycle}: W beat wdata=0x{got[0]:x} "
                                 f"wstrb=0x{got[1]:x}, sent wdata=0x{want[0]:x} "
                                 f"strobe=0x{want[1]:x}")

    def _check_beat(self, word):
        if not self.read_beats:
            raise AssertionError(f"cycle {self.cycle}: read_data beat 0x{word:x} with no read "
                                 f"transfer expecting one")
        t, k = self.read_beats.popleft()
        offset, width = self.beat_fields["data"]
        value = (word >> offset) & ((1 << width) - 1)
        last = (word >> self.beat_fields["last"][0]) & 1
        want_last = int(k == len(t.beats) - 1)
        if last != want_last:
            raise AssertionError(f"cycle {self.cycle}: beat {k} of {t.describe()}: last={last}, "
                                 f"expected {want_last}")
        if t.beats[k] is not None and value != t.beats[k]:
            raise AssertionError(f"cycle {self.cycle}: beat {k} of {t.describe()}: "
                                 f"rtl=0x{value:x} memory=0x{t.beats[k]:x}")

    def _check_bursts(self, final=False):
        for name, got, want in (("AR", self.monitor.ar, self.expected_ar),
                                ("AW", self.monitor.aw, self.expected_aw)):
            if got and (len(got) > len(want) or got[-1] != want[len(got) - 1]):
                index = len(got) - 1
                owners = self.ar_owner if name == "AR" else self.aw_owner
                expected = ("none" if index >= len(want) else
                            f"(addr {want[index][0]:#x}, {want[index][1]} beats) of "
                            f"{owners[index].describe()}")
                raise AssertionError(f"{name} burst {index} is (addr {got[-1][0]:#x}, "
                                     f"{got[-1][1]} beats); expected {expected}")
            if final and len(got) != len(want):
                raise AssertionError(f"{len(got)} {name} bursts issued, {len(want)} expected")

    def _check_status(self) -> bool:
        dut, cycle = self.dut, self.cycle
        read_done, write_done = int(dut.read_done.value), int(dut.write_done.value)
        error, code = int(dut.error.value), int(dut.error_code.value)
        if read_done and write_done:
            raise AssertionError(f"cycle {cycle}: read_done and write_done in the same cycle")
        if error and not (read_done or write_done):
            raise AssertionError(f"cycle {cycle}: error (code {code}) without a done")
        for done, queue, finished in ((read_done, self.reads, self.done_reads),
                                      (write_done, self.writes, self.done_writes)):
            if not done:
                continue
            if not queue or queue[0].accepted is None:
                raise AssertionError(f"cycle {cycle}: a done with no transfer accepted")
            t = queue.popleft()
            got = AccelError(code) if error else AccelError.NONE
            if got != t.code:
                raise AssertionError(f"cycle {cycle}: {t.describe()} ended with {got.name}, "
                                     f"expected {t.code.name}")
            if t.bursts:
                if t.ended is None:
                    raise AssertionError(f"cycle {cycle}: {t.describe()} done before its last "
                                         f"{'beat' if t.kind == 'read' else 'B response'}")
                # read: the cycle after the last beat; write: the first cycle after the last B
                # response without a read_done (checked below while it waits)
                if cycle - t.ended < 1 or (t.kind == "read" and cycle - t.ended != 1):
                    raise AssertionError(f"cycle {cycle}: {t.describe()} done {cycle - t.ended} "
                                         f"cycles after its last {t.kind} handshake")
            t.done = cycle
            finished.append(t)
        waiting = self.writes[0] if self.writes else None
        if (waiting is not None and waiting.ended is not None and waiting.ended < cycle
                and not read_done):
            raise AssertionError(f"cycle {cycle}: no write_done for {waiting.describe()}, whose "
                                 f"last B response was in cycle {waiting.ended}, and no read_done")
        return bool(read_done or write_done)

    def check_memory(self):
        """The memory holds exactly the image, byte by byte: filled bytes, written rows
        (faulted beats and bytes whose strobe was 0 excepted), and nothing written elsewhere
        in the filled regions."""
        size = self.dram.size
        addresses = sorted(self.memory_image)
        # compare in runs of consecutive addresses
        for _, run in itertools.groupby(enumerate(addresses), lambda p: p[1] - p[0]):
            run = [a for _, a in run]
            got = self.dram.ram.read(run[0], len(run))
            want = bytes(self.memory_image[a] for a in run)
            if got != want:
                first = next(i for i in range(len(run)) if got[i] != want[i])
                raise AssertionError(f"memory at {(run[0] + first) % size:#x}: "
                                     f"0x{got[first]:02x}, expected 0x{want[first]:02x} "
                                     f"(writes: {[t.describe() for t in self.done_writes]})")


# -- stimulus -------------------------------------------------------------------------------

def random_transfer(rng, config: AccelConfig, base: int, span: int, bad=0.1):
    """(addr, row_bytes, rows, stride) inside ``[base, base + span)``; sometimes long rows,
    4 KiB crossings, stride == row_bytes, and with probability ``bad`` a rejected command."""
    bb = config.beat_bytes
    kind = rng.random()
    if kind < 0.15:
        row_beats = int(rng.integers(MAX_BURST_BEATS - 4, MAX_BURST_BEATS + 40))
    else:
        row_beats = int(rng.integers(1, 24))
    rows = int(rng.integers(1, 5))
    row_bytes = row_beats * bb
    stride = row_bytes if rng.random() < 0.3 else row_bytes + bb * int(rng.integers(0, 64))
    extent = (rows - 1) * stride + row_bytes
    addr = base + bb * int(rng.integers(0, (span - extent) // bb))
    if rng.random() < 0.3:      # start just below a 4 KiB boundary
        boundary = (addr // BURST_BOUNDARY + 1) * BURST_BOUNDARY
        if boundary + extent < base + span:
            addr = boundary - bb * int(rng.integers(1, 8))
    if rng.random() < bad:
        field = rng.integers(0, 5)
        if field == 0:
            addr += int(rng.integers(1, bb))
        elif field == 1:
            row_bytes += int(rng.integers(1, bb))
        elif field == 2:
            stride += int(rng.integers(1, bb))
        elif field == 3:
            rows = 0
        else:
            row_bytes = 0
    return addr, row_bytes, rows, stride


def _bases(rng, config: AccelConfig):
    """A read window and a write window (aligned to 4 KiB, high in the address space)."""
    top = 1 << min(config.addr_width, 48)
    base = int(rng.integers(1, top // (1 << 24))) << 24 if config.addr_width > 32 else 0x4000_0000
    return base, base + (1 << 20)


# -- tests ----------------------------------------------------------------------------------

@cocotb.test()
async def random_transfers(dut):
    """Random reads and writes, both sides at once, with fault regions and bad commands."""
    rng = make_rng(dut, salt=1)
    bench = Bench(dut, rng)
    await bench.start()
    config, bb = bench.config, bench.config.beat_bytes
    count = int(case().get("transfers", 16))
    read_base, write_base = _bases(rng, config)
    span = 64 * 1024
    bench.fill(read_base, span)
    bench.fill(write_base, span)
    for base, response in ((read_base, Resp.SLVERR), (read_base + span // 2, Resp.DECERR),
                           (write_base, Resp.DECERR), (write_base + span // 2, Resp.SLVERR)):
        bench.dram.add_fault(base + bb * int(rng.integers(0, 2048)), 4 * bb, response)
    for _ in range(count):
        bench.read(*random_transfer(rng, config, read_base, span))
        bench.write(*random_transfer(rng, config, write_base, span))
    cycles = await bench.run()
    codes = [t.code.name for t in bench.done_reads + bench.done_writes]
    dut._log.info("codes %s; at most %d reads and %d writes in flight",
                  {c: codes.count(c) for c in set(codes)}, bench.monitor.max_reads_in_flight,
                  bench.monitor.max_writes_in_flight)
    record_metrics(test="random_transfers", transfers=2 * count, cycles=cycles)


@cocotb.test()
async def edge_transfers(dut):
    """Directed shapes: 4 KiB crossings, rows of more than 256 beats, exactly 256 beats,
    stride == row_bytes, stride > row_bytes, overlapping and repeated rows, the top of the
    address space (addresses wrap)."""
    rng = make_rng(dut, salt=2)
    bench = Bench(dut, rng)
    await bench.start()
    config, bb = bench.config, bench.config.beat_bytes
    read_base, write_base = _bases(rng, config)
    span = 96 * 1024
    bench.fill(read_base, span)
    bench.fill(write_base, span)
    b4k = BURST_BOUNDARY
    shapes = [
        (b4k - 3 * bb, 8 * bb, 2, b4k),                           # each row crosses 4 KiB
        (5 * bb, (MAX_BURST_BEATS + 50) * bb, 2, (MAX_BURST_BEATS + 50) * bb),  # long rows
        (0, MAX_BURST_BEATS * bb, 1, 0),                          # exactly 256 beats
        (3 * b4k, (MAX_BURST_BEATS + 1) * bb, 1, 0),              # 257 beats from a boundary
        (2 * b4k, 2 * MAX_BURST_BEATS * bb, 1, 0),                # 512 beats from a boundary
        (bb, 5 * bb, 3, 64 * bb + 7 * bb),                        # stride > row_bytes
        (b4k + bb, 3 * bb, 6, 3 * bb),                            # stride == row_bytes
        (17 * bb, bb, 9, bb),                                     # one-beat rows
    ]
    for addr, row_bytes, rows, stride in shapes:
        bench.read(read_base + addr, row_bytes, rows, stride)
        bench.write(write_base + addr, row_bytes, rows, stride)
    bench.read(read_base + 40 * bb, 4 * bb, 3, 2 * bb)              # overlapping rows
    bench.read(read_base + 80 * bb, 2 * bb, 3, 0)                   # the same row three times
    top = 1 << config.addr_width
    bench.fill(top - b4k, b4k)
    bench.fill(0, b4k)
    bench.read(top - 2 * bb, 4 * bb, 2, b4k)                       # wraps to address 0
    await bench.run()


@cocotb.test()
async def error_recovery(dut):
    """Each error (SLVERR and DECERR on reads and writes, each misaligned field, each zero
    field), each followed by a good transfer that must be correct."""
    rng = make_rng(dut, salt=3)
    bench = Bench(dut, rng)
    await bench.start()
    config, bb = bench.config, bench.config.beat_bytes
    read_base, write_base = _bases(rng, config)
    span = 64 * 1024
    bench.fill(read_base, span)
    bench.fill(write_base, span)
    bench.dram.add_fault(read_base + 1024 * bb // 8, bb, Resp.SLVERR)
    bench.dram.add_fault(read_base + 2048 * bb // 8, 2 * bb, Resp.DECERR)
    bench.dram.add_fault(write_base + 1024 * bb // 8, bb, Resp.DECERR)
    bench.dram.add_fault(write_base + 2048 * bb // 8, 2 * bb, Resp.SLVERR)
    good = (4 * bb, 12 * bb, 2, 16 * bb)
    bad = [
        (1024 * bb // 8 - 2 * bb, 6 * bb, 2, 64 * bb),     # first row hits the 1st fault
        (2048 * bb // 8 - 64 * bb, 4 * bb, 3, 64 * bb),     # middle row hits the 2nd fault
        (bb // 2, 4 * bb, 1, 0),                            # misaligned address
        (0, 4 * bb + bb // 2, 1, 0),                        # misaligned row_bytes
        (0, 4 * bb, 2, 5 * bb + 4),                         # misaligned stride
        (0, 4 * bb, 0, 4 * bb),                             # zero rows
        (0, 0, 3, 4 * bb),                                  # zero row_bytes
    ]
    for k, (addr, row_bytes, rows, stride) in enumerate(bad):
        for kind, base in (("read", read_base), ("write", write_base)):
            method = getattr(bench, kind)
            # full strobes: random ones could leave a fault region's beats untouched
            extra = {"full_strobes": True} if kind == "write" else {}
            t = method(base + addr, row_bytes, rows, stride, **extra)
            if t.code == AccelError.NONE:
                raise AssertionError(f"case {k}: {t.describe()} raises no error")
            method(base + span // 2 + good[0] + 1024 * bb * k // 8, *good[1:])
    await bench.run()
    codes = {t.code.name for t in bench.done_reads + bench.done_writes}
    missing = {e.name for e in (AccelError.DRAM_RESPONSE, AccelError.MISALIGNED,
                                AccelError.BAD_FIELD, AccelError.NONE)} - codes
    if missing:
        raise AssertionError(f"error codes never exercised: {sorted(missing)}")


@cocotb.test()
async def throughput(dut):
    """Long transfers with no pauses or backpressure, read then write: one row of
    ``throughput_beats`` beats and the same beats as 8-beat rows (stride 16 beats). Records
    beats per cycle from the command handshake to the done pulse and the idle cycles on R / W
    between a transfer's first and last beat: there must be none (bursts back to back) when
    more than one burst may be in flight."""
    rng = make_rng(dut, salt=4)
    bench = Bench(dut, rng, pause=0, p_idle=0, p_stall=0)
    await bench.start()
    config, bb = bench.config, bench.config.beat_bytes
    read_base, write_base = _bases(rng, config)
    beats = int(case().get("throughput_beats", 2048))
    bench.fill(read_base, 2 * beats * bb)
    shapes = {"long": (beats * bb, 1, 0), "rows": (8 * bb, beats // 8, 16 * bb)}
    for shape, (row_bytes, rows, stride) in shapes.items():
        for kind, base in (("read", read_base), ("write", write_base)):
            channel = "R" if kind == "read" else "W"
            bench.beat_cycles[channel].clear()
            t = getattr(bench, kind)(base, row_bytes, rows, stride)
            await bench.run()
            elapsed = t.done - t.accepted
            cycles = bench.beat_cycles[channel]
            gaps = cycles[-1] - cycles[0] + 1 - len(cycles)
            dut._log.info("%s %s: %d beats in %d cycles from command to done: %.4f "
                          "beats/cycle; %d idle cycles on %s between the first and last beat",
                          shape, kind, beats, elapsed, beats / elapsed, gaps, channel)
            record_metrics(test="throughput", shape=shape, kind=kind, beats=beats,
                           cycles=elapsed, beats_per_cycle=beats / elapsed, idle_cycles=gaps)
            in_flight = config.reads_outstanding if kind == "read" else WRITES_OUTSTANDING
            if gaps and in_flight > 1:
                raise AssertionError(f"{kind} of {beats} beats: {gaps} idle cycles on "
                                     f"{channel} although the memory never paused")
