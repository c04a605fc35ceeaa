"""Formal properties of the DMA's burst generator (:class:`hw.accel.dma.BurstGenerator`), the
block that cuts every 2-D transfer into AXI4 INCR bursts.

The transfer commands are free but valid, as the :class:`~hw.accel.dma.Dma` guarantees
(``addr``, ``row_bytes`` and ``stride`` multiples of the beat, ``rows`` and ``row_bytes``
non-zero), with at most 2 rows of at most 2,560 bytes, addresses below 16 KiB and strides below
8 KiB (assumed, to keep the solver's work small: the 4 KiB rule depends on the low 12 address
bits only, and a row of 2,560 bytes can hold a 256-beat burst or a split at a boundary); the
consumer's ``ready`` is free. Promised:

* a burst on offer holds with its payload until taken;
* **no burst crosses a 4 KiB boundary**, every burst starts on a beat;
* the bursts of a transfer are exactly its bytes, in address order: each starts where the one
  before ended or, after a row's last burst, at the next row's start (``+ stride``, wrapping);
  no burst runs past the end of its row; ``last`` marks the transfer's final burst and only
  it; nothing is offered without a transfer, and no command is taken while one runs.

Covers: a row split at a 4 KiB boundary, a burst of 256 beats, a transfer of two rows
finished. Mutant ``long_burst``: the observed ``len`` is one beat longer at the solver's choice.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover

from hw.accel.dma import BurstGenerator
from sim.accel_spec import BURST_BOUNDARY, DMA_ROW_BYTES_BITS, MAX_BURST_BEATS
from sim.config import AccelConfig

from .common import History, Properties

__all__ = ["BurstProperties"]


class BurstProperties(Properties):
    """The burst generator of ``config`` with its properties (module docstring)."""

    NAME = "bursts"
    DESCRIPTION = ("DMA burst generator (64-bit beats, 32-bit addresses), up to 2 rows of up "
                   "to 2,560 bytes")
    TASKS = {"bmc": 12, "cover": 12}
    MUTANTS = ("long_burst",)
    MAX_ROWS = 2
    MAX_ROW_BYTES = 2560
    #: addresses below 2 ** ADDR_BITS, strides below 2 ** STRIDE_BITS (assumed)
    ADDR_BITS, STRIDE_BITS = 14, 13

    def __init__(self, config: AccelConfig | None = None, *, mutant: str | None = None):
        self.config = config or AccelConfig()
        super().__init__(BurstGenerator(self.config), mutant=mutant)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dut = self.instantiate(m)
        past = History(m)
        beat = cfg.beat_bytes
        shift = (beat - 1).bit_length()
        burst, payload = dut.burst, dut.burst.payload
        length = payload.len + 1                           # beats of the burst on offer
        if self.mutant == "long_burst":
            length = length + AnySeq(1)
        size = Signal(DMA_ROW_BYTES_BITS + 1, name="burst_bytes")
        m.d.comb += size.eq(length * beat)

        command = dut.cmd.payload
        with m.If(dut.cmd.valid):
            m.d.comb += Assume((command.addr[:shift] == 0) & (command.stride[:shift] == 0)
                               & (command.row_bytes[:shift] == 0) & (command.rows != 0)
                               & (command.rows <= self.MAX_ROWS) & (command.row_bytes != 0)
                               & (command.row_bytes <= self.MAX_ROW_BYTES)
                               & (command.addr[self.ADDR_BITS:] == 0)
                               & (command.stride[self.STRIDE_BITS:] == 0))

        # -- a burst on offer holds ------------------------------------------------------------
        stalled = past(burst.valid & ~burst.ready, "stall")
        before = past(payload.as_value(), "payload")
        before_size = past(size, "size")
        with m.If(past.valid & stalled):
            m.d.comb += [Assert(burst.valid, "burst withdrawn"),
                         Assert(payload.as_value() == before, "burst changed while offered"),
                         Assert(size == before_size, "burst length changed while offered")]

        # -- 4 KiB and beats ---------------------------------------------------------------------
        boundary_bits = (BURST_BOUNDARY - 1).bit_length()
        with m.If(burst.valid):
            m.d.comb += [
                Assert(payload.addr[:boundary_bits] + size <= BURST_BOUNDARY,
                       "a burst crosses a 4 KiB boundary"),
                Assert(payload.addr[:shift] == 0, "a burst starts inside a beat"),
                Assert(length <= MAX_BURST_BEATS, "a burst of more than 256 beats"),
            ]

        # -- the bursts are the transfer's bytes, in order -------------------------------------
        accepted = dut.cmd.valid & dut.cmd.ready
        taken = burst.valid & burst.ready
        running = Signal()
        next_addr = Signal(cfg.addr_width)
        row_start, stride = Signal(cfg.addr_width), Signal(cfg.addr_width)
        row_bytes, row_left = Signal(DMA_ROW_BYTES_BITS), Signal(DMA_ROW_BYTES_BITS)
        rows_left = Signal(range(self.MAX_ROWS + 1))
        rows_done = Signal(range(self.MAX_ROWS + 1))
        m.d.comb += [Assert(~burst.valid | running, "a burst without a transfer"),
                     Assert(~accepted | ~running, "a command taken during a transfer")]
        ends_row = size >= row_left
        with m.If(taken):
            m.d.comb += [Assert(payload.addr == next_addr, "a burst out of address order"),
                         Assert(size <= row_left, "a burst runs past the end of its row"),
                         Assert(payload.last == (ends_row & (rows_left == 1)),
                                "last is not on the transfer's final burst")]
            with m.If(~ends_row):
                m.d.sync += [next_addr.eq(next_addr + size), row_left.eq(row_left - size)]
            with m.Else():
                m.d.sync += [next_addr.eq(row_start + stride), row_start.eq(row_start + stride),
                             row_left.eq(row_bytes), rows_left.eq(rows_left - 1),
                             rows_done.eq(rows_done + 1)]
                with m.If(rows_left == 1):
                    m.d.sync += running.eq(0)
        with m.If(accepted):
            m.d.sync += [running.eq(1), next_addr.eq(command.addr), row_start.eq(command.addr),
                         stride.eq(command.stride), row_bytes.eq(command.row_bytes),
                         row_left.eq(command.row_bytes), rows_left.eq(command.rows),
                         rows_done.eq(0)]

        # -- covers --------------------------------------------------------------------------
        m.d.comb += [
            Cover(taken & ~ends_row
                  & (payload.addr[:boundary_bits] + size == BURST_BOUNDARY)),
            Cover(taken & (length == MAX_BURST_BEATS)),
            Cover(taken & payload.last & (rows_done == self.MAX_ROWS - 1)),
        ]
        return m
