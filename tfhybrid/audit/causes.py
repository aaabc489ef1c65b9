"""The likely cause of a wrong gradient: a factor that equals a quantity of the layer, or
a simple transform of the true gradient.

A learner's bug usually leaves a fingerprint. A mean where a sum belongs divides by the
number of terms averaged: the batch N, the Ho*Wo output positions (the article's db1 is
1/400 = 1/(20*20)), a pooling window's area, the channels; an input used twice and
overwritten loses a factor 2. A kernel gradient convolved the wrong way round comes out
rotated 180 degrees; an index off by one shifts it; a sum over the wrong axis leaves a
tensor constant along an axis where the true one varies. A fork's backward that drops a
path, or a shared layer's that keeps one use, gives a tensor the caller can compute: such
candidates are named by :func:`candidate_cause`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping

import numpy as np

from tfhybrid.audit.compare import compare, readable_factor

RTOL_FACTOR = 1e-4  # how close c must be to k or 1/k to be named after k


@dataclasses.dataclass(frozen=True)
class Quantity:
    """A count of a layer a factor may equal. ``key`` names what it counts, the same at
    every shape ("N*Ho*Wo"), so a check run at a second shape can tell whether a factor
    follows it; ``label`` is how a line prints it, with its sizes ("N*Ho*Wo (2x3x3)").
    ``inverse_only``: named only when the gradient is 1/value of the true one."""

    key: str
    label: str
    value: float
    inverse_only: bool = False


TWICE = Quantity("uses", "2 (an input used twice, one gradient overwriting the other)", 2, True)


def layer_quantities(
    x_shape: tuple[int, ...] | None,
    out_shape: tuple[int, ...] | None,
    extra: Mapping | None = None,
    kernel_shape: tuple[int, ...] | None = None,
) -> tuple[Quantity, ...]:
    """The counts a factor of a layer with input ``x_shape``, output ``out_shape`` (batch
    axis first, NHWC) and kernel ``kernel_shape`` ([kh, kw, C, F], if it has one) can be
    made of, and its own ``extra`` quantities ({description: value})."""
    found = []
    if out_shape:
        n = int(out_shape[0])
        found.append(Quantity("N", f"N (the batch of {n})", n))
    if out_shape and len(out_shape) == 4:
        n, ho, wo, c = (int(d) for d in out_shape)
        found += [
            Quantity("Ho*Wo", f"Ho*Wo ({ho}x{wo} output positions)", ho * wo),
            Quantity("C_out", f"the {c} output channels", c),
            Quantity("N*Ho*Wo", f"N*Ho*Wo ({n}x{ho}x{wo})", n * ho * wo),
        ]
    if x_shape and len(x_shape) == 4:
        found.append(Quantity("C_in", f"the {x_shape[3]} input channels", int(x_shape[3])))
        if out_shape and len(out_shape) == 4:
            area = x_shape[1] * x_shape[2] / max(out_shape[1] * out_shape[2], 1)
            if area == int(area) and area > 1:
                label = f"the pooling window's area ({int(area)})"
                found.append(Quantity("window area", label, area))
    if kernel_shape and len(kernel_shape) == 4:
        # A term added once per tap of the kernel (a bias inside the sum over the taps)
        # multiplies by the taps, over the input channels too.
        kh, kw, c = (int(d) for d in kernel_shape[:3])
        found += [
            Quantity("kh*kw", f"kh*kw ({kh}x{kw} kernel taps)", kh * kw),
            Quantity(
                "kh*kw*C",
                f"kh*kw*C ({kh}x{kw}x{c}, the kernel's taps over the input channels)",
                kh * kw * c,
            ),
        ]
    found.append(TWICE)
    # A count of 1 names no factor, but is kept: at a second shape a factor may become 1
    # with its count (a mean over the positions of a 1x1 output).
    found = [q for q in found if q.value >= 1]
    # A layer's own quantities (``cause_counts``) may be fractions: dropout's keep
    # probability 1 - rate, whose inverse a wrong backward forgets or applies twice.
    found += [
        Quantity(str(k), str(k), float(v)) for k, v in (extra or {}).items() if v > 0 and v != 1
    ]
    return tuple(found)


def quantities(
    x_shape: tuple[int, ...] | None,
    out_shape: tuple[int, ...] | None,
    extra: Mapping | None = None,
    kernel_shape: tuple[int, ...] | None = None,
) -> dict[str, float]:
    """:func:`layer_quantities` as {label: value}, those that can name a factor (not 1)."""
    found = layer_quantities(x_shape, out_shape, extra, kernel_shape)
    return {q.label: q.value for q in found if q.value != 1}


def quantities_of(
    values: Mapping[str, np.ndarray], out_shape: tuple[int, ...], extra: Mapping | None = None
) -> tuple[Quantity, ...]:
    """The quantities of an op at its inputs ``values`` and output shape: its input is
    "x" where that is [N,H,W,C], else the first such input; its kernel, another input
    [kh,kw,C,F] over the input's C channels."""
    shapes = {k: tuple(np.shape(v)) for k, v in values.items()}
    four = [k for k, shape in shapes.items() if len(shape) == 4]
    x = "x" if "x" in four else next(iter(four), None)
    x_shape = shapes[x] if x else None
    kernel = next(
        (shapes[k] for k in four if k != x and x_shape and shapes[k][2] == x_shape[3]), None
    )
    return layer_quantities(x_shape, tuple(out_shape), extra, kernel)


def as_quantities(counts) -> tuple[Quantity, ...]:
    """``counts`` as quantities: a caller's {description: value} names each by its
    description (and in both directions, as before quantities had keys)."""
    if counts is None:
        return ()
    if isinstance(counts, Mapping):
        return tuple(Quantity(str(k), str(k), float(v)) for k, v in counts.items())
    return tuple(counts)


def matching(scale: float, counts) -> list[tuple[Quantity, bool]]:
    """The quantities ``scale`` equals, each with whether it is 1/value (the inverse)."""
    if not np.isfinite(scale) or scale == 0:
        return []
    size = abs(scale)
    found = []
    for q in as_quantities(counts):
        if q.value == 1:
            continue  # names nothing: every factor but 1 differs from it
        if abs(size * q.value - 1) <= RTOL_FACTOR:
            found.append((q, True))
        elif not q.inverse_only and abs(size / q.value - 1) <= RTOL_FACTOR:
            found.append((q, False))
    return found


def named(matched: list[tuple[Quantity, bool]]) -> list[str]:
    """ "1/Ho*Wo (20x20 output positions)": each quantity as the factor's name."""
    return [f"1/{q.label}" if inverse else q.label for q, inverse in matched]


def factor_cause(scale: float, counts) -> str | None:
    """ "1/400 = 1/Ho*Wo (20x20 output positions)" when ``scale`` is k or 1/k for a count."""
    matched = matching(scale, counts)
    if not matched:
        return None
    sign = "the sign flipped and " if scale < 0 else ""
    return f"{sign}{readable_factor(scale)} = " + " or ".join(named(matched))


def transform_cause(manual: np.ndarray, true: np.ndarray, rtol: float) -> str | None:
    """The simple transform of ``true`` that ``manual`` equals, if one does."""
    m = np.asarray(manual, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if m.shape != t.shape or m.size < 2:
        return None

    def same(candidate: np.ndarray) -> bool:
        return candidate.shape == m.shape and compare(m, candidate, rtol).matches

    for spatial in _spatial_axes(t):
        if min(t.shape[a] for a in spatial) >= 2 and same(np.flip(t, axis=spatial)):
            return (
                "the true gradient rotated 180 degrees (a kernel flipped: a convolution "
                "where a correlation belongs)"
            )
    # Two axes swapped before "constant along an axis": a swap of sizes that differ,
    # read back in the right shape, can look constant along an axis where the true varies.
    for candidate, what in _swaps(t):
        if same(candidate) and not compare(t, candidate, rtol).matches:
            return f"the true gradient with two axes swapped: {what}"
    for axes in itertools.permutations(range(t.ndim)):
        if list(axes) != sorted(axes) and same(np.transpose(t, axes)):
            return f"the true gradient with its axes transposed ({', '.join(map(str, axes))})"
    for axis in range(t.ndim):
        if t.shape[axis] < 2:
            continue
        for shift in (1, -1):
            if same(np.roll(t, shift, axis=axis)):
                what = "sample" if axis == 0 else "position"
                return (
                    f"the true gradient rolled by {shift:+d} along axis {axis} (each "
                    f"{what}'s gradient handed to its neighbour)"
                )
            if t.shape[axis] >= 3 and same(_shifted(t, shift, axis)):
                return (
                    f"the true gradient shifted by {shift:+d} along axis {axis} "
                    "(an index off by one)"
                )
    for axis in range(t.ndim):
        if m.shape[axis] < 2:
            continue
        varies = np.ptp(t, axis=axis).max() > 1e-6 * np.abs(t).max()
        constant = np.ptp(m, axis=axis).max() <= 1e-9 * max(np.abs(m).max(), 1e-300)
        if varies and constant and np.abs(m).max() > 0:
            return (
                f"constant along axis {axis}, where the true gradient varies "
                "(a sum or broadcast over the wrong axis)"
            )
    return None


def candidate_cause(
    manual: np.ndarray, true: np.ndarray, candidates: Mapping[str, np.ndarray], rtol: float
) -> str | None:
    """The description of the first candidate ``manual`` equals ({description: array},
    such as a fork's dx without one path's share). A candidate the true gradient equals
    is passed over: it could not tell a bug from rounding."""
    m = np.asarray(manual, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    for description, value in candidates.items():
        value = np.asarray(value, dtype=np.float64)
        if value.shape != m.shape or compare(value, t, rtol).matches:
            continue
        if compare(m, value, rtol).matches:
            return description
    return None


def _swaps(t: np.ndarray) -> Iterator[tuple[np.ndarray, str]]:
    """What ``t`` becomes with two axes swapped, and how to say it: each pair of axes of
    one size transposed; of two sizes, the values laid out with the pair swapped and read
    back in ``t``'s shape (a reshape where a transpose belongs), or read as if so laid
    out; and for [N,H,W,C], channels and positions (NCHW and NHWC confused)."""
    shape = tuple(t.shape)
    for a, b in itertools.combinations(range(t.ndim), 2):
        if min(shape[a], shape[b]) < 2:
            continue
        name = _pair_name(t.ndim, a, b)
        if shape[a] == shape[b]:
            yield np.swapaxes(t, a, b), name
            continue
        swapped = list(shape)
        swapped[a], swapped[b] = shape[b], shape[a]
        laid = f"[{','.join(map(str, swapped))}]"
        right = f"[{','.join(map(str, shape))}]"
        yield (
            np.swapaxes(t, a, b).reshape(shape),
            f"{name}, laid out as {laid} and read back as {right}",
        )
        yield np.swapaxes(t.reshape(swapped), a, b), f"{name}, {right} read as if laid out {laid}"
    if t.ndim == 4 and shape[1] * shape[2] > 1 and shape[3] > 1:
        n, h, w, c = shape
        what = "channels and positions"
        first = t.transpose(0, 3, 1, 2).reshape(shape)
        yield first, f"{what} (laid out [N,C,H,W], read as [N,H,W,C])"
        yield t.reshape(n, c, h, w).transpose(0, 2, 3, 1), f"{what} ([N,H,W,C] read as [N,C,H,W])"


def _pair_name(ndim: int, a: int, b: int) -> str:
    """ "height and width (axes 1 and 2)": a pair of axes, named where the layout tells."""
    axes = f"axes {a} and {b}"
    if ndim == 4 and (a, b) == (1, 2):
        return f"height and width ({axes} of [N,H,W,C])"
    if ndim == 4 and (a, b) == (0, 1):
        return f"{axes} (a kernel's height and width, [kh,kw,C,F])"
    return axes


def _spatial_axes(t: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The axes a 180-degree rotation may flip: a kernel [kh,kw,ci,co]'s first two, an
    NHWC tensor's H and W, a matrix's both."""
    if t.ndim == 4:
        return ((0, 1), (1, 2))
    return ((0, 1),) if t.ndim == 2 else ()


def _shifted(t: np.ndarray, shift: int, axis: int) -> np.ndarray:
    """``t`` moved by ``shift`` along ``axis``, zeros filling the vacated edge."""
    out = np.zeros_like(t)
    source = [slice(None)] * t.ndim
    target = [slice(None)] * t.ndim
    if shift > 0:
        source[axis], target[axis] = slice(0, -shift), slice(shift, None)
    else:
        source[axis], target[axis] = slice(-shift, None), slice(0, shift)
    out[tuple(target)] = t[tuple(source)]
    return out
