"""Run a GEMM on a board build over its serial port, and check it bit for bit.

The host side of ``make bitstream``'s design (``hw/board``): it opens the board's serial port
(the ULX3S's FTDI, e.g. ``/dev/ttyUSB0``), finds the bridge (``STATUS`` magic) and the
accelerator (``ID``, capability registers), compiles ``C = A . B`` (random FP16 operands, FP32
result) with the accelerator's compiler, writes the DRAM image into the board's RAM, starts the
program, waits for the IRQ (polled over the line), reads the result back and compares it with
the golden model (:func:`sim.gemm.gemm`). The same driver calls run in the cocotb bench of the
board system (``tb/board_tb.py``) through a simulated line.

``--model`` runs the same host code on the golden model's back end instead of a board (no
serial port needed): a check of this script, not of hardware.

Usage: python -m scripts.board_host --port /dev/ttyUSB0 [--gemm M,N,K] [--seed S]
       python -m scripts.board_host --model
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np

from sim.accel_driver import AcceleratorDriver
from sim.board_link import SerialBackend
from sim.board_spec import BoardConfig
from sim.compiler import compile_gemms
from sim.gemm import TAG_OF, gemm
from sim.numerics import from_float32
from sim.formats import FP16
from sim.replay import WorkloadGemm

__all__ = ["SerialPortLink", "random_gemm", "run", "main"]


class SerialPortLink:
    """:class:`sim.board_link.Link` on a serial port (pyserial); cycles are the board's
    clock (``clock_hz``) times wall-clock seconds."""

    def __init__(self, port: str, config: BoardConfig):
        try:
            import serial
        except ImportError:
            raise RuntimeError("pyserial is not installed: pip install pyserial") from None
        self.clock_hz = config.clock_hz
        self.byte_cycles = 10 * config.divisor
        self.port = serial.Serial(port, config.baud, timeout=0)
        self.port.reset_input_buffer()
        self.start = time.monotonic()

    async def send(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    async def receive(self, count: int, timeout_cycles: int) -> bytes:
        deadline = time.monotonic() + max(timeout_cycles / self.clock_hz, 0.05)
        got = bytearray()
        while len(got) < count and time.monotonic() < deadline:
            got += self.port.read(count - len(got))
            if len(got) < count:
                await asyncio.sleep(0.001)
        return bytes(got)

    async def wait_cycles(self, cycles: int) -> None:
        await asyncio.sleep(cycles / self.clock_hz)

    def cycle(self) -> int:
        return int((time.monotonic() - self.start) * self.clock_hz)


def random_gemm(rng, m: int, n: int, k: int) -> WorkloadGemm:
    """``A (m x k) . B (k x n)`` with standard-normal FP16 operands."""
    def operand(shape):
        bits = from_float32(FP16, rng.standard_normal(shape).astype(np.float32),
                            saturate=False).astype(np.uint16)
        return bits, np.full(shape, TAG_OF["fp16"], dtype=np.uint8)
    a_bits, a_tags = operand((m, k))
    b_bits, b_tags = operand((k, n))
    return WorkloadGemm(name="host.gemm", kind="forward", transpose_a=False, transpose_b=False,
                        a_bits=a_bits, a_tags=a_tags, b_bits=b_bits, b_tags=b_tags,
                        c_bits=None, out_bits=None)


async def run(backend, config: BoardConfig, shape, seed: int) -> dict:
    """Discover, load, run and check one GEMM through ``backend``; returns what it saw."""
    driver = AcceleratorDriver(backend)
    info = await driver.discover()
    g = random_gemm(np.random.default_rng(seed), *shape)
    compiled = compile_gemms(config.accel, [g])
    if len(compiled.image) > config.ram_bytes:
        raise ValueError(f"--gemm {shape}: the image needs {len(compiled.image)} bytes, the "
                         f"board's RAM has {config.ram_bytes}")
    started = time.monotonic()
    await driver.load_image(compiled.image)
    loaded = time.monotonic()
    result = await driver.run(compiled.prog_base, compiled.prog_len)
    result.raise_for_error()
    dram = await driver.read_dram(0, len(compiled.image))
    got = compiled.output_bits(bytearray(dram), 0)
    want = gemm(g.a_bits, g.b_bits, a_fmt="fp16", b_fmt="fp16")
    wrong = np.argwhere(got != want)
    return {"array": f"{info.array.rows}x{info.array.cols}", "image_bytes": len(compiled.image),
            "load_seconds": loaded - started, "seconds": time.monotonic() - started,
            "cycles": result.counters["cycles"], "wrong": wrong,
            "first_wrong": None if not len(wrong) else
            (tuple(wrong[0]), int(got[tuple(wrong[0])]), int(want[tuple(wrong[0])]))}


def _shape(text: str):
    try:
        m, n, k = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gemm must be M,N,K (three integers), "
                                         f"not {text!r}") from None
    return m, n, k


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="the board's serial port, e.g. /dev/ttyUSB0")
    where.add_argument("--model", action="store_true",
                       help="the golden model's back end instead of a board")
    parser.add_argument("--gemm", type=_shape, default=(16, 16, 16), metavar="M,N,K")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    config = BoardConfig()
    if args.model:
        from sim.accel_model_backend import ModelBackend
        backend = ModelBackend(config.accel, config.ram_bytes)
    else:
        backend = SerialBackend(SerialPortLink(args.port, config))
        print(f"link: {config.baud} baud, board clock {config.clock_hz / 1e6:g} MHz")
    seen = asyncio.run(run(backend, config, args.gemm, args.seed))
    m, n, k = args.gemm
    cycles = "no cycle count (model)" if seen["cycles"] is None else \
        f"{seen['cycles']} accelerator cycles"
    print(f"{seen['array']} accelerator: C = A.B ({m}x{k} . {k}x{n}, FP16 -> FP32), image "
          f"{seen['image_bytes']} bytes, loaded in {seen['load_seconds']:.2f} s, {cycles}, "
          f"{seen['seconds']:.2f} s in all")
    if len(seen["wrong"]):
        where_, got, want = seen["first_wrong"]
        print(f"FAIL: {len(seen['wrong'])} of {m * n} results differ from sim.gemm, first at "
              f"{where_}: {got:#010x} != {want:#010x} (seed {args.seed})")
        return 1
    print(f"PASS: all {m * n} results equal sim.gemm bit for bit (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
