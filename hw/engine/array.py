"""The R x C systolic array of PEs, output stationary or weight stationary.

``SystolicArray(config)`` builds the dataflow ``config.dataflow`` asks for
(:class:`OutputStationaryArray` or :class:`WeightStationaryArray`). Both take unskewed inputs
(one step per cycle, every lane in the same cycle) and skew them internally; the timing
contract is :mod:`sim.array_timing`, available as ``array.timing``.
"""

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.engine.pe import (OutputStationaryPE, RowControl, WeightStationaryPE, check_array_config,
                          product_datapath, select_shape)
from hw.fp.operand import Operand
from sim.array_timing import OutputStationaryTiming, WeightStationaryTiming
from sim.config import ArrayConfig

__all__ = ["SystolicArray", "OutputStationaryArray", "WeightStationaryArray"]


def _delay_taps(m, value, cycles, shape, name):
    """``[value, value delayed 1, ..., value delayed cycles]`` through a register chain."""
    taps = [value]
    for index in range(1, cycles + 1):
        register = Signal(shape, name=f"{name}_d{index}")
        m.d.sync += register.eq(taps[-1])
        taps.append(register)
    return taps


def _sum_live(m, pes, products):
    """``products`` <- the PEs' registered live flags (``live_out``), summed per row (a
    register), then over the rows (a register): two cycles after the flags."""
    row_sums = []
    for r, row in enumerate(pes):
        row_sum = Signal(range(len(row) + 1), name=f"products_row_{r}")
        m.d.sync += row_sum.eq(sum(pe.live_out for pe in row))
        row_sums.append(row_sum)
    m.d.sync += products.eq(sum(row_sums))


class SystolicArray(wiring.Component):
    """An R x C systolic array; ``SystolicArray(config)`` returns the subclass of the dataflow.

    ``config.dataflow == "os"`` gives an :class:`OutputStationaryArray`, ``"ws"`` a
    :class:`WeightStationaryArray` (see their docstrings for ports and timing).

    Parameters
    ----------
    config : ArrayConfig
        Size (1..32 x 1..32), dataflow, operand formats and multiplier depth.

    Attributes
    ----------
    config : ArrayConfig
    timing : OutputStationaryTiming or WeightStationaryTiming
        The timing contract (latencies, tile spacing, reference schedule).
    """

    DATAFLOW = None
    #: Cycles from a step's arrival at a PE to its count on ``products`` (``skip_zeros``): the
    #: PE's live flag, the row sum and the total are registers
    PRODUCTS_LATENCY = 3

    def __new__(cls, config, *args, **kwargs):
        # validate before the object exists: a rejected configuration leaves no unused
        # elaboratable behind
        if cls is SystolicArray:
            if not isinstance(config, ArrayConfig):
                raise ValueError(f"SystolicArray: config must be an ArrayConfig, not {config!r}")
            cls = {"os": OutputStationaryArray, "ws": WeightStationaryArray}[config.dataflow]
        check_array_config(config, cls.DATAFLOW, cls.__name__)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, config):
        self.config = check_array_config(config, self.DATAFLOW, type(self).__name__)
        self.rows = config.rows
        self.cols = config.cols
        self.timing = self.TIMING(config)
        super().__init__(self._ports())


class OutputStationaryArray(SystolicArray):
    """Output-stationary array: PE ``(r, c)`` accumulates ``C[r, c]`` of the current tile.

    A tile is an R x C block of C computed from ``K`` steps: at step ``k`` the sequencer
    presents column ``k`` of the R x K block of A on ``a_in`` and row ``k`` of the K x C block
    of B on ``b_in``, with ``valid=1`` and ``first`` on ``k = 0``; bubbles (``valid=0``) may go
    anywhere. The array delays row ``r`` of ``a_in`` (and the control) by ``r`` cycles and
    column ``c`` of ``b_in`` by ``c`` cycles; operands then move one PE per cycle.

    Each PE keeps an accumulator and a shadow register (see :class:`OutputStationaryPE`): on
    ``first`` it swaps them, so the shadow receives the finished tile and the accumulator
    starts from the init the shadow held. The shadows of a column form a shift chain: when a
    shift reaches the column each shadow takes the one above and row 0 takes the column's lane
    of ``init_in``; the bottom shadow leaves. Column ``c`` sees the ``shift`` input and its
    ``init_in`` lane ``c`` cycles late (skewed like ``b_in``), and its result is delayed
    ``C - 1 - c`` more cycles, so a result row is aligned at ``result_out``
    ``shift_result_latency = C - 1`` cycles after its shift.

    Timing (``S = mul_stages``; cycles from a step's entry at the ports; see
    :class:`sim.array_timing.OutputStationaryTiming`, ``self.timing``):

    * PE ``(r, c)`` multiplies a step at ``t + r + c``, accumulates or swaps at
      ``t + r + c + S``;
    * a tile whose ``first`` enters at ``t`` has swapped in column ``c`` after cycle
      ``t + c + R - 1 + S``;
    * its ``R`` shifts (results of the previous tile out, rows R-1 .. 0 in that order; init
      rows of the next tile in, the first pushed ends in row R-1) fit in
      ``[t + R + S, t_next + S - 1]``; consecutive ``first`` steps are thus at least
      ``min_tile_cycles = 2R`` cycles apart;
    * a command ends with a flush step (``valid=0, first=1``) and ``R`` more shifts.

    Throughput: R*C MACs per cycle; a tile of ``K >= 2R`` steps pays no fill or drain
    (the shifts overlap the next tile). Latency of a lone tile of ``K`` steps, from the first
    init shift to its last result row: ``max(0, R - S) + max(K, 2R) + 2R + C + S - 1``
    cycles (:meth:`OutputStationaryTiming.command_cycles`).

    Parameters
    ----------
    config : ArrayConfig
        ``dataflow="os"``.

    Ports
    -----
    a_in : R lanes of :class:`~hw.fp.operand.Operand`
    b_in : C lanes of :class:`~hw.fp.operand.Operand`; with ``config.skip_window = d > 1``,
        C lanes of ``d`` operands: the B rows of the ``d`` steps of the lookahead window
    a_select : R lanes of :func:`~hw.engine.pe.select_shape` ``(d)``, only with ``d > 1``:
        the window position of the step row ``r`` takes this cycle (its A operand is on
        ``a_in[r]``; a row without a step gets ``+0``, which the zero gate skips). It is
        skewed and travels with ``a_in``
    valid, first, shift : 1 bit each
    init_in : C lanes of 32-bit fp32
    result_out : C lanes of 32-bit fp32
    products : ``0 .. R*C``, only with ``config.skip_zeros``: the PEs whose step of three
        cycles before was valid with both operands non-zero (:attr:`PRODUCTS_LATENCY`), the
        products the array accumulates; the rest of a command's ``M * N * K`` products were
        skipped (a zero operand, a lane outside the matrix, a step the window passed over)
    """

    DATAFLOW = "os"
    TIMING = OutputStationaryTiming

    def _ports(self):
        window = self.config.skip_window
        b_lane = Operand if window == 1 else data.ArrayLayout(Operand, window)
        ports = {
            "a_in": In(data.ArrayLayout(Operand, self.rows)),
            "b_in": In(data.ArrayLayout(b_lane, self.cols)),
            "valid": In(1),
            "first": In(1),
            "shift": In(1),
            "init_in": In(data.ArrayLayout(32, self.cols)),
            "result_out": Out(data.ArrayLayout(32, self.cols)),
        }
        if window > 1:
            ports["a_select"] = In(data.ArrayLayout(select_shape(window), self.rows))
        if self.config.skip_zeros:
            ports["products"] = Out(range(self.rows * self.cols + 1))
        return ports

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        pes = [[OutputStationaryPE(self.config) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]
        if self.config.skip_zeros:
            _sum_live(m, pes, self.products)

        # input skew: the control is the same for every row, so one chain serves them all
        control = Signal(RowControl, name="control")
        m.d.comb += [control.valid.eq(self.valid), control.first.eq(self.first)]
        control_taps = _delay_taps(m, control, rows - 1, RowControl, "control_skew")
        window = self.config.skip_window
        # with edge_decode the operands are decoded after the skew, once per row and column
        datapath = product_datapath(self.config) if self.config.edge_decode else None
        for r in range(rows):
            a_skewed = _delay_taps(m, self.a_in[r], r, Operand, f"a_skew_{r}")[-1]
            if datapath is not None:
                a_skewed = datapath.decode(m, "a", a_skewed)
            m.d.comb += [pes[r][0].a_in.eq(a_skewed), pes[r][0].control_in.eq(control_taps[r])]
            if window > 1:
                select = _delay_taps(m, self.a_select[r], r, select_shape(window),
                                     f"select_skew_{r}")[-1]
                m.d.comb += pes[r][0].select_in.eq(select)
        # the shift and its init row are skewed per column like the B operands, so that each
        # column drains as soon as its own swaps are done (tiles 2R apart, not 2R + C - 1)
        shift_taps = _delay_taps(m, self.shift, cols - 1, 1, "shift_skew")
        for c in range(cols):
            b_skewed = _delay_taps(m, self.b_in[c], c, self.b_in[c].shape(), f"b_skew_{c}")[-1]
            if datapath is not None:
                b_skewed = datapath.decode(m, "b", b_skewed)
            init_skewed = _delay_taps(m, self.init_in[c], c, 32, f"init_skew_{c}")[-1]
            m.d.comb += [pes[0][c].b_in.eq(b_skewed), pes[0][c].shadow_in.eq(init_skewed)]

        for r in range(rows):
            for c in range(cols):
                pe = pes[r][c]
                m.d.comb += pe.shift.eq(shift_taps[c])
                if c > 0:
                    left = pes[r][c - 1]
                    m.d.comb += [pe.a_in.eq(left.a_out), pe.control_in.eq(left.control_out)]
                    if window > 1:
                        m.d.comb += pe.select_in.eq(left.select_out)
                if r > 0:
                    above = pes[r - 1][c]
                    m.d.comb += [pe.b_in.eq(above.b_out), pe.shadow_in.eq(above.shadow_out)]
        for c in range(cols):            # deskew: every lane of a result row together
            result = _delay_taps(m, pes[rows - 1][c].shadow_out, cols - 1 - c, 32,
                                 f"result_deskew_{c}")[-1]
            m.d.comb += self.result_out[c].eq(result)
        return m


class WeightStationaryArray(SystolicArray):
    """Weight-stationary array: PE ``(r, c)`` holds ``B[k0 + r, n0 + c]`` of the current tile.

    A tile is an R x C block of B (its K slice of up to R rows on the PE rows, its N slice on
    the PE columns) and a stream of rows of A: at step ``m`` the sequencer presents
    ``A[m, k0 .. k0+R-1]`` on ``a_in`` and the C partial sums the column sums start from on
    ``init_in`` (``+0``, ``C_old[m, n0 ..]``, or the previous K slice's result read back),
    with ``valid=1`` and ``first`` on the tile's first step; bubbles (``valid=0``) may go
    anywhere. ``L = result_latency`` cycles later ``result_out`` holds
    ``round(...round(round(init + a_0 w_0) + a_1 w_1)... + a_R-1 w_R-1)`` for every column
    (``k`` ascending, as :func:`sim.gemm.gemm`) with ``result_valid=1``.

    The array delays row ``r`` of ``a_in`` (and ``first``) by ``r (1 + P)`` cycles (``P =
    psum_stages``, the registers in each PE's adder; 0 by default), column ``c`` of
    ``init_in`` by ``c + S`` cycles (so the partial sum meets the product), and column ``c`` of
    the results by ``C - 1 - c`` cycles: the outside sees aligned rows.

    Weights load through a second register per PE, column-wise: while ``load`` is high the
    chain moves down one row and row 0 takes ``weight_in``; ``R`` loads bring a tile in, row
    ``R-1`` of the block first. The step with ``first`` swaps them in, PE by PE as it passes,
    so loading the next tile overlaps computing the current one.

    A K slice shorter than R must be padded so that the padding rows add ``-0`` (the identity
    of round-to-nearest addition): weight ``+0`` and ``a = -0`` (or the reverse). A ``+0``
    product would turn a ``-0`` partial sum into ``+0``. A K slice that starts from the previous
    slice's results can take row ``m`` only once that row has come out: at least
    ``result_latency`` cycles (plus the read-back latency) after the previous slice's row ``m``.

    Timing (``S = mul_stages``; see :class:`sim.array_timing.WeightStationaryTiming`,
    ``self.timing``):

    * ``result_latency = R (1 + P) + C - 1 + S``;
    * PE ``(r, c)`` multiplies a step at ``t + r (1 + P) + c``; the last swap of a tile
      entered at ``t`` is at ``t + (R - 1)(1 + P) + C - 1``: the next tile's ``R`` loads fit
      after it and before ``t_next``, so ``first`` steps are at least ``min_tile_cycles =
      (R - 1)(1 + P) + C - 1 + R`` cycles apart (``2R + C - 2`` with ``P = 0``).

    Throughput: R*C MACs per cycle; a tile of ``M >= 2R + C - 2`` rows pays no weight-load
    time, and the output latency is paid once per command.

    Parameters
    ----------
    config : ArrayConfig
        ``dataflow="ws"``.

    Ports
    -----
    a_in : R lanes of :class:`~hw.fp.operand.Operand`
    valid, first : 1 bit each
    init_in : C lanes of 32-bit fp32
    weight_in : C lanes of :class:`~hw.fp.operand.Operand`
    load : 1 bit
    result_out : C lanes of 32-bit fp32
    result_valid : 1 bit
    products : ``0 .. R*C``, only with ``config.skip_zeros``: the PEs whose step of three
        cycles before was valid with a non-zero ``a`` and weight (the products the array
        adds; padding rows and columns hold ``+-0`` and count none)
    """

    DATAFLOW = "ws"
    TIMING = WeightStationaryTiming

    def _ports(self):
        ports = {
            "a_in": In(data.ArrayLayout(Operand, self.rows)),
            "valid": In(1),
            "first": In(1),
            "init_in": In(data.ArrayLayout(32, self.cols)),
            "weight_in": In(data.ArrayLayout(Operand, self.cols)),
            "load": In(1),
            "result_out": Out(data.ArrayLayout(32, self.cols)),
            "result_valid": Out(1),
        }
        if self.config.skip_zeros:
            ports["products"] = Out(range(self.rows * self.cols + 1))
        return ports

    def elaborate(self, platform):
        m = Module()
        rows, cols, stages = self.rows, self.cols, self.config.mul_stages
        pes = [[WeightStationaryPE(self.config) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # row r enters (1 + P) r cycles late: a step spends 1 + P cycles in each row
        row_cycles = self.timing.row_cycles
        first_taps = _delay_taps(m, self.first, (rows - 1) * row_cycles, 1, "first_skew")
        counting = self.config.skip_zeros
        if counting:        # a step's valid bit travels with it, for the products count
            step_taps = _delay_taps(m, self.valid, (rows - 1) * row_cycles, 1, "step_skew")
        for r in range(rows):
            a_skewed = _delay_taps(m, self.a_in[r], r * row_cycles, Operand, f"a_skew_{r}")[-1]
            m.d.comb += [pes[r][0].a_in.eq(a_skewed),
                         pes[r][0].first_in.eq(first_taps[r * row_cycles])]
            if counting:
                m.d.comb += pes[r][0].valid_in.eq(step_taps[r * row_cycles])
        for c in range(cols):
            init_skewed = _delay_taps(m, self.init_in[c], c + stages, 32, f"init_skew_{c}")[-1]
            m.d.comb += [pes[0][c].psum_in.eq(init_skewed),
                         pes[0][c].weight_in.eq(self.weight_in[c])]

        for r in range(rows):
            for c in range(cols):
                pe = pes[r][c]
                m.d.comb += pe.load.eq(self.load)
                if c > 0:
                    left = pes[r][c - 1]
                    m.d.comb += [pe.a_in.eq(left.a_out), pe.first_in.eq(left.first_out)]
                    if counting:
                        m.d.comb += pe.valid_in.eq(left.valid_out)
                if r > 0:
                    above = pes[r - 1][c]
                    m.d.comb += [pe.psum_in.eq(above.psum_out), pe.weight_in.eq(above.weight_out)]
        if counting:
            _sum_live(m, pes, self.products)

        for c in range(cols):
            # A register of this module driving a lane of the result_out port makes Yosys'
            # ECP5 flow (ABC9 reintegration) fail on a wire name clash with "result_out[c]";
            # a submodule of its own keeps the deskew registers apart.
            deskew = m.submodules[f"result_deskew_{c}"] = Module()
            aligned = _delay_taps(deskew, pes[rows - 1][c].psum_out, cols - 1 - c, 32,
                                  f"result_deskew_{c}")[-1]
            m.d.comb += self.result_out[c].eq(aligned)
        valid_taps = _delay_taps(m, self.valid, self.timing.result_latency, 1, "valid_delay")
        m.d.comb += self.result_valid.eq(valid_taps[-1])
        return m
