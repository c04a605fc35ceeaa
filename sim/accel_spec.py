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
                                mul_stages [19:17], skip window [23:20]
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
           "AccelError", "CSR_BYTES", "CSR_ADDR_BITS", "DATA_WIDTHS", "ADDR_WIDTHS",
           "MAX_BURST_BEATS", "BURST_BOUNDARY", "Resp", "FORMAT_BITS", "INSTRUCTION_BYTES",
           "burst_split", "DMA_ROW_BYTES_BITS", "DMA_ROWS_BITS", "dma_command_error",
           "dma_bursts", "Opcode", "Target", "FORMAT_BYTES", "HEADER", "TRANSFER_FIELDS",
           "GEMM_FIELDS", "FIELDS", "encode", "decode"]

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

#: DMA data widths (bits) and address widths a configuration may choose
DATA_WIDTHS = (64, 128, 256)
ADDR_WIDTHS = (32, 64)
#: AXI4 INCR bursts: at most 256 beats, never crossing a 4 KiB boundary
MAX_BURST_BEATS = 256
BURST_BOUNDARY = 4096
#: Bytes of one instruction of a program
INSTRUCTION_BYTES = 32


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
# controller's decoder, the golden model, the compiler and the benches). The controller runs
# the instructions in program order; the four dependency bits of the header are the
# compiler's tokens between the load, execute and store units (pop: wait for a token from that
# neighbour; push: give one to it), which a controller that overlaps units obeys and an
# in-order one may ignore (the results are those of program order either way).

class Opcode(enum.IntEnum):
    """Instruction opcodes (any other value: ``ILLEGAL_OPCODE``)."""
    #: DRAM -> A or B scratchpad (operands, converted to an operand format) or accumulator
    #: memory (FP32 words).
    LOAD = 1
    #: Accumulator memory -> DRAM, converted to an output format.
    STORE = 2
    #: One engine command (the fields of ``sim.engine_model.EngineCommand``).
    GEMM = 3
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
HEADER = {"opcode": (0, 8), "pop_prev": (8, 1), "pop_next": (9, 1), "push_prev": (10, 1),
          "push_next": (11, 1)}
TRANSFER_FIELDS = {"target": (12, 2), "dram_format": (16, 3), "operand_format": (19, 3),
                   "saturate": (22, 1), "dram_stride": (32, 32), "dram_addr": (64, 64),
                   "rows": (128, 16), "cols": (144, 16), "mem_row": (160, 16),
                   "mem_col": (176, 16)}
GEMM_FIELDS = {"a_transpose": (16, 1), "b_transpose": (17, 1), "accumulate": (18, 1),
               "mask_host": (19, 1), "mask_dropout": (20, 1), "m": (32, 16), "n": (48, 16),
               "k": (64, 16), "a_row": (80, 16), "a_col": (96, 16), "b_row": (112, 16),
               "b_col": (128, 16), "c_row": (144, 16), "c_col": (160, 16)}
FIELDS = {Opcode.LOAD: TRANSFER_FIELDS, Opcode.STORE: TRANSFER_FIELDS, Opcode.GEMM: GEMM_FIELDS,
          Opcode.DONE: {}}


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
