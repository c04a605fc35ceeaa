"""SGD with momentum on FP32 master weights."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SGD"]


class SGD:
    """``v = momentum * v + (g / grad_scale + weight_decay * w)``; ``w -= lr * v`` (float32).

    Parameters
    ----------
    parameters : list of (name, layer, key)
        As :meth:`sim.nn.network.Network.parameters` returns: ``layer.params[key]`` is updated
        in place from ``layer.grads[key]``.
    lr : float
        Learning rate, > 0 (the ``lr`` attribute may be changed between steps: schedules).
    momentum : float
        In [0, 1).
    weight_decay : float
        L2 coefficient, >= 0.
    grad_scale : float
        The loss scale the gradients carry (divided out here), > 0.
    masks : dict, optional
        Keep masks of pruned tensors (:mod:`sim.pruning`), by qualified name: after every
        update the pruned elements of the weight and of its velocity are set to ``+0``, so a
        pruned weight stays an exact zero while the network is fine-tuned.
    """

    def __init__(self, parameters, *, lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0, grad_scale: float = 1.0, masks=None):
        check_hyperparameters(lr=lr, momentum=momentum, weight_decay=weight_decay,
                              grad_scale=grad_scale)
        self.parameters = list(parameters)
        self.masks = _check_masks(masks or {}, self.parameters)
        self.lr = np.float32(lr)
        self.momentum = np.float32(momentum)
        self.weight_decay = np.float32(weight_decay)
        self.unscale = np.float32(1.0 / grad_scale)
        self.velocity = {name: np.zeros_like(layer.params[key])
                         for name, layer, key in self.parameters}

    def step(self) -> None:
        for name, layer, key in self.parameters:
            if key not in layer.grads:
                raise ValueError(f"{name}: no gradient (run backward before step)")
            weight = layer.params[key]
            grad = layer.grads[key] * self.unscale
            if self.weight_decay:
                grad = grad + self.weight_decay * weight
            velocity = self.velocity[name]
            velocity *= self.momentum
            velocity += grad
            weight -= self.lr * velocity
            mask = self.masks.get(name)
            if mask is not None:
                weight[~mask] = 0.0
                velocity[~mask] = 0.0


def _check_masks(masks, parameters) -> dict:
    if not isinstance(masks, dict):
        raise ValueError(f"masks must be a dict of keep masks by parameter name, not {masks!r}")
    shapes = {name: layer.params[key].shape for name, layer, key in parameters}
    checked = {}
    for name, mask in masks.items():
        if name not in shapes:
            raise ValueError(f"masks: no parameter {name!r}; the parameters are "
                             f"{sorted(shapes)}")
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != shapes[name]:
            raise ValueError(f"masks[{name!r}] must be a bool array of shape {shapes[name]}, "
                             f"not {mask.dtype} {mask.shape}")
        checked[name] = mask
    return checked


def _number(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, not {value!r}")
    return float(value)


def check_hyperparameters(*, lr, momentum, weight_decay, grad_scale) -> None:
    """Raise ValueError naming the first hyperparameter out of its allowed range."""
    if _number(lr, "lr") <= 0:
        raise ValueError(f"lr must be > 0, not {lr!r}")
    if not 0 <= _number(momentum, "momentum") < 1:
        raise ValueError(f"momentum must be in [0, 1), not {momentum!r}")
    if _number(weight_decay, "weight_decay") < 0:
        raise ValueError(f"weight_decay must be >= 0, not {weight_decay!r}")
    if _number(grad_scale, "grad_scale") <= 0:
        raise ValueError(f"grad_scale must be > 0, not {grad_scale!r}")
