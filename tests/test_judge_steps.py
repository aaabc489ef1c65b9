"""The judge's steps one by one, on tiny arrays: compare with the tape, sample the finite
differences, judge the kinks, vote, name the cause; and the pipeline they make."""

from __future__ import annotations

import numpy as np
import pytest

from tfhybrid.audit.compare import FACTOR, MATCH, SIGN, WRONG
from tfhybrid.audit.judge import judge, judge_tensor
from tfhybrid.audit.judge_case import FD64, MANUAL, TAPE32, TAPE64, Case, Probe
from tfhybrid.audit.judge_cause import name_cause
from tfhybrid.audit.judge_kinks import judge_kinks
from tfhybrid.audit.judge_samples import sample_differences
from tfhybrid.audit.judge_tape import compare_with_tape
from tfhybrid.audit.judge_vote import vote_sources
from tfhybrid.audit.vote import ALL_AGREE

W = np.array([[0.3, -1.2, 0.8], [1.5, -0.4, 2.0]])
A = np.array([[1.0, -2.0, 0.5], [3.0, 1.5, -1.0]])


def smooth_loss(values: dict[str, np.ndarray]) -> float:
    """sum(A sin w) + |w|^2 / 2, whose gradient is A cos w + w."""
    w = values["w"]
    return float(np.sum(A * np.sin(w)) + 0.5 * np.sum(w**2))


TRUE = A * np.cos(W) + W


def smooth_case(manual: np.ndarray, *, tape: bool = True, **settings) -> Case:
    references = dict(tape64=TRUE, tape32=TRUE) if tape else {}
    probe = Probe(smooth_loss, {"w": W}, "w", smooth_loss({"w": W}))
    return Case("dw", "parameter", manual, probe=probe, **references, **settings)


# ReLU with two inputs exactly at its kink: loss = sum(U * relu(x)); at x = 0 the
# one-sided slopes are 0 (left) and U (right), and any value between them is valid.
X = np.array([0.0, 1.0, -1.0, 0.0, 2.0])
U = np.array([1.0, 2.0, 3.0, 4.0, 0.5])


def relu_loss(values: dict[str, np.ndarray]) -> float:
    return float(np.sum(U * np.maximum(values["x"], 0)))


TF_RELU = U * (X > 0)  # TensorFlow's convention: ReLU'(0) = 0


def relu_case(manual: np.ndarray, *, tape: bool = True) -> Case:
    references = dict(tape64=TF_RELU, tape32=TF_RELU) if tape else {}
    probe = Probe(relu_loss, {"x": X}, "x", relu_loss({"x": X}))
    return Case("x", "input", manual, probe=probe, **references)


def run_to_kinks(case: Case):
    tape = compare_with_tape(case)
    samples = sample_differences(case, tape)
    return tape, samples, judge_kinks(case, tape, samples)


# --- 1. compare with the tape ------------------------------------------------------------------
def test_the_tape_step_flags_a_gradient_400_times_too_small():
    tape = compare_with_tape(smooth_case(TRUE / 400))
    assert tape.manual.verdict == FACTOR and tape.manual.description.endswith("1/400")
    assert len(tape.departing) == TRUE.size and not tape.zero
    assert tape.tape32.matches


def test_the_tape_step_matches_the_true_gradient_and_nothing_departs():
    tape = compare_with_tape(smooth_case(TRUE))
    assert tape.manual.matches and tape.departing == ()


def test_the_tape_step_calls_rounding_noise_zero():
    true = np.full(4, 1e-12)
    noisy32 = true + np.array([3e-8, -2e-8, 1e-8, 4e-8])  # float32's rounding, no signal
    case = Case("db", "parameter", 2 * true, tape64=true, tape32=noisy32)
    tape = compare_with_tape(case)
    assert tape.zero and tape.manual.verdict == MATCH and not tape.tape32.matches


def test_the_tape_step_without_a_tape_compares_nothing():
    tape = compare_with_tape(smooth_case(TRUE, tape=False))
    assert tape.manual is None and tape.tape32 is None


# --- 2. sample the finite differences ----------------------------------------------------------
def test_the_sample_step_takes_a_small_tensor_whole_and_flags_the_factor():
    case = smooth_case(TRUE / 400)
    samples = sample_differences(case, compare_with_tape(case))
    assert sorted(samples.indices) == [(i, j) for i in range(2) for j in range(3)]
    assert samples.kept == samples.indices and samples.kinked == []
    assert samples.manual.verdict == FACTOR and samples.tape.matches


def test_the_sample_step_takes_the_largest_element_and_the_worst_departure_first():
    manual = TRUE.copy()
    manual[0, 0] += 1.0
    case = smooth_case(manual, fd_samples=2)
    samples = sample_differences(case, compare_with_tape(case))
    assert samples.indices == [(1, 2), (0, 0)]  # |TRUE| is largest at (1, 2)
    assert samples.manual.verdict == WRONG and samples.manual.worst_index == (1,)  # in the sample


def test_the_sample_step_sets_relu_kinks_apart():
    case = relu_case(TF_RELU, tape=False)
    samples = sample_differences(case, compare_with_tape(case))
    assert sorted(k[0] for k in samples.kinked) == [(0,), (3,)]
    assert samples.fd.not_comparable == 2 and samples.alone.matches


# --- 3. judge the kinks -------------------------------------------------------------------------
def test_the_kink_step_accepts_a_valid_relu_subgradient():
    manual = TF_RELU + 0.5 * U * (X == 0)  # ReLU'(0) = 0.5: valid, not TensorFlow's
    tape, _, kinks = run_to_kinks(relu_case(manual))
    assert not tape.manual.matches  # the tape's convention differs...
    assert kinks.judged.verdict == MATCH and kinks.check.valid  # ...and that is no bug
    assert kinks.departures == 2


def test_the_kink_step_rejects_a_value_outside_the_one_sided_slopes():
    manual = TF_RELU + 2.0 * U * (X == 0)  # twice the right slope: no subgradient
    _, _, kinks = run_to_kinks(relu_case(manual))
    assert kinks.judged.verdict == WRONG and kinks.check.failed and kinks.departures == 0


def test_the_kink_step_without_a_tape_makes_a_failed_kink_wrong():
    _, samples, kinks = run_to_kinks(relu_case(TF_RELU - U * (X == 0), tape=False))
    assert samples.alone.matches  # the smooth coordinates alone would pass
    assert kinks.judged.verdict == WRONG and kinks.judged.worst_index in {(0,), (3,)}


# --- 4. vote -------------------------------------------------------------------------------------
def test_the_vote_names_the_manual_gradient_the_odd_one_out():
    case = smooth_case(TRUE / 400)
    tape, samples, kinks = run_to_kinks(case)
    the_vote = vote_sources(case, tape, samples, kinks)
    assert the_vote.sources == (MANUAL, TAPE64, FD64)
    assert the_vote.summary == f"odd one out: {MANUAL}"


def test_the_vote_of_an_intermediate_is_the_tapes():
    case = Case("dz", "intermediate", TRUE, tape64=TRUE, tape32=TRUE)
    the_vote = vote_sources(case, compare_with_tape(case))
    assert the_vote.sources == (MANUAL, TAPE32, TAPE64) and the_vote.summary == ALL_AGREE


def test_the_vote_is_none_without_a_tape():
    case = smooth_case(TRUE, tape=False)
    tape, samples, kinks = run_to_kinks(case)
    assert vote_sources(case, tape, samples, kinks) is None


# --- 5. name the cause -------------------------------------------------------------------------
def test_the_cause_step_names_a_constant_factor():
    case = smooth_case(TRUE / 400, counts={"Ho*Wo (20x20 output positions)": 400})
    cause = name_cause(case, compare_with_tape(case).manual, matches=False)
    assert cause.text == "1/400 = 1/Ho*Wo (20x20 output positions)" and not cause.equals


def test_the_cause_step_names_a_flipped_sign_and_a_transform():
    flipped = smooth_case(-TRUE)
    assert compare_with_tape(flipped).manual.verdict == SIGN
    rotated = smooth_case(TRUE[::-1, ::-1])
    cause = name_cause(rotated, compare_with_tape(rotated).manual, matches=False)
    assert "rotated 180 degrees" in cause.text


def test_the_cause_step_says_nothing_of_a_match_and_names_a_candidate():
    case = smooth_case(TRUE)
    assert name_cause(case, compare_with_tape(case).manual, matches=True).text is None
    half = TRUE * np.array([1.0, 1.0, 0.5])  # no factor, no transform of the truth
    case = smooth_case(half, candidates={"one path's share alone": half})
    cause = name_cause(case, compare_with_tape(case).manual, matches=False)
    assert cause.text == "one path's share alone" and cause.equals


# --- the pipeline ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tape", [True, False])
def test_judge_tensor_is_the_pipeline_of_its_case(tape):
    references = dict(tape64=TRUE, tape32=TRUE) if tape else {}
    probe = Probe(smooth_loss, {"w": W}, "w", smooth_loss({"w": W}))
    item = judge_tensor("dw", "parameter", TRUE / 400, probe=probe, **references)
    assert repr(item) == repr(judge(smooth_case(TRUE / 400, tape=tape)))
    assert item.verdict == "off by a constant factor 1/400" and not item.matches


def test_an_empty_tensor_is_not_checked():
    item = judge(Case("x", "input", np.zeros((0, 3))))
    assert item.verdict == "not checked: the tensor is empty" and not item.matches
