"""Host driver of the accelerator (``hw/accel``): one API over two back ends.

:class:`AcceleratorDriver` is the only place that knows the register sequence of
:mod:`sim.accel_spec`'s map: it discovers the generated configuration from ``ID``, ``VERSION``
and ``CAP_*``, loads a DRAM image, runs a program (``PROG_BASE``, ``PROG_LEN``, ``CTRL`` start
with or without the IRQ, then the IRQ or a ``STATUS`` poll, then ``STATUS``, ``ERROR_INDEX``,
the counters and the IRQ's write-1-to-clear), reads the status and soft-resets. It talks to a
:class:`Backend`, which moves 32-bit register words and DRAM bytes and waits:

* ``tb.accel_host.RtlBackend``: the generated Verilog in a cocotb simulation (cocotbext-axi's
  ``AxiLiteMaster`` on ``s_axil``, an ``AxiRam`` as DRAM on ``m_axi``);
* :class:`sim.accel_model_backend.ModelBackend`: the golden model
  (:class:`sim.accel_model.AcceleratorModel`) behind an emulation of the register block.

Every method is a coroutine (cocotb is asynchronous; the model back end is too, trivially), so
host code runs unchanged on either::

    driver = AcceleratorDriver(ModelBackend(config, dram_size=1 << 20))
    info = await driver.discover()
    await driver.load_image(compiled.image)
    result = await driver.run(compiled.prog_base, compiled.prog_len)
    result.raise_for_error()

Pure Python: no Amaranth, no cocotb, no golden model here.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from .accel_spec import (ACCEL_ID, COUNTERS, CSR_BYTES, VERSION, AccelError, Ctrl, Feature, Reg,
                         Resp, counter_offset, format_names, unpack_capability)

__all__ = ["Backend", "DriverError", "AcceleratorNotFound", "BusError", "AcceleratorTimeout",
           "ProgramError", "ArrayInfo", "FormatInfo", "MemoryInfo", "BusInfo", "Description",
           "Status", "ProgramResult", "AcceleratorDriver", "DEFAULT_TIMEOUT_CYCLES",
           "POLL_CYCLES"]

#: Cycles :meth:`AcceleratorDriver.run` waits for a program by default
DEFAULT_TIMEOUT_CYCLES = 10_000_000
#: Cycles between two ``STATUS`` reads when the driver polls instead of waiting for the IRQ
POLL_CYCLES = 64

_WORD = (1 << 32) - 1
_STATUS_BUSY, _STATUS_DONE, _STATUS_ERROR = 1 << 0, 1 << 1, 1 << 2


class Backend(Protocol):
    """What the driver needs from an accelerator: register words, DRAM bytes and waiting.

    Attributes
    ----------
    measured_counters : frozenset of str
        The :data:`~sim.accel_spec.COUNTERS` the back end measures; the others read as
        registers but mean nothing (the driver reports them as ``None``).
    """

    measured_counters: frozenset

    async def read_csr(self, offset: int) -> tuple[int, Resp]:
        """One AXI4-Lite read of the word at byte ``offset``: ``(data, response)``."""

    async def write_csr(self, offset: int, value: int, strobe: int = 0b1111) -> Resp:
        """One AXI4-Lite write of the bytes of ``value`` whose ``strobe`` bit is set (a
        contiguous run) to the word at byte ``offset``; returns the response."""

    async def wait_irq(self, timeout_cycles: int) -> bool:
        """Wait until ``irq`` is high (at once if it is); ``False`` after ``timeout_cycles``
        cycles without it."""

    async def wait_cycles(self, cycles: int) -> None:
        """Let ``cycles`` clock cycles pass."""

    def cycle(self) -> int | None:
        """Clock cycles since the back end began, or ``None`` if it has no notion of time."""

    async def write_dram(self, addr: int, data: bytes) -> None:
        """Write DRAM bytes directly (not through the accelerator)."""

    async def read_dram(self, addr: int, length: int) -> bytes:
        """Read DRAM bytes directly."""


class DriverError(RuntimeError):
    """Base of the driver's errors."""


class AcceleratorNotFound(DriverError):
    """``ID`` or the major ``VERSION`` is not one this driver knows."""


class BusError(DriverError):
    """A register access answered with a response other than ``OKAY``."""

    def __init__(self, offset: int, response: Resp, write: bool):
        self.offset, self.response, self.write = offset, Resp(response), write
        super().__init__(f"{'write to' if write else 'read of'} register {_name(offset)} "
                         f"answered {self.response.name}")


class AcceleratorTimeout(DriverError):
    """A program or a soft reset did not end in time (the message holds the status registers)."""


class ProgramError(DriverError):
    """A program ended with an error (:meth:`ProgramResult.raise_for_error`)."""


def _name(offset: int) -> str:
    word = offset & ~3
    if word in Reg._value2member_map_:
        return f"{Reg(word).name} ({offset:#04x})"
    for name in COUNTERS:
        if word in (counter_offset(name), counter_offset(name) + 4):
            half = "low" if word == counter_offset(name) else "high"
            return f"{name} {half} word ({offset:#04x})"
    return f"{offset:#04x}"


# -- what discover() returns ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ArrayInfo:
    """``CAP_ARRAY``: the PE array."""
    rows: int
    cols: int
    dataflow: str
    mul_stages: int
    skip_window: int
    acc_interleave: int
    psum_stages: int


@dataclasses.dataclass(frozen=True)
class FormatInfo:
    """``CAP_FORMATS``: operand formats of A and B, output formats (names of
    :data:`~sim.accel_spec.FORMAT_BITS`)."""
    a: tuple[str, ...]
    b: tuple[str, ...]
    out: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class MemoryInfo:
    """``CAP_MEMORY``: index widths of the memories. A memory has at most ``2 ** bits`` rows
    (columns); the exact size is not announced (the register holds ``ceil(log2(n))``), and the
    scratchpad fields describe the larger of A and B."""
    spad_row_bits: int
    spad_col_bits: int
    acc_row_bits: int
    acc_col_bits: int

    @property
    def spad_rows_max(self) -> int:
        return 1 << self.spad_row_bits

    @property
    def spad_cols_max(self) -> int:
        return 1 << self.spad_col_bits

    @property
    def acc_rows_max(self) -> int:
        return 1 << self.acc_row_bits

    @property
    def acc_cols_max(self) -> int:
        return 1 << self.acc_col_bits


@dataclasses.dataclass(frozen=True)
class BusInfo:
    """``CAP_BUS``: the DMA's AXI4 bus."""
    beat_bytes: int
    addr_bits: int
    reads_outstanding: int

    @property
    def data_width(self) -> int:
        return 8 * self.beat_bytes


@dataclasses.dataclass(frozen=True)
class Description:
    """The generated configuration, as the accelerator announces it."""
    version: tuple[int, int]
    array: ArrayInfo
    formats: FormatInfo
    memory: MemoryInfo
    features: Feature
    bus: BusInfo


# -- status and results --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Status:
    """``STATUS``, ``ERROR_INDEX``, ``IRQ`` and the IRQ enable of ``CTRL``.

    ``error_index`` is ``None`` without an error."""
    busy: bool
    done: bool
    error: AccelError
    error_index: int | None
    irq_pending: bool
    irq_enabled: bool


@dataclasses.dataclass(frozen=True)
class ProgramResult:
    """What :meth:`AcceleratorDriver.run` (or :meth:`~AcceleratorDriver.wait`) read after a
    program ended.

    Attributes
    ----------
    done : bool
        ``STATUS.done``.
    error : AccelError
        ``STATUS`` error code (``NONE`` without an error).
    error_index : int or None
        ``ERROR_INDEX`` (``None`` without an error).
    counters : dict of str -> int or None
        Every counter of :data:`~sim.accel_spec.COUNTERS` as one 64-bit value (low word, then
        the high word it latched); ``None`` for those the back end does not measure.
    cycles_waited : int or None
        Clock cycles from the ``CTRL`` write that started the program to the end of the wait
        (``None`` on a back end without time).
    irq : bool
        The end was seen through the IRQ (else by polling ``STATUS``).
    """
    done: bool
    error: AccelError
    error_index: int | None
    counters: dict
    cycles_waited: int | None
    irq: bool

    @property
    def ok(self) -> bool:
        return self.done and self.error is AccelError.NONE

    def raise_for_error(self):
        """Raise :class:`ProgramError` if the program ended with an error."""
        if self.error is not AccelError.NONE:
            raise ProgramError(f"the program stopped with {self.error.name} at instruction "
                               f"{self.error_index}")


def _check_int(name: str, value, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be an integer in 0..{(1 << bits) - 1}, not {value!r}")
    return value


class AcceleratorDriver:
    """Host driver over a :class:`Backend` (module docstring).

    Parameters
    ----------
    backend : Backend

    Attributes
    ----------
    description : Description or None
        What :meth:`discover` found (``None`` before); with it, program bases are checked
        against the bus's address width.
    """

    def __init__(self, backend: Backend):
        for method in ("read_csr", "write_csr", "wait_irq", "wait_cycles", "cycle",
                       "write_dram", "read_dram"):
            if not callable(getattr(backend, method, None)):
                raise ValueError(f"backend must implement the Backend protocol; "
                                 f"{type(backend).__name__} has no {method}()")
        unknown = set(getattr(backend, "measured_counters", ())) - set(COUNTERS)
        if unknown:
            raise ValueError(f"backend.measured_counters must name counters of "
                             f"{', '.join(COUNTERS)}, not {sorted(unknown)}")
        self.backend = backend
        self.description: Description | None = None
        self._started_at: int | None = None

    # -- registers -------------------------------------------------------------------------

    async def read_csr(self, offset: int) -> int:
        """The register word at byte ``offset``; :class:`BusError` unless the bus answers
        ``OKAY``."""
        _check_int("offset", offset, CSR_BYTES.bit_length() - 1)
        value, response = await self.backend.read_csr(offset)
        if response != Resp.OKAY:
            raise BusError(offset, response, write=False)
        return value

    async def write_csr(self, offset: int, value: int, strobe: int = 0b1111):
        """Write the bytes of ``value`` selected by ``strobe`` (a contiguous run of the four)
        to the register at byte ``offset``; :class:`BusError` unless the bus answers
        ``OKAY``."""
        _check_int("offset", offset, CSR_BYTES.bit_length() - 1)
        _check_int("value", value, 32)
        if strobe not in (0b0001, 0b0010, 0b0100, 0b1000, 0b0011, 0b0110, 0b1100, 0b0111,
                          0b1110, 0b1111):
            raise ValueError(f"strobe must be a contiguous run of byte lanes (0b0001 .. "
                             f"0b1111), not {strobe!r}")
        response = await self.backend.write_csr(offset, value, strobe)
        if response != Resp.OKAY:
            raise BusError(offset, response, write=True)

    async def read_counter(self, name: str) -> int | None:
        """One counter as a consistent 64-bit value: its low word (which latches the high
        word), then the high word; ``None`` if the back end does not measure it."""
        low = await self.read_csr(counter_offset(name))
        high = await self.read_csr(counter_offset(name) + 4)
        return low | high << 32 if name in self.backend.measured_counters else None

    async def counters(self) -> dict[str, int | None]:
        """Every counter of :data:`~sim.accel_spec.COUNTERS` (:meth:`read_counter`)."""
        return {name: await self.read_counter(name) for name in COUNTERS}

    async def discover(self) -> Description:
        """Read ``ID``, ``VERSION`` and ``CAP_*``; check the ID and the major version.

        Raises
        ------
        AcceleratorNotFound
            ``ID`` is not :data:`~sim.accel_spec.ACCEL_ID`, or the major version differs from
            the driver's.
        """
        ident = await self.read_csr(Reg.ID)
        if ident != ACCEL_ID:
            raise AcceleratorNotFound(
                f"ID register reads {ident:#010x}, not {ACCEL_ID:#010x} "
                f"({ACCEL_ID.to_bytes(4, 'big').decode()!r}): no Sparta accelerator there")
        word = await self.read_csr(Reg.VERSION)
        version = (word >> 16, word & 0xFFFF)
        if version[0] != VERSION[0]:
            raise AcceleratorNotFound(
                f"accelerator version {version[0]}.{version[1]}, but this driver speaks major "
                f"version {VERSION[0]} (register map of {VERSION[0]}.{VERSION[1]})")
        cap = {reg: unpack_capability(reg, await self.read_csr(reg))
               for reg in (Reg.CAP_ARRAY, Reg.CAP_FORMATS, Reg.CAP_MEMORY, Reg.CAP_BUS)}
        features = Feature(await self.read_csr(Reg.CAP_FEATURES) & sum(Feature))
        array, formats = cap[Reg.CAP_ARRAY], cap[Reg.CAP_FORMATS]
        memory, bus = cap[Reg.CAP_MEMORY], cap[Reg.CAP_BUS]
        self.description = Description(
            version=version,
            array=ArrayInfo(rows=array["rows"], cols=array["cols"],
                            dataflow="ws" if array["dataflow"] else "os",
                            mul_stages=array["mul_stages"], skip_window=array["skip_window"],
                            acc_interleave=array["acc_interleave"],
                            psum_stages=array["psum_stages"]),
            formats=FormatInfo(a=format_names(formats["a"]), b=format_names(formats["b"]),
                               out=format_names(formats["out"])),
            memory=MemoryInfo(spad_row_bits=memory["spad_rows"],
                              spad_col_bits=memory["spad_cols"],
                              acc_row_bits=memory["acc_rows"], acc_col_bits=memory["acc_cols"]),
            features=features,
            bus=BusInfo(beat_bytes=bus["beat_bytes"], addr_bits=bus["addr_bits"],
                        reads_outstanding=bus["reads_outstanding"]))
        return self.description

    # -- DRAM ------------------------------------------------------------------------------

    async def write_dram(self, addr: int, data: bytes):
        """Write bytes into DRAM (directly, as a host with shared memory would)."""
        await self.backend.write_dram(_check_int("addr", addr, 64), bytes(data))

    async def read_dram(self, addr: int, length: int) -> bytes:
        """Read ``length`` DRAM bytes."""
        return await self.backend.read_dram(_check_int("addr", addr, 64),
                                            _check_int("length", length, 64))

    async def load_image(self, image: bytes, base: int = 0):
        """Write a DRAM image (e.g. :attr:`sim.compiler.CompiledGemms.image`, which starts at
        address 0) at ``base``."""
        await self.write_dram(base, image)

    # -- programs --------------------------------------------------------------------------

    async def start(self, prog_base: int, prog_len: int, *, irq: bool = True):
        """Write ``PROG_BASE_LO``, ``PROG_BASE_HI``, ``PROG_LEN``, then ``CTRL`` with
        ``START`` (and ``IRQ_ENABLE`` with ``irq``). Returns at once; :meth:`wait` waits.

        The controller reads ``PROG_BASE`` and ``PROG_LEN`` while it runs: do not start a
        different program while one runs (a start while busy is an error anyway,
        ``START_WHILE_BUSY``, and the running program goes on)."""
        bits = self.description.bus.addr_bits if self.description else 64
        _check_int("prog_base", prog_base, bits)
        _check_int("prog_len", prog_len, 32)
        await self.write_csr(Reg.PROG_BASE_LO, prog_base & _WORD)
        await self.write_csr(Reg.PROG_BASE_HI, prog_base >> 32)
        await self.write_csr(Reg.PROG_LEN, prog_len)
        self._started_at = self.backend.cycle()
        await self.write_csr(Reg.CTRL, Ctrl.START | (Ctrl.IRQ_ENABLE if irq else 0))

    async def wait(self, *, irq: bool = True, timeout_cycles: int = DEFAULT_TIMEOUT_CYCLES,
                   clear_irq: bool = True) -> ProgramResult:
        """Wait for the program to end: for the IRQ (``irq``), or by polling ``STATUS`` every
        :data:`POLL_CYCLES` cycles until ``busy`` is low. Then read ``STATUS``,
        ``ERROR_INDEX`` and the counters and, with ``irq`` and ``clear_irq``, write 1 to
        ``IRQ``.

        Raises
        ------
        AcceleratorTimeout
            No end within ``timeout_cycles`` (the message holds the status registers).
        """
        _check_int("timeout_cycles", timeout_cycles, 64)
        if irq:
            if not await self.backend.wait_irq(timeout_cycles):
                raise AcceleratorTimeout(f"no IRQ within {timeout_cycles} cycles; "
                                         f"{await self.describe_state()}")
        else:
            waited = 0
            while (await self.read_csr(Reg.STATUS)) & _STATUS_BUSY:
                if waited >= timeout_cycles:
                    raise AcceleratorTimeout(f"still busy after {waited} cycles of polling; "
                                             f"{await self.describe_state()}")
                await self.backend.wait_cycles(POLL_CYCLES)
                waited += POLL_CYCLES
        now = self.backend.cycle()
        cycles = None if now is None or self._started_at is None else now - self._started_at
        status = await self.status()
        counters = await self.counters()
        if irq and clear_irq:
            await self.clear_irq()
        return ProgramResult(done=status.done, error=status.error,
                             error_index=status.error_index, counters=counters,
                             cycles_waited=cycles, irq=irq)

    async def run(self, prog_base: int, prog_len: int, *, irq: bool = True,
                  timeout_cycles: int = DEFAULT_TIMEOUT_CYCLES) -> ProgramResult:
        """Run a program: :meth:`start`, then :meth:`wait` (which clears the IRQ)."""
        await self.start(prog_base, prog_len, irq=irq)
        return await self.wait(irq=irq, timeout_cycles=timeout_cycles)

    # -- status and control ----------------------------------------------------------------

    async def status(self) -> Status:
        """``STATUS``, ``ERROR_INDEX``, ``IRQ`` and the IRQ enable."""
        word = await self.read_csr(Reg.STATUS)
        code = word >> 8 & 0xFF
        if code not in AccelError._value2member_map_:
            raise DriverError(f"STATUS {word:#010x} holds error code {code}, which no "
                              f"AccelError names")
        index = await self.read_csr(Reg.ERROR_INDEX)
        error = AccelError(code) if word & _STATUS_ERROR else AccelError.NONE
        return Status(busy=bool(word & _STATUS_BUSY), done=bool(word & _STATUS_DONE),
                      error=error, error_index=index if word & _STATUS_ERROR else None,
                      irq_pending=bool(await self.read_csr(Reg.IRQ) & 1),
                      irq_enabled=bool(await self.read_csr(Reg.CTRL) & Ctrl.IRQ_ENABLE))

    async def describe_state(self) -> str:
        """The status registers in one line (for error messages)."""
        status = await self.status()
        base = await self.read_csr(Reg.PROG_BASE_HI) << 32 | await self.read_csr(Reg.PROG_BASE_LO)
        return (f"STATUS busy {int(status.busy)} done {int(status.done)} error "
                f"{status.error.name} at {status.error_index}, IRQ pending "
                f"{int(status.irq_pending)} (enabled {int(status.irq_enabled)}), PROG_BASE "
                f"{base:#x}, PROG_LEN {await self.read_csr(Reg.PROG_LEN)}")

    async def clear_irq(self):
        """Write 1 to ``IRQ`` (write-1-to-clear)."""
        await self.write_csr(Reg.IRQ, 1)

    async def soft_reset(self, *, timeout_cycles: int = DEFAULT_TIMEOUT_CYCLES) -> Status:
        """Abandon the running program (if any) and clear the status, the IRQ and the
        counters, keeping the IRQ enable; wait until ``busy`` is low (the controller stops at
        the next point where nothing is in flight; no IRQ comes). Returns the status after it.

        Raises
        ------
        AcceleratorTimeout
            Still busy after ``timeout_cycles`` cycles.
        """
        keep = await self.read_csr(Reg.CTRL) & Ctrl.IRQ_ENABLE
        await self.write_csr(Reg.CTRL, Ctrl.SOFT_RESET | keep)
        waited = 0
        while (await self.read_csr(Reg.STATUS)) & _STATUS_BUSY:
            if waited >= timeout_cycles:
                raise AcceleratorTimeout(f"still busy {waited} cycles after a soft reset; "
                                         f"{await self.describe_state()}")
            await self.backend.wait_cycles(POLL_CYCLES)
            waited += POLL_CYCLES
        return await self.status()
