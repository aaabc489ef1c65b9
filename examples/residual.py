"""A residual block written by hand, and the same block with its fork's rule forgotten.

``MyResidual`` is docs/layers.md's "A composite of your own": ``out = block(x) + x``. Its
input feeds two paths (the block and the identity shortcut), so the gradient of its input
is the **sum** of the two paths' gradients. ``Forgetful`` keeps only the block's term, the
classic bug at a fork; the audit names the layer and the cause. From the repository's
root::

    python scripts/check_gradients.py --model examples/residual.py:residual_net --batch 2
    python scripts/check_gradients.py --model examples/residual.py:forgetful_net --batch 2

(add ``--data-dir path/to/mnist`` unless ``TFHYBRID_DATA_DIR`` is set). The first prints
``result: every gradient matches`` and exits 0; the second exits 1 and prints::

    layer at fault: 2 (Forgetful, output h3): its own backward gives dx wrong; ...
    likely cause: layer 2 dx equals path block's gradient alone: the gradient from one
    path was not added at the fork (the identity path shortcut's)
"""

from tfhybrid import Sequential
from tfhybrid.layers import Composite, Conv2D, Dense, Flatten, ReLU


class MyResidual(Composite):
    """out = block(x) + x."""

    def __init__(self, block):
        super().__init__({"block": block, "shortcut": []})  # []: the identity

    def forward(self, params, x, **options):
        out, cache = self.path_forward("block", params, x, **options)
        return out + x, cache

    def backward(self, dout, cache, need_dx=True):
        dx_block, grads = self.path_backward("block", dout, cache)  # a sum passes dout on
        return dx_block + dout, grads  # x fed the block and the shortcut: both add

    def reference(self, params, x, **options):
        return self.path_reference("block", params, x, **options) + x


class Forgetful(MyResidual):
    """The bug: the shortcut's gradient (dout itself) is not added at the fork."""

    def backward(self, dout, cache, need_dx=True):
        dx_block, grads = self.path_backward("block", dout, cache)
        return dx_block, grads  # should be dx_block + dout


def _network(residual):
    block = [Conv2D(4, 3, padding=1), ReLU(), Conv2D(4, 3, padding=1)]
    return Sequential(
        [Conv2D(4, 3, padding=1), ReLU(), residual(block), Flatten(), Dense(10)], seed=0
    )


def residual_net():
    """docs/layers.md's network around MyResidual: every gradient matches."""
    return _network(MyResidual)


def forgetful_net():
    """The same network with Forgetful: the audit names layer 2's join."""
    return _network(Forgetful)
