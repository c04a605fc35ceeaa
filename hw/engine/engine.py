"""The GEMM engine: scratchpads, accumulator memory, systolic array and tile sequencer.

::

    wr_a --> A scratchpad ---\\
                              >-- sequencer (os or ws) --> systolic array
    wr_b --> B scratchpad ---/        |   ^                       |
                                      v   | C_old, partial sums   | results
    wr_acc ------------------> accumulator memory <---------------/
    rd_req ------------------>        |
                                      v
                         FP32 -> out format --> FIFO --> rd_data

A host (later a DMA and a controller) lays A, B and ``C_old`` into the memories through the
write streams, issues :class:`~hw.engine.commands.GemmCommand` s on ``cmd`` and reads results
back through ``rd_req`` / ``rd_data``, as FP32 or converted to any of ``config.out_formats``.
"""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engine.array import SystolicArray
from hw.engine.commands import (ErrorCode, Status, command_layout, host_write_layout,
                                operand_write_layout, read_data_layout, read_request_layout,
                                step_write_layout, tile_write_layout)
from hw.engine.mask import KEEP_PLANES, DropoutMaskWriter, MaskStatus, mask_command_layout
from hw.engine.scratchpad import SkewedScratchpad
from hw.engine.sequencer import OutputStationarySequencer, _delay, geometries
from hw.engine.skip_sequencer import SkipSequencer
from hw.engine.step_list_sequencer import StepListSequencer
from hw.engine.ws_sequencer import WeightStationarySequencer
from hw.fp.converter import FP32Converter
from hw.fp.operand import Operand
from hw.sparsity.zero_detect import operand_nonzero
from sim.config import EngineConfig
from sim.engine_spec import SPAD_READ_LATENCY, EngineTiming

__all__ = ["GemmEngine"]


def _write(m, memory, valid, request, data_bits):
    """Write ``data_bits`` at the row, column and lane mask of ``request`` into ``memory``
    when ``valid``."""
    m.d.comb += [
        memory.i_write.valid.eq(valid),
        memory.i_write.payload.row.eq(request.row),
        memory.i_write.payload.col.eq(request.col),
        memory.i_write.payload.data.eq(data_bits),
        memory.i_write.payload.mask.eq(request.mask),
    ]


class GemmEngine(wiring.Component):
    """A GEMM engine for one :class:`~sim.config.EngineConfig`: output or weight stationary.

    Parameters
    ----------
    config : EngineConfig
        ``config.array.dataflow`` chooses the array and its sequencer:
        :class:`~hw.engine.sequencer.OutputStationarySequencer` (``"os"``) or
        :class:`~hw.engine.ws_sequencer.WeightStationarySequencer` (``"ws"``).
    host_acc_while_busy : bool
        Let ``wr_acc`` and ``rd_req`` use the accumulator memory while a command runs (below;
        default off: the engine's own contract for a host).

    Latency and throughput
    ----------------------
    * ``cmd``: a command runs for exactly :func:`sim.engine_model.command_cycles` cycles from
      its accept cycle to ``status.done`` (1 for a rejected one); ``cmd.ready`` is low while
      ``status.busy``. Sustained: ``R * C`` MACs per cycle when ``K >= 2R`` (output
      stationary) or ``M >= min_tile_slots`` (weight stationary, about ``2R + C``).
    * ``wr_a``, ``wr_b``: always ready, one row segment per cycle, even while a command runs
      (the host must not overwrite the operands of the running command). The data are in
      memory at the end of the accept cycle.
    * ``wr_acc``: one row segment per cycle, not ready while ``status.busy``.
    * ``rd_req`` / ``rd_data``: one row segment per cycle; ``rd_data`` comes
      :attr:`READ_LATENCY` (7) cycles after its request at the earliest (memory read 2,
      conversion :attr:`READ_CONVERT_STAGES`, FIFO 2), in request order, held under
      backpressure (up to :attr:`READ_BUFFER` requests in flight). ``rd_req`` is not ready
      while ``status.busy``. Results of a command are readable from the cycle of its ``done``.
    * With ``host_acc_while_busy=True`` (the accelerator's controller, which keeps the host's
      accesses out of the running command's ``C`` rows): ``wr_acc`` and ``rd_req`` are also
      ready while a command runs, in every cycle in which the sequencer does not use that port
      of the accumulator memory (``wr_acc``) or does not claim it (``rd_req``: the shift cycles
      of an accumulating command, which read ``C_old``); the sequencer has priority and the
      command's timing does not change. The host must not touch the running command's ``C`` region: a read of it returns
      undefined values, a write makes the result undefined.

    Errors (sticky in ``status``, see :class:`~hw.engine.commands.Status`): a bad command is
    rejected (``ZERO_SIZE``, ``A_RANGE``, ``B_RANGE``, ``C_RANGE``, as
    :func:`sim.engine_model.validate`) and the engine stays ready for the next; a host write
    whose ``(row, col)`` lies outside its memory is dropped and a read returns zeros
    (``ACCESS_RANGE``); a read whose ``fmt`` is not a configured format returns zeros
    (``READ_FORMAT``). Lanes of a valid write or read beyond the last column are dropped /
    read as zero without error (edge of a matrix). An operand whose format tag is not one of
    the array's ``a_formats`` / ``b_formats`` multiplies as NaN (as in the multiplier).

    Ports
    -----
    cmd : stream of :class:`~hw.engine.commands.GemmCommand` (in)
    status : :class:`~hw.engine.commands.Status` (out)
    clear_error : 1 bit (in)
    wr_a : stream of :func:`~hw.engine.commands.operand_write_layout` ``(R)`` (in)
    wr_b : stream of :func:`~hw.engine.commands.operand_write_layout` ``(C)`` (in)
    wr_acc : stream of :func:`~hw.engine.commands.host_write_layout` ``(C, 32)`` (in), FP32
    rd_req : stream of :func:`~hw.engine.commands.read_request_layout` (in)
    rd_data : stream of :func:`~hw.engine.commands.read_data_layout` (out)
    products : ``0 .. R*C`` (out), only on an engine with ``skip_zeros``
        (:meth:`counts_products`): the products the array added in a cycle (a valid
        step, both operands non-zero), ``PRODUCTS_LATENCY`` cycles after they reached their
        PEs; all of a command's are counted by the cycle of its ``done``. Its sum over a
        command is :func:`sim.skip_timing.computed_products` (the accelerator's
        ``products_skipped`` counter is ``M * N * K`` minus it)
    """

    #: Sequencer of each dataflow.
    SEQUENCERS = {"os": OutputStationarySequencer, "ws": WeightStationarySequencer}
    #: Array port -> sequencer port suffix, where the names differ.
    ARRAY_PORTS = {"a_in": "a", "b_in": "b", "init_in": "init", "weight_in": "weight",
                   "result_out": "result"}

    #: Pipeline registers in the read path's FP32 -> output format conversion (all three of
    #: ``FP32Converter``'s cut points), so that the memory read, the conversion and the FIFO
    #: write are not one path (25.6 ns on ECP5 without them, the engine's longest; with the
    #: last two cut points only, the unpack, shift and round stage took 17.4 ns).
    READ_CONVERT_STAGES = 3
    #: Cycles from a read's accept to its answer on ``rd_data`` at the earliest: the memory,
    #: the conversion, and the read buffer (``SyncFIFOBuffered``: 2 from write to ``r_rdy``).
    READ_LATENCY = SPAD_READ_LATENCY + READ_CONVERT_STAGES + 2
    #: Read requests the read path holds at once: one read per cycle (the count of reads in
    #: flight drops the cycle after an answer is taken).
    READ_BUFFER = READ_LATENCY + 1

    def __init__(self, config, *, host_acc_while_busy: bool = False):
        if not isinstance(config, EngineConfig):
            raise ValueError(f"config must be an EngineConfig, not {config!r}")
        if not isinstance(host_acc_while_busy, bool):
            raise ValueError(f"host_acc_while_busy must be True or False, not "
                             f"{host_acc_while_busy!r}")
        self.config = config
        self.host_acc_while_busy = host_acc_while_busy
        self.timing = EngineTiming.of(config)
        rows, cols = config.array.rows, config.array.cols
        masks = {}
        if config.step_lists:
            masks = {"wr_steps": In(stream.Signature(step_write_layout())),
                     "wr_tiles": In(stream.Signature(tile_write_layout(config)))}
        if config.output_mask:
            masks = {
                "wr_mask": In(stream.Signature(host_write_layout(cols, unsigned(1)))),
                "mask_cmd": In(stream.Signature(mask_command_layout())),
                "mask_status": Out(MaskStatus),
            }
        super().__init__({
            "cmd": In(stream.Signature(command_layout(config))),
            "status": Out(Status),
            "clear_error": In(1),
            "wr_a": In(stream.Signature(operand_write_layout(rows))),
            "wr_b": In(stream.Signature(operand_write_layout(cols))),
            "wr_acc": In(stream.Signature(host_write_layout(cols, unsigned(32)))),
            "rd_req": In(stream.Signature(read_request_layout(config))),
            "rd_data": Out(stream.Signature(read_data_layout(config))),
            **masks,
            **({"products": Out(range(rows * cols + 1))} if self.counts_products(config)
               else {}),
        })

    @staticmethod
    def counts_products(config) -> bool:
        """The engine has a ``products`` port: an array with the zero gate (``skip_zeros``),
        whose PEs tell which products they add."""
        return config.array.skip_zeros

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols = cfg.array.rows, cfg.array.cols

        window = cfg.array.skip_window
        sequencer_class = SkipSequencer if window > 1 else self.SEQUENCERS[cfg.array.dataflow]
        if cfg.step_lists:
            sequencer_class = StepListSequencer
        sequencer = m.submodules.sequencer = sequencer_class(cfg)
        array = m.submodules.array = SystolicArray(cfg.array)
        spad_a = m.submodules.spad_a = SkewedScratchpad(
            lanes=rows, width=cfg.spad_width, rows=cfg.a_rows, element=Operand)
        spad_b = m.submodules.spad_b = SkewedScratchpad(
            lanes=cols, width=cfg.spad_width, rows=cfg.b_rows, element=Operand)
        # zero skipping (hw/engine/skip_sequencer.py): copies 1 .. d-1 of each operand
        # scratchpad and flag planes 0 .. d-1, written with every host write
        copies, flag_planes = {}, {}
        for prefix, lanes, height in (("a", rows, cfg.a_rows), ("b", cols, cfg.b_rows)):
            copies[prefix] = {j: SkewedScratchpad(lanes=lanes, width=cfg.spad_width,
                                                  rows=height, element=Operand)
                              for j in range(1, window)}
            flag_planes[prefix] = {j: SkewedScratchpad(lanes=lanes, width=cfg.spad_width,
                                                       rows=height, element=unsigned(1))
                                   for j in range(window if window > 1 else 0)}
            for j, memory in copies[prefix].items():
                m.submodules[f"spad_{prefix}_{j}"] = memory
            for j, memory in flag_planes[prefix].items():
                m.submodules[f"flags_{prefix}_{j}"] = memory
        acc = m.submodules.acc_memory = SkewedScratchpad(
            lanes=cols, width=cfg.acc_width, rows=cfg.acc_rows, element=unsigned(32),
            scatter=cfg.step_lists)
        self._check_timing(array, spad_a)
        # output masks (hw/engine/mask.py): a copy of each keep plane per sequencer reader
        keep_planes = {}
        if cfg.output_mask:
            for plane in KEEP_PLANES:
                keep_planes[plane] = {}
                for j in range(sequencer.MASK_READERS):
                    memory = SkewedScratchpad(lanes=cols, width=cfg.acc_width,
                                              rows=cfg.acc_rows, element=unsigned(1))
                    m.submodules[f"{plane}_{j}"] = memory
                    keep_planes[plane][j] = memory

        # ---- sequencer <-> memories and array ----------------------------------------------
        # (fixed-latency, always-ready streams: valid and payload only)
        reads = [(sequencer.a_read, spad_a, sequencer.a_data),
                 (sequencer.b_read, spad_b, sequencer.b_data)]
        for kind, memories in (("", copies), ("_flag", flag_planes), ("", keep_planes)):
            for prefix, by_index in memories.items():
                reads += [(getattr(sequencer, f"{prefix}{kind}_read_{j}"), memory,
                           getattr(sequencer, f"{prefix}{kind}_data_{j}"))
                          for j, memory in by_index.items()]
        for requests, memory, data_in in reads:
            m.d.comb += [
                memory.i_read.valid.eq(requests.valid),
                memory.i_read.payload.eq(requests.payload),
                data_in.valid.eq(memory.o_read.valid),
                data_in.payload.eq(memory.o_read.payload),
            ]
        m.d.comb += [
            sequencer.acc_data.valid.eq(acc.o_read.valid),
            sequencer.acc_data.payload.eq(acc.o_read.payload),
        ]
        # the array's ports, named array_<port> on the sequencer
        for name, member in array.signature.members.items():
            if name == "products":
                m.d.comb += self.products.eq(array.products)
                continue
            ours = getattr(sequencer, f"array_{self.ARRAY_PORTS.get(name, name)}")
            if member.flow == In:
                m.d.comb += getattr(array, name).eq(ours)
            else:
                m.d.comb += ours.eq(getattr(array, name))

        # ---- command and status -------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.cmd), sequencer.cmd)
        m.d.comb += [
            self.status.eq(sequencer.status),
            sequencer.clear_error.eq(self.clear_error),
        ]
        busy = sequencer.status.busy

        # ---- host writes --------------------------------------------------------------------
        # conditions raising a host-port error this cycle (combined as plain expressions:
        # see the note on step_first in hw/engine/sequencer.py)
        outside = []
        for port, memory, height, width in ((self.wr_a, spad_a, cfg.a_rows, cfg.spad_width),
                                            (self.wr_b, spad_b, cfg.b_rows, cfg.spad_width)):
            name = "wr_a" if port is self.wr_a else "wr_b"
            inside = Signal(name=f"{name}_inside")
            m.d.comb += [
                inside.eq((port.payload.row < height) & (port.payload.col < width)),
                port.ready.eq(1),
            ]
            outside.append(port.valid & ~inside)
            # the memory, its copies and (zero detect on the write path) its flag planes
            prefix = name[-1]
            written = [(copy, port.payload.data)
                       for copy in (memory, *copies[prefix].values())]
            if flag_planes[prefix]:
                flags = Cat(operand_nonzero(m, port.payload.data[lane],
                                            name=f"{name}_lane_{lane}")[0]
                            for lane in range(memory.lanes))
                written += [(plane, flags) for plane in flag_planes[prefix].values()]
            for target, data_bits in written:
                _write(m, target, port.valid & inside, port.payload, data_bits)

        if cfg.output_mask:
            outside.append(self._mask_writes(m, keep_planes))

        # accumulator memory write port: the sequencer's results while busy, else the host
        wr_acc_inside = Signal(name="wr_acc_inside")
        m.d.comb += [
            self.wr_acc.ready.eq(~sequencer.acc_write.valid if self.host_acc_while_busy
                                 else ~busy),
            wr_acc_inside.eq((self.wr_acc.payload.row < cfg.acc_rows)
                             & (self.wr_acc.payload.col < cfg.acc_width)),
        ]
        host_write = Signal.like(acc.i_write.payload, name="wr_acc_request")
        m.d.comb += [
            host_write.row.eq(self.wr_acc.payload.row),
            host_write.data.eq(self.wr_acc.payload.data),
            host_write.mask.eq(self.wr_acc.payload.mask),
        ]
        if acc.scatter:       # a row write as a scatter write: lane t to col + t
            m.d.comb += [host_write.cols[t].eq(self.wr_acc.payload.col + t)
                         for t in range(cols)]
        else:
            m.d.comb += host_write.col.eq(self.wr_acc.payload.col)
        if cfg.step_lists:    # the step memory and tile table (checked by the sequencer)
            wiring.connect(m, wiring.flipped(self.wr_steps), sequencer.steps_write)
            wiring.connect(m, wiring.flipped(self.wr_tiles), sequencer.tiles_write)
        ours = sequencer.acc_write.valid
        m.d.comb += [
            acc.i_write.valid.eq(ours | (self.wr_acc.valid & self.wr_acc.ready & wr_acc_inside)),
            acc.i_write.payload.eq(Mux(ours, sequencer.acc_write.payload, host_write)),
        ]
        outside.append(self.wr_acc.valid & self.wr_acc.ready & ~wr_acc_inside)

        # ---- host reads ---------------------------------------------------------------------
        read_outside, bad_format = self._read_path(m, sequencer, acc, busy)
        outside.append(read_outside)

        bad_access = Signal(name="bad_access")
        m.d.comb += [
            bad_access.eq(Cat(outside).any()),
            sequencer.host_error.eq(Mux(bad_access, ErrorCode.ACCESS_RANGE,
                                        Mux(bad_format, ErrorCode.READ_FORMAT,
                                            ErrorCode.NONE))),
        ]
        return m

    def _mask_writes(self, m, keep_planes):
        """The keep planes' writers: ``wr_mask`` (host plane, always ready) and the dropout
        mask writer (dropout plane). Returns the condition of a host write outside the plane
        (``ACCESS_RANGE``)."""
        cfg = self.config
        port = self.wr_mask
        inside = Signal(name="wr_mask_inside")
        m.d.comb += [
            inside.eq((port.payload.row < cfg.acc_rows) & (port.payload.col < cfg.acc_width)),
            port.ready.eq(1),
        ]
        writer = m.submodules.dropout_writer = DropoutMaskWriter(
            geometries(cfg)[2], cfg.array.rows)
        wiring.connect(m, wiring.flipped(self.mask_cmd), writer.i)
        m.d.comb += [self.mask_status.eq(writer.status),
                     writer.clear_error.eq(self.clear_error)]
        host, drop = KEEP_PLANES
        for plane, valid, request in ((host, port.valid & inside, port.payload),
                                      (drop, writer.write.valid, writer.write.payload)):
            for memory in keep_planes[plane].values():
                _write(m, memory, valid, request, request.data)
        return port.valid & ~inside

    def _read_path(self, m, sequencer, acc, busy):
        """rd_req -> accumulator memory read (shared with the sequencer, which uses it only
        while busy) -> conversion -> FIFO -> rd_data. Returns the error conditions
        ``(outside, bad_format)`` of this cycle's request."""
        cfg = self.config
        cols = cfg.array.cols
        request = self.rd_req.payload

        outstanding = Signal(range(self.READ_BUFFER + 1), name="reads_outstanding")
        accepted = Signal(name="read_accepted")
        popped = Signal(name="read_popped")
        m.d.comb += [
            self.rd_req.ready.eq((~sequencer.acc_read_claim if self.host_acc_while_busy
                                  else ~busy) & (outstanding < self.READ_BUFFER)),
            accepted.eq(self.rd_req.valid & self.rd_req.ready),
            popped.eq(self.rd_data.valid & self.rd_data.ready),
        ]
        m.d.sync += outstanding.eq(outstanding + accepted - popped)

        inside = Signal(name="read_inside")
        format_ok = Signal(name="read_format_ok")
        m.d.comb += [
            inside.eq((request.row < cfg.acc_rows) & (request.col < cfg.acc_width)),
            format_ok.eq(request.fmt < len(cfg.out_formats)),
        ]
        outside = Signal(name="read_outside")
        bad_format = Signal(name="read_bad_format")
        m.d.comb += [outside.eq(accepted & ~inside), bad_format.eq(accepted & inside & ~format_ok)]

        host_read = Signal.like(acc.i_read.payload, name="rd_req_request")
        m.d.comb += host_read.row.eq(request.row)
        if acc.scatter:       # a row read as a scatter read: lane t from col + t
            m.d.comb += [*[host_read.cols[t].eq(request.col + t) for t in range(cols)],
                         host_read.mask.eq((1 << cols) - 1)]
        else:
            m.d.comb += [host_read.col.eq(request.col), host_read.column_mode.eq(0)]
        # the port's address goes to the sequencer in the cycles it claims (known early: its
        # read's validity waits for the address arithmetic, the engine's longest path when it
        # chose the address)
        m.d.comb += [
            acc.i_read.valid.eq(sequencer.acc_read.valid | (accepted & inside)),
            acc.i_read.payload.eq(Mux(sequencer.acc_read_claim, sequencer.acc_read.payload,
                                      host_read)),
        ]

        # the request's fields meet its data SPAD_READ_LATENCY cycles later
        pending_layout = data.StructLayout({
            "valid": 1, "zero": 1, "fmt": request.fmt.shape(), "saturate": 1,
        })
        pending = Signal(pending_layout, name="read_pending")
        m.d.comb += [
            pending.valid.eq(accepted),
            pending.zero.eq(~(inside & format_ok)),
            pending.fmt.eq(request.fmt),
            pending.saturate.eq(request.saturate),
        ]
        # beside the memory's data, then beside the converted data
        at_memory = _delay(m, pending, SkewedScratchpad.READ_LATENCY, name="read_pending")
        pending = _delay(m, at_memory, self.READ_CONVERT_STAGES, name="read_converting")

        lanes = []
        for c in range(cols):
            raw = acc.o_read.payload[c]
            choices = {}
            for index, name in enumerate(cfg.out_formats):
                if name == "fp32":        # no conversion: as many registers as it has
                    choices[index] = _delay(m, raw, self.READ_CONVERT_STAGES,
                                            name=f"read_fp32_{c}")
                    continue
                convert = m.submodules[f"convert_{name}_{c}"] = FP32Converter(
                    fmt=name, stages=self.READ_CONVERT_STAGES)
                m.d.comb += [
                    convert.i.valid.eq(1),
                    convert.i.payload.value.eq(raw),
                    convert.i.payload.saturate.eq(at_memory.saturate),
                    convert.o.ready.eq(1),
                ]
                choices[index] = convert.o.payload
            # a chain of plain expressions (see hw.engine.sequencer._ICARUS_NOTE)
            selected = 0
            for index, value in choices.items():
                selected = Mux(pending.fmt == index, value, selected)
            lane = Signal(32, name=f"read_lane_{c}")
            m.d.comb += lane.eq(Mux(pending.zero, 0, selected))
            lanes.append(lane)

        buffer = m.submodules.read_buffer = fifo.SyncFIFOBuffered(width=32 * cols,
                                                                  depth=self.READ_BUFFER)
        m.d.comb += [
            buffer.w_en.eq(pending.valid),
            buffer.w_data.eq(Cat(lanes)),
            self.rd_data.valid.eq(buffer.r_rdy),
            self.rd_data.payload.eq(buffer.r_data),
            buffer.r_en.eq(self.rd_data.ready),
        ]
        return outside, bad_format

    def _check_timing(self, array, spad):
        """The sequencer and the cycle model rely on these numbers: stop at once if a part
        has changed under them."""
        mismatches = []
        if spad.READ_LATENCY != self.timing.spad_read_latency:
            mismatches.append(f"scratchpad READ_LATENCY {spad.READ_LATENCY} != "
                              f"{self.timing.spad_read_latency}")
        if (array.timing.min_tile_cycles
                > self.timing.min_tile_slots * self.timing.interleave):
            mismatches.append("array min_tile_cycles")
        if mismatches:
            raise RuntimeError("engine timing disagrees with its parts: " + "; ".join(mismatches))
