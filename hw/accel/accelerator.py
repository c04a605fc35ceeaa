"""The accelerator top level: a GEMM engine that runs programs from DRAM, behind two standard
buses.

Ports (Verilog names ``s_axil__*``, ``m_axi__*``, ``irq``, ``clk``, ``rst``):

* ``s_axil``: AXI4-Lite subordinate, the host's registers (:mod:`sim.accel_spec`'s map);
* ``m_axi``: AXI4 manager to DRAM (``config.data_width`` data bits, ``config.addr_width``
  address bits, one ID);
* ``irq``: level, ``IRQ.pending``.

Inside: :class:`~hw.accel.registers.Registers`, :class:`~hw.accel.controller.Controller` (with
its :class:`~hw.accel.decoder.InstructionDecoder`), :class:`~hw.accel.dma.Dma`,
:class:`~hw.accel.loader.Loader`, :class:`~hw.accel.storer.Storer`,
:class:`~hw.accel.epilogue.Epilogue` (with output masks also
:class:`~hw.accel.dropout_plane.DropoutPlaneStarter`, which takes the ``DROPOUT_PLANE``
epilogues) and :class:`~hw.engine.engine.GemmEngine` (built with ``host_acc_while_busy``).
The host writes ``PROG_BASE``, ``PROG_LEN`` and ``CTRL`` (start, IRQ enable) and waits for the
IRQ; everything else moves on the AXI4 bus.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.accel.axi import AXI4LiteSignature, AXI4Signature
from hw.accel.controller import Controller
from hw.accel.dma import Dma
from hw.accel.dropout_plane import DropoutPlaneStarter
from hw.accel.epilogue import Epilogue, EpilogueOpCode
from hw.accel.loader import Loader
from hw.accel.registers import Registers
from hw.accel.storer import Storer
from hw.engine.engine import GemmEngine
from sim.accel_spec import CSR_ADDR_BITS
from sim.config import AccelConfig

__all__ = ["Accelerator", "PROFILE_SIGNALS"]

#: Signals below the top that a profiling bench reads (Verilog module, signal): the
#: controller's ``phase`` and ``busy``, and the engine-busy event of the performance counters;
#: a Verilator build must make them public (``sim.runner.run_bench(public=...)``)
PROFILE_SIGNALS = (("accelerator.controller", "phase"), ("accelerator.controller", "busy"),
                   ("accelerator.controller", "pc"), ("accelerator.registers", "engine_busy"))


class Accelerator(wiring.Component):
    """The accelerator (module docstring).

    Parameters
    ----------
    config : AccelConfig
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        self.config = config
        super().__init__({
            "s_axil": In(AXI4LiteSignature(CSR_ADDR_BITS)),
            "m_axi": Out(AXI4Signature(config.addr_width, config.data_width)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        m.submodules.registers = registers = Registers(config)
        m.submodules.controller = controller = Controller(config)
        m.submodules.dma = dma = Dma(config)
        m.submodules.loader = loader = Loader(config)
        m.submodules.storer = storer = Storer(config)
        m.submodules.epilogue = epilogue = Epilogue(config)
        m.submodules.engine = engine = GemmEngine(config.engine, host_acc_while_busy=True)

        wiring.connect(m, wiring.flipped(self.s_axil), registers.bus)
        wiring.connect(m, dma.bus, wiring.flipped(self.m_axi))
        m.d.comb += self.irq.eq(registers.irq)

        # registers <-> controller, and the performance counters' events
        m.d.comb += [
            controller.start.eq(registers.start),
            controller.soft_reset.eq(registers.soft_reset),
            controller.prog_base.eq(registers.prog_base),
            controller.prog_len.eq(registers.prog_len),
            registers.busy.eq(controller.busy),
            registers.pc.eq(controller.pc),
            registers.finish.eq(controller.finish),
            registers.fault.eq(controller.fault),
            registers.fault_code.eq(controller.fault_code),
            registers.fault_index.eq(controller.fault_index),
            registers.engine_busy.eq(engine.status.busy),
            registers.dma_stall.eq(dma.stall),
            registers.bytes_read.eq(dma.bytes_read),
            registers.bytes_written.eq(dma.bytes_written),
        ]
        if GemmEngine.counts_products(config.engine):
            _count_skipped_products(m, engine, registers.products_skipped)

        # controller <-> DMA
        wiring.connect(m, controller.read_cmd, dma.read_cmd)
        wiring.connect(m, controller.write_cmd, dma.write_cmd)
        wiring.connect(m, dma.read_data, controller.read_data)
        m.d.comb += [controller.read_done.eq(dma.read_done),
                     controller.write_done.eq(dma.write_done),
                     controller.dma_error.eq(dma.error),
                     controller.dma_error_code.eq(dma.error_code)]

        # load path: DMA read data -> loader -> engine write ports
        wiring.connect(m, controller.load_cmd, loader.cmd)
        wiring.connect(m, controller.load_data, loader.read_data)
        m.d.comb += controller.load_done.eq(loader.done)
        wiring.connect(m, loader.wr_a, engine.wr_a)
        wiring.connect(m, loader.wr_b, engine.wr_b)

        # store path: engine reads -> storer -> DMA write data
        wiring.connect(m, controller.store_cmd, storer.cmd)
        m.d.comb += controller.store_done.eq(storer.done)
        wiring.connect(m, storer.write_data, dma.write_data)

        # epilogue: owns the accumulator ports while an EPILOGUE runs (controller's
        # epilogue_active), the storer (reads) and the loader (writes) the rest of the time
        if config.engine.output_mask:
            # DROPOUT_PLANE goes to the engine's dropout mask writer, every other op to the
            # epilogue
            m.submodules.dropout_plane = plane = DropoutPlaneStarter()
            plane_op = controller.epilogue_cmd.payload.op == EpilogueOpCode.DROPOUT_PLANE
            m.d.comb += [
                epilogue.cmd.payload.eq(controller.epilogue_cmd.payload),
                plane.cmd.payload.eq(controller.epilogue_cmd.payload),
                epilogue.cmd.valid.eq(controller.epilogue_cmd.valid & ~plane_op),
                plane.cmd.valid.eq(controller.epilogue_cmd.valid & plane_op),
                controller.epilogue_cmd.ready.eq(Mux(plane_op, plane.cmd.ready,
                                                     epilogue.cmd.ready)),
                controller.epilogue_done.eq(epilogue.done | plane.done),
                plane.mask_busy.eq(engine.mask_status.busy)]
            wiring.connect(m, plane.mask_cmd, engine.mask_cmd)
        else:
            wiring.connect(m, controller.epilogue_cmd, epilogue.cmd)
            m.d.comb += controller.epilogue_done.eq(epilogue.done)
        ours = controller.epilogue_active
        _share(m, ours, epilogue.rd_req, storer.rd_req, engine.rd_req)
        _share(m, ours, epilogue.wr_acc, loader.wr_acc, engine.wr_acc)
        m.d.comb += [epilogue.rd_data.payload.eq(engine.rd_data.payload),
                     storer.rd_data.payload.eq(engine.rd_data.payload),
                     epilogue.rd_data.valid.eq(ours & engine.rd_data.valid),
                     storer.rd_data.valid.eq(~ours & engine.rd_data.valid),
                     engine.rd_data.ready.eq(Mux(ours, epilogue.rd_data.ready,
                                                 storer.rd_data.ready))]
        if config.engine.output_mask:
            wiring.connect(m, epilogue.wr_mask, engine.wr_mask)

        # engine commands
        wiring.connect(m, controller.engine_cmd, engine.cmd)
        m.d.comb += [controller.engine_status.eq(engine.status),
                     engine.clear_error.eq(controller.engine_clear)]
        return m


def _count_skipped_products(m, engine, increment):
    """Drive the ``products_skipped`` counter's ``increment`` (64 bits, added modulo 2 ** 64):
    ``M * N * K`` of each command the engine runs (two cycles after its accept, through two
    registered multiplies; a command the engine rejects is not busy the cycle after its accept
    and adds nothing) minus the products its array accumulates (``engine.products``). Between
    two commands the counter holds the products skipped so far; while one runs, also its
    products still to come. (An engine without skipping computes every product: the counter
    stays 0.)"""
    accepted = Signal(name="gemm_accepted")
    mn, k = Signal(32, name="gemm_mn"), Signal(16, name="gemm_k")
    mnk = Signal(48, name="gemm_mnk")
    cmd = engine.cmd
    m.d.sync += [accepted.eq(cmd.valid & cmd.ready),
                 mn.eq(cmd.payload.m * cmd.payload.n), k.eq(cmd.payload.k),
                 mnk.eq(Mux(accepted & engine.status.busy, mn * k, 0))]
    m.d.comb += increment.eq(mnk - engine.products)


def _share(m, first, a, b, target):
    """Connect stream ``a`` (when ``first``) or ``b`` (otherwise) to ``target``."""
    m.d.comb += [target.valid.eq(Mux(first, a.valid, b.valid)),
                 target.payload.eq(Mux(first, a.payload, b.payload)),
                 a.ready.eq(first & target.ready),
                 b.ready.eq(~first & target.ready)]
