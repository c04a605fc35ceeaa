"""Tile sequencer of the output-stationary GEMM engine, and what every sequencer shares.

A sequencer takes one :class:`~hw.engine.commands.GemmCommand` at a time, checks it, and
drives everything between the memories and the array: reads of A and B from the skewed scratchpads,
the array's step, shift and init inputs, reads of ``C_old`` from and writes of results to the
accumulator memory. The schedule is fixed by the command alone (nothing in it waits on data),
which is why :func:`sim.engine_model.command_cycles` can predict it exactly. The command front
end (accept, check, status) is shared with the weight-stationary sequencer
(:mod:`hw.engine.ws_sequencer`).

Schedule (times in cycles; see :mod:`sim.engine_model` for the derived constants)
---------------------------------------------------------------------------------
* **Accept and check** (cycle 0): a bad command raises ``error`` and ``done`` in cycle 1; a good
  one starts issuing in cycle 1 (issue time 0).
* **Steps** (issue stream A): tiles ``(m0, n0)`` in row-major order, each ``L = max(K,
  min_tile_slots)`` issue slots: slot ``k < K`` reads ``A[m0 .. m0+R-1, k]`` (a column access
  of the A scratchpad, or a row access when ``a_transpose``) and ``B[k, n0 .. n0+C-1]`` (a row
  access, or a column access when ``b_transpose``) and becomes a step ``valid=1, first=(k==0)``
  when the data reach the array ``spad_read_latency`` cycles later; slots ``k >= K`` are
  bubbles. Lanes outside ``M`` / ``N`` (edge tiles) get the operand ``+0``. One flush step
  (``valid=0, first=1``) follows the last tile. Tile 0 starts at ``first_tile_issue`` with
  ``accumulate``, at issue time 0 without.
* **Shift groups** (issue stream B): ``R`` consecutive shift cycles, ``group_delay`` cycles after
  each tile boundary step (``first``) is issued, so that they reach each column just after the
  boundary's last accumulator swap in that column; with ``accumulate`` also one at issue time
  0. Shift ``j`` of group ``g`` pushes in row ``R-1-j`` of tile ``g``'s initial values (``+0``,
  or ``C_old`` read from the accumulator memory ``acc_read_latency`` cycles earlier when
  ``accumulate``) and takes out row ``R-1-j`` of tile ``g-2``'s results, written to the
  accumulator memory at ``(c_row + m0 + R-1-j, c_col + n0)`` in the cycle the row leaves the
  array (``result_latency`` cycles after its shift), lanes and rows outside ``M x N`` masked. An overwrite skips group 0: the shadows hold ``+0`` between commands (the last
  group of every command pushes zeros in), which is what group 0 would push. Group
  ``tiles + 1`` (after the flush) takes out the last tile; ``done`` rises the cycle after its
  last write.
* **Interleaved accumulation** (``ArrayConfig.acc_interleave = L > 1``): the tiles go in
  groups of ``L`` in the same row-major order, slot ``i`` of a group's tile ``l`` issued
  ``i L + l`` cycles after the group starts (:meth:`OutputStationarySequencer._issue_groups`),
  each group ``L max(K, min_tile_slots)`` cycles, a last group of fewer tiles padded with
  bubble lanes, and ``L`` flush steps; a shift group is ``R L`` shifts, shift ``j`` on lane
  ``j % L`` and row ``R-1-j//L`` (:meth:`OutputStationarySequencer._interleaved_shift_groups`).
  An overwrite walks its first group's tiles in a silent group (no shift) at issue time 0.
* **Output masks** (``EngineConfig.output_mask``, :mod:`hw.engine.mask`): with each result
  row's shift the keep planes' row is read (port 0), and the write puts ``+0`` in the lanes the
  command's selected planes mask. No cycles change.
"""

from amaranth import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engine.commands import ErrorCode, Status, command_layout
from hw.engine.mask import KEEP_PLANES
from hw.engine.scratchpad import data_layout, read_layout, write_layout
from hw.fp.operand import Operand, OperandFormat
from sim.config import EngineConfig
from sim.engine_spec import FIELD_BITS, EngineTiming
from sim.scratchpad_spec import ScratchpadGeometry

__all__ = ["OutputStationarySequencer", "geometries"]

# tile origins and slot counters: one bit above the command fields, so that adding R, C or 1
# to a value below 2**FIELD_BITS never wraps
WIDE = FIELD_BITS + 1


def geometries(config):
    """``(a, b, acc)``: :class:`~sim.scratchpad_spec.ScratchpadGeometry` of the A and B
    scratchpads and of the accumulator memory of an engine."""
    a = config.array
    return (ScratchpadGeometry(lanes=a.rows, width=config.spad_width, rows=config.a_rows),
            ScratchpadGeometry(lanes=a.cols, width=config.spad_width, rows=config.b_rows),
            ScratchpadGeometry(lanes=a.cols, width=config.acc_width, rows=config.acc_rows))


def _delay(m, value, cycles, *, name):
    """``value`` delayed by ``cycles`` registers (``cycles`` may be 0)."""
    shape = value.shape() if isinstance(value, data.View) else Value.cast(value).shape()
    for stage in range(cycles):
        reg = Signal(shape, name=f"{name}_d{stage + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def _lane_mask(m, origin, size, lanes, *, name):
    """Bit ``t`` set when ``origin + t < size`` (lanes of an edge tile inside the matrix)."""
    mask = Signal(lanes, name=name)
    m.d.comb += mask.eq(Cat(origin + t < size for t in range(lanes)))
    return mask


def _advance_tile(m, m0, n0, cmd, rows, cols, last, *, extent=None):
    """Move the tile origin ``(m0, n0)`` to the next tile in row-major order (bands of ``R``
    rows, tiles of ``C`` columns within a band: ``n0`` steps by ``cols`` up to ``extent``,
    ``cmd.n`` unless given); after the command's last tile, do ``last`` (a list of
    statements) instead of starting another band."""
    with m.If(n0 + cols >= (cmd.n if extent is None else extent)):
        m.d.sync += [n0.eq(0), m0.eq(m0 + rows)]
        with m.If(m0 + rows >= cmd.m):
            m.d.sync += last
    with m.Else():
        m.d.sync += n0.eq(n0 + cols)


def _step_read(port, cmd, operand, origin, k):
    """The scratchpad read request of step ``k`` of operand ``operand`` (``"a"`` or ``"b"``)
    for the tile at ``origin`` (``m0`` for A, ``n0`` for B)."""
    if operand == "a":
        # A stored M x K: column k from row m0 on; transposed (K x M): row k from column m0 on
        return [port.payload.row.eq(cmd.a_row + Mux(cmd.a_transpose, k, origin)),
                port.payload.col.eq(cmd.a_col + Mux(cmd.a_transpose, origin, k)),
                port.payload.column_mode.eq(~cmd.a_transpose)]
    # B stored K x N: row k from column n0 on; transposed (N x K): column k from row n0 on
    return [port.payload.row.eq(cmd.b_row + Mux(cmd.b_transpose, origin, k)),
            port.payload.col.eq(cmd.b_col + Mux(cmd.b_transpose, k, origin)),
            port.payload.column_mode.eq(cmd.b_transpose)]


def _plus_zero(formats):
    """``+0`` as an :class:`~hw.fp.operand.Operand` of a format the PEs accept (a tag they
    were not built for would multiply as NaN)."""
    return Operand.const({"bits": 0, "fmt": OperandFormat.of(formats[0])}).as_value()


def _tile_record(name):
    """Signals of a tile: its origin ``m0``, ``n0`` and ``valid`` (a tile of the command)."""
    return {"m0": Signal(WIDE, name=f"{name}_m0"), "n0": Signal(WIDE, name=f"{name}_n0"),
            "valid": Signal(name=f"{name}_valid")}


def _rotate(ring, incoming):
    """Statements that move a ring of tile records by one: each record takes the next one's
    value, the last takes ``incoming``."""
    following = [*ring[1:], incoming]
    return [ring[j][name].eq(following[j][name])
            for j in range(len(ring)) for name in ("m0", "n0", "valid")]


_ICARUS_NOTE = """Control signals are built from plain expressions rather than assignments under
m.If: Icarus evaluates a continuous assignment at time 0 but may miss an always block whose
inputs do not change before the first command, and an X there would reach the schedule."""


class _State(enum.Enum, shape=1):
    IDLE = 0
    RUN = 1


class _Sequencer(wiring.Component):
    """What both sequencers share: the ports to the memories and the host, and the command
    front end (accept, check, sticky error, ``busy`` and ``done``).

    A subclass gives its array ports (:meth:`_array_ports`), calls :meth:`_front_end` in
    ``elaborate`` and drives ``finished`` high in the cycle of its last result write.
    """

    def __init__(self, config):
        if not isinstance(config, EngineConfig):
            raise ValueError(f"config must be an EngineConfig, not {config!r}")
        if config.array.dataflow != self.DATAFLOW:
            raise ValueError(f"config.array.dataflow must be {self.DATAFLOW!r} for "
                             f"{type(self).__name__}, not {config.array.dataflow!r}")
        self.config = config
        self.timing = EngineTiming.of(config)
        self.a_geometry, self.b_geometry, self.acc_geometry = geometries(config)

        ports = {
            "cmd": In(stream.Signature(command_layout(config))),
            "status": Out(Status),
            "clear_error": In(1),
            "host_error": In(ErrorCode),
            "acc_write": Out(stream.Signature(self._acc_write_layout(), always_ready=True)),
            **self._array_ports(),
        }
        for prefix, geometry, element in (("a", self.a_geometry, Operand),
                                          ("b", self.b_geometry, Operand),
                                          ("acc", self.acc_geometry, unsigned(32))):
            for name, port in self._read_ports(geometry, element).items():
                ports[f"{prefix}_{name}"] = port
        if config.output_mask:
            for plane in KEEP_PLANES:
                for j in range(self.MASK_READERS):
                    for name, port in self._read_ports(self.acc_geometry, unsigned(1)).items():
                        ports[f"{plane}_{name}_{j}"] = port
        ports["acc_read"] = Out(stream.Signature(self._acc_read_layout(), always_ready=True))
        ports["acc_read_claim"] = Out(1)
        ports.update(self._extra_ports())
        super().__init__(ports)

    #: Read ports of each keep plane (``output_mask``).
    MASK_READERS = 0

    def _array_ports(self):
        raise NotImplementedError

    def _acc_write_layout(self):
        """Layout of the result writes into the accumulator memory (row writes here)."""
        return write_layout(self.acc_geometry, unsigned(32))

    def _acc_read_layout(self):
        """Layout of the ``C_old`` reads of the accumulator memory (row reads here)."""
        return read_layout(self.acc_geometry)

    def _extra_ports(self):
        """More ports of a subclass (none here)."""
        return {}

    def _command_checks(self, incoming, zero_size, b_outside):
        """``(zero_size, b_outside, last)``: the ZERO_SIZE and B_RANGE conditions of the
        command being accepted (a subclass may widen them) and the code checked after
        C_RANGE (``NONE`` here)."""
        return zero_size, b_outside, ErrorCode.NONE

    @staticmethod
    def _read_ports(geometry, element):
        """``read`` (requests out) and ``data`` (fixed-latency data in) of one scratchpad."""
        return {
            "read": Out(stream.Signature(read_layout(geometry), always_ready=True)),
            "data": In(stream.Signature(data_layout(geometry, element), always_ready=True)),
        }

    def _front_end(self, m, tile_size, *, host_error=None, run_error=None):
        """Accept with check, and status. ``tile_size(cmd)`` is the command field a tile's
        slots are counted from (``L = max(tile_size, min_tile_slots)``).

        A command is checked in the cycle it is accepted (cycle 0): a bad one raises ``error``
        and ``done`` in cycle 1, a good one starts issuing in cycle 1 (issue time 0).

        Returns a dict: ``cmd`` (the command register, valid from cycle 1), ``incoming`` (the
        command being accepted, for what ``begin`` sets up), ``slots`` (``L``), ``begin`` (the
        accept cycle of a good command: reset the schedule), ``start`` (issue time 0, the next
        cycle) and ``finished`` (to be driven high in the last result write's cycle).

        ``host_error`` (an :class:`ErrorCode` value, default the ``host_error`` port) is what
        the sticky status records from the host ports; ``run_error`` (1 bit, default none)
        high with ``finished`` makes the command end with ``SCHEDULE``.
        """
        cfg = self.config
        state = Signal(_State, name="state")
        cmd = Signal(command_layout(cfg), name="command")
        incoming = self.cmd.payload
        slots = Signal(WIDE, name="tile_slots")         # L = max(size, min_tile_slots)
        start = Signal(name="start")                    # first cycle of RUN (issue time 0)
        finished = Signal(name="finished")              # last result write this cycle

        # ---- accept and check, status -------------------------------------------------------
        error_code = Signal(ErrorCode, name="check_error")
        a_height = Mux(incoming.a_transpose, incoming.k, incoming.m)
        a_width = Mux(incoming.a_transpose, incoming.m, incoming.k)
        b_height = Mux(incoming.b_transpose, incoming.n, incoming.k)
        b_width = Mux(incoming.b_transpose, incoming.k, incoming.n)
        zero_size = (incoming.m == 0) | (incoming.n == 0) | (incoming.k == 0)
        a_outside = ((incoming.a_row + a_height > cfg.a_rows)
                     | (incoming.a_col + a_width > cfg.spad_width))
        b_outside = ((incoming.b_row + b_height > cfg.b_rows)
                     | (incoming.b_col + b_width > cfg.spad_width))
        c_outside = ((incoming.c_row + incoming.m > cfg.acc_rows)
                     | (incoming.c_col + incoming.n > cfg.acc_width))
        # a priority chain of plain expressions (see _ICARUS_NOTE)
        zero_size, b_outside, last = self._command_checks(incoming, zero_size, b_outside)
        m.d.comb += error_code.eq(
            Mux(zero_size, ErrorCode.ZERO_SIZE,
                Mux(a_outside, ErrorCode.A_RANGE,
                    Mux(b_outside, ErrorCode.B_RANGE,
                        Mux(c_outside, ErrorCode.C_RANGE, last)))))

        accepted = Signal(name="accepted")
        rejected = Signal(name="rejected")
        begin = Signal(name="begin")
        m.d.comb += [
            self.cmd.ready.eq(state == _State.IDLE),
            accepted.eq(self.cmd.valid & self.cmd.ready),
            rejected.eq(accepted & (error_code != ErrorCode.NONE)),
            begin.eq(accepted & (error_code == ErrorCode.NONE)),
            self.status.busy.eq(state != _State.IDLE),
        ]
        m.d.sync += [self.status.done.eq(0), start.eq(0)]

        min_slots = self.timing.min_tile_slots
        with m.Switch(state):
            with m.Case(_State.IDLE):
                with m.If(accepted):
                    m.d.sync += [cmd.eq(incoming),
                                 slots.eq(Mux(tile_size(incoming) > min_slots,
                                              tile_size(incoming), min_slots))]
                with m.If(rejected):
                    m.d.sync += self.status.done.eq(1)
                with m.If(begin):
                    m.d.sync += [state.eq(_State.RUN), start.eq(1)]
            with m.Case(_State.RUN):
                with m.If(finished):
                    m.d.sync += [state.eq(_State.IDLE), self.status.done.eq(1)]

        # sticky error: a rejected command, else one that met a bad schedule as it ran, else a
        # host-port error, else cleared
        host_error = self.host_error if host_error is None else host_error
        with m.If(rejected):
            m.d.sync += [self.status.error.eq(1), self.status.error_code.eq(error_code)]
        with m.Elif(finished & (0 if run_error is None else run_error)):
            m.d.sync += [self.status.error.eq(1), self.status.error_code.eq(ErrorCode.SCHEDULE)]
        with m.Elif(host_error != ErrorCode.NONE):
            m.d.sync += [self.status.error.eq(1), self.status.error_code.eq(host_error)]
        with m.Elif(accepted | self.clear_error):
            m.d.sync += [self.status.error.eq(0), self.status.error_code.eq(ErrorCode.NONE)]
        return {"cmd": cmd, "incoming": incoming, "slots": slots, "begin": begin,
                "start": start, "finished": finished}


class OutputStationarySequencer(_Sequencer):
    """Runs GEMM commands on an output-stationary array (schedule in the module docstring).

    Parameters
    ----------
    config : EngineConfig
        ``config.array.dataflow`` must be ``"os"``.

    Latency: :func:`sim.engine_model.command_cycles` cycles from accepting a command to
    ``status.done``. Throughput: one command at a time (``cmd.ready`` is low while busy); one
    step per cycle while ``K >= min_tile_slots``.

    Ports
    -----
    cmd : stream of :class:`~hw.engine.commands.GemmCommand` (in)
    status : :class:`~hw.engine.commands.Status` (out)
    clear_error : 1 bit (in), clears ``status.error``
    host_error : :class:`~hw.engine.commands.ErrorCode` (in), an error seen on a host port this
        cycle (``NONE`` otherwise), recorded in the sticky status
    a_read, b_read, acc_read : scratchpad read-request streams (out, always ready)
    a_data, b_data, acc_data : scratchpad read-data streams (in, fixed latency)
    acc_read_claim : 1 bit (out), the cycles in which ``acc_read`` may be valid: a superset
        that needs no address arithmetic (the shift cycles of an accumulating command), so that
        the engine can hand the accumulator memory's read port to the sequencer or to the host
        without waiting for ``acc_read.valid``
    acc_write : accumulator-memory write stream (out, always ready)
    array_a : ``R`` x Operand; array_b : ``C`` x Operand; array_valid, array_first,
    array_shift : 1 bit; array_init : ``C`` x 32 bits (out) — the array's step, shift and init
    inputs
    array_result : ``C`` x 32 bits (in) — the array's result output
    """

    DATAFLOW = "os"
    #: Read ports of each keep plane (``output_mask``): the result writes'.
    MASK_READERS = 1

    def __init__(self, config):
        super().__init__(config)
        if self.timing.group_delay < 1:
            raise ValueError(f"timing: group_delay must be >= 1, not {self.timing.group_delay}")

    def _array_ports(self):
        rows, cols = self.config.array.rows, self.config.array.cols
        return {
            "array_a": Out(data.ArrayLayout(Operand, rows)),
            "array_b": Out(data.ArrayLayout(Operand, cols)),
            "array_valid": Out(1),
            "array_first": Out(1),
            "array_shift": Out(1),
            "array_init": Out(data.ArrayLayout(32, cols)),
            "array_result": In(data.ArrayLayout(32, cols)),
        }

    def elaborate(self, platform):
        m = Module()
        front = self._front_end(m, lambda cmd: cmd.k)
        if self.timing.interleave > 1:
            self._interleaved_shift_groups(m, front, self._issue_groups(m, front))
            return m

        # ---- issue stream A: steps --------------------------------------------------------------
        step_first = self._issue_steps(m, front)

        # ---- issue stream B: shift groups ---------------------------------------------------
        self._shift_groups(m, front, step_first)
        return m

    def _issue_steps(self, m, front):
        """Issue stream A (the steps, module docstring): scratchpad reads and the array's
        step inputs. Returns the signal that is high in the issue cycle of a tile's first
        step and of the flush step (what the shift groups are timed from)."""
        cfg = self.config
        rows, cols = cfg.array.rows, cfg.array.cols
        cmd, slots = front["cmd"], front["slots"]
        armed, stepping, flush, slot, m0, n0 = self._issue_counters(m, front)

        # (plain expressions rather than m.If: see _ICARUS_NOTE)
        step_valid = Signal(name="step_valid")
        step_first = Signal(name="step_first")
        m.d.comb += [
            step_valid.eq(stepping & (slot < cmd.k)),
            step_first.eq((stepping & (slot == 0)) | flush),
        ]
        m.d.sync += flush.eq(0)
        with m.If(stepping):
            with m.If(slot == slots - 1):
                m.d.sync += slot.eq(0)
                _advance_tile(m, m0, n0, cmd, rows, cols, [armed.eq(0), flush.eq(1)])
            with m.Else():
                m.d.sync += slot.eq(slot + 1)

        # scratchpad reads of the step's operands
        m.d.comb += [
            self.a_read.valid.eq(step_valid),
            self.b_read.valid.eq(step_valid),
        ]
        m.d.comb += [*_step_read(self.a_read, cmd, "a", m0, slot),
                     *_step_read(self.b_read, cmd, "b", n0, slot)]
        a_lanes = _lane_mask(m, m0, cmd.m, rows, name="step_a_lanes")
        b_lanes = _lane_mask(m, n0, cmd.n, cols, name="step_b_lanes")
        self._drive_array(m, step_valid, step_first, a_lanes, b_lanes)
        return step_first

    def _issue_groups(self, m, front):
        """Issue stream A with interleaved accumulation (``L = acc_interleave > 1``): the
        tiles in groups of ``L``, slot ``i`` of lane ``l`` in the group's cycle ``i L + l``
        (module docstring of :mod:`sim.array_timing`). In slot 0 each lane takes the next
        tile of a walk in row-major order (``m0``, ``n0``: invalid after the last tile, so
        the last group's spare lanes issue bubbles), and a ring of ``L`` tile records gives
        the lanes back their tiles in the later slots. A group that starts with the walk
        done is the flush: ``L`` steps ``valid=0, first=1``. Returns the signal high in the
        issue cycle of a group's first step (lane 0, slot 0) and of the flush's first."""
        cfg = self.config
        interleave = self.timing.interleave
        rows, cols = cfg.array.rows, cfg.array.cols
        cmd, slots = front["cmd"], front["slots"]
        armed, stepping, _, slot, m0, n0 = self._issue_counters(m, front)
        walking = Signal(name="walk_valid")            # (m0, n0) is a tile of the command
        lane = Signal(range(interleave), name="lane")
        flushing = Signal(name="flushing")             # lanes 1 .. L-1 of the flush
        ring = [_tile_record(f"lane_tile_{j}") for j in range(interleave)]
        with m.If(front["begin"]):
            m.d.sync += [walking.eq(1), lane.eq(0), flushing.eq(0)]

        # the lane's tile: the walk's in slot 0, the ring's after
        tile = _tile_record("issue_tile")
        for name in ("m0", "n0", "valid"):
            walk = {"m0": m0, "n0": n0, "valid": walking}[name]
            m.d.comb += tile[name].eq(Mux(slot == 0, walk, ring[0][name]))
        flush_start = Signal(name="flush_start")
        m.d.comb += flush_start.eq(stepping & (slot == 0) & (lane == 0) & ~walking)
        with m.If(stepping):
            m.d.sync += _rotate(ring, tile)
            with m.If(lane == interleave - 1):
                m.d.sync += lane.eq(0)
                with m.If(flush_start | flushing):
                    m.d.sync += [armed.eq(0), flushing.eq(0)]
                with m.Elif(slot == slots - 1):
                    m.d.sync += slot.eq(0)
                with m.Else():
                    m.d.sync += slot.eq(slot + 1)
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
                with m.If(flush_start):
                    m.d.sync += flushing.eq(1)
            with m.If((slot == 0) & walking):
                _advance_tile(m, m0, n0, cmd, rows, cols, [walking.eq(0)])

        # (plain expressions rather than m.If: see _ICARUS_NOTE)
        step_valid = Signal(name="step_valid")
        step_first = Signal(name="step_first")
        group_start = Signal(name="group_start")
        m.d.comb += [
            step_valid.eq(stepping & tile["valid"] & (slot < cmd.k)),
            step_first.eq(stepping & (slot == 0)),
            group_start.eq(step_first & (lane == 0)),
            self.a_read.valid.eq(step_valid),
            self.b_read.valid.eq(step_valid),
            *_step_read(self.a_read, cmd, "a", tile["m0"], slot),
            *_step_read(self.b_read, cmd, "b", tile["n0"], slot),
        ]
        a_lanes = _lane_mask(m, tile["m0"], cmd.m, rows, name="step_a_lanes")
        b_lanes = _lane_mask(m, tile["n0"], cmd.n, cols, name="step_b_lanes")
        self._drive_array(m, step_valid, step_first, a_lanes, b_lanes)
        return group_start

    def _interleaved_shift_groups(self, m, front, boundary):
        """Issue stream B with interleaved accumulation: ``group_delay`` cycles after each
        group's first step (and the flush's) ``R L`` shift cycles, shift ``j`` on lane
        ``j % L``, row ``R - 1 - j // L`` (:meth:`sim.array_timing.OutputStationaryTiming.shift_row`):
        it pushes in that row of the next group's tile on the lane (``C_old`` or ``+0``) and
        takes out that row of the previous group's. A walk gives the next group's tiles in
        the group's first ``L`` shifts, and rings of ``L`` tile records (rotated every shift)
        hold the tiles whose inits go in (``init``), that compute (``prev``) and whose results
        come out (``out``); at a group's end ``out <- prev <- init``. An overwrite starts with
        a silent group of ``L`` cycles at issue time 0 (no shift, no read): it walks the
        first group's tiles into ``prev``, as if their ``+0`` inits had been pushed (the
        shadows hold ``+0`` between commands)."""
        cfg = self.config
        timing = self.timing
        interleave = timing.interleave
        rows, cols = cfg.array.rows, cfg.array.cols
        cmd, start = front["cmd"], front["start"]
        group_trigger = Signal(name="group_trigger")
        m.d.comb += group_trigger.eq(start | _delay(m, boundary, timing.group_delay,
                                                    name="boundary"))
        rings = {name: [_tile_record(f"{name}_tile_{j}") for j in range(interleave)]
                 for name in ("init", "prev", "out")}
        walk = _tile_record("init_walk")
        silent = Signal(name="silent_group")          # the overwrite's group 0
        shifting = Signal(name="shifting")            # shifts 1 .. R L - 1 of a group
        lane_next = Signal(range(interleave), name="shift_lane")
        row_next = Signal(range(rows), name="shift_row")
        with m.If(front["begin"]):
            m.d.sync += [walk["m0"].eq(0), walk["n0"].eq(0), walk["valid"].eq(1),
                         *(ring[j]["valid"].eq(0) for ring in rings.values()
                           for j in range(interleave))]

        lane = Signal(range(interleave), name="shift_lane_now")
        row = Signal(range(rows), name="shift_row_now")
        active = Signal(name="group_active")
        group_end = Signal(name="group_end")
        first_rows = Signal(name="shift_first_row")   # the group's first L shifts
        m.d.comb += [
            lane.eq(Mux(group_trigger, 0, lane_next)),
            row.eq(Mux(group_trigger, rows - 1, row_next)),
            active.eq(group_trigger | shifting),
            first_rows.eq(row == rows - 1),
            # a silent group ends after its first L cycles
            group_end.eq(active & (lane == interleave - 1)
                         & ((row == 0) | (Mux(group_trigger, start & ~cmd.accumulate, silent)))),
        ]
        with m.If(group_trigger):
            m.d.sync += silent.eq(start & ~cmd.accumulate)
        with m.If(active):
            m.d.sync += shifting.eq(~group_end)
            with m.If(lane == interleave - 1):
                m.d.sync += [lane_next.eq(0), row_next.eq(row - 1)]
            with m.Else():
                m.d.sync += [lane_next.eq(lane + 1), row_next.eq(row)]

        init_tile = _tile_record("init_tile")
        for name in ("m0", "n0", "valid"):
            m.d.comb += init_tile[name].eq(Mux(first_rows, walk[name], rings["init"][0][name]))
        out_tile = rings["out"][0]
        with m.If(active):
            m.d.sync += [*_rotate(rings["init"], init_tile), *_rotate(rings["out"], out_tile)]
            with m.If(first_rows & walk["valid"]):
                _advance_tile(m, walk["m0"], walk["n0"], cmd, rows, cols, [walk["valid"].eq(0)])
            with m.If(group_end):
                # the init ring as rotated in this cycle, the prev ring as it stands
                inits = [*rings["init"][1:], init_tile]
                m.d.sync += [rings["prev"][j][name].eq(inits[j][name])
                             for j in range(interleave) for name in ("m0", "n0", "valid")]
                m.d.sync += [rings["out"][j][name].eq(rings["prev"][j][name])
                             for j in range(interleave) for name in ("m0", "n0", "valid")]

        shift = Signal(name="shift_cycle")
        m.d.comb += shift.eq(active & ~Mux(group_trigger, start & ~cmd.accumulate, silent))
        init_lanes, out_row_in, out_address = self._shift_rows(m, cmd, shift, init_tile,
                                                               out_tile, row)
        # the group after the flush: no tile of its own or computing, results to take out
        inits_valid = Cat(init_tile["valid"], *(t["valid"] for t in rings["init"][1:]))
        prev_valid = Cat(*(t["valid"] for t in rings["prev"]))
        out_valid = Cat(*(t["valid"] for t in rings["out"]))
        final = Signal(name="final_shift")
        m.d.comb += final.eq(shift & group_end & ~inits_valid.any() & ~prev_valid.any()
                             & out_valid.any())
        self._shift_outputs(m, front, shift, init_lanes, out_row_in, out_address, final)

    def _issue_counters(self, m, front):
        """The counters of issue stream A: ``(armed, stepping, flush, slot, m0, n0)``: tile
        slots or the flush still to issue, a tile slot issued this cycle (after the initial
        wait of an accumulating command), the flush step issued this cycle (set by the
        caller), the slot in the tile and the tile origin (both advanced by the caller)."""
        timing = self.timing
        armed = Signal(name="step_armed")
        step_wait = Signal(range(timing.first_tile_issue + 1), name="step_wait")
        stepping = Signal(name="stepping")
        flush = Signal(name="flush")
        slot = Signal(WIDE, name="slot")
        m0 = Signal(WIDE, name="step_m0")
        n0 = Signal(WIDE, name="step_n0")
        with m.If(front["begin"]):
            # an overwrite needs no initial shift group: every shadow already holds +0
            m.d.sync += [armed.eq(1),
                         step_wait.eq(Mux(front["incoming"].accumulate,
                                          timing.first_tile_issue, 0)),
                         m0.eq(0), n0.eq(0), slot.eq(0)]
        with m.If(armed & (step_wait != 0)):
            m.d.sync += step_wait.eq(step_wait - 1)
        m.d.comb += stepping.eq(armed & (step_wait == 0))
        return armed, stepping, flush, slot, m0, n0

    def _drive_array(self, m, step_valid, step_first, a_lanes, b_lanes):
        """The step meets its operands at the array ``spad_read_latency`` cycles after its
        reads: ``valid``, ``first`` and the operands, ``+0`` in the lanes not in ``a_lanes`` /
        ``b_lanes``."""
        cfg = self.config
        latency = self.timing.spad_read_latency
        a_lanes_at_array = _delay(m, a_lanes, latency, name="step_a_lanes")
        b_lanes_at_array = _delay(m, b_lanes, latency, name="step_b_lanes")
        m.d.comb += [self.array_valid.eq(_delay(m, step_valid, latency, name="step_valid")),
                     self.array_first.eq(_delay(m, step_first, latency, name="step_first"))]
        for r in range(cfg.array.rows):
            m.d.comb += self.array_a[r].eq(Mux(a_lanes_at_array[r], self.a_data.payload[r],
                                               _plus_zero(cfg.array.a_formats)))
        for c in range(cfg.array.cols):
            m.d.comb += self.array_b[c].eq(Mux(b_lanes_at_array[c], self.b_data.payload[c],
                                               _plus_zero(cfg.array.b_formats)))

    def _shift_groups(self, m, front, boundary):
        """Issue stream B (the shift groups, module docstring), ``group_delay`` cycles after
        each ``boundary`` (a tile's first step or the flush), and the result writes."""
        cfg = self.config
        timing = self.timing
        rows, cols = cfg.array.rows, cfg.array.cols
        cmd, start, finished = front["cmd"], front["start"], front["finished"]
        incoming = front["incoming"]
        group_trigger = Signal(name="group_trigger")
        m.d.comb += group_trigger.eq((start & cmd.accumulate)
                                     | _delay(m, boundary, timing.group_delay, name="boundary"))

        init_tile = _tile_record("init_tile")     # tile whose initial values go in (tile g)
        prev_tile = _tile_record("prev_tile")     # tile g-1 (computing during group g)
        out_tile = _tile_record("out_tile")       # tile g-2, whose results come out
        shifting = Signal(name="shifting")              # shifts 1..R-1 of a group
        row_offset = Signal(range(rows), name="shift_row")     # R-1-j for those
        with m.If(front["begin"]):
            m.d.sync += out_tile["valid"].eq(0)
            with m.If(incoming.accumulate):     # group 0 will shift tile 0's C_old in
                m.d.sync += [
                    init_tile["m0"].eq(0), init_tile["n0"].eq(0), init_tile["valid"].eq(1),
                    prev_tile["valid"].eq(0),
                ]
            with m.Else():                      # as if group 0 had run: tile 0 computes first
                m.d.sync += [
                    prev_tile["m0"].eq(0), prev_tile["n0"].eq(0), prev_tile["valid"].eq(1),
                ]
                with m.If(self._tile_step(incoming) >= self._tile_extent(incoming)):  # tile 1
                    m.d.sync += [init_tile["m0"].eq(rows), init_tile["n0"].eq(0),
                                 init_tile["valid"].eq(rows < incoming.m)]
                with m.Else():
                    m.d.sync += [init_tile["m0"].eq(0),
                                 init_tile["n0"].eq(self._tile_step(incoming)),
                                 init_tile["valid"].eq(1)]
        group_active = Signal(name="group_active")
        m.d.comb += group_active.eq(group_trigger | shifting)
        if rows > 1:
            with m.If(group_trigger):
                m.d.sync += [shifting.eq(1), row_offset.eq(rows - 2)]
            with m.Elif(shifting):
                m.d.sync += row_offset.eq(row_offset - 1)
                with m.If(row_offset == 0):
                    m.d.sync += shifting.eq(0)
        current_row = Signal(range(rows), name="shift_row_now")
        m.d.comb += current_row.eq(Mux(group_trigger, rows - 1, row_offset))
        group_end = Signal(name="group_end")
        m.d.comb += group_end.eq(group_active & (current_row == 0))
        with m.If(group_end):
            m.d.sync += [
                out_tile["m0"].eq(prev_tile["m0"]), out_tile["n0"].eq(prev_tile["n0"]),
                out_tile["valid"].eq(prev_tile["valid"]),
                prev_tile["m0"].eq(init_tile["m0"]), prev_tile["n0"].eq(init_tile["n0"]),
                prev_tile["valid"].eq(init_tile["valid"]),
            ]
            _advance_tile(m, init_tile["m0"], init_tile["n0"], cmd, rows,
                          self._tile_step(cmd), [init_tile["valid"].eq(0)],
                          extent=self._tile_extent(cmd))

        # initial values (C_old rows or +0) of tile g in, results of tile g-2 out: row R-1-j
        init_lanes, out_row_in, out_address = self._shift_rows(m, cmd, group_active, init_tile,
                                                               out_tile, current_row)
        last_group = ~init_tile["valid"] & ~prev_tile["valid"] & out_tile["valid"]
        final = Signal(name="final_shift")
        m.d.comb += final.eq(group_end & last_group)
        self._shift_outputs(m, front, group_active, init_lanes, out_row_in, out_address, final)

    def _shift_rows(self, m, cmd, shifting, init_tile, out_tile, row):
        """In a shift cycle (``shifting``): the ``C_old`` read of row ``row`` of ``init_tile``
        (``accumulate`` only) and the write address of that row of ``out_tile``'s results.
        Returns ``(init_lanes, out_row_in, out_address)`` (:meth:`_init_read`, the row is
        written, :meth:`_out_address`)."""
        init_row = init_tile["m0"] + row
        m.d.comb += self.acc_read_claim.eq(shifting & cmd.accumulate)
        init_row_in = Signal(name="init_row_inside")
        m.d.comb += init_row_in.eq(shifting & init_tile["valid"] & cmd.accumulate
                                   & (init_row < cmd.m))
        init_lanes = self._init_read(m, cmd, init_tile["n0"], init_row, init_row_in)
        out_row = out_tile["m0"] + row
        out_row_in = Signal(name="out_row_inside")
        m.d.comb += out_row_in.eq(shifting & out_tile["valid"] & (out_row < cmd.m))
        out_address = self._out_address(m, cmd, out_tile["n0"], out_row, out_row_in)
        return init_lanes, out_row_in, out_address

    def _shift_outputs(self, m, front, shifting, init_lanes, out_row_in, out_address, final):
        """What the shift cycles drive, delayed to the array: its ``shift`` input (high in the
        issue cycles ``shifting``) with the init row (``C_old`` where ``init_lanes``), and
        the write of the result row taken out (``out_row_in``, at ``out_address``, masked
        by the keep planes with ``output_mask``); ``finished`` with the write of the
        ``final`` shift."""
        cfg = self.config
        timing = self.timing
        cols = cfg.array.cols
        cmd, finished = front["cmd"], front["finished"]
        # at the array, acc_read_latency later; the result row comes out result_latency later
        latency = timing.acc_read_latency
        shift_at_array = _delay(m, shifting, latency, name="shift")
        init_lanes_at_array = _delay(m, init_lanes, latency, name="init_lanes")
        latency += timing.result_latency
        write_at_array = _delay(m, out_row_in, latency, name="out_write")
        address_at_array = _delay(m, out_address, latency, name="out_address")
        final_at_array = _delay(m, final, latency, name="final_shift")
        m.d.comb += self.array_shift.eq(shift_at_array)
        for c in range(cols):
            m.d.comb += self.array_init[c].eq(Mux(init_lanes_at_array[c],
                                                  self.acc_data.payload[c], 0))

        # result write, straight from the array's (registered) output
        result = self.array_result
        if cfg.output_mask:
            # output masking: the row's keep bits, read with the shift, +0 where masked
            keep = self._keep_row(m, cmd, 0, out_row_in, out_address.row, out_address.col)
            keep_at_array = _delay(m, keep, latency - timing.spad_read_latency,
                                   name="out_keep")
            result = Cat(Mux(keep_at_array[c], self.array_result[c], 0) for c in range(cols))
        write = self.acc_write.payload
        m.d.comb += [
            self.acc_write.valid.eq(write_at_array),
            *[getattr(write, name).eq(getattr(address_at_array, name))
              for name, _ in data.Layout.cast(write.shape()) if name != "data"],
            write.data.eq(result),
            finished.eq(final_at_array),
        ]

    def _tile_step(self, cmd):
        """How far the tile origin ``n0`` moves from one tile of a band to the next."""
        return self.config.array.cols

    def _tile_extent(self, cmd):
        """The band ends when ``n0 + step`` reaches this."""
        return cmd.n

    def _init_read(self, m, cmd, n0, row, valid):
        """Read the ``C_old`` row ``row`` of the tile at ``n0`` when ``valid``; returns the
        lanes that take it (0 when not ``valid``)."""
        lanes = Signal(self.config.array.cols, name="init_lanes")
        m.d.comb += [
            lanes.eq(Mux(valid, _lane_mask(m, n0, cmd.n, self.config.array.cols,
                                           name="init_lanes_inside"), 0)),
            self.acc_read.valid.eq(valid),
            self.acc_read.payload.row.eq(cmd.c_row + row),
            self.acc_read.payload.col.eq(cmd.c_col + n0),
            self.acc_read.payload.column_mode.eq(0),
        ]
        return lanes

    def _out_address(self, m, cmd, n0, row, valid):
        """Where row ``row`` of the results of the tile at ``n0`` goes: a
        :meth:`_acc_write_layout` value without ``data``; ``valid``: the row is written."""
        address = Signal(self._acc_write_layout(), name="out_address")
        m.d.comb += [
            address.row.eq(cmd.c_row + row),
            address.col.eq(cmd.c_col + n0),
            address.mask.eq(_lane_mask(m, n0, cmd.n, self.config.array.cols,
                                       name="out_lanes")),
        ]
        return address

    def _keep_row(self, m, cmd, reader, valid, row, col):
        """Read ``C`` keep bits at ``(row, col)`` of the keep planes through read port
        ``reader`` when ``valid``; returns their AND over the planes the command selects
        (all ones when it selects none), ``spad_read_latency`` cycles later (0 where the read
        was not made)."""
        planes = []
        for plane in KEEP_PLANES:
            request = getattr(self, f"{plane}_read_{reader}")
            m.d.comb += [request.valid.eq(valid), request.payload.row.eq(row),
                         request.payload.col.eq(col), request.payload.column_mode.eq(0)]
            planes.append(getattr(self, f"{plane}_data_{reader}"))
        host, drop = planes
        cols = self.config.array.cols
        keep = Signal(cols, name=f"keep_row_{reader}")
        m.d.comb += keep.eq(Mux(host.valid,
                                (Cat(host.payload[c] for c in range(cols))
                                 | ~cmd.mask_host.replicate(cols))
                                & (Cat(drop.payload[c] for c in range(cols))
                                   | ~cmd.mask_dropout.replicate(cols)), 0))
        return keep
