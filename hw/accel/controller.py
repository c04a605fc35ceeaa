"""The accelerator's controller: fetches a program from DRAM and runs it, one instruction at a
time, on the DMA, the load and store paths and the GEMM engine.

Per instruction (program order, no overlap yet: the dependency bits are not used):

1. *fetch*: a DMA read of the 32 bytes at ``prog_base + 32 pc`` into the instruction register
   (``32 / beat`` beats); a DRAM error ends the program with ``DRAM_RESPONSE``;
2. *decode* (:class:`~hw.accel.decoder.InstructionDecoder`, one cycle): an instruction with an
   error ends the program with it;
3. *execute*:

   * ``LOAD``: the DMA read of ``rows`` rows of ``ceil(cols * bytes / beat)`` beats at
     ``dram_addr``, ``dram_stride`` apart, and the loader's command, together; the read data go
     to the loader; done when both the DMA (``read_done``) and the loader (``done``) are;
   * ``STORE``: the DMA write of the same shape and the storer's command; done when both are
     (``write_done``: every B response is in);
   * ``GEMM``: the engine's command; done at the engine's ``status.done``; a rejected command
     ends the program (the engine's ``ZERO_SIZE`` is ``BAD_FIELD``, its ``*_RANGE``
     ``SPAD_OVERFLOW``);
   * ``DONE`` ends the program;

   a DMA error during a transfer (its pulse comes with the transfer's done) ends the program
   with ``DRAM_RESPONSE`` once the transfer and the path are done;
4. the next instruction, or the end after ``prog_len``.

An error pulses ``fault`` (code, ``pc``) and, the cycle after, ``finish``; a normal end pulses
``finish``. ``busy`` is high from the cycle after ``start`` to the ``finish`` cycle included.
``soft_reset`` stops the program at the next point where nothing is in flight: a command not
yet issued is dropped, a transfer or GEMM that was issued runs to its end (an AXI manager
cannot abandon a burst), then the controller is idle (``busy`` low, no ``finish``).
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.accel.decoder import InstructionDecoder
from hw.accel.dma import ErrorCode, ReadBeat, TransferCommand
from hw.accel.loader import LoadCommand
from hw.accel.storer import StoreCommand
from hw.engine.commands import ErrorCode as EngineErrorCode
from hw.engine.commands import Status, command_layout
from sim.accel_spec import FORMAT_BITS, FORMAT_BYTES, INSTRUCTION_BYTES, Opcode
from sim.config import AccelConfig

__all__ = ["Controller"]


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
            "engine_status": In(Status),
            "engine_clear": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        beat = config.beat_bytes
        m.submodules.decoder = decoder = InstructionDecoder(config)

        instruction = Signal(8 * INSTRUCTION_BYTES)
        beats_per_instruction = INSTRUCTION_BYTES // beat
        fetched = Signal(range(beats_per_instruction + 1))
        m.d.comb += decoder.instruction.eq(instruction)
        t, g = decoder.transfer, decoder.gemm

        abort = Signal()              # soft reset seen: stop at the next quiet point
        dma_failed = Signal()         # a DRAM error in the current transfer
        path_done, dma_done = Signal(), Signal()
        issued_dma, issued_path = Signal(), Signal()
        code = Signal(ErrorCode)

        m.d.comb += self.fault_index.eq(self.pc)
        with m.If(self.soft_reset):
            m.d.sync += abort.eq(1)

        # bytes of a DRAM row, rounded up to whole beats
        shift = Signal(range(3))
        for name in FORMAT_BITS:
            with m.If(t.dram_format == FORMAT_BITS.index(name)):
                m.d.comb += shift.eq(FORMAT_BYTES[name].bit_length() - 1)
        row_bytes = Signal(len(self.read_cmd.payload.row_bytes))
        m.d.comb += row_bytes.eq(((t.cols << shift) + beat - 1) & ~(beat - 1))
        for port in (self.read_cmd, self.write_cmd):
            m.d.comb += [port.payload.addr.eq(t.dram_addr), port.payload.stride.eq(t.dram_stride),
                         port.payload.rows.eq(t.rows), port.payload.row_bytes.eq(row_bytes)]

        load, store = self.load_cmd.payload, self.store_cmd.payload
        for name in ("saturate", "rows", "cols", "mem_row", "mem_col"):
            m.d.comb += [getattr(load, name).eq(getattr(t, name)),
                         getattr(store, name).eq(getattr(t, name))]
        m.d.comb += [load.target.as_value().eq(t.target),
                     load.dram_format.as_value().eq(t.dram_format),
                     load.operand_format.as_value().eq(t.operand_format),
                     store.dram_format.eq(t.dram_format)]
        for name, _ in data.Layout.cast(self.engine_cmd.payload.shape()):
            m.d.comb += getattr(self.engine_cmd.payload, name).eq(getattr(g, name))

        # DMA status of the transfer in flight (the error pulse comes with its done)
        with m.If(self.dma_error):
            m.d.sync += dma_failed.eq(1)

        def end(error=None):
            """Leave the instruction: fault (then finish), next instruction, or finish."""
            if error is not None:
                m.d.sync += code.eq(error)
                m.next = "FAULT"
            else:
                with m.If(abort):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
                with m.Elif(decoder.opcode == Opcode.DONE):
                    m.next = "FINISH"
                with m.Elif(self.pc + 1 == self.prog_len):
                    m.next = "FINISH"
                with m.Else():
                    m.d.sync += self.pc.eq(self.pc + 1)
                    m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += self.engine_clear.eq(1)
                    m.d.sync += [self.pc.eq(0), abort.eq(0), self.busy.eq(1)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [self.read_cmd.valid.eq(~abort),
                             self.read_cmd.payload.addr.eq(
                                 self.prog_base + self.pc * INSTRUCTION_BYTES),
                             self.read_cmd.payload.row_bytes.eq(INSTRUCTION_BYTES),
                             self.read_cmd.payload.rows.eq(1),
                             self.read_cmd.payload.stride.eq(0)]
                with m.If(abort):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
                with m.Elif(self.read_cmd.ready):
                    m.d.sync += [fetched.eq(0), dma_failed.eq(0)]
                    m.next = "FETCH_DATA"
            with m.State("FETCH_DATA"):
                m.d.comb += self.read_data.ready.eq(1)
                with m.If(self.read_data.valid):
                    m.d.sync += [instruction.word_select(fetched, config.data_width).eq(
                                     self.read_data.payload.data),
                                 fetched.eq(fetched + 1)]
                with m.If(self.read_done):
                    with m.If(abort):
                        m.d.sync += self.busy.eq(0)
                        m.next = "IDLE"
                    with m.Elif(dma_failed | self.dma_error):
                        m.d.sync += code.eq(ErrorCode.DRAM_RESPONSE)
                        m.next = "FAULT"
                    with m.Else():
                        m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += [issued_dma.eq(0), issued_path.eq(0), dma_done.eq(0),
                             path_done.eq(0), dma_failed.eq(0)]
                with m.If(decoder.error != ErrorCode.NONE):
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
                        with m.Default():          # DONE
                            end()
            for state, dma_cmd, path_cmd, done_in in (
                    ("LOAD", self.read_cmd, self.load_cmd, self.read_done),
                    ("STORE", self.write_cmd, self.store_cmd, self.write_done)):
                with m.State(state):
                    m.d.comb += [dma_cmd.valid.eq(~issued_dma & ~abort),
                                 path_cmd.valid.eq(~issued_path & ~abort)]
                    if state == "LOAD":      # the DMA's read data go on to the loader
                        m.d.comb += [self.load_data.valid.eq(self.read_data.valid),
                                     self.load_data.payload.eq(self.read_data.payload),
                                     self.read_data.ready.eq(self.load_data.ready)]
                    with m.If(dma_cmd.valid & dma_cmd.ready):
                        m.d.sync += issued_dma.eq(1)
                    with m.If(path_cmd.valid & path_cmd.ready):
                        m.d.sync += issued_path.eq(1)
                    with m.If(done_in):
                        m.d.sync += dma_done.eq(1)
                    with m.If(self.load_done if state == "LOAD" else self.store_done):
                        m.d.sync += path_done.eq(1)
                    none_issued = ~issued_dma & ~issued_path
                    with m.If(abort & none_issued):
                        m.d.sync += self.busy.eq(0)
                        m.next = "IDLE"
                    with m.Elif(issued_dma & issued_path & (dma_done | done_in) &
                                (path_done | (self.load_done if state == "LOAD"
                                              else self.store_done))):
                        with m.If(dma_failed | self.dma_error):
                            with m.If(abort):
                                m.d.sync += self.busy.eq(0)
                                m.next = "IDLE"
                            with m.Else():
                                m.d.sync += code.eq(ErrorCode.DRAM_RESPONSE)
                                m.next = "FAULT"
                        with m.Else():
                            end()
            with m.State("GEMM"):
                m.d.comb += self.engine_cmd.valid.eq(~abort)
                with m.If(abort):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
                with m.Elif(self.engine_cmd.ready):
                    m.next = "GEMM_WAIT"
            with m.State("GEMM_WAIT"):
                status = self.engine_status
                with m.If(status.done):
                    with m.If(status.error & ~abort):
                        m.d.sync += code.eq(Mux(status.error_code == EngineErrorCode.ZERO_SIZE,
                                                ErrorCode.BAD_FIELD, ErrorCode.SPAD_OVERFLOW))
                        m.next = "FAULT"
                    with m.Else():
                        end()
            with m.State("FAULT"):
                m.d.comb += [self.fault.eq(1), self.fault_code.eq(code)]
                m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += self.finish.eq(1)
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"
        return m
