"""The accelerator's controller: fetches a program from DRAM in blocks and runs it on the DMA,
the load and store paths and the GEMM engine, overlapping a GEMM with the instructions after it.

Instruction fetch: the controller holds an instruction buffer of
:data:`~sim.accel_spec.FETCH_BLOCK` instructions (an :class:`amaranth.lib.memory.Memory`,
256-bit words written a beat at a time and read asynchronously by the decoder: a synthesizer
maps it to LUT RAM on an FPGA, where registers would cost 256 flip-flops per instruction, and the
decode needs no extra cycle). When the next instruction is not in the buffer (instruction 0 and
every multiple of ``FETCH_BLOCK``: instructions run in order), the controller reads the block
``[pc, min(pc + FETCH_BLOCK, prog_len))``: one DMA read of the 32 bytes at ``prog_base + 32 i``
per instruction ``i``, issued back to back (the DMA accepts a transfer as soon as the bursts of
the one before are issued, so the block costs one DRAM round trip, not one per instruction),
because the DMA reports a DRAM error per transfer and the semantics give each instruction its
own. Every instruction of the block is read (``bytes_read`` counts them all, those after a
``DONE`` or an error too); the fetch waits for all of them, then the instructions run from the
buffer. The golden model defines the same rules (:mod:`sim.accel_model`, "Instruction fetch").

Per instruction, in program order:

1. *fetch* (above), only when it starts a block; an instruction whose fetch answered with a
   DRAM error ends the program with ``DRAM_RESPONSE`` (and its own index) when reached; the
   instructions of the block before it run normally;
2. *decode* (:class:`~hw.accel.decoder.InstructionDecoder`, one cycle): an instruction with an
   error ends the program with it;
3. *wait* while the instruction conflicts with the GEMM in flight (below);
4. *execute*:

   * ``LOAD``: per group (``groups``: one transfer each, the DMA address advancing by
     ``group_stride`` and the memory row by ``rows - copies + 1``), the DMA read of ``rows``
     rows of ``ceil(cols * bytes / beat)`` beats at ``dram_addr``, ``dram_stride`` apart (one
     row when ``dram_stride`` is 0 with one copy: the loader repeats it), and
     the loader's command (with ``copies`` and ``copy_cols``, into a queue of
     :data:`~sim.accel_spec.LOADS_IN_FLIGHT`), together; the read data go to the loader; once
     the last group is issued the next instruction starts (*loads in flight*, below);
   * ``STORE``: the DMA write of the same shape and the storer's command, each into a queue of
     :data:`~sim.accel_spec.STORES_IN_FLIGHT`; once both are issued the next instruction
     starts (*stores in flight*, below);
   * ``GEMM``: the engine's command, issued as soon as the engine is ready; the cycle after its
     accept tells whether the engine rejected it (the engine's ``ZERO_SIZE`` is ``BAD_FIELD``,
     its ``*_RANGE`` ``SPAD_OVERFLOW``); if not, the GEMM runs on while the controller goes on
     with the next instructions (*in flight* until the engine's ``done``);
   * ``DONE`` ends the program;

5. the next instruction, or the end after ``prog_len``.

Loads in flight: up to ``LOADS_IN_FLIGHT`` ``LOAD`` reads are pending at once (issued, their
``read_done`` not yet in), and their loader commands wait in the queue, so a run of ``LOAD``
instructions (an im2col gather: one per kernel tap and image row) streams through the DMA and
the loader without a round trip per instruction. Another ``LOAD`` is issued behind them; every
other instruction, a ``LOAD`` with ``fence``, a block fetch and the end of the program wait
until every ``LOAD`` before them is done (read and loader), so the ``LOAD`` instructions in
flight are always consecutive instructions, the read side carries only theirs while one is
pending (beats and ``read_done`` go to the loader in order) and a fetch needs no routing. A
``LOAD`` whose read answers with an error (known at its ``read_done``, the index counted from
the first ``LOAD`` in flight) does not stop the ``LOAD`` instructions behind it; the first
instruction that waits for the loads ends the program with ``DRAM_RESPONSE`` and that ``LOAD``'s
index. The golden model defines the same, timing-free rule
(:mod:`sim.accel_model`, "Loads in flight").

Stores in flight: up to ``STORES_IN_FLIGHT`` ``STORE`` instructions run at once, kept in a ring
of slots (oldest first: instruction index, accumulator rows, DRAM span, whether the DMA write
and the store path are done, whether the write failed). The DMA's ``write_done`` and the store
path's ``done`` come in issue order, each advancing its own pointer round the ring; a slot is
free once both came without an error and every older slot is free; a failed slot stays until
the error is reported. A ``STORE`` waits for the ``STORE`` ``STORES_IN_FLIGHT`` before it (the
ring's head when the ring is full); a ``LOAD`` whose DRAM span meets a slot's, a fenced
instruction and ``DONE`` wait for the slots concerned to complete and report a failed one (the
oldest failed slot's index); a ``LOAD`` into accumulator rows a slot reads, a ``GEMM`` whose
``C`` rows meet them and an ``EPILOGUE`` (the accumulator read port) wait only until the slot's
store path has read its rows, and report nothing. The model's rule is the same
(:func:`sim.accel_model.waits_for_store`).

Overlap and its interlock (a scoreboard of one GEMM, and the loads and stores above): while a
GEMM is in flight, the next instructions are fetched, decoded and executed unless they conflict
with it, in which case they wait for its ``done``. A ``LOAD`` into A or B conflicts when its
scratchpad rows ``[mem_row, mem_row + rows)`` meet the rows the GEMM reads in that memory (A:
``[a_row, a_row + m)``, or ``k`` rows when transposed; B: ``[b_row, b_row + k)``, or ``n`` rows
when transposed); a ``LOAD`` into the accumulator memory and a ``STORE`` when their rows meet
the GEMM's ``C`` rows ``[c_row, c_row + m)``; an ``EPILOGUE`` when its destination rows or
its source rows (one with ``broadcast``) meet them or it writes keep bits (``write_mask``). The
engine is built with ``host_acc_while_busy``: the loader's, the storer's and the epilogue's
accesses take the cycles the sequencer leaves free, so an ``EPILOGUE`` on one block runs beside
the GEMM of the next (the compiler places it after that GEMM). An instruction with the
header's ``fence`` bit set always waits (a ``LOAD`` of several groups before its first group
only: its later groups go on behind the first, whatever the first's read answered); another
``GEMM`` waits for the engine's ``ready``.
The results are therefore those of program order whatever the program (the golden model runs
in program order), and a compiler gets the overlap by placing the next block's operands in
other rows (double buffering: :mod:`sim.compiler`).

An error pulses ``fault`` (code, ``pc``) and, the cycle after, ``finish``; a normal end pulses
``finish``; both wait until nothing is in flight (a failed ``STORE`` is reported first, then
a failed ``LOAD``: program order). ``busy`` is high from the cycle after
``start`` to the ``finish`` cycle included. ``soft_reset`` stops the program at the next point
where nothing is in flight: a command not yet issued is dropped, a transfer or GEMM that was
issued runs to its end (an AXI manager cannot abandon a burst; a block fetch issues no further
read and takes the data of those issued), then the controller is idle (``busy`` low, no
``finish``).

Latency of the fetch: a block of ``n`` instructions costs about one DRAM round trip plus
``max(n * 32 / beat, 2 n)`` cycles (the data, or the DMA's address channel, which takes a read
every two cycles when the memory does not pause); the instructions of a block after its first
start one cycle after the one before ends (``DECODE``), with no bus access.
"""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.accel.decoder import InstructionDecoder
from hw.accel.dma import ErrorCode, ReadBeat, TransferCommand
from hw.accel.epilogue import EpilogueCommand
from hw.accel.loader import LoadCommand
from hw.accel.storer import StoreCommand
from hw.engine.commands import ErrorCode as EngineErrorCode
from hw.engine.commands import Status, command_layout
from sim.accel_spec import (EPILOGUE_SOURCE_OPS, FETCH_BLOCK, FORMAT_BITS, FORMAT_BYTES,
                            INSTRUCTION_BYTES, LOADS_IN_FLIGHT, STORES_IN_FLIGHT, Opcode,
                            Target)
from sim.config import AccelConfig

__all__ = ["Phase", "Controller"]


class Phase(enum.Enum, shape=3):
    """What the controller does in a cycle (its ``phase`` output, for profiling: a bench
    counts the cycles of each; synthesis drops it when nothing reads it). ``LOAD``, ``STORE``,
    ``GEMM``, ``EPILOGUE``: the instruction is issuing or waiting to (the interlock, a full
    queue, a busy DMA, the engine), or runs (``EPILOGUE``); ``END``: the program drains the
    work in flight, reports a fault or stops after a soft reset."""
    IDLE = 0
    FETCH = 1
    DECODE = 2
    LOAD = 3
    STORE = 4
    GEMM = 5
    EPILOGUE = 6
    END = 7


class Controller(wiring.Component):
    """Program sequencer (module docstring).

    Ports
    -----
    start, soft_reset : In(1)
        Pulses from :class:`~hw.accel.registers.Registers`.
    prog_base, prog_len : In(addr_width), In(32)
    busy, pc, finish, fault, fault_code, fault_index : Out
        To the register block (its contract).
    read_cmd, write_cmd : Out(stream of :class:`~hw.accel.dma.TransferCommand`)
    read_data : In(stream of :class:`~hw.accel.dma.ReadBeat`)
        The DMA's read data: instruction fetches are taken here, a ``LOAD``'s go on to
        ``load_data``.
    read_done, write_done, dma_error, dma_error_code : In
        The DMA's status pulses.
    load_cmd : Out(stream of :class:`~hw.accel.loader.LoadCommand`)
    load_data : Out(stream of :class:`~hw.accel.dma.ReadBeat`)
    load_done : In(1)
    store_cmd : Out(stream of :class:`~hw.accel.storer.StoreCommand`)
    store_done : In(1)
    engine_cmd : Out(stream of the engine's command layout)
    engine_status : In(:class:`~hw.engine.commands.Status`)
    engine_clear : Out(1)
        The engine's ``clear_error``, pulsed at start.
    phase : Out(:class:`Phase`)
        The controller's phase in this cycle (profiling).
    epilogue_cmd : Out(stream of :class:`~hw.accel.epilogue.EpilogueCommand`)
    epilogue_done : In(1)
    epilogue_active : Out(1)
        High while an ``EPILOGUE`` runs: the epilogue then owns the engine's accumulator
        read and write ports (the store path and the load path the rest of the time).
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        command = TransferCommand(config.addr_width)
        super().__init__({
            "start": In(1), "soft_reset": In(1),
            "prog_base": In(config.addr_width), "prog_len": In(32),
            "busy": Out(1), "pc": Out(32), "finish": Out(1), "fault": Out(1),
            "fault_code": Out(ErrorCode), "fault_index": Out(32),
            "read_cmd": Out(stream.Signature(command)),
            "read_data": In(stream.Signature(ReadBeat(config.data_width))),
            "write_cmd": Out(stream.Signature(command)),
            "read_done": In(1), "write_done": In(1),
            "dma_error": In(1), "dma_error_code": In(ErrorCode),
            "load_cmd": Out(stream.Signature(LoadCommand)),
            "load_data": Out(stream.Signature(ReadBeat(config.data_width))),
            "load_done": In(1),
            "store_cmd": Out(stream.Signature(StoreCommand)),
            "store_done": In(1),
            "engine_cmd": Out(stream.Signature(command_layout(config.engine))),
            "epilogue_cmd": Out(stream.Signature(EpilogueCommand)),
            "epilogue_done": In(1), "epilogue_active": Out(1),
            "engine_status": In(Status),
            "engine_clear": Out(1),
            "phase": Out(Phase),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        beat = config.beat_bytes
        m.submodules.decoder = decoder = InstructionDecoder(config)

        # ---- the instruction buffer: the block fetched (module docstring) ---------------------
        # instruction pc + j of a block (pc a multiple of FETCH_BLOCK) sits in slot j = the low
        # bits of its index; the decoder reads the slot of pc combinationally
        beats_per_instruction = INSTRUCTION_BYTES // beat
        slot_bits = (FETCH_BLOCK - 1).bit_length()
        m.submodules.buffer = buffer = Memory(shape=8 * INSTRUCTION_BYTES, depth=FETCH_BLOCK,
                                              init=[])
        buffer_write = buffer.write_port(granularity=config.data_width)
        buffer_read = buffer.read_port(domain="comb")
        slot = self.pc[:slot_bits]
        m.d.comb += [buffer_read.addr.eq(slot), decoder.instruction.eq(buffer_read.data)]
        bad = Signal(FETCH_BLOCK)     # per slot: its fetch answered with a DRAM error
        requested = Signal(range(FETCH_BLOCK + 1))     # fetch transfers of the block issued
        answered = Signal(range(FETCH_BLOCK + 1))      # ... and completed (read_done)
        fetched = Signal(range(FETCH_BLOCK * beats_per_instruction + 1))   # beats received
        t, g = decoder.transfer, decoder.gemm

        # the group being issued (a LOAD's groups: sim.accel_spec.TRANSFER_FIELDS): its DRAM
        # address, its first memory row, and the groups after it
        group_addr = Signal(config.addr_width)
        group_row = Signal(len(t.mem_row))
        groups_left = Signal(len(t.groups))
        later_group = Signal()            # issuing a group after the LOAD's first
        span_rows = decoder.span_rows     # the memory rows of the whole transfer
        abort = Signal()              # soft reset seen: stop at the next quiet point
        issued_dma, issued_path = Signal(), Signal()
        code = Signal(ErrorCode)

        with m.If(self.soft_reset):
            m.d.sync += abort.eq(1)
        # the end of a program also looks at the pulse itself: a soft reset in the cycle of
        # the finish (or of the fault) must win over it, as it does a cycle later
        stopping = Signal()
        m.d.comb += stopping.eq(abort | self.soft_reset)
        # a DMA error pulse comes with the done of its transfer: a read's or a write's
        read_error = self.dma_error & self.read_done
        write_error = self.dma_error & self.write_done

        # ---- the LOADs in flight (module docstring) -----------------------------------------
        # their loader commands wait in a queue; their DMA reads are issued at once. A block
        # fetch waits until no LOAD read is pending, so every read beat and read_done while one
        # is pending belongs to a LOAD (in program order: one DMA read side, one loader)
        m.submodules.load_queue = queue = SyncFIFOBuffered(
            width=len(self.load_cmd.payload.as_value()), depth=LOADS_IN_FLIGHT)
        dma_pending = Signal(range(LOADS_IN_FLIGHT + 1))      # LOAD reads without read_done
        path_pending = Signal(range(LOADS_IN_FLIGHT + 2))     # queued or loading, not done
        dma_issue, path_issue = Signal(), Signal()
        loading = Signal()                                    # the read side is a LOAD's
        m.d.comb += loading.eq(dma_pending != 0)
        load_read_done = Signal()
        m.d.comb += load_read_done.eq(self.read_done & loading)
        m.d.sync += [dma_pending.eq(dma_pending + dma_issue - load_read_done),
                     path_pending.eq(path_pending + path_issue - self.load_done)]
        loads_busy = Signal()
        m.d.comb += loads_busy.eq(loading | (path_pending != 0))
        # the LOADs in flight are consecutive instructions (anything else waits for them), so
        # the one a read_done belongs to is the oldest: its index counts up from the first, by
        # one at the read_done of an instruction's last group (a flag per read in flight)
        oldest, ld_pc = Signal(32), Signal(32)
        ld_failed = Signal()          # a LOAD's read answered with an error (first: ld_pc)
        last_group = Signal(LOADS_IN_FLIGHT)          # per read in flight, in a ring
        put, take = Signal(range(LOADS_IN_FLIGHT)), Signal(range(LOADS_IN_FLIGHT))
        with m.If(dma_issue):
            m.d.sync += [last_group.bit_select(put, 1).eq(groups_left == 0),
                         put.eq(Mux(put == LOADS_IN_FLIGHT - 1, 0, put + 1))]
        with m.If(load_read_done):
            m.d.sync += take.eq(Mux(take == LOADS_IN_FLIGHT - 1, 0, take + 1))
        with m.If(dma_issue & (dma_pending == load_read_done)):
            m.d.sync += oldest.eq(self.pc)
        with m.Elif(load_read_done & last_group.bit_select(take, 1)):
            m.d.sync += oldest.eq(oldest + 1)
        with m.If(load_read_done & self.dma_error & ~ld_failed):
            m.d.sync += [ld_failed.eq(1), ld_pc.eq(oldest)]
        # read data: a LOAD's to the loader (a fetch's are taken in FETCH)
        m.d.comb += [self.load_data.valid.eq(self.read_data.valid & loading),
                     self.load_data.payload.eq(self.read_data.payload)]
        with m.If(loading):
            m.d.comb += self.read_data.ready.eq(self.load_data.ready)
        m.d.comb += [self.load_cmd.valid.eq(queue.r_rdy), queue.r_en.eq(self.load_cmd.ready),
                     self.load_cmd.payload.as_value().eq(queue.r_data)]

        # ---- the GEMM in flight (a scoreboard of one) and the memory rows it uses ----------
        status = self.engine_status
        in_flight = Signal()
        a_lo, a_hi, b_lo, b_hi, c_lo, c_hi = (
            Signal(17, name=f"gemm_{side}_{end}") for side in "abc" for end in ("lo", "hi"))
        with m.If(status.done):
            m.d.sync += in_flight.eq(0)
        with m.If(self.engine_cmd.valid & self.engine_cmd.ready):
            m.d.sync += [a_lo.eq(g.a_row), a_hi.eq(g.a_row + Mux(g.a_transpose, g.k, g.m)),
                         b_lo.eq(g.b_row), b_hi.eq(g.b_row + Mux(g.b_transpose, g.n, g.k)),
                         c_lo.eq(g.c_row), c_hi.eq(g.c_row + g.m)]

        def meets(lo, hi, first, count):
            return (first < hi) & (lo < first + count)

        # ---- the STOREs in flight: a ring of slots, oldest at ``head`` (module docstring) -----
        # per slot: busy (issued, its DMA write or store path not done), failed (a DRAM error:
        # kept until reported), its instruction index, accumulator rows and DRAM span. DMA
        # write_done and the store path's done come in issue order: each walks the ring
        slots = STORES_IN_FLIGHT
        ring_bits = max(1, (slots - 1).bit_length())
        st_busy, st_failed = Signal(slots, name="st_busy"), Signal(slots, name="st_failed")
        st_dma_done = Signal(slots, name="st_dma_done")
        st_path_done = Signal(slots, name="st_path_done")
        span_bits = config.addr_width + 50
        st_pc = Array(Signal(32, name=f"st{i}_pc") for i in range(slots))
        st_row_lo = Array(Signal(25, name=f"st{i}_row_lo") for i in range(slots))
        st_row_hi = Array(Signal(25, name=f"st{i}_row_hi") for i in range(slots))
        st_lo = Array(Signal(span_bits, name=f"st{i}_lo") for i in range(slots))
        st_hi = Array(Signal(span_bits, name=f"st{i}_hi") for i in range(slots))
        head, dma_ptr, path_ptr = (Signal(ring_bits, name=n) for n in ("st_head", "st_dma_ptr",
                                                                       "st_path_ptr"))
        st_count = Signal(range(slots + 1), name="st_count")   # slots from head, in order

        def ring(index):
            return (index)[:ring_bits]

        with m.If(self.write_done):
            m.d.sync += [st_dma_done.bit_select(dma_ptr, 1).eq(1), dma_ptr.eq(ring(dma_ptr + 1))]
            with m.If(write_error):
                m.d.sync += st_failed.bit_select(dma_ptr, 1).eq(1)
        with m.If(self.store_done):
            m.d.sync += [st_path_done.bit_select(path_ptr, 1).eq(1),
                         path_ptr.eq(ring(path_ptr + 1))]
        for i in range(slots):
            dma_i = st_dma_done[i] | (self.write_done & (dma_ptr == i))
            path_i = st_path_done[i] | (self.store_done & (path_ptr == i))
            with m.If(st_busy[i] & dma_i & path_i):
                m.d.sync += st_busy[i].eq(0)
        # the head slot leaves once done without an error (a failed one stays: reported later)
        leave, issue_store = Signal(), Signal()
        m.d.comb += leave.eq((st_count != 0) & ~st_busy.bit_select(head, 1)
                             & ~st_failed.bit_select(head, 1))
        m.d.sync += st_count.eq(st_count + issue_store - leave)
        with m.If(leave):
            m.d.sync += head.eq(ring(head + 1))
        stores_busy = Signal()
        m.d.comb += stores_busy.eq(st_busy.any())
        # the oldest failed STORE's index (the one an error reports)
        oldest_failed = Signal(32)
        pick = 0
        for k in reversed(range(slots)):
            index = ring(head + k)
            pick = Mux(st_failed.bit_select(index, 1), st_pc[index], pick)
        m.d.comb += oldest_failed.eq(pick)

        # bytes of a DRAM row, rounded up to whole beats, and the DRAM span of the transfer
        shift = Signal(range(3))
        for name in FORMAT_BITS:
            with m.If(t.dram_format == FORMAT_BITS.index(name)):
                m.d.comb += shift.eq(FORMAT_BYTES[name].bit_length() - 1)
        row_bytes = Signal(len(self.read_cmd.payload.row_bytes))
        m.d.comb += row_bytes.eq(((t.cols << shift) + beat - 1) & ~(beat - 1))
        # the STOREs' DMA writes wait in a queue too: the DMA takes the next write only once
        # the bursts of the one before are issued, which its B responses pace
        m.submodules.write_queue = write_queue = SyncFIFOBuffered(
            width=len(self.write_cmd.payload.as_value()), depth=STORES_IN_FLIGHT)
        write_cmd = write_queue.w_stream
        written = Signal(TransferCommand(config.addr_width))
        m.d.comb += [write_cmd.payload.eq(written.as_value()),
                     self.write_cmd.valid.eq(write_queue.r_rdy),
                     write_queue.r_en.eq(self.write_cmd.ready),
                     self.write_cmd.payload.as_value().eq(write_queue.r_data)]
        # a LOAD of one copy with dram_stride 0 repeats its row: the DMA reads it once per
        # group and the loader writes it into every row (sim.accel_spec.read_rows)
        repeat = Signal()
        m.d.comb += repeat.eq((t.dram_stride == 0) & (decoder.copies == 1))
        for port in (self.read_cmd.payload, written):
            m.d.comb += [port.addr.eq(group_addr), port.stride.eq(t.dram_stride),
                         port.row_bytes.eq(row_bytes)]
        m.d.comb += [self.read_cmd.payload.rows.eq(Mux(repeat, 1, t.rows)),
                     written.rows.eq(t.rows)]
        # [span_lo, span_hi): registered at decode; a span past the top of the address space
        # (or a stride that walks backwards) counts as meeting every other one
        span_lo, span_hi = Signal(span_bits), Signal(span_bits)
        span_wraps = Signal()

        # ---- what the decoded instruction must wait for (module docstring) ------------------
        fence = decoder.header.fence
        is_load = decoder.opcode == Opcode.LOAD
        is_store = decoder.opcode == Opcode.STORE
        to_acc = is_load & (t.target == Target.ACC)
        touches = Signal()          # the GEMM in flight
        with m.If(is_load):
            with m.Switch(t.target):
                with m.Case(Target.A):
                    m.d.comb += touches.eq(meets(a_lo, a_hi, t.mem_row, span_rows))
                with m.Case(Target.B):
                    m.d.comb += touches.eq(meets(b_lo, b_hi, t.mem_row, span_rows))
                with m.Default():
                    m.d.comb += touches.eq(meets(c_lo, c_hi, t.mem_row, span_rows))
        with m.Elif(is_store):
            m.d.comb += touches.eq(meets(c_lo, c_hi, t.mem_row, span_rows))
        with m.Elif(decoder.opcode == Opcode.EPILOGUE):
            # its destination or source rows meet the GEMM's C rows, or it writes keep bits
            e = decoder.epilogue
            sourced = Cat(e.op == op for op in EPILOGUE_SOURCE_OPS).any()
            m.d.comb += touches.eq(e.write_mask | meets(c_lo, c_hi, e.dst_row, e.rows)
                                   | (sourced & meets(c_lo, c_hi, e.src_row,
                                                      Mux(e.broadcast, 1, e.rows))))
        gemm_hold = Signal()
        m.d.comb += gemm_hold.eq(in_flight & (fence | touches))
        # the STOREs in flight the instruction waits for: until done (``needs``: it reads
        # DRAM the store writes, or it is a STORE, a fence, DONE; a failed one is reported
        # there) or only until the store path has read the accumulators (``reads``: it writes
        # accumulator rows the store reads, or it takes the read port, an EPILOGUE)
        needs, reads = Signal(slots), Signal(slots)
        for i in range(slots):
            need, read = Signal(name=f"needs_store{i}"), Signal(name=f"reads_store{i}")
            with m.Switch(decoder.opcode):
                with m.Case(Opcode.LOAD):
                    m.d.comb += [
                        need.eq(span_wraps | ((span_lo < st_hi[i]) & (st_lo[i] < span_hi))),
                        read.eq(to_acc & meets(st_row_lo[i], st_row_hi[i], t.mem_row,
                                               span_rows))]
                with m.Case(Opcode.GEMM):
                    m.d.comb += read.eq(meets(st_row_lo[i], st_row_hi[i], g.c_row, g.m))
                with m.Case(Opcode.STORE):      # the STORE STORES_IN_FLIGHT before, if open
                    m.d.comb += need.eq((st_count == slots) & (head == i))
                with m.Case(Opcode.EPILOGUE):
                    m.d.comb += read.eq(1)
                with m.Default():               # DONE
                    m.d.comb += need.eq(1)
            m.d.comb += [needs[i].eq((st_busy[i] | st_failed[i]) & (need | fence)),
                         reads[i].eq(st_busy[i] & ~st_path_done[i] & read)]
        st_wait, st_fault = Signal(), Signal()
        m.d.comb += [st_wait.eq((needs & st_busy).any() | reads.any()),
                     st_fault.eq(~st_wait & (needs & st_failed).any())]
        # the LOADs in flight: another LOAD goes on behind them (unless fenced or the queue is
        # full), anything else waits for them and then ends the program if one failed
        needs_loads = ~is_load | (fence & ~later_group)     # a fence waits before group 0 only
        ld_wait, ld_fault = Signal(), Signal()
        m.d.comb += [ld_wait.eq((needs_loads & loads_busy)
                                | (is_load & ~issued_dma & (dma_pending == LOADS_IN_FLIGHT))),
                     ld_fault.eq(needs_loads & ~loads_busy & ld_failed)]
        hold = Signal()
        m.d.comb += hold.eq(gemm_hold | st_wait | st_fault | ld_wait | ld_fault)
        faulted = Signal()            # the wait ended in an earlier instruction's error
        m.d.comb += faulted.eq(st_fault | ld_fault)

        # the fault: a failed STORE is reported first (it comes first in program order), then
        # a failed LOAD (before the instruction that met the error)
        store_failed = st_failed.any()
        m.d.comb += [self.fault_index.eq(Mux(store_failed, oldest_failed,
                                             Mux(ld_failed, ld_pc, self.pc))),
                     self.fault_code.eq(Mux(store_failed | ld_failed, ErrorCode.DRAM_RESPONSE,
                                            code))]

        def quiesce():
            """Soft reset: idle once nothing is in flight."""
            m.next = "QUIESCE"

        load, store = Signal(LoadCommand), Signal(StoreCommand)
        # the STOREs' store-path commands wait in a queue (the store path takes one at a time)
        m.submodules.store_queue = store_queue = SyncFIFOBuffered(
            width=len(self.store_cmd.payload.as_value()), depth=STORES_IN_FLIGHT)
        store_cmd = store_queue.w_stream
        m.d.comb += [store_cmd.payload.eq(store.as_value()),
                     self.store_cmd.valid.eq(store_queue.r_rdy),
                     store_queue.r_en.eq(self.store_cmd.ready),
                     self.store_cmd.payload.as_value().eq(store_queue.r_data)]
        load_cmd = queue.w_stream           # the LOAD's command, into the queue
        m.d.comb += load_cmd.payload.eq(load.as_value())
        for name in ("saturate", "rows", "cols", "mem_row", "mem_col"):
            m.d.comb += getattr(store, name).eq(getattr(t, name))
        for name in ("saturate", "rows", "cols", "mem_col", "copy_cols"):
            m.d.comb += getattr(load, name).eq(getattr(t, name))
        m.d.comb += [load.mem_row.eq(group_row), load.copies.eq(decoder.copies),
                     load.repeat.eq(repeat)]
        m.d.comb += [load.target.as_value().eq(t.target),
                     load.dram_format.as_value().eq(t.dram_format),
                     load.operand_format.as_value().eq(t.operand_format),
                     store.dram_format.eq(t.dram_format)]
        for name, _ in data.Layout.cast(self.engine_cmd.payload.shape()):
            m.d.comb += getattr(self.engine_cmd.payload, name).eq(getattr(g, name))
        m.d.comb += self.epilogue_cmd.payload.as_value().eq(decoder.epilogue.as_value())

        def end(error=None):
            """Leave the instruction: fault (then finish), next instruction, or finish."""
            if error is not None:
                m.d.sync += code.eq(error)
                m.next = "FAULT"
            else:
                with m.If(abort):
                    quiesce()
                with m.Elif(decoder.opcode == Opcode.DONE):
                    m.next = "DRAIN"
                with m.Elif(self.pc + 1 == self.prog_len):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.sync += self.pc.eq(self.pc + 1)
                    if slot_bits:
                        # the next instruction is in the buffer unless it starts a block
                        with m.If((self.pc + 1)[:slot_bits] == 0):
                            m.next = "FETCH"
                        with m.Else():
                            m.next = "DECODE"
                    else:
                        m.next = "FETCH"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += self.engine_clear.eq(1)
                    m.d.sync += [self.pc.eq(0), abort.eq(0), self.busy.eq(1),
                                 st_failed.eq(0), head.eq(0), st_count.eq(0), dma_ptr.eq(0),
                                 path_ptr.eq(0), ld_failed.eq(0), requested.eq(0),
                                 answered.eq(0), fetched.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                # the block [pc, min(pc + FETCH_BLOCK, prog_len)): one read transfer per
                # instruction, issued back to back (the DMA pipelines them), so that each
                # instruction's DRAM error is its own (the DMA reports one per transfer); once
                # the reads of the LOADs before it are done (a failed one ends the program)
                left = Signal(32)
                count = Signal(range(FETCH_BLOCK + 1), name="fetch_count")
                m.d.comb += [left.eq(self.prog_len - self.pc),
                             count.eq(Mux(left >= FETCH_BLOCK, FETCH_BLOCK, left))]
                m.d.comb += [self.read_cmd.valid.eq(~abort & ~loading & ~ld_failed
                                                    & (requested != count)),
                             self.read_cmd.payload.addr.eq(
                                 self.prog_base + (self.pc + requested) * INSTRUCTION_BYTES),
                             self.read_cmd.payload.row_bytes.eq(INSTRUCTION_BYTES),
                             self.read_cmd.payload.rows.eq(1),
                             self.read_cmd.payload.stride.eq(0)]
                with m.If(self.read_cmd.valid & self.read_cmd.ready):
                    m.d.sync += requested.eq(requested + 1)
                # the beats, in the order of the transfers, into their slots and lanes
                fetch_done = Signal()
                m.d.comb += fetch_done.eq(self.read_done & ~loading)
                lane_bits = (beats_per_instruction - 1).bit_length()
                m.d.comb += [buffer_write.addr.eq(fetched[lane_bits:]),
                             buffer_write.data.eq(self.read_data.payload.data.replicate(
                                 beats_per_instruction))]
                with m.If(~loading):
                    m.d.comb += self.read_data.ready.eq(1)
                    with m.If(self.read_data.valid):
                        m.d.comb += buffer_write.en.eq(
                            1 << fetched[:lane_bits] if lane_bits else 1)
                        m.d.sync += fetched.eq(fetched + 1)
                with m.If(fetch_done):
                    m.d.sync += [bad.bit_select(answered, 1).eq(read_error),
                                 answered.eq(answered + 1)]
                # every transfer issued has completed (the last done may come this cycle)
                settled = Signal()
                m.d.comb += settled.eq(answered + fetch_done == requested)
                with m.If(~loading & ld_failed & (requested == 0)):
                    m.next = "FAULT"
                with m.Elif(settled & (abort | (requested == count))):
                    m.d.sync += [requested.eq(0), answered.eq(0), fetched.eq(0)]
                    with m.If(abort):
                        quiesce()
                    with m.Else():
                        m.next = "DECODE"
            with m.State("DECODE"):
                last_row = Signal(50)       # the last row's offset, over the groups too
                m.d.comb += last_row.eq((decoder.groups - 1) * t.group_stride
                                        + (t.rows - 1) * t.dram_stride)
                m.d.sync += [issued_dma.eq(0), issued_path.eq(0),
                             group_addr.eq(t.dram_addr), group_row.eq(t.mem_row),
                             groups_left.eq(decoder.groups - 1), later_group.eq(0),
                             span_lo.eq(t.dram_addr),
                             span_hi.eq(t.dram_addr + last_row + row_bytes),
                             span_wraps.eq((t.dram_addr + last_row + row_bytes)
                                           > (1 << config.addr_width))]
                with m.If(bad.bit_select(slot, 1)):
                    m.d.sync += code.eq(ErrorCode.DRAM_RESPONSE)
                    m.next = "FAULT"
                with m.Elif(decoder.error != ErrorCode.NONE):
                    m.d.sync += code.eq(decoder.error)
                    m.next = "FAULT"
                with m.Else():
                    with m.Switch(decoder.opcode):
                        with m.Case(Opcode.LOAD):
                            m.next = "LOAD"
                        with m.Case(Opcode.STORE):
                            m.next = "STORE"
                        with m.Case(Opcode.GEMM):
                            m.next = "GEMM"
                        with m.Case(Opcode.EPILOGUE):
                            m.next = "EPILOGUE"
                        with m.Default():          # DONE
                            end()
            for state, dma_cmd, path_cmd in (("LOAD", self.read_cmd, load_cmd),
                                             ("STORE", write_cmd, store_cmd)):
                with m.State(state):
                    # both parts are issued, or neither (a soft reset stops only the latter).
                    # The waits (``hold``) decide before either part is issued: once one is,
                    # the other follows, so that a part on offer stays on offer. (A fenced
                    # LOAD whose loader command went first used to see that command as a LOAD
                    # in flight and withdraw its DMA read: found by hw/formal/controller.py.)
                    none_issued = ~issued_dma & ~issued_path
                    stop = abort & none_issued
                    go = ~hold | ~none_issued
                    m.d.comb += [dma_cmd.valid.eq(~issued_dma & ~stop & go),
                                 path_cmd.valid.eq(~issued_path & ~stop & go)]
                    dma_issued = issued_dma | (dma_cmd.valid & dma_cmd.ready)
                    path_issued = issued_path | (path_cmd.valid & path_cmd.ready)
                    with m.If(dma_cmd.valid & dma_cmd.ready):
                        m.d.sync += issued_dma.eq(1)
                    with m.If(path_cmd.valid & path_cmd.ready):
                        m.d.sync += issued_path.eq(1)
                    if state == "LOAD":
                        m.d.comb += [dma_issue.eq(dma_cmd.valid & dma_cmd.ready),
                                     path_issue.eq(path_cmd.valid & path_cmd.ready)]
                    with m.If(stop):
                        quiesce()
                    with m.Elif(faulted & none_issued):
                        m.next = "FAULT"
                    if state == "LOAD":
                        # issued: the group runs on; the next group, or the next instruction
                        with m.Elif(dma_issued & path_issued):
                            with m.If(groups_left == 0):
                                end()
                            with m.Else():
                                m.d.sync += [issued_dma.eq(0), issued_path.eq(0),
                                             group_addr.eq(group_addr + t.group_stride),
                                             group_row.eq(group_row + decoder.group_rows),
                                             groups_left.eq(groups_left - 1),
                                             later_group.eq(1)]
                    else:
                        # issued: the store runs on in the background (module docstring)
                        with m.Elif(dma_issued & path_issued):
                            new = ring(head + st_count)
                            m.d.comb += issue_store.eq(1)
                            m.d.sync += [st_busy.bit_select(new, 1).eq(1),
                                         st_failed.bit_select(new, 1).eq(0),
                                         st_dma_done.bit_select(new, 1).eq(0),
                                         st_path_done.bit_select(new, 1).eq(0),
                                         st_pc[new].eq(self.pc), st_row_lo[new].eq(t.mem_row),
                                         st_row_hi[new].eq(t.mem_row + span_rows),
                                         st_lo[new].eq(Mux(span_wraps, 0, span_lo)),
                                         st_hi[new].eq(Mux(span_wraps, (1 << span_bits) - 1,
                                                           span_hi))]
                            end()
            with m.State("GEMM"):
                m.d.comb += self.engine_cmd.valid.eq(~abort & ~hold)
                with m.If(abort):
                    quiesce()
                with m.Elif(faulted):
                    m.next = "FAULT"
                with m.Elif(self.engine_cmd.valid & self.engine_cmd.ready):
                    m.next = "GEMM_CHECK"
            with m.State("EPILOGUE"):
                m.d.comb += [self.epilogue_cmd.valid.eq(~issued_path & ~abort & ~hold),
                             self.epilogue_active.eq(issued_path | ~hold)]
                with m.If(self.epilogue_cmd.valid & self.epilogue_cmd.ready):
                    m.d.sync += issued_path.eq(1)
                with m.If(abort & ~issued_path):
                    quiesce()
                with m.Elif(faulted & ~issued_path):
                    m.next = "FAULT"
                with m.Elif(issued_path & self.epilogue_done):
                    end()
            with m.State("GEMM_CHECK"):
                # the cycle after the accept: done now means rejected, else busy until done
                with m.If(status.done & status.error & ~abort):
                    m.d.sync += code.eq(Mux(status.error_code == EngineErrorCode.ZERO_SIZE,
                                            ErrorCode.BAD_FIELD, ErrorCode.SPAD_OVERFLOW))
                    m.next = "FAULT"
                with m.Else():
                    m.d.sync += in_flight.eq(status.busy)
                    end()
            with m.State("FAULT"):
                with m.If(stopping):
                    quiesce()
                with m.Elif(~in_flight & ~stores_busy & ~loads_busy):
                    m.d.comb += self.fault.eq(1)
                    m.next = "FINISH"
            with m.State("DRAIN"):
                with m.If(stopping):
                    quiesce()
                with m.Elif(~in_flight & ~stores_busy & ~loads_busy):
                    with m.If(store_failed | ld_failed):
                        m.next = "FAULT"
                    with m.Else():
                        m.next = "FINISH"
            with m.State("QUIESCE"):
                with m.If(~in_flight & ~stores_busy & ~loads_busy):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
            with m.State("FINISH"):
                # a soft reset seen by now wins: idle without the finish (no done, no IRQ)
                m.d.comb += self.finish.eq(~stopping)
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"
        phases = {"IDLE": Phase.IDLE, "FETCH": Phase.FETCH, "DECODE": Phase.DECODE,
                  "LOAD": Phase.LOAD, "STORE": Phase.STORE, "GEMM": Phase.GEMM,
                  "GEMM_CHECK": Phase.GEMM, "EPILOGUE": Phase.EPILOGUE}
        m.d.comb += self.phase.eq(Phase.END)
        for state, phase in phases.items():
            with m.If(fsm.ongoing(state)):
                m.d.comb += self.phase.eq(phase)
        return m
