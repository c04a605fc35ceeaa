"""Processing elements of the systolic array: one exact product and one fp32 addition per cycle.

Both PEs build the mixed-precision multiplier (:class:`~hw.fp.multiplier.ProductDatapath`,
``config.mul_stages`` pipeline registers) and a single-cycle combinational fp32 adder
(:func:`~hw.fp.adder.fp32_add_datapath`), so every step rounds once:
``round_fp32(sum + a*b)``, bit-exact with :func:`sim.gemm.gemm`. They are free running (no
stall): the array's sequencer feeds one step or one bubble per cycle.

Zero gate (``config.skip_zeros``)
---------------------------------
With ``skip_zeros`` each PE finds, as the operands of a step arrive, whether either is ``+0``
or ``-0`` in its own format (:func:`hw.sparsity.zero_detect.operand_nonzero`: the 15 bits
below the sign for fp16, the low 7 bits of the low byte for E4M3 / E5M2; an unknown tag is
never zero). That *live* flag travels with the product through the multiplier's pipeline
registers, and a skipped product (flag low) reaches the adder as ``-0`` instead of its value.
``round(s + -0)`` is ``s`` bit for bit for every sum (``-0 + -0 = -0``, ``+0 + -0 = +0``,
subnormals and infinities unchanged), except that a NaN comes out as the canonical NaN: so the
sum is left as it was, a ``-0`` sum stays ``-0`` where the dense PE would have added a ``+0``
product, and ``0 * inf`` / ``0 * NaN`` never reaches the sum, exactly
:func:`sim.sparsity.gemm_skip` (whose NaN results are canonical too). Gating the register's
enable instead would keep a non-canonical NaN start value (``C_old``) as it came in.
Latency, throughput and the schedule are those of the dense PE; with ``skip_zeros=False`` none
of this logic is built.
"""

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.fp.adder import ADD_CUT_POINTS, fp32_add_datapath
from hw.fp.multiplier import ProductDatapath
from hw.fp.operand import Operand
from hw.pipeline import Pipeline
from hw.sparsity.zero_detect import operand_nonzero
from sim.config import ArrayConfig
from sim.formats import FP32

__all__ = ["RowControl", "select_shape", "product_datapath", "operand_shapes",
           "OutputStationaryPE", "WeightStationaryPE", "check_array_config"]


class RowControl(data.Struct):
    """Control that travels with an output-stationary step along a row of PEs.

    ``valid`` marks a step (``0``: a bubble); ``first`` marks the first step of a tile, or
    with ``valid=0`` the flush step that swaps the last tile's results out.
    """
    valid: 1
    first: 1


def select_shape(window):
    """Shape of a lookahead-window position (``0 .. window - 1``)."""
    return unsigned(max(1, (window - 1).bit_length()))


def check_array_config(config, dataflow, who):
    """``config`` if it is an :class:`~sim.config.ArrayConfig` of ``dataflow``, else
    ``ValueError`` naming ``who``."""
    if not isinstance(config, ArrayConfig):
        raise ValueError(f"{who}: config must be an ArrayConfig, not {config!r}")
    if config.dataflow != dataflow:
        raise ValueError(f"{who}: config.dataflow must be {dataflow!r}, not {config.dataflow!r}")
    return config


def product_datapath(config):
    """The multiplier datapath of ``config``'s PEs (:class:`ProductDatapath`)."""
    return ProductDatapath(a_formats=config.a_formats, b_formats=config.b_formats,
                           narrow_path=config.narrow_path)


def operand_shapes(config):
    """``(a, b)``: the shapes of the operands that flow through ``config``'s PEs, tagged
    :class:`~hw.fp.operand.Operand` or, with ``edge_decode``, decoded fields."""
    if not config.edge_decode:
        return Operand, Operand
    datapath = product_datapath(config)
    return datapath.decoded_layout("a"), datapath.decoded_layout("b")


def _multiplier(m, config, a_operand, b_operand, extra=None, zero_unless=()):
    """The PE's multiplier: a free-running :class:`Pipeline` of ``config.mul_stages``; the
    product is ``-0`` unless the flags of ``extra`` named in ``zero_unless`` are all 1. The
    operands come decoded with ``config.edge_decode``."""
    pipeline = Pipeline(stages=config.mul_stages, cut_points=ProductDatapath.CUT_POINTS,
                        name="mul")
    m.d.comb += pipeline.enable.eq(1)         # no stall inside the array
    return product_datapath(config).build(m, pipeline, a_operand, b_operand, extra=extra,
                                          zero_unless=zero_unless,
                                          decoded=config.edge_decode)


def _live_flag(m, a_operand, b_operand, decoded=False):
    """1 when neither operand is ``+-0`` in its format: the product is not skipped. A decoded
    operand (``edge_decode``) is zero when its class says so and it is not a NaN (an unknown
    tag, which decodes as a NaN with no significand, is never zero)."""
    live = Signal(name="product_live")
    if decoded:
        m.d.comb += live.eq((~a_operand.fields.zero | a_operand.fields.nan)
                            & (~b_operand.fields.zero | b_operand.fields.nan))
        return live
    a_nonzero, _ = operand_nonzero(m, a_operand, name="skip_a")
    b_nonzero, _ = operand_nonzero(m, b_operand, name="skip_b")
    m.d.comb += live.eq(a_nonzero & b_nonzero)
    return live


def _gated_product(m, product, live):
    """``product`` if ``live``, else ``-0``: the identity of the fp32 addition (module
    docstring)."""
    gated = Signal(32, name="product_gated")
    m.d.comb += gated.eq(Mux(live, product, Const(FP32.sign_mask, 32)))
    return gated


class OutputStationaryPE(wiring.Component):
    """Output-stationary PE: owns one output element of the tile, operands flow through.

    Each cycle the PE multiplies the ``a_in`` / ``b_in`` operands it receives and forwards them,
    registered, to its right (``a_out``, with ``control_out``) and below (``b_out``). The
    product reaches the accumulate stage ``mul_stages`` cycles later, with the step's control:

    * ``valid=1, first=0``: ``acc <- round(acc + product)``;
    * ``first=1``: ``shadow <- acc`` (the previous tile's finished result) and
      ``acc <- round(shadow + product)`` when ``valid``, ``acc <- shadow`` otherwise (flush):
      the shadow held the init of the new tile (``+0`` or ``C_old``).

    With ``config.skip_zeros`` a product with a ``+-0`` operand is added as ``-0``: the
    accumulator keeps its value (a ``C_old`` of ``-0`` stays ``-0`` when every product is
    skipped), :func:`sim.sparsity.gemm_skip` (module docstring).

    The shadows of a column form a chain: while ``shift`` is high, ``shadow <- shadow_in``
    (the shadow above, or an init value at the top); ``shadow_out`` is the shadow register. A
    shift and a swap must not happen in the same cycle (the sequencer's schedule ensures it).

    Interleaved accumulation (``config.acc_interleave = L > 1``): the PE owns ``L`` outputs,
    whose steps arrive in rotation (output ``l`` in the cycles ``l`` modulo ``L``), and the
    loop's FP32 adder has ``L - 1`` pipeline registers, so a sum is back at the adder's input
    exactly when the next step of its output arrives: each output still adds its products in
    ``k`` order, rounding each time (bit-exact with ``L = 1``), while the loop's path is cut
    into ``L`` cycles. ``acc`` and the adder's registers are updated every cycle; a bubble
    (``valid=0``) adds ``-0``. The shadow is ``L`` registers deep (``shadow_0`` takes
    ``shadow_in``, ``shadow_out`` is ``shadow_{L-1}``); a step with ``first`` adds its product
    to ``shadow_{L-1}`` (its output's init) and moves the chain by one with ``acc`` (the
    output's finished sum) entering ``shadow_0``. The ``L`` firsts of a group of tiles come in
    consecutive cycles, after which the shadows hold the ``L`` finished sums in the order the
    inits had (:mod:`sim.array_timing`).

    Parameters
    ----------
    config : ArrayConfig
        ``dataflow="os"``; ``a_formats``, ``b_formats``, ``mul_stages``, ``skip_zeros``,
        ``skip_window``, ``narrow_path`` and ``acc_interleave`` are used.

    Latency: a step's operands reach ``a_out`` / ``b_out`` one cycle after ``a_in`` / ``b_in``;
    its product is accumulated at the clock edge ``mul_stages`` cycles after the one that
    ends its arrival cycle, i.e. ``acc`` shows it ``mul_stages + 1`` cycles after arrival.
    Throughput: one MAC per cycle.

    Ports
    -----
    a_in, a_out : :class:`~hw.fp.operand.Operand`
    control_in, control_out : :class:`RowControl`
    b_in, b_out : :class:`~hw.fp.operand.Operand`; with ``config.skip_window = d > 1``,
        ``d`` operands (the B operands of the lookahead window, moving down together)
    select_in, select_out : :func:`select_shape` ``(d)``, only with ``d > 1``: the window
        position of this row's step, travelling with ``a_in``; the PE multiplies ``a_in`` by
        ``b_in[select_in]``
    shift : 1 bit
    shadow_in, shadow_out : 32-bit fp32
    live_out : 1 bit, only with ``config.skip_zeros``: the step that arrived in the cycle
        before was a valid one with both operands non-zero (its product is accumulated);
        the array sums these into its ``products`` count
    """

    def __init__(self, config):
        self.config = check_array_config(config, "os", "OutputStationaryPE")
        window = config.skip_window
        a_shape, b_shape = operand_shapes(config)
        if window > 1:
            b_shape = data.ArrayLayout(Operand, window)
        ports = {
            "a_in": In(a_shape),
            "a_out": Out(a_shape),
            "control_in": In(RowControl),
            "control_out": Out(RowControl),
            "b_in": In(b_shape),
            "b_out": Out(b_shape),
            "shift": In(1),
            "shadow_in": In(32),
            "shadow_out": Out(32),
        }
        if window > 1:
            ports["select_in"] = In(select_shape(window))
            ports["select_out"] = Out(select_shape(window))
        if config.skip_zeros:
            ports["live_out"] = Out(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [
            self.a_out.eq(self.a_in),
            self.b_out.eq(self.b_in),
            self.control_out.eq(self.control_in),
        ]
        b_operand = self.b_in
        if self.config.skip_window > 1:
            # the window's B operand this row's step chose
            m.d.sync += self.select_out.eq(self.select_in)
            b_operand = Signal(Operand, name="b_selected")
            m.d.comb += b_operand.eq(self.b_in[self.select_in])
        extra = {"valid": self.control_in.valid, "first": self.control_in.first}
        if self.config.skip_zeros:
            extra["live"] = _live_flag(m, self.a_in, b_operand, self.config.edge_decode)
            m.d.sync += self.live_out.eq(self.control_in.valid & extra["live"])
        if self.config.acc_interleave > 1:
            # a bubble's or a skipped product is -0, chosen inside the multiplier
            product, control = _multiplier(m, self.config, self.a_in, b_operand, extra=extra,
                                           zero_unless=[k for k in ("valid", "live")
                                                        if k in extra])
            self._interleaved_loop(m, product, control, self._first_ahead(m))
            return m
        product, control = _multiplier(m, self.config, self.a_in, b_operand, extra=extra)
        if self.config.skip_zeros:
            product = _gated_product(m, product, control["live"])

        acc = Signal(32, name="acc")
        shadow = Signal(32, name="shadow")
        base = Signal(32, name="acc_base")       # what the product is added to
        with m.If(control["first"]):
            m.d.comb += base.eq(shadow)
        with m.Else():
            m.d.comb += base.eq(acc)
        total = fp32_add_datapath(m, base, product, name="acc_add")

        with m.If(control["first"]):
            m.d.sync += shadow.eq(acc)
            with m.If(control["valid"]):
                m.d.sync += acc.eq(total)
            with m.Else():
                m.d.sync += acc.eq(shadow)
        with m.Elif(control["valid"]):
            m.d.sync += acc.eq(total)
        with m.If(self.shift):
            m.d.sync += shadow.eq(self.shadow_in)
        m.d.comb += self.shadow_out.eq(shadow)
        return m

    def _first_ahead(self, m):
        """The ``first`` flag of the step that reaches the accumulate loop in the next cycle
        (``control_in.first`` delayed ``mul_stages - 1`` cycles), or ``None`` when
        ``mul_stages`` is 0 (no stage to take it from)."""
        stages = self.config.mul_stages
        if stages == 0:
            return None
        first = self.control_in.first
        for stage in range(stages - 1):
            delayed = Signal(name=f"first_ahead_d{stage + 1}")
            m.d.sync += delayed.eq(first)
            first = delayed
        return first

    def _interleaved_loop(self, m, product, control, first_ahead):
        """The accumulate loop of ``L = acc_interleave`` outputs in rotation (class docstring):
        the adder's ``L - 1`` registers and ``acc`` hold the ``L`` running sums; the shadows
        are an ``L``-deep piece of the column's chain.

        With ``first_ahead`` (``mul_stages >= 1``) the adder's input ``acc_base`` is a
        register, chosen one cycle early between the adder's result and the shadow the
        chain will hand over: the select (a flag that fans out to every bit, and that
        synthesis shares between the PEs whose steps arrive in the same cycle) then ends the
        loop's last stage instead of starting its first one, the longest. ``acc`` still
        holds the adder's result, the finished sum a swap moves into the chain."""
        interleave = self.config.acc_interleave
        shadows = [Signal(32, name=f"shadow_{j}") for j in range(interleave)]
        acc = Signal(32, name="acc")
        base = Signal(32, name="acc_base")
        # a bubble's product is -0 (elaborate), the identity: a NaN sum stays the canonical
        # NaN it already is after its first product, or becomes it one step early (the same
        # final bits)
        addend = product
        # the adder's cut points and one more inside its align step
        pipeline = Pipeline(stages=interleave - 1, cut_points=ADD_CUT_POINTS + 1,
                            name="acc_loop")
        m.d.comb += pipeline.enable.eq(1)
        total = fp32_add_datapath(m, base, addend, pipeline=pipeline, name="acc_add",
                                  align_cut=True)
        m.d.sync += acc.eq(total)
        moves = control["first"] | self.shift          # the chain moves down by one
        if first_ahead is None:
            m.d.comb += base.eq(Mux(control["first"], shadows[-1], acc))
        else:
            # what the mux above would give in the next cycle: acc <- total, and
            # shadows[-1] <- shadows[-2] when the chain moves
            m.d.sync += base.eq(Mux(first_ahead, Mux(moves, shadows[-2], shadows[-1]), total))
        # a swap and a shift move the same chain: the swap feeds in the finished sum of the
        # output whose first step arrives (and hands that output's init to the adder)
        with m.If(control["first"]):
            m.d.sync += [shadows[0].eq(acc),
                         *(shadows[j].eq(shadows[j - 1]) for j in range(1, interleave))]
        with m.If(self.shift):
            m.d.sync += [shadows[0].eq(self.shadow_in),
                         *(shadows[j].eq(shadows[j - 1]) for j in range(1, interleave))]
        m.d.comb += self.shadow_out.eq(shadows[-1])


class WeightStationaryPE(wiring.Component):
    """Weight-stationary PE: holds one element of B, partial sums flow down the column.

    Each cycle the PE multiplies ``a_in`` by its weight and adds the product to the partial
    sum from above: ``psum_out <- round(psum_in + a*weight)``, where ``psum_in`` arrives
    ``mul_stages`` cycles after ``a_in`` (the array skews it so). ``a_in`` and ``first_in``
    are forwarded, registered, to the right.

    Weights are double buffered: ``weight_next`` is a link of the column's load chain
    (``weight_next <- weight_in`` while ``load`` is high; ``weight_out`` is ``weight_next``),
    and a step with ``first_in`` set is multiplied by ``weight_next`` while the PE copies it to
    its active ``weight`` register for the following steps. So the next tile's weights load
    while the current tile computes.

    With ``config.skip_zeros`` a product whose ``a`` or weight is ``+-0`` is added as ``-0``:
    ``psum_out <- round(psum_in + -0)``, i.e. the partial sum passes through unchanged (a NaN
    as the canonical NaN). The padding rows of a K slice shorter than R (weight ``+0``, ``a``
    ``-0``, or the reverse) are then skipped too; the dense PE adds their ``-0`` product, so
    both leave the sum as it is and the padded slice computes what
    :func:`sim.sparsity.gemm_skip` gives for the unpadded one. Each K slice applies the skip
    per product, ``k`` ascending, on the sum the previous slice left, so chained slices give
    ``gemm_skip`` of the whole K (a ``-0`` start whose products are all skipped stays ``-0``).

    Parameters
    ----------
    config : ArrayConfig
        ``dataflow="ws"``; ``a_formats``, ``b_formats`` (weights), ``mul_stages``,
        ``psum_stages`` and ``skip_zeros`` are used.

    With ``config.psum_stages = P`` the adder has ``P`` pipeline registers (a partial sum has
    no loop to close, so nothing else changes here; the array skews the rows of A ``1 + P``
    apart so that each partial sum meets its product).

    Latency: ``psum_out`` shows the sum of a step ``mul_stages + P + 1`` cycles after its
    ``a_in`` (``P + 1`` cycles after its ``psum_in``); ``a_out`` one cycle after ``a_in``.
    Throughput: one MAC per cycle.

    Ports
    -----
    a_in, a_out : :class:`~hw.fp.operand.Operand`
    first_in, first_out : 1 bit
    weight_in, weight_out : :class:`~hw.fp.operand.Operand`
    load : 1 bit
    psum_in, psum_out : 32-bit fp32
    valid_in, valid_out : 1 bit, only with ``config.skip_zeros``: the step is one (not a
        bubble), forwarded like ``first_in``
    live_out : 1 bit, only with ``config.skip_zeros``: the step that arrived in the cycle before
        was valid with both operands non-zero (its product is added); the array sums these
    """

    def __init__(self, config):
        self.config = check_array_config(config, "ws", "WeightStationaryPE")
        ports = {"a_in": In(Operand), "a_out": Out(Operand), "first_in": In(1),
                 "first_out": Out(1), "weight_in": In(Operand), "weight_out": Out(Operand),
                 "load": In(1), "psum_in": In(32), "psum_out": Out(32)}
        if config.skip_zeros:
            ports.update(valid_in=In(1), valid_out=Out(1), live_out=Out(1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.a_out.eq(self.a_in), self.first_out.eq(self.first_in)]

        weight_next = Signal(Operand, name="weight_next")
        weight = Signal(Operand, name="weight")
        weight_used = Signal(Operand, name="weight_used")
        with m.If(self.load):
            m.d.sync += weight_next.eq(self.weight_in)
        with m.If(self.first_in):
            m.d.sync += weight.eq(weight_next)
            m.d.comb += weight_used.eq(weight_next)
        with m.Else():
            m.d.comb += weight_used.eq(weight)
        m.d.comb += self.weight_out.eq(weight_next)

        if self.config.skip_zeros:
            live = _live_flag(m, self.a_in, weight_used)
            m.d.sync += [self.valid_out.eq(self.valid_in),
                         self.live_out.eq(self.valid_in & live)]
            product, carried = _multiplier(m, self.config, self.a_in, weight_used,
                                           extra={"live": live})
            product = _gated_product(m, product, carried["live"])
        else:
            product = _multiplier(m, self.config, self.a_in, weight_used)
        # psum_stages registers inside the add (no loop: the sum moves on down the column)
        pipeline = Pipeline(stages=self.config.psum_stages, cut_points=ADD_CUT_POINTS,
                            name="psum")
        m.d.comb += pipeline.enable.eq(1)
        total = fp32_add_datapath(m, self.psum_in, product, pipeline=pipeline, name="psum_add")
        m.d.sync += self.psum_out.eq(total)
        return m
