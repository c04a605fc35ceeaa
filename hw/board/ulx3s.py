"""The board build on a ULX3S (Lattice ECP5 LFE5U-85F): :class:`~hw.board.system.BoardSystem`
on the board's pins, clocked by the ECP5's PLL from the 25 MHz oscillator.

Pins (``amaranth_boards.ulx3s``): the FTDI FT231X's UART (``uart.rx`` / ``uart.tx``), the
LEDs (0: the accelerator's IRQ, 1: a lost serial byte, 7: a 1 Hz-ish heartbeat that shows the
clock runs). The PWR button is not used as a reset: the design resets itself while the PLL is
not locked; the accelerator's soft reset (``CTRL``) is the host's reset.
"""

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal

from hw.board.system import BoardSystem
from sim.board_spec import BoardConfig

__all__ = ["Ulx3sTop", "pll_dividers", "OSCILLATOR_HZ"]

#: The ULX3S's oscillator
OSCILLATOR_HZ = 25_000_000

# EHXPLLL's operating ranges (ECP5 family data sheet): phase detector input, VCO
_PFD_HZ = (3_125_000, 400_000_000)
_VCO_HZ = (400_000_000, 800_000_000)


def pll_dividers(input_hz: int, output_hz: int) -> dict:
    """``{"CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV"}`` of an EHXPLLL whose CLKOP (fed back) is
    ``output_hz`` exactly; ``ValueError`` naming ``output_hz`` if none is."""
    for clki in range(1, 129):
        pfd = input_hz / clki
        if not _PFD_HZ[0] <= pfd <= _PFD_HZ[1]:
            continue
        for clkfb in range(1, 81):
            if input_hz * clkfb != output_hz * clki:
                continue
            for clkop in range(1, 129):
                if _VCO_HZ[0] <= output_hz * clkop <= _VCO_HZ[1]:
                    return {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop}
    raise ValueError(f"clock_hz {output_hz} cannot be made exactly from {input_hz} Hz by the "
                     f"ECP5 PLL: pick a rational multiple with small terms (e.g. 12500000)")


class Ulx3sTop(Elaboratable):
    """The board build's top level for ``amaranth_boards.ulx3s.ULX3S_85F_Platform``.

    Parameters
    ----------
    config : BoardConfig
        ``clock_hz`` must be exactly reachable by the PLL from 25 MHz (:func:`pll_dividers`).
    """

    def __init__(self, config: BoardConfig):
        if not isinstance(config, BoardConfig):
            raise ValueError(f"config must be a BoardConfig, not {config!r}")
        self.config = config
        self.dividers = pll_dividers(OSCILLATOR_HZ, config.clock_hz)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        clk25 = platform.request("clk25", 0)
        m.domains.sync = ClockDomain("sync")
        locked, clock = Signal(), Signal()
        d = self.dividers
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{OSCILLATOR_HZ / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{config.clock_hz / 1e6:g}",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_FEEDBK_PATH="CLKOP", p_CLKI_DIV=d["CLKI_DIV"], p_CLKFB_DIV=d["CLKFB_DIV"],
            p_CLKOP_DIV=d["CLKOP_DIV"], p_CLKOP_CPHASE=d["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0,
            i_CLKI=clk25.i, i_CLKFB=clock, i_RST=0, i_STDBY=0,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=clock, o_LOCK=locked)
        # nextpnr derives the constraint of CLKOP from the oscillator's (the platform's clk25
        # resource) and the dividers
        m.d.comb += ClockSignal("sync").eq(clock)
        # reset until the PLL has been locked for 2**10 cycles
        settle = Signal(11, reset_less=True)
        with m.If(~locked):
            m.d.sync += settle.eq(0)
        with m.Elif(~settle[-1]):
            m.d.sync += settle.eq(settle + 1)
        m.d.comb += ResetSignal("sync").eq(~settle[-1])

        m.submodules.system = system = BoardSystem(config)
        uart = platform.request("uart", 0)
        m.d.comb += [system.rx.eq(uart.rx.i), uart.tx.o.eq(system.tx)]
        heartbeat = Signal(range(config.clock_hz), reset_less=True)
        blink = Signal(reset_less=True)
        with m.If(heartbeat == config.clock_hz // 2 - 1):
            m.d.sync += [heartbeat.eq(0), blink.eq(~blink)]
        with m.Else():
            m.d.sync += heartbeat.eq(heartbeat + 1)
        for index, value in ((0, system.irq), (1, system.link_error), (7, blink)):
            m.d.comb += platform.request("led", index).o.eq(value)
        return m
