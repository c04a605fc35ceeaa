"""Host driver of the GEMM engine for cocotb benches (``hw.engine.engine.GemmEngine``).

It lays matrices into the A and B scratchpads and the accumulator memory through the write
streams, issues commands, waits for ``done`` and reads results back, while keeping shadow
copies of the three memories (:class:`sim.scratchpad_model.ScratchpadModel`) from which the
golden model (:func:`sim.gemm.gemm`, or :func:`sim.sparsity.gemm_skip` for an array with
``skip_zeros``) predicts every result. Streams are driven with random
idle cycles and ``rd_data`` with random backpressure (probabilities ``p_idle`` / ``p_stall``);
inputs change at falling clock edges and outputs are sampled in the read-only phase before the
next rising edge.
"""

from __future__ import annotations

import dataclasses
import numpy as np
from amaranth import unsigned
from amaranth.lib import data
from cocotb.triggers import FallingEdge, ReadOnly, SimTimeoutError, ValueChange, with_timeout
from cocotb.utils import get_sim_time

from hw.engine.commands import (Status, command_layout, host_write_layout, operand_write_layout,
                                read_data_layout, read_request_layout, step_write_layout,
                                tile_write_layout)
from hw.engine.mask import DROPOUT_BITS, MaskError, MaskStatus, mask_command_layout
from hw.fp.operand import Operand
from sim.config import EngineConfig
from sim.engine_model import (EngineCommand, EngineError, command_cycles, done_cycles,
                              scheduled_cycles, validate)
from sim.engine_spec import FIELD_BITS, step_index_bits, tile_entry_error
from sim.step_lists import StepLists, gemm_step_lists
from sim.skip_model import SparseGemm
from sim.skip_timing import computed_products, engine_cycles, mask_write_cycles
from sim.formats import FP32, STORE_FORMATS
from sim.gemm import OPERAND_TAGS, gemm
from sim.lfsr import dropout_keep_mask
from sim.sparsity import gemm_skip
from sim.numerics import convert
from sim.scratchpad_model import ScratchpadGeometry, ScratchpadModel
from tb.harness import PERIOD_NS, reset, start_clock
from tb.packing import fields
from tb.skip_cases import SkipTally

__all__ = ["EngineDriver", "operand_words", "split_operands", "config_from_case",
           "config_to_case"]

_OPERAND = fields(Operand)
#: Characters of a resolvable LogicArray's text (``LogicArray.is_resolvable``).
_RESOLVED_BITS = frozenset("01LHlh")
_OPERAND_WIDTH = data.Layout.cast(Operand).size


def operand_words(bits, tags) -> np.ndarray:
    """Scratchpad elements (Operand words) of bit patterns and format tags."""
    bits_offset, _ = _OPERAND["bits"]
    fmt_offset, _ = _OPERAND["fmt"]
    return ((np.asarray(bits, dtype=np.uint64) << np.uint64(bits_offset))
            | (np.asarray(tags, dtype=np.uint64) << np.uint64(fmt_offset)))


def split_operands(words) -> tuple[np.ndarray, np.ndarray]:
    """``(bits, tags)`` of Operand words."""
    words = np.asarray(words, dtype=np.uint64)
    (bits_offset, bits_width), (fmt_offset, fmt_width) = _OPERAND["bits"], _OPERAND["fmt"]
    bits = (words >> np.uint64(bits_offset)) & np.uint64((1 << bits_width) - 1)
    tags = (words >> np.uint64(fmt_offset)) & np.uint64((1 << fmt_width) - 1)
    return bits, tags


def config_to_case(config: EngineConfig) -> dict:
    """JSON-serialisable description of an engine configuration (for ``SPARTA_CASE``)."""
    a = config.array
    return {"rows": a.rows, "cols": a.cols, "dataflow": a.dataflow, "mul_stages": a.mul_stages,
            "a_formats": list(a.a_formats), "b_formats": list(a.b_formats),
            "spad_width": config.spad_width, "a_rows": config.a_rows, "b_rows": config.b_rows,
            "acc_width": config.acc_width, "acc_rows": config.acc_rows,
            "out_formats": list(config.out_formats), "skip_zeros": a.skip_zeros,
            "skip_window": a.skip_window, "narrow_path": a.narrow_path,
            "acc_interleave": a.acc_interleave, "edge_decode": a.edge_decode,
            "psum_stages": a.psum_stages,
            "output_mask": config.output_mask,
            "step_entries": config.step_entries, "tile_entries": config.tile_entries}


def config_from_case(case: dict) -> EngineConfig:
    from sim.config import ArrayConfig

    return EngineConfig(
        array=ArrayConfig(rows=case["rows"], cols=case["cols"], dataflow=case["dataflow"],
                          mul_stages=case["mul_stages"], a_formats=tuple(case["a_formats"]),
                          b_formats=tuple(case["b_formats"]),
                          skip_zeros=case.get("skip_zeros", False),
                          skip_window=case.get("skip_window", 1),
                          narrow_path=case.get("narrow_path", True),
                          acc_interleave=case.get("acc_interleave", 1),
                          edge_decode=case.get("edge_decode", False),
                          psum_stages=case.get("psum_stages", 0)),
        spad_width=case["spad_width"], a_rows=case["a_rows"], b_rows=case["b_rows"],
        acc_width=case["acc_width"], acc_rows=case["acc_rows"],
        out_formats=tuple(case["out_formats"]), output_mask=case.get("output_mask", False),
        step_entries=case.get("step_entries", 0), tile_entries=case.get("tile_entries", 0))


def mask_command_error(config: EngineConfig, *, seed, threshold, m, n, row, col) -> MaskError:
    """The error a dropout mask command raises in the engine (:mod:`hw.engine.mask`), checked
    as the hardware does: the plane range first (such a command never reaches the
    generator), then the generator's codes."""
    from sim.lfsr import ROW_STRIDE

    if row + m > config.acc_rows or col + n > config.acc_width:
        return MaskError.RANGE
    if seed == 0:
        return MaskError.ZERO_SEED
    if threshold > 1 << DROPOUT_BITS:
        return MaskError.BAD_THRESHOLD
    if m == 0 or n == 0:
        return MaskError.ZERO_SIZE
    if n > min(ROW_STRIDE // DROPOUT_BITS, (1 << 16) - 1):
        return MaskError.ROW_TOO_LONG
    return MaskError.NONE


def _packer(layout):
    geometry = fields(layout)

    def pack(**values) -> int:
        word = 0
        for name, value in values.items():
            offset, width = geometry[name]
            value = int(value)
            if not 0 <= value < 1 << width:
                raise ValueError(f"field {name} = {value} does not fit in {width} bits")
            word |= value << offset
        return word
    return pack


def _lanes_word(values, width: int) -> int:
    return sum(int(v) << (t * width) for t, v in enumerate(values))


def _split_word(word: int, lanes: int, width: int) -> list[int]:
    mask = (1 << width) - 1
    return [(word >> (t * width)) & mask for t in range(lanes)]


class _Stream:
    """One valid/ready stream of the DUT, driven or received from Python."""

    def __init__(self, dut, name):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")


class EngineDriver:
    """Drive a :class:`~hw.engine.engine.GemmEngine` and predict what it must answer.

    Parameters
    ----------
    dut
        cocotb handle of the engine's top level.
    config : EngineConfig
    rng : numpy.random.Generator
    p_idle, p_stall : float
        Probability of an idle cycle on the input streams / of ``rd_data.ready`` low.
    check : bool
        Compare every answer (read data, cycles, error codes) with the golden and cycle
        models and raise on a difference (the benches). ``False`` runs the engine and returns
        what it answers, for a caller that compares on its own (:mod:`tb.engine_api`); the
        stream rules and time limits are enforced either way.
    """

    def __init__(self, dut, config: EngineConfig, rng, *, p_idle=0.25, p_stall=0.25,
                 check: bool = True):
        self.dut = dut
        self.check = check
        self.config = config
        self.rng = rng
        self.p_idle = p_idle
        self.p_stall = p_stall
        rows, cols = config.array.rows, config.array.cols
        self.a = ScratchpadModel(ScratchpadGeometry(lanes=rows, width=config.spad_width,
                                                    rows=config.a_rows))
        self.b = ScratchpadModel(ScratchpadGeometry(lanes=cols, width=config.spad_width,
                                                    rows=config.b_rows))
        self.acc = ScratchpadModel(ScratchpadGeometry(lanes=cols, width=config.acc_width,
                                                      rows=config.acc_rows))
        names = ["cmd", "wr_a", "wr_b", "wr_acc", "rd_req", "rd_data"]
        if config.output_mask:
            names += ["wr_mask", "mask_cmd"]
        if config.step_lists:
            names += ["wr_steps", "wr_tiles"]
            # shadows of the step memory and the tile table: (first, length, columns)
            self.steps = np.zeros(config.step_entries, dtype=np.int64)
            self.tiles = [(0, 0, ())] * config.tile_entries
            self.pack_step = _packer(step_write_layout())
            self.pack_tile = _packer(tile_write_layout(config))
        self.ports = {name: _Stream(dut, name) for name in names}
        self.pack_write = {
            "wr_a": (_packer(operand_write_layout(rows)), self.a, _OPERAND_WIDTH),
            "wr_b": (_packer(operand_write_layout(cols)), self.b, _OPERAND_WIDTH),
            "wr_acc": (_packer(host_write_layout(cols, unsigned(32))), self.acc, 32),
        }
        self.pack_command = _packer(command_layout(config))
        if config.output_mask:       # the keep planes (hw/engine/mask.py)
            plane = ScratchpadGeometry(lanes=cols, width=config.acc_width, rows=config.acc_rows)
            self.mask_host = ScratchpadModel(plane)
            self.mask_drop = ScratchpadModel(plane)
            self.pack_write["wr_mask"] = (_packer(host_write_layout(cols, unsigned(1))),
                                          self.mask_host, 1)
            self.pack_mask_command = _packer(mask_command_layout())
            self.mask_status_fields = fields(MaskStatus)
        self.pack_read = _packer(read_request_layout(config))
        self.status_fields = fields(Status)
        self.read_lanes = read_data_layout(config).length
        self.commands = 0
        #: what the skipping results covered (:class:`tb.skip_cases.SkipTally`), or None
        self.skip_tally = SkipTally() if config.array.skip_zeros else None
        self.history = []        # (command, A bits, A tags, B bits, B tags, C_old) run so far
        self.masked_outputs = self.kept_outputs = 0     # of commands with an output mask
        # the engine's products port (zero gate), checked on every good command without step
        # lists against sim.skip_timing.computed_products
        self.counts_products = config.array.skip_zeros and not config.step_lists
        self.want_products = 0
        self.products_counted = 0
        self.mask_writes = []         # good dropout mask commands: (m, n, cycles)

    # -- basics --------------------------------------------------------------------------

    def cycle(self) -> int:
        """The current clock cycle (cycle ``n`` spans the rising edges ``n`` and ``n+1``)."""
        return int(get_sim_time(unit="ns")) // PERIOD_NS

    def status(self) -> dict[str, int]:
        word = int(self.dut.status.value)
        return {name: (word >> offset) & ((1 << width) - 1)
                for name, (offset, width) in self.status_fields.items()}

    async def start(self):
        """Idle inputs, clock and reset."""
        for port in self.ports.values():
            if port is self.ports["rd_data"]:
                port.ready.value = 0
            else:
                port.valid.value = 0
                port.payload.value = 0
        self.dut.clear_error.value = 0
        await start_clock(self.dut)
        await reset(self.dut)

    def _idle(self, probability=None) -> bool:
        return bool(self.rng.random() < (self.p_idle if probability is None else probability))

    async def _send(self, name, words, *, p_idle=None) -> list[int]:
        """Offer ``words`` on stream ``name`` with random idle cycles; returns the cycles in
        which each was accepted. Call at a falling edge; returns at a falling edge."""
        port = self.ports[name]
        accepted = []
        for word in words:
            while self._idle(p_idle):
                port.valid.value = 0
                await FallingEdge(self.dut.clk)
            port.valid.value = 1
            port.payload.value = word
            while True:
                await ReadOnly()
                taken = bool(port.ready.value)
                await FallingEdge(self.dut.clk)
                if taken:
                    accepted.append(self.cycle() - 1)
                    break
        port.valid.value = 0
        return accepted

    # -- memories ------------------------------------------------------------------------

    def write_words(self, name, matrix, row, col) -> list[int]:
        """Port words that lay ``matrix`` (elements as integers) at ``(row, col)``; the
        shadow copy is updated as the hardware will be."""
        pack, model, width = self.pack_write[name]
        return [pack(row=r, col=c, data=_lanes_word(data, width), mask=mask)
                for r, c, data, mask in model.load(matrix, row=row, col=col)]

    async def load(self, *, a=None, b=None, acc=None, mask=None, p_idle=None):
        """Write matrices, each ``(elements, row, col)`` or None, over their streams at once
        (``mask``: 0/1 keep bits of the host plane)."""
        import cocotb

        tasks = []
        for name, item in (("wr_a", a), ("wr_b", b), ("wr_acc", acc), ("wr_mask", mask)):
            if item is not None:
                words = self.write_words(name, *item)
                tasks.append(cocotb.start_soon(self._send(name, words, p_idle=p_idle)))
        for task in tasks:
            await task

    async def raw_write(self, name, row, col, data, mask):
        """One write word at any position (also outside the memory: then nothing changes and
        ``ACCESS_RANGE`` is raised)."""
        pack, model, width = self.pack_write[name]
        model.write(row, col, data, mask)
        await self._send(name, [pack(row=row, col=col, data=_lanes_word(data, width),
                                     mask=mask)])

    # -- step lists (hw/engine/step_list_sequencer.py) -----------------------------------

    def step_write_error(self, addr: int, index: int) -> EngineError:
        """What a step-memory write raises (and, if nothing, the shadow takes it)."""
        if addr >= self.config.step_entries:
            return EngineError.ACCESS_RANGE
        if index >> step_index_bits(self.config):
            return EngineError.SCHEDULE
        self.steps[addr] = index
        return EngineError.NONE

    def tile_write_error(self, addr: int, first: int, length: int, columns) -> EngineError:
        """What a tile-table write raises (and, if nothing, the shadow takes it)."""
        if addr >= self.config.tile_entries:
            return EngineError.ACCESS_RANGE
        columns = tuple(int(c) for c in columns)
        if not columns:
            return EngineError.SCHEDULE
        error = tile_entry_error(self.config, first, length, columns)
        if error is EngineError.NONE:
            self.tiles[addr] = (first, length, columns)
        return error

    def step_words(self, entries) -> list[int]:
        """Write words of ``(addr, index)`` step entries (shadow updated)."""
        words = []
        for addr, index in entries:
            self.step_write_error(addr, index)
            words.append(self.pack_step(addr=addr, index=index))
        return words

    def tile_words(self, entries) -> list[int]:
        """Write words of ``(addr, first, length, columns)`` tile entries (shadow updated)."""
        cols = self.config.array.cols
        words = []
        for addr, first, length, columns in entries:
            self.tile_write_error(addr, first, length, columns)
            lanes = list(columns) + [0] * (cols - len(columns))
            words.append(self.pack_tile(addr=addr, first=first, length=length,
                                        width=len(columns), cols=_lanes_word(lanes, FIELD_BITS)))
        return words

    async def load_step_lists(self, lists: StepLists, *, step_base: int, tile_base: int,
                              b=None, p_idle=None):
        """Write a GEMM's step lists at ``step_base`` of the step memory and its tiles at
        ``tile_base`` of the table (and ``b = (compacted B words, row, col)``) at once."""
        import cocotb

        steps = [(step_base + p, int(index)) for p, index in enumerate(lists.steps)]
        tiles = [(tile_base + g, step_base + first, length, columns)
                 for g, (first, length, columns) in enumerate(lists.tiles)]
        tasks = [cocotb.start_soon(self._send("wr_steps", self.step_words(steps),
                                              p_idle=p_idle)),
                 cocotb.start_soon(self._send("wr_tiles", self.tile_words(tiles),
                                              p_idle=p_idle))]
        if b is not None:
            tasks.append(cocotb.start_soon(self._send("wr_b", self.write_words("wr_b", *b),
                                                      p_idle=p_idle)))
        for task in tasks:
            await task

    def scheduled_expected(self, command: EngineCommand):
        """``(result or None, cycles, error)`` of a good scheduled command from the shadows:
        :func:`sim.step_lists.gemm_step_lists` on the A region, the compacted B and the
        command's table entries; ``SCHEDULE`` (result None: the lanes it could write are
        undefined) when a tile names a step ``>= k``, a B row beyond the scratchpad or a
        column ``>= n``. The accumulator shadow takes every written column."""
        c = command
        cfg = self.config
        entries = self.tiles[c.tile_first:c.tile_first + c.tile_count]
        cycles = scheduled_cycles(cfg, c, [length for _, length, _ in entries])
        bad = any(int(index) >= c.k for first, length, _ in entries
                  for index in self.steps[first:first + length])
        bad |= any(c.b_row + first + length > cfg.b_rows for first, length, _ in entries
                   if length)
        bad |= any(col >= c.n for _, _, columns in entries for col in columns)
        if bad:
            return None, cycles, EngineError.SCHEDULE
        ah, aw = c.a_shape
        a_words = self.a.contents[c.a_row:c.a_row + ah, c.a_col:c.a_col + aw].astype(np.uint64)
        a_bits, a_tags = split_operands(a_words.T if c.a_transpose else a_words)
        rows = cfg.b_rows - c.b_row
        b_words = self.b.contents[c.b_row:, c.b_col:c.b_col + cfg.array.cols]
        b_bits, b_tags = split_operands(b_words.astype(np.uint64))
        lists = StepLists(k=c.k, n=c.n, cols=cfg.array.cols, tiles=tuple(entries),
                          steps=self.steps[:], b=b_bits[:rows])
        c_old = None
        if c.accumulate:
            c_old = self.acc.contents[c.c_row:c.c_row + c.m, c.c_col:c.c_col + c.n]
            c_old = c_old.astype(np.uint64)
        result = gemm_step_lists(a_bits, lists, a_fmt=a_tags, b_fmt=b_tags[:rows],
                                 c_bits=c_old)
        # for explain(): B as the dense K x N it stands for
        dense_bits = np.zeros((c.k, c.n), dtype=np.uint64)
        dense_tags = np.full((c.k, c.n), b_tags.flat[0] if b_tags.size else 0, dtype=np.uint64)
        for first, length, columns in entries:
            for j in range(length):
                for lane, col in enumerate(columns):
                    dense_bits[self.steps[first + j], col] = b_bits[first + j, lane]
                    dense_tags[self.steps[first + j], col] = b_tags[first + j, lane]
        plain = dataclasses.replace(c, a_transpose=False, scheduled=False)
        self.history.append((plain, a_bits, a_tags, dense_bits, dense_tags, c_old))
        written = sorted({col for _, _, columns in entries for col in columns})
        block = self.acc.contents[c.c_row:c.c_row + c.m, c.c_col:c.c_col + c.n]
        block[:, written] = result[:, written].astype(object)
        return result, cycles, EngineError.NONE

    # -- commands ------------------------------------------------------------------------

    def expected(self, command: EngineCommand) -> tuple[np.ndarray | None, int]:
        """``(result, cycles)`` of ``command`` from the shadow copies: the golden result (None
        for a bad command), with which the accumulator shadow is updated, and the cycles from
        accept to ``done`` (:func:`sim.skip_timing.engine_cycles` on the operands' zero maps:
        :func:`sim.engine_model.command_cycles` without a lookahead window)."""
        if validate(self.config, command) is not EngineError.NONE:
            return None, done_cycles(self.config, command)
        c = command
        (ah, aw), (bh, bw) = c.a_shape, c.b_shape
        a_bits, a_tags = split_operands(self.a.contents[c.a_row:c.a_row + ah,
                                                        c.a_col:c.a_col + aw].astype(np.uint64))
        b_bits, b_tags = split_operands(self.b.contents[c.b_row:c.b_row + bh,
                                                        c.b_col:c.b_col + bw].astype(np.uint64))
        keep = self.keep_mask(command)
        sparse = SparseGemm.from_bits(
            a_bits, b_bits, a_fmt=a_tags, b_fmt=b_tags, transpose_a=c.a_transpose,
            transpose_b=c.b_transpose, out_mask=keep, accumulate=c.accumulate)
        cycles = engine_cycles(self.config, command, sparse)
        if self.counts_products:
            self.want_products = computed_products(self.config, command, sparse)
        c_old = None
        if c.accumulate:
            c_old = self.acc.contents[c.c_row:c.c_row + c.m, c.c_col:c.c_col + c.n]
            c_old = c_old.astype(np.uint64)
        if keep is not None:      # output masking: gemm_skip's semantics, +0 where masked
            skipping = self.config.array.skip_zeros
            result = gemm_skip(a_bits, b_bits, a_fmt=a_tags, b_fmt=b_tags, c_bits=c_old,
                               transpose_a=c.a_transpose, transpose_b=c.b_transpose,
                               skip_a=skipping, skip_b=skipping, out_mask=keep)
            self.masked_outputs += int((~keep).sum())
            self.kept_outputs += int(keep.sum())
        elif self.skip_tally is not None:
            result = self.skip_tally.observe(a_bits, a_tags, b_bits, b_tags, c_old,
                                             transpose_a=c.a_transpose,
                                             transpose_b=c.b_transpose)
        else:
            result = gemm(a_bits, b_bits, a_fmt=a_tags, b_fmt=b_tags, c_bits=c_old,
                          transpose_a=c.a_transpose, transpose_b=c.b_transpose)
        self.history.append((c, a_bits, a_tags, b_bits, b_tags, c_old))
        self.acc.contents[c.c_row:c.c_row + c.m, c.c_col:c.c_col + c.n] = result.astype(object)
        return result, cycles

    def keep_mask(self, command: EngineCommand) -> np.ndarray | None:
        """The keep mask a good command reads from the plane shadows (None if it selects
        none)."""
        if not command.masked:
            return None
        c = command
        keep = np.ones((c.m, c.n), dtype=bool)
        for selected, plane in ((c.mask_host, "mask_host"), (c.mask_dropout, "mask_drop")):
            if selected:
                bits = getattr(self, plane).contents[c.c_row:c.c_row + c.m,
                                                     c.c_col:c.c_col + c.n]
                keep &= bits.astype(np.int64) != 0
        return keep

    def mask_status(self) -> dict[str, int]:
        word = int(self.dut.mask_status.value)
        return {name: (word >> offset) & ((1 << width) - 1)
                for name, (offset, width) in self.mask_status_fields.items()}

    async def dropout_mask(self, *, seed, threshold, m, n, row, col, p_idle=None) -> MaskError:
        """Have the engine regenerate a dropout keep mask into its dropout plane; waits until
        ``mask_status.busy`` falls and checks ``mask_status`` against what the command must
        raise (the plane shadow gets :func:`sim.lfsr.dropout_keep_mask` for a good one).
        Returns that error (``MaskError.NONE`` for a good command)."""
        want = mask_command_error(self.config, seed=seed, threshold=threshold, m=m, n=n,
                                  row=row, col=col)
        word = self.pack_mask_command(seed=seed, threshold=threshold, m=m, n=n, row=row,
                                      col=col)
        (accept,) = await self._send("mask_cmd", [word], p_idle=p_idle)
        if want is MaskError.NONE:
            self.mask_drop.contents[row:row + m, col:col + n] = dropout_keep_mask(
                (m, n), seed=seed, threshold=threshold, bits=DROPOUT_BITS).astype(object)
        # the writer runs alone: one simulator callback per change of mask_status (busy
        # rises at the accept edge, so at this falling edge it is high for a good command)
        limit = 2 * mask_write_cycles(self.config, max(m, 1), max(n, 1)) + 64
        status, low = self.mask_status(), self.cycle()
        waited = bool(status["busy"])
        while status["busy"]:
            try:
                await with_timeout(ValueChange(self.dut.mask_status), limit * PERIOD_NS, "ns")
            except SimTimeoutError:
                raise AssertionError(f"mask writer still busy {limit} cycles after "
                                     f"{word:#x}") from None
            # a change comes with a rising edge: the cycle it starts
            status, low = self.mask_status(), int(get_sim_time(unit="ns")) // PERIOD_NS
        if want is MaskError.NONE:           # (m, n, cycles from accept to busy low)
            cycles = low - accept
            self.mask_writes.append((m, n, cycles))
            if cycles != mask_write_cycles(self.config, m, n):
                raise AssertionError(f"dropout mask {m} x {n}: busy for {cycles} cycles, the "
                                     f"model says {mask_write_cycles(self.config, m, n)}")
        got = MaskError(status["error_code"]) if status["error"] else MaskError.NONE
        if got is not want:
            raise AssertionError(f"dropout mask seed={seed:#x} threshold={threshold} m={m} "
                                 f"n={n} at ({row}, {col}): mask_status error {got.name}, "
                                 f"expected {want.name}")
        if waited:                           # back to a falling edge
            await FallingEdge(self.dut.clk)
        return want

    async def command(self, command: EngineCommand, *, hardware_alone=False,
                      p_idle=None) -> int:
        """Issue ``command``, wait for ``done`` and check status and cycle count against
        :mod:`sim.engine_model`; returns the cycles from accept to ``done``.

        With ``hardware_alone`` the wait is one simulator callback per change of ``status``
        (no Python per cycle); otherwise every cycle is checked (``busy`` high and
        ``cmd.ready`` low until ``done``).
        """
        word = self.pack_command(**command.fields(masks=self.config.output_mask,
                                                  schedule=self.config.step_lists))
        want_error = validate(self.config, command)
        if command.scheduled and want_error is EngineError.NONE:
            _, want_cycles, want_error = self.scheduled_expected(command)
        elif self.check:
            _, want_cycles = self.expected(command)
        else:   # no golden GEMM: the dense model only bounds the wait (2x + 1000 below)
            want_cycles = done_cycles(self.config, command)
        (accept,) = await self._send("cmd", [word], p_idle=p_idle)
        if hardware_alone:
            # the model's cycles bound the wait (generously: a check of them comes after)
            limit = 2 * want_cycles + 1000
            while True:
                try:
                    await with_timeout(ValueChange(self.dut.status), limit * PERIOD_NS, "ns")
                except SimTimeoutError:
                    raise AssertionError(f"{command}: no done within {limit} cycles (the "
                                         f"model says {want_cycles})") from None
                if self.status()["done"]:
                    break
            # done rose at the clock edge that starts its cycle
            done = int(get_sim_time(unit="ns")) // PERIOD_NS
        else:
            done = None
            products = 0            # the engine's products port, summed over the cycles
            for _ in range(want_cycles + 64):
                await ReadOnly()
                if self.counts_products:
                    products += int(self.dut.products.value)
                status = self.status()
                ready = int(self.ports["cmd"].ready.value)
                if status["done"]:
                    done = self.cycle()
                    if status["busy"] or not ready:
                        raise AssertionError(f"{command}: done with busy={status['busy']}, "
                                             f"cmd.ready={ready}")
                    break
                if not status["busy"] or ready:
                    raise AssertionError(f"{command}: cycle {self.cycle() - accept} after "
                                         f"accept: busy={status['busy']}, cmd.ready={ready}")
                await FallingEdge(self.dut.clk)
            if done is None:
                raise AssertionError(f"{command}: no done within {want_cycles + 64} cycles "
                                     f"(the model says {want_cycles})")
            await FallingEdge(self.dut.clk)
        cycles = done - accept
        self.commands += 1
        if not self.check:
            await FallingEdge(self.dut.clk)      # the driving point, as after check_error
            return cycles
        await self.check_error(want_error, f"after {command}")
        if cycles != want_cycles:
            raise AssertionError(f"{command}: {cycles} cycles from accept to done, the cycle "
                                 f"model says {want_cycles}")
        if self.counts_products and not hardware_alone and not command.scheduled:
            want = self.want_products if want_error is EngineError.NONE else 0
            if products != want:
                raise AssertionError(f"{command}: the array counted {products} products, the "
                                     f"model (sim.skip_timing.computed_products) {want}")
            self.products_counted += products
        return cycles

    async def check_error(self, want: EngineError, context: str):
        await ReadOnly()
        status = self.status()
        got = EngineError(status["error_code"]) if status["error"] else EngineError.NONE
        if status["error"] and got is EngineError.NONE:
            raise AssertionError(f"{context}: error set with code NONE")
        if got is not want:
            raise AssertionError(f"{context}: status error {got.name}, expected {want.name}")
        await FallingEdge(self.dut.clk)

    async def clear_error(self):
        self.dut.clear_error.value = 1
        await FallingEdge(self.dut.clk)
        self.dut.clear_error.value = 0

    # -- reads ---------------------------------------------------------------------------

    def expected_read(self, row, col, fmt_index, saturate) -> list[int]:
        """Lanes ``rd_data`` must return for a request (zeros for a bad one)."""
        cfg = self.config
        if (not (row < cfg.acc_rows and col < cfg.acc_width)
                or fmt_index >= len(cfg.out_formats)):
            return [0] * self.read_lanes
        lanes = np.array(self.acc.read(row, col, column_mode=False), dtype=np.uint32)
        name = cfg.out_formats[fmt_index]
        if name == "fp32":
            return [int(v) for v in lanes]
        return [int(v) for v in convert(FP32, STORE_FORMATS[name], lanes, saturate=bool(saturate))]

    async def read(self, requests, *, p_idle=None, p_stall=None) -> list[list[int]]:
        """Send read requests ``(row, col, fmt_index, saturate)`` and collect the data (with
        random backpressure); each answer is checked against the shadow copy, and a word
        offered but not taken must stay unchanged."""
        import cocotb

        words = [self.pack_read(row=r, col=c, fmt=f, saturate=s) for r, c, f, s in requests]
        expected = ([self.expected_read(*request) for request in requests] if self.check
                    else [None] * len(requests))
        sender = cocotb.start_soon(self._send("rd_req", words, p_idle=p_idle))
        port = self.ports["rd_data"]
        answers = []
        held = None
        stall = self.p_stall if p_stall is None else p_stall
        silent = 0
        while len(answers) < len(requests):
            taking = not self._idle(stall)
            port.ready.value = int(taking)
            await ReadOnly()
            if port.valid.value:
                value = port.payload.value
                # (the text, not LogicArray.is_resolvable: that builds one object per bit)
                if not _RESOLVED_BITS.issuperset(str(value)):
                    request = requests[len(answers)]
                    raise AssertionError(f"rd_data for request {request} has unknown bits: "
                                         f"{value} ({self.explain(request[0], request[1])})")
                word = int(value)
                if held is not None and word != held:
                    raise AssertionError(f"rd_data changed from 0x{held:x} to 0x{word:x} while "
                                         f"not taken")
                if taking:
                    answers.append(_split_word(word, self.read_lanes, 32))
                    held = None
                    silent = 0
                else:
                    held = word
            elif held is not None:
                raise AssertionError("rd_data withdrawn before it was taken")
            else:
                silent += 1
                if silent > 1000:
                    raise AssertionError(f"rd_data silent: {len(answers)} of {len(requests)} "
                                         f"answers")
            await FallingEdge(self.dut.clk)
        port.ready.value = 0
        await sender
        for _ in range(8):                       # nothing more may come
            await ReadOnly()
            if port.valid.value:
                raise AssertionError("rd_data offers more answers than requests")
            await FallingEdge(self.dut.clk)
        for index, (request, got, want) in enumerate(zip(requests, answers, expected)):
            if got != want and self.check:
                row, col, fmt, saturate = request
                name = (self.config.out_formats[fmt] if fmt < len(self.config.out_formats)
                        else f"bad format {fmt}")
                lane = next(t for t in range(len(got)) if got[t] != want[t])
                raise AssertionError(
                    f"read {index} of ({row}, {col}) as {name} (saturate={saturate}): "
                    f"rtl {[f'0x{v:08x}' for v in got]} golden {[f'0x{v:08x}' for v in want]}; "
                    f"lane {lane}: {self.explain(row, col + lane)}")
        return answers

    def explain(self, row, col) -> str:
        """The operands of the last command that wrote accumulator ``(row, col)``, in hex."""
        for c, a_bits, a_tags, b_bits, b_tags, c_old in reversed(self.history):
            i, j = row - c.c_row, col - c.c_col
            if 0 <= i < c.m and 0 <= j < c.n:
                a_row = (a_bits[:, i], a_tags[:, i]) if c.a_transpose else (a_bits[i], a_tags[i])
                b_col = (b_bits[j], b_tags[j]) if c.b_transpose else (b_bits[:, j], b_tags[:, j])

                def operands(pair):
                    return " ".join(f"{OPERAND_TAGS[int(t)]}:0x{int(v):04x}" for v, t in zip(*pair))
                start = "+0" if c_old is None else f"0x{int(c_old[i, j]):08x}"
                return (f"C[{i}, {j}] of {c}: init {start}, A row [{operands(a_row)}], "
                        f"B column [{operands(b_col)}]")
        return "written by no command (host data)"

    async def read_matrix(self, row, col, m, n, fmt_index=0, saturate=0, **kwargs):
        """Read (and check) the ``m x n`` block at ``(row, col)`` of the accumulator memory,
        row by row in segments of ``C`` lanes."""
        requests = [(row + i, col + j, fmt_index, saturate)
                    for i in range(m) for j in range(0, n, self.read_lanes)]
        return await self.read(requests, **kwargs)
