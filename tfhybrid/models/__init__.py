"""Models: thin wrappers that chain op pairs; parameters and gradients share keys."""

from tfhybrid.models.networks import Conv8, LeNet5, NumpyCNN, TwoLayerNet
from tfhybrid.models.registry import MODEL_NAMES, build_model, training_defaults
from tfhybrid.models.seed_cnn import SeedCNN

__all__ = ["Conv8", "LeNet5", "MODEL_NAMES", "NumpyCNN", "SeedCNN", "TwoLayerNet",
           "build_model", "training_defaults"]
