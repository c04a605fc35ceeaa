"""Tagged PE operands and their exact decode to fp16.

An operand is 16 bits of storage plus a format tag. FP8 values sit in the low byte. Every FP8
value is exactly representable in fp16, so :func:`to_fp16` is lossless; it is the common form
the multiplier works on.
"""

from amaranth import Module, Mux, Cat, Const, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.pipeline import PipelinedComponent
from sim.formats import E4M3, E5M2, FP16, OPERAND_FORMATS, format_by_name

__all__ = ["OperandFormat", "Operand", "to_fp16", "OperandDecoder", "operand_formats"]


class OperandFormat(enum.Enum, shape=2):
    """Format tag of a PE operand."""
    FP16 = 0
    E4M3 = 1
    E5M2 = 2

    @property
    def fmt(self):
        return OPERAND_FORMATS[self.name.lower()]

    @classmethod
    def of(cls, fmt):
        """The tag of a format name or :class:`~sim.formats.FPFormat`."""
        return cls[format_by_name(fmt, OPERAND_FORMATS, field="operand format").name.upper()]


class Operand(data.Struct):
    """A 16-bit operand word and its format tag."""
    bits: 16
    fmt: OperandFormat


def operand_formats(formats):
    """Validate a collection of operand format names; returns a tuple of :class:`OperandFormat`."""
    if isinstance(formats, str) or not formats:
        raise ValueError(f"formats must be a non-empty collection of {sorted(OPERAND_FORMATS)}, "
                         f"not {formats!r}")
    tags = tuple(dict.fromkeys(OperandFormat.of(f) for f in formats))
    return tags


def _e4m3_to_fp16(m, byte):
    """E4M3FN byte -> fp16 word (exact; NaN -> canonical fp16 NaN)."""
    v = Signal(E4M3.layout, name="e4m3_in")
    m.d.comb += v.eq(byte)
    out = Signal(FP16.layout, name="e4m3_as_fp16")
    m.d.comb += out.sign.eq(v.sign)
    is_nan = (v.exp == E4M3.exp_max_field) & (v.man == (1 << E4M3.man_bits) - 1)
    rebias = FP16.bias - E4M3.bias
    with m.If(is_nan):
        m.d.comb += out.as_value().eq(FP16.nan_bits)
    with m.Elif(v.exp != 0):
        m.d.comb += [out.exp.eq(v.exp + rebias), out.man.eq(v.man << (FP16.man_bits - E4M3.man_bits))]
    with m.Else():
        # subnormal man * 2**(1 - 7 - 3): normalise, it is a normal fp16 number
        with m.Switch(v.man):
            for man in range(1, 1 << E4M3.man_bits):
                lead = man.bit_length() - 1                # position of the leading one
                frac = man & ((1 << lead) - 1)
                with m.Case(man):
                    m.d.comb += [
                        out.exp.eq(E4M3.emin - E4M3.man_bits + lead + FP16.bias),
                        out.man.eq(frac << (FP16.man_bits - lead)),
                    ]
    return out.as_value()


def to_fp16(m, operand):
    """Combinational decode of an :class:`Operand` view to fp16 bits (a Value of 16 bits)."""
    low = operand.bits[:8]
    e5m2 = Signal(16, name="e5m2_as_fp16")
    e5m2_nan = (low[2:7] == E5M2.exp_max_field) & (low[:2] != 0)
    m.d.comb += e5m2.eq(Mux(e5m2_nan, FP16.nan_bits, Cat(Const(0, 8), low)))
    fp16 = Signal(16, name="fp16_in")
    fp16_nan = (operand.bits[10:15] == FP16.exp_max_field) & (operand.bits[:10] != 0)
    m.d.comb += fp16.eq(Mux(fp16_nan, FP16.nan_bits, operand.bits))
    result = Signal(16, name="decoded")
    with m.Switch(operand.fmt):
        with m.Case(OperandFormat.E4M3):
            m.d.comb += result.eq(_e4m3_to_fp16(m, low))
        with m.Case(OperandFormat.E5M2):
            m.d.comb += result.eq(e5m2)
        with m.Default():
            m.d.comb += result.eq(fp16)
    return result


class OperandDecoder(PipelinedComponent):
    """Stream unit: tagged operand in, fp16 bits out (NaNs made canonical).

    Parameters
    ----------
    stages : int
        Pipeline depth, 0 (combinational) or 1.

    Latency ``stages`` cycles; throughput one operand per cycle.

    Ports
    -----
    i : stream of :class:`Operand`
    o : stream of 16-bit fp16 words
    """

    CUT_POINTS = 1

    i: In(stream.Signature(Operand))
    o: Out(stream.Signature(16))

    def __init__(self, *, stages=1):
        super().__init__(stages=stages)

    def elaborate(self, platform):
        m = Module()
        pipeline = self.new_pipeline("decode")
        out = pipeline.cut(m, {"fp16": to_fp16(m, self.i.payload)})
        m.d.comb += self.o.payload.eq(out["fp16"])
        pipeline.handshake(m, self.i, self.o)
        return m
