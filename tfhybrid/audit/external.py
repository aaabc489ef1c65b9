"""A network defined outside the project, for ``check_gradients.py --model MODULE:NAME``
or ``--model path/to/file.py:NAME``: the form checked without importing anything, then
the module imported (or the file run) and the network read off it, every failure one
ConfigError line that says what to fix.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from pathlib import Path

from tfhybrid.errors import ConfigError, TfhybridError

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
