# amaranth: UnusedElaboratable=no
"""Runner: FGMP encoder, packer and unpacker benches on Icarus and Verilator, and the
parameter checks of the units (plain pytest)."""

import pytest

from hw.fgmp.block_writer import FgmpBlockWriter
from hw.fgmp.encoder import FgmpEncoder
from hw.fgmp.packer import FgmpPacker
from hw.fgmp.unpacker import FgmpUnpacker
from sim.runner import Design, run_bench
from tb.conftest import unit_vectors
from tb.fgmp_tops import PackerTop, RoundTripTop, UnpackerTop

BOTH = ("e4m3", "e5m2")

# (block B, bus bytes W, formats, convert_stages, encode_stages): blocks straddle bus words in
# every one; W < B/8 + 2 (a block's header and element 0 take more than a word) in two
PACKERS = [
    (16, 8, BOTH, 3, 1),
    (16, 4, BOTH, 0, 0),
    (8, 16, ("e4m3",), 1, 1),
    (64, 1, BOTH, 2, 0),
]
UNPACKERS = [(16, 8, BOTH), (16, 4, BOTH), (8, 16, ("e5m2",)), (64, 1, BOTH)]


def _packer(block, bus_bytes, formats, convert_stages, encode_stages):
    return Design(FgmpPacker, formats=formats, block=block, bus_bytes=bus_bytes,
                  convert_stages=convert_stages, encode_stages=encode_stages)


def _bench(top, toplevel, simulator, testcase, **case):
    run_bench(top, toplevel=toplevel, bench_module="tb.fgmp_tb", simulator=simulator,
              testcase=testcase, case=case, player=True)


@pytest.mark.parametrize("stages,formats", [(1, BOTH), (0, ("e5m2",))])
def test_fgmp_encoder(simulator, stages, formats):
    _bench(Design(FgmpEncoder, formats=formats, stages=stages), "fgmp_encoder", simulator,
           "encoder_matches_golden", stages=stages, formats=formats, vectors=unit_vectors(2))


# every fp16 code, both formats, flush off and on (262,144 elements): the built configuration
# of the encoder bench above (Verilator build shared)
def test_fgmp_encoder_exhaustive(simulator):
    _bench(Design(FgmpEncoder, formats=BOTH, stages=1), "fgmp_encoder", simulator, "encoder_exhaustive",
           stages=1, formats=BOTH)


@pytest.mark.parametrize("block,bus_bytes,formats,convert_stages,encode_stages", PACKERS)
def test_fgmp_packer(simulator, block, bus_bytes, formats, convert_stages, encode_stages):
    packer = _packer(block, bus_bytes, formats, convert_stages, encode_stages)
    _bench(Design(PackerTop, packer), "fgmp_packer", simulator, "packer_bytes_match_golden",
           block=block, bus_bytes=bus_bytes, formats=formats, convert_stages=convert_stages,
           encode_stages=encode_stages, vectors=unit_vectors(len(PACKERS)))


@pytest.mark.parametrize("block,bus_bytes,formats", UNPACKERS)
def test_fgmp_unpacker(simulator, block, bus_bytes, formats):
    unpacker = Design(FgmpUnpacker, formats=formats, block=block, bus_bytes=bus_bytes)
    _bench(Design(UnpackerTop, unpacker), "fgmp_unpacker", simulator, "unpacker_operands_match_golden",
           block=block, bus_bytes=bus_bytes, formats=formats, vectors=unit_vectors(len(UNPACKERS)))


# tensors longer than a block and not a multiple of it; tensors shorter than a block and a word
@pytest.mark.parametrize("block,bus_bytes,fmt8,length", [(16, 8, "e4m3", 37), (32, 2, "e5m2", 3)])
def test_fgmp_round_trip(simulator, block, bus_bytes, fmt8, length):
    top = Design(RoundTripTop, Design(FgmpPacker, block=block, bus_bytes=bus_bytes),
                 Design(FgmpUnpacker, block=block, bus_bytes=bus_bytes))
    _bench(top, "fgmp_round_trip", simulator, "round_trip", block=block, bus_bytes=bus_bytes,
           fmt8=fmt8, length=length, vectors=unit_vectors(2))


# the configurations of the data benches (Verilator builds are shared)
@pytest.mark.parametrize("block,bus_bytes,formats", [UNPACKERS[0], UNPACKERS[2], UNPACKERS[3]])
def test_fgmp_unpacker_errors(simulator, block, bus_bytes, formats):
    unpacker = Design(FgmpUnpacker, formats=formats, block=block, bus_bytes=bus_bytes)
    _bench(Design(UnpackerTop, unpacker), "fgmp_unpacker", simulator, "unpacker_corrupt_streams",
           block=block, bus_bytes=bus_bytes, formats=formats)


@pytest.mark.parametrize("block,bus_bytes,formats,convert_stages,encode_stages",
                         [PACKERS[1], PACKERS[2]])
def test_fgmp_packer_errors(simulator, block, bus_bytes, formats, convert_stages, encode_stages):
    packer = _packer(block, bus_bytes, formats, convert_stages, encode_stages)
    _bench(Design(PackerTop, packer), "fgmp_packer", simulator, "packer_bad_format",
           block=block, bus_bytes=bus_bytes, formats=formats)


# -- parameters ------------------------------------------------------------------------------------
UNITS = [
    lambda **kw: FgmpPacker(**kw),
    lambda **kw: FgmpUnpacker(**kw),
]


@pytest.mark.parametrize("make", UNITS + [lambda **kw: FgmpEncoder(**kw)])
@pytest.mark.parametrize("formats", ["e4m3", (), ("fp16",), ("e4m3", "bf16"), None, ("E4M3",)])
def test_fgmp_rejects_bad_formats(make, formats):
    with pytest.raises(ValueError, match=r"formats must (be a non-empty collection of|contain "
                                         r"only) \['e4m3', 'e5m2'\]"):
        make(formats=formats)


@pytest.mark.parametrize("make", UNITS + [lambda **kw: FgmpBlockWriter(**kw)])
@pytest.mark.parametrize("block", [0, 4, 12, 128, "16", 16.0, True])
def test_fgmp_rejects_bad_block(make, block):
    with pytest.raises(ValueError, match=r"block must be one of \[8, 16, 32, 64\]"):
        make(block=block)


@pytest.mark.parametrize("make", UNITS + [lambda **kw: FgmpBlockWriter(**kw)])
@pytest.mark.parametrize("bus_bytes", [0, 3, 12, 128, "8", None])
def test_fgmp_rejects_bad_bus_bytes(make, bus_bytes):
    with pytest.raises(ValueError, match=r"bus_bytes must be a power of two in 1\.\.64"):
        make(bus_bytes=bus_bytes)


@pytest.mark.parametrize("field,value,limit", [
    ("convert_stages", -1, 3), ("convert_stages", 4, 3), ("convert_stages", "1", 3),
    ("encode_stages", 2, 1), ("encode_stages", True, 1),
])
def test_fgmp_packer_rejects_bad_stages(field, value, limit):
    with pytest.raises(ValueError, match=rf"{field}: stages must be an integer in 0\.\.{limit}"):
        FgmpPacker(**{field: value})


@pytest.mark.parametrize("stages", [-1, 2, "0"])
def test_fgmp_encoder_rejects_bad_stages(stages):
    with pytest.raises(ValueError, match=r"stages must be an integer in 0\.\.1"):
        FgmpEncoder(stages=stages)


def test_fgmp_accepts_format_objects_and_one_format():
    from sim.formats import E5M2
    from hw.fp.operand import OperandFormat
    assert FgmpPacker(formats=(E5M2,)).formats == (OperandFormat.E5M2,)
    assert FgmpUnpacker(formats=["e4m3", "e4m3"]).formats == (OperandFormat.E4M3,)
