"""Formal properties of the scatter accesses of the skewed scratchpad
(:class:`hw.engine.scratchpad.SkewedScratchpad` with ``scatter=True``), the accumulator memory of
an engine with step lists: a result row's lanes each go to a column of their own.

A 4-lane scratchpad of 3 rows x 8 columns of 4-bit elements; requests are free but keep the
requester's promise (assumed): the lanes a request enables name columns in distinct banks.
One element ``(row, col)`` is chosen by the solver (any constant) and shadowed. Promised:

* a read answers exactly ``READ_LATENCY`` cycles after its request, and only then;
* a lane that reads the chosen element returns the last value written there (before the write
  of the same cycle: read-during-write returns the old data), once it has been written;
* a lane the read does not enable returns zero, as does a lane outside the memory.

Covers: the chosen element written by one lane and read back by another. Mutant
``swap_lanes``: lanes 0 and 1 of the read data exchanged.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.asserts import AnyConst
from amaranth.hdl import Assert, Assume, Cover

from hw.engine.scratchpad import READ_LATENCY, SkewedScratchpad

from .common import Properties

__all__ = ["ScatterProperties"]


def _distinct_banks(m, request, lanes, bank_bits):
    """The enabled lanes of ``request`` name columns in distinct banks (an expression)."""
    clashes = []
    for t in range(lanes):
        for u in range(t):
            same = ((request.row + request.cols[t])[:bank_bits]
                    == (request.row + request.cols[u])[:bank_bits])
            clashes.append(request.mask[t] & request.mask[u] & same)
    return ~Cat(clashes).any()


class ScatterProperties(Properties):
    """The scatter scratchpad with its properties (module docstring)."""

    NAME = "scatter_scratchpad"
    DESCRIPTION = "scatter accesses of a 4-lane skewed scratchpad, 3 x 8 elements of 4 bits"
    TASKS = {"bmc": 10, "cover": 10}
    MUTANTS = ("swap_lanes",)
    LANES, WIDTH, ROWS, BITS = 4, 8, 3, 4

    def __init__(self, *, mutant: str | None = None):
        super().__init__(SkewedScratchpad(lanes=self.LANES, width=self.WIDTH, rows=self.ROWS,
                                          element=unsigned(self.BITS), scatter=True),
                         mutant=mutant)

    def elaborate(self, platform):
        m = Module()
        dut = self.instantiate(m)
        g = dut.geometry
        write, read = dut.i_write.payload, dut.i_read.payload
        with m.If(dut.i_write.valid):
            m.d.comb += Assume(_distinct_banks(m, write, g.lanes, g.bank_bits))
        with m.If(dut.i_read.valid):
            m.d.comb += Assume(_distinct_banks(m, read, g.lanes, g.bank_bits))

        # the chosen element and its shadow
        row = Signal(g.row_bits, name="chosen_row")
        col = Signal(g.col_bits + 1, name="chosen_col")
        m.d.comb += [row.eq(AnyConst(g.row_bits)), col.eq(AnyConst(g.col_bits + 1)),
                     Assume((row < g.rows) & (col < g.width))]
        shadow = Signal(self.BITS, name="shadow")
        written = Signal(name="shadow_written")
        writer = Signal(range(g.lanes), name="shadow_writer")
        for t in range(g.lanes):
            with m.If(dut.i_write.valid & write.mask[t] & (write.row == row)
                      & (write.cols[t] == col)):
                m.d.sync += [shadow.eq(write.data[t]), written.eq(1), writer.eq(t)]

        # what each lane of a read must return, READ_LATENCY cycles later
        expected, checked = [], []
        for t in range(g.lanes):
            hit = read.mask[t] & (read.row == row) & (read.cols[t] == col)
            inside = (read.row < g.rows) & (read.cols[t] < g.width)
            zero = ~read.mask[t] | ~inside
            want, check = Mux(hit, shadow, 0), (hit & written) | zero
            for stage in range(READ_LATENCY):
                want_q = Signal(self.BITS, name=f"lane_{t}_want_{stage}")
                check_q = Signal(name=f"lane_{t}_check_{stage}")
                m.d.sync += [want_q.eq(want), check_q.eq(check & (dut.i_read.valid
                                                                   if stage == 0 else 1))]
                want, check = want_q, check_q
            expected.append(want)
            checked.append(check)
        valid = dut.i_read.valid
        for stage in range(READ_LATENCY):
            valid_q = Signal(name=f"read_valid_{stage}")
            m.d.sync += valid_q.eq(valid)
            valid = valid_q
        lanes = [dut.o_read.payload[t] for t in range(g.lanes)]
        if self.mutant == "swap_lanes":
            lanes[0], lanes[1] = lanes[1], lanes[0]
        m.d.comb += Assert(dut.o_read.valid == valid, "read data not exactly READ_LATENCY "
                                                      "cycles after the request")
        for t in range(g.lanes):
            with m.If(valid & checked[t]):
                m.d.comb += Assert(lanes[t] == expected[t], f"lane {t} read a wrong value")
        # cover: written by one lane, read back by another
        for t in range(g.lanes):
            m.d.comb += Cover(valid & checked[t] & written & (writer != t)
                              & (expected[t] == lanes[t]) & (expected[t] != 0))
        return m
