"""FGMP block writer: a stream of encoded elements in, the FGMP byte stream in bus words out.

A block's tag mask leads its payload, so the writer holds the elements of a block until its
last tag is known. Elements go into an element FIFO as they arrive while their tags collect
into the block's mask; when a block is complete (``B`` elements, or the tensor's last element)
its mask, element count and end-of-tensor flag go into a block FIFO. The serializer then turns
the block at the head of the block FIFO into *chunks*, one per cycle, appended to a byte
accumulator:

* element 0: the tag mask (``ceil(B / 8)`` bytes) and the element's payload;
* element ``k > 0``: its payload (1 byte FP8, 2 bytes fp16, little-endian);
* the padding of a tensor's last block: up to ``ceil(B / 8) + 2`` zero bytes (FP8 +0 elements).

Whenever the accumulator holds a whole bus word (``W`` bytes) it is moved to the output
register, so blocks straddle bus words freely. After a tensor's last block the accumulator is
flushed: its last, partly filled word is padded with zero bytes and marked ``last``; the next
tensor starts on a fresh word.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.fgmp.interface import FgmpElement, block_format, bus_word_layout

__all__ = ["WriterInput", "FgmpBlockWriter"]


class WriterInput(data.Struct):
    """One encoded element and whether it ends its tensor."""
    element: FgmpElement
    last: 1


class FgmpBlockWriter(wiring.Component):
    """Stream unit: encoded elements in, FGMP bus words out.

    Parameters
    ----------
    block : int
        Elements per block ``B`` (8, 16, 32, 64).
    bus_bytes : int
        Bus word width ``W`` in bytes (a power of two, 1..64).

    Throughput: one element per cycle (the tag mask goes out with element 0) and at most one
    bus word per cycle. Once per tensor, the padding of its last block takes
    ``ceil((B - n mod B) / (ceil(B / 8) + 2))`` cycles and the flush of its last bus word(s) at
    most ``ceil((W + ceil(B / 8) + 1) / W)``. Latency: 4 cycles from the element that ends a
    block to the first bus word that holds the block's tag mask, when that word is then full
    (block FIFO 2, accumulator 1, output register 1). The element FIFO (``2 B`` entries) lets
    the next block collect while one is serialized.

    Ports
    -----
    i : stream of :class:`WriterInput`
    o : stream of :func:`~hw.fgmp.interface.bus_word_layout` ``(W)``
    """

    def __init__(self, *, block=16, bus_bytes=16):
        self.geometry = block_format(block=block, bus_bytes=bus_bytes)
        #: Longest chunk appended in one cycle: tag mask and an fp16 element.
        self.chunk_bytes = self.geometry.tag_bytes + 2
        #: Accumulator size: room for a chunk whenever less than a whole word is held.
        self.capacity = bus_bytes + self.chunk_bytes - 1
        self.entry_layout = data.StructLayout({
            "mask": 8 * self.geometry.tag_bytes,     # bit k: element k is FP8 (padding: 1)
            "count": range(1, block + 1),            # elements of the tensor in this block
            "last": 1,                               # last block of its tensor
        })
        super().__init__({
            "i": In(stream.Signature(WriterInput)),
            "o": Out(stream.Signature(bus_word_layout(bus_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        B, W = self.geometry.block, self.geometry.bus_bytes
        K, capacity = self.chunk_bytes, self.capacity

        elements = m.submodules.element_fifo = fifo.SyncFIFOBuffered(
            width=data.Layout.cast(FgmpElement).size, depth=2 * B)
        # a block is being serialized while the next ones collect: room for three more
        blocks = m.submodules.block_fifo = fifo.SyncFIFOBuffered(
            width=self.entry_layout.size, depth=4)

        # -- collect: elements into the element FIFO, tags into the block's mask ---------------
        position = Signal(range(B), name="collect_position")
        mask = Signal(B, name="collect_mask")
        new_mask = Signal(B, name="collect_new_mask")
        entry_in = Signal(self.entry_layout, name="block_entry_in")
        take = Signal(name="collect_take")
        block_end = Signal(name="collect_block_end")
        incoming = self.i.payload
        m.d.comb += [
            # the block FIFO is needed only by the element that ends a block
            self.i.ready.eq(elements.w_rdy & (blocks.w_rdy | ~block_end)),
            take.eq(self.i.valid & self.i.ready),
            new_mask.eq(mask | (incoming.element.fp8 << position)),
            block_end.eq((position == B - 1) | incoming.last),
            elements.w_en.eq(take),
            elements.w_data.eq(incoming.element),
            # tags above the last element are padding: FP8 +0
            entry_in.mask.eq(new_mask | (Const((1 << B) - 1, B) << (position + 1))[:B]),
            entry_in.count.eq(position + 1),
            entry_in.last.eq(incoming.last),
            blocks.w_en.eq(take & block_end),
            blocks.w_data.eq(entry_in),
        ]
        with m.If(take):
            with m.If(block_end):
                m.d.sync += [position.eq(0), mask.eq(0)]
            with m.Else():
                m.d.sync += [position.eq(position + 1), mask.eq(new_mask)]

        # -- serialize: one chunk per cycle from the block at the head of the block FIFO -------
        entry = data.View(self.entry_layout, blocks.r_data)
        head = data.View(FgmpElement, elements.r_data)
        index = Signal(range(B + 1), name="serial_index")
        flushing = Signal(name="flushing")
        is_real = Signal(name="chunk_is_element")
        m.d.comb += is_real.eq(index < entry.count)
        # an FP8 element has one byte; its high byte is forced to zero (bytes beyond a chunk's
        # length must be zero: the accumulator ORs chunks in)
        element_bytes = Cat(head.payload[:8], Mux(head.fp8, 0, head.payload[8:]))
        element_len = Mux(head.fp8, 1, 2)
        chunk = Signal(8 * K, name="chunk")
        chunk_len = Signal(range(K + 1), name="chunk_len")
        chunk_ready = Signal(name="chunk_ready")
        with m.If(is_real):
            m.d.comb += chunk_ready.eq(elements.r_rdy)
            with m.If(index == 0):
                m.d.comb += [chunk.eq(Cat(entry.mask, element_bytes)),
                             chunk_len.eq(self.geometry.tag_bytes + element_len)]
            with m.Else():
                m.d.comb += [chunk.eq(element_bytes), chunk_len.eq(element_len)]
        with m.Else():
            padding_left = B - index
            m.d.comb += [chunk_ready.eq(1), chunk.eq(0),
                         chunk_len.eq(Mux(padding_left > K, K, padding_left))]

        # -- accumulate bytes and emit bus words ----------------------------------------------
        acc = Signal(8 * capacity, name="acc")
        acc_count = Signal(range(capacity + 1), name="acc_count")
        out_free = ~self.o.valid | self.o.ready
        emit = Signal(name="emit_word")
        last_word = Signal(name="emit_last_word")
        base = Signal(range(capacity + 1), name="acc_base")     # bytes kept after this emit
        append = Signal(name="append_chunk")
        m.d.comb += [
            emit.eq(out_free & ((acc_count >= W) | (flushing & (acc_count != 0)))),
            last_word.eq(flushing & (acc_count <= W)),
            base.eq(Mux(emit, Mux(acc_count >= W, acc_count - W, 0), acc_count)),
            append.eq(blocks.r_rdy & ~flushing & chunk_ready & (base + chunk_len <= capacity)),
        ]
        kept = Mux(emit, acc[8 * W:], acc)
        inserted = (chunk << Cat(Const(0, 3), base))[:8 * capacity]
        m.d.sync += [
            acc.eq(kept | Mux(append, inserted, 0)),
            acc_count.eq(base + Mux(append, chunk_len, 0)),
        ]
        with m.If(emit):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(acc[:8 * W]),
                         self.o.payload.last.eq(last_word)]
            with m.If(last_word):
                m.d.sync += flushing.eq(0)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.If(append):
            m.d.comb += elements.r_en.eq(is_real)
            next_index = index + Mux(is_real, 1, chunk_len)
            with m.If(next_index == B):
                m.d.comb += blocks.r_en.eq(1)
                m.d.sync += index.eq(0)
                with m.If(entry.last):
                    m.d.sync += flushing.eq(1)
            with m.Else():
                m.d.sync += index.eq(next_index)
        return m
