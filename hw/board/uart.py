"""An 8N1 UART: one start bit, eight data bits (least significant first), one stop bit.

The bit time is ``divisor`` clock cycles (``round(clock / baud)``, :class:`sim.board_spec.
BoardConfig`); the line is high when idle.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx"]


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer >= 4 (clock cycles per bit), "
                         f"not {divisor!r}")
    return divisor


class UartRx(wiring.Component):
    """Receiver: the ``rx`` line (asynchronous, synchronised here by two flip-flops) to a
    stream of bytes.

    A start bit is a low level seen in the middle of its bit time (a shorter glitch is
    ignored); each data bit and the stop bit are sampled in the middle of theirs. A byte whose
    stop bit is low is dropped and raises ``framing``; a byte that arrives while the previous
    one is still in ``o`` replaces it and raises ``overrun``. Both flags stay high until
    ``clear``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Latency: a byte is in ``o`` 2 + 9.5 bit times (synchroniser, start and data bits, half the
    stop bit) after its start edge. Throughput: one byte per 10 bit times.

    Ports
    -----
    rx : 1 bit, the serial line
    o : stream of 8-bit bytes (no backpressure on the line: a slow sink loses bytes)
    overrun, framing : 1 bit, sticky flags
    clear : 1 bit, clears both flags
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    overrun: Out(1)
    framing: Out(1)
    clear: In(1)

    def __init__(self, *, divisor: int):
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor))
        bit = Signal(range(9))
        shift = Signal(8)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.clear):
            m.d.sync += [self.overrun.eq(0), self.framing.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):                  # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), bit.eq(bit + 1),
                                 timer.eq(self.divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(line):
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += self.framing.eq(1)
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Transmitter: a stream of bytes to the ``tx`` line.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Latency: the start bit begins the cycle after a byte is taken. Throughput: one byte per
    10 bit times (``i.ready`` is high while the line is idle).

    Ports
    -----
    i : stream of 8-bit bytes
    tx : 1 bit, the serial line (high when idle)
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, *, divisor: int):
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(range(11))                   # bits left to send, the current one included
        shift = Signal(10, init=1)                 # the line's next bits, LSB first
        m.d.comb += [self.tx.eq(shift[0]), self.i.ready.eq(bits == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shift.eq(Cat(0, self.i.payload, 1)), bits.eq(10),
                         timer.eq(self.divisor - 1)]
        with m.Elif(bits != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shift.eq(Cat(shift[1:], 1)), bits.eq(bits - 1),
                             timer.eq(self.divisor - 1)]
        return m
