"""Instruction decoder of the accelerator's controller: one 256-bit instruction word in, its
opcode and fields out, and the error it stops with before it runs.

The fields sit where :data:`sim.accel_spec.HEADER`, :data:`~sim.accel_spec.TRANSFER_FIELDS`
and :data:`~sim.accel_spec.GEMM_FIELDS` put them (one table for the hardware, the golden model
and the compiler). The checks are those of :func:`sim.accel_model.instruction_error`, in its
order: ``ILLEGAL_OPCODE``; for ``LOAD``/``STORE`` ``BAD_FIELD`` (target, formats the memory
takes, zero size, an address beyond ``addr_width``), ``MISALIGNED`` (address or stride not a
multiple of the beat), ``SPAD_OVERFLOW`` (17-bit sums, never truncated); for ``GEMM`` the mask
flags on an engine without ``output_mask`` (``BAD_FIELD``). A GEMM's sizes and regions are the
engine's own check (its ``ZERO_SIZE`` is the controller's ``BAD_FIELD``, its ``*_RANGE``
``SPAD_OVERFLOW``), so the decoder does not repeat it.

Combinational: the controller registers the instruction word and reads the outputs in the same
cycle.
"""

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.accel.dma import ErrorCode
from sim.accel_spec import (FORMAT_BITS, GEMM_FIELDS, HEADER, INSTRUCTION_BYTES,
                            TRANSFER_FIELDS, Opcode, Target)
from sim.config import AccelConfig

__all__ = ["TransferFields", "GemmFields", "InstructionDecoder"]


def _layout(table: dict) -> data.StructLayout:
    return data.StructLayout({name: width for name, (_, width) in table.items()})


#: The fields of a LOAD or STORE (:data:`sim.accel_spec.TRANSFER_FIELDS`)
TransferFields = _layout(TRANSFER_FIELDS)
#: The fields of a GEMM (:data:`sim.accel_spec.GEMM_FIELDS`)
GemmFields = _layout(GEMM_FIELDS)


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
        The opcode and the four dependency bits.
    transfer : Out(TransferFields)
        The word read as a LOAD/STORE (meaningful for those opcodes).
    gemm : Out(GemmFields)
        The word read as a GEMM.
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
            "error": Out(ErrorCode),
        })

    def elaborate(self, platform):
        m = Module()
        config, engine = self._config, self._config.engine
        word = self.instruction
        for port, table in ((self.header, HEADER), (self.transfer, TRANSFER_FIELDS),
                            (self.gemm, GEMM_FIELDS)):
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
        store_good = (t.target == Target.ACC) & one_of(t.dram_format, engine.out_formats)
        beyond = t.dram_addr[config.addr_width:].any() if config.addr_width < 64 else 0
        sizes_bad = (t.rows == 0) | (t.cols == 0) | beyond
        low_bits = (config.beat_bytes - 1).bit_length()
        misaligned = t.dram_addr[:low_bits].any() | t.dram_stride[:low_bits].any()
        rows, width = Signal(17), Signal(17)
        with m.Switch(t.target):
            with m.Case(Target.A):
                m.d.comb += [rows.eq(engine.a_rows), width.eq(engine.spad_width)]
            with m.Case(Target.B):
                m.d.comb += [rows.eq(engine.b_rows), width.eq(engine.spad_width)]
            with m.Default():
                m.d.comb += [rows.eq(engine.acc_rows), width.eq(engine.acc_width)]
        overflow = ((t.mem_row + t.rows) > rows) | ((t.mem_col + t.cols) > width)

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
            with m.Case(Opcode.DONE):
                pass
            with m.Default():
                m.d.comb += self.error.eq(ErrorCode.ILLEGAL_OPCODE)
        return m
