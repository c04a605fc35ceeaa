"""A digits CNN with a 5x5 stride-2 convolution ("same" padding: 8x8 -> 4x4)."""

import numpy as np

from sim.nn import Conv2d, Dataset, Flatten, Linear, Network, ReLU, load_digits_split


def load() -> Dataset:
    return load_digits_split()


def build(seed: int = 0, channels: int = 4) -> Network:
    rng = np.random.default_rng(seed)
    return Network(name="strided_cnn", input_shape=(8, 8, 1), layers=[
        Conv2d(name="conv1", out_channels=channels, kernel=5, stride=2, input_grad=False,
               rng=rng),
        ReLU(name="relu1"), Flatten(name="flatten"),
        Linear(name="fc", out_features=10, rng=rng)])
