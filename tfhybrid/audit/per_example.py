"""Per-example gradients audited: each sample's own gradient of every parameter.

Sample n's share of the batch loss is L_n / N (the loss is a mean over the batch), so
its own gradient is the tape of ``reference_forward`` on that one sample, divided by N;
finite differences perturb the parameters for that sample alone. A bug that only moves
gradient between samples (the sum still right) shows here and nowhere else; the sum over
N is also judged against the batch gradient.
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
) -> tuple[list[TensorCheck], dict[str, list[float]]]:
    """Records "dKEY:per-example" [N,*shape] and "dKEY:sum", and each sample's norms."""
    from tfhybrid._tf import tf

    if "per_example_grads" not in manual:
        raise ValueError(
            "per_example=True needs loss_and_gradients(x, y, per_example=True) to return "
            "'per_example_grads'"
        )
    per_sample = manual["per_example_grads"]
    params = model.params
    n = len(x)
    refs = {
        dtype: [tape_gradients(model, params, x[i : i + 1], y[i : i + 1], dtype) for i in range(n)]
        for dtype in (np.float64, np.float32)
    }
    values64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    tx = tf.constant(np.asarray(x, dtype=np.float64))
    ty = tf.constant(np.asarray(y, dtype=np.float64))

    @tf.function(reduce_retracing=True)
    def sample_loss(tensors, xs, ys):
        return model.reference_forward(tensors, xs, ys)[0]

    def loss_of(i: int, moved: dict[str, np.ndarray]) -> float:
        tensors = {k: tf.constant(v) for k, v in moved.items()}
        return float(sample_loss(tensors, tx[i : i + 1], ty[i : i + 1])) / n

    base = [loss_of(i, values64) for i in range(n)]
    records, norms = [], {}
    for key in params:
        manual_n = np.asarray(per_sample[key], dtype=np.float64)
        if manual_n.shape != (n, *np.shape(params[key])):
            raise ValueError(
                f"per_example_grads[{key!r}] has shape {list(manual_n.shape)}, expected "
                f"[{n}, {', '.join(map(str, np.shape(params[key])))}]"
            )
        ref64 = np.stack([r.grads[key] / n for r in refs[np.float64]])
        ref32 = np.stack([r.grads[key] / n for r in refs[np.float32]])

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
            )
        )
        norms[key] = [float(v) for v in np.linalg.norm(manual_n.reshape(n, -1), axis=1)]
    return records, norms
