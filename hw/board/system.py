"""Everything of a board build behind its pins: the accelerator, its RAM and the serial link."""

from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.accel.accelerator import Accelerator
from hw.board.bridge import SerialBridge
from hw.board.ram import BoardRam
from hw.board.uart import UartRx, UartTx
from sim.board_spec import BoardConfig

__all__ = ["BoardSystem", "RX_FIFO_DEPTH"]

#: Bytes the receiver can hold while the bridge waits on a bus
RX_FIFO_DEPTH = 16


class BoardSystem(wiring.Component):
    """The accelerator (``config.accel``) with a :class:`~hw.board.ram.BoardRam` of
    ``config.ram_bytes`` as its DRAM, driven over an 8N1 serial line
    (:class:`~hw.board.uart.UartRx`, a :data:`RX_FIFO_DEPTH`-byte FIFO,
    :class:`~hw.board.bridge.SerialBridge`, :class:`~hw.board.uart.UartTx`; frames:
    :mod:`sim.board_spec`). A host runs programs on it with :mod:`sim.board_link`.

    Parameters
    ----------
    config : BoardConfig

    Ports
    -----
    rx : 1 bit in, the serial line from the host (idle high)
    tx : 1 bit out, the serial line to the host
    irq : 1 bit, the accelerator's interrupt
    link_error : 1 bit, the receiver lost a byte (overrun or framing) since the host last read
        ``STATUS``
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    irq: Out(1)
    link_error: Out(1)

    def __init__(self, config: BoardConfig):
        if not isinstance(config, BoardConfig):
            raise ValueError(f"config must be a BoardConfig, not {config!r}")
        self.config = config
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        config = self.config
        accel_config = config.accel
        m.submodules.accelerator = accel = Accelerator(accel_config)
        m.submodules.ram = ram = BoardRam(size=config.ram_bytes,
                                          addr_width=accel_config.addr_width,
                                          data_width=accel_config.data_width)
        m.submodules.uart_rx = uart_rx = UartRx(divisor=config.divisor)
        m.submodules.uart_tx = uart_tx = UartTx(divisor=config.divisor)
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=RX_FIFO_DEPTH)
        m.submodules.bridge = bridge = SerialBridge(timeout=config.frame_timeout_cycles)

        wiring.connect(m, accel.m_axi, ram.axi)
        wiring.connect(m, bridge.csr, accel.s_axil)
        wiring.connect(m, bridge.mem, ram.host)
        wiring.connect(m, bridge.o, uart_tx.i)
        m.d.comb += [
            uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx),
            # the receiver's stream into the FIFO (w_*), the FIFO's into the bridge (r_*)
            fifo.w_data.eq(uart_rx.o.payload), fifo.w_en.eq(uart_rx.o.valid),
            uart_rx.o.ready.eq(fifo.w_rdy),
            bridge.i.payload.eq(fifo.r_data), bridge.i.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(bridge.i.ready),
            bridge.status.eq(Cat(accel.irq, uart_rx.overrun, uart_rx.framing)),
            uart_rx.clear.eq(bridge.clear),
            self.irq.eq(accel.irq),
            self.link_error.eq(uart_rx.overrun | uart_rx.framing),
        ]
        return m
