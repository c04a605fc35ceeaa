"""What the AIP output selection shares between its golden model and its gateware: modes,
error codes, field widths.

AIP (approximate inner products) runs a fully connected layer twice: an approximate pass with a
small subset of the weights, then an exact pass of only the outputs the approximate pass
selects. The *selection* turns one row of approximate results (FP32, one sample's ``N``
outputs) into one row of keep bits:

* ``THRESHOLD`` (a ReLU layer): output ``j`` is kept when ``y[j] > t[j]`` in IEEE-754
  single-precision order (``-0 == +0``); a NaN ``y[j]`` is kept (the exact pass decides). The
  per-output threshold ``t[j]`` is FP32 and must not be NaN (``BAD_THRESHOLD``); ``+inf`` keeps
  only NaNs, ``-inf`` keeps everything but ``-inf``.
* ``TOP_N`` (the last layer): the ``n`` outputs with the largest ``y`` are kept, NaN above
  every number, equal values (``-0`` and ``+0`` included) ranked by the lower column index.
  ``1 <= n <= N`` (``BAD_N``).

Pure Python; no Amaranth, no numpy.
"""

from __future__ import annotations

import enum

__all__ = ["SelectMode", "SelectError", "N_BITS"]


class SelectMode(enum.IntEnum):
    """How a row's keep bits are chosen."""
    THRESHOLD = 0
    TOP_N = 1


class SelectError(enum.IntEnum):
    """Why a selection command was refused (the status code of the gateware; the golden
    model raises ``ValueError`` naming the same condition)."""
    NONE = 0
    BAD_THRESHOLD = 1   # a threshold is NaN
    BAD_N = 2           # top-n with n = 0 or n > N
    ZERO_SIZE = 3       # no rows or no columns
    BAD_MODE = 4        # a mode code outside SelectMode
    RANGE = 5           # beyond a limit of the hardware instance (row length, n, threshold index)


#: Bits of the ``n`` and row-length fields of a selection command.
N_BITS = 16
