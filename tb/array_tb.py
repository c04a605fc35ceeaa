"""Bench: the systolic array (output or weight stationary) against the golden GEMM.

The configuration (``SPARTA_CASE``) gives the :class:`~sim.config.ArrayConfig` fields, the
number of ``tiles`` per command and of ``commands`` run back to back. The driver follows the
reference schedule of :mod:`sim.array_timing` cycle by cycle (the contract the tile sequencer
follows), with random bubbles inside tiles (also on the ``first`` slot) carrying garbage
operands, garbage on ``init_in`` / ``weight_in`` when they are not used, and checks every
result element bit for bit against :func:`sim.gemm.gemm`.

Stimulus per tile: a random K (output stationary) or number of A rows (weight stationary):
1, fewer than the tile spacing (so bubbles pad the tile) or more; operands of random allowed
formats per element (FP8 words with garbage in the ignored high byte), in profiles from
moderate values (sums that round and cancel) with signed zeros and subnormals, to sprinkled
infinities and NaNs, uniform bit patterns, mostly signed zeros, and almost only signed zeros
(sums that stay ``-0`` or become ``+0``, in the same profile as the inits); init values ``+0``
(overwrite) or random fp32 (accumulate). Weight stationary also chains K slices: a GEMM with
K up to 3R is cut into slices of R rows, each slice starting from the previous one's result
(the last slice padded with ``-0`` products).

With ``skip_zeros`` the golden model is :func:`sim.sparsity.gemm_skip` and each tile's A and B
get zeros in one of the patterns of :mod:`tb.skip_cases` (0 % to 100 % random, whole lines,
blocks, zeros next to infinities and NaNs), accumulating tiles some ``-0`` and non-canonical
NaN inits. A skipping array first runs corner tiles (A all zero against infinities and NaNs in
B, mostly ``-0`` and NaN starts), so that every case where skipping differs from the dense
GEMM is hit whatever the seed; the bench checks that it was, and that every other result is
the dense one as well.
"""

from __future__ import annotations

import itertools
import time

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.triggers import FallingEdge

from hw.fp.operand import Operand, OperandFormat
from sim.array_timing import array_timing
from sim.config import ArrayConfig
from sim.formats import FP32, OPERAND_FORMATS
from tb.harness import case, make_rng, record_metrics, reset, start_clock
from tb.packing import pack
from tb.skip_cases import MODES, SkipTally, golden, negative_zero_starts, sparsify
from tb.vectors import edge_bits, mixed_bits, moderate_bits

TAG_OF = {name: OperandFormat.of(name).value for name in OPERAND_FORMATS}
NAME_OF = {tag: name for name, tag in TAG_OF.items()}
OPERAND_WIDTH = data.Layout.cast(Operand).size
PROFILES = ("moderate", "sprinkled", "mixed", "zeros", "signed_zeros")
ZERO_SHARE = {"zeros": 0.6, "signed_zeros": 0.95}
# In the signed-zeros profile most A zeros and inits are -0 and most B zeros +0: most products
# are -0, so many sums stay -0 and a +0 product (wrong padding, a skipped step) would show.
NEGATIVE_ZERO_SHARE = {"a": 0.9, "b": 0.1, "init": 0.9}


def config_from_case(cfg) -> ArrayConfig:
    return ArrayConfig(rows=cfg["rows"], cols=cfg["cols"], dataflow=cfg["dataflow"],
                       a_formats=tuple(cfg["a_formats"]), b_formats=tuple(cfg["b_formats"]),
                       mul_stages=cfg["mul_stages"], skip_zeros=cfg.get("skip_zeros", False),
                       acc_interleave=cfg.get("acc_interleave", 1),
                       narrow_path=cfg.get("narrow_path", True),
                       edge_decode=cfg.get("edge_decode", False),
                       psum_stages=cfg.get("psum_stages", 0))


# -- stimulus ------------------------------------------------------------------------------------

def _values(rng, fmt, n, profile, side):
    """``n`` bit patterns of ``fmt`` drawn from ``profile`` (see the module docstring) for
    ``side`` ``"a"``, ``"b"`` or ``"init"``."""
    if profile == "mixed":
        return mixed_bits(rng, fmt, n)
    bits = moderate_bits(rng, fmt, n, span_fraction=8)
    negative_share = NEGATIVE_ZERO_SHARE[side] if profile == "signed_zeros" else 0.5
    sign = (rng.random(n) < negative_share).astype(np.uint64) << np.uint64(fmt.width - 1)
    kind = rng.random(n)
    zero_share = ZERO_SHARE.get(profile, 0.1)
    subnormal = sign | rng.integers(1, 1 << fmt.man_bits, n, dtype=np.uint64)
    bits = np.where(kind < zero_share, sign, bits)
    bits = np.where((kind >= zero_share) & (kind < zero_share + 0.06), subnormal, bits)
    if profile == "sprinkled":
        edges = edge_bits(fmt)
        bits = np.where(kind > 0.97, edges[rng.integers(0, len(edges), n)], bits)
    return bits.astype(np.uint64)


def random_operands(rng, shape, formats, profile, side):
    """``(tags, words)`` of random operands of the allowed ``formats``."""
    tags = rng.choice([TAG_OF[f] for f in formats], size=shape).astype(np.uint64)
    words = np.zeros(shape, dtype=np.uint64)
    for name in formats:
        fmt = OPERAND_FORMATS[name]
        sel = tags == TAG_OF[name]
        count = int(sel.sum())
        words[sel] = _values(rng, fmt, count, profile, side)
        if fmt.width == 8:    # the high byte of an FP8 word is ignored: put garbage in it
            garbage = rng.integers(0, 256, count, dtype=np.uint64) * (rng.random(count) < 0.25)
            words[sel] |= garbage.astype(np.uint64) << np.uint64(8)
    return tags, words


def random_inits(rng, shape, accumulate, profile):
    """fp32 init values: ``+0`` to overwrite, random values near one (some zeros, subnormals
    and, in noisy profiles, specials) to accumulate."""
    if not accumulate:
        return np.zeros(shape, dtype=np.uint64)
    n = int(np.prod(shape))
    values = _values(rng, FP32, n, "moderate" if profile == "mixed" else profile, "init")
    return values.reshape(shape)


def zero_operand(formats, negative):
    """``(tag, word)`` of a signed zero in the first allowed format."""
    fmt = OPERAND_FORMATS[formats[0]]
    return TAG_OF[fmt.name], fmt.sign_mask if negative else 0


def lane_words(tags, words):
    """Pack the lanes of the last axis into one port word per leading index."""
    tags = np.atleast_2d(tags)
    words = np.atleast_2d(words)
    out = []
    for lane_tags, lane_bits in zip(tags, words):
        packed = pack(Operand, bits=lane_bits, fmt=lane_tags)
        out.append(sum(value << (OPERAND_WIDTH * i) for i, value in enumerate(packed)))
    return out


def fp32_words(values):
    return [sum(int(v) << (32 * i) for i, v in enumerate(row)) for row in np.atleast_2d(values)]


def split_lanes(word, lanes, width=32):
    return [(word >> (width * i)) & ((1 << width) - 1) for i in range(lanes)]


def operand_hex(tags, words):
    """Rows of ``fmt:0xWORD`` for a 2-D block of operands."""
    return "\n".join(" ".join(f"{NAME_OF[int(t)]}:0x{int(w):04x}" for t, w in zip(trow, wrow))
                     for trow, wrow in zip(np.atleast_2d(tags), np.atleast_2d(words)))


def fp32_hex(values):
    return "\n".join(" ".join(f"0x{int(v):08x}" for v in row) for row in np.atleast_2d(values))


def slots(rng, count, p_bubble):
    """Step slots ``0 .. count-1`` in order, with random bubbles (``None``) between them."""
    out = []
    for index in range(count):
        while rng.random() < p_bubble:
            out.append(None)
        out.append(index)
    return out


def step_count(rng, spacing):
    """1, fewer than the tile spacing, or more."""
    kind = rng.integers(0, 4)
    if kind == 0 or spacing <= 2:
        return 1 if kind == 0 else int(rng.integers(1, spacing + 6))
    if kind == 1:
        return int(rng.integers(2, spacing))
    return int(rng.integers(spacing, spacing + 8))


#: Zero patterns and start values of the corner tiles a skipping array meets first: A all
#: zero (every product skipped) against B with infinities and NaNs, starts mostly ``-0`` and
#: non-canonical NaNs, so that every case where skipping differs from the dense GEMM occurs
#: (SkipTally.check_coverage) whatever the seed.
CORNER_MODES = ("empty", "specials")
CORNER_STARTS = {"share": 0.6, "nan_share": 0.3}


def skip_modes(rng, config, corner=False):
    """Zero patterns of A and B for a skipping array (none for a dense one)."""
    if not config.skip_zeros:
        return None
    if corner:
        return CORNER_MODES
    return tuple(str(mode) for mode in rng.choice(list(MODES), 2))


def skip_starts(rng, init, corner=False):
    """Start values of an accumulating tile of a skipping array: some ``-0`` and NaN starts."""
    return negative_zero_starts(rng, init, **(CORNER_STARTS if corner else {}))


def expected_result(config, tally, a_bits, a_tags, b_bits, b_tags, c_bits):
    """The golden result of a tile: ``gemm_skip`` (recorded in ``tally``) or ``gemm``."""
    if tally is None:
        return golden(config.skip_zeros, a_bits, b_bits, a_fmt=a_tags, b_fmt=b_tags,
                      c_bits=c_bits)
    return tally.observe(a_bits, a_tags, b_bits, b_tags, c_bits)


class OSTile:
    """An R x C tile of C from K steps: A block R x K, B block K x C, init R x C."""

    def __init__(self, rng, config, k, accumulate, profile, tally=None, corner=False):
        rows, cols = config.rows, config.cols
        self.k, self.accumulate, self.profile = k, accumulate, profile
        self.a_tags, self.a_bits = random_operands(rng, (rows, k), config.a_formats, profile, "a")
        self.b_tags, self.b_bits = random_operands(rng, (k, cols), config.b_formats, profile, "b")
        self.init = random_inits(rng, (rows, cols), accumulate, profile)
        self.modes = skip_modes(rng, config, corner)
        if self.modes:
            block = (max(1, rows // 2), max(1, k // 2))
            self.a_bits = sparsify(rng, self.a_tags, self.a_bits, self.modes[0], block)
            self.b_bits = sparsify(rng, self.b_tags, self.b_bits, self.modes[1], block[::-1])
            if accumulate:
                self.init = skip_starts(rng, self.init, corner)
        self.expected = expected_result(config, tally, self.a_bits, self.a_tags, self.b_bits,
                                        self.b_tags, self.init if accumulate else None)
        self.a_steps = lane_words(self.a_tags.T, self.a_bits.T)     # column k of A per step
        self.b_steps = lane_words(self.b_tags, self.b_bits)         # row k of B per step
        self.init_rows = fp32_words(self.init)

    def describe(self, index, row, col):
        terms = " ".join(
            f"{NAME_OF[int(self.a_tags[row, k])]}:0x{int(self.a_bits[row, k]):04x}*"
            f"{NAME_OF[int(self.b_tags[k, col])]}:0x{int(self.b_bits[k, col]):04x}"
            for k in range(self.k))
        mode = "accumulate" if self.accumulate else "overwrite"
        if self.modes:
            mode += f", zeros: A {self.modes[0]}, B {self.modes[1]}"
        return (f"tile {index} (K={self.k}, {mode}, {self.profile}) element ({row}, {col}): "
                f"init 0x{int(self.init[row, col]):08x} terms {terms}\n"
                f"A (R x K):\n{operand_hex(self.a_tags, self.a_bits)}\n"
                f"B (K x C):\n{operand_hex(self.b_tags, self.b_bits)}\n"
                f"init (R x C):\n{fp32_hex(self.init)}")


class WSTile:
    """A weight tile: K slice (``k`` <= R rows) x C of B on the PEs, M rows of A streamed."""

    def __init__(self, config, a_tags, a_bits, b_tags, b_bits, init, name, pad_negative_a,
                 tally=None):
        rows = config.rows
        m, k = a_bits.shape
        self.k, self.m, self.name = k, m, name
        self.a_tags, self.a_bits, self.b_tags, self.b_bits = a_tags, a_bits, b_tags, b_bits
        self.init = init
        self.expected = expected_result(config, tally, a_bits, a_tags, b_bits, b_tags, init)
        # padding rows of the K slice add -0: exactly one of the two zeros is negative
        a_pad = zero_operand(config.a_formats, pad_negative_a)
        w_pad = zero_operand(config.b_formats, not pad_negative_a)
        pad = rows - k
        full_a_tags = np.concatenate([a_tags, np.full((m, pad), a_pad[0], np.uint64)], axis=1)
        full_a_bits = np.concatenate([a_bits, np.full((m, pad), a_pad[1], np.uint64)], axis=1)
        cols = b_bits.shape[1]
        full_w_tags = np.concatenate([b_tags, np.full((pad, cols), w_pad[0], np.uint64)])
        full_w_bits = np.concatenate([b_bits, np.full((pad, cols), w_pad[1], np.uint64)])
        self.a_steps = lane_words(full_a_tags, full_a_bits)        # row m of A per step
        self.weight_rows = lane_words(full_w_tags, full_w_bits)    # row r of the weights
        self.init_rows = fp32_words(init)

    def describe(self, index, m, col):
        terms = " ".join(
            f"{NAME_OF[int(self.a_tags[m, k])]}:0x{int(self.a_bits[m, k]):04x}*"
            f"{NAME_OF[int(self.b_tags[k, col])]}:0x{int(self.b_bits[k, col]):04x}"
            for k in range(self.k))
        return (f"tile {index} ({self.name}, K slice {self.k}, M={self.m}) element ({m}, {col}): "
                f"init 0x{int(self.init[m, col]):08x} terms {terms}\n"
                f"A (M x K):\n{operand_hex(self.a_tags, self.a_bits)}\n"
                f"B (K x C):\n{operand_hex(self.b_tags, self.b_bits)}\n"
                f"init (M x C):\n{fp32_hex(self.init)}")


def profile_cycle(rng):
    """Every profile in turn, starting from a random one."""
    start = int(rng.integers(0, len(PROFILES)))
    return itertools.islice(itertools.cycle(PROFILES), start, None)


def os_tiles(rng, config, count, tally=None, corner=False):
    """``count`` output tiles (``corner``: accumulating corner tiles, :data:`CORNER_MODES`)."""
    spacing = array_timing(config).min_tile_cycles
    tiles = []
    profiles = profile_cycle(rng)
    for _ in range(count):
        profile = next(profiles)
        accumulate = corner or bool(rng.integers(0, 2))
        tiles.append(OSTile(rng, config, step_count(rng, spacing), accumulate, profile, tally,
                            corner))
    return tiles


def ws_tiles(rng, config, count, tally=None, corner=False):
    """``count`` weight tiles, grouped into GEMMs whose K (up to 3R) is cut into slices."""
    rows, cols = config.rows, config.cols
    spacing = array_timing(config).min_tile_cycles
    tiles = []
    group = 0
    profiles = profile_cycle(rng)
    while len(tiles) < count:
        profile = next(profiles)
        m = step_count(rng, spacing)
        k_total = int(rng.integers(1, 3 * rows + 1))
        a_tags, a_bits = random_operands(rng, (m, k_total), config.a_formats, profile, "a")
        b_tags, b_bits = random_operands(rng, (k_total, cols), config.b_formats, profile, "b")
        accumulate = corner or bool(rng.integers(0, 2))
        init = first_init = random_inits(rng, (m, cols), accumulate, profile)
        modes = skip_modes(rng, config, corner)
        if modes:
            a_bits = sparsify(rng, a_tags, a_bits, modes[0], (max(1, m // 2), rows))
            b_bits = sparsify(rng, b_tags, b_bits, modes[1], (rows, max(1, cols // 2)))
            if accumulate:
                init = first_init = skip_starts(rng, init, corner)
            profile += f", zeros: A {modes[0]}, B {modes[1]}"
        for k0 in range(0, k_total, rows):
            k1 = min(k_total, k0 + rows)
            name = f"GEMM {group} {'accumulate' if accumulate else 'overwrite'} {profile}, " \
                   f"K {k0}..{k1 - 1} of {k_total}"
            tile = WSTile(config, a_tags[:, k0:k1], a_bits[:, k0:k1], b_tags[k0:k1],
                          b_bits[k0:k1], init, name, bool(rng.integers(0, 2)), tally)
            tiles.append(tile)
            init = tile.expected            # the next slice starts from this partial result
        # the chained slices are the whole GEMM, k ascending (golden self-check)
        whole = golden(config.skip_zeros, a_bits, b_bits, a_fmt=a_tags, b_fmt=b_tags,
                       c_bits=first_init)
        assert np.array_equal(whole, init), f"golden K slicing differs for GEMM {group}"
        group += 1
    return tiles


# -- drivers ---------------------------------------------------------------------------------------

class Garbage:
    """Random words for the inputs the array must ignore (bubbles, idle init lanes)."""

    def __init__(self, rng, width, count=61):
        self.words = [int.from_bytes(rng.bytes((width + 7) // 8), "little") & ((1 << width) - 1)
                      for _ in range(count)]
        self.index = 0

    def __call__(self):
        self.index = (self.index + 1) % len(self.words)
        return self.words[self.index]


async def run_os(dut, rng, config, tiles, p_bubble):
    """Drive ``tiles`` through the output-stationary array and check every result."""
    timing = array_timing(config)
    rows, cols = config.rows, config.cols
    schedule = timing.schedule([slots(rng, tile.k, p_bubble) for tile in tiles])
    a_garbage = Garbage(rng, OPERAND_WIDTH * rows)
    b_garbage = Garbage(rng, OPERAND_WIDTH * cols)
    init_garbage = Garbage(rng, 32 * cols)
    checked = 0
    for cycle in schedule:
        if cycle.result is not None:
            index, row = cycle.result
            got = split_lanes(int(dut.result_out.value), cols)
            want = tiles[index].expected[row]
            for col in range(cols):
                if got[col] != int(want[col]):
                    raise AssertionError(
                        f"mismatch: rtl=0x{got[col]:08x} golden=0x{int(want[col]):08x} at "
                        f"{tiles[index].describe(index, row, col)}")
            checked += cols
        if cycle.step is not None:
            index, k = cycle.step
            dut.a_in.value = tiles[index].a_steps[k]
            dut.b_in.value = tiles[index].b_steps[k]
        else:
            dut.a_in.value = a_garbage()
            dut.b_in.value = b_garbage()
        dut.valid.value = int(cycle.step is not None)
        dut.first.value = int(cycle.first)
        dut.shift.value = int(cycle.shift)
        if cycle.shift_in is not None:
            index, row = cycle.shift_in
            dut.init_in.value = tiles[index].init_rows[row]
        else:
            dut.init_in.value = init_garbage()
        await FallingEdge(dut.clk)
    dut.valid.value = dut.first.value = dut.shift.value = 0
    expected = sum(tile.expected.size for tile in tiles)
    assert checked == expected, f"checked {checked} result elements, expected {expected}"
    return len(schedule)


async def run_ws(dut, rng, config, tiles, p_bubble):
    """Drive ``tiles`` through the weight-stationary array and check every result row."""
    timing = array_timing(config)
    rows, cols = config.rows, config.cols
    schedule = timing.schedule([slots(rng, tile.m, p_bubble) for tile in tiles])
    a_garbage = Garbage(rng, OPERAND_WIDTH * rows)
    w_garbage = Garbage(rng, OPERAND_WIDTH * cols)
    init_garbage = Garbage(rng, 32 * cols)
    checked = 0
    idle_tail = [None] * (timing.result_latency + 2)     # nothing may come out after the end
    for cycle in [*schedule, *idle_tail]:
        result = None if cycle is None else cycle.result
        valid = int(dut.result_valid.value)
        if valid != (result is not None):
            raise AssertionError(f"result_valid={valid} but the schedule expects "
                                 f"{'row ' + str(result) if result else 'no result'}")
        if result is not None:
            index, m = result
            got = split_lanes(int(dut.result_out.value), cols)
            want = tiles[index].expected[m]
            for col in range(cols):
                if got[col] != int(want[col]):
                    raise AssertionError(
                        f"mismatch: rtl=0x{got[col]:08x} golden=0x{int(want[col]):08x} at "
                        f"{tiles[index].describe(index, m, col)}")
            checked += cols
        step = None if cycle is None else cycle.step
        if step is not None:
            index, m = step
            dut.a_in.value = tiles[index].a_steps[m]
            dut.init_in.value = tiles[index].init_rows[m]
        else:
            dut.a_in.value = a_garbage()
            dut.init_in.value = init_garbage()
        dut.valid.value = int(step is not None)
        dut.first.value = int(cycle is not None and cycle.first)
        load = cycle is not None and cycle.load
        dut.load.value = int(load)
        if load:
            index, row = cycle.load_row
            dut.weight_in.value = tiles[index].weight_rows[row]
        else:
            dut.weight_in.value = w_garbage()
        await FallingEdge(dut.clk)
    expected = sum(tile.expected.size for tile in tiles)
    assert checked == expected, f"checked {checked} result elements, expected {expected}"
    return len(schedule)


async def start(dut, config):
    dut.valid.value = dut.first.value = 0
    if config.dataflow == "os":
        dut.shift.value = 0
    else:
        dut.load.value = 0
    await start_clock(dut)
    await reset(dut)


def make_tiles(rng, config, count, tally=None, corner=False):
    return (os_tiles if config.dataflow == "os" else ws_tiles)(rng, config, count, tally,
                                                               corner)


async def run(dut, rng, config, tiles, p_bubble):
    runner = run_os if config.dataflow == "os" else run_ws
    began = time.perf_counter()
    cycles = await runner(dut, rng, config, tiles, p_bubble)
    seconds = time.perf_counter() - began
    record_metrics(tiles=len(tiles), cycles=cycles, seconds=seconds)
    dut._log.info("%d tiles checked against the golden GEMM in %d cycles (%.2f s)",
                  len(tiles), cycles, seconds)


@cocotb.test()
async def tiles_match_golden(dut):
    """Random tiles, each with its own bubble rate, back to back."""
    cfg = case()
    config = config_from_case(cfg)
    rng = make_rng(dut)
    tally = SkipTally() if config.skip_zeros else None
    await start(dut, config)
    if tally is not None:                # the corner cases of skipping first, every seed
        await run(dut, rng, config, make_tiles(rng, config, 4, tally, corner=True), p_bubble=0.1)
    for _ in range(cfg["commands"]):     # back to back, no reset between them
        tiles = make_tiles(rng, config, cfg["tiles"], tally)
        await run(dut, rng, config, tiles, p_bubble=float(rng.choice([0.0, 0.1, 0.3])))
    if tally is not None:
        dut._log.info("%r", tally)
        tally.check_coverage()


@cocotb.test()
async def bubbles_do_not_change_results(dut):
    """The same tiles without bubbles, then with many (first slots included)."""
    cfg = case()
    config = config_from_case(cfg)
    rng = make_rng(dut, salt=1)
    await start(dut, config)
    tiles = make_tiles(rng, config, max(2, cfg["tiles"] // 2))
    await run(dut, rng, config, tiles, p_bubble=0.0)
    await run(dut, rng, config, tiles, p_bubble=0.5)
