# amaranth: UnusedElaboratable=no
"""Runner: SkewedScratchpad on Icarus and Verilator; its golden mapping; parameter checks."""

import itertools

import numpy as np
import pytest
from amaranth import unsigned

from hw.engine.scratchpad import SkewedScratchpad
from hw.fp.operand import Operand
from sim.runner import Design, run_bench
from sim.scratchpad_model import ScratchpadGeometry, ScratchpadModel
from tb.conftest import regress, scaled

ELEMENTS = {"operand": Operand, "u32": unsigned(32)}

CONFIGS = [
    # lanes, width, rows, element
    (4, 16, 16, "operand"),     # banks == lanes
    (5, 16, 13, "u32"),         # banks 8 > lanes; rows not a power of two (rows >= 13 addressable)
    (8, 8, 24, "operand"),      # width == banks: one word per bank and row
    (8, 64, 7, "u32"),
    (1, 1, 3, "u32"),           # one bank, one column: the smallest scratchpad
    (32, 32, 5, "operand"),     # the widest access
]


@pytest.mark.parametrize("lanes, width, rows, element", CONFIGS,
                         ids=[f"l{l}-w{w}-r{r}-{e}" for l, w, r, e in CONFIGS])
def test_scratchpad(simulator, lanes, width, rows, element):
    dut = Design(SkewedScratchpad, lanes=lanes, width=width, rows=rows, element=ELEMENTS[element])
    run_bench(dut, toplevel="skewed_scratchpad", bench_module="tb.scratchpad_tb",
              simulator=simulator,
              case={"lanes": lanes, "width": width, "rows": rows, "element": element,
                    "operations": scaled(2000)})


@pytest.mark.parametrize("lanes, width, rows", [(5, 16, 13), (4, 16, 16), (8, 8, 24)])
def test_scratchpad_scatter(lanes, width, rows):
    """Scatter accesses (the step-list engine's accumulator memory), Icarus; the first
    configuration (banks > lanes) in make test, all in make regress."""
    if (lanes, width, rows) != (5, 16, 13) and not regress():
        pytest.skip("make regress only")
    dut = Design(SkewedScratchpad, lanes=lanes, width=width, rows=rows, element=unsigned(32),
                 scatter=True)
    run_bench(dut, toplevel="skewed_scratchpad", bench_module="tb.scratchpad_scatter_tb",
              simulator="icarus",
              case={"lanes": lanes, "width": width, "rows": rows, "element": "u32",
                    "operations": scaled(2000)})


# -- golden mapping ----------------------------------------------------------------------

GEOMETRIES = [(1, 1, 1), (1, 4, 3), (3, 4, 5), (4, 16, 16), (5, 16, 13), (8, 8, 24),
              (17, 64, 9), (32, 32, 40)]


@pytest.mark.parametrize("lanes, width, rows", GEOMETRIES)
def test_mapping_is_a_bijection(lanes, width, rows):
    g = ScratchpadGeometry(lanes=lanes, width=width, rows=rows)
    i, j = np.indices((rows, width))
    banks, addresses = g.bank(i, j), g.address(i, j)
    assert banks.min() >= 0 and banks.max() < g.banks
    assert addresses.min() >= 0 and addresses.max() < g.depth
    words = set(zip(banks.ravel().tolist(), addresses.ravel().tolist()))
    assert len(words) == rows * width == g.banks * g.depth
    for bank, address in itertools.islice(words, 500):
        assert g.bank(*g.element(bank, address)) == bank
        assert g.address(*g.element(bank, address)) == address
    matrix = np.arange(rows * width).reshape(rows, width)
    assert np.array_equal(g.matrix_of(g.bank_images(matrix)), matrix)


@pytest.mark.parametrize("lanes, width, rows", GEOMETRIES)
def test_any_access_hits_distinct_banks(lanes, width, rows):
    g = ScratchpadGeometry(lanes=lanes, width=width, rows=rows)
    for row, col, column_mode in itertools.product(range(rows + lanes), range(width + lanes),
                                                   (False, True)):
        i, j = g.lane_positions(row, col, column_mode)
        assert len(set(g.bank(i, j).tolist())) == lanes, (row, col, column_mode)


def test_model_reads_zero_outside_and_drops_outside_writes():
    g = ScratchpadGeometry(lanes=4, width=8, rows=3)
    model = ScratchpadModel(g)
    model.write(2, 6, [1, 2, 3, 4], 0b1111)          # lanes 2, 3 fall outside (col 8, 9)
    model.write(3, 0, [5, 6, 7, 8], 0b1111)          # row 3 is outside: all dropped
    model.write(0, 6, [9, 10, 11, 12], 0b0010)       # only lane 1 written
    assert model.contents.sum() == 1 + 2 + 10
    assert model.read(2, 5, column_mode=False) == [0, 1, 2, 0]
    assert model.read(0, 7, column_mode=True) == [10, 0, 2, 0]
    assert model.read(3, 0, column_mode=False) == [0, 0, 0, 0]


def test_model_load_places_a_matrix():
    g = ScratchpadGeometry(lanes=5, width=16, rows=6)
    model = ScratchpadModel(g)
    matrix = np.arange(1, 4 * 7 + 1).reshape(4, 7)
    writes = model.load(matrix, row=1, col=3)
    assert len(writes) == 4 * 2
    assert np.array_equal(model.contents[1:5, 3:10], matrix)
    assert model.contents.sum() == matrix.sum()


# -- parameter checks --------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [0, 33, 4.0, True, "4"])
def test_rejects_bad_lanes(lanes):
    with pytest.raises(ValueError, match=r"lanes must be an integer in 1\.\.32, not"):
        SkewedScratchpad(lanes=lanes, width=64, rows=4, element=Operand)


@pytest.mark.parametrize("lanes, width", [(5, 4), (4, 24), (4, 0), (8, 16.0), (1, True)])
def test_rejects_bad_width(lanes, width):
    banks = 1 << (lanes - 1).bit_length()
    with pytest.raises(ValueError, match=rf"width must be a power of two >= {banks} \(the bank "
                                         rf"count\), not"):
        SkewedScratchpad(lanes=lanes, width=width, rows=4, element=Operand)


@pytest.mark.parametrize("rows", [0, -1, 2.0, None])
def test_rejects_bad_rows(rows):
    with pytest.raises(ValueError, match=r"rows must be an integer >= 1, not"):
        SkewedScratchpad(lanes=4, width=16, rows=rows, element=Operand)


@pytest.mark.parametrize("element", ["fp16", None, 1.5])
def test_rejects_bad_element(element):
    with pytest.raises(ValueError, match=r"element must be a shape or layout"):
        SkewedScratchpad(lanes=4, width=16, rows=4, element=element)
