"""The speed work, kept apart from the formulas.

Each hand-written gradient is defined once, as its formula, in :mod:`tfhybrid.ops`. This
package holds the faster ways the training step computes the same numbers: aligned buffers
(:mod:`~tfhybrid.fast.buffers`), in-place and merged passes (:mod:`~tfhybrid.fast.activations`,
:mod:`~tfhybrid.fast.pooling`, :mod:`~tfhybrid.fast.maxpool`), the compiled TensorFlow calls
and the convolution's formulation plan (:mod:`~tfhybrid.fast.conv`,
:mod:`~tfhybrid.fast.tf_kernels`, :mod:`~tfhybrid.fast.conv_plan`,
:mod:`~tfhybrid.fast.lean_call`). ``tests/test_fast_equal.py`` holds every fast variant equal
to its definition: bit for bit, or for the convolution's TensorFlow formulations to float
rounding (``CONV_RTOL`` there).

The readable path: with ``TFHYBRID_READABLE=1`` in the environment when tfhybrid is
imported, every layer runs its definition from :mod:`tfhybrid.ops` alone (each layer's own
forward, no compiled forward of several layers, no merged passes), for a learner who steps
through a training in a debugger. It is several times slower; the numbers agree with the
fast path's to float rounding. ``0`` or an empty value leaves the fast path on.
"""

from __future__ import annotations

import os

READABLE_ENV = "TFHYBRID_READABLE"
_readable = os.environ.get(READABLE_ENV, "").strip() not in ("", "0")


def enabled() -> bool:
    """True when the layers run this package's fast variants (the default); False on the
    readable path (``TFHYBRID_READABLE=1``)."""
    return not _readable


def set_readable(readable: bool) -> bool:
    """Switch the readable path on or off for networks built from now on; returns the
    previous setting. A network built before keeps the compiled forward it planned."""
    global _readable
    previous, _readable = _readable, bool(readable)
    return previous
