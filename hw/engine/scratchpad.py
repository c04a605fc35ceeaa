"""Two-dimensional skewed banked scratchpad: any ``lanes`` consecutive elements of a row or of a
column in one access.

The mapping (element ``(i, j)`` in bank ``(i + j) % banks`` at address
``i * (width // banks) + j // banks``) and all sizes come from
:class:`sim.scratchpad_spec.ScratchpadGeometry`, which the golden model the benches and drivers
use (:mod:`sim.scratchpad_model`) shares.
"""

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.hdl import Shape, ShapeCastable
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.scratchpad_spec import ScratchpadGeometry

__all__ = ["SkewedScratchpad", "write_layout", "scatter_write_layout", "read_layout",
           "scatter_read_layout", "data_layout"]

READ_LATENCY = 2


def _element_shape(element):
    if not isinstance(element, ShapeCastable):
        try:
            Shape.cast(element)
        except TypeError:
            raise ValueError(f"element must be a shape or layout (e.g. Operand or "
                             f"unsigned(32)), not {element!r}") from None
    return element


def data_layout(geometry, element):
    """``lanes`` elements, lane 0 in the low bits."""
    return data.ArrayLayout(element, geometry.lanes)


def write_layout(geometry, element):
    """Write request: ``lanes`` elements of row ``row`` from column ``col`` on; lane ``t`` is
    written when bit ``t`` of ``mask`` is set."""
    return data.StructLayout({
        "row": geometry.row_bits,
        "col": geometry.col_bits,
        "data": data_layout(geometry, element),
        "mask": geometry.lanes,
    })


def scatter_write_layout(geometry, element):
    """Scatter write request: lane ``t`` of ``data`` goes to ``(row, cols[t])`` when bit ``t``
    of ``mask`` is set (the lanes' columns must fall in distinct banks; ``cols`` has one bit
    more than a column index, so that ``col + t`` of a row write converts without wrapping)."""
    return data.StructLayout({
        "row": geometry.row_bits,
        "cols": data.ArrayLayout(geometry.col_bits + 1, geometry.lanes),
        "data": data_layout(geometry, element),
        "mask": geometry.lanes,
    })


def scatter_read_layout(geometry):
    """Scatter read request: lane ``t`` reads ``(row, cols[t])`` when bit ``t`` of ``mask`` is
    set (zero otherwise); the masked lanes' columns must fall in distinct banks."""
    return data.StructLayout({
        "row": geometry.row_bits,
        "cols": data.ArrayLayout(geometry.col_bits + 1, geometry.lanes),
        "mask": geometry.lanes,
    })


def read_layout(geometry):
    """Read request: lanes along a row from ``(row, col)`` or, with ``column_mode``, down a
    column."""
    return data.StructLayout({
        "row": geometry.row_bits,
        "col": geometry.col_bits,
        "column_mode": 1,
    })


def _rotate(m, value, amount, *, element_width, left, name):
    """Rotate ``value`` by ``amount`` whole elements: a logarithmic shifter, one 2:1 mux per
    bit of ``amount`` (cheaper than a full crossbar of ``banks``:1 muxes)."""
    for k, bit in enumerate(amount):
        step = element_width << k
        rotated = value.rotate_left(step) if left else value.rotate_right(step)
        stage = Signal(len(value), name=f"{name}_by_{1 << k}")
        m.d.comb += stage.eq(Mux(bit, rotated, value))
        value = stage
    return value


def _or_select(hits, values):
    """The OR of the ``values`` whose ``hits`` bit is set (a one-hot multiplexer)."""
    result = 0
    for hit, value in zip(hits, values):
        result = result | Mux(hit, value, 0)
    return result


class SkewedScratchpad(wiring.Component):
    """Banked memory of ``rows`` x ``width`` elements, read by rows or by columns.

    Element ``(i, j)`` lives in bank ``(i + j) % banks`` at address
    ``i * (width // banks) + j // banks``, ``banks`` being the next power of two >= ``lanes``;
    each bank is one :class:`~amaranth.lib.memory.Memory` (``bank_<b>``, one write port and
    one non-transparent read port). Any ``lanes`` consecutive elements of a row or of a column
    lie in distinct banks, so one access at any position reaches them all.

    Parameters
    ----------
    lanes : int
        Elements per access, 1..32.
    width : int
        Elements per row, a power of two >= ``banks``.
    rows : int
        Rows, >= 1.
    element : shape-castable
        Shape of one element, e.g. :class:`~hw.fp.operand.Operand` or ``unsigned(32)``.

    Latency ``READ_LATENCY = 2`` cycles for a read (a request offered at cycle ``t`` is on
    ``o_read`` at cycle ``t + 2``: registered memory read, then registered rotation and zeroing);
    a write is in memory at the end of the cycle it is offered (a read requested in the next
    cycle sees it). Throughput: one read and one write every cycle, independent of each other;
    a read of an element written in the same cycle returns the old data (the bank read ports
    are not transparent).

    scatter : bool
        ``i_write`` takes :func:`scatter_write_layout` and ``i_read``
        :func:`scatter_read_layout`: every lane names its own column (in a bank of its own;
        where two lanes meet one bank, the bank takes the OR of their addresses and data).
        Each bank then selects its lane (a ``lanes``-input one-hot multiplexer per bank), and
        each lane of a read its bank (a ``banks``-input multiplexer per lane), instead of the
        rotations of row accesses; there is no column mode. The step-list engine's
        accumulator memory (:mod:`hw.engine.step_list_sequencer`).

    Ports
    -----
    i_write : stream of :func:`write_layout` (``ready`` is constant 1)
        Row-mode write: lane ``t`` of ``data`` goes to ``(row, col + t)`` when ``mask[t]``.
        Lanes outside the scratchpad (``row >= rows`` or ``col + t >= width``) are dropped:
        they never wrap onto other elements. With ``scatter``: :func:`scatter_write_layout`,
        lane ``t`` to ``(row, cols[t])``, lanes outside dropped likewise.
    i_read : stream of :func:`read_layout` (``ready`` is constant 1)
        Read request.
    o_read : ``valid`` and ``payload`` (:func:`data_layout`), no ``ready``
        The answer to the request of ``READ_LATENCY`` cycles before (it cannot be held back):
        lane ``t`` = element ``(row, col + t)``, or ``(row + t, col)`` with ``column_mode``;
        zero for lanes outside the scratchpad.
    """

    READ_LATENCY = READ_LATENCY

    def __init__(self, *, lanes, width, rows, element, scatter: bool = False):
        if not isinstance(scatter, bool):
            raise ValueError(f"scatter must be True or False, not {scatter!r}")
        self.geometry = ScratchpadGeometry(lanes=lanes, width=width, rows=rows)
        self.element = _element_shape(element)
        self.element_width = Shape.cast(element).width
        self.scatter = scatter
        writes = scatter_write_layout if scatter else write_layout
        reads = scatter_read_layout if scatter else read_layout
        super().__init__({
            "i_write": In(stream.Signature(writes(self.geometry, element))),
            "i_read": In(stream.Signature(reads(self.geometry))),
            "o_read": Out(wiring.Signature({
                "valid": Out(1),
                "payload": Out(data_layout(self.geometry, element)),
            })),
        })

    @property
    def lanes(self):
        return self.geometry.lanes

    @property
    def banks(self):
        return self.geometry.banks

    def _bank_position(self, m, b, row, col, column_mode, name):
        """Element that bank ``b`` serves in an access at ``(row, col)``: the lane offset
        ``(b - (row + col)) % banks`` added to the column (row mode) or to the row (column
        mode). Returns (address, inside)."""
        g = self.geometry
        offset = Signal(g.bank_bits, name=f"{name}_lane")
        m.d.comb += offset.eq(b - (row + col))
        if column_mode is None:
            i, j = row, col + offset
        else:
            i = row + Mux(column_mode, offset, 0)
            j = col + Mux(column_mode, 0, offset)
        inside = Signal(name=f"{name}_inside")
        m.d.comb += inside.eq((i < g.rows) & (j < g.width))
        # i * words_per_row + j // banks (only meaningful inside: j < width)
        address = Signal(range(g.depth) if g.depth > 1 else 1, name=f"{name}_addr")
        m.d.comb += address.eq(Cat(j[g.bank_bits:(g.width - 1).bit_length()], i))
        return address, inside

    def _scatter_bank(self, m, b, request, kind):
        """Bank ``b``'s part of a scatter ``request`` (``kind``: "write" or "read"): the lane
        whose column falls in it (one-hot select; distinct banks are the requester's
        promise). Returns (address, inside, hits): ``hits[t]`` when lane ``t`` is the one."""
        g = self.geometry
        hits = []
        for t in range(g.lanes):
            hit = Signal(name=f"bank_{b}_{kind}_lane_{t}")
            m.d.comb += hit.eq(request.mask[t]
                               & ((request.row + request.cols[t])[:g.bank_bits] == b))
            hits.append(hit)
        col = Signal(g.col_bits + 1, name=f"bank_{b}_{kind}_col")
        m.d.comb += col.eq(_or_select(hits, [request.cols[t] for t in range(g.lanes)]))
        inside = Signal(name=f"bank_{b}_{kind}_inside")
        m.d.comb += inside.eq((request.row < g.rows) & (col < g.width))
        address = Signal(range(g.depth) if g.depth > 1 else 1, name=f"bank_{b}_{kind}_addr")
        m.d.comb += address.eq(Cat(col[g.bank_bits:(g.width - 1).bit_length()], request.row))
        return address, inside, hits

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        w = self.element_width
        # both ports accept every cycle (a stream whose ready is constant 1)
        m.d.comb += [self.i_write.ready.eq(1), self.i_read.ready.eq(1)]

        write = self.i_write.payload
        read = self.i_read.payload
        if not self.scatter:
            read_rotation = (read.row + read.col)[:g.bank_bits]

        if not self.scatter:
            # write: lane t goes to bank (rotation + t) % banks
            write_rotation = (write.row + write.col)[:g.bank_bits]
            pad = g.banks - g.lanes
            write_data = _rotate(m, Cat(Value.cast(write.data), Const(0, pad * w)),
                                 write_rotation, element_width=w, left=True,
                                 name="write_data_rotated")
            write_mask = _rotate(m, Cat(write.mask, Const(0, pad)), write_rotation,
                                 element_width=1, left=True, name="write_mask_rotated")

        bank_words = []
        bank_inside = []
        for b in range(g.banks):
            memory = m.submodules[f"bank_{b}"] = Memory(shape=self.element, depth=g.depth,
                                                        init=[])
            bank_write = memory.write_port()
            bank_read = memory.read_port()

            enable = Signal(name=f"bank_{b}_write_en")
            word = Signal(w, name=f"bank_{b}_write_data")
            if self.scatter:
                address, inside, hits = self._scatter_bank(m, b, write, "write")
                selected = Cat(hits).any()
                word_in = _or_select(hits, [Value.cast(write.data[t]) for t in range(g.lanes)])
            else:
                address, inside = self._bank_position(m, b, write.row, write.col, None,
                                                      name=f"bank_{b}_write")
                selected, word_in = write_mask[b], write_data.word_select(b, w)
            m.d.comb += [
                enable.eq(self.i_write.valid & selected & inside),
                word.eq(word_in),
                bank_write.addr.eq(address),
                bank_write.en.eq(enable),
                Value.cast(bank_write.data).eq(word),
            ]

            if self.scatter:
                address, inside, _ = self._scatter_bank(m, b, read, "read")
            else:
                address, inside = self._bank_position(m, b, read.row, read.col,
                                                      read.column_mode, name=f"bank_{b}_read")
            word = Signal(w, name=f"bank_{b}_read_data")
            inside_q = Signal(name=f"bank_{b}_read_inside_q", reset_less=True)
            m.d.comb += [
                bank_read.addr.eq(address),
                bank_read.en.eq(self.i_read.valid),
                word.eq(Value.cast(bank_read.data)),
            ]
            with m.If(self.i_read.valid):
                m.d.sync += inside_q.eq(inside)
            bank_words.append(word)
            bank_inside.append(inside_q)

        # stage 1: memory words are out; zero the lanes outside, rotate bank (rotation + t)
        # onto lane t
        read_valid_q = Signal(name="read_valid_q")
        m.d.sync += read_valid_q.eq(self.i_read.valid)
        masked = Cat(Mux(inside, word, 0) for word, inside in zip(bank_words, bank_inside))
        if self.scatter:        # (scatter) lane t takes its bank's word
            lanes = []
            for t in range(g.lanes):
                bank_q = Signal(g.bank_bits, name=f"read_lane_{t}_bank_q", reset_less=True)
                on_q = Signal(name=f"read_lane_{t}_on_q", reset_less=True)
                with m.If(self.i_read.valid):
                    m.d.sync += [bank_q.eq((read.row + read.cols[t])[:g.bank_bits]),
                                 on_q.eq(read.mask[t])]
                lanes.append(Mux(on_q, masked.word_select(bank_q, w), 0))
            lanes_data = Cat(lanes)
        else:
            read_rotation_q = Signal(g.bank_bits, name="read_rotation_q", reset_less=True)
            with m.If(self.i_read.valid):
                m.d.sync += read_rotation_q.eq(read_rotation)
            lanes_data = _rotate(m, masked, read_rotation_q, element_width=w, left=False,
                                 name="read_data_rotated")

        # stage 2: registered output
        read_data = Signal(g.lanes * w, name="read_data", reset_less=True)
        with m.If(read_valid_q):
            m.d.sync += read_data.eq(lanes_data[:g.lanes * w])
        m.d.sync += self.o_read.valid.eq(read_valid_q)
        m.d.comb += Value.cast(self.o_read.payload).eq(read_data)
        return m
