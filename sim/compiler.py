"""Compiler of GEMMs into accelerator programs: ``C = A . B (+ C_in)`` of any size, as a DRAM
image (operands, accumulator starts, outputs, the program) and the program that computes it
(:mod:`sim.accel_spec` instructions, run bit for bit by :class:`sim.accel_model.AcceleratorModel`
and, with the controller, by the hardware).

Each GEMM is tiled into engine commands (blocks of ``m`` and ``n``, each block's ``k`` slices in
ascending order, which keeps :func:`sim.gemm.gemm`'s FP32 accumulation order), as large as the
memories allow and rounded down so that every block starts on a bus beat in DRAM (and, where
that fits, on whole tiles of the array). Per command: ``LOAD`` A's block and B's block into the
origin of their scratchpads, ``LOAD`` the block of ``C_in`` into the accumulator memory first
when the GEMM accumulates, ``GEMM``, and after a block's last ``k`` slice ``STORE`` the FP32 block
to the output. The program ends with ``DONE``. Everything runs in program order: no overlap of
loads with the engine yet (double buffering comes with the controller's dependency tokens).

DRAM layout (all addresses beat-aligned): the program at ``base``, then per GEMM its A, B,
``C_in`` (if any) and output regions, each matrix stored row by row in its format with rows
padded to whole beats (``stride``), plus one spare beat at the end of every region (a load
reads a row's last beat whole).

Operands must each be in one format (all tags equal): a tensor with per-element formats (FGMP)
needs the FGMP load path, not built yet. Pure numpy: no Amaranth here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from .accel_model import assemble, read_matrix, write_matrix
from .accel_spec import (FORMAT_BITS, FORMAT_BYTES, INSTRUCTION_BYTES, Opcode, Target,
                         group_count, read_rows)
from .config import AccelConfig
from .gemm import OPERAND_TAGS
from .engine_model import EngineCommand, validate
from .engine_spec import EngineError
from .replay import WorkloadGemm, chunk_limits

__all__ = ["Region", "RegionPlacer", "CompiledGemms", "compile_gemms", "moved_bytes"]


@dataclasses.dataclass(frozen=True)
class Region:
    """A matrix in DRAM: ``rows`` x ``cols`` elements of ``fmt`` at ``addr``, rows ``stride``
    bytes apart."""
    name: str
    addr: int
    rows: int
    cols: int
    fmt: str
    stride: int

    @property
    def end(self) -> int:
        return self.addr + self.rows * self.stride


class RegionPlacer:
    """Matrices laid out in DRAM one after another from ``start`` (rounded up to a beat): rows
    padded to whole beats (``stride``), one spare beat after each region (a load reads a row's
    last beat whole). ``regions`` holds them by name, ``cursor`` is the first free byte."""

    def __init__(self, start: int, beat: int):
        self.beat = beat
        self.cursor = _ceil_to(start, beat)
        self.regions: dict[str, Region] = {}

    def place(self, name: str, rows: int, cols: int, fmt: str) -> Region:
        stride = _ceil_to(cols * FORMAT_BYTES[fmt], self.beat)
        region = self.regions[name] = Region(name, self.cursor, rows, cols, fmt, stride)
        self.cursor = _ceil_to(self.cursor + rows * stride + self.beat, self.beat)
        return region


@dataclasses.dataclass
class CompiledGemms:
    """A compiled program and its DRAM image.

    Attributes
    ----------
    image : bytearray
        The DRAM contents before the run: the program and every input matrix.
    prog_base, prog_len : int
        What the host writes to ``PROG_BASE`` and ``PROG_LEN``.
    regions : dict of str -> Region
        Every matrix, by name (``"<index>.<gemm>.a"``, ``.b``, ``.c_in``, ``.out``; index: the
        GEMM's position).
    outputs : list of str
        The output region of each GEMM, in order.
    instructions : list of (Opcode, dict)
        The program, decoded.
    bytes_read, bytes_written : int
        The DMA bytes the program moves (whole beats, fetches included), as the compiler
        predicts them; the bus counters must agree.
    """
    image: bytearray
    prog_base: int
    prog_len: int
    regions: dict
    outputs: list
    instructions: list
    bytes_read: int
    bytes_written: int

    def output_bits(self, dram, index: int) -> np.ndarray:
        """The FP32 bit patterns of GEMM ``index``'s output in ``dram`` (after a run)."""
        region = self.regions[self.outputs[index]]
        return read_matrix(dram, region.addr, region.stride, region.rows, region.cols, "fp32")


def _single_format(tags: np.ndarray, what: str) -> str:
    values = np.unique(tags)
    if len(values) != 1:
        raise ValueError(f"{what} mixes operand formats {sorted(OPERAND_TAGS[int(t)] for t in values)}"
                         f" (FGMP): the accelerator's loads take one format per tensor")
    return OPERAND_TAGS[int(values[0])]


def _ceil_to(value: int, step: int) -> int:
    return -(-value // step) * step


def moved_bytes(instructions, beat: int) -> dict:
    """``{Opcode.LOAD: bytes read, Opcode.STORE: bytes written}`` by the DMA for the
    ``LOAD`` s and ``STORE`` s among ``instructions`` (whole beats; fetches not counted; a
    ``LOAD`` that repeats its row reads it once per group: :func:`sim.accel_spec.read_rows`)."""
    moved = {Opcode.LOAD: 0, Opcode.STORE: 0}
    for opcode, fields in instructions:
        if opcode in moved:
            row = fields["cols"] * FORMAT_BYTES[FORMAT_BITS[fields["dram_format"]]]
            moved[opcode] += group_count(fields) * read_rows(opcode, fields) * \
                _ceil_to(row, beat)
    return moved


def compile_gemms(config: AccelConfig, gemms: Sequence[WorkloadGemm], *,
                  base: int = 0, double_buffer: bool = True,
                  fence: bool = False) -> CompiledGemms:
    """Compile ``gemms`` (run one after another) for the accelerator of ``config``; ``base``
    (beat-aligned) is where the image starts in DRAM.

    ``double_buffer``: the commands alternate between the two halves of the A and B
    scratchpads' rows, so that the loads of a command overlap the GEMM before it (off: every
    command uses the whole memories from row 0, and each load waits for the GEMM before it).
    ``fence``: every instruction carries the header's ``fence`` bit (no overlap at all: the
    baseline the overlap is measured against). Neither changes a result."""
    for name, value in (("double_buffer", double_buffer), ("fence", fence)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, not {value!r}")
    if not isinstance(config, AccelConfig):
        raise ValueError(f"config must be an AccelConfig, not {config!r}")
    gemms = list(gemms)
    if not gemms:
        raise ValueError("gemms must hold at least one WorkloadGemm")
    for index, g in enumerate(gemms):
        if not isinstance(g, WorkloadGemm):
            raise ValueError(f"gemms[{index}] must be a WorkloadGemm, not {g!r}")
    beat = config.beat_bytes
    if isinstance(base, bool) or not isinstance(base, int) or base < 0 or base % beat:
        raise ValueError(f"base must be a non-negative multiple of the beat ({beat} bytes), "
                         f"not {base!r}")
    engine = config.engine

    plans = []
    for g in gemms:
        fa = _single_format(g.a_tags, f"{g.name}: A")
        fb = _single_format(g.b_tags, f"{g.name}: B")
        for what, fmt, formats in (("A", fa, engine.array.a_formats),
                                   ("B", fb, engine.array.b_formats)):
            if fmt not in formats:
                raise ValueError(f"{g.name}: {what} is {fmt}, which the array does not take "
                                 f"({what.lower()}_formats = {list(formats)})")
        # a field that is the column dimension of a matrix in DRAM steps by whole beats: A's
        # columns are k (m when transposed), B's n (k), C's n
        per_beat = {"a": beat // FORMAT_BYTES[fa], "b": beat // FORMAT_BYTES[fb],
                    "c": beat // FORMAT_BYTES["fp32"]}
        steps = {"m": per_beat["a"] if g.transpose_a else 1,
                 "n": math.lcm(1 if g.transpose_b else per_beat["b"], per_beat["c"]),
                 "k": math.lcm(1 if g.transpose_a else per_beat["a"],
                               per_beat["b"] if g.transpose_b else 1)}
        # whole tiles of the array where they fit
        tile = {"m": engine.array.rows, "n": engine.array.cols, "k": 1}
        limits = chunk_limits(g, engine)
        if double_buffer:       # the rows of A (m, or k transposed) and B (k, or n) halve
            limits["k" if g.transpose_a else "m"] = min(limits["k" if g.transpose_a else "m"],
                                                        engine.a_rows // 2)
            limits["n" if g.transpose_b else "k"] = min(limits["n" if g.transpose_b else "k"],
                                                        engine.b_rows // 2)
            limits["m"] = min(limits["m"], engine.acc_rows // 2)       # C: m rows
        chunks = {}
        totals = {"m": g.M, "n": g.N, "k": g.K}
        for field, step in steps.items():
            if totals[field] <= limits[field]:      # one chunk: it starts at 0, aligned
                chunks[field] = totals[field]
                continue
            whole = math.lcm(step, tile[field])
            size = limits[field] // whole * whole or limits[field] // step * step
            if size == 0:
                raise ValueError(f"{g.name}: a {field} chunk must be a multiple of {step} "
                                 f"elements (whole bus beats) and fit the memories "
                                 f"({field} <= {limits[field]})")
            chunks[field] = size
        plans.append((g, fa, fb, _tiles(g, engine, chunks)))

    # program first (its length is known before the addresses), then the matrices
    program_len = sum(3 * len(cmds) + sum(c.command.accumulate and c.depth[0] == 0
                                          for c in cmds)
                      + sum(c.depth[1] == g.K for c in cmds) for g, _, _, cmds in plans) + 1
    placer = RegionPlacer(base + program_len * INSTRUCTION_BYTES, beat)
    regions, place = placer.regions, placer.place

    layout = []
    for index, (g, fa, fb, cmds) in enumerate(plans):
        prefix = f"{index}.{g.name}"
        a = place(f"{prefix}.a", *g.a_bits.shape, fa)
        b = place(f"{prefix}.b", *g.b_bits.shape, fb)
        c_in = place(f"{prefix}.c_in", g.M, g.N, "fp32") if g.accumulate else None
        out = place(f"{prefix}.out", g.M, g.N, "fp32")
        layout.append((g, a, b, c_in, out, cmds))

    image = bytearray(placer.cursor)
    instructions = []
    halves = {"a": engine.a_rows // 2 if double_buffer else 0,
              "b": engine.b_rows // 2 if double_buffer else 0}
    count = blocks = 0
    pending = []            # the STORE of the last output block, not issued yet
    for g, a, b, c_in, out, cmds in layout:
        write_matrix(image, a.addr, a.stride, g.a_bits, a.fmt)
        write_matrix(image, b.addr, b.stride, g.b_bits, b.fmt)
        if c_in is not None:
            write_matrix(image, c_in.addr, c_in.stride, g.c_bits, "fp32")
        for c in cmds:
            (m0, m1), (n0, n1), (k0, k1) = c.rows, c.cols, c.depth
            # A block as stored: m x k, or k x m when transposed; B: k x n, or n x k
            a_rows, a_cols = ((k0, k1), (m0, m1)) if g.transpose_a else ((m0, m1), (k0, k1))
            b_rows, b_cols = ((n0, n1), (k0, k1)) if g.transpose_b else ((k0, k1), (n0, n1))
            buffer = {side: half * (count % 2) for side, half in halves.items()}
            count += 1
            if k0 == 0:             # a new output block: the other half of the accumulators
                c_row = engine.acc_rows // 2 * (blocks % 2) if double_buffer else 0
                blocks += 1
            for target, region, (r0, r1), (c0, c1), row in (
                    (Target.A, a, a_rows, a_cols, buffer["a"]),
                    (Target.B, b, b_rows, b_cols, buffer["b"])):
                instructions.append((Opcode.LOAD, _transfer(
                    target, region, r0, r1, c0, c1, operand_format=region.fmt, mem_row=row)))
            if g.accumulate and k0 == 0:
                instructions.append((Opcode.LOAD, _transfer(Target.ACC, c_in, m0, m1, n0, n1,
                                                            mem_row=c_row)))
            command = c.command
            instructions.append((Opcode.GEMM, {
                "m": command.m, "n": command.n, "k": command.k,
                "a_transpose": int(command.a_transpose), "b_transpose": int(command.b_transpose),
                "accumulate": int(command.accumulate), "a_row": buffer["a"],
                "b_row": buffer["b"], "c_row": c_row}))
            if double_buffer and k0 == 0 and pending:
                # the previous block's store runs while this GEMM does (other accumulator rows)
                instructions.append(pending.pop())
            if k1 == g.K:
                pending.append((Opcode.STORE, _transfer(Target.ACC, out, m0, m1, n0, n1,
                                                        mem_row=c_row)))
                if not double_buffer:
                    instructions.append(pending.pop())
    instructions += pending
    instructions.append((Opcode.DONE, {}))
    if fence:
        instructions = [(opcode, {**fields, "fence": 1}) for opcode, fields in instructions]
    if len(instructions) != program_len:       # the count above and the loop disagree
        raise AssertionError(f"{len(instructions)} instructions, {program_len} planned")
    image[base:base + program_len * INSTRUCTION_BYTES] = assemble(instructions)

    moved = moved_bytes(instructions, beat)
    return CompiledGemms(image=image, prog_base=base, prog_len=program_len, regions=regions,
                         outputs=[out.name for _, _, _, _, out, _ in layout],
                         instructions=instructions,
                         bytes_read=moved[Opcode.LOAD] + INSTRUCTION_BYTES * program_len,
                         bytes_written=moved[Opcode.STORE])


@dataclasses.dataclass(frozen=True)
class _Tile:
    """One engine command: ``C[m0:m1, n0:n1] (+)= A[m0:m1, k0:k1] . B[k0:k1, n0:n1]``."""
    rows: tuple
    cols: tuple
    depth: tuple
    command: EngineCommand


def _tiles(g: WorkloadGemm, engine, chunks: dict) -> list[_Tile]:
    """The commands of ``g``: blocks of ``chunks`` (``m`` outer, ``n`` inner), each block's
    ``k`` slices in ascending order (the FP32 accumulation order of :func:`sim.gemm.gemm`)."""
    def ranges(total, size):
        return [(start, min(total, start + size)) for start in range(0, total, size)]

    tiles = []
    for m0, m1 in ranges(g.M, chunks["m"]):
        for n0, n1 in ranges(g.N, chunks["n"]):
            for k0, k1 in ranges(g.K, chunks["k"]):
                command = EngineCommand(m=m1 - m0, n=n1 - n0, k=k1 - k0,
                                        a_transpose=g.transpose_a, b_transpose=g.transpose_b,
                                        accumulate=k0 > 0 or g.accumulate)
                if validate(engine, command) is not EngineError.NONE:   # a bug in the chunks
                    raise AssertionError(f"{g.name}: command {command} is invalid")
                tiles.append(_Tile((m0, m1), (n0, n1), (k0, k1), command))
    return tiles


def _transfer(target: Target, region: Region, r0: int, r1: int, c0: int, c1: int, *,
              operand_format: str | None = None, mem_row: int = 0) -> dict:
    """LOAD/STORE fields of the block rows ``r0:r1``, columns ``c0:c1`` of ``region`` at row
    ``mem_row``, column 0 of the target memory."""
    fields = {"target": int(target), "dram_format": FORMAT_BITS.index(region.fmt),
              "dram_stride": region.stride,
              "dram_addr": region.addr + r0 * region.stride + c0 * FORMAT_BYTES[region.fmt],
              "rows": r1 - r0, "cols": c1 - c0, "mem_row": mem_row, "mem_col": 0}
    if operand_format is not None:
        fields["operand_format"] = FORMAT_BITS.index(operand_format)
    return fields
