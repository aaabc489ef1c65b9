"""What the command line can audit: the project's models (``tfhybrid.sources``) and the
gradient rules each one takes; nothing here imports TensorFlow.

The models, their names and classes come from :mod:`tfhybrid.sources` alone. A rule is a
model option that switches a backward pass between the true gradient and a source's
version of it (the article's db1, the sources' max-pool tie rule); :data:`RULES` says
which models take it, so a rule given for another model is rejected before any work.

The gradient tensors a model reports are named by its architecture, which lives with the
model class (TensorFlow): :func:`gradient_names` reads them off a built model, and the
command line checks ``--expect`` right after building the model, before reading MNIST.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhybrid.config import BIAS_GRAD_RULES
from tfhybrid.ops.maxpool import TIE_RULES
from tfhybrid.sources import MODEL_NAMES, model_class


@dataclasses.dataclass(frozen=True)
class Rule:
    """A gradient rule: ``--flag`` sets the model option ``keyword``.

    ``exact``: the choice that gives the true gradient (the update check's twin uses it);
    ``default``: the choice the model trains with by default, and the audit's default;
    ``models``: the models that take the option.
    """

    flag: str
    keyword: str
    choices: tuple[str, ...]
    exact: str
    default: str
    models: tuple[str, ...]
    help: str


RULES = (
    Rule("--bias-grad", "bias_grad", BIAS_GRAD_RULES, exact="exact", default="seed",
         models=("seed-cnn",),
         help="seed (default): the article's db1, 1/400 of the true gradient; exact: the "
              "true gradient"),
    Rule("--pool-ties", "pool_ties", TIE_RULES, exact="first", default="first",
         models=("lenet5", "numpy-cnn", "conv8"),
         help="max-pool backward: first (default): to the first maximum of each window, the "
              "true gradient, as TensorFlow; all: to every tied maximum, as docs 002 and 003"),
)
CHECK_NAMES = ("loss", "update")  # mismatch names besides the tensors

for _rule in RULES:
    assert set(_rule.models) <= set(MODEL_NAMES), _rule  # a renamed model must not slip by


def rules_for(name: str) -> tuple[Rule, ...]:
    """The gradient rules model ``name`` takes."""
    return tuple(rule for rule in RULES if name in rule.models)


def build(name: str, params=None, **options):
    """Model ``name`` (imports TensorFlow); ``options`` go to its class."""
    return model_class(name)(params, **options)


def exact_twin(name: str, model):
    """The same model with the same weights and every rule at its true gradient."""
    exact = {rule.keyword: rule.exact for rule in rules_for(name)}
    return build(name, model.params, dtype=model.dtype, **exact)


def gradient_names(model) -> tuple[str, ...]:
    """The tensors an audit of ``model`` reports: d + each parameter, then d + each
    intermediate of ``reference_forward`` (run once on one blank image)."""
    from tfhybrid.audit.reference import tape_gradients

    blank = tape_gradients(model, model.params, np.zeros((1, 28, 28, 1)), np.eye(1, 10),
                           np.float32)
    return tuple(f"d{key}" for key in model.params) + tuple(blank.intermediates)
