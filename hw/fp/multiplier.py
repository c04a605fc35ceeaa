"""Exact mixed-precision multiplier: two tagged operands in, their fp32 product out.

The product of any two fp16 / E4M3 / E5M2 values is exact in fp32: significands have at most
11 bits, so the product has at most 22 (fp32 keeps 24), and its exponent lies in -48..31 (fp32
normals cover -126..127), so the result is always a normal fp32 number, never rounded, never
subnormal, never overflowing. The datapath therefore has no rounding logic at all:

1. *decode* each operand to an internal form (sign, unbiased exponent, significand with its
   hidden bit, special-value flags), normalising subnormals with a leading-zero count;
2. *multiply* the significands and add the exponents;
3. *normalise* the product (a shift by at most one bit) and *pack* it into fp32.

Decode is direct from each allowed format rather than through :func:`hw.fp.operand.to_fp16`:
every format is only re-aligned into a significand as wide as the widest format allowed on its
side, and one shared leading-zero count normalises the subnormals of all formats. Going through
fp16 would widen FP8 significands to 11 bits (no narrow FP8 x FP8 path) and would normalise
twice (E4M3 subnormals to fp16, then fp16 subnormals again).
"""

from amaranth import Module, Signal, Mux, Cat
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.fp.operand import Operand, operand_formats
from hw.pipeline import PipelinedComponent
from sim.formats import FP32, OPERAND_FORMATS, NanStyle

__all__ = ["ProductDatapath", "MulOperands", "FPMultiplier"]


class MulOperands(data.Struct):
    """The two factors of one product."""
    a: Operand
    b: Operand


def _allowed_formats(field, formats):
    """Validate one side's format names with :func:`operand_formats`, naming the field."""
    try:
        return operand_formats(formats)
    except ValueError as error:
        raise ValueError(f"{field}: {error}") from None
    except TypeError:  # not iterable
        raise ValueError(f"{field} must be a non-empty collection of {sorted(OPERAND_FORMATS)}, "
                         f"not {formats!r}") from None


class _Side:
    """Geometry of one multiplier input, derived from the formats allowed on it."""

    def __init__(self, name, tags):
        self.name = name
        self.tags = tags
        fmts = [tag.fmt for tag in tags]
        #: significand width, hidden bit included
        self.sig_width = max(f.man_bits for f in fmts) + 1
        #: unbiased exponent of the leading one: normals, then subnormals once normalised
        self.exp_min = min(f.emin - f.man_bits for f in fmts)
        self.exp_max = max(f.emax for f in fmts)
        self.layout = data.StructLayout({
            "sig": self.sig_width,                        # 1.fff..., MSB set unless zero
            "exp": range(self.exp_min, self.exp_max + 1),
            "sign": 1,
            "zero": 1,
            "inf": 1,
            "nan": 1,                                     # NaN code or disallowed format tag
        })


def _decode(m, side, operand):
    """Combinational decode of an :class:`Operand` view to ``side.layout`` (normalised)."""
    width = side.sig_width
    prefix = side.name
    raw_sig = Signal(width, name=f"{prefix}_raw_sig")
    raw_exp = Signal(range(min(t.fmt.emin for t in side.tags), side.exp_max + 1),
                     name=f"{prefix}_raw_exp")
    sign = Signal(name=f"{prefix}_sign")
    inf = Signal(name=f"{prefix}_inf")
    nan = Signal(name=f"{prefix}_nan")
    with m.Switch(operand.fmt):
        for tag in side.tags:
            fmt = tag.fmt
            fields = Signal(fmt.layout, name=f"{prefix}_{fmt.name}")
            m.d.comb += fields.eq(operand.bits[:fmt.width])   # FP8 codes sit in the low byte
            top = fields.exp == fmt.exp_max_field
            if fmt.nan_style is NanStyle.FN:
                is_nan = top & (fields.man == (1 << fmt.man_bits) - 1)
                is_inf = 0
            else:
                is_nan = top & (fields.man != 0)
                is_inf = top & (fields.man == 0)
            normal = fields.exp != 0
            # left-align the fraction under the hidden bit so every format shares one form
            frac = fields.man.shift_left(width - 1 - fmt.man_bits)
            with m.Case(tag):
                m.d.comb += [
                    sign.eq(fields.sign),
                    nan.eq(is_nan),
                    inf.eq(is_inf),
                    raw_sig.eq(Cat(frac, normal)),
                    raw_exp.eq(Mux(normal, fields.exp - fmt.bias, fmt.emin)),
                ]
        with m.Default():
            # a format this multiplier was not built for: the product is the canonical NaN
            m.d.comb += nan.eq(1)

    # One leading-zero count for all formats: zero for normals (hidden bit set), the shift that
    # brings a subnormal's leading one under the hidden bit otherwise. The last match wins, so
    # scanning upwards leaves the count of the most significant one.
    lead_zeros = Signal(range(width), name=f"{prefix}_lead_zeros")
    for bit in range(width):
        with m.If(raw_sig[bit]):
            m.d.comb += lead_zeros.eq(width - 1 - bit)

    decoded = Signal(side.layout, name=f"{prefix}_decoded")
    m.d.comb += [
        decoded.sig.eq(raw_sig << lead_zeros),
        decoded.exp.eq(raw_exp - lead_zeros),
        decoded.sign.eq(sign),
        decoded.zero.eq(raw_sig == 0),          # only a zero code has neither hidden bit nor fraction
        decoded.inf.eq(inf),
        decoded.nan.eq(nan),
    ]
    return decoded


class ProductDatapath:
    """The multiplier's combinational datapath, for :class:`FPMultiplier` and for units that
    embed a multiplier in a pipeline of their own (MAC, PE).

    Parameters
    ----------
    a_formats, b_formats : collection of str
        Formats allowed for operand ``a`` / ``b`` (see :class:`FPMultiplier`).
    """

    CUT_POINTS = 3

    def __init__(self, *, a_formats=("fp16", "e4m3", "e5m2"), b_formats=("fp16", "e4m3", "e5m2")):
        self.a_formats = _allowed_formats("a_formats", a_formats)
        self.b_formats = _allowed_formats("b_formats", b_formats)
        self._a = _Side("a", self.a_formats)
        self._b = _Side("b", self.b_formats)
        self.a_sig_width = self._a.sig_width
        self.b_sig_width = self._b.sig_width
        # why no rounding is needed: the product's fraction and exponent fit fp32 normals
        assert self.a_sig_width + self.b_sig_width - 1 <= FP32.man_bits
        assert FP32.emin <= self._a.exp_min + self._b.exp_min
        assert self._a.exp_max + self._b.exp_max + 1 <= FP32.emax

    def build(self, m, pipeline, a_operand, b_operand, extra=None):
        """Build the multiplier into ``m``, using ``CUT_POINTS`` cut points of ``pipeline``.

        Returns the fp32 product, or ``(product, extra)`` when ``extra`` (a dict of values that
        travel alongside, e.g. control flags of a MAC) is given.
        """
        extra = dict(extra or {})
        carried = lambda stage: {f"x_{k}": stage[f"x_{k}"] for k in extra}
        # 1. decode
        s1 = pipeline.cut(m, {
            "a": _decode(m, self._a, a_operand),
            "b": _decode(m, self._b, b_operand),
            **{f"x_{k}": v for k, v in extra.items()},
        })
        a, b = s1["a"], s1["b"]

        # 2. significand multiply, exponent add, classification of the result
        product_width = self.a_sig_width + self.b_sig_width
        sig_product = Signal(product_width, name="sig_product")
        exp_sum = Signal(range(self._a.exp_min + self._b.exp_min,
                               self._a.exp_max + self._b.exp_max + 1), name="exp_sum")
        is_nan = Signal(name="product_nan")
        is_inf = Signal(name="product_inf")
        is_zero = Signal(name="product_zero")
        sign = Signal(name="product_sign")
        m.d.comb += [
            sig_product.eq(a.sig * b.sig),
            exp_sum.eq(a.exp + b.exp),
            is_nan.eq(a.nan | b.nan | (a.inf & b.zero) | (a.zero & b.inf)),
            is_inf.eq(a.inf | b.inf),
            is_zero.eq(a.zero | b.zero),
            sign.eq(a.sign ^ b.sign),
        ]
        s2 = pipeline.cut(m, {"sig_product": sig_product, "exp_sum": exp_sum, "nan": is_nan,
                              "inf": is_inf, "zero": is_zero, "sign": sign, **carried(s1)})

        # 3. normalise (both significands are in [1, 2), so the product is in [1, 4)) and pack
        carry = Signal(name="product_carry")
        fraction = Signal(product_width - 1, name="product_fraction")   # bits below the leading one
        m.d.comb += [
            carry.eq(s2["sig_product"][-1]),
            fraction.eq(Mux(carry, s2["sig_product"][:-1], s2["sig_product"][:-2].shift_left(1))),
        ]
        result = Signal(FP32.layout, name="product")
        with m.If(s2["nan"]):
            m.d.comb += result.eq(FP32.nan_bits)
        with m.Elif(s2["inf"]):
            m.d.comb += [result.sign.eq(s2["sign"]), result.exp.eq(FP32.exp_max_field)]
        with m.Elif(s2["zero"]):
            m.d.comb += result.sign.eq(s2["sign"])
        with m.Else():
            m.d.comb += [
                result.sign.eq(s2["sign"]),
                result.exp.eq(s2["exp_sum"] + carry + FP32.bias),
                result.man.eq(fraction.shift_left(FP32.man_bits - (product_width - 1))),
            ]
        s3 = pipeline.cut(m, {"product": result, **carried(s2)})
        if not extra:
            return s3["product"]
        return s3["product"], {k: s3[f"x_{k}"] for k in extra}


class FPMultiplier(PipelinedComponent):
    """Exact product of two tagged operands (fp16, E4M3, E5M2) as an fp32 bit pattern.

    Bit-exact with :func:`sim.numerics.fp32_mul`: subnormal operands are supported (no flush to
    zero), a NaN operand or ``inf * 0`` gives the canonical fp32 NaN ``0x7FC00000``,
    ``inf * finite non-zero`` a signed infinity, and a zero product carries the sign
    ``sign(a) ^ sign(b)``. An FP8 operand is read from the low byte of ``bits``; its high byte is
    ignored.

    An operand whose tag is not among the formats allowed on its side (including the unassigned
    tag 3) is treated as a NaN: the product is the canonical NaN. The output stays a plain
    fp32 word, and a disallowed format can never pass as a number.

    The significand multiplier is as wide as the formats allowed on each side need: 11 x 11 bits
    when fp16 is allowed on both sides, 4 x 4 bits for an FP8-only (narrow) configuration.

    Parameters
    ----------
    a_formats, b_formats : collection of str
        Formats allowed for operand ``a`` / ``b``, among ``"fp16"``, ``"e4m3"``, ``"e5m2"``.
    stages : int
        Pipeline depth, ``0`` (combinational) to ``CUT_POINTS`` (3). Registers go, evenly
        spread, after decode, after the significand multiply and after normalise/pack.

    Latency ``stages`` cycles; throughput one product per cycle (the pipeline stalls only while
    its output is held by backpressure).

    Attributes
    ----------
    a_sig_width, b_sig_width : int
        Widths of the significand multiplier's inputs (hidden bit included).

    Ports
    -----
    i : stream of :class:`MulOperands`
    o : stream of 32-bit fp32 words
    """

    CUT_POINTS = ProductDatapath.CUT_POINTS

    i: In(stream.Signature(MulOperands))
    o: Out(stream.Signature(32))

    def __init__(self, *, a_formats=("fp16", "e4m3", "e5m2"), b_formats=("fp16", "e4m3", "e5m2"),
                 stages=CUT_POINTS):
        self.product = ProductDatapath(a_formats=a_formats, b_formats=b_formats)
        self.a_formats = self.product.a_formats
        self.b_formats = self.product.b_formats
        self.a_sig_width = self.product.a_sig_width
        self.b_sig_width = self.product.b_sig_width
        super().__init__(stages=stages)

    def elaborate(self, platform):
        m = Module()
        pipeline = self.new_pipeline("mul")
        product = self.product.build(m, pipeline, self.i.payload.a, self.i.payload.b)
        m.d.comb += self.o.payload.eq(product)
        pipeline.handshake(m, self.i, self.o)
        return m
