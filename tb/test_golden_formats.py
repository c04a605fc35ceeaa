"""FPFormat facts checked against ml_dtypes / numpy, and its bad-input errors.

Plain pytest (no simulator). Only :func:`test_layout_field_widths` touches Amaranth, through
:attr:`FPFormat.layout`.
"""

from __future__ import annotations

import math
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from sim.formats import (BF16, E4M3, E5M2, FORMATS, FP16, FP32, OPERAND_FORMATS, STORE_FORMATS,
                         FPFormat, NanStyle, format_by_name)

ALL = list(FORMATS.values())
NARROW = [FP16, BF16, E4M3, E5M2]

# name: (width, exp_bits, man_bits, bias, max_finite, min_subnormal, value dtype, bits dtype)
FACTS = {
    "fp16": (16, 5, 10, 15, 65504.0, 2.0 ** -24, np.float16, np.uint16),
    "bf16": (16, 8, 7, 127, (2 - 2.0 ** -7) * 2.0 ** 127, 2.0 ** -133, ml_dtypes.bfloat16,
             np.uint16),
    "e4m3": (8, 4, 3, 7, 448.0, 2.0 ** -9, ml_dtypes.float8_e4m3fn, np.uint8),
    "e5m2": (8, 5, 2, 15, 57344.0, 2.0 ** -16, ml_dtypes.float8_e5m2, np.uint8),
    "fp32": (32, 8, 23, 127, float(np.finfo(np.float32).max), 2.0 ** -149, np.float32, np.uint32),
}


def _finfo(fmt: FPFormat):
    return ml_dtypes.finfo(fmt.dtype)


# -- facts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ALL, ids=str)
def test_geometry(fmt):
    width, exp_bits, man_bits, bias, *_ = FACTS[fmt.name]
    assert (fmt.width, fmt.exp_bits, fmt.man_bits, fmt.bias) == (width, exp_bits, man_bits, bias)
    info = _finfo(fmt)
    assert fmt.width == info.bits
    assert fmt.man_bits == info.nmant
    assert fmt.emin == info.minexp
    assert fmt.emax == info.maxexp - 1
    assert fmt.sign_mask == 1 << (width - 1)
    assert fmt.exp_max_field == (1 << exp_bits) - 1


@pytest.mark.parametrize("fmt", ALL, ids=str)
def test_extreme_values(fmt):
    *_, max_finite, min_subnormal, _, _ = FACTS[fmt.name]
    info = _finfo(fmt)
    assert fmt.max_finite == max_finite == float(info.max)
    assert fmt.min_subnormal == min_subnormal == float(info.smallest_subnormal)
    assert fmt.decode_one(fmt.max_finite_bits) == max_finite
    assert fmt.decode_one(fmt.max_finite_bits | fmt.sign_mask) == -max_finite
    assert fmt.decode_one(1) == min_subnormal
    assert fmt.decode_one(1 << fmt.man_bits) == float(info.smallest_normal)


def test_bf16_max_finite_literal():
    assert f"{BF16.max_finite:.4g}" == "3.39e+38"
    assert math.isclose(BF16.max_finite, 3.389e38, rel_tol=1e-3)


@pytest.mark.parametrize("fmt", ALL, ids=str)
def test_nan_bits(fmt):
    assert math.isnan(fmt.decode_one(fmt.nan_bits))
    assert fmt.nan_bits & fmt.sign_mask == 0, "canonical NaN is positive"
    if fmt.nan_style is NanStyle.IEEE:
        quiet = 1 << (fmt.man_bits - 1)
        assert fmt.nan_bits == (fmt.exp_max_field << fmt.man_bits) | quiet
    else:
        assert fmt.nan_bits == (1 << (fmt.width - 1)) - 1  # S.1111.111 with S = 0
    # every code that decodes to NaN is in the top binade
    if fmt.width <= 16:
        codes = fmt.all_codes()
        nan = np.isnan(codes.view(fmt.dtype).astype(np.float32))
        assert ((codes[nan] >> fmt.man_bits) & fmt.exp_max_field == fmt.exp_max_field).all()


@pytest.mark.parametrize("fmt", ALL, ids=str)
def test_inf_bits(fmt):
    if fmt is E4M3:
        assert fmt.inf_bits is None and not fmt.has_inf
        codes = fmt.all_codes()
        assert not np.isinf(codes.view(fmt.dtype).astype(np.float32)).any()
        return
    assert fmt.has_inf
    assert fmt.decode_one(fmt.inf_bits) == math.inf
    assert fmt.decode_one(fmt.inf_bits | fmt.sign_mask) == -math.inf
    assert fmt.inf_bits == fmt.max_finite_bits + 1


@pytest.mark.parametrize("fmt", ALL, ids=str)
def test_dtypes(fmt):
    *_, dtype, bits_dtype = FACTS[fmt.name]
    assert fmt.dtype == np.dtype(dtype)
    assert fmt.bits_dtype == np.dtype(bits_dtype)
    assert fmt.dtype.itemsize == fmt.bits_dtype.itemsize == fmt.width // 8


@pytest.mark.parametrize("fmt", NARROW, ids=str)
def test_all_codes(fmt):
    codes = fmt.all_codes()
    assert codes.dtype == fmt.bits_dtype
    assert np.array_equal(codes.astype(np.int64), np.arange(1 << fmt.width))


def test_all_codes_refuses_fp32():
    with pytest.raises(ValueError, match="widths up to 16"):
        FP32.all_codes()


def test_format_tables():
    assert sorted(FORMATS) == ["bf16", "e4m3", "e5m2", "fp16", "fp32"]
    assert sorted(OPERAND_FORMATS) == ["e4m3", "e5m2", "fp16"]
    assert sorted(STORE_FORMATS) == ["bf16", "e4m3", "e5m2", "fp16"]
    for table in (FORMATS, OPERAND_FORMATS, STORE_FORMATS):
        for name, fmt in table.items():
            assert fmt.name == name and str(fmt) == name


@pytest.mark.parametrize("fmt", ALL, ids=str)
def test_layout_field_widths(fmt):
    """The one test that needs Amaranth: the gateware layout has the same geometry."""
    layout = fmt.layout
    assert layout.size == fmt.width
    fields = {name: (field.offset, field.width) for name, field in layout}
    assert fields == {"man": (0, fmt.man_bits),
                      "exp": (fmt.man_bits, fmt.exp_bits),
                      "sign": (fmt.man_bits + fmt.exp_bits, 1)}


def test_golden_models_import_no_gateware():
    """Importing the golden models must not pull in Amaranth or cocotb."""
    probe = ("import sys, sim.formats, sim.numerics\n"
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('amaranth', 'cocotb'))\n"
             "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fp8", "FP16", "", "e4m3fn", None, 16])
def test_format_by_name_unknown(name):
    with pytest.raises(ValueError) as info:
        format_by_name(name)
    message = str(info.value)
    assert message.startswith("format must be one of")
    for allowed in FORMATS:
        assert repr(allowed) in message
    assert repr(name) in message


def test_format_by_name_field_and_allowed():
    with pytest.raises(ValueError, match=r"store must be one of \['bf16', 'e4m3', 'e5m2', "
                                         r"'fp16'\], not 'fp32'"):
        format_by_name("fp32", STORE_FORMATS, field="store")
    with pytest.raises(ValueError, match="store must be one of"):
        format_by_name(FP32, STORE_FORMATS, field="store")


def test_format_by_name_accepts_names_and_objects():
    for name, fmt in FORMATS.items():
        assert format_by_name(name) is fmt
        assert format_by_name(fmt) is fmt


def test_format_by_name_refuses_foreign_object():
    impostor = FPFormat("fp16", exp_bits=5, man_bits=10, bias=14)
    with pytest.raises(ValueError, match="format must be one of"):
        format_by_name(impostor)


@pytest.mark.parametrize("exp_bits", [0, 1, 12, 5.0, "5", None])
def test_bad_exp_bits(exp_bits):
    with pytest.raises(ValueError, match=r"exp_bits must be an integer in 2\.\.11, not "):
        FPFormat("x", exp_bits=exp_bits, man_bits=3, bias=7)


@pytest.mark.parametrize("man_bits", [0, -1, 53, 3.0, "3", None])
def test_bad_man_bits(man_bits):
    with pytest.raises(ValueError, match=r"man_bits must be an integer in 1\.\.52, not "):
        FPFormat("x", exp_bits=4, man_bits=man_bits, bias=7)


@pytest.mark.parametrize("nan_style", ["fn", "ieee", None, 0])
def test_bad_nan_style(nan_style):
    with pytest.raises(ValueError, match=r"nan_style must be one of \['IEEE', 'FN'\]"):
        FPFormat("x", exp_bits=4, man_bits=3, bias=7, nan_style=nan_style)


def test_format_is_frozen():
    with pytest.raises(AttributeError):
        FP16.man_bits = 9
