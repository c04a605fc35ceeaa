# amaranth: UnusedElaboratable=no
"""Runner: the board build's system (accelerator, on-chip RAM, UART bridge) driven through its
two serial pins by the host driver's serial back end, against the golden model; the bridge's
protocol rules byte for byte; the board configuration's and the UART's argument checks."""

import dataclasses

import pytest

from hw.board.system import BoardSystem
from hw.board.uart import UartRx
from hw.board.ulx3s import OSCILLATOR_HZ, pll_dividers
from sim.board_spec import BoardConfig
from sim.config import AccelConfig, accel_config_to_dict
from sim.runner import Design, run_bench
from tb.conftest import regress
from tb.test_accelerator import SMALL

#: the accelerator of make test's accelerator benches, 4 KiB of RAM, 4 cycles per serial bit
#: (the fastest line the UART takes: every bit of the line protocol is exercised, the bench
#: just spends fewer cycles per byte than a board's 108)
CONFIG = BoardConfig(accel=AccelConfig(engine=SMALL), clock_hz=4_000_000, baud=1_000_000,
                     ram_bytes=4096)


def _case(config, **extra):
    return {"config": accel_config_to_dict(config.accel), "clock_hz": config.clock_hz,
            "baud": config.baud, "ram_bytes": config.ram_bytes, **extra}


def test_board_runs_gemms_over_the_serial_line(simulator):
    if simulator == "verilator" and not regress():
        pytest.skip("Icarus in make test (a Verilator build of the board costs more than the "
                    "run), both simulators in make regress")
    run_bench(Design(BoardSystem, CONFIG), toplevel="board", bench_module="tb.board_tb",
              simulator=simulator, testcase=["compiled_gemms_over_the_serial_line",
                                             "protocol_errors_are_answered",
                                             "host_script_runs_a_gemm"],
              case=_case(CONFIG, programs=1, gemms=2, largest=12, host_gemm=[6, 5, 9]))


def test_host_script_on_the_model(capsys):
    from scripts.board_host import main
    assert main(["--model", "--gemm", "20,12,33", "--seed", "3"]) == 0
    assert "PASS: all 240 results equal sim.gemm" in capsys.readouterr().out


@pytest.mark.parametrize("field, value, message", [
    ("ram_bytes", 3000, "ram_bytes must be a power of two"),
    ("ram_bytes", 1 << 21, "ram_bytes must be a power of two"),
    ("baud", 2_000_000, "baud must be at most"),
    ("baud", 0, "baud must be a positive integer"),
    ("clock_hz", 12_500_000 + 1, None),
])
def test_board_config_checks(field, value, message):
    if message is None:             # a legal clock the PLL cannot make exactly
        config = dataclasses.replace(BoardConfig(), **{field: value})
        with pytest.raises(ValueError, match="cannot be made exactly"):
            pll_dividers(OSCILLATOR_HZ, config.clock_hz)
        return
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(BoardConfig(clock_hz=4_000_000), **{field: value})


def test_baud_error_is_refused():
    with pytest.raises(ValueError, match="off clock_hz"):
        BoardConfig(clock_hz=1_000_000, baud=230_400)
    with pytest.raises(ValueError, match="divisor must be an integer >= 4"):
        UartRx(divisor=3)


@pytest.mark.parametrize("mhz", [12.5, 20, 25, 40, 50])
def test_pll_makes_the_clock_exactly(mhz):
    hz = round(mhz * 1e6)
    d = pll_dividers(OSCILLATOR_HZ, hz)
    assert OSCILLATOR_HZ * d["CLKFB_DIV"] == hz * d["CLKI_DIV"]
    assert 400e6 <= hz * d["CLKOP_DIV"] <= 800e6


class _ScriptedLink:
    """A :class:`sim.board_link.Link` that answers every frame with the next scripted bytes."""

    byte_cycles = 40

    def __init__(self, answers):
        self.answers, self.sent = list(answers), []

    async def send(self, data):
        self.sent.append(bytes(data))

    async def receive(self, count, timeout_cycles):
        return self.answers.pop(0)[:count]

    async def wait_cycles(self, cycles):
        pass

    def cycle(self):
        return 0


def test_serial_backend_tells_data_from_bad_opcode():
    """A read whose first data byte is 0x80 (BAD_OPCODE's value) is data; a lone 0x80 where
    more was due, or as a write's status, is BAD_OPCODE."""
    import asyncio

    from sim.board_link import LinkError, SerialBackend
    from sim.accel_spec import Resp

    link = _ScriptedLink([bytes([0x80, 0x01, 0, 0, 0]), bytes([0x80]), bytes([0x80]),
                          bytes([0x00])])
    backend = SerialBackend(link)
    assert asyncio.run(backend.read_csr(0x60)) == (0x180, Resp.OKAY)
    with pytest.raises(LinkError, match="BAD_OPCODE to READ_CSR"):
        asyncio.run(backend.read_csr(0x60))
    with pytest.raises(LinkError, match="BAD_OPCODE to WRITE_CSR"):
        asyncio.run(backend.write_csr(0x08, 1))
    assert asyncio.run(backend.write_csr(0x08, 1)) == Resp.OKAY
    assert link.sent[0] == bytes([0x02, 0x60, 0, 0, 0])
