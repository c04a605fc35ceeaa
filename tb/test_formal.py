"""Formal checks of the gateware (``hw/formal``, run by ``scripts.formal`` with SymbiYosys):
every harness's tasks pass and every mutant is caught.

``make test`` runs the sequencer's ``bmc`` at :data:`QUICK_DEPTH` (still longer than its
longest command); ``make regress`` (``SPARTA_VECTORS >= 100000``) and ``make formal`` at the
harness's full depth.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from hw.formal import HARNESSES
from scripts.formal import check_harness, failures

REGRESS = int(os.environ.get("SPARTA_VECTORS", "0")) >= 100_000
#: bmc depths in make test (the longest 2x2 command of the sequencer harness is 26 cycles)
QUICK_DEPTH = {"sequencer_2x2": {"bmc": 28}}


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_harness_passes_and_its_mutants_fail(name):
    harness = HARNESSES[name]
    if not REGRESS and name in QUICK_DEPTH:
        harness = dataclasses.replace(harness, tasks={**harness.tasks, **QUICK_DEPTH[name]})
    entry = check_harness(harness)
    assert not failures(name, entry), failures(name, entry)
    assert harness.mutants, f"{name}: a harness needs a mutant (a fault its properties catch)"


def test_mutant_names_are_checked():
    for harness in HARNESSES.values():
        with pytest.raises(ValueError, match="mutant must be one of"):
            harness.build("no_such_mutant")
