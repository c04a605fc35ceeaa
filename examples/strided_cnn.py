"""A digits CNN with a 5x5 stride-2 convolution ("same" padding: 8x8 -> 4x4)."""

import numpy as np

from sim.nn import Conv2d, Dataset, Flatten, Linear, Network, ReLU, load_digits_split


def load() -> Dataset:
    return load_digits_split()


def build(seed: int = 0, channels: int = 4) -> Network:
    rng = np.random.default_rng(seed)
    conv = Conv2d(name="conv1", in_shape=(8, 8, 1), out_channels=channels, kernel=5, stride=2,
                  input_grad=False, rng=rng)
    relu = ReLU(name="relu1", in_shape=conv.out_shape)
    flat = Flatten(name="flatten", in_shape=conv.out_shape)
    return Network(name="strided_cnn", input_shape=(8, 8, 1), layers=[
        conv, relu, flat,
        Linear(name="fc", in_features=flat.out_shape[0], out_features=10, rng=rng)])
