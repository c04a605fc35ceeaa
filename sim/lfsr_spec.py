"""The dropout LFSR the gateware (``hw/sparsity/dropout_mask.py``) is built from: its width, its
feedback mask, the row stride of a mask and the jump ahead by a fixed number of steps (the
constant XOR network the hardware instantiates). How a mask's bits are read off the sequence is
the golden model's (:mod:`sim.lfsr`, which re-exports everything here). Pure Python and numpy:
no Amaranth here.

Generator
---------
A Galois LFSR shifting right: each step outputs the low bit ``out = state & 1``, then
``state = (state >> 1) ^ (mask if out else 0)``. The default feedback mask ``0x80200003`` is
the polynomial ``x^32 + x^22 + x^2 + x + 1``, primitive, so from any state other than 0 the
sequence has the full period ``2^32 - 1`` (state 0 is a fixed point and is refused as a seed).
In hardware: 32 flip-flops and 4 XOR gates, or an XOR network for several steps per cycle.

Advancing ``n`` steps is linear over GF(2): a constant ``width x width`` matrix
(:func:`lfsr_jump`), an XOR network in hardware.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["WIDTH", "FEEDBACK_MASK", "MAXIMAL_MASKS", "ROW_STRIDE", "MAX_ROWS", "MAX_BITS",
           "lfsr_jump"]

#: State width of the dropout LFSR.
WIDTH = 32
#: Feedback mask of the right-shifting Galois LFSR: ``x^32 + x^22 + x^2 + x + 1``.
FEEDBACK_MASK = 0x80200003
#: Maximal-length feedback masks (right-shifting Galois form) by width, for tests and
#: smaller generators: ``x^3+x^2+1``, ``x^4+x^3+1``, ``x^5+x^3+1``, ``x^8+x^6+x^5+x^4+1``,
#: ``x^16+x^14+x^13+x^11+1``, and the 32-bit one above.
MAXIMAL_MASKS = {3: 0x6, 4: 0xC, 5: 0x14, 8: 0xB8, 16: 0xB400, 32: FEEDBACK_MASK}
#: LFSR steps between the starts of consecutive rows of a mask (``cols * bits`` must fit).
ROW_STRIDE = 1 << 16
#: Most rows a mask may have: their segments of the sequence do not overlap.
MAX_ROWS = ((1 << WIDTH) - 1) // ROW_STRIDE
#: Most bits per element.
MAX_BITS = 16


def _check_width_mask(width, mask) -> tuple[int, int]:
    if isinstance(width, bool) or not isinstance(width, int) or not 2 <= width <= 32:
        raise ValueError(f"width must be an integer in 2..32, not {width!r}")
    if mask is None:
        if width not in MAXIMAL_MASKS:
            raise ValueError(f"width {width} has no default feedback mask: give mask, or use "
                             f"one of {sorted(MAXIMAL_MASKS)}")
        mask = MAXIMAL_MASKS[width]
    if isinstance(mask, bool) or not isinstance(mask, int) or not 0 < mask < (1 << width) \
            or not mask >> (width - 1):
        raise ValueError(f"mask must be a {width}-bit integer with bit {width - 1} set, "
                         f"not {mask!r}")
    return width, mask


def _check_states(states, width: int, field: str = "seed") -> np.ndarray:
    array = np.asarray(states)
    if array.dtype == np.bool_ or array.dtype.kind not in "ui":
        raise ValueError(f"{field} must be an integer (or integer array) in "
                         f"1..{(1 << width) - 1}, not {states!r}")
    if array.size and (array.min() < 1 or array.max() >= (1 << width)):
        raise ValueError(f"{field} must be in 1..{(1 << width) - 1} (the all-zero state never "
                         f"leaves itself), not {states!r}")
    return array.astype(np.uint64)


@functools.cache
def _jump_columns(width: int, mask: int, steps: int) -> tuple[int, ...]:
    """The LFSR advanced ``steps`` times as a GF(2) matrix: images of the unit states."""
    def apply(columns, state):
        out = 0
        for bit, column in enumerate(columns):
            if state >> bit & 1:
                out ^= column
        return out

    one_step = tuple((1 << bit) >> 1 ^ (mask if bit == 0 else 0) for bit in range(width))
    result = tuple(1 << bit for bit in range(width))         # identity
    power = one_step
    while steps:
        if steps & 1:
            result = tuple(apply(power, column) for column in result)
        power = tuple(apply(power, column) for column in power)
        steps >>= 1
    return result


def _apply_columns(columns, states: np.ndarray) -> np.ndarray:
    out = np.zeros_like(states)
    for bit, column in enumerate(columns):
        out ^= ((states >> np.uint64(bit)) & np.uint64(1)) * np.uint64(column)
    return out


def lfsr_jump(seed, steps: int, *, width: int = WIDTH, mask: int | None = None) -> np.ndarray:
    """The state ``steps`` steps after ``seed`` (an integer or array), in ``O(width^2 log
    steps)`` (the hardware's constant XOR network for a fixed jump)."""
    width, mask = _check_width_mask(width, mask)
    states = _check_states(seed, width)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, not {steps!r}")
    return _apply_columns(_jump_columns(width, mask, steps), states)
