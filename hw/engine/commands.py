"""The GEMM engine's host-side formats: command, status, error codes, write and read words.

The command and status words do not depend on the configuration (a controller or CSR block can
be written against them once); the write and read words carry ``lanes`` elements and so depend
on the array size. Sizes and positions are :data:`sim.engine_spec.FIELD_BITS` (16) bits wide;
whether a command fits the engine is checked by the hardware (:class:`ErrorCode`), exactly as
:func:`sim.engine_model.validate` predicts.
"""

from amaranth.lib import data

from hw.fp.operand import Operand
from hw.spec_enum import hardware_enum
from sim.engine_spec import FIELD_BITS, EngineError

__all__ = ["GemmCommand", "command_layout", "step_write_layout", "tile_write_layout", "ErrorCode", "Status", "host_write_layout", "operand_write_layout",
           "read_request_layout", "read_data_layout"]


class GemmCommand(data.Struct):
    """``C[c_row + i, c_col + j] (+)= sum_k A[i, k] * B[k, j]`` for ``i < m``, ``j < n``.

    A is stored ``m x k`` with its first element at ``(a_row, a_col)`` of the A scratchpad,
    or ``k x m`` when ``a_transpose``; B ``k x n`` at ``(b_row, b_col)`` of the B scratchpad,
    or ``n x k`` when ``b_transpose``; C ``m x n`` at ``(c_row, c_col)`` of the accumulator
    memory. ``accumulate`` starts from the C there (``C_old``) instead of ``+0``.
    (:class:`sim.engine_model.EngineCommand` is the same command on the Python side.)
    """
    m: FIELD_BITS
    n: FIELD_BITS
    k: FIELD_BITS
    a_row: FIELD_BITS
    a_col: FIELD_BITS
    b_row: FIELD_BITS
    b_col: FIELD_BITS
    c_row: FIELD_BITS
    c_col: FIELD_BITS
    a_transpose: 1
    b_transpose: 1
    accumulate: 1


def command_layout(config):
    """The command word of an engine: :class:`GemmCommand`, followed (above its bits) by the
    flags ``mask_host`` and ``mask_dropout`` on an engine with ``output_mask``
    (:mod:`hw.engine.mask`), and by ``scheduled``, ``tile_first`` and ``tile_count`` on an
    engine with step lists (:mod:`hw.engine.step_list_sequencer`);
    :class:`sim.engine_model.EngineCommand` has the same fields."""
    if not (config.output_mask or config.step_lists):
        return GemmCommand
    fields = {name: field.shape for name, field in data.Layout.cast(GemmCommand)}
    if config.output_mask:
        fields.update(mask_host=1, mask_dropout=1)
    if config.step_lists:
        fields.update(scheduled=1, tile_first=FIELD_BITS, tile_count=FIELD_BITS)
    return data.StructLayout(fields)


def step_write_layout():
    """Host write word of the step-index memory: step ``index`` (a ``k``) into entry
    ``addr``."""
    return data.StructLayout({"addr": FIELD_BITS, "index": FIELD_BITS})


def tile_write_layout(config):
    """Host write word of the tile table: entry ``addr`` runs the steps ``first .. first +
    length - 1`` of the step memory, and its lane ``c < width`` computes column ``cols[c]``
    (relative to the command's ``c_col``)."""
    return data.StructLayout({"addr": FIELD_BITS, "first": FIELD_BITS, "length": FIELD_BITS,
                              "width": FIELD_BITS,
                              "cols": data.ArrayLayout(FIELD_BITS, config.array.cols)})


#: The engine's error codes as a 3-bit Amaranth enum, built member by member from
#: :class:`sim.engine_spec.EngineError` (a class statement with ``shape=3`` would have to repeat
#: every member): adding a code to the specification adds it here. A code above 7 does not fit
#: the status word's 3 bits: Amaranth warns at import (an error in the tests).
ErrorCode = hardware_enum(
    EngineError, name="ErrorCode", module=__name__, shape=3,
    doc="Why the engine raised ``status.error``: the members of "
        ":class:`sim.engine_spec.EngineError` (which documents each), same names and values.")


class Status(data.Struct):
    """Engine status, readable by a host at any time (one word for a CSR).

    ``busy`` is high while a command runs (from the cycle after it is accepted until the cycle
    before ``done``); ``cmd.ready`` is ``~busy``. ``done`` is high for one cycle when a command
    ends, whether it ran or was rejected. ``error`` is sticky: it rises with ``done`` of a
    rejected command, or the cycle after a host write or read with a bad address or format, and
    stays high with its ``error_code`` until the ``clear_error`` input or the next accepted
    command clears it.
    """
    busy: 1
    done: 1
    error: 1
    error_code: ErrorCode


def host_write_layout(lanes, element):
    """Host write word: ``lanes`` elements written along row ``row`` from column ``col`` on;
    lane ``t`` goes to ``(row, col + t)`` when bit ``t`` of ``mask`` is set (lanes beyond the
    memory's last column are dropped)."""
    return data.StructLayout({
        "row": FIELD_BITS,
        "col": FIELD_BITS,
        "data": data.ArrayLayout(element, lanes),
        "mask": lanes,
    })


def operand_write_layout(lanes):
    """Host write word of the A or B scratchpad (:class:`~hw.fp.operand.Operand` elements)."""
    return host_write_layout(lanes, Operand)


def read_request_layout(config):
    """Host read request of the accumulator memory: ``C`` FP32 values along row ``row`` from
    column ``col`` on, returned in format ``config.out_formats[fmt]`` with overflow policy
    ``saturate`` (1: saturate to the largest finite value; 0: IEEE)."""
    return data.StructLayout({
        "row": FIELD_BITS,
        "col": FIELD_BITS,
        "fmt": range(max(2, len(config.out_formats))),
        "saturate": 1,
    })


def read_data_layout(config):
    """Host read data: ``C`` 32-bit words, FP32 or the converted format in the low bits
    (zero-extended); zero for columns beyond the accumulator memory."""
    return data.ArrayLayout(32, config.array.cols)
