"""Data sets: :class:`Dataset` (any fixed train/test split a user brings), the digits
(``sklearn.datasets.load_digits``) and the breast-cancer table
(``sklearn.datasets.load_breast_cancer``), both shipped with scikit-learn (nothing is
downloaded), and :func:`validation_split` (a validation set carved from the training rows)."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Dataset", "Digits", "split_table", "load_digits_split", "load_breast_cancer_split",
           "validation_split"]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A fixed train/test split: samples float32 of any per-sample shape (images NHWC, feature
    vectors 1-D), labels integer class indices ``0 .. classes - 1``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self):
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim < 2:
                raise ValueError(f"x_{part} must be a float32 array of samples (batch first), "
                                 f"not {getattr(x, 'dtype', type(x).__name__)} of shape "
                                 f"{getattr(x, 'shape', None)}")
            if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.shape != x.shape[:1]:
                raise ValueError(f"y_{part} must be integer labels, one per sample of x_{part} "
                                 f"({x.shape[0]}), not {getattr(y, 'dtype', type(y).__name__)} "
                                 f"of shape {getattr(y, 'shape', None)}")
        if self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise ValueError(f"x_test samples {self.x_test.shape[1:]} differ from x_train "
                             f"samples {self.x_train.shape[1:]}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.x_train.shape[1:]


#: The name the digits split had first (the same class).
Digits = Dataset


def split_table(x, y, *, test_fraction: float = 0.25, seed: int = 0,
                standardize: bool = True) -> Dataset:
    """A :class:`Dataset` from a table of features ``x`` (samples x features) and class
    labels ``y``: features standardised with the training rows' mean and deviation (when
    ``standardize``), rows split at random (``seed``), float32 samples, int64 labels."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or y.shape != x.shape[:1] or len(x) < 2:
        raise ValueError(f"x must be samples x features and y one label per sample, not "
                         f"shapes {x.shape} and {y.shape}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), not {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = min(len(x) - 1, max(1, round(len(x) * (1 - test_fraction))))
    train_rows, test_rows = order[:cut], order[cut:]
    if standardize:
        mean, deviation = x[train_rows].mean(axis=0), x[train_rows].std(axis=0)
        x = (x - mean) / np.where(deviation > 0, deviation, 1.0)
    # one rounding, float64 -> float32; the backends round float32 once more to the operand format
    x = x.astype(np.float32)
    labels = y.astype(np.int64)
    return Dataset(x[train_rows], labels[train_rows], x[test_rows], labels[test_rows])


def load_digits_split(*, test_fraction: float = 0.2, seed: int = 0, upsample: int = 1) -> Dataset:
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
    return Dataset(np.ascontiguousarray(x_train), y_train, np.ascontiguousarray(x_test), y_test)


def load_breast_cancer_split(*, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """569 samples of 30 features, 2 classes (malignant 0, benign 1;
    ``sklearn.datasets.load_breast_cancer``), split at random and standardised with the
    training rows' statistics (:func:`split_table`): 427 train / 142 test at the defaults."""
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer()
    return split_table(table.data, table.target, test_fraction=test_fraction, seed=seed)


def validation_split(data: Dataset, *, fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A validation set carved from ``data``'s training rows (stratified by class when every
    class has at least two training rows, else at random; ``seed``): a :class:`Dataset`
    whose *train* part is the remaining training rows and whose *test* part is the validation
    rows. ``data``'s own test set is not touched (train on the result, choose on its test
    part, report on ``data.x_test``)."""
    from sklearn.model_selection import train_test_split

    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a Dataset, not {data!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or \
            not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), not {fraction!r}")
    _, counts = np.unique(data.y_train, return_counts=True)
    stratify = data.y_train if counts.min() >= 2 else None
    rows = np.arange(len(data.y_train))
    try:
        fit, check = train_test_split(rows, test_size=fraction, random_state=seed,
                                      stratify=stratify)
    except ValueError as error:            # too few rows for the split asked
        raise ValueError(f"fraction {fraction!r} does not split {len(rows)} training rows "
                         f"({error})") from None
    fit, check = np.sort(fit), np.sort(check)
    return Dataset(np.ascontiguousarray(data.x_train[fit]), data.y_train[fit],
                   np.ascontiguousarray(data.x_train[check]), data.y_train[check])
