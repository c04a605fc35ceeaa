"""Bench: the accelerator fuzzed. Random programs (:mod:`tb.accel_fuzz`: valid and invalid
instructions, random sizes, addresses, flags and formats) run on the RTL and on the golden model
at once (:class:`tb.accelerator_tb.Pair`), under random DRAM faults (SLVERR ranges, DECERR past
the end of DRAM), random pauses and long stalls on all ten AXI channels, and soft resets in the
middle of programs.

After every program:

* it ended (the IRQ or the ``STATUS`` poll came within the watchdog: a hang fails the bench);
* the RTL and the model agree on ``done``, the error code, ``ERROR_INDEX``, the byte counters
  and every byte of DRAM (so every error is the documented one at the right instruction, and
  every valid program's results are bit-exact);
* DRAM changed only inside the DRAM rows of the ``STORE`` instructions the program reached (up
  to the faulting one, or to the one that waits for a failed ``STORE`` in flight: nothing lost
  elsewhere).

After a soft reset in the middle of a program (the model drops the program, the hardware stops
at a quiet point), the status reads idle, DRAM changed only inside the program's ``STORE`` rows,
and the model takes the hardware's DRAM and both run :func:`tb.accel_fuzz.resync_program`
(which overwrites every memory a program reads) so the next program is compared again. Both also
run it after a program that ended with ``DRAM_RESPONSE``: the target regions of a failing
``LOAD`` and of the ``LOAD`` instructions behind it are undefined (``sim/accel_model.py``).

With ``probe`` (``SPARTA_FUZZ_PROBE=1``), every program is followed by a ``STORE`` of the whole
accumulator memory, compared: a failure then names the first program after which the states
differ, not the later one whose ``STORE`` shows it.

A failure prints the seed, the program (each instruction's fields and its 32 bytes in hex), its
SLVERR ranges and the run's counts so far.
"""

import collections

import cocotb
import numpy as np

from sim.accel_spec import FORMAT_BITS, AccelError, Opcode, Resp, Target
from sim.config import accel_config_from
from tb.accel_fuzz import (Layout, ProgramFuzzer, assemble_words, initial_image,
                           program_words, resync_program, store_spans)
from tb.accel_host import pauses
from tb.accelerator_tb import WATCHDOG_CYCLES, Pair
from tb.harness import case, make_rng, record_metrics


def _outside(before: bytes, after: bytes, spans) -> list:
    """Addresses whose byte changed outside every ``[start, end)`` of ``spans``."""
    changed = np.flatnonzero(np.frombuffer(before, np.uint8) != np.frombuffer(after, np.uint8))
    allowed = np.zeros(changed.size, dtype=bool)
    for start, end in spans:
        allowed |= (changed >= start) & (changed < end)
    return changed[~allowed].tolist()


class Fuzzing:
    """One fuzzing run: the pair of back ends, the fuzzer and the counts."""

    def __init__(self, dut, pair: Pair, fuzzer: ProgramFuzzer, layout: Layout, seed: int,
                 shard: int = 0):
        self.dut, self.pair, self.fuzzer, self.layout, self.seed, self.shard = \
            dut, pair, fuzzer, layout, seed, shard
        self.config = fuzzer.config
        self.probe = False
        self.errors = collections.Counter()
        self.counts = collections.Counter()

    def _set_faults(self, ranges):
        self.pair.backend.dram.errors[:] = [tuple(r) for r in ranges]
        self.pair.model.backend.dram_errors[:] = [tuple(r) for r in ranges]

    async def _write_program(self, base: int, words: bytes):
        end = min(base + len(words), self.layout.size)
        for driver in self.pair.drivers:
            await driver.write_dram(base, words[:end - base])

    def _context(self, index: int, program) -> str:
        return (f"seed {self.seed}, shard {self.shard}, program {index} "
                f"({dict(self.counts)} so far):\n"
                f"{program.describe()}")

    async def program(self, index: int, soft_reset: bool):
        """Run one random program (module docstring: what is checked)."""
        program = self.fuzzer.program()
        self._set_faults(program.dram_errors)
        await self._write_program(program.base, program.words)
        before = await self.pair.rtl.read_dram(0, self.layout.size)
        self.pair.model.backend.last_run = None        # a program refused at start runs none
        refused = sum(self.pair.backend.dram.refused.values())
        what = f"program {index}"
        try:
            if soft_reset:
                await self._soft_reset(program, before, what)
            else:
                irq = bool(self.fuzzer.rng.random() < 0.8)
                result = await self.pair.run(program.base, program.length, what, irq=irq)
                self.errors[result.error.name] += 1
                reached = self.pair.model.backend.last_run
                records = reached.instructions if reached is not None else []
                after = await self.pair.rtl.read_dram(0, self.layout.size)
                lost = _outside(before, after, store_spans(
                    self.config, [(r.opcode, r.fields) for r in records]))
                assert not lost, (f"{what}: {len(lost)} DRAM bytes outside the STOREs' rows "
                                  f"changed, first at {lost[0]:#x}")
                if result.error is AccelError.DRAM_RESPONSE:
                    # the regions of a failing LOAD and of the LOADs behind it are undefined
                    # (sim.accel_model): make them defined again before the next program
                    await self._resync(what)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{self._context(index, program)}") from None
        if self.probe:
            await self._probe(index, program)
        self.counts["programs"] += 1
        self.counts["instructions"] += len(program.instructions)
        self.counts["spoiled"] += len(program.spoiled)
        self.counts["fault_ranges"] += len(program.dram_errors)
        self.counts["beats_refused"] += sum(self.pair.backend.dram.refused.values()) - refused

    async def _probe(self, index: int, program):
        """Store the whole accumulator memory past the program region and compare (``probe``:
        finds the first program after which the two states differ, before a STORE shows it)."""
        e = self.config.engine
        words = assemble_words([(Opcode.STORE, {
            "target": Target.ACC, "dram_format": FORMAT_BITS.index("fp32"),
            "dram_addr": self.layout.programs[1], "dram_stride": 4 * e.acc_width,
            "rows": e.acc_rows, "cols": e.acc_width}), (Opcode.DONE, {})])
        self._set_faults([])
        base = self.layout.programs[1] - len(words)
        await self._write_program(base, words)
        try:
            await self.pair.run(base, 2, f"probe after program {index}")
        except AssertionError as failure:
            raise AssertionError(f"{failure}\nthe accumulators differ after this program:\n"
                                 f"{self._context(index, program)}") from None

    async def _soft_reset(self, program, before: bytes, what: str):
        pair = self.pair
        await pair.start(program.base, program.length)
        wait = int(self.fuzzer.rng.integers(1, 600))
        await pair.backend.wait_cycles(wait)
        await pair.soft_reset(f"{what}: soft reset {wait} cycles after start")
        self.counts["soft_resets"] += 1
        after = await pair.rtl.read_dram(0, self.layout.size)
        lost = _outside(before, after, store_spans(
            self.config, program_words(before, program.base, program.length)))
        assert not lost, (f"{what}: soft reset {wait} cycles after start: {len(lost)} DRAM "
                          f"bytes outside the program's STOREs changed, first at {lost[0]:#x}")
        # the model dropped the program: it takes the hardware's DRAM, and both reload every
        # memory a program reads
        await pair.model.write_dram(0, after)
        await self._resync(what)

    async def _resync(self, what: str):
        """Both back ends reload every memory a program reads (:func:`resync_program`)."""
        self._set_faults([])
        words = assemble_words(resync_program(self.config, self.layout))
        base = self.layout.programs[1] - len(words)
        await self._write_program(base, words)
        result = await self.pair.run(base, len(words) // 32, f"{what}: resynchronisation")
        assert result.ok, f"{what}: the resynchronising program failed: {result.error.name}"
        self.counts["resyncs"] += 1


@cocotb.test()
async def random_programs(dut):
    """Random programs, faults, stalls and soft resets (module docstring); ``programs`` of
    them, ``soft_reset`` the probability of a soft reset in the middle of one."""
    data = case()
    config = accel_config_from(data["config"])
    shard = data.get("shard", 0)
    rng = make_rng(dut, salt=shard)
    seed = int(cocotb.RANDOM_SEED)
    layout = Layout()
    pair = await Pair.create(dut, config, rng, dram_size=layout.size)
    pause, stall, longest = data["pause"], data["stall"], data["longest"]
    pair.backend.set_pauses(lambda: pauses(rng, pause, stall=stall, longest=longest))
    await pair.load_image(initial_image(rng, layout))
    await pair.reset()
    run = Fuzzing(dut, pair, ProgramFuzzer(config, rng, layout), layout, seed, shard)
    run.probe = bool(data.get("probe", False))
    start = pair.backend.cycle()
    for index in range(data["programs"]):
        await run.program(index, soft_reset=bool(rng.random() < data["soft_reset"]))
    cycles = pair.backend.cycle() - start
    dut._log.info("%d programs (%d instructions, %d spoiled), %d soft resets, %d SLVERR "
                  "ranges, %d beats refused, in %d cycles; endings %s", run.counts["programs"],
                  run.counts["instructions"], run.counts["spoiled"], run.counts["soft_resets"],
                  run.counts["fault_ranges"], run.counts["beats_refused"], cycles,
                  dict(run.errors))
    refused = {Resp(r).name: n for r, n in pair.backend.dram.refused.items()}
    record_metrics(programs=run.counts["programs"], instructions=run.counts["instructions"],
                   spoiled=run.counts["spoiled"], soft_resets=run.counts["soft_resets"],
                   faults=run.counts["fault_ranges"], beats_refused=refused,
                   resyncs=run.counts["resyncs"], endings=dict(run.errors), cycles=cycles,
                   watchdog_cycles=WATCHDOG_CYCLES)
