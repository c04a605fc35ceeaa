# amaranth: UnusedElaboratable=no
"""Runner: DropoutMaskGenerator benches on Icarus and Verilator, and its parameter checks."""

import re

import pytest

from hw.sparsity.dropout_mask import DropoutMaskGenerator
from sim.config import MAX_DIM
from sim.lfsr import MAX_BITS
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors

# (rows, cols, bits, steps_per_cycle): the area configuration (one element per row per
# cycle); odd sizes with an element over 3 cycles (U < b, b not a power of two)
CONFIGS = [(8, 8, 8, 8), (3, 5, 6, 2)]


def _bench(simulator, rows, cols, bits, steps_per_cycle):
    unit = Design(DropoutMaskGenerator, rows=rows, cols=cols, bits=bits,
                  steps_per_cycle=steps_per_cycle)
    run_bench(unit, toplevel="dropout_mask", bench_module="tb.dropout_mask_tb",
              simulator=simulator, case={"rows": rows, "cols": cols, "bits": bits,
                                         "steps_per_cycle": steps_per_cycle,
                                         "vectors": unit_vectors(len(CONFIGS))}, player=True)


@pytest.mark.parametrize("rows,cols,bits,steps_per_cycle", CONFIGS)
def test_dropout_mask(simulator, rows, cols, bits, steps_per_cycle):
    _bench(simulator, rows, cols, bits, steps_per_cycle)


def test_dropout_mask_two_elements_per_cycle():
    """Two elements per row per cycle (U > b, 3-bit elements), on Icarus only: its build
    costs seconds, a Verilator build most of a minute."""
    _bench("icarus", 4, 6, 3, 6)


@pytest.mark.parametrize("field,value", [("rows", 0), ("rows", MAX_DIM + 1), ("rows", "8"),
                                         ("rows", True), ("cols", 0), ("cols", 8.0),
                                         ("cols", MAX_DIM + 1)])
def test_dropout_mask_rejects_bad_size(field, value):
    kwargs = {"rows": 8, "cols": 8, field: value}
    with pytest.raises(ValueError, match=rf"{field} must be an integer in 1\.\.{MAX_DIM}, not"):
        DropoutMaskGenerator(**kwargs)


@pytest.mark.parametrize("bits", [0, MAX_BITS + 1, "8", None, False])
def test_dropout_mask_rejects_bad_bits(bits):
    with pytest.raises(ValueError, match=rf"bits must be an integer in 1\.\.{MAX_BITS}, not"):
        DropoutMaskGenerator(rows=8, cols=8, bits=bits)


@pytest.mark.parametrize("bits,cols,steps,allowed", [
    (8, 8, 3, "[1, 2, 4, 8, 16, 32, 64]"),       # neither a divisor nor a multiple of bits
    (8, 8, 24, "[1, 2, 4, 8, 16, 32, 64]"),      # a multiple of bits not dividing cols * bits
    (8, 8, 0, "[1, 2, 4, 8, 16, 32, 64]"),
    (6, 5, 4, "[1, 2, 3, 6, 30]"),
    (6, 5, 6.0, "[1, 2, 3, 6, 30]"),
    (6, 5, True, "[1, 2, 3, 6, 30]"),
])
def test_dropout_mask_rejects_bad_steps(bits, cols, steps, allowed):
    message = (f"steps_per_cycle must divide bits ({bits}) or be a multiple of it that divides "
               f"cols * bits ({cols * bits}): one of {allowed}, not {steps!r}")
    with pytest.raises(ValueError, match=re.escape(message)):
        DropoutMaskGenerator(rows=2, cols=cols, bits=bits, steps_per_cycle=steps)


@pytest.mark.parametrize("rows,cols,bits,steps,tile_cycles", [
    (8, 8, 8, None, 8), (8, 8, 8, 4, 16), (8, 8, 8, 64, 1), (3, 5, 6, 2, 15), (4, 6, 3, 6, 3),
    (1, 1, 1, 1, 1),
])
def test_dropout_mask_cycles_per_tile(rows, cols, bits, steps, tile_cycles):
    unit = DropoutMaskGenerator(rows=rows, cols=cols, bits=bits, steps_per_cycle=steps)
    assert unit.tile_cycles == tile_cycles == cols * bits // unit.steps_per_cycle
    assert unit.setup_cycles == rows
