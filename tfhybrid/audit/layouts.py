"""Tensor layouts as textbook code writes them: the letters of a tensor's axes.

    N batch, H height, W width, C channels        "NHWC" (TensorFlow), "NCHW" (CS231n,
                                                   Deep Learning from Scratch), "HWC"
                                                   and "CHW" (one image, no batch axis)
    a kernel: H, W, C (input channels), F (filters)   "HWCF" (TensorFlow), "FCHW"
                                                   (CS231n's (F, C, HH, WW)), "FHWC"

Only the letters and the permutations between them live here, in plain Python, so the
NumPy side (:mod:`tfhybrid.audit.conventions`) and the TensorFlow side
(:mod:`tfhybrid.audit.references`) agree on one definition.
"""

from __future__ import annotations

LAYOUTS = ("NHWC", "NCHW", "HWC", "CHW")
KERNELS = ("HWCF", "FCHW", "FHWC")
NETWORK = "NHWC"  # the layout of every tensor inside a tfhybrid.Sequential
TF_KERNEL = "HWCF"  # tf.nn.conv2d's filter layout
# The kernel layout that goes with each tensor layout in the code that uses it:
# TensorFlow's with channels last, CS231n's (F, C, HH, WW) with channels first.
DEFAULT_KERNEL = {"NHWC": "HWCF", "HWC": "HWCF", "NCHW": "FCHW", "CHW": "FCHW"}


def checked_layout(layout: object) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`; else one ValueError that lists them."""
    if layout not in LAYOUTS:
        raise ValueError(
            f"layout must be one of {', '.join(LAYOUTS)} (N batch, H height, W width, "
            f"C channels), got {layout!r}"
        )
    return str(layout)


def checked_kernel(kernel: object, layout: str) -> str:
    """The kernel layout: ``kernel`` if one of :data:`KERNELS`, the one that goes with
    ``layout`` when None; else one ValueError."""
    if kernel is None:
        return DEFAULT_KERNEL[layout]
    if kernel not in KERNELS:
        raise ValueError(
            f"kernel must be one of {', '.join(KERNELS)} (H, W, C input channels, F "
            f"filters), or None for {layout}'s {DEFAULT_KERNEL[layout]}, got {kernel!r}"
        )
    return str(kernel)


def has_batch(layout: str) -> bool:
    """Whether tensors in ``layout`` carry a batch axis."""
    return "N" in layout


def permutation(source: str, target: str) -> tuple[int, ...]:
    """The axes order that turns a tensor in ``source`` into one in ``target`` (the same
    letters in another order): ``np.transpose(x, permutation("NHWC", "NCHW"))``."""
    if sorted(source) != sorted(target):
        raise ValueError(f"layouts {source} and {target} do not hold the same axes")
    return tuple(source.index(letter) for letter in target)


def with_batch(layout: str) -> str:
    """``layout`` with the batch axis in front (the per-image code's batched layout)."""
    return layout if has_batch(layout) else "N" + layout
