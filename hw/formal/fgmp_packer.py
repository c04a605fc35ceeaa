"""Formal properties of the FGMP packer (:class:`hw.fgmp.packer.FgmpPacker`), the store path
from FP32 values to FGMP bus words.

A packer of blocks of 8 (one tag byte) on 4-byte bus words, both FP8 formats, without
pipeline registers (``convert_stages=0``, ``encode_stages=0``: the shortest latency, so that
whole tensors fit the depth). Every input is free: the elements and their ``last``, ``t``,
``fmt``, ``flush``, the output's ``ready``, ``clear_error``. The solver picks one tensor and
one element of it (any constants). The harness keeps what the element should be stored as,
``encode`` of its fp16 rounding with the settings of its cycle, from a second converter and
encoder of its own: the arithmetic of both is checked exhaustively by the benches, so what is
checked here is the stream around it. The chosen tensor's words are read with
:class:`hw.formal.fgmp_unpacker.StreamReader`, as the format defines the stream. Promised:

* a bus word on offer holds, with its payload, until it is taken;
* **no word without an element**: a word comes only while a tensor with an element taken has
  not had its final word taken, and a final word (``last``) only after the tensor's last
  element;
* **the stream is the tensor's, and well formed**: the chosen element is in its block with the
  tag and the byte(s) of its encoding (the fp16 payload little-endian); the final block's
  padding tags are FP8, its padding elements and the rest of the final word zero bytes; the
  word marked ``last`` is the one that holds the final block's last byte, and no block's mask
  leaves before the block's last element is taken;
* the error: a taken element with an ``fmt`` that is not built in raises ``BAD_FORMAT`` (the
  first fault's code kept until ``clear_error``; a fault in the cycle of ``clear_error`` is
  kept), ``clear_error`` clears it otherwise, and nothing else changes it.

* **bounded liveness**: when the bus was ready in every cycle from the chosen tensor's first
  element on, and nothing of an earlier tensor was owed then, its final word is taken at most
  :meth:`FgmpPackerProperties.final_word_bound` cycles after its last element (checked where
  that deadline falls within the depth: tensors of one or two elements).

Covers: the chosen element checked as FP8 and as fp16 (not element 0), in the second tensor
too; a word held under backpressure and then taken; ``BAD_FORMAT``. Mutants: ``early_deadline``,
the bound 3 cycles shorter (the packer takes 8 cycles for a tensor of two elements, the bound
allows 10); ``flip_bit``, one
bit of every bus word inverted; ``early_last``, every word marked ``last``;
``corrupt_element``, the byte of element 0 in each tensor's first word changed (each fault
fixed for the whole trace, as a bug would be; only the check of the chosen element's bytes
can see the last one).
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.asserts import AnyConst
from amaranth.hdl import Assert, Cover

from hw.fgmp.encoder import encode
from hw.fgmp.interface import FgmpError
from hw.fgmp.packer import FgmpPacker
from hw.fp.converter import FP32Converter

from .common import History, Properties
from .fgmp_unpacker import StreamReader

__all__ = ["FgmpPackerProperties"]


class FgmpPackerProperties(Properties):
    """The packer with its properties (module docstring)."""

    NAME = "fgmp_packer"
    DESCRIPTION = ("FGMP packer, blocks of 8, 4-byte bus words, both FP8 formats, no pipeline "
                   "registers")
    TASKS = {"bmc": 13, "cover": 13}
    MUTANTS = ("flip_bit", "early_last", "corrupt_element", "early_deadline")
    BLOCK, BUS_BYTES = 8, 4
    #: width of the tensor and element counters (more than the depth can hold)
    COUNT_BITS = 5

    def __init__(self, *, mutant: str | None = None):
        super().__init__(FgmpPacker(formats=("e4m3", "e5m2"), block=self.BLOCK,
                                    bus_bytes=self.BUS_BYTES, convert_stages=0,
                                    encode_stages=0), mutant=mutant)

    def final_word_bound(self, remainder: int) -> int:
        """Most cycles from taking a tensor's last element to taking its final word when the bus
        is always ready, for a tensor of ``n`` elements with ``n mod B = remainder`` (the
        :class:`~hw.fgmp.block_writer.FgmpBlockWriter` docstring's model): the converter's and
        encoder's stages, the block FIFO (2), one chunk per element of the last block, the
        padding chunks, the accumulator and the output register (2), the flush."""
        B, W = self.BLOCK, self.BUS_BYTES
        tag_bytes = -(-B // 8)
        elements = remainder or B
        padding = -(-((B - remainder) % B) // (tag_bytes + 2))
        flush = -(-(W + tag_bytes + 1) // W)
        stages = self.dut.convert_stages + self.dut.encode_stages
        return stages + 2 + elements + padding + 2 + flush

    def elaborate(self, platform):
        m = Module()
        dut = self.instantiate(m)
        past = History(m)
        i, o, status = dut.i, dut.o, dut.status
        B, W = self.BLOCK, self.BUS_BYTES

        # the word as the properties see it (mutants: a fault fixed for the whole trace)
        data, last = o.payload.data, o.payload.last
        if self.mutant == "flip_bit":
            flip = Signal(8 * W, name="flipped_bit")
            m.d.comb += flip.eq(Mux(AnyConst(1), Const(1, 8 * W) << AnyConst(range(8 * W)), 0))
            data = data ^ flip
        if self.mutant == "early_last":
            last = last | AnyConst(1)
        if self.mutant == "corrupt_element":
            # byte 1 of a tensor's first word is its element 0 (its low byte)
            first_word = Signal(init=1, name="first_word_of_tensor")
            with m.If(o.valid & o.ready):
                m.d.sync += first_word.eq(o.payload.last)
            error = Signal(8, name="element_error")
            m.d.comb += error.eq(AnyConst(8))
            data = data ^ Mux(first_word, Cat(Const(0, 8), error), 0)
        taken_in = i.valid & i.ready
        taken_out = o.valid & o.ready

        # -- a word on offer holds --------------------------------------------------------------
        stalled = past(o.valid & ~o.ready, "stall")
        before_data, before_last = past(data, "data"), past(last, "last")
        with m.If(past.valid & stalled):
            m.d.comb += [Assert(o.valid, "a bus word withdrawn"),
                         Assert((data == before_data) & (last == before_last),
                                "a bus word changed while offered")]

        # -- no word without an element -----------------------------------------------------------
        in_done = Signal(self.COUNT_BITS, name="in_tensors_done")
        in_index = Signal(self.COUNT_BITS, name="in_index")   # elements of the open tensor
        out_done = Signal(self.COUNT_BITS, name="out_tensors_done")
        with m.If(taken_in):
            m.d.sync += [in_done.eq(in_done + i.payload.last),
                         in_index.eq(Mux(i.payload.last, 0, in_index + 1))]
        with m.If(taken_out & last):
            m.d.sync += out_done.eq(out_done + 1)
        m.d.comb += Assert(~o.valid | (in_done != out_done) | (in_index != 0),
                           "a bus word without an element")
        with m.If(taken_out & last):
            m.d.comb += Assert(in_done != out_done, "a final word before the tensor's last element")

        # -- the chosen element: what it should be stored as --------------------------------------
        chosen_tensor = Signal(self.COUNT_BITS, name="chosen_tensor")
        chosen = Signal(4, name="chosen_element")
        m.d.comb += [chosen_tensor.eq(AnyConst(self.COUNT_BITS)), chosen.eq(AnyConst(4))]
        convert = m.submodules.reference_convert = FP32Converter(fmt="fp16", stages=0)
        m.d.comb += [convert.i.valid.eq(1), convert.i.payload.value.eq(i.payload.value),
                     convert.i.payload.saturate.eq(0), convert.o.ready.eq(1)]
        expected = encode(m, convert.o.payload, dut.t, dut.fmt, dut.formats, flush=dut.flush)
        in_chosen = in_done == chosen_tensor
        want_seen = Signal(name="chosen_taken")
        want_tag = Signal(name="chosen_want_tag")
        want = Signal(16, name="chosen_want_payload")
        with m.If(taken_in & in_chosen & (in_index == chosen)):
            m.d.sync += [want_seen.eq(1), want_tag.eq(expected.fp8), want.eq(expected.payload)]
        tensor_length = Signal(self.COUNT_BITS, name="chosen_tensor_length")
        length_known = Signal(name="chosen_tensor_length_known")
        with m.If(taken_in & in_chosen & i.payload.last):
            m.d.sync += [tensor_length.eq(in_index + 1), length_known.eq(1)]

        # -- the chosen tensor's stream ---------------------------------------------------------
        reading = Signal(name="reading_chosen_tensor")
        m.d.comb += reading.eq(taken_out & (out_done == chosen_tensor))
        reader = StreamReader(m, block=B, bus_bytes=W, taken=reading, data=data,
                              length=tensor_length, length_known=length_known,
                              chosen_block=chosen[3:], chosen_index=chosen[:3], name="reader")
        with m.If(taken_in & in_chosen & i.payload.last):
            m.d.comb += Assert(reader.block_num + reader.mask_now <= in_index[3:],
                               "a block's mask left before its last element")
        padding_tags = (Const(0xFF, B) << reader.count)[:B]
        with m.If(reading & reader.mask_now & reader.is_final):
            m.d.comb += Assert((reader.mask & padding_tags) == padding_tags,
                               "a padding tag is not FP8")
        for k in range(W):
            with m.If(reading & reader.final_now & (reader.base + k >= reader.pad_start_now)):
                m.d.comb += Assert(data.word_select(k, 8) == 0, f"padding byte {k} is not zero")
        with m.If(reading):
            m.d.comb += Assert(last == (reader.final_now & (reader.end_now <= reader.base + W)),
                               "last is not on the word that ends the stream")
        checked = Signal(name="chosen_checked")
        m.d.comb += checked.eq(reading & last & want_seen)
        with m.If(checked):
            m.d.comb += [
                Assert(reader.known_now & reader.low_seen_now
                       & (reader.tag_now | reader.high_seen_now),
                       "the chosen element is not in the stream"),
                Assert(reader.tag_now == want_tag, "the chosen element's tag"),
                Assert(reader.low_now == want[:8], "the chosen element's low byte"),
                Assert(reader.tag_now | (reader.high_now == want[8:]),
                       "the chosen element's high byte"),
            ]

        # -- bounded liveness: the chosen tensor's final word --------------------------------------
        # within final_word_bound cycles of its last element, when the bus was ready in every
        # cycle from the tensor's first element on and nothing of an earlier tensor was owed
        timed = Signal(name="liveness_timed")
        owed = Signal(name="final_word_owed")
        longest = max(self.final_word_bound(r) for r in range(B))
        since = Signal(range(longest + 2), name="cycles_after_last_element")
        bound = Signal.like(since, name="final_word_bound")
        early = 3 if self.mutant == "early_deadline" else 0
        bounds = Array(Const(self.final_word_bound(r) - early, since.shape()) for r in range(B))
        with m.If(taken_in & in_chosen & (in_index == 0)):
            m.d.sync += timed.eq(in_done == out_done)
        with m.If(taken_in & in_chosen & i.payload.last):
            m.d.sync += [owed.eq(1), since.eq(0), bound.eq(bounds[(in_index + 1) % B])]
        with m.Elif(owed & (since <= bound)):
            m.d.sync += since.eq(since + 1)
        with m.If(reading & last):
            m.d.sync += owed.eq(0)
        with m.If(~o.ready & (out_done <= chosen_tensor)):
            m.d.sync += timed.eq(0)
        m.d.comb += Assert(~(timed & owed & (since == bound)),
                           "the final word later than final_word_bound after the last element")

        # -- the error ---------------------------------------------------------------------------
        code = status.error_code.as_value()
        known = Cat(dut.fmt == tag for tag in dut.formats).any()
        p_fault = past(taken_in & ~known, "fault")
        p_error, p_code = past(status.error, "error"), past(code, "error_code")
        p_clear = past(dut.clear_error, "clear_error")
        with m.If(past.valid):
            with m.If(p_fault):
                m.d.comb += Assert(status.error, "BAD_FORMAT not raised")
                with m.If(~p_error | p_clear):
                    m.d.comb += Assert(code == FgmpError.BAD_FORMAT, "not BAD_FORMAT")
                with m.Else():
                    m.d.comb += Assert(code == p_code, "the first code was lost")
            with m.Elif(p_clear):
                m.d.comb += Assert(~status.error & (code == FgmpError.NONE),
                                   "clear_error did not clear the error")
            with m.Else():
                m.d.comb += Assert((status.error == p_error) & (code == p_code),
                                   "the error changed without a fault or clear_error")

        # -- covers ------------------------------------------------------------------------------
        m.d.comb += [
            Cover(checked & want_tag & (chosen != 0) & (want[:8] != 0)),
            Cover(checked & ~want_tag & (chosen != 0) & (want[8:] != 0)),
            Cover(checked & (chosen_tensor == 1)),
            Cover(past.valid & stalled & taken_out),
            Cover(code == FgmpError.BAD_FORMAT),
        ]
        return m
