"""pytest configuration shared by all runners in tb/."""

import os

import pytest

from sim.runner import SIMULATORS


def vectors(default: int = 10_000) -> int:
    """Random vectors per unit and simulator: ``$SPARTA_VECTORS`` (make regress sets 1e6)."""
    return int(os.environ.get("SPARTA_VECTORS", default))


@pytest.fixture(params=SIMULATORS)
def simulator(request):
    return request.param


def regress() -> bool:
    """``make regress`` (``$SPARTA_VECTORS`` >= 100,000) runs every configuration on both
    simulators."""
    return vectors(0) >= 100_000


def verilator_builds_first_only(simulator: str, configuration, first) -> None:
    """``make test`` builds only the first configuration of a block on Verilator: a Verilator
    build costs 10-60 s of a cold run (the fast-flow budget), an Icarus compile about a second.
    The other configurations run on Icarus; ``make regress`` runs them on both."""
    if simulator == "verilator" and configuration != first and not regress():
        pytest.skip("other configurations: Icarus in make test, both simulators in make regress")
