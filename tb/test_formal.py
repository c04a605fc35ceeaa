"""Formal checks of the gateware (``hw/formal``, run by ``scripts.formal`` with SymbiYosys):
every harness's tasks pass and every mutant is caught.

Not in ``make test``: on a fresh machine the first YoWASP run compiles Yosys and Boolector
(about 70 s of CPU), which would take ``make test`` past its budget. ``make formal`` checks
every harness at its full depth; ``make regress`` runs these tests at the full depth too, and
``SPARTA_FORMAL=1`` runs them with the sequencer's and the DMA's ``bmc`` at :data:`QUICK_DEPTH`
(still longer than their longest command).
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from hw.formal import HARNESSES
from scripts.formal import check_harness, failures
from tb.conftest import regress

REGRESS = regress()
pytestmark = pytest.mark.skipif(
    not (REGRESS or os.environ.get("SPARTA_FORMAL") == "1"),
    reason="formal checks: make formal, make regress or SPARTA_FORMAL=1 (YoWASP's first run "
           "compiles for about 70 s)")
#: bmc depths in make test (the longest 2x2 command of the sequencer harness is 26 cycles; the
#: DMA's largest write is done 7 cycles after its command)
QUICK_DEPTH = {"sequencer_2x2": {"bmc": 28}, "dma": {"bmc": 8}}


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
