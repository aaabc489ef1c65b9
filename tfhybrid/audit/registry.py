"""What the command line can audit: the networks of :mod:`tfhybrid.catalog` and the
gradient rules each one takes, a network defined outside the project
(``MODULE:NAME`` or ``path/to/file.py:NAME``), and a training run's saved parameters.
Nothing here imports TensorFlow, except loading an outside network (its module does).

A rule is a model option that switches a backward pass between the true gradient and a
source's version of it (the article's db1, the sources' max-pool tie rule): an
:class:`~tfhybrid.catalog.Option` whose ``exact`` choice is set. A rule given for a model
that does not take it is rejected before any work.

The gradient tensors a network reports are named by its layers: :func:`gradient_names`
reads them off a built network, and the command line checks ``--expect`` right after
building it, before reading MNIST.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback
import zipfile
from pathlib import Path

import numpy as np

from tfhybrid.catalog import MODEL_NAMES, MODELS, OPTIONS, build_model
from tfhybrid.checkpoint import CHECKPOINT_NAME, read_checkpoint
from tfhybrid.config import TrainConfig
from tfhybrid.errors import ConfigError, TfhybridError


@dataclasses.dataclass(frozen=True)
class Rule:
    """A gradient rule: ``flag`` sets the model option ``keyword``; ``exact`` gives the
    true gradient, ``default`` is what the model trains with; ``models`` take it."""

    flag: str
    keyword: str
    choices: tuple[str, ...]
    exact: str
    default: str
    models: tuple[str, ...]
    help: str


# Every model option is an audit option (``--dw-mode`` too); the gradient rules among
# them (``exact`` set) are also what the exact twin switches to the true gradient.
OPTION_FLAGS = tuple(
    Rule(
        option.flag,
        option.keyword,
        option.choices,
        option.exact,
        option.default,
        tuple(name for name in MODEL_NAMES if option in MODELS[name].options),
        option.help,
    )
    for option in OPTIONS
)
RULES = tuple(rule for rule in OPTION_FLAGS if rule.exact is not None)
CHECK_NAMES = ("loss", "update")  # mismatch names besides the tensors


def rules_for(name: str) -> tuple[Rule, ...]:
    """The gradient rules model ``name`` takes."""
    return tuple(rule for rule in RULES if name in rule.models)


def build(name: str, params=None, **options):
    """Model ``name`` (imports TensorFlow); ``options`` go to its builder."""
    return build_model(name, params=params, **options)


def exact_twin(name: str, model):
    """The same model with the same weights and every rule at its true gradient."""
    exact = {rule.keyword: rule.exact for rule in rules_for(name)}
    options = {**getattr(model, "options", {}), **exact}
    return build(name, model.params, dtype=model.dtype, **options)


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


# --- a network defined outside the project ---------------------------------------------
EXTERNAL_FORMS = "MODULE:NAME or path/to/file.py:NAME"
WHAT_NAME_IS = "a tfhybrid.Sequential, or a function returning one when called with no arguments"
PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


@dataclasses.dataclass(frozen=True)
class External:
    """``--model`` naming a network outside the catalog: ``where`` is a module name or a
    .py file, ``attribute`` the name of the network (or of a function building it)."""

    text: str  # as given on the command line
    where: str
    attribute: str
    is_file: bool


def is_external(model: str) -> bool:
    """True for ``MODULE:NAME`` / ``FILE.py:NAME``; the catalog's names have no colon."""
    return ":" in model


def parse_external(text: str) -> External:
    """Check the form of ``MODULE:NAME`` / ``FILE.py:NAME`` and that the file exists;
    nothing is imported yet. Raises ConfigError."""
    where, _, attribute = text.rpartition(":")
    if not where or not attribute:
        raise ConfigError(
            f"--model {text}: give {EXTERNAL_FORMS}, the network's name after the colon"
        )
    if not attribute.isidentifier():
        raise ConfigError(
            f"--model {text}: {attribute!r} is not a Python name; give {EXTERNAL_FORMS}"
        )
    is_file = where.endswith(".py") or "/" in where or os.sep in where
    if is_file:
        path = Path(where)
        if path.suffix != ".py":
            raise ConfigError(f"--model {text}: {where!r} is not a .py file; give {EXTERNAL_FORMS}")
        if not path.is_file():
            raise ConfigError(
                f"--model {text}: no file {where} (looked in {Path.cwd()}); check the path"
            )
    elif not all(part.isidentifier() for part in where.split(".")):
        raise ConfigError(
            f"--model {text}: {where!r} is neither a module name nor a .py "
            f"file; give {EXTERNAL_FORMS}"
        )
    return External(text, where, attribute, is_file)


def load_external(spec: External):
    """The network ``spec`` names: import its module (or run its file), read the attribute,
    call it if it is a function. Every failure is one ConfigError line saying what to fix."""
    from tfhybrid.models.sequential import Sequential  # imports TensorFlow

    module = _import_file(spec) if spec.is_file else _import_module(spec)
    if not hasattr(module, spec.attribute):
        found = _candidates(module, Sequential)
        listing = (
            f"it defines {', '.join(found)}"
            if found
            else "it defines no Sequential and no function"
        )
        raise ConfigError(
            f"--model {spec.text}: {spec.where} has no {spec.attribute!r} "
            f"({listing}); name {WHAT_NAME_IS}"
        )
    value = getattr(module, spec.attribute)
    if isinstance(value, Sequential):
        return value
    if not callable(value):
        raise ConfigError(
            f"--model {spec.text}: {spec.attribute} is {_a(value)}, not a "
            f"tfhybrid.Sequential; name {WHAT_NAME_IS}"
        )
    try:
        built = value()
    except TfhybridError:
        raise
    except Exception as err:  # the user's code: any failure is reported, not raised
        raise ConfigError(
            f"--model {spec.text}: calling {spec.attribute}() failed: "
            f"{_describe(err)}; it must build the network with no "
            "arguments"
        ) from None
    if not isinstance(built, Sequential):
        raise ConfigError(
            f"--model {spec.text}: {spec.attribute}() returned {_a(built)}, not "
            f"a tfhybrid.Sequential; name {WHAT_NAME_IS}"
        )
    return built


def _import_module(spec: External):
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # as `python -m`: a module in the current folder imports
    try:
        return importlib.import_module(spec.where)
    except ModuleNotFoundError as err:
        if err.name is not None and (
            spec.where == err.name or spec.where.startswith(err.name + ".")
        ):
            raise ConfigError(
                f"--model {spec.text}: cannot import module {spec.where!r} "
                f"(no module named {err.name!r}); put its folder on PYTHONPATH "
                f"or give the file: --model path/to/{spec.where.split('.')[-1]}"
                f".py:{spec.attribute}"
            ) from None
        raise _import_failed(spec, err) from None
    except Exception as err:
        raise _import_failed(spec, err) from None


def _import_file(spec: External):
    path = Path(spec.where).resolve()
    name = "_tfhybrid_model_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"--model {spec.text}: cannot load {spec.where} as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))  # the file's own imports of its neighbours
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise _import_failed(spec, err) from None
    return module


def _import_failed(spec: External, err: Exception) -> ConfigError:
    return ConfigError(
        f"--model {spec.text}: importing {spec.where} failed: {_describe(err)}; "
        "fix it so that it imports"
    )


def _describe(err: BaseException) -> str:
    """``Type: message (file:line)`` on one line, at the deepest frame of the user's code."""
    message = " ".join(str(err).split())
    if len(message) > 300:
        message = message[:297] + "..."
    where = ""
    if isinstance(err, SyntaxError) and err.filename:
        where = f" ({err.filename}:{err.lineno})"
    else:
        frames = traceback.extract_tb(err.__traceback__)
        own = [
            f
            for f in frames
            if not f.filename.startswith(PACKAGE_DIR)
            and "site-packages" not in f.filename
            and not f.filename.startswith("<")
        ]
        if own:
            where = f" ({own[-1].filename}:{own[-1].lineno})"
    return f"{type(err).__name__}: {message}{where}" if message else type(err).__name__ + where


def _candidates(module, sequential_type) -> list[str]:
    """The module's own networks and functions, which ``NAME`` could have meant."""
    found = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (
            isinstance(value, sequential_type)
            or (inspect.isfunction(value) and value.__module__ == module.__name__)
        )
    ]
    return found[:8] + (["..."] if len(found) > 8 else [])


def _a(value) -> str:
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


# --- a training run's saved parameters ----------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SavedRun:
    """A training run folder: its model, the model options and seed it was trained with,
    and its parameters (from ``source``: params.npz, else the checkpoint)."""

    folder: str
    model: str
    options: dict[str, str]
    seed: int
    params: dict[str, np.ndarray]
    source: str  # the file the parameters come from
    when: str  # "after epoch 2" / "at epoch 3, step 40"


def read_run(folder: str) -> SavedRun:
    """Read a run folder of ``scripts/train.py`` (no TensorFlow). Raises ConfigError."""
    path = Path(folder)
    flag = f"--from {folder}"
    if not path.is_dir():
        raise ConfigError(
            f"{flag}: no such folder; give a training run's folder (the --out of scripts/train.py)"
        )
    metrics, params_file, checkpoint = (
        path / "metrics.json",
        path / "params.npz",
        path / CHECKPOINT_NAME,
    )
    if not (metrics.is_file() or checkpoint.is_file()):
        raise ConfigError(
            f"{flag}: not a training run (no metrics.json and no "
            f"{CHECKPOINT_NAME}); give the --out folder of scripts/train.py"
        )
    meta, arrays = None, None
    if checkpoint.is_file():
        try:
            meta, arrays = read_checkpoint(path)
        except TfhybridError as err:
            raise ConfigError(f"{flag}: {str(err).removesuffix('; start a new run')}") from None
    if metrics.is_file():
        try:
            document = json.loads(metrics.read_text())
            saved = document["config"]
            history = document["epochs"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(
                f"{flag}: {metrics} is damaged or not a run's metrics ({type(err).__name__}: {err})"
            ) from None
        when = f"after epoch {len(history)}" if isinstance(history, list) else "at the end"
    else:
        saved = meta.get("config")
        when = f"at epoch {meta.get('epoch')}, step {meta.get('step')}"
    config = _saved_config(flag, saved)
    if params_file.is_file():
        source = params_file
        try:
            with np.load(params_file, allow_pickle=False) as archive:
                params = {k: archive[k] for k in archive.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
            raise ConfigError(
                f"{flag}: {params_file} is damaged ({type(err).__name__}: {err})"
            ) from None
    elif arrays is not None:
        source = checkpoint
        params = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
        if meta.get("epoch", 1) > 1 and meta.get("step", 0) == 0:
            when = f"after epoch {meta['epoch'] - 1}"
    else:
        raise ConfigError(f"{flag}: no parameters (neither params.npz nor {CHECKPOINT_NAME})")
    if not params:
        raise ConfigError(f"{flag}: {source} holds no parameters")
    return SavedRun(
        folder=str(folder),
        model=config.model,
        options=config.model_options(),
        seed=config.seed,
        params=params,
        source=str(source),
        when=when,
    )


def _saved_config(flag: str, saved) -> TrainConfig:
    if not isinstance(saved, dict) or "model" not in saved:
        raise ConfigError(
            f"{flag}: the run's saved config names no model; it is damaged or "
            "not a run of scripts/train.py"
        )
    known = set(TrainConfig().to_dict())
    try:
        return TrainConfig(**{k: v for k, v in saved.items() if k in known}).validated()
    except ConfigError as err:
        raise ConfigError(f"{flag}: the run's saved settings are not usable ({err})") from None


def build_from_run(run: SavedRun):
    """The run's model with its options and saved parameters (imports TensorFlow)."""
    model = build(run.model, seed=run.seed, **run.options)
    params = dict(run.params)
    for key, shape in model.param_shapes.items():  # biases saved as [F] by version 0.1
        value = params.get(key)
        if value is not None and value.shape == (shape[-1],) and shape == (1, shape[-1]):
            params[key] = value.reshape(shape)
    try:
        model.params = params
    except ValueError as err:
        raise ConfigError(
            f"--from {run.folder}: {run.source} does not fit model {run.model} ({err})"
        ) from None
    return model
