"""Bench: SkewedScratchpad against its golden model (a shadow copy, sim.scratchpad_model).

Every cycle the driver may offer a write and a read request (random idle cycles; both ports
always accept, so there is no backpressure to apply). The read of cycle ``t`` is expected on
``o_read`` at exactly ``t + READ_LATENCY`` with the data the shadow copy held *before* the
write of cycle ``t`` (read-during-write returns the old data); in every other cycle ``o_read``
must be idle. A white-box check then compares every word of every bank memory with the
mapping of the golden model.
"""

import cocotb
import numpy as np
from amaranth import Shape, unsigned
from cocotb.triggers import FallingEdge, ReadOnly

from hw.engine.scratchpad import READ_LATENCY, read_layout, write_layout
from hw.fp.operand import Operand
from sim.scratchpad_model import ScratchpadGeometry, ScratchpadModel
from tb.harness import case, make_rng, record_metrics, reset, start_clock
from tb.packing import fields

ELEMENTS = {"operand": Operand, "u32": unsigned(32)}


class Bench:
    """Driver (one write and one read request per cycle at most), model and checker."""

    def __init__(self, dut, rng):
        cfg = case()
        self.dut = dut
        self.rng = rng
        self.geometry = ScratchpadGeometry(lanes=cfg["lanes"], width=cfg["width"],
                                           rows=cfg["rows"])
        element = ELEMENTS[cfg["element"]]
        self.element_width = Shape.cast(element).width
        self.write_fields = fields(write_layout(self.geometry, element))
        self.read_fields = fields(read_layout(self.geometry))
        self.model = ScratchpadModel(self.geometry)
        self.pending = {}            # cycle -> (request, expected lanes)
        self.cycle = 0
        self.reads = self.writes = 0

    # -- packing -------------------------------------------------------------------------

    @staticmethod
    def _pack(geometry, values):
        word = 0
        for name, value in values.items():
            offset, width = geometry[name]
            assert 0 <= value < 1 << width, (name, value)
            word |= value << offset
        return word

    def _lanes_word(self, lanes):
        return sum(int(v) << (t * self.element_width) for t, v in enumerate(lanes))

    def _split(self, word):
        mask = (1 << self.element_width) - 1
        return [(word >> (t * self.element_width)) & mask for t in range(self.geometry.lanes)]

    # -- stimulus ------------------------------------------------------------------------

    def position(self):
        """A random (row, col) over the whole port range, often near the far edges (where
        lanes fall outside)."""
        g = self.geometry
        row_limit, col_limit = 1 << g.row_bits, 1 << g.col_bits
        if self.rng.random() < 0.4:
            row = int(self.rng.integers(max(0, g.rows - g.lanes), row_limit))
        else:
            row = int(self.rng.integers(0, row_limit))
        if self.rng.random() < 0.4:
            col = int(self.rng.integers(max(0, g.width - g.lanes), col_limit))
        else:
            col = int(self.rng.integers(0, col_limit))
        return row, col

    def random_write(self, position=None):
        g = self.geometry
        row, col = position or self.position()
        data = [int(v) for v in self.rng.integers(0, 1 << self.element_width, g.lanes,
                                                  dtype=np.int64)]
        kind = self.rng.random()
        if kind < 0.5:
            mask = (1 << g.lanes) - 1
        elif kind < 0.6:
            mask = 0
        else:
            mask = int(self.rng.integers(0, 1 << g.lanes))
        return row, col, data, mask

    def random_read(self, position=None):
        row, col = position or self.position()
        return row, col, bool(self.rng.integers(0, 2))

    # -- one cycle -----------------------------------------------------------------------

    async def step(self, write=None, read=None):
        """Drive one cycle's requests (``None``: idle) and check that cycle's output."""
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.i_write__valid.value = int(write is not None)
        dut.i_read__valid.value = int(read is not None)
        if read is not None:
            row, col, column_mode = read
            dut.i_read__payload.value = self._pack(
                self.read_fields, {"row": row, "col": col, "column_mode": int(column_mode)})
            # the model before this cycle's write: read-during-write returns old data
            self.pending[self.cycle + READ_LATENCY] = (read, self.model.read(*read))
            self.reads += 1
        if write is not None:
            row, col, data, mask = write
            dut.i_write__payload.value = self._pack(
                self.write_fields, {"row": row, "col": col, "data": self._lanes_word(data),
                                    "mask": mask})
            self.model.write(row, col, data, mask)
            self.writes += 1
        await ReadOnly()
        if int(dut.i_write__ready.value) != 1 or int(dut.i_read__ready.value) != 1:
            raise AssertionError(f"cycle {self.cycle}: a request port is not ready")
        self.check_output()
        self.cycle += 1

    def check_output(self):
        dut = self.dut
        valid = int(dut.o_read__valid.value)
        expected = self.pending.pop(self.cycle, None)
        if expected is None:
            if valid:
                raise AssertionError(f"cycle {self.cycle}: o_read valid with no read requested "
                                     f"{READ_LATENCY} cycles before")
            return
        (row, col, column_mode), lanes = expected
        if not valid:
            raise AssertionError(f"cycle {self.cycle}: no o_read data for the read of "
                                 f"(row {row}, col {col}, column_mode {int(column_mode)})")
        got = self._split(int(dut.o_read__payload.value))
        if got != lanes:
            bad = [t for t in range(len(lanes)) if got[t] != lanes[t]]
            raise AssertionError(
                f"cycle {self.cycle}: read (row {row}, col {col}, column_mode "
                f"{int(column_mode)}) lanes {bad} differ; "
                f"rtl=[{' '.join(f'0x{v:x}' for v in got)}] "
                f"golden=[{' '.join(f'0x{v:x}' for v in lanes)}]")

    async def clear(self):
        """Write zeros everywhere through the write port: the memories keep their contents
        from one test to the next in the same simulation, the model starts empty."""
        g = self.geometry
        for row in range(g.rows):
            for col in range(0, g.width, g.lanes):
                await self.step(write=(row, col, [0] * g.lanes, (1 << g.lanes) - 1))

    async def drain(self):
        """Idle until every read has been checked, then a few more cycles of silence."""
        for _ in range(READ_LATENCY + 3):
            await self.step()
        assert not self.pending, f"reads never answered: {sorted(self.pending)}"

    # -- white box -----------------------------------------------------------------------

    def check_banks(self):
        """Every word of every bank memory holds the element the golden mapping puts there."""
        g = self.geometry
        for bank in range(g.banks):
            memory = getattr(self.dut, f"bank_{bank}")
            for address in range(g.depth):
                i, j = g.element(bank, address)
                got = int(memory[address].value)
                want = int(self.model.contents[i, j])
                if got != want:
                    raise AssertionError(f"bank {bank} word {address} (element ({i}, {j})): "
                                         f"rtl=0x{got:x} golden=0x{want:x}")


async def start(dut):
    rng = make_rng(dut)
    bench = Bench(dut, rng)
    dut.i_write__valid.value = 0
    dut.i_write__payload.value = 0
    dut.i_read__valid.value = 0
    dut.i_read__payload.value = 0
    await start_clock(dut)
    await reset(dut)
    await bench.clear()
    return bench


def _idle(rng, p_idle=0.25):
    return rng.random() < p_idle


@cocotb.test()
async def fill_then_read(dut):
    """Random row-segment writes with random masks, then random row and column reads at
    random positions (edges included), with random idle cycles; then the bank contents."""
    bench = await start(dut)
    rng, g = bench.rng, bench.geometry
    operations = case()["operations"]
    # enough writes that most elements are written several times
    for _ in range(max(operations // 2, 4 * g.elements // g.lanes)):
        await bench.step(write=None if _idle(rng) else bench.random_write())
    await bench.drain()
    bench.check_banks()
    for _ in range(operations // 2):
        await bench.step(read=None if _idle(rng) else bench.random_read())
    await bench.drain()
    # every position, both modes, back to back: nothing left unread
    for row in range(1 << g.row_bits):
        for col in range(1 << g.col_bits):
            await bench.step(read=(row, col, False))
            await bench.step(read=(row, col, True))
    await bench.drain()
    record_metrics(reads=bench.reads, writes=bench.writes, cycles=bench.cycle)


@cocotb.test()
async def mixed_reads_and_writes(dut):
    """Writes and reads in the same cycles, independently idle, often at the same place
    (read-during-write returns the old data; the next cycle sees the new)."""
    bench = await start(dut)
    rng = bench.rng
    last = None
    for _ in range(case()["operations"]):
        write = None if _idle(rng) else bench.random_write()
        if last is not None and rng.random() < 0.5:
            # the element just written (previous cycle) or being written (this cycle)
            where = (write[0], write[1]) if write is not None and rng.random() < 0.5 else last
            read = bench.random_read(where)
        else:
            read = None if _idle(rng) else bench.random_read()
        await bench.step(write=write, read=read)
        if write is not None:
            last = (write[0], write[1])
    await bench.drain()
    bench.check_banks()
    record_metrics(reads=bench.reads, writes=bench.writes, cycles=bench.cycle)


@cocotb.test()
async def back_to_back_streams(dut):
    """A write and a read every cycle, no idle: streams of consecutive row segments written
    while the rows and columns just written are read back."""
    bench = await start(dut)
    rng, g = bench.rng, bench.geometry
    row, col = 0, 0
    history = []
    for _ in range(case()["operations"]):
        write = bench.random_write((row, col))
        history.append((row, col))
        back = int(rng.integers(0, min(len(history), 4)))
        read = bench.random_read(history[-1 - back])
        await bench.step(write=write, read=read)
        col += g.lanes
        if col >= g.width:
            row, col = (row + 1) % (1 << g.row_bits), int(rng.integers(0, g.lanes))
    await bench.drain()
    bench.check_banks()
    record_metrics(reads=bench.reads, writes=bench.writes, cycles=bench.cycle)

