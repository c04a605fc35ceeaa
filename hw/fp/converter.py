"""FP32 to a store format (fp16, bf16, E4M3, E5M2): one rounding, explicit overflow policy.

The store path of the epilogue rounds FP32 accumulator values to the format a tensor is written
in. The result is bit-exact with :func:`sim.numerics.convert` ``(FP32, fmt, bits, saturate=...)``:
round to nearest even once, subnormal results kept (no flush to zero), canonical NaN, and per
element either IEEE overflow (infinity; NaN in E4M3FN, which has no infinity) or saturation to
the largest finite value of the same sign (infinite inputs included).

Algorithm
---------
Every target format has ``emin`` at or above FP32's, so no input needs normalising: an FP32
number is ``sig * 2**(e - 150)`` with ``sig`` its 24-bit significand (hidden bit included, and
``e`` read as 1 for FP32 subnormals). Its biased exponent in the target is
``t = e - 127 + fmt.bias``. When ``t < 1`` the result is subnormal and ``sig`` is shifted right by
``1 - t`` more places (capped where every bit has become sticky). The rounding point is then fixed:
the top ``man_bits + 1`` bits are kept, and guard and sticky bits decide the round-to-nearest-even
increment. The magnitude is ``((max(t, 1) - 1) << man_bits) + rounded``: the kept hidden bit adds
the missing 1 to the exponent field, so a rounding carry (into the next binade, from the largest
subnormal into the smallest normal, or from the largest finite into overflow) needs no special
case. A magnitude above the largest finite encoding is an overflow.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.pipeline import PipelinedComponent
from sim.formats import FP32, STORE_FORMATS, NanStyle, format_by_name

__all__ = ["ConvertInput", "FP32Converter"]


class ConvertInput(data.Struct):
    """One element to convert and its overflow policy.

    The policy travels with the element so that a host can choose it per tensor.
    """
    #: FP32 bit pattern.
    value: 32
    #: 1: overflow and infinities become the largest finite value of the same sign;
    #: 0: IEEE (infinity, or NaN in E4M3FN).
    saturate: 1


class FP32Converter(PipelinedComponent):
    """Stream unit: FP32 value in, the same value rounded to a store format out.

    Parameters
    ----------
    fmt : str or FPFormat
        Target format, one of :data:`sim.formats.STORE_FORMATS` (``"fp16"``, ``"bf16"``,
        ``"e4m3"``, ``"e5m2"``).
    stages : int
        Pipeline depth, ``0`` (combinational) up to :attr:`CUT_POINTS` (3). The cut points are
        after unpack and shift amount, after shift and round, and after pack; with fewer stages
        :class:`hw.pipeline.Pipeline` keeps the later ones (1: after pack; 2: after shift and
        round, and after pack).

    Latency ``stages`` cycles; throughput one element per cycle.

    Ports
    -----
    i : stream of :class:`ConvertInput`
    o : stream of ``fmt.width``-bit words (the target's bit pattern)
    """

    #: Places where a pipeline register may go: after unpack, after shift and round, after pack.
    CUT_POINTS = 3

    def __init__(self, *, fmt, stages=CUT_POINTS):
        self.fmt = format_by_name(fmt, STORE_FORMATS, field="fmt")
        super().__init__(stages=stages, signature={
            "i": In(stream.Signature(ConvertInput)),
            "o": Out(stream.Signature(self.fmt.width)),
        })

    def elaborate(self, platform):
        m = Module()
        pipeline = self.new_pipeline("convert")
        fmt = self.fmt
        man_bits = fmt.man_bits
        # bits of the 24-bit significand below the rounding point when the result is normal
        drop = FP32.man_bits - man_bits
        # beyond this extra (subnormal) shift every bit of the significand is below the guard bit;
        # a target whose emin is FP32's (bf16) never needs the shift
        smallest_target_exp = 1 - FP32.bias + fmt.bias
        max_denorm = 0 if smallest_target_exp >= 1 else man_bits + 2
        # largest biased target exponent of a finite value
        top_exp = fmt.emax + fmt.bias
        magnitude_bits = fmt.width - 1

        # -- unpack and shift amount ---------------------------------------------------------------
        value = data.View(FP32.layout, self.i.payload.value)
        is_special = value.exp == FP32.exp_max_field
        is_normal = value.exp != 0
        sig = Signal(FP32.man_bits + 1, name="sig")
        m.d.comb += sig.eq(Cat(value.man, is_normal))
        target_exp = Signal(signed(FP32.exp_bits + 2), name="target_exp")
        m.d.comb += target_exp.eq(Mux(is_normal, value.exp, 1) - FP32.bias + fmt.bias)
        denorm_shift = Signal(range(max_denorm + 1), name="denorm_shift")
        with m.If(target_exp >= 1):
            m.d.comb += denorm_shift.eq(0)
        with m.Elif(target_exp <= 1 - max_denorm):
            m.d.comb += denorm_shift.eq(max_denorm)
        with m.Else():
            m.d.comb += denorm_shift.eq(1 - target_exp)
        # exponent field the magnitude is built on (the kept hidden bit adds one)
        exp_base = Signal(fmt.exp_bits, name="exp_base")
        m.d.comb += exp_base.eq(Mux(target_exp >= 1, target_exp - 1, 0))
        too_big = Signal(name="too_big")
        m.d.comb += too_big.eq(target_exp > top_exp)

        s = pipeline.cut(m, {
            "sign": value.sign,
            "sig": sig,
            "denorm_shift": denorm_shift,
            "exp_base": exp_base,
            "too_big": too_big,
            "is_nan": is_special & (value.man != 0),
            "is_inf": is_special & (value.man == 0),
            "saturate": self.i.payload.saturate,
        })

        # -- shift and round -----------------------------------------------------------------------
        # room below the significand so the subnormal shift loses no bit before the sticky OR
        shifted = Signal(FP32.man_bits + 1 + max_denorm, name="shifted")
        m.d.comb += shifted.eq(Cat(Const(0, max_denorm), s["sig"]) >> s["denorm_shift"])
        point = drop + max_denorm                      # position of the lowest kept bit
        kept = shifted[point:]
        guard = shifted[point - 1]
        sticky = shifted[:point - 1].any()
        round_up = Signal(name="round_up")
        m.d.comb += round_up.eq(guard & (sticky | kept[0]))
        # (exp_base << man_bits) + kept + round_up: one bit wider than the magnitude for the carry
        magnitude = Signal(magnitude_bits + 1, name="magnitude")
        m.d.comb += magnitude.eq((s["exp_base"] << man_bits) + kept + round_up)

        r = pipeline.cut(m, {
            "sign": s["sign"],
            "magnitude": magnitude,
            "too_big": s["too_big"],
            "is_nan": s["is_nan"],
            "is_inf": s["is_inf"],
            "saturate": s["saturate"],
        })

        # -- pack: specials and overflow policy ----------------------------------------------------
        overflow = Signal(name="overflow")
        m.d.comb += overflow.eq(r["too_big"] | (r["magnitude"] > fmt.max_finite_bits))
        saturated = Cat(Const(fmt.max_finite_bits, magnitude_bits), r["sign"])
        if fmt.nan_style is NanStyle.FN:
            ieee_overflow = Const(fmt.nan_bits, fmt.width)     # no infinity to overflow to
        else:
            ieee_overflow = Cat(Const(fmt.inf_bits, magnitude_bits), r["sign"])
        result = Signal(fmt.layout, name="result")
        with m.If(r["is_nan"]):
            m.d.comb += result.as_value().eq(fmt.nan_bits)
        with m.Elif(r["is_inf"] | overflow):
            m.d.comb += result.as_value().eq(Mux(r["saturate"], saturated, ieee_overflow))
        with m.Else():
            m.d.comb += result.as_value().eq(Cat(r["magnitude"][:magnitude_bits], r["sign"]))

        out = pipeline.cut(m, {"result": result})
        m.d.comb += self.o.payload.eq(out["result"])
        pipeline.handshake(m, self.i, self.o)
        return m
