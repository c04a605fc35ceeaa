"""Weight pruning: magnitude masks per layer, applied as exact zeros.

The choice (documented in ``docs/schedule.md``): *per layer*, every pruned layer keeps the
``1 - sparsity`` fraction of its weights with the largest magnitude, so a layer pruned to 80%
has exactly ``round(0.8 * size)`` zeros and the scheduler sees the same sparsity on every layer
(global pruning would leave the small layers dense and strip the large ones). The first layer
with weights is not pruned: it holds few weights (72 in the digits CNN), every later feature
depends on it, and its GEMMs are shorter than the array's tile floor, so zeros there save no
cycle (``docs/schedule.md``). Biases are never pruned. Pruning is *iterative*: each level
prunes among the weights the previous level kept (:func:`magnitude_masks` with ``previous``),
and the network is fine-tuned between levels with the masks held (:class:`sim.nn.optim.SGD`
``masks``).

A pruned weight is ``+0.0`` in FP32, hence ``+0`` in every operand format (fp16, e4m3, e5m2,
FGMP): the zero detect of the engine sees it and the scheduler's patterns are exact.

Pure numpy; no Amaranth here.
"""

from __future__ import annotations

import numbers

import numpy as np

from .nn.network import Network

__all__ = ["SPARSITIES", "prunable", "magnitude_masks", "apply_masks", "weight_sparsity"]

#: The sparsity levels measured (fraction of each pruned layer's weights that are zero).
SPARSITIES = (0.5, 0.7, 0.8, 0.9)


def prunable(net: Network) -> list[str]:
    """Qualified names (``"conv2.weight"``) of the weights that are pruned: every layer with
    weights but the first."""
    if not isinstance(net, Network):
        raise ValueError(f"net must be a sim.nn.Network, not {net!r}")
    return [f"{layer.name}.weight" for layer in net.weight_layers()[1:]]


def _check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or \
            not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be a number in [0, 1), not {sparsity!r}")
    return float(sparsity)


def magnitude_masks(net: Network, sparsity: float, *,
                    previous: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Keep masks (bool, True = kept) of the :func:`prunable` weights at ``sparsity``.

    Each layer keeps its ``size - round(sparsity * size)`` weights of largest magnitude (ties
    go to the lower flat index, so the masks are deterministic). With ``previous`` (the masks
    of a lower level), a weight pruned there stays pruned; a ``sparsity`` below the previous
    level's is refused.
    """
    sparsity = _check_sparsity(sparsity)
    names = prunable(net)
    params = {name: layer.params[key] for name, layer, key in net.parameters()}
    masks = {}
    for name in names:
        weight = params[name]
        size = weight.size
        pruned = round(sparsity * size)
        keep_before = np.ones(weight.shape, dtype=bool)
        if previous is not None:
            if name not in previous:
                raise ValueError(f"previous masks have no entry for {name!r}")
            keep_before = previous[name]
            if size - np.count_nonzero(keep_before) > pruned:
                raise ValueError(f"sparsity {sparsity} is below the previous level's for "
                                 f"{name!r}: iterative pruning only removes weights")
        magnitude = np.where(keep_before, np.abs(weight), -1.0).ravel()
        order = np.argsort(magnitude, kind="stable")
        keep = np.ones(size, dtype=bool)
        keep[order[:pruned]] = False
        masks[name] = keep.reshape(weight.shape)
    return masks


def apply_masks(net: Network, masks: dict[str, np.ndarray]) -> None:
    """Set the pruned weights to ``+0.0`` (in place)."""
    params = {name: layer.params[key] for name, layer, key in net.parameters()}
    for name, keep in masks.items():
        if name not in params:
            raise ValueError(f"masks: no parameter {name!r}; the parameters are "
                             f"{sorted(params)}")
        if keep.shape != params[name].shape or keep.dtype != np.bool_:
            raise ValueError(f"masks[{name!r}] must be a bool array of shape "
                             f"{params[name].shape}")
        params[name][~keep] = 0.0


def weight_sparsity(net: Network) -> dict[str, float]:
    """Fraction of exact zeros of every layer's weight, by qualified name."""
    return {f"{layer.name}.weight": float(np.mean(layer.params["weight"] == 0))
            for layer in net.weight_layers()}
