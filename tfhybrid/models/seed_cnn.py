"""The source article's network (doc 000), in the layers of :mod:`tfhybrid.layers`.

    x [N,28,28,1] -> conv 9x9x20 VALID + b1 (z1) -> sigmoid (s1 [N,20,20,20])
      -> avg pool 2x2/2 (L1 [N,10,10,20]) -> flatten (NHWC) [N,2000]
      -> dense 2000->10 + b2 (z2) -> sigmoid cross-entropy

Every parameter starts as standard normal x 0.1, drawn w1, b1, w2, b2 from one generator.
"""

from __future__ import annotations

import numpy as np

from tfhybrid.catalog import layer_options, network
from tfhybrid.layers import AvgPool2D, Conv2D, Dense, Flatten, Sigmoid
from tfhybrid.models.sequential import Sequential


@network("seed-cnn")
def seed_cnn(*, seed: int = 0, dtype=np.float32, params=None, **options) -> Sequential:
    """Options (``tfhybrid.catalog``): ``bias_grad="seed"``: the article's db1 (averaged
    over the 400 positions too), "exact": the true gradient; ``dw_mode``: "batched" or
    "per-sample" (as the article)."""
    return Sequential(
        [
            Conv2D(20, 9, kernel_init=0.1, bias_init=0.1, **layer_options(Conv2D, options)),
            Sigmoid(),
            AvgPool2D(2, name="L1"),
            Flatten(report_gradient=False),
            Dense(10, kernel_init=0.1, bias_init=0.1),
        ],
        loss="sigmoid_cross_entropy",
        seed=seed,
        dtype=dtype,
        params=params,
        name="seed-cnn",
    )
