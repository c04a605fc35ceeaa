"""FGMP unpacker: the load path from the FGMP byte stream on the bus to tagged PE operands.

Bus words go into a byte buffer; a parser takes one element per cycle from its front:

* at the start of a block, the tag mask (``ceil(B / 8)`` bytes) and element 0 together;
* then each element's payload, 1 byte (FP8) or 2 bytes (fp16) as its tag says;
* after a tensor's last element, the padding: the rest of the last block (which must be FP8 +0
  elements: tag 1, byte 0) and the stream padding up to the end of the bus word (zero bytes),
  up to ``ceil(B / 8) + 2`` bytes per cycle.

Each element leaves as an :class:`~hw.fp.operand.Operand` the PEs take directly: an FP8
element keeps its code in the low byte with the tensor's FP8 format tag, an fp16 element its
bit pattern with the ``FP16`` tag. The multiplier of a PE decodes each tag itself
(:class:`hw.fp.multiplier.ProductDatapath`); ``zero`` flags a +0/-0 element for zero-skip logic.

Bit-exact with :func:`sim.fgmp.unpack` (the FP8 code before decoding to fp16), one tensor after
another. Every corrupt stream that :func:`sim.fgmp.unpack` rejects raises ``status.error``
(see :class:`~hw.fgmp.interface.FgmpError`); the tensor is then finished without a hang: the
unpacker still delivers ``length`` operands, those after the fault as fp16 +0 (``zero`` set),
the last one marked ``last``, and discards bus words up to the one marked ``last``.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from hw.fgmp.interface import (FgmpError, FgmpStatus, UnpackedOperand, block_format,
                               bus_word_layout, fp8_formats, update_status)
from hw.fp.operand import OperandFormat

__all__ = ["FgmpUnpacker"]


class _State(enum.Enum, shape=3):
    IDLE = 0       # between tensors: the next accepted word starts a tensor
    HEADER = 1     # next: a block's tag mask and its element 0
    ELEMENT = 2    # next: element ``index`` of the block
    ZEROS = 3      # next: padding of the last block and of the stream (zero bytes)
    END = 4        # all bytes of the tensor taken: wait for the word marked ``last``
    ABORT = 5      # after a fault: zeros out, words dropped up to ``last``


class FgmpUnpacker(wiring.Component):
    """Stream unit: FGMP bus words in, tagged PE operands out.

    Parameters
    ----------
    formats : collection of str
        FP8 formats built in: ``"e4m3"``, ``"e5m2"`` or both (then the ``fmt`` input chooses).
    block : int
        Elements per block ``B`` (8, 16, 32, 64).
    bus_bytes : int
        Bus word width ``W`` in bytes (a power of two, 1..64).

    ``length`` (elements of the tensor, at least 1) and ``fmt`` are sampled when the first bus
    word of a tensor is accepted. A tensor ends with the bus word marked ``last``.

    Throughput: one operand per cycle when the bus keeps up (an fp16 element needs 2 bytes,
    so ``W >= 2`` for a full rate; ``W = 1`` gives one operand per 1..2 cycles); the padding
    after a tensor's last element takes ``ceil(padding bytes / (ceil(B / 8) + 2))`` cycles and
    the end of a tensor 1 more. Latency: an operand is offered 2 cycles after the bus word that
    completes it is accepted.

    Errors (sticky ``status``, first fault kept, see :class:`~hw.fgmp.interface.FgmpError`):
    ``BAD_FORMAT`` (``fmt`` not one of ``formats``) and ``BAD_LENGTH`` (``length`` 0) when the
    tensor starts; ``TRUNCATED``, ``BAD_PADDING`` and ``EXTRA_DATA`` when the stream shows it.

    Ports
    -----
    i : stream of :func:`~hw.fgmp.interface.bus_word_layout` ``(W)``
    length : 32 bits
    fmt : :class:`~hw.fp.operand.OperandFormat`, ``E4M3`` or ``E5M2``
    o : stream of :class:`~hw.fgmp.interface.UnpackedOperand`
    status : :class:`~hw.fgmp.interface.FgmpStatus`
    clear_error : 1 bit
    """

    #: Width of the ``length`` port.
    LENGTH_BITS = 32

    def __init__(self, *, formats=("e4m3", "e5m2"), block=16, bus_bytes=16):
        self.formats = fp8_formats(formats)
        self.geometry = block_format(block=block, bus_bytes=bus_bytes)
        #: Most bytes the parser takes in one cycle: tag mask and an fp16 element.
        self.chunk_bytes = self.geometry.tag_bytes + 2
        #: Byte buffer size: a word fits whenever fewer bytes than a chunk are held.
        self.capacity = bus_bytes + self.chunk_bytes - 1
        super().__init__({
            "i": In(stream.Signature(bus_word_layout(bus_bytes))),
            "length": In(self.LENGTH_BITS),
            "fmt": In(OperandFormat),
            "o": Out(stream.Signature(UnpackedOperand)),
            "status": Out(FgmpStatus),
            "clear_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        B, W = self.geometry.block, self.geometry.bus_bytes
        H, K, capacity = self.geometry.tag_bytes, self.chunk_bytes, self.capacity

        state = Signal(_State, name="state")
        buffer = Signal(8 * capacity, name="buffer")
        buffered = Signal(range(capacity + 1), name="buffered")
        saw_last = Signal(name="saw_last")                      # the word marked last is in
        remaining = Signal(self.LENGTH_BITS, name="remaining")  # operands still to deliver
        index = Signal(range(B), name="index")                  # element within the block
        block_count = Signal(range(B + 1), name="block_count")  # tensor elements in the block
        mask = Signal(B, name="mask")
        zeros_left = Signal(range(B + W), name="zeros_left")
        word_pos = Signal(exact_log2(W), name="word_pos")       # stream offset mod W
        fmt8 = Signal(OperandFormat, name="tensor_fmt")

        def byte(k):
            return buffer.word_select(k, 8)

        # per-cycle decisions, all combinational
        consume = Signal(range(K + 1), name="consume")          # bytes taken from the front
        emit = Signal(name="emit")
        emitted = Signal(UnpackedOperand, name="emitted")
        fault = Signal(name="fault")
        fault_code = Signal(FgmpError, name="fault_code")
        out_free = ~self.o.valid | self.o.ready
        last_element = remaining == 1

        def deliver(tag, low, high):
            """Emit the element with FGMP tag ``tag`` and payload bytes ``low``, ``high``."""
            m.d.comb += [
                emit.eq(1),
                emitted.operand.bits.eq(Mux(tag, low, Cat(low, high))),
                emitted.operand.fmt.eq(Mux(tag, fmt8, OperandFormat.FP16)),
                emitted.zero.eq(Mux(tag, low[:7] == 0, Cat(low, high[:7]) == 0)),
                emitted.last.eq(last_element),
            ]
            m.d.sync += remaining.eq(remaining - 1)

        def fail(code):
            m.d.comb += [fault.eq(1), fault_code.eq(code)]
            m.d.sync += state.eq(_State.ABORT)

        def block_done(count):
            """The block's last tensor element goes out this cycle (``consume`` bytes taken)."""
            with m.If(last_element):
                pad_elements = B - count
                position = word_pos + consume + pad_elements
                stream_pad = (-position)[:exact_log2(W)]
                zeros = pad_elements + stream_pad
                m.d.sync += [zeros_left.eq(zeros),
                             state.eq(Mux(zeros == 0, _State.END, _State.ZEROS))]
            with m.Else():
                m.d.sync += state.eq(_State.HEADER)

        with m.Switch(state):
            with m.Case(_State.HEADER):
                header = buffer[:B]
                tag0 = header[0]
                need = H + Mux(tag0, 1, 2)
                count = Signal(range(B + 1), name="header_count")
                m.d.comb += count.eq(Mux(remaining < B, remaining, B))
                padding = (Const((1 << B) - 1, B) << count)[:B]  # tags that must be FP8 +0
                with m.If(buffered >= need):
                    with m.If(out_free):
                        m.d.comb += consume.eq(need)
                        deliver(tag0, byte(H), byte(H + 1))
                        m.d.sync += [mask.eq(header), block_count.eq(count), index.eq(1)]
                        with m.If((header & padding) != padding):
                            fail(FgmpError.BAD_PADDING)
                        with m.Elif(count == 1):
                            block_done(count)
                        with m.Else():
                            m.d.sync += state.eq(_State.ELEMENT)
                with m.Elif(saw_last):
                    fail(FgmpError.TRUNCATED)

            with m.Case(_State.ELEMENT):
                tag = mask.bit_select(index, 1)
                need = Mux(tag, 1, 2)
                with m.If(buffered >= need):
                    with m.If(out_free):
                        m.d.comb += consume.eq(need)
                        deliver(tag, byte(0), byte(1))
                        m.d.sync += index.eq(index + 1)
                        with m.If(index + 1 == block_count):
                            block_done(block_count)
                with m.Elif(saw_last):
                    fail(FgmpError.TRUNCATED)

            with m.Case(_State.ZEROS):
                take = Mux(zeros_left > K, K, zeros_left)
                nonzero = Cat((byte(k) != 0) & (k < take) for k in range(K)).any()
                with m.If(buffered >= take):
                    with m.If(nonzero):
                        fail(FgmpError.BAD_PADDING)
                    with m.Else():
                        m.d.comb += consume.eq(take)
                        m.d.sync += zeros_left.eq(zeros_left - take)
                        with m.If(zeros_left == take):
                            m.d.sync += state.eq(_State.END)
                with m.Elif(saw_last):
                    fail(FgmpError.TRUNCATED)

            with m.Case(_State.END):
                with m.If(buffered != 0):
                    fail(FgmpError.EXTRA_DATA)
                with m.Elif(saw_last):
                    m.d.sync += [state.eq(_State.IDLE), saw_last.eq(0), word_pos.eq(0)]

            with m.Case(_State.ABORT):
                with m.If(remaining != 0):
                    with m.If(out_free):
                        m.d.comb += [emit.eq(1), emitted.operand.fmt.eq(OperandFormat.FP16),
                                     emitted.zero.eq(1), emitted.last.eq(last_element)]
                        m.d.sync += remaining.eq(remaining - 1)
                with m.Elif(saw_last):
                    m.d.sync += [state.eq(_State.IDLE), saw_last.eq(0), word_pos.eq(0)]

        # -- bus words into the buffer --------------------------------------------------------
        after = Signal(range(capacity + 1), name="buffered_after")
        m.d.comb += after.eq(buffered - consume)
        with m.If(state == _State.ABORT):
            m.d.comb += self.i.ready.eq(~saw_last)                  # drop words up to last
        with m.Else():
            m.d.comb += self.i.ready.eq(~saw_last & (after + W <= capacity))
        accept = self.i.valid & self.i.ready
        with m.If(accept & self.i.payload.last):
            m.d.sync += saw_last.eq(1)
        with m.If(state == _State.ABORT):
            m.d.sync += [buffer.eq(0), buffered.eq(0)]
        with m.Else():
            incoming = (self.i.payload.data << Cat(Const(0, 3), after))[:8 * capacity]
            m.d.sync += [
                buffer.eq((buffer >> Cat(Const(0, 3), consume)) | Mux(accept, incoming, 0)),
                buffered.eq(after + Mux(accept, W, 0)),
            ]
            with m.If(state != _State.END):
                m.d.sync += word_pos.eq(word_pos + consume)

        with m.If((state == _State.IDLE) & accept):
            known = Cat(self.fmt == tag for tag in self.formats).any()
            m.d.sync += [fmt8.eq(self.fmt), remaining.eq(self.length)]
            with m.If(~known):
                fail(FgmpError.BAD_FORMAT)
            with m.Elif(self.length == 0):
                fail(FgmpError.BAD_LENGTH)
            with m.Else():
                m.d.sync += state.eq(_State.HEADER)

        # -- output register ------------------------------------------------------------------
        with m.If(emit):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(emitted)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        update_status(m, self.status, self.clear_error, fault=fault, code=fault_code)
        return m
