"""What every cocotb bench shares: configuration, seeding, clock and reset, stream checking."""

from __future__ import annotations

import bisect
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import (FallingEdge, ReadOnly, RisingEdge, SimTimeoutError, Timer,
                             with_timeout)

from sim.stream_player import DEPTH_BITS, IN_FILE, OUT_FILE, STATUS

__all__ = ["case", "make_rng", "has_clock", "next_cycle", "start_clock", "reset", "StreamChecker", "record_metrics", "drive_and_check", "check_latency"]


def case() -> dict:
    """The configuration the pytest runner passed to this bench (``SPARTA_CASE``)."""
    return json.loads(os.environ.get("SPARTA_CASE", "{}"))


def make_rng(dut, salt: int = 0) -> np.random.Generator:
    """A numpy generator seeded from cocotb's seed, which is logged for reproduction."""
    seed = int(cocotb.RANDOM_SEED)
    dut._log.info("seed %d (rerun with SPARTA_SEED=%d)", seed, seed)
    return np.random.default_rng([seed, salt])


PERIOD_NS = 10


def has_clock(dut) -> bool:
    """A design with no register (pipeline depth 0) has no clock or reset port."""
    try:
        dut.clk
    except AttributeError:
        return False
    return True


def next_cycle(dut):
    """Trigger for the next driving point: the falling clock edge, or one period of time for a
    combinational design."""
    return FallingEdge(dut.clk) if has_clock(dut) else Timer(PERIOD_NS, unit="ns")


async def clear_error(dut, status, none, what: str):
    """Pulse ``clear_error`` for one cycle and check that ``status()`` (a unit's ``(busy, error,
    code)``) then reads idle and clear with the code ``none``."""
    dut.clear_error.value = 1
    await next_cycle(dut)
    dut.clear_error.value = 0
    await ReadOnly()
    assert status() == (0, 0, none), f"{what}: status {status()} after clear_error"
    await next_cycle(dut)


async def start_clock(dut):
    if has_clock(dut):
        Clock(dut.clk, PERIOD_NS, unit="ns").start()


async def reset(dut, cycles: int = 2):
    if not has_clock(dut):
        return
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


def player_chunks(n: int, depth: int, cuts=None) -> list[tuple[int, int]]:
    """``[first, end)`` of the chunks of a run of ``n`` inputs of at most ``depth`` each, each
    ending at one of ``cuts`` (or anywhere without them)."""
    ends = sorted({e for e in cuts if 0 < e < n} | {n}) if cuts is not None else \
        [*range(depth, n, depth), n]
    chunks, first = [], 0
    while first < n:
        last = bisect.bisect_right(ends, first + depth) - 1      # the last end in reach
        if last < 0 or ends[last] <= first:
            raise ValueError(f"cuts: no place to end a chunk within {depth} inputs of "
                             f"input {first}")
        chunks.append((first, ends[last]))
        first = ends[last]
    return chunks


class StreamChecker:
    """Drive a sink stream and check a source stream against expected words.

    The bench offers input words with random idle cycles and applies random backpressure to
    the output (both drawn from ``rng``). Outputs are compared in order, word for word; a
    mismatch raises with ``describe(index)`` (the operands, in hex) and both results in hex.
    At the end the output must stay empty (nothing left unchecked, nothing extra).

    Parameters
    ----------
    dut
        cocotb handle of the top level; ports are ``<i>__valid``, ``<i>__ready``,
        ``<i>__payload`` and the same for ``o``.
    p_idle, p_stall : float
        Probability that the driver holds ``valid`` low / the sink holds ``ready`` low.
    """

    def __init__(self, dut, rng, *, i="i", o="o", p_idle=0.25, p_stall=0.25):
        self.dut = dut
        self.rng = rng
        self.i_name, self.o_name = i, o
        self.i_valid = getattr(dut, f"{i}__valid")
        self.i_ready = getattr(dut, f"{i}__ready")
        self.i_payload = getattr(dut, f"{i}__payload")
        self.o_valid = getattr(dut, f"{o}__valid")
        self.o_ready = getattr(dut, f"{o}__ready")
        self.o_payload = getattr(dut, f"{o}__payload")
        self.p_idle = p_idle
        self.p_stall = p_stall
        self.cycles = 0

    def idle(self):
        """Drive the handshake inputs to a known idle state (before reset)."""
        self.i_valid.value = 0
        self.i_payload.value = 0
        self.o_ready.value = 0

    async def run(self, inputs: Sequence[int], expected: Sequence[int],
                  describe: Callable[[int], str], *, max_latency: int = 64,
                  cuts: Sequence[int] | None = None) -> int:
        """Send ``inputs``, check ``expected`` in order; returns the number of cycles taken.

        ``inputs`` and ``expected`` may differ in length (a reducer takes many inputs per
        output); ``describe(k)`` names the inputs that produced output ``k``. Besides the
        values, the checker enforces the stream rules: an output offered but not taken stays
        unchanged until taken, every input is consumed, nothing extra comes out at the end.

        ``cuts``: for a unit whose output ``k`` may wait for later inputs (one that sees a
        whole row first), the input counts after which every output so far is due; a run
        longer than the stream player's memory is played in chunks that end there only.
        """
        def take(index, got):
            want = int(expected[index])
            if got != want:
                raise AssertionError(f"mismatch at output {index}: {describe(index)}; "
                                     f"rtl=0x{got:x} golden=0x{want:x}")

        return await self._transfer(inputs, len(expected), take, max_latency=max_latency,
                                    drain=max_latency + 4, show=_hex, cuts=cuts)

    async def collect(self, inputs: Sequence[int], n_out: int, *, max_latency: int = 64,
                      drain: int | None = None, show: Callable[[int], str] = None) -> list[int]:
        """Send ``inputs`` and take exactly ``n_out`` outputs without comparing them (for
        benches whose expected outputs are not a word list, e.g. after an error); returns the
        outputs. The same stream rules, stall limit (``max_latency``) and final silence
        (``drain`` cycles, default ``max_latency + 4``) as :meth:`run`; ``show`` formats a word
        in failure messages."""
        outputs = []
        await self._transfer(inputs, n_out, lambda index, got: outputs.append(got),
                             max_latency=max_latency,
                             drain=max_latency + 4 if drain is None else drain,
                             show=show or _hex)
        return outputs

    def _has_player(self) -> bool:
        """Whether the unit runs inside the stream player (on its ``i`` and ``o`` streams)."""
        if (self.i_name, self.o_name) != ("i", "o"):
            return False
        try:
            self.dut.player__mode
        except AttributeError:
            return False
        return True

    async def _play(self, inputs, n_out, take, *, max_latency, drain, show) -> int:
        """:meth:`_transfer` run by the stream player around the unit (:mod:`sim.stream_player`):
        the same random idle and backpressure (drawn in the wrapper, seeded from ``rng``), the
        same stream rules and final silence, the outputs compared here afterwards."""
        dut, n_in = self.dut, len(inputs)
        Path(IN_FILE).write_text("".join(f"{int(word):x}\n" for word in inputs))
        out_file = Path(OUT_FILE)
        out_file.unlink(missing_ok=True)
        settings = {"mode": 1, "count_in": n_in, "count_out": n_out,
                    "seed": int(self.rng.integers(1, 1 << 32)),
                    "p_idle": round(self.p_idle * 256), "p_stall": round(self.p_stall * 256),
                    "max_latency": max_latency, "drain": drain, "load": 1}
        for name, value in settings.items():
            getattr(dut, f"player__{name}").value = value
        await next_cycle(dut)
        dut.player__load.value = 0
        dut.player__start.value = 1
        await next_cycle(dut)
        dut.player__start.value = 0
        limit = 64 * (n_in + n_out) + 16 * (max_latency + drain) + 1024
        try:
            await with_timeout(RisingEdge(dut.player__done), limit * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"stream player: no end within {limit} cycles (sent "
                                 f"{int(dut.player__sent.value)} of {n_in}, received "
                                 f"{int(dut.player__received.value)} of {n_out})") from None
        await next_cycle(dut)
        status, bad = int(dut.player__status.value), dut.player__bad.value
        bad = show(int(bad)) if bad.is_resolvable else f"{bad} (X or Z bits)"
        sent, received = int(dut.player__sent.value), int(dut.player__received.value)
        cycles = int(dut.player__cycles.value)
        dut.player__dump.value = 1
        await next_cycle(dut)
        dut.player__dump.value = 0
        dut.player__mode.value = 0
        await next_cycle(dut)
        words = [line.strip() for line in (out_file.read_text().splitlines() if received
                                           else [])
                 if line.strip() and not line.lstrip().startswith(("//", "@"))]
        if len(words) != received:
            raise AssertionError(f"stream player: {received} outputs taken, {len(words)} in "
                                 f"{OUT_FILE}")
        for index, word in enumerate(words):
            try:
                value = int(word, 16)
            except ValueError:
                raise AssertionError(f"output {index} is not a number: {word!r} (X or Z bits)"
                                     ) from None
            take(index, value)
        if status == STATUS["rule"]:
            raise AssertionError(f"output {bad} offered but not taken changed "
                                 f"(stream rule broken)")
        if status in (STATUS["extra"], STATUS["drain"]):
            raise AssertionError(f"unexpected extra output {bad} after {n_out}")
        if status == STATUS["stalled"]:
            raise AssertionError(f"stream stalled: sent {sent} of {n_in}, received {received} "
                                 f"of {n_out}, no progress for more than {max_latency + 16} "
                                 f"cycles")
        self.cycles += cycles
        return cycles

    async def _transfer(self, inputs, n_out, take, *, max_latency, drain, show,
                        cuts=None) -> int:
        """The handshake loop: ``take(k, word)`` for output ``k``; returns cycles. With the
        stream player around the unit, :meth:`_play` instead (in chunks ending at ``cuts``,
        :meth:`run`)."""
        depth = 1 << DEPTH_BITS
        if self._has_player() and max(len(inputs), n_out) <= depth:
            return await self._play(inputs, n_out, take, max_latency=max_latency, drain=drain,
                                    show=show)
        if self._has_player() and len(inputs) == n_out:      # one output per input: in chunks
            cycles = 0
            for first, end in player_chunks(n_out, depth, cuts):
                def take_chunk(index, got, first=first):
                    take(first + index, got)
                cycles += await self._play(inputs[first:end], end - first, take_chunk,
                                           max_latency=max_latency, drain=drain, show=show)
            return cycles
        n_in = len(inputs)
        sent = received = 0
        idle_since = 0
        draws = 4 * (n_in + n_out) + 1024
        offer = self.rng.random(draws) >= self.p_idle
        ready = self.rng.random(draws) >= self.p_stall
        held = None                      # output offered last cycle but not taken
        offered = False                  # input offered last cycle but not taken
        cycle = 0
        await next_cycle(self.dut)
        while received < n_out or sent < n_in:
            draw = cycle % draws
            # the driver obeys the rule it checks: once valid, it stays valid until taken
            offering = sent < n_in and (offered or bool(offer[draw]))
            accepting = bool(ready[draw])
            self.i_valid.value = int(offering)
            if offering:
                self.i_payload.value = int(inputs[sent])
            self.o_ready.value = int(accepting)
            await ReadOnly()
            progressed = False
            offered = offering
            if offering and self.i_ready.value:
                sent += 1
                progressed = True
                offered = False
            valid = bool(self.o_valid.value)
            got = int(self.o_payload.value) if valid else None
            if held is not None and got != held:
                raise AssertionError(
                    f"output {show(held)} offered but not taken changed to "
                    f"{'nothing' if got is None else show(got)} (stream rule broken)")
            held = got if valid and not accepting else None
            if valid and accepting:
                if received >= n_out:
                    raise AssertionError(f"unexpected extra output {show(got)} after {n_out}")
                take(received, got)
                received += 1
                progressed = True
            # a stall counts only in cycles where the bench offered work (or had none left)
            # and took results: random idle and backpressure are not the design's fault
            if progressed:
                idle_since = 0
            elif accepting and (offering or sent == n_in):
                idle_since += 1
            if idle_since > max_latency + 16:
                raise AssertionError(f"stream stalled: sent {sent} of {n_in}, received "
                                     f"{received} of {n_out}, no progress for {idle_since} cycles")
            await next_cycle(self.dut)
            cycle += 1
        # drain: with ready high the output must stay silent
        self.i_valid.value = 0
        self.o_ready.value = 1
        for _ in range(drain):
            await ReadOnly()
            if self.o_valid.value:
                raise AssertionError(f"unexpected extra output {show(int(self.o_payload.value))}")
            await next_cycle(self.dut)
        self.cycles += cycle
        return cycle


def _hex(word: int) -> str:
    return f"0x{word:x}"


METRICS_FILE = "metrics.jsonl"


def record_metrics(**metrics):
    """Append one line of measurements to ``metrics.jsonl`` in the run directory (the
    simulator's working directory), where scripts that measure benches read it."""
    with open(METRICS_FILE, "a") as out:
        out.write(json.dumps(metrics) + "\n")


async def drive_and_check(dut, rng, inputs, expected, describe, *, cuts=None, **kwargs) -> int:
    """Clock, reset and one :class:`StreamChecker` run (``cuts``: :meth:`StreamChecker.run`);
    returns cycles.

    Records ``vectors`` (the inputs or the outputs, whichever are more: a reducer's addends, an
    unpacker's operands), ``cycles`` and wall-clock ``seconds`` with :func:`record_metrics`.
    """
    checker = StreamChecker(dut, rng, **kwargs)
    checker.idle()
    await start_clock(dut)
    await reset(dut)
    start = time.perf_counter()
    cycles = await checker.run(inputs, expected, describe, cuts=cuts)
    record_metrics(vectors=max(len(inputs), len(expected)), cycles=cycles,
                   seconds=time.perf_counter() - start)
    dut._log.info("checked %d vectors against the golden model in %d cycles", len(inputs), cycles)
    return cycles


async def check_latency(dut, inputs, expected, *, stages: int, describe, noun: str):
    """A pipelined unit with ``i``/``o`` streams, without idle cycles or backpressure: one
    result per cycle, each exactly ``stages`` cycles after its inputs and equal to its
    ``expected`` word (``describe(index)`` names the inputs in a failure message)."""
    n = len(expected)
    dut.i__valid.value = 0
    dut.o__ready.value = 1
    await start_clock(dut)
    await reset(dut)
    sent_at, received = [], 0
    cycle = 0
    while received < n:
        if cycle > n + stages + 8:
            raise AssertionError(f"only {received} of {n} {noun}s after {cycle} cycles")
        dut.i__valid.value = int(len(sent_at) < n)
        if len(sent_at) < n:
            dut.i__payload.value = inputs[len(sent_at)]
        await ReadOnly()
        if len(sent_at) < n:
            if not dut.i__ready.value:
                raise AssertionError(f"input not ready at cycle {cycle} without backpressure")
            sent_at.append(cycle)
        if dut.o__valid.value:
            got, want = int(dut.o__payload.value), expected[received]
            if got != want:
                raise AssertionError(f"mismatch at vector {received}: {describe(received)}; "
                                     f"rtl=0x{got:x} golden=0x{want:x}")
            latency = cycle - sent_at[received]
            if latency != stages:
                raise AssertionError(f"{noun} {received} came {latency} cycles after its "
                                     f"operands, expected {stages}")
            received += 1
        await next_cycle(dut)
        cycle += 1
