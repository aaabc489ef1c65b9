"""A training run's saved parameters, for ``check_gradients.py --from RUN_DIR``: its
model, options and seed (its saved config, read by :func:`tfhybrid.config.saved_config`,
as ``train.py --resume`` reads it) and its parameters (params.npz, else the checkpoint).
Nothing here imports TensorFlow until the model is built.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from tfhybrid.audit.registry import build
from tfhybrid.checkpoint import CHECKPOINT_NAME, load_problem, read_checkpoint
from tfhybrid.config import TrainConfig, saved_config
from tfhybrid.errors import ConfigError, TfhybridError


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
    layer_state: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


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
            raise ConfigError(f"{flag}: {params_file} is damaged ({load_problem(err)})") from None
    elif arrays is not None:
        source = checkpoint
        params = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
        params.update({k: v for k, v in arrays.items() if k.startswith("state/")})
        if meta.get("epoch", 1) > 1 and meta.get("step", 0) == 0:
            when = f"after epoch {meta['epoch'] - 1}"
    else:
        raise ConfigError(f"{flag}: no parameters (neither params.npz nor {CHECKPOINT_NAME})")
    layer_state = {k.removeprefix("state/"): params.pop(k) for k in list(params) if "/" in k}
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
        layer_state=layer_state,
    )


def _saved_config(flag: str, saved) -> TrainConfig:
    if not isinstance(saved, dict) or "model" not in saved:
        raise ConfigError(
            f"{flag}: the run's saved config names no model; it is damaged or "
            "not a run of scripts/train.py"
        )
    try:
        return saved_config(saved).validated()
    except ConfigError as err:
        raise ConfigError(f"{flag}: the run's saved settings are not usable ({err})") from None


def build_from_run(run: SavedRun, options: dict[str, str] | None = None):
    """The run's model with its options (or ``options``, for one computed alike: the
    convolution's backend) and saved parameters (imports TensorFlow)."""
    model = build(run.model, seed=run.seed, **(run.options if options is None else options))
    params = dict(run.params)
    for key, shape in model.param_shapes.items():  # biases saved as [F] by version 0.1
        value = params.get(key)
        if value is not None and value.shape == (shape[-1],) and shape == (1, shape[-1]):
            params[key] = value.reshape(shape)
    try:
        model.params = params
        model.state = run.layer_state
    except ValueError as err:
        raise ConfigError(
            f"--from {run.folder}: {run.source} does not fit model {run.model} ({err})"
        ) from None
    return model
