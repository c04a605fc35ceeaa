"""Dropout masks regenerated in hardware from a seed, one output tile at a time.

The bits are those of :func:`sim.lfsr.dropout_keep_mask` (read its module docstring): element
``(r, j)`` of an ``M x N`` mask takes the output bits ``j*b .. j*b + b - 1`` of row ``r``'s
Galois LFSR, first bit most significant, as ``u``, and is kept when ``u >= threshold``; row
``r``'s LFSR starts at ``J^r(seed)``, ``J`` the jump of :data:`sim.lfsr_spec.ROW_STRIDE` steps.

Order. Tiles come out as an ``R x C`` output-stationary engine writes them: bands of ``R``
tensor rows from the top, and within a band the tiles of ``C`` columns from the left. Each
tile is an ``R x C`` keep mask with its tensor coordinates and ``last`` on the command's final
tile. Positions outside the tensor (rows ``>= M`` or columns ``>= N`` of an edge tile) carry 0
("not kept": nothing to compute, and an engine writes nothing there anyway).

Datapath
--------
* ``R`` row LFSRs (32 flip-flops each), each advanced ``U`` steps per cycle by an unrolled XOR
  network; their output bits form the elements: with ``U <= b`` (``U`` divides ``b``) one
  element per row every ``b / U`` cycles, the earlier bits waiting in a ``b - U``-bit register;
  with ``U >= b`` (a multiple of ``b`` dividing ``C b``) ``U / b`` elements per row per cycle.
  Each element is compared with the threshold as it completes and its keep bit shifts into the
  row's ``C``-bit mask from the top, so after the tile's ``C`` elements column ``j`` sits at
  bit ``j``. A tile takes ``T = C b / U`` cycles, edge tiles included (their extra columns are
  generated and zeroed).
* One jump network ``J`` (a constant 32 x 32 GF(2) matrix, an XOR network) and one 32-bit
  *chain* register holding the start state of the next row to load: the ``R`` cycles before a
  band shift ``chain, J(chain), ..., J^(R-1)(chain)`` into the row LFSRs and leave
  ``chain = J^R`` of the band's first start, which is the next band's first start. (One network
  used ``R`` times per band, rather than ``R`` networks ``J^R`` applied to the current starts in
  one cycle, as the :mod:`sim.lfsr` docstring sketches: ``R - 1`` times less XOR logic for
  ``R - 1`` more cycles per band.) Rows of the last band beyond ``M`` are loaded and run like
  the others; their bits are zeroed.
* The output register holds one finished tile, so the next tile is generated while it waits.

Timing
------
With the command accepted in cycle 0, ``G = ceil(N / C)`` tiles per band, ``T = C b / U``
and no backpressure, tile ``k`` (0-based; band ``k // G``) is valid in cycle::

    1 + (k // G + 1) * R + (k + 1) * T

(cycle 0 checks the command, then ``R`` setup cycles per band and ``T`` cycles per tile). A
command of ``ceil(M / R)`` bands thus takes ``ceil(M / R) * (R + G T)`` cycles after its check;
the next command is accepted in the cycle its last tile becomes valid (when offered then). A
tile held by backpressure stalls generation only when the next tile is finished too.

Bad commands
------------
A command is checked in the cycle it is accepted, with the rules of
:class:`sim.lfsr.DropoutMask` and :func:`sim.lfsr.dropout_keep_mask`: ``seed`` 0 (the LFSR's
fixed point), ``threshold > 2^b``, ``m`` or ``n`` zero, a row longer than the row stride
(``n b > ROW_STRIDE``). ``m > MAX_ROWS`` cannot be asked: ``m`` is a 16-bit field and
``MAX_ROWS = 2^16 - 1``. A bad command produces no tile, raises the sticky ``status.error``
with its :class:`DropoutError` (the first fault's code is kept until ``clear_error``) and the
unit takes the next command in the following cycle.

Thresholds 0 and ``2^b`` are accepted: ``u >= 0`` always holds (keep all, ``p = 0``) and
``u >= 2^b`` never does (drop all, ``p = 1``). :class:`sim.lfsr.DropoutMask` refuses both as
degenerate layer settings; the hardware's comparison defines them without exception.
"""

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from sim.config import MAX_DIM
from sim.engine_spec import FIELD_BITS
from sim.lfsr_spec import FEEDBACK_MASK, MAX_BITS, MAX_ROWS, ROW_STRIDE, WIDTH, lfsr_jump

__all__ = ["DropoutError", "DropoutStatus", "dropout_command_layout", "dropout_tile_layout",
           "lfsr_advance", "jump_network", "DropoutMaskGenerator"]

# Every m a command can carry fits the LFSR period: no "too many rows" check is needed.
assert (1 << FIELD_BITS) - 1 <= MAX_ROWS


class DropoutError(enum.Enum, shape=3):
    """Why a :class:`DropoutMaskGenerator` raised ``status.error`` (checked in this order; the
    first that applies is reported).

    * ``ZERO_SEED``: ``seed`` is 0, the LFSR's fixed point.
    * ``BAD_THRESHOLD``: ``threshold`` above ``2^bits``.
    * ``ZERO_SIZE``: ``m`` or ``n`` is 0.
    * ``ROW_TOO_LONG``: ``n * bits`` exceeds :data:`sim.lfsr_spec.ROW_STRIDE` (rows would overlap).
    """
    NONE = 0
    ZERO_SEED = 1
    BAD_THRESHOLD = 2
    ZERO_SIZE = 3
    ROW_TOO_LONG = 4


class DropoutStatus(data.Struct):
    """Status of a :class:`DropoutMaskGenerator` (one CSR word).

    ``busy`` is high from the cycle after a good command is accepted until its last tile has
    entered the output register. ``error`` is sticky: it rises the cycle after a bad command is
    accepted and keeps the first fault's ``error_code`` until the ``clear_error`` input is high
    (a fault in the same cycle as ``clear_error`` is kept).
    """
    busy: 1
    error: 1
    error_code: DropoutError


def dropout_command_layout(bits):
    """Command: regenerate the keep mask of an ``m x n`` tensor from ``seed`` with drop
    ``threshold`` out of ``2^bits`` (``bits + 1`` bits wide, so that ``2^bits`` fits)."""
    return data.StructLayout({"seed": WIDTH, "threshold": bits + 1, "m": FIELD_BITS,
                              "n": FIELD_BITS})


def dropout_tile_layout(rows, cols):
    """One output tile: ``keep[r]`` bit ``c`` is the mask of tensor element ``(row + r,
    col + c)`` (0 outside the tensor); ``last`` marks the command's final tile."""
    return data.StructLayout({"keep": data.ArrayLayout(cols, rows), "row": FIELD_BITS,
                              "col": FIELD_BITS, "last": 1})


def lfsr_advance(m, state, steps, name="lfsr"):
    """``(output bits in order, next state)`` of the dropout LFSR after ``steps`` steps from
    ``state`` (a 32-bit Value), as an unrolled XOR network (one named signal per step)."""
    feedback = Const(FEEDBACK_MASK, WIDTH)
    zero = Const(0, WIDTH)
    outputs = []
    for step in range(steps):
        out = state[0]
        outputs.append(out)
        following = Signal(WIDTH, name=f"{name}_step{step + 1}")
        m.d.comb += following.eq(Cat(state[1:], Const(0, 1)) ^ Mux(out, feedback, zero))
        state = following
    return outputs, state


def jump_network(state, steps):
    """The state ``steps`` LFSR steps after ``state`` (a 32-bit Value), as a constant XOR
    network (the GF(2) matrix of :func:`sim.lfsr_spec.lfsr_jump`, read off the unit states)."""
    units = np.array([1 << bit for bit in range(WIDTH)], dtype=np.uint64)
    columns = [int(column) for column in lfsr_jump(units, steps)]
    out = []
    for bit in range(WIDTH):
        taps = [state[src] for src in range(WIDTH) if columns[src] >> bit & 1]
        out.append(Cat(*taps).xor() if taps else Const(0, 1))
    return Cat(*out)


class _State(enum.Enum, shape=2):
    IDLE = 0       # waiting for a command
    SETUP = 1      # loading the band's row LFSRs from the chain, one row per cycle
    RUN = 2        # generating a tile, one cycle of T after another


def _check_int(field, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be an integer in {low}..{high}, not {value!r}")


class DropoutMaskGenerator(wiring.Component):
    """Stream unit: dropout commands in, ``rows x cols`` keep-mask tiles out, bit for bit
    :func:`sim.lfsr.dropout_keep_mask` (module docstring: order, datapath, bad commands).

    Parameters
    ----------
    rows, cols : int
        Tile size ``R x C`` (the output-stationary array's), each 1 .. ``sim.config.MAX_DIM``.
    bits : int
        Random bits per element ``b``, 1 .. :data:`sim.lfsr_spec.MAX_BITS`.
    steps_per_cycle : int or None
        LFSR steps unrolled per cycle ``U``: a divisor of ``bits``, or a multiple of ``bits``
        that divides ``cols * bits``. ``None``: ``bits`` (one element per row per cycle).

    Latency and throughput: ``T = C b / U`` cycles per tile (:attr:`tile_cycles`) plus ``R``
    setup cycles per band of rows (:attr:`setup_cycles`); with the command accepted in cycle 0
    and no backpressure tile ``k`` is valid in cycle ``1 + (k // G + 1) R + (k + 1) T``,
    ``G = ceil(n / C)``.

    Ports
    -----
    i : stream of :func:`dropout_command_layout` ``(bits)``: ``seed`` (32), ``threshold``
        (``bits + 1``), ``m``, ``n`` (16 each)
    o : stream of :func:`dropout_tile_layout` ``(rows, cols)``: ``keep`` (``rows x cols``),
        ``row``, ``col`` (16 each), ``last``
    status : :class:`DropoutStatus`
    clear_error : 1 bit
    """

    def __init__(self, *, rows, cols, bits=8, steps_per_cycle=None):
        _check_int("rows", rows, 1, MAX_DIM)
        _check_int("cols", cols, 1, MAX_DIM)
        _check_int("bits", bits, 1, MAX_BITS)
        allowed = sorted({d for d in range(1, bits + 1) if bits % d == 0} |
                         {e * bits for e in range(1, cols + 1) if cols % e == 0})
        if steps_per_cycle is None:
            steps_per_cycle = bits
        if isinstance(steps_per_cycle, bool) or not isinstance(steps_per_cycle, int) or \
                steps_per_cycle not in allowed:
            raise ValueError(f"steps_per_cycle must divide bits ({bits}) or be a multiple of it "
                             f"that divides cols * bits ({cols * bits}): one of {allowed}, not "
                             f"{steps_per_cycle!r}")
        self.rows, self.cols, self.bits = rows, cols, bits
        self.steps_per_cycle = steps_per_cycle
        #: Elements each row completes in a cycle that completes any (``max(1, U / b)``).
        self.elements_per_cycle = max(1, steps_per_cycle // bits)
        #: Cycles per element (``max(1, b / U)``).
        self.cycles_per_element = max(1, bits // steps_per_cycle)
        #: Cycles per tile ``T = C b / U``.
        self.tile_cycles = cols * bits // steps_per_cycle
        #: Cycles to load the row LFSRs before each band (``R``).
        self.setup_cycles = rows
        #: Largest ``n`` a command may have (``ROW_STRIDE // bits``, or the field's maximum).
        self.max_cols = min(ROW_STRIDE // bits, (1 << FIELD_BITS) - 1)
        super().__init__({
            "i": In(stream.Signature(dropout_command_layout(bits))),
            "o": Out(stream.Signature(dropout_tile_layout(rows, cols))),
            "status": Out(DropoutStatus),
            "clear_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        R, C, b, U = self.rows, self.cols, self.bits, self.steps_per_cycle
        E, P, T = self.elements_per_cycle, self.cycles_per_element, self.tile_cycles

        state = Signal(_State, name="state")
        threshold = Signal(b + 1, name="threshold")
        n_cols = Signal(FIELD_BITS, name="n_cols")
        row = Signal(FIELD_BITS, name="band_row")               # first tensor row of the band
        col = Signal(FIELD_BITS, name="tile_col")               # first tensor column of the tile
        rows_left = Signal(FIELD_BITS, name="rows_left")        # m - row
        cols_left = Signal(FIELD_BITS, name="cols_left")        # n - col
        chain = Signal(WIDTH, name="chain")                     # start of the next row to load
        counter = Signal(range(max(R, T, 2)), name="counter")   # setup row / cycle of the tile
        phase = Signal(range(max(P, 2)), name="phase")          # cycle within an element
        lfsrs = [Signal(WIDTH, name=f"row{r}_lfsr") for r in range(R)]
        masks = [Signal(C, name=f"row{r}_mask") for r in range(R)]
        partials = [Signal(b - U, name=f"row{r}_partial") for r in range(R)] if P > 1 else []

        out_free = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(state == _State.IDLE)

        # -- command check (cycle 0) ----------------------------------------------------------
        command = self.i.payload
        accepted = self.i.valid & self.i.ready
        fault_code = Signal(DropoutError, name="fault_code")
        with m.If(command.seed == 0):
            m.d.comb += fault_code.eq(DropoutError.ZERO_SEED)
        with m.Elif(command.threshold > (1 << b)):
            m.d.comb += fault_code.eq(DropoutError.BAD_THRESHOLD)
        with m.Elif((command.m == 0) | (command.n == 0)):
            m.d.comb += fault_code.eq(DropoutError.ZERO_SIZE)
        with m.Elif(command.n > self.max_cols):
            m.d.comb += fault_code.eq(DropoutError.ROW_TOO_LONG)
        fault = Signal(name="fault")
        m.d.comb += fault.eq(accepted & (fault_code != DropoutError.NONE))
        with m.If(accepted & ~fault):
            m.d.sync += [
                threshold.eq(command.threshold), n_cols.eq(command.n),
                row.eq(0), col.eq(0), rows_left.eq(command.m), cols_left.eq(command.n),
                chain.eq(command.seed), counter.eq(0), state.eq(_State.SETUP),
            ]

        # -- band setup: R rows shifted in from the chain ------------------------------------
        with m.If(state == _State.SETUP):
            m.d.sync += [lfsrs[r].eq(lfsrs[r + 1]) for r in range(R - 1)]
            m.d.sync += [lfsrs[R - 1].eq(chain), chain.eq(jump_network(chain, ROW_STRIDE)),
                         counter.eq(counter + 1), phase.eq(0)]
            with m.If(counter == R - 1):
                m.d.sync += [counter.eq(0), state.eq(_State.RUN)]

        # -- tile generation ------------------------------------------------------------------
        final_cycle = counter == T - 1
        advance = Signal(name="advance")
        m.d.comb += advance.eq((state == _State.RUN) & (~final_cycle | out_free))
        completes = (phase == P - 1) if P > 1 else Const(1, 1)
        next_masks = []
        for r in range(R):
            outputs, next_state = lfsr_advance(m, lfsrs[r], U, name=f"row{r}_lfsr")
            chunk = Cat(*reversed(outputs))                     # earliest bit most significant
            if P > 1:
                values = [Cat(chunk, partials[r])]
                with m.If(advance):
                    m.d.sync += partials[r].eq(Cat(chunk, partials[r])[:b - U])
            else:
                values = [Cat(*reversed(outputs[e * b:(e + 1) * b])) for e in range(E)]
            keeps = [Signal(name=f"row{r}_keep{e}") for e in range(E)]
            m.d.comb += [keep.eq(value >= threshold) for keep, value in zip(keeps, values)]
            shifted = Signal(C, name=f"row{r}_mask_next")
            m.d.comb += shifted.eq(Mux(completes, Cat(masks[r][E:], *keeps), masks[r]))
            next_masks.append(shifted)
            with m.If(advance):
                m.d.sync += [lfsrs[r].eq(next_state), masks[r].eq(shifted)]
        with m.If(advance):
            m.d.sync += counter.eq(Mux(final_cycle, 0, counter + 1))
            if P > 1:
                m.d.sync += phase.eq(Mux(phase == P - 1, 0, phase + 1))

        # -- finished tile into the output register ------------------------------------------
        transfer = Signal(name="transfer")
        m.d.comb += transfer.eq(advance & final_cycle)
        band_end = cols_left <= C
        command_end = band_end & (rows_left <= R)
        tile = self.o.payload
        with m.If(transfer):
            for r in range(R):
                col_valid = Cat(cols_left > c for c in range(C))
                m.d.sync += tile.keep[r].eq(Mux(rows_left > r, next_masks[r] & col_valid, 0))
            m.d.sync += [tile.row.eq(row), tile.col.eq(col), tile.last.eq(command_end),
                         self.o.valid.eq(1)]
            with m.If(command_end):
                m.d.sync += state.eq(_State.IDLE)
            with m.Elif(band_end):
                m.d.sync += [row.eq(row + R), rows_left.eq(rows_left - R), col.eq(0),
                             cols_left.eq(n_cols), state.eq(_State.SETUP)]
            with m.Else():
                m.d.sync += [col.eq(col + C), cols_left.eq(cols_left - C)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # -- status ---------------------------------------------------------------------------
        error = Signal(name="error_flag")
        error_code = Signal(DropoutError, name="error_code")
        with m.If(fault):
            m.d.sync += error.eq(1)
            with m.If(~error | self.clear_error):
                m.d.sync += error_code.eq(fault_code)
        with m.Elif(self.clear_error):
            m.d.sync += [error.eq(0), error_code.eq(DropoutError.NONE)]
        m.d.comb += [self.status.busy.eq(state != _State.IDLE), self.status.error.eq(error),
                     self.status.error_code.eq(error_code)]
        return m
