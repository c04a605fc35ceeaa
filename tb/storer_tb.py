"""Bench: the store path (hw/accel/storer.py) reading a real GemmEngine (tb/test_storer.py's
``StorerOnEngine``), checked beat by beat against the golden model's ``STORE``.

Layers: stream sources drive ``wr_acc`` (the accumulator memory's contents) and ``cmd`` with
random idle cycles, a sink takes ``write_data`` with random backpressure (``tb.dma_tb``'s
drivers); :func:`expected_beats` runs the same ``STORE`` on :class:`sim.accel_model
.AcceleratorModel` (whose accumulator memory a ``LOAD`` of the same contents filled) and turns
the DRAM rows it wrote into the beats and strobes the DMA must receive; :class:`Bench` samples
every cycle once the signals have settled and checks each beat, the ``done`` pulse, that no
command is accepted while one runs and that the engine never raises an error.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from hw.accel.dma import WriteBeat
from hw.accel.storer import StoreCommand, StoreGeometry
from hw.engine.commands import host_write_layout
from hw.engine.engine import GemmEngine
from sim.accel_model import AcceleratorModel, assemble, write_matrix
from sim.accel_spec import FORMAT_BITS, FORMAT_BYTES, AccelError, Opcode, Target
from sim.config import AccelConfig, engine_config_from
from sim.formats import FORMATS
from tb.dma_tb import Sink, Source
from tb.harness import case, make_rng, record_metrics, reset, start_clock
from tb.packing import fields, pack

#: Cycles without any handshake or done pulse while work is pending before the bench fails
WATCHDOG = 200
#: Where the model's programs and data sit in its DRAM images
PROGRAM, DATA = 0, 4096


def accel_config_of_case() -> AccelConfig:
    """The AccelConfig of the case's ``engine``, ``data_width``, ``addr_width`` and
    ``epilogue_stages``."""
    cfg = case()
    return AccelConfig(engine=engine_config_from(cfg.get("engine", {})),
                       data_width=cfg.get("data_width", 64), addr_width=cfg.get("addr_width", 32),
                       epilogue_stages=cfg.get("epilogue_stages", 0))


def hex_words(values) -> str:
    """32-bit words in hex, for failure messages."""
    return " ".join(f"{int(v):08x}" for v in np.ravel(values))


# -- accumulator contents ----------------------------------------------------------------------

def accumulator_contents(rng, rows: int, cols: int, out_formats) -> np.ndarray:
    """FP32 bit patterns for the conversions' edges: zeros, infinities, NaNs with payloads,
    FP32 subnormals, values around an output format's largest finite value (overflow with and
    without saturation), around its subnormals (and underflow), exact ties of its rounding,
    ordinary values and random bits; each element aimed at one of the narrow output formats."""
    count = rows * cols
    kind = rng.integers(0, 8, count)
    sign = rng.integers(0, 2, count).astype(np.uint32) << 31
    narrow = [FORMATS[f] for f in out_formats if f != "fp32"] or [FORMATS["fp16"]]
    fmt = [narrow[i] for i in rng.integers(0, len(narrow), count)]
    top = np.array([f.max_finite for f in fmt], dtype=np.float64)
    tiny = np.array([f.min_subnormal for f in fmt], dtype=np.float64)
    values = np.select(
        [kind == 0, kind == 1, kind == 2],
        [top * 2.0 ** rng.uniform(-1, 0.05, count),       # overflow or not
         tiny * 2.0 ** rng.uniform(-3, 12, count),        # subnormal, underflow, smallest normal
         top * 2.0 ** rng.uniform(-8, -1, count)],        # made a tie below
        2.0 ** rng.uniform(-20, 20, count))              # ordinary
    with np.errstate(over="ignore"):                     # above FP32's range (bf16): inf
        bits = values.astype(np.float32).view(np.uint32)
    # a tie: the FP32 mantissa bits below the format's last one are exactly one half
    dropped = np.array([23 - f.man_bits for f in fmt], dtype=np.uint32)
    tie = (bits & ~((np.uint32(1) << dropped) - 1)) | (np.uint32(1) << (dropped - 1))
    bits = np.where(kind == 2, tie, bits) | sign
    special = np.array([0x0000_0000, 0x7F80_0000, 0x7FC0_0000, 0x7F80_0001, 0x7FFF_FFFF,
                        0x0000_0001, 0x007F_FFFF, 0x0040_0000], dtype=np.uint32)
    bits = np.where(kind == 3, special[rng.integers(0, len(special), count)] | sign, bits)
    bits = np.where(kind >= 6, rng.integers(0, 1 << 32, count, dtype=np.uint64)
                    .astype(np.uint32), bits)
    return bits.astype(np.uint32).reshape(rows, cols)


# -- stores ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Store:
    """One command and the beats it must produce."""
    fmt: str
    saturate: int
    rows: int
    cols: int
    mem_row: int
    mem_col: int
    beats: list = dataclasses.field(default_factory=list)     # (data, strobe), in order
    requests: int = 0                                          # engine reads it needs
    accepted: int | None = None
    beat_cycles: list = dataclasses.field(default_factory=list)
    done: int | None = None
    # cycles (while it runs) of the Storer's read requests, the engine's accepts and answers
    asking: list = dataclasses.field(default_factory=list)
    reads: list = dataclasses.field(default_factory=list)
    answers: list = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        return (f"STORE {self.fmt} saturate={self.saturate} rows={self.rows} cols={self.cols} "
                f"mem_row={self.mem_row} mem_col={self.mem_col}")


def expected_beats(model: AcceleratorModel, config: AccelConfig, store: Store, rng) -> list:
    """The ``(data, strobe)`` beats of ``store``: the model runs the ``STORE`` on two DRAM images
    whose backgrounds are each other's complement, so a byte it writes is the one byte that is
    the same in both (its strobe); the data of a byte not written is 0, as the hardware sends
    it."""
    bb = config.beat_bytes
    row_beats = -(-store.cols * FORMAT_BYTES[store.fmt] // bb)
    stride = row_beats * bb
    program = assemble([
        (Opcode.STORE, dict(target=Target.ACC, dram_format=FORMAT_BITS.index(store.fmt),
                            saturate=store.saturate, dram_addr=DATA, dram_stride=stride,
                            rows=store.rows, cols=store.cols, mem_row=store.mem_row,
                            mem_col=store.mem_col)),
        (Opcode.DONE, {})])
    background = np.frombuffer(rng.bytes(store.rows * stride), dtype=np.uint8)
    images = []
    for fill in (background, ~background):
        dram = bytearray(DATA) + bytearray(fill.tobytes())
        dram[PROGRAM:PROGRAM + len(program)] = program
        result = model.run(dram, PROGRAM, 2)
        if result.error != AccelError.NONE:
            raise AssertionError(f"the model rejects {store.describe()}: {result.error.name}")
        images.append(np.frombuffer(bytes(dram[DATA:]), dtype=np.uint8))
    written = images[0] == images[1]
    data = np.where(written, images[0], 0).reshape(-1, bb)
    return [(int.from_bytes(word.tobytes(), "little"),
             int.from_bytes(np.packbits(mask, bitorder="little").tobytes(), "little"))
            for word, mask in zip(data, written.reshape(-1, bb))]


#: Host writes the bench spends at most on the accumulator memory's contents; a bigger memory
#: gets its first and last rows (:func:`filled_rows`), the rest stays 0 (in both the engine
#: and the model: their state after reset)
FILL_WRITES = 2048
TOP_ROWS, BOTTOM_ROWS = 12, 4


def filled_rows(config: AccelConfig) -> list[tuple[int, int]]:
    """The bands ``(first, end)`` of accumulator rows the bench fills."""
    engine = config.engine
    writes_per_row = -(-engine.acc_width // engine.array.cols)
    if engine.acc_rows * writes_per_row <= FILL_WRITES or \
            engine.acc_rows <= TOP_ROWS + BOTTOM_ROWS:
        return [(0, engine.acc_rows)]
    return [(0, TOP_ROWS), (engine.acc_rows - BOTTOM_ROWS, engine.acc_rows)]


def random_store(rng, config: AccelConfig, fmt: str, saturate: int) -> tuple[int, ...]:
    """(rows, cols, mem_row, mem_col) inside the accumulator memory: mostly short rows (a few
    beats), sometimes long ones, a quarter at the memory's right edge; most inside the rows
    the bench filled."""
    engine = config.engine
    per_beat = config.beat_bytes // FORMAT_BYTES[fmt]
    if rng.random() < 0.2:
        cols = int(rng.integers(1, engine.acc_width + 1))
    else:
        cols = int(rng.integers(1, min(engine.acc_width, 3 * per_beat) + 1))
    rows = int(rng.integers(1, min(engine.acc_rows, 5) + 1))
    mem_col = engine.acc_width - cols if rng.random() < 0.25 else \
        int(rng.integers(0, engine.acc_width - cols + 1))
    bands = [(first, end) for first, end in filled_rows(config) if end - first >= rows]
    if bands and rng.random() < 0.85:
        first, end = bands[rng.integers(0, len(bands))]
        mem_row = int(rng.integers(first, end - rows + 1))
    else:
        mem_row = int(rng.integers(0, engine.acc_rows - rows + 1))
    return rows, cols, mem_row, mem_col


# -- the bench ---------------------------------------------------------------------------------

class Bench:
    """Drivers, the golden model and the checks; :meth:`run` runs what was queued."""

    def __init__(self, dut, rng, *, p_idle=0.2, p_stall=0.25):
        self.dut, self.rng = dut, rng
        self.config = config = accel_config_of_case()
        self.model = AcceleratorModel(config)
        cols = config.engine.array.cols
        self.write_layout = fields(host_write_layout(cols, 32))
        self.beat_fields = fields(WriteBeat(config.data_width))
        self.geometries = {size: StoreGeometry(size=size, read_width=cols,
                                               beat_bytes=config.beat_bytes)
                           for size in set(FORMAT_BYTES.values())}
        self.wr_acc = Source(dut, "wr_acc", rng, p_idle)
        self.cmd = Source(dut, "cmd", rng, p_idle)
        self.write_data = Sink(dut, "write_data", rng, p_stall)
        self.cycle = 0
        self.stores: deque[Store] = deque()          # queued or running
        self.finished: list[Store] = []

    async def start(self):
        await start_clock(self.dut)
        await reset(self.dut)

    def fill(self, contents: np.ndarray, first_row: int = 0):
        """Rows of FP32 bit patterns from ``first_row`` on into the engine's accumulator
        memory (through ``wr_acc``) and the model's (a ``LOAD`` of the same words)."""
        config = self.config
        lanes = config.engine.array.cols
        rows, width = contents.shape
        data_offset = self.write_layout["data"][0]
        for r in range(rows):
            for col in range(0, width, lanes):
                word = pack(host_write_layout(lanes, 32), row=first_row + r, col=col,
                            mask=(1 << lanes) - 1)[0]
                for lane, value in enumerate(contents[r, col:col + lanes]):
                    word |= int(value) << (data_offset + 32 * lane)
                self.wr_acc.queue.append(word)
        stride = -(-width * 4 // config.beat_bytes) * config.beat_bytes
        program = assemble([
            (Opcode.LOAD, dict(target=Target.ACC, dram_format=FORMAT_BITS.index("fp32"),
                               dram_addr=DATA, dram_stride=stride, rows=rows, cols=width,
                               mem_row=first_row)),
            (Opcode.DONE, {})])
        dram = bytearray(DATA + rows * stride)
        dram[PROGRAM:PROGRAM + len(program)] = program
        write_matrix(dram, DATA, stride, contents, "fp32")
        result = self.model.run(dram, PROGRAM, 2)
        if result.error != AccelError.NONE:
            raise AssertionError(f"the model's LOAD of the contents failed: {result.error.name}")

    def store(self, fmt: str, saturate: int, rows: int, cols: int, mem_row: int,
              mem_col: int) -> Store:
        if self.wr_acc.queue:
            raise ValueError("run the contents in before queueing a store (it would read the "
                             "old ones)")
        s = Store(fmt, saturate, rows, cols, mem_row, mem_col)
        s.beats = expected_beats(self.model, self.config, s, self.rng)
        s.requests = rows * self.geometries[FORMAT_BYTES[fmt]].requests(cols)
        self.cmd.queue.append(pack(StoreCommand, dram_format=FORMAT_BITS.index(fmt),
                                   saturate=saturate, rows=rows, cols=cols, mem_row=mem_row,
                                   mem_col=mem_col)[0])
        self.stores.append(s)
        return s

    async def run(self) -> int:
        """Run until the queued contents are written and every queued store is done; returns
        the cycles taken."""
        dut = self.dut
        start, quiet = self.cycle, 0
        while self.stores or self.wr_acc.queue:
            await self._step()
            quiet = 0 if self._sample() else quiet + 1
            if quiet > WATCHDOG:
                raise AssertionError(f"no progress for {WATCHDOG} cycles; stores not done: "
                                     f"{[s.describe() for s in self.stores]}")
        for _ in range(8):          # nothing more may happen
            await self._step()
            if self._sample():
                raise AssertionError("activity after every store was done")
        dut._log.info("%d stores done in %d cycles", len(self.finished), self.cycle - start)
        return self.cycle - start

    async def _step(self):
        await FallingEdge(self.dut.clk)
        for port in (self.wr_acc, self.cmd, self.write_data):
            port.drive()
        await ReadOnly()

    def _sample(self) -> bool:
        dut, cycle = self.dut, self.cycle
        self.cycle += 1
        filled = self.wr_acc.sample()
        accepted = self.cmd.sample()
        beat = self.write_data.sample()
        done = bool(dut.done.value)
        if int(dut.engine_error.value):
            raise AssertionError(f"cycle {cycle}: the engine raised an error "
                                 f"({self.stores[0].describe() if self.stores else 'idle'})")
        running = self.stores[0] if self.stores and self.stores[0].accepted is not None else None
        activity = [int(dut.asking.value), int(dut.reading.value), int(dut.answered.value)]
        if running is not None:
            for cycles, active in zip((running.asking, running.reads, running.answers), activity):
                if active:
                    cycles.append(cycle)
        elif any(activity):
            raise AssertionError(f"cycle {cycle}: engine read traffic (request, accept, answer: "
                                 f"{activity}) with no store running")
        if beat is not None:
            self._check_beat(running, beat)
        if done:
            if running is None or len(running.beat_cycles) != len(running.beats):
                raise AssertionError(f"cycle {cycle}: done pulse for "
                                     f"{running.describe() if running else 'no store'} after "
                                     f"{len(running.beat_cycles) if running else 0} beats")
            if cycle != running.beat_cycles[-1] + 1:
                raise AssertionError(f"cycle {cycle}: done {cycle - running.beat_cycles[-1]} "
                                     f"cycles after the last beat of {running.describe()}")
            running.done = cycle
            self.finished.append(self.stores.popleft())
            running = None
        if accepted:
            if running is not None:
                raise AssertionError(f"cycle {cycle}: a command was accepted while "
                                     f"{running.describe()} runs")
            self.stores[0].accepted = cycle
        return filled or accepted or beat is not None or done or any(activity)

    def _check_beat(self, store: Store | None, word: int):
        cycle = self.cycle - 1
        if store is None or len(store.beat_cycles) == len(store.beats):
            raise AssertionError(f"cycle {cycle}: write_data beat 0x{word:x} with no beat "
                                 f"expected")
        k = len(store.beat_cycles)
        offset, width = self.beat_fields["data"]
        got = ((word >> offset) & ((1 << width) - 1),
               (word >> self.beat_fields["strobe"][0]) & ((1 << self.config.beat_bytes) - 1))
        want = store.beats[k]
        if got != want:
            row_beats = len(store.beats) // store.rows
            r, b = divmod(k, row_beats)
            size = FORMAT_BYTES[store.fmt]
            per_beat = self.config.beat_bytes // size
            first = store.mem_col + b * per_beat
            source = self.model.acc[store.mem_row + r, first:first + per_beat]
            raise AssertionError(
                f"cycle {cycle}: beat {k} (row {r}, beat {b}) of {store.describe()}: "
                f"rtl data=0x{got[0]:0{2 * self.config.beat_bytes}x} strobe=0x{got[1]:x}, "
                f"golden data=0x{want[0]:0{2 * self.config.beat_bytes}x} strobe=0x{want[1]:x}; "
                f"FP32 inputs from column {first}: {hex_words(source)}")
        store.beat_cycles.append(cycle)


def engine_store_cycles(reads: int, latency: int) -> int:
    """Cycles from a store's accept to its ``done`` on the ``GemmEngine``, with no idle or
    backpressure: read ``k`` is requested ``1 + k`` cycles after the accept, plus one cycle per
    ``READ_BUFFER`` reads while the engine's count of reads in flight is full (it drops the
    cycle after an answer is taken: ``READ_BUFFER`` reads per ``latency + 1`` cycles); the last
    answer ``latency`` cycles after the last read, its beat one cycle later, ``done`` one more."""
    buffer = GemmEngine.READ_BUFFER
    stall = max(0, latency + 1 - buffer)
    last_read = 1 + (reads - 1) + (reads - 1) // buffer * stall
    return last_read + latency + 2


def beat_ends(geometry: StoreGeometry, rows: int, cols: int) -> list[int]:
    """Indices, among a store's engine reads, of the read that completes each beat."""
    ends, reads = [], 0
    for _ in range(rows):
        for start in range(0, cols, geometry.per_beat):
            reads += -(-min(geometry.per_beat, cols - start) // geometry.per_read)
            ends.append(reads - 1)
    return ends


def _stores_for_every_format(rng, bench: Bench, count: int):
    config = bench.config
    for k in range(count):
        fmt = config.engine.out_formats[k % len(config.engine.out_formats)]
        saturate = (k // len(config.engine.out_formats)) % 2
        bench.store(fmt, saturate, *random_store(rng, config, fmt, saturate))


# -- tests -------------------------------------------------------------------------------------

async def _filled_bench(dut, salt, **kwargs) -> tuple[Bench, np.random.Generator]:
    rng = make_rng(dut, salt=salt)
    bench = Bench(dut, rng, **kwargs)
    await bench.start()
    engine = bench.config.engine
    for first, end in filled_rows(bench.config):
        bench.fill(accumulator_contents(rng, end - first, engine.acc_width, engine.out_formats),
                   first)
    await bench.run()
    return bench, rng


@cocotb.test()
async def random_stores(dut):
    """Random regions in every output format, saturate 0 and 1, with random idle cycles on the
    command and backpressure on ``write_data``."""
    bench, rng = await _filled_bench(dut, salt=1)
    count = int(case().get("stores", 24))
    _stores_for_every_format(rng, bench, count)
    cycles = await bench.run()
    record_metrics(test="random_stores", stores=count, cycles=cycles,
                   beats=sum(len(s.beats) for s in bench.finished))


@cocotb.test()
async def edge_stores(dut):
    """Directed shapes per format: one element, one beat exactly, one element more or less
    than a beat or a read, whole rows of the memory, the right and bottom edges, a store of
    every row."""
    bench, rng = await _filled_bench(dut, salt=2)
    engine, bb = bench.config.engine, bench.config.beat_bytes
    width, height, lanes = engine.acc_width, engine.acc_rows, engine.array.cols
    for k, fmt in enumerate(engine.out_formats):
        per_beat = bb // FORMAT_BYTES[fmt]
        for cols in sorted({1, per_beat - 1 or 1, per_beat, per_beat + 1, lanes - 1 or 1,
                            lanes, lanes + 1, width}):
            cols = min(cols, width)
            bench.store(fmt, k % 2, 2, cols, 1, 0)
            bench.store(fmt, 1 - k % 2, 1, cols, height - 1, width - cols)
        cols = min(width, 2 * per_beat + 1)
        bench.store(fmt, 1, height, cols, 0, min(width // 2 - 1, width - cols))
    await bench.run()


@cocotb.test()
async def throughput(dut):
    """Per format, stores with no idle cycles and no backpressure: a few long rows, then short
    rows. The Storer must never be the limit: its first read request the cycle after the
    accept, a request in every cycle until the last, every read it needs and no other, each
    beat the cycle after the engine's answer that completes it, ``done`` the cycle after the
    last beat; and with a beat per read, no cycle without a beat but those the engine's answers
    leave. The cycles from accept to ``done`` must be :func:`engine_store_cycles`. Records
    beats per cycle and the engine's read rate and latency."""
    bench, rng = await _filled_bench(dut, salt=3, p_idle=0, p_stall=0)
    engine = bench.config.engine
    for fmt in engine.out_formats:
        geometry = bench.geometries[FORMAT_BYTES[fmt]]
        for shape, rows, cols in (("long", min(engine.acc_rows, 4), engine.acc_width),
                                  ("short", min(engine.acc_rows, 16), geometry.per_beat + 1)):
            s = bench.store(fmt, 0, rows, cols, 0, engine.acc_width - cols)
            await bench.run()
            elapsed = s.done - s.accepted
            beats, reads = len(s.beats), len(s.reads)
            gaps = s.beat_cycles[-1] - s.beat_cycles[0] + 1 - beats
            asked = s.asking[-1] - s.asking[0] + 1
            latency = s.answers[0] - s.reads[0]
            dut._log.info("%s %s (%d x %d): %d beats, %d reads in %d cycles from accept to "
                          "done: %.3f beats/cycle, %.3f reads/cycle; engine latency %d; %d "
                          "idle cycles between the first and last beat", fmt, shape, rows,
                          cols, beats, reads, elapsed, beats / elapsed, reads / asked, latency,
                          gaps)
            record_metrics(test="throughput", fmt=fmt, shape=shape, rows=rows, cols=cols,
                           beats=beats, reads=reads, cycles=elapsed,
                           beats_per_cycle=beats / elapsed, reads_per_cycle=reads / asked,
                           engine_latency=latency, idle_cycles=gaps,
                           per_beat=geometry.per_beat, per_read=geometry.per_read)
            problems = []
            if reads != s.requests or len(s.answers) != s.requests:
                problems.append(f"{reads} reads and {len(s.answers)} answers, expected "
                                f"{s.requests}")
            if s.asking[0] != s.accepted + 1 or len(s.asking) != asked or \
                    s.asking[-1] != s.reads[-1]:
                problems.append("read requests not in every cycle from the one after the "
                                "accept to the last read")
            ends = beat_ends(geometry, rows, cols)
            if len(s.answers) == s.requests and \
                    [s.answers[i] + 1 for i in ends] != s.beat_cycles:
                problems.append("a beat not the cycle after the answer that completes it")
            if elapsed != engine_store_cycles(s.requests, latency):
                problems.append(f"{elapsed} cycles from accept to done, the engine's read port "
                                f"(latency {latency}) allows "
                                f"{engine_store_cycles(s.requests, latency)}")
            answer_gaps = s.answers[-1] - s.answers[0] + 1 - len(s.answers)
            if geometry.reads == 1 and gaps != answer_gaps:
                problems.append(f"{gaps} idle cycles between beats, the engine's answers "
                                f"leave {answer_gaps}")
            if problems:
                raise AssertionError(f"{s.describe()}: {'; '.join(problems)}")
