"""Ports shared by the FGMP packer and unpacker: parameters, stream payloads, error status.

The geometry of the byte stream (block size ``B``, bus word width ``W``) is validated by
:class:`sim.fgmp_spec.FgmpBlockFormat`, the golden model's too, so that hardware and model
accept exactly the same configurations.
"""

from amaranth import Module
from amaranth.lib import data, enum

from hw.fp.operand import Operand, OperandFormat
from sim.fgmp_spec import FGMP_FORMATS, FgmpBlockFormat

__all__ = ["FgmpError", "FgmpStatus", "FgmpElement", "PackerInput", "UnpackedOperand",
           "bus_word_layout", "block_format", "fp8_formats", "update_status"]


class FgmpError(enum.Enum, shape=3):
    """Why a packer or unpacker raised ``status.error``.

    * ``BAD_FORMAT``: the ``fmt`` input is not one of the FP8 formats the unit was built for
      (``FP16`` or the unused code 3 included).
    * ``BAD_LENGTH``: a tensor of zero elements (unpacker; the stream of an empty tensor has no
      bus word to carry it).
    * ``TRUNCATED``: the bus word marked ``last`` came before the bytes the tag masks call for.
    * ``BAD_PADDING``: a padding element of the last block is not an FP8 +0 (tag 1, byte 0), or
      a stream padding byte after the last block is not zero.
    * ``EXTRA_DATA``: bus words after the padded end of the tensor (the final word of the tensor
      was not marked ``last``).
    """
    NONE = 0
    BAD_FORMAT = 1
    BAD_LENGTH = 2
    TRUNCATED = 3
    BAD_PADDING = 4
    EXTRA_DATA = 5


class FgmpStatus(data.Struct):
    """Error status of a packer or unpacker (one CSR word).

    ``error`` is sticky: it rises the cycle after a fault is detected and keeps the first
    fault's ``error_code`` until the ``clear_error`` input is high (a fault detected in the
    same cycle as ``clear_error`` is kept).
    """
    error: 1
    error_code: FgmpError


class PackerInput(data.Struct):
    """One FP32 accumulator value on its way to memory."""
    #: FP32 bit pattern.
    value: 32
    #: Last element of the tensor: the packer pads its block and its bus word after it.
    last: 1


class FgmpElement(data.Struct):
    """One encoded element: its FGMP tag and its payload."""
    #: FP8 code in the low byte (high byte zero) when ``fp8``, the fp16 bit pattern otherwise.
    payload: 16
    #: The tag: 1 = stored as FP8, 0 = stored as fp16.
    fp8: 1


class UnpackedOperand(data.Struct):
    """One element of a tensor read from memory, ready for the PEs."""
    #: The element as a tagged PE operand (FP8 code in the low byte of ``bits``).
    operand: Operand
    #: The element is +0 or -0 (for zero-skip logic).
    zero: 1
    #: Last element of the tensor.
    last: 1


def bus_word_layout(bus_bytes: int) -> data.StructLayout:
    """One bus word: ``data`` (``bus_bytes`` bytes, byte ``k`` in bits ``8k .. 8k+7``, the
    ``k``-th byte of the stream) and ``last`` (the final word of a tensor)."""
    return data.StructLayout({"data": 8 * bus_bytes, "last": 1})


def block_format(*, block, bus_bytes) -> FgmpBlockFormat:
    """Validated stream geometry (``ValueError`` naming ``block`` or ``bus_bytes``)."""
    return FgmpBlockFormat(block=block, bus_bytes=bus_bytes)


def fp8_formats(formats) -> tuple:
    """Validate the FP8 formats a unit supports: a non-empty collection of ``"e4m3"`` /
    ``"e5m2"``; returns a tuple of :class:`~hw.fp.operand.OperandFormat` without repeats."""
    allowed = sorted(FGMP_FORMATS)
    if isinstance(formats, str) or not isinstance(formats, (tuple, list, set, frozenset)) \
            or not formats:
        raise ValueError(f"formats must be a non-empty collection of {allowed}, not {formats!r}")
    tags = []
    for fmt in formats:
        name = getattr(fmt, "name", fmt)
        if not isinstance(name, str) or name not in FGMP_FORMATS or \
                (not isinstance(fmt, str) and FGMP_FORMATS[name] != fmt):
            raise ValueError(f"formats must contain only {allowed}, not {fmt!r}")
        tags.append(OperandFormat.of(name))
    return tuple(dict.fromkeys(tags))


def update_status(m: Module, status, clear, fault, code):
    """Sticky error status: ``fault`` (1 bit) with its ``code`` this cycle sets ``status``
    (the first fault's code is kept); ``clear`` resets it unless a fault is detected."""
    with m.If(fault):
        m.d.sync += status.error.eq(1)
        with m.If(~status.error | clear):
            m.d.sync += status.error_code.eq(code)
    with m.Elif(clear):
        m.d.sync += [status.error.eq(0), status.error_code.eq(FgmpError.NONE)]
