"""Bench: the whole accelerator (``hw.accel.accelerator.Accelerator``) driven by the host driver
(:mod:`sim.accel_driver`) on two back ends at once, the RTL and the golden model.

* RTL: :class:`tb.accel_host.RtlBackend` (cocotbext-axi's ``AxiLiteMaster`` on ``s_axil``, an
  ``AxiRam`` as DRAM on ``m_axi`` that answers DECERR past its end and SLVERR in error ranges,
  random pauses on all ten AXI channels);
* model: :class:`sim.accel_model_backend.ModelBackend` (the golden model of programs behind an
  emulation of the register block), with the same DRAM size and error ranges.

Every program runs through the same driver calls on both (:class:`Pair`); after each, the two
must agree on the whole DRAM image byte for byte, ``STATUS`` (done, error code, ``ERROR_INDEX``),
the IRQ and the byte counters, which must also equal the compiler's prediction for compiled
programs. Each wait for the IRQ has a watchdog (the driver's timeout), so a hang fails the
test with the status registers in the message.
"""

from typing import NamedTuple

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, Timer

from sim.accel_driver import AcceleratorDriver, BusError, ProgramResult
from sim.accel_model import instruction_error
from sim.accel_model_backend import ModelBackend
from sim.accel_spec import (COUNTERS, CSR_BYTES, FETCH_BLOCK, FORMAT_BITS, INSTRUCTION_BYTES,
                            STORES_IN_FLIGHT, AccelError, Ctrl, EpilogueOp, Opcode, Reg, Resp,
                            Target, capability_words, counter_offset, decode, encode)
from sim.compiler import compile_gemms
from sim.config import accel_config_from
from tb.accel_host import RtlBackend
from tb.engine_api import random_gemms, workload_gemm
from tb.harness import PERIOD_NS, case, make_rng, record_metrics

#: longest program the bench waits for, in cycles (a watchdog: a hang fails the test)
WATCHDOG_CYCLES = 200_000


def _fixed(rng, m, n, k, ta, tb, accumulate, fa, fb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32) if accumulate else None
    return workload_gemm(a, b, c, a_format=fa, b_format=fb, transpose_a=ta, transpose_b=tb)


class Pair:
    """One host, two accelerators: the same driver calls on the RTL and on the golden model,
    and the comparison of what they report and leave in DRAM."""

    def __init__(self, dut, backend: RtlBackend, model: ModelBackend):
        self.dut, self.size = dut, len(model.dram)
        self.backend = backend
        self.rtl = AcceleratorDriver(backend)
        self.model = AcceleratorDriver(model)
        self.drivers = (self.rtl, self.model)

    @classmethod
    async def create(cls, dut, config, rng, *, dram_size, dram_errors=(), pause=0.0):
        backend = await RtlBackend.create(dut, config, dram_size=dram_size,
                                          dram_errors=dram_errors, rng=rng, pause=pause)
        return cls(dut, backend, ModelBackend(config, dram_size, dram_errors=dram_errors))

    async def reset(self):
        await self.backend.reset()

    async def load_image(self, image, base=0):
        for driver in self.drivers:
            await driver.load_image(image, base)

    async def compare_dram(self, what, explain=None):
        got = await self.rtl.read_dram(0, self.size)
        want = await self.model.read_dram(0, self.size)
        if got != want:
            if explain:
                explain(got, want)
            diff = np.flatnonzero(np.frombuffer(got, np.uint8) != np.frombuffer(want, np.uint8))
            raise AssertionError(
                f"{what}: {len(diff)} DRAM bytes differ from the golden model's, first at "
                f"{diff[0]:#x} (RTL {got[diff[0]]:#04x}, model {want[diff[0]]:#04x}), last at "
                f"{diff[-1]:#x}")

    async def start(self, base, length, *, irq=True):
        for driver in self.drivers:
            await driver.start(base, length, irq=irq)

    async def wait(self, what, *, irq=True, clear_irq=True, explain=None):
        """Both programs' ends, compared; returns the RTL's result."""
        got = await self.rtl.wait(irq=irq, timeout_cycles=WATCHDOG_CYCLES, clear_irq=clear_irq)
        want = await self.model.wait(irq=irq, timeout_cycles=WATCHDOG_CYCLES,
                                     clear_irq=clear_irq)
        self.dut._log.info("%s: %s at %s after %s cycles", what, got.error.name, got.error_index,
                           got.cycles_waited)
        _compare_results(what, got, want)
        if irq and clear_irq:
            await Timer(3 * PERIOD_NS, unit="ns")
            assert not self.dut.irq.value, f"{what}: irq still high after write-1-to-clear"
        await self.compare_dram(what, explain)
        return got

    async def run(self, base, length, what, *, irq=True, explain=None) -> ProgramResult:
        await self.start(base, length, irq=irq)
        return await self.wait(what, irq=irq, explain=explain)

    async def soft_reset(self, what):
        got = await self.rtl.soft_reset(timeout_cycles=WATCHDOG_CYCLES)
        want = await self.model.soft_reset(timeout_cycles=WATCHDOG_CYCLES)
        assert got == want and not got.busy and not got.done and not got.irq_pending \
            and got.error is AccelError.NONE, f"{what}: status after a soft reset: RTL {got}, " \
            f"model {want}"
        assert not self.dut.irq.value, f"{what}: irq high after a soft reset"


def _engine_model_cycles(what: str, counters: dict, run) -> int:
    """The engine's cycle model over a program's GEMMs (``run``: the golden model's
    :class:`sim.accel_model.RunResult`, with the operands' zeros on a skipping engine), checked
    against the hardware's ``engine_busy_cycles`` counter, which counts one cycle less per
    command (the accept cycle)."""
    commands = sum(1 for r in run.instructions
                   if r.opcode is Opcode.GEMM and r.error is AccelError.NONE)
    busy = counters["engine_busy_cycles"]
    assert busy + commands == run.engine_cycles, (
        f"{what}: the engine was busy {busy} cycles over {commands} GEMM commands; the cycle "
        f"model says {run.engine_cycles} - {commands} = {run.engine_cycles - commands}")
    return run.engine_cycles


def _compare_results(what, got: ProgramResult, want: ProgramResult):
    measured = {name: value for name, value in want.counters.items() if value is not None}
    rtl = {name: got.counters[name] for name in measured}
    assert (got.done, got.error, got.error_index, rtl) == (want.done, want.error,
                                                           want.error_index, measured), \
        f"{what}: RTL done {got.done}, {got.error.name} at {got.error_index}, counters {rtl}; " \
        f"model done {want.done}, {want.error.name} at {want.error_index}, counters {measured}"


def _explain_outputs(dut, compiled, gemms, what):
    """Logs which GEMM's output words differ (first word in hex), for a DRAM mismatch."""
    def explain(got, want):
        for index, g in enumerate(gemms):
            got_bits = compiled.output_bits(bytearray(got), index)
            want_bits = compiled.output_bits(bytearray(want), index)
            wrong = np.argwhere(got_bits != want_bits)
            if len(wrong):
                first = tuple(wrong[0])
                dut._log.error(
                    "%s: GEMM %d (%dx%dx%d, transposes %s/%s, accumulate %s, A %s, B %s): %d of "
                    "%d output words differ, first %s: RTL %#010x model %#010x", what, index,
                    g.M, g.N, g.K, g.transpose_a, g.transpose_b, g.accumulate,
                    compiled.regions[f"{index}.gemm.a"].fmt,
                    compiled.regions[f"{index}.gemm.b"].fmt, len(wrong), want_bits.size, first,
                    got_bits[first], want_bits[first])
    return explain


@cocotb.test()
async def compiled_gemms_from_dram(dut):
    """Compiled programs one after another on the same hardware; after each, the whole DRAM
    image, the status and the byte counters equal the golden model's (and the compiler's
    prediction), and the IRQ clears on write-1."""
    data = case()
    config = accel_config_from(data["config"])
    rng = make_rng(dut)
    if "fixed" in data:          # a given list of GEMMs (m, n, k, ta, tb, accumulate, fa, fb)
        programs = [[_fixed(rng, *spec) for spec in data["fixed"]]]
        options = [data.get("compile", {})]
    else:
        programs = [random_gemms(rng, config.engine, data["gemms"], data["largest"])
                    for _ in range(data["programs"])]
        # the compiler's scheduling options (none changes a result): double-buffered
        # (overlapped), single-buffered (the interlock stops most loads), fenced (serial)
        options = [{"double_buffer": bool(rng.integers(4)), "fence": not rng.integers(4)}
                   for _ in programs]
    compiled, base = [], 0
    for gemms, option in zip(programs, options):
        dut._log.info("compiler options %s", option)
        c = compile_gemms(config, gemms, base=base, **option)
        compiled.append(c)
        base = -(-len(c.image) // 4096) * 4096          # the next image on a 4 KiB page
    size = 1 << max(12, (base - 1).bit_length())
    image = bytearray(size)
    for c in compiled:
        image[c.prog_base:len(c.image)] = c.image[c.prog_base:]
    pair = await Pair.create(dut, config, rng, dram_size=size, pause=data["pause"])
    await pair.load_image(image)
    await pair.reset()
    for index, (c, gemms) in enumerate(zip(compiled, programs)):
        what = f"program {index} ({len(gemms)} GEMMs, {c.prog_len} instructions)"
        result = await pair.run(c.prog_base, c.prog_len, what,
                                explain=_explain_outputs(dut, c, gemms, what))
        assert result.ok, f"{what}: {result.error.name} at {result.error_index}"
        moved = (result.counters["bytes_read"], result.counters["bytes_written"])
        assert moved == (c.bytes_read, c.bytes_written), \
            f"{what}: bus bytes {moved}, compiler {c.bytes_read}/{c.bytes_written}"
        record_metrics(program=index, gemms=len(gemms), instructions=c.prog_len,
                       **result.counters)
        dut._log.info("%s: DRAM equal to the golden model (%d bytes), bus bytes %s", what,
                      size, moved)


# -- training steps -------------------------------------------------------------------------------

#: the fields of a case's ``training`` spec that are the step's hyperparameters
HYPERPARAMETERS = ("lr", "weight_decay", "dropout_seed")


def _network(spec: dict):
    """The network of a case's ``training`` spec: ``{"network": "digits_mlp" | "digits_cnn",
    "width": ..., "hidden": ... (digits_cnn), "batch", "steps", "lr", "weight_decay",
    "dropout_seed"}``."""
    from sim.nn.networks import digits_cnn, digits_mlp
    if spec["network"] == "digits_cnn":
        return digits_cnn(width=spec["width"], hidden=spec["hidden"], seed=1)
    if spec["network"] == "digits_mlp":
        return digits_mlp(width=spec["width"], seed=1)
    raise ValueError(f"network must be digits_cnn or digits_mlp, not {spec['network']!r}")


async def _profile(dut, programs: list):
    """Per program (a ``busy`` period of the controller), cycles counted by (controller phase,
    engine busy, a read beat moved, a write beat moved) and by the controller's ``pc`` (the
    instruction it is on), sampled every clock edge (the signals of
    :data:`hw.accel.accelerator.PROFILE_SIGNALS`): a pair of dicts per program."""
    from hw.accel.controller import Phase
    names = {phase.value: phase.name for phase in Phase}
    controller, registers = dut.controller, dut.registers
    bus = (dut.m_axi__rvalid, dut.m_axi__rready, dut.m_axi__wvalid, dut.m_axi__wready)
    current = None
    while True:
        await RisingEdge(dut.clk)
        if not int(controller.busy.value):
            current = None
            continue
        if current is None:
            current, at_pc = {}, {}
            programs.append((current, at_pc))
        pc = int(controller.pc.value)
        at_pc[pc] = at_pc.get(pc, 0) + 1
        rvalid, rready, wvalid, wready = (int(signal.value) for signal in bus)
        key = (names[int(controller.phase.value)], int(registers.engine_busy.value),
               rvalid & rready, wvalid & wready)
        current[key] = current.get(key, 0) + 1


@cocotb.test()
async def training_steps_from_dram(dut):
    """Training steps of a network compiled by sim.train_compiler, run by the host driver on the
    RTL and on the golden model with the same calls: per step, write the batch (real digits),
    ring, read the logits, write dLogits (the host's loss gradient), ring, wait. After every
    program the status, the error and the byte counters agree, and after every step the whole
    DRAM image (weights, FP32 masters, saved activations, logits) is equal bit for bit. Then an
    inference pass, and with ``drowsy`` (a :class:`sim.drowsy.DrowsyPlan`'s fields) the same
    batch through DrowsyNet's inference program, compared the same way."""
    from sim.nn.data import load_digits_split
    from sim.train_compiler import compile_training_step, run_inference, run_training_step
    data = case()
    config = accel_config_from(data["config"])
    spec = data["training"]
    rng = make_rng(dut)
    network = _network(spec)
    batch, steps = spec["batch"], spec["steps"]
    hyper = {name: spec[name] for name in HYPERPARAMETERS}
    compiled = compile_training_step(network, config, batch, step=0, **hyper)
    drowsy = None
    if data.get("drowsy"):      # DrowsyNet's inference pass, past the image
        from sim.drowsy import DrowsyPlan
        from sim.train_compiler import drowsy_inference_program
        drowsy = drowsy_inference_program(compiled.layout, DrowsyPlan(**data["drowsy"]))
    end = len(compiled.image) if drowsy is None else drowsy.prog_base + len(drowsy.code)
    size = 1 << max(12, (end - 1).bit_length())
    pair = await Pair.create(dut, config, rng, dram_size=size, pause=data["pause"])
    image = bytearray(size)
    image[:len(compiled.image)] = compiled.image
    if drowsy is not None:
        image[drowsy.prog_base:drowsy.prog_base + len(drowsy.code)] = drowsy.code
    await pair.load_image(image)
    await pair.reset()
    digits = load_digits_split(seed=0)
    order = rng.permutation(len(digits.x_train))
    profiled = []
    if data.get("profile"):
        cocotb.start_soon(_profile(dut, profiled))
    for step in range(steps):
        rows = order[step * batch:(step + 1) * batch]
        x, labels = digits.x_train[rows], digits.y_train[rows]
        got = await run_training_step(pair.rtl, compiled, x, labels, step=step, **hyper)
        want = await run_training_step(pair.model, compiled, x, labels, step=step, **hyper)
        what = f"{spec['network']} step {step} (batch rows {rows.tolist()})"
        for name in ("forward", "backward_update"):
            _compare_results(f"{what}, {name}", got[name], want[name])
        assert got["loss"] == want["loss"], f"{what}: loss {got['loss']} != {want['loss']}"
        await pair.compare_dram(what)
        cycles = {name: got[name].counters["cycles"] for name in ("forward", "backward_update")}
        runs = dict(zip(("forward", "backward_update"),
                        list(pair.model.backend.recent_runs)[-2:]))
        model_cycles = {name: _engine_model_cycles(f"{what}, {name}", got[name].counters, run)
                        for name, run in runs.items()}
        record_metrics(network=spec["network"], step=step, batch=batch, loss=got["loss"],
                       **{f"{name}_engine_model_cycles": value
                          for name, value in model_cycles.items()},
                       **{f"{name}_{key}": got[name].counters[key]
                          for name in ("forward", "backward_update")
                          for key in ("cycles", "engine_busy_cycles", "dma_stall_cycles",
                                      "bytes_read", "bytes_written", "products_skipped")},
                       **{f"{name}_products": run.products for name, run in runs.items()},
                       **{f"{name}_instructions": got["programs"][name].prog_len
                          for name in ("forward", "backward_update")})
        dut._log.info("%s: loss %.4f, cycles %s, DRAM equal to the golden model", what,
                      got["loss"], cycles)
    # one inference pass (dropout off, nothing saved) on the trained weights
    rows = order[steps * batch:(steps + 1) * batch]
    x = digits.x_train[rows]
    logits = {}
    for side, driver in (("rtl", pair.rtl), ("model", pair.model)):
        logits[side] = await run_inference(driver, compiled, x)
    assert np.array_equal(logits["rtl"], logits["model"]), "inference: logits differ"
    what = f"{spec['network']} inference (batch rows {rows.tolist()})"
    await pair.compare_dram(what)
    counters = await pair.rtl.counters()        # of the last program: the inference
    inference_model = _engine_model_cycles(what, counters, pair.model.backend.last_run)
    record_metrics(network=spec["network"], inference=True, batch=batch,
                   inference_engine_model_cycles=inference_model,
                   **{f"inference_{key}": counters[key]
                      for key in ("cycles", "engine_busy_cycles", "dma_stall_cycles",
                                  "bytes_read", "bytes_written", "products_skipped")},
                   inference_products=pair.model.backend.last_run.products,
                   inference_instructions=compiled.programs["inference"].prog_len)
    dut._log.info("%s: logits equal, DRAM equal to the golden model, %s", what, counters)
    if drowsy is not None:      # the same batch through DrowsyNet's program
        for side, driver in (("rtl", pair.rtl), ("model", pair.model)):
            logits[side] = await run_inference(driver, compiled, x, drowsy)
        what = f"{spec['network']} DrowsyNet inference {data['drowsy']}"
        assert np.array_equal(logits["rtl"], logits["model"]), f"{what}: logits differ"
        await pair.compare_dram(what)
        counters = await pair.rtl.counters()
        run = pair.model.backend.last_run
        record_metrics(network=spec["network"], drowsy_inference=True, batch=batch,
                       drowsy_inference_engine_model_cycles=_engine_model_cycles(
                           what, counters, run),
                       **{f"drowsy_inference_{key}": counters[key]
                          for key in ("cycles", "engine_busy_cycles", "dma_stall_cycles",
                                      "bytes_read", "bytes_written", "products_skipped")},
                       drowsy_inference_products=run.products,
                       drowsy_inference_instructions=drowsy.prog_len)
        dut._log.info("%s: logits equal, DRAM equal to the golden model, %s", what, counters)
    if data.get("profile"):     # the programs in order: (forward, backward_update) per step
        names = ["forward", "backward_update"] * steps + ["inference"]
        assert len(profiled) == len(names), f"profile: {len(profiled)} programs seen"
        for name, (counts, at_pc) in list(zip(names, profiled))[-3:]:
            record_metrics(network=spec["network"], profile=name,
                           cycles=[[*key, count] for key, count in sorted(counts.items())],
                           pc_cycles=sorted([pc, count] for pc, count in at_pc.items()))


# -- bad programs and bad buses -----------------------------------------------------------------

#: DRAM of the error tests, and its range whose beats answer SLVERR
ERROR_DRAM = 1 << 16
SLVERR_RANGE = (0xE000, 0xE100)


class BadProgram(NamedTuple):
    """A program that stops with the error the specification gives it (``index``: the
    instruction). ``base`` None: a free slot; ``length`` None: its number of instructions;
    ``response``: the DRAM answer it provokes."""
    name: str
    program: list
    error: AccelError
    index: int
    base: int | None = None
    length: int | None = None
    response: Resp | None = None


def _bad_programs(config) -> list[BadProgram]:
    engine, beat = config.engine, config.beat_bytes
    fp16, fp32 = FORMAT_BITS.index("fp16"), FORMAT_BITS.index("fp32")
    load = dict(target=Target.A, dram_format=fp16, operand_format=fp16, dram_stride=64,
                dram_addr=0x1000, rows=2, cols=4)
    store = dict(target=Target.ACC, dram_format=fp32, dram_stride=64, rows=2, cols=2)
    gemm = dict(m=2, n=2, k=2)
    good = [(Opcode.LOAD, load), (Opcode.LOAD, {**load, "target": Target.B}),
            (Opcode.GEMM, gemm)]
    at = len(good)
    return [
        BadProgram("illegal opcode", good + [(0x42, {})], AccelError.ILLEGAL_OPCODE, at),
        BadProgram("misaligned address",
                   good + [(Opcode.LOAD, {**load, "dram_addr": 0x1000 + beat // 2})],
                   AccelError.MISALIGNED, at),
        BadProgram("scratchpad overflow",
                   good + [(Opcode.LOAD, {**load, "mem_row": engine.a_rows - 1})],
                   AccelError.SPAD_OVERFLOW, at),
        BadProgram("format the memory does not take",
                   good + [(Opcode.STORE, {**load, "target": Target.ACC, "dram_format": 7})],
                   AccelError.BAD_FIELD, at),
        BadProgram("GEMM of size zero (engine check)", good + [(Opcode.GEMM, {**gemm, "k": 0})],
                   AccelError.BAD_FIELD, at),
        BadProgram("GEMM outside the accumulators (engine check)",
                   good + [(Opcode.GEMM, {**gemm, "c_row": engine.acc_rows - 1})],
                   AccelError.SPAD_OVERFLOW, at),
        # the LOAD's second row is the first beat past the DRAM
        BadProgram("load past the end of DRAM",
                   good + [(Opcode.LOAD, {**load, "dram_addr": ERROR_DRAM - 64})],
                   AccelError.DRAM_RESPONSE, at, response=Resp.DECERR),
        # the STORE's first row is written, its second refused (left as it was)
        BadProgram("store into a failing memory range",
                   good + [(Opcode.STORE, {**store, "dram_addr": SLVERR_RANGE[0] - 64})],
                   AccelError.DRAM_RESPONSE, at, response=Resp.SLVERR),
        # the store runs in the background: its error is reported, with its index, at the
        # first instruction that waits for it (the LOAD reading what it wrote); the LOAD and
        # the GEMM between them run (their bytes count), the waiting LOAD does not
        BadProgram("store error reported at the instruction that waits for it",
                   good + [(Opcode.STORE, {**store, "dram_addr": SLVERR_RANGE[0] - 64}),
                           (Opcode.LOAD, load), (Opcode.GEMM, {**gemm, "c_row": 4}),
                           (Opcode.LOAD, {**load, "dram_addr": SLVERR_RANGE[0] - 64}),
                           (Opcode.DONE, {})],
                   AccelError.DRAM_RESPONSE, at, response=Resp.SLVERR),
        # loads in flight: the LOADs right behind a failing one run (their bytes count), the
        # GEMM waits for them and the program ends with the first failing LOAD's index
        BadProgram("loads behind a failing load",
                   good + [(Opcode.LOAD, {**load, "dram_addr": ERROR_DRAM - 64}),
                           (Opcode.LOAD, load), (Opcode.LOAD, {**load, "target": Target.B}),
                           (Opcode.GEMM, gemm), (Opcode.DONE, {})],
                   AccelError.DRAM_RESPONSE, at, response=Resp.DECERR),
        BadProgram("load run ended by an illegal opcode",
                   good + [(Opcode.LOAD, {**load, "dram_addr": ERROR_DRAM - 64}),
                           (Opcode.LOAD, load), (0x42, {})],
                   AccelError.DRAM_RESPONSE, at, response=Resp.DECERR),
        # ... and by the end of the fetch block: the next block is not read
        BadProgram("load run ended by the block",
                   good + [(Opcode.LOAD, load)] * (FETCH_BLOCK - at - 2)
                   + [(Opcode.LOAD, {**load, "dram_addr": ERROR_DRAM - 64})]
                   + [(Opcode.LOAD, load)] * 3 + [(Opcode.DONE, {})],
                   AccelError.DRAM_RESPONSE, FETCH_BLOCK - 2, response=Resp.DECERR),
        # LOADs of several groups (group g at dram_addr + g * group_stride, into the rows
        # after group g - 1's): the rows of all groups count, the stride is checked, a STORE
        # takes one group; a DRAM error in a later group is the LOAD's, and the index of a
        # failing LOAD behind a grouped one counts instructions, not groups
        BadProgram("grouped LOAD past the scratchpad",
                   good + [(Opcode.LOAD, {**load, "groups": 3, "group_stride": 128,
                                          "mem_row": engine.a_rows - 5})],
                   AccelError.SPAD_OVERFLOW, at),
        BadProgram("group stride off the beat",
                   good + [(Opcode.LOAD, {**load, "groups": 2, "group_stride": 64 + beat // 2})],
                   AccelError.MISALIGNED, at),
        BadProgram("STORE of several groups",
                   good + [(Opcode.STORE, {**store, "dram_addr": 0x3000, "groups": 2,
                                           "group_stride": 256})],
                   AccelError.BAD_FIELD, at),
        BadProgram("grouped LOADs, the second failing in its second group",
                   good + [(Opcode.LOAD, {**load, "groups": 3, "group_stride": 128}),
                           (Opcode.LOAD, {**load, "dram_addr": ERROR_DRAM - 256, "groups": 2,
                                          "group_stride": 256, "target": Target.B}),
                           (Opcode.LOAD, load), (Opcode.GEMM, gemm), (Opcode.DONE, {})],
                   AccelError.DRAM_RESPONSE, at + 1, response=Resp.DECERR),
        # STOREs in flight: the one STORES_IN_FLIGHT after a failing STORE waits for it and
        # reports it; the STOREs between ran (their bytes are written and counted)
        BadProgram("failed store reported at the STORE that waits for it",
                   good + [(Opcode.STORE, {**store, "dram_addr": SLVERR_RANGE[0] - 64})]
                   + [(Opcode.STORE, {**store, "dram_addr": 0x3000 + 0x100 * k})
                      for k in range(STORES_IN_FLIGHT)] + [(Opcode.DONE, {})],
                   AccelError.DRAM_RESPONSE, at, response=Resp.SLVERR),
        # three instructions in the last 96 bytes: the fourth fetch is past the end
        BadProgram("fetch past the end of DRAM", good, AccelError.DRAM_RESPONSE, at,
                   base=ERROR_DRAM - at * INSTRUCTION_BYTES, length=at + 1,
                   response=Resp.DECERR),
        # a fetch error in the middle of a block: the first instruction (just below the failing
        # range: the stores above write no byte of it) runs, the next faults with its own
        # index; the third, in the same block and failing too, is fetched (counted), never run
        BadProgram("fetch error in the middle of a block", good, AccelError.DRAM_RESPONSE, 1,
                   base=SLVERR_RANGE[0] - INSTRUCTION_BYTES, response=Resp.SLVERR),
        # DONE in the middle of a block: the illegal word after it is fetched with the block
        # (its 32 bytes count in bytes_read, as in the model) but never decoded: no error
        BadProgram("DONE in the middle of a block", good + [(Opcode.DONE, {}), (0x42, {})],
                   AccelError.NONE, None),
        BadProgram("program base not 32-byte aligned", good, AccelError.MISALIGNED, 0,
                   base=0x6000 + 16),
        BadProgram("empty program", good, AccelError.EMPTY_PROGRAM, 0, base=0x6400, length=0),
    ]


def _assemble(program) -> bytes:
    """Instruction bytes; an opcode the spec does not define is a word of its value."""
    return b"".join(encode(op, **fields) if op in Opcode._value2member_map_
                    else op.to_bytes(INSTRUCTION_BYTES, "little") for op, fields in program)


async def _error_setup(dut, rng, data):
    """The error tests' DRAM (random bytes, fp16 operands at 0x1000, the bad programs from
    0x2000, a small compiled program at 0x8000) on both back ends, after reset."""
    config = accel_config_from(data["config"])
    image = bytearray(rng.integers(0, 256, ERROR_DRAM, dtype=np.uint8).tobytes())
    image[0x1000:0x2000] = rng.standard_normal(2048).astype(np.float16).tobytes()
    bad = []
    slot = 0x2000
    for case_ in _bad_programs(config):
        words = _assemble(case_.program)
        base = case_.base
        if base is None:
            base, slot = slot, slot + 0x400
        start = base - base % INSTRUCTION_BYTES
        image[start:start + len(words)] = words
        bad.append(case_._replace(base=base, length=len(case_.program) if case_.length is None
                                  else case_.length))
    gemms = random_gemms(rng, config.engine, 1, 12)
    good = compile_gemms(config, gemms, base=0x8000)
    image[0x8000:len(good.image)] = good.image[0x8000:]
    pair = await Pair.create(dut, config, rng, dram_size=ERROR_DRAM,
                             dram_errors=[SLVERR_RANGE], pause=data["pause"])
    await pair.load_image(image)
    await pair.reset()

    async def good_run(what):
        result = await pair.run(good.prog_base, good.prog_len, what,
                                explain=_explain_outputs(dut, good, gemms, what))
        assert result.ok, f"{what}: {result.error.name} at {result.error_index}"
        return result

    return pair, bad, good, good_run


@cocotb.test()
async def bad_programs_stop_with_their_error(dut):
    """Each bad program or bad bus answer stops at its instruction with the documented error
    code (the golden model agrees), raises the IRQ and does not hang; a soft reset, then a
    compiled program runs bit-exact. Then start while busy, and a soft reset in the middle of
    a program, each followed by a good run."""
    rng = make_rng(dut)
    pair, bad, good, good_run = await _error_setup(dut, rng, case())
    for name, _, error, index, base, length, response in bad:
        refused = dict(pair.backend.dram.refused)
        result = await pair.run(base, length, name)
        assert (result.done, result.error, result.error_index) == (True, error, index), \
            f"{name}: done {result.done}, {result.error.name} at {result.error_index}; the " \
            f"specification says {error.name} at {index}"
        assert result.irq, f"{name}: no IRQ"
        answered = {r for r, n in pair.backend.dram.refused.items() if n > refused.get(r, 0)}
        assert answered == ({response} if response else set()), \
            f"{name}: the DRAM answered {sorted(r.name for r in answered)}, not {response}"
        await pair.soft_reset(f"soft reset after '{name}'")
        length = (await good_run(f"good program after '{name}'")).cycles_waited

    # start while busy: the running program goes on and ends normally; the error is reported
    # with the instruction running then (the first: the second start follows at once)
    await pair.start(good.prog_base, good.prog_len)
    for driver in pair.drivers:
        await driver.write_csr(Reg.CTRL, Ctrl.START | Ctrl.IRQ_ENABLE)
    result = await pair.wait("start while busy")
    assert (result.done, result.error, result.error_index) == (
        True, AccelError.START_WHILE_BUSY, 0), f"start while busy: {result}"

    # soft reset while a program runs: no hang, no IRQ, the next program is bit-exact (the
    # model drops the whole program; the RTL stops at a quiet point: the DRAM images agree
    # again once the program has run whole). Once anywhere, once near the end (while the
    # controller drains the last store: no finish may follow the reset)
    for wait in (int(rng.integers(10, length - 40)), length - 40):
        await pair.start(good.prog_base, good.prog_len)
        await pair.backend.wait_cycles(wait)
        assert (await pair.rtl.read_csr(Reg.STATUS)) & 1, \
            f"the program ({length} cycles) ended before the soft reset {wait} cycles after start"
        dut._log.info("soft reset %d cycles after the start of a %d-cycle program", wait, length)
        await pair.soft_reset("soft reset while busy")
        await good_run("good program after a soft reset while busy")


def _epilogue_cases(config) -> list:
    """``(name, EPILOGUE fields, waits)`` of :func:`epilogues_beside_a_gemm`: the GEMM writes
    accumulator rows ``[0, R)``; ``waits``: the controller must hold the EPILOGUE until the
    GEMM is done (its destination or source rows meet them, or it writes keep bits)."""
    engine = config.engine
    rows, cols = engine.array.rows, min(engine.acc_width, 2 * engine.array.cols)
    free, other = 2 * rows, 4 * rows               # rows no GEMM writes
    base = {"rows": rows, "cols": cols}
    one, lr, wd = 0x3F800000, 0x3D4CCCCD, 0x38D1B717
    cases = [
        ("SCALE on other rows", {"op": EpilogueOp.SCALE, "dst_row": free, "imm0": 0x3FC00000},
         False),
        ("SCALE on the GEMM's rows", {"op": EpilogueOp.SCALE, "dst_row": rows // 2,
                                      "imm0": 0x3FC00000}, True),
        ("ADD from other rows", {"op": EpilogueOp.ADD, "dst_row": free, "src_row": other},
         False),
        ("ADD from the GEMM's rows", {"op": EpilogueOp.ADD, "dst_row": free, "src_row": 0},
         True),
        ("ADD broadcast of a GEMM row", {"op": EpilogueOp.ADD, "dst_row": free,
                                         "src_row": rows - 1, "broadcast": 1}, True),
        ("ADD broadcast of another row", {"op": EpilogueOp.ADD, "dst_row": free,
                                          "src_row": other, "broadcast": 1}, False),
        ("SGD on other rows", {"op": EpilogueOp.SGD, "dst_row": free, "src_row": other,
                               "imm0": lr, "imm1": wd}, False),
        ("SGD with dW from the GEMM", {"op": EpilogueOp.SGD, "dst_row": free, "src_row": 0,
                                       "imm0": lr, "imm1": wd}, True),
        ("RELU_BACKWARD on other rows", {"op": EpilogueOp.RELU_BACKWARD, "dst_row": free,
                                         "src_row": other}, False),
        ("DROPOUT on other rows", {"op": EpilogueOp.DROPOUT, "dst_row": free, "imm0": one,
                                   "seed": 0x1234, "threshold": 64}, False),
    ]
    if engine.output_mask:
        cases.append(("RELU writing keep bits", {"op": EpilogueOp.RELU, "dst_row": free,
                                                 "write_mask": 1}, True))
    return [(name, {**base, **fields}, waits) for name, fields, waits in cases]


@cocotb.test()
async def epilogues_beside_a_gemm(dut):
    """An EPILOGUE right after a GEMM (hand-written programs, :func:`_epilogue_cases`): the
    controller lets it run beside the GEMM when its rows miss the GEMM's ``C`` rows and holds
    it otherwise; either way the results are those of program order. Per case: load A, B and
    every accumulator row, the GEMM (accumulating onto its rows), the EPILOGUE, a STORE of
    every accumulator row; the status and the DRAM image equal the golden model's (a missing
    wait would give the epilogue the GEMM's rows before their results, or the GEMM an
    operand the epilogue changed)."""
    rng = make_rng(dut)
    config = accel_config_from(case()["config"])
    engine = config.engine
    fp16, fp32 = FORMAT_BITS.index("fp16"), FORMAT_BITS.index("fp32")
    m, n, k = engine.array.rows, engine.array.cols, engine.spad_width
    rows, width = engine.acc_rows, engine.acc_width
    a_addr, b_addr, acc_addr, out_addr, programs = 0x1000, 0x2000, 0x4000, 0x8000, 0xC000
    size = 1 << 16
    image = bytearray(size)

    def stride(row_bytes):              # rows on whole beats
        return -(-row_bytes // config.beat_bytes) * config.beat_bytes

    # operands and accumulator rows: random values, the rows' padding random too
    for addr, count, dtype in ((a_addr, m * stride(2 * k) // 2, np.float16),
                               (b_addr, k * stride(2 * n) // 2, np.float16),
                               (acc_addr, rows * stride(4 * width) // 4, np.float32)):
        values = rng.standard_normal(count).astype(dtype).tobytes()
        image[addr:addr + len(values)] = values
    head = [(Opcode.LOAD, dict(target=Target.A, dram_format=fp16, operand_format=fp16,
                               dram_addr=a_addr, dram_stride=stride(2 * k), rows=m, cols=k)),
            (Opcode.LOAD, dict(target=Target.B, dram_format=fp16, operand_format=fp16,
                               dram_addr=b_addr, dram_stride=stride(2 * n), rows=k, cols=n)),
            (Opcode.LOAD, dict(target=Target.ACC, dram_format=fp32, dram_addr=acc_addr,
                               dram_stride=stride(4 * width), rows=rows, cols=width)),
            (Opcode.GEMM, dict(m=m, n=n, k=k, accumulate=1, c_row=0))]
    tail = [(Opcode.STORE, dict(target=Target.ACC, dram_format=fp32, dram_addr=out_addr,
                                dram_stride=stride(4 * width), rows=rows, cols=width)),
            (Opcode.DONE, {})]
    slots = []
    for index, (name, fields, waits) in enumerate(_epilogue_cases(config)):
        program = head + [(Opcode.EPILOGUE, fields)] + tail
        for op, f in program:
            if instruction_error(config, op, decode(encode(op, **f))[1]) != AccelError.NONE:
                raise AssertionError(f"{name}: {op.name} {f} is not a valid instruction")
        words = _assemble(program)
        base = programs + index * 0x200
        image[base:base + len(words)] = words
        slots.append((name, base, len(program), waits))
    pair = await Pair.create(dut, config, rng, dram_size=size, pause=case()["pause"])
    await pair.load_image(image)
    await pair.reset()
    for name, base, length, waits in slots:
        result = await pair.run(base, length, f"EPILOGUE after a GEMM: {name}")
        assert result.ok, f"{name}: {result.error.name} at {result.error_index}"
        dut._log.info("%s (%s): %d cycles, equal to the golden model", name,
                      "waits for the GEMM" if waits else "beside the GEMM",
                      result.cycles_waited)


@cocotb.test()
async def every_register_through_the_bus(dut):
    """Every register read, and every writable one written, through the AXI4-Lite bus on both
    back ends: identification and capabilities equal the specification's words for the
    configuration (and discover() reads them back as the configuration); writes with byte
    strobes; SLVERR for read-only and unmapped words, which keep their values; CTRL's bits;
    the IRQ's write-1-to-clear and enable; the counters' low-then-high rule while they count."""
    data = case()
    config = accel_config_from(data["config"])
    rng = make_rng(dut)
    pair, _, good, _ = await _error_setup(dut, rng, data)
    words = range(0, CSR_BYTES, 4)

    async def read_all():
        """``{offset: (value, response)}`` of every word of both."""
        return [{offset: await driver.backend.read_csr(offset) for offset in words}
                for driver in pair.drivers]

    def unmeasured(offset):
        return any(offset in (counter_offset(n), counter_offset(n) + 4) for n in COUNTERS
                   if n not in pair.model.backend.measured_counters)

    async def same_map(what):
        got, want = await read_all()
        for offset in words:
            if got[offset] != want[offset] and not unmeasured(offset):
                raise AssertionError(f"{what}: word {offset:#04x} RTL {got[offset][0]:#010x} "
                                     f"{got[offset][1].name}, model {want[offset][0]:#010x} "
                                     f"{want[offset][1].name}")
        return got

    # after reset: the read-only words are the spec's, unmapped words SLVERR and 0
    mapped = {int(r) for r in Reg if r != Reg.COUNTERS} | {
        counter_offset(n) + half for n in COUNTERS for half in (0, 4)}
    spec = capability_words(config)
    got = await same_map("after reset")
    for offset in words:
        want = ((spec.get(offset, 0), Resp.OKAY) if offset in spec
                else (0, Resp.OKAY) if offset in mapped else (0, Resp.SLVERR))
        assert got[offset] == want, f"after reset: word {offset:#04x} reads " \
            f"{got[offset][0]:#010x} {got[offset][1].name}, not {want[0]:#010x} {want[1].name}"
    for driver in pair.drivers:
        info = await driver.discover()
        array = config.engine.array
        assert (info.array.rows, info.array.cols, info.array.dataflow, info.bus.beat_bytes,
                info.bus.addr_bits, set(info.formats.a), set(info.formats.out)) == (
            array.rows, array.cols, array.dataflow, config.beat_bytes, config.addr_width,
            set(array.a_formats), set(config.engine.out_formats)), f"discover(): {info}"

    # writable registers, byte by byte (a contiguous run of strobes per write)
    values = {Reg.PROG_BASE_LO: 0, Reg.PROG_BASE_HI: 0, Reg.PROG_LEN: 0}
    for _ in range(12):
        reg = list(values)[int(rng.integers(len(values)))]
        first = int(rng.integers(4))
        strobe = ((1 << int(rng.integers(1, 5 - first))) - 1) << first
        value = int(rng.integers(1 << 32))
        for driver in pair.drivers:
            await driver.write_csr(reg, value, strobe)
        if reg != Reg.PROG_BASE_HI or config.addr_width > 32:
            lanes = sum(0xFF << 8 * i for i in range(4) if strobe >> i & 1)
            values[reg] = values[reg] & ~lanes | value & lanes
        for driver in pair.drivers:
            assert await driver.read_csr(reg) == values[reg], \
                f"{reg.name} after writing {value:#010x} with strobes {strobe:#06b}: " \
                f"{await driver.read_csr(reg):#010x}, want {values[reg]:#010x}"

    # read-only and unmapped words answer SLVERR to a write and keep their values
    before = await same_map("before writes to read-only words")
    for offset in words:
        if offset in (Reg.CTRL, Reg.IRQ, *values):
            continue
        for driver in pair.drivers:
            try:
                await driver.write_csr(offset, int(rng.integers(1 << 32)))
            except BusError as error:
                assert error.response == Resp.SLVERR, f"write to {offset:#04x}: {error}"
            else:
                raise AssertionError(f"write to read-only word {offset:#04x} answered OKAY")
    assert await same_map("after writes to read-only words") == before

    # CTRL: IRQ_ENABLE reads back, START and SOFT_RESET read 0; a start of an empty program
    # ends at once with EMPTY_PROGRAM and the IRQ (with the enable of the same write)
    for driver in pair.drivers:
        await driver.write_csr(Reg.PROG_LEN, 0)
        await driver.write_csr(Reg.CTRL, Ctrl.IRQ_ENABLE)
        assert await driver.read_csr(Reg.CTRL) == Ctrl.IRQ_ENABLE
        await driver.write_csr(Reg.CTRL, 0)
        assert await driver.read_csr(Reg.CTRL) == 0
        await driver.write_csr(Reg.CTRL, Ctrl.START | Ctrl.IRQ_ENABLE)
        assert await driver.read_csr(Reg.CTRL) == Ctrl.IRQ_ENABLE
    result = await pair.wait("empty program", clear_irq=False)
    assert (result.error, result.error_index) == (AccelError.EMPTY_PROGRAM, 0), result
    await same_map("after an empty program")

    # IRQ: a write of 0, or of 1 without byte 0's strobe, keeps it; a write of 1 clears it
    for value, strobe, pending in ((0, 0b1111, 1), (1, 0b0010, 1), (1, 0b1110, 1),
                                   (1, 0b0001, 0)):
        for driver in pair.drivers:
            await driver.write_csr(Reg.IRQ, value, strobe)
            assert await driver.read_csr(Reg.IRQ) == pending, \
                f"IRQ after writing {value} with strobes {strobe:#06b}"
        await Timer(2 * PERIOD_NS, unit="ns")
        assert int(dut.irq.value) == pending, f"irq pin after writing IRQ {value} ({strobe:#06b})"

    # a program without the IRQ enable: polled, IRQ stays low; then one with it, whose
    # counters are read as 64-bit pairs while it runs (cycles grows, each pair consistent)
    result = await pair.run(good.prog_base, good.prog_len, "polled program", irq=False)
    assert result.ok and not await pair.rtl.read_csr(Reg.IRQ) and not dut.irq.value, result
    await pair.start(good.prog_base, good.prog_len)
    seen = []
    while (await pair.rtl.read_csr(Reg.STATUS)) & 1:
        seen.append(await pair.rtl.read_counter("cycles"))
        high = await pair.rtl.read_csr(counter_offset("cycles") + 4)
        assert high == seen[-1] >> 32, f"the high word's latch changed to {high:#x} " \
            f"(pair {seen[-1]:#x})"
    assert len(seen) >= 2 and all(a < b for a, b in zip(seen, seen[1:])), \
        f"cycles read while running: {seen}"
    result = await pair.wait("program with the counters read while it runs")
    assert result.ok and result.counters["cycles"] >= seen[-1], (result, seen)
    await same_map("at the end")
