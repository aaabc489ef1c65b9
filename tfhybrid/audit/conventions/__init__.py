"""Textbook code in its own convention, audited as it is.

tfhybrid's own convention is ``forward(**inputs) -> (out, cache)``, ``backward(dout,
cache) -> {name: gradient}``. Each adapter here turns another convention into it, as an
:class:`~tfhybrid.audit.conventions.pair.OpPair` that unpacks into those two functions:

    op = layer_object(layer)                       # layer.forward(x), layer.backward(dout),
    check_op(*op, op.inputs(x), reference=...)     #   W, b -> dW, db as attributes
    op = function_pair(conv_forward, conv_backward, fixed={"conv_param": conv_param})
    check_op(*op, {"x": x, "w": w, "b": b}, reference=...)   # backward -> (dx, dw, db)
    op = loss_function(softmax_loss, fixed={"y": y})         # -> (loss, dx)
    check_op(*op, {"x": scores}, reference=...)
    op = layer_object(layer, lr=1.0)               # backward(dout, lr) updates W itself

``op.layer(reference, layout="NCHW")`` puts a layer object or a function pair into a
:class:`tfhybrid.Sequential` (:class:`~tfhybrid.audit.conventions.network.CodeLayer`).
The references are :mod:`tfhybrid.audit.references`.
"""

from tfhybrid.audit.conventions.functions import function_pair, loss_function
from tfhybrid.audit.conventions.network import CodeLayer
from tfhybrid.audit.conventions.objects import LayerObject, layer_object
from tfhybrid.audit.conventions.pair import OpPair

__all__ = ["CodeLayer", "LayerObject", "OpPair", "function_pair", "layer_object", "loss_function"]
