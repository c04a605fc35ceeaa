"""A GEMM engine with the AIP output selection beside it: approximate pass, selection, exact
pass, all on the engine.

::

    host rd_req --> engine --rd_data--+--(route = 0)--> host rd_data
                                      +--(route = 1)--> AipSelect --o--+
    host wr_mask ---------------------------------------------------+--+--> engine wr_mask

The AIP procedure on it (the host's side):

1. the approximate pass: a GEMM command with the compact weights (any subset the host laid
   out, e.g. the first ``K / 4`` of the ``K`` inputs) into an accumulator region ``Y``;
2. ``route = 1``, a selection command (``THRESHOLD`` with thresholds written, or ``TOP_N``)
   whose destination is the exact pass's ``C`` position, and read requests of ``Y`` row by row
   (``ceil(N / C)`` requests a row): the results stream into the selection unit and its keep
   beats into the host keep plane; wait for ``select_status.busy`` low, ``route = 0``;
3. the exact pass: the full GEMM with ``mask_host``: only the kept outputs are computed, the
   others are written ``+0`` (and a lookahead-window engine skips them).

Only ``rd_data`` and ``wr_mask`` are shared; every other engine port is the engine's own.
``wr_mask`` takes the selection unit's keep beats first (the host's wait while one is
offered); ``route`` must not change while read data are in flight.
"""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.aip.select import (AipSelect, SelectStatus, select_command_layout,
                           threshold_write_layout)
from hw.engine.engine import GemmEngine
from sim.config import EngineConfig

__all__ = ["AipEngine"]


class AipEngine(wiring.Component):
    """:class:`~hw.engine.engine.GemmEngine` and :class:`~hw.aip.select.AipSelect` (``lanes``
    the array's columns) sharing ``rd_data`` and ``wr_mask`` (module docstring).

    Parameters
    ----------
    config : EngineConfig
        The engine's, with ``output_mask=True``.
    max_len, max_n : int
        The selection unit's (:class:`~hw.aip.select.AipSelect`).

    Latency and throughput: the engine's and the selection unit's; routing adds no cycle.

    Ports
    -----
    Every port of the engine, with the same name and layout, and:

    route : 1 bit (in): ``rd_data`` goes to the selection unit (1) or the host (0)
    select_cmd : stream of :func:`~hw.aip.select.select_command_layout` (in)
    select_threshold : stream of :func:`~hw.aip.select.threshold_write_layout` ``(C)`` (in)
    select_status : :class:`~hw.aip.select.SelectStatus` (out)

    ``clear_error`` clears both units' errors.
    """

    def __init__(self, config, *, max_len, max_n=None):
        if not isinstance(config, EngineConfig) or not config.output_mask:
            raise ValueError(f"config must be an EngineConfig with output_mask=True, not "
                             f"{config!r}")
        self.config = config
        self.engine = GemmEngine(config)
        self.select = AipSelect(lanes=config.array.cols, max_len=max_len, max_n=max_n)
        members = dict(self.engine.signature.members.items())
        super().__init__({
            **members,
            "route": In(1),
            "select_cmd": In(stream.Signature(select_command_layout())),
            "select_threshold": In(stream.Signature(threshold_write_layout(config.array.cols))),
            "select_status": Out(SelectStatus),
        })

    def elaborate(self, platform):
        m = Module()
        engine = m.submodules.engine = self.engine
        select = m.submodules.select = self.select

        for name, member in self.engine.signature.members.items():
            if name in ("rd_data", "wr_mask"):
                continue
            if member.is_port:
                if member.flow == In:
                    m.d.comb += getattr(engine, name).eq(getattr(self, name))
                else:
                    m.d.comb += getattr(self, name).eq(getattr(engine, name))
            else:
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(engine, name))

        wiring.connect(m, wiring.flipped(self.select_cmd), select.cmd)
        wiring.connect(m, wiring.flipped(self.select_threshold), select.wr_threshold)
        m.d.comb += [self.select_status.eq(select.status),
                     select.clear_error.eq(self.clear_error)]

        # rd_data: to the selection unit or to the host
        results = engine.rd_data
        m.d.comb += [select.i.payload.eq(results.payload), self.rd_data.payload.eq(results.payload)]
        with m.If(self.route):
            m.d.comb += [select.i.valid.eq(results.valid), results.ready.eq(select.i.ready)]
        with m.Else():
            m.d.comb += [self.rd_data.valid.eq(results.valid), results.ready.eq(self.rd_data.ready)]

        # wr_mask: the selection unit's keep beats first
        plane = engine.wr_mask
        with m.If(select.o.valid):
            m.d.comb += [plane.valid.eq(1), plane.payload.eq(select.o.payload),
                         select.o.ready.eq(plane.ready)]
        with m.Else():
            m.d.comb += [plane.valid.eq(self.wr_mask.valid), plane.payload.eq(self.wr_mask.payload),
                         self.wr_mask.ready.eq(plane.ready)]
        return m
