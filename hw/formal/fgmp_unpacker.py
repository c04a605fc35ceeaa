"""Formal properties of the FGMP unpacker (:class:`hw.fgmp.unpacker.FgmpUnpacker`), the load
path from FGMP bus words to tagged PE operands; and :class:`StreamReader`, one tensor's byte
stream read as ``docs/fgmp.md`` defines it, which the packer's harness
(:mod:`hw.formal.fgmp_packer`) shares.

An unpacker of blocks of 8 (one tag byte) on 4-byte bus words, both FP8 formats. Every input
is free: bus words and their ``last``, ``length``, ``fmt``, the output's ``ready``,
``clear_error``; to keep the solver's work small, ``length`` is at most 15 (assumed; two
blocks). The depth, 11 steps, is the least that brings an element of a second block out
(element 8 is offered 10 cycles after the first word); each step takes about three times as
long as the one before. The solver picks one tensor and one element of it (any constants);
the harness reads that tensor's stream as the format defines it (a block is its tag mask, then
each element's 1 or 2 bytes, the next block right after) and keeps the chosen element's tag
and bytes. Promised:

* an operand on offer holds, with its payload, until it is taken;
* **no operand without a tensor**: a tensor of ``length != 0`` (its ``length`` sampled with
  its first word) is owed exactly ``length`` operands, in order; an operand comes only while
  one is owed, ``last`` marks the final one of each tensor and only it, and a tensor starts
  with the operands of at most one earlier tensor still owed;
* **the operands are what the stream encodes**: the chosen element comes out only after the
  bytes the format puts it in were taken; an FP8 element (tag 1) as its byte with the
  tensor's ``fmt``, an fp16 one (tag 0) as its two bytes (little-endian) with ``FP16``, and
  ``zero`` exactly for +0 and -0. Checked unless the error was up when the tensor started, is
  up when the operand is offered, or ``clear_error`` came in between: after a fault the
  unpacker sends zeros by design;
* the error is sticky: while it is up and ``clear_error`` is low, it and its code stay; a
  tensor that starts with an unknown ``fmt`` raises ``BAD_FORMAT``, one of ``length`` 0
  ``BAD_LENGTH`` (the code kept if the error was already up, unless ``clear_error``); the
  error is up exactly when its code is not ``NONE``.

Covers: the chosen element checked as FP8 and as fp16 (not element 0), in the second block,
and in the second tensor after the first was delivered; a tensor of three operands finished
without error; an operand held under backpressure and then taken; each error code
(``BAD_FORMAT``, ``BAD_LENGTH``, ``TRUNCATED``, ``BAD_PADDING``, ``EXTRA_DATA``).
Mutants: ``swap_bytes``, the two bytes of every fp16 operand exchanged; ``drop_last``,
``last`` never set (both faults fixed for the whole trace, as a bug would be).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.asserts import AnyConst
from amaranth.hdl import Assert, Assume, Cover
from amaranth.utils import exact_log2

from hw.fgmp.interface import FgmpError
from hw.fgmp.unpacker import FgmpUnpacker
from hw.fp.operand import OperandFormat

from .common import History, Properties

__all__ = ["FgmpUnpackerProperties", "StreamReader"]


class StreamReader:
    """One tensor's FGMP byte stream, read from its bus words as the format defines it.

    Each block is its tag mask (bit ``k`` set: element ``k`` is FP8, 1 byte; clear: fp16,
    2 bytes), then its elements' bytes; the next block starts right after. With blocks of 8
    (a one-byte mask) and words of at most 8 bytes, a word holds at most one mask. The reader
    follows the masks word by word, locates element ``chosen_index`` of block
    ``chosen_block`` and keeps its tag and bytes; once ``length`` is known, the tensor's
    final block gives where its padding elements start (:attr:`pad_start`) and where the
    stream of blocks ends (:attr:`end`).

    ``taken`` is high for each word of the tensor, ``data`` its bytes (byte ``k`` = stream
    byte ``base + k``); ``length``, ``length_known`` the tensor's element count. Every
    quantity has a register (as of the words before this one) and a ``*_now`` value that
    includes the word taken this cycle.
    """

    #: Width of the stream offsets (more bytes than the checked depth can bring).
    OFFSET_BITS = 8

    def __init__(self, m: Module, *, block: int, bus_bytes: int, taken, data, length,
                 length_known, chosen_block, chosen_index, name: str):
        if block != 8 or bus_bytes > 8:
            raise ValueError(f"the reader takes blocks of 8 and words of at most 8 bytes, not "
                             f"block={block!r}, bus_bytes={bus_bytes!r}")
        B, W, bits = block, bus_bytes, self.OFFSET_BITS

        def reg(width, what):
            return Signal(width, name=f"{name}_{what}")

        self.base = reg(bits, "base")                 # stream offset of this word's byte 0
        mask_off = reg(bits, "mask_offset")            # where the next block's mask is
        self.block_num = reg(4, "blocks_read")         # masks read so far
        self.final = reg(1, "final_read")              # the final block's mask was read
        self.pad_start, self.end = reg(bits, "pad_start"), reg(bits, "end")
        self.known = reg(1, "chosen_known")            # the chosen block's mask was read
        self.offset, self.tag = reg(bits, "chosen_offset"), reg(1, "chosen_tag")
        self.low, self.high = reg(8, "chosen_low"), reg(8, "chosen_high")
        self.low_seen, self.high_seen = reg(1, "chosen_low_seen"), reg(1, "chosen_high_seen")

        def inside(offset):
            return (offset >= self.base) & (offset < self.base + W)

        def byte_at(offset):
            return data.word_select((offset - self.base)[:exact_log2(W)], 8)

        # the mask in this word, if any, and what it tells
        self.mask_now = reg(1, "mask_in_word")
        mask = reg(B, "mask")
        m.d.comb += [self.mask_now.eq(taken & ~self.final & inside(mask_off)),
                     mask.eq(byte_at(mask_off))]
        sizes = [Mux(mask[k], 1, 2) for k in range(B)]
        self.is_final = reg(1, "block_is_final")
        self.count = reg(range(B + 1), "block_count")  # tensor elements in the block
        m.d.comb += [self.is_final.eq(length_known & (length != 0)
                                      & (self.block_num == (length - 1)[exact_log2(B):])),
                     self.count.eq(Mux(self.is_final, length - self.block_num * B, B))]
        self.mask = mask
        pad_start = mask_off + 1 + sum(Mux(k < self.count, sizes[k], 0) for k in range(B))
        end = mask_off + 1 + sum(sizes)
        chosen_here = self.mask_now & (self.block_num == chosen_block)
        offset = mask_off + 1 + sum(Mux(k < chosen_index, sizes[k], 0) for k in range(B))
        with m.If(self.mask_now):
            m.d.sync += [mask_off.eq(end), self.block_num.eq(self.block_num + 1)]
            with m.If(self.is_final):
                m.d.sync += [self.final.eq(1), self.pad_start.eq(pad_start), self.end.eq(end)]
            with m.If(chosen_here):
                m.d.sync += [self.known.eq(1), self.offset.eq(offset),
                             self.tag.eq(mask.bit_select(chosen_index, 1))]

        # the same, this word included
        self.final_now = reg(1, "final_now")
        self.pad_start_now, self.end_now = reg(bits, "pad_start_now"), reg(bits, "end_now")
        self.known_now, self.tag_now = reg(1, "chosen_known_now"), reg(1, "chosen_tag_now")
        offset_now = reg(bits, "chosen_offset_now")
        m.d.comb += [
            self.final_now.eq(self.final | (self.mask_now & self.is_final)),
            self.pad_start_now.eq(Mux(self.final, self.pad_start, pad_start)),
            self.end_now.eq(Mux(self.final, self.end, end)),
            self.known_now.eq(self.known | chosen_here),
            self.tag_now.eq(Mux(self.known, self.tag, mask.bit_select(chosen_index, 1))),
            offset_now.eq(Mux(self.known, self.offset, offset)),
        ]
        self.low_now, self.high_now = reg(8, "chosen_low_now"), reg(8, "chosen_high_now")
        self.low_seen_now = reg(1, "chosen_low_seen_now")
        self.high_seen_now = reg(1, "chosen_high_seen_now")
        low_here = taken & self.known_now & inside(offset_now)
        high_here = taken & self.known_now & inside(offset_now + 1)
        m.d.comb += [
            self.low_now.eq(Mux(low_here, byte_at(offset_now), self.low)),
            self.high_now.eq(Mux(high_here, byte_at(offset_now + 1), self.high)),
            self.low_seen_now.eq(self.low_seen | low_here),
            self.high_seen_now.eq(self.high_seen | high_here),
        ]
        m.d.sync += [self.low.eq(self.low_now), self.high.eq(self.high_now),
                     self.low_seen.eq(self.low_seen_now), self.high_seen.eq(self.high_seen_now)]
        with m.If(taken):
            m.d.sync += self.base.eq(self.base + W)


class FgmpUnpackerProperties(Properties):
    """The unpacker with its properties (module docstring)."""

    NAME = "fgmp_unpacker"
    DESCRIPTION = ("FGMP unpacker, blocks of 8, 4-byte bus words, both FP8 formats, tensors of "
                   "up to 15 elements")
    TASKS = {"bmc": 11, "cover": 11}
    MUTANTS = ("swap_bytes", "drop_last")
    BLOCK, BUS_BYTES = 8, 4
    #: longest tensor the free host may announce (an assumption)
    MAX_LENGTH = 15
    #: width of the tensor counters (more tensors than the depth can hold)
    COUNT_BITS = 4

    def __init__(self, *, mutant: str | None = None):
        super().__init__(FgmpUnpacker(formats=("e4m3", "e5m2"), block=self.BLOCK,
                                      bus_bytes=self.BUS_BYTES), mutant=mutant)

    def elaborate(self, platform):
        m = Module()
        dut = self.instantiate(m)
        past = History(m)
        i, o, status = dut.i, dut.o, dut.status
        length_bits = self.MAX_LENGTH.bit_length()
        m.d.comb += Assume(dut.length <= self.MAX_LENGTH)
        length = dut.length[:length_bits]

        # the operand as the properties see it (mutants: a fault fixed for the whole trace)
        bits = o.payload.operand.bits
        is_fp16 = o.payload.operand.fmt == OperandFormat.FP16
        last = o.payload.last
        if self.mutant == "swap_bytes":
            bits = Mux(AnyConst(1) & is_fp16, Cat(bits[8:], bits[:8]), bits)
        if self.mutant == "drop_last":
            last = last & ~AnyConst(1)
        taken_in = i.valid & i.ready
        taken_out = o.valid & o.ready

        # -- an operand on offer holds -------------------------------------------------------
        stalled = past(o.valid & ~o.ready, "stall")
        before = {"bits": past(bits, "bits"), "last": past(last, "last"),
                  "rest": past(Cat(o.payload.operand.fmt, o.payload.zero), "fmt_zero")}
        with m.If(past.valid & stalled):
            m.d.comb += [Assert(o.valid, "an operand withdrawn"),
                         Assert((bits == before["bits"]) & (last == before["last"])
                                & (Cat(o.payload.operand.fmt, o.payload.zero) == before["rest"]),
                                "an operand changed while offered")]

        # -- tensors on the input side: a tensor is its words up to the one marked last ------
        in_open = Signal(name="in_tensor_open")
        in_tensor = Signal(self.COUNT_BITS, name="in_tensors_done")
        starts = taken_in & ~in_open
        with m.If(taken_in):
            m.d.sync += in_open.eq(~i.payload.last)
            with m.If(i.payload.last):
                m.d.sync += in_tensor.eq(in_tensor + 1)

        # -- operands owed: the tensor being delivered and at most one after it ---------------
        cur_left = Signal(length_bits, name="owed")
        cur_index = Signal(length_bits, name="owed_index")
        cur_id = Signal(self.COUNT_BITS, name="owed_tensor")
        nxt_left = Signal(length_bits, name="next_owed")
        nxt_id = Signal(self.COUNT_BITS, name="next_tensor")
        pending = Signal(name="next_pending")
        m.d.comb += Assert(~o.valid | (cur_left != 0), "an operand without a tensor")
        finished = Signal(self.COUNT_BITS, name="tensors_delivered")
        with m.If(taken_out & last):
            m.d.sync += finished.eq(finished + 1)
        with m.If(taken_out):
            m.d.comb += Assert(last == (cur_left == 1), "last not on a tensor's final operand")
            m.d.sync += [cur_left.eq(cur_left - 1), cur_index.eq(cur_index + 1)]
            with m.If((cur_left == 1) & pending):
                m.d.sync += [cur_left.eq(nxt_left), cur_id.eq(nxt_id), cur_index.eq(0),
                             pending.eq(0)]
        with m.If(starts & (length != 0)):
            with m.If((cur_left == 0) | ((cur_left == 1) & taken_out)):
                m.d.sync += [cur_left.eq(length), cur_id.eq(in_tensor), cur_index.eq(0)]
            with m.Else():
                m.d.comb += Assert(~pending, "a tensor started with two tensors' operands owed")
                m.d.sync += [nxt_left.eq(length), nxt_id.eq(in_tensor), pending.eq(1)]

        # -- the chosen element of the chosen tensor, read from the stream --------------------
        chosen_tensor = Signal(self.COUNT_BITS, name="chosen_tensor")
        chosen = Signal(length_bits, name="chosen_element")
        m.d.comb += [chosen_tensor.eq(AnyConst(self.COUNT_BITS)),
                     chosen.eq(AnyConst(length_bits))]
        tensor_length = Signal(length_bits, name="chosen_tensor_length")
        tensor_fmt = Signal(OperandFormat, name="chosen_tensor_fmt")
        disturbed = Signal(name="chosen_tensor_disturbed")   # error or clear_error seen
        in_chosen = in_tensor == chosen_tensor
        with m.If(starts & in_chosen):
            m.d.sync += [tensor_length.eq(length), tensor_fmt.eq(dut.fmt),
                         disturbed.eq(status.error | dut.clear_error)]
        with m.Elif(dut.clear_error):
            m.d.sync += disturbed.eq(1)
        reader = StreamReader(m, block=self.BLOCK, bus_bytes=self.BUS_BYTES,
                              taken=taken_in & in_chosen, data=i.payload.data,
                              length=Mux(starts, length, tensor_length), length_known=1,
                              chosen_block=chosen[3:], chosen_index=chosen[:3],
                              name="reader")

        at_chosen = (o.valid & (cur_left != 0) & (cur_id == chosen_tensor)
                     & (cur_index == chosen))
        checked = Signal(name="chosen_checked")
        m.d.comb += checked.eq(at_chosen & ~disturbed & ~status.error)
        with m.If(checked):
            m.d.comb += Assert(reader.known & reader.low_seen & (reader.tag | reader.high_seen),
                               "an operand before the bytes that encode it")
            with m.If(reader.tag):
                m.d.comb += [
                    Assert(bits == reader.low, "an FP8 operand is not its byte"),
                    Assert(o.payload.operand.fmt == tensor_fmt,
                           "an FP8 operand without the tensor's format"),
                    Assert(o.payload.zero == (reader.low[:7] == 0), "zero flag of an FP8 operand"),
                ]
            with m.Else():
                word = Cat(reader.low, reader.high)
                m.d.comb += [
                    Assert(bits == word, "an fp16 operand is not its two bytes"),
                    Assert(is_fp16, "an fp16 operand without the FP16 format"),
                    Assert(o.payload.zero == (word[:15] == 0), "zero flag of an fp16 operand"),
                ]

        # -- the error ---------------------------------------------------------------------------
        code = status.error_code.as_value()
        known = Cat(dut.fmt == tag for tag in dut.formats).any()
        p_error, p_code = past(status.error, "error"), past(code, "error_code")
        p_clear = past(dut.clear_error, "clear_error")
        p_bad_format = past(starts & ~known, "bad_format")
        p_bad_length = past(starts & known & (length == 0), "bad_length")
        m.d.comb += Assert(status.error == (code != FgmpError.NONE),
                           "error and its code disagree")
        with m.If(past.valid):
            with m.If(p_error & ~p_clear):
                m.d.comb += Assert(status.error & (code == p_code),
                                   "the error or its code changed without clear_error")
            for fault, fault_code in ((p_bad_format, FgmpError.BAD_FORMAT),
                                      (p_bad_length, FgmpError.BAD_LENGTH)):
                with m.If(fault):
                    m.d.comb += Assert(status.error, f"{fault_code.name} not raised")
                    with m.If(~p_error | p_clear):
                        m.d.comb += Assert(code == fault_code, f"not {fault_code.name}")

        # -- covers ------------------------------------------------------------------------------
        m.d.comb += [
            Cover(checked & reader.tag & (chosen != 0) & (reader.low != 0)),
            Cover(checked & ~reader.tag & (chosen != 0) & (reader.high != 0)),
            Cover(checked & (chosen_tensor == 1) & (finished == 1)),
            Cover(checked & (chosen >= self.BLOCK)),
            Cover(taken_out & last & (cur_index == 2) & ~status.error),
            Cover(past.valid & stalled & taken_out),
        ]
        for fault_code in (FgmpError.BAD_FORMAT, FgmpError.BAD_LENGTH, FgmpError.TRUNCATED,
                           FgmpError.BAD_PADDING, FgmpError.EXTRA_DATA):
            m.d.comb += Cover(code == fault_code)
        return m
