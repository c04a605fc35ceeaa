# amaranth: UnusedElaboratable=no
"""Runner: the store path (hw/accel/storer.py) reading a real GemmEngine, on Icarus and
Verilator; its geometry and parameter checks."""

import dataclasses
from collections import deque

import pytest
from amaranth import Module, unsigned
from amaranth.sim import Simulator
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.accel.dma import WriteBeat
from hw.accel.storer import StoreCommand, StoreGeometry, Storer
from hw.engine.commands import host_write_layout
from hw.engine.engine import GemmEngine
from sim.accel_spec import FORMAT_BITS, FORMAT_BYTES
from sim.config import AccelConfig, ArrayConfig, EngineConfig, config_to_dict
from sim.runner import Design, run_bench
from tb.conftest import scaled, verilator_builds_first_only

CONFIGS = {
    "default": AccelConfig(),
    # every output format; 4 columns: fp16 and the FP8 formats need several reads per beat
    "4x4-d128": AccelConfig(
        engine=EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=16,
                            b_rows=16, acc_width=32, acc_rows=44,
                            out_formats=("fp32", "bf16", "e4m3", "fp16", "e5m2")),
        data_width=128, addr_width=64),
    # 3 columns: reads that do not divide a beat (fp16: 3 + 1 elements, e4m3: 3 + 3 + 2)
    "5x3": AccelConfig(
        engine=EngineConfig(array=ArrayConfig(rows=5, cols=3), spad_width=16, a_rows=8,
                            b_rows=8, acc_width=16, acc_rows=23,
                            out_formats=("e4m3", "fp32", "fp16"))),
}


def read_side(engine: EngineConfig) -> EngineConfig:
    """``engine`` with everything its host reads do not touch made as small as it goes: one
    array row and one-row operand scratchpads. The read path (accumulator memory, converters,
    read buffer) depends only on the columns, the accumulator memory and the output formats,
    which stay; the array's rows only slow the simulation down (an 8x8 array: ~1,000 cycles
    per second on Icarus)."""
    return dataclasses.replace(engine, array=dataclasses.replace(engine.array, rows=1),
                               a_rows=1, b_rows=1)


class StorerOnEngine(wiring.Component):
    """The bench's top level: a :class:`Storer` on a :class:`GemmEngine` with the read side of
    its configuration (:func:`read_side`). The bench fills the accumulator memory through
    ``wr_acc``. For the timing checks: ``asking`` is the
    Storer's ``rd_req.valid``, ``reading`` the engine's read handshake, ``answered`` the
    ``rd_data`` handshake; ``engine_error`` is the engine's sticky error bit (a read outside the
    memory or of a format it does not have would raise it)."""

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__({
            "wr_acc": In(stream.Signature(host_write_layout(config.engine.array.cols,
                                                            unsigned(32)))),
            "cmd": In(stream.Signature(StoreCommand)),
            "write_data": Out(stream.Signature(WriteBeat(config.data_width))),
            "done": Out(1),
            "asking": Out(1),
            "reading": Out(1),
            "answered": Out(1),
            "engine_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        engine = m.submodules.engine = GemmEngine(read_side(self.config.engine))
        storer = m.submodules.storer = Storer(self.config)
        wiring.connect(m, wiring.flipped(self.wr_acc), engine.wr_acc)
        wiring.connect(m, wiring.flipped(self.cmd), storer.cmd)
        wiring.connect(m, storer.rd_req, engine.rd_req)
        wiring.connect(m, engine.rd_data, storer.rd_data)
        wiring.connect(m, storer.write_data, wiring.flipped(self.write_data))
        m.d.comb += [
            self.done.eq(storer.done),
            self.asking.eq(storer.rd_req.valid),
            self.reading.eq(engine.rd_req.valid & engine.rd_req.ready),
            self.answered.eq(engine.rd_data.valid & engine.rd_data.ready),
            self.engine_error.eq(engine.status.error),
        ]
        return m


@pytest.mark.parametrize("name", CONFIGS)
def test_storer(simulator, name):
    verilator_builds_first_only(simulator, name, next(iter(CONFIGS)))
    config = CONFIGS[name]
    run_bench(Design(StorerOnEngine, config), toplevel="storer", bench_module="tb.storer_tb",
              simulator=simulator,
              case={"engine": config_to_dict(config.engine), "data_width": config.data_width,
                    "addr_width": config.addr_width,
                    # random stores (make regress enlarges it)
                    "stores": max(24, scaled(25))})


# -- the Storer alone against an ideal read port ---------------------------------------------------

def ideal_port_timing(config: AccelConfig, fmt: str, rows: int, cols: int, latency: int):
    """Run one store on the Storer alone in Amaranth's simulator, against a read port that
    takes a read every cycle and answers each ``latency`` cycles later (any number in flight),
    and a ``write_data`` that is always ready. Returns ``(accept cycle, beat cycles, done
    cycle)``."""
    storer = Storer(config)
    seen = {"beats": []}

    async def bench(ctx):
        answers = deque()                  # the cycle each read's answer is due
        fields = dict(dram_format=FORMAT_BITS.index(fmt), saturate=0, rows=rows, cols=cols,
                      mem_row=0, mem_col=0)
        for name, value in fields.items():
            ctx.set(getattr(storer.cmd.payload, name), value)
        ctx.set(storer.rd_req.ready, 1)
        ctx.set(storer.write_data.ready, 1)
        offering = True
        for cycle in range(64 * rows * cols + 100):
            # inputs of this cycle, then what the clock edge will see
            ctx.set(storer.cmd.valid, offering)
            ctx.set(storer.rd_data.valid, bool(answers) and answers[0] <= cycle)
            accepted = ctx.get(storer.cmd.valid) and ctx.get(storer.cmd.ready)
            requested = ctx.get(storer.rd_req.valid)
            answered = ctx.get(storer.rd_data.valid) and ctx.get(storer.rd_data.ready)
            if ctx.get(storer.write_data.valid):
                seen["beats"].append(cycle)
            if ctx.get(storer.done):
                seen["done"] = cycle
                return
            await ctx.tick()
            if accepted:
                seen["accept"], offering = cycle, False
            if answered:
                answers.popleft()
            if requested:
                answers.append(cycle + latency)
        raise AssertionError("no done pulse")

    sim = Simulator(storer)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen["accept"], seen["beats"], seen["done"]


@pytest.mark.parametrize("latency", [1, 2, GemmEngine.READ_BUFFER])
@pytest.mark.parametrize("name", CONFIGS)
def test_storer_keeps_up_with_an_ideal_read_port(name, latency):
    """A store of ``N`` reads takes ``N + latency + 2`` cycles from accept to done for a read
    latency up to ``GemmEngine.READ_BUFFER`` (the engine's is 4): the Storer is never the
    limit; with a beat per read, the beats come one per cycle."""
    config = CONFIGS[name]
    engine = config.engine
    for fmt in engine.out_formats:
        geometry = StoreGeometry(size=FORMAT_BYTES[fmt], read_width=engine.array.cols,
                                 beat_bytes=config.beat_bytes)
        rows, cols = 3, 2 * geometry.per_beat + 1
        accept, beats, done = ideal_port_timing(config, fmt, rows, cols, latency)
        reads = rows * geometry.requests(cols)
        assert len(beats) == rows * 3
        assert done - accept == reads + latency + 2, (fmt, beats)
        if geometry.reads == 1:
            assert beats == list(range(beats[0], beats[0] + len(beats)))


# -- geometry ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("read_width", [1, 3, 4, 7, 8, 32])
@pytest.mark.parametrize("beat_bytes", [8, 16, 32])
def test_geometry_covers_each_beat_once(size, read_width, beat_bytes):
    """Every slot of a beat has exactly one (request, lane), requests read inside the beat
    and within the engine's width, and a row's requests are the beats' requests."""
    g = StoreGeometry(size=size, read_width=read_width, beat_bytes=beat_bytes)
    assert g.per_beat * size == beat_bytes
    slots = {}
    for byte in range(beat_bytes):
        request, lane, within = g.source(byte)
        assert 0 <= request < g.reads and 0 <= lane < min(read_width, g.per_beat)
        assert within == byte % size
        slots.setdefault(byte // size, set()).add((request, lane))
    assert all(len(sources) == 1 for sources in slots.values())
    assert sorted(request * g.per_read + lane for (request, lane), in slots.values()) == \
        list(range(g.per_beat))
    for cols in (1, g.per_beat - 1 or 1, g.per_beat, g.per_beat + 1, 5 * g.per_beat + 3):
        reads = sum(-(-min(g.per_beat, cols - start) // g.per_read)
                    for start in range(0, cols, g.per_beat))
        assert g.requests(cols) == reads


def test_geometry_rejects_a_bad_size():
    with pytest.raises(ValueError, match="size must be 1, 2 or 4 bytes, not 3"):
        StoreGeometry(size=3, read_width=8, beat_bytes=8)


# -- parameter checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("config", [None, 64, {"data_width": 64}, EngineConfig()])
def test_rejects_bad_config(config):
    with pytest.raises(ValueError, match=r"config must be an AccelConfig, not"):
        Storer(config)


def test_ports_follow_the_configuration():
    for config in CONFIGS.values():
        storer = Storer(config)
        assert storer.write_data.payload.shape() == WriteBeat(config.data_width)
        assert len(storer.rd_data.payload.as_value()) == 32 * config.engine.array.cols
        assert set(storer.geometries) == {FORMAT_BYTES[f] for f in config.engine.out_formats}
        assert StoreCommand.as_shape().size == 3 + 1 + 4 * 16
