# amaranth: UnusedElaboratable=no
"""Runner: the epilogue (hw/accel/epilogue.py) on a real GemmEngine, on Icarus and Verilator;
its FP32 widening and parameter checks."""

import dataclasses

import numpy as np
import pytest
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.accel.epilogue import Epilogue, EpilogueCommand, widen_to_fp32
from hw.engine.commands import host_write_layout, read_data_layout, read_request_layout
from hw.engine.engine import GemmEngine
from sim.accel_spec import EPILOGUE_FIELDS
from sim.config import AccelConfig, ArrayConfig, EngineConfig, config_to_dict
from sim.formats import FP32, format_by_name
from sim.numerics import convert
from sim.runner import Design, run_bench
from tb.conftest import scaled, verilator_builds_first_only

CONFIGS = {
    "default": AccelConfig(),
    # 4 columns, output masks (RELU writes the host keep plane), every output format, a number
    # of accumulator rows that is not a power of two
    "4x4-mask": AccelConfig(
        engine=EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=16,
                            b_rows=16, acc_width=32, acc_rows=37, output_mask=True,
                            out_formats=("e4m3", "fp32", "bf16", "fp16", "e5m2"))),
}
# the same with three registers in each multiplier and adder (the board build's epilogue)
CONFIGS["4x4-mask-s3"] = dataclasses.replace(CONFIGS["4x4-mask"], epilogue_stages=3)

#: Stall gates between the Epilogue and the engine (bits of the top's ``stall`` input)
STALLS = ("rd_req", "rd_data", "wr_acc", "wr_mask")


def read_side(engine: EngineConfig) -> EngineConfig:
    """``engine`` with one array row and one-row operand scratchpads: the accumulator memory,
    its read path, write ports and keep planes stay; the array would only slow the simulation
    down (as ``tb.test_storer.read_side``)."""
    return dataclasses.replace(engine, array=dataclasses.replace(engine.array, rows=1),
                               a_rows=1, b_rows=1)


class EpilogueOnEngine(wiring.Component):
    """The bench's top level: an :class:`Epilogue` on a :class:`GemmEngine` (:func:`read_side`
    of the configuration's engine).

    ``host`` high connects the bench's ``wr_acc``, ``rd_req`` and ``rd_data`` to the engine
    (to fill and read back the accumulator memory); low, the Epilogue's. ``stall`` bit ``i``
    (:data:`STALLS` order) blocks that stream between the Epilogue and the engine for the
    cycle (valid and ready both low on the far side). ``wrote`` is the Epilogue's ``wr_acc``
    handshake, ``asked`` its ``rd_req`` handshake, ``mask_*`` its ``wr_mask`` handshake and
    payload; ``engine_error`` the engine's sticky error bit."""

    def __init__(self, config: AccelConfig):
        self.config = config
        engine = config.engine
        cols = engine.array.cols
        super().__init__({
            "host": In(1),
            "stall": In(len(STALLS)),
            "wr_acc": In(stream.Signature(host_write_layout(cols, unsigned(32)))),
            "rd_req": In(stream.Signature(read_request_layout(engine))),
            "rd_data": Out(stream.Signature(read_data_layout(engine))),
            "cmd": In(stream.Signature(EpilogueCommand)),
            "done": Out(1),
            "wrote": Out(1),
            "asked": Out(1),
            "mask_write": Out(1),
            "mask_row": Out(16),
            "mask_col": Out(16),
            "mask_keep": Out(cols),
            "mask_lanes": Out(cols),
            "engine_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        engine = m.submodules.engine = GemmEngine(read_side(self.config.engine))
        epilogue = m.submodules.epilogue = Epilogue(self.config)
        wiring.connect(m, wiring.flipped(self.cmd), epilogue.cmd)
        stall = {name: self.stall[i] for i, name in enumerate(STALLS)}

        def gate(source, sink, blocked):
            """``source`` -> ``sink`` unless ``blocked``."""
            m.d.comb += [sink.valid.eq(source.valid & ~blocked), sink.payload.eq(source.payload),
                         source.ready.eq(sink.ready & ~blocked)]

        host = self.host
        # bench -> engine or Epilogue -> engine (through its stall gate)
        for name, ours, theirs, port in (("wr_acc", self.wr_acc, epilogue.wr_acc, engine.wr_acc),
                                         ("rd_req", self.rd_req, epilogue.rd_req, engine.rd_req)):
            m.d.comb += [
                port.valid.eq(Mux(host, ours.valid, theirs.valid & ~stall[name])),
                port.payload.eq(Mux(host, ours.payload.as_value(), theirs.payload.as_value())),
                ours.ready.eq(host & port.ready),
                theirs.ready.eq(~host & ~stall[name] & port.ready),
            ]
        # engine -> bench or Epilogue
        port, blocked = engine.rd_data, stall["rd_data"]
        m.d.comb += [
            self.rd_data.valid.eq(host & port.valid),
            epilogue.rd_data.valid.eq(~host & ~blocked & port.valid),
            self.rd_data.payload.eq(port.payload), epilogue.rd_data.payload.eq(port.payload),
            port.ready.eq(Mux(host, self.rd_data.ready, epilogue.rd_data.ready & ~blocked)),
        ]
        if self.config.engine.output_mask:
            mask = epilogue.wr_mask
            gate(mask, engine.wr_mask, stall["wr_mask"])
            m.d.comb += [
                self.mask_write.eq(engine.wr_mask.valid & engine.wr_mask.ready),
                self.mask_row.eq(mask.payload.row), self.mask_col.eq(mask.payload.col),
                self.mask_keep.eq(mask.payload.data.as_value()),
                self.mask_lanes.eq(mask.payload.mask),
            ]
            m.d.comb += [engine.mask_cmd.valid.eq(0), engine.clear_error.eq(0)]
        m.d.comb += [
            self.done.eq(epilogue.done),
            self.wrote.eq(epilogue.wr_acc.valid & epilogue.wr_acc.ready),
            self.asked.eq(epilogue.rd_req.valid & epilogue.rd_req.ready),
            self.engine_error.eq(engine.status.error),
            engine.cmd.valid.eq(0),
        ]
        return m


@pytest.mark.parametrize("name", CONFIGS)
def test_epilogue(simulator, name):
    verilator_builds_first_only(simulator, name, next(iter(CONFIGS)))
    config = CONFIGS[name]
    run_bench(Design(EpilogueOnEngine, config), toplevel="epilogue",
              bench_module="tb.epilogue_tb", simulator=simulator,
              case={"engine": config_to_dict(config.engine), "data_width": config.data_width,
                    "addr_width": config.addr_width,
                    "epilogue_stages": config.epilogue_stages,
                    # random commands (make regress enlarges it)
                    "commands": max(28, scaled(40))})


# -- FP32 widening of the engine's converted reads (CAST) ---------------------------------------

@pytest.mark.parametrize("fmt", ["fp16", "bf16", "e4m3", "e5m2", "fp32"])
def test_widening_is_exact(fmt):
    """Every code of the 8- and 16-bit formats (FP32: edges and random words) widened by the
    gateware equals ``sim.numerics.convert(fmt, FP32, code)`` (NaN canonical)."""
    spec = format_by_name(fmt)
    if spec.width < 32:
        codes = np.arange(1 << spec.width, dtype=np.uint64)
    else:
        rng = np.random.default_rng(7)
        codes = np.concatenate([
            np.array([0, 1, 0x7FFFFF, 0x800000, 0x7F7FFFFF, 0x7F800000, 0x7F800001, 0x7FC00000,
                      0x7FFFFFFF], dtype=np.uint64),
            rng.integers(0, 1 << 32, 2000, dtype=np.uint64)])
        codes = np.concatenate([codes, codes | np.uint64(FP32.sign_mask)])
    expected = convert(spec, FP32, codes.astype(spec.bits_dtype)).tolist()
    m = Module()
    bits = Signal(32)
    out = widen_to_fp32(m, bits, fmt, name="widen")
    mismatches = []

    async def bench(ctx):
        for code, want in zip(codes.tolist(), expected):
            ctx.set(bits, code)
            got = ctx.get(out)
            if got != want:
                mismatches.append(f"{fmt} 0x{code:x}: rtl 0x{got:08x}, golden 0x{want:08x}")

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, "; ".join(mismatches[:8])


# -- parameter checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("config", [None, 64, {"data_width": 64}, EngineConfig()])
def test_rejects_bad_config(config):
    with pytest.raises(ValueError, match=r"config must be an AccelConfig, not"):
        Epilogue(config)


def test_ports_follow_the_configuration():
    for config in CONFIGS.values():
        engine = config.engine
        epilogue = Epilogue(config)
        cols = engine.array.cols
        assert epilogue.rd_req.payload.shape() == read_request_layout(engine)
        assert len(epilogue.rd_data.payload.as_value()) == 32 * cols
        assert len(epilogue.wr_acc.payload.data.as_value()) == 32 * cols
        assert hasattr(epilogue, "wr_mask") == engine.output_mask
    layout = {name: field.width for name, field in EpilogueCommand.as_shape()}
    assert layout == {name: width for name, (_, width) in EPILOGUE_FIELDS.items()}
