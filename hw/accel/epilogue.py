"""The epilogue: elementwise operations on accumulator regions, for one ``EPILOGUE`` instruction at
a time (bias add, ReLU with its keep mask, ReLU backward, dropout, scale, cast, the SGD update).

The controller hands the instruction's fields to :class:`Epilogue` (an :class:`EpilogueCommand`)
once no GEMM runs; the block reads the regions through the engine's host read port, computes
each row segment's ``C`` lanes in parallel and writes them back through the engine's ``wr_acc``
(and, for ``RELU`` with ``write_mask``, the keep bits through ``wr_mask``), bit for bit as
:mod:`sim.epilogue` and ``AcceleratorModel``'s ``EPILOGUE`` (:mod:`sim.accel_model`) define it.
``docs/accel.md`` ("Epilogue") and ``docs/numerics.md`` ("Epilogue") describe the block and the
arithmetic.
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engine.commands import host_write_layout, read_data_layout, read_request_layout
from hw.fp.adder import fp32_add_datapath, leading_zeros
from hw.fp.fp32_multiplier import fp32_mul_datapath
from hw.pipeline import Pipeline
from hw.sparsity.dropout_mask import DropoutMaskGenerator
from hw.spec_enum import hardware_enum
from sim.accel_spec import (EPILOGUE_DROPOUT_BITS, EPILOGUE_FIELDS, EPILOGUE_SOURCE_OPS,
                            FORMAT_BITS, EpilogueOp)
from sim.config import AccelConfig
from sim.formats import FP32, NanStyle, format_by_name

__all__ = ["EpilogueOpCode", "EpilogueCommand", "Epilogue", "widen_to_fp32"]

#: :class:`sim.accel_spec.EpilogueOp` as an Amaranth enum of the ``op`` field's width.
EpilogueOpCode = hardware_enum(
    EpilogueOp, name="EpilogueOpCode", module=__name__, shape=EPILOGUE_FIELDS["op"][1],
    doc="The epilogue ops: the members of :class:`sim.accel_spec.EpilogueOp`, same names and "
        "values.")


def _width(name: str) -> int:
    return EPILOGUE_FIELDS[name][1]


class EpilogueCommand(data.Struct):
    """The fields of an ``EPILOGUE`` instruction (names and widths of
    :data:`sim.accel_spec.EPILOGUE_FIELDS`): ``op`` on the ``rows`` x ``cols`` accumulator
    region at (``dst_row``, ``dst_col``); the source region at (``src_row``, ``src_col``), one
    row with ``broadcast``; ``imm0``, ``imm1`` (FP32 patterns), ``cast_format`` and ``saturate``
    (``CAST``), ``seed`` and ``threshold`` (``DROPOUT``), ``write_mask`` (``RELU``)."""
    op: EpilogueOpCode
    broadcast: _width("broadcast")
    saturate: _width("saturate")
    write_mask: _width("write_mask")
    cast_format: _width("cast_format")
    rows: _width("rows")
    cols: _width("cols")
    dst_row: _width("dst_row")
    dst_col: _width("dst_col")
    src_row: _width("src_row")
    src_col: _width("src_col")
    imm0: _width("imm0")
    imm1: _width("imm1")
    seed: _width("seed")
    threshold: _width("threshold")


_ONE = 0x3F800000                   # 1.0
_NEG_ZERO = FP32.sign_mask          # the identity of round-to-nearest addition


def _is_nan(x):
    return x[:31] > FP32.inf_bits


def _kept(x):
    """ReLU's rule ``x > 0``: sign 0, not zero, not NaN."""
    return ~x[31] & (x[:31] != 0) & (x[:31] <= FP32.inf_bits)


def widen_to_fp32(m, bits, fmt, *, name):
    """The exact FP32 pattern of ``bits`` of format ``fmt`` (``"fp16"``, ``"bf16"``,
    ``"e4m3"``, ``"e5m2"`` in the low bits; ``"fp32"``: the word itself), NaN made canonical:
    :func:`sim.numerics.convert` ``(fmt, FP32, bits)``. Combinational; returns a 32-bit Signal."""
    fmt = format_by_name(fmt)
    out = Signal(32, name=f"{name}_fp32")
    if fmt.name == "fp32":
        m.d.comb += out.eq(Mux(_is_nan(bits), FP32.nan_bits, bits))
        return out
    fields = Signal(fmt.layout, name=f"{name}_{fmt.name}")
    m.d.comb += fields.eq(bits[:fmt.width])
    top = fields.exp == fmt.exp_max_field
    if fmt.nan_style is NanStyle.FN:
        nan, inf = top & (fields.man == (1 << fmt.man_bits) - 1), Const(0, 1)
    else:
        nan, inf = top & (fields.man != 0), top & (fields.man == 0)
    shift = FP32.man_bits - fmt.man_bits
    if fmt.emin == FP32.emin:
        # the format's subnormals are FP32 subnormals (bf16): the fraction only moves up
        sub_exp, sub_man = Const(0, 8), fields.man << shift
    else:
        # man * 2**(emin - man_bits) = 1.f * 2**(emin - 1 - lz): an FP32 normal
        zeros = leading_zeros(m, fields.man, name=f"{name}_zeros")
        fraction = Signal(fmt.man_bits, name=f"{name}_fraction")
        m.d.comb += fraction.eq(fields.man << (zeros + 1))
        sub_exp, sub_man = fmt.emin - 1 + FP32.bias - zeros, fraction << shift
    result = Signal(FP32.layout, name=f"{name}_result")
    m.d.comb += result.sign.eq(fields.sign)
    with m.If(nan):
        m.d.comb += result.as_value().eq(FP32.nan_bits)
    with m.Elif(inf):
        m.d.comb += result.exp.eq(FP32.exp_max_field)
    with m.Elif(fields.exp != 0):
        m.d.comb += [result.exp.eq(fields.exp + (FP32.bias - fmt.bias)),
                     result.man.eq(fields.man << shift)]
    with m.Elif(fields.man != 0):
        m.d.comb += [result.exp.eq(sub_exp), result.man.eq(sub_man)]
    m.d.comb += out.eq(result)
    return out


def _is(op, *ops):
    """``op`` (an :class:`EpilogueOpCode` view) is one of ``ops`` (spec members)."""
    return Cat(op == EpilogueOpCode[o.name] for o in ops).any()


def _dropout_steps(cols: int) -> int:
    """LFSR steps per cycle of the dropout generator: ``8 e``, ``e`` the largest divisor of
    ``cols`` up to 8 (a tile of ``C`` keep bits every ``C / e`` cycles)."""
    e = max(d for d in range(1, min(cols, 8) + 1) if cols % d == 0)
    return EPILOGUE_DROPOUT_BITS * e


class Epilogue(wiring.Component):
    """One ``EPILOGUE`` per ``cmd``, on the accumulator memory of a ``GemmEngine``, in place.

    The region is processed a *segment* at a time: ``C`` (the array's columns, the engine's
    read and write width) consecutive elements of one row, segments in row order and, within a
    row, in column order (segment ``j`` of row ``r``: columns ``j C .. j C + C - 1`` of the
    region, lanes past ``cols`` masked off). Per segment: read the source segment (the ops with
    a source; with ``broadcast`` always row ``src_row``) and the destination segment from
    ``rd_data``, compute the ``C`` lanes, write the destination segment back (``wr_acc``, and
    ``wr_mask`` with the keep bits for ``RELU`` with ``write_mask``). Reads run ahead of the
    computation as far as the engine lets them (``GemmEngine.READ_BUFFER`` in flight); no
    element is read after its segment was written, since overlapping source and destination
    regions are refused unless they are the same region.

    Each lane has one FP32 multiplier and one FP32 adder (combinational, a register after
    each): a *pass* is ``t = c + a * b`` in two cycles, the product rounded, then the sum.
    ``ADD``: ``dst * 1.0 + src`` (the product is ``dst`` exactly, a NaN canonical);
    ``SCALE`` and ``DROPOUT``: ``dst * imm0 + (-0)`` (adding ``-0`` changes nothing);
    ``SGD``: two passes, ``t = dw + wd * w``, then ``w + (-lr) * t`` (``-lr * t`` is
    ``-(lr * t)`` exactly, and ``w + (-x)`` is ``w - x`` in IEEE 754). ``RELU``,
    ``RELU_BACKWARD`` and ``CAST`` need no pass: a comparison and a select, or the widening of
    the value the engine's read port has already rounded to ``format`` (``rd_req.fmt`` the
    format's index in ``out_formats``, ``saturate`` the instruction's) back to FP32.
    ``DROPOUT`` takes a ``C``-bit keep tile per segment from a
    :class:`~hw.sparsity.dropout_mask.DropoutMaskGenerator` of ``1 x C`` tiles (bit for bit
    :func:`sim.lfsr.dropout_keep_mask` of the region's shape; the engine's dropout writer makes
    the same mask for the same seed and threshold).

    The command must be one the golden model runs without an error (the controller's decoder
    rejects the others first, :func:`sim.accel_model.instruction_error`); anything else is
    undefined (a bad ``DROPOUT`` seed or threshold would stop the mask generator, and the
    block with it).

    Parameters
    ----------
    config : AccelConfig
        The engine's configuration gives ``C``, the output formats (``fp32`` must be one of them
        for any op but ``CAST``) and ``output_mask`` (the ``wr_mask`` port);
        ``epilogue_stages`` (``s``) the registers in each multiplier and adder.

    Latency and throughput
    ----------------------
    ``cmd`` is accepted while idle; the first read is requested the cycle after. The reads run
    ahead into a gather register (a segment's source and destination); the compute stage takes
    a gathered segment in the cycle it hands the one before to the write register (the last
    pass's sums go there directly), so reads, arithmetic and writes overlap. Cycles per
    segment without stalls: ``SCALE`` and ``DROPOUT`` 2 (one pass), ``SGD`` 4 (two passes);
    the others go at the engine's read rate (one read per cycle): ``RELU`` and ``CAST`` 1,
    ``RELU_BACKWARD`` and ``ADD`` (two reads a segment) 2. The first write comes
    ``L + 2 + r + p`` cycles after the accept (``L`` the engine's ``READ_LATENCY``, 7; ``r``
    the reads per segment, ``p`` 1 without a pass, else 2 per pass: ``RELU`` 11, ``SGD`` 15);
    ``done`` pulses the cycle after the last
    write was taken (both ports); the next ``cmd`` may be accepted in that cycle. With
    ``epilogue_stages = s`` each pass takes ``2 + 2s`` cycles instead of 2 (the compute stage
    waits ``s`` cycles for each unit): ``SCALE`` and ``DROPOUT`` ``2 + 2s`` a segment, ``SGD``
    ``4 + 4s``, ``ADD`` ``2 + 2s``; first writes ``2s`` later per pass. The engine's
    ports stall the block in the cycles they are not ready (in the accelerator, whose engine
    has ``host_acc_while_busy``, those in which a running GEMM's sequencer uses the
    accumulator port).

    Ports
    -----
    cmd : stream of :class:`EpilogueCommand` (in)
    done : 1 bit (out), a one-cycle pulse per command
    rd_req : stream of ``read_request_layout(engine)`` (out), to the engine
    rd_data : stream of ``read_data_layout(engine)`` (in), from the engine
    wr_acc : stream of ``host_write_layout(C, 32)`` (out), to the engine
    wr_mask : stream of ``host_write_layout(C, 1)`` (out, ``output_mask`` only), to the engine
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self._config = config
        engine = config.engine
        cols = engine.array.cols
        ports = {
            "cmd": In(stream.Signature(EpilogueCommand)),
            "done": Out(1),
            "rd_req": Out(stream.Signature(read_request_layout(engine))),
            "rd_data": In(stream.Signature(read_data_layout(engine))),
            "wr_acc": Out(stream.Signature(host_write_layout(cols, unsigned(32)))),
        }
        if engine.output_mask:
            ports["wr_mask"] = Out(stream.Signature(host_write_layout(cols, unsigned(1))))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        engine = self._config.engine
        lanes = engine.array.cols
        formats = engine.out_formats
        fp32_index = formats.index("fp32") if "fp32" in formats else 0

        c = Signal(EpilogueCommand, name="command")
        op = c.op
        has_source = Signal(name="has_source")
        m.d.comb += has_source.eq(_is(op, *EPILOGUE_SOURCE_OPS))
        cast_index = Signal(self.rd_req.payload.fmt.shape(), name="cast_index")
        with m.Switch(c.cast_format):
            for index, name in enumerate(formats):
                with m.Case(FORMAT_BITS.index(name)):
                    m.d.comb += cast_index.eq(index)

        # -- read requests: source then destination segment, row by row -------------------------
        req_active = Signal(name="req_active")
        req_row = Signal(_width("rows"), name="req_row")
        req_off = Signal(_width("cols"), name="req_off")
        req_source = Signal(name="req_source")          # the next request is the source's
        request = self.rd_req.payload
        with m.If(req_source):
            m.d.comb += [request.row.eq(c.src_row + Mux(c.broadcast, 0, req_row)),
                         request.col.eq(c.src_col + req_off),
                         request.fmt.eq(fp32_index)]
        with m.Else():
            m.d.comb += [request.row.eq(c.dst_row + req_row),
                         request.col.eq(c.dst_col + req_off),
                         request.fmt.eq(Mux(_is(op, EpilogueOp.CAST), cast_index, fp32_index)),
                         request.saturate.eq(c.saturate)]
        m.d.comb += self.rd_req.valid.eq(req_active)
        with m.If(self.rd_req.valid & self.rd_req.ready):
            with m.If(req_source):
                m.d.sync += req_source.eq(0)
            with m.Else():
                m.d.sync += req_source.eq(has_source)
                with m.If(req_off + lanes >= c.cols):
                    m.d.sync += [req_off.eq(0), req_row.eq(req_row + 1)]
                    with m.If(req_row + 1 == c.rows):
                        m.d.sync += req_active.eq(0)
                with m.Else():
                    m.d.sync += req_off.eq(req_off + lanes)

        # -- dropout keep tiles ------------------------------------------------------------------
        generator = m.submodules.dropout = DropoutMaskGenerator(
            rows=1, cols=lanes, bits=EPILOGUE_DROPOUT_BITS, steps_per_cycle=_dropout_steps(lanes))
        gen_start = Signal(name="dropout_start")
        m.d.comb += [generator.i.valid.eq(gen_start),
                     generator.i.payload.seed.eq(c.seed),
                     generator.i.payload.threshold.eq(c.threshold),
                     generator.i.payload.m.eq(c.rows),
                     generator.i.payload.n.eq(c.cols),
                     generator.clear_error.eq(0)]
        with m.If(generator.i.ready):
            m.d.sync += gen_start.eq(0)
        tile_keep = generator.o.payload.keep[0]

        # -- lanes: one multiplier and one adder each ------------------------------------------
        source = Signal(data.ArrayLayout(32, lanes), name="source")
        dest = Signal(data.ArrayLayout(32, lanes), name="dest")
        t = Signal(data.ArrayLayout(32, lanes), name="t")         # product, then sum
        second = Signal(name="second_pass")                        # SGD's w + (-lr) * t
        mul_b = Signal(32, name="mul_b")
        with m.Switch(op):
            with m.Case(EpilogueOpCode.ADD):
                m.d.comb += mul_b.eq(_ONE)
            with m.Case(EpilogueOpCode.SGD):
                m.d.comb += mul_b.eq(Mux(second, c.imm0 ^ FP32.sign_mask, c.imm1))
            with m.Default():
                m.d.comb += mul_b.eq(c.imm0)
        stages = self._config.epilogue_stages

        def unit_pipeline(name):
            """The free-running registers of one multiplier or adder (``epilogue_stages``);
            its inputs hold still while the compute stage waits for its output."""
            if not stages:
                return None
            pipeline = Pipeline(stages=stages, cut_points=3, name=name)
            m.d.comb += pipeline.enable.eq(1)
            return pipeline

        # cycles the compute stage still waits for the unit of its state (MUL, ADD); none
        # without registers
        wait = Signal(range(stages + 1), name="unit_wait") if stages else None

        def waiting():
            """High while the unit of this state has not reached the compute stage's inputs
            (never without registers); counts down."""
            if not stages:
                return Const(0, 1)
            with m.If(wait != 0):
                m.d.sync += wait.eq(wait - 1)
            return wait != 0

        def restart_wait():
            return [wait.eq(stages)] if stages else []
        products, sums, results, keeps = [], [], [], []
        for lane in range(lanes):
            mul_a = Mux(second, t[lane], dest[lane])
            add_c = Signal(32, name=f"lane{lane}_addend")
            with m.Switch(op):
                with m.Case(EpilogueOpCode.ADD):
                    m.d.comb += add_c.eq(source[lane])
                with m.Case(EpilogueOpCode.SGD):
                    m.d.comb += add_c.eq(Mux(second, dest[lane], source[lane]))
                with m.Default():
                    m.d.comb += add_c.eq(_NEG_ZERO)
            products.append(fp32_mul_datapath(m, mul_a, mul_b, name=f"lane{lane}_mul",
                                              pipeline=unit_pipeline(f"lane{lane}_mul")))
            sums.append(fp32_add_datapath(m, add_c, t[lane], name=f"lane{lane}_add",
                                          pipeline=unit_pipeline(f"lane{lane}_add")))
            x, s = dest[lane], source[lane]
            result = Signal(32, name=f"lane{lane}_result")
            canonical = Mux(_is_nan(x), FP32.nan_bits, x)
            with m.Switch(op):
                with m.Case(EpilogueOpCode.RELU):
                    m.d.comb += result.eq(Mux(_kept(x), x, Mux(_is_nan(x), FP32.nan_bits, 0)))
                with m.Case(EpilogueOpCode.RELU_BACKWARD):
                    m.d.comb += result.eq(Mux(_kept(s), canonical, 0))
                with m.Case(EpilogueOpCode.DROPOUT):
                    m.d.comb += result.eq(Mux(tile_keep[lane], sums[lane], 0))
                with m.Case(EpilogueOpCode.CAST):
                    widened = 0
                    for index, name in enumerate(formats):
                        value = widen_to_fp32(m, x, name, name=f"lane{lane}_{name}")
                        widened = Mux(cast_index == index, value, widened)
                    m.d.comb += result.eq(widened)
                with m.Default():       # ADD, SCALE, SGD: the sum of the last pass
                    m.d.comb += result.eq(sums[lane])
            results.append(result)
            keeps.append(_kept(x))

        # -- write register ----------------------------------------------------------------------
        acc_pending = Signal(name="acc_pending")
        mask_pending = Signal(name="mask_pending")
        out_row = Signal(_width("rows"), name="out_row")
        out_col = Signal(_width("cols"), name="out_col")
        out_lanes = Signal(lanes, name="out_lanes")
        out_data = Signal(data.ArrayLayout(32, lanes), name="out_data")
        out_keep = Signal(lanes, name="out_keep")
        m.d.comb += [
            self.wr_acc.valid.eq(acc_pending),
            self.wr_acc.payload.row.eq(out_row),
            self.wr_acc.payload.col.eq(out_col),
            self.wr_acc.payload.data.eq(out_data),
            self.wr_acc.payload.mask.eq(out_lanes),
        ]
        with m.If(self.wr_acc.ready):
            m.d.sync += acc_pending.eq(0)
        mask_free = Const(1, 1)
        if engine.output_mask:
            mask = self.wr_mask.payload
            m.d.comb += [self.wr_mask.valid.eq(mask_pending), mask.row.eq(out_row),
                         mask.col.eq(out_col), mask.mask.eq(out_lanes)]
            m.d.comb += [mask.data[lane].eq(out_keep[lane]) for lane in range(lanes)]
            with m.If(self.wr_mask.ready):
                m.d.sync += mask_pending.eq(0)
            mask_free = ~mask_pending | self.wr_mask.ready
        free = Signal(name="write_free")             # empty, or emptied in this cycle
        m.d.comb += free.eq((~acc_pending | self.wr_acc.ready) & mask_free)

        # -- operand gather: the next segment's source and destination, read ahead -----------
        # (the compute stage below takes them as a whole: ``take``)
        g_src = Signal(data.ArrayLayout(32, lanes), name="gather_source")
        g_dst = Signal(data.ArrayLayout(32, lanes), name="gather_dest")
        g_valid = Signal(name="gather_valid")
        g_source_next = Signal(name="gather_source_next")   # the next word is a source
        active = Signal(name="active")
        take = Signal(name="take")
        m.d.comb += self.rd_data.ready.eq(active & (~g_valid | take))
        with m.If(take):
            m.d.sync += g_valid.eq(0)
        with m.If(self.rd_data.valid & self.rd_data.ready):
            with m.If(g_source_next):
                m.d.sync += [g_src.eq(self.rd_data.payload), g_source_next.eq(0)]
            with m.Else():
                m.d.sync += [g_dst.eq(self.rd_data.payload), g_valid.eq(1),
                             g_source_next.eq(has_source)]

        # -- compute stage: one segment at a time, the next taken as the last one is written ----
        row = Signal(_width("rows"), name="seg_row")
        off = Signal(_width("cols"), name="seg_off")
        last_in_row = Signal(name="seg_last_in_row")
        m.d.comb += last_in_row.eq(off + lanes >= c.cols)
        passes = Signal(name="passes")               # ops that use the multiplier and adder
        m.d.comb += passes.eq(_is(op, EpilogueOp.ADD, EpilogueOp.SCALE, EpilogueOp.DROPOUT,
                                  EpilogueOp.SGD))
        is_dropout = _is(op, EpilogueOp.DROPOUT)

        def take_next():
            """Start the gathered segment, if there is one, else wait for it."""
            m.d.comb += take.eq(g_valid)
            with m.If(g_valid):
                m.d.sync += [source.eq(g_src), dest.eq(g_dst), second.eq(0), *restart_wait()]
                with m.If(passes):
                    m.next = "MUL"
                with m.Else():
                    m.next = "OUT"
            with m.Else():
                m.next = "WAIT"

        def write_segment():
            """The write register takes this cycle's ``results``; then the next segment."""
            m.d.sync += [
                out_row.eq(c.dst_row + row), out_col.eq(c.dst_col + off),
                out_lanes.eq(Cat(off + lane < c.cols for lane in range(lanes))),
                out_data.eq(Cat(results)), out_keep.eq(Cat(keeps)),
                acc_pending.eq(1), mask_pending.eq(c.write_mask),
            ]
            with m.If(last_in_row):
                m.d.sync += [off.eq(0), row.eq(row + 1)]
                with m.If(row + 1 == c.rows):
                    m.d.sync += active.eq(0)
                    m.next = "DRAIN"
                with m.Else():
                    take_next()
            with m.Else():
                m.d.sync += off.eq(off + lanes)
                take_next()

        m.d.sync += self.done.eq(0)

        with m.FSM(name="epilogue"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    command = self.cmd.payload
                    m.d.sync += [c.eq(command), req_active.eq(1), req_row.eq(0), req_off.eq(0),
                                 req_source.eq(_is(command.op, *EPILOGUE_SOURCE_OPS)),
                                 g_source_next.eq(_is(command.op, *EPILOGUE_SOURCE_OPS)),
                                 gen_start.eq(_is(command.op, EpilogueOp.DROPOUT)),
                                 active.eq(1), row.eq(0), off.eq(0)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                take_next()
            with m.State("MUL"):
                with m.If(~waiting()):
                    m.d.sync += [t[lane].eq(products[lane]) for lane in range(lanes)]
                    m.d.sync += restart_wait()
                    m.next = "ADD"
            with m.State("ADD"):
                with m.If(waiting()):
                    pass
                with m.Elif(_is(op, EpilogueOp.SGD) & ~second):
                    m.d.sync += [t[lane].eq(sums[lane]) for lane in range(lanes)]
                    m.d.sync += [second.eq(1), *restart_wait()]
                    m.next = "MUL"
                with m.Else():          # the last pass: its sums are the results
                    tile_ready = ~is_dropout | generator.o.valid
                    m.d.comb += generator.o.ready.eq(free & is_dropout)
                    with m.If(free & tile_ready):
                        write_segment()
            with m.State("OUT"):        # RELU, RELU_BACKWARD, CAST: no pass
                with m.If(free):
                    write_segment()
            with m.State("DRAIN"):
                with m.If(free):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        return m
