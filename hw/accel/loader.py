"""The load path: the DMA's read beats of one ``LOAD`` -> the engine's scratchpad and
accumulator write words.

The controller starts a ``LOAD`` by issuing the DMA read transfer (``rows`` rows of
``ceil(cols * bytes / beat)`` beats) and, at the same time, giving :class:`Loader` the
instruction's fields (:class:`LoadCommand`). The loader takes exactly that many beats from
``read_data``, unpacks the elements (little-endian, element ``i`` of a row at byte
``i * bytes`` of the row; the elements past ``cols`` in a row's last beat are dropped),
converts them when the command asks for it, and writes them as the engine's host write words:
row ``r``, elements ``c0 .. c0 + lanes - 1`` (``c0`` a multiple of the port's lanes) at
(``mem_row + r``, ``mem_col + c0``) with the mask of the elements that exist. ``done`` pulses
after the last word was taken. ``docs/accel.md`` (section "Loader") describes the block.
"""

import enum as py_enum

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.accel.dma import ReadBeat
from hw.engine.commands import host_write_layout, operand_write_layout
from hw.fp.converter import FP32Converter
from hw.fp.operand import OperandFormat
from hw.spec_enum import hardware_enum
from sim.accel_spec import FORMAT_BITS, FORMAT_BYTES, TRANSFER_FIELDS, Target
from sim.config import AccelConfig

__all__ = ["FormatCode", "TargetCode", "LoadCommand", "Loader"]

#: The format codes of ``LOAD``/``STORE`` (:data:`sim.accel_spec.FORMAT_BITS`: the index)
FormatCode = hardware_enum(
    py_enum.IntEnum("FormatBits", {name.upper(): code for code, name in enumerate(FORMAT_BITS)}),
    name="FormatCode", module=__name__, shape=TRANSFER_FIELDS["dram_format"][1],
    doc="Format codes of the transfer instructions: the index of the format in "
        ":data:`sim.accel_spec.FORMAT_BITS` (``FP16``, ``E4M3``, ``E5M2``, ``FP32``, ``BF16``).")

#: The memories a ``LOAD`` writes (:class:`sim.accel_spec.Target`)
TargetCode = hardware_enum(
    Target, name="TargetCode", module=__name__, shape=TRANSFER_FIELDS["target"][1],
    doc="Target memory of a transfer: the members of :class:`sim.accel_spec.Target`.")


def _bits(name):
    return TRANSFER_FIELDS[name][1]


class LoadCommand(data.Struct):
    """The fields of a ``LOAD`` instruction the loader needs (same names and widths as
    :data:`sim.accel_spec.TRANSFER_FIELDS`; the DRAM address and stride go to the DMA).

    The command must be one the golden model (:mod:`sim.accel_model`) executes without an
    error: the controller checks ``BAD_FIELD``, ``MISALIGNED`` and ``SPAD_OVERFLOW`` before it
    starts the loader, so a target of A, B or ACC; ``operand_format`` one the target's PEs take
    (A, B) with ``dram_format`` the same or ``FP32``; ``dram_format`` ``FP32`` for ACC (its
    ``operand_format`` is ignored, as is ``saturate`` without a conversion); ``rows`` and
    ``cols`` non-zero; ``copies`` (``K``, 0 read as 1) with ``rows >= K`` and ``copy_cols >=
    cols``. A command is one group of a ``LOAD`` (the controller
    issues the groups one by one). The loader's behaviour for any other command is undefined.
    """
    target: TargetCode
    dram_format: FormatCode
    operand_format: FormatCode
    saturate: _bits("saturate")
    rows: _bits("rows")
    cols: _bits("cols")
    mem_row: _bits("mem_row")
    mem_col: _bits("mem_col")
    copies: _bits("copies")
    copy_cols: _bits("copy_cols")
    #: the command's beats are one DRAM row, written into each of its ``rows`` memory rows (a
    #: ``LOAD`` of one copy with ``dram_stride = 0``: :func:`sim.accel_spec.repeats_row`)
    repeat: 1


def _log2(n: int) -> int:
    return (n - 1).bit_length()


class Loader(wiring.Component):
    """DMA read beats of one ``LOAD`` -> ``wr_a`` / ``wr_b`` / ``wr_acc`` write words.

    Parameters
    ----------
    config : AccelConfig
        The bus width (bytes per beat) and the array: ``wr_a`` carries ``rows`` lanes,
        ``wr_b`` and ``wr_acc`` ``cols`` lanes; FP32 -> operand converters are built for the
        operand formats that ``a_formats`` or ``b_formats`` name, ``beat / 4`` of each (one per
        FP32 element of a beat).

    Datapath
    --------
    ``read_data`` -> unpack and convert (A, B from FP32) -> beat register -> rotation of the
    beat so that the word's first element is in lane 0 -> merge with the elements of the word
    that came in earlier beats (``part``) -> output register -> the target's write port.
    A beat of ``E`` elements (``beat / bytes`` of the DRAM format) and a word of ``L`` lanes
    meet in one *step* per cycle: the step writes the elements of the word the beat holds and
    emits the word when its last element is there; the beat is used up when it holds nothing
    for a later word, else it stays for the next step (a beat that completes several words).

    Latency and throughput
    ----------------------
    * A beat taken in cycle ``t`` is in a word offered in cycle ``t + 2`` at the earliest;
      ``done`` pulses the cycle after the command's last word was taken, and the next command
      is accepted in that cycle.
    * When nothing pauses, a beat takes one cycle, or one per word whose last element it holds
      if that is more, and a command takes those cycles plus 3 from its accept to ``done``.
      So ``read_data`` is never stalled between a command's first and last beat when ``L`` is
      a multiple of ``E`` (every format at the default 64-bit bus and 8 x 8 array: ``E`` = 8,
      4, 2 for FP8, fp16, FP32), the write port takes a word every cycle when ``E >= L``, and
      with ``E < L`` not a divisor a row loses at most one cycle (at its last beat).
    * Each word is offered once per copy (``copies``; skipped copies take a cycle each too); a
      ``repeat`` command takes one DRAM row of beats and offers each of its words ``rows``
      times, to rows ``mem_row .. mem_row + rows - 1``: a cycle per memory word, as if the
      rows had come over the bus, without their beats.

    Ports
    -----
    cmd : stream of :class:`LoadCommand` (in)
        Accepted when idle (``ready`` is low from the accept until ``done``).
    read_data : stream of :class:`~hw.accel.dma.ReadBeat` (in)
        The DMA's read data; only the command's beats are taken (``last`` is not used: the
        loader counts them itself), none while idle.
    wr_a, wr_b : stream of :func:`~hw.engine.commands.operand_write_layout` (out)
        Operand words (``rows`` / ``cols`` lanes), tagged with the operand format.
    wr_acc : stream of :func:`~hw.engine.commands.host_write_layout` of FP32 words (out)
    done : out
        One-cycle pulse: the command's last write word was taken (in the cycle before).
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        array = config.engine.array
        super().__init__({
            "cmd": In(stream.Signature(LoadCommand)),
            "read_data": In(stream.Signature(ReadBeat(config.data_width))),
            "wr_a": Out(stream.Signature(operand_write_layout(array.rows))),
            "wr_b": Out(stream.Signature(operand_write_layout(array.cols))),
            "wr_acc": Out(stream.Signature(host_write_layout(array.cols, unsigned(32)))),
            "done": Out(1),
        })

    @property
    def operand_formats(self) -> tuple:
        """Operand formats a ``LOAD`` may write (those of either side), each with converters."""
        array = self.config.engine.array
        return tuple(dict.fromkeys(array.a_formats + array.b_formats))

    @property
    def converters_per_format(self) -> int:
        """FP32 elements per beat: the converters of each operand format."""
        return self.config.beat_bytes // FORMAT_BYTES["fp32"]

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols = cfg.engine.array.rows, cfg.engine.array.cols
        beat_bytes, width = cfg.beat_bytes, cfg.data_width
        lanes_max = max(rows, cols)
        formats = self.operand_formats
        # bytes of an element as the engine stores it: one (FP8), two (fp16), four (ACC)
        stored_sizes = sorted({FORMAT_BYTES[name] for name in formats} | {FORMAT_BYTES["fp32"]})
        field = _bits("cols")

        # ---- command -------------------------------------------------------------------------
        busy = Signal()
        finished = Signal()                     # every beat of the command has been used
        target = Signal(TargetCode, reset_less=True)
        operand_format = Signal(FormatCode, reset_less=True)
        tag = Signal(OperandFormat, reset_less=True)
        converting = Signal(reset_less=True)
        saturate = Signal(reset_less=True)
        stored_log2 = Signal(2, reset_less=True)           # log2 of a stored element's bytes
        per_beat = Signal(range(beat_bytes + 1), reset_less=True)   # elements per beat (E)
        lanes = Signal(range(lanes_max + 1), reset_less=True)       # lanes of the port (L)
        row_cols = Signal(field, reset_less=True)
        mem_col = Signal(field, reset_less=True)
        row = Signal(_bits("mem_row"), reset_less=True)             # scratchpad row of row r
        last_row = Signal(_bits("mem_row"), reset_less=True)
        word_col = Signal(field, reset_less=True)           # first element of the word
        emit_bits = max(_bits("copies"), _bits("rows"))
        copies = Signal(emit_bits, reset_less=True)     # K: copies of each word (repeat: rows)
        repeating = Signal(reset_less=True)
        copy_cols = Signal(field, reset_less=True)
        window_end = Signal(_bits("rows"), reset_less=True)  # rows - K: last first row
        row_index = Signal(_bits("rows"), reset_less=True)   # DRAM row r of the command
        beat_col = Signal(field, reset_less=True)           # first element of the beat

        command = self.cmd.payload
        accept = Signal()
        m.d.comb += [self.cmd.ready.eq(~busy), accept.eq(self.cmd.valid & ~busy)]
        is_acc = command.target == TargetCode.ACC
        op_sizes = {code: FORMAT_BYTES[name] for name in formats
                    for code in [FormatCode[name.upper()]]}
        op_log2 = 0
        for code, size in op_sizes.items():
            op_log2 = Mux(command.operand_format == code, _log2(size), op_log2)
        dram_log2 = 0
        for name in ("fp16", "e4m3", "e5m2", "fp32"):
            dram_log2 = Mux(command.dram_format == FormatCode[name.upper()],
                            _log2(FORMAT_BYTES[name]), dram_log2)
        command_tag = OperandFormat.FP16
        for name in formats:
            command_tag = Mux(command.operand_format == FormatCode[name.upper()],
                              OperandFormat.of(name), command_tag)
        command_copies = Mux(command.copies == 0, 1, command.copies)
        with m.If(accept):
            m.d.sync += [
                busy.eq(1),
                finished.eq(0),
                target.eq(command.target),
                operand_format.eq(command.operand_format),
                tag.eq(command_tag),
                converting.eq(~is_acc & (command.dram_format == FormatCode.FP32)),
                saturate.eq(command.saturate),
                stored_log2.eq(Mux(is_acc, _log2(FORMAT_BYTES["fp32"]), op_log2)),
                per_beat.eq(Const(beat_bytes) >> dram_log2),
                lanes.eq(Mux(command.target == TargetCode.A, rows, cols)),
                row_cols.eq(command.cols),
                mem_col.eq(command.mem_col),
                row.eq(command.mem_row),
                last_row.eq(Mux(command.repeat, command.mem_row,
                                command.mem_row + command.rows - 1)),
                word_col.eq(0),
                beat_col.eq(0),
                copies.eq(Mux(command.repeat, command.rows, command_copies)),
                copy_cols.eq(Mux(command.repeat, 0, command.copy_cols)),
                repeating.eq(command.repeat),
                window_end.eq(command.rows - command_copies),
                row_index.eq(0),
            ]

        # ---- read_data -> unpacked and converted beat ------------------------------------------
        raw = self.read_data.payload.data
        fp32_bits = 8 * FORMAT_BYTES["fp32"]
        stored = raw
        for name in formats:
            outputs = []
            for i in range(self.converters_per_format):
                convert = m.submodules[f"convert_{name}_{i}"] = FP32Converter(fmt=name, stages=0)
                m.d.comb += [
                    convert.i.valid.eq(1),
                    convert.i.payload.value.eq(raw[fp32_bits * i:fp32_bits * (i + 1)]),
                    convert.i.payload.saturate.eq(saturate),
                    convert.o.ready.eq(1),
                ]
                outputs.append(convert.o.payload)
            # element i of the beat at byte i * size, as if it had come in that format
            stored = Mux(converting & (operand_format == FormatCode[name.upper()]),
                         Cat(*outputs), stored)

        beat = Signal(width, reset_less=True)
        beat_valid = Signal()

        # ---- one step: the beat meets the word -----------------------------------------------
        wide = field + 1
        word_end_raw = Signal(wide)
        word_last = Signal()                    # the word holds the row's last element
        word_end = Signal(wide)
        beat_end_raw = Signal(wide)
        beat_end = Signal(wide)
        next_end_raw = Signal(wide + 1)
        next_end = Signal(wide + 1)             # end of the word after this one
        m.d.comb += [
            word_end_raw.eq(word_col + lanes),
            word_last.eq(word_end_raw >= row_cols),
            word_end.eq(Mux(word_last, row_cols, word_end_raw)),
            beat_end_raw.eq(beat_col + per_beat),
            beat_end.eq(Mux(beat_end_raw >= row_cols, row_cols, beat_end_raw)),
            next_end_raw.eq(word_end_raw + lanes),
            next_end.eq(Mux(next_end_raw >= row_cols, row_cols, next_end_raw)),
        ]
        complete = Signal()     # the word's last element is in the beat: emit the word
        consumed = Signal()     # nothing in the beat for a later word: take the next beat
        row_end = Signal()
        final = Signal()        # the command's last word (and last beat)
        m.d.comb += [
            complete.eq(word_end <= beat_end),
            row_end.eq(complete & word_last),
            consumed.eq(~complete | word_last | (beat_end < next_end)),
            final.eq(row_end & (row == last_row)),
        ]

        out_valid = Signal()
        word_done = Signal()        # the word in the output register: its last copy is gone
        out_free = Signal()
        step = Signal()
        m.d.comb += [
            out_free.eq(~out_valid | word_done),
            step.eq(beat_valid & (~complete | out_free)),
        ]

        take = Signal()
        m.d.comb += [
            self.read_data.ready.eq(busy & ~finished
                                    & (~beat_valid | (step & consumed & ~final))),
            take.eq(self.read_data.valid & self.read_data.ready),
        ]
        with m.If(take):
            m.d.sync += [beat.eq(stored), beat_valid.eq(1)]
        with m.Elif(step & consumed):
            m.d.sync += beat_valid.eq(0)

        with m.If(step):
            with m.If(row_end):
                m.d.sync += [word_col.eq(0), beat_col.eq(0), row.eq(row + 1),
                             row_index.eq(row_index + 1)]
                with m.If(final):
                    m.d.sync += finished.eq(1)
            with m.Elif(complete):
                m.d.sync += word_col.eq(word_end_raw)
                with m.If(consumed):
                    m.d.sync += beat_col.eq(beat_end_raw)
            with m.Else():
                m.d.sync += beat_col.eq(beat_end_raw)

        # the word's lane l is element d + l of the beat, d = word_col - beat_col; the step
        # only meets words and beats that share an element, so -lanes < d < per_beat
        offset = Signal(signed(8))
        m.d.comb += offset.eq((word_col - beat_col)[:8])
        byte_bits = _log2(beat_bytes)
        rotate = Signal(byte_bits)                  # bytes to rotate the beat right
        rotate_by = 0
        for size in stored_sizes:
            rotate_by = Mux(stored_log2 == _log2(size), (offset << _log2(size))[:byte_bits],
                            rotate_by)
        m.d.comb += rotate.eq(rotate_by)
        rotated = Signal(width)
        m.d.comb += rotated.eq((Cat(beat, beat) >> Cat(Const(0, 3), rotate))[:width])

        def element(position, size):
            """The stored element at ``position`` of the rotated beat, ``size`` bytes."""
            start = position * size % beat_bytes
            return rotated[8 * start:8 * (start + size)]

        def lane_width(lane):
            return 32 if lane < cols else 16     # wider lanes serve wr_acc too

        part = [Signal(lane_width(lane), name=f"part_{lane}", reset_less=True)
                for lane in range(lanes_max)]
        out_data = [Signal(lane_width(lane), name=f"out_data_{lane}", reset_less=True)
                    for lane in range(lanes_max)]
        out_mask = Signal(lanes_max, reset_less=True)
        out_row = Signal(_bits("mem_row"), reset_less=True)
        out_col = Signal(field, reset_less=True)
        out_last = Signal(reset_less=True)
        out_index = Signal(_bits("rows"), reset_less=True)     # the word's DRAM row r
        out_target = Signal(TargetCode, reset_less=True)
        out_tag = Signal(OperandFormat, reset_less=True)
        mask = []
        for lane in range(lanes_max):
            sizes = [size for size in stored_sizes if 8 * size <= lane_width(lane)]
            here = 0         # this word's element at the lane
            after = 0        # the next word's element at the lane (the beat's rest)
            for size in sizes:
                chosen = stored_log2 == _log2(size)
                here = Mux(chosen, element(lane, size), here)
                after_a = element(lane + rows, size)
                after_other = element(lane + cols, size)
                after = Mux(chosen, Mux(target == TargetCode.A, after_a, after_other), after)
            from_beat = Signal(name=f"from_beat_{lane}")
            valid = Signal(name=f"lane_valid_{lane}")
            merged = Signal(lane_width(lane), name=f"merged_{lane}")
            m.d.comb += [
                from_beat.eq(offset + lane >= 0),
                valid.eq((lane < lanes) & (word_col + lane < row_cols)),
                merged.eq(Mux(from_beat, here, part[lane])),
            ]
            mask.append(valid)
            with m.If(step):
                with m.If(complete):
                    m.d.sync += part[lane].eq(after)
                with m.Elif(from_beat):
                    m.d.sync += part[lane].eq(here)
            with m.If(step & complete):
                m.d.sync += out_data[lane].eq(merged)

        # copy k of the word (DRAM row r) goes to memory row mem_row + r - k, column
        # mem_col + word_col + k * copy_cols, when 0 <= r - k <= rows - K (else it is skipped);
        # repeating, copy k of the one row's word goes to memory row mem_row + k
        copy = Signal(emit_bits)
        copy_ok = Signal()
        out_ready = Signal()        # the port took the copy on offer
        advance = Signal()          # the copy on offer is taken or skipped
        m.d.comb += [
            copy_ok.eq(repeating | ((out_index >= copy) & (out_index - copy <= window_end))),
            advance.eq(out_valid & (out_ready | ~copy_ok)),
            word_done.eq(advance & (copy == copies - 1)),
        ]
        with m.If(step & complete):
            m.d.sync += [
                out_valid.eq(1),
                out_mask.eq(Cat(mask)),
                out_row.eq(row),
                out_col.eq(mem_col + word_col),
                out_last.eq(final),
                out_index.eq(row_index),
                out_target.eq(target),
                out_tag.eq(tag),
                copy.eq(0),
            ]
        with m.Elif(word_done):
            m.d.sync += out_valid.eq(0)
        with m.Elif(advance):
            m.d.sync += [copy.eq(copy + 1),
                         out_row.eq(Mux(repeating, out_row + 1, out_row - 1)),
                         out_col.eq(out_col + copy_cols)]

        # ---- output ports --------------------------------------------------------------------
        ports = ((self.wr_a, TargetCode.A, rows), (self.wr_b, TargetCode.B, cols),
                 (self.wr_acc, TargetCode.ACC, cols))
        ready = 0
        for port, code, port_lanes in ports:
            ours = out_target == code
            m.d.comb += [
                port.valid.eq(out_valid & ours & copy_ok),
                port.payload.row.eq(out_row),
                port.payload.col.eq(out_col),
                port.payload.mask.eq(out_mask[:port_lanes]),
            ]
            for lane in range(port_lanes):
                if code == TargetCode.ACC:
                    m.d.comb += port.payload.data[lane].eq(out_data[lane])
                else:
                    m.d.comb += [port.payload.data[lane].bits.eq(out_data[lane][:16]),
                                 port.payload.data[lane].fmt.eq(out_tag)]
            ready = ready | (ours & port.ready)
        m.d.comb += out_ready.eq(ready)

        last_taken = Signal()
        m.d.comb += last_taken.eq(word_done & out_last)
        m.d.sync += self.done.eq(last_taken)
        with m.If(last_taken):
            m.d.sync += busy.eq(0)
        return m
