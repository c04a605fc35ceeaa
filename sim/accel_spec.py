"""What the accelerator top level (``hw/accel``), its golden model and its host driver share:
the AXI parameters, the register map of the AXI4-Lite slave, the status and error codes, and
the rules of the DMA. One place, below the gateware and the models; pure Python.

Register map (32-bit registers, byte offsets; every register is read through the bus, the
writable ones are written through it too):

========  ==============  ====  ==========================================================
offset    name            R/W   content
========  ==============  ====  ==========================================================
0x00      ID              R     :data:`ACCEL_ID` (ASCII ``SPRT``)
0x04      VERSION         R     ``major << 16 | minor`` (:data:`VERSION`)
0x08      CAP_ARRAY       R     rows [7:0], cols [15:8], dataflow [16] (0 OS, 1 WS),
                                mul_stages [19:17], skip window [23:20], interleaved
                                accumulations L [26:24], partial-sum adder stages [28:27]
0x0C      CAP_FORMATS     R     operand formats of A [3:0] and B [7:4], output formats
                                [15:8] (bit i: :data:`FORMAT_BITS` order)
0x10      CAP_MEMORY      R     log2 of the scratchpad rows [7:0] and columns [15:8],
                                accumulator rows [23:16] and columns [31:24]
0x14      CAP_FEATURES    R     :class:`Feature` bits
0x18      CAP_BUS         R     data bytes per beat [7:0], address bits [15:8],
                                reads outstanding [23:16]
0x20      CTRL            R/W   start [0] (write 1: starts the program; reads 0), soft
                                reset [1] (write 1; reads 0), IRQ enable [2]
0x24      STATUS          R     busy [0], done [1] (sticky until the next start), error [2]
                                (sticky until the next start or a soft reset), error code
                                [15:8] (:class:`AccelError`)
0x28      ERROR_INDEX     R     index of the instruction that raised the error
0x2C      IRQ             R/W1C pending [0]: set when a program ends (done) with the IRQ
                                enabled; the ``irq`` output is its level; write 1 to clear
0x30      PROG_BASE_LO    R/W   program address in DRAM, low word (32-byte aligned)
0x34      PROG_BASE_HI    R/W   high word (address width 64 only; reads 0 otherwise)
0x38      PROG_LEN        R/W   number of instructions
0x40 ...  counters        R     64-bit performance counters (:data:`COUNTERS`), low word at
                                ``0x40 + 8 i``, high word at ``0x44 + 8 i``; reading a low word
                                latches the high word, so a low-then-high read pair is one
                                consistent value. Cleared by start and by soft reset.
========  ==============  ====  ==========================================================
"""

from __future__ import annotations

import enum

__all__ = ["ACCEL_ID", "VERSION", "Reg", "Ctrl", "COUNTERS", "counter_offset", "Feature",
           "CAP_FIELDS", "ceil_log2", "format_mask", "format_names", "capability_fields",
           "capability_words", "unpack_capability",
           "AccelError", "CSR_BYTES", "CSR_ADDR_BITS", "DATA_WIDTHS", "ADDR_WIDTHS",
           "MAX_BURST_BEATS", "BURST_BOUNDARY", "Resp", "FORMAT_BITS", "INSTRUCTION_BYTES",
           "burst_split", "DMA_ROW_BYTES_BITS", "DMA_ROWS_BITS", "dma_command_error",
           "dma_bursts", "Opcode", "Target", "FORMAT_BYTES", "HEADER", "TRANSFER_FIELDS",
           "GEMM_FIELDS", "FIELDS", "encode", "decode", "EpilogueOp", "EPILOGUE_FIELDS",
           "EPILOGUE_SOURCE_OPS", "EPILOGUE_MASK_OPS", "EPILOGUE_ACC_OPS",
           "EPILOGUE_DROPOUT_BITS",
           "EPILOGUE_MAX_THRESHOLD",
           "FETCH_BLOCK", "LOADS_IN_FLIGHT", "STORES_IN_FLIGHT", "group_count", "copy_count",
           "repeats_row", "read_rows",
           "group_rows"]

#: ``ID`` register: ASCII "SPRT"
ACCEL_ID = 0x53505254
#: ``VERSION`` register: (major, minor)
VERSION = (0, 1)

#: Bytes of the AXI4-Lite slave's address space, and the address bits it decodes
CSR_BYTES = 0x100
CSR_ADDR_BITS = 8


class Reg(enum.IntEnum):
    """Byte offsets of the registers (module docstring: fields and access)."""
    ID = 0x00
    VERSION = 0x04
    CAP_ARRAY = 0x08
    CAP_FORMATS = 0x0C
    CAP_MEMORY = 0x10
    CAP_FEATURES = 0x14
    CAP_BUS = 0x18
    CTRL = 0x20
    STATUS = 0x24
    ERROR_INDEX = 0x28
    IRQ = 0x2C
    PROG_BASE_LO = 0x30
    PROG_BASE_HI = 0x34
    PROG_LEN = 0x38
    COUNTERS = 0x40


#: The performance counters, in register order (each 64 bits)
COUNTERS = ("cycles", "engine_busy_cycles", "dma_stall_cycles", "bytes_read", "bytes_written",
            "products_skipped")


def counter_offset(name: str) -> int:
    """Byte offset of a counter's low word."""
    if name not in COUNTERS:
        raise ValueError(f"counter must be one of {', '.join(COUNTERS)}, not {name!r}")
    return Reg.COUNTERS + 8 * COUNTERS.index(name)


class Ctrl(enum.IntFlag):
    """Bits of ``CTRL``."""
    START = 1 << 0
    SOFT_RESET = 1 << 1
    IRQ_ENABLE = 1 << 2


class Feature(enum.IntFlag):
    """Bits of ``CAP_FEATURES``: what the generated configuration has."""
    SKIP_ZEROS = 1 << 0
    OUTPUT_MASK = 1 << 1
    FGMP = 1 << 2
    ACCUMULATE = 1 << 3


class AccelError(enum.IntEnum):
    """Error codes of ``STATUS.error_code`` (the instruction is in ``ERROR_INDEX``)."""
    #: No error.
    NONE = 0
    #: ``start`` written while a program runs (the running program goes on).
    START_WHILE_BUSY = 1
    #: An instruction whose opcode is not defined.
    ILLEGAL_OPCODE = 2
    #: A DRAM access answered with SLVERR or DECERR.
    DRAM_RESPONSE = 3
    #: A DRAM address, row length or stride that is not a multiple of the bus width, or a
    #: program base that is not 32-byte aligned.
    MISALIGNED = 4
    #: A transfer or GEMM whose region does not fit in its scratchpad or accumulator memory.
    SPAD_OVERFLOW = 5
    #: A field of an instruction outside its allowed values (size zero, unknown format).
    BAD_FIELD = 6
    #: ``PROG_LEN`` is zero.
    EMPTY_PROGRAM = 7


#: Bit order of the format masks of ``CAP_FORMATS`` (``bf16`` is an output format only)
FORMAT_BITS = ("fp16", "e4m3", "e5m2", "fp32", "bf16")


# -- Capability registers -----------------------------------------------------------------------
# What ID, VERSION and CAP_* read for a configuration: one definition for the register block
# (hw/accel/registers.py makes its constants from capability_words), the model back end of the
# host driver (sim/accel_driver.py) and the driver's discover(), which unpacks them.

#: register -> {field: (lowest bit, width)} of the capability registers (``CAP_FEATURES`` is
#: the :class:`Feature` bits)
CAP_FIELDS = {
    Reg.CAP_ARRAY: {"rows": (0, 8), "cols": (8, 8), "dataflow": (16, 1), "mul_stages": (17, 3),
                    "skip_window": (20, 4), "acc_interleave": (24, 3), "psum_stages": (27, 2)},
    Reg.CAP_FORMATS: {"a": (0, 4), "b": (4, 4), "out": (8, 8)},
    Reg.CAP_MEMORY: {"spad_rows": (0, 8), "spad_cols": (8, 8), "acc_rows": (16, 8),
                     "acc_cols": (24, 8)},
    Reg.CAP_BUS: {"beat_bytes": (0, 8), "addr_bits": (8, 8), "reads_outstanding": (16, 8)},
}


def ceil_log2(n: int) -> int:
    """Bits of an index into ``n`` things: ``ceil(log2(n))`` (0 for 1)."""
    return (n - 1).bit_length()


def format_mask(formats, field: str) -> int:
    """The ``CAP_FORMATS`` bits of format names (bit i: ``FORMAT_BITS[i]``); a name without a
    bit raises ValueError naming ``field``."""
    mask = 0
    for name in formats:
        if name not in FORMAT_BITS:
            raise ValueError(f"{field} format {name!r} has no CAP_FORMATS bit; known: "
                             f"{', '.join(FORMAT_BITS)}")
        mask |= 1 << FORMAT_BITS.index(name)
    return mask


def format_names(mask: int) -> tuple[str, ...]:
    """The format names of ``CAP_FORMATS`` bits, in :data:`FORMAT_BITS` order (inverse of
    :func:`format_mask`; bits beyond the table are ignored)."""
    return tuple(name for i, name in enumerate(FORMAT_BITS) if mask >> i & 1)


def capability_fields(config) -> dict[Reg, dict[str, int]]:
    """The field values of ``CAP_ARRAY``, ``CAP_FORMATS``, ``CAP_MEMORY`` and ``CAP_BUS`` for
    an :class:`sim.config.AccelConfig` (:data:`CAP_FIELDS` names them).

    ``CAP_MEMORY`` holds index widths, ``ceil(log2(n))``: a size that is not a power of two
    (``a_rows``, ``b_rows``, ``acc_rows`` may be any value) reads as the next power of two's
    log2. The scratchpad row field describes the larger of the A and B scratchpads (its row
    index width; ``max(a_rows, b_rows)``).
    """
    array, engine = config.engine.array, config.engine
    return {
        Reg.CAP_ARRAY: {"rows": array.rows, "cols": array.cols,
                        "dataflow": int(array.dataflow == "ws"), "mul_stages": array.mul_stages,
                        "skip_window": array.skip_window,
                        "acc_interleave": array.acc_interleave,
                        "psum_stages": array.psum_stages},
        Reg.CAP_FORMATS: {"a": format_mask(array.a_formats, "a_formats"),
                          "b": format_mask(array.b_formats, "b_formats"),
                          "out": format_mask(engine.out_formats, "out_formats")},
        Reg.CAP_MEMORY: {"spad_rows": ceil_log2(max(engine.a_rows, engine.b_rows)),
                         "spad_cols": ceil_log2(engine.spad_width),
                         "acc_rows": ceil_log2(engine.acc_rows),
                         "acc_cols": ceil_log2(engine.acc_width)},
        Reg.CAP_BUS: {"beat_bytes": config.beat_bytes, "addr_bits": config.addr_width,
                      "reads_outstanding": config.reads_outstanding},
    }


def capability_words(config) -> dict[Reg, int]:
    """The read-only identification and capability registers of an
    :class:`sim.config.AccelConfig` (32-bit values): ``ID``, ``VERSION``, the packed
    :func:`capability_fields` and ``CAP_FEATURES``.

    ``CAP_FEATURES``: ``SKIP_ZEROS`` when the array looks ahead over a window of two or more
    steps (``skip_window >= 2``: zero skipping that saves time); ``OUTPUT_MASK`` from
    ``output_mask``; ``FGMP`` when the PEs take more than one format on either operand side
    (every operand carries its own format tag, so a tile may mix formats element by element);
    ``ACCUMULATE`` always.
    """
    array, engine = config.engine.array, config.engine
    features = Feature.ACCUMULATE
    if array.skip_window >= 2:
        features |= Feature.SKIP_ZEROS
    if engine.output_mask:
        features |= Feature.OUTPUT_MASK
    if len(array.a_formats) > 1 or len(array.b_formats) > 1:
        features |= Feature.FGMP
    words = {Reg.ID: ACCEL_ID, Reg.VERSION: VERSION[0] << 16 | VERSION[1]}
    for reg, values in capability_fields(config).items():
        word = 0
        for name, value in values.items():
            low, width = CAP_FIELDS[reg][name]
            if not 0 <= value < 1 << width:
                raise ValueError(f"{reg.name}.{name} must be in 0..{(1 << width) - 1}, "
                                 f"not {value}")
            word |= value << low
        words[reg] = word
    words[Reg.CAP_FEATURES] = int(features)
    return words


def unpack_capability(reg: Reg, word: int) -> dict[str, int]:
    """The fields of a capability register's 32-bit value (:data:`CAP_FIELDS`)."""
    if reg not in CAP_FIELDS:
        raise ValueError(f"reg must be one of {', '.join(r.name for r in CAP_FIELDS)}, "
                         f"not {reg!r}")
    return {name: word >> low & ((1 << width) - 1)
            for name, (low, width) in CAP_FIELDS[reg].items()}


#: DMA data widths (bits) and address widths a configuration may choose
DATA_WIDTHS = (64, 128, 256)
ADDR_WIDTHS = (32, 64)
#: AXI4 INCR bursts: at most 256 beats, never crossing a 4 KiB boundary
MAX_BURST_BEATS = 256
BURST_BOUNDARY = 4096
#: Bytes of one instruction of a program
INSTRUCTION_BYTES = 32
#: Instructions the controller fetches at once into its instruction buffer (a power of two):
#: when the next instruction is not in the buffer, the block ``[pc, min(pc + FETCH_BLOCK,
#: prog_len))`` is read whole (``sim.accel_model``, "Instruction fetch": every instruction of
#: the block counts in ``bytes_read``; a DRAM error faults only the instructions it touches)
FETCH_BLOCK = 8
#: ``LOAD`` instructions the controller lets run at once: a ``LOAD`` is issued (its DMA read
#: and its loader command queued) and the controller goes on to the next instruction; another
#: ``LOAD`` is issued behind it, any other instruction and a block fetch wait until every
#: ``LOAD`` before it is done. A ``LOAD`` whose read answers with an error therefore lets the
#: ``LOAD`` instructions right after it in its fetch block run too (``sim.accel_model``,
#: "Loads in flight"): their bytes count, the error is the first failing ``LOAD``'s
LOADS_IN_FLIGHT = 4
#: ``STORE`` instructions the controller lets run at once: a ``STORE`` is issued (its DMA write
#: and its store-path command queued) and the next instruction starts; the ``STORE`` after
#: ``STORES_IN_FLIGHT`` others waits for the oldest of them (``sim.accel_model``: a ``STORE``
#: waits for the ``STORE`` ``STORES_IN_FLIGHT`` before it in program order)
STORES_IN_FLIGHT = 4


class Resp(enum.IntEnum):
    """AXI ``RRESP``/``BRESP`` values."""
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def burst_split(address: int, length: int, beat_bytes: int) -> list[tuple[int, int]]:
    """The INCR bursts ``(address, beats)`` a DMA issues for ``length`` bytes at ``address``
    (both multiples of ``beat_bytes``): as long as possible, at most :data:`MAX_BURST_BEATS`
    beats, never crossing a :data:`BURST_BOUNDARY`. The hardware issues exactly these."""
    if address % beat_bytes or length % beat_bytes:
        raise ValueError(f"address {address:#x} and length {length} must be multiples of the "
                         f"beat ({beat_bytes} bytes)")
    bursts = []
    while length > 0:
        to_boundary = BURST_BOUNDARY - address % BURST_BOUNDARY
        size = min(length, to_boundary, MAX_BURST_BEATS * beat_bytes)
        bursts.append((address, size // beat_bytes))
        address += size
        length -= size
    return bursts


# -- DMA --------------------------------------------------------------------------------------
# The 2-D transfers of the AXI4 DMA (hw/accel/dma.py): rows of ``row_bytes`` bytes whose starts
# are ``stride`` bytes apart, moved in address order. The hardware issues exactly the bursts of
# ``dma_bursts`` and rejects, without any bus activity, the commands ``dma_command_error`` names.

#: Bits of a DMA command's ``row_bytes`` and ``rows`` fields
DMA_ROW_BYTES_BITS = 24
DMA_ROWS_BITS = 16


def dma_command_error(address: int, row_bytes: int, rows: int, stride: int,
                      beat_bytes: int) -> AccelError:
    """The error a DMA command ends with before any bus activity: ``BAD_FIELD`` if ``rows`` or
    ``row_bytes`` is zero, else ``MISALIGNED`` if ``address``, ``row_bytes`` or ``stride`` is
    not a multiple of ``beat_bytes``, else ``NONE`` (the transfer runs)."""
    if rows == 0 or row_bytes == 0:
        return AccelError.BAD_FIELD
    if address % beat_bytes or row_bytes % beat_bytes or stride % beat_bytes:
        return AccelError.MISALIGNED
    return AccelError.NONE


def dma_bursts(address: int, row_bytes: int, rows: int, stride: int, beat_bytes: int,
               addr_width: int) -> list[tuple[int, int]]:
    """The INCR bursts ``(address, beats)`` of a valid 2-D transfer, in issue order: the
    :func:`burst_split` of each row ``r`` at ``address + r * stride``. Addresses wrap modulo
    ``2 ** addr_width`` as in the hardware (a stride close to ``2 ** addr_width`` walks
    backwards; the top of the address space is a 4 KiB boundary, so no burst wraps)."""
    if dma_command_error(address, row_bytes, rows, stride, beat_bytes) != AccelError.NONE:
        raise ValueError(f"not a valid DMA transfer: address {address:#x}, row_bytes "
                         f"{row_bytes}, rows {rows}, stride {stride} with {beat_bytes}-byte beats")
    top = 1 << addr_width
    return [(start % top, beats)
            for r in range(rows)
            for start, beats in burst_split((address + r * stride) % top, row_bytes, beat_bytes)]


# -- Programs ---------------------------------------------------------------------------------
# A program is PROG_LEN instructions of INSTRUCTION_BYTES bytes at PROG_BASE in DRAM. Each is a
# 256-bit little-endian word; its fields sit at the bit positions below (one table for the
# controller's decoder, the golden model, the compiler and the benches). The results are those
# of program order: the controller overlaps a GEMM with the instructions after it and makes
# those that conflict with it wait by itself. The header's ``fence`` bit makes an instruction
# wait until no GEMM is in flight (it serialises; it changes no result); bits 11:9 are
# reserved (0).

class Opcode(enum.IntEnum):
    """Instruction opcodes (any other value: ``ILLEGAL_OPCODE``)."""
    #: DRAM -> A or B scratchpad (operands, converted to an operand format) or accumulator
    #: memory (FP32 words).
    LOAD = 1
    #: Accumulator memory -> DRAM, converted to an output format.
    STORE = 2
    #: One engine command (the fields of ``sim.engine_model.EngineCommand``).
    GEMM = 3
    #: An elementwise operation on an accumulator region, in place (:class:`EpilogueOp`).
    EPILOGUE = 4
    #: End of the program (also ends at PROG_LEN instructions).
    DONE = 7


class Target(enum.IntEnum):
    """Memory of a LOAD."""
    A = 0
    B = 1
    ACC = 2


#: Format codes of LOAD/STORE (``dram_format``, ``operand_format``): the index in
#: :data:`FORMAT_BITS`; bytes per element in DRAM
FORMAT_BYTES = {"fp16": 2, "e4m3": 1, "e5m2": 1, "fp32": 4, "bf16": 2}

#: field -> (lowest bit, width), per instruction kind; HEADER fields are in every instruction
HEADER = {"opcode": (0, 8), "fence": (8, 1)}
#: A transfer moves ``rows`` rows of ``cols`` elements, row ``r`` at ``dram_addr + r *
#: dram_stride``. A ``LOAD`` may also write ``copies`` ``K`` copies of its rows (0 and 1: one):
#: memory row ``mem_row + i`` gets DRAM row ``i + k`` at column ``mem_col + k * copy_cols``
#: for ``k < K`` and ``i < rows - K + 1`` (a sliding window: the kernel taps of one image row
#: read once), and repeat that for ``groups`` groups (0 and 1: one), group ``g`` at
#: ``dram_addr + g * group_stride`` into the memory rows after group ``g - 1``'s (an im2col
#: gather: one instruction per kernel row and block, not per tap and image row); a ``STORE``
#: takes one copy and one group only
TRANSFER_FIELDS = {"target": (12, 2), "dram_format": (16, 3), "operand_format": (19, 3),
                   "saturate": (22, 1), "dram_stride": (32, 32), "dram_addr": (64, 64),
                   "rows": (128, 16), "cols": (144, 16), "mem_row": (160, 16),
                   "mem_col": (176, 16), "groups": (192, 8), "copies": (200, 4),
                   "copy_cols": (208, 16), "group_stride": (224, 32)}
GEMM_FIELDS = {"a_transpose": (16, 1), "b_transpose": (17, 1), "accumulate": (18, 1),
               "mask_host": (19, 1), "mask_dropout": (20, 1), "m": (32, 16), "n": (48, 16),
               "k": (64, 16), "a_row": (80, 16), "a_col": (96, 16), "b_row": (112, 16),
               "b_col": (128, 16), "c_row": (144, 16), "c_col": (160, 16)}


# -- EPILOGUE ---------------------------------------------------------------------------------
# An elementwise operation on the ``rows x cols`` accumulator region at (dst_row, dst_col), in
# place; the ops with a source (EPILOGUE_SOURCE_OPS) read a second accumulator region of the same
# shape at (src_row, src_col), or with ``broadcast`` its one row (src_row) for every row. Every
# op is defined bit for bit in docs/numerics.md ("Epilogue") and by sim.epilogue; the checks
# (sim.accel_model.instruction_error) are in the sim.accel_model docstring.

class EpilogueOp(enum.IntEnum):
    """``op`` of an ``EPILOGUE`` (any other value: ``BAD_FIELD``)."""
    #: ``dst = dst + src`` (bias add with ``broadcast``).
    ADD = 0
    #: ``dst = relu(dst)``; with ``write_mask`` also the keep bits (``dst > 0``) into the
    #: engine's host keep plane at the same positions.
    RELU = 1
    #: ``dst = dst`` where the forward value in ``src`` is kept by RELU's rule, else ``+0``.
    RELU_BACKWARD = 2
    #: ``dst = dst * imm0`` where the dropout mask of (``seed``, ``threshold``) keeps the
    #: element, else ``+0``.
    DROPOUT = 3
    #: ``dst = dst * imm0``.
    SCALE = 4
    #: ``dst = fp32(convert(dst -> cast_format, saturate))``: a rounding to an output format.
    CAST = 5
    #: SGD with weight decay: ``w = w - lr * (dw + wd * w)``, ``w`` in dst, ``dw`` in src,
    #: ``lr = imm0``, ``wd = imm1``.
    SGD = 6
    #: The engine's dropout keep plane at the region gets the keep mask of (``seed``,
    #: ``threshold``), the mask ``DROPOUT`` applies; the accumulators are left alone. A later
    #: ``GEMM`` with ``mask_dropout`` writes ``+0`` where it is 0 (DrowsyNet's dropped
    #: neurons). Needs ``output_mask``.
    DROPOUT_PLANE = 7


#: The epilogue ops that read a source region (the others ignore the source fields)
EPILOGUE_SOURCE_OPS = frozenset({EpilogueOp.ADD, EpilogueOp.RELU_BACKWARD, EpilogueOp.SGD})
#: The epilogue ops that take a dropout mask of (``seed``, ``threshold``)
EPILOGUE_MASK_OPS = frozenset({EpilogueOp.DROPOUT, EpilogueOp.DROPOUT_PLANE})
#: The epilogue ops on the accumulators (the ``Epilogue`` block's); the others write one of the
#: engine's keep planes only (``DROPOUT_PLANE``: its dropout mask writer)
EPILOGUE_ACC_OPS = tuple(op for op in EpilogueOp if op != EpilogueOp.DROPOUT_PLANE)
#: Random bits per element of a DROPOUT mask (:func:`sim.lfsr.dropout_keep_mask`'s ``bits``, the
#: engine's dropout plane's): the drop probability is ``threshold / 2 ** 8``
EPILOGUE_DROPOUT_BITS = 8
#: Largest DROPOUT ``threshold`` (``2 ** 8``: drop everything; 0 keeps everything)
EPILOGUE_MAX_THRESHOLD = 1 << EPILOGUE_DROPOUT_BITS

EPILOGUE_FIELDS = {"op": (16, 4), "broadcast": (20, 1), "saturate": (21, 1),
                   "write_mask": (22, 1), "cast_format": (24, 3), "rows": (32, 16),
                   "cols": (48, 16), "dst_row": (64, 16), "dst_col": (80, 16),
                   "src_row": (96, 16), "src_col": (112, 16), "imm0": (128, 32),
                   "imm1": (160, 32), "seed": (192, 32),
                   "threshold": (224, EPILOGUE_DROPOUT_BITS + 1)}

FIELDS = {Opcode.LOAD: TRANSFER_FIELDS, Opcode.STORE: TRANSFER_FIELDS, Opcode.GEMM: GEMM_FIELDS,
          Opcode.EPILOGUE: EPILOGUE_FIELDS, Opcode.DONE: {}}


def group_count(fields: dict) -> int:
    """The groups of a transfer (:data:`TRANSFER_FIELDS`): ``groups``, 0 and 1 both one."""
    return max(1, fields.get("groups", 0))


def copy_count(fields: dict) -> int:
    """The copies of a transfer's rows (:data:`TRANSFER_FIELDS`): ``copies``, 0 and 1 both
    one."""
    return max(1, fields.get("copies", 0))


def group_rows(fields: dict) -> int:
    """The memory rows one group of a transfer writes: ``rows - copies + 1``."""
    return fields["rows"] - copy_count(fields) + 1


def repeats_row(opcode, fields: dict) -> bool:
    """A ``LOAD`` of one copy with ``dram_stride = 0`` (every memory row gets the same DRAM
    row, as a bias is loaded): the DMA reads the row once per group and the loader writes it
    into every row, so its bytes cross the bus once (``docs/accel.md``, "Loader")."""
    return opcode == Opcode.LOAD and fields.get("dram_stride", 0) == 0 and \
        copy_count(fields) == 1


def read_rows(opcode, fields: dict) -> int:
    """DRAM rows a transfer moves per group: ``rows``, or 1 for a :func:`repeats_row` LOAD."""
    return 1 if repeats_row(opcode, fields) else fields["rows"]


def encode(opcode: Opcode, **fields) -> bytes:
    """The 32 bytes of one instruction; unnamed fields are 0. A field that is unknown for the
    opcode or does not fit its width raises ValueError naming it."""
    opcode = Opcode(opcode)
    layout = {**HEADER, **FIELDS[opcode]}
    word = int(opcode)
    for name, value in fields.items():
        if name not in layout or name == "opcode":
            raise ValueError(f"{opcode.name} has no field {name!r}; fields: "
                             f"{', '.join(n for n in layout if n != 'opcode')}")
        low, width = layout[name]
        value = int(value)
        if not 0 <= value < 1 << width:
            raise ValueError(f"{opcode.name}.{name} must be in 0..{(1 << width) - 1}, "
                             f"not {value}")
        word |= value << low
    return word.to_bytes(INSTRUCTION_BYTES, "little")


def decode(instruction: bytes) -> tuple[int, dict]:
    """``(opcode value, fields)`` of 32 instruction bytes; ``fields`` is empty for an opcode
    that :class:`Opcode` does not define (the controller's ``ILLEGAL_OPCODE``)."""
    if len(instruction) != INSTRUCTION_BYTES:
        raise ValueError(f"an instruction is {INSTRUCTION_BYTES} bytes, not {len(instruction)}")
    word = int.from_bytes(instruction, "little")
    value = word & 0xFF
    if value not in Opcode._value2member_map_:
        return value, {}
    layout = {**HEADER, **FIELDS[Opcode(value)]}
    return value, {name: (word >> low) & ((1 << width) - 1)
                   for name, (low, width) in layout.items()}
