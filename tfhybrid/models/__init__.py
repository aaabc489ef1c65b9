"""The networks: :class:`Sequential` and the builders of the sources' networks."""

from tfhybrid.catalog import MODEL_NAMES, build_model
from tfhybrid.models.book import bn_cnn, dlfs_deep
from tfhybrid.models.networks import conv8, lenet5, numpy_cnn, two_layer_net
from tfhybrid.models.resnet import resnet_mnist
from tfhybrid.models.seed_cnn import seed_cnn
from tfhybrid.models.sequential import Sequential

__all__ = [
    "MODEL_NAMES",
    "Sequential",
    "bn_cnn",
    "build_model",
    "dlfs_deep",
    "conv8",
    "lenet5",
    "numpy_cnn",
    "resnet_mnist",
    "seed_cnn",
    "two_layer_net",
]
