"""The TensorFlow side of the hybrid: compiled convolution kernels, nothing else.

Each function is a ``tf.function`` so a training step pays one graph call per kernel,
not one Python dispatch per TensorFlow op. Arguments and results are NHWC; filters
are [kh, kw, c_in, c_out] as in ``tf.nn.conv2d``. Padding is a symmetric zero-pad
count ``pad`` (0 is TensorFlow's "VALID").
"""

from __future__ import annotations

import functools

from tfhybrid._tf import tf


def _padding(pad: int):
    return "VALID" if pad == 0 else [[0, 0], [pad, pad], [pad, pad], [0, 0]]


@tf.function(reduce_retracing=True)
def conv2d(x, w, b, stride: int, pad: int):
    """[N,H,W,C] * [kh,kw,C,F] + b[F] -> [N,Ho,Wo,F] (cross-correlation, as TF)."""
    return tf.nn.conv2d(x, w, strides=stride, padding=_padding(pad)) + tf.reshape(b, [-1])


@tf.function(reduce_retracing=True)
def avg_pool(x, size: int, stride: int):
    """[N,H,W,C] -> [N,Ho,Wo,C], VALID windows."""
    return tf.nn.avg_pool2d(x, ksize=size, strides=stride, padding="VALID")


@tf.function(reduce_retracing=True)
def filter_grad(x, dout, filter_shape, stride: int, pad: int):
    """dL/dw summed over the batch, one TensorFlow call.

    x [N,H,W,C], dout [N,Ho,Wo,F] -> [kh,kw,C,F]:
    dw[i,j,c,f] = sum_{n,h,w} xpad[n, h*s+i, w*s+j, c] * dout[n,h,w,f].
    """
    padding = "VALID" if pad == 0 else "EXPLICIT"
    explicit = [] if pad == 0 else [0, 0, pad, pad, pad, pad, 0, 0]
    return tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=filter_shape, out_backprop=dout,
        strides=[1, stride, stride, 1], padding=padding, explicit_paddings=explicit)


@tf.function(reduce_retracing=True)
def filter_grad_per_sample(x, dout, filter_shape, stride: int, pad: int):
    """Each sample's own filter gradient, as the source article computes it.

    For sample n the image (channels moved to the batch axis, [C,H,W,1]) is convolved
    with its own upstream gradient used as a filter ([Ho,Wo,1,F], dilated by the
    stride). ``tf.vectorized_map`` runs the N convolutions inside this one compiled call
    (TensorFlow lowers it to an in-graph loop here), not as N Python-level calls.
    x [N,H,W,C], dout [N,Ho,Wo,F] -> [N,kh,kw,C,F]; their sum is :func:`filter_grad`.
    """
    kh, kw = filter_shape[0], filter_shape[1]
    if pad:
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])

    def one_sample(args):
        image, grad = args  # [H,W,C], [Ho,Wo,F]
        channels_as_batch = tf.expand_dims(tf.transpose(image, [2, 0, 1]), -1)  # [C,H,W,1]
        grad_as_filter = tf.expand_dims(grad, 2)  # [Ho,Wo,1,F]
        out = tf.nn.conv2d(channels_as_batch, grad_as_filter, strides=1, padding="VALID",
                           dilations=stride)  # [C, >=kh, >=kw, F]
        return tf.transpose(out[:, :kh, :kw, :], [1, 2, 0, 3])  # [kh,kw,C,F]

    return tf.vectorized_map(one_sample, (x, dout))


@tf.function(reduce_retracing=True)
def input_grad(dout, w, input_shape, stride: int, pad: int):
    """dL/dx: TensorFlow's backprop-input op (the full correlation with the rotated kernel).

    dout [N,Ho,Wo,F], w [kh,kw,C,F] -> [N,H,W,C] for the unpadded input of ``input_shape``.
    """
    padding = "VALID" if pad == 0 else "EXPLICIT"
    explicit = [] if pad == 0 else [0, 0, pad, pad, pad, pad, 0, 0]
    return tf.raw_ops.Conv2DBackpropInput(
        input_sizes=input_shape, filter=w, out_backprop=dout,
        strides=[1, stride, stride, 1], padding=padding, explicit_paddings=explicit)


# ---------------------------------------------------------------------------------------
# The source article's network, as the training step calls it: concrete functions with a
# fixed signature per dtype, so a call costs no argument inspection or retracing, and the
# caller passes tensors it converted once. NHWC throughout.

SEED_X = [None, 28, 28, 1]
SEED_W1, SEED_B1, SEED_DZ1 = [9, 9, 1, 20], [1, 20], [None, 20, 20, 20]


@functools.cache
def seed_forward(dtype):
    """x [N,28,28,1], w1 [9,9,1,20], b1 [1,20] -> (s1 [N,20,20,20], flat L1 [N,2000]).

    conv 9x9 VALID + b1, sigmoid, 2x2 average pool, NHWC flatten: the TensorFlow part of
    the forward pass in one compiled call.
    """
    spec = functools.partial(tf.TensorSpec, dtype=dtype)

    @tf.function(input_signature=[spec(SEED_X), spec(SEED_W1), spec(SEED_B1)])
    def forward(x, w1, b1):
        return _seed_conv_sigmoid_pool(x, w1, b1)

    return forward.get_concrete_function()


@functools.cache
def seed_features(dtype):
    """As :func:`seed_forward`, for evaluation: only flat L1 [N,2000], so TensorFlow frees
    s1 inside the call instead of handing back N x 8000 activations."""
    spec = functools.partial(tf.TensorSpec, dtype=dtype)

    @tf.function(input_signature=[spec(SEED_X), spec(SEED_W1), spec(SEED_B1)])
    def features(x, w1, b1):
        return _seed_conv_sigmoid_pool(x, w1, b1)[1]

    return features.get_concrete_function()


def _seed_conv_sigmoid_pool(x, w1, b1):
    z1 = tf.nn.bias_add(tf.nn.conv2d(x, w1, strides=1, padding="VALID"), tf.reshape(b1, [-1]))
    s1 = tf.sigmoid(z1)
    pooled = tf.nn.avg_pool2d(s1, ksize=2, strides=2, padding="VALID")
    return s1, tf.reshape(pooled, [tf.shape(x)[0], -1])


@functools.cache
def seed_filter_grad(dtype):
    """x [N,28,28,1], dz1 [N,20,20,20] -> dw1 [9,9,1,20], summed over the batch."""
    spec = functools.partial(tf.TensorSpec, dtype=dtype)

    @tf.function(input_signature=[spec(SEED_X), spec(SEED_DZ1)])
    def dw1(x, dz1):
        return tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=SEED_W1, out_backprop=dz1, strides=[1, 1, 1, 1],
            padding="VALID")

    return dw1.get_concrete_function()


@functools.cache
def seed_filter_grad_per_sample(dtype):
    """x [N,28,28,1], dz1 [N,20,20,20] -> each sample's own dw1 [N,9,9,1,20].

    See :func:`filter_grad_per_sample`; its sum over N is :func:`seed_filter_grad`.
    """
    spec = functools.partial(tf.TensorSpec, dtype=dtype)

    @tf.function(input_signature=[spec(SEED_X), spec(SEED_DZ1)])
    def dw1_per_sample(x, dz1):
        return filter_grad_per_sample(x, dz1, SEED_W1, 1, 0)

    return dw1_per_sample.get_concrete_function()
