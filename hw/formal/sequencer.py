"""Formal properties of the output-stationary tile sequencer
(:class:`hw.engine.sequencer.OutputStationarySequencer`), on a 2x2 and a 4x4 engine with
16 x 16 memories.

Every input is free: the host's commands (sizes up to :attr:`SequencerProperties.MAX_M`,
``MAX_N`` and ``MAX_K``, assumed, so that a command ends within the checked depth; positions
and flags free), the
memories' read data, the array's results, ``clear_error`` and the host-port errors. Promised:

* ``cmd.ready`` is ``~status.busy``: one command at a time;
* **bounded liveness, exactly**: a command the specification accepts (``sim.engine_model
  .validate``, restated here) raises ``done`` exactly :func:`sim.engine_model.command_cycles`
  cycles after it was accepted, one it rejects after ``REJECT_CYCLES``, and no ``done`` comes
  in between or without a command;
* a rejected command reads and writes nothing; every accumulator write belongs to a running
  command and lies inside its C region (row, first column, lanes);
* the error is sticky: it and its code stay until ``clear_error``, a host-port error or the
  next accepted command.

Covers: every command-check error code, a good command with and without ``accumulate``
(without: one of more than one tile row, and of more than one tile column where ``MAX_N``
allows it).
Mutant ``early_done``: the observed ``done`` may rise at the solver's choice.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover

from hw.engine.commands import ErrorCode
from hw.engine.sequencer import OutputStationarySequencer
from sim.config import ArrayConfig, EngineConfig
from sim.engine_spec import FIELD_BITS, REJECT_CYCLES, EngineTiming

from .common import History, Properties

__all__ = ["SequencerProperties", "Sequencer4x4Properties"]


def _engine(size: int) -> EngineConfig:
    """A ``size`` x ``size`` engine with 16 x 16 memories."""
    return EngineConfig(array=ArrayConfig(rows=size, cols=size), spad_width=16, a_rows=16,
                        b_rows=16, acc_width=16, acc_rows=16)


class SequencerProperties(Properties):
    """The sequencer of ``config`` with its properties (module docstring)."""

    NAME = "sequencer_2x2"
    DESCRIPTION = "output-stationary tile sequencer, 2x2 array, 16x16 memories, m, n, k <= 4"
    #: the longest command under the assumption takes 26 cycles
    TASKS = {"bmc": 40, "cover": 40}
    MUTANTS = ("early_done",)
    #: The engine the properties are proven on.
    CONFIG = _engine(2)
    #: Largest ``m``, ``n`` and ``k`` the free host may send (an assumption).
    MAX_M = MAX_N = MAX_K = 4

    def __init__(self, *, mutant: str | None = None):
        self.config = self.CONFIG
        super().__init__(OutputStationarySequencer(self.config), mutant=mutant)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        timing = EngineTiming.of(cfg)
        dut = self.instantiate(m)
        past = History(m)
        status = dut.status
        done = status.done
        if self.mutant == "early_done":
            done = status.done | AnySeq(1)

        incoming = dut.cmd.payload
        with m.If(dut.cmd.valid):
            m.d.comb += Assume((incoming.m <= self.MAX_M) & (incoming.n <= self.MAX_N)
                               & (incoming.k <= self.MAX_K))
        m.d.comb += Assert(dut.cmd.ready == ~status.busy, "cmd.ready is not ~busy")

        # -- the specification's verdict and cycle count of the command being accepted -----
        c = incoming
        a_height, a_width = Mux(c.a_transpose, c.k, c.m), Mux(c.a_transpose, c.m, c.k)
        b_height, b_width = Mux(c.b_transpose, c.n, c.k), Mux(c.b_transpose, c.k, c.n)
        wide = FIELD_BITS + 2
        good = Signal(name="spec_good")
        m.d.comb += good.eq(
            (c.m != 0) & (c.n != 0) & (c.k != 0)
            & (c.a_row.as_unsigned() + a_height <= cfg.a_rows)
            & (c.a_col.as_unsigned() + a_width <= cfg.spad_width)
            & (c.b_row.as_unsigned() + b_height <= cfg.b_rows)
            & (c.b_col.as_unsigned() + b_width <= cfg.spad_width)
            & (c.c_row.as_unsigned() + c.m <= cfg.acc_rows)
            & (c.c_col.as_unsigned() + c.n <= cfg.acc_width))
        rows, cols, floor = timing.rows, timing.cols, timing.min_tile_slots
        tiles = ((c.m + rows - 1) // rows) * ((c.n + cols - 1) // cols)
        slots = Mux(c.k > floor, c.k, floor)
        cycles = Signal(wide, name="spec_cycles")
        m.d.comb += cycles.eq(Mux(good, tiles * slots + Mux(c.accumulate, timing.overhead(True),
                                                             timing.overhead(False)),
                                  REJECT_CYCLES))

        # -- the command in flight -----------------------------------------------------------
        accepted = dut.cmd.valid & dut.cmd.ready
        running, expected, count = Signal(), Signal(wide), Signal(wide)
        command = Signal.like(incoming, name="running_command")
        command_good = Signal()
        with m.If(done):            # (a command may be accepted in the done cycle of the last)
            m.d.sync += running.eq(0)
        with m.If(accepted):
            m.d.sync += [running.eq(1), expected.eq(cycles), count.eq(1), command.eq(incoming),
                         command_good.eq(good)]
        with m.Elif(running):
            m.d.sync += count.eq(count + 1)
        m.d.comb += [
            Assert(~done | running, "done without a command"),
            Assert(~done | (count == expected), "done not after the cycle model's count"),
            Assert(~running | (count <= expected), "a command runs past its count"),
        ]

        # -- what a command may touch --------------------------------------------------------
        reads = dut.a_read.valid | dut.b_read.valid | dut.acc_read.valid
        write = dut.acc_write
        m.d.comb += [
            Assert(~running | command_good | (~reads & ~write.valid),
                   "a rejected command reads or writes"),
            Assert(~write.valid | running, "an accumulator write without a command"),
            # the engine hands the read port's address over by the claim alone
            Assert(~dut.acc_read.valid | dut.acc_read_claim, "an accumulator read not claimed"),
        ]
        with m.If(write.valid):
            row, col = write.payload.row, write.payload.col
            m.d.comb += [
                Assert((row >= command.c_row) & (row < command.c_row + command.m),
                       "write outside the command's rows"),
                Assert((col >= command.c_col) & (col < command.c_col + command.n),
                       "write outside the command's columns"),
            ]
            for lane in range(cols):
                m.d.comb += Assert(~write.payload.mask[lane]
                                   | (col + lane < command.c_col + command.n),
                                   "a write lane outside the command's columns")

        # -- sticky error ----------------------------------------------------------------------
        held = (past(status.error, "error") & ~past(accepted, "accepted")
                & ~past(dut.clear_error, "clear_error")
                & (past(dut.host_error.as_value(), "host_error") == ErrorCode.NONE.value))
        code_before = past(status.error_code.as_value(), "code")
        with m.If(past.valid & held):
            m.d.comb += [Assert(status.error, "error lost"),
                         Assert(status.error_code.as_value() == code_before,
                                "error code changed")]

        # -- covers ----------------------------------------------------------------------------
        for code in (ErrorCode.ZERO_SIZE, ErrorCode.A_RANGE, ErrorCode.B_RANGE,
                     ErrorCode.C_RANGE):
            m.d.comb += Cover(done & status.error & (status.error_code == code))
        several_tiles = command.m > rows
        if self.MAX_N > cols:
            several_tiles &= command.n > cols
        m.d.comb += [Cover(done & running & command_good & command.accumulate),
                     Cover(done & running & command_good & ~command.accumulate
                           & several_tiles)]
        return m


class Sequencer4x4Properties(SequencerProperties):
    """The same properties on a 4x4 engine: four result lanes per accumulator write, tiles of
    at least 8 issue slots; commands of up to 2 x 2 tiles (``m, n <= 8``), ``k <= 8`` (the
    longest takes 50 cycles)."""

    NAME = "sequencer_4x4"
    DESCRIPTION = "output-stationary tile sequencer, 4x4 array, 16x16 memories, m, n, k <= 8"
    TASKS = {"bmc": 52, "cover": 52}
    CONFIG = _engine(4)
    MAX_M = MAX_N = MAX_K = 8
