"""A layer of one's own that hands its network the wrong dtype or shape: one line naming
the layer (index, class, output), the tensor and both dtypes or shapes, where its result
enters the network (forward output, backward dx and gradients), in training, in the
audit and on the command line; never an error inside the next layer's TensorFlow call."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_audit_cli import run_check
from tests.test_cli import assert_one_line_error
from tfhybrid import Sequential
from tfhybrid._tf import tf
from tfhybrid.audit import audit
from tfhybrid.layers import Conv2D, Dense, Flatten, Layer, ReLU

NETWORKS = """
import numpy as np
from tfhybrid import Sequential
from tfhybrid._tf import tf
from tfhybrid.layers import Conv2D, Dense, Flatten, Layer


class Tanh64(Layer):
    prefix = "t"

    def forward(self, params, x):
        out = np.tanh(x.astype(np.float64))
        return out, out

    def backward(self, dout, cache, need_dx=True):
        return dout * (1 - cache * cache), {}

    def reference(self, params, x):
        return tf.tanh(x)


def tanh64():
    return Sequential([Conv2D(4, 5), Tanh64(), Conv2D(3, 3), Flatten(), Dense(10)], seed=0)
"""


class Tanh(Layer):
    """tanh with one slip of ``kind``: "float64 out", "float64 dx", "short out"."""

    prefix = "t"

    def __init__(self, kind: str = ""):
        super().__init__()
        self.kind = kind

    def forward(self, params, x):
        out = np.tanh(x)
        if self.kind == "float64 out":
            out = out.astype(np.float64)
        return (out[:, :-1] if self.kind == "short out" else out), np.tanh(x)

    def backward(self, dout, cache, need_dx=True):
        dx = dout * (1 - cache * cache)
        return (dx.astype(np.float64) if self.kind == "float64 dx" else dx), {}

    def reference(self, params, x):
        return tf.tanh(x)


class Scale(Layer):
    """x * s with a parameter s [1, C]; its gradient of s float64, or of another shape."""

    prefix = "c"

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def param_shapes(self, input_shape):
        return {"s": (1, input_shape[-1])}

    def forward(self, params, x):
        return x * params["s"][0], x

    def backward(self, dout, cache, need_dx=True):
        ds = (dout * cache).sum(axis=(0, 1, 2))
        ds = ds.astype(np.float64)[None] if self.kind == "float64 grad" else ds  # or [C]
        return dout * 1, {"s": ds}

    def reference(self, params, x):
        return x * params["s"][0]


def network(layer: Layer) -> Sequential:
    return Sequential(
        [Conv2D(3, 3), ReLU(), layer, Conv2D(2, 3), Flatten(), Dense(4)],
        input_shape=(8, 8, 1),
        seed=0,
    )  # float32, the default


def batch():
    rng = np.random.default_rng(0)
    return rng.random((2, 8, 8, 1)).astype(np.float32), np.eye(4)[[0, 3]]


@pytest.mark.parametrize(
    "layer,message",
    [
        (
            Tanh("float64 out"),
            "layer 2 (Tanh, output t1)'s forward returned its output as float64, but the "
            "network computes in float32: return the dtype of its input (e.g. "
            "out.astype(x.dtype, copy=False))",
        ),
        (
            Tanh("float64 dx"),
            "layer 2 (Tanh, output t1)'s backward returned dx as float64, but the network "
            "computes in float32: return the dtype of dout (e.g. dx.astype(dout.dtype, "
            "copy=False))",
        ),
        (
            Tanh("short out"),
            "layer 2 (Tanh, output t1)'s forward returned its output of shape [2, 5, 6, 3]; "
            "it must have shape [2, 6, 6, 3]",
        ),
        (
            Scale("float64 grad"),
            "layer 2 (Scale, output c2)'s backward returned the gradient of 's' as float64, "
            "but the network computes in float32: return the dtype of dout (e.g. "
            "dx.astype(dout.dtype, copy=False))",
        ),
        (
            Scale("flat grad"),
            "layer 2 (Scale, output c2)'s backward returned the gradient of 's' of shape "
            "[3]; it must have shape [1, 3]",
        ),
    ],
)
def test_a_wrong_dtype_or_shape_is_one_line_naming_the_layer(layer, message):
    net = network(layer)
    x, y = batch()
    for run in (lambda: net.loss_and_gradients(x, y), lambda: audit(net, x, y, fd_samples=2)):
        with pytest.raises(ValueError) as caught:
            run()
        assert str(caught.value) == message  # one line, no array dumped
    if "forward" in message:
        with pytest.raises(ValueError, match="'s forward returned its output"):
            net.logits(x)  # inference checks the same


class Float32Tanh(Tanh):
    """tanh computed in float32 inside a float64 network, then a convolution."""

    def forward(self, params, x):
        out = np.tanh(x).astype(np.float32)
        return out, out

    def backward(self, dout, cache, need_dx=True):
        return (dout * (1 - cache * cache)).astype(np.float32), {}


def test_a_narrower_float_is_accepted_and_the_next_layer_gets_the_networks_dtype():
    net = Sequential(
        [Conv2D(3, 3), Float32Tanh(), Conv2D(2, 3), Flatten(), Dense(4)],
        input_shape=(8, 8, 1),
        dtype=np.float64,
    )
    x, y = batch()
    result = net.loss_and_gradients(x, y)
    assert all(g.dtype == np.float64 for g in result["grads"].values())
    report = audit(net, x, y, fd_samples=4)
    assert report.ok and report.tolerances["manual"] == 1e-3, str(report)


def test_the_command_line_says_it_in_one_line(tmp_path, mnist_like_dir):
    (tmp_path / "mine.py").write_text(NETWORKS)
    result = run_check(
        "--model",
        f"{tmp_path / 'mine.py'}:tanh64",
        "--batch",
        "2",
        "--data-dir",
        str(mnist_like_dir),
    )
    assert_one_line_error(
        result,
        "the network's own code failed",
        "layer 1 (Tanh64, output t1)'s forward returned its output as float64, but the "
        "network computes in float32",
    )
    assert "array(" not in result.stderr and "TensorSpec" not in result.stderr


def test_the_checks_cost_no_copy():
    """A right result passes through as it is: the same array, not a copy."""
    from tfhybrid.models.layer_results import check_backward, check_output

    out = np.zeros((2, 3), np.float32)
    assert check_output(out, Dense(3), 1, "z1", (2, 3), np.dtype(np.float32)) is out
    layer = Dense(3)
    layer.input_shape = (4,)
    dx, grads = np.zeros((2, 4), np.float32), {"w": np.zeros((4, 3), np.float32)}
    checked = check_backward(
        (dx, grads),
        layer,
        1,
        "z1",
        need_dx=True,
        batch=2,
        dtype=np.dtype(np.float32),
        shapes={"w": (4, 3), "b": (1, 3)},
    )
    assert checked[0] is dx and checked[1] is grads
