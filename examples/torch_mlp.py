"""A PyTorch MLP with dropout on scikit-learn's wine data: ``build()`` returns the
``nn.Module`` itself, and ``sparta train --network-file`` converts it (sim.nn.from_torch).

    sparta train --network-file examples/torch_mlp.py --epochs 15

Needs the ``import`` extra (``pip install -e '.[import]'``).
"""

from sim.nn import Dataset, split_table


def load() -> Dataset:
    from sklearn.datasets import load_wine

    return split_table(*load_wine(return_X_y=True))


def build(seed: int = 0, hidden: int = 16):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(13, hidden), nn.ReLU(), nn.Dropout(0.25),
                         nn.Linear(hidden, 3))
