"""Bench: the stream checks themselves (``tb.harness.StreamChecker``, in Python and in the stream
player of :mod:`sim.stream_player`) against a one-stage unit with a known fault
(:class:`FaultyStage`): each fault must fail the check with its own message, the faultless unit
must pass."""

import cocotb
import numpy as np
from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tb.harness import StreamChecker, case, make_rng, reset, start_clock

#: fault -> the words the failure message must hold
FAULTS = {"none": None, "wrong": "mismatch at output 9:", "unstable": "stream rule broken",
          "extra": "unexpected extra output", "stall": "stream stalled"}
#: the unit's output is its input XOR this
MASK = 0x5A5A


class FaultyStage(wiring.Component):
    """One register stage, ``o = i ^ MASK``, with a fault: ``wrong`` (output 9 off by one
    bit), ``unstable`` (an output held back changes while offered), ``extra`` (one output more
    after ``n``), ``stall`` (accepts no input after the fifth)."""

    i: In(stream.Signature(16))
    o: Out(stream.Signature(16))

    def __init__(self, fault: str = "none", n: int = 40):
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {list(FAULTS)}, not {fault!r}")
        self.fault, self.n = fault, n
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        taken, accepted = Signal(16), Signal(16)
        held = Signal(4)
        load = Signal()
        # ``stall``: no input accepted after the fifth (the outputs before it still drain)
        gate = (accepted < 5) if self.fault == "stall" else 1
        m.d.comb += [load.eq(~self.o.valid | self.o.ready), self.i.ready.eq(load & gate)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += taken.eq(taken + 1)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += accepted.eq(accepted + 1)
        flip = (accepted == 9) if self.fault == "wrong" else 0
        with m.If(load):
            m.d.sync += [self.o.valid.eq(self.i.valid & self.i.ready),
                         self.o.payload.eq(self.i.payload ^ Mux(flip, MASK ^ 1, MASK))]
        if self.fault == "unstable":
            with m.If(self.o.valid & ~self.o.ready):
                m.d.sync += held.eq(held + 1)
                with m.If(held == 2):
                    m.d.sync += self.o.payload.eq(self.o.payload + 1)
        if self.fault == "extra":
            with m.If((taken == self.n) & ~self.o.valid):
                m.d.sync += [self.o.valid.eq(1), taken.eq(taken + 1)]
        return m


@cocotb.test()
async def faults_are_caught(dut):
    """The configured fault fails the check with its message; no fault passes."""
    data = case()
    rng = make_rng(dut)
    inputs = rng.integers(0, 1 << 16, data["n"]).tolist()
    expected = [x ^ MASK for x in inputs]
    checker = StreamChecker(dut, rng, p_idle=0.3, p_stall=0.5)
    checker.idle()
    await start_clock(dut)
    await reset(dut)
    want = FAULTS[data["fault"]]
    try:
        await checker.run(inputs, expected, lambda k: f"input 0x{inputs[k]:04x}", max_latency=8)
    except AssertionError as failure:
        assert want and want in str(failure), \
            f"fault {data['fault']}: the check failed with '{failure}', expected '{want}'"
        dut._log.info("fault %s caught: %s", data["fault"], failure)
        return
    assert want is None, f"fault {data['fault']} not caught (expected '{want}')"
