"""A bug hunt: a small network of hand-written layers, three of which have a wrong backward.

The network is conv → sigmoid → max pool → dense → softmax cross-entropy on MNIST. The
convolution and the flatten are the project's; ``MySigmoid``, ``MyMaxPool2D`` and
``MyDense`` are written here the way a learner writes them, by subclassing
``tfhybrid.layers.Layer``. Each of the three computes its gradient with one mistake that
learners really make (in ``backward``, or in what ``forward`` caches for it). Find them
with the gradient audit, from the repository's root::

    python scripts/check_gradients.py --model examples/bughunt.py:net --batch 4

(add ``--data-dir path/to/mnist`` unless ``TFHYBRID_DATA_DIR`` is set). The exercise, with
hints, is docs/bughunt.md. ``fixed_net`` builds the same network with the layers of
examples/bughunt_solutions.py (the answers: read that file last); every gradient matches,
exit code 0, as ``net`` does once you have fixed the three::

    python scripts/check_gradients.py --model examples/bughunt.py:fixed_net --batch 4
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from tfhybrid import Sequential
from tfhybrid._tf import tf
from tfhybrid.layers import Conv2D, Flatten, Layer

Shape = tuple[int, ...]


class MySigmoid(Layer):
    """1 / (1 + e^-x), element by element."""

    prefix = "s"  # outputs are named s1, s2, ...

    def forward(self, params, x):
        out = 1 / (1 + np.exp(-x))
        return out, x

    def backward(self, dout, cache, need_dx=True):
        s = cache
        return dout * s * (1 - s), {}

    def reference(self, params, x):
        return tf.sigmoid(x)


class MyMaxPool2D(Layer):
    """The maximum of each ``size`` x ``size`` window, windows side by side (stride = size)."""

    prefix = "p"

    def __init__(self, size: int = 2, name: str | None = None):
        super().__init__(name)
        self.size = int(size)

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = input_shape
        if h % self.size or w % self.size:
            raise ValueError(f"MyMaxPool2D({self.size}) needs H and W divisible by it, got {h}x{w}")
        return (h // self.size, w // self.size, c)

    def forward(self, params, x):
        n, h, w, c = x.shape
        k = self.size
        # Each window's k*k inputs on the last axis, row by row.
        windows = x.reshape(n, h // k, k, w // k, k, c).transpose(0, 1, 3, 5, 2, 4)
        windows = windows.reshape(n, h // k, w // k, c, k * k)
        where = windows.argmax(axis=-1)  # which input of its window each maximum is
        return windows.max(axis=-1), (x.shape, where)

    def backward(self, dout, cache, need_dx=True):
        (n, h, w, c), where = cache
        k = self.size
        dx = np.zeros((n, h, w, c), dtype=dout.dtype)
        row, col = where % k, where // k
        sample, i, j, channel = np.indices(where.shape)
        dx[sample, i * k + row, j * k + col, channel] = dout
        return dx, {}

    def reference(self, params, x):
        return tf.nn.max_pool2d(x, self.size, self.size, "VALID")


class MyDense(Layer):
    """x [N,D] @ w [D,units] + b [1,units]."""

    prefix = "z"

    def __init__(self, units: int, name: str | None = None):
        super().__init__(name)
        self.units = int(units)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"w": (input_shape[0], self.units), "b": (1, self.units)}

    def forward(self, params, x):
        return x @ params["w"] + params["b"], (x, params["w"])

    def backward(self, dout, cache, need_dx=True):
        x, w = cache
        dw = x.T @ dout
        db = dout.mean(axis=0, keepdims=True)
        return dout @ w.T, {"w": dw, "b": db}

    def reference(self, params, x):
        return tf.matmul(x, params["w"]) + params["b"]


def build(sigmoid: type[Layer], pool: type[Layer], dense: type[Layer]) -> Sequential:
    """The exercise's network with these three layer classes: conv 5x5x3 → sigmoid →
    2x2 max pool → flatten → dense 432→10, softmax cross-entropy, seed 0."""
    return Sequential([Conv2D(3, 5), sigmoid(), pool(2), Flatten(), dense(10)], seed=0)


def net() -> Sequential:
    """The network with the three buggy layers above: the exercise."""
    return build(MySigmoid, MyMaxPool2D, MyDense)


def _solutions() -> ModuleType:
    """examples/bughunt_solutions.py, loaded from beside this file (the answers)."""
    name = "_bughunt_solutions"
    if name not in sys.modules:
        path = Path(__file__).resolve().with_name("bughunt_solutions.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def fixed_net() -> Sequential:
    """The same network with the layers of examples/bughunt_solutions.py: every gradient
    matches."""
    fixed = _solutions()
    return build(fixed.MySigmoid, fixed.MyMaxPool2D, fixed.MyDense)
