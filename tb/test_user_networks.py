"""Networks and data a user brings (not the built-in workloads): an MLP with dropout on
scikit-learn's wine data, one on breast-cancer, a digits CNN with 5x5 stride-2 convolutions.
They train with accelerator and FGMP numerics, and their training steps replay bit for bit on the
golden model and on the RTL engine through tb.engine_api."""

import numpy as np
import pytest

from sim.fgmp_control import FgmpPolicy
from sim.nn import (AccelBackend, Conv2d, Dataset, Dropout, Flatten, Linear, Network, ReLU,
                    load_digits_split, train)
from sim.nn.backend import FgmpBackend
from sim.nn.train import TrainConfig
from sim.replay import golden_replay, split_gemm, training_step_gemms
from tb.engine_api import run_gemms
from tb.engines import CONFIGS


def _tabular(loader, seed=0, test_fraction=0.25) -> Dataset:
    """A scikit-learn table, standardised (float32), split at random."""
    x, y = loader(return_X_y=True)
    x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    train_rows, test_rows = order[:cut], order[cut:]
    return Dataset(x[train_rows], y[train_rows].astype(np.int64), x[test_rows],
                   y[test_rows].astype(np.int64))


def wine():
    from sklearn.datasets import load_wine
    return _tabular(load_wine)


def breast_cancer():
    from sklearn.datasets import load_breast_cancer
    return _tabular(load_breast_cancer)


def mlp(name, features, classes, hidden=16, seed=0) -> Network:
    rng = np.random.default_rng(seed)
    fc1 = Linear(name="fc1", in_features=features, out_features=hidden, input_grad=False, rng=rng)
    return Network(name=name, input_shape=(features,), layers=[
        fc1, ReLU(name="relu1", in_shape=fc1.out_shape),
        Dropout(name="drop1", in_shape=fc1.out_shape, p=0.25),
        Linear(name="fc2", in_features=hidden, out_features=classes, rng=rng)])


def strided_cnn(seed=0) -> Network:
    rng = np.random.default_rng(seed)
    conv = Conv2d(name="conv1", in_shape=(8, 8, 1), out_channels=4, kernel=5, stride=2,
                  input_grad=False, rng=rng)
    relu = ReLU(name="relu1", in_shape=conv.out_shape)
    flat = Flatten(name="flatten", in_shape=conv.out_shape)
    return Network(name="strided_cnn", input_shape=(8, 8, 1), layers=[
        conv, relu, flat, Linear(name="fc", in_features=flat.out_shape[0], out_features=10,
                                 rng=rng)])


def test_same_padding_is_the_default_for_odd_kernels():
    assert strided_cnn().layers[0].out_shape == (4, 4, 4)      # padding 2: (8 + 4 - 5) // 2 + 1
    with pytest.raises(ValueError, match="padding='same' needs an odd kernel, not 4"):
        Conv2d(name="c", in_shape=(8, 8, 1), out_channels=2, kernel=4,
               rng=np.random.default_rng(0))
    explicit = Conv2d(name="c", in_shape=(8, 8, 1), out_channels=2, kernel=4, padding=0,
                      rng=np.random.default_rng(0))
    assert explicit.out_shape == (5, 5, 2)
    with pytest.raises(ValueError, match="padding must be an int >= 0 or 'same'"):
        Conv2d(name="c", in_shape=(8, 8, 1), out_channels=2, padding="valid",
               rng=np.random.default_rng(0))


@pytest.mark.parametrize("name, data, classes, floor", [
    ("wine_mlp", wine, 3, 0.85), ("breast_cancer_mlp", breast_cancer, 2, 0.85)])
def test_user_mlp_trains_with_accelerator_numerics(name, data, classes, floor):
    data = data()
    network = mlp(name, data.input_shape[0], classes)
    config = TrainConfig(net=name, epochs=15, batch_size=16, lr=0.05)
    result = train(config, AccelBackend(), data, network=network)
    assert result.test_accuracy >= floor, result.curve
    fgmp = train(config, FgmpBackend(policy=FgmpPolicy()), data,
                 network=mlp(name, data.input_shape[0], classes))
    assert fgmp.test_accuracy >= floor - 0.1, fgmp.curve


def test_user_cnn_trains_on_the_digits():
    data = load_digits_split()
    config = TrainConfig(net="strided_cnn", epochs=3, lr=0.05)
    result = train(config, AccelBackend(), data, network=strided_cnn())
    assert result.test_accuracy >= 0.8, result.curve


def test_unknown_network_needs_to_be_given():
    config = TrainConfig(net="wine_mlp")
    with pytest.raises(ValueError, match="pass your own Network to train"):
        config.build()
    with pytest.raises(ValueError, match="network must be a sim.nn.Network"):
        train(config, AccelBackend(), wine(), network="wine_mlp")
    with pytest.raises(ValueError, match="data input shape"):
        train(config, AccelBackend(), breast_cancer(), network=mlp("wine_mlp", 13, 3))
    with pytest.raises(ValueError, match="y_train must be integer labels"):
        Dataset(np.zeros((2, 3), np.float32), np.zeros(2), np.zeros((1, 3), np.float32),
                np.zeros(1, np.int64))


@pytest.mark.parametrize("network, data", [(lambda: mlp("wine_mlp", 13, 3), wine),
                                           (strided_cnn, load_digits_split)],
                         ids=["wine_mlp", "strided_cnn"])
def test_user_step_replays_on_the_golden_model(network, data):
    net = network()
    before = [layer.params[key].copy() for _, layer, key in net.parameters()]
    gemms = training_step_gemms(TrainConfig(net=net.name, batch_size=16), network=net,
                                data=data())
    assert {g.kind for g in gemms} == {"forward", "weight_grad", "backward_data"}
    for g in gemms:
        assert np.array_equal(golden_replay(g, split_gemm(g, CONFIGS["4x4"])), g.out_bits), g.name
    # the caller's network did not take the step
    after = [layer.params[key] for _, layer, key in net.parameters()]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_user_step_replays_on_the_rtl(simulator):
    """Every GEMM of a wine-MLP training step on the 4x4 engine, bit for bit."""
    gemms = training_step_gemms(TrainConfig(net="wine_mlp", batch_size=16),
                                network=mlp("wine_mlp", 13, 3), data=wine())
    runs = run_gemms(CONFIGS["4x4"], gemms, backend=simulator, seed=1)
    for g, run in zip(gemms, runs):
        assert np.array_equal(run.out_bits, g.out_bits), g.name
