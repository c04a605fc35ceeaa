"""The store path: accumulator memory -> DMA write beats, for one ``STORE`` instruction at a time.

The controller starts the DMA's write transfer (``rows`` rows of ``ceil(cols * bytes / beat)``
beats) and, at the same time, hands the instruction's fields to :class:`Storer`, which reads the
region through the engine's host read port (converted there to the DRAM format) and packs each
row into beats with byte strobes. ``docs/accel.md`` (section "Storer") describes the block.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.accel.dma import WriteBeat
from hw.engine.commands import read_data_layout, read_request_layout
from hw.engine.engine import GemmEngine
from sim.accel_spec import FORMAT_BITS, FORMAT_BYTES, TRANSFER_FIELDS
from sim.config import AccelConfig

__all__ = ["StoreCommand", "StoreGeometry", "Storer"]


class StoreCommand(data.Struct):
    """The fields of a ``STORE`` instruction the store path needs (widths of
    :data:`sim.accel_spec.TRANSFER_FIELDS`): the ``rows`` x ``cols`` accumulator region at
    (``mem_row``, ``mem_col``), converted to ``dram_format`` (a :data:`sim.accel_spec.FORMAT_BITS`
    code) with ``saturate``."""
    dram_format: TRANSFER_FIELDS["dram_format"][1]
    saturate: TRANSFER_FIELDS["saturate"][1]
    rows: TRANSFER_FIELDS["rows"][1]
    cols: TRANSFER_FIELDS["cols"][1]
    mem_row: TRANSFER_FIELDS["mem_row"][1]
    mem_col: TRANSFER_FIELDS["mem_col"][1]


class StoreGeometry:
    """How a store of elements of ``size`` bytes is cut, for an engine whose reads return
    ``read_width`` elements and a bus of ``beat_bytes`` bytes (pure arithmetic, shared by the
    gateware and its bench).

    A row's beat ``b`` holds elements ``b * per_beat`` ... (``per_beat = beat_bytes / size``;
    an element never straddles two beats). Each beat is read from the engine in ``reads``
    requests of up to ``per_read = min(read_width, per_beat)`` elements, request ``q`` at
    element ``b * per_beat + q * per_read``; so slot ``s`` of a beat always comes from lane
    ``s % per_read`` of request ``s // per_read``.
    """

    def __init__(self, *, size: int, read_width: int, beat_bytes: int):
        if size not in (1, 2, 4):
            raise ValueError(f"size must be 1, 2 or 4 bytes, not {size!r}")
        self.size, self.beat_bytes = size, beat_bytes
        self.shift = size.bit_length() - 1
        self.per_beat = beat_bytes // size
        self.per_read = min(read_width, self.per_beat)
        self.reads = -(-self.per_beat // self.per_read)

    def source(self, byte: int) -> tuple[int, int, int]:
        """``(request, lane, byte of the lane)`` that byte ``byte`` of a beat comes from."""
        slot, within = divmod(byte, self.size)
        request, lane = divmod(slot, self.per_read)
        return request, lane, within

    def requests(self, cols: int) -> int:
        """Engine reads of one row of ``cols`` elements."""
        full, rest = divmod(cols, self.per_beat)
        return full * self.reads + -(-rest // self.per_read)


class Storer(wiring.Component):
    """Moves one accumulator region per ``cmd`` to the DMA's ``write_data``, a DRAM row per region
    row, as the golden model's ``STORE`` (:mod:`sim.accel_model`).

    For each row ``r`` it reads the engine's accumulator memory along row ``mem_row + r`` from
    ``mem_col`` on (``rd_req``: ``fmt`` the index of ``dram_format`` in the engine's
    ``out_formats``, ``saturate``), takes the converted words from ``rd_data`` (the value in the
    low bits of each 32-bit lane) and sends the row's ``cols`` elements little-endian, element
    ``i`` at byte ``i * bytes`` of the row, as ``ceil(cols * bytes / beat)`` beats; strobes are
    all set except past the row's end in its last beat, where the data bytes are zero. Reads go
    by :class:`StoreGeometry`: per beat, ``ceil(per_beat / per_read)`` requests of up to
    ``per_read = min(C, per_beat)`` elements (``C`` the array's columns, the engine's read
    width).

    The command must be valid (the controller checks it before): ``rows`` and ``cols`` non-zero,
    ``dram_format`` one of the engine's ``out_formats`` and the region inside the accumulator
    memory; otherwise what it writes is undefined. ``cmd`` is accepted when no command is in
    progress; ``done`` pulses for one cycle, the cycle after the last beat was accepted (the
    next command may be accepted in that cycle).

    Latency and throughput: the first read is requested the cycle after ``cmd`` is accepted; a
    beat is offered the cycle after the engine answers its last read, ``done`` the cycle after
    the last beat is taken. Reads are requested in every cycle the engine is ready, rows back
    to back, with up to ``GemmEngine.READ_BUFFER + 1`` in flight (a read answered in the cycle
    a new one is requested still holds its place). So against a read port that answers a read
    per cycle after ``L <= READ_BUFFER`` cycles, with ``write_data`` always ready, a command of
    ``N`` reads takes ``N + L + 2`` cycles from accept to ``done``: one beat per cycle when
    ``C >= per_beat`` (each read fills a beat), else one beat per ``ceil(per_beat / C)``
    cycles (the engine's read width, ``C * bytes`` bytes per cycle, is the limit). The
    :class:`~hw.engine.engine.GemmEngine` itself answers one read per cycle after
    ``L = READ_LATENCY`` (7) cycles (``READ_BUFFER = L + 1`` in flight; docs/accel.md,
    "Storer"): one beat per cycle at best.

    Ports
    -----
    cmd : stream of :class:`StoreCommand` (in)
    rd_req : stream of :func:`hw.engine.commands.read_request_layout` (out), to the engine
    rd_data : stream of :func:`hw.engine.commands.read_data_layout` (in), from the engine
    write_data : stream of :class:`hw.accel.dma.WriteBeat` (out), to the DMA
    done : 1 bit (out)
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        engine = config.engine
        #: geometry per element size (bytes) among the engine's output formats
        self.geometries = {size: StoreGeometry(size=size, read_width=engine.array.cols,
                                               beat_bytes=config.beat_bytes)
                           for size in sorted({FORMAT_BYTES[f] for f in engine.out_formats})}
        super().__init__({
            "cmd": In(stream.Signature(StoreCommand)),
            "rd_req": Out(stream.Signature(read_request_layout(engine))),
            "rd_data": In(stream.Signature(read_data_layout(engine))),
            "write_data": Out(stream.Signature(WriteBeat(config.data_width))),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        engine = cfg.engine
        geometries = list(self.geometries.values())
        most_per_beat = max(g.per_beat for g in geometries)
        most_reads = max(g.reads for g in geometries)

        # what travels beside each read request, through the engine, to its data
        tag_layout = data.StructLayout({
            "request": range(most_reads),          # q: which requests of the beat
            "count": range(most_per_beat + 1),     # elements of the beat up to this request
            "beat_end": 1,                         # the beat's last request
            "last": 1,                             # the command's last request
        })
        m.submodules.tags = tags = fifo.SyncFIFO(width=tag_layout.size,
                                                 depth=GemmEngine.READ_BUFFER + 1)

        # -- the command ----------------------------------------------------------------------
        busy = Signal()                  # from accept to the last beat's handshake
        issuing = Signal()               # from accept to the last read request
        command = self.cmd.payload
        # per command, without reset: meaningful only while busy
        fmt = Signal.like(self.rd_req.payload.fmt, reset_less=True)
        saturate = Signal(reset_less=True)
        size = Signal(range(len(geometries)), reset_less=True)  # index into geometries
        rows_left = Signal.like(command.rows, reset_less=True)  # the current row included
        cols = Signal.like(command.cols, reset_less=True)
        row = Signal.like(command.mem_row, reset_less=True)
        first_col = Signal.like(command.mem_col, reset_less=True)
        col = Signal.like(command.mem_col, reset_less=True)     # of the next request
        row_left = Signal.like(command.cols, reset_less=True)   # elements from col on
        request = Signal(range(most_reads), reset_less=True)
        in_beat = Signal(range(most_per_beat + 1), reset_less=True)  # elements before col

        m.d.comb += self.cmd.ready.eq(~busy)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [
                busy.eq(1),
                issuing.eq(1),
                saturate.eq(command.saturate),
                rows_left.eq(command.rows),
                cols.eq(command.cols),
                row.eq(command.mem_row),
                first_col.eq(command.mem_col),
                col.eq(command.mem_col),
                row_left.eq(command.cols),
                request.eq(0),
                in_beat.eq(0),
            ]
            with m.Switch(command.dram_format):
                for code, name in enumerate(FORMAT_BITS):
                    if name in engine.out_formats:
                        index = list(self.geometries).index(FORMAT_BYTES[name])
                        with m.Case(code):
                            m.d.sync += [fmt.eq(engine.out_formats.index(name)),
                                         size.eq(index)]

        def by_size(attribute):
            """The geometry's number for the command's element size (a chain of muxes)."""
            value = getattr(geometries[0], attribute)
            for index, geometry in enumerate(geometries[1:], start=1):
                value = Mux(size == index, getattr(geometry, attribute), value)
            return value

        per_read = Signal(range(most_per_beat + 1))
        per_beat = Signal(range(most_per_beat + 1))
        m.d.comb += [per_read.eq(by_size("per_read")), per_beat.eq(by_size("per_beat"))]

        # -- read requests --------------------------------------------------------------------
        beat_left = Signal()             # the request reaches the end of the beat...
        span = Signal(range(most_per_beat + 1))     # ...its elements inside the beat
        row_end = Signal()               # it reaches the end of the row
        beat_end = Signal()
        lanes = Signal(range(most_per_beat + 1))    # its elements inside the beat and the row
        m.d.comb += [
            # per_read need not divide per_beat: a beat's last request may reach past it
            beat_left.eq(in_beat + per_read >= per_beat),
            span.eq(Mux(beat_left, per_beat - in_beat, per_read)),
            row_end.eq(row_left <= span),
            beat_end.eq(row_end | beat_left),
            lanes.eq(Mux(row_end, row_left, span)),
        ]
        tag = data.View(tag_layout, tags.w_data)
        m.d.comb += [
            self.rd_req.valid.eq(issuing & tags.w_rdy),
            self.rd_req.payload.row.eq(row),
            self.rd_req.payload.col.eq(col),
            self.rd_req.payload.fmt.eq(fmt),
            self.rd_req.payload.saturate.eq(saturate),
            tags.w_en.eq(self.rd_req.valid & self.rd_req.ready),
            tag.request.eq(request),
            tag.count.eq(in_beat + lanes),
            tag.beat_end.eq(beat_end),
            tag.last.eq(row_end & (rows_left == 1)),
        ]
        with m.If(self.rd_req.valid & self.rd_req.ready):
            with m.If(row_end):
                with m.If(rows_left == 1):
                    m.d.sync += issuing.eq(0)
                m.d.sync += [
                    rows_left.eq(rows_left - 1),
                    row.eq(row + 1),
                    col.eq(first_col),
                    row_left.eq(cols),
                    request.eq(0),
                    in_beat.eq(0),
                ]
            with m.Else():
                m.d.sync += [col.eq(col + span), row_left.eq(row_left - span)]
                with m.If(beat_end):
                    m.d.sync += [request.eq(0), in_beat.eq(0)]
                with m.Else():
                    m.d.sync += [request.eq(request + 1), in_beat.eq(in_beat + span)]

        # -- packing --------------------------------------------------------------------------
        beat_bytes = cfg.beat_bytes
        beat = Signal(data.ArrayLayout(8, beat_bytes), reset_less=True)
        full = Signal()                  # beat holds a finished beat, offered on write_data
        count = Signal(range(most_per_beat + 1), reset_less=True)   # its elements
        last = Signal(reset_less=True)
        head = data.View(tag_layout, tags.r_data)
        take = Signal()
        sent = Signal()
        m.d.comb += [
            self.rd_data.ready.eq(~full | self.write_data.ready),
            take.eq(self.rd_data.valid & self.rd_data.ready),
            tags.r_en.eq(take),
            sent.eq(self.write_data.valid & self.write_data.ready),
        ]
        # each byte of the beat has one source per element size: a lane's byte of one request
        for byte in range(beat_bytes):
            for index, geometry in enumerate(geometries):
                source, lane, within = geometry.source(byte)
                hit = take & (head.request == source)
                if len(geometries) > 1:
                    hit &= size == index
                with m.If(hit):
                    m.d.sync += beat[byte].eq(
                        self.rd_data.payload[lane][8 * within:8 * within + 8])
        with m.If(take & head.beat_end):
            m.d.sync += [full.eq(1), count.eq(head.count), last.eq(head.last)]
        with m.Elif(sent):
            m.d.sync += full.eq(0)

        strobes = []
        for byte in range(beat_bytes):
            strobe = count > (byte >> geometries[0].shift)
            for index, geometry in enumerate(geometries[1:], start=1):
                strobe = Mux(size == index, count > (byte >> geometry.shift), strobe)
            strobes.append(strobe)
        strobe = Signal(beat_bytes)
        m.d.comb += [
            strobe.eq(Cat(strobes)),
            self.write_data.valid.eq(full),
            self.write_data.payload.strobe.eq(strobe),
            self.write_data.payload.data.eq(
                Cat(Mux(strobe[byte], beat[byte], 0) for byte in range(beat_bytes))),
        ]

        # -- completion -----------------------------------------------------------------------
        m.d.sync += self.done.eq(sent & last)
        with m.If(sent & last):
            m.d.sync += busy.eq(0)
        return m
