"""The digits data set (``sklearn.datasets.load_digits``, ships with scikit-learn)."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Digits", "load_digits_split"]


@dataclasses.dataclass(frozen=True)
class Digits:
    """A fixed train/test split: images NHWC float32 in [0, 1], labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.x_train.shape[1:]


def load_digits_split(*, test_fraction: float = 0.2, seed: int = 0, upsample: int = 1) -> Digits:
    """1797 8x8 grey images of digits, split stratified by class.

    Parameters
    ----------
    test_fraction : float
        Share of the test set, in (0, 1) (default 0.2: 1437 train / 360 test).
    seed : int
        Seed of the split.
    upsample : int
        Integer upscaling by pixel replication (``upsample=4`` gives 32x32, the input of the
        ResNet-18-topology network); exact, adds no new values.

    Pixels (0..16) are divided by 16, so every input is exact in fp16 and FP8.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or \
            not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), not {test_fraction!r}")
    if isinstance(upsample, bool) or not isinstance(upsample, int) or upsample < 1:
        raise ValueError(f"upsample must be an integer >= 1, not {upsample!r}")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]          # (N, 8, 8, 1)
    if upsample > 1:
        images = images.repeat(upsample, axis=1).repeat(upsample, axis=2)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    return Digits(np.ascontiguousarray(x_train), y_train, np.ascontiguousarray(x_test), y_test)
