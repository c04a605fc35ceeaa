"""Networks and data a user brings (not the built-in workloads; ``examples/``): an MLP with
dropout on scikit-learn's wine data, one on breast-cancer, a digits CNN with 5x5 stride-2
convolutions.
They train with accelerator and FGMP numerics, and their training steps replay bit for bit on the
golden model and on the RTL engine through tb.engine_api."""

import numpy as np
import pytest

from examples import breast_cancer_mlp, wine_mlp
from examples import strided_cnn as examples_strided_cnn
from sim.fgmp_control import FgmpPolicy
from sim.nn import (AccelBackend, Conv2d, Dataset, Dropout, Flatten, Linear, Network, ReLU,
                    load_digits_split, split_table, train)
from sim.nn.backend import FgmpBackend
from sim.nn.train import TrainConfig
from sim.replay import golden_replay, split_gemm, training_step_gemms
from tb.engine_api import run_gemms
from tb.engines import CONFIGS


def wine():
    return wine_mlp.load()


def breast_cancer():
    return breast_cancer_mlp.load()


def mlp(name, features, classes, seed=0) -> Network:
    module = {"wine_mlp": wine_mlp, "breast_cancer_mlp": breast_cancer_mlp}[name]
    net = module.build(seed=seed)
    assert net.input_shape == (features,) and net.layers[-1].out_shape == (classes,)
    return net


def strided_cnn(seed=0) -> Network:
    return examples_strided_cnn.build(seed=seed)


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


def test_split_table_standardises_with_the_training_rows():
    x = np.arange(40, dtype=np.float64).reshape(20, 2) * [1.0, 100.0]
    data = split_table(x, np.arange(20) % 2, test_fraction=0.25, seed=3)
    assert data.x_train.dtype == np.float32 and len(data.x_train) == 15 and len(data.x_test) == 5
    assert np.allclose(data.x_train.mean(axis=0), 0, atol=1e-6)
    assert np.allclose(data.x_train.std(axis=0), 1, atol=1e-6)
    with pytest.raises(ValueError, match="test_fraction must be in"):
        split_table(x, np.arange(20), test_fraction=1.0)
    with pytest.raises(ValueError, match="x must be samples x features"):
        split_table(x[:, 0], np.arange(20))


def test_shapes_are_inferred_layer_to_layer():
    """Layers made without their input shape take it from the network; the weights are the
    same as with the shapes given (drawn in the same order from the same generator)."""
    def network(inferred: bool) -> Network:
        rng = np.random.default_rng(7)
        if inferred:
            layers = [Conv2d(name="conv", out_channels=3, kernel=3, rng=rng),
                      ReLU(name="relu"), Flatten(name="flat"),
                      Linear(name="fc1", out_features=5, rng=rng),
                      Dropout(name="drop", p=0.5), Linear(name="fc2", out_features=2, rng=rng)]
        else:
            conv = Conv2d(name="conv", in_shape=(6, 6, 2), out_channels=3, kernel=3, rng=rng)
            flat = Flatten(name="flat", in_shape=conv.out_shape)
            fc1 = Linear(name="fc1", in_features=flat.out_shape[0], out_features=5, rng=rng)
            layers = [conv, ReLU(name="relu", in_shape=conv.out_shape), flat, fc1,
                      Dropout(name="drop", in_shape=fc1.out_shape, p=0.5),
                      Linear(name="fc2", in_features=5, out_features=2, rng=rng)]
        return Network(name="n", input_shape=(6, 6, 2), layers=layers)

    inferred, given = network(True), network(False)
    assert [l.in_shape for l in inferred.layers] == [l.in_shape for l in given.layers]
    for (_, a, key), (_, b, _) in zip(inferred.parameters(), given.parameters()):
        assert np.array_equal(a.params[key], b.params[key])
    with pytest.raises(ValueError, match="relu: the input shape is not known yet"):
        ReLU(name="relu").out_shape
    with pytest.raises(ValueError, match="fc: a Linear layer takes 1-D inputs, not \\(6, 6, 2\\)"):
        Network(name="n", input_shape=(6, 6, 2),
                layers=[Linear(name="fc", out_features=2, rng=np.random.default_rng(0))])
