"""An MLP with dropout on scikit-learn's breast-cancer data (569 samples, 30 features, 2
classes)."""

import numpy as np

from sim.nn import Dataset, Dropout, Linear, Network, ReLU, split_table


def load() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    return split_table(*load_breast_cancer(return_X_y=True))


def build(seed: int = 0, hidden: int = 16) -> Network:
    rng = np.random.default_rng(seed)
    fc1 = Linear(name="fc1", in_features=30, out_features=hidden, input_grad=False, rng=rng)
    return Network(name="breast_cancer_mlp", input_shape=(30,), layers=[
        fc1, ReLU(name="relu1", in_shape=fc1.out_shape),
        Dropout(name="drop1", in_shape=fc1.out_shape, p=0.25),
        Linear(name="fc2", in_features=hidden, out_features=2, rng=rng)])
