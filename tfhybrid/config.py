"""Training configuration: one dataclass, checked where it enters.

Every check runs before TensorFlow is imported or data is read, so a typo costs
a fraction of a second and yields one line that says what was received.
"""

from __future__ import annotations

import dataclasses
import math
import os

from tfhybrid.catalog import (
    BIAS_GRAD_RULES,
    DW_MODES,
    MODEL_NAMES,
    MODEL_OPTIONS,
    MODELS,
    OPTIONS,
    TRAINING_DEFAULTS,
    default_lr,
)
from tfhybrid.catalog import TIE_RULES as POOL_TIE_RULES
from tfhybrid.errors import ConfigError
from tfhybrid.optimizers import optimizer_names
from tfhybrid.schedules import SCHEDULES

__all__ = [
    "BIAS_GRAD_RULES",
    "DATASETS",
    "DATA_DIR_ENV",
    "DW_MODES",
    "POOL_TIE_RULES",
    "TrainConfig",
    "resolve_data_dir",
]

DATASETS = ("mnist", "fashion_mnist", "kmnist")
MNIST_TRAIN_SIZE = 55_000  # tfds "train[5000:]"; "train[:5000]" is the validation set
MNIST_TEST_SIZE = 10_000  # the same for every --dataset (MNIST, Fashion-MNIST, KMNIST)
DATA_DIR_ENV = "TFHYBRID_DATA_DIR"


class _TrainConfigMethods:
    """The methods of :class:`TrainConfig` (whose fields are made below)."""

    @classmethod
    def for_model(cls, model: str = "seed-cnn", **overrides):
        """The config of ``model`` with its source's settings, then ``overrides``.

        Giving ``epochs`` without ``iterations`` trains by epochs even for a network
        whose source counts iterations.
        """
        if model not in TRAINING_DEFAULTS:
            raise ConfigError(f"--model must be one of {', '.join(MODEL_NAMES)}; got {model!r}")
        source = TRAINING_DEFAULTS[model]
        settings = {
            "epochs": source.epochs if source.epochs is not None else 1,
            "iterations": source.iterations,
            "batch_size": source.batch_size,
            "optimizer": source.optimizer,
            "lr": source.lr,
            "lr_schedule": source.lr_schedule,
            "train_limit": source.train_limit,
            "test_limit": source.test_limit,
        }
        settings.update(
            {
                option.keyword: (option.default if option in MODELS[model].options else None)
                for option in OPTIONS
            }
        )
        if "epochs" in overrides and "iterations" not in overrides:
            settings["iterations"] = None
        chosen = overrides.get("optimizer")
        if "lr" not in overrides and chosen in optimizer_names():
            settings["lr"] = default_lr(model, chosen)[0]
        return cls(model=model, **{**settings, **overrides})

    def lr_origin(self) -> str:
        """Where this config's learning rate comes from, for the run's header."""
        rate, origin = default_lr(self.model, self.optimizer)
        return origin if rate == self.lr else "--lr"

    @property
    def train_size(self) -> int:
        """Number of training images actually used."""
        if self.train_limit is None:
            return MNIST_TRAIN_SIZE
        return min(self.train_limit, MNIST_TRAIN_SIZE)

    def validated(self):
        """Return ``self`` if every field is usable, else raise :class:`ConfigError`."""
        _check_choice("--model", self.model, MODEL_NAMES)
        _check_int("--epochs", self.epochs, minimum=1)
        if self.iterations is not None:
            _check_int("--iterations", self.iterations, minimum=1)
        if self.test_limit is not None:
            _check_int("--test-limit", self.test_limit, minimum=1)
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
        _check_choice("--lr-schedule", self.lr_schedule, SCHEDULES)
        _check_int("--seed", self.seed, minimum=0)
        _check_choice("--optimizer", self.optimizer, optimizer_names())
        for option in OPTIONS:
            value, flag = getattr(self, option.keyword), option.flag
            if option.keyword in MODEL_OPTIONS[self.model]:
                _check_choice(flag, value, option.choices)
            elif value is not None:
                raise ConfigError(
                    f"{flag} does not apply to model {self.model!r} "
                    f"(its options: {_flags(MODEL_OPTIONS[self.model])}); "
                    f"got {flag} {value}"
                )
        _check_choice("--dataset", self.dataset, DATASETS)
        if self.audit_every is not None:
            _check_int("--audit-every", self.audit_every, minimum=1)
        return self

    def check_limits(self) -> None:
        """A new run's image limits within the data set; ConfigError otherwise. (A saved
        run is not held to this: one saved with a larger limit trained on the whole set,
        and resumes.)"""
        if self.train_limit is not None and self.train_limit > MNIST_TRAIN_SIZE:
            raise ConfigError(
                f"--train-limit must be at most {MNIST_TRAIN_SIZE} (the training images after "
                f"the 5,000 kept for validation), got {self.train_limit}; leave it out to use "
                "them all"
            )
        if self.test_limit is not None and self.test_limit > MNIST_TEST_SIZE:
            raise ConfigError(
                f"--test-limit must be at most {MNIST_TEST_SIZE} (the test images), got "
                f"{self.test_limit}; leave it out to use them all"
            )

    def resolved_data_dir(self) -> str | None:
        """The manual MNIST folder: ``--data-dir``, else ``$TFHYBRID_DATA_DIR``, else None."""
        return resolve_data_dir(self.data_dir)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def model_options(self) -> dict:
        """The options this config passes to its model's constructor."""
        return {k: getattr(self, k) for k in MODEL_OPTIONS[self.model]}

    def total_steps(self, train_size: int | None = None) -> int:
        """Updates in the whole run: ``iterations``, or ``epochs`` passes of whole batches."""
        per_epoch = (train_size or self.train_size) // self.batch_size
        return self.iterations if self.iterations is not None else self.epochs * per_epoch

    def epoch_count(self) -> int:
        """Epochs the run spans (the last one may be partial when counting iterations)."""
        per_epoch = self.train_size // self.batch_size
        return -(-self.total_steps() // per_epoch)


def _option_default(option) -> str | None:
    """A model option's field default: its default for seed-cnn (the default model) if
    that takes it, else None."""
    return option.default if option in MODELS["seed-cnn"].options else None


# The fields of a run, in the order metrics.json writes them; the model options (one field
# per catalog Option) sit after ``seed``, derived from tfhybrid.catalog.OPTIONS.
_FIELDS = [
    ("model", str, "seed-cnn"),
    ("epochs", int, 10),
    ("iterations", "int | None", None),
    ("batch_size", int, 100),
    ("optimizer", str, "sgd"),
    ("lr", float, 0.1),
    ("lr_schedule", str, "constant"),
    ("seed", int, 0),
    *((option.keyword, "str | None", _option_default(option)) for option in OPTIONS),
    ("dataset", str, "mnist"),
    ("data_dir", "str | None", None),
    ("out", "str | None", None),
    ("train_limit", "int | None", None),
    ("test_limit", "int | None", None),
    ("plot", bool, False),
    ("tensorboard", bool, False),
    ("audit_every", "int | None", None),
]
TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [(name, kind, dataclasses.field(default=default)) for name, kind, default in _FIELDS],
    bases=(_TrainConfigMethods,),
    frozen=True,
)
TrainConfig.__module__ = __name__  # (make_dataclass's module= needs Python 3.12)
TrainConfig.__doc__ = """Everything that defines a training run; saved whole into ``metrics.json``.

Defaults are the source article's program: batch 100, plain SGD with lr 0.1, 10 epochs
over 55,000 images. :meth:`for_model` gives another network its own source's settings.
``iterations``, when set, counts updates instead of epochs. ``lr_schedule``: how the
rate moves from ``lr`` over the run (:mod:`tfhybrid.schedules`; runs saved before it
existed are "constant"). One field per model option
of :data:`tfhybrid.catalog.OPTIONS` (``dw_mode``, ``bias_grad``, ``pool_ties``), None
for a model that does not have it. ``audit_every``: audit the gradients after every
N-th epoch (None: never); it changes no computation.
"""


def saved_config(saved: dict, **overrides) -> TrainConfig:
    """The config a run saved (metrics.json's or its checkpoint's "config"), with
    ``overrides``; keys this version does not know are left out. Not validated: the
    caller validates, and words the error for its own flag (``--resume``, ``--from``)."""
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    kept = {k: v for k, v in saved.items() if k in known}
    # A run saved before an option existed trained with its default, where its model takes it.
    model = kept.get("model", "seed-cnn")
    if model in MODELS:
        for option in OPTIONS:
            if option.keyword not in kept:
                kept[option.keyword] = option.default if option in MODELS[model].options else None
    return TrainConfig(**{**kept, **overrides})


def resolve_data_dir(given: str | None) -> str | None:
    """``given``, else ``$TFHYBRID_DATA_DIR``, else None (tensorflow-datasets downloads)."""
    return given or os.environ.get(DATA_DIR_ENV) or None


def _flags(options: tuple[str, ...]) -> str:
    return ", ".join("--" + o.replace("_", "-") for o in options) or "none"


def _check_int(flag: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{flag} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{flag} must be >= {minimum}, got {value}")


def _check_choice(flag: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")
