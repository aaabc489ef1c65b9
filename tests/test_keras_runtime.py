"""tfhybrid.keras in a plain Keras process: NumPy's BLAS limited to one thread around the
bridge's own NumPy calls alone, the process's own limit as it was after fit and predict.

Tiny shapes and few steps; no timing here (``python -m benchmarks.keras_bridge`` measures).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import threadpoolctl
from threadpoolctl import ThreadpoolController, threadpool_info

from tfhybrid import runtime
from tfhybrid._tf import tf
from tfhybrid.keras import HybridLayer, keras_loss, to_keras
from tfhybrid.layers import AvgPool2D, Conv2D, Dense, Flatten, Layer, Sigmoid

# isort: split
import keras

PLAIN = 2  # the limit the process holds in these tests: any value above one thread


def blas_threads() -> list[int]:
    """Every BLAS library's thread limit now, as threadpoolctl reports it."""
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def release_control() -> None:
    """Let any thread set OpenBLAS's limit again: threadpoolctl hands that control to the
    first thread that sets it and keeps it there (tune_for_training, run by other tests in
    this process, leaves it with the main thread), which a plain Keras process has not."""
    openblas = getattr(threadpoolctl, "OpenBLASController", None)
    if openblas is not None and hasattr(openblas, "clear_controlling_thread"):
        openblas.clear_controlling_thread(force=True)


@pytest.fixture
def plain_process():
    """NumPy's BLAS as a plain Keras user's process has it: a limit of PLAIN threads set
    by nobody in particular; the limits of before restored afterwards."""
    libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    if not libraries:
        pytest.skip("threadpoolctl finds no BLAS library in this process")
    before = [lib.num_threads for lib in libraries]
    release_control()
    for lib in libraries:
        lib.set_num_threads(PLAIN)
    release_control()
    if blas_threads() != [PLAIN] * len(libraries):
        pytest.skip(f"this BLAS cannot be set to {PLAIN} threads: {blas_threads()}")
    yield [PLAIN] * len(libraries)
    release_control()
    for lib, threads in zip(libraries, before, strict=True):
        lib.set_num_threads(threads)
    release_control()


SEEN: list[list[int]] = []  # what Probe's forward and backward found, call by call


class Probe(Layer):
    """The identity, with a NumPy forward and backward that note NumPy's BLAS thread
    limit while they run (a layer that is not fused: both run in tf.numpy_function)."""

    prefix = "probe"

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, params, x):
        SEEN.append(blas_threads())
        return x.copy(), None

    def backward(self, dout, cache, need_dx=True):
        SEEN.append(blas_threads())
        return dout.copy(), {}

    def reference(self, params, x):
        return tf.identity(x)


class WrongShape(Probe):
    def backward(self, dout, cache, need_dx=True):
        return dout[:, :1], {}


def small_model(probe: Layer) -> keras.Model:
    """Every kind of built-in layer the article's network has, ``probe`` among them."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input(shape=(6, 6, 1)),
            HybridLayer(Conv2D(2, 3), name="conv", input_gradient=False),
            HybridLayer(Sigmoid(), name="s"),
            HybridLayer(probe, name="probe"),
            HybridLayer(AvgPool2D(2), name="pool"),
            HybridLayer(Flatten(), name="flat"),
            HybridLayer(Dense(3), name="logits"),
        ]
    )


def batch(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random float32 images [n,6,6,1] and one-hot labels of 3 classes."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 6, 6, 1), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, y


def test_fit_and_predict_leave_the_process_blas_limit_as_it_was(plain_process):
    x, y = batch()
    model = small_model(Probe())
    model.compile(keras.optimizers.SGD(0.5), keras.losses.CategoricalCrossentropy(from_logits=True))
    SEEN.clear()
    history = model.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0)
    assert blas_threads() == plain_process
    assert SEEN and all(threads == [1] * len(plain_process) for threads in SEEN)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]  # it still trains

    SEEN.clear()
    model.predict(x, batch_size=4, verbose=0)
    assert blas_threads() == plain_process
    assert SEEN and all(threads == [1] * len(plain_process) for threads in SEEN)


def test_the_limit_is_restored_when_a_backward_fails(plain_process):
    x, y = batch()
    model = small_model(WrongShape())
    model.compile(keras.optimizers.SGD(0.5), keras.losses.CategoricalCrossentropy(from_logits=True))
    with pytest.raises(Exception, match="backward returned dx of shape"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert blas_threads() == plain_process


def test_the_gradients_are_the_hand_written_ones_as_before(plain_process):
    """Large enough (float64 [32,14,14,8], 400 KB) for the results to go over in held
    buffers: the gradients of a second batch, taken while the first's are still held,
    leave those as they were, and both are tfhybrid's own."""
    import tfhybrid

    net = tfhybrid.Sequential(
        [Conv2D(8, 3), Sigmoid(), AvgPool2D(2), Flatten(), Dense(3)],
        input_shape=(16, 16, 1),
        seed=0,
        dtype=np.float64,
    )
    model = to_keras(net)
    loss = keras_loss(net)
    top = keras.Sequential(  # its input gradient is the sigmoid's dx, 400 KB, kept below
        [
            keras.Input(shape=(14, 14, 8), dtype="float64"),
            HybridLayer(Sigmoid(), dtype="float64"),
            HybridLayer(Flatten(), dtype="float64"),
            HybridLayer(Dense(3), dtype="float64", seed=0),
        ]
    )

    @tf.function  # as fit runs it: in a graph, TensorFlow reads a NumPy result in place
    def input_gradient(h, y):
        with tf.GradientTape() as tape:
            tape.watch(h)
            value = loss(y, top(h, training=True))
        return tape.gradient(value, h)

    kept = []
    for seed in range(4):  # one more than the buffers held per result
        rng = np.random.default_rng(seed)
        x = rng.random((32, 16, 16, 1))
        y = np.eye(3)[rng.integers(0, 3, 32)]
        with tf.GradientTape() as tape:
            value = loss(y, model(tf.constant(x), training=True))
        grads = tape.gradient(value, model.trainable_weights)
        dh = input_gradient(tf.constant(rng.standard_normal((32, 14, 14, 8))), y)
        kept.append((grads, net.loss_and_gradients(x, y)["grads"], dh, dh.numpy().copy()))
    for grads, expected, dh, dh_then in kept:
        for key, grad in zip(net.params, grads, strict=True):
            np.testing.assert_allclose(grad.numpy(), expected[key], rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(dh.numpy(), dh_then)  # not written over since
    assert blas_threads() == plain_process


def test_a_held_buffer_is_used_again_only_once_let_go():
    from tfhybrid.keras import HANDOVER_KEEP, _Handover

    handover = _Handover()
    result = np.arange(2**16, dtype=np.float64)  # 512 KB: above HANDOVER_BYTES
    first = handover([result])[0]
    assert first is not result and first.ctypes.data % 64 == 0
    np.testing.assert_array_equal(first, result)
    held = [first] + [handover([result + i])[0] for i in range(1, HANDOVER_KEEP)]
    assert len({id(a) for a in held}) == HANDOVER_KEEP  # each one still in use: a new one
    passed = handover([result + 9])[0]
    np.testing.assert_array_equal(passed, result + 9)  # all held: handed over as it is
    assert all(passed is not a for a in held)
    for i, array in enumerate(held):
        np.testing.assert_array_equal(array, result + i)  # none overwritten
    address = held[1].ctypes.data
    del held[1], passed
    again = handover([result * 2])[0]
    assert again.ctypes.data == address  # the one let go, used again
    np.testing.assert_array_equal(again, result * 2)
    view = result.reshape(2, -1)  # a view of an input (Flatten's dx): no fresh array
    assert handover([view], (result,))[0] is view
    small = np.ones(3)
    assert handover([small])[0] is small  # small results go over as they are
    assert handover(small) is small


def test_scopes_in_several_threads_at_once_restore_the_limit(plain_process):
    libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    inside: list[list[int]] = []
    start = threading.Barrier(4)

    def work():
        start.wait()
        for _ in range(50):
            with runtime.one_blas_thread():
                with runtime.one_blas_thread():  # a scope inside one
                    time.sleep(1e-4)  # lets the other threads run (and enter, unless held)
                    inside.append([lib.num_threads for lib in libraries])
                inside.append([lib.num_threads for lib in libraries])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(inside) == 400
    assert all(seen == [1] * len(libraries) for seen in inside)
    assert blas_threads() == plain_process


def test_a_thread_count_chosen_in_the_environment_is_left_alone(plain_process, monkeypatch):
    monkeypatch.setattr(runtime, "_blas", None)  # looked for again (monkeypatch restores it)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", str(PLAIN))
    with runtime.one_blas_thread():
        assert blas_threads() == plain_process
