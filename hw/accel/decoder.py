"""Instruction decoder of the accelerator's controller: one 256-bit instruction word in, its
opcode and fields out, and the error it stops with before it runs.

The fields sit where :data:`sim.accel_spec.HEADER`, :data:`~sim.accel_spec.TRANSFER_FIELDS`
and :data:`~sim.accel_spec.GEMM_FIELDS` put them (one table for the hardware, the golden model
and the compiler). The checks are those of :func:`sim.accel_model.instruction_error`, in its
order: ``ILLEGAL_OPCODE``; for ``LOAD``/``STORE`` ``BAD_FIELD`` (target, formats the memory
takes, zero size, an address beyond ``addr_width``), ``MISALIGNED`` (address or stride not a
multiple of the beat, or a group stride when there are several groups), ``SPAD_OVERFLOW``
(``mem_row + groups * (rows - copies + 1)``, ``mem_col + (copies - 1) * copy_cols + cols``,
sums never truncated; a ``STORE`` of several groups or copies, a window of copies longer than
the rows or copies that overlap are ``BAD_FIELD``); for ``GEMM`` the mask
flags on an engine without ``output_mask`` (``BAD_FIELD``). A GEMM's sizes and regions are the
engine's own check (its ``ZERO_SIZE`` is the controller's ``BAD_FIELD``, its ``*_RANGE``
``SPAD_OVERFLOW``), so the decoder does not repeat it. For ``EPILOGUE`` (fields
:data:`~sim.accel_spec.EPILOGUE_FIELDS`) all of the model's checks: ``BAD_FIELD`` (an undefined
``op``; ``CAST`` to a format that is not an output format, any other op without ``fp32`` among
them; zero size; ``write_mask`` other than on ``RELU`` with output masks; ``DROPOUT_PLANE``
without output masks; a ``DROPOUT`` or ``DROPOUT_PLANE`` seed of 0, threshold above 256 or row
of more than 8192 elements; a source region that overlaps the
destination without being it), then ``SPAD_OVERFLOW`` (destination, then source region; 17-bit
sums). The ``epilogue`` output is bit for bit the
:class:`~hw.accel.epilogue.EpilogueCommand` of the ``Epilogue`` block.

Combinational: the controller registers the instruction word and reads the outputs in the same
cycle.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.accel.dma import ErrorCode
from sim.accel_spec import (EPILOGUE_DROPOUT_BITS, EPILOGUE_FIELDS, EPILOGUE_MASK_OPS,
                            EPILOGUE_MAX_THRESHOLD, EPILOGUE_SOURCE_OPS, FORMAT_BITS,
                            GEMM_FIELDS, HEADER, INSTRUCTION_BYTES, TRANSFER_FIELDS, EpilogueOp,
                            Opcode, Target)
from sim.lfsr_spec import ROW_STRIDE
from sim.config import AccelConfig

__all__ = ["TransferFields", "GemmFields", "EpilogueFields", "InstructionDecoder"]


def _layout(table: dict) -> data.StructLayout:
    return data.StructLayout({name: width for name, (_, width) in table.items()})


#: The fields of a LOAD or STORE (:data:`sim.accel_spec.TRANSFER_FIELDS`)
TransferFields = _layout(TRANSFER_FIELDS)
#: The fields of a GEMM (:data:`sim.accel_spec.GEMM_FIELDS`)
GemmFields = _layout(GEMM_FIELDS)
#: The fields of an EPILOGUE (:data:`sim.accel_spec.EPILOGUE_FIELDS`)
EpilogueFields = _layout(EPILOGUE_FIELDS)


class InstructionDecoder(wiring.Component):
    """Instruction word -> opcode, fields, error (module docstring).

    Parameters
    ----------
    config : AccelConfig

    Ports
    -----
    instruction : In(256)
        The instruction's 32 bytes, byte 0 in bits 7:0.
    opcode : Out(8)
    header : Out(HEADER layout)
        The opcode and the ``fence`` bit.
    transfer : Out(TransferFields)
        The word read as a LOAD/STORE (meaningful for those opcodes).
    gemm : Out(GemmFields)
        The word read as a GEMM.
    epilogue : Out(EpilogueFields)
        The word read as an EPILOGUE (the ``Epilogue`` block's command).
    groups : Out(9)
        A transfer's groups: ``groups``, 0 read as 1 (:func:`sim.accel_spec.group_count`).
    copies : Out(5)
        A transfer's copies: ``copies``, 0 read as 1 (:func:`sim.accel_spec.copy_count`).
    group_rows : Out(17)
        The memory rows of one group, ``rows - copies + 1`` (:func:`sim.accel_spec.group_rows`;
        meaningful when the instruction has no error).
    span_rows : Out(24)
        A transfer's memory rows, ``groups * group_rows``.
    error : Out(ErrorCode)
        ``NONE`` if the instruction may run.
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self._config = config
        super().__init__({
            "instruction": In(8 * INSTRUCTION_BYTES),
            "opcode": Out(8),
            "header": Out(_layout(HEADER)),
            "transfer": Out(TransferFields),
            "gemm": Out(GemmFields),
            "epilogue": Out(EpilogueFields),
            "groups": Out(9), "copies": Out(5), "group_rows": Out(17), "span_rows": Out(24),
            "error": Out(ErrorCode),
        })

    def elaborate(self, platform):
        m = Module()
        config, engine = self._config, self._config.engine
        word = self.instruction
        for port, table in ((self.header, HEADER), (self.transfer, TRANSFER_FIELDS),
                            (self.gemm, GEMM_FIELDS), (self.epilogue, EPILOGUE_FIELDS)):
            for name, (low, width) in table.items():
                m.d.comb += getattr(port, name).eq(word[low:low + width])
        m.d.comb += self.opcode.eq(self.header.opcode)

        t, g = self.transfer, self.gemm
        code = {name: FORMAT_BITS.index(name) for name in FORMAT_BITS}

        def one_of(value, names):
            hit = 0
            for name in names:
                hit = hit | (value == code[name])
            return hit

        # LOAD / STORE: formats the target takes
        load_good = Signal()
        operand_ok_a = one_of(t.operand_format, engine.array.a_formats)
        operand_ok_b = one_of(t.operand_format, engine.array.b_formats)
        copy_or_fp32 = (t.dram_format == t.operand_format) | (t.dram_format == code["fp32"])
        with m.Switch(t.target):
            with m.Case(Target.A):
                m.d.comb += load_good.eq(operand_ok_a & copy_or_fp32)
            with m.Case(Target.B):
                m.d.comb += load_good.eq(operand_ok_b & copy_or_fp32)
            with m.Case(Target.ACC):
                m.d.comb += load_good.eq(t.dram_format == code["fp32"])
        # one group for a STORE (a LOAD's groups: sim.accel_spec.TRANSFER_FIELDS)
        m.d.comb += [self.groups.eq(Mux(t.groups == 0, 1, t.groups)),
                     self.copies.eq(Mux(t.copies == 0, 1, t.copies)),
                     self.group_rows.eq(t.rows - self.copies + 1),
                     self.span_rows.eq(self.groups * self.group_rows)]
        store_good = ((t.target == Target.ACC) & one_of(t.dram_format, engine.out_formats)
                      & (t.groups <= 1) & (t.copies <= 1))
        # copies: a window no longer than the rows, copies that do not overlap
        window_bad = (t.copies > 1) & ((t.rows < t.copies) | (t.copy_cols < t.cols))
        beyond = t.dram_addr[config.addr_width:].any() if config.addr_width < 64 else 0
        sizes_bad = (t.rows == 0) | (t.cols == 0) | beyond | window_bad
        low_bits = (config.beat_bytes - 1).bit_length()
        misaligned = (t.dram_addr[:low_bits].any() | t.dram_stride[:low_bits].any()
                      | ((t.groups > 1) & t.group_stride[:low_bits].any()))
        rows, width = Signal(17), Signal(17)
        with m.Switch(t.target):
            with m.Case(Target.A):
                m.d.comb += [rows.eq(engine.a_rows), width.eq(engine.spad_width)]
            with m.Case(Target.B):
                m.d.comb += [rows.eq(engine.b_rows), width.eq(engine.spad_width)]
            with m.Default():
                m.d.comb += [rows.eq(engine.acc_rows), width.eq(engine.acc_width)]
        last_col = (self.copies - 1) * t.copy_cols + t.cols
        overflow = ((t.mem_row + self.span_rows) > rows) | ((t.mem_col + last_col) > width)

        # EPILOGUE: the checks of sim.accel_model.instruction_error, all BAD_FIELD causes first
        e = self.epilogue

        def op_is(*ops):
            hit = 0
            for o in ops:
                hit = hit | (e.op == o)
            return hit

        op_known = op_is(*EpilogueOp)
        format_bad = Signal(name="epilogue_format_bad")
        cast_ok = one_of(e.cast_format, engine.out_formats)
        m.d.comb += format_bad.eq(Mux(op_is(EpilogueOp.CAST), ~cast_ok,
                                      "fp32" not in engine.out_formats))
        mask_bad = e.write_mask & (~op_is(EpilogueOp.RELU) if engine.output_mask else 1)
        dropout_bad = op_is(*EPILOGUE_MASK_OPS) & (
            (e.seed == 0) | (e.threshold > EPILOGUE_MAX_THRESHOLD)
            | (e.cols > ROW_STRIDE // EPILOGUE_DROPOUT_BITS))
        # the dropout plane is the engine's: only with output masks
        plane_bad = op_is(EpilogueOp.DROPOUT_PLANE) if not engine.output_mask else 0
        source = Signal(name="epilogue_source")
        height = Signal(17, name="epilogue_source_rows")
        m.d.comb += [source.eq(op_is(*EPILOGUE_SOURCE_OPS)),
                     height.eq(Mux(e.broadcast, 1, e.rows))]
        same = (e.src_row == e.dst_row) & (e.src_col == e.dst_col) & (height == e.rows)
        meet = ((e.src_row < e.dst_row + e.rows) & (e.dst_row < e.src_row + height)
                & (e.src_col < e.dst_col + e.cols) & (e.dst_col < e.src_col + e.cols))
        epilogue_bad = Signal(name="epilogue_bad")
        m.d.comb += epilogue_bad.eq(~op_known | format_bad | (e.rows == 0) | (e.cols == 0)
                                    | mask_bad | dropout_bad | plane_bad
                                    | (source & meet & ~same))
        epilogue_overflow = Signal(name="epilogue_overflow")
        m.d.comb += epilogue_overflow.eq(
            (e.dst_row + e.rows > engine.acc_rows) | (e.dst_col + e.cols > engine.acc_width)
            | (source & ((e.src_row + height > engine.acc_rows)
                         | (e.src_col + e.cols > engine.acc_width))))

        def transfer_error(good):
            with m.If(~good | sizes_bad):
                m.d.comb += self.error.eq(ErrorCode.BAD_FIELD)
            with m.Elif(misaligned):
                m.d.comb += self.error.eq(ErrorCode.MISALIGNED)
            with m.Elif(overflow):
                m.d.comb += self.error.eq(ErrorCode.SPAD_OVERFLOW)

        m.d.comb += self.error.eq(ErrorCode.NONE)
        with m.Switch(self.opcode):
            with m.Case(Opcode.LOAD):
                transfer_error(load_good)
            with m.Case(Opcode.STORE):
                transfer_error(store_good)
            with m.Case(Opcode.GEMM):
                if not engine.output_mask:
                    with m.If(g.mask_host | g.mask_dropout):
                        m.d.comb += self.error.eq(ErrorCode.BAD_FIELD)
            with m.Case(Opcode.EPILOGUE):
                with m.If(epilogue_bad):
                    m.d.comb += self.error.eq(ErrorCode.BAD_FIELD)
                with m.Elif(epilogue_overflow):
                    m.d.comb += self.error.eq(ErrorCode.SPAD_OVERFLOW)
            with m.Case(Opcode.DONE):
                pass
            with m.Default():
                m.d.comb += self.error.eq(ErrorCode.ILLEGAL_OPCODE)
        return m
