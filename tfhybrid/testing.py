"""Test helpers for your own backward passes.

    from tfhybrid.testing import assert_gradients_match

    def test_my_dense_backward():
        assert_gradients_match(my_dense_forward, my_dense_backward,
                               {"x": x, "w": w, "b": b}, reference=lambda x, w, b: x @ w + b)

Silent when every gradient matches; otherwise an ``AssertionError`` whose message is the
check's table (each input's verdict, its relative error and worst index).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from tfhybrid.audit.ops import OpReport, check_op


def assert_gradients_match(
    forward: Callable,
    backward: Callable,
    inputs: Mapping[str, np.ndarray],
    reference: Callable | None = None,
    **options,
) -> OpReport:
    """:func:`tfhybrid.audit.check_op` as an assertion; ``options`` (``rtol``, ``atol``,
    ``seed``, ``fd_samples``) go to it. Returns the report when everything matches."""
    report = check_op(forward, backward, inputs, reference, **options)
    if not report.ok:
        raise AssertionError(f"gradients do not match: {', '.join(report.mismatches)}\n{report}")
    return report
