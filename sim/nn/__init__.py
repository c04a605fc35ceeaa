"""Workload networks trained on the digits through a pluggable GEMM backend (numpy only).

* :mod:`.backend`: :class:`Fp32Backend` (FP32 reference) and :class:`AccelBackend` (fp16
  operands, golden GEMM: the accelerator's numerics).
* :mod:`.layers`, :mod:`.network`, :mod:`.networks`: layers, the network container (with the
  lowering specs of its layers), and the digits CNN, digits MLP and ResNet-18 topology.
* :mod:`.data`, :mod:`.loss`, :mod:`.optim`, :mod:`.train`: data split, softmax
  cross-entropy, SGD with momentum on FP32 master weights, the training loop.
* :mod:`.model_import`: a PyTorch module or an ONNX graph as a network (torch and onnx are
  imported only when called).
"""

from .backend import BACKENDS, AccelBackend, Fp32Backend, GemmBackend, GemmCall, make_backend
from .data import Dataset, Digits, load_digits_split, split_table
from .layers import (AvgPool2d, BasicBlock, Conv2d, Dropout, Flatten, GlobalAvgPool, Layer,
                     Linear, MaxPool2d, ReLU, StepContext)
from .loss import softmax_cross_entropy
from .model_import import UnsupportedModelError, from_onnx, from_torch
from .network import Network
from .networks import (INPUT_SHAPES, NETWORKS, build_network, cancer_mlp, digits_cnn, digits_mlp,
                       resnet18, vgg_small)
from .optim import SGD
from .train import TrainConfig, TrainResult, evaluate, train, train_step

__all__ = ["BACKENDS", "AccelBackend", "Fp32Backend", "GemmBackend", "GemmCall", "make_backend",
           "Dataset", "Digits", "load_digits_split", "split_table", "BasicBlock", "Conv2d", "Dropout", "Flatten",
           "GlobalAvgPool", "Layer", "Linear", "ReLU", "StepContext", "softmax_cross_entropy",
           "MaxPool2d", "AvgPool2d", "UnsupportedModelError", "from_onnx", "from_torch",
           "Network", "INPUT_SHAPES", "NETWORKS", "build_network", "digits_cnn", "digits_mlp",
           "resnet18", "vgg_small", "cancer_mlp", "SGD", "TrainConfig", "TrainResult", "evaluate",
           "train", "train_step"]
