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
