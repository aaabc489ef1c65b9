"""Models: thin wrappers that chain op pairs; parameters and gradients share keys."""

from tfhybrid.models.seed_cnn import SeedCNN

__all__ = ["SeedCNN"]
