# amaranth: UnusedElaboratable=no
"""Runner: the stream checks (tb/stream_player_tb.py) catch each known fault, in the Python loop
and in the stream player (sim/stream_player.py); the player's generator refuses a unit without
streams."""

import pytest

from sim.runner import Design, run_bench
from sim.stream_player import player_verilog
from tb.harness import player_chunks
from tb.stream_player_tb import FAULTS, FaultyStage


@pytest.mark.parametrize("player", [False, True], ids=["python", "player"])
@pytest.mark.parametrize("fault", FAULTS)
def test_stream_checks_catch_faults(fault, player):
    run_bench(Design(FaultyStage, fault=fault, n=40), toplevel="faulty_stage",
              bench_module="tb.stream_player_tb", simulator="icarus",
              case={"fault": fault, "n": 40}, player=player)


def test_player_needs_streams():
    verilog = "module plain(clk, a);\n  input clk;\n  input [3:0] a;\nendmodule\n"
    with pytest.raises(ValueError, match="toplevel: plain needs the ports i__valid"):
        player_verilog(verilog, "plain")
    with pytest.raises(ValueError, match="toplevel: no module 'other'"):
        player_verilog(verilog, "other")


def test_faulty_stage_refuses_an_unknown_fault():
    with pytest.raises(ValueError, match="fault must be one of"):
        FaultyStage(fault="slow")


def test_long_runs_are_cut_where_the_unit_owes_every_output():
    """A run longer than the player's memory is played in chunks; with ``cuts`` (a unit that
    waits for a row's last input) each chunk ends at one of them, never past the depth."""
    assert player_chunks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert player_chunks(10, 4, cuts=[3, 6, 7, 9, 10]) == [(0, 3), (3, 7), (7, 10)]
    with pytest.raises(ValueError, match="no place to end a chunk within 2 inputs of input 0"):
        player_chunks(10, 2, cuts=[5])
