"""pytest configuration shared by all runners in tb/."""

import os

import pytest

from sim.runner import SIMULATORS


#: random vectors of a bench run in make test (``$SPARTA_VECTORS`` unset)
TEST_VECTORS = 10_000
#: ``$SPARTA_VECTORS`` from which the runners run at regression size (:func:`regress`; make
#: regress sets 10^6: random vectors per unit and simulator)
REGRESS_FROM = 100_000
#: make regress: random commands per engine configuration on Verilator, and on Icarus
#: ``ICARUS_PE_COMMANDS / (rows * cols)`` (Icarus takes about 0.5-0.9 s per command on a 4x4
#: engine, Verilator 20-70 ms)
REGRESS_COMMANDS = 10_000
ICARUS_PE_COMMANDS = 1_000


def vectors(default: int = TEST_VECTORS) -> int:
    """Random vectors per unit and simulator: ``$SPARTA_VECTORS`` (make regress sets 1e6)."""
    return int(os.environ.get("SPARTA_VECTORS", default))


def unit_vectors(configurations: int) -> int:
    """Random vectors of one bench run of a unit with ``configurations`` configurations per
    simulator: the unit's :func:`vectors` shared among them, never fewer than make test's
    ``TEST_VECTORS`` (so make test runs 10,000 per configuration, make regress 10^6 per unit)."""
    total = vectors()
    return max(min(total, TEST_VECTORS), -(-total // configurations))


#: make regress runs the other benches (DMA, loader, storer, epilogue, register file,
#: scratchpad, decoder, compiler) at this multiple of make test's count
REGRESS_SCALE = 10


def scaled(count: int) -> int:
    """A bench's count of random operations, ``count`` in make test: scaled with
    ``$SPARTA_VECTORS`` (``count`` at 10,000), up to ``REGRESS_SCALE`` times."""
    return max(1, min(REGRESS_SCALE * count, count * vectors() // TEST_VECTORS))


def engine_commands(simulator: str, rows: int, cols: int) -> int:
    """Random commands of one engine bench run: ``$SPARTA_VECTORS / 160`` below make regress
    (62 in make test); from 10^5 vectors on, ``$SPARTA_VECTORS / 100`` up to
    ``REGRESS_COMMANDS`` on Verilator, and a quarter of that divided by the array's PEs on
    Icarus (1,000 / (rows * cols) at 10^6: 63 on a 4x4, 20 on an 8x8), at least 20."""
    total = vectors()
    if total < REGRESS_FROM:
        return max(20, total // 160)
    commands = min(REGRESS_COMMANDS, total // 100)
    if simulator != "verilator":
        commands = -(-commands * ICARUS_PE_COMMANDS // (REGRESS_COMMANDS * rows * cols))
    return max(20, commands)


@pytest.fixture(params=SIMULATORS)
def simulator(request):
    return request.param


def regress() -> bool:
    """``make regress`` (``$SPARTA_VECTORS`` >= 100,000) runs every configuration on both
    simulators."""
    return vectors(0) >= REGRESS_FROM


def verilator_builds_first_only(simulator: str, configuration, first) -> None:
    """``make test`` builds only the first configuration of a block on Verilator: a Verilator
    build costs 10-60 s of a cold run (the fast-flow budget), an Icarus compile about a second.
    The other configurations run on Icarus; ``make regress`` runs them on both."""
    if simulator == "verilator" and configuration != first and not regress():
        pytest.skip("other configurations: Icarus in make test, both simulators in make regress")
