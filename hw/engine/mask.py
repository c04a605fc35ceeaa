"""Output masking of the GEMM engine (``EngineConfig(output_mask=True)``): keep planes and the
dropout mask writer.

Selective gradient computation: the backward-data GEMM ``dX = dY . W^T`` need not compute the
outputs whose forward mask is 0 (ReLU ``x <= 0``, dropout dropped); they are written ``+0``
(:func:`sim.sparsity.gemm_skip` with ``out_mask``). The engine keeps two 1-bit *keep planes*
beside the accumulator memory, with its geometry (an output ``C[i, j]`` of a command at
``(c_row, c_col)`` has its keep bits at ``(c_row + i, c_col + j)``):

* the **host plane**, written through ``wr_mask`` (any mask the host has: ReLU ``x > 0`` of
  the layer's input, or a mask lowered with the GEMM);
* the **dropout plane**, written by :class:`DropoutMaskWriter` from a seed: the keep mask of an
  ``m x n`` tensor regenerated bit for bit as :func:`sim.lfsr.dropout_keep_mask` (nothing is
  stored between forward and backward but the seed).

A command's ``mask_host`` / ``mask_dropout`` flags select the planes; its keep mask is their
AND (all ones when neither is selected). The result writes read the selected planes and write
``+0`` in masked lanes (:class:`hw.engine.sequencer.OutputStationarySequencer`); a lookahead
window engine also reads a summary of every tile (rows and columns with a kept output) ahead of
it and skips the steps of rows and columns without one
(:class:`hw.engine.skip_sequencer.SkipSequencer`, cycles :func:`sim.skip_timing.engine_cycles`).
The host must not write a plane that a running command reads (as for the operands), and waits
for ``mask_status.busy`` low before issuing a command that reads the dropout plane.
"""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engine.scratchpad import write_layout
from hw.sparsity.dropout_mask import DropoutError, DropoutMaskGenerator
from sim.engine_spec import FIELD_BITS

__all__ = ["DROPOUT_BITS", "KEEP_PLANES", "MaskError", "MaskStatus", "mask_command_layout",
           "DropoutMaskWriter"]

#: The keep planes, by their port and memory names: the host's and the dropout writer's.
KEEP_PLANES = ("mask_host", "mask_drop")

#: Random bits per element of the engine's dropout masks (``bits`` of
#: :func:`sim.lfsr.dropout_keep_mask`; a drop probability ``p`` is ``threshold / 2^8``).
DROPOUT_BITS = 8


class MaskError(enum.Enum, shape=3):
    """Why the dropout mask writer raised ``mask_status.error``: the codes of
    :class:`~hw.sparsity.dropout_mask.DropoutError` (``ZERO_SEED``, ``BAD_THRESHOLD``,
    ``ZERO_SIZE``, ``ROW_TOO_LONG``) and ``RANGE``: the ``m x n`` mask placed at ``(row, col)``
    does not fit the plane (the accumulator memory's ``acc_rows x acc_width``)."""
    NONE = DropoutError.NONE.value
    ZERO_SEED = DropoutError.ZERO_SEED.value
    BAD_THRESHOLD = DropoutError.BAD_THRESHOLD.value
    ZERO_SIZE = DropoutError.ZERO_SIZE.value
    ROW_TOO_LONG = DropoutError.ROW_TOO_LONG.value
    RANGE = 5


class MaskStatus(data.Struct):
    """Status of the dropout mask writer (one CSR word). ``busy``: a mask is being written
    (from the cycle after its command is accepted until its last row is in the plane).
    ``error`` is sticky until ``clear_error``; a generator fault's code wins over ``RANGE``."""
    busy: 1
    error: 1
    error_code: MaskError


def mask_command_layout():
    """Dropout mask command: the keep mask of an ``m x n`` tensor from ``seed`` with drop
    ``threshold`` (out of ``2^DROPOUT_BITS``), written to the dropout plane at ``(row, col)``."""
    return data.StructLayout({"seed": 32, "threshold": DROPOUT_BITS + 1, "m": FIELD_BITS,
                              "n": FIELD_BITS, "row": FIELD_BITS, "col": FIELD_BITS})


class DropoutMaskWriter(wiring.Component):
    """Dropout mask commands in, row writes of the dropout plane out.

    A :class:`~hw.sparsity.dropout_mask.DropoutMaskGenerator` (``R x C`` tiles, one LFSR step
    per bit per row per cycle) makes the mask tile by tile; each tile is written in ``R``
    cycles, one plane row of ``C`` lanes per cycle, lanes and rows outside the ``m x n`` tensor
    left as they are. A command whose mask does not fit the plane is refused (``RANGE``); one
    the generator refuses raises its code. A command that fits is not taken while a tile is
    being written: the host may send the next command before ``busy`` falls, and it then waits
    (found by the formal harness :mod:`hw.formal.mask_writer`: taken at once, it moved the rows
    of the tile still being written).

    Parameters
    ----------
    geometry : sim.scratchpad_spec.ScratchpadGeometry
        The plane's (``C`` lanes, the accumulator memory's rows and width).
    rows : int
        ``R``, the array's rows (tile height).

    Latency: :func:`sim.skip_timing.mask_write_cycles` from the accept cycle to ``busy`` low
    (a tile every ``max(R, C)`` cycles within a band; ``R`` cycles to load a band's row LFSRs).

    Ports
    -----
    i : stream of :func:`mask_command_layout` (in)
    write : always-ready write stream of 1-bit elements (out), to the dropout plane
    status : :class:`MaskStatus` (out)
    clear_error : 1 bit (in)
    """

    def __init__(self, geometry, rows):
        self.geometry = geometry
        self.rows = rows
        super().__init__({
            "i": In(stream.Signature(mask_command_layout())),
            "write": Out(stream.Signature(write_layout(geometry, unsigned(1)),
                                          always_ready=True)),
            "status": Out(MaskStatus),
            "clear_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.geometry.lanes
        generator = m.submodules.generator = DropoutMaskGenerator(rows=rows, cols=cols,
                                                                  bits=DROPOUT_BITS)
        command = self.i.payload
        fits = Signal(name="mask_fits")
        m.d.comb += fits.eq((command.row + command.m <= self.geometry.rows)
                            & (command.col + command.n <= self.geometry.width))
        # a command that fits waits while a tile is still being written: its accept latches
        # the placement below, which that tile's rows still use (the generator itself is
        # ready again as soon as it offers its last tile)
        writing = Signal(name="mask_tile_writing")
        accept = Signal(name="mask_accept_ready")
        m.d.comb += [
            accept.eq(generator.i.ready & ~writing),
            generator.i.valid.eq(self.i.valid & fits & ~writing),
            generator.i.payload.seed.eq(command.seed),
            generator.i.payload.threshold.eq(command.threshold),
            generator.i.payload.m.eq(command.m),
            generator.i.payload.n.eq(command.n),
            self.i.ready.eq(Mux(fits, accept, 1)),
        ]
        # placement and size of the mask being written
        origin_row = Signal(FIELD_BITS, name="mask_row")
        origin_col = Signal(FIELD_BITS, name="mask_col")
        height = Signal(FIELD_BITS, name="mask_m")
        width = Signal(FIELD_BITS, name="mask_n")
        with m.If(generator.i.valid & generator.i.ready):
            m.d.sync += [origin_row.eq(command.row), origin_col.eq(command.col),
                         height.eq(command.m), width.eq(command.n)]

        # a finished tile: one plane row per cycle, taken from the generator with the last
        tile = generator.o.payload
        r = Signal(range(rows), name="tile_row")
        last_row = Signal(name="tile_last_row")
        m.d.comb += [last_row.eq(r == rows - 1),
                     generator.o.ready.eq(last_row)]
        m.d.comb += writing.eq(generator.o.valid)
        with m.If(generator.o.valid):
            m.d.sync += r.eq(Mux(last_row, 0, r + 1))
        row_in = Signal(name="tile_row_inside")
        m.d.comb += row_in.eq(tile.row + r < height)
        lanes = Cat(tile.col + c < width for c in range(cols))
        write = self.write.payload
        m.d.comb += [
            self.write.valid.eq(generator.o.valid & row_in),
            write.row.eq(origin_row + tile.row + r),
            write.col.eq(origin_col + tile.col),
            write.mask.eq(lanes),
            write.data.eq(tile.keep[r]),
        ]

        # status: the generator's, and RANGE for a refused placement
        range_error = Signal(name="range_error")
        with m.If(self.i.valid & ~fits):
            m.d.sync += range_error.eq(1)
        with m.Elif(self.clear_error):
            m.d.sync += range_error.eq(0)
        m.d.comb += [
            generator.clear_error.eq(self.clear_error),
            self.status.busy.eq(generator.status.busy | generator.o.valid),
            self.status.error.eq(generator.status.error | range_error),
            self.status.error_code.eq(Mux(generator.status.error,
                                          generator.status.error_code.as_value(),
                                          Mux(range_error, MaskError.RANGE, MaskError.NONE))),
        ]
        return m

