"""Bench top levels for the FGMP units.

The packer samples ``t``, ``fmt`` and ``flush`` with each element and the unpacker samples
``length`` and ``fmt`` with the first bus word of a tensor. These tops carry those settings in
the input payload, so that a stream checker that drives payloads only
(:class:`tb.harness.StreamChecker`) can change them from tensor to tensor exactly when the unit
samples them.
"""

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.fgmp.encoder import T_BITS
from hw.fgmp.interface import FgmpStatus, PackerInput, UnpackedOperand, bus_word_layout
from hw.fp.operand import OperandFormat

__all__ = ["PackerTop", "UnpackerTop", "RoundTripTop", "packer_input_layout",
           "round_trip_input_layout", "unpacker_input_layout"]

packer_input_layout = data.StructLayout({"element": PackerInput, "t": T_BITS,
                                         "fmt": OperandFormat, "flush": 1})


round_trip_input_layout = data.StructLayout({"element": PackerInput, "t": T_BITS, "flush": 1})


def unpacker_input_layout(bus_bytes):
    return data.StructLayout({"word": bus_word_layout(bus_bytes), "length": 32,
                              "fmt": OperandFormat})


class PackerTop(wiring.Component):
    """:class:`~hw.fgmp.packer.FgmpPacker` with ``t``, ``fmt`` and ``flush`` in the input
    payload."""

    def __init__(self, packer):
        self.packer = packer
        super().__init__({
            "i": In(stream.Signature(packer_input_layout)),
            "o": Out(stream.Signature(bus_word_layout(packer.geometry.bus_bytes))),
            "status": Out(FgmpStatus),
            "clear_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        packer = m.submodules.packer = self.packer
        m.d.comb += [
            packer.i.valid.eq(self.i.valid),
            self.i.ready.eq(packer.i.ready),
            packer.i.payload.eq(self.i.payload.element),
            packer.t.eq(self.i.payload.t),
            packer.fmt.eq(self.i.payload.fmt),
            packer.flush.eq(self.i.payload.flush),
            packer.clear_error.eq(self.clear_error),
            self.status.eq(packer.status),
        ]
        wiring.connect(m, packer.o, wiring.flipped(self.o))
        return m


class UnpackerTop(wiring.Component):
    """:class:`~hw.fgmp.unpacker.FgmpUnpacker` with ``length`` and ``fmt`` in the input
    payload."""

    def __init__(self, unpacker):
        self.unpacker = unpacker
        super().__init__({
            "i": In(stream.Signature(unpacker_input_layout(unpacker.geometry.bus_bytes))),
            "o": Out(stream.Signature(UnpackedOperand)),
            "status": Out(FgmpStatus),
            "clear_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        unpacker = m.submodules.unpacker = self.unpacker
        m.d.comb += [
            unpacker.i.valid.eq(self.i.valid),
            self.i.ready.eq(unpacker.i.ready),
            unpacker.i.payload.eq(self.i.payload.word),
            unpacker.length.eq(self.i.payload.length),
            unpacker.fmt.eq(self.i.payload.fmt),
            unpacker.clear_error.eq(self.clear_error),
            self.status.eq(unpacker.status),
        ]
        wiring.connect(m, unpacker.o, wiring.flipped(self.o))
        return m


class RoundTripTop(wiring.Component):
    """Packer into unpacker: FP32 values in, the operands the PEs would read back out.

    ``t`` and ``flush`` travel in the input payload; ``fmt`` (both units) and ``length`` (the
    unpacker) are ports held for the whole run.
    """

    def __init__(self, packer, unpacker):
        self.packer = packer
        self.unpacker = unpacker
        super().__init__({
            "i": In(stream.Signature(round_trip_input_layout)),
            "fmt": In(OperandFormat),
            "length": In(32),
            "o": Out(stream.Signature(UnpackedOperand)),
            "packer_status": Out(FgmpStatus),
            "unpacker_status": Out(FgmpStatus),
        })

    def elaborate(self, platform):
        m = Module()
        packer = m.submodules.packer = self.packer
        unpacker = m.submodules.unpacker = self.unpacker
        m.d.comb += [
            packer.i.valid.eq(self.i.valid),
            self.i.ready.eq(packer.i.ready),
            packer.i.payload.eq(self.i.payload.element),
            packer.t.eq(self.i.payload.t),
            packer.flush.eq(self.i.payload.flush),
            packer.fmt.eq(self.fmt),
            unpacker.fmt.eq(self.fmt),
            unpacker.length.eq(self.length),
            self.packer_status.eq(packer.status),
            self.unpacker_status.eq(unpacker.status),
        ]
        wiring.connect(m, packer.o, unpacker.i)
        wiring.connect(m, unpacker.o, wiring.flipped(self.o))
        return m
