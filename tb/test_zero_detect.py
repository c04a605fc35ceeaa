# amaranth: UnusedElaboratable=no
"""Runner: ZeroDetector benches on Icarus and Verilator, and its parameter checks."""

import pytest

from hw.sparsity.zero_detect import MAX_LANES, ZeroDetector
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors

# (lanes, stages, index_list): the area configuration; an odd lane count, combinational, with
# the index list (two Verilator builds keep the file within its CI time)
CONFIGS = [(8, 1, False), (5, 0, True)]


@pytest.mark.parametrize("lanes,stages,index_list", CONFIGS)
def test_zero_detect(simulator, lanes, stages, index_list):
    run_bench(Design(ZeroDetector, lanes=lanes, stages=stages, index_list=index_list),
              toplevel="zero_detect", bench_module="tb.zero_detect_tb", simulator=simulator,
              case={"lanes": lanes, "stages": stages, "index_list": index_list,
                    "vectors": max(64, unit_vectors(len(CONFIGS)) // lanes)}, player=True)


@pytest.mark.parametrize("lanes", [0, MAX_LANES + 1, -1, "8", 8.0, True, None])
def test_zero_detect_rejects_bad_lanes(lanes):
    with pytest.raises(ValueError, match=rf"lanes must be an integer in 1\.\.{MAX_LANES}, not"):
        ZeroDetector(lanes=lanes)


@pytest.mark.parametrize("stages", [-1, 2, "1", True])
def test_zero_detect_rejects_bad_stages(stages):
    with pytest.raises(ValueError, match=r"stages must be an integer in 0\.\.1"):
        ZeroDetector(lanes=4, stages=stages)


@pytest.mark.parametrize("index_list", [1, "yes", None])
def test_zero_detect_rejects_bad_index_list(index_list):
    with pytest.raises(ValueError, match=r"index_list must be a bool, not"):
        ZeroDetector(lanes=4, index_list=index_list)


def test_zero_detect_single_lane():
    """The degenerate one-lane word (1-bit ``first`` and index entries), on Icarus only: its
    build costs a second, a Verilator build half a minute."""
    run_bench(Design(ZeroDetector, lanes=1, stages=1, index_list=True), toplevel="zero_detect",
              bench_module="tb.zero_detect_tb", simulator="icarus",
              case={"lanes": 1, "stages": 1, "index_list": True, "vectors": 512})
