# amaranth: UnusedElaboratable=no
"""Runner: the AXI4 DMA (hw/accel/dma.py) on Icarus and Verilator against cocotbext-axi's
AxiRam; the 2-D burst rules of sim.accel_spec; parameter checks."""

import pytest

from hw.accel.dma import Dma, TransferCommand
from sim.accel_spec import (BURST_BOUNDARY, MAX_BURST_BEATS, AccelError, burst_split, dma_bursts,
                            dma_command_error)
from sim.config import AccelConfig
from sim.runner import Design, run_bench
from tb.conftest import scaled, verilator_builds_first_only

CONFIGS = [
    # data_width, addr_width, reads_outstanding
    (64, 32, 4),        # the default
    (128, 64, 1),
    (256, 64, 2),
]


@pytest.mark.parametrize("data_width, addr_width, reads_outstanding", CONFIGS,
                         ids=[f"d{d}-a{a}-r{r}" for d, a, r in CONFIGS])
def test_dma(simulator, data_width, addr_width, reads_outstanding):
    verilator_builds_first_only(simulator, (data_width, addr_width, reads_outstanding),
                                CONFIGS[0])
    config = AccelConfig(data_width=data_width, addr_width=addr_width,
                         reads_outstanding=reads_outstanding)
    run_bench(Design(Dma, config), toplevel="dma", bench_module="tb.dma_tb", simulator=simulator,
              case={"data_width": data_width, "addr_width": addr_width,
                    "reads_outstanding": reads_outstanding,
                    # random transfers per direction (make regress enlarges it)
                    "transfers": max(8, scaled(12))})


# -- the burst rules the bench checks the bus against ------------------------------------------

@pytest.mark.parametrize("beat_bytes", [8, 16, 32])
def test_dma_bursts_cover_rows_within_the_rules(beat_bytes):
    rows, row_bytes, stride = 3, 300 * beat_bytes, 4096 + 5 * beat_bytes
    addr = 4096 - 7 * beat_bytes
    bursts = dma_bursts(addr, row_bytes, rows, stride, beat_bytes, 32)
    covered = []
    for start, beats in bursts:
        assert 1 <= beats <= MAX_BURST_BEATS
        assert start // BURST_BOUNDARY == (start + beats * beat_bytes - 1) // BURST_BOUNDARY
        covered += range(start, start + beats * beat_bytes, beat_bytes)
    want = [addr + r * stride + k for r in range(rows) for k in range(0, row_bytes, beat_bytes)]
    assert covered == want
    assert bursts[:len(burst_split(addr, row_bytes, beat_bytes))] == burst_split(addr, row_bytes,
                                                                                  beat_bytes)


def test_dma_bursts_wrap_at_the_top_of_the_address_space():
    assert dma_bursts(2**32 - 16, 32, 2, 2**32 - 64, 8, 32) == [
        (2**32 - 16, 2), (0, 2), (2**32 - 80, 4)]


@pytest.mark.parametrize("fields, code", [
    ((0, 8, 1, 8), AccelError.NONE),
    ((0, 8, 1, 0), AccelError.NONE),                   # stride 0: the row again
    ((4, 8, 1, 8), AccelError.MISALIGNED),
    ((0, 12, 1, 8), AccelError.MISALIGNED),
    ((0, 8, 2, 12), AccelError.MISALIGNED),
    ((0, 8, 0, 8), AccelError.BAD_FIELD),
    ((0, 0, 1, 8), AccelError.BAD_FIELD),
    ((4, 0, 1, 8), AccelError.BAD_FIELD),              # a zero field ranks above misalignment
])
def test_dma_command_error(fields, code):
    assert dma_command_error(*fields, beat_bytes=8) == code
    if code != AccelError.NONE:
        with pytest.raises(ValueError, match="not a valid DMA transfer"):
            dma_bursts(*fields, beat_bytes=8, addr_width=32)


# -- parameter checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("config", [None, 64, {"data_width": 64}])
def test_rejects_bad_config(config):
    with pytest.raises(ValueError, match=r"config must be an AccelConfig, not"):
        Dma(config)


def test_command_layout_follows_the_address_width():
    for addr_width in (32, 64):
        dma = Dma(AccelConfig(addr_width=addr_width))
        layout = dma.read_cmd.payload.shape()
        assert layout == TransferCommand(addr_width)
        assert layout.size == 2 * addr_width + 24 + 16
