"""GEMM backends: where every product of a network's training step is computed.

A layer never multiplies matrices itself. It *encodes* each operand tensor once, in the form
the engine stores it (:meth:`GemmBackend.encode`), builds the stored operand (im2col is a
gather, so it works on encoded tensors) and asks the backend for the GEMM with the transposes
as flags (:meth:`GemmBackend.gemm`). Everything else (ReLU, dropout, pooling, residual adds,
col2im, softmax, the optimizer) is the same fp32 host code for every backend, so two training
runs with the same seed differ only in GEMM numerics.

* :class:`Fp32Backend`: float32 operands, numpy float32 matmul (the FP32 reference; BLAS
  accumulation order).
* :class:`AccelBackend`: operands rounded once from float32 to fp16 (or an FP8 format) with
  :func:`sim.numerics.from_float32`, products accumulated by the golden GEMM
  :func:`sim.gemm.gemm` (fp32, k ascending), i.e. the accelerator's numerics bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ..formats import OPERAND_FORMATS, format_by_name
from ..gemm import gemm as golden_gemm
from ..lowering import GEMM_KINDS
from ..numerics import from_float32

__all__ = ["GemmCall", "GemmBackend", "Fp32Backend", "AccelBackend", "BACKENDS", "make_backend"]


@dataclasses.dataclass(frozen=True)
class GemmCall:
    """One GEMM a backend executed, as reported to its listener.

    ``a``, ``b`` are the encoded operands as stored (transposed ones as stored, not as read),
    ``c`` the fp32 accumulator start (float32, broadcast over rows) or None, ``out`` the fp32
    result.
    """

    name: str
    kind: str
    M: int
    N: int
    K: int
    transpose_a: bool
    transpose_b: bool
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray | None
    out: np.ndarray

    @property
    def accumulate(self) -> bool:
        return self.c is not None


class GemmBackend:
    """Common part of the backends: operand checks and the listener hook.

    Attributes
    ----------
    listener : callable or None
        Called with a :class:`GemmCall` after every GEMM (command traces, captures).
    """

    name = "abstract"

    def __init__(self):
        self.listener: Callable[[GemmCall], None] | None = None

    def encode(self, values: np.ndarray) -> np.ndarray:
        """The tensor as the engine stores it (float32 values in, backend-specific array out)."""
        raise NotImplementedError

    def is_zero(self, encoded: np.ndarray) -> np.ndarray:
        """Elementwise: the encoded value is +0 or -0."""
        raise NotImplementedError

    def _product(self, a, b, c, transpose_a, transpose_b) -> np.ndarray:
        raise NotImplementedError

    def gemm(self, a, b, *, name: str, kind: str, transpose_a: bool = False,
             transpose_b: bool = False, c: np.ndarray | None = None) -> np.ndarray:
        """``A . B`` (+ ``c``) from encoded operands; returns float32 of shape (M, N).

        Parameters
        ----------
        a, b : encoded arrays, 2-D
            As stored: A is (M, K), or (K, M) with ``transpose_a``; B is (K, N), or (N, K) with
            ``transpose_b``.
        name, kind : str
            The command name (``"conv1.forward"``) and its kind (one of
            :data:`sim.lowering.GEMM_KINDS`), reported to the listener.
        c : float32 array broadcastable to (M, N), optional
            Accumulator start (e.g. a bias row); ``+0`` if omitted.
        """
        if kind not in GEMM_KINDS:
            raise ValueError(f"kind must be one of {list(GEMM_KINDS)}, not {kind!r}")
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"{name}: operands must be 2-D, not {a.shape} and {b.shape}")
        m, k = a.shape[::-1] if transpose_a else a.shape
        k_b, n = b.shape[::-1] if transpose_b else b.shape
        if k != k_b:
            raise ValueError(f"{name}: inner dimensions differ: A is {m}x{k}, B is {k_b}x{n}")
        if c is not None:
            c = np.asarray(c)
            if c.dtype != np.float32:
                raise ValueError(f"{name}: c must be float32, not {c.dtype}")
            c = np.broadcast_to(c, (m, n))
        out = self._product(a, b, c, transpose_a, transpose_b)
        if self.listener is not None:
            self.listener(GemmCall(name, kind, m, n, k, transpose_a, transpose_b, a, b, c, out))
        return out


class Fp32Backend(GemmBackend):
    """FP32 reference: float32 operands, numpy float32 matmul."""

    name = "fp32"

    def encode(self, values):
        values = np.asarray(values)
        if values.dtype != np.float32:
            raise ValueError(f"values must be float32, not {values.dtype}")
        return values

    def is_zero(self, encoded):
        return encoded == 0

    def _product(self, a, b, c, transpose_a, transpose_b):
        out = np.matmul(a.T if transpose_a else a, b.T if transpose_b else b)
        return out if c is None else out + c


class AccelBackend(GemmBackend):
    """The accelerator's numerics: operands rounded once to ``operand_format``, golden GEMM.

    Parameters
    ----------
    operand_format : str
        Storage format of every GEMM operand: ``"fp16"`` (default), ``"e4m3"`` or ``"e5m2"``.
    saturate : bool
        Overflow policy of the float32 -> operand rounding (see :mod:`sim.numerics`).
    """

    name = "accel"

    def __init__(self, *, operand_format="fp16", saturate: bool = False):
        super().__init__()
        self.fmt = format_by_name(operand_format, OPERAND_FORMATS, field="operand_format")
        if not isinstance(saturate, bool):
            raise ValueError(f"saturate must be a bool, not {saturate!r}")
        self.saturate = saturate

    def encode(self, values):
        return from_float32(self.fmt, values, saturate=self.saturate)

    def is_zero(self, encoded):
        return (encoded & ~np.array(self.fmt.sign_mask, dtype=encoded.dtype)) == 0

    def _product(self, a, b, c, transpose_a, transpose_b):
        c_bits = None if c is None else c.view(np.uint32)
        bits = golden_gemm(a, b, a_fmt=self.fmt, b_fmt=self.fmt, c_bits=c_bits,
                           transpose_a=transpose_a, transpose_b=transpose_b)
        return bits.view(np.float32)


#: Backends by name.
BACKENDS = {"accel": AccelBackend, "fp32": Fp32Backend}


def make_backend(name: str) -> GemmBackend:
    """A fresh backend by name (one of :data:`BACKENDS`)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, not {name!r}")
    return BACKENDS[name]()
