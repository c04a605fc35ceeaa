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
fp16 would widen FP8 significands to 11 bits and would normalise twice (E4M3 subnormals to
fp16, then fp16 subnormals again).

*Narrow path.* When FP8 x FP8 products are possible and fp16 is allowed too (the FGMP PE), step
2 has two significand multipliers: the wide one (11 x 11 with fp16 on both sides) and a narrow
one as wide as the FP8 significands (4 x 4 with e4m3, 3 bits for e5m2 alone). A decoded FP8
significand sits in the top bits of its side's significand (the bits below are zero, also after
normalising a subnormal), so the narrow product, shifted back up, equals the wide product bit
for bit. The operand tags select, per element, which multiplier computes the product; the other
one's inputs are held at zero (operand isolation: its array does not toggle, which is where an
FP8 x FP8 product saves energy), so its product is zero and the two products combine with an OR.
"""

from amaranth import Cat, Const, Module, Mux, Signal
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
        #: the FP8 formats allowed on this side and their significand width (0: none)
        self.fp8_tags = tuple(tag for tag in tags if tag.fmt.width == 8)
        self.fp8_sig_width = max((tag.fmt.man_bits + 1 for tag in self.fp8_tags), default=0)
        self.layout = data.StructLayout({
            "sig": self.sig_width,                        # 1.fff..., MSB set unless zero
            "exp": range(self.exp_min, self.exp_max + 1),
            "sign": 1,
            "zero": 1,
            "inf": 1,
            "nan": 1,                                     # NaN code or disallowed format tag
        })


def _is_one_of(tag, tags):
    """1 when the tag (an :class:`OperandFormat` view) is one of ``tags``."""
    return Cat(*(tag == t for t in tags)).any()


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
    narrow_path : bool
        Build the tag-selected FP8 x FP8 significand multiplier when the formats make it
        useful (see :class:`FPMultiplier`).

    Attributes
    ----------
    a_sig_width, b_sig_width : int
        Widths of the (wide) significand multiplier's inputs, hidden bit included.
    has_narrow_path : bool
        Whether a separate narrow multiplier is built.
    """

    CUT_POINTS = 3

    def __init__(self, *, a_formats=("fp16", "e4m3", "e5m2"), b_formats=("fp16", "e4m3", "e5m2"),
                 narrow_path=True):
        self.a_formats = _allowed_formats("a_formats", a_formats)
        self.b_formats = _allowed_formats("b_formats", b_formats)
        self._a = _Side("a", self.a_formats)
        self._b = _Side("b", self.b_formats)
        self.a_sig_width = self._a.sig_width
        self.b_sig_width = self._b.sig_width
        if not isinstance(narrow_path, bool):
            raise ValueError(f"narrow_path must be True or False, not {narrow_path!r}")
        self.narrow_path = narrow_path
        a, b = self._a, self._b
        fp8_pairs = bool(a.fp8_tags and b.fp8_tags)
        wider = a.sig_width > a.fp8_sig_width or b.sig_width > b.fp8_sig_width
        #: a separate FP8 x FP8 significand multiplier is built (see the module docstring)
        self.has_narrow_path = narrow_path and fp8_pairs and wider
        #: every product of two FP8 operands is computed on a multiplier of FP8 width: the
        #: narrow path's, or the only one of an FP8-only configuration
        self._fp8_pairs_narrow = fp8_pairs and (self.has_narrow_path or not wider)
        # why no rounding is needed: the product's fraction and exponent fit fp32 normals
        assert self.a_sig_width + self.b_sig_width - 1 <= FP32.man_bits
        assert FP32.emin <= self._a.exp_min + self._b.exp_min
        assert self._a.exp_max + self._b.exp_max + 1 <= FP32.emax

    def decoded_layout(self, side):
        """Layout of an operand of side ``"a"`` or ``"b"`` decoded by :meth:`decode`: its
        ``fields`` (sign, exponent, normalised significand, class) and ``fp8`` (its tag is
        an FP8 format: the narrow path's selection)."""
        return data.StructLayout({"fields": self._side(side).layout, "fp8": 1})

    def decode(self, m, side, operand):
        """Decode an :class:`~hw.fp.operand.Operand` of side ``"a"`` or ``"b"`` once, for
        several multipliers built with ``decoded=True`` (a systolic array decodes at its edge
        and passes the fields through its PEs). Combinational; returns a
        :meth:`decoded_layout` value."""
        info = self._side(side)
        decoded = Signal(self.decoded_layout(side), name=f"{info.name}_edge_decoded")
        m.d.comb += [
            decoded.fields.eq(_decode(m, info, operand)),
            decoded.fp8.eq(_is_one_of(operand.fmt, info.fp8_tags) if info.fp8_tags else 0),
        ]
        return decoded

    def _side(self, side):
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', not {side!r}")
        return self._a if side == "a" else self._b

    def build(self, m, pipeline, a_operand, b_operand, extra=None, *, narrow_out=None,
              zero_unless=(), decoded=False):
        """Build the multiplier into ``m``, using ``CUT_POINTS`` cut points of ``pipeline``.

        Returns the fp32 product, or ``(product, extra)`` when ``extra`` (a dict of values that
        travel alongside, e.g. control flags of a MAC) is given. ``zero_unless`` names 1-bit
        values of ``extra``: the product is ``-0`` (the identity of an fp32 addition) unless
        they are all 1, chosen ahead of the last cut point (so a register holds it when the
        pipeline has stages). ``decoded``: the operands are :meth:`decode` results, not
        operands (no decode is built here). A 1-bit signal given as
        ``narrow_out`` is driven, aligned with the product, high when the product was computed
        on a significand multiplier of FP8 width (both tags FP8 formats allowed on their side,
        and a narrow path built or the whole multiplier FP8-only); it is only carried through
        the pipeline when asked for.
        """
        extra = dict(extra or {})
        carried = lambda stage: {f"x_{k}": stage[f"x_{k}"] for k in extra}
        # both tags FP8: selects the narrow path, and is what ``narrow_out`` reports
        report = narrow_out is not None and self._fp8_pairs_narrow
        flags = {}
        if self.has_narrow_path or report:
            fp8_pair = Signal(name="fp8_pair")
            if decoded:
                m.d.comb += fp8_pair.eq(a_operand.fp8 & b_operand.fp8)
            else:
                m.d.comb += fp8_pair.eq(_is_one_of(a_operand.fmt, self._a.fp8_tags)
                                        & _is_one_of(b_operand.fmt, self._b.fp8_tags))
            flags["fp8_pair"] = fp8_pair
        # 1. decode
        s1 = pipeline.cut(m, {
            "a": a_operand.fields if decoded else _decode(m, self._a, a_operand),
            "b": b_operand.fields if decoded else _decode(m, self._b, b_operand),
            **flags,
            **{f"x_{k}": v for k, v in extra.items()},
        })
        a, b = s1["a"], s1["b"]

        # 2. significand multiply, exponent add, classification of the result
        product_width = self.a_sig_width + self.b_sig_width
        sig_product = Signal(product_width, name="sig_product")
        narrow = s1.get("fp8_pair")
        if self.has_narrow_path:
            narrow = Signal(name="use_narrow")
            m.d.comb += [
                narrow.eq(s1["fp8_pair"]),
                sig_product.eq(self._narrow_and_wide(m, a.sig, b.sig, narrow)),
            ]
        else:
            m.d.comb += sig_product.eq(a.sig * b.sig)
        exp_sum = Signal(range(self._a.exp_min + self._b.exp_min,
                               self._a.exp_max + self._b.exp_max + 1), name="exp_sum")
        is_nan = Signal(name="product_nan")
        is_inf = Signal(name="product_inf")
        is_zero = Signal(name="product_zero")
        sign = Signal(name="product_sign")
        m.d.comb += [
            exp_sum.eq(a.exp + b.exp),
            is_nan.eq(a.nan | b.nan | (a.inf & b.zero) | (a.zero & b.inf)),
            is_inf.eq(a.inf | b.inf),
            is_zero.eq(a.zero | b.zero),
            sign.eq(a.sign ^ b.sign),
        ]
        # the flag that drives the selection is the one reported
        flags = {"narrow": narrow} if report else {}
        s2 = pipeline.cut(m, {"sig_product": sig_product, "exp_sum": exp_sum, "nan": is_nan,
                              "inf": is_inf, "zero": is_zero, "sign": sign, **flags,
                              **carried(s1)})

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
        if zero_unless:
            gated = Signal(32, name="product_gated")
            m.d.comb += gated.eq(Mux(Cat(s2[f"x_{k}"] for k in zero_unless).all(), result,
                                     Const(FP32.sign_mask, 32)))
            result = gated
        flags = {"narrow": s2["narrow"]} if report else {}
        s3 = pipeline.cut(m, {"product": result, **flags, **carried(s2)})
        if report:
            m.d.comb += narrow_out.eq(s3["narrow"])
        elif narrow_out is not None:
            m.d.comb += narrow_out.eq(0)       # no product is computed on a narrow multiplier
        if not extra:
            return s3["product"]
        return s3["product"], {k: s3[f"x_{k}"] for k in extra}

    def _narrow_and_wide(self, m, a_sig, b_sig, use_narrow):
        """The two significand multipliers and their isolation; returns the product, as wide
        as the wide multiplier's."""
        a_narrow_width, b_narrow_width = self._a.fp8_sig_width, self._b.fp8_sig_width
        wide_a = Signal(self.a_sig_width, name="wide_a_sig")
        wide_b = Signal(self.b_sig_width, name="wide_b_sig")
        narrow_a = Signal(a_narrow_width, name="narrow_a_sig")
        narrow_b = Signal(b_narrow_width, name="narrow_b_sig")
        wide_product = Signal(self.a_sig_width + self.b_sig_width, name="wide_product")
        narrow_product = Signal(a_narrow_width + b_narrow_width, name="narrow_product")
        m.d.comb += [
            # an FP8 significand is the top bits of its side's significand (the rest are zero)
            narrow_a.eq(Mux(use_narrow, a_sig[-a_narrow_width:], 0)),
            narrow_b.eq(Mux(use_narrow, b_sig[-b_narrow_width:], 0)),
            wide_a.eq(Mux(use_narrow, 0, a_sig)),
            wide_b.eq(Mux(use_narrow, 0, b_sig)),
            narrow_product.eq(narrow_a * narrow_b),
            wide_product.eq(wide_a * wide_b),
        ]
        # the idle multiplier's product is zero, so an OR selects
        shift = self.a_sig_width + self.b_sig_width - a_narrow_width - b_narrow_width
        return wide_product | narrow_product.shift_left(shift)


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
    when fp16 is allowed on both sides, 4 x 4 bits for an FP8-only configuration. When FP8
    formats are allowed on both sides and fp16 on at least one (e.g. the FGMP PE's fp16 / e4m3 /
    e5m2 on both sides), ``narrow_path=True`` adds a second, narrow significand multiplier of
    the FP8 widths (4 x 4, or 3 bits on a side whose only FP8 format is e5m2) that computes
    every product whose two tags are FP8 formats; the wide multiplier's inputs are then held at
    zero (operand isolation), and the narrow one's inputs are zero for every other product.
    The result is the same on every input with and without it; the ``narrow`` output tells
    which multiplier computed a product (per-element energy accounting).

    Parameters
    ----------
    a_formats, b_formats : collection of str
        Formats allowed for operand ``a`` / ``b``, among ``"fp16"``, ``"e4m3"``, ``"e5m2"``.
    stages : int
        Pipeline depth, ``0`` (combinational) to ``CUT_POINTS`` (3). Registers go, evenly
        spread, after decode, after the significand multiply and after normalise/pack.
    narrow_path : bool
        Build the tag-selected narrow FP8 x FP8 multiplier (default ``True``). It has no effect
        when no FP8 x FP8 product is possible or when both sides are FP8-only (the only
        multiplier is then narrow already).

    Latency ``stages`` cycles; throughput one product per cycle (the pipeline stalls only while
    its output is held by backpressure).

    Attributes
    ----------
    a_sig_width, b_sig_width : int
        Widths of the (wide) significand multiplier's inputs (hidden bit included).
    has_narrow_path : bool
        Whether the separate narrow multiplier is built.

    Ports
    -----
    i : stream of :class:`MulOperands`
    o : stream of 32-bit fp32 words
    narrow : 1 bit, qualified by ``o.valid``
        High when the product on ``o`` was computed on a multiplier of FP8 width: both tags
        FP8 formats allowed on their side, in a configuration with a narrow path or an FP8-only
        one. Always low with ``narrow_path=False`` when fp16 is allowed on a side.
    """

    CUT_POINTS = ProductDatapath.CUT_POINTS

    i: In(stream.Signature(MulOperands))
    o: Out(stream.Signature(32))
    narrow: Out(1)

    def __init__(self, *, a_formats=("fp16", "e4m3", "e5m2"), b_formats=("fp16", "e4m3", "e5m2"),
                 stages=CUT_POINTS, narrow_path=True):
        self.product = ProductDatapath(a_formats=a_formats, b_formats=b_formats,
                                       narrow_path=narrow_path)
        self.a_formats = self.product.a_formats
        self.b_formats = self.product.b_formats
        self.a_sig_width = self.product.a_sig_width
        self.b_sig_width = self.product.b_sig_width
        self.narrow_path = self.product.narrow_path
        self.has_narrow_path = self.product.has_narrow_path
        super().__init__(stages=stages)

    def elaborate(self, platform):
        m = Module()
        pipeline = self.new_pipeline("mul")
        product = self.product.build(m, pipeline, self.i.payload.a, self.i.payload.b,
                                     narrow_out=self.narrow)
        m.d.comb += self.o.payload.eq(product)
        pipeline.handshake(m, self.i, self.o)
        return m
