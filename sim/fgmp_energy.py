"""Energy estimate of a training step: a documented per-operation table, FGMP against fp16.

Sources (45 nm, 0.9 V): M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, table of operation and memory access energies (fp16 add 0.4 pJ, fp16
multiply 1.1 pJ, fp32 add 0.9 pJ, fp32 multiply 3.7 pJ; SRAM 64-bit access from a 32 KB array
20 pJ; DRAM 64-bit access 1.3-2.6 nJ).

Assumptions (stated in ``docs/fgmp.md``):

* FP8 x FP8 multiply = fp16 multiply / 4 (the FGMP publication's "about 4x less energy than
  fp16"); FP8 x fp16 multiply = fp16 multiply / 2 (one operand narrow: between the two; a
  multiplier's energy grows with the product of the significand widths, 4 x 11 against 11 x 11
  and 4 x 4, which would put it lower, at ~1/2.75).
* Every product is accumulated by one fp32 add (the accumulators are fp32 in both schemes).
* DRAM: the lower end of Horowitz's range, 1.3 nJ per 64 bits (conservative for FGMP, whose
  gain is mostly fewer DRAM bytes).
* Every DRAM byte is written into an on-chip SRAM buffer once and read out of it once (32 KB
  array figure, per byte); operand reuse inside the PE array (registers) is not counted; it is
  the same dense dataflow in both schemes.
* Not counted: control, the FGMP pack/unpack logic, leakage, the host's optimizer.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["EnergyTable", "HOROWITZ_45NM", "step_energy"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnergyTable:
    """Energy per operation in picojoules (all > 0)."""

    mul_fp16_fp16: float
    mul_fp8_fp16: float
    mul_fp8_fp8: float
    add_fp32: float
    dram_per_byte: float
    sram_per_byte: float
    source: str = ""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if field.name == "source":
                continue
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value <= 0:
                raise ValueError(f"{field.name} must be a finite number > 0 (pJ), not {value!r}")


_FP16_MUL = 1.1
#: The table used by ``scripts/fgmp_bench.py`` (see the module docstring).
HOROWITZ_45NM = EnergyTable(
    mul_fp16_fp16=_FP16_MUL,
    mul_fp8_fp16=_FP16_MUL / 2,
    mul_fp8_fp8=_FP16_MUL / 4,
    add_fp32=0.9,
    dram_per_byte=1300.0 / 8,
    sram_per_byte=20.0 / 8,
    source="Horowitz, ISSCC 2014, 45 nm: fp16 mul 1.1 pJ, fp32 add 0.9 pJ, 32 KB SRAM 20 pJ "
           "and DRAM 1.3 nJ per 64-bit access; FP8 x FP8 mul = fp16 / 4 (FGMP publication), "
           "FP8 x fp16 mul = fp16 / 2 (assumption)")


def step_energy(*, products: dict, dram_bytes: int, table: EnergyTable = HOROWITZ_45NM) -> dict:
    """Energy of one training step in pJ, by component.

    Parameters
    ----------
    products : dict
        ``fp8_fp8``, ``fp8_fp16``, ``fp16_fp16`` product counts and ``macs`` (their sum).
    dram_bytes : int
        Bytes on the DRAM bus.
    table : EnergyTable
    """
    if not isinstance(table, EnergyTable):
        raise ValueError(f"table must be an EnergyTable, not {table!r}")
    keys = ("fp8_fp8", "fp8_fp16", "fp16_fp16", "macs")
    if not isinstance(products, dict) or set(products) != set(keys):
        raise ValueError(f"products must be a dict with keys {list(keys)}, not {products!r}")
    if sum(products[k] for k in keys[:3]) != products["macs"]:
        raise ValueError("products: fp8_fp8 + fp8_fp16 + fp16_fp16 must equal macs")
    multiply = (products["fp8_fp8"] * table.mul_fp8_fp8 +
                products["fp8_fp16"] * table.mul_fp8_fp16 +
                products["fp16_fp16"] * table.mul_fp16_fp16)
    out = {
        "multiply_pj": multiply,
        "accumulate_pj": products["macs"] * table.add_fp32,
        "dram_pj": dram_bytes * table.dram_per_byte,
        "sram_pj": 2 * dram_bytes * table.sram_per_byte,
    }
    out["total_pj"] = sum(out.values())
    return out
