"""DrowsyNet golden model: inference-time random dropout of convolution output neurons.

DrowsyNet skips a random fraction of the output neurons of every convolution at inference, at
a drop rate that differs from layer to layer. On Sparta a skipped neuron is an output of the
convolution's forward GEMM that the engine's dropout plane masks (``EngineConfig(output_mask=
True)``, a command with ``mask_dropout``; :mod:`hw.engine.mask`): the engine writes it ``+0``.
(Its PE still computes its ``K`` products unless every output of its tile row is dropped:
:func:`sim.skip_timing.computed_products`.)

Definitions
-----------
* A convolution ``conv`` lowers to the forward GEMM ``Y = cols(X) . W + b`` of ``M x N``
  outputs (``M = batch * H_out * W_out`` output pixels, ``N`` output channels, ``K = k * k *
  C_in``), NHWC row-major: the layout the dropout masks are defined on
  (:mod:`sim.lfsr`, "Mask of a tensor").
* A :class:`DrowsyPlan` gives each convolution a drop threshold ``t`` (an integer out of
  ``2^8``, :data:`RATE_BITS`; ``0`` = the layer is not masked) and a run seed. Batch ``b`` of
  an inference (the ``b``-th group of ``batch_size`` samples, from 0) uses, for convolution
  ``conv``, the keep mask :func:`sim.lfsr.dropout_keep_mask` of shape ``(M, N)`` with seed
  :func:`sim.lfsr.layer_seed` ``(plan.seed, conv, b)`` and threshold ``t``: each output is
  dropped with probability ``t / 256``. The mask depends on the batch's size (its rows), as
  on the engine.
* Op order, exactly as the engine runs it: the bias is the accumulator start of the GEMM (as in
  :class:`sim.nn.layers.Conv2d`), so a kept output is ``fp32(b + sum_k x w)`` in the
  backend's numerics, and a **dropped output is +0, bias included** (the engine writes ``+0``
  in masked lanes; a neuron that is skipped is silent, like a dropout neuron). With
  ``rescale`` the GEMM's result then goes through the epilogue ``SCALE`` by ``f =
  fp32(256 / (256 - t))`` (the float64 quotient rounded once to FP32; one FP32 multiply,
  round to nearest even: :func:`sim.epilogue.dropout`, which is the same op with the same
  mask, since ``+0 * f = +0``), so that each output's expected value is the dense one.
  Without ``rescale`` the kept outputs are left as they are. The layer's ReLU (host code) and
  everything after run unchanged.
* Work, as the algorithm counts it: a dropped output's ``K`` products are skipped, so the
  conv MACs skipped are ``sum over convs of K x (dropped outputs)``; the expected fraction of a
  plan is ``sum t_l / 256 * MACs_l / sum MACs_l`` (:func:`expected_skip`). (What an engine
  saves is its own count: :func:`sim.skip_timing.computed_products`.)

:class:`ChannelRemoval` is the structured baseline (whole output channels of a convolution
removed: the same ``+0`` outputs, as for filters pruned with their bias, no rescaling).
:class:`DrowsyBackend` applies either one to the conv forward GEMMs of any
:class:`sim.nn.GemmBackend`; :func:`drowsy` is one masked inference pass.

Pure numpy: no Amaranth here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

import numpy as np

from .epilogue import dropout as epilogue_dropout
from .lfsr import dropout_keep_mask, layer_seed
from .nn.backend import GemmBackend
from .nn.layers import Conv2d, StepContext
from .nn.network import Network

__all__ = ["RATE_BITS", "MAX_THRESHOLD", "DrowsyPlan", "ChannelRemoval", "DrowsyBackend",
           "conv_layers", "conv_macs", "expected_skip", "rescale_factor",
           "drowsy", "skip_counts"]

#: Random bits per output (the engine's ``DROPOUT_BITS``): a threshold ``t`` drops ``t / 256``.
RATE_BITS = 8
#: Largest drop threshold of a plan (a mask of the LFSR generator keeps at least 1 / 256).
MAX_THRESHOLD = (1 << RATE_BITS) - 1


def _check_int(value, field: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or \
            (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{field} must be an integer {bound}, not {value!r}")
    return int(value)


def conv_layers(net: Network) -> list[Conv2d]:
    """The convolutions of ``net`` in forward order (inside blocks too)."""
    if not isinstance(net, Network):
        raise ValueError(f"net must be a sim.nn.Network, not {net!r}")
    return [layer for layer in net.all_layers() if isinstance(layer, Conv2d)]


def conv_macs(net: Network, batch: int = 1) -> dict[str, int]:
    """Dense MACs ``M x N x K`` of each convolution's forward GEMM for ``batch`` samples."""
    batch = _check_int(batch, "batch", 1)
    out = {}
    for conv in conv_layers(net):
        height, width, _ = conv.out_shape
        depth = conv.params["weight"].shape[0]
        out[conv.name] = batch * height * width * conv.spec.features * depth
    return out


def rescale_factor(threshold: int) -> np.float32:
    """``fp32(256 / (256 - threshold))``: the epilogue ``SCALE`` of the kept outputs."""
    threshold = _check_int(threshold, "threshold", 0, MAX_THRESHOLD)
    return np.float32((1 << RATE_BITS) / ((1 << RATE_BITS) - threshold))


def _check_mapping(value, field: str) -> dict:
    if not isinstance(value, Mapping):
        raise ValueError(f"{field} must be a mapping of conv layer names, not {value!r}")
    for name in value:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{field} keys must be layer names, not {name!r}")
    return dict(value)


def _check_layers(net: Network, names, field: str) -> dict[str, Conv2d]:
    convs = {conv.name: conv for conv in conv_layers(net)}
    unknown = sorted(set(names) - set(convs))
    if unknown:
        raise ValueError(f"{field}: {unknown} are not convolutions of {net.name} "
                         f"(those are {sorted(convs)})")
    return convs


@dataclasses.dataclass(frozen=True)
class DrowsyPlan:
    """Per-layer drop thresholds of DrowsyNet (validated; ValueError names the field).

    Parameters
    ----------
    thresholds : mapping of conv layer name to int
        Drop threshold ``t`` in ``0 .. 255`` out of ``2^8`` (drop probability ``t / 256``;
        ``0`` = not masked). Layers not named are not masked.
    rescale : bool
        Multiply the kept outputs by :func:`rescale_factor` (module docstring).
    seed : int
        Run seed ``>= 0``; batch ``b`` of conv ``c`` is masked with ``layer_seed(seed, c, b)``.
    """

    thresholds: Mapping[str, int]
    rescale: bool = False
    seed: int = 0

    def __post_init__(self):
        thresholds = _check_mapping(self.thresholds, "thresholds")
        for name, value in thresholds.items():
            thresholds[name] = _check_int(value, f"thresholds[{name!r}]", 0, MAX_THRESHOLD)
        object.__setattr__(self, "thresholds", thresholds)
        if not isinstance(self.rescale, bool):
            raise ValueError(f"rescale must be a bool, not {self.rescale!r}")
        _check_int(self.seed, "seed", 0)

    @classmethod
    def uniform(cls, net: Network, threshold: int, **kwargs) -> DrowsyPlan:
        """The same ``threshold`` on every convolution of ``net``."""
        return cls({conv.name: threshold for conv in conv_layers(net)}, **kwargs)

    @classmethod
    def from_rates(cls, rates: Mapping[str, float], **kwargs) -> DrowsyPlan:
        """Thresholds ``round(p * 256)`` of drop rates ``p`` in ``[0, 255/256]``."""
        rates = _check_mapping(rates, "rates")
        thresholds = {}
        for name, p in rates.items():
            if isinstance(p, bool) or not isinstance(p, (int, float)) or \
                    not 0 <= p <= MAX_THRESHOLD / (1 << RATE_BITS):
                raise ValueError(f"rates[{name!r}] must be a number in [0, "
                                 f"{MAX_THRESHOLD}/{1 << RATE_BITS}], not {p!r}")
            thresholds[name] = round(p * (1 << RATE_BITS))
        return cls(thresholds, **kwargs)

    def check(self, net: Network) -> None:
        """Every named layer is a convolution of ``net`` (ValueError naming ``thresholds``)."""
        _check_layers(net, self.thresholds, "thresholds")

    def threshold(self, layer: str) -> int:
        return self.thresholds.get(layer, 0)

    def rate(self, layer: str) -> float:
        """Drop probability ``t / 256`` of ``layer``."""
        return self.threshold(layer) / (1 << RATE_BITS)

    def keep(self, layer: str, shape: tuple[int, int], batch_index: int,
             values: np.ndarray | None = None) -> np.ndarray | None:
        """Keep mask of ``layer``'s ``(M, N)`` output in batch ``batch_index`` (None: all kept).
        ``values`` may give :func:`sim.lfsr.dropout_values` of that mask's seed (a cache),
        else it is :func:`sim.lfsr.dropout_keep_mask`."""
        threshold = self.threshold(layer)
        if threshold == 0:
            return None
        if values is not None:
            return values >= threshold
        return dropout_keep_mask(tuple(shape), seed=self.mask_seed(layer, batch_index),
                                 threshold=threshold, bits=RATE_BITS)

    def mask_seed(self, layer: str, batch_index: int) -> int:
        return layer_seed(self.seed, layer, _check_int(batch_index, "batch_index", 0))

    def factor(self, layer: str) -> np.float32 | None:
        """The rescaling factor of ``layer``'s kept outputs, None without rescaling."""
        threshold = self.threshold(layer)
        return rescale_factor(threshold) if self.rescale and threshold else None


@dataclasses.dataclass(frozen=True)
class ChannelRemoval:
    """Whole output channels removed from convolutions (the structured baseline).

    Parameters
    ----------
    removed : mapping of conv layer name to a tuple of channel indices
        The removed channels' outputs are ``+0`` (bias included), in every pixel.
    """

    removed: Mapping[str, tuple[int, ...]]

    def __post_init__(self):
        removed = _check_mapping(self.removed, "removed")
        for name, channels in removed.items():
            if not isinstance(channels, (tuple, list)):
                raise ValueError(f"removed[{name!r}] must be a tuple of channel indices, not "
                                 f"{channels!r}")
            channels = tuple(_check_int(c, f"removed[{name!r}]", 0) for c in channels)
            if len(set(channels)) != len(channels):
                raise ValueError(f"removed[{name!r}] repeats a channel: {channels}")
            removed[name] = tuple(sorted(channels))
        object.__setattr__(self, "removed", removed)

    def check(self, net: Network) -> None:
        convs = _check_layers(net, self.removed, "removed")
        for name, channels in self.removed.items():
            features = convs[name].spec.features
            if channels and channels[-1] >= features:
                raise ValueError(f"removed[{name!r}]: channel {channels[-1]} of a "
                                 f"{features}-channel convolution")

    def keep(self, layer: str, shape: tuple[int, int], batch_index: int,
             values: np.ndarray | None = None) -> np.ndarray | None:
        channels = self.removed.get(layer, ())
        if not channels:
            return None
        columns = np.ones(shape[1], dtype=bool)
        columns[list(channels)] = False
        return np.broadcast_to(columns, tuple(shape))

    def factor(self, layer: str) -> None:
        return None


class DrowsyBackend(GemmBackend):
    """``inner`` with the output skipping of ``plan`` on the convolutions' forward GEMMs.

    Every other GEMM, and the encoding, are ``inner``'s. A conv forward GEMM's result has
    its dropped outputs ``+0`` and, where the plan rescales, its kept ones multiplied by the
    factor (:func:`sim.epilogue.dropout` on the FP32 bits: the engine's epilogue).

    Parameters
    ----------
    inner : GemmBackend
    plan : DrowsyPlan or ChannelRemoval
    convs : collection of str
        The names of the network's convolutions (:func:`conv_layers`): only their forward
        GEMMs are masked and counted.
    batch_index : int
        Batch ``b`` of the masks (set it before each batch: :func:`drowsy` does).
    values : callable, optional
        ``values(layer, shape, seed) -> uint8 array``: a cache of
        :func:`sim.lfsr.dropout_values` (``bits=8``).

    Attributes
    ----------
    counts : dict
        Conv layer name -> ``[dropped outputs, outputs, K]`` accumulated over the GEMMs run.
    masks : dict
        Conv layer name -> the keep mask of its last GEMM (None: all kept).
    """

    def __init__(self, inner: GemmBackend, plan, *, convs: Collection[str], batch_index: int = 0,
                 values=None):
        super().__init__()
        if not isinstance(inner, GemmBackend):
            raise ValueError(f"inner must be a GemmBackend, not {inner!r}")
        if not isinstance(plan, (DrowsyPlan, ChannelRemoval)):
            raise ValueError(f"plan must be a DrowsyPlan or ChannelRemoval, not {plan!r}")
        self.inner, self.plan, self.values = inner, plan, values
        self.convs = frozenset(convs)
        self.name = f"drowsy[{inner.name}]"
        self.batch_index = _check_int(batch_index, "batch_index", 0)
        self.counts: dict[str, list[int]] = {}
        self.masks: dict[str, np.ndarray | None] = {}

    def encode(self, values):
        return self.inner.encode(values)

    def is_zero(self, encoded):
        return self.inner.is_zero(encoded)

    def gemm(self, a, b, *, name: str, kind: str, transpose_a: bool = False,
             transpose_b: bool = False, c: np.ndarray | None = None) -> np.ndarray:
        out = self.inner.gemm(a, b, name=name, kind=kind, transpose_a=transpose_a,
                              transpose_b=transpose_b, c=c)
        layer = name[:-len(".forward")] if name.endswith(".forward") else None
        if kind != "forward" or layer not in self.convs:
            return out
        keep = self._keep(layer, out.shape)
        self.masks[layer] = keep
        k = a.shape[0] if transpose_a else a.shape[1]
        entry = self.counts.setdefault(layer, [0, 0, k])
        entry[0] += 0 if keep is None else int(keep.size - np.count_nonzero(keep))
        entry[1] += out.size
        if keep is None:
            return out
        factor = self.plan.factor(layer)
        factor = np.float32(1.0) if factor is None else factor
        if factor == 1:
            return np.where(keep, out, np.float32(0.0)).astype(np.float32)
        bits = epilogue_dropout(out.view(np.uint32), keep, factor.view(np.uint32))
        return bits.view(np.float32)

    def _keep(self, layer: str, shape: tuple[int, int]) -> np.ndarray | None:
        if isinstance(self.plan, DrowsyPlan) and self.plan.threshold(layer) and \
                self.values is not None:
            seed = self.plan.mask_seed(layer, self.batch_index)
            return self.plan.keep(layer, shape, self.batch_index,
                                  values=self.values(layer, shape, seed))
        return self.plan.keep(layer, shape, self.batch_index)


def drowsy(net: Network, x: np.ndarray, plan, *, backend: GemmBackend, batch_index: int = 0,
           counts: dict | None = None, values=None) -> np.ndarray:
    """Logits of one masked inference pass of the batch ``x`` (batch ``batch_index`` of the
    plan's masks) through ``net`` with ``backend``'s numerics. ``counts``, when given, is
    updated like :attr:`DrowsyBackend.counts` (dropped outputs, outputs, K per conv)."""
    plan.check(net)
    wrapped = DrowsyBackend(backend, plan, convs=[conv.name for conv in conv_layers(net)],
                            batch_index=batch_index, values=values)
    if counts is not None:
        wrapped.counts = counts
    return net.forward(x, StepContext(backend=wrapped))


def skip_counts(counts: Mapping[str, list[int]]) -> dict:
    """MACs of conv forward GEMMs from :attr:`DrowsyBackend.counts`: ``dense``, ``skipped``
    (dropped outputs x K), ``fraction`` skipped, and per layer ``(skipped, dense)``."""
    layers = {name: (dropped * k, outputs * k) for name, (dropped, outputs, k) in counts.items()}
    dense = sum(d for _, d in layers.values())
    skipped = sum(s for s, _ in layers.values())
    return {"dense": dense, "skipped": skipped,
            "fraction": skipped / dense if dense else 0.0, "layers": layers}


def expected_skip(net: Network, plan) -> float:
    """Expected fraction of conv MACs a plan skips (exact for :class:`ChannelRemoval`)."""
    plan.check(net)
    macs = conv_macs(net)
    total = sum(macs.values())
    if isinstance(plan, DrowsyPlan):
        saved = sum(plan.rate(name) * value for name, value in macs.items())
    else:
        convs = {conv.name: conv for conv in conv_layers(net)}
        saved = sum(len(plan.removed.get(name, ())) / convs[name].spec.features * value
                    for name, value in macs.items())
    return saved / total if total else 0.0
