"""IEEE binary32 addition: a reusable datapath, a pipelined adder and a sequence accumulator.

The sum is ``round_fp32(a + b)``, bit-exact with :func:`sim.numerics.fp32_add`: round to
nearest even, subnormal inputs and outputs (no flush to zero), ``x + (-x) = +0``,
``(-0) + (-0) = -0``, ``inf + (-inf)`` and every NaN operand give the canonical NaN, overflow
gives the infinity of the result's sign.

The datapath is written once, as four combinational steps separated by three cut points:

1. *align*: unpack, order the operands by magnitude, shift the smaller significand right by the
   exponent difference into a field with guard, round and sticky bits (everything shifted past
   the field, however far, is collected into sticky);
2. *add*: add or subtract the significands (the larger minus the smaller, never negative);
3. *normalise*: shift right by one on a carry, or left by the leading-zero count after
   cancellation, but never below the smallest exponent (the result is then subnormal);
4. *round*: round to nearest even, pack, and substitute zeros, infinities and NaN.

Three extra bits suffice: a left shift of more than one place only happens when the exponents
differ by at most one, and then nothing was shifted out.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.pipeline import Pipeline, PipelinedComponent
from sim.config import ADD_CUT_POINTS as CONFIG_ADD_CUT_POINTS
from sim.formats import FP32

__all__ = ["AddOperands", "AccInput", "ADD_CUT_POINTS", "leading_zeros", "fp32_add_datapath",
           "FP32Adder", "FP32Accumulator"]

#: Places in :func:`fp32_add_datapath` where a pipeline register may go (the configuration's
#: number: ``ArrayConfig.psum_stages`` is checked against it).
ADD_CUT_POINTS = CONFIG_ADD_CUT_POINTS

_SIG = FP32.man_bits + 1        # significand with its hidden bit
_EXTRA = 3                      # guard, round and sticky bits below the significand
_WIDE = _SIG + _EXTRA           # aligned significand field
_NEG_ZERO = FP32.sign_mask      # the identity of round-to-nearest addition


class AddOperands(data.Struct):
    """The two fp32 bit patterns an :class:`FP32Adder` adds."""
    a: 32
    b: 32


class AccInput(data.Struct):
    """One addend of an :class:`FP32Accumulator` sequence.

    ``first`` starts a new sum; ``last`` closes it and emits the sum. A single-element sequence
    has both set.
    """
    addend: 32
    first: 1
    last: 1


def leading_zeros(m, value, *, name):
    """Number of leading zeros of ``value`` (``len(value)`` when it is zero), as a tree.

    Returns a Signal of ``range(len(value) + 1)``.
    """
    width = len(value)
    size = 1 << max(1, (width - 1).bit_length())
    # ones below the value make the padded word never zero and cap the count at ``width``
    padded = Cat(Const((1 << (size - width)) - 1, size - width), value)

    def count(bits):
        # (all zero, leading zeros when not all zero) of a power-of-two slice
        if len(bits) == 2:
            return ~(bits[0] | bits[1]), ~bits[1]
        half = len(bits) // 2
        low_zero, low_count = count(bits[:half])
        high_zero, high_count = count(bits[half:])
        return low_zero & high_zero, Cat(Mux(high_zero, low_count, high_count), high_zero)

    result = Signal(range(width + 1), name=name)
    m.d.comb += result.eq(count(padded)[1])
    return result


def _unpack(m, bits, name):
    """Fields of an fp32 pattern: the significand with hidden bit and the biased exponent that
    scales it (1 for subnormals), and the class of the value."""
    view = Signal(FP32.layout, name=name)
    m.d.comb += view.eq(bits)
    normal = view.exp != 0
    top = view.exp == FP32.exp_max_field
    return {
        "sign": view.sign,
        "sig": Cat(view.man, normal),
        "exp": Mux(normal, view.exp, 1),
        "magnitude": Cat(view.man, view.exp),
        "nan": top & (view.man != 0),
        "inf": top & (view.man == 0),
    }


def _align_step(m, a, b, name):
    x = _unpack(m, a, f"{name}_a")
    y = _unpack(m, b, f"{name}_b")
    swap = Signal(name=f"{name}_swap")                 # b is larger in magnitude
    m.d.comb += swap.eq(y["magnitude"] > x["magnitude"])

    def pick(key, shape, role):
        sig = Signal(shape, name=f"{name}_{role}_{key}")
        if_swapped, otherwise = (y, x) if role == "big" else (x, y)
        m.d.comb += sig.eq(Mux(swap, if_swapped[key], otherwise[key]))
        return sig

    big_sig, big_exp, sign = pick("sig", _SIG, "big"), pick("exp", 8, "big"), pick("sign", 1, "big")
    small_sig = pick("sig", _SIG, "small")

    # the exponent difference both ways, each clamped (beyond the field all is sticky), beside
    # the magnitude compare rather than behind it: the compare only selects
    shifts = []
    for high, low, role in ((x, y, "xy"), (y, x, "yx")):
        diff = Signal(8, name=f"{name}_exp_diff_{role}")
        clamped = Signal(range(_WIDE + 1), name=f"{name}_align_shift_{role}")
        m.d.comb += [diff.eq(high["exp"] - low["exp"]),
                     clamped.eq(Mux(diff > _WIDE, _WIDE, diff))]
        shifts.append(clamped)
    shift = Signal(range(_WIDE + 1), name=f"{name}_align_shift")
    m.d.comb += shift.eq(Mux(swap, shifts[1], shifts[0]))
    nan = Signal(name=f"{name}_nan")
    m.d.comb += nan.eq(x["nan"] | y["nan"] | (x["inf"] & y["inf"] & (x["sign"] != y["sign"])))
    return {
        "big": big_sig, "small_sig": small_sig, "shift": shift, "exp": big_exp,
        "sign": sign,                                   # also the sign of an infinite result
        "subtract": x["sign"] ^ y["sign"],
        "zero_sign": x["sign"] & y["sign"],             # an exact zero is -0 only for -0 + -0
        "nan": nan, "inf": x["inf"] | y["inf"],
    }


def _shift_step(m, v, name):
    """The second half of *align*: the smaller significand shifted into its field."""
    # upper half: the aligned field; lower half: what was shifted out of it
    spread = Signal(2 * _WIDE, name=f"{name}_spread")
    m.d.comb += spread.eq(Cat(Const(0, _WIDE + _EXTRA), v["small_sig"]) >> v["shift"])
    sticky = spread[_WIDE] | spread[:_WIDE].any()
    small = Signal(_WIDE, name=f"{name}_small_aligned")
    m.d.comb += small.eq(Cat(sticky, spread[_WIDE + 1:]))
    passed = {key: v[key] for key in ("big", "exp", "sign", "subtract", "zero_sign", "nan",
                                      "inf")}
    return {"small": small, **passed}


def _add_step(m, v, name):
    big = Cat(Const(0, _EXTRA), v["big"])
    total = Signal(_WIDE + 1, name=f"{name}_sum")
    with m.If(v["subtract"]):
        m.d.comb += total.eq(big - v["small"])
    with m.Else():
        m.d.comb += total.eq(big + v["small"])
    # normalise's left shift stops at the subnormal exponent: at most exp - 1 places. A one
    # placed exp - 1 places below the top of the word the zeros are counted in makes the
    # count min(leading zeros, exp - 1) without a compare after it; the floor is decoded here,
    # beside the add, so that normalise starts from it
    limit = Signal(8, name=f"{name}_norm_limit")
    floor = Signal(_WIDE, name=f"{name}_norm_floor")
    m.d.comb += [
        limit.eq(v["exp"] - 1),
        floor.eq(Mux(limit < _WIDE, Const(1 << (_WIDE - 1), _WIDE) >> limit, 0)),
    ]
    passed = {key: v[key] for key in ("exp", "sign", "zero_sign", "nan", "inf")}
    return {"sum": total, "zero": total == 0, "floor": floor, **passed}


def _normalise_step(m, v, name):
    total = v["sum"]
    left = leading_zeros(m, total[:_WIDE] | v["floor"], name=f"{name}_norm_shift")
    norm = Signal(_WIDE, name=f"{name}_norm")
    exp = Signal(9, name=f"{name}_norm_exp")
    with m.If(total[_WIDE]):
        # carry out: one place right, the dropped bit joins sticky
        m.d.comb += [norm.eq(Cat(total[0] | total[1], total[2:])), exp.eq(v["exp"] + 1)]
    with m.Else():
        m.d.comb += [norm.eq(total[:_WIDE] << left), exp.eq(v["exp"] - left)]
    passed = {key: v[key] for key in ("zero", "sign", "zero_sign", "nan", "inf")}
    return {"norm": norm, "exp": exp, **passed}


def _round_step(m, v, name):
    norm = v["norm"]
    lsb, guard, rest = norm[_EXTRA], norm[_EXTRA - 1], norm[:_EXTRA - 1].any()
    round_up = Signal(name=f"{name}_round_up")
    m.d.comb += round_up.eq(guard & (rest | lsb))
    # (exp - 1) * 2**23 + significand: the hidden bit carries into the exponent field, so a
    # subnormal (exp 1, hidden 0) packs with field 0 and a rounding carry moves the result to
    # the next binade, from the largest subnormal to the smallest normal, or to infinity.
    packed = Signal(32, name=f"{name}_packed")
    m.d.comb += packed.eq(((v["exp"] - 1) << FP32.man_bits) + norm[_EXTRA:] + round_up)
    overflow = packed >= FP32.inf_bits
    result = Signal(FP32.layout, name=f"{name}_result")
    with m.If(v["nan"]):
        m.d.comb += result.as_value().eq(FP32.nan_bits)
    with m.Elif(v["inf"] | overflow):
        m.d.comb += [result.exp.eq(FP32.exp_max_field), result.sign.eq(v["sign"])]
    with m.Elif(v["zero"]):
        m.d.comb += result.sign.eq(v["zero_sign"])
    with m.Else():
        m.d.comb += [result.as_value()[:31].eq(packed[:31]), result.sign.eq(v["sign"])]
    return result.as_value()


def fp32_add_datapath(m, a, b, *, pipeline=None, name="fp32_add", align_cut=False):
    """Build ``round_fp32(a + b)`` into module ``m``; returns the 32-bit result Value.

    Parameters
    ----------
    m : amaranth.hdl.Module
        Module the logic is added to.
    a, b : Value
        fp32 bit patterns (32 bits each).
    pipeline : hw.pipeline.Pipeline or None
        Pipeline whose next :data:`ADD_CUT_POINTS` cut points this datapath uses (after align,
        after add, after normalise); ``None`` builds a purely combinational adder.
    name : str
        Prefix of the internal signal names (use distinct names for several adders in a module).
    align_cut : bool
        One more cut point, inside *align* (after the operands are ordered, before the
        smaller one is shifted): the datapath then uses ``ADD_CUT_POINTS + 1`` of the
        pipeline's cut points (the interleaved accumulate loop of ``hw.engine.pe``).
    """
    def cut(values):
        return dict(values) if pipeline is None else pipeline.cut(m, values)

    ordered = _align_step(m, a, b, name)
    if align_cut:
        ordered = cut(ordered)
    aligned = cut(_shift_step(m, ordered, name))
    summed = cut(_add_step(m, aligned, name))
    normalised = cut(_normalise_step(m, summed, name))
    return _round_step(m, normalised, name)


class FP32Adder(PipelinedComponent):
    """Stream unit: two fp32 operands in, their rounded fp32 sum out.

    Parameters
    ----------
    stages : int
        Pipeline depth, 0 (combinational) up to 3 (registers after align, add and normalise).

    Latency ``stages`` cycles; throughput one sum per cycle.

    Ports
    -----
    i : stream of :class:`AddOperands`
    o : stream of 32-bit fp32 words
    """

    CUT_POINTS = ADD_CUT_POINTS

    i: In(stream.Signature(AddOperands))
    o: Out(stream.Signature(32))

    def __init__(self, *, stages=ADD_CUT_POINTS):
        super().__init__(stages=stages)

    def elaborate(self, platform):
        m = Module()
        pipeline = self.new_pipeline("add")
        total = fp32_add_datapath(m, self.i.payload.a, self.i.payload.b, pipeline=pipeline,
                                  name="add")
        m.d.comb += self.o.payload.eq(total)
        pipeline.handshake(m, self.i, self.o)
        return m


class FP32Accumulator(PipelinedComponent):
    """Stream unit: sums sequences of fp32 addends in order, one sum per sequence.

    The sum of ``x0 .. xn-1`` is ``(((x0 + x1) + x2) + ... + xn-1)``, each addition rounded to
    fp32 (round to nearest even): the sum starts from the first addend itself, so a sequence of
    one ``-0`` sums to ``-0``, and a NaN anywhere gives the canonical NaN. In hardware the first
    addition is ``(-0) + x0``, which is exactly ``x0`` (NaN made canonical) since ``-0`` is the
    identity of round-to-nearest addition. Golden model:
    ``canonicalize(FP32, fp32_sum(x[1:], init_bits=x[0]))``.

    An addend with ``first`` set starts a new sum; one with ``last`` set emits it. Addends
    before any ``first`` (after reset) and addends after a ``last`` without ``first`` continue
    from the previous value of the accumulator (``-0`` after reset).

    Parameters
    ----------
    stages : int
        Input pipeline registers before the accumulate step, 0 or 1.

    Latency ``stages + 1`` cycles from the handshake of the last addend to the sum being valid;
    throughput one addend per cycle (and so up to one sum per cycle). While a finished sum waits
    for the consumer, no addend is accepted.

    Ports
    -----
    i : stream of :class:`AccInput`
    o : stream of 32-bit fp32 sums
    """

    CUT_POINTS = 1

    i: In(stream.Signature(AccInput))
    o: Out(stream.Signature(32))

    def __init__(self, *, stages=1):
        super().__init__(stages=stages)

    def elaborate(self, platform):
        m = Module()
        pipeline = self.new_pipeline("acc_in")
        step = stream.Signature(AccInput).create(path=("acc_step",))
        element = pipeline.cut(m, {"element": self.i.payload})["element"]
        pipeline.handshake(m, self.i, step)

        # The sum register is also the output payload: it may only change when the sum it
        # holds has been taken (or was never a result).
        acc = Signal(32, init=_NEG_ZERO, name="acc")
        start = Mux(element.first, _NEG_ZERO, acc)
        total = fp32_add_datapath(m, start, element.addend, name="acc_add")
        m.d.comb += step.ready.eq(~self.o.valid | self.o.ready)
        with m.If(step.valid & step.ready):
            m.d.sync += [acc.eq(total), self.o.valid.eq(element.last)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += self.o.payload.eq(acc)
        return m
