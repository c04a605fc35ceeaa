"""What the formal harnesses share: their base class, the harness record and registered past
values."""

from __future__ import annotations

import dataclasses
from typing import Callable

from amaranth import Module, Signal, Value
from amaranth.lib import wiring

__all__ = ["Harness", "History", "Properties"]


@dataclasses.dataclass(frozen=True)
class Harness:
    """A harness: ``factory(mutant)`` makes the component (``mutant`` is ``None`` or one of
    ``mutants``); ``tasks`` maps an sby mode (``prove``, ``bmc``, ``cover``) to its depth;
    every mutant must fail its ``prove`` or ``bmc`` task."""

    name: str
    description: str
    factory: Callable
    tasks: dict
    mutants: tuple[str, ...]

    def build(self, mutant: str | None = None):
        """The harness component (ValueError naming the mutants for an unknown one)."""
        if mutant is not None and mutant not in self.mutants:
            raise ValueError(f"{self.name}: mutant must be one of {list(self.mutants)} or "
                             f"None, not {mutant!r}")
        return self.factory(mutant)


class Properties(wiring.Component):
    """Base of a harness: the block under check (:attr:`dut`) with the block's own ports, so
    the solver drives every input; ``mutant`` names a fault of :attr:`MUTANTS` to inject.
    A subclass sets :attr:`NAME`, :attr:`DESCRIPTION`, :attr:`TASKS` and :attr:`MUTANTS` and
    states the properties in ``elaborate``."""

    NAME: str = ""
    DESCRIPTION: str = ""
    #: sby mode -> depth
    TASKS: dict = {}
    MUTANTS: tuple[str, ...] = ()

    def __init__(self, dut, *, mutant: str | None = None):
        if mutant not in (None, *self.MUTANTS):
            raise ValueError(f"mutant must be one of {self.MUTANTS} or None, not {mutant!r}")
        self.dut, self.mutant = dut, mutant
        super().__init__(dut.signature)

    def instantiate(self, m: Module):
        """Put the block in ``m`` with every port wired to the harness's; returns it."""
        m.submodules.dut = self.dut
        wiring.connect(m, wiring.flipped(self), self.dut)
        return self.dut

    @classmethod
    def harness(cls) -> Harness:
        return Harness(name=cls.NAME, description=cls.DESCRIPTION,
                       factory=lambda mutant: cls(mutant=mutant), tasks=dict(cls.TASKS),
                       mutants=cls.MUTANTS)


class History:
    """Values of the previous cycle (Amaranth 0.5 has no ``Past``): registers in ``sync``, so
    a reset clears :attr:`valid` and the checks that look back skip the cycle after it.
    Call it outside any ``m.If``: inside one, the register would update only when the
    condition holds."""

    def __init__(self, m: Module):
        self.m = m
        self.valid = Signal(name="past_valid")
        m.d.sync += self.valid.eq(1)

    def __call__(self, value, name: str):
        value = Value.cast(value)
        past = Signal(value.shape(), name=f"past_{name}")
        self.m.d.sync += past.eq(value)
        return past
