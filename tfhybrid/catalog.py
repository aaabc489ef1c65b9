"""Every network of the project, described once: how to build it, the options it takes,
how its source trained it, and what accuracy the source reports.

The command lines, the config check and the gradient audit all read this table. Nothing
here imports TensorFlow, so a bad option is rejected in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Mapping

from tfhybrid.choices import (
    BIAS_GRAD_RULES,
    CONV_BACKENDS,
    DROPOUT_RULES,
    DW_MODES,
    TIE_RULES,
    check_choice,
)

__all__ = ["BIAS_GRAD_RULES", "CONV_BACKENDS", "DROPOUT_RULES", "DW_MODES", "TIE_RULES"]


@dataclasses.dataclass(frozen=True)
class Option:
    """A model option with a command-line flag.

    ``exact``: for a gradient rule (an option that switches a backward pass between the
    true gradient and a source's version of it), the choice that gives the true
    gradient; None for an option that changes no gradient.
    """

    keyword: str
    choices: tuple[str, ...]
    default: str
    help: str
    exact: str | None = None
    # True when every choice gives the same result to float rounding, only computed
    # another way: a saved run's network may then be audited (--from) with any choice.
    computes_alike: bool = False
    layer: str = ""  # the class of the layers it configures ("Conv2D")
    argument: str = ""  # their constructor's keyword for it (default: ``keyword``)

    @property
    def flag(self) -> str:
        return "--" + self.keyword.replace("_", "-")

    @property
    def layer_argument(self) -> str:
        return self.argument or self.keyword

    @property
    def models(self) -> tuple[str, ...]:
        """The catalog networks that take this option."""
        return tuple(name for name in MODEL_NAMES if self in MODELS[name].options)


DW_MODE = Option(
    "dw_mode",
    DW_MODES,
    "batched",
    "filter gradient: one TensorFlow call per batch (default), or each sample's "
    "own convolution as the article",
    computes_alike=True,
    layer="Conv2D",
)
CONV = Option(
    "conv",
    CONV_BACKENDS,
    "tf",
    "who computes the convolutions: tf (default): TensorFlow's kernels; numpy: "
    "tfhybrid.ops.conv_numpy, the formulas in NumPy as sources 002-004 write them "
    "(several times slower, the same result to float rounding)",
    computes_alike=True,
    layer="Conv2D",
    argument="backend",
)
BIAS_GRAD = Option(
    "bias_grad",
    BIAS_GRAD_RULES,
    "seed",
    "seed (default): the article's db1, 1/400 of the true gradient; exact: the true gradient",
    exact="exact",
    layer="Conv2D",
)
POOL_TIES = Option(
    "pool_ties",
    TIE_RULES,
    "first",
    "max-pool backward: first (default): to the first maximum of each window, "
    "the true gradient, as TensorFlow; all: to every tied maximum, as docs 002 "
    "and 003",
    exact="first",
    layer="MaxPool2D",
    argument="ties",
)
DROPOUT_RULE = Option(
    "dropout_rule",
    DROPOUT_RULES,
    "book",
    "dropout scaling: book (default): Deep Learning from Scratch's, no scaling in training "
    "and x (1 - rate) at inference; inverted: / (1 - rate) in training, identity at inference",
    layer="Dropout",
    argument="rule",
)
# Every model option, declared once: TrainConfig's fields, the command lines' flags, the
# audit's rules and settings and a network's recorded options all derive from these.
# Adding one: its op, its layer's constructor keyword, an Option here (with ``layer``)
# added to the ModelSpecs that take it; the builders pass it on (layer_options).
OPTIONS = (DW_MODE, CONV, BIAS_GRAD, POOL_TIES, DROPOUT_RULE)


def layer_options(layer_class: type, values: dict) -> dict:
    """The options in ``values`` (keyword -> choice) that configure ``layer_class``, as its
    constructor's keywords: ``Conv2D(20, 9, **layer_options(Conv2D, options))``."""
    return {
        option.layer_argument: values[option.keyword]
        for option in OPTIONS
        if option.layer == layer_class.__name__ and option.keyword in values
    }


def network(name: str):
    """Decorator of the builder of catalog network ``name``: checks the options it is given
    against its ModelSpec (where they enter), fills their defaults, and records them as
    ``net.options``. The builder takes ``seed``, ``dtype``, ``params``, its extras and
    ``**options``, which it passes on with :func:`layer_options`."""

    def wrap(builder):
        @functools.wraps(builder)
        def build(**kwargs):
            spec = model_spec(name)
            known = {option.keyword for option in OPTIONS}
            foreign = sorted(k for k in kwargs if k in known and k not in spec.option_keywords)
            # The builder's own keywords (seed, dtype, params, hidden, init): the rest
            # would vanish into **options, and a misspelt option silently do nothing.
            extras = {
                p.name
                for p in inspect.signature(builder).parameters.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            }
            unknown = sorted(k for k in kwargs if k not in known and k not in extras)
            if unknown:
                raise ValueError(
                    f"{name} takes no argument {', '.join(unknown)} (its options: "
                    f"{', '.join(spec.option_keywords) or 'none'}; its other arguments: "
                    f"{', '.join(sorted(extras))})"
                )
            if foreign:
                raise ValueError(
                    f"{name} takes no option {', '.join(foreign)} (its options: "
                    f"{', '.join(spec.option_keywords) or 'none'})"
                )
            for option in spec.options:
                kwargs.setdefault(option.keyword, option.default)
                check_choice(option.keyword, kwargs[option.keyword], option.choices)
            net = builder(**kwargs)
            net.options = {option.keyword: kwargs[option.keyword] for option in spec.options}
            return net

        return build

    return wrap


@dataclasses.dataclass(frozen=True)
class TrainingDefaults:
    """A source's training settings. Exactly one of ``epochs`` and ``iterations`` is set.

    ``train_limit`` / ``test_limit``: use only the first N training / test images (None:
    all). ``reported``: the test accuracy the source reports on MNIST (None: none given),
    and ``source``: where the settings come from.
    """

    epochs: int | None
    iterations: int | None
    batch_size: int
    optimizer: str
    lr: float
    train_limit: int | None
    test_limit: int | None
    reported: float | None
    source: str
    ours: bool = False  # the source gave no training settings: these are the project's
    lr_schedule: str = "constant"  # tfhybrid.schedules: how the rate moves over the run

    def steps(self, train_size: int) -> int:
        """Number of updates: ``iterations``, or ``epochs`` passes of whole batches."""
        if self.iterations is not None:
            return self.iterations
        return self.epochs * max(train_size // self.batch_size, 1)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One network: ``builder`` ("module:function", called with ``seed``, ``dtype`` and
    the options, returns a :class:`tfhybrid.Sequential`), its options and its source."""

    name: str
    builder: str
    options: tuple[Option, ...]
    training: TrainingDefaults

    @property
    def option_keywords(self) -> tuple[str, ...]:
        return tuple(option.keyword for option in self.options)

    @property
    def rules(self) -> tuple[Option, ...]:
        """The options that switch a gradient between the true one and a source's."""
        return tuple(option for option in self.options if option.exact is not None)

    def build_function(self):
        """The builder (imports TensorFlow)."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)


class _ConventionalRates(Mapping):
    """optimizer name -> its ``conventional_lr``, read from the registered classes (so an
    optimizer added as one class has its rate here too)."""

    def _rates(self) -> dict[str, float]:
        from tfhybrid.optimizers import OPTIMIZERS

        return {n: c.conventional_lr for n, c in OPTIMIZERS.items() if c.conventional_lr}

    def __getitem__(self, name: str) -> float:
        return self._rates()[name]

    def __iter__(self):
        return iter(self._rates())

    def __len__(self) -> int:
        return len(self._rates())


# Without --lr, an optimizer other than the source's takes its conventional rate (the
# textbook's defaults that doc 004 follows; Keras's for RMSprop and Adam).
CONVENTIONAL_LR = _ConventionalRates()


def default_lr(model: str, optimizer: str) -> tuple[float, str]:
    """(learning rate, where it comes from) for ``optimizer`` on ``model`` without --lr.

    The source's rate for the source's optimizer. An optimizer with ``sgd_rate_divisor``
    (momentum): the model's SGD rate divided by it, the same steady step as plain SGD (a
    network that needs a small SGD rate needs a small momentum rate too). Otherwise the
    optimizer's ``conventional_lr``.
    """
    from tfhybrid.optimizers import OPTIMIZERS

    training = MODELS[model].training
    if optimizer == training.optimizer:
        whose = "default" if training.ours else "source"
        return training.lr, f"{model}'s {whose} rate for {optimizer}"
    divisor = OPTIMIZERS[optimizer].sgd_rate_divisor
    if divisor:
        sgd = training.lr if training.optimizer == "sgd" else CONVENTIONAL_LR["sgd"]
        return sgd / divisor, f"{model}'s SGD rate / {divisor:g} for {optimizer}"
    return CONVENTIONAL_LR[optimizer], f"{optimizer}'s conventional rate"


MODELS = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "seed-cnn",
            "tfhybrid.models.seed_cnn:seed_cnn",
            (DW_MODE, CONV, BIAS_GRAD),
            TrainingDefaults(
                10, None, 100, "sgd", 0.1, None, None, 0.9695, "doc 000: the article's program"
            ),
        ),
        ModelSpec(
            "lenet5",
            "tfhybrid.models.networks:lenet5",
            (DW_MODE, CONV, POOL_TIES),
            TrainingDefaults(
                10,
                None,
                100,
                "adam",
                0.001,
                None,
                None,
                None,
                "doc 000's TensorFlow sketch (no settings given: ours)",
                ours=True,
            ),
        ),
        ModelSpec(
            "numpy-cnn",
            "tfhybrid.models.networks:numpy_cnn",
            (DW_MODE, CONV, POOL_TIES),
            TrainingDefaults(
                15,
                None,
                128,
                "sgd",
                0.01,
                None,
                None,
                0.97,
                "doc 002: epoch 15, lr 0.01, batch 128",
            ),
        ),
        ModelSpec(
            "conv8",
            "tfhybrid.models.networks:conv8",
            (DW_MODE, CONV, POOL_TIES),
            TrainingDefaults(
                3,
                None,
                1,
                "sgd",
                0.005,
                1000,
                1000,
                0.78,
                "doc 003: 3 epochs, one image per step, first 1,000 images",
            ),
        ),
        ModelSpec(
            "two-layer-net",
            "tfhybrid.models.networks:two_layer_net",
            (),
            TrainingDefaults(
                None,
                10_000,
                100,
                "sgd",
                0.1,
                None,
                None,
                0.97,
                "doc 004: 10,000 iterations, batch 100, lr 0.1",
            ),
        ),
        ModelSpec(
            "dlfs-deep",
            "tfhybrid.models.book:dlfs_deep",
            (DW_MODE, CONV, DROPOUT_RULE),
            TrainingDefaults(
                20,
                None,
                100,
                "adam",
                0.001,
                None,
                None,
                0.9938,
                "Deep Learning from Scratch ch. 8 (DeepConvNet): 20 epochs, Adam 0.001, batch 100",
            ),
        ),
        ModelSpec(
            "bn-cnn",
            "tfhybrid.models.book:bn_cnn",
            (
                DW_MODE,
                CONV,
            ),
            TrainingDefaults(
                3,
                None,
                100,
                "adam",
                0.002,
                None,
                None,
                None,
                "ours: batch normalization after each convolution, 3 epochs, Adam 0.002",
                ours=True,
            ),
        ),
        ModelSpec(
            "resnet-mnist",
            "tfhybrid.models.resnet:resnet_mnist",
            (
                DW_MODE,
                CONV,
            ),
            TrainingDefaults(
                5,
                None,
                50,
                "adam",
                0.002,
                None,
                None,
                None,
                "ours: three stages of residual blocks with batch normalization, 5 epochs, "
                "batch 50, Adam 0.002 with cosine decay",
                ours=True,
                lr_schedule="cosine",
            ),
        ),
    )
}
MODEL_NAMES = tuple(MODELS)
TRAINING_DEFAULTS = {name: spec.training for name, spec in MODELS.items()}
MODEL_OPTIONS = {name: spec.option_keywords for name, spec in MODELS.items()}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return MODELS[name]


def build_model(name: str, *, seed: int = 0, dtype=None, **options):
    """A fresh network by name, initialised from ``seed`` (imports TensorFlow).

    ``options`` go to its builder: the options of its :class:`ModelSpec` (``dw_mode``,
    ``bias_grad``, ``pool_ties``) and builder extras (``hidden`` for two-layer-net,
    ``init`` for lenet5). ``dtype`` defaults to float32.
    """
    import numpy as np

    spec = model_spec(name)  # the builder checks the options (catalog.network)
    return spec.build_function()(seed=seed, dtype=np.float32 if dtype is None else dtype, **options)
