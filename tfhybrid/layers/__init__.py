"""The layers of :class:`tfhybrid.Sequential`, and the base class for a layer of your own.

Every layer is an op pair (``forward`` / ``backward``) with a TensorFlow twin
(``reference``) for the gradient audit: see :mod:`tfhybrid.layers.base`. Convolutions
run in TensorFlow (output, dw, dx); every other gradient is NumPy written by hand.
"""

from tfhybrid.layers.activations import LeakyReLU, ReLU, Rescaling, Sigmoid, Tanh
from tfhybrid.layers.base import Layer
from tfhybrid.layers.composite import Branches, Composite, Residual
from tfhybrid.layers.conv import Conv2D
from tfhybrid.layers.dense import Dense, Flatten
from tfhybrid.layers.dropout import Dropout
from tfhybrid.layers.normalization import BatchNormalization, LayerNormalization
from tfhybrid.layers.pooling import AvgPool2D, MaxPool2D

__all__ = [
    "AvgPool2D",
    "BatchNormalization",
    "Branches",
    "Composite",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "LayerNormalization",
    "LeakyReLU",
    "MaxPool2D",
    "ReLU",
    "Residual",
    "Rescaling",
    "Sigmoid",
    "Tanh",
]
