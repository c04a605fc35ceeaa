"""Floating-point number formats: the single source of truth.

Every format the accelerator knows is one :class:`FPFormat` instance. The same object gives

* the numpy / ml_dtypes dtype used by the golden models (:attr:`FPFormat.dtype`),
* the unsigned integer dtype that holds its bit patterns (:attr:`FPFormat.bits_dtype`),
* the Amaranth ``StructLayout`` of its bit fields (:attr:`FPFormat.layout`, imported lazily so
  that the golden models never import Amaranth),
* its special encodings (canonical NaN, infinities, largest finite value).

``man_bits`` never counts the hidden bit.
"""

from __future__ import annotations

import dataclasses
import enum

import ml_dtypes
import numpy as np

__all__ = ["NanStyle", "FPFormat", "FP16", "BF16", "E4M3", "E5M2", "FP32", "FORMATS", "format_by_name"]


class NanStyle(enum.Enum):
    """How a format encodes non-finite values."""

    #: IEEE 754: all-ones exponent is infinity (zero mantissa) or NaN (non-zero mantissa).
    IEEE = "ieee"
    #: OCP FP8 E4M3FN: no infinities; only S.1111.111 is NaN, the rest of the top binade is finite.
    FN = "fn"


@dataclasses.dataclass(frozen=True)
class FPFormat:
    """A binary floating-point format.

    Parameters
    ----------
    name : str
        Short name used in configurations (``"fp16"``, ``"e4m3"``, ...).
    exp_bits : int
        Width of the biased exponent field.
    man_bits : int
        Width of the stored mantissa (fraction) field, without the hidden bit.
    bias : int
        Exponent bias.
    nan_style : NanStyle
        Encoding of infinities and NaNs.
    """

    name: str
    exp_bits: int
    man_bits: int
    bias: int
    nan_style: NanStyle = NanStyle.IEEE

    def __post_init__(self):
        if not isinstance(self.exp_bits, int) or not 2 <= self.exp_bits <= 11:
            raise ValueError(f"exp_bits must be an integer in 2..11, not {self.exp_bits!r}")
        if not isinstance(self.man_bits, int) or not 1 <= self.man_bits <= 52:
            raise ValueError(f"man_bits must be an integer in 1..52, not {self.man_bits!r}")
        if not isinstance(self.nan_style, NanStyle):
            raise ValueError(f"nan_style must be one of {[s.name for s in NanStyle]}, "
                             f"not {self.nan_style!r}")

    # -- field geometry -------------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Total width in bits (sign + exponent + mantissa)."""
        return 1 + self.exp_bits + self.man_bits

    @property
    def has_inf(self) -> bool:
        return self.nan_style is NanStyle.IEEE

    @property
    def exp_max_field(self) -> int:
        """All-ones exponent field value."""
        return (1 << self.exp_bits) - 1

    @property
    def sign_mask(self) -> int:
        return 1 << (self.width - 1)

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite number."""
        top = self.exp_max_field if self.nan_style is NanStyle.FN else self.exp_max_field - 1
        return top - self.bias

    # -- special encodings ----------------------------------------------------------------------
    @property
    def max_finite_bits(self) -> int:
        """Bit pattern of the largest positive finite value."""
        if self.nan_style is NanStyle.FN:
            # top binade is finite except for the all-ones mantissa (NaN)
            return (self.exp_max_field << self.man_bits) | ((1 << self.man_bits) - 2)
        return ((self.exp_max_field - 1) << self.man_bits) | ((1 << self.man_bits) - 1)

    @property
    def inf_bits(self) -> int | None:
        """Bit pattern of +infinity, or ``None`` when the format has none."""
        return self.exp_max_field << self.man_bits if self.has_inf else None

    @property
    def nan_bits(self) -> int:
        """The canonical (positive, quiet) NaN every NaN result is replaced by."""
        if self.nan_style is NanStyle.FN:
            return (self.exp_max_field << self.man_bits) | ((1 << self.man_bits) - 1)
        return (self.exp_max_field << self.man_bits) | (1 << (self.man_bits - 1))

    @property
    def max_finite(self) -> float:
        return float(self.decode_one(self.max_finite_bits))

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.man_bits)

    # -- numpy side -----------------------------------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        """numpy / ml_dtypes value dtype of this format."""
        return np.dtype(_DTYPES[self.name])

    @property
    def bits_dtype(self) -> np.dtype:
        """Smallest unsigned integer dtype that holds a bit pattern."""
        return np.dtype({8: np.uint8, 16: np.uint16, 32: np.uint32}[self.width])

    def decode_one(self, bits: int) -> float:
        """Value of one bit pattern as a Python float (exact)."""
        return float(np.array([bits], dtype=self.bits_dtype).view(self.dtype)[0])

    def all_codes(self) -> np.ndarray:
        """Every bit pattern of the format (only for widths up to 16)."""
        if self.width > 16:
            raise ValueError(f"all_codes is only defined for widths up to 16, not {self.width}")
        return np.arange(1 << self.width, dtype=np.uint32).astype(self.bits_dtype)

    # -- gateware side --------------------------------------------------------------------------
    @property
    def layout(self):
        """Amaranth ``StructLayout`` with fields ``man``, ``exp``, ``sign`` (LSB first)."""
        from amaranth.lib import data  # lazy: golden models must not need Amaranth

        return data.StructLayout({"man": self.man_bits, "exp": self.exp_bits, "sign": 1})

    def __str__(self):
        return self.name


FP16 = FPFormat("fp16", exp_bits=5, man_bits=10, bias=15)
BF16 = FPFormat("bf16", exp_bits=8, man_bits=7, bias=127)
E4M3 = FPFormat("e4m3", exp_bits=4, man_bits=3, bias=7, nan_style=NanStyle.FN)
E5M2 = FPFormat("e5m2", exp_bits=5, man_bits=2, bias=15)
FP32 = FPFormat("fp32", exp_bits=8, man_bits=23, bias=127)

_DTYPES = {
    "fp16": np.float16,
    "bf16": ml_dtypes.bfloat16,
    "e4m3": ml_dtypes.float8_e4m3fn,
    "e5m2": ml_dtypes.float8_e5m2,
    "fp32": np.float32,
}

#: Every known format by name.
FORMATS: dict[str, FPFormat] = {f.name: f for f in (FP16, BF16, E4M3, E5M2, FP32)}
#: Formats that can be PE operands (exact in fp16).
OPERAND_FORMATS: dict[str, FPFormat] = {f.name: f for f in (FP16, E4M3, E5M2)}
#: Formats an FP32 value can be converted to on store.
STORE_FORMATS: dict[str, FPFormat] = {f.name: f for f in (FP16, BF16, E4M3, E5M2)}


def format_by_name(name, allowed: dict[str, FPFormat] = FORMATS, field: str = "format") -> FPFormat:
    """Look up a format by name (or pass an :class:`FPFormat` through), with a clear error."""
    if isinstance(name, FPFormat) and name.name in allowed and allowed[name.name] == name:
        return name
    if isinstance(name, str) and name in allowed:
        return allowed[name]
    raise ValueError(f"{field} must be one of {sorted(allowed)}, not {name!r}")
