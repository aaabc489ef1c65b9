"""Training state on disk: written atomically, read back without pickle.

A checkpoint is one ``.npz`` file holding the parameters (``param/<key>``), the
layers' state that is not a parameter (``state/<key>``: running statistics), the
optimizer's state (``optim/<key>``) and a JSON document (``meta``) with the config,
the position in training and the history so far. It is written to a temporary
file, flushed to disk and renamed over the previous one, so a process killed at
any moment leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from tfhybrid.errors import CheckpointError

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT_VERSION = 1


@dataclasses.dataclass
class TrainingState:
    """Where a run stands: resume by running ``epoch`` from ``step`` on."""

    model: str
    config: dict
    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    epoch: int = 1  # the epoch to run next (or to continue)
    step: int = 0  # the first step of ``epoch`` still to run
    cost_sum: float = 0.0  # sums over the steps of ``epoch`` already run
    loss_sum: float = 0.0
    first_loss: float | None = None  # the run's first loss, the divergence check's yardstick
    history: list = dataclasses.field(default_factory=list)
    layer_state: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    # The network's layers and how they connect (Sequential.structure()); None in
    # checkpoints written before it was kept.
    structure: str | None = None
    # The order the training images came in (tfhybrid.data.Splits.order); None in
    # checkpoints written before it was kept.
    data_order: str | None = None


def save_checkpoint(folder: str | Path, state: TrainingState) -> Path:
    """Write ``folder/checkpoint.npz`` atomically and return its path."""
    path = Path(folder) / CHECKPOINT_NAME
    meta = {
        k: v
        for k, v in dataclasses.asdict(state).items()
        if k not in ("params", "optimizer_state", "layer_state")
    }
    meta["format_version"] = FORMAT_VERSION
    arrays = {f"param/{k}": v for k, v in state.params.items()}
    arrays.update({f"state/{k}": v for k, v in state.layer_state.items()})
    arrays.update({f"optim/{k}": v for k, v in state.optimizer_state.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(binary_handle)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A failed write (a full disk) leaves no half-written file behind; the file at
        # ``path``, if any, is untouched.
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def read_checkpoint(folder: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read ``folder/checkpoint.npz`` -> (meta document, arrays); no model checks."""
    path = Path(folder) / CHECKPOINT_NAME
    if Path(folder).is_file():
        raise CheckpointError(
            f"{folder} is a file; --resume takes the run's folder "
            f"(the one holding {CHECKPOINT_NAME})"
        )
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint in {folder} (expected {CHECKPOINT_NAME}); "
            "check the folder given to --resume"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a tfhybrid checkpoint "
            f"({load_problem(err)}); start a new run"
        ) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format_version')!r}, "
            f"this version reads {FORMAT_VERSION}; start a new run"
        )
    return meta, arrays


def load_problem(err: Exception) -> str:
    """What went wrong reading an .npz file, in words. NumPy says a file that is no .npz
    archive "contains pickled data" and suggests allow_pickle=True: unsafe advice, and
    wrong for a text file, so it is never passed on."""
    if "allow_pickle" in str(err):
        return "not a NumPy .npz archive"
    return f"{type(err).__name__}: {err}"


def load_checkpoint(
    folder: str | Path,
    model: str,
    param_shapes: dict[str, tuple],
    read: tuple[dict, dict[str, np.ndarray]] | None = None,
    state_shapes: dict[str, tuple] | None = None,
    structure: str | None = None,
) -> TrainingState:
    """Read ``folder/checkpoint.npz`` and check it belongs to ``model`` with these shapes
    (``state_shapes``: the network's layer state, running statistics; default none) and
    this ``structure`` (:meth:`~tfhybrid.Sequential.structure`; None: not checked).

    ``read``: what :func:`read_checkpoint` already returned for this folder, if anything.
    """
    path = Path(folder) / CHECKPOINT_NAME
    meta, arrays = read if read is not None else read_checkpoint(folder)
    if meta.get("model") != model:
        raise CheckpointError(
            f"checkpoint {path} is of model {meta.get('model')!r}, "
            f"not {model!r}; resume it with the model it was trained with"
        )
    saved = meta.get("structure")
    if structure is not None and saved is not None and saved != structure:
        # Parameter names and shapes can agree between two networks that connect their
        # layers differently (a chain and a residual block of the same convolutions).
        raise CheckpointError(
            f"checkpoint {path} was saved by a network of another structure "
            f"({_first_difference(saved, structure)}); resume it with the network it was "
            "trained with, or start a new run"
        )
    params = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
    missing = sorted(set(param_shapes) - set(params))
    extra = sorted(set(params) - set(param_shapes))
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {path} does not fit model {model!r}: "
            f"missing {missing}, unexpected {extra}; start a new run"
        )
    for key, shape in param_shapes.items():
        if params[key].shape != tuple(shape) and _same_bias(params[key].shape, tuple(shape)):
            # Checkpoints of version 0.1 kept convolution biases as [F]; now every bias is [1,F].
            params[key] = params[key].reshape(shape)
        if params[key].shape != tuple(shape):
            raise CheckpointError(
                f"checkpoint {path}: parameter {key} has shape "
                f"{params[key].shape}, model {model!r} needs {tuple(shape)}; "
                "start a new run"
            )
    layer_state = {k.removeprefix("state/"): v for k, v in arrays.items() if k.startswith("state/")}
    state_shapes = state_shapes or {}
    if set(layer_state) != set(state_shapes):
        raise CheckpointError(
            f"checkpoint {path}: its layer state {sorted(layer_state) or 'none'} does not fit "
            f"model {model!r}, which keeps {sorted(state_shapes) or 'none'}; start a new run"
        )
    for key, shape in state_shapes.items():
        if layer_state[key].shape != tuple(shape):
            raise CheckpointError(
                f"checkpoint {path}: state {key} has shape {layer_state[key].shape}, "
                f"model {model!r} needs {tuple(shape)}; start a new run"
            )
        if not np.all(np.isfinite(layer_state[key])):
            raise CheckpointError(
                f"checkpoint {path}: state {key} holds NaN or inf (the file is damaged); "
                "start a new run"
            )
    optim = {k.removeprefix("optim/"): v for k, v in arrays.items() if k.startswith("optim/")}
    fields = {f.name for f in dataclasses.fields(TrainingState)}
    kwargs = {k: v for k, v in meta.items() if k in fields}
    return TrainingState(params=params, optimizer_state=optim, layer_state=layer_state, **kwargs)


def _first_difference(saved: str, wanted: str, context: int = 40) -> str:
    """Where two structure strings first differ, each shown around that point."""
    at = next((i for i, (a, b) in enumerate(zip(saved, wanted, strict=False)) if a != b), None)
    at = min(len(saved), len(wanted)) if at is None else at
    start = max(0, at - context)

    def around(text: str) -> str:
        return (
            ("..." if start else "")
            + text[start : at + context]
            + ("..." if at + context < len(text) else "")
        )

    return f"saved: {around(saved)}; this network: {around(wanted)}"


def _same_bias(saved: tuple, wanted: tuple) -> bool:
    """A bias saved as [F] where [1,F] is wanted: the same values, one axis fewer."""
    return len(saved) == 1 and wanted == (1, saved[0])


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
