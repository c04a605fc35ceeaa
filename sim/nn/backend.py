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
* :class:`FgmpBackend`: fine-grained mixed precision. Operands rounded once to fp16 (the store
  path), then stored and loaded through the FGMP rule of :mod:`sim.fgmp` (each element FP8 or
  fp16; the class format and a per-layer threshold ``t`` chosen by
  :class:`sim.fgmp_control.FgmpController`); the golden GEMM multiplies the decoded mixed
  operands (per-element operand tags) and accumulates in fp32. Constructed directly (it takes
  a policy), not through :func:`make_backend`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ..fgmp import code_table
from ..fgmp_control import OPERAND_CLASSES, FgmpController, FgmpPolicy
from ..formats import FP16, OPERAND_FORMATS, format_by_name
from ..gemm import TAG_OF
from ..gemm import gemm as golden_gemm
from ..lowering import GEMM_KINDS
from ..numerics import from_float32, to_float32

__all__ = ["GemmCall", "GemmBackend", "Fp32Backend", "AccelBackend", "FgmpBackend", "BACKENDS",
           "make_backend"]


@dataclasses.dataclass(frozen=True)
class GemmCall:
    """One GEMM a backend executed, as reported to its listener.

    ``a``, ``b`` are the operands as the engine stores them (transposed ones as stored, not as
    read): the backend's encoding, or for FGMP the stored words (an FP8 code in the low byte
    where the element is FP8, fp16 bits elsewhere); ``a_tags``, ``b_tags`` their per-element
    operand format tags (:data:`sim.gemm.OPERAND_TAGS`), or None where every element has the
    backend's one operand format. ``c`` is the fp32 accumulator start (float32, broadcast over
    rows) or None, ``out`` the fp32 result of the GEMM (before any store rounding of the result
    itself), so that ``sim.gemm.gemm(a, b, a_fmt=a_tags, b_fmt=b_tags, ...)`` gives ``out`` bit
    for bit.
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
    a_tags: np.ndarray | None = None
    b_tags: np.ndarray | None = None

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
        self._reported = None

    def encode(self, values: np.ndarray) -> np.ndarray:
        """The tensor as the engine stores it (float32 values in, backend-specific array out)."""
        raise NotImplementedError

    def is_zero(self, encoded: np.ndarray) -> np.ndarray:
        """Elementwise: the encoded value is +0 or -0."""
        raise NotImplementedError

    def _product(self, a, b, c, transpose_a, transpose_b) -> np.ndarray:
        """The GEMM's fp32 result; a backend that stores operands differently from their
        encoding (FGMP) sets ``self._reported`` to ``(a, b, a_tags, b_tags, out)`` as stored."""
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
        self._reported = None
        out = self._product(a, b, c, transpose_a, transpose_b)
        if self.listener is not None:
            a_op, b_op, a_tags, b_tags, gemm_out = self._reported or (a, b, None, None, out)
            self.listener(GemmCall(name, kind, m, n, k, transpose_a, transpose_b, a_op, b_op, c,
                                   gemm_out, a_tags, b_tags))
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


_FP16_VALUES = to_float32(FP16, FP16.all_codes())
_FP16_VALUES.setflags(write=False)


@dataclasses.dataclass(frozen=True)
class _Stored:
    """An fp16 operand after FGMP store and load: operand words, operand tags, values."""

    words: np.ndarray      # FP8 code (low byte) where FP8, fp16 bits elsewhere
    tags: np.ndarray       # per-element operand format tag (sim.gemm.OPERAND_TAGS)
    fp16: np.ndarray       # the value after load, as fp16 bits
    fp8: int               # FP8 elements
    t: int                 # threshold it was stored with


def _relative_error(got: np.ndarray, reference: np.ndarray) -> float | None:
    """``||got - reference|| / ||reference||``; None where the reference is not finite (an
    fp16 overflow, not an FGMP effect: no report)."""
    with np.errstate(all="ignore"):
        scale = float(np.linalg.norm(reference.astype(np.float64)))
        if not np.isfinite(scale):
            return None
        if scale == 0.0:
            return 0.0
        error = float(np.linalg.norm(got.astype(np.float64) - reference)) / scale
    return error if np.isfinite(error) else float("inf")


class FgmpBackend(GemmBackend):
    """Fine-grained mixed precision: GEMM operands stored and loaded as FGMP.

    ``encode`` rounds float32 to fp16 (the store path's rounding). Each GEMM looks up the
    threshold of its layer and of each operand's tensor class (forward: X activation, W weight;
    weight gradient: X activation, dY gradient; backward data: dY gradient, W weight), stores
    the operand through the FGMP rule (:func:`sim.fgmp.code_table`, i.e.
    :func:`sim.fgmp.encode_tags`, with the class's ``policy.flush_underflow`` bit) and hands
    the PE words with per-element format tags to the golden GEMM (products exact, fp32
    accumulation, k ascending). With
    ``policy.store_weight_grad`` the weight gradient ``dW`` is rounded to fp16 and stored as
    FGMP of the gradient class before the optimizer sees it; the bias gradient stays fp32.

    Every GEMM of a training step also reports to the controller, per operand class, the
    relative error of its output with that operand alone FGMP (both-fp16 reference; float32
    BLAS products, whose rounding is far below FP8 errors) and its FP8 count.

    Parameters
    ----------
    policy : FgmpPolicy, optional
        Formats, thresholds and control (default :class:`FgmpPolicy()`).
    groups : dict, optional
        Layers sharing a stored tensor (see :class:`sim.fgmp_control.FgmpController`).
    measure : bool
        Compute the error reports (needed when ``policy.adaptive``; they cost three float32
        products per GEMM).
    """

    name = "fgmp"

    def __init__(self, *, policy: FgmpPolicy | None = None, groups: dict | None = None,
                 measure: bool = True):
        super().__init__()
        self.policy = FgmpPolicy() if policy is None else policy
        if not isinstance(measure, bool):
            raise ValueError(f"measure must be a bool, not {measure!r}")
        if self.policy.adaptive and not measure:
            raise ValueError("measure must be True when policy.adaptive is set (the control "
                             "needs the error reports)")
        self.controller = FgmpController(self.policy, groups=groups)
        self.measure = measure
        self._call: tuple[str, str, str] | None = None

    def encode(self, values):
        return from_float32(FP16, values, saturate=False)

    def is_zero(self, encoded):
        return (encoded & ~np.array(FP16.sign_mask, dtype=encoded.dtype)) == 0

    def gemm(self, a, b, *, name: str, kind: str, transpose_a: bool = False,
             transpose_b: bool = False, c: np.ndarray | None = None) -> np.ndarray:
        layer = name.rsplit(".", 1)[0]
        self._call = (layer, kind, name)
        try:
            return super().gemm(a, b, name=name, kind=kind, transpose_a=transpose_a,
                                transpose_b=transpose_b, c=c)
        finally:
            self._call = None

    def store(self, fp16_bits: np.ndarray, layer: str, cls: str) -> _Stored:
        """An fp16 tensor as ``layer`` stores tensors of class ``cls`` (FGMP, current ``t``)."""
        fmt8 = self.policy.format_of(cls)
        t = self.controller.t(layer, cls)
        tags, payload, decoded = code_table(fmt8, t, flush_underflow=self.policy.flushes(cls))
        is_fp8 = tags[fp16_bits]
        operand_tags = np.where(is_fp8, TAG_OF[fmt8.name], 0).astype(np.uint8)
        return _Stored(payload[fp16_bits], operand_tags, decoded[fp16_bits],
                       int(np.count_nonzero(is_fp8)), t)

    def stored_values(self, fp16_bits: np.ndarray, layer: str, cls: str) -> np.ndarray:
        """float32 values of an fp16 tensor after FGMP store and load by ``layer``."""
        fmt8 = self.policy.format_of(cls)
        _, _, decoded = code_table(fmt8, self.controller.t(layer, cls),
                                   flush_underflow=self.policy.flushes(cls))
        return _FP16_VALUES[decoded[fp16_bits]]

    def _product(self, a, b, c, transpose_a, transpose_b):
        if self._call is None:
            raise ValueError("FgmpBackend products go through gemm()")
        layer, kind, name = self._call
        if kind == "forward":
            self.controller.begin_forward(layer)
        a_cls, b_cls = OPERAND_CLASSES[kind]
        a_stored = self.store(a, layer, a_cls)
        b_stored = self.store(b, layer, b_cls)
        c_bits = None if c is None else c.view(np.uint32)
        out = golden_gemm(a_stored.words, b_stored.words, a_fmt=a_stored.tags,
                          b_fmt=b_stored.tags, c_bits=c_bits, transpose_a=transpose_a,
                          transpose_b=transpose_b).view(np.float32)
        self._reported = (a_stored.words, b_stored.words, a_stored.tags, b_stored.tags, out)
        errors = (None, None)
        if self.measure:
            errors = self._operand_errors(a, b, layer, (a_cls, b_cls), transpose_a, transpose_b)
        self.controller.report(layer, kind, a_cls, t=a_stored.t, error=errors[0],
                               fp8=a_stored.fp8, elements=a.size)
        self.controller.report(layer, kind, b_cls, t=b_stored.t, error=errors[1],
                               fp8=b_stored.fp8, elements=b.size)
        if self.policy.store_weight_grad and name.endswith(".weight_grad"):
            stored = self.store(from_float32(FP16, out, saturate=False), layer, "gradient")
            values = _FP16_VALUES[stored.fp16]
            error = _relative_error(values, out) if self.measure else None
            self.controller.report(layer, kind, "gradient", t=stored.t, error=error,
                                   fp8=stored.fp8, elements=out.size)
            out = values
        return out

    def _operand_errors(self, a, b, layer, classes, transpose_a, transpose_b):
        def oriented(values, transpose):
            return values.T if transpose else values

        a16 = oriented(_FP16_VALUES[a], transpose_a)
        b16 = oriented(_FP16_VALUES[b], transpose_b)
        reference = a16 @ b16
        a_q = oriented(self.stored_values(a, layer, classes[0]), transpose_a)
        b_q = oriented(self.stored_values(b, layer, classes[1]), transpose_b)
        with np.errstate(all="ignore"):
            return _relative_error(a_q @ b16, reference), _relative_error(a16 @ b_q, reference)


#: Backends by name.
BACKENDS = {"accel": AccelBackend, "fp32": Fp32Backend}


def make_backend(name: str) -> GemmBackend:
    """A fresh backend by name (one of :data:`BACKENDS`)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, not {name!r}")
    return BACKENDS[name]()
