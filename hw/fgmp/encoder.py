"""The FGMP encoding rule in hardware: fp16 element -> FP8 or fp16 tag and payload.

Bit-exact with :func:`sim.fgmp.encode_tags` and :func:`sim.fgmp.fp8_of`. For an fp16 value
``x`` the FP8 candidate ``y`` is ``x`` rounded to nearest even (IEEE overflow, no saturation);
``x`` is stored as FP8 when it is a zero, or when ``x`` and ``y`` are finite and non-zero and
``|y - x| * 2**t <= |x|``; with the tensor's ``flush`` bit (``flush_underflow`` of the golden
model) also when ``x`` is finite and ``y`` is a zero (an underflow, stored as that signed zero).

Algorithm
---------
``x = sig * 2**(e - 10)`` with ``sig`` its 11-bit significand (hidden bit included, ``e`` read
as ``emin`` for subnormals). Rounding to FP8 drops the ``10 - m`` low bits of ``sig`` (``m`` =
the FP8 mantissa width), plus ``emin8 - e`` more when ``x`` lies below the FP8 normal range. To
keep every dropped bit, ``sig`` is first widened by ``D`` zero bits (``D`` = the most extra
places that can still leave a non-zero result) and then shifted right by the extra places: the
result ``S`` is ``|x|`` as an integer in units of ``2**(e - 10 - D + shift)``, and the low
``point`` bits of ``S`` are what rounding drops. In those units ``|y| = (S >> point) + round_up``
shifted back by ``point``, so the rounding error is ``low`` (rounded down) or
``2**point - low`` (rounded up), and the rule is the exact integer comparison
``residual << t <= S``, no subtraction of floating-point values needed. The FP8 magnitude is
built as in :mod:`hw.fp.converter` (exponent base plus rounded significand, the carry of a
rounding moving into the next binade by itself); a magnitude above the largest finite code is an
overflow (``y`` infinite or NaN), a rounded significand of zero an underflow. An underflowing
``x`` lies below the FP8 normal range, so its exponent base is 0 and its magnitude 0: the code is
already the FP8 zero of its sign, which is the payload ``flush`` stores.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.fgmp.interface import FgmpElement, fp8_formats
from hw.fp.operand import OperandFormat
from hw.pipeline import PipelinedComponent
from sim.fgmp_spec import T_MAX
from sim.formats import FP16

__all__ = ["EncodeInput", "encode", "FgmpEncoder"]

#: Width of the threshold ``t`` (a CSR field, ``0..T_MAX``).
T_BITS = T_MAX.bit_length()


class EncodeInput(data.Struct):
    """One fp16 element with the settings of its tensor."""
    #: fp16 bit pattern.
    value: 16
    #: Threshold ``0..15``: FP8 iff the relative error of the FP8 value is at most ``2**-t``.
    t: T_BITS
    #: FP8 format (``E4M3`` or ``E5M2``); any other code stores the element as fp16.
    fmt: OperandFormat
    #: Flush FP8 underflow: a finite non-zero value whose FP8 rounding is zero is stored as FP8
    #: (that signed zero) instead of fp16.
    flush: 1


def _candidate(m, value, t, flush, fmt8):
    """``(fp8, code)``: whether ``value`` (fp16 bits) may be stored as ``fmt8``, and its code."""
    name = fmt8.name
    x = data.View(FP16.layout, value)
    normal = x.exp != 0
    is_special = x.exp == FP16.exp_max_field
    is_zero = ~normal & (x.man == 0)
    sig = Cat(x.man, normal)
    sig_width = FP16.man_bits + 1
    drop = FP16.man_bits - fmt8.man_bits
    # extra places below the FP8 normal range after which every bit lies below the guard bit
    max_denorm = min(max(0, fmt8.emin - FP16.emin), sig_width + 1 - drop)
    point = drop + max_denorm

    target_exp = Signal(signed(FP16.exp_bits + 2), name=f"{name}_target_exp")
    m.d.comb += target_exp.eq(Mux(normal, x.exp, 1) - FP16.bias + fmt8.bias)
    denorm_shift = Signal(range(max_denorm + 1), name=f"{name}_denorm_shift")
    with m.If(target_exp >= 1):
        m.d.comb += denorm_shift.eq(0)
    with m.Elif(target_exp <= 1 - max_denorm):
        m.d.comb += denorm_shift.eq(max_denorm)
    with m.Else():
        m.d.comb += denorm_shift.eq(1 - target_exp)

    scaled = Signal(sig_width + max_denorm, name=f"{name}_scaled")   # S: |x| in units of the low bit
    m.d.comb += scaled.eq(Cat(Const(0, max_denorm), sig) >> denorm_shift)
    kept = scaled[point:]
    low = scaled[:point]
    round_up = Signal(name=f"{name}_round_up")
    m.d.comb += round_up.eq(low[point - 1] & (low[:point - 1].any() | kept[0]))
    rounded = Signal(len(kept) + 1, name=f"{name}_rounded")
    m.d.comb += rounded.eq(kept + round_up)
    residual = Signal(point + 1, name=f"{name}_residual")          # |y - x| in the same units
    m.d.comb += residual.eq(Mux(round_up, (1 << point) - low, low))
    close = Signal(name=f"{name}_close")
    m.d.comb += close.eq((residual << t) <= scaled)

    exp_base = Signal(FP16.exp_bits + 1, name=f"{name}_exp_base")
    m.d.comb += exp_base.eq(Mux(target_exp >= 1, target_exp - 1, 0))
    magnitude = Signal(len(exp_base) + fmt8.man_bits + 1, name=f"{name}_magnitude")
    m.d.comb += magnitude.eq((exp_base << fmt8.man_bits) + rounded)
    overflow = magnitude > fmt8.max_finite_bits          # y is infinite (E5M2) or NaN (E4M3FN)
    underflow = rounded == 0                             # y is zero (or x was)

    fp8 = Signal(name=f"{name}_fp8")
    m.d.comb += fp8.eq(is_zero | (~is_special & ~overflow
                                  & ((~underflow & close) | (flush & underflow))))
    code = Signal(8, name=f"{name}_code")
    m.d.comb += code.eq(Cat(magnitude[:fmt8.width - 1], x.sign))
    return fp8, code


def encode(m: Module, value, t, fmt, formats, *, flush) -> data.View:
    """Combinational FGMP encode of one fp16 ``value`` with threshold ``t`` as FP8 format
    ``fmt`` (an :class:`~hw.fp.operand.OperandFormat` value; one of ``formats``, a tuple of
    FP8 tags; any other code gives fp16), FP8 underflow flushed to a signed zero when ``flush``
    (1 bit) is set. Returns an :class:`~hw.fgmp.interface.FgmpElement`."""
    element = Signal(FgmpElement, name="encoded")
    candidates = {tag: _candidate(m, value, t, flush, tag.fmt) for tag in formats}
    with m.Switch(fmt):
        for tag, (fp8, code) in candidates.items():
            with m.Case(tag):
                m.d.comb += [element.fp8.eq(fp8), element.payload.eq(Mux(fp8, code, value))]
        with m.Default():
            m.d.comb += [element.fp8.eq(0), element.payload.eq(value)]
    return element


class FgmpEncoder(PipelinedComponent):
    """Stream unit: fp16 element, threshold, FP8 format and flush bit in; FGMP tag and payload
    out.

    Parameters
    ----------
    formats : collection of str
        FP8 formats built in (``"e4m3"``, ``"e5m2"`` or both); an element whose ``fmt`` is not
        one of them is stored as fp16.
    stages : int
        Pipeline depth, 0 (combinational) or 1.

    Latency ``stages`` cycles; throughput one element per cycle.

    Ports
    -----
    i : stream of :class:`EncodeInput`
    o : stream of :class:`~hw.fgmp.interface.FgmpElement`
    """

    CUT_POINTS = 1

    i: In(stream.Signature(EncodeInput))
    o: Out(stream.Signature(FgmpElement))

    def __init__(self, *, formats=("e4m3", "e5m2"), stages=1):
        self.formats = fp8_formats(formats)
        super().__init__(stages=stages)

    def elaborate(self, platform):
        m = Module()
        pipeline = self.new_pipeline("encode")
        element = encode(m, self.i.payload.value, self.i.payload.t, self.i.payload.fmt,
                         self.formats, flush=self.i.payload.flush)
        out = pipeline.cut(m, {"element": element})
        m.d.comb += self.o.payload.eq(out["element"])
        pipeline.handshake(m, self.i, self.o)
        return m
