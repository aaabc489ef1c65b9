"""The audit's parts without a network: comparisons and verdicts, the vote, readable
factors, and the finite-difference kink test on functions with known kinks."""

from __future__ import annotations

import numpy as np
import pytest

from tfhybrid.audit.compare import FACTOR, MATCH, SIGN, WRONG, compare, readable_factor
from tfhybrid.audit.finite_diff import central_differences, sample_indices
from tfhybrid.audit.tolerances import FD_STEP, RTOL_FINITE_DIFF, RTOL_FLOAT32
from tfhybrid.audit.vote import ALL_AGREE, NONE_AGREE, vote


@pytest.fixture
def reference(rng) -> np.ndarray:
    return rng.standard_normal((6, 7))


def test_float32_rounding_matches(reference):
    result = compare(reference.astype(np.float32), reference, RTOL_FLOAT32)
    assert result.verdict == MATCH and result.rel_error < 1e-6
    assert result.cosine == pytest.approx(1) and result.scale == pytest.approx(1)


@pytest.mark.parametrize("factor,text", [(4, "4"), (1 / 400, "1/400"), (8, "8"), (-0.25, "-1/4")])
def test_constant_factor_is_named(reference, factor, text):
    result = compare(reference * factor, reference, RTOL_FLOAT32)
    assert result.verdict == FACTOR
    assert result.description == f"off by a constant factor {text}"


def test_sign_flip_and_wrong(reference):
    assert compare(-reference, reference, RTOL_FLOAT32).verdict == SIGN
    shifted = compare(np.roll(reference, 1, axis=1), reference, RTOL_FLOAT32)
    assert shifted.verdict == WRONG
    broken = reference.copy()
    broken[2, 3] += 0.5
    worst = compare(broken, reference, RTOL_FLOAT32)
    assert worst.verdict == WRONG and worst.worst_index == (2, 3)
    assert worst.max_abs_error == pytest.approx(0.5)


def test_small_elements_are_judged_on_the_tensor_scale():
    reference = np.array([1.0, 1e-9])
    assert compare(np.array([1.0, 2e-9]), reference, RTOL_FLOAT32).verdict == MATCH


@pytest.mark.parametrize(
    "value,text", [(2.5, "2.5"), (0.3, "0.3"), (1.00001, "1"), (1e-9, "1e-09")]
)
def test_readable_factor(value, text):
    assert readable_factor(value) == text


def test_vote_names_the_odd_one_out():
    sources = ("manual", "tape64", "fd64")
    assert (
        vote(
            sources,
            {("manual", "tape64"): True, ("manual", "fd64"): True, ("tape64", "fd64"): True},
        ).summary
        == ALL_AGREE
    )
    outvoted = vote(
        sources, {("manual", "tape64"): False, ("fd64", "manual"): False, ("tape64", "fd64"): True}
    )
    assert outvoted.odd_one_out == "manual" and not outvoted.unanimous
    assert (
        vote(
            sources,
            {("manual", "tape64"): False, ("manual", "fd64"): True, ("tape64", "fd64"): False},
        ).odd_one_out
        == "tape64"
    )
    assert (
        vote(
            sources,
            {("manual", "tape64"): False, ("manual", "fd64"): False, ("tape64", "fd64"): False},
        ).summary
        == NONE_AGREE
    )


def test_sample_indices_covers_small_tensors_and_keeps_the_musts(rng):
    assert len(sample_indices((2, 3), 10, rng)) == 6
    picked = sample_indices((50, 40), 12, rng, must=((7, 9), (7, 9), (0, 1)))
    assert len(picked) == len(set(picked)) == 12
    assert picked[:2] == [(7, 9), (0, 1)]


def relu_loss(params):
    """sum(relu(w)) + 0.5 * sum(w^2): slope jumps by 1 where a weight crosses 0."""
    w = params["w"]
    return float(np.maximum(w, 0).sum() + 0.5 * (w**2).sum())


def test_kinks_are_not_comparable_and_smooth_points_are():
    h = FD_STEP
    near = [0.0, 0.3 * h, -0.7 * h, 1.5 * h, -0.999 * h]
    far = [0.2, -0.4, 1.3]
    params = {"w": np.array(near + far)}
    indices = [(i,) for i in range(len(near) + len(far))]
    fd = central_differences(relu_loss, params, "w", indices, RTOL_FINITE_DIFF, scale=2.0)
    assert not fd.comparable[: len(near)].any(), fd.curvature_spread
    assert fd.comparable[len(near) :].all(), fd.curvature_spread
    exact = np.where(np.array(far) > 0, 1.0, 0.0) + np.array(far)
    np.testing.assert_allclose(fd.values[len(near) :], exact, rtol=RTOL_FINITE_DIFF)


def test_a_change_of_max_is_a_kink():
    """max(a, b), as a max-pool window: the slope moves from a to b where they cross."""

    def window_max(params):
        a, b = params["v"]
        return float(max(2 * a, b) + np.sin(a))

    fd = central_differences(
        window_max,
        {"v": np.array([0.5, 1.0 + FD_STEP / 3])},
        "v",
        [(0,), (1,)],
        RTOL_FINITE_DIFF,
        scale=2.0,
    )
    assert not fd.comparable.any()


def test_smooth_curvature_is_not_a_kink(rng):
    w = rng.standard_normal(40) * 3

    def wavy(params):
        return float(np.sum(np.sin(params["w"]) * 5 + params["w"] ** 4 / 10))

    fd = central_differences(
        wavy, {"w": w}, "w", [(i,) for i in range(len(w))], RTOL_FINITE_DIFF, scale=30.0
    )
    assert fd.comparable.all(), fd.curvature_spread
    np.testing.assert_allclose(fd.values, 5 * np.cos(w) + 0.4 * w**3, rtol=1e-7, atol=1e-7)
