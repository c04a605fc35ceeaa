"""Golden model of the accelerator's programs (``hw/accel``): what a program leaves in DRAM, which
error it stops with and at which instruction, and how many bytes it moves.

:class:`AcceleratorModel` holds the state the controller's instructions act on, as the engine
stores it: the A and B scratchpads (operand bit patterns and their format tags), the
accumulator memory (FP32 bit patterns) and, with ``EngineConfig.output_mask``, the engine's two
keep planes. :meth:`AcceleratorModel.run` executes a program from a DRAM image bit for bit as
``docs/accel.md`` ("Programs") defines it, in program order (the header's ``fence`` bit changes
no result and is ignored). The hardware follows this model; the rules below are the
definition where the table of the document leaves a choice.

Instructions (fields: :data:`sim.accel_spec.TRANSFER_FIELDS`, :data:`~sim.accel_spec.GEMM_FIELDS`,
:data:`~sim.accel_spec.EPILOGUE_FIELDS`)
------------------------------------------------------------------------------------------------
* ``LOAD``: row ``r`` of ``cols`` elements at ``(dram_addr + r * dram_stride) mod
  2**addr_width`` into the target at ``(mem_row + r, mem_col + c)``. A, B: ``operand_format``
  must be one the memory's PEs take (``a_formats`` / ``b_formats``) and ``dram_format`` that
  same format (bits copied, NaN payloads kept) or ``fp32`` (:func:`sim.numerics.convert`: one
  rounding to nearest even, ``saturate`` clamps overflow and infinities to the largest finite
  value, every NaN becomes the canonical NaN); the element's tag is the operand format. ACC:
  ``dram_format`` must be ``fp32``, the words are copied; ``operand_format`` and ``saturate``
  are ignored (so is ``saturate`` for a copy). With ``copies`` ``K > 1`` (0 and 1: one,
  :func:`sim.accel_spec.copy_count`) the rows are a sliding window: memory row ``mem_row + i``
  gets DRAM row ``i + k`` at column ``mem_col + k * copy_cols`` for every ``k < K`` and ``i <
  R = rows - K + 1`` (:func:`~sim.accel_spec.group_rows`). With ``groups`` ``G > 1`` (0 and 1:
  one group, :func:`~sim.accel_spec.group_count`) this repeats for ``g = 0 .. G - 1``: group
  ``g``'s rows at ``dram_addr + g * group_stride`` (``mod 2**addr_width``), into ``mem_row + g
  * R``; the instruction reads ``G * rows`` DRAM rows and writes ``G * R`` memory rows
  (``group_stride`` is ignored for one group, ``copy_cols`` for one copy). A ``LOAD`` of one
  copy with ``dram_stride = 0`` reads each group's row once (``G`` DRAM rows, counted once in
  ``bytes_read``) and writes it into all its memory rows (:func:`sim.accel_spec.read_rows`).
* ``STORE``: ``target`` must be ``ACC`` (the only memory a store reads); the region is
  converted to ``dram_format``, one of the engine's ``out_formats``, exactly as the engine's
  host read (:func:`sim.numerics.convert` with ``saturate``; ``fp32``: the words as they are);
  ``operand_format`` is ignored. Only the ``cols * bytes`` bytes of each row change.
* ``GEMM``: the engine command :class:`sim.engine_model.EngineCommand` of the fields, checked by
  :func:`sim.engine_model.validate`, computed as the engine does: :func:`sim.gemm.gemm` of the
  stored bits with their tags (``accumulate``: starting from the accumulator memory's words),
  or :func:`sim.sparsity.gemm_skip` for an engine with ``skip_zeros`` (zero products skipped)
  or a command with an output mask (its keep mask is the AND of the selected planes read at
  ``(c_row + i, c_col + j)``; masked outputs are ``+0``). The mask flags are ``BAD_FIELD`` on
  an engine without ``output_mask``.
* ``EPILOGUE`` (fields :data:`~sim.accel_spec.EPILOGUE_FIELDS`): the elementwise op ``op``
  (:class:`~sim.accel_spec.EpilogueOp`, functions of :mod:`sim.epilogue`) on the ``rows x cols``
  accumulator region at ``(dst_row, dst_col)``, in place, all elements from the values before
  the instruction. ``ADD``, ``RELU_BACKWARD`` and ``SGD`` read the source region of the same
  shape at ``(src_row, src_col)``, or with ``broadcast`` its row ``src_row`` for every row;
  the other ops ignore the source fields and ``broadcast``. ``SCALE``, ``DROPOUT``: factor
  ``imm0``; ``SGD``: ``lr = imm0``, ``wd = imm1`` (FP32 patterns). ``DROPOUT``: element
  ``(r, c)`` of the region takes bit ``(r, c)`` of :func:`sim.epilogue.dropout_keep` ``(rows,
  cols, seed, threshold)``, the mask the engine's dropout writer puts at ``(dst_row + r,
  dst_col + c)`` of its plane for the command ``(seed, threshold, m=rows, n=cols,
  row=dst_row, col=dst_col)``. ``CAST``: ``cast_format`` (a :data:`~sim.accel_spec.FORMAT_BITS`
  code, one of the engine's ``out_formats``) and ``saturate``. ``RELU`` with ``write_mask``
  also writes its keep bits into ``keep_host`` at the region. ``DROPOUT_PLANE`` writes the
  ``DROPOUT`` mask of its fields into ``keep_dropout`` at the region and changes no
  accumulator. Unused fields are ignored.
* ``DONE`` ends the program; so does the end of ``PROG_LEN`` instructions (no error).

Errors, checked in this order (the first that applies is the instruction's error)
--------------------------------------------------------------------------------
Fetch: ``DRAM_RESPONSE`` if a beat of the instruction's 32 bytes answered with an error when
its block was fetched (below, "Instruction fetch"); then ``ILLEGAL_OPCODE`` for an opcode
:class:`~sim.accel_spec.Opcode` does not define.

``LOAD`` / ``STORE``:

1. ``BAD_FIELD``: a target that is not A, B, ACC (``STORE``: not ACC); a format code outside
   :data:`~sim.accel_spec.FORMAT_BITS`; a format the target does not take (above);
   ``rows`` or ``cols`` zero; ``dram_addr`` not below ``2 ** addr_width``; a ``STORE`` with
   more than one group or copy; ``K > 1`` with ``rows < K`` or ``copy_cols < cols`` (copies
   that would overlap).
2. ``MISALIGNED``: ``dram_addr`` or ``dram_stride`` (or, for ``G > 1``, ``group_stride``) not a
   multiple of the beat.
3. ``SPAD_OVERFLOW``: ``mem_row + G * R`` above the memory's rows or ``mem_col + (K - 1) *
   copy_cols + cols`` above its width (A, B: ``a_rows`` / ``b_rows`` x ``spad_width``; ACC:
   ``acc_rows`` x ``acc_width``).
4. ``DRAM_RESPONSE``: a beat of the transfer answers with an error (below).

``GEMM``: ``BAD_FIELD`` (a mask flag without ``output_mask``, then a zero size), then
``SPAD_OVERFLOW`` (the A, then B, then C region outside its memory; the sums are not truncated
to 16 bits).

``EPILOGUE``:

1. ``BAD_FIELD``: an ``op`` :class:`~sim.accel_spec.EpilogueOp` does not define; ``CAST`` with
   a ``cast_format`` that is not one of the engine's ``out_formats``, any other op on an engine
   without ``fp32`` among them (the engine reads FP32 words only so); ``rows`` or ``cols``
   zero; ``write_mask`` with an op other than ``RELU`` or on an engine without
   ``output_mask``; ``DROPOUT_PLANE`` on an engine without ``output_mask``; ``DROPOUT`` and
   ``DROPOUT_PLANE`` with ``seed`` 0, ``threshold`` above 256 or ``cols * 8`` above
   :data:`sim.lfsr_spec.ROW_STRIDE`; for the ops with a source, a source region that overlaps
   the destination region without being the same region (:func:`epilogue_overlap`).
2. ``SPAD_OVERFLOW``: the destination region, then the source region (one row with
   ``broadcast``), outside the accumulator memory (sums not truncated).

An ``EPILOGUE`` moves no DRAM bytes and counts no products.

DRAM
----
The DRAM image is a ``bytearray`` (or writable ``memoryview``) whose index is the bus address.
Every transfer moves whole beats (``config.beat_bytes``), as the DMA does: a row of ``cols *
bytes`` bytes is ``ceil(cols * bytes / beat)`` beats from its (beat-aligned) start; a load drops
the bytes past ``cols``, a store writes them with their strobes off (they do not change). A beat
*answers with an error* (SLVERR or DECERR, both ``DRAM_RESPONSE``) if any byte of its aligned span
lies at or beyond ``len(dram)`` or in one of the ``dram_errors`` ranges, whatever its strobes.
A transfer with an error still runs to its end, as the DMA's does. A faulting ``STORE`` writes
every beat that answered without error and leaves the faulting beats' bytes as they were; after
a faulting ``LOAD`` the contents of its target region are undefined (the model leaves them
unchanged; a bench must not compare them). Nothing else changes in either case.

A ``STORE`` runs in the background (the controller's interlock, ``docs/accel.md``
"Controller"; up to :data:`~sim.accel_spec.STORES_IN_FLIGHT` at once), so its DRAM error is
reported at the first later instruction that waits for it to complete (:func:`waits_for_store`:
a ``LOAD`` whose DRAM span meets the store's, any instruction with ``fence``, ``DONE``, the end
of the program, and the ``STORE`` that comes ``STORES_IN_FLIGHT`` ``STORE`` instructions after
it), with the index of the oldest ``STORE`` that failed; that instruction was fetched but does
not run, and the instructions between ran (the ``STORE`` instructions among them wrote their
bytes). Any other error met meanwhile also ends the program with that store's error (it comes
first in program order). An ``EPILOGUE``, a ``LOAD`` into accumulator rows a store reads and a
``GEMM`` whose ``C`` rows meet them wait only until the store has read its rows: no error is
reported there.

Loads in flight
---------------
The controller lets up to :data:`~sim.accel_spec.LOADS_IN_FLIGHT` ``LOAD`` instructions run
at once (a ``LOAD`` is issued and the next instruction starts; any instruction other than a
``LOAD``, a ``LOAD`` with ``fence``, a block fetch and the end of the program wait until every
``LOAD`` before them is done), so it learns of a ``LOAD``'s DRAM error only after it may have
issued the ``LOAD`` instructions behind it. The rule, independent of timing: after a ``LOAD``
whose read answers with an error, the instructions after it in the same fetched block run as
long as each is a ``LOAD`` without ``fence``, without an error of checks 1-3 and not waiting
for a ``STORE`` that failed (:func:`waits_for_store`); they move their bytes (a later failing
one too) and write their regions (undefined after the fault, like the failing one's). The
program ends at the first instruction that does not run in this way, or at the block's end
(the next block is not fetched), with ``DRAM_RESPONSE`` and the index of the first failing
``LOAD`` (or of a failed ``STORE`` before it: first in program order).

Counters: ``bytes_read`` / ``bytes_written`` count every beat moved, the faulting ones and a
row's partly used last beat included (the DMA's counters): 32 per instruction fetched (every
instruction of every block read, below), ``G * rows * ceil(cols * bytes / beat) * beat`` per
``LOAD`` / ``STORE`` that reaches the bus (an instruction rejected by checks 1-3 moves
nothing). ``products`` sums ``m * n * k`` of the GEMMs executed.

Instruction fetch (blocks)
--------------------------
Instruction ``i`` is the 32 bytes at ``(prog_base + 32 i) mod 2 ** addr_width``. The
controller holds an instruction buffer of :data:`~sim.accel_spec.FETCH_BLOCK` instructions and
fetches in blocks: when the next instruction to run is not in the buffer (instruction 0, and
every later ``i`` that is a multiple of ``FETCH_BLOCK``, since instructions run in order), it
reads the block ``[i, min(i + FETCH_BLOCK, prog_len))`` whole, before instruction ``i``
executes and after the instruction before it has ended (a ``GEMM`` or ``STORE`` may still be in
flight: a fetch waits for neither). So:

* every instruction of a fetched block is read and counted (32 bytes each in ``bytes_read``),
  also those after a ``DONE`` or after an error in the same block, which never run; nothing
  past ``prog_len`` is read. A program of ``n`` instructions that reaches its last one (every
  compiled program: it ends with ``DONE``) reads ``32 n`` instruction bytes, as before blocks;
* a beat that answers with an error faults only the instructions whose bytes it holds: each
  with ``DRAM_RESPONSE`` and its own index, when the program reaches it; the instructions of the
  block before it run normally (the hardware knows each instruction's outcome, so nothing is
  refetched);
* the buffer holds the bytes as they were when the block was read: a program that writes over
  its own instructions is undefined (the model, like the hardware, runs the bytes of the block
  read, but no bench may rely on it).

Pure numpy: no Amaranth here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .accel_spec import (EPILOGUE_DROPOUT_BITS, EPILOGUE_MASK_OPS, EPILOGUE_MAX_THRESHOLD,
                         EPILOGUE_SOURCE_OPS,
                         FETCH_BLOCK, FIELDS, FORMAT_BITS, FORMAT_BYTES, INSTRUCTION_BYTES,
                         STORES_IN_FLIGHT,
                         AccelError, EpilogueOp, Opcode, Target, copy_count, decode, encode,
                         group_count, group_rows, read_rows)
from .config import AccelConfig
from .engine_model import EngineCommand, EngineError, command_cycles, validate
from .epilogue import apply as apply_epilogue
from .epilogue import dropout_keep
from .lfsr_spec import ROW_STRIDE
from .formats import FORMATS, FP32
from .gemm import TAG_OF, gemm
from .numerics import convert
from .skip_model import SparseGemm
from .skip_timing import computed_products
from .skip_timing import engine_cycles as skip_engine_cycles
from .sparsity import gemm_skip

__all__ = ["AcceleratorModel", "RunResult", "InstructionRecord", "assemble", "write_matrix",
           "read_matrix", "instruction_error", "waits_for_store", "epilogue_overlap",
           "transfer_span"]

_ENGINE_ERRORS = {EngineError.ZERO_SIZE: AccelError.BAD_FIELD,
                  EngineError.A_RANGE: AccelError.SPAD_OVERFLOW,
                  EngineError.B_RANGE: AccelError.SPAD_OVERFLOW,
                  EngineError.C_RANGE: AccelError.SPAD_OVERFLOW}
_PROG_LEN_BITS = 32


@dataclasses.dataclass(frozen=True)
class InstructionRecord:
    """One fetched instruction of a run.

    ``opcode`` is the raw value (an :class:`~sim.accel_spec.Opcode` when defined, ``None`` if
    the fetch itself failed), ``fields`` those of :func:`sim.accel_spec.decode`; the counts
    are this instruction's, its fetch included.
    """
    index: int
    opcode: int | None
    fields: dict
    error: AccelError
    bytes_read: int
    bytes_written: int
    products: int


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a program did.

    Attributes
    ----------
    error : AccelError
        ``NONE``, or the error the program stopped with (``STATUS.error_code``).
    error_index : int or None
        ``ERROR_INDEX``: the faulting instruction (0 for ``EMPTY_PROGRAM`` and a misaligned
        base, which the register block raises at start); ``None`` without an error.
    executed : int
        Instructions completed without an error (``DONE`` included).
    bytes_read, bytes_written : int
        DMA bytes in whole beats, fetches included (the performance counters).
    products : int
        ``m * n * k`` summed over the GEMMs executed.
    engine_cycles : int
        The engine's cycle model from accept to ``done`` summed over the GEMMs executed: the
        dense timing (:func:`sim.engine_model.command_cycles`), or on an engine with a
        lookahead window the window's timing with the operands' zeros as stored and the
        command's output mask (:func:`sim.skip_timing.engine_cycles`). The engine alone,
        with the data the program gave it; the hardware's ``engine_busy_cycles`` counter
        counts one cycle less per command (the accept cycle).
    products_skipped : int
        The ``products_skipped`` counter: ``products`` minus the products the engine's PEs
        accumulate (:func:`sim.skip_timing.computed_products` of each GEMM, with the
        operands' zeros as stored and the command's output mask); 0 on an engine without
        the zero gate, which computes every product.
    instructions : list of InstructionRecord
        Every instruction the program reached, in order (the faulting one last); those of
        the last block fetched after the end (``DONE``, an error) are not listed, but their
        fetch counts in ``bytes_read``.
    """
    error: AccelError
    error_index: int | None
    executed: int
    bytes_read: int
    bytes_written: int
    products: int
    instructions: list
    engine_cycles: int = 0
    products_skipped: int = 0


class _Dram:
    """The DRAM image as the DMA sees it: beats, address wrap and error ranges."""

    def __init__(self, dram, errors, beat: int, addr_width: int):
        self.bytes = _dram_array(dram)
        self.beat = beat
        self.top = 1 << addr_width
        self.errors = _error_ranges(errors, self.top)

    def rows(self, address: int, stride: int, rows: int, row_bytes: int):
        """``(addresses, faulty)``: the byte addresses of each row's whole beats, shape
        ``(rows, beats * beat)``, and which beats answer with an error, ``(rows, beats)``."""
        beats = -(-row_bytes // self.beat)
        starts = np.uint64(address) + np.arange(rows, dtype=np.uint64) * np.uint64(stride)
        addresses = starts[:, None] + np.arange(beats * self.beat, dtype=np.uint64)
        if self.top < 1 << 64:      # uint64 wraps by itself at 2**64
            addresses &= np.uint64(self.top - 1)
        bad = addresses >= np.uint64(len(self.bytes))
        for start, end in self.errors:
            inside = addresses >= np.uint64(start)
            if end < self.top:
                inside &= addresses < np.uint64(end)
            bad |= inside
        return addresses, bad.reshape(rows, beats, self.beat).any(axis=2)

    def read(self, addresses) -> np.ndarray:
        """Bytes at addresses that all lie inside the image."""
        return self.bytes[addresses.astype(np.intp)]


class AcceleratorModel:
    """Bit-exact model of the accelerator running programs (module docstring: the rules).

    Parameters
    ----------
    config : AccelConfig

    Attributes
    ----------
    a_bits, b_bits : numpy.ndarray of uint16, shape (a_rows / b_rows, spad_width)
        Operand bit patterns of the A and B scratchpads (FP8 codes in the low byte).
    a_tags, b_tags : numpy.ndarray of uint8, same shapes
        Their format tags (:data:`sim.gemm.TAG_OF`).
    acc : numpy.ndarray of uint32, shape (acc_rows, acc_width)
        The accumulator memory's FP32 bit patterns.
    keep_host, keep_dropout : numpy.ndarray of bool, shape (acc_rows, acc_width), or None
        The engine's keep planes (``output_mask`` only). ``EPILOGUE`` ``RELU`` with
        ``write_mask`` writes ``keep_host``; ``EPILOGUE`` ``DROPOUT_PLANE`` writes
        ``keep_dropout``, as the engine's dropout writer does.

    All of it is zero after construction and :meth:`reset`, as the hardware's memories, and
    persists from one :meth:`run` to the next.
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        self.reset()

    def reset(self):
        """All memories to zero (their power-on contents)."""
        engine = self.config.engine
        self.a_bits = np.zeros((engine.a_rows, engine.spad_width), dtype=np.uint16)
        self.a_tags = np.zeros((engine.a_rows, engine.spad_width), dtype=np.uint8)
        self.b_bits = np.zeros((engine.b_rows, engine.spad_width), dtype=np.uint16)
        self.b_tags = np.zeros((engine.b_rows, engine.spad_width), dtype=np.uint8)
        self.acc = np.zeros((engine.acc_rows, engine.acc_width), dtype=np.uint32)
        planes = engine.output_mask
        shape = (engine.acc_rows, engine.acc_width)
        self.keep_host = np.zeros(shape, dtype=bool) if planes else None
        self.keep_dropout = np.zeros(shape, dtype=bool) if planes else None

    # -- programs ------------------------------------------------------------------------------

    def run(self, dram, prog_base: int, prog_len: int, *, dram_errors=None) -> RunResult:
        """Run the ``prog_len`` instructions at ``prog_base`` on ``dram`` (changed in place).

        Parameters
        ----------
        dram : bytearray or writable memoryview
            The DRAM image; index = bus address.
        prog_base, prog_len : int
            The ``PROG_BASE`` and ``PROG_LEN`` registers (``prog_len == 0``: ``EMPTY_PROGRAM``,
            then a base that is not 32-byte aligned: ``MISALIGNED``, both at index 0 and
            without any bus activity, as the register block raises them).
        dram_errors : iterable of (start, end), optional
            Byte ranges ``[start, end)`` whose beats answer SLVERR.

        Returns
        -------
        RunResult
        """
        cfg = self.config
        memory = _Dram(dram, dram_errors, cfg.beat_bytes, cfg.addr_width)
        _check_int("prog_base", prog_base, (1 << cfg.addr_width) - 1)
        _check_int("prog_len", prog_len, (1 << _PROG_LEN_BITS) - 1)
        if prog_len == 0:
            return RunResult(AccelError.EMPTY_PROGRAM, 0, 0, 0, 0, 0, [])
        if prog_base % INSTRUCTION_BYTES:
            return RunResult(AccelError.MISALIGNED, 0, 0, 0, 0, 0, [])
        records = []
        self._engine_cycles = 0     # the GEMMs' cycle model, added by _gemm
        self._products_skipped = 0  # and the products their PEs did not compute
        stores = []             # the STOREs in flight, oldest first: [index, failed, fields]
        issued = []             # every STORE run, in order (the same lists)
        stopped = None          # (error, index) once the program ends with an error
        executed = 0            # instructions that ran without an error
        fetched_bytes = 0       # every block's bytes: instructions fetched but never run too
        block = None            # the instruction buffer: (first index, words, faulty)
        failed_load = None      # the first LOAD whose read failed ("Loads in flight")
        for index in range(prog_len):
            if index % FETCH_BLOCK == 0:        # the next instruction is not in the buffer
                if failed_load is not None:     # a fetch waits for the loads: the fault
                    break
                block = self._fetch_block(memory, prog_base, index, prog_len)
                fetched_bytes += len(block[1]) * INSTRUCTION_BYTES
            word, faulty = block[1][index - block[0]], block[2][index - block[0]]
            fetched = INSTRUCTION_BYTES
            if faulty:
                if failed_load is None:
                    records.append(InstructionRecord(index, None, {}, AccelError.DRAM_RESPONSE,
                                                     fetched, 0, 0))
                    stopped = (AccelError.DRAM_RESPONSE, index)
                break
            opcode, fields = decode(word)
            if failed_load is not None and not _runs_behind_loads(
                    self.config, opcode, fields, stores):
                break
            if opcode in Opcode._value2member_map_:
                waited = _waited_stores(self.config, Opcode(opcode), fields, stores, issued)
                if any(s[1] for s in waited):   # a failed store is reported here; this one
                    records.append(InstructionRecord(    # does not run
                        index, Opcode(opcode), fields, AccelError.NONE, fetched, 0, 0))
                    break
                stores = [s for s in stores if not any(s is w for w in waited)]
            if opcode not in Opcode._value2member_map_:
                error, moved = AccelError.ILLEGAL_OPCODE, (0, 0, 0)
            else:
                opcode = Opcode(opcode)
                error, moved = self._execute(opcode, fields, memory)
            read, written, products = moved
            records.append(InstructionRecord(index, opcode, fields, error, fetched + read,
                                             written, products))
            executed += error is AccelError.NONE
            if opcode == Opcode.STORE and error in (AccelError.NONE, AccelError.DRAM_RESPONSE):
                entry = [index, error is AccelError.DRAM_RESPONSE, fields]
                stores.append(entry)
                issued.append(entry)
            elif opcode == Opcode.LOAD and error is AccelError.DRAM_RESPONSE:
                if failed_load is None:         # the LOADs right behind it still run
                    failed_load = index
                    stopped = (error, index)
            elif error is not AccelError.NONE:
                stopped = (error, index)
                break
            if opcode == Opcode.DONE:
                break
        failed = [s[0] for s in stores if s[1]]
        if failed:      # the oldest failed store wins (first in program order)
            stopped = (AccelError.DRAM_RESPONSE, failed[0])
        error, error_index = stopped if stopped is not None else (AccelError.NONE, None)
        # the records count their own fetch; the block's instructions never reached add theirs
        unreached = fetched_bytes - INSTRUCTION_BYTES * len(records)
        return RunResult(error=error, error_index=error_index, executed=executed,
                         bytes_read=unreached + sum(r.bytes_read for r in records),
                         bytes_written=sum(r.bytes_written for r in records),
                         products=sum(r.products for r in records), instructions=records,
                         engine_cycles=self._engine_cycles,
                         products_skipped=self._products_skipped)

    @staticmethod
    def _fetch_block(memory, prog_base: int, first: int, prog_len: int):
        """The instruction buffer after the fetch of the block that starts at instruction
        ``first``: ``(first, words, faulty)``, the 32-byte words of instructions ``[first,
        min(first + FETCH_BLOCK, prog_len))`` and, per instruction, whether a beat of its bytes
        answered with an error (module docstring, "Instruction fetch")."""
        count = min(FETCH_BLOCK, prog_len - first)
        address = (prog_base + INSTRUCTION_BYTES * first) % memory.top
        addresses, faulty = memory.rows(address, 0, 1, count * INSTRUCTION_BYTES)
        addresses = addresses.reshape(count, INSTRUCTION_BYTES)
        faulty = faulty.reshape(count, INSTRUCTION_BYTES // memory.beat).any(axis=1)
        words = [None if bad else memory.read(row).tobytes()
                 for row, bad in zip(addresses, faulty)]
        return first, words, faulty

    def _execute(self, opcode, fields, memory) -> tuple[AccelError, tuple[int, int, int]]:
        """``(error, (bytes read, bytes written, products))`` of one instruction."""
        if opcode == Opcode.LOAD:
            return self._load(fields, memory)
        if opcode == Opcode.STORE:
            return self._store(fields, memory)
        if opcode == Opcode.GEMM:
            return self._gemm(fields)
        if opcode == Opcode.EPILOGUE:
            return self._epilogue(fields)
        return AccelError.NONE, (0, 0, 0)              # DONE

    # -- LOAD / STORE --------------------------------------------------------------------------

    def _memory(self, target: int):
        """``(bits, tags or None)`` of a target memory."""
        if target == Target.A:
            return self.a_bits, self.a_tags
        if target == Target.B:
            return self.b_bits, self.b_tags
        return self.acc, None

    def _load(self, f, memory):
        error = instruction_error(self.config, Opcode.LOAD, f)
        if error is not AccelError.NONE:
            return error, (0, 0, 0)
        dram_format = _format_name(f["dram_format"])
        operand_format = _format_name(f["operand_format"])
        target = f["target"]
        size = FORMAT_BYTES[dram_format]
        cols, row_bytes = f["cols"], f["cols"] * size
        groups, copies, out = group_count(f), copy_count(f), group_rows(f)
        # a LOAD that repeats its row (dram_stride 0, one copy) reads it once per group
        read = read_rows(Opcode.LOAD, f)
        pieces = [memory.rows((f["dram_addr"] + g * f["group_stride"]) % memory.top,
                              f["dram_stride"], read, row_bytes) for g in range(groups)]
        addresses = np.concatenate([a for a, _ in pieces])
        faulty = np.concatenate([bad for _, bad in pieces])
        moved = (addresses.size, 0, 0)
        if faulty.any():
            return AccelError.DRAM_RESPONSE, moved
        raw = np.ascontiguousarray(memory.read(addresses[:, :row_bytes]))
        words = raw.view(f"<u{size}").reshape(groups, read, cols)
        if read != f["rows"]:
            words = np.repeat(words, f["rows"], axis=1)
        if target != Target.ACC and dram_format != operand_format:     # fp32 -> operand
            words = convert(FP32, FORMATS[operand_format], words, saturate=bool(f["saturate"]))
        bits, tags = self._memory(target)
        for k in range(copies):     # copy k of group g: its DRAM rows k .. k + out - 1
            col = f["mem_col"] + k * f["copy_cols"]
            region = (slice(f["mem_row"], f["mem_row"] + groups * out), slice(col, col + cols))
            bits[region] = words[:, k:k + out].reshape(groups * out, cols)
            if target != Target.ACC:
                tags[region] = TAG_OF[operand_format]
        return AccelError.NONE, moved

    def _store(self, f, memory):
        error = instruction_error(self.config, Opcode.STORE, f)
        if error is not AccelError.NONE:
            return error, (0, 0, 0)
        dram_format = _format_name(f["dram_format"])
        size = FORMAT_BYTES[dram_format]
        rows, cols, row_bytes = f["rows"], f["cols"], f["cols"] * size
        words = self.acc[f["mem_row"]:f["mem_row"] + rows, f["mem_col"]:f["mem_col"] + cols]
        if dram_format != "fp32":
            words = convert(FP32, FORMATS[dram_format], words, saturate=bool(f["saturate"]))
        data = np.ascontiguousarray(words.astype(f"<u{size}")).view(np.uint8)
        data = data.reshape(rows, row_bytes)
        addresses, faulty = memory.rows(f["dram_addr"], f["dram_stride"], rows, row_bytes)
        written = np.repeat(~faulty, memory.beat, axis=1)[:, :row_bytes]
        for r in range(rows):              # in address order: a later row wins an overlap
            keep = written[r]
            memory.bytes[addresses[r, :row_bytes][keep].astype(np.intp)] = data[r][keep]
        moved = (0, addresses.size, 0)
        return (AccelError.DRAM_RESPONSE if faulty.any() else AccelError.NONE), moved

    # -- GEMM ----------------------------------------------------------------------------------

    def _gemm(self, f):
        engine = self.config.engine
        error = instruction_error(self.config, Opcode.GEMM, f)
        if error is not AccelError.NONE:
            return error, (0, 0, 0)
        masked = f["mask_host"] or f["mask_dropout"]
        c = _engine_command(f)
        (ah, aw), (bh, bw) = c.a_shape, c.b_shape
        a = (slice(c.a_row, c.a_row + ah), slice(c.a_col, c.a_col + aw))
        b = (slice(c.b_row, c.b_row + bh), slice(c.b_col, c.b_col + bw))
        out = (slice(c.c_row, c.c_row + c.m), slice(c.c_col, c.c_col + c.n))
        operands = dict(a_fmt=self.a_tags[a], b_fmt=self.b_tags[b],
                        c_bits=self.acc[out] if c.accumulate else None,
                        transpose_a=c.a_transpose, transpose_b=c.b_transpose)
        skipping = engine.array.skip_zeros
        if masked or skipping:
            keep = None
            if masked:
                keep = np.ones((c.m, c.n), dtype=bool)
                if c.mask_host:
                    keep &= self.keep_host[out]
                if c.mask_dropout:
                    keep &= self.keep_dropout[out]
            result = gemm_skip(self.a_bits[a], self.b_bits[b], skip_a=skipping,
                               skip_b=skipping, out_mask=keep, **operands)
        else:
            result = gemm(self.a_bits[a], self.b_bits[b], **operands)
        if skipping:
            sparse = SparseGemm.from_bits(
                self.a_bits[a], self.b_bits[b], a_fmt=self.a_tags[a], b_fmt=self.b_tags[b],
                transpose_a=c.a_transpose, transpose_b=c.b_transpose,
                out_mask=keep if masked else None, accumulate=c.accumulate)
            self._engine_cycles += skip_engine_cycles(engine, c, sparse)
            self._products_skipped += c.m * c.n * c.k - computed_products(engine, c, sparse)
        else:
            self._engine_cycles += command_cycles(engine, c)
        self.acc[out] = result
        return AccelError.NONE, (0, 0, c.m * c.n * c.k)


    # -- EPILOGUE ------------------------------------------------------------------------------

    def _epilogue(self, f):
        error = instruction_error(self.config, Opcode.EPILOGUE, f)
        if error is not AccelError.NONE:
            return error, (0, 0, 0)
        op, rows, cols = EpilogueOp(f["op"]), f["rows"], f["cols"]
        region = (slice(f["dst_row"], f["dst_row"] + rows),
                  slice(f["dst_col"], f["dst_col"] + cols))
        if op == EpilogueOp.DROPOUT_PLANE:
            self.keep_dropout[region] = dropout_keep(rows, cols, f["seed"], f["threshold"])
            return AccelError.NONE, (0, 0, 0)
        src = None
        if op in EPILOGUE_SOURCE_OPS:
            height = 1 if f["broadcast"] else rows
            src = self.acc[f["src_row"]:f["src_row"] + height, f["src_col"]:f["src_col"] + cols]
            src = np.broadcast_to(src, (rows, cols))
        keep = None
        if op == EpilogueOp.DROPOUT:
            keep = dropout_keep(rows, cols, f["seed"], f["threshold"])
        result, relu_keep = apply_epilogue(
            op, self.acc[region], src, imm0=f["imm0"], imm1=f["imm1"],
            fmt=_format_name(f["cast_format"]) or "fp32", saturate=bool(f["saturate"]), keep=keep)
        self.acc[region] = result
        if f["write_mask"]:
            self.keep_host[region] = relu_keep
        return AccelError.NONE, (0, 0, 0)


# -- the checks an instruction passes before it runs ---------------------------------------------

def _engine_command(f) -> EngineCommand:
    return EngineCommand(**{name: f[name] for name in EngineCommand.NUMBERS},
                         **{name: bool(f[name])
                            for name in EngineCommand.FLAGS + EngineCommand.MASK_FLAGS})


def waits_for_store(config: AccelConfig, opcode: Opcode, fields: dict, store: dict) -> bool:
    """Whether an instruction (``opcode``, decoded ``fields``) waits for the ``STORE`` of
    ``store``'s fields in flight to complete before it starts, so that the store's DRAM error
    is reported there (the controller's interlock): ``fence``; ``DONE``; a ``LOAD`` whose DRAM
    span meets the store's (a span that passes the top of the address space meets every
    span). (A ``STORE`` waits for the one :data:`~sim.accel_spec.STORES_IN_FLIGHT` before it:
    :meth:`AcceleratorModel.run`. A ``LOAD`` into accumulator rows the store reads, a ``GEMM``
    whose ``C`` rows meet them and an ``EPILOGUE`` wait only until the store path has read
    the rows: no error is reported there.)"""
    if fields.get("fence"):
        return True
    if opcode == Opcode.LOAD:
        top = 1 << config.addr_width
        spans = [transfer_span(config, f) for f in (fields, store)]
        if any(hi > top for _, hi in spans):
            return True
        (lo, hi), (store_lo, store_hi) = spans
        return lo < store_hi and store_lo < hi
    return opcode == Opcode.DONE


def _waited_stores(config: AccelConfig, opcode: Opcode, fields: dict, stores: list,
                   issued: list) -> list:
    """The STOREs in flight (``stores``) an instruction waits for to complete: a ``STORE`` the
    one :data:`~sim.accel_spec.STORES_IN_FLIGHT` before it (``issued``: every STORE run) if
    it is still in flight; with ``fence`` every one; otherwise :func:`waits_for_store`'s."""
    if opcode == Opcode.STORE and not fields.get("fence"):
        if len(issued) < STORES_IN_FLIGHT:
            return []
        oldest = issued[-STORES_IN_FLIGHT]
        return [s for s in stores if s is oldest]
    return [s for s in stores if waits_for_store(config, opcode, fields, s[2])]


def _runs_behind_loads(config: AccelConfig, opcode: int, fields: dict, stores) -> bool:
    """Whether an instruction after a ``LOAD`` whose read failed still runs: the controller
    issues it before it knows of the error ("Loads in flight"). A ``LOAD`` without ``fence``
    and without an error of checks 1-3 does, unless it waits for a ``STORE`` that failed (its
    error is reported there); any other instruction waits for the loads and ends the program."""
    if opcode != Opcode.LOAD or fields.get("fence"):
        return False
    if instruction_error(config, opcode, fields) is not AccelError.NONE:
        return False
    return not any(s[1] and waits_for_store(config, Opcode.LOAD, fields, s[2]) for s in stores)


def transfer_span(config: AccelConfig, f: dict) -> tuple[int, int]:
    """``[first byte, end)`` of a transfer's beats in DRAM, without wrapping."""
    fmt = _format_name(f["dram_format"])
    size = FORMAT_BYTES[fmt] if fmt is not None else 1
    beat = config.beat_bytes
    row_bytes = -(-f["cols"] * size // beat) * beat
    last_group = (group_count(f) - 1) * f.get("group_stride", 0)
    return f["dram_addr"], (f["dram_addr"] + last_group + (f["rows"] - 1) * f["dram_stride"]
                            + row_bytes)


def instruction_error(config: AccelConfig, opcode: int, fields: dict) -> AccelError:
    """The error an instruction stops with before it touches the bus or the engine (the
    module's checks 1-3 and the GEMM checks; ``NONE``: it runs, and only ``DRAM_RESPONSE`` may
    still come). ``fields`` are :func:`sim.accel_spec.decode`'s. The controller's decoder
    computes exactly this."""
    if opcode not in Opcode._value2member_map_:
        return AccelError.ILLEGAL_OPCODE
    opcode, engine = Opcode(opcode), config.engine
    f = fields
    if opcode == Opcode.GEMM:
        if (f["mask_host"] or f["mask_dropout"]) and not engine.output_mask:
            return AccelError.BAD_FIELD
        error = validate(engine, _engine_command(f))
        return AccelError.NONE if error is EngineError.NONE else _ENGINE_ERRORS[error]
    if opcode == Opcode.EPILOGUE:
        return _epilogue_error(engine, f)
    if opcode not in (Opcode.LOAD, Opcode.STORE):
        return AccelError.NONE                          # DONE
    dram_format, target = _format_name(f["dram_format"]), f["target"]
    if opcode == Opcode.STORE:
        good = target == Target.ACC and dram_format in engine.out_formats
    elif target == Target.ACC:
        good = dram_format == "fp32"
    elif target in (Target.A, Target.B):
        operand_format = _format_name(f["operand_format"])
        takes = engine.array.a_formats if target == Target.A else engine.array.b_formats
        good = operand_format in takes and dram_format in (operand_format, "fp32")
    else:
        good = False
    groups, copies = group_count(f), copy_count(f)
    if opcode == Opcode.STORE and (groups > 1 or copies > 1):
        good = False
    if copies > 1 and (f["rows"] < copies or f["copy_cols"] < f["cols"]):
        good = False        # a window longer than the rows, or copies that overlap
    if not good or f["rows"] == 0 or f["cols"] == 0 or f["dram_addr"] >> config.addr_width:
        return AccelError.BAD_FIELD
    beat = config.beat_bytes
    if f["dram_addr"] % beat or f["dram_stride"] % beat or (groups > 1
                                                            and f["group_stride"] % beat):
        return AccelError.MISALIGNED
    rows, width = ((engine.acc_rows, engine.acc_width) if target == Target.ACC else
                   (engine.a_rows if target == Target.A else engine.b_rows, engine.spad_width))
    last_col = (copies - 1) * f["copy_cols"] + f["cols"]
    if f["mem_row"] + groups * group_rows(f) > rows or f["mem_col"] + last_col > width:
        return AccelError.SPAD_OVERFLOW
    return AccelError.NONE


def epilogue_overlap(f) -> bool:
    """Whether an ``EPILOGUE``'s source region (one row with ``broadcast``) overlaps its
    destination region without being the same region (``BAD_FIELD`` for the ops with a
    source: an element would be read after it was rewritten). Sums are not truncated."""
    height = 1 if f["broadcast"] else f["rows"]
    same = (f["src_row"] == f["dst_row"] and f["src_col"] == f["dst_col"]
            and height == f["rows"])
    rows_meet = f["src_row"] < f["dst_row"] + f["rows"] and f["dst_row"] < f["src_row"] + height
    cols_meet = f["src_col"] < f["dst_col"] + f["cols"] and f["dst_col"] < f["src_col"] + f["cols"]
    return rows_meet and cols_meet and not same


def _epilogue_error(engine, f) -> AccelError:
    """The checks of an ``EPILOGUE`` (module docstring), in order."""
    op = f["op"]
    if op not in EpilogueOp._value2member_map_:
        return AccelError.BAD_FIELD
    op = EpilogueOp(op)
    if op == EpilogueOp.CAST:
        if _format_name(f["cast_format"]) not in engine.out_formats:
            return AccelError.BAD_FIELD
    elif "fp32" not in engine.out_formats:
        return AccelError.BAD_FIELD
    if f["rows"] == 0 or f["cols"] == 0:
        return AccelError.BAD_FIELD
    if f["write_mask"] and (op != EpilogueOp.RELU or not engine.output_mask):
        return AccelError.BAD_FIELD
    if op == EpilogueOp.DROPOUT_PLANE and not engine.output_mask:
        return AccelError.BAD_FIELD
    if op in EPILOGUE_MASK_OPS and (f["seed"] == 0 or f["threshold"] > EPILOGUE_MAX_THRESHOLD
                                    or f["cols"] * EPILOGUE_DROPOUT_BITS > ROW_STRIDE):
        return AccelError.BAD_FIELD
    source = op in EPILOGUE_SOURCE_OPS
    if source and epilogue_overlap(f):
        return AccelError.BAD_FIELD
    if f["dst_row"] + f["rows"] > engine.acc_rows or f["dst_col"] + f["cols"] > engine.acc_width:
        return AccelError.SPAD_OVERFLOW
    height = 1 if f["broadcast"] else f["rows"]
    if source and (f["src_row"] + height > engine.acc_rows
                   or f["src_col"] + f["cols"] > engine.acc_width):
        return AccelError.SPAD_OVERFLOW
    return AccelError.NONE


# -- helpers for programs and DRAM images -------------------------------------------------------

def assemble(instructions) -> bytes:
    """The bytes of a program: ``instructions`` is a sequence of ``(opcode, fields)`` pairs,
    each encoded by :func:`sim.accel_spec.encode` (unnamed fields 0)."""
    program = bytearray()
    for item in instructions:
        try:
            opcode, fields = item
        except (TypeError, ValueError):
            raise ValueError(f"an instruction must be an (opcode, fields) pair, not "
                             f"{item!r}") from None
        if opcode not in FIELDS:
            raise ValueError(f"opcode must be one of {[o.name for o in FIELDS]}, not "
                             f"{opcode!r}")
        program += encode(opcode, **dict(fields))
    return bytes(program)


def write_matrix(dram, addr: int, stride: int, array, fmt: str):
    """Write a matrix of raw bit patterns into a DRAM image: row ``r`` is ``cols`` elements of
    :data:`sim.accel_spec.FORMAT_BYTES` bytes each, little-endian, at ``addr + r * stride``;
    nothing else changes.

    ``array`` is a 2-D integer array of bit patterns of ``fmt`` (floats are refused: convert
    values first, e.g. ``values.astype(ml_dtypes.bfloat16).view(np.uint16)``). The rows must lie
    inside the image (no bus rules apply here: any address and stride).
    """
    image = _dram_array(dram)
    size = _element_bytes(fmt)
    bits = np.asarray(array)
    if bits.ndim != 2 or bits.dtype.kind not in "ui":
        raise ValueError(f"array must be a 2-D integer array of {fmt} bit patterns, not "
                         f"{bits.dtype} of shape {bits.shape}")
    if bits.size and (bits.min() < 0 or int(bits.max()) >= 1 << (8 * size)):
        raise ValueError(f"array holds values outside the {8 * size}-bit patterns of {fmt}")
    rows, cols = bits.shape
    data = np.ascontiguousarray(bits.astype(f"<u{size}")).view(np.uint8).reshape(rows, -1)
    for r, start in enumerate(_row_starts(image, addr, stride, rows, cols * size)):
        image[start:start + cols * size] = data[r]


def read_matrix(dram, addr: int, stride: int, rows: int, cols: int, fmt: str) -> np.ndarray:
    """The ``rows`` x ``cols`` bit patterns of ``fmt`` at ``addr`` (row ``r`` at ``addr + r *
    stride``), as unsigned integers of the format's width (uint8, uint16 or uint32)."""
    image = _dram_array(dram)
    size = _element_bytes(fmt)
    for name, value in (("rows", rows), ("cols", cols)):
        _check_int(name, value, None)
    out = np.empty((rows, cols), dtype=f"<u{size}")
    for r, start in enumerate(_row_starts(image, addr, stride, rows, cols * size)):
        out[r] = image[start:start + cols * size].view(f"<u{size}")
    return out.astype(f"u{size}")


# -- checks ------------------------------------------------------------------------------------

def _format_name(code: int) -> str | None:
    return FORMAT_BITS[code] if code < len(FORMAT_BITS) else None


def _element_bytes(fmt) -> int:
    if fmt not in FORMAT_BYTES:
        raise ValueError(f"fmt must be one of {', '.join(FORMAT_BYTES)}, not {fmt!r}")
    return FORMAT_BYTES[fmt]


def _check_int(name: str, value, top: int | None):
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
            or value < 0 or (top is not None and value > top)):
        bound = f"0..{top}" if top is not None else ">= 0"
        raise ValueError(f"{name} must be an integer {bound}, not {value!r}")


def _dram_array(dram) -> np.ndarray:
    """A writable uint8 view of a DRAM image."""
    if isinstance(dram, bytearray):
        return np.frombuffer(dram, dtype=np.uint8)
    if isinstance(dram, memoryview):
        if dram.readonly or not dram.contiguous or dram.itemsize != 1:
            raise ValueError(f"dram must be a writable, contiguous memoryview of bytes, not "
                             f"{dram!r} (readonly={dram.readonly}, itemsize={dram.itemsize})")
        return np.frombuffer(dram.cast("B"), dtype=np.uint8)
    raise ValueError(f"dram must be a bytearray or a writable memoryview, not "
                     f"{type(dram).__name__}")


def _error_ranges(errors, top: int) -> list[tuple[int, int]]:
    if errors is None:
        return []
    ranges = []
    for item in errors:
        try:
            start, end = item
        except (TypeError, ValueError):
            raise ValueError(f"dram_errors must hold (start, end) pairs, not {item!r}") from None
        _check_int("a dram_errors start", start, top)
        _check_int("a dram_errors end", end, top)
        if start > end:
            raise ValueError(f"a dram_errors range must have start <= end, not "
                             f"({start:#x}, {end:#x})")
        ranges.append((int(start), int(end)))
    return ranges


def _row_starts(image, addr, stride, rows, row_bytes) -> list[int]:
    _check_int("addr", addr, None)
    _check_int("stride", stride, None)
    starts = [addr + r * stride for r in range(rows)]
    if starts and max(starts) + row_bytes > len(image):
        raise ValueError(f"rows of {row_bytes} bytes at {addr:#x} + r * {stride} (r < {rows}) "
                         f"do not fit in the DRAM image of {len(image)} bytes")
    return starts
