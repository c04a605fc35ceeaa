"""Softmax cross-entropy (fp32 host code, the same for every backend)."""

from __future__ import annotations

import numpy as np

__all__ = ["softmax_cross_entropy"]


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, *, scale: float = 1.0):
    """Mean softmax cross-entropy over the batch and its gradient.

    Parameters
    ----------
    logits : float32 array (B, classes)
    labels : integer array (B,), values in [0, classes)
    scale : float
        Multiplies the returned gradient (static loss scaling: keeps small gradients above the
        fp16 underflow; the optimizer divides it out again).

    Returns
    -------
    loss : float
        Mean loss (unscaled).
    grad : float32 array (B, classes)
        ``scale * (softmax(logits) - onehot(labels)) / B``.
    correct : int
        Samples whose largest logit is the label.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.dtype != np.float32 or logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must be a non-empty float32 array (batch, classes), not "
                         f"{logits.dtype} {logits.shape}")
    if labels.dtype.kind not in "ui" or labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must be integers of shape {logits.shape[:1]}, not "
                         f"{labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be in [0, {logits.shape[1]}), not "
                         f"[{labels.min()}, {labels.max()}]")
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, not {scale!r}")
    batch = logits.shape[0]
    rows = np.arange(batch)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    prob = exp / total
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, labels]))
    grad = prob
    grad[rows, labels] -= np.float32(1.0)
    grad *= np.float32(scale / batch)
    correct = int(np.count_nonzero(logits.argmax(axis=1) == labels))
    return loss, grad.astype(np.float32, copy=False), correct
