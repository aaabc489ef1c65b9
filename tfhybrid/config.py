"""Training configuration: one dataclass, checked where it enters.

Every check runs before TensorFlow is imported or data is read, so a typo costs
a fraction of a second and yields one line that says what was received.
"""

from __future__ import annotations

import dataclasses
import math
import os

from tfhybrid.errors import ConfigError

DATASETS = ("mnist", "fashion_mnist", "kmnist")
DW_MODES = ("batched", "per-sample")
BIAS_GRAD_RULES = ("seed", "exact")
MNIST_TRAIN_SIZE = 55_000  # tfds "train[5000:]"; "train[:5000]" is the validation set
DATA_DIR_ENV = "TFHYBRID_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved whole into ``metrics.json``.

    Defaults are the source article's program: batch 100, plain SGD with lr 0.1,
    10 epochs over 55,000 images.
    """

    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.1
    seed: int = 0
    dw_mode: str = "batched"
    bias_grad: str = "seed"
    dataset: str = "mnist"
    data_dir: str | None = None
    out: str | None = None
    train_limit: int | None = None
    plot: bool = False
    tensorboard: bool = False

    @property
    def train_size(self) -> int:
        """Number of training images actually used."""
        if self.train_limit is None:
            return MNIST_TRAIN_SIZE
        return min(self.train_limit, MNIST_TRAIN_SIZE)

    def validated(self) -> TrainConfig:
        """Return ``self`` if every field is usable, else raise :class:`ConfigError`."""
        _check_int("--epochs", self.epochs, minimum=1)
        _check_int("--batch-size", self.batch_size, minimum=1)
        if self.train_limit is not None:
            _check_int("--train-limit", self.train_limit, minimum=1)
        if self.batch_size > self.train_size:
            raise ConfigError(
                f"--batch-size must not exceed the training set size ({self.train_size}), "
                f"got {self.batch_size}; lower --batch-size or raise --train-limit"
            )
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
            raise ConfigError(f"--lr must be a number, got {self.lr!r}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr!r}")
        _check_int("--seed", self.seed, minimum=0)
        _check_choice("--dw-mode", self.dw_mode, DW_MODES)
        _check_choice("--bias-grad", self.bias_grad, BIAS_GRAD_RULES)
        _check_choice("--dataset", self.dataset, DATASETS)
        return self

    def resolved_data_dir(self) -> str | None:
        """The manual MNIST folder: ``--data-dir``, else ``$TFHYBRID_DATA_DIR``, else None."""
        return self.data_dir or os.environ.get(DATA_DIR_ENV) or None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_int(flag: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{flag} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{flag} must be >= {minimum}, got {value}")


def _check_choice(flag: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")
