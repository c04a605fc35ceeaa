"""The SCALE-Sim peer wrapper: argument checks, the known reference point and which GEMM
dimension SCALE-Sim puts where (so that its figures line up with ours).

The SCALE-Sim tests skip only when its virtual environment is missing and cannot be created
(no network); everything else runs SCALE-Sim for real (about 1 s per call).
"""

import re

import pytest

from scripts.scalesim_peer import ScaleSimUnavailable, scalesim_cycles, scalesim_python


@pytest.fixture(scope="module")
def scalesim():
    try:
        scalesim_python()
    except ScaleSimUnavailable as error:
        pytest.skip(f"no SCALE-Sim venv and none can be made here: {error}")


@pytest.mark.parametrize("rows, cols, dataflow, shapes, message", [
    (8, 8, "rs", [(8, 8, 8)], "dataflow must be one of os, ws, is, not 'rs'"),
    (0, 8, "os", [(8, 8, 8)], "rows must be an integer >= 1, not 0"),
    (8, 2.0, "os", [(8, 8, 8)], "cols must be an integer >= 1, not 2.0"),
    (8, 8, "os", [(8, 8)], "three integers"),
    (8, 8, "os", [(8, 0, 8)], "three integers"),
])
def test_rejects_bad_arguments(rows, cols, dataflow, shapes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        scalesim_cycles(rows, cols, dataflow, shapes)


def test_no_shapes_no_run():
    assert scalesim_cycles(8, 8, "os", []) == []


def test_reference_point(scalesim):
    # 8x8 output stationary, 64^3: known SCALE-Sim v3 figure (ideal 4096)
    assert scalesim_cycles(8, 8, "os", [(64, 64, 64)]) == [4991]


# (M, N, K) = (8, 8, 512), (512, 8, 8), (8, 512, 8) on 8x8: the dimension a dataflow streams
# through the array fits in one fold (about 512 cycles), the other two take 64 folds.
# Output stationary streams K, weight stationary M, input stationary N.
@pytest.mark.parametrize("dataflow, cycles", [
    ("os", [525, 1407, 1407]),
    ("ws", [1919, 533, 1919]),
    ("is", [1919, 1919, 533]),
])
def test_streamed_dimension(scalesim, dataflow, cycles):
    assert scalesim_cycles(8, 8, dataflow, [(8, 8, 512), (512, 8, 8), (8, 512, 8)]) == cycles


def test_output_stationary_puts_m_on_rows(scalesim):
    # 4 rows x 16 columns: C[4, 16] fills the array in one fold, C[16, 4] needs four
    assert scalesim_cycles(4, 16, "os", [(4, 16, 64), (16, 4, 64)]) == [81, 327]
