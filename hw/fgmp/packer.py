"""FGMP packer: the store path from FP32 accumulators to the FGMP byte stream on the bus.

Three units in a row, each reused as it is:

1. :class:`hw.fp.converter.FP32Converter` rounds the FP32 value to fp16 (round to nearest even,
   IEEE overflow to infinity, canonical NaN), as :func:`sim.numerics.convert` does;
2. :func:`hw.fgmp.encoder.encode` chooses FP8 or fp16 for the element (the FGMP rule with the
   tensor's threshold ``t``, FP8 format and ``flush`` bit);
3. :class:`hw.fgmp.block_writer.FgmpBlockWriter` packs elements into blocks and blocks into
   bus words.

Bit-exact with ``sim.fgmp.pack(convert(FP32, FP16, values), fmt8, t, FgmpBlockFormat(block=B,
bus_bytes=W), flush_underflow=flush)``, one tensor after another (each ends with the element
marked ``last``).
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.fgmp.block_writer import FgmpBlockWriter
from hw.fgmp.encoder import T_BITS, encode
from hw.fgmp.interface import (FgmpError, FgmpStatus, PackerInput, block_format,
                               bus_word_layout, fp8_formats, update_status)
from hw.fp.converter import FP32Converter
from hw.fp.operand import OperandFormat
from hw.pipeline import Pipeline

__all__ = ["FgmpPacker"]


class FgmpPacker(wiring.Component):
    """Stream unit: FP32 values in, the FGMP stream of their fp16 roundings out in bus words.

    Parameters
    ----------
    formats : collection of str
        FP8 formats built in: ``"e4m3"``, ``"e5m2"`` or both (then the ``fmt`` input chooses).
    block : int
        Elements per block ``B`` (8, 16, 32, 64).
    bus_bytes : int
        Bus word width ``W`` in bytes (a power of two, 1..64).
    convert_stages : int
        Pipeline registers of the FP32 -> fp16 converter, 0..3.
    encode_stages : int
        Pipeline registers after the encoder, 0 or 1.

    ``t``, ``fmt`` and ``flush`` are sampled with each element the packer accepts (a CSR written
    between tensors takes effect from the next element). An ``fmt`` that is not one of ``formats``
    stores the element as fp16 and raises ``status.error`` with ``BAD_FORMAT``; the stream
    stays well formed.

    Throughput: one FP32 element per cycle sustained while the bus takes the bytes (an fp16
    element is 2 bytes, so ``W >= 2`` for any mix of tags; ``W = 1`` gives one element per 1..2
    cycles), at most one bus word per cycle; the tag mask goes out with the first element of
    its block. Once per tensor, the padding of its last block takes
    ``ceil((B - n mod B) / (ceil(B / 8) + 2))`` cycles and the flush of its last bus word(s) at
    most ``ceil((W + ceil(B / 8) + 1) / W)``. Latency: ``convert_stages + encode_stages + 4``
    cycles from the acceptance of the element that ends a block to the first bus word holding
    that block, when the word is then full (see :class:`~hw.fgmp.block_writer.FgmpBlockWriter`).

    Ports
    -----
    i : stream of :class:`~hw.fgmp.interface.PackerInput` (FP32 value, ``last`` of tensor)
    t : 4 bits, threshold ``0..15``
    fmt : :class:`~hw.fp.operand.OperandFormat`, ``E4M3`` or ``E5M2``
    flush : 1 bit, store FP8 underflow as the FP8 signed zero (``flush_underflow``); 0 by default
    o : stream of :func:`~hw.fgmp.interface.bus_word_layout` ``(W)``
    status : :class:`~hw.fgmp.interface.FgmpStatus`
    clear_error : 1 bit
    """

    def __init__(self, *, formats=("e4m3", "e5m2"), block=16, bus_bytes=16,
                 convert_stages=FP32Converter.CUT_POINTS, encode_stages=1):
        self.formats = fp8_formats(formats)
        self.geometry = block_format(block=block, bus_bytes=bus_bytes)
        for field, stages, cut_points in (("convert_stages", convert_stages, FP32Converter.CUT_POINTS),
                                          ("encode_stages", encode_stages, 1)):
            try:
                Pipeline.check_stages(stages, cut_points)
            except ValueError as error:
                raise ValueError(f"{field}: {error}") from None
        self.convert_stages = convert_stages
        self.encode_stages = encode_stages
        super().__init__({
            "i": In(stream.Signature(PackerInput)),
            "t": In(T_BITS),
            "fmt": In(OperandFormat),
            "flush": In(1),
            "o": Out(stream.Signature(bus_word_layout(bus_bytes))),
            "status": Out(FgmpStatus),
            "clear_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        convert = m.submodules.convert = FP32Converter(fmt="fp16", stages=self.convert_stages)
        writer = m.submodules.writer = FgmpBlockWriter(block=self.geometry.block,
                                                       bus_bytes=self.geometry.bus_bytes)
        m.d.comb += [
            convert.i.valid.eq(self.i.valid),
            self.i.ready.eq(convert.i.ready),
            convert.i.payload.value.eq(self.i.payload.value),
            convert.i.payload.saturate.eq(0),
        ]
        # The element's settings travel alongside the converter in registers that advance
        # with it: a Pipeline moves all its registers at once, exactly when its sink is ready.
        side = {"last": self.i.payload.last, "t": self.t, "fmt": self.fmt, "flush": self.flush}
        for stage in range(self.convert_stages):
            registered = {}
            for key, value in side.items():
                reg = Signal.like(value, name=f"convert_s{stage}_{key}")
                with m.If(convert.i.ready):
                    m.d.sync += reg.eq(value)
                registered[key] = reg
            side = registered

        pipeline = Pipeline(stages=self.encode_stages, cut_points=1, name="encode")
        element = encode(m, convert.o.payload, side["t"], side["fmt"], self.formats,
                         flush=side["flush"])
        out = pipeline.cut(m, {"element": element, "last": side["last"]})
        m.d.comb += [writer.i.payload.element.eq(out["element"]),
                     writer.i.payload.last.eq(out["last"])]
        pipeline.handshake(m, convert.o, writer.i)
        wiring.connect(m, writer.o, wiring.flipped(self.o))

        known = Signal(name="fmt_known")
        m.d.comb += known.eq(Cat(self.fmt == tag for tag in self.formats).any())
        update_status(m, self.status, self.clear_error,
                      fault=self.i.valid & self.i.ready & ~known, code=FgmpError.BAD_FORMAT)
        return m
