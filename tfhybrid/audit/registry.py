"""What the command line can audit: the networks of :mod:`tfhybrid.catalog` and the
gradient rules each takes (the catalog's options whose ``exact`` choice is set). Nothing
here imports TensorFlow until a network is built. A network defined outside the project:
:mod:`tfhybrid.audit.external`; a training run's saved parameters:
:mod:`tfhybrid.audit.saved_run`.

A rule is a model option that switches a backward pass between the true gradient and a
source's version of it (the article's db1, the sources' max-pool tie rule). A rule given
for a model that does not take it is rejected before any work.

The gradient tensors a network reports are named by its layers: :func:`gradient_names`
reads them off a built network, and the command line checks ``--expect`` right after
building it, before reading MNIST.
"""

from __future__ import annotations

import numpy as np

from tfhybrid.catalog import OPTIONS, Option, build_model

# Every model option is an audit option (``--dw-mode`` too); the gradient rules among
# them (``exact`` set) are also what the exact twin switches to the true gradient.
OPTION_FLAGS: tuple[Option, ...] = OPTIONS
RULES: tuple[Option, ...] = tuple(option for option in OPTIONS if option.exact is not None)
CHECK_NAMES = ("loss", "update")  # mismatch names besides the tensors


def rules_for(name: str) -> tuple[Option, ...]:
    """The gradient rules model ``name`` takes."""
    return tuple(rule for rule in RULES if name in rule.models)


def build(name: str, params=None, **options):
    """Model ``name`` (imports TensorFlow); ``options`` go to its builder."""
    return build_model(name, params=params, **options)


def exact_twin(name: str, model):
    """The same model with the same weights and every rule at its true gradient."""
    exact = {rule.keyword: rule.exact for rule in rules_for(name)}
    options = {**getattr(model, "options", {}), **exact}
    twin = build(name, model.params, seed=getattr(model, "seed", 0), dtype=model.dtype, **options)
    if getattr(model, "state", None):
        twin.state = model.state  # running statistics, as the model's
    return twin


def gradient_names(model) -> tuple[str, ...]:
    """The tensors an audit of ``model`` reports: d + each parameter, then d + each
    intermediate of ``reference_forward`` (run once on one blank input)."""
    from tfhybrid.audit.reference import tape_gradients

    shape = getattr(model, "input_shape", (28, 28, 1))
    classes = getattr(model, "output_shape", (10,))[-1]
    blank = tape_gradients(
        model, model.params, np.zeros((1, *shape)), np.eye(1, classes), np.float32
    )
    return tuple(f"d{key}" for key in model.params) + tuple(blank.intermediates)
