"""Bench: the load path (hw/accel/loader.py) against the golden model's ``LOAD``.

Layers:

* stimulus: LOAD commands (random or directed) over a DRAM image whose rows hold values drawn
  for the command's formats (:func:`fp32_values`: NaN, infinities, subnormals, values that
  overflow the target, rounding ties);
* plan (:func:`plan_load`): the golden model (:class:`sim.accel_model.AcceleratorModel`) runs the
  same ``LOAD`` on the same image; the plan keeps the beats the DMA delivers
  (:func:`sim.accel_spec.dma_bursts`), the write words the command must produce (port, row,
  column, mask) and the model's memory region after it;
* drivers: a command source and a beat source with random idle cycles, a sink per write port
  with random backpressure (:class:`Source`, :class:`Sink`);
* checker (:class:`Bench`): every write word in order against the plan, applied to a shadow of
  the engine's memories; the ``done`` pulse the cycle after the last word; the shadow's region
  against the model's after each command and all memories against the model at the end;
  a beat taken only after its command; nothing moves after the last command.

One loop drives the inputs at the falling edge and samples at ``ReadOnly``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.triggers import FallingEdge, ReadOnly

from hw.accel.dma import ReadBeat
from hw.accel.loader import LoadCommand
from hw.engine.commands import host_write_layout, operand_write_layout
from hw.fp.operand import Operand
from sim.accel_model import AcceleratorModel, assemble
from sim.accel_spec import (FORMAT_BITS, FORMAT_BYTES, AccelError, Opcode, Target, dma_bursts,
                             read_rows, repeats_row)
from sim.config import AccelConfig, accel_config_from
from sim.formats import FORMATS, FP32
from sim.numerics import convert
from tb.harness import case, make_rng, record_metrics, reset, start_clock
from tb.packing import fields, pack

#: Cycles without a handshake or a done pulse while work is pending before the bench fails
WATCHDOG = 200
#: The program slot of the model's runs (the LOAD instruction) and where data may start
PROGRAM_BASE = 0
DATA_BASE = 0x1000
DRAM_BYTES = 1 << 18
PORTS = {Target.A: "wr_a", Target.B: "wr_b", Target.ACC: "wr_acc"}


def config_of(data: dict) -> AccelConfig:
    """The :class:`AccelConfig` a runner passed (``case()["config"]``)."""
    return accel_config_from(data)


def _code(name: str) -> int:
    return FORMAT_BITS.index(name)


# -- commands and their plans -------------------------------------------------------------------

def format_pairs(config: AccelConfig) -> list[tuple[Target, str, str]]:
    """Every (target, DRAM format, operand format) a LOAD may use on ``config``."""
    array = config.engine.array
    pairs = []
    for target, takes in ((Target.A, array.a_formats), (Target.B, array.b_formats)):
        for fmt in takes:
            pairs += [(target, fmt, fmt), (target, "fp32", fmt)]
    return pairs + [(Target.ACC, "fp32", "fp32")]


def lanes_of(config: AccelConfig, target: Target) -> int:
    array = config.engine.array
    return array.rows if target == Target.A else array.cols


def memory_shape(config: AccelConfig, target: Target) -> tuple[int, int]:
    engine = config.engine
    return {Target.A: (engine.a_rows, engine.spad_width), Target.B: (engine.b_rows, engine.spad_width),
            Target.ACC: (engine.acc_rows, engine.acc_width)}[target]


@dataclasses.dataclass
class Load:
    """One LOAD: its fields, the beats the DMA delivers, the words it must write, the model's
    region after it, and what the bench saw."""
    index: int
    fields: dict
    dram_format: str
    operand_format: str
    raw: np.ndarray                 # the DRAM elements read, rows x cols (bit patterns)
    beats: list[int]                # ReadBeat words
    words: list[tuple]              # (port, row, col, mask) in order
    expected_bits: np.ndarray       # the model's region after the LOAD
    expected_tags: np.ndarray | None
    accepted: int | None = None
    words_taken: int = 0
    last_word: int | None = None
    done: int | None = None
    beat_cycles: list = dataclasses.field(default_factory=list)
    word_cycles: list = dataclasses.field(default_factory=list)

    @property
    def target(self) -> Target:
        return Target(self.fields["target"])

    def describe(self) -> str:
        f = self.fields
        return (f"LOAD #{self.index} target={self.target.name} dram_format={self.dram_format} "
                f"operand_format={self.operand_format} saturate={f['saturate']} "
                f"rows=0x{f['rows']:x} cols=0x{f['cols']:x} mem_row=0x{f['mem_row']:x} "
                f"mem_col=0x{f['mem_col']:x} dram_addr=0x{f['dram_addr']:x} "
                f"dram_stride=0x{f['dram_stride']:x} copies={f['copies']} "
                f"copy_cols=0x{f['copy_cols']:x}")


def fp32_values(rng, n: int, target: str) -> np.ndarray:
    """``n`` FP32 bit patterns for a conversion to ``target``: uniform bits, specials (zeros,
    infinities, NaNs with payloads, FP32 subnormals, the largest finite), the target's own
    values nudged around their rounding points (ties included), values just above the target's
    largest finite value and in its subnormal range."""
    fmt = FORMATS[target]
    specials = np.array([0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0x7F80_0001,
                         0xFFFF_FFFF, 0x0000_0001, 0x807F_FFFF, 0x7F7F_FFFF, 0xFF7F_FFFF],
                        dtype=np.uint32)
    kind = rng.integers(0, 6, n)
    out = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    out = np.where(kind == 1, rng.choice(specials, n), out)
    codes = rng.integers(0, 1 << fmt.width, n).astype(fmt.bits_dtype)
    exact = convert(fmt, FP32, codes).astype(np.int64)
    half = 1 << (FP32.man_bits - fmt.man_bits - 1)
    nudge = rng.choice(np.array([-1, 0, 1, half - 1, half, half + 1, -half]), n)
    near = np.clip(exact + nudge, 0, (1 << 32) - 1).astype(np.uint32)
    out = np.where(kind == 2, near, out)
    sign = rng.integers(0, 2, n).astype(np.uint32) << np.uint32(31)
    mantissa = rng.integers(0, 1 << FP32.man_bits, n).astype(np.uint32)
    above = rng.integers(fmt.emax, fmt.emax + 3, n) + FP32.bias
    out = np.where(kind == 3, sign | (above.astype(np.uint32) << np.uint32(23)) | mantissa, out)
    below = rng.integers(fmt.emin - fmt.man_bits - 2, fmt.emin + 1, n) + FP32.bias
    out = np.where(kind == 4, sign | (below.astype(np.uint32) << np.uint32(23)) | mantissa, out)
    return out


def element_values(rng, shape, dram_format: str, operand_format: str) -> np.ndarray:
    """Bit patterns of a LOAD's DRAM elements: every code of a copied format equally likely;
    :func:`fp32_values` for a conversion (ACC: toward fp16)."""
    n = int(np.prod(shape))
    if dram_format == "fp32":
        target = operand_format if operand_format != "fp32" else "fp16"
        return fp32_values(rng, n, target).reshape(shape)
    fmt = FORMATS[dram_format]
    return rng.integers(0, 1 << fmt.width, n).astype(fmt.bits_dtype).reshape(shape)


def plan_load(config: AccelConfig, model: AcceleratorModel, dram: bytearray, rng, index: int,
              target: Target, dram_format: str, operand_format: str, *, rows: int, cols: int,
              mem_row: int, mem_col: int, saturate: int, stride_beats: int | None = None,
              copies: int = 1, copy_cols: int = 0) -> Load:
    """Write the LOAD's DRAM rows, run it on the model and plan what the loader must do."""
    bb = config.beat_bytes
    size = FORMAT_BYTES[dram_format]
    row_beats = -(-cols * size // bb)
    if stride_beats is None:
        stride_beats = row_beats + int(rng.integers(0, 3))
    stride = stride_beats * bb
    extent = (rows - 1) * stride + row_beats * bb
    addr = DATA_BASE + bb * int(rng.integers(0, (DRAM_BYTES - DATA_BASE - extent) // bb))
    # whole beats of random bytes first (the bytes past cols must be dropped), then the rows
    # in order, so overlapping rows (a stride shorter than a row) read what the last wrote
    for r in range(rows):
        start = addr + r * stride
        dram[start:start + row_beats * bb] = rng.bytes(row_beats * bb)
    raw = element_values(rng, (rows, cols), dram_format, operand_format)
    for r in range(rows):
        start = addr + r * stride
        dram[start:start + cols * size] = raw[r].astype(f"<u{size}").tobytes()
    raw = np.stack([np.frombuffer(bytes(dram[addr + r * stride:addr + r * stride + cols * size]),
                                  dtype=f"<u{size}") for r in range(rows)])
    fields_ = dict(target=int(target), dram_format=_code(dram_format),
                   operand_format=_code(operand_format) if target != Target.ACC
                   else int(rng.integers(0, len(FORMAT_BITS))),
                   saturate=saturate, dram_stride=stride, dram_addr=addr, rows=rows, cols=cols,
                   mem_row=mem_row, mem_col=mem_col, copies=copies, copy_cols=copy_cols)
    dram[PROGRAM_BASE:PROGRAM_BASE + 32] = assemble([(Opcode.LOAD, fields_)])
    result = model.run(dram, prog_base=PROGRAM_BASE, prog_len=1)
    if result.error != AccelError.NONE:
        raise AssertionError(f"the bench made a LOAD the model rejects ({result.error.name}): "
                             f"{fields_}")
    region = _region(fields_)
    if target == Target.ACC:
        bits, tags = model.acc[region].copy(), None
    else:
        name = "a" if target == Target.A else "b"
        bits = getattr(model, f"{name}_bits")[region].copy()
        tags = getattr(model, f"{name}_tags")[region].copy()

    beat_layout = fields(ReadBeat(config.data_width))
    last_bit = beat_layout["last"][0]
    # a LOAD that repeats its row (dram_stride 0, one copy) gets that row's beats only
    read = read_rows(Opcode.LOAD, fields_)
    addresses = [a + k * bb for a, n in dma_bursts(addr, row_beats * bb, read, stride, bb,
                                                   config.addr_width) for k in range(n)]
    beats = [int.from_bytes(dram[a:a + bb], "little") | (int(k == len(addresses) - 1) << last_bit)
             for k, a in enumerate(addresses)]
    lanes = lanes_of(config, target)
    # per word, its copies k in order: memory row mem_row + r - k when 0 <= r - k <= rows - K;
    # repeating, each word of the one row into memory rows mem_row .. mem_row + rows - 1
    if repeats_row(Opcode.LOAD, fields_):
        words = [(PORTS[target], mem_row + k, mem_col + c0, (1 << min(lanes, cols - c0)) - 1)
                 for c0 in range(0, cols, lanes) for k in range(rows)]
    else:
        words = [(PORTS[target], mem_row + r - k, mem_col + c0 + k * copy_cols,
                  (1 << min(lanes, cols - c0)) - 1)
                 for r in range(rows) for c0 in range(0, cols, lanes) for k in range(copies)
                 if 0 <= r - k <= rows - copies]
    return Load(index, fields_, dram_format, operand_format if target != Target.ACC else "fp32",
                raw, beats, words, bits, tags)


def _region(f: dict) -> tuple:
    """The memory region a LOAD writes (its copies' columns and the gaps between them)."""
    copies = max(1, f.get("copies", 0))
    return (slice(f["mem_row"], f["mem_row"] + f["rows"] - copies + 1),
            slice(f["mem_col"], f["mem_col"] + (copies - 1) * f.get("copy_cols", 0) + f["cols"]))


def random_shape(rng, config: AccelConfig, target: Target, dram_format: str) -> dict:
    """Random size and position: mostly short rows (a few words and beats, sizes that are not
    multiples of the lanes or of the elements per beat), sometimes up to the memory's edge."""
    height, width = memory_shape(config, target)
    lanes = lanes_of(config, target)
    per_beat = config.beat_bytes // FORMAT_BYTES[dram_format]
    rows = int(rng.integers(1, min(height, 5) + 1))
    longest = min(width, 3 * max(lanes, per_beat) + 3)
    cols = int(rng.integers(1, longest + 1))
    mem_row = int(rng.integers(0, height - rows + 1))
    mem_col = width - cols if rng.random() < 0.2 else int(rng.integers(0, width - cols + 1))
    if rng.random() < 0.15:
        mem_row = height - rows
    shape = dict(rows=rows, cols=cols, mem_row=mem_row, mem_col=mem_col)
    if rng.random() < 0.15:     # one DRAM row into many memory rows (a bias: dram_stride 0)
        rows = int(rng.integers(1, min(height, 24) + 1))
        shape.update(rows=rows, stride_beats=0, mem_row=int(rng.integers(0, height - rows + 1)))
    elif rng.random() < 0.3:    # a sliding window of K copies (an im2col row's kernel taps)
        copies = int(rng.integers(2, 4))
        copy_cols = cols + int(rng.integers(0, 3))
        rows = max(rows, copies)
        if (copies - 1) * copy_cols + cols <= width and rows - copies + 1 <= height:
            shape.update(rows=rows, copies=copies, copy_cols=copy_cols,
                         mem_row=int(rng.integers(0, height - (rows - copies + 1) + 1)),
                         mem_col=int(rng.integers(0, width - (copies - 1) * copy_cols
                                                  - cols + 1)))
    return shape


# -- port drivers ---------------------------------------------------------------------------------

def _pattern(rng, probability: float):
    """An endless on/off pattern: True with ``probability``."""
    return itertools.cycle((rng.random(1021) < probability).tolist())


class Source:
    """Offers queued words on a sink port; between words it idles with probability
    ``p_idle``; an offered word stays until taken."""

    def __init__(self, dut, name: str, rng, p_idle: float):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.idle = _pattern(rng, p_idle)
        self.queue: deque = deque()
        self.offering = False
        self.valid.value = 0

    def drive(self):
        pause = next(self.idle)
        if not self.offering and self.queue and not pause:
            self.payload.value = self.queue[0]
            self.offering = True
        self.valid.value = int(self.offering)

    def sample(self):
        """The word taken this cycle, or None."""
        if self.offering and self.ready.value:
            self.offering = False
            return self.queue.popleft()
        return None

    @property
    def stalled(self) -> bool:
        """Offered and not taken this cycle."""
        return self.offering and not self.ready.value


class Sink:
    """Takes words from a source port, holding ``ready`` low with probability ``p_stall``;
    a word offered and not taken must stay the same until taken."""

    def __init__(self, dut, name: str, rng, p_stall: float):
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.stall = _pattern(rng, p_stall)
        self.held = None
        self.accepting = False
        self.ready.value = 0

    def drive(self):
        self.accepting = not next(self.stall)
        self.ready.value = int(self.accepting)

    def sample(self):
        """The word taken this cycle, or None."""
        word = int(self.payload.value) if self.valid.value else None
        if self.held is not None and word != self.held:
            raise AssertionError(f"{self.name}: word 0x{self.held:x} offered but not taken "
                                 f"changed to {'nothing' if word is None else hex(word)}")
        self.held = word if word is not None and not self.accepting else None
        return word if self.accepting else None


# -- the checker ----------------------------------------------------------------------------------

class WordFormat:
    """Field offsets of a write port's word, from the hardware's layout."""

    def __init__(self, layout, element):
        self.fields = fields(layout)
        self.element_bits = data.Layout.cast(element).size if element is Operand else element
        self.lanes = data.Layout.cast(layout)["data"].shape.length
        self.operand = element is Operand
        if self.operand:
            self.bits, self.tag = fields(Operand)["bits"], fields(Operand)["fmt"]

    def field(self, word: int, name: str) -> int:
        offset, width = self.fields[name]
        return (word >> offset) & ((1 << width) - 1)

    def lanes_of(self, word: int) -> list[tuple[int, int | None]]:
        """(bits, tag) of every lane (tag None for FP32 words)."""
        payload = self.field(word, "data")
        out = []
        for lane in range(self.lanes):
            element = (payload >> (lane * self.element_bits)) & ((1 << self.element_bits) - 1)
            if self.operand:
                out.append(((element >> self.bits[0]) & ((1 << self.bits[1]) - 1),
                            (element >> self.tag[0]) & ((1 << self.tag[1]) - 1)))
            else:
                out.append((element, None))
        return out


class Bench:
    """Drivers, shadow memories and checks; :meth:`run` executes the planned LOADs."""

    def __init__(self, dut, rng, *, p_idle=0.3, p_stall=0.3):
        self.dut, self.rng = dut, rng
        self.config = config = config_of(case()["config"])
        self.model = AcceleratorModel(config)
        self.dram = bytearray(DRAM_BYTES)
        self.cmd = Source(dut, "cmd", rng, p_idle)
        self.read_data = Source(dut, "read_data", rng, p_idle)
        self.sinks = {name: Sink(dut, name, rng, p_stall) for name in PORTS.values()}
        array = config.engine.array
        self.formats = {"wr_a": WordFormat(operand_write_layout(array.rows), Operand),
                        "wr_b": WordFormat(operand_write_layout(array.cols), Operand),
                        "wr_acc": WordFormat(host_write_layout(array.cols, 32), 32)}
        engine = config.engine
        self.shadow = {
            Target.A: (np.zeros((engine.a_rows, engine.spad_width), np.uint16),
                       np.zeros((engine.a_rows, engine.spad_width), np.uint8)),
            Target.B: (np.zeros((engine.b_rows, engine.spad_width), np.uint16),
                       np.zeros((engine.b_rows, engine.spad_width), np.uint8)),
            Target.ACC: (np.zeros((engine.acc_rows, engine.acc_width), np.uint32), None),
        }
        self.loads: list[Load] = []
        self.pending: deque[Load] = deque()      # planned, not done
        self.beat_owner: deque[Load] = deque()   # the LOAD of each queued beat
        self.cycle = 0
        self.count = 0

    async def start(self):
        await start_clock(self.dut)
        await reset(self.dut)

    def load(self, target, dram_format, operand_format, **shape) -> Load:
        """Plan a LOAD and queue its command and beats."""
        saturate = shape.pop("saturate", int(self.rng.integers(0, 2)))
        t = plan_load(self.config, self.model, self.dram, self.rng, self.count, target,
                      dram_format, operand_format, saturate=saturate, **shape)
        self.count += 1
        self.loads.append(t)
        self.pending.append(t)
        self.cmd.queue.append(pack(LoadCommand, repeat=int(repeats_row(Opcode.LOAD, t.fields)),
                                   **{name: t.fields[name] for name in (
                                       "target", "dram_format", "operand_format", "saturate",
                                       "rows", "cols", "mem_row", "mem_col", "copies",
                                       "copy_cols")})[0])
        self.read_data.queue.extend(t.beats)
        self.beat_owner.extend([t] * len(t.beats))
        return t

    async def run(self) -> int:
        """Run until every planned LOAD is done; returns the cycles taken."""
        start, quiet = self.cycle, 0
        while self.pending:
            progress = await self._cycle()
            quiet = 0 if progress else quiet + 1
            if quiet > WATCHDOG:
                raise AssertionError(
                    f"no progress for {WATCHDOG} cycles: {self.pending[0].describe()} has "
                    f"{self.pending[0].words_taken} of {len(self.pending[0].words)} words, "
                    f"{len(self.read_data.queue)} beats not taken")
        for _ in range(8):           # nothing more may happen
            if await self._cycle():
                raise AssertionError(f"cycle {self.cycle}: activity after every LOAD was done")
        return self.cycle - start

    async def _cycle(self) -> bool:
        dut = self.dut
        await FallingEdge(dut.clk)
        for port in (self.cmd, self.read_data, *self.sinks.values()):
            port.drive()
        await ReadOnly()
        progress = False
        if self.cmd.sample() is not None:
            owner = next(t for t in self.loads if t.accepted is None)
            owner.accepted = self.cycle
            progress = True
        beat = self.read_data.sample()
        if beat is not None:
            owner = self.beat_owner.popleft()
            if owner.accepted is None or owner.accepted >= self.cycle:
                raise AssertionError(f"cycle {self.cycle}: a beat of {owner.describe()} taken "
                                     f"before its command was accepted")
            owner.beat_cycles.append(self.cycle)
            progress = True
        for name, sink in self.sinks.items():
            word = sink.sample()
            if word is not None:
                self._check_word(name, word)
                progress = True
        if int(dut.done.value):
            self._check_done()
            progress = True
        elif (self.pending and self.pending[0].last_word is not None
              and self.pending[0].last_word < self.cycle):
            t = self.pending[0]
            raise AssertionError(f"cycle {self.cycle}: no done pulse for {t.describe()}, whose "
                                 f"last word was taken in cycle {t.last_word}")
        self.cycle += 1
        return progress

    def _check_word(self, port: str, word: int):
        if not self.pending or self.pending[0].accepted is None:
            raise AssertionError(f"cycle {self.cycle}: {port} word 0x{word:x} with no LOAD "
                                 f"running")
        t = self.pending[0]
        fmt = self.formats[port]
        got = (port, fmt.field(word, "row"), fmt.field(word, "col"), fmt.field(word, "mask"))
        if t.words_taken >= len(t.words):
            raise AssertionError(f"cycle {self.cycle}: extra word {got} after the "
                                 f"{len(t.words)} words of {t.describe()}")
        want = t.words[t.words_taken]
        if got != want:
            raise AssertionError(f"cycle {self.cycle}: word {t.words_taken} of {t.describe()} "
                                 f"is (port, row, col, mask) = ({got[0]}, 0x{got[1]:x}, "
                                 f"0x{got[2]:x}, 0x{got[3]:x}); expected ({want[0]}, "
                                 f"0x{want[1]:x}, 0x{want[2]:x}, 0x{want[3]:x})")
        bits, tags = self.shadow[t.target]
        _, row, col, mask = got
        for lane, (value, tag) in enumerate(fmt.lanes_of(word)):
            if mask >> lane & 1:
                bits[row, col + lane] = value
                if tags is not None:
                    tags[row, col + lane] = tag
        t.words_taken += 1
        t.word_cycles.append(self.cycle)
        if t.words_taken == len(t.words):
            t.last_word = self.cycle

    def _check_done(self):
        if not self.pending or self.pending[0].last_word is None:
            where = self.pending[0].describe() if self.pending else "no LOAD pending"
            raise AssertionError(f"cycle {self.cycle}: done before the last word ({where})")
        t = self.pending[0]
        if self.cycle != t.last_word + 1:
            raise AssertionError(f"cycle {self.cycle}: done for {t.describe()} "
                                 f"{self.cycle - t.last_word} cycles after its last word")
        t.done = self.cycle
        self.pending.popleft()
        self._check_region(t)

    def _check_region(self, t: Load):
        region = _region(t.fields)
        bits, tags = self.shadow[t.target]
        for name, got, want in (("bits", bits[region], t.expected_bits),
                                ("tag", None if tags is None else tags[region], t.expected_tags)):
            if want is None:
                continue
            wrong = np.argwhere(got != want)
            if wrong.size:
                r, c = (int(v) for v in wrong[0])
                raise AssertionError(
                    f"{t.describe()}: element (r={r}, c={c}) of the region"
                    f" wrote {name} rtl=0x{int(got[r, c]):x} golden=0x{int(want[r, c]):x} "
                    f"({len(wrong)} elements differ)")

    def check_memories(self):
        """The shadow memories (every word applied) against the model's final state."""
        model = self.model
        for target, (bits, tags), (want_bits, want_tags) in (
                (Target.A, self.shadow[Target.A], (model.a_bits, model.a_tags)),
                (Target.B, self.shadow[Target.B], (model.b_bits, model.b_tags)),
                (Target.ACC, self.shadow[Target.ACC], (model.acc, None))):
            for name, got, want in (("bits", bits, want_bits), ("tags", tags, want_tags)):
                if want is None:
                    continue
                wrong = np.argwhere(got != want)
                if wrong.size:
                    r, c = (int(v) for v in wrong[0])
                    raise AssertionError(f"{target.name} {name} at (0x{r:x}, 0x{c:x}): shadow "
                                         f"0x{int(got[r, c]):x}, model 0x{int(want[r, c]):x} "
                                         f"({len(wrong)} differ)")


def steps(config: AccelConfig, t: Load) -> int:
    """The loader's steps for a LOAD (one per cycle when nothing pauses): a beat takes one
    step, or one per write word whose last element it holds if that is more."""
    f = t.fields
    per_beat = config.beat_bytes // FORMAT_BYTES[t.dram_format]
    lanes = lanes_of(config, t.target)
    cols = f["cols"]
    ends = [min(start + lanes, cols) - 1 for start in range(0, cols, lanes)]
    per_beat_ends = np.bincount(np.array(ends) // per_beat, minlength=-(-cols // per_beat))
    return f["rows"] * int(np.maximum(per_beat_ends, 1).sum())


# -- tests ----------------------------------------------------------------------------------------

@cocotb.test()
async def random_loads(dut):
    """Random LOADs (every target and format pair, random sizes and positions, saturating and
    not) back to back, with random idle cycles on the command and beat streams and random
    backpressure on the write ports."""
    rng = make_rng(dut, salt=1)
    bench = Bench(dut, rng)
    await bench.start()
    config = bench.config
    pairs = format_pairs(config)
    count = max(len(pairs), int(case().get("loads", 24)))
    for k in range(count):
        target, dram_format, operand_format = (pairs[k] if k < len(pairs)
                                               else pairs[int(rng.integers(0, len(pairs)))])
        bench.load(target, dram_format, operand_format,
                   **random_shape(rng, config, target, dram_format))
    cycles = await bench.run()
    bench.check_memories()
    beats = sum(len(t.beats) for t in bench.loads)
    words = sum(len(t.words) for t in bench.loads)
    dut._log.info("%d LOADs, %d beats, %d words checked in %d cycles", count, beats, words, cycles)
    record_metrics(test="random_loads", loads=count, beats=beats, words=words, cycles=cycles)


@cocotb.test()
async def edge_loads(dut):
    """Directed sizes for every format pair: one element, one lane short of, equal to and one
    past the port's lanes and the elements per beat, a full memory row, the last memory rows,
    a stride of zero (the same DRAM row again) and of one beat (overlapping rows)."""
    rng = make_rng(dut, salt=2)
    bench = Bench(dut, rng, p_idle=0.2, p_stall=0.2)
    await bench.start()
    config = bench.config
    for target, dram_format, operand_format in format_pairs(config):
        height, width = memory_shape(config, target)
        lanes = lanes_of(config, target)
        per_beat = config.beat_bytes // FORMAT_BYTES[dram_format]
        sizes = sorted(size for size in {1, lanes - 1, lanes, lanes + 1, per_beat - 1,
                                         per_beat + 1, 2 * lanes + 1, width}
                       if 0 < size <= width)
        for k, cols in enumerate(sizes):
            rows = 1 + k % 3
            bench.load(target, dram_format, operand_format, rows=rows, cols=cols,
                       mem_row=height - rows if k % 2 else 0, mem_col=width - cols,
                       saturate=k % 2)
        bench.load(target, dram_format, operand_format, rows=3, cols=lanes + 1, mem_row=0,
                   mem_col=0, saturate=1, stride_beats=0)
        bench.load(target, dram_format, operand_format, rows=2, cols=3 * per_beat, mem_row=1,
                   mem_col=1, saturate=0, stride_beats=1)
    await bench.run()
    bench.check_memories()


@cocotb.test()
async def throughput(dut):
    """Every format pair with nothing pausing: LOADs of 3 rows of ``throughput_beats`` beats
    (and of a few elements less), back to back. Checks the cycles from accept to done (:func:`steps` + 3), that ``read_data``
    is never stalled between the first and the last beat when the port's lanes are a multiple
    of the elements per beat, and that the write port takes a word every cycle when a beat
    holds at least as many elements as a word; records beats per cycle."""
    rng = make_rng(dut, salt=3)
    bench = Bench(dut, rng, p_idle=0, p_stall=0)
    await bench.start()
    config = bench.config
    row_beats = int(case().get("throughput_beats", 16))
    loads = []
    for target, dram_format, operand_format in format_pairs(config):
        per_beat = config.beat_bytes // FORMAT_BYTES[dram_format]
        width = memory_shape(config, target)[1]
        full = min(width, row_beats * per_beat)
        # whole beats, then rows that end inside a beat and inside a word
        for cols in (full, full - lanes_of(config, target) // 2 - 1):
            if cols > 0:
                loads.append(bench.load(target, dram_format, operand_format, rows=3, cols=cols,
                                        mem_row=0, mem_col=0, stride_beats=-(-cols // per_beat)))
    await bench.run()
    bench.check_memories()
    for t in loads:
        per_beat = config.beat_bytes // FORMAT_BYTES[t.dram_format]
        lanes = lanes_of(config, t.target)
        beats, words = len(t.beats), len(t.words)
        elapsed = t.done - t.accepted
        beat_span = t.beat_cycles[-1] - t.beat_cycles[0] + 1
        word_span = t.word_cycles[-1] - t.word_cycles[0] + 1
        dut._log.info("%s %s <- %s (%d elements per beat, %d lanes): %d beats in %d cycles "
                      "(%.3f beats/cycle), %d words in %d cycles, accept to done %d cycles",
                      t.target.name, t.operand_format, t.dram_format, per_beat, lanes, beats, beat_span,
                      beats / beat_span, words, word_span, elapsed)
        record_metrics(test="throughput", target=t.target.name, dram_format=t.dram_format,
                       operand_format=t.operand_format, per_beat=per_beat, lanes=lanes,
                       data_width=config.data_width, beats=beats, words=words,
                       beat_cycles=beat_span, word_cycles=word_span,
                       beats_per_cycle=beats / beat_span, cycles=elapsed)
        if elapsed != steps(config, t) + 3:
            raise AssertionError(f"{t.describe()}: {elapsed} cycles from accept to done, "
                                 f"expected {steps(config, t) + 3}")
        if lanes % per_beat == 0 and beat_span != beats:
            raise AssertionError(f"{t.describe()}: read_data stalled: {beats} beats in "
                                 f"{beat_span} cycles")
        if per_beat >= lanes and word_span != words:
            raise AssertionError(f"{t.describe()}: {words} words in {word_span} cycles")
