"""Bench: the epilogue (hw/accel/epilogue.py) on a real GemmEngine (tb/test_epilogue.py's
``EpilogueOnEngine``), checked against the golden model's ``EPILOGUE`` bit for bit.

Layers: the bench fills rows of the accumulator memory through the engine's ``wr_acc`` (and the
model's with the same words), drives ``cmd`` with random idle cycles and puts random stalls on
the four streams between the Epilogue and the engine; the model
(:class:`sim.accel_model.AcceleratorModel`) runs the same instruction from a one-instruction
program; the checker reads back every row the command could have touched (whole rows, so a
write outside the region shows) through the engine's read port and compares them, and the
keep plane the Epilogue wrote through ``wr_mask`` (recorded at the port), with the model's.
A mismatch prints the command and the element's inputs in hex. ``done`` must pulse exactly once
per command, the cycle after its last write; nothing may move before the next command; the
engine must raise no error; a watchdog fails a hang.
"""

from __future__ import annotations

from fractions import Fraction

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from hw.accel.epilogue import EpilogueCommand
from hw.engine.engine import GemmEngine
from hw.engine.commands import host_write_layout, read_request_layout
from sim.accel_model import AcceleratorModel, assemble, instruction_error
from sim.accel_spec import (EPILOGUE_ACC_OPS, EPILOGUE_FIELDS, EPILOGUE_MAX_THRESHOLD,
                            EPILOGUE_SOURCE_OPS,
                            FORMAT_BITS, AccelError, EpilogueOp, Opcode)
from sim.config import AccelConfig
from sim.formats import FP32
from tb.dma_tb import Source
from tb.harness import case, make_rng, record_metrics, reset, start_clock
from tb.packing import fields, pack
from tb.storer_tb import accel_config_of_case, accumulator_contents
from tb.test_epilogue import STALLS
from tb.vectors import edge_bits, mixed_bits, moderate_bits

#: Cycles without any handshake while a command runs before the bench fails
WATCHDOG = 300
#: Passes (multiply, add) of each op: ``epilogue_stages = s`` adds ``2s`` cycles to each
PASSES = {EpilogueOp.RELU: 0, EpilogueOp.CAST: 0, EpilogueOp.RELU_BACKWARD: 0,
          EpilogueOp.ADD: 1, EpilogueOp.SCALE: 1, EpilogueOp.DROPOUT: 1, EpilogueOp.SGD: 2}


def expected_timing(op: EpilogueOp, stages: int) -> tuple[tuple[int, int], int]:
    """``((cycles, segments), first write)`` of ``op`` with ``epilogue_stages = stages``
    without stalls (the Epilogue's docstring). The segments go at the slower of the compute
    stage (each pass ``2 + 2 * stages`` cycles) and the engine's read port, which takes
    ``READ_BUFFER`` reads per ``READ_LATENCY + 1`` cycles; the first write comes
    ``READ_LATENCY + 2 + r + p`` cycles after the accept (``r`` reads a segment, ``p`` 1
    without a pass, else ``2 + 2 * stages`` per pass)."""
    reads = 1 + (op in EPILOGUE_SOURCE_OPS)     # the source segment, then the destination
    passes = PASSES[op]
    compute = Fraction(passes * (2 + 2 * stages))
    read_bound = Fraction(reads * (GemmEngine.READ_LATENCY + 1), GemmEngine.READ_BUFFER)
    per_segment = max(compute, read_bound)
    pass_cycles = passes * (2 + 2 * stages) if passes else 1
    first_write = GemmEngine.READ_LATENCY + 2 + reads + pass_cycles
    return (per_segment.numerator, per_segment.denominator), first_write
#: Immediates: zeros, one, infinities, NaNs (quiet, signalling, negative), subnormals, the
#: largest finite value, typical learning rates and weight decays
SPECIAL_IMMEDIATES = [0x00000000, 0x80000000, 0x3F800000, 0xBF800000, 0x7F800000, 0xFF800000,
                      0x7FC00000, 0x7F800001, 0xFFC00123, 0x00000001, 0x807FFFFF, 0x7F7FFFFF,
                      0xFF7FFFFF, 0x3A83126F, 0x38D1B717, 0x3DCCCCCD, 0x40000000, 0x3F000000,
                      0x00800000, 0x7E800000]


def describe(f: dict) -> str:
    op = EpilogueOp(f["op"]).name
    text = (f"EPILOGUE {op} {f['rows']}x{f['cols']} at ({f['dst_row']}, {f['dst_col']})")
    if f["op"] in EPILOGUE_SOURCE_OPS:
        text += (f" src ({f['src_row']}, {f['src_col']}){' broadcast' if f['broadcast'] else ''}")
    return (text + f" imm0=0x{f['imm0']:08x} imm1=0x{f['imm1']:08x} cast_format="
            f"{f['cast_format']} saturate={f['saturate']} seed=0x{f['seed']:x} threshold="
            f"{f['threshold']} write_mask={f['write_mask']}")


def contents(rng, rows: int, cols: int, out_formats) -> np.ndarray:
    """FP32 words: values near one (products and sums that round), the conversions' edges
    (``tb.storer_tb``), every FP32 edge (zeros, subnormals, infinities, NaNs with payloads,
    the largest finite value) and random bits, mixed element by element."""
    count = rows * cols
    pools = [moderate_bits(rng, FP32, count), moderate_bits(rng, FP32, count, span_fraction=1),
             accumulator_contents(rng, rows, cols, out_formats).ravel().astype(np.uint64),
             rng.choice(edge_bits(FP32), count), mixed_bits(rng, FP32, count)]
    kind = rng.choice(len(pools), count, p=[0.35, 0.15, 0.2, 0.15, 0.15])
    words = np.choose(kind, pools)
    return words.astype(np.uint32).reshape(rows, cols)


class Bench:
    """Drivers, the golden model and the checks."""

    def __init__(self, dut, rng, *, p_idle=0.2, p_stall=0.2):
        self.dut, self.rng = dut, rng
        self.config = config = accel_config_of_case()
        self.engine = engine = config.engine
        self.lanes = engine.array.cols
        self.model = AcceleratorModel(config)
        self.plane = np.zeros((engine.acc_rows, engine.acc_width), dtype=bool)
        self.p_stall = p_stall
        self.wr_acc = Source(dut, "wr_acc", rng, p_idle)
        self.cmd = Source(dut, "cmd", rng, p_idle)
        self.write_fields = fields(host_write_layout(self.lanes, 32))
        self.request_layout = read_request_layout(engine)
        self.fp32_index = engine.out_formats.index("fp32")
        self.filled: list[int] = []
        self.cycle = 0
        dut.host.value = 1
        dut.stall.value = 0
        dut.rd_req__valid.value = 0
        dut.rd_data__ready.value = 0

    async def start(self):
        await start_clock(self.dut)
        await reset(self.dut)

    async def _step(self):
        await FallingEdge(self.dut.clk)
        self.cycle += 1

    def _check_engine(self, what: str):
        if int(self.dut.engine_error.value):
            raise AssertionError(f"cycle {self.cycle}: the engine raised an error ({what})")

    # -- the bench's own access to the accumulator memory -------------------------------------

    async def fill(self, rows: list[int], words: np.ndarray):
        """Write ``words`` (one row per entry of ``rows``) into the engine's and the model's
        accumulator memories."""
        lanes, data_offset = self.lanes, self.write_fields["data"][0]
        for row, values in zip(rows, words):
            for col in range(0, len(values), lanes):
                word = pack(host_write_layout(lanes, 32), row=row, col=col,
                            mask=(1 << lanes) - 1)[0]
                for lane, value in enumerate(values[col:col + lanes]):
                    word |= int(value) << (data_offset + 32 * lane)
                self.wr_acc.queue.append(word)
            self.model.acc[row] = values
        self.filled = sorted(set(self.filled) | set(rows))
        self.dut.host.value = 1
        quiet = 0
        while self.wr_acc.queue:
            self.wr_acc.drive()
            await ReadOnly()
            quiet = 0 if self.wr_acc.sample() else quiet + 1
            if quiet > WATCHDOG:
                raise AssertionError("wr_acc is never ready")
            await self._step()
        self.wr_acc.drive()

    async def read_rows(self, rows: list[int]) -> np.ndarray:
        """Whole rows of the engine's accumulator memory as FP32 words (read port, fp32)."""
        dut, lanes, width = self.dut, self.lanes, self.engine.acc_width
        requests = [(row, col) for row in rows for col in range(0, width, lanes)]
        words = pack(self.request_layout, row=[r for r, _ in requests],
                     col=[c for _, c in requests], fmt=self.fp32_index)
        answers = []
        dut.host.value = 1
        dut.rd_data__ready.value = 1
        sent, quiet = 0, 0
        while len(answers) < len(requests):
            dut.rd_req__valid.value = int(sent < len(requests))
            if sent < len(requests):
                dut.rd_req__payload.value = words[sent]
            await ReadOnly()
            moved = False
            if sent < len(requests) and dut.rd_req__ready.value:
                sent, moved = sent + 1, True
            if dut.rd_data__valid.value:
                answers.append(int(dut.rd_data__payload.value))
                moved = True
            quiet = 0 if moved else quiet + 1
            if quiet > WATCHDOG:
                raise AssertionError(f"reading back: {sent} requests, {len(answers)} answers")
            await self._step()
        dut.rd_req__valid.value = 0
        dut.rd_data__ready.value = 0
        self._check_engine("reading back")
        out = np.zeros((len(rows), width), dtype=np.uint32)
        per_row = len(range(0, width, lanes))
        for k, answer in enumerate(answers):
            r, segment = divmod(k, per_row)
            for lane in range(min(lanes, width - segment * lanes)):
                out[r, segment * lanes + lane] = (answer >> (32 * lane)) & 0xFFFFFFFF
        return out

    # -- one command -------------------------------------------------------------------------

    async def run(self, f: dict, *, stalls: bool = True) -> dict:
        """Run one EPILOGUE on the hardware and the model and compare; returns its timing
        (``accept``, ``writes``: cycles of the Epilogue's ``wr_acc`` handshakes, ``done``)."""
        dut, config = self.dut, self.config
        error = instruction_error(config, Opcode.EPILOGUE, f)
        if error != AccelError.NONE:
            raise ValueError(f"the bench made an invalid command ({error.name}): {describe(f)}")
        before = self.model.acc.copy()
        program = assemble([(Opcode.EPILOGUE, f)])
        result = self.model.run(bytearray(program), 0, 1)
        if result.error != AccelError.NONE:
            raise AssertionError(f"the model refused {describe(f)}: {result.error.name}")

        self.cmd.queue.append(pack(EpilogueCommand, **f)[0])
        dut.host.value = 0
        timing = {"accept": None, "writes": [], "mask_writes": [], "done": None}
        quiet, start = 0, self.cycle
        segments = f["rows"] * -(-f["cols"] // self.lanes)
        while timing["done"] is None:
            stall = 0
            if stalls:
                stall = sum(int(self.rng.random() < self.p_stall) << i for i in range(len(STALLS)))
            dut.stall.value = stall
            self.cmd.drive()
            await ReadOnly()
            moved = False
            done = int(dut.done.value)
            if int(dut.cmd__ready.value) and timing["accept"] is not None and not done:
                raise AssertionError(f"cycle {self.cycle}: cmd ready while {describe(f)} runs")
            if self.cmd.sample():
                timing["accept"], moved = self.cycle, True
            if int(dut.wrote.value):
                timing["writes"].append(self.cycle)
                moved = True
            if int(dut.asked.value):
                moved = True
            if self.engine.output_mask and int(dut.mask_write.value):
                self._record_mask(f)
                timing["mask_writes"].append(self.cycle)
                moved = True
            if done:
                if timing["accept"] is None or len(timing["writes"]) != segments:
                    raise AssertionError(f"cycle {self.cycle}: done after "
                                         f"{len(timing['writes'])} of {segments} writes of "
                                         f"{describe(f)}")
                timing["done"], moved = self.cycle, True
            self._check_engine(describe(f))
            quiet = 0 if moved else quiet + 1
            if quiet > WATCHDOG:
                raise AssertionError(f"no progress for {WATCHDOG} cycles in {describe(f)}: "
                                     f"{len(timing['writes'])} of {segments} writes")
            await self._step()
        dut.stall.value = 0
        for _ in range(4):               # nothing more may happen
            await ReadOnly()
            if int(dut.wrote.value) or int(dut.asked.value) or int(dut.done.value):
                raise AssertionError(f"activity after {describe(f)} was done")
            await self._step()
        last = max(timing["writes"] + timing["mask_writes"])
        if timing["done"] != last + 1:
            raise AssertionError(f"done {timing['done'] - last} cycles after the last write of "
                                 f"{describe(f)}")
        await self._compare(f, before)
        self.dut._log.debug("%s: %d cycles", describe(f), self.cycle - start)
        return timing

    def _record_mask(self, f):
        dut, lanes = self.dut, self.lanes
        row, col = int(dut.mask_row.value), int(dut.mask_col.value)
        keep, valid = int(dut.mask_keep.value), int(dut.mask_lanes.value)
        for lane in range(lanes):
            if valid >> lane & 1:
                if not (f["dst_row"] <= row < f["dst_row"] + f["rows"]
                        and f["dst_col"] <= col + lane < f["dst_col"] + f["cols"]):
                    raise AssertionError(f"cycle {self.cycle}: keep bit written at ({row}, "
                                         f"{col + lane}) outside the region of {describe(f)}")
                self.plane[row, col + lane] = bool(keep >> lane & 1)

    async def _compare(self, f, before):
        """The rows the command could touch, and the keep plane, against the model."""
        rows = list(range(f["dst_row"], f["dst_row"] + f["rows"]))
        got = await self.read_rows(rows)
        want = self.model.acc[rows]
        bad = np.argwhere(got != want)
        if len(bad):
            r, c = (int(v) for v in bad[0])
            row = rows[r]
            i, j = row - f["dst_row"], c - f["dst_col"]
            inside = 0 <= j < f["cols"]
            text = (f"{describe(f)}: {len(bad)} words differ; first at ({row}, {c})"
                    f"{'' if inside else ' OUTSIDE the region'}: rtl {got[r, c]:08x}, golden "
                    f"{want[r, c]:08x}; dst before {before[row, c]:08x}")
            if inside and f["op"] in EPILOGUE_SOURCE_OPS:
                src = (f["src_row"] + (0 if f["broadcast"] else i), f["src_col"] + j)
                text += f", src {before[src]:08x} at {src}"
            raise AssertionError(text)
        if self.engine.output_mask:
            diff = np.argwhere(self.plane != self.model.keep_host)
            if len(diff):
                r, c = (int(v) for v in diff[0])
                raise AssertionError(f"{describe(f)}: keep plane differs at ({r}, {c}): rtl "
                                     f"{int(self.plane[r, c])}, golden "
                                     f"{int(self.model.keep_host[r, c])}; dst before "
                                     f"{before[r, c]:08x}")

    async def check_all(self):
        """Every filled row against the model."""
        got = await self.read_rows(self.filled)
        bad = np.argwhere(got != self.model.acc[self.filled])
        if len(bad):
            r, c = (int(v) for v in bad[0])
            raise AssertionError(f"row {self.filled[r]} column {c}: rtl {got[r, c]:08x}, golden "
                                 f"{self.model.acc[self.filled[r], c]:08x}")


# -- commands ----------------------------------------------------------------------------------

def filled_rows(config: AccelConfig) -> list[int]:
    """The rows the bench fills and works in: all of a small memory; the first 12 and the
    last 4 of a large one (the rest stays 0 in the engine and in the model)."""
    rows = config.engine.acc_rows
    return list(range(rows)) if rows <= 40 else list(range(12)) + list(range(rows - 4, rows))


def immediate(rng) -> int:
    if rng.random() < 0.6:
        return int(rng.choice(SPECIAL_IMMEDIATES))
    if rng.random() < 0.5:
        return int(moderate_bits(rng, FP32, 1)[0])
    return int(mixed_bits(rng, FP32, 1)[0])


def random_command(rng, config: AccelConfig, op: EpilogueOp, *, max_cols: int = 40) -> dict:
    """A valid random EPILOGUE of ``op`` inside the filled rows: random sizes (a quarter at the
    memory's right edge), broadcast or not, the same region as source now and then, random and
    special immediates, every output format and saturation for CAST, random seeds and
    thresholds (0 and 256 included) for DROPOUT."""
    engine = config.engine
    rows_ok = filled_rows(config)
    blocks = [list(range(12)), list(range(engine.acc_rows - 4, engine.acc_rows))] \
        if len(rows_ok) < engine.acc_rows else [rows_ok]
    width = engine.acc_width
    for _ in range(1000):
        block = blocks[int(rng.integers(len(blocks)))]
        rows = int(rng.integers(1, min(len(block), 6) + 1))
        dst_row = block[int(rng.integers(0, len(block) - rows + 1))]
        cols = int(rng.integers(1, min(width, max_cols) + 1))
        if rng.random() < 0.1:
            cols = width
        dst_col = width - cols if rng.random() < 0.25 else int(rng.integers(0, width - cols + 1))
        f = {name: 0 for name in EPILOGUE_FIELDS}
        f.update(op=int(op), rows=rows, cols=cols, dst_row=dst_row, dst_col=dst_col,
                 imm0=immediate(rng), imm1=immediate(rng))
        if op in EPILOGUE_SOURCE_OPS:
            f["broadcast"] = int(rng.random() < 0.3)
            if rng.random() < 0.15 and not f["broadcast"]:
                f["src_row"], f["src_col"] = dst_row, dst_col
            else:
                src_block = blocks[int(rng.integers(len(blocks)))]
                height = 1 if f["broadcast"] else rows
                if height > len(src_block):
                    continue
                f["src_row"] = src_block[int(rng.integers(0, len(src_block) - height + 1))]
                f["src_col"] = int(rng.integers(0, width - cols + 1))
        if op == EpilogueOp.CAST:
            f["cast_format"] = FORMAT_BITS.index(str(rng.choice(engine.out_formats)))
            f["saturate"] = int(rng.integers(0, 2))
        if op == EpilogueOp.DROPOUT:
            f["seed"] = int(rng.integers(1, 1 << 32))
            f["threshold"] = int(rng.choice([0, 1, 64, 128, 200, 255, EPILOGUE_MAX_THRESHOLD,
                                             int(rng.integers(0, 257))]))
        if op == EpilogueOp.RELU and engine.output_mask:
            f["write_mask"] = int(rng.random() < 0.7)
        if instruction_error(config, Opcode.EPILOGUE, f) == AccelError.NONE:
            return f
    raise RuntimeError(f"no valid {op.name} command found")


async def _filled_bench(dut, salt: int) -> tuple[Bench, np.random.Generator]:
    rng = make_rng(dut, salt)
    bench = Bench(dut, rng)
    await bench.start()
    rows = filled_rows(bench.config)
    await bench.fill(rows, contents(rng, len(rows), bench.engine.acc_width,
                                    bench.engine.out_formats))
    return bench, rng


@cocotb.test()
async def random_commands(dut):
    """Random commands of every op, with random stalls on every stream and idle cycles on
    ``cmd``; every touched row and the keep plane checked after each, every row at the end."""
    bench, rng = await _filled_bench(dut, 0)
    count = case().get("commands", 28)
    ops = list(EPILOGUE_ACC_OPS) * -(-count // len(EPILOGUE_ACC_OPS))
    rng.shuffle(ops)
    for k, op in enumerate(ops[:count]):
        await bench.run(random_command(rng, bench.config, op))
        if k % 7 == 6:          # fresh values: the ops keep shrinking them to zeros and NaNs
            rows = filled_rows(bench.config)
            await bench.fill(rows, contents(rng, len(rows), bench.engine.acc_width,
                                            bench.engine.out_formats))
    await bench.check_all()
    dut._log.info("%d commands bit-exact in %d cycles", count, bench.cycle)


@cocotb.test()
async def edge_commands(dut):
    """Per op: one element; exactly one segment, one lane more and one less; a whole memory
    row; a region at the bottom-right corner; every row of the filled block; broadcast from a
    row at the memory's edge."""
    bench, rng = await _filled_bench(dut, 1)
    engine, lanes = bench.engine, bench.lanes
    width = engine.acc_width
    block = filled_rows(bench.config)[:12]
    last = engine.acc_rows - 1
    shapes = [(1, 1, 0, 0), (1, lanes, 1, 0), (2, lanes + 1, 2, 3), (2, max(1, lanes - 1), 4, 1),
              (1, width, 5, 0), (1, 3, last, width - 3), (len(block) // 2, 5, 0, width - 5)]
    for op in EPILOGUE_ACC_OPS:
        for rows, cols, dst_row, dst_col in shapes:
            f = random_command(rng, bench.config, op)
            f.update(rows=rows, cols=cols, dst_row=dst_row, dst_col=dst_col)
            if op in EPILOGUE_SOURCE_OPS:
                f.update(broadcast=1, src_row=last if dst_row != last else 0, src_col=0)
            if instruction_error(bench.config, Opcode.EPILOGUE, f) != AccelError.NONE:
                raise AssertionError(f"edge case is not valid: {describe(f)}")
            await bench.run(f)
    await bench.check_all()


@cocotb.test()
async def throughput(dut):
    """Without stalls or idle cycles: every run of ``q`` consecutive gaps between segment
    writes takes exactly ``p`` cycles, ``(p, q)`` of :func:`expected_timing` (``q = 1``:
    every gap is ``p``), rows back to back; the first write as many cycles after the accept as
    :func:`expected_timing` says, ``done`` the cycle after the last write. Records them in ``metrics.jsonl``."""
    rng = make_rng(dut, 2)
    bench = Bench(dut, rng, p_idle=0.0)
    await bench.start()
    rows = filled_rows(bench.config)
    await bench.fill(rows, contents(rng, len(rows), bench.engine.acc_width,
                                    bench.engine.out_formats))
    lanes = bench.lanes
    for op in EPILOGUE_ACC_OPS:
        f = random_command(rng, bench.config, op)
        f.update(rows=3, cols=3 * lanes, dst_row=0, dst_col=0, broadcast=0)
        if op in EPILOGUE_SOURCE_OPS:
            f.update(src_row=4, src_col=lanes)
        f["write_mask"] = 0
        timing = await bench.run(f, stalls=False)
        gaps = np.diff(timing["writes"])
        (cycles, segments), first_write = expected_timing(op, bench.config.epilogue_stages)
        runs = {int(gaps[i:i + segments].sum()) for i in range(len(gaps) - segments + 1)}
        if runs != {cycles}:
            raise AssertionError(f"{op.name}: cycles between segment writes {gaps.tolist()}, "
                                 f"expected {cycles} per {segments} segments")
        if timing["done"] != timing["writes"][-1] + 1:
            raise AssertionError(f"{op.name}: done {timing['done'] - timing['writes'][-1]} "
                                 f"cycles after the last write")
        first = timing["writes"][0] - timing["accept"]
        total = timing["done"] - timing["accept"]
        if first != first_write:
            raise AssertionError(f"{op.name}: first write {first} cycles after the accept, "
                                 f"expected {first_write}")
        record_metrics(test="throughput", op=op.name, segments=9, first_write=first,
                       cycles=total, segment_cycles=cycles / segments)
        dut._log.info("%s: first write %d cycles after the accept, 9 segments in %d cycles",
                      op.name, first, total)
