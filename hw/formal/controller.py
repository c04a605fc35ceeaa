"""Formal properties of the accelerator's controller (:class:`hw.accel.controller.Controller`),
the program interpreter, in a small accelerator: a 2x2 engine with 16 x 16 memories and a
256-bit DMA data bus, so that one read beat is one instruction.

Free: the program registers and pulses (``start``, ``soft_reset``, ``prog_base``,
``prog_len``), every ``ready`` of the controller's commands, the read data (so the program
words are free too), and the status pulses of the DMA, the loader, the store path, the
epilogue and the engine. Assumed, the contract the real neighbours keep:

* registers: ``start`` only while the controller is idle, with ``1 <= prog_len <=``
  :attr:`ControllerProperties.MAX_PROGRAM` (a bound to keep the solver's work small) and a
  32-byte aligned ``prog_base``, never with ``soft_reset``; ``prog_base`` and ``prog_len``
  stay unchanged while a program runs (the controller reads them during the fetch);
* DMA, read side: every read transfer completes in order; an instruction fetch (a read issued
  while the controller fetches) brings exactly one beat, and its ``read_done`` comes in a
  later cycle than that beat; a ``LOAD``'s read brings any number of beats. A beat comes
  only while a read is outstanding and holds, with its payload, until taken; a ``read_done``
  only for an outstanding read, in a later cycle than its command;
* DMA, write side: a ``write_done`` only for an outstanding write, in a later cycle than its
  command; ``read_done`` and ``write_done`` never together; ``dma_error`` only with one of
  them (``dma_error_code`` free);
* loader, store path, epilogue: ``load_done``, ``store_done``, ``epilogue_done`` only for a
  command accepted in an earlier cycle and not yet done;
* engine: ``engine_cmd.ready`` is ``~busy``; ``done`` only for a command accepted in an earlier
  cycle and not yet done; ``busy`` exactly while one runs and is not done; in the cycle after
  the accept, either the command runs (``busy``) or it was rejected (``done``, ``error`` with
  ``ZERO_SIZE`` or a ``*_RANGE`` code).

Promised:

* every outgoing stream (``read_cmd``, ``write_cmd``, ``load_cmd``, ``load_data``,
  ``store_cmd``, ``engine_cmd``, ``epilogue_cmd``) holds ``valid`` and its payload until
  taken; ``read_cmd``, ``engine_cmd`` and ``epilogue_cmd`` may drop a command not yet taken
  once a ``soft_reset`` came (the module docstring drops commands not yet issued);
* no command without a program: none of those streams is valid while ``busy`` is low;
* ``busy`` rises exactly the cycle after a ``start`` while idle, and ``engine_clear`` is
  exactly such a ``start`` (a start while busy changes nothing); ``busy`` falls only after
  ``finish`` or, after a ``soft_reset``, without it; ``finish`` and ``fault`` are one-cycle
  pulses while busy; ``fault`` is followed by ``finish`` unless a soft reset came; no
  ``finish`` after or with a ``soft_reset``, no ``fault`` with one;
* the fault status is sticky: from a ``fault`` pulse until the next ``start``,
  ``fault_code`` and ``fault_index`` stay unchanged; a fault's code is one of the
  controller's (never ``NONE``, ``START_WHILE_BUSY``, ``EMPTY_PROGRAM``) and its index lies
  inside the program;
* nothing is issued by a rejected instruction: the harness decodes each fetched word itself
  (a second :class:`~hw.accel.decoder.InstructionDecoder`) and keeps its verdict and fetch
  error per slot. Once the controller decoded an instruction with an error (or a failed
  fetch), no instruction runs any more (no ``FETCH``/``DECODE``/``LOAD``/``STORE``/``GEMM``/
  ``EPILOGUE`` phase), no ``read_cmd``, ``engine_cmd`` or ``epilogue_cmd`` is valid, until the
  next ``start``; and a program never has more ``write_cmd`` or ``store_cmd`` taken than
  ``STORE`` instructions decoded without an error. The fault then reports that
  instruction's index and the decoder's code (``DRAM_RESPONSE`` for a failed fetch), unless a
  DRAM error of a ``LOAD`` or ``STORE`` (reported first) came in the program.

Covers: a fault with each of the controller's codes (``ILLEGAL_OPCODE``, ``MISALIGNED``,
``SPAD_OVERFLOW`` and ``BAD_FIELD`` from the decoder; ``DRAM_RESPONSE`` from a fetch, a
``LOAD`` and a ``STORE``; ``BAD_FIELD`` and ``SPAD_OVERFLOW`` from an engine rejection), a
program finished without a fault, a ``STORE``'s ``write_cmd`` taken, a ``LOAD``'s data beat
passed to the loader, an epilogue command taken. ``START_WHILE_BUSY`` and ``EMPTY_PROGRAM``
are the register block's codes, never the controller's.

Mutants: ``lost_code``, ``fault_code`` read as ``NONE`` the cycle after a fault (the sticky
property must fail); ``drop_store``, ``store_cmd.valid`` dropped at the solver's choice (the
hold property must fail).

The harness found a fault in the block, since fixed: a ``LOAD`` with ``fence`` whose loader
command was taken in a cycle where its DMA read was not withdrew the read (its own queued
loader command counted as a ``LOAD`` in flight to the fence) and then waited for ever
(``docs/formal.md``).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, Value
from amaranth.lib import data
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover

from hw.accel.controller import Controller, Phase
from hw.accel.decoder import InstructionDecoder
from hw.accel.dma import ErrorCode
from hw.engine.commands import ErrorCode as EngineErrorCode
from sim.accel_spec import EPILOGUE_SOURCE_OPS, INSTRUCTION_BYTES, Opcode, Target
from sim.config import AccelConfig, ArrayConfig, EngineConfig

from .common import History, Properties

__all__ = ["ControllerInterlockProperties", "ControllerProperties", "Environment"]

#: The accelerator the properties are checked on: the smallest engine, one beat an instruction
CONFIG = AccelConfig(engine=EngineConfig(array=ArrayConfig(rows=2, cols=2), spad_width=16,
                                         a_rows=16, b_rows=16, acc_width=16, acc_rows=16),
                     data_width=8 * INSTRUCTION_BYTES)
#: The engine's codes of a rejected command
REJECT_CODES = (EngineErrorCode.ZERO_SIZE, EngineErrorCode.A_RANGE, EngineErrorCode.B_RANGE,
                EngineErrorCode.C_RANGE)


class Environment:
    """What the controller's neighbours promise, as ``Assume`` (the module docstring's
    contract), and the harness's view of the program's life, the read side and the engine: the
    signals the properties are stated over. Built in ``m`` around ``dut``; ``streams`` maps each
    outgoing stream's name to (the ``valid`` the harness observes, the port); ``slots`` is the
    longest program."""

    def __init__(self, m: Module, dut: Controller, past: History, streams: dict, slots: int):
        status = dut.engine_status
        self.taken = taken = {name: valid & port.ready
                              for name, (valid, port) in streams.items()}
        # -- the program's life: start accepted, soft reset seen (the controller's abort) ----
        started = Signal()
        m.d.comb += started.eq(dut.start & ~dut.busy)
        stopping = Signal()         # a soft reset came in an earlier cycle of this program
        with m.If(dut.soft_reset):
            m.d.sync += stopping.eq(1)
        with m.If(started):
            m.d.sync += stopping.eq(0)

        # -- the register block (assumed; hw/formal/registers.py proves its side) ------------
        aligned = dut.prog_base[:(INSTRUCTION_BYTES - 1).bit_length()] == 0
        with m.If(dut.start):
            m.d.comb += Assume(~dut.busy & ~dut.soft_reset & aligned & (dut.prog_len != 0)
                               & (dut.prog_len <= slots))
        # (past values are registered outside any m.If: common.History)
        running = past(dut.busy | dut.start, "running")
        base_before = past(dut.prog_base, "prog_base")
        len_before = past(dut.prog_len, "prog_len")
        with m.If(past.valid & running):
            m.d.comb += [Assume(dut.prog_base == base_before),
                         Assume(dut.prog_len == len_before)]

        # -- the DMA's read side (assumed): fetches of one beat, LOAD reads, in order ---------
        fetching = dut.phase == Phase.FETCH
        read_issue = taken["read_cmd"]
        fetch_reads, fetch_beats, fetch_dones = (Signal(range(slots + 2), name=f"fetch_{n}")
                                                 for n in ("reads", "beats", "dones"))
        load_reads = Signal(4)      # LOAD reads outstanding (the controller's ``loading``)
        loading = load_reads != 0
        beat = dut.read_data.valid & dut.read_data.ready
        fetch_beat = beat & ~loading
        load_done = dut.read_done & loading
        fetch_done = dut.read_done & ~loading
        with m.If(read_issue & fetching):
            m.d.sync += fetch_reads.eq(fetch_reads + 1)
        with m.If(fetch_beat):
            m.d.sync += fetch_beats.eq(fetch_beats + 1)
        with m.If(fetch_done):
            m.d.sync += fetch_dones.eq(fetch_dones + 1)
        m.d.sync += load_reads.eq(load_reads + (read_issue & ~fetching) - load_done)
        with m.If(started):
            m.d.sync += [fetch_reads.eq(0), fetch_beats.eq(0), fetch_dones.eq(0)]
        m.d.comb += [
            Assume(~dut.read_data.valid | loading | (fetch_beats < fetch_reads)),
            Assume(~dut.read_done | loading | (fetch_dones < fetch_beats)),
        ]
        read_stall = past(dut.read_data.valid & ~dut.read_data.ready, "read_stall")
        read_beat = past(dut.read_data.payload.as_value(), "read_beat")
        with m.If(past.valid & read_stall):
            m.d.comb += [Assume(dut.read_data.valid),
                         Assume(dut.read_data.payload.as_value() == read_beat)]
        # the controller never mixes a fetch with LOAD reads (so the read side is in order)
        m.d.comb += Assert(~loading | (fetch_dones == fetch_reads),
                           "a fetch read outstanding with a LOAD read")

        # -- the DMA's write side and status (assumed) -----------------------------------------
        writes = Signal(4)
        m.d.sync += writes.eq(writes + taken["write_cmd"] - dut.write_done)
        m.d.comb += [Assume(~dut.write_done | (writes != 0)),
                     Assume(~(dut.read_done & dut.write_done)),
                     Assume(~dut.dma_error | dut.read_done | dut.write_done)]

        # -- loader, store path, epilogue (assumed): a done only for a command taken before ---
        for name, done in (("load_cmd", dut.load_done), ("store_cmd", dut.store_done),
                           ("epilogue_cmd", dut.epilogue_done)):
            owed = Signal(4, name=f"{name}_owed")
            m.d.sync += owed.eq(owed + taken[name] - done)
            m.d.comb += Assume(~done | (owed != 0))

        # -- the engine (assumed): Status's contract, a rejection the cycle after the accept --
        gemm_running, gemm_new = Signal(), Signal()
        m.d.sync += gemm_new.eq(taken["engine_cmd"])
        with m.If(status.done):
            m.d.sync += gemm_running.eq(0)
        with m.If(taken["engine_cmd"]):
            m.d.sync += gemm_running.eq(1)
        rejected_code = 0
        for code in REJECT_CODES:
            rejected_code = rejected_code | (status.error_code == code)
        rejection = Signal()
        m.d.comb += rejection.eq(status.done & status.error & rejected_code)
        m.d.comb += [
            Assume(dut.engine_cmd.ready == ~status.busy),
            Assume(~status.done | gemm_running),
            Assume(status.busy == (gemm_running & ~status.done)),
            Assume(~gemm_new | status.busy | rejection),
        ]

        self.started, self.stopping, self.fetching = started, stopping, fetching
        self.fetch_beat, self.fetch_beats = fetch_beat, fetch_beats
        self.fetch_done, self.fetch_dones = fetch_done, fetch_dones
        self.loading, self.load_done = loading, load_done
        self.gemm_running, self.gemm_new, self.rejection = gemm_running, gemm_new, rejection


class ControllerHarness(Properties):
    """Base of the controller's harnesses: the controller of ``config``, which must fetch an
    instruction in one read beat."""

    #: Longest program the free registers may start (an assumption)
    MAX_PROGRAM = 2

    def __init__(self, config: AccelConfig = CONFIG, *, mutant: str | None = None):
        if config.data_width != 8 * INSTRUCTION_BYTES:
            raise ValueError(f"the harness needs one beat per instruction: data_width must be "
                             f"{8 * INSTRUCTION_BYTES}, not {config.data_width!r}")
        self.config = config
        super().__init__(Controller(config), mutant=mutant)


class ControllerProperties(ControllerHarness):
    """The controller of ``config`` with its properties (module docstring)."""

    NAME = "controller"
    DESCRIPTION = ("program controller, 2x2 engine, 16x16 memories, 256-bit DMA data, "
                   "programs of at most 2 instructions")
    #: ``bmc``: a two-instruction program's STORE fails by step 10 (about 6 minutes at 10, far
    #: more at 11); ``cover``: every cover by step 10
    TASKS = {"bmc": 10, "cover": 12}
    MUTANTS = ("lost_code", "drop_store")
    def elaborate(self, platform):
        m = Module()
        dut = self.instantiate(m)
        past = History(m)
        status = dut.engine_status
        slots = self.MAX_PROGRAM

        # -- what the harness observes (a mutant changes it) ---------------------------------
        fault_code = dut.fault_code.as_value()
        store_valid = dut.store_cmd.valid
        fault_before = past(dut.fault, "fault")
        if self.mutant == "lost_code":
            fault_code = Mux(fault_before, ErrorCode.NONE.value, fault_code)
        elif self.mutant == "drop_store":
            store_valid = dut.store_cmd.valid & ~AnySeq(1)
        streams = {"read_cmd": (dut.read_cmd.valid, dut.read_cmd),
                   "write_cmd": (dut.write_cmd.valid, dut.write_cmd),
                   "load_cmd": (dut.load_cmd.valid, dut.load_cmd),
                   "load_data": (dut.load_data.valid, dut.load_data),
                   "store_cmd": (store_valid, dut.store_cmd),
                   "engine_cmd": (dut.engine_cmd.valid, dut.engine_cmd),
                   "epilogue_cmd": (dut.epilogue_cmd.valid, dut.epilogue_cmd)}
        env = Environment(m, dut, past, streams, slots)
        taken, started, stopping = env.taken, env.started, env.stopping
        fetch_beat, fetch_beats = env.fetch_beat, env.fetch_beats
        fetch_done, fetch_dones = env.fetch_done, env.fetch_dones
        load_done, gemm_new, rejection = env.load_done, env.gemm_new, env.rejection

        # -- streams hold until taken; none without a program -----------------------------------
        droppable = ("read_cmd", "engine_cmd", "epilogue_cmd")    # after a soft reset
        for name, (valid, port) in streams.items():
            stall = past(valid & ~port.ready, f"{name}_stall")
            payload = port.payload.as_value()
            before = past(payload, f"{name}_payload")
            kept = ~stopping if name in droppable else 1
            with m.If(past.valid & stall & kept):
                m.d.comb += [Assert(valid, f"{name} valid dropped before ready"),
                             Assert(payload == before, f"{name} payload changed before ready")]
            m.d.comb += Assert(~valid | dut.busy, f"{name} valid without a program")

        # -- busy, start, finish, fault ----------------------------------------------------------
        busy_before = past(dut.busy, "busy")
        start_before = past(started, "started")
        finish_before = past(dut.finish, "finish")
        stopping_before = past(stopping, "stopping")
        reset_before = past(dut.soft_reset, "soft_reset")
        m.d.comb += [
            Assert(dut.engine_clear == started, "engine_clear is not a start while idle"),
            Assert(~dut.finish | dut.busy, "finish while idle"),
            Assert(~dut.fault | dut.busy, "fault while idle"),
            Assert(~dut.finish | ~(stopping | dut.soft_reset), "finish after or with a soft reset"),
            Assert(~dut.fault | ~dut.soft_reset, "fault with a soft reset"),
            Assert(~(dut.finish & dut.fault), "finish with the fault"),
        ]
        with m.If(past.valid):
            m.d.comb += [
                Assert(~dut.busy | busy_before | start_before, "busy without a start"),
                Assert(~start_before | dut.busy, "no busy the cycle after a start"),
                Assert(dut.busy | ~busy_before | finish_before | stopping_before | reset_before,
                       "busy fell without finish or soft reset"),
                Assert(~finish_before | ~dut.busy, "busy after finish"),
                Assert(~fault_before | ~dut.fault, "fault longer than a cycle"),
                Assert(~fault_before | dut.finish | stopping | dut.soft_reset,
                       "fault without finish"),
            ]

        # -- the fault status is sticky -------------------------------------------------------
        held = Signal()
        code_kept, index_kept = Signal(8), Signal(32)
        with m.If(dut.fault):
            m.d.sync += [held.eq(1), code_kept.eq(fault_code), index_kept.eq(dut.fault_index)]
        with m.If(started):
            m.d.sync += held.eq(0)
        with m.If(held):
            m.d.comb += [Assert(fault_code == code_kept, "fault_code changed after the fault"),
                         Assert(dut.fault_index == index_kept,
                                "fault_index changed after the fault")]
        controller_code = 0
        for code in ErrorCode:
            if code not in (ErrorCode.NONE, ErrorCode.START_WHILE_BUSY, ErrorCode.EMPTY_PROGRAM):
                controller_code = controller_code | (fault_code == code.value)
        m.d.comb += [Assert(~dut.fault | controller_code,
                            "a fault with a code not the controller's"),
                     Assert(~dut.fault | (dut.fault_index < dut.prog_len),
                            "a fault index outside the program")]

        # -- the harness's own decode of every fetched word ----------------------------------
        m.submodules.spec_decoder = decoder = InstructionDecoder(self.config)
        m.d.comb += decoder.instruction.eq(dut.read_data.payload.data)
        verdict = [Signal(8, name=f"slot{i}_code") for i in range(slots)]   # its error
        opcode = [Signal(8, name=f"slot{i}_opcode") for i in range(slots)]
        fetch_bad = [Signal(name=f"slot{i}_fetch_bad") for i in range(slots)]
        for i in range(slots):
            with m.If(fetch_beat & (fetch_beats == i)):
                m.d.sync += [verdict[i].eq(decoder.error), opcode[i].eq(decoder.opcode)]
            with m.If(fetch_done & (fetch_dones == i)):
                m.d.sync += fetch_bad[i].eq(dut.dma_error)
        at_pc_code, at_pc_opcode, at_pc_bad = Signal(8), Signal(8), Signal()
        for i in range(slots):
            with m.If(dut.pc == i):
                m.d.comb += [at_pc_code.eq(verdict[i]), at_pc_opcode.eq(opcode[i]),
                             at_pc_bad.eq(fetch_bad[i])]
        decoding = dut.phase == Phase.DECODE
        m.d.comb += Assert(~decoding | (dut.pc < dut.prog_len), "decode past the program")
        bad_decode = decoding & (at_pc_bad | (at_pc_code != ErrorCode.NONE.value))
        good_store = decoding & ~bad_decode & (at_pc_opcode == Opcode.STORE)

        # -- nothing issued by a rejected instruction ------------------------------------------
        rejected = Signal()
        expect_code, expect_index = Signal(8), Signal(32)
        with m.If(bad_decode):
            m.d.sync += [rejected.eq(1), expect_index.eq(dut.pc),
                         expect_code.eq(Mux(at_pc_bad, ErrorCode.DRAM_RESPONSE.value,
                                            at_pc_code))]
        with m.If(started):
            m.d.sync += rejected.eq(0)
        with m.If(rejected):
            phase = dut.phase
            m.d.comb += [
                Assert((phase == Phase.END) | (phase == Phase.IDLE),
                       "an instruction runs after a rejected one"),
                Assert(~dut.read_cmd.valid, "read_cmd after a rejected instruction"),
                Assert(~dut.engine_cmd.valid, "engine_cmd after a rejected instruction"),
                Assert(~dut.epilogue_cmd.valid, "epilogue_cmd after a rejected instruction"),
            ]
        # per program: write and store commands taken <= STOREs decoded without an error
        stores, writes_taken, stores_taken = (Signal(4, name=n) for n in (
            "good_stores", "writes_taken", "stores_taken"))
        with m.If(started):
            m.d.sync += [stores.eq(0), writes_taken.eq(0), stores_taken.eq(0)]
        with m.Else():
            m.d.sync += [stores.eq(stores + good_store),
                         writes_taken.eq(writes_taken + taken["write_cmd"]),
                         stores_taken.eq(stores_taken + taken["store_cmd"])]
        m.d.comb += [
            Assert(writes_taken + taken["write_cmd"] <= stores,
                   "a write_cmd not of a good STORE"),
            Assert(stores_taken + taken["store_cmd"] <= stores,
                   "a store_cmd not of a good STORE"),
        ]
        # the fault names the rejected instruction, unless a LOAD's or STORE's DRAM error
        # (reported first) came in the program
        transfer_error = Signal()
        with m.If(dut.dma_error & (load_done | dut.write_done)):
            m.d.sync += transfer_error.eq(1)
        with m.If(started):
            m.d.sync += transfer_error.eq(0)
        with m.If(dut.fault & rejected & ~transfer_error):
            m.d.comb += [Assert(fault_code == expect_code, "fault code is not the decoder's"),
                         Assert(dut.fault_index == expect_index,
                                "fault index is not the rejected instruction's")]

        # -- covers -----------------------------------------------------------------------------
        engine_rejected = Signal()
        load_failed, store_failed, fetch_failed = Signal(), Signal(), Signal()
        for flag, event in ((engine_rejected, gemm_new & rejection),
                            (load_failed, dut.dma_error & load_done),
                            (store_failed, dut.dma_error & dut.write_done),
                            (fetch_failed, dut.dma_error & fetch_done)):
            with m.If(event):
                m.d.sync += flag.eq(1)
            with m.If(started):
                m.d.sync += flag.eq(0)
        faulted = Signal()
        with m.If(dut.fault):
            m.d.sync += faulted.eq(1)
        with m.If(started):
            m.d.sync += faulted.eq(0)
        decoded = dut.fault & rejected & ~transfer_error
        for code in (ErrorCode.ILLEGAL_OPCODE, ErrorCode.MISALIGNED, ErrorCode.SPAD_OVERFLOW,
                     ErrorCode.BAD_FIELD):
            m.d.comb += Cover(decoded & ~at_pc_bad & (fault_code == code.value))
        dram = dut.fault & (fault_code == ErrorCode.DRAM_RESPONSE.value)
        m.d.comb += [
            Cover(dram & rejected & fetch_failed),
            Cover(dram & load_failed & ~rejected),
            Cover(dram & store_failed & ~rejected),
            Cover(dut.fault & engine_rejected & (fault_code == ErrorCode.BAD_FIELD.value)),
            Cover(dut.fault & engine_rejected & (fault_code == ErrorCode.SPAD_OVERFLOW.value)),
            Cover(dut.finish & ~faulted & ~dut.fault),
            Cover(dut.finish & ~faulted & (stores != 0)),
            Cover(taken["write_cmd"]),
            Cover(taken["load_data"]),
            Cover(taken["epilogue_cmd"]),
        ]
        return m


class ControllerInterlockProperties(ControllerHarness):
    """The controller's interlock with the GEMM in flight, and the payload of every command
    it issues, on programs of two instructions: a ``GEMM``, then a ``LOAD``, a ``STORE`` or
    an ``EPILOGUE`` (fence free). The neighbours keep the contract of :class:`Environment`;
    besides, nothing fails (no DMA error, the decoder finds no error in either instruction),
    and no soft reset comes: :class:`ControllerProperties` checks those paths.

    Promised, with the conflict rules restated from the :mod:`hw.accel.controller` docstring
    ("Overlap and its interlock"; the GEMM reads A rows ``[a_row, a_row + m)`` (``k`` rows
    when transposed) and B rows ``[b_row, b_row + k)`` (``n`` when transposed), and writes C
    rows ``[c_row, c_row + m)``):

    * while the engine is busy with the GEMM, no loader command is taken whose memory rows
      (``[mem_row, mem_row + rows - K + 1)``, ``K`` the copies) meet the GEMM's rows in its
      target memory; no store-path command whose accumulator rows meet the C rows; no epilogue
      command whose destination rows, or source rows (an op with a source; one row with
      ``broadcast``), meet the C rows, nor one that writes keep bits;
    * payloads: the engine's command is the program's ``GEMM`` field for field; the loader's,
      the store path's and the epilogue's commands and the DMA transfers (address, stride,
      rows) are the second instruction's fields, the loader's ``mem_row`` advancing by the
      group's rows (``rows - K + 1``) and the DMA address by ``group_stride`` per group; a
      ``LOAD`` of one copy with ``dram_stride = 0`` reads one row per group, its loader
      command carrying ``repeat``.

    Covers: a loader, a store-path and an epilogue command taken while the GEMM runs (the
    overlap happens), and one of each that met the GEMM's rows taken after its ``done`` (the
    interlock held it and let it go).

    Mutant ``edge_rows``: the properties count rows that only touch the GEMM's (adjacent) as
    meeting them; the controller lets such an instruction overlap, so a property must fail.
    """

    NAME = "controller_interlock"
    DESCRIPTION = ("program controller, 2x2 engine, 16x16 memories: a GEMM then a LOAD, STORE "
                   "or EPILOGUE; the interlock and every command's payload")
    TASKS = {"bmc": 13, "cover": 13}
    MUTANTS = ("edge_rows",)

    def meets(self, lo, hi, first, count):
        """Rows ``[first, first + count)`` meet ``[lo, hi)`` (``edge_rows``: or touch it)."""
        if self.mutant == "edge_rows":
            return (first <= hi) & (lo <= first + count)
        return (first < hi) & (lo < first + count)

    def elaborate(self, platform):
        m = Module()
        dut = self.instantiate(m)
        past = History(m)
        status = dut.engine_status
        streams = {name: (getattr(dut, name).valid, getattr(dut, name))
                   for name in ("read_cmd", "write_cmd", "load_cmd", "load_data", "store_cmd",
                                "engine_cmd", "epilogue_cmd")}
        env = Environment(m, dut, past, streams, self.MAX_PROGRAM)
        taken = env.taken

        # -- the programs: GEMM, then LOAD / STORE / EPILOGUE, all good ---------------------
        m.d.comb += [Assume(~dut.soft_reset), Assume(~dut.dma_error)]
        with m.If(dut.start):
            m.d.comb += Assume(dut.prog_len == self.MAX_PROGRAM)
        m.submodules.spec_decoder = decoder = InstructionDecoder(self.config)
        m.d.comb += decoder.instruction.eq(dut.read_data.payload.data)
        first = env.fetch_beat & (env.fetch_beats == 0)
        second = env.fetch_beat & (env.fetch_beats == 1)
        good = decoder.error.as_value() == ErrorCode.NONE.value
        with m.If(first):
            m.d.comb += Assume(good & (decoder.opcode == Opcode.GEMM) & ~decoder.header.fence)
        with m.If(second):
            m.d.comb += Assume(good & ((decoder.opcode == Opcode.LOAD)
                                       | (decoder.opcode == Opcode.STORE)
                                       | (decoder.opcode == Opcode.EPILOGUE)))
        gemm = Signal.like(decoder.gemm, name="spec_gemm")
        op = Signal(8, name="spec_opcode")
        t = Signal.like(decoder.transfer, name="spec_transfer")
        e = Signal.like(decoder.epilogue, name="spec_epilogue")
        copies, group_rows = Signal.like(decoder.copies), Signal.like(decoder.group_rows)
        with m.If(first):
            m.d.sync += gemm.eq(decoder.gemm)
        with m.If(second):
            m.d.sync += [op.eq(decoder.opcode), t.eq(decoder.transfer), e.eq(decoder.epilogue),
                         copies.eq(decoder.copies), group_rows.eq(decoder.group_rows)]

        # -- payloads -------------------------------------------------------------------------
        engine = dut.engine_cmd.payload
        with m.If(dut.engine_cmd.valid):
            for name, _ in data.Layout.cast(engine.shape()):
                m.d.comb += Assert(getattr(engine, name) == getattr(gemm, name),
                                   f"engine_cmd.{name} is not the GEMM's")
        groups_loaded, groups_read = Signal(8), Signal(8)
        with m.If(env.started):
            m.d.sync += [groups_loaded.eq(0), groups_read.eq(0)]
        with m.Else():
            m.d.sync += [groups_loaded.eq(groups_loaded + taken["load_cmd"]),
                         groups_read.eq(groups_read + (taken["read_cmd"] & ~env.fetching))]
        # a LOAD of one copy with dram_stride 0 reads its row once (sim.accel_spec.read_rows)
        repeat = Signal()
        m.d.comb += repeat.eq((t.dram_stride == 0) & (copies == 1))
        load = dut.load_cmd.payload
        with m.If(dut.load_cmd.valid):
            for name in ("target", "dram_format", "operand_format", "saturate", "rows", "cols",
                         "mem_col", "copy_cols"):
                m.d.comb += Assert(Value.cast(getattr(load, name)) == Value.cast(getattr(t, name)),
                                   f"load_cmd.{name} is not the LOAD's")
            m.d.comb += [
                Assert(load.copies == copies, "load_cmd.copies is not the LOAD's"),
                Assert(load.repeat == repeat, "load_cmd.repeat is not the LOAD's"),
                Assert(load.mem_row == t.mem_row + groups_loaded * group_rows,
                       "load_cmd.mem_row is not the LOAD's group's"),
            ]
        store = dut.store_cmd.payload
        with m.If(dut.store_cmd.valid):
            for name in ("dram_format", "saturate", "rows", "cols", "mem_row", "mem_col"):
                m.d.comb += Assert(Value.cast(getattr(store, name)) == Value.cast(getattr(t, name)),
                                   f"store_cmd.{name} is not the STORE's")
        with m.If(dut.epilogue_cmd.valid):
            m.d.comb += Assert(dut.epilogue_cmd.payload.as_value() == e.as_value(),
                               "epilogue_cmd is not the EPILOGUE's")
        for name, valid, transfer, group, rows in (
                ("read_cmd", dut.read_cmd.valid & ~env.fetching, dut.read_cmd.payload,
                 groups_read, Mux(repeat, 1, t.rows)),
                ("write_cmd", dut.write_cmd.valid, dut.write_cmd.payload, 0, t.rows)):
            width = len(transfer.addr)
            with m.If(valid):
                m.d.comb += [
                    Assert(transfer.addr == (t.dram_addr + group * t.group_stride)[:width],
                           f"{name}.addr is not the transfer's group's"),
                    Assert(transfer.stride == t.dram_stride[:width],
                           f"{name}.stride is not the transfer's"),
                    Assert(transfer.rows == rows, f"{name}.rows is not the transfer's"),
                ]

        # -- the interlock --------------------------------------------------------------------
        g = dut.engine_cmd.payload
        a_lo, a_hi, b_lo, b_hi, c_lo, c_hi = (
            Signal(17, name=f"spec_{side}_{end}") for side in "abc" for end in ("lo", "hi"))
        with m.If(taken["engine_cmd"]):
            m.d.sync += [a_lo.eq(g.a_row), a_hi.eq(g.a_row + Mux(g.a_transpose, g.k, g.m)),
                         b_lo.eq(g.b_row), b_hi.eq(g.b_row + Mux(g.b_transpose, g.n, g.k)),
                         c_lo.eq(g.c_row), c_hi.eq(g.c_row + g.m)]
        load_rows = load.rows - Mux(load.copies == 0, 1, load.copies) + 1
        load_meets = Mux(load.target.as_value() == Target.A, self.meets(a_lo, a_hi, load.mem_row, load_rows),
                         Mux(load.target.as_value() == Target.B,
                             self.meets(b_lo, b_hi, load.mem_row, load_rows),
                             self.meets(c_lo, c_hi, load.mem_row, load_rows)))
        store_meets = self.meets(c_lo, c_hi, store.mem_row, store.rows)
        ep = dut.epilogue_cmd.payload
        sourced = 0
        for source_op in EPILOGUE_SOURCE_OPS:
            sourced = sourced | (Value.cast(ep.op) == source_op)
        epilogue_meets = (ep.write_mask | self.meets(c_lo, c_hi, ep.dst_row, ep.rows)
                          | (sourced & self.meets(c_lo, c_hi, ep.src_row,
                                                   Mux(ep.broadcast, 1, ep.rows))))
        busy = status.busy
        m.d.comb += [
            Assert(~(taken["load_cmd"] & busy & load_meets),
                   "a loader command meeting the GEMM's rows while it runs"),
            Assert(~(taken["store_cmd"] & busy & store_meets),
                   "a store-path command meeting the GEMM's C rows while it runs"),
            Assert(~(taken["epilogue_cmd"] & busy & epilogue_meets),
                   "an epilogue command meeting the GEMM's C rows while it runs"),
        ]

        # -- covers -----------------------------------------------------------------------------
        gemm_ran = Signal()         # the GEMM was accepted and not rejected
        with m.If(env.gemm_new & ~env.rejection):
            m.d.sync += gemm_ran.eq(1)
        with m.If(env.started):
            m.d.sync += gemm_ran.eq(0)
        for name, meets in (("load_cmd", load_meets), ("store_cmd", store_meets),
                            ("epilogue_cmd", epilogue_meets)):
            m.d.comb += [Cover(taken[name] & busy),
                         Cover(taken[name] & gemm_ran & ~busy & meets)]
        return m
