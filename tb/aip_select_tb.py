"""Bench: AipSelect against the golden AIP selection (:func:`sim.aip.select_keep`).

* ``keep_matches_golden``: jobs of both modes (thresholds written, command, ``M`` rows of
  ``N`` FP32 values) back to back; rows with NaN (quiet, signalling, negative), +-inf, +-0,
  subnormals, many ties (values drawn from a pool of a few), values equal to their thresholds;
  ``N`` of 1, ``C``, not a multiple of ``C`` and ``max_len``; ``n`` of 1, ``N`` and random;
  garbage in the lanes beyond ``N`` of a row's last beat and in thresholds beyond ``N``. Random
  idle input cycles and backpressure; every keep bit, ``mask``, ``row`` and ``col`` of every
  beat against the golden model.
* ``timing_matches_docstring``: without idle input or backpressure, a ``THRESHOLD`` keep beat
  comes 2 cycles after its input beat and a ``TOP_N`` row's beat ``g`` ``N + 2 + g`` cycles
  after its first beat, rows ``N + G + 1`` cycles apart.
* ``bad_commands_then_good``: each bad command (mode 2 and 3, ``rows`` or ``length`` 0,
  ``length > max_len``, ``n`` 0, ``n > N``, ``n > max_n``, a NaN threshold in the row, several
  faults at once) and a threshold write beyond the memory produce no output and the exact
  sticky :class:`~hw.aip.select.SelectFault`; the good job after each runs correctly; the first
  fault's code is kept; ``clear_error`` clears.

The configuration (lanes, max_len, max_n, vectors) comes from the pytest runner.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly

from hw.aip.select import (AipSelect, SelectFault, SelectStatus, keep_layout,
                           select_command_layout, threshold_write_layout)
from sim.aip import select_keep
from sim.aip_spec import SelectMode
from tb.harness import clear_error, StreamChecker, case, make_rng, next_cycle, reset, start_clock
from tb.packing import fields, pack_word

#: FP32 words a row draws its special values from
SPECIALS = np.array([
    0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFBFFFFF,    # NaN: quiet, negative, signalling
    0x7F800000, 0xFF800000,                            # +-inf
    0x00000000, 0x80000000,                            # +-0
    0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF,    # subnormals
    0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,    # smallest normal, largest finite
    0x3F800000, 0xBF800000,                            # +-1
], dtype=np.uint32)
NAN_WORDS = SPECIALS[:4]
FIELD_MASK = (1 << 16) - 1


class Config:
    def __init__(self, cfg):
        self.C, self.L = cfg["lanes"], cfg["max_len"]
        self.E = cfg.get("max_n") or self.L
        self.unit = AipSelect(lanes=self.C, max_len=self.L, max_n=self.E)
        self.G = self.unit.beats
        self.vectors = cfg.get("vectors", 0)
        self.keep = keep_layout(self.C)
        self.status = fields(SelectStatus)


class Job:
    """A command with its thresholds and input rows (``y``: ``M x N`` uint32 words)."""

    def __init__(self, mode, y, *, thresholds=None, n=0, row=0, col=0, garbage=None):
        self.mode, self.y, self.thresholds, self.n = int(mode), y, thresholds, n
        self.row, self.col = row, col
        self.garbage = garbage          # words for lanes beyond N (and thresholds beyond N)
        self.preloaded = False          # thresholds already in the unit: none written

    @property
    def M(self):
        return self.y.shape[0]

    @property
    def N(self):
        return self.y.shape[1]

    def command(self, *, mode=None, n=None, length=None, rows=None) -> int:
        return pack_word(select_command_layout(), mode=self.mode if mode is None else mode,
                         n=self.n if n is None else n,
                         length=self.N if length is None else length,
                         rows=self.M if rows is None else rows, row=self.row, col=self.col)

    def threshold_writes(self, cfg: Config, rng) -> list[int]:
        """Writes of every threshold beat of the row; a beat is sometimes split into two
        writes with complementary lane masks; lanes beyond N get garbage."""
        if self.thresholds is None or self.preloaded:
            return []
        G = -(-self.N // cfg.C)
        words = np.resize(self.garbage, G * cfg.C).astype(np.uint32)
        words[:self.N] = self.thresholds
        writes = []
        full = (1 << cfg.C) - 1
        for beat in range(G):
            data = sum(int(w) << (32 * t) for t, w in enumerate(words[beat * cfg.C:][:cfg.C]))
            split = int(rng.integers(0, full + 1)) if rng.random() < 0.3 else full
            for mask in (split, full & ~split):
                if mask:
                    writes.append(pack_word(threshold_write_layout(cfg.C), beat=beat, data=data,
                                             mask=mask))
        return writes

    def beats(self, cfg: Config) -> list[int]:
        G = -(-self.N // cfg.C)
        out = []
        for r in range(self.M):
            words = np.resize(self.garbage, G * cfg.C).astype(np.uint32)
            words[:self.N] = self.y[r]
            for beat in range(G):
                out.append(sum(int(w) << (32 * t)
                               for t, w in enumerate(words[beat * cfg.C:][:cfg.C])))
        return out

    def golden(self) -> np.ndarray:
        y = self.y.view(np.float32)
        if self.mode == SelectMode.THRESHOLD:
            return select_keep(y, SelectMode.THRESHOLD, thresholds=self.thresholds.view(np.float32))
        return select_keep(y, SelectMode.TOP_N, n=self.n)

    def expected(self, cfg: Config) -> tuple[list[int], list[str]]:
        keep = self.golden()
        G = -(-self.N // cfg.C)
        words, notes = [], []
        for r in range(self.M):
            for beat in range(G):
                lanes = min(cfg.C, self.N - beat * cfg.C)
                bits = sum(int(k) << t for t, k in enumerate(keep[r, beat * cfg.C:][:lanes]))
                words.append(pack_word(cfg.keep, row=(self.row + r) & FIELD_MASK,
                                       col=(self.col + beat * cfg.C) & FIELD_MASK, data=bits,
                                       mask=(1 << lanes) - 1))
                notes.append(f"{self} row {r} beat {beat}: {self.describe_row(r)}")
        return words, notes

    def describe_row(self, r) -> str:
        text = "y=[" + " ".join(f"{int(w):08x}" for w in self.y[r]) + "]"
        if self.thresholds is not None:
            text += " t=[" + " ".join(f"{int(w):08x}" for w in self.thresholds) + "]"
        return text

    def __repr__(self):
        extra = f" n={self.n}" if self.mode == SelectMode.TOP_N else ""
        return (f"{SelectMode(self.mode).name} M={self.M} N={self.N}{extra} at "
                f"({self.row}, {self.col})")


def random_words(rng, shape, style: str, pool_values=None) -> np.ndarray:
    """FP32 words: ``ties`` from a pool of a few values (specials and normals), ``specials``
    mostly from :data:`SPECIALS`, ``normal`` float32 normals, ``bits`` any 32-bit pattern."""
    size = int(np.prod(shape))
    if style == "ties":
        pool = pool_values if pool_values is not None else np.concatenate([
            rng.choice(SPECIALS, 2),
            rng.standard_normal(2).astype(np.float32).view(np.uint32)])
        words = rng.choice(pool, size)
    elif style == "specials":
        words = np.where(rng.random(size) < 0.7, rng.choice(SPECIALS, size),
                         rng.standard_normal(size).astype(np.float32).view(np.uint32))
    elif style == "normal":
        words = rng.standard_normal(size).astype(np.float32).view(np.uint32)
    else:
        words = rng.integers(0, 1 << 32, size, dtype=np.uint64)
    return np.asarray(words, dtype=np.uint32).reshape(shape)


def no_nan(rng, words: np.ndarray) -> np.ndarray:
    """``words`` with every NaN replaced by a non-NaN special."""
    words = words.copy()
    nan = np.isnan(words.view(np.float32))
    numbers = SPECIALS[~np.isnan(SPECIALS.view(np.float32))]
    words[nan] = rng.choice(numbers, int(nan.sum()))
    return words


def random_job(cfg: Config, rng, *, mode=None, N=None, M=None, n=None) -> Job:
    mode = SelectMode(int(rng.integers(0, 2))) if mode is None else mode
    if N is None:
        N = int(rng.choice([1, cfg.C, cfg.C + 1, cfg.L, int(rng.integers(1, cfg.L + 1))]))
        N = min(N, cfg.L)
    M = int(rng.integers(1, 5)) if M is None else M
    style = str(rng.choice(["ties", "specials", "normal", "bits"]))
    pool = np.concatenate([rng.choice(SPECIALS, 2),
                           rng.standard_normal(2).astype(np.float32).view(np.uint32)])
    y = random_words(rng, (M, N), style, pool)
    garbage = random_words(rng, (cfg.C,), "specials")
    row, col = int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 16))
    if mode == SelectMode.THRESHOLD:
        # thresholds from the same pool make y == t common (not kept)
        t = no_nan(rng, random_words(rng, (N,), style if style != "bits" else "specials", pool))
        return Job(mode, y, thresholds=t, row=row, col=col, garbage=garbage)
    if n is None:
        top = min(N, cfg.E)
        n = int(rng.choice([1, top, int(rng.integers(1, top + 1))]))
    return Job(mode, y, n=n, row=row, col=col, garbage=garbage)


def edge_jobs(cfg: Config, rng) -> list[Job]:
    """n = 1 and n = N (N <= max_n), N of 1, C, C + 1 and max_len, in both modes."""
    jobs = []
    for N in sorted({1, min(cfg.C, cfg.L), min(cfg.C + 1, cfg.L), cfg.L, min(cfg.E, cfg.L)}):
        jobs.append(random_job(cfg, rng, mode=SelectMode.THRESHOLD, N=N, M=2))
        jobs.append(random_job(cfg, rng, mode=SelectMode.TOP_N, N=N, M=2, n=1))
        if N <= cfg.E:
            jobs.append(random_job(cfg, rng, mode=SelectMode.TOP_N, N=N, M=2, n=N))
    return jobs


async def start(dut):
    for name in ("cmd", "wr_threshold", "i"):
        getattr(dut, f"{name}__valid").value = 0
        getattr(dut, f"{name}__payload").value = 0
    dut.o__ready.value = 0
    dut.clear_error.value = 0
    await start_clock(dut)
    await reset(dut)


async def write_thresholds(dut, writes: list[int]):
    """Write threshold words, one per cycle (the port is always ready)."""
    for word in writes:
        dut.wr_threshold__valid.value = 1
        dut.wr_threshold__payload.value = word
        await ReadOnly()
        assert dut.wr_threshold__ready.value, "wr_threshold not ready"
        await next_cycle(dut)
    dut.wr_threshold__valid.value = 0


async def issue(dut, rng, word: int, p_idle=0.3):
    """Offer a command (after random idle cycles) until it is accepted."""
    while rng.random() < p_idle:
        await next_cycle(dut)
    dut.cmd__valid.value = 1
    dut.cmd__payload.value = word
    for _ in range(100_000):
        await ReadOnly()
        if dut.cmd__ready.value:
            break
        await next_cycle(dut)
    else:
        raise AssertionError("command never accepted")
    await next_cycle(dut)
    dut.cmd__valid.value = 0


async def wait_ready(dut):
    """Wait until the unit takes a command (its previous one finished)."""
    for _ in range(100_000):
        await ReadOnly()
        if dut.cmd__ready.value:
            await next_cycle(dut)
            return
        await next_cycle(dut)
    raise AssertionError("unit never idle")


async def command_driver(dut, cfg: Config, rng, jobs: list[Job]):
    """Per job: wait until the unit is idle, write its thresholds, issue its command."""
    for job in jobs:
        await wait_ready(dut)
        await write_thresholds(dut, job.threshold_writes(cfg, rng))
        await issue(dut, rng, job.command())


def status_of(cfg: Config, dut) -> tuple[int, int, SelectFault]:
    word = int(dut.status.value)
    get = lambda name: (word >> cfg.status[name][0]) & ((1 << cfg.status[name][1]) - 1)
    return get("busy"), get("error"), SelectFault(get("error_code"))


def describe_keep(cfg: Config, word: int) -> str:
    get = lambda name: (word >> fields(cfg.keep)[name][0]) & ((1 << fields(cfg.keep)[name][1]) - 1)
    return (f"keep beat at ({get('row')}, {get('col')}) data {get('data'):0{cfg.C}b} "
            f"mask {get('mask'):0{cfg.C}b} (lane 0 rightmost)")


def max_latency(cfg: Config) -> int:
    return 2 * cfg.L + 4 * cfg.G + 64


async def run_jobs(dut, cfg: Config, rng, jobs: list[Job], *, p_idle=0.3, p_stall=0.3) -> int:
    """Run ``jobs`` back to back (commands and thresholds from a concurrent driver), checking
    every keep beat; returns the cycles."""
    inputs, words, notes, row_ends = [], [], [], []
    for job in jobs:
        beats = job.beats(cfg)
        per_row = len(beats) // job.M
        row_ends += range(len(inputs) + per_row, len(inputs) + len(beats) + 1, per_row)
        inputs += beats
        expected, described = job.expected(cfg)
        words += expected
        notes += described
    driver = cocotb.start_soon(command_driver(dut, cfg, rng, jobs))
    checker = StreamChecker(dut, rng, p_idle=p_idle, p_stall=p_stall)

    # a TOP_N row's keep beats wait for its last beat: a long run is played in chunks of rows
    cycles = await checker.run(inputs, words, lambda k: notes[k], max_latency=max_latency(cfg),
                               cuts=row_ends)
    await driver
    return cycles


@cocotb.test()
async def keep_matches_golden(dut):
    cfg = Config(case())
    rng = make_rng(dut)
    await start(dut)
    jobs = edge_jobs(cfg, rng)
    elements = sum(j.M * j.N for j in jobs)
    while elements < cfg.vectors:
        job = random_job(cfg, rng)
        jobs.append(job)
        elements += job.M * job.N
    cycles = await run_jobs(dut, cfg, rng, jobs)
    rows = sum(j.M for j in jobs)
    dut._log.info("checked %d elements (%d rows, %d jobs: %d THRESHOLD, %d TOP_N) against the "
                  "golden model in %d cycles", elements, rows, len(jobs),
                  sum(j.mode == SelectMode.THRESHOLD for j in jobs),
                  sum(j.mode == SelectMode.TOP_N for j in jobs), cycles)
    assert status_of(cfg, dut) == (0, 0, SelectFault.NONE), f"status {status_of(cfg, dut)}"


@cocotb.test()
async def timing_matches_docstring(dut):
    cfg = Config(case())
    rng = make_rng(dut, salt=1)
    await start(dut)
    N = cfg.L if cfg.L % cfg.C else max(1, cfg.L - 1)
    G = -(-N // cfg.C)
    for job in (random_job(cfg, rng, mode=SelectMode.THRESHOLD, N=N, M=3),
                random_job(cfg, rng, mode=SelectMode.TOP_N, N=N, M=3, n=min(N, cfg.E))):
        await write_thresholds(dut, job.threshold_writes(cfg, rng))
        dut.cmd__valid.value = 1
        dut.cmd__payload.value = job.command()
        await next_cycle(dut)
        dut.cmd__valid.value = 0
        inputs = job.beats(cfg)
        want, notes = job.expected(cfg)
        dut.o__ready.value = 1
        sent_at, got_at, cycle = [], [], 1
        while len(got_at) < len(want):
            assert cycle < 10 * len(want) * (N + G + 2), f"{job}: timed out"
            dut.i__valid.value = int(len(sent_at) < len(inputs))
            if len(sent_at) < len(inputs):
                dut.i__payload.value = inputs[len(sent_at)]
            await ReadOnly()
            if len(sent_at) < len(inputs) and dut.i__ready.value:
                sent_at.append(cycle)
            if dut.o__valid.value:
                k = len(got_at)
                got = int(dut.o__payload.value)
                assert got == want[k], (f"{notes[k]}: rtl {describe_keep(cfg, got)}, golden "
                                        f"{describe_keep(cfg, want[k])}")
                got_at.append(cycle)
            await next_cycle(dut)
            cycle += 1
        dut.i__valid.value = 0
        if job.mode == SelectMode.THRESHOLD:
            assert sent_at == list(range(1, len(inputs) + 1)), f"{job}: inputs taken {sent_at}"
            assert got_at == [t + 2 for t in sent_at], f"{job}: {sent_at} -> {got_at}"
        else:
            firsts = sent_at[::G]
            assert firsts == [1 + r * (N + G + 1) for r in range(job.M)], \
                f"{job}: rows start {firsts}"
            want_at = [t0 + N + 2 + g for t0 in firsts for g in range(G)]
            assert got_at == want_at, f"{job}: keep beats at {got_at}, expected {want_at}"
        dut._log.info("%s: timing as documented (%d cycles)", job, cycle)
        await wait_ready(dut)


def bad_cases(cfg: Config, rng) -> list[tuple[str, SelectFault, Job, dict]]:
    """(what, fault, job, command overrides); a job whose thresholds contain a NaN is bad as
    issued."""
    N = min(cfg.L, cfg.C + 1)
    top = random_job(cfg, rng, mode=SelectMode.TOP_N, N=N, M=1, n=1)
    thr = random_job(cfg, rng, mode=SelectMode.THRESHOLD, N=N, M=1)
    nan_job = random_job(cfg, rng, mode=SelectMode.THRESHOLD, N=N, M=1)
    nan_job.thresholds = nan_job.thresholds.copy()
    nan_job.thresholds[int(rng.integers(0, N))] = rng.choice(NAN_WORDS)
    cases = [
        ("mode 2", SelectFault.BAD_MODE, top, {"mode": 2}),
        ("mode 3", SelectFault.BAD_MODE, thr, {"mode": 3}),
        ("rows 0", SelectFault.ZERO_SIZE, thr, {"rows": 0}),
        ("length 0", SelectFault.ZERO_SIZE, top, {"length": 0}),
        ("length 0, n 0", SelectFault.ZERO_SIZE, top, {"length": 0, "n": 0}),
        ("length > max_len", SelectFault.RANGE, thr, {"length": cfg.L + 1}),
        ("length 2^16-1", SelectFault.RANGE, top, {"length": (1 << 16) - 1, "n": 1}),
        ("n 0", SelectFault.BAD_N, top, {"n": 0}),
        ("n > N", SelectFault.BAD_N, top, {"n": N + 1}),
        ("n 2^16-1", SelectFault.BAD_N, top, {"n": (1 << 16) - 1}),
        ("NaN threshold", SelectFault.BAD_THRESHOLD, nan_job, {}),
        ("mode 3, rows 0", SelectFault.BAD_MODE, thr, {"mode": 3, "rows": 0}),
    ]
    if cfg.E < cfg.L:
        big = random_job(cfg, rng, mode=SelectMode.TOP_N, N=cfg.L, M=1, n=cfg.E)
        cases.append(("n > max_n", SelectFault.RANGE, big, {"n": cfg.E + 1}))
    return cases


async def clear_status(cfg: Config, dut, what: str):
    await clear_error(dut, lambda: status_of(cfg, dut), SelectFault.NONE, what)


@cocotb.test()
async def bad_commands_then_good(dut):
    cfg = Config(case())
    rng = make_rng(dut, salt=2)
    await start(dut)
    for what, fault, job, overrides in bad_cases(cfg, rng):
        # the golden model refuses the same (a limit of the instance aside)
        if fault != SelectFault.RANGE and not overrides.get("mode", 0) >= 2:
            golden_job = Job(overrides.get("mode", job.mode),
                             job.y[:overrides.get("rows", job.M), :overrides.get("length", job.N)],
                             thresholds=None if job.thresholds is None else
                             job.thresholds[:overrides.get("length", job.N)],
                             n=overrides.get("n", job.n))
            try:
                golden_job.golden()
            except ValueError:
                pass
            else:
                raise AssertionError(f"{what}: the golden model accepts it")
        await wait_ready(dut)
        await write_thresholds(dut, job.threshold_writes(cfg, rng))
        await issue(dut, rng, job.command(**overrides))
        # the unit takes no input and makes no output; it is idle again at once
        await ReadOnly()
        assert status_of(cfg, dut) == (0, 1, fault), f"{what}: status {status_of(cfg, dut)}"
        assert not dut.o__valid.value, f"{what}: output after a bad command"
        good = random_job(cfg, rng)
        await next_cycle(dut)
        await run_jobs(dut, cfg, rng, [good])
        assert status_of(cfg, dut) == (0, 1, fault), \
            f"{what} then {good}: status {status_of(cfg, dut)}"
        await clear_status(cfg, dut, what)
    # a threshold write beyond the memory is dropped with RANGE; the thresholds stay
    good = random_job(cfg, rng, mode=SelectMode.THRESHOLD)
    await write_thresholds(dut, good.threshold_writes(cfg, rng))
    await write_thresholds(dut, [pack_word(threshold_write_layout(cfg.C), beat=cfg.G,
                                           data=0x7FC00000, mask=1)])
    await ReadOnly()
    assert status_of(cfg, dut) == (0, 1, SelectFault.RANGE), \
        f"write beyond the memory: status {status_of(cfg, dut)}"
    await next_cycle(dut)
    # sticky: the first fault's code survives a second fault and a good job
    await issue(dut, rng, pack_word(select_command_layout(), mode=2, n=1, length=1, rows=1))
    good.preloaded = True                             # the dropped write changed nothing
    await run_jobs(dut, cfg, rng, [good])
    assert status_of(cfg, dut) == (0, 1, SelectFault.RANGE), \
        f"two faults: status {status_of(cfg, dut)}"
    await clear_status(cfg, dut, "two faults")
