"""Op pairs: ``op_forward(x, ...) -> (out, cache)`` and ``op_backward(dout, cache) -> grads``.

Convolutions (forward, filter gradient, input gradient) and the pooling forward run
in TensorFlow; every other gradient is written out in NumPy. All tensors are NHWC.
"""
