"""Networks of your own, for the gradient audit's ``--model FILE.py:NAME``.

The docs (docs/audit.md, docs/check-your-own.md, docs/cli.md) audit these; from the
repository's root::

    python scripts/check_gradients.py --model examples/mynets.py:my_net --batch 2
    python scripts/check_gradients.py --model examples/mynets.py:tanh_net --batch 2
    python scripts/check_gradients.py --model examples/mynets.py:net --batch 2

(add ``--data-dir path/to/mnist`` unless ``TFHYBRID_DATA_DIR`` is set). ``NAME`` is a
``tfhybrid.Sequential`` (``net``) or a function that builds one with no arguments
(``my_net``, ``tanh_net``). The audit feeds it MNIST test images, so each network takes
``input_shape=(28, 28, 1)`` (Sequential's default) and ends in 10 outputs. Each should
print ``result: every gradient matches`` and exit 0.
"""

import numpy as np

from tfhybrid import Sequential
from tfhybrid._tf import tf
from tfhybrid.layers import AvgPool2D, Conv2D, Dense, Flatten, Layer, MaxPool2D, ReLU


class Tanh(Layer):
    """tanh(x); its derivative is 1 - tanh(x)², read from the cached output.

    The layer of docs/layers.md ("A layer of your own"): a NumPy forward and backward,
    and the same function in TensorFlow ops (``reference``) for the tape.
    """

    prefix = "t"  # outputs are named t1, t2, ...

    def forward(self, params, x):
        out = np.tanh(x)
        return out, out  # the output, and the cache backward gets

    def backward(self, dout, cache, need_dx=True):
        return dout * (1 - cache * cache), {}  # dx, and no parameters of its own

    def reference(self, params, x):
        return tf.tanh(x)


def my_net():
    """Built-in layers only: docs/layers.md's first network."""
    return Sequential([Conv2D(6, 5), ReLU(), MaxPool2D(2), Flatten(), Dense(10)], seed=0)


def tanh_net():
    """A convolution, the hand-written Tanh above, then pooling and a dense layer."""
    return Sequential([Conv2D(4, 5), Tanh(), AvgPool2D(4), Flatten(), Dense(10)], seed=0)


# Not a function but a network, built when the file is imported: --model takes either.
net = Sequential([Flatten(), Dense(16), Tanh(), Dense(10)], seed=0)
