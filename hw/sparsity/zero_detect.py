"""Zero detect: which lanes of an operand word are non-zero, found as the word goes by.

An operand is *zero* when it is ``+0`` or ``-0`` in its own format: all the bits below the
sign are zero (15 bits for fp16; the low 7 bits of the low byte for E4M3 and E5M2, whose high
byte is ignored, as the operand decoder and :func:`sim.gemm.decode_operands` do). A NaN, an
infinity or a subnormal is never zero. This is :func:`sim.sparsity.zero_bitmap` bit for bit.

From the lanes' bits the unit derives what skip logic consumes (:mod:`sim.skip_model`): the
bitmap itself, the number of non-zero lanes, whether any lane is non-zero (a step that cannot be
skipped on this operand's account, :func:`sim.sparsity.lane_bitmaps`), the first non-zero lane
and, optionally, the list of non-zero lanes in ascending order (lane compaction).

Unknown format tag. The tag code 3 is not a format (:func:`sim.gemm.decode_operands` refuses
it). The multiplier computes a NaN for such an operand (:class:`hw.fp.multiplier.FPMultiplier`),
so zero detect reports it **non-zero**: skip logic never hides it, and the product still comes
out as the canonical NaN. The word is passed on unchanged and the sticky ``error`` output rises.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.fp.operand import Operand, OperandFormat
from hw.pipeline import PipelinedComponent

__all__ = ["MAX_LANES", "operand_nonzero", "zero_detect_layout", "ZeroDetector"]

#: Most lanes of a :class:`ZeroDetector`: a 64-byte bus word of FP8 operands.
MAX_LANES = 64


def operand_nonzero(m, operand, name="operand"):
    """``(nonzero, known)``: 1-bit Values, the operand is not ``+-0`` in its format, and its tag
    is a known format (an unknown tag reads as non-zero: module docstring)."""
    nonzero = Signal(name=f"{name}_nonzero")
    known = Signal(name=f"{name}_known")
    with m.Switch(operand.fmt):
        for tag in OperandFormat:
            magnitude_bits = tag.fmt.width - 1                 # everything below the sign
            with m.Case(tag):
                m.d.comb += [nonzero.eq(operand.bits[:magnitude_bits] != 0), known.eq(1)]
        with m.Default():
            m.d.comb += [nonzero.eq(1), known.eq(0)]
    return nonzero, known


def _index_bits(lanes):
    return max(1, ceil_log2(lanes))


def zero_detect_layout(lanes, index_list=False):
    """Output payload of a :class:`ZeroDetector` of ``lanes`` lanes.

    * ``operands``: the input word, unchanged (``lanes`` x :class:`~hw.fp.operand.Operand`);
    * ``nonzero``: ``lanes`` bits, bit ``i`` set when lane ``i`` is not ``+-0``;
    * ``count``: number of non-zero lanes, ``0 .. lanes``;
    * ``any``: some lane is non-zero (``count != 0``);
    * ``first``: the lowest non-zero lane, 0 when there is none;
    * ``indices`` (with ``index_list``): ``lanes`` entries, entry ``j < count`` is the ``j``-th
      non-zero lane in ascending order, the entries from ``count`` on are 0.
    """
    fields = {
        "operands": data.ArrayLayout(Operand, lanes),
        "nonzero": lanes,
        "count": range(lanes + 1),
        "any": 1,
        "first": _index_bits(lanes),
    }
    if index_list:
        fields["indices"] = data.ArrayLayout(_index_bits(lanes), lanes)
    return data.StructLayout(fields)


class ZeroDetector(PipelinedComponent):
    """Stream unit: a word of ``lanes`` tagged operands in, the same word and its non-zero
    bitmap, count, first non-zero lane (and list of non-zero lanes) out.

    Parameters
    ----------
    lanes : int
        Operands per word, 1 .. :data:`MAX_LANES`.
    stages : int
        Pipeline depth, 0 (combinational) or 1 (one register bank on the output).
    index_list : bool
        Also give the list of non-zero lanes (``indices``; a prefix count and a
        ``lanes x lanes`` select network).

    Latency ``stages`` cycles; throughput one word per cycle (the pipeline stalls only while
    its output is held by backpressure).

    Bits: ``nonzero`` is ``~sim.sparsity.zero_bitmap(bits, tags)`` of the word's lanes; the other
    fields follow from it. A lane whose tag is the unknown code 3 is reported non-zero and raises
    ``error`` (module docstring).

    Ports
    -----
    i : stream of ``data.ArrayLayout(Operand, lanes)``
    o : stream of :func:`zero_detect_layout` ``(lanes, index_list)``
    error : 1 bit, sticky: rises the cycle after a word with an unknown tag is accepted and stays
        high until ``clear_error`` (a fault in the same cycle as ``clear_error`` is kept)
    clear_error : 1 bit
    """

    CUT_POINTS = 1

    def __init__(self, *, lanes, stages=1, index_list=False):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= MAX_LANES:
            raise ValueError(f"lanes must be an integer in 1..{MAX_LANES}, not {lanes!r}")
        if not isinstance(index_list, bool):
            raise ValueError(f"index_list must be a bool, not {index_list!r}")
        self.lanes = lanes
        self.index_list = index_list
        super().__init__(stages=stages, signature={
            "i": In(stream.Signature(data.ArrayLayout(Operand, lanes))),
            "o": Out(stream.Signature(zero_detect_layout(lanes, index_list))),
            "error": Out(1),
            "clear_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        word = self.i.payload
        flags = [operand_nonzero(m, word[lane], name=f"lane{lane}") for lane in range(lanes)]
        nonzero = Signal(lanes, name="nonzero")
        m.d.comb += nonzero.eq(Cat(flag for flag, _ in flags))
        unknown = Signal(name="unknown_tag")
        m.d.comb += unknown.eq(~Cat(known for _, known in flags).all())

        result = Signal(zero_detect_layout(lanes, self.index_list), name="detected")
        count = Signal(range(lanes + 1), name="count")
        m.d.comb += count.eq(sum(nonzero[lane] for lane in range(lanes)))
        first = Const(0, _index_bits(lanes))
        for lane in reversed(range(lanes)):                      # lowest non-zero lane wins
            first = Mux(nonzero[lane], lane, first)
        m.d.comb += [
            result.operands.eq(word),
            result.nonzero.eq(nonzero),
            result.count.eq(count),
            result.any.eq(nonzero.any()),
            result.first.eq(first),
        ]
        if self.index_list:
            self._index_list(m, nonzero, result.indices)

        pipeline = self.new_pipeline("detect")
        out = pipeline.cut(m, {"result": result})
        m.d.comb += self.o.payload.eq(out["result"])
        pipeline.handshake(m, self.i, self.o)

        error = Signal(name="error_flag")
        with m.If(self.i.valid & self.i.ready & unknown):
            m.d.sync += error.eq(1)
        with m.Elif(self.clear_error):
            m.d.sync += error.eq(0)
        m.d.comb += self.error.eq(error)
        return m

    def _index_list(self, m, nonzero, indices):
        """Entry ``j`` = the lane whose rank (non-zero lanes below it) is ``j``, if non-zero."""
        lanes = self.lanes
        ranks = []
        rank = Const(0, range(lanes + 1))
        for lane in range(lanes):
            signal = Signal(range(lanes + 1), name=f"lane{lane}_rank")
            m.d.comb += signal.eq(rank)
            ranks.append(signal)
            rank = signal + nonzero[lane]
        for entry in range(lanes):
            # only lanes >= entry can have rank entry; exactly one lane matches if any
            hits = [Mux(nonzero[lane] & (ranks[lane] == entry), lane, 0)
                    for lane in range(entry, lanes)]
            value = hits[0]
            for hit in hits[1:]:
                value = value | hit
            m.d.comb += indices[entry].eq(value)
