"""Random accelerator programs for the fuzzing bench (``tb/accel_fuzz_tb.py``): valid and invalid
instructions of every kind, random sizes, addresses, flags and formats, random DRAM faults.

Pure Python (no cocotb): the bench runs these programs on the RTL and on the golden model
(:mod:`sim.accel_model`) and compares them; ``tb/test_accel_fuzz.py`` also runs thousands of
them on the model alone, which must never raise.

DRAM (:class:`Layout`, 64 KiB): operands at ``[0, 0x8000)``; ``STORE`` destinations at ``[0x8000,
0xC000)``, which ``LOAD`` may read back (a read after a store in flight); programs at ``[0xC000,
0xF000)``. A valid ``STORE`` never writes the program region (instruction fetch behind a store
to the program itself is not specified); an invalid one may point anywhere, past the end of
DRAM included (a refused write changes nothing).

An instruction is drawn valid (:func:`sim.accel_model.instruction_error` is ``NONE``; it may
still meet a DRAM fault) or, with probability ``bad``, spoiled: an undefined opcode, one field
set to a random value of its width or to a value just past its limit, a misaligned or
past-the-end address. Which error that gives, and at which instruction, is the golden model's
answer; the bench checks the RTL gives the same.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sim.accel_model import instruction_error, transfer_span
from sim.accel_spec import (EPILOGUE_DROPOUT_BITS, EPILOGUE_MAX_THRESHOLD, EPILOGUE_SOURCE_OPS,
                            FIELDS, FORMAT_BITS, FORMAT_BYTES, HEADER, INSTRUCTION_BYTES,
                            AccelError, EpilogueOp, Opcode, Target, decode, encode,
                            group_rows)
from sim.config import AccelConfig
from sim.lfsr_spec import ROW_STRIDE

__all__ = ["Layout", "FuzzProgram", "ProgramFuzzer", "store_spans", "program_words",
           "assemble_words",
           "initial_image", "resync_program"]

_FP32 = FORMAT_BITS.index("fp32")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where things live in the fuzzer's DRAM (module docstring); ``[start, end)`` ranges."""
    size: int = 1 << 16
    data: tuple = (0x0000, 0x8000)
    stores: tuple = (0x8000, 0xC000)
    programs: tuple = (0xC000, 0xF000)


@dataclasses.dataclass
class FuzzProgram:
    """One random program: its instructions (``(opcode value, fields)``; an opcode that
    :class:`Opcode` does not define has no fields), where it is written, ``PROG_LEN``, and the
    byte ranges whose beats answer SLVERR while it runs."""
    instructions: list
    base: int
    length: int
    dram_errors: list
    spoiled: list                 # indices of the instructions drawn invalid

    @property
    def words(self) -> bytes:
        return assemble_words(self.instructions)

    def describe(self) -> str:
        """The program in a few lines (for a failure message)."""
        lines = [f"base {self.base:#x}, PROG_LEN {self.length}, SLVERR ranges "
                 f"{[(hex(a), hex(b)) for a, b in self.dram_errors]}, spoiled {self.spoiled}"]
        for index, (op, fields) in enumerate(self.instructions):
            name = Opcode(op).name if op in Opcode._value2member_map_ else f"opcode {op:#04x}"
            word = assemble_words([(op, fields)])
            lines.append(f"  {index}: {name} {fields} = {word.hex()}")
        return "\n".join(lines)


def assemble_words(instructions) -> bytes:
    """Instruction bytes; an undefined opcode is a word whose low byte is its value and whose
    other bits are its ``fields["raw"]`` (random bits)."""
    out = bytearray()
    for op, fields in instructions:
        if op in Opcode._value2member_map_:
            out += encode(op, **fields)
        else:
            word = (fields.get("raw", 0) << 8) | op
            out += word.to_bytes(INSTRUCTION_BYTES, "little")
    return bytes(out)


def store_spans(config: AccelConfig, instructions) -> list:
    """``[start, end)`` of the DRAM bytes the ``STORE`` instructions among ``instructions``
    (``(opcode, fields)`` pairs: those a program reached) may write, addresses wrapped at the
    bus's top: outside them a program must leave DRAM as it was."""
    spans, top = [], 1 << config.addr_width
    for op, fields in instructions:
        if op == Opcode.STORE:
            start, end = transfer_span(config, fields)
            start %= top
            spans.append((start, min(end, top)))
            if end > top:                              # the rows past the top wrap to 0
                spans.append((0, end - top))
    return spans


def program_words(image: bytes, base: int, length: int) -> list:
    """``(opcode, fields)`` of the instructions ``PROG_BASE`` / ``PROG_LEN`` point at in a DRAM
    image (those inside it): what a program may reach, whatever the host meant to write."""
    out = []
    for index in range(length):
        start = base + index * INSTRUCTION_BYTES
        if start + INSTRUCTION_BYTES > len(image):
            break
        out.append(decode(bytes(image[start:start + INSTRUCTION_BYTES])))
    return out


class ProgramFuzzer:
    """Draws random programs for one configuration (module docstring).

    Parameters
    ----------
    config : AccelConfig
    rng : numpy.random.Generator
    layout : Layout
    bad : float
        Probability that an instruction is spoiled.
    fault : float
        Probability that a program runs with a SLVERR range.
    """

    def __init__(self, config: AccelConfig, rng, layout: Layout = Layout(), *, bad: float = 0.06,
                 fault: float = 0.2):
        self.config, self.rng, self.layout = config, rng, layout
        self.engine = config.engine
        self.beat = config.beat_bytes
        self.bad, self.fault = bad, fault

    # -- small draws ---------------------------------------------------------------------------

    def _size(self, top: int, scale: int = 6) -> int:
        """1..top, mostly small (geometric), sometimes the whole range."""
        if self.rng.random() < 0.1:
            return int(self.rng.integers(1, top + 1))
        return int(min(top, self.rng.geometric(1 / scale)))

    def _aligned(self, low: int, high: int) -> int:
        """A beat-aligned address in ``[low, high]`` (``low`` if the range is empty)."""
        first, last = -(-low // self.beat), high // self.beat
        return self.beat * int(self.rng.integers(first, last + 1)) if last >= first else low

    def _fp32_bits(self) -> int:
        """An FP32 immediate: mostly a modest number, sometimes any bit pattern."""
        if self.rng.random() < 0.15:
            return int(self.rng.integers(0, 1 << 32))
        value = np.float32(self.rng.standard_normal() * 2.0 ** int(self.rng.integers(-6, 4)))
        return int(value.view(np.uint32))

    def _choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    # -- valid instructions --------------------------------------------------------------------

    def _transfer(self, opcode: Opcode) -> dict:
        e, rng = self.engine, self.rng
        if opcode == Opcode.STORE:
            target = Target.ACC
            dram_format = FORMAT_BITS.index(self._choice(e.out_formats))
            operand_format = 0
        else:
            target = self._choice([Target.A, Target.B, Target.ACC])
            if target == Target.ACC:
                dram_format, operand_format = _FP32, int(rng.integers(0, 8))
            else:
                takes = e.array.a_formats if target == Target.A else e.array.b_formats
                operand = self._choice(takes)
                operand_format = FORMAT_BITS.index(operand)
                dram_format = self._choice([operand_format, _FP32])
        rows_max, width = ((e.acc_rows, e.acc_width) if target == Target.ACC else
                           (e.a_rows if target == Target.A else e.b_rows, e.spad_width))
        copies = groups = 0
        if opcode == Opcode.LOAD and rng.random() < 0.3:
            copies = int(rng.integers(0, 4))
        if opcode == Opcode.LOAD and rng.random() < 0.3:
            groups = int(rng.integers(0, 4))
        k, g = max(1, copies), max(1, groups)
        cols = self._size(max(1, width // k), 8)
        copy_cols = int(rng.integers(cols, max(cols, width // k) + 1)) if k > 1 else \
            int(rng.integers(0, 4))
        rows = k - 1 + self._size(max(1, min(12, rows_max // g - k + 1)), 4)
        fields = {"target": target, "dram_format": dram_format, "operand_format": operand_format,
                  "saturate": int(rng.integers(0, 2)), "rows": rows, "cols": cols,
                  "copies": copies, "groups": groups, "copy_cols": copy_cols}
        used_rows = g * group_rows(fields)
        last_col = (k - 1) * copy_cols + cols
        fields["mem_row"] = int(rng.integers(0, rows_max - used_rows + 1))
        fields["mem_col"] = int(rng.integers(0, width - last_col + 1))
        size = FORMAT_BYTES[FORMAT_BITS[dram_format]]
        row_bytes = -(-cols * size // self.beat) * self.beat
        fields["dram_stride"] = self._choice(
            [row_bytes, row_bytes + self.beat * int(rng.integers(1, 16)), 0,
             self._aligned(0, 4 * row_bytes)])
        fields["group_stride"] = self._aligned(0, 0x800) if g > 1 else int(rng.integers(0, 64))
        span = ((g - 1) * fields["group_stride"] + (rows - 1) * fields["dram_stride"]
                + row_bytes)
        low, high = (self.layout.stores if opcode == Opcode.STORE
                     else (self.layout.data[0], self.layout.stores[1]))
        fields["dram_addr"] = self._aligned(low, max(low, high - span))
        if opcode == Opcode.STORE and fields["dram_addr"] + span > high:
            fields["dram_stride"] = row_bytes           # too tall for the region: dense rows
            fields["dram_addr"] = self._aligned(low, max(low, high - rows * row_bytes))
        return fields

    def _gemm(self) -> dict:
        e, rng = self.engine, self.rng
        m, n, k = (self._size(min(24, e.acc_rows)), self._size(min(24, e.acc_width)),
                   self._size(min(40, e.spad_width, e.b_rows)))
        ta, tb = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        a_shape = (k, m) if ta else (m, k)
        b_shape = (n, k) if tb else (k, n)
        masks = e.output_mask and rng.random() < 0.5
        fields = {"a_transpose": ta, "b_transpose": tb, "accumulate": int(rng.integers(0, 2)),
                  "mask_host": int(masks and rng.integers(0, 2)),
                  "mask_dropout": int(masks and rng.integers(0, 2)),
                  "m": m, "n": n, "k": k,
                  "a_row": int(rng.integers(0, max(1, e.a_rows - a_shape[0] + 1))),
                  "a_col": int(rng.integers(0, max(1, e.spad_width - a_shape[1] + 1))),
                  "b_row": int(rng.integers(0, max(1, e.b_rows - b_shape[0] + 1))),
                  "b_col": int(rng.integers(0, max(1, e.spad_width - b_shape[1] + 1))),
                  "c_row": int(rng.integers(0, max(1, e.acc_rows - m + 1))),
                  "c_col": int(rng.integers(0, max(1, e.acc_width - n + 1)))}
        return fields

    def _epilogue(self) -> dict:
        e, rng = self.engine, self.rng
        op = self._choice(list(EpilogueOp))
        rows = self._size(min(16, e.acc_rows))
        cols = self._size(min(e.acc_width, ROW_STRIDE // EPILOGUE_DROPOUT_BITS), 8)
        fields = {"op": op, "broadcast": int(rng.integers(0, 2)),
                  "saturate": int(rng.integers(0, 2)),
                  "write_mask": int(op == EpilogueOp.RELU and e.output_mask
                                    and rng.integers(0, 2)),
                  "cast_format": FORMAT_BITS.index(self._choice(e.out_formats)),
                  "rows": rows, "cols": cols,
                  "dst_row": int(rng.integers(0, e.acc_rows - rows + 1)),
                  "dst_col": int(rng.integers(0, e.acc_width - cols + 1)),
                  "imm0": self._fp32_bits(), "imm1": self._fp32_bits(),
                  "seed": int(rng.integers(1, 1 << 32)),
                  "threshold": int(rng.integers(0, EPILOGUE_MAX_THRESHOLD + 1))}
        height = 1 if fields["broadcast"] else rows
        if op in EPILOGUE_SOURCE_OPS and rng.random() < 0.3 and not fields["broadcast"]:
            fields["src_row"], fields["src_col"] = fields["dst_row"], fields["dst_col"]
        else:
            fields["src_row"] = int(rng.integers(0, e.acc_rows - height + 1))
            fields["src_col"] = int(rng.integers(0, e.acc_width - cols + 1))
        return fields

    def valid(self) -> tuple[int, dict]:
        """One instruction the controller accepts (its checks pass; DRAM may still fail it)."""
        for _ in range(100):
            opcode = self._choice([Opcode.LOAD] * 4 + [Opcode.STORE] * 2 + [Opcode.GEMM] * 3
                                  + [Opcode.EPILOGUE] * 2)
            fields = (self._gemm() if opcode == Opcode.GEMM else
                      self._epilogue() if opcode == Opcode.EPILOGUE else self._transfer(opcode))
            fields["fence"] = int(self.rng.random() < 0.1)
            if instruction_error(self.config, opcode, _decoded(opcode, fields)) \
                    is AccelError.NONE:
                return opcode, fields
        raise AssertionError(f"no valid {opcode.name} drawn in 100 tries: {fields}")

    # -- spoiled instructions ------------------------------------------------------------------

    def spoiled(self) -> tuple[int, dict]:
        """A valid instruction made bad (module docstring); the error it gives (maybe none,
        or only a DRAM error) is the model's to say."""
        rng = self.rng
        kind = rng.random()
        if kind < 0.2:
            undefined = [v for v in range(256) if v not in Opcode._value2member_map_]
            return self._choice(undefined), {"raw": int(rng.integers(0, 1 << 62))}
        opcode, fields = self.valid()
        if kind < 0.35 and opcode in (Opcode.LOAD, Opcode.STORE):
            fields["dram_addr"] += self._choice([1, self.beat // 2, self.beat - 1])
        elif kind < 0.5 and opcode in (Opcode.LOAD, Opcode.STORE):
            # near or past the end of DRAM: DECERR (a beat at or past the end)
            fields["dram_addr"] = self._aligned(self.layout.size - 0x200, self.layout.size + 0x400)
        else:
            layout = FIELDS[opcode]
            name = self._choice(sorted(layout))
            width = layout[name][1]
            fields[name] = self._choice([int(rng.integers(0, 1 << min(width, 62))), 0,
                                         (1 << width) - 1,
                                         min((1 << width) - 1, fields.get(name, 0) + 1)])
        return opcode, fields

    # -- programs ------------------------------------------------------------------------------

    def program(self) -> FuzzProgram:
        rng, layout = self.rng, self.layout
        count = int(min(24, rng.geometric(1 / 6)))
        instructions, spoiled = [], []
        for index in range(count):
            if rng.random() < self.bad:
                spoiled.append(index)
                instructions.append(self.spoiled())
            else:
                instructions.append(self.valid())
        if rng.random() < 0.7:
            instructions.append((Opcode.DONE, {"fence": int(rng.random() < 0.1)}))
        words = len(instructions)
        length = self._choice([words] * 6 + [words + int(rng.integers(1, 9)),
                                            max(0, words - int(rng.integers(1, 4)))])
        top = layout.programs[1] - words * INSTRUCTION_BYTES
        base = INSTRUCTION_BYTES * int(rng.integers(layout.programs[0] // INSTRUCTION_BYTES,
                                                    top // INSTRUCTION_BYTES + 1))
        draw = rng.random()
        if draw < 0.02:
            base += self._choice([4, 8, 16])                     # MISALIGNED at start
        elif draw < 0.04:
            length = 0                                           # EMPTY_PROGRAM
        elif draw < 0.07:                                        # runs off the end of DRAM
            base = layout.size - INSTRUCTION_BYTES * int(rng.integers(1, words + 1))
        errors = []
        if rng.random() < self.fault:
            errors.append(self._fault_range(instructions, base, words))
        return FuzzProgram(instructions, base, length, errors, spoiled)

    def _fault_range(self, instructions, base: int, words: int) -> tuple[int, int]:
        """A SLVERR range over something the program touches: a transfer's DRAM rows, the
        program's own words, or anywhere."""
        rng = self.rng
        transfers = [f for op, f in instructions if op in (Opcode.LOAD, Opcode.STORE)]
        draw = rng.random()
        if transfers and draw < 0.7:
            start, end = transfer_span(self.config, self._choice(transfers))
        elif draw < 0.85:
            start, end = base, base + words * INSTRUCTION_BYTES
        else:
            start = int(rng.integers(0, self.layout.size))
            end = start + 0x400
        size = self.layout.size
        if start >= size:                   # a spoiled address past DRAM: a range inside it
            start, end = int(rng.integers(0, size)), size
        start = min(int(rng.integers(start, max(start, min(end, size) - 1) + 1)), size - 1)
        length = int(rng.integers(1, 257))
        return start, min(start + length, size)


def _decoded(opcode: Opcode, fields: dict) -> dict:
    """``fields`` as :func:`sim.accel_spec.decode` gives them (every field present)."""
    layout = {**HEADER, **FIELDS[opcode]}
    return {name: int(fields.get(name, 0)) for name in layout}


def initial_image(rng, layout: Layout = Layout()) -> bytearray:
    """The fuzzer's starting DRAM: operands of every format with zeros, specials and random
    bit patterns among them; random bytes elsewhere (what a program reads past its end)."""
    image = bytearray(rng.integers(0, 256, layout.size, dtype=np.uint8).tobytes())
    start, end = layout.data
    quarter = (end - start) // 4
    values = rng.standard_normal(quarter // 2).astype(np.float32)
    values[rng.random(values.size) < 0.25] = 0.0
    image[start:start + quarter] = values.astype(np.float16).tobytes()
    values = rng.standard_normal(quarter // 4).astype(np.float32)
    values[rng.random(values.size) < 0.25] = 0.0
    image[start + quarter:start + 2 * quarter] = values.tobytes()
    codes = rng.integers(0, 256, quarter, dtype=np.uint8)
    codes[rng.random(quarter) < 0.25] = 0
    image[start + 2 * quarter:start + 3 * quarter] = codes.tobytes()
    return image


def resync_program(config: AccelConfig, layout: Layout = Layout()) -> list:
    """Instructions that overwrite every memory a program can read (A, B, the accumulators and
    the host keep plane) from DRAM: after a soft reset the hardware has run part of a program
    that the golden model dropped, and this makes their states equal again."""
    e, beat = config.engine, config.beat_bytes
    program, address = [], layout.data[0]
    for target, rows, width in ((Target.A, e.a_rows, e.spad_width),
                                (Target.B, e.b_rows, e.spad_width),
                                (Target.ACC, e.acc_rows, e.acc_width)):
        if target == Target.ACC:
            fmt = operand = _FP32
        else:
            takes = e.array.a_formats if target == Target.A else e.array.b_formats
            fmt = operand = FORMAT_BITS.index(takes[0])
        row_bytes = -(-width * FORMAT_BYTES[FORMAT_BITS[fmt]] // beat) * beat
        program.append((Opcode.LOAD, {"target": target, "dram_format": fmt,
                                      "operand_format": operand, "dram_addr": address,
                                      "dram_stride": row_bytes, "rows": rows, "cols": width}))
        address += rows * row_bytes
    if address > layout.data[1]:
        raise ValueError(f"config: its memories need {address:#x} bytes to resynchronise, more "
                         f"than the fuzzer's operand region of {layout.data[1]:#x}")
    if e.output_mask:
        program.append((Opcode.EPILOGUE, {"op": EpilogueOp.RELU, "write_mask": 1,
                                          "rows": e.acc_rows, "cols": e.acc_width}))
    program.append((Opcode.DONE, {}))
    return program
