"""AIP (approximate inner products): the golden model of the output selection.

The modes and error codes are those of :mod:`sim.aip_spec` (read its docstring). Values are
float32 arrays whose bit patterns are the FP32 words of the accumulator; the results are boolean
keep masks of the same ``(M, N)`` shape (row ``i``: sample ``i``, column ``j``: output ``j``).

The procedure around the selection (the compact weights of the approximate pass, the pass
itself, the masked exact pass and the class ranking) is :func:`aip`, in the accelerator's
numerics when given the ``accel`` backend of :mod:`sim.nn.backend`; the measurement that picks
thresholds and candidates on a validation split is :mod:`sim.experiments.aip`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .aip_spec import SelectMode

__all__ = ["threshold_keep", "top_n_keep", "select_keep", "POLICIES", "FRACTION", "WEIGHT_BYTES",
           "BIAS_BYTES", "index_bits", "ApproxWeights", "approximate_weights",
           "approximate_pass", "AipPlan", "AipResult", "aip", "aip_rank"]


def _rows(y) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype != np.float32 or y.ndim != 2:
        raise ValueError(f"y must be a 2-D float32 array (samples x outputs), not "
                         f"{y.dtype} of shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"y must have rows and columns, not shape {y.shape}")
    return y


def threshold_keep(y, thresholds) -> np.ndarray:
    """``THRESHOLD`` mode: keep ``y[i, j] > thresholds[j]`` (IEEE order), or ``y[i, j]`` NaN."""
    y = _rows(y)
    t = np.asarray(thresholds)
    if t.dtype != np.float32 or t.shape != (y.shape[1],):
        raise ValueError(f"thresholds must be float32 of shape ({y.shape[1]},), not {t.dtype} "
                         f"of shape {t.shape}")
    if np.isnan(t).any():
        raise ValueError(f"thresholds must not be NaN (columns "
                         f"{np.flatnonzero(np.isnan(t)).tolist()})")
    with np.errstate(invalid="ignore"):
        return (y > t[None, :]) | np.isnan(y)


def top_n_keep(y, n: int) -> np.ndarray:
    """``TOP_N`` mode: per row, the ``n`` largest values kept (NaN largest; ties by the lower
    column index)."""
    y = _rows(y)
    columns = y.shape[1]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= columns:
        raise ValueError(f"n must be an integer in 1..{columns} (the outputs), not {n!r}")
    # sort key: NaN first, then descending value (-0 == +0), then ascending column
    value = np.where(np.isnan(y), np.float32(0), y).astype(np.float64) + 0.0   # -0 -> +0
    index = np.broadcast_to(np.arange(columns), y.shape)
    order = np.lexsort((index, -value, ~np.isnan(y)), axis=1)
    keep = np.zeros(y.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :n], True, axis=1)
    return keep


def select_keep(y, mode: SelectMode, *, thresholds=None, n: int | None = None) -> np.ndarray:
    """The keep mask of ``mode`` (``thresholds`` for ``THRESHOLD``, ``n`` for ``TOP_N``)."""
    if mode == SelectMode.THRESHOLD:
        return threshold_keep(y, thresholds)
    if mode == SelectMode.TOP_N:
        return top_n_keep(y, n)
    raise ValueError(f"mode must be one of {[m.name for m in SelectMode]}, not {mode!r}")


# ---------------------------------------------------------------------------------------------
# The AIP procedure: approximate pass, selection, exact pass of the selected outputs.
# ---------------------------------------------------------------------------------------------

#: Subset policies of the approximate pass (see :func:`approximate_weights`).
POLICIES = ("stride", "magnitude", "lowrank")
#: The approximate pass reads at most 1/FRACTION of the layer's dense fp16 weight bytes.
FRACTION = 16
#: Bytes of one stored weight or activation (fp16) and of one bias element (the fp32
#: accumulator start).
WEIGHT_BYTES, BIAS_BYTES = 2, 4


def _order(y: np.ndarray) -> np.ndarray:
    """Column order of each row as ``TOP_N`` ranks it: NaN first, then descending value
    (``-0 == +0``), ties by the lower column index (``top_n_keep(y, n)`` keeps the first
    ``n``)."""
    value = np.where(np.isnan(y), np.float32(0), y).astype(np.float64) + 0.0
    index = np.broadcast_to(np.arange(y.shape[1]), y.shape)
    return np.lexsort((index, -value, ~np.isnan(y)), axis=1)


def index_bits(k: int) -> int:
    """Bits of one input-feature index of a layer with ``k`` inputs: ``ceil(log2 k)``
    (at least 1)."""
    return max(1, (int(k) - 1).bit_length())


def _check_policy(policy) -> str:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {list(POLICIES)}, not {policy!r}")
    return policy


@dataclasses.dataclass(frozen=True, eq=False)
class ApproxWeights:
    """The compact weights of one fully connected layer's approximate pass (built offline
    from the trained FP32 weights by :func:`approximate_weights`; float32 master values, the
    backend encodes them to the operand format at use).

    Attributes
    ----------
    policy : str
        One of :data:`POLICIES`.
    k, n : int
        Inputs and outputs of the layer.
    rows : int array or None
        ``stride``: the input features kept (every ``FRACTION``-th, from 0).
    weight : float32 array
        ``stride``: ``(len(rows), n)``, the kept rows of ``W`` times ``k / len(rows)``
        (the partial sum scaled to estimate the full one); ``magnitude``: ``(k, n)``, ``W``
        with all but the ``kept`` largest ``|w|`` of each output column set to ``+0``
        (stored on the engine as this dense matrix with zeros); ``lowrank``: the left factor
        ``(k, r)``.
    right : float32 array or None
        ``lowrank``: the right factor ``(r, n)``.
    kept : int
        ``magnitude``: weights kept per output; ``stride``: ``len(rows)``; ``lowrank``: ``r``.
    """

    policy: str
    k: int
    n: int
    weight: np.ndarray
    kept: int
    rows: np.ndarray | None = None
    right: np.ndarray | None = None

    @property
    def value_count(self) -> int:
        """fp16 values fetched from DRAM by the approximate pass."""
        if self.policy == "stride":
            return self.kept * self.n
        if self.policy == "magnitude":
            return self.kept * self.n
        return self.kept * (self.k + self.n)

    @property
    def index_bytes(self) -> int:
        """Index bytes fetched with the values: ``magnitude`` only, ``ceil(log2 k)`` bits per
        kept weight, the layer's total rounded up to whole bytes (the stride's rows and the
        factors need no index)."""
        if self.policy != "magnitude":
            return 0
        return -(-self.kept * self.n * index_bits(self.k) // 8)

    @property
    def weight_bytes(self) -> int:
        """DRAM bytes of the approximate pass's weights (values + indices, no bias)."""
        return WEIGHT_BYTES * self.value_count + self.index_bytes

    @property
    def macs(self) -> int:
        """MACs per sample as the engine runs the approximate pass (``magnitude``: the dense
        ``k x n`` GEMM with zeros)."""
        if self.policy == "stride":
            return self.kept * self.n
        if self.policy == "magnitude":
            return self.k * self.n
        return self.kept * (self.k + self.n)

    @property
    def nonzero_macs(self) -> int:
        """MACs per sample with a non-zero weight (``magnitude``: the kept weights only)."""
        return self.value_count


def approximate_weights(weight, policy: str, *, fraction: int = FRACTION) -> ApproxWeights:
    """The compact weights of ``policy`` for a layer's FP32 weight matrix ``(k, n)``, within
    a budget of ``k * n / fraction`` fp16 values (``2 k n / fraction`` bytes, index bytes
    included):

    * ``stride``: input features ``0, fraction, 2 fraction, ...`` (``ceil(k / fraction)``
      rows, so at most one row over the budget when ``fraction`` does not divide ``k``),
      scaled by ``k / rows`` in float32;
    * ``magnitude``: per output column the ``floor(k / (16 + b))`` (at least 1) largest
      ``|w|``, ``b = ceil(log2 k)`` index bits: 16 value bits plus ``b`` index bits per kept
      weight within the ``16 k / fraction`` bits of the column (at ``fraction`` 16); equal
      magnitudes by the lower row; unscaled;
    * ``lowrank``: rank ``r = floor(k n / (fraction (k + n)))`` (at least 1) from the SVD of
      ``W`` (float64, done once offline): left ``U_r sqrt(S_r)``, right ``sqrt(S_r) V_r^T``,
      rounded to float32.
    """
    _check_policy(policy)
    w = np.asarray(weight)
    if w.dtype != np.float32 or w.ndim != 2 or w.size == 0:
        raise ValueError(f"weight must be a non-empty 2-D float32 array (inputs x outputs), "
                         f"not {w.dtype} of shape {w.shape}")
    if isinstance(fraction, bool) or not isinstance(fraction, int) or fraction < 1:
        raise ValueError(f"fraction must be an integer >= 1, not {fraction!r}")
    k, n = w.shape
    if policy == "stride":
        rows = np.arange(0, k, fraction)
        scaled = (w[rows] * np.float32(k / len(rows))).astype(np.float32)
        return ApproxWeights(policy, k, n, scaled, len(rows), rows=rows)
    if policy == "magnitude":
        budget_bits = 16 * k // fraction
        kept = min(k, max(1, budget_bits // (16 + index_bits(k))))
        order = np.argsort(-np.abs(w), axis=0, kind="stable")[:kept]
        sparse = np.zeros_like(w)
        np.put_along_axis(sparse, order, np.take_along_axis(w, order, axis=0), axis=0)
        return ApproxWeights(policy, k, n, sparse, kept)
    rank = min(k, n, max(1, (k * n) // (fraction * (k + n))))
    u, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    left = (u[:, :rank] * root).astype(np.float32)
    right = (root[:, None] * vt[:rank]).astype(np.float32)
    return ApproxWeights(policy, k, n, left, rank, right=right)


def approximate_pass(backend, encoded_x: np.ndarray, approx: ApproxWeights, bias, *,
                     name: str) -> np.ndarray:
    """The approximate pre-activations ``(M, n)`` float32 of a layer from its encoded input
    ``(M, k)``: one GEMM of the compact weights with the bias as accumulator start
    (``stride``: the kept input columns, gathered from the encoded input; ``magnitude``: the
    dense matrix with zeros), or for ``lowrank`` two: ``h = X . left`` (no bias), ``h``
    encoded (one rounding to the operand format), ``h . right`` + bias."""
    c = None if bias is None else np.asarray(bias, dtype=np.float32)[None, :]
    if approx.policy == "stride":
        return backend.gemm(np.ascontiguousarray(encoded_x[:, approx.rows]),
                            backend.encode(approx.weight), name=f"{name}.approx",
                            kind="forward", c=c)
    if approx.policy == "magnitude":
        return backend.gemm(encoded_x, backend.encode(approx.weight), name=f"{name}.approx",
                            kind="forward", c=c)
    h = backend.gemm(encoded_x, backend.encode(approx.weight), name=f"{name}.approx_left",
                     kind="forward")
    return backend.gemm(backend.encode(h), backend.encode(approx.right),
                        name=f"{name}.approx_right", kind="forward", c=c)


@dataclasses.dataclass(frozen=True, eq=False)
class AipPlan:
    """How AIP runs one fully connected layer.

    Attributes
    ----------
    layer : str
        Name of a top-level :class:`sim.nn.Linear` of the network.
    approx : ApproxWeights
        Its compact weights (same ``k, n`` as the layer).
    mode : SelectMode
        ``THRESHOLD`` for a layer whose next layer is a ReLU, ``TOP_N`` for the last layer.
    thresholds : float32 array (n,) or None
        ``THRESHOLD``: keep ``approx > thresholds`` (:func:`threshold_keep`).
    top_n : int or None
        ``TOP_N``: the candidates computed exactly (:func:`top_n_keep`).
    """

    layer: str
    approx: ApproxWeights
    mode: SelectMode
    thresholds: np.ndarray | None = None
    top_n: int | None = None


@dataclasses.dataclass
class AipResult:
    """What :func:`aip` returns.

    Attributes
    ----------
    output : float32 array
        The network's output: for a ``TOP_N`` last layer the exact logits of the selected
        classes and ``-inf`` elsewhere (rank with :func:`aip_rank`).
    keeps : dict
        Layer name -> boolean keep mask ``(M, n)`` of its selection.
    approx : dict
        Layer name -> approximate pre-activations ``(M, n)`` float32.
    """

    output: np.ndarray
    keeps: dict
    approx: dict


def _check_plans(net, plans, start: int) -> dict:
    from .nn.layers import Linear, ReLU

    if not isinstance(plans, (list, tuple)) or not all(isinstance(p, AipPlan) for p in plans):
        raise ValueError(f"plans must be a list of AipPlan, not {plans!r}")
    layers = net.layers
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < len(layers):
        raise ValueError(f"start must be a layer index in 0..{len(layers) - 1}, not {start!r}")
    by_name = {}
    positions = {layer.name: i for i, layer in enumerate(layers)}
    for plan in plans:
        where = positions.get(plan.layer)
        if where is None or where < start or not isinstance(layers[where], Linear):
            raise ValueError(f"plans: layer must name a top-level Linear layer at or after "
                             f"start {start}, not {plan.layer!r}")
        if plan.layer in by_name:
            raise ValueError(f"plans: layer {plan.layer!r} is planned twice")
        weight = layers[where].params["weight"]
        if (plan.approx.k, plan.approx.n) != weight.shape:
            raise ValueError(f"plans: approx of {plan.layer!r} is {plan.approx.k}x"
                             f"{plan.approx.n}, the layer is {weight.shape[0]}x"
                             f"{weight.shape[1]}")
        if plan.mode == SelectMode.THRESHOLD:
            if where + 1 >= len(layers) or not isinstance(layers[where + 1], ReLU):
                raise ValueError(f"plans: mode THRESHOLD needs a ReLU right after "
                                 f"{plan.layer!r}")
            t = plan.thresholds
            if not isinstance(t, np.ndarray) or t.dtype != np.float32 or \
                    t.shape != (weight.shape[1],) or np.isnan(t).any():
                raise ValueError(f"plans: thresholds of {plan.layer!r} must be float32 of "
                                 f"shape ({weight.shape[1]},) without NaN, not {t!r}")
        elif plan.mode == SelectMode.TOP_N:
            if where != len(layers) - 1:
                raise ValueError(f"plans: mode TOP_N is for the last layer, not "
                                 f"{plan.layer!r}")
            n = plan.top_n
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or \
                    not 1 <= n <= weight.shape[1]:
                raise ValueError(f"plans: top_n of {plan.layer!r} must be an integer in "
                                 f"1..{weight.shape[1]}, not {n!r}")
        else:
            raise ValueError(f"plans: mode must be one of {[m.name for m in SelectMode]}, "
                             f"not {plan.mode!r}")
        by_name[plan.layer] = plan
    return by_name


def aip(net, x: np.ndarray, plans, *, backend, start: int = 0) -> AipResult:
    """The AIP forward pass (inference) of ``net`` on the batch ``x``: the golden model.

    Layers ``net.layers[start:]`` run in order on ``x`` (the input of layer ``start``: a study
    can compute an exact prefix once). A layer without a plan runs its own inference forward
    (dropout off). A planned :class:`sim.nn.Linear` runs:

    1. the encoded input ``X = backend.encode(x)`` (one rounding);
    2. the approximate pass (:func:`approximate_pass`): ``A`` (M, n) float32;
    3. the selection ``keep = select_keep(A, plan.mode, ...)`` (:func:`select_keep`);
    4. the exact pass over the batch's union of selected outputs
       ``U = {j : keep[i, j] for some i}``: ``backend.gemm(X, encode(W)[:, U], c=b[U])``,
       bit for bit the dense layer's columns ``U`` (each output is its own k-ascending
       accumulation), of which only the selected entries are kept;
    5. the output: exact where ``keep``, else ``+0`` (``THRESHOLD``: the ReLU that follows
       maps it to ``+0``, as it would a negative value) or ``-inf`` (``TOP_N``, the logits).

    With every output selected the result is the dense forward bit for bit.
    """
    from .nn.layers import StepContext     # not at import: the selection stays numpy-only

    plans = _check_plans(net, plans, start)
    ctx = StepContext(backend=backend)
    keeps, approx = {}, {}
    for layer in net.layers[start:]:
        plan = plans.get(layer.name)
        if plan is None:
            x = layer.forward(x, ctx)
            continue
        layer._check_input(x)
        encoded_x = backend.encode(x)
        bias = layer.params.get("bias")
        a = approximate_pass(backend, encoded_x, plan.approx, bias, name=layer.name)
        keep = select_keep(a, plan.mode, thresholds=plan.thresholds, n=plan.top_n)
        fill = np.float32(0.0) if plan.mode == SelectMode.THRESHOLD else np.float32(-np.inf)
        out = np.full(a.shape, fill, dtype=np.float32)
        union = np.flatnonzero(keep.any(axis=0))
        if len(union):
            w = backend.encode(layer.params["weight"])
            c = None if bias is None else bias[union][None, :]
            exact = backend.gemm(encoded_x, np.ascontiguousarray(w[:, union]),
                                 name=f"{layer.name}.exact", kind="forward", c=c)
            out[:, union] = np.where(keep[:, union], exact, fill)
        keeps[layer.name], approx[layer.name] = keep, a
        x = out
    return AipResult(x, keeps, approx)


def aip_rank(output: np.ndarray, keep: np.ndarray | None = None,
             approx: np.ndarray | None = None) -> np.ndarray:
    """Class ranking ``(M, classes)`` of each row, best first: the selected classes (all of
    them when ``keep`` is None) in ``TOP_N`` order of their exact ``output`` (NaN first,
    descending, ties by the lower class index), then the classes not selected in ``TOP_N``
    order of their ``approx`` values (below every selected class whatever its value)."""
    y = _rows(output)
    exact_order = _order(y)
    if keep is None:
        return exact_order
    keep = np.asarray(keep, dtype=bool)
    a = _rows(approx)
    if keep.shape != y.shape or a.shape != y.shape:
        raise ValueError(f"keep and approx must have the shape of output {y.shape}, not "
                         f"{keep.shape} and {a.shape}")
    approx_order = _order(a)
    selected = np.take_along_axis(keep, exact_order, axis=1)
    rest = ~np.take_along_axis(keep, approx_order, axis=1)
    ranks = np.empty_like(exact_order)
    for i in range(y.shape[0]):
        ranks[i] = np.concatenate([exact_order[i][selected[i]], approx_order[i][rest[i]]])
    return ranks
