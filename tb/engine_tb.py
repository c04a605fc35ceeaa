"""Bench: GemmEngine against the golden GEMM (sim/gemm.py) and the cycle model
(sim/engine_model.py).

``random_gemms``: a sequence of random commands on one engine. Good commands have M, N, K from
1 to a few tiles (rarely multiples of R, C), A and B with per-element fp16/e4m3/e5m2 tags
(zeros, subnormals, infinities and NaNs included, garbage in the unused high byte of FP8
words), either transpose flag, overwrite or accumulate (onto fresh ``C_old`` or onto earlier
results); the operands are written with random idle cycles, every command must take exactly
:func:`sim.engine_model.command_cycles` cycles, and the results are read back (FP32 or a
converted format, random overflow policy, random backpressure) and compared bit for bit with
the golden model run on shadow copies of the memories. Between them come bad commands (zero
sizes, regions outside A, B or C: an error code, 2 cycles, the engine stays usable) and bad
host accesses (writes and reads outside a memory, reads in an unknown format), with the error
cleared by ``clear_error`` or by the next command.

With ``skip_zeros`` (golden :func:`sim.sparsity.gemm_skip`) the A and B of each command get
zeros in one of the patterns of :mod:`tb.skip_cases` (0 % to 100 % random, whole lines,
all-zero array tiles, zeros next to infinities and NaNs) and accumulating commands ``-0`` and
non-canonical NaN starts; at the end the bench checks that it hit the cases where skipping
differs from the dense GEMM and that every other result is the dense one as well.

``hardware_alone``: operands preloaded, one command issued, and the bench sleeps until
``status`` changes (no Python per cycle): measures simulated cycles per wall-clock second,
then checks the results.
"""

import dataclasses
import itertools
import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from hw.engine.mask import MaskError
from sim.engine_model import EngineCommand, EngineError, command_cycles, validate
from sim.formats import OPERAND_FORMATS
from sim.gemm import OPERAND_TAGS
from tb.engine_driver import EngineDriver, config_from_case, operand_words, split_operands
from tb.harness import case, make_rng, record_metrics
from tb.skip_cases import MODES, negative_zero_starts, sparsify
from tb.vectors import fp32_vectors, mixed_bits, moderate_bits

TAG_OF = {name: tag for tag, name in OPERAND_TAGS.items()}


#: Stimulus profiles of a command's operands (and C_old), with their probabilities.
PROFILES = {"moderate": 0.5, "special": 0.3, "zeros": 0.2}


def operand_matrix(rng, shape, formats, profile):
    """Operand words of a random matrix: per-element format tags from ``formats``. Profile
    ``"moderate"``: values around 1 with some zeros and subnormals; ``"special"``: a quarter of
    the elements are edge cases (inf, NaN, max, subnormals, signed zeros); ``"zeros"``: most
    elements are signed zeros (the sign of a zero sum is where a dropped or added ``+0``
    shows)."""
    special = profile == "special"
    count = int(np.prod(shape))
    tags = rng.choice([TAG_OF[f] for f in formats], count).astype(np.uint64)
    bits = np.zeros(count, dtype=np.uint64)
    for tag in np.unique(tags):
        fmt = OPERAND_FORMATS[OPERAND_TAGS[int(tag)]]
        sel = tags == tag
        n = int(sel.sum())
        values = moderate_bits(rng, fmt, n, span_fraction=6)
        odd = mixed_bits(rng, fmt, n)
        if not special:              # keep zeros and subnormals, drop inf / NaN / huge
            odd = np.where((odd & np.uint64(fmt.sign_mask - 1)) < np.uint64(1 << fmt.man_bits),
                           odd, values)
        values = np.where(rng.random(n) < (0.25 if special else 0.15), odd, values)
        if profile == "zeros":
            zeros = rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(fmt.width - 1)
            values = np.where(rng.random(n) < 0.7, zeros, values)
        if fmt.width == 8:           # the unused high byte must be ignored
            values |= rng.integers(0, 256, n, dtype=np.uint64) << np.uint64(8)
        bits[sel] = values
    return operand_words(bits, tags).reshape(shape)


def fp32_matrix(rng, shape, profile):
    """FP32 patterns of ``C_old`` for a profile of :func:`operand_matrix`."""
    count = int(np.prod(shape))
    if profile == "zeros":
        values = rng.integers(0, 2, count, dtype=np.uint32) << np.uint32(31)
    elif profile == "special":
        values = fp32_vectors(rng, count)[rng.permutation(count)]
    else:
        values = rng.standard_normal(count).astype(np.float32).view(np.uint32)
    return values.astype(np.uint64).reshape(shape)


def random_size(rng, lanes, limit):
    """A size in 1..limit: often 1, just around multiples of ``lanes``, or anything."""
    kind = rng.integers(0, 4)
    if kind == 0:
        size = 1
    elif kind == 1:
        size = lanes * int(rng.integers(1, 3)) + int(rng.choice([-1, 1]))
    else:
        size = int(rng.integers(1, limit + 1))
    return int(min(max(size, 1), limit))


def random_command(rng, cfg, max_size):
    """A good command: random sizes, flags and positions that fit."""
    rows, cols = cfg.array.rows, cfg.array.cols
    while True:
        m = random_size(rng, rows, max_size)
        n = random_size(rng, cols, max_size)
        k = random_size(rng, max(rows, cols), max_size)
        a_t, b_t = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
        (ah, aw), (bh, bw) = (k, m) if a_t else (m, k), (n, k) if b_t else (k, n)
        spare = [cfg.a_rows - ah, cfg.spad_width - aw, cfg.b_rows - bh, cfg.spad_width - bw,
                 cfg.acc_rows - m, cfg.acc_width - n]
        if min(spare) < 0:
            continue
        a_row, a_col, b_row, b_col, c_row, c_col = (int(rng.integers(0, s + 1)) for s in spare)
        return EngineCommand(m=m, n=n, k=k, a_row=a_row, a_col=a_col, b_row=b_row,
                             b_col=b_col, c_row=c_row, c_col=c_col, a_transpose=a_t,
                             b_transpose=b_t, accumulate=bool(rng.integers(0, 2)))


def bad_command(rng, cfg, good):
    """``good`` broken in one way: a zero size, or the A, B or C region out of its memory
    (sometimes by one element, sometimes by far)."""
    top = (1 << 16) - 1
    kind = rng.integers(0, 4)
    fields = good.fields()
    flags = {f: bool(fields.pop(f)) for f in EngineCommand.FLAGS}
    if kind == 0:
        fields[str(rng.choice(["m", "n", "k"]))] = 0
    else:
        matrix = "abc"[kind - 1]
        axis = str(rng.choice(["row", "col"]))
        limit = {"a": (cfg.a_rows, cfg.spad_width), "b": (cfg.b_rows, cfg.spad_width),
                 "c": (cfg.acc_rows, cfg.acc_width)}[matrix][axis == "col"]
        field = f"{matrix}_{axis}"
        extent = {"a": good.a_shape, "b": good.b_shape, "c": (good.m, good.n)}[matrix]
        extent = extent[axis == "col"]
        if rng.random() < 0.5:
            fields[field] = int(rng.integers(limit, top + 1))          # starts outside
        else:
            fields[field] = limit - extent + 1                         # ends one past
    return EngineCommand(**fields, **flags)


def with_zeros(rng, cfg, words, side, transposed, mode):
    """Operand words of A or B (``side``) with zeros placed as ``mode`` of
    :data:`tb.skip_cases.MODES` says; blocks are ``R x R`` in A (``M x K``) and ``R x C`` in B
    (``K x N``): array tiles, and K slices of a weight-stationary array."""
    bits, tags = split_operands(words)
    rows, cols = cfg.array.rows, cfg.array.cols
    block = (rows, rows) if side == "a" else (rows, cols)
    return operand_words(sparsify(rng, tags, bits, mode, block[::-1] if transposed else block),
                         tags)


#: Patterns of a host keep mask (:func:`host_mask`).
MASK_PATTERNS = ("random", "sparse", "dense", "nothing kept", "all kept", "rows", "columns",
                 "tiles")


def host_mask(rng, cfg, shape, pattern):
    """0/1 keep bits of an ``M x N`` output: random (half, a tenth or nine tenths kept),
    nothing or everything kept, whole rows or columns dropped (what lets a window skip), or
    whole ``R x C`` blocks dropped."""
    rows, cols = cfg.array.rows, cfg.array.cols
    m, n = shape
    if pattern in ("random", "sparse", "dense"):
        share = {"random": 0.5, "sparse": 0.1, "dense": 0.9}[pattern]
        keep = rng.random(shape) < share
    elif pattern in ("nothing kept", "all kept"):
        keep = np.full(shape, pattern == "all kept")
    elif pattern == "rows":
        keep = np.repeat(rng.random((m, 1)) < 0.4, n, axis=1) & (rng.random(shape) < 0.8)
    elif pattern == "columns":
        keep = np.repeat(rng.random((1, n)) < 0.4, m, axis=0) & (rng.random(shape) < 0.8)
    else:
        blocks = rng.random((-(-m // rows), -(-n // cols))) < 0.5
        keep = np.kron(blocks, np.ones((rows, cols), dtype=bool))[:m, :n] \
            & (rng.random(shape) < 0.7)
    return keep.astype(np.uint64)


async def with_masks(driver, rng, cfg, command, *, host=None, dropout=None, pattern=None,
                     keep=None):
    """``command`` with an output mask: the host plane (a :data:`MASK_PATTERNS` pattern,
    written over ``wr_mask``) and/or the dropout plane (regenerated by the engine from a random
    seed and threshold), each at the command's C region; sometimes a plane is left as an
    earlier command wrote it. ``host`` / ``dropout`` force the selection, ``keep`` the host
    plane's bits."""
    if host is None and dropout is None:
        choice = int(rng.integers(1, 4))
        host, dropout = bool(choice & 1), bool(choice & 2)
    shape, place = (command.m, command.n), (command.c_row, command.c_col)
    if host and (pattern is not None or keep is not None or rng.random() < 0.85):
        if keep is None:
            keep = host_mask(rng, cfg, shape, pattern or str(rng.choice(MASK_PATTERNS)))
        await driver.load(mask=(np.asarray(keep, dtype=np.uint64), *place))
    if dropout and rng.random() < 0.85:
        threshold = int(rng.choice([int(rng.integers(1, 256)), 64, 128, 250]))
        await driver.dropout_mask(seed=int(rng.integers(1, 1 << 32)), threshold=threshold,
                                  m=command.m, n=command.n, row=place[0], col=place[1])
    return dataclasses.replace(command, mask_host=host, mask_dropout=dropout)


async def bad_mask(driver, rng, cfg):
    """A dropout mask command the engine refuses: zero seed, threshold above 2^8, zero size,
    or a mask that does not fit the plane; ``mask_status`` must say which, the engine's own
    status nothing, and ``clear_error`` clears it."""
    fields = dict(seed=int(rng.integers(1, 1 << 32)), threshold=int(rng.integers(0, 257)),
                  m=int(rng.integers(1, cfg.acc_rows + 1)), n=1, row=0, col=0)
    fields["n"] = int(rng.integers(1, cfg.acc_width + 1))
    kind = int(rng.integers(0, 4))
    if kind == 0:
        fields["seed"] = 0
    elif kind == 1:
        fields["threshold"] = int(rng.integers(257, 512))
    elif kind == 2:
        fields[str(rng.choice(["m", "n"]))] = 0
    elif rng.random() < 0.5:
        fields["row"] = cfg.acc_rows - fields["m"] + 1
    else:
        fields["col"] = int(rng.integers(cfg.acc_width - fields["n"] + 1, 1 << 16))
    before = driver.status()
    want = await driver.dropout_mask(**fields)
    assert want is not MaskError.NONE, fields
    after = driver.status()
    assert (after["error"], after["error_code"]) == (before["error"], before["error_code"]), \
        f"a bad dropout mask {fields} changed the engine's status: {before} -> {after}"
    await driver.clear_error()
    await ReadOnly()
    assert driver.mask_status()["error"] == 0, "mask_status error not cleared"
    await FallingEdge(driver.dut.clk)
    return want


async def mask_corners(driver, rng, cfg):
    """An engine with output masks first meets: nothing kept (every output ``+0``, onto
    ``C_old`` of NaNs and infinities), everything kept (the unmasked bits), the two planes
    together, and whole rows dropped with A dense (a window engine must skip them)."""
    rows, cols = cfg.array.rows, cfg.array.cols
    command = EngineCommand(m=2 * rows + 1, n=cols + 2, k=rows + 2, accumulate=True)
    for host, dropout, pattern in ((True, False, "nothing kept"), (True, False, "all kept"),
                                   (True, True, "random"), (False, True, None),
                                   (True, False, "rows")):
        a = operand_matrix(rng, command.a_shape, cfg.array.a_formats, "moderate")
        b = operand_matrix(rng, command.b_shape, cfg.array.b_formats, "special")
        c_old = fp32_matrix(rng, (command.m, command.n), "special")
        await driver.load(a=(a, 0, 0), b=(b, 0, 0), acc=(c_old, 0, 0))
        masked = await with_masks(driver, rng, cfg, command, host=host, dropout=dropout,
                                  pattern=pattern)
        await driver.command(masked)
        await driver.read_matrix(0, 0, command.m, command.n)
        if pattern == "nothing kept":
            assert (driver.acc.contents[:command.m, :command.n] == 0).all()


async def run_good(driver, rng, cfg, command, profile):
    formats_a, formats_b = cfg.array.a_formats, cfg.array.b_formats
    a = operand_matrix(rng, command.a_shape, formats_a, profile)
    b = operand_matrix(rng, command.b_shape, formats_b, profile)
    c_old = None
    if command.accumulate and rng.random() < 0.7:       # else onto what the memory holds
        c_old = (fp32_matrix(rng, (command.m, command.n), profile), command.c_row, command.c_col)
    if cfg.array.skip_zeros:
        a = with_zeros(rng, cfg, a, "a", command.a_transpose, str(rng.choice(list(MODES))))
        b = with_zeros(rng, cfg, b, "b", command.b_transpose, str(rng.choice(list(MODES))))
        if c_old is not None:
            c_old = (negative_zero_starts(rng, c_old[0]), *c_old[1:])
    await driver.load(a=(a, command.a_row, command.a_col), b=(b, command.b_row, command.b_col),
                      acc=c_old)
    if cfg.output_mask and rng.random() < 0.6:
        command = await with_masks(driver, rng, cfg, command)
    # sometimes the host writes other rows of A and B while the command runs (allowed: the
    # write ports are the host's own); they must not disturb it
    meanwhile = None
    if rng.random() < 0.3:
        rows = {}
        for name, height, start, extent in (("a", cfg.a_rows, command.a_row, command.a_shape[0]),
                                            ("b", cfg.b_rows, command.b_row, command.b_shape[0])):
            free = [r for r in range(height) if not start <= r < start + extent]
            if free:
                row = int(rng.choice(free))
                formats = cfg.array.a_formats if name == "a" else cfg.array.b_formats
                width = int(rng.integers(1, cfg.spad_width + 1))
                rows[name] = (operand_matrix(rng, (1, width), formats, "special"), row, 0)
        meanwhile = cocotb.start_soon(driver.load(**rows))
    cycles = await driver.command(command)
    if meanwhile is not None:
        await meanwhile
    fmt_index = 0 if rng.random() < 0.6 else int(rng.integers(0, len(cfg.out_formats)))
    await driver.read_matrix(command.c_row, command.c_col, command.m, command.n,
                             fmt_index=fmt_index, saturate=int(rng.integers(0, 2)))
    return cycles


async def bad_access(driver, rng, cfg):
    """One host write or read outside its memory (or in an unknown format); returns the error
    it must raise."""
    kind = rng.integers(0, 3)
    top = (1 << 16) - 1
    if kind == 0:                   # a write outside A, B or the accumulator memory
        name = str(rng.choice(["wr_a", "wr_b", "wr_acc"]))
        height, width = {"wr_a": (cfg.a_rows, cfg.spad_width), "wr_b": (cfg.b_rows, cfg.spad_width),
                         "wr_acc": (cfg.acc_rows, cfg.acc_width)}[name]
        lanes = cfg.array.rows if name == "wr_a" else cfg.array.cols
        if rng.random() < 0.5:
            row, col = int(rng.integers(height, top + 1)), int(rng.integers(0, width))
        else:
            row, col = int(rng.integers(0, height)), int(rng.integers(width, top + 1))
        data = [int(v) for v in rng.integers(0, 1 << 18, lanes)]
        await driver.raw_write(name, row, col, data, (1 << lanes) - 1)
        return EngineError.ACCESS_RANGE
    if kind == 1:                   # a read outside the accumulator memory
        row, col = ((int(rng.integers(cfg.acc_rows, top + 1)), 0) if rng.random() < 0.5
                    else (0, int(rng.integers(cfg.acc_width, top + 1))))
        await driver.read([(row, col, 0, 0)])
        return EngineError.ACCESS_RANGE
    fmt_bits = max(1, (max(2, len(cfg.out_formats)) - 1).bit_length())
    if len(cfg.out_formats) == 1 << fmt_bits:
        return await bad_access(driver, rng, cfg)      # every index is a format here
    fmt = int(rng.integers(len(cfg.out_formats), 1 << fmt_bits))
    await driver.read([(int(rng.integers(0, cfg.acc_rows)), 0, fmt, 0)])
    return EngineError.READ_FORMAT


async def signed_zeros(driver, rng, cfg):
    """A corner case first: accumulate onto ``-0`` with signed-zero operands and ``K = R + 1``
    (an edge tile in every direction, and a K slice of one row padded to ``R`` in weight
    stationary). A is all ``-0`` and B mostly ``+0``: most products are ``-0`` and so are many
    results, which any ``+0`` added on the way would turn into ``+0``."""
    rows, cols = cfg.array.rows, cfg.array.cols
    command = EngineCommand(m=rows + 1, n=cols + 1, k=rows + 1, accumulate=True)
    sign = {tag: OPERAND_FORMATS[name].sign_mask for tag, name in OPERAND_TAGS.items()}
    _, a_tags = split_operands(operand_matrix(rng, command.a_shape, cfg.array.a_formats, "zeros"))
    a = operand_words(np.vectorize(sign.get)(a_tags.astype(int)), a_tags)
    b_bits, b_tags = split_operands(
        operand_matrix(rng, command.b_shape, cfg.array.b_formats, "zeros"))
    b = operand_words(np.where(rng.random(command.b_shape) < 0.95, 0, b_bits), b_tags)
    c_old = np.full((command.m, command.n), 0x80000000, dtype=np.uint64)
    await driver.load(a=(a, 0, 0), b=(b, 0, 0), acc=(c_old, 0, 0))
    await driver.command(command)
    golden = driver.acc.contents[:command.m, :command.n]
    assert (golden == 0x80000000).any(), "no -0 result: the case tests nothing"
    await driver.read_matrix(0, 0, command.m, command.n)


async def skip_corners(driver, rng, cfg):
    """A skipping engine first meets the cases where it differs from a dense one: accumulate
    onto ``-0`` and non-canonical NaN starts, with zeros sprinkled next to infinities and NaNs
    in A and in B, ``K = R + 1``."""
    rows, cols = cfg.array.rows, cfg.array.cols
    command = EngineCommand(m=rows + 1, n=cols + 1, k=rows + 1, accumulate=True)
    a = with_zeros(rng, cfg, operand_matrix(rng, command.a_shape, cfg.array.a_formats, "zeros"),
                   "a", False, "specials")
    b = with_zeros(rng, cfg, operand_matrix(rng, command.b_shape, cfg.array.b_formats, "zeros"),
                   "b", False, "specials")
    c_old = negative_zero_starts(rng, fp32_matrix(rng, (command.m, command.n), "moderate"),
                                 share=0.6, nan_share=0.3)
    await driver.load(a=(a, 0, 0), b=(b, 0, 0), acc=(c_old, 0, 0))
    await driver.command(command)
    await driver.read_matrix(0, 0, command.m, command.n)


async def window_sweep(driver, rng, cfg):
    """A lookahead-window engine runs one long-K command (``K`` the scratchpad width less one,
    ``M = 2R + 1``, ``N = C + 1``) per zero pattern of A, B dense, then the same with B's
    rows zero in the pattern: each takes the cycles of :func:`sim.skip_timing.engine_cycles`
    (checked in :meth:`EngineDriver.command`) and the sparse ones must beat the dense engine."""
    rows, cols = cfg.array.rows, cfg.array.cols
    command = EngineCommand(m=2 * rows + 1, n=cols + 1, k=cfg.spad_width - 1)
    for side in ("a", "b"):
        for mode in ("dense", "half", "sparse", "empty", "lines", "blocks"):
            a = operand_matrix(rng, command.a_shape, cfg.array.a_formats, "moderate")
            b = operand_matrix(rng, command.b_shape, cfg.array.b_formats, "moderate")
            if side == "a":
                a = with_zeros(rng, cfg, a, "a", False, mode)
            else:
                b = with_zeros(rng, cfg, b, "b", False, mode)
            await driver.load(a=(a, 0, 0), b=(b, 0, 0))
            cycles = await driver.command(command)
            dense = command_cycles(cfg, command)
            driver.dut._log.info("window sweep, zeros %s in %s: %d cycles, dense engine %d",
                                 mode, side.upper(), cycles, dense)
            if mode in ("sparse", "empty"):
                assert cycles < dense, (mode, side, cycles, dense)
            await driver.read_matrix(0, 0, command.m, command.n)
    if cfg.output_mask:
        # A and B dense (but for the zeros of "moderate"), the outputs of whole tile rows or
        # tile columns masked (the middle band of R rows, the last C + 1st column) or all
        kept = np.random.default_rng(0).random((command.m, command.n)) < 0.5
        kept[:, 0] = True
        bands = kept.copy()
        bands[rows:2 * rows] = False
        columns = kept.copy()
        columns[:, cols:] = False
        # A sparse but the first row of every band, whose outputs are masked: the window
        # must skip those rows (a row's own mask, not its tile's)
        first_rows = kept.copy()
        first_rows[::rows] = False
        first_rows[1::rows, 0] = True
        for pattern, keep in (("a band", bands), ("a column group", columns),
                              ("every band's dense first row", first_rows),
                              ("all", np.zeros_like(kept))):
            a = operand_matrix(rng, command.a_shape, cfg.array.a_formats, "moderate")
            b = operand_matrix(rng, command.b_shape, cfg.array.b_formats, "moderate")
            if pattern.startswith("every"):
                sparse = with_zeros(rng, cfg, a, "a", False, "sparse")
                a = np.where((np.arange(command.m) % rows == 0)[:, None], a, sparse)
            await driver.load(a=(a, 0, 0), b=(b, 0, 0))
            masked = await with_masks(driver, rng, cfg, command, host=True, dropout=False,
                                      keep=keep)
            cycles = await driver.command(masked)
            dense = command_cycles(cfg, command)
            driver.dut._log.info("window sweep, outputs of %s masked: %d cycles, dense "
                                 "engine %d", pattern, cycles, dense)
            assert cycles < dense, (pattern, cycles, dense)
            await driver.read_matrix(0, 0, command.m, command.n)


@cocotb.test()
async def random_gemms(dut):
    cfg = config_from_case(case())
    rng = make_rng(dut)
    driver = EngineDriver(dut, cfg, rng)
    await driver.start()
    await driver.check_error(EngineError.NONE, "after reset")
    await signed_zeros(driver, rng, cfg)
    if cfg.array.skip_zeros:
        await skip_corners(driver, rng, cfg)
    if cfg.output_mask:
        await mask_corners(driver, rng, cfg)
    if cfg.array.skip_window > 1:
        await window_sweep(driver, rng, cfg)
    max_size = min(3 * max(cfg.array.rows, cfg.array.cols), cfg.a_rows, cfg.b_rows,
                   cfg.acc_rows, cfg.spad_width, cfg.acc_width)
    counts = {"good": 0, "bad": 0, "access": 0, "cycles": 0, "dense_cycles": 0, "ideal": 0,
              "bad_mask": 0}
    start = time.perf_counter()
    # commands 1, 2 and 3 are a bad command, a bad access and (with masks) a bad mask command,
    # whatever the seed, so that every run covers each; the others are drawn
    forced = {1: "bad", 2: "access", 3: "bad_mask" if cfg.output_mask else None}
    # until ``commands`` engine commands (good and bad) of this loop have run (the directed
    # cases above ran their own); bad host accesses and bad mask commands come on top
    directed = driver.commands
    for index in itertools.count():
        if driver.commands - directed >= case()["commands"]:
            break
        choice = rng.random()
        profile = str(rng.choice(list(PROFILES), p=list(PROFILES.values())))
        kind = forced.get(index) or ("bad" if choice < 0.15 else "access" if choice < 0.22 else
                                     "bad_mask" if cfg.output_mask and choice < 0.27 else "good")
        if kind == "bad":
            command = bad_command(rng, cfg, random_command(rng, cfg, max_size))
            want = validate(cfg, command)
            assert want is not EngineError.NONE, command
            await driver.command(command)
            counts["bad"] += 1
        elif kind == "access":
            want = await bad_access(driver, rng, cfg)
            await driver.check_error(want, "after a bad host access")
            counts["access"] += 1
        elif kind == "bad_mask":
            await bad_mask(driver, rng, cfg)
            counts["bad_mask"] += 1
            continue
        else:
            command = random_command(rng, cfg, max_size)
            counts["cycles"] += await run_good(driver, rng, cfg, command, profile)
            counts["dense_cycles"] += command_cycles(cfg, command)
            counts["ideal"] += command.m * command.n * command.k
            counts["good"] += 1
            continue
        if rng.random() < 0.5:       # else the next command clears it
            await driver.clear_error()
            await driver.check_error(EngineError.NONE, "after clear_error")
    assert counts["good"] >= case()["commands"] // 2, counts
    if cfg.output_mask:
        dut._log.info("output masks: %d outputs masked, %d kept; %d bad dropout mask "
                      "commands", driver.masked_outputs, driver.kept_outputs,
                      counts["bad_mask"])
        assert driver.masked_outputs and driver.kept_outputs and counts["bad_mask"], counts
        dut._log.info("dropout masks written (m, n, cycles from accept to mask_status.busy "
                      "low): %s", driver.mask_writes)
    if driver.skip_tally is not None:
        dut._log.info("%r", driver.skip_tally)
        driver.skip_tally.check_coverage()
    seconds = time.perf_counter() - start
    record_metrics(commands=driver.commands, accesses=counts["access"],
                   mask_commands=counts["bad_mask"], cycles=counts["cycles"], seconds=seconds)
    dut._log.info("%d good commands (%d MACs in %d cycles), %d bad commands, %d bad accesses",
                  counts["good"], counts["ideal"], counts["cycles"], counts["bad"],
                  counts["access"])
    if cfg.array.skip_window > 1:
        dut._log.info("lookahead window %d: the random commands took %d cycles, the dense "
                      "engine would take %d", cfg.array.skip_window, counts["cycles"],
                      counts["dense_cycles"])


@cocotb.test()
async def hardware_alone(dut):
    """One GEMM with the operands preloaded; the bench wakes up only when status changes (or,
    with ``per_cycle`` in the case, every cycle, to measure what Python per cycle costs)."""
    cfg = config_from_case(case())
    rng = make_rng(dut)
    driver = EngineDriver(dut, cfg, rng, p_idle=0.0, p_stall=0.0)
    m, n, k = case()["gemm"]
    command = EngineCommand(m=m, n=n, k=k)
    a = operand_matrix(rng, command.a_shape, cfg.array.a_formats, "moderate")
    b = operand_matrix(rng, command.b_shape, cfg.array.b_formats, "moderate")
    await driver.start()
    await driver.load(a=(a, 0, 0), b=(b, 0, 0))
    start = time.perf_counter()
    cpu_start = time.process_time()      # the simulator runs in this process: its CPU time
    # per_cycle: the same GEMM with Python checking status every cycle (cocotb's cost per cycle)
    cycles = await driver.command(command, hardware_alone=not case().get("per_cycle", False))
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    record_metrics(gemm=[m, n, k], per_cycle=bool(case().get("per_cycle", False)),
                   cycles=cycles, seconds=seconds,
                   cycles_per_second=cycles / seconds, cpu_seconds=cpu_seconds,
                   cycles_per_cpu_second=cycles / cpu_seconds)
    dut._log.info("%dx%dx%d GEMM: %d cycles in %.2f s of wall time: %.0f cycles/s",
                  m, n, k, cycles, seconds, cycles / seconds)
    await driver.read_matrix(0, 0, m, n)
