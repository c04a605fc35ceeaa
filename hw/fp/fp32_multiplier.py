"""IEEE binary32 multiplication: a reusable datapath and a pipelined multiplier.

The product is ``round_fp32(a * b)``, bit-exact with :func:`sim.numerics.fp32_multiply`: one
rounding to nearest even of the exact product, subnormal operands and results (no flush to
zero), overflow to the infinity of the product's sign, the canonical NaN for a NaN operand and
for ``inf * 0``, the sign of a zero or infinite product the XOR of the operand signs. (The
operand multiplier :mod:`hw.fp.multiplier` needs none of the rounding: its products are exact.)

The datapath is written once, as four combinational steps separated by three cut points:

1. *multiply*: unpack both operands (significand with its hidden bit, biased exponent read as 1
   for subnormals) and multiply the 24-bit significands into a 48-bit product ``P``;
2. *normalise*: shift ``P`` left by its leading-zero count so that its leading one is bit 47
   (subnormal operands give leading zeros), with the biased exponent of the result
   ``e = ea + eb - 126 - lz``;
3. *denormalise*: for ``e < 1`` (a subnormal or underflowing result) shift right by ``1 - e``
   (capped where everything has become sticky), collecting the bits shifted out into sticky;
4. *round*: keep the top 24 bits, round to nearest even with the guard and sticky bits, pack
   as ``(max(e, 1) - 1) * 2**23 + significand`` (a rounding carry moves into the next binade,
   from the largest subnormal to the smallest normal, or to infinity), and substitute zeros,
   infinities and NaN.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.fp.adder import leading_zeros
from hw.pipeline import PipelinedComponent
from sim.formats import FP32

__all__ = ["MulFP32Operands", "MUL_CUT_POINTS", "fp32_mul_datapath", "FP32Multiplier"]

#: Places in :func:`fp32_mul_datapath` where a pipeline register may go.
MUL_CUT_POINTS = 3

_SIG = FP32.man_bits + 1              # 24: significand with its hidden bit
_PRODUCT = 2 * _SIG                   # 48
_DENORM_CAP = _PRODUCT + 2            # a right shift this far leaves only sticky bits
_EXP = signed(11)                     # ea + eb - 126 - lz lies in -172 .. 383


class MulFP32Operands(data.Struct):
    """The two fp32 bit patterns an :class:`FP32Multiplier` multiplies."""
    a: 32
    b: 32


def _unpack(m, bits, name):
    view = Signal(FP32.layout, name=name)
    m.d.comb += view.eq(bits)
    normal = view.exp != 0
    top = view.exp == FP32.exp_max_field
    return {
        "sign": view.sign,
        "sig": Cat(view.man, normal),
        "exp": Mux(normal, view.exp, 1),
        "zero": (view.exp == 0) & (view.man == 0),
        "nan": top & (view.man != 0),
        "inf": top & (view.man == 0),
    }


def _multiply_step(m, a, b, name):
    x = _unpack(m, a, f"{name}_a")
    y = _unpack(m, b, f"{name}_b")
    product = Signal(_PRODUCT, name=f"{name}_product")
    exp = Signal(_EXP, name=f"{name}_exp_sum")
    nan = Signal(name=f"{name}_nan")
    m.d.comb += [
        product.eq(x["sig"] * y["sig"]),
        exp.eq(x["exp"] + y["exp"] - (FP32.bias - 1)),
        nan.eq(x["nan"] | y["nan"] | (x["inf"] & y["zero"]) | (x["zero"] & y["inf"])),
    ]
    return {"product": product, "exp": exp, "sign": x["sign"] ^ y["sign"], "nan": nan,
            "inf": x["inf"] | y["inf"], "zero": x["zero"] | y["zero"]}


def _normalise_step(m, v, name):
    zeros = leading_zeros(m, v["product"], name=f"{name}_leading_zeros")
    norm = Signal(_PRODUCT, name=f"{name}_norm")
    exp = Signal(_EXP, name=f"{name}_norm_exp")
    m.d.comb += [norm.eq(v["product"] << zeros), exp.eq(v["exp"] - zeros)]
    passed = {key: v[key] for key in ("sign", "nan", "inf", "zero")}
    return {"norm": norm, "exp": exp, **passed}


def _denormalise_step(m, v, name):
    exp = v["exp"]
    shift = Signal(range(_DENORM_CAP + 1), name=f"{name}_denorm_shift")
    with m.If(exp >= 1):
        m.d.comb += shift.eq(0)
    with m.Elif(exp < 1 - _DENORM_CAP):
        m.d.comb += shift.eq(_DENORM_CAP)
    with m.Else():
        m.d.comb += shift.eq(1 - exp)
    # upper part: the shifted significand; lower part: what was shifted out of it
    spread = Signal(_PRODUCT + _DENORM_CAP, name=f"{name}_spread")
    m.d.comb += spread.eq(Cat(Const(0, _DENORM_CAP), v["norm"]) >> shift)
    field = spread[_DENORM_CAP:]
    sig = Signal(_SIG, name=f"{name}_sig")
    guard = Signal(name=f"{name}_guard")
    sticky = Signal(name=f"{name}_sticky")
    biased = Signal(_EXP, name=f"{name}_biased")
    m.d.comb += [
        sig.eq(field[_PRODUCT - _SIG:]),
        guard.eq(field[_PRODUCT - _SIG - 1]),
        sticky.eq(field[:_PRODUCT - _SIG - 1].any() | spread[:_DENORM_CAP].any()),
        biased.eq(Mux(exp >= 1, exp, 1)),
    ]
    passed = {key: v[key] for key in ("sign", "nan", "inf", "zero")}
    return {"sig": sig, "guard": guard, "sticky": sticky, "exp": biased,
            "huge": exp > FP32.exp_max_field - 1, **passed}


def _round_step(m, v, name):
    sig = v["sig"]
    round_up = Signal(name=f"{name}_round_up")
    m.d.comb += round_up.eq(v["guard"] & (v["sticky"] | sig[0]))
    # (exp - 1) * 2**23 + significand: exp <= 254 here (larger exponents are "huge"), so the
    # sum fits 32 bits; a subnormal (exp 1, hidden 0) packs with field 0
    packed = Signal(32, name=f"{name}_packed")
    m.d.comb += packed.eq(((v["exp"][:9] - 1) << FP32.man_bits) + sig + round_up)
    overflow = v["huge"] | (packed >= FP32.inf_bits)
    result = Signal(FP32.layout, name=f"{name}_result")
    with m.If(v["nan"]):
        m.d.comb += result.as_value().eq(FP32.nan_bits)
    with m.Elif(v["inf"]):
        m.d.comb += [result.exp.eq(FP32.exp_max_field), result.sign.eq(v["sign"])]
    with m.Elif(v["zero"]):
        m.d.comb += result.sign.eq(v["sign"])
    with m.Elif(overflow):
        m.d.comb += [result.exp.eq(FP32.exp_max_field), result.sign.eq(v["sign"])]
    with m.Else():
        m.d.comb += [result.as_value()[:31].eq(packed[:31]), result.sign.eq(v["sign"])]
    return result.as_value()


def fp32_mul_datapath(m, a, b, *, pipeline=None, name="fp32_mul"):
    """Build ``round_fp32(a * b)`` into module ``m``; returns the 32-bit result Value.

    Parameters
    ----------
    m : amaranth.hdl.Module
        Module the logic is added to.
    a, b : Value
        fp32 bit patterns (32 bits each).
    pipeline : hw.pipeline.Pipeline or None
        Pipeline whose next :data:`MUL_CUT_POINTS` cut points this datapath uses (after
        multiply, after normalise, after denormalise); ``None`` builds a purely combinational
        multiplier.
    name : str
        Prefix of the internal signal names (distinct names for several multipliers in a
        module).
    """
    def cut(values):
        return dict(values) if pipeline is None else pipeline.cut(m, values)

    multiplied = cut(_multiply_step(m, a, b, name))
    normalised = cut(_normalise_step(m, multiplied, name))
    denormalised = cut(_denormalise_step(m, normalised, name))
    return _round_step(m, denormalised, name)


class FP32Multiplier(PipelinedComponent):
    """Stream unit: two fp32 operands in, their rounded fp32 product out.

    Parameters
    ----------
    stages : int
        Pipeline depth, 0 (combinational) up to 3 (registers after multiply, normalise and
        denormalise).

    Latency ``stages`` cycles; throughput one product per cycle.

    Ports
    -----
    i : stream of :class:`MulFP32Operands`
    o : stream of 32-bit fp32 words
    """

    CUT_POINTS = MUL_CUT_POINTS

    i: In(stream.Signature(MulFP32Operands))
    o: Out(stream.Signature(32))

    def __init__(self, *, stages=MUL_CUT_POINTS):
        super().__init__(stages=stages)

    def elaborate(self, platform):
        m = Module()
        pipeline = self.new_pipeline("mul")
        product = fp32_mul_datapath(m, self.i.payload.a, self.i.payload.b, pipeline=pipeline,
                                    name="mul")
        m.d.comb += self.o.payload.eq(product)
        pipeline.handshake(m, self.i, self.o)
        return m
