"""``EPILOGUE`` ``DROPOUT_PLANE``: the engine's dropout keep plane written from a seed, for the
``GEMM`` s after it that select ``mask_dropout`` (DrowsyNet's dropped neurons, issue 18).

:class:`DropoutPlaneStarter` takes the ``EPILOGUE`` instructions whose op is ``DROPOUT_PLANE``
(the accelerator routes them here instead of to :class:`~hw.accel.epilogue.Epilogue`), hands
the engine's :class:`~hw.engine.mask.DropoutMaskWriter` the command ``(seed, threshold, m=rows,
n=cols, row=dst_row, col=dst_col)`` and pulses ``done`` once the writer is idle again: the
plane then holds :func:`sim.epilogue.dropout_keep` of the fields at the region, as
:mod:`sim.accel_model` defines it. The controller's decoder has refused every command the
writer would (no output masks, seed 0, threshold above 256, a row too long, a region outside
the plane), so the writer never raises an error here.

Latency: the mask command is offered the cycle after the accept; the writer takes it when it
is ready and is busy from the next cycle for :func:`sim.skip_timing.mask_write_cycles`
cycles; ``done`` pulses in the first cycle the writer is idle again and the next command may
be accepted in that cycle. Throughput: one command at a time.
"""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.accel.epilogue import EpilogueCommand
from hw.engine.mask import mask_command_layout

__all__ = ["DropoutPlaneStarter"]


class DropoutPlaneStarter(wiring.Component):
    """``DROPOUT_PLANE`` commands in, the engine's dropout mask commands out (module docstring).

    Ports
    -----
    cmd : stream of :class:`~hw.accel.epilogue.EpilogueCommand` (in), ``op`` ``DROPOUT_PLANE``
    done : 1 bit (out), a one-cycle pulse per command
    mask_cmd : stream of :func:`~hw.engine.mask.mask_command_layout` (out), to the engine
    mask_busy : 1 bit (in), the engine's ``mask_status.busy``
    """

    cmd: In(stream.Signature(EpilogueCommand))
    done: Out(1)
    mask_cmd: Out(stream.Signature(mask_command_layout()))
    mask_busy: In(1)

    def elaborate(self, platform):
        m = Module()
        command = Signal(EpilogueCommand, name="command")
        payload = self.mask_cmd.payload
        m.d.comb += [payload.seed.eq(command.seed), payload.threshold.eq(command.threshold),
                     payload.m.eq(command.rows), payload.n.eq(command.cols),
                     payload.row.eq(command.dst_row), payload.col.eq(command.dst_col)]
        with m.FSM(name="plane"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += command.eq(self.cmd.payload)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.mask_cmd.valid.eq(1)
                with m.If(self.mask_cmd.ready):
                    m.next = "WRITE"        # busy from the next cycle
            with m.State("WRITE"):
                with m.If(~self.mask_busy):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m
