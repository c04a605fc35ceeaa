"""The workload networks: digits CNN, digits MLP, ResNet-18 topology and a VGG-style network
on 32x32 digits.

Every builder takes ``seed`` (the initial weights come from ``numpy.random.default_rng(seed)``
in layer order, so two builds with the same arguments are identical) and ``width`` (channel or
unit scale).
"""

from __future__ import annotations

import math

import numpy as np

from .layers import (BasicBlock, Conv2d, Dropout, Flatten, GlobalAvgPool, Linear, MaxPool2d,
                     ReLU)
from .network import Network

__all__ = ["NETWORKS", "INPUT_SHAPES", "digits_cnn", "digits_mlp", "resnet18", "vgg_small",
           "cancer_mlp", "build_network"]

DIGITS_SHAPE = (8, 8, 1)
RESNET_SHAPE = (32, 32, 1)
CLASSES = 10


def _check_width(width) -> None:
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an integer >= 1, not {width!r}")


def _check_seed(seed) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, not {seed!r}")
    return np.random.default_rng(seed)


def digits_cnn(*, width: int = 8, hidden: int = 64, dropout: float = 0.25,
               seed: int = 0) -> Network:
    """conv3x3(1 -> width) -> ReLU -> conv3x3(width -> 2 width) -> ReLU -> FC(hidden) -> ReLU
    -> dropout -> FC(10), on 8x8x1 inputs (stride 1, padding 1, biases everywhere)."""
    _check_width(width)
    rng = _check_seed(seed)
    conv1 = Conv2d(name="conv1", in_shape=DIGITS_SHAPE, out_channels=width, input_grad=False,
                   rng=rng)
    relu1 = ReLU(name="relu1", in_shape=conv1.out_shape)
    conv2 = Conv2d(name="conv2", in_shape=conv1.out_shape, out_channels=2 * width, rng=rng)
    relu2 = ReLU(name="relu2", in_shape=conv2.out_shape)
    flatten = Flatten(name="flatten", in_shape=conv2.out_shape)
    fc1 = Linear(name="fc1", in_features=flatten.out_shape[0], out_features=hidden, rng=rng)
    relu3 = ReLU(name="relu3", in_shape=fc1.out_shape)
    drop = Dropout(name="drop", in_shape=fc1.out_shape, p=dropout)
    fc2 = Linear(name="fc2", in_features=hidden, out_features=CLASSES, rng=rng,
                 init_gain=math.sqrt(0.5))
    return Network(name="digits_cnn", input_shape=DIGITS_SHAPE,
                   layers=[conv1, relu1, conv2, relu2, flatten, fc1, relu3, drop, fc2])


def digits_mlp(*, width: int = 8, dropout: float = 0.25, seed: int = 0) -> Network:
    """64 -> FC(16 width) -> ReLU -> dropout -> FC(16 width) -> ReLU -> dropout -> FC(10)."""
    _check_width(width)
    rng = _check_seed(seed)
    flatten = Flatten(name="flatten", in_shape=DIGITS_SHAPE)
    return Network(name="digits_mlp", input_shape=DIGITS_SHAPE,
                   layers=[flatten] + _mlp_layers(rng, flatten.out_shape[0], 16 * width,
                                                  CLASSES, dropout))


def _mlp_layers(rng, features: int, units: int, classes: int, dropout: float) -> list:
    """FC(units) -> ReLU -> dropout, twice, then FC(classes): the body of the MLPs (weights
    drawn from ``rng`` in layer order)."""
    layers = []
    for index in (1, 2):
        fc = Linear(name=f"fc{index}", in_features=features, out_features=units,
                    input_grad=index > 1, rng=rng)
        layers += [fc, ReLU(name=f"relu{index}", in_shape=fc.out_shape),
                   Dropout(name=f"drop{index}", in_shape=fc.out_shape, p=dropout)]
        features = units
    layers.append(Linear(name="fc3", in_features=units, out_features=classes, rng=rng,
                         init_gain=math.sqrt(0.5)))
    return layers


def resnet18(*, width: int = 8, seed: int = 0) -> Network:
    """ResNet-18 topology on 32x32x1 inputs, without batch normalisation.

    Stem conv3x3(1 -> width) + ReLU (no max-pool, the CIFAR-style stem); four stages of two
    :class:`BasicBlock` s with ``width, 2 width, 4 width, 8 width`` channels, the first block of
    stages 2-4 with stride 2 and a 1x1 projection shortcut (32 -> 16 -> 8 -> 4 pixels); global
    average pool; FC(10). 17 convolutions + 3 projections + 1 FC. The second convolution of
    every block starts with its weights scaled by ``1 / sqrt(8)`` (8 residual blocks).
    """
    _check_width(width)
    rng = _check_seed(seed)
    stem = Conv2d(name="stem", in_shape=RESNET_SHAPE, out_channels=width, bias=False,
                  input_grad=False, rng=rng)
    layers = [stem, ReLU(name="stem.relu", in_shape=stem.out_shape)]
    shape = stem.out_shape
    gain = 1.0 / math.sqrt(8)
    for stage in range(4):
        channels = width << stage
        for index in range(2):
            stride = 2 if stage > 0 and index == 0 else 1
            block = BasicBlock(name=f"layer{stage + 1}.{index}", in_shape=shape,
                               out_channels=channels, stride=stride, rng=rng,
                               residual_gain=gain)
            layers.append(block)
            shape = block.out_shape
    pool = GlobalAvgPool(name="pool", in_shape=shape)
    fc = Linear(name="fc", in_features=pool.out_shape[0], out_features=CLASSES, rng=rng,
                init_gain=math.sqrt(0.5))
    return Network(name="resnet18", input_shape=RESNET_SHAPE, layers=layers + [pool, fc])


def vgg_small(*, width: int = 8, hidden: int = 512, dropout: float = 0.5,
              seed: int = 0) -> Network:
    """VGG-style on 32x32x1 inputs, most of its weights in the fully connected layers:
    three stages of conv3x3 -> ReLU -> 2x2 max-pool with ``width, 2 width, 4 width`` channels
    (32 -> 16 -> 8 -> 4 pixels), then FC(hidden) -> ReLU -> dropout -> FC(hidden) -> ReLU ->
    dropout -> FC(10). At the defaults the three FC layers hold 530,442 of the 536,330
    parameters (the network AIP is measured on)."""
    _check_width(width)
    _check_width(hidden)
    rng = _check_seed(seed)
    layers = []
    shape = RESNET_SHAPE
    for stage in range(3):
        conv = Conv2d(name=f"conv{stage + 1}", in_shape=shape, out_channels=width << stage,
                      input_grad=stage > 0, rng=rng)
        relu = ReLU(name=f"relu{stage + 1}", in_shape=conv.out_shape)
        pool = MaxPool2d(name=f"pool{stage + 1}", in_shape=conv.out_shape, kernel=2)
        layers += [conv, relu, pool]
        shape = pool.out_shape
    flatten = Flatten(name="flatten", in_shape=shape)
    layers.append(flatten)
    features = flatten.out_shape[0]
    for index in (1, 2):
        fc = Linear(name=f"fc{index}", in_features=features, out_features=hidden, rng=rng)
        layers += [fc, ReLU(name=f"relu_fc{index}", in_shape=fc.out_shape),
                   Dropout(name=f"drop{index}", in_shape=fc.out_shape, p=dropout)]
        features = hidden
    layers.append(Linear(name="fc3", in_features=hidden, out_features=CLASSES, rng=rng,
                         init_gain=math.sqrt(0.5)))
    return Network(name="vgg_small", input_shape=RESNET_SHAPE, layers=layers)


def cancer_mlp(*, features: int = 30, hidden: int = 256, classes: int = 2,
               dropout: float = 0.5, seed: int = 0) -> Network:
    """``features -> FC(hidden) -> ReLU -> dropout -> FC(hidden) -> ReLU -> dropout ->
    FC(classes)`` on feature vectors: the breast-cancer table
    (:func:`sim.nn.data.load_breast_cancer_split`). Not a digits network, so not in
    :data:`NETWORKS` (whose users train and lower on the digits)."""
    for field, value in (("features", features), ("hidden", hidden), ("classes", classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be an integer >= 1, not {value!r}")
    rng = _check_seed(seed)
    return Network(name="cancer_mlp", input_shape=(features,),
                   layers=_mlp_layers(rng, features, hidden, classes, dropout))


#: Network builders by name (the digits networks; :func:`cancer_mlp` is built by name in
#: :func:`sim.experiments.training.workload_network`).
NETWORKS = {"digits_cnn": digits_cnn, "digits_mlp": digits_mlp, "resnet18": resnet18,
            "vgg_small": vgg_small}
#: Per-sample input shape of each network (the digits upsampled 4x for the ResNet).
INPUT_SHAPES = {"digits_cnn": DIGITS_SHAPE, "digits_mlp": DIGITS_SHAPE, "resnet18": RESNET_SHAPE,
                "vgg_small": RESNET_SHAPE}


def build_network(name: str, *, width: int = 8, dropout: float = 0.25, seed: int = 0) -> Network:
    """Build a network by name (one of :data:`NETWORKS`); ``dropout`` is ignored by the
    ResNet, which has none."""
    if name not in NETWORKS:
        raise ValueError(f"net must be one of {sorted(NETWORKS)}, not {name!r}")
    if name == "resnet18":
        return resnet18(width=width, seed=seed)
    return NETWORKS[name](width=width, dropout=dropout, seed=seed)
