"""An MLP with dropout on scikit-learn's wine data (178 samples, 13 features, 3 classes)."""

import numpy as np

from sim.nn import Dataset, Dropout, Linear, Network, ReLU, split_table


def load() -> Dataset:
    from sklearn.datasets import load_wine

    return split_table(*load_wine(return_X_y=True))


def build(seed: int = 0, hidden: int = 16) -> Network:
    rng = np.random.default_rng(seed)
    return Network(name="wine_mlp", input_shape=(13,), layers=[
        Linear(name="fc1", out_features=hidden, input_grad=False, rng=rng),
        ReLU(name="relu1"), Dropout(name="drop1", p=0.25),
        Linear(name="fc2", out_features=3, rng=rng)])
