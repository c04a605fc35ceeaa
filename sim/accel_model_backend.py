"""The golden-model back end of the host driver (:mod:`sim.accel_driver`): the register block of
``hw/accel/registers.py`` emulated in Python on top of :class:`sim.accel_model.AcceleratorModel`
and a DRAM image.

The register map is :mod:`sim.accel_spec`'s, with the block's bus rules: an unmapped word or a
write to a read-only register answers ``SLVERR`` (a read returns 0, a write changes nothing);
address bits [1:0] are ignored and the 256-byte window repeats; writable registers take their
bytes by strobe, ``CTRL`` and ``IRQ`` act only with byte 0; ``PROG_BASE_HI`` keeps 0 on a 32-bit
bus. ``ID``, ``VERSION`` and ``CAP_*`` are :func:`sim.accel_spec.capability_words` of the
configuration, the function the gateware's constants come from.

Time: the model has none. A ``CTRL`` start makes the back end busy with the program pending; the
program runs, whole, at the host's next wait (:meth:`ModelBackend.wait_irq` or
:meth:`~ModelBackend.wait_cycles`), and then sets ``STATUS.done``, the error and its index, the
byte counters and, with the IRQ enabled, ``IRQ.pending``. So, unlike the hardware:

* a start while busy reports ``START_WHILE_BUSY`` at index 0 (the pending program has not
  begun); the hardware reports the instruction running at that moment;
* a soft reset while busy drops the whole program (nothing of it has run); the hardware stops
  at its next quiet point, after the instructions before it have run;
* the counters ``cycles``, ``engine_busy_cycles`` and ``dma_stall_cycles`` read 0 (the model has
  no cycles); ``bytes_read``, ``bytes_written`` and ``products_skipped`` are measured
  (:attr:`ModelBackend.measured_counters`), from the model's :class:`~sim.accel_model.RunResult`.

DRAM: ``dram_size`` bytes from address 0. A beat with a byte at or beyond ``dram_size`` or in a
``dram_errors`` range answers with an error (``DRAM_RESPONSE``), as the model defines it; the
cocotb back end answers the same beats DECERR (beyond the end) and SLVERR (the ranges).
"""

from __future__ import annotations

import collections

from .accel_model import AcceleratorModel, RunResult
from .accel_spec import (COUNTERS, CSR_BYTES, INSTRUCTION_BYTES, AccelError, Ctrl, Reg, Resp,
                         capability_words, counter_offset)
from .config import AccelConfig

__all__ = ["ModelBackend", "RECENT_RUNS"]

#: How many programs' results :attr:`ModelBackend.recent_runs` keeps
RECENT_RUNS = 4

_WORD = (1 << 32) - 1
_WRITABLE = (Reg.CTRL, Reg.IRQ, Reg.PROG_BASE_LO, Reg.PROG_BASE_HI, Reg.PROG_LEN)


def _merge(old: int, new: int, strobe: int) -> int:
    for lane in range(4):
        if strobe >> lane & 1:
            mask = 0xFF << 8 * lane
            old = old & ~mask | new & mask
    return old


class ModelBackend:
    """The driver's golden-model back end (module docstring: what it emulates, what not).

    Parameters
    ----------
    config : AccelConfig
    dram_size : int
        Bytes of DRAM, from address 0 (at most ``2 ** config.addr_width``).
    dram_errors : iterable of (start, end), optional
        Byte ranges ``[start, end)`` whose beats answer with an error.

    Attributes
    ----------
    model : AcceleratorModel
        The golden model (its memories persist from one program to the next).
    dram : bytearray
        The DRAM image.
    last_run : sim.accel_model.RunResult or None
        The model's result of the last program that ran.
    recent_runs : collections.deque of sim.accel_model.RunResult
        The results of the last :data:`RECENT_RUNS` programs, oldest first (a training
        step's forward and backward programs, whose cycle model a bench compares with the
        hardware's counters).
    """

    #: The counters this back end measures (the others read 0)
    measured_counters = frozenset({"bytes_read", "bytes_written", "products_skipped"})

    def __init__(self, config: AccelConfig, dram_size: int, *, dram_errors=()):
        if not isinstance(config, AccelConfig):
            raise ValueError(f"config must be an AccelConfig, not {config!r}")
        top = 1 << config.addr_width
        if isinstance(dram_size, bool) or not isinstance(dram_size, int) \
                or not 0 < dram_size <= top:
            raise ValueError(f"dram_size must be an integer in 1..{top}, not {dram_size!r}")
        self.config = config
        self.model = AcceleratorModel(config)
        self.dram = bytearray(dram_size)
        self.dram_errors = list(dram_errors)
        # the model checks the ranges; an empty program makes it do so now
        self.model.run(bytearray(0), 0, 0, dram_errors=self.dram_errors)
        self.capabilities = capability_words(config)
        self.last_run: RunResult | None = None
        self.recent_runs: collections.deque = collections.deque(maxlen=RECENT_RUNS)
        self._irq_enable = self._irq_pending = False
        self._prog_base_lo = self._prog_base_hi = self._prog_len = 0
        self._pending: tuple[int, int] | None = None
        self._done = False
        self._error = AccelError.NONE
        self._error_index = 0
        self._clear_counters()

    # -- Backend -----------------------------------------------------------------------------

    async def read_csr(self, offset: int) -> tuple[int, Resp]:
        value = self._read(offset % CSR_BYTES & ~3)
        return (0, Resp.SLVERR) if value is None else (value, Resp.OKAY)

    async def write_csr(self, offset: int, value: int, strobe: int = 0b1111) -> Resp:
        reg = offset % CSR_BYTES & ~3
        if reg not in _WRITABLE:
            return Resp.SLVERR
        if reg == Reg.PROG_BASE_LO:
            self._prog_base_lo = _merge(self._prog_base_lo, value, strobe)
        elif reg == Reg.PROG_BASE_HI:
            if self.config.addr_width > 32:
                self._prog_base_hi = _merge(self._prog_base_hi, value, strobe)
        elif reg == Reg.PROG_LEN:
            self._prog_len = _merge(self._prog_len, value, strobe)
        elif strobe & 1 and reg == Reg.IRQ:
            if value & 1:
                self._irq_pending = False
        elif strobe & 1:
            self._control(Ctrl(value & sum(Ctrl)))
        return Resp.OKAY

    async def wait_irq(self, timeout_cycles: int) -> bool:
        self._finish()
        return self._irq_pending

    async def wait_cycles(self, cycles: int) -> None:
        self._finish()

    def cycle(self) -> None:
        return None

    async def write_dram(self, addr: int, data: bytes) -> None:
        self._check_span(addr, len(data))
        self.dram[addr:addr + len(data)] = data

    async def read_dram(self, addr: int, length: int) -> bytes:
        self._check_span(addr, length)
        return bytes(self.dram[addr:addr + length])

    # -- the register block ------------------------------------------------------------------

    def _read(self, reg: int) -> int | None:
        if reg in self.capabilities:
            return self.capabilities[reg]
        if reg == Reg.CTRL:
            return int(Ctrl.IRQ_ENABLE) if self._irq_enable else 0
        if reg == Reg.STATUS:
            error = self._error is not AccelError.NONE
            return (int(self._pending is not None) | self._done << 1 | error << 2
                    | int(self._error) << 8)
        if reg == Reg.ERROR_INDEX:
            return self._error_index
        if reg == Reg.IRQ:
            return int(self._irq_pending)
        if reg == Reg.PROG_BASE_LO:
            return self._prog_base_lo
        if reg == Reg.PROG_BASE_HI:
            return self._prog_base_hi
        if reg == Reg.PROG_LEN:
            return self._prog_len
        for name in COUNTERS:
            if reg == counter_offset(name):
                self._latches[name] = self._counters[name] >> 32 & _WORD
                return self._counters[name] & _WORD
            if reg == counter_offset(name) + 4:
                return self._latches[name]
        return None

    def _clear_counters(self):
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._latches = dict.fromkeys(COUNTERS, 0)

    def _clear_status(self):
        self._done = False
        self._error, self._error_index = AccelError.NONE, 0
        self._clear_counters()

    def _control(self, ctrl: Ctrl):
        """A write to ``CTRL`` (``docs/accel.md``, "What a write to CTRL does")."""
        self._irq_enable = bool(ctrl & Ctrl.IRQ_ENABLE)
        if ctrl & Ctrl.SOFT_RESET:
            self._pending = None
            self._clear_status()
            self._irq_pending = False
        elif ctrl & Ctrl.START:
            if self._pending is not None:
                if self._error is AccelError.NONE:
                    self._error, self._error_index = AccelError.START_WHILE_BUSY, 0
                return
            self._clear_status()
            base = self._prog_base_hi << 32 | self._prog_base_lo
            refused = (AccelError.EMPTY_PROGRAM if self._prog_len == 0
                       else AccelError.MISALIGNED if base % INSTRUCTION_BYTES
                       else AccelError.NONE)
            if refused is AccelError.NONE:
                self._pending = (base, self._prog_len)
            else:
                self._done, self._error = True, refused
                self._irq_pending |= self._irq_enable

    def _finish(self):
        """Run the pending program, if any, and end it as the controller's ``finish`` and
        ``fault`` pulses do."""
        if self._pending is None:
            return
        base, length = self._pending
        self._pending = None
        result = self.model.run(self.dram, base, length, dram_errors=self.dram_errors)
        self.last_run = result
        self.recent_runs.append(result)
        self._counters["bytes_read"] += result.bytes_read
        self._counters["bytes_written"] += result.bytes_written
        self._counters["products_skipped"] += result.products_skipped
        self._done = True
        self._irq_pending |= self._irq_enable
        if result.error is not AccelError.NONE and self._error is AccelError.NONE:
            self._error, self._error_index = result.error, result.error_index

    def _check_span(self, addr: int, length: int):
        if addr < 0 or length < 0 or addr + length > len(self.dram):
            raise ValueError(f"DRAM bytes {addr:#x}..{addr + length:#x} are outside the "
                             f"{len(self.dram)} bytes of DRAM (addresses 0..{len(self.dram):#x})")
