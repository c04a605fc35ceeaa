"""A pipeline whose depth is a parameter.

A datapath is written once as a chain of combinational steps separated by *cut points*. The
:class:`Pipeline` decides, from the requested number of ``stages``, at which cut points a bank of
registers goes; the others are plain wires. The whole pipeline advances together: it stalls when
its output holds a valid result that the consumer does not take (``o.valid & ~o.ready``), so
``valid`` never depends on ``ready`` and throughput is one result per cycle without backpressure.
"""

from amaranth.hdl import Signal, Value
from amaranth.lib import data, wiring

__all__ = ["Pipeline", "PipelinedComponent"]


class Pipeline:
    """Register placement and valid/ready handshake for a stream datapath.

    Parameters
    ----------
    stages : int
        Number of register stages, ``0`` (combinational) up to ``cut_points``. This is the
        latency in cycles from input handshake to output valid.
    cut_points : int
        Number of places in the datapath where a register may be put.
    name : str
        Prefix for register names (readable waveforms and synthesis reports).
    """

    def __init__(self, *, stages, cut_points, name="pipe"):
        self.check_stages(stages, cut_points)
        self.stages = stages
        self.cut_points = cut_points
        self.name = name
        # Spread the registers evenly over the cut points: cut k (1-based) carries a register
        # when floor(k * stages / cut_points) steps up.
        self._registered = [
            (k * stages) // cut_points != ((k - 1) * stages) // cut_points
            for k in range(1, cut_points + 1)
        ]
        self._next_cut = 0
        self.enable = Signal(name=f"{name}_enable")

    @staticmethod
    def check_stages(stages, cut_points):
        """Validate a pipeline depth (components call this in ``__init__``; a fresh
        :class:`Pipeline` is made in each ``elaborate``)."""
        if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= cut_points:
            raise ValueError(f"stages must be an integer in 0..{cut_points}, not {stages!r}")

    def cut(self, m, values):
        """Pass ``values`` (a dict of name -> value) through the next cut point.

        Returns a dict with the same keys: the registered copies when this cut point carries a
        register, the values themselves otherwise. Call exactly ``cut_points`` times.
        """
        if self._next_cut >= self.cut_points:
            raise RuntimeError(f"{self.name}: more than {self.cut_points} cut points used")
        index = self._next_cut
        self._next_cut += 1
        if not self._registered[index]:
            return dict(values)
        out = {}
        with m.If(self.enable):
            for key, value in values.items():
                shape = value.shape() if isinstance(value, data.View) else Value.cast(value).shape()
                reg = Signal(shape, name=f"{self.name}_s{index}_{key}")
                m.d.sync += reg.eq(value)
                out[key] = reg
        return out

    def handshake(self, m, i, o):
        """Drive the stream handshake: ``i`` is the sink stream, ``o`` the source stream.

        Call after all cut points are used. The output payload is connected by the caller.
        """
        if self._next_cut != self.cut_points:
            raise RuntimeError(f"{self.name}: {self._next_cut} of {self.cut_points} cut points used")
        if self.stages == 0:
            m.d.comb += [o.valid.eq(i.valid), i.ready.eq(o.ready), self.enable.eq(1)]
            return
        m.d.comb += self.enable.eq(~o.valid | o.ready)
        m.d.comb += i.ready.eq(self.enable)
        valid = i.valid
        for stage in range(self.stages):
            reg = Signal(name=f"{self.name}_valid{stage}")
            with m.If(self.enable):
                m.d.sync += reg.eq(valid)
            valid = reg
        m.d.comb += o.valid.eq(valid)


class PipelinedComponent(wiring.Component):
    """A stream unit whose depth is ``stages`` registers over its class's ``CUT_POINTS``.

    Validates ``stages`` on construction and gives each elaboration a fresh :class:`Pipeline`
    (a pipeline counts the cut points it has used, so it cannot serve two elaborations).

    Parameters
    ----------
    stages : int
        Pipeline depth, ``0`` .. ``CUT_POINTS``.
    signature : wiring.Signature or dict, optional
        For units whose ports depend on parameters; class annotations otherwise.
    """

    CUT_POINTS: int

    def __init__(self, *, stages, signature=None):
        Pipeline.check_stages(stages, self.CUT_POINTS)
        self.stages = stages
        super().__init__(signature)

    def new_pipeline(self, name: str) -> Pipeline:
        return Pipeline(stages=self.stages, cut_points=self.CUT_POINTS, name=name)
