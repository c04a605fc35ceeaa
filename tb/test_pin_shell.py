# amaranth: UnusedElaboratable=no
"""scripts.ecp5_fmax.PinShell (the 4-pin wrapper of the ECP5 fmax measurement): every input
bit of the wrapped component comes from the serial input chain, every output bit reaches the
serial output through the signature register (Amaranth simulator, against a Python model)."""

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from scripts.ecp5_fmax import PinShell


class _Adder(wiring.Component):
    """y = a + b, registered; z = a (combinational): a small design with two kinds of output."""

    a: In(3)
    b: In(2)
    y: Out(4)
    z: Out(3)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a + self.b)
        m.d.comb += self.z.eq(self.a)
        return m


def test_pin_shell_reaches_every_port_bit():
    inner = _Adder()
    shell = PinShell(inner=inner)
    bits = np.random.default_rng(7).integers(0, 2, 200)
    width_in, width_out = 5, 7

    async def bench(ctx):
        chain = signature = 0
        for bit in bits:
            ctx.set(shell.serial_in, int(bit))
            # inputs: a = chain[0:3], b = chain[3:5] (the flatten order of the ports)
            assert ctx.get(inner.a) == chain & 0b111
            assert ctx.get(inner.b) == (chain >> 3) & 0b11
            outputs = ctx.get(inner.y) | (ctx.get(inner.z) << 4)
            assert ctx.get(shell.serial_out) == signature >> (width_out - 1)
            await ctx.tick()
            chain = (((chain << 1) | int(bit)) ^ (chain & ~1)) & ((1 << width_in) - 1)
            signature = (outputs ^ (signature << 1)) & ((1 << width_out) - 1)

    sim = Simulator(shell)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("inner", [None, Signal(4), "array"])
def test_pin_shell_rejects_non_components(inner):
    with pytest.raises(ValueError, match="inner must be an amaranth wiring.Component"):
        PinShell(inner=inner)
