"""Bench: the scatter accesses of ``SkewedScratchpad(scatter=True)`` (the step-list engine's
accumulator memory) against a shadow copy: every lane its own column, the enabled lanes'
columns in distinct banks; reads return zero in the lanes not asked for and outside the
memory. Same driver as :mod:`tb.scratchpad_tb` (one write and one read request per cycle at
most, reads checked ``READ_LATENCY`` cycles later, the banks checked word by word at the end).
"""

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from hw.engine.scratchpad import READ_LATENCY, scatter_read_layout, scatter_write_layout
from tb.harness import case, make_rng, record_metrics, reset, start_clock
from tb.packing import fields
from tb.scratchpad_tb import ELEMENTS, Bench, _idle


class ScatterBench(Bench):
    """The scatter accesses of ``SkewedScratchpad(scatter=True)``: every lane its own
    column, the enabled lanes' columns in distinct banks (the requester's promise); reads
    return zero in the lanes not asked for and outside the memory."""

    def __init__(self, dut, rng):
        super().__init__(dut, rng)
        element = ELEMENTS[case()["element"]]
        self.write_fields = fields(scatter_write_layout(self.geometry, element))
        self.read_fields = fields(scatter_read_layout(self.geometry))
        self.col_bits = self.geometry.col_bits + 1

    def columns(self):
        """``(row, cols, mask)``: lanes in random order over distinct banks (some beyond the
        last column or row), a random mask."""
        g = self.geometry
        row = int(self.rng.integers(0, min(1 << g.row_bits, g.rows + 2)))
        cols, banks = [], set()
        for _ in range(g.lanes):
            while True:
                col = int(self.rng.integers(0, min(1 << self.col_bits, g.width + g.lanes)))
                if (row + col) % g.banks not in banks:
                    break
            banks.add((row + col) % g.banks)
            cols.append(col)
        mask = int(self.rng.integers(0, 1 << g.lanes)) if self.rng.random() < 0.5 \
            else (1 << g.lanes) - 1
        return row, cols, mask

    def _cols_word(self, cols):
        return sum(c << (t * self.col_bits) for t, c in enumerate(cols))

    def expected(self, row, cols, mask):
        g = self.geometry
        return [int(self.model.contents[row, col])
                if mask >> t & 1 and row < g.rows and col < g.width else 0
                for t, col in enumerate(cols)]

    async def step(self, write=None, read=None):
        dut = self.dut
        g = self.geometry
        await FallingEdge(dut.clk)
        dut.i_write__valid.value = int(write is not None)
        dut.i_read__valid.value = int(read is not None)
        if read is not None:
            row, cols, mask = read
            dut.i_read__payload.value = self._pack(
                self.read_fields, {"row": row, "cols": self._cols_word(cols), "mask": mask})
            self.pending[self.cycle + READ_LATENCY] = (
                (row, cols, mask), self.expected(row, cols, mask))
            self.reads += 1
        if write is not None:
            row, cols, data, mask = write
            dut.i_write__payload.value = self._pack(
                self.write_fields, {"row": row, "cols": self._cols_word(cols),
                                    "data": self._lanes_word(data), "mask": mask})
            for t, (col, value) in enumerate(zip(cols, data)):
                if mask >> t & 1 and row < g.rows and col < g.width:
                    self.model.contents[row, col] = value
            self.writes += 1
        await ReadOnly()
        self.check_output()
        self.cycle += 1

    def check_output(self):
        valid = int(self.dut.o_read__valid.value)
        expected = self.pending.pop(self.cycle, None)
        if expected is None:
            if valid:
                raise AssertionError(f"cycle {self.cycle}: o_read valid with no read")
            return
        (row, cols, mask), lanes = expected
        got = self._split(int(self.dut.o_read__payload.value))
        if not valid or got != lanes:
            raise AssertionError(
                f"cycle {self.cycle}: scatter read (row {row}, cols {cols}, mask 0x{mask:x}): "
                f"valid={valid} rtl=[{' '.join(f'0x{v:x}' for v in got)}] "
                f"golden=[{' '.join(f'0x{v:x}' for v in lanes)}]")

    async def clear(self):
        g = self.geometry
        for row in range(g.rows):
            for col in range(0, g.width, g.lanes):
                cols = [col + t for t in range(g.lanes)]
                await self.step(write=(row, cols, [0] * g.lanes, (1 << g.lanes) - 1))


@cocotb.test()
async def scatter_accesses(dut):
    """Scatter writes and reads (``scatter=True``) at random, with idle cycles, checked
    against the shadow copy every cycle and, at the end, bank by bank."""
    rng = make_rng(dut)
    bench = ScatterBench(dut, rng)
    for port in (dut.i_write__valid, dut.i_write__payload, dut.i_read__valid,
                 dut.i_read__payload):
        port.value = 0
    await start_clock(dut)
    await reset(dut)
    await bench.clear()
    g = bench.geometry
    for _ in range(case()["operations"]):
        write = read = None
        if not _idle(rng):
            row, cols, mask = bench.columns()
            data = [int(v) for v in rng.integers(0, 1 << bench.element_width, g.lanes,
                                                 dtype=np.int64)]
            write = (row, cols, data, mask)
        if not _idle(rng):
            read = bench.columns()
        await bench.step(write=write, read=read)
    await bench.drain()
    bench.check_banks()
    record_metrics(reads=bench.reads, writes=bench.writes)
