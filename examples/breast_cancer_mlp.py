"""An MLP with dropout on scikit-learn's breast-cancer data (569 samples, 30 features, 2
classes)."""

import numpy as np

from sim.nn import Dataset, Dropout, Linear, Network, ReLU, split_table


def load() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    return split_table(*load_breast_cancer(return_X_y=True))


def build(seed: int = 0, hidden: int = 16) -> Network:
    rng = np.random.default_rng(seed)
    return Network(name="breast_cancer_mlp", input_shape=(30,), layers=[
        Linear(name="fc1", out_features=hidden, input_grad=False, rng=rng),
        ReLU(name="relu1"), Dropout(name="drop1", p=0.25),
        Linear(name="fc2", out_features=2, rng=rng)])
