"""Multiply-accumulate: dot products of tagged FP8/fp16 operands with FP32 accumulation."""

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.fp.adder import AccInput, FP32Accumulator
from hw.fp.multiplier import ProductDatapath
from hw.fp.operand import Operand
from hw.pipeline import Pipeline

__all__ = ["MacInput", "FPMac"]


class MacInput(data.Struct):
    """One product term of a dot product; ``first`` starts a new sum, ``last`` emits it."""
    a: Operand
    b: Operand
    first: 1
    last: 1


class FPMac(wiring.Component):
    """Stream unit: dot products ``sum_k a_k * b_k`` with one fp32 rounding per term.

    The exact product of each pair (:class:`~hw.fp.multiplier.FPMultiplier`) is added to the
    running sum in order (:class:`~hw.fp.adder.FP32Accumulator`): the dot product of
    ``(a_0, b_0) .. (a_n-1, b_n-1)`` is ``((p_0 + p_1) + p_2) + ...`` with ``p_k = a_k * b_k``
    exact, i.e. ``acc = round_fp32(acc + a*b)`` from the first product on. Golden model:
    ``canonicalize(FP32, fp32_sum(p[1:], init_bits=p[0]))`` with ``p = fp32_mul(...)``.

    Parameters
    ----------
    a_formats, b_formats : collection of str
        Operand formats accepted on each side (``"fp16"``, ``"e4m3"``, ``"e5m2"``); FP8-only
        on both sides gives the narrow 4x4-bit significand multiplier.
    mul_stages : int
        Multiplier pipeline depth, 0 .. ``ProductDatapath.CUT_POINTS`` (3).

    Latency ``mul_stages + 1`` cycles from the last term's handshake to the sum; throughput one
    term per cycle.

    Ports
    -----
    i : stream of :class:`MacInput`
    o : stream of 32-bit fp32 sums
    """

    i: In(stream.Signature(MacInput))
    o: Out(stream.Signature(32))

    def __init__(self, *, a_formats=("fp16", "e4m3", "e5m2"), b_formats=("fp16", "e4m3", "e5m2"),
                 mul_stages=ProductDatapath.CUT_POINTS):
        self.product = ProductDatapath(a_formats=a_formats, b_formats=b_formats)
        Pipeline.check_stages(mul_stages, ProductDatapath.CUT_POINTS)
        self.mul_stages = mul_stages
        super().__init__()

    @property
    def latency(self):
        return self.mul_stages + 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = acc = FP32Accumulator(stages=0)
        pipeline = Pipeline(stages=self.mul_stages, cut_points=ProductDatapath.CUT_POINTS,
                            name="mul")
        product, flags = self.product.build(
            m, pipeline, self.i.payload.a, self.i.payload.b,
            extra={"first": self.i.payload.first, "last": self.i.payload.last})
        m.d.comb += [
            acc.i.payload.addend.eq(product),
            acc.i.payload.first.eq(flags["first"]),
            acc.i.payload.last.eq(flags["last"]),
        ]
        pipeline.handshake(m, self.i, acc.i)
        wiring.connect(m, acc.o, wiring.flipped(self.o))
        return m
