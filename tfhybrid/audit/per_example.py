"""Per-example gradients audited: each sample's own gradient of every parameter.

Sample n's share of the batch loss is L_n / N (the loss is a mean over the batch), so
its own gradient is the tape of ``reference_forward`` on that one sample, divided by N;
finite differences perturb the parameters for that sample alone. A bug that only moves
gradient between samples (the sum still right) shows here and nowhere else; the sum over
N is also judged against the batch gradient.

A network whose layers draw one random mask for the whole batch (dropout) cannot be cut
into one-sample batches: each would draw its own mask. There the batch stays whole and
every label row but sample n's is zeroed: the softmax cross-entropy is linear in the
labels, so that loss is exactly L_n / N, under the batch's own masks (replayed).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tfhybrid.audit.judge import (
    PER_EXAMPLE,
    PER_EXAMPLE_SUFFIX,
    SUM_SUFFIX,
    Probe,
    TensorCheck,
    judge_tensor,
)
from tfhybrid.audit.reference import TapeResult, tape_gradients


def whole_batch_shares(model) -> bool:
    """Whether sample shares must be taken on the whole batch (a layer draws random
    numbers, one draw per batch); raises ValueError where that cannot be done (a loss
    that is not linear in the labels)."""
    random = [
        f"{i} ({type(layer).__name__})"
        for i, layer in enumerate(getattr(model, "layers", ()))
        if getattr(layer, "random", False)
    ]
    if not random:
        return False
    if getattr(model, "loss", None) != "softmax_cross_entropy":
        raise ValueError(
            f"the per-example audit of a network whose layer {random[0]} draws one mask for "
            "the batch needs the softmax cross-entropy (each sample's share is then the loss "
            "with the other samples' labels zeroed); audit without per_example"
        )
    return True


def _share(x: np.ndarray, y: np.ndarray, i: int, whole: bool):
    """Inputs whose loss is sample i's (x, y, the divisor to its share L_i / N)."""
    if not whole:
        return x[i : i + 1], y[i : i + 1], len(x)
    labels = np.zeros_like(y)
    labels[i] = y[i]
    return x, labels, 1


def audit_per_example(
    model,
    x: np.ndarray,
    y: np.ndarray,
    manual: dict,
    tape64: TapeResult,
    tape32: TapeResult,
    rng: np.random.Generator,
    fd_samples: int,
    rtol: float,
    counts: Mapping[str, Mapping[str, int]],
    reruns: Mapping | None = None,
) -> tuple[list[TensorCheck], dict[str, list[float]]]:
    """Records "dKEY:per-example" [N,*shape] and "dKEY:sum", and each sample's norms;
    ``reruns``: {"dKEY": how its causes are tested} (those of the batch gradient dKEY)."""
    from tfhybrid._tf import tf

    if "per_example_grads" not in manual:
        raise ValueError(
            "per_example=True needs loss_and_gradients(x, y, per_example=True) to return "
            "'per_example_grads'"
        )
    per_sample = manual["per_example_grads"]
    params = model.params
    n = len(x)
    whole = whole_batch_shares(model)
    shares = [_share(x, y, i, whole) for i in range(n)]  # (x, y, divisor): L_i / N
    refs = {
        dtype: [tape_gradients(model, params, xs, ys, dtype) for xs, ys, _ in shares]
        for dtype in (np.float64, np.float32)
    }
    divisor = 1 if whole else n
    values64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    tensors_of = [
        (tf.constant(np.asarray(xs, dtype=np.float64)), tf.constant(np.asarray(ys, np.float64)))
        for xs, ys, _ in shares
    ]

    @tf.function(reduce_retracing=True)
    def sample_loss(tensors, xs, ys):
        return model.reference_forward(tensors, xs, ys)[0]

    def loss_of(i: int, moved: dict[str, np.ndarray]) -> float:
        tensors = {k: tf.constant(v) for k, v in moved.items()}
        return float(sample_loss(tensors, *tensors_of[i])) / divisor

    base = [loss_of(i, values64) for i in range(n)]
    records, norms = [], {}
    for key in params:
        manual_n = np.asarray(per_sample[key], dtype=np.float64)
        if manual_n.shape != (n, *np.shape(params[key])):
            raise ValueError(
                f"per_example_grads[{key!r}] has shape {list(manual_n.shape)}, expected "
                f"[{n}, {', '.join(map(str, np.shape(params[key])))}]"
            )
        ref64 = np.stack([r.grads[key] / divisor for r in refs[np.float64]])
        ref32 = np.stack([r.grads[key] / divisor for r in refs[np.float32]])

        def loss_at(point: dict[str, np.ndarray], key=key) -> float:
            shift = point[key]
            total = sum(base)
            for i in np.flatnonzero(np.abs(shift.reshape(n, -1)).max(axis=1)):
                moved = dict(values64)
                moved[key] = values64[key] + shift[i]
                total += loss_of(int(i), moved) - base[i]
            return total

        probe = Probe(loss_at, {key: np.zeros_like(manual_n)}, key, sum(base))
        records.append(
            judge_tensor(
                f"d{key}{PER_EXAMPLE_SUFFIX}",
                PER_EXAMPLE,
                manual_n,
                tape64=ref64,
                tape32=ref32,
                probe=probe,
                rng=rng,
                fd_samples=fd_samples,
                manual_rtol=rtol,
                counts=counts.get(f"d{key}"),
                rerun=(reruns or {}).get(f"d{key}"),
            )
        )
        records.append(
            judge_tensor(
                f"d{key}{SUM_SUFFIX}",
                PER_EXAMPLE,
                manual_n.sum(axis=0),
                tape64=tape64.grads[key],
                tape32=tape32.grads[key],
                manual_rtol=rtol,
                counts=counts.get(f"d{key}"),
                rerun=(reruns or {}).get(f"d{key}"),
            )
        )
        norms[key] = [float(v) for v in np.linalg.norm(manual_n.reshape(n, -1), axis=1)]
    return records, norms
