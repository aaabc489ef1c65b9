"""The training loop of every network: ``train_step``, ``train_epoch``, ``train_and_evaluate``.

The default is the source article's program: plain SGD over shuffled mini-batches,
one line per epoch, the test accuracy at the end. Its loss is the sigmoid
cross-entropy; the "cost" the article printed is the softmax cross-entropy of the
same logits, averaged over the epoch's batches, and is reported beside it. The
other networks minimise the softmax cross-entropy with their source's optimizer.

Every epoch ends with a checkpoint, and Ctrl-C saves the state at the current step,
so a run can always be resumed; the data order of an epoch is a function of
(seed, epoch), so a resumed run is bit-for-bit the run that was interrupted.

``audit_every`` N audits the hand-written gradients after every N-th epoch, on a copy
of the weights (the training model and the optimizer are never touched), outside the
epoch's "seconds": see :class:`tfhybrid.audit.epoch.EpochAudit`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tfhybrid import fast
from tfhybrid.catalog import TRAINING_DEFAULTS, build_model
from tfhybrid.checkpoint import (
    CHECKPOINT_NAME,
    TrainingState,
    atomic_write,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from tfhybrid.config import TrainConfig
from tfhybrid.data import ORDER_FILE, ORDER_TFDS, load_mnist, one_hot
from tfhybrid.errors import CheckpointError, DivergenceError, Interrupted
from tfhybrid.interrupt import StopRequest
from tfhybrid.optimizers import build_optimizer
from tfhybrid.progress import ProgressBar
from tfhybrid.schedules import learning_rate

# The article's printed per-epoch Cost and final test accuracy, for comparison.
ARTICLE_COST = (0.7286, 0.3221, 0.2614, 0.2179, 0.1860, 0.1640, 0.1461, 0.1331, 0.1222, 0.1137)
ARTICLE_TEST_ACCURACY = 0.9695
# A loss this many times the run's first loss means training has blown up even while
# every number is still finite (a saturated sigmoid network never overflows).
DIVERGENCE_FACTOR = 100.0
RUN_FILES = (CHECKPOINT_NAME, "metrics.json")  # history.jsonl is a log a new run rewrites
# Settings that do not change the computation, so a resumed run may give new values.
_ORDER_NAMES = {
    ORDER_TFDS: "tensorflow-datasets' order (the original .gz files)",
    ORDER_FILE: "the files' own order (a copy not byte-identical to the originals, or "
    "Keras's mnist.npz)",
}
RESUME_MAY_CHANGE = ("epochs", "data_dir", "out", "plot", "tensorboard", "audit_every")
# --audit-every: a fixed batch (the first validation images), so audits compare over epochs.
AUDIT_IMAGES = 8


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The shuffled sample order of one epoch: a function of (seed, epoch) only.

    Deriving it instead of drawing from a running generator means any epoch can be
    replayed on its own, which is what resuming a run needs.
    """
    return np.random.default_rng([seed, epoch]).permutation(size)


def epoch_batches(
    seed: int, epoch: int, size: int, batch_size: int, start: int = 0, stop: int | None = None
) -> Iterator[np.ndarray]:
    """Batches ``start`` .. ``stop - 1`` of one epoch: consecutive slices of
    :func:`epoch_order`, each sorted (rows gathered in memory order; a batch's gradient is
    a sum, so the order inside it does not matter). The last partial batch is dropped."""
    if not 1 <= batch_size <= size:
        raise ValueError(f"batch size must be in [1, {size}], got {batch_size}")
    order = epoch_order(seed, epoch, size)
    stop = size // batch_size if stop is None else stop
    for step in range(start, stop):
        yield np.sort(order[step * batch_size : (step + 1) * batch_size])


def batch_indices(size: int, batch_size: int, steps: int, seed: int) -> Iterator[np.ndarray]:
    """``steps`` batches over as many epochs as they need, epoch by epoch as training
    draws them (:func:`epoch_batches` of epochs 1, 2, ...)."""
    per_epoch = size // batch_size if 1 <= batch_size <= size else 0
    epoch, done = 1, 0
    while done < steps or per_epoch == 0:
        count = min(per_epoch, steps - done)
        yield from epoch_batches(seed, epoch, size, batch_size, 0, count)
        epoch, done = epoch + 1, done + count


def train_step(model, optimizer, x: np.ndarray, y: np.ndarray, step: int | None = None) -> dict:
    """One update: the network's hand-written ``loss_and_gradients`` on the batch x,
    one-hot y, then ``optimizer.update`` of its params in place. Returns the result of
    ``loss_and_gradients`` (loss and cost from before the update; no intermediates).

    ``step``: the run's step number, from which a layer that draws random numbers
    (dropout) derives its draw, so a resumed run draws what the uninterrupted one did."""
    extra = {} if step is None else {"step": step}  # a model of one's own need not take it
    result = model.loss_and_gradients(x, y, intermediates=False, **extra)
    optimizer.update(model.params, result["grads"])
    return result


def train_epoch(
    model,
    optimizer,
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    epoch: int,
    batch_size: int,
    start: int = 0,
    stop: int | None = None,
    before_step: Callable[[int], object] | None = None,
    after_step: Callable[[int, dict], object] | None = None,
) -> None:
    """Steps ``start`` .. ``stop - 1`` of epoch ``epoch`` over x, one-hot y, in the order
    :func:`epoch_batches` gives. ``before_step(step)`` and ``after_step(step, result)``
    let the caller stop, check and record (they may raise). The run's step number, for
    random draws, is (epoch - 1) * (len(x) // batch_size) + step."""
    batches = epoch_batches(seed, epoch, len(x), batch_size, start, stop)
    first = (epoch - 1) * (len(x) // batch_size)
    for step, batch in enumerate(batches, start=start):
        if before_step is not None:
            before_step(step)
        result = train_step(model, optimizer, x[batch], y[batch], _step(model, first + step))
        if after_step is not None:
            after_step(step, result)


def fit(
    model,
    optimizer,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    iterations: int,
    seed: int = 0,
    log_every: int = 0,
    log: Callable[[str], object] = print,
) -> list[float]:
    """Train ``model`` in place for ``iterations`` updates in training's data order;
    returns the loss of each step (on its batch, before its update). ``labels``: int [N].
    No checkpoints, no validation: the scripts' and tests' short runs."""
    losses: list[float] = []
    started = time.perf_counter()
    batches = batch_indices(len(x), batch_size, iterations, seed)
    for step, index in enumerate(batches, start=1):
        result = train_step(
            model, optimizer, x[index], one_hot(labels[index], model.dtype), _step(model, step - 1)
        )
        if not np.isfinite(result["loss"]):
            raise FloatingPointError(f"loss became {result['loss']} at step {step}")
        losses.append(result["loss"])
        if log_every and step % log_every == 0:
            log(
                f"step {step:6d}/{iterations}  loss {np.mean(losses[-log_every:]):.4f}  "
                f"{time.perf_counter() - started:7.1f}s"
            )
    return losses


def _step(model, step: int) -> int | None:
    """``step`` for a network that takes it (every Sequential), else None."""
    return step if hasattr(model, "replaying") else None


def prepare_workdir(workdir: str | Path, *, resume: bool = False, force: bool = False) -> Path:
    """Check the output folder before any work: writable, and not someone else's run."""
    path = Path(workdir)
    held = [name for name in RUN_FILES if (path / name).exists()]
    if held and not (resume or force):
        raise CheckpointError(
            f"output folder {path} already holds a run ({', '.join(held)}); pass --resume {path} "
            "to continue it, --force to overwrite it, or choose another --out"
        )
    if path.exists() and not path.is_dir():
        raise CheckpointError(
            f"output folder {path} is a file, not a folder; "
            + ("give --resume the run's folder" if resume else "choose another folder with --out")
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        fix = (
            "make it writable again to resume the run saved there"
            if resume
            else "choose another folder with --out"
        )
        raise CheckpointError(
            f"cannot write to output folder {path} ({err.strerror}); {fix}"
        ) from None
    return path


def train_and_evaluate(
    config: TrainConfig,
    workdir: str | Path,
    log=print,
    *,
    resume: bool = False,
    force: bool = False,
) -> dict:
    """Train ``config.model`` as ``config`` says; write metrics.json and params.npz.

    ``resume=True`` continues the run saved in ``workdir``; ``force=True`` lets a
    new run replace one already there. Returns the metrics written to metrics.json.
    """
    config = config.validated()
    if not resume:
        config.check_limits()
    out = prepare_workdir(workdir, resume=resume, force=force)
    if resume:  # settings first: a wrong folder should not cost a data load
        saved = read_checkpoint(out)
        _check_resumable(saved[0], config, out)
    started = time.perf_counter()
    data = load_mnist(config.resolved_data_dir(), config.train_limit, dataset=config.dataset)
    load_seconds = time.perf_counter() - started
    x_test, y_test = data.x_test[: config.test_limit], data.y_test[: config.test_limit]
    log(
        f"data: {len(data.x_train)} training, {len(data.x_val)} validation, "
        f"{len(x_test)} test images (loaded in {load_seconds:.1f}s)"
    )
    log(
        f"model {config.model}, optimizer {config.optimizer}, lr {config.lr:g} "
        f"({config.lr_origin()})"
        + (f", {config.lr_schedule} decay to 0" if config.lr_schedule != "constant" else "")
        + f", batch {config.batch_size}, seed {config.seed}"
        + (", convolutions in NumPy (--conv numpy)" if config.conv == "numpy" else "")
        + ("" if fast.enabled() else f", readable path ({fast.READABLE_ENV}=1)")
    )
    from tfhybrid.runtime import tune_for_training

    tune_for_training()  # one BLAS thread, freed memory kept: see tfhybrid/runtime.py

    model = build_model(config.model, seed=config.seed, **config.model_options())  # imports TF
    optimizer = build_optimizer(config.optimizer, config.lr)
    if resume:
        shapes = {k: v.shape for k, v in model.params.items()}
        state = load_checkpoint(
            out,
            config.model,
            shapes,
            read=saved,
            state_shapes=model.state_shapes,
            structure=model.structure(),
        )
        if state.data_order is not None and state.data_order != data.order:
            # The same images in another order: the rest of the run would see other batches.
            saved_order = _ORDER_NAMES.get(state.data_order, state.data_order)
            raise CheckpointError(
                f"the run in {out} trained on the images in {saved_order}, but "
                f"{config.resolved_data_dir() or 'the data'} gives them in "
                f"{_ORDER_NAMES.get(data.order, data.order)}, which would change the rest "
                "of the run's batches; resume with the copy of the data the run used"
            )
        model.params = state.params
        model.state = state.layer_state
        try:
            optimizer.load_state_dict(state.optimizer_state)
        except ValueError as err:
            raise CheckpointError(
                f"checkpoint in {out}: optimizer state does not fit "
                f"{config.optimizer!r} ({err}); start a new run"
            ) from None
        log(f"resuming {out} at epoch {state.epoch}, step {state.step}")
    else:
        state = TrainingState(model=config.model, config=config.to_dict(), params=model.params)
    state.structure = model.structure()
    state.data_order = data.order
    state.params = model.params  # the optimizer updates this very dict in place

    x_train, y_train = data.x_train, one_hot(data.y_train)
    per_epoch = len(x_train) // config.batch_size  # the last partial batch is dropped
    total = config.total_steps(len(x_train))
    board = _tensorboard(out) if config.tensorboard else None
    auditor = None
    if config.audit_every:
        from tfhybrid.audit.epoch import EpochAudit

        auditor = EpochAudit(config, data.x_val[:AUDIT_IMAGES], one_hot(data.y_val[:AUDIT_IMAGES]))
    _write_history(out, state.history)  # a resumed run's history is its checkpoint's
    columns = EpochColumns(article=config.model == "seed-cnn" and config.dataset == "mnist")
    log(columns.header())
    for row in state.history:
        log(columns.row(row))
    with StopRequest() as stop:
        for epoch in range(state.epoch, -(-total // per_epoch) + 1):
            t0 = time.perf_counter()
            steps = min(per_epoch, total - (epoch - 1) * per_epoch)
            results = []

            def before_step(step, epoch=epoch):
                # The schedule reads the global step alone: a resumed run sets each rate
                # as the uninterrupted run did.
                at = (epoch - 1) * per_epoch + step
                optimizer.lr = learning_rate(config.lr_schedule, config.lr, at, total)
                if stop.requested:
                    with _writing(out, f"at epoch {epoch}, step {step}"):
                        _save(out, state, optimizer, model)
                    raise Interrupted(
                        f"interrupted at epoch {epoch}, step {step}; state saved in "
                        f"{out / CHECKPOINT_NAME}",
                        out,
                    )

            def after_step(step, result, epoch=epoch, results=results):
                _check_loss(result["loss"], state, epoch, step, config, out)
                _check_params(model.params, epoch, step, config, out)
                _check_params(model.state, epoch, step, config, out, what="state")
                state.step = step + 1
                state.cost_sum += result["cost"]
                state.loss_sum += result["loss"]
                results[:] = [result]
                progress.update(state.step, loss=state.loss_sum / state.step)

            with ProgressBar(steps, f"epoch {epoch}") as progress:
                train_epoch(
                    model,
                    optimizer,
                    x_train,
                    y_train,
                    seed=config.seed,
                    epoch=epoch,
                    batch_size=config.batch_size,
                    start=state.step,
                    stop=steps,
                    before_step=before_step,
                    after_step=after_step,
                )
            result = results[0] if results else None
            row = {
                "epoch": epoch,
                "steps": steps,
                "cost": state.cost_sum / steps,
                "loss": state.loss_sum / steps,
                "val_accuracy": model.accuracy(data.x_val, data.y_val),
                "seconds": time.perf_counter() - t0,
            }
            news = None
            if auditor is not None and epoch % config.audit_every == 0:
                row["audit"] = auditor.audit(model)  # after "seconds": not counted there
                news = auditor.news(epoch, row["audit"], state.history)
            state.history.append(row)
            state.epoch, state.step, state.cost_sum, state.loss_sum = epoch + 1, 0, 0.0, 0.0
            with _writing(out, f"at the end of epoch {epoch}"):
                _append_history(out, row)  # first: a kill before the save re-runs this epoch
                _save(out, state, optimizer, model)
            log(columns.row(row))
            if news:
                log(news)
            if board is not None:
                board.epoch(row, model.params, result["grads"] if result else None)

    test_accuracy = model.accuracy(x_test, y_test)
    # The sources report MNIST figures: a comparison on another dataset would mislead.
    reported = TRAINING_DEFAULTS[config.model].reported if config.dataset == "mnist" else None
    log(
        f"test accuracy {test_accuracy:.4f}"
        + (f" (source: {reported})" if reported is not None else "")
    )
    metrics = {
        "config": config.to_dict(),
        "model": config.model,
        "epochs": state.history,
        "test_accuracy": test_accuracy,
        "test_images": len(x_test),
        "data_seconds": load_seconds,
        "total_seconds": time.perf_counter() - started,
        "source": {"settings": TRAINING_DEFAULTS[config.model].source, "test_accuracy": reported},
    }
    if columns.article:
        metrics["article"] = {"cost": list(ARTICLE_COST), "test_accuracy": ARTICLE_TEST_ACCURACY}
    with _writing(out, "at the end of training"):
        # params.npz: the weights, and a network's running statistics as state/<key>
        atomic_write(
            out / "params.npz",
            lambda handle: np.savez(
                handle, **model.params, **{f"state/{k}": v for k, v in model.state.items()}
            ),
        )
        atomic_write(
            out / "metrics.json",
            lambda handle: handle.write((json.dumps(metrics, indent=2) + "\n").encode()),
        )
    log(f"saved {out / 'metrics.json'} and {out / 'params.npz'}")
    if board is not None:
        board.close()
        log(f"TensorBoard: tensorboard --logdir {shlex.quote(str(out / 'tensorboard'))}")
    if config.plot:
        from tfhybrid.plots import plot_filters, plot_history

        title = f"{config.model} seed {config.seed}"
        saved = [
            plot_history(state.history, out / "curves.png", title),
            plot_filters(model.params, out / "filters.png", title),
        ]
        log("plots: " + ", ".join(str(p) for p in saved if p is not None))
    return metrics


class EpochColumns:
    """The per-epoch table; the article's printed cost beside ours for the article's model."""

    def __init__(self, article: bool):
        self.article = article

    def header(self) -> str:
        cost = f" {'article cost':>12} {'cost':>8}" if self.article else ""
        return f"{'epoch':>5}{cost} {'loss':>8} {'val acc':>8} {'seconds':>8}"

    def row(self, row: dict) -> str:
        cost = ""
        if self.article:
            epoch = row["epoch"]
            reference = f"{ARTICLE_COST[epoch - 1]:.4f}" if epoch <= len(ARTICLE_COST) else "-"
            cost = f" {reference:>12} {row['cost']:>8.4f}"
        return (
            f"{row['epoch']:>5}{cost} {row['loss']:>8.4f} {row['val_accuracy']:>8.4f} "
            f"{row['seconds']:>8.1f}"
        )


HISTORY_NAME = "history.jsonl"


def _write_history(out: Path, rows: list[dict]) -> None:
    """``history.jsonl``: one JSON line per finished epoch, as in ``metrics.json``'s
    "epochs", so a run that dies still leaves its history readable without the checkpoint."""
    atomic_write(
        out / HISTORY_NAME,
        lambda handle: handle.write("".join(json.dumps(row) + "\n" for row in rows).encode()),
    )


def _append_history(out: Path, row: dict) -> None:
    with open(out / HISTORY_NAME, "a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _tensorboard(out: Path):
    from tfhybrid.tensorboard import TensorBoardLogger

    return TensorBoardLogger(out / "tensorboard")


@contextlib.contextmanager
def _writing(out: Path, when: str) -> Iterator[None]:
    """A write into the run folder that fails (a full disk, permissions changed during
    the run) becomes one CheckpointError saying what is kept and how to resume."""
    try:
        yield
    except OSError as err:
        raise CheckpointError(
            f"cannot write to the run folder {out} {when} ({err.strerror}); "
            f"{_kept(out, 'the last checkpoint written')}; make "
            f"the folder writable (or free space) and resume the run with --resume {out}"
        ) from None


def _kept(out: Path, which: str) -> str:
    """What a run stopped by an error still has: "``which`` is kept", or no checkpoint."""
    if (out / CHECKPOINT_NAME).exists():
        return f"{which} is kept"
    return "no checkpoint had been written yet"


def _save(out: Path, state: TrainingState, optimizer, model) -> None:
    state.optimizer_state = optimizer.state_dict()
    state.layer_state = model.state
    save_checkpoint(out, state)


def _check_resumable(meta: dict, config: TrainConfig, out: Path) -> None:
    """A resumed run must be the same run: only the RESUME_MAY_CHANGE settings may change."""
    saved = dict(meta.get("config", {}))
    current = config.to_dict()
    for key in RESUME_MAY_CHANGE:
        saved.pop(key, None)
        current.pop(key, None)
    differing = [k for k in saved if saved[k] != current.get(k)]
    if differing:
        key = differing[0]
        raise CheckpointError(
            f"the run in {out} was trained with {key}={saved[key]!r}, not {current.get(key)!r}; "
            "resume it with its own settings (only --epochs, --data-dir, --plot, "
            "--tensorboard and --audit-every may change)"
        )
    if meta.get("epoch", 1) > config.epoch_count() and (out / "metrics.json").exists():
        raise CheckpointError(
            f"the run in {out} already finished its {config.epoch_count()} "
            f"epoch{'' if config.epoch_count() == 1 else 's'}; "
            "pass a larger --epochs to train it further"
        )


def _divergence(
    what: str, epoch: int, step: int, config: TrainConfig, out: Path
) -> DivergenceError:
    return DivergenceError(
        f"training diverged at epoch {epoch}, step {step + 1}: {what}; "
        f"{_kept(out, 'the last good checkpoint')}; "
        f"lower --lr (got {config.lr}) and start a new run"
    )


def _check_loss(
    loss: float, state: TrainingState, epoch: int, step: int, config: TrainConfig, out: Path
) -> None:
    if not math.isfinite(loss):
        raise _divergence(f"the loss is {loss}", epoch, step, config, out)
    if state.first_loss is None:
        state.first_loss = loss
    elif loss > DIVERGENCE_FACTOR * state.first_loss:
        raise _divergence(
            f"the loss grew from {state.first_loss:.4g} to {loss:.4g} "
            f"(over {DIVERGENCE_FACTOR:g} times)",
            epoch,
            step,
            config,
            out,
        )


def _check_params(
    params: dict[str, np.ndarray],
    epoch: int,
    step: int,
    config: TrainConfig,
    out: Path,
    what: str = "parameter",
) -> None:
    for key, value in params.items():
        if not np.isfinite(value).all():
            raise _divergence(f"{what} {key} is no longer finite", epoch, step, config, out)
