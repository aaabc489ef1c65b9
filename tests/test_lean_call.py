"""The lean call of a compiled function (tfhybrid.fast.lean_call) gives TensorFlow's own
results and errors, and steps aside where TensorFlow's bookkeeping is needed."""

from __future__ import annotations

import numpy as np
import pytest

from tfhybrid._tf import tf
from tfhybrid.fast.lean_call import lean

SPEC = tf.TensorSpec([None, 3], tf.float64)


@pytest.fixture(scope="module")
def concrete():
    def fn(a, b):
        return [a * b, tf.reduce_sum(a, axis=0)], a - b

    return tf.function(fn, input_signature=[SPEC, SPEC]).get_concrete_function()


def _same(got, want):
    tf.nest.assert_same_structure(got, want)
    for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want), strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_results_equal_the_ordinary_call_for_arrays_and_tensors(concrete):
    call = lean(concrete)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    _same(call(a, b), concrete(a, b))
    _same(call(tf.constant(a), b), concrete(a, b))
    assert call.concrete is concrete


@pytest.mark.parametrize(
    "args",
    [
        (np.zeros((2, 4)), np.zeros((2, 3))),  # another shape
        (np.zeros((2, 3)),),  # an argument missing
        ("text", np.zeros((2, 3))),  # not an array
    ],
    ids=["shape", "missing", "text"],
)
def test_bad_arguments_get_tensorflows_own_error(concrete, args):
    with pytest.raises(Exception) as ordinary:
        concrete(*args)
    with pytest.raises(type(ordinary.value)):
        lean(concrete)(*args)


def test_a_recording_tape_and_graph_mode_take_the_ordinary_call(concrete):
    call = lean(concrete)
    a = tf.constant(np.arange(6.0).reshape(2, 3))
    b = tf.constant(np.ones((2, 3)))
    with tf.GradientTape() as tape:
        tape.watch(a)
        (product, _), _ = call(a, b)
    np.testing.assert_array_equal(tape.gradient(product, a).numpy(), np.ones((2, 3)))
    inside = tf.function(lambda x, y: call(x, y)[1])
    np.testing.assert_array_equal(inside(a, b).numpy(), (a - b).numpy())


def test_a_graph_the_single_threaded_executor_refuses_runs_on_the_default_one():
    def loop(a):  # a while loop: control flow, which that executor does not run
        return tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * 2.0), (0, a))[1]

    concrete = tf.function(loop, input_signature=[SPEC]).get_concrete_function()
    call = lean(concrete)
    a = np.ones((2, 3))
    for _ in range(2):
        np.testing.assert_array_equal(np.asarray(call(a)), np.asarray(concrete(a)))


def test_keyword_arguments_take_the_ordinary_call(concrete):
    a, b = np.ones((2, 3)), np.full((2, 3), 2.0)
    _same(lean(concrete)(a=a, b=b), concrete(a=a, b=b))
    _same(lean(concrete)(a, b=b), concrete(a, b=b))


def test_a_failing_first_call_raises_tensorflows_error_and_later_calls_still_run():
    def checked(a):
        return tf.debugging.assert_all_finite(a, "not finite") * 2.0

    concrete = tf.function(checked, input_signature=[SPEC]).get_concrete_function()
    call = lean(concrete)
    bad = np.full((1, 3), np.nan)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not finite"):
        call(bad)
    np.testing.assert_array_equal(np.asarray(call(np.ones((1, 3)))), np.full((1, 3), 2.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not finite"):
        call(bad)  # the same error once the executor has run the graph
