"""The TensorFlow side of the hybrid: the convolution's three computations, compiled.

Each kernel is a concrete function built once per (dtype, shapes, stride, padding) with
a fixed input signature, so a call costs no argument inspection or retracing, and takes
tensors or NumPy arrays as they are. Arguments and results are NHWC; filters are
[kh, kw, c_in, c_out] as in ``tf.nn.conv2d``. Padding is a symmetric zero-pad count
``pad`` (0 is TensorFlow's "VALID").
"""

from __future__ import annotations

import functools

from tfhybrid._tf import tf


def padding(pad: int):
    """``pad`` zero rows and columns on each side, as ``tf.nn.conv2d``'s padding argument."""
    return "VALID" if pad == 0 else [[0, 0], [pad, pad], [pad, pad], [0, 0]]


def _raw_padding(pad: int) -> dict:
    if pad == 0:
        return {"padding": "VALID", "explicit_paddings": []}
    return {"padding": "EXPLICIT", "explicit_paddings": [0, 0, pad, pad, pad, pad, 0, 0]}


def conv2d(x, w, b, stride: int, pad: int):
    """x [N,H,W,C] * w [kh,kw,C,F] + b (F values) -> [N,Ho,Wo,F] (cross-correlation, as TF)."""
    out = tf.nn.conv2d(x, w, strides=stride, padding=padding(pad))
    return out if b is None else tf.nn.bias_add(out, tf.reshape(b, [-1]))


def filter_grad(x, dout, filter_shape, stride: int, pad: int):
    """dL/dw [kh,kw,C,F] summed over the batch, from x [N,H,W,C] and dout [N,Ho,Wo,F]:
    dw[i,j,c,f] = sum_{n,h,w} xpad[n, h*s+i, w*s+j, c] * dout[n,h,w,f]."""
    return tf.raw_ops.Conv2DBackpropFilter(
        input=x,
        filter_sizes=filter_shape,
        out_backprop=dout,
        strides=[1, stride, stride, 1],
        **_raw_padding(pad),
    )


def filter_grad_per_sample(x, dout, filter_shape, stride: int, pad: int):
    """Each sample's own filter gradient [N,kh,kw,C,F]; their sum over N is :func:`filter_grad`.

    One input channel (the source article's network): for sample n the image is convolved
    with its own upstream gradient used as a filter ([Ho,Wo,1,F], dilated by the stride),
    as the article computes it; ``tf.vectorized_map`` runs the N convolutions inside one
    compiled call. Several input channels: the kh*kw shifted views of the input, stacked,
    times dout in one batched matrix product (several times faster there, slower for the
    article's 81 taps of one channel).
    """
    kh, kw = filter_shape[0], filter_shape[1]
    if pad:
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    if x.shape[-1] != 1:
        return _per_sample_by_taps(x, dout, filter_shape, stride)

    def one_sample(args):
        image, grad = args  # [H,W,C], [Ho,Wo,F]
        channels_as_batch = tf.expand_dims(tf.transpose(image, [2, 0, 1]), -1)  # [C,H,W,1]
        grad_as_filter = tf.expand_dims(grad, 2)  # [Ho,Wo,1,F]
        out = tf.nn.conv2d(
            channels_as_batch, grad_as_filter, strides=1, padding="VALID", dilations=stride
        )  # [C, >=kh, >=kw, F]
        return tf.transpose(out[:, :kh, :kw, :], [1, 2, 0, 3])  # [kh,kw,C,F]

    return tf.vectorized_map(one_sample, (x, dout))


def _per_sample_by_taps(x, dout, filter_shape, stride: int):
    """dw_n[i,j,c,f] = sum_{h,w} x_n[h*s+i, w*s+j, c] dout_n[h,w,f] for every n, as
    [N, Ho*Wo, kh*kw*C]^T @ [N, Ho*Wo, F] (x already padded)."""
    kh, kw, c, f = filter_shape
    ho, wo = tf.shape(dout)[1], tf.shape(dout)[2]
    rows, cols = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    taps = [
        x[:, i : i + rows : stride, j : j + cols : stride, :] for i in range(kh) for j in range(kw)
    ]
    n = tf.shape(x)[0]
    patches = tf.reshape(tf.stack(taps, axis=3), [n, ho * wo, kh * kw * c])
    grads = tf.reshape(dout, [n, ho * wo, f])
    return tf.reshape(tf.matmul(patches, grads, transpose_a=True), [n, kh, kw, c, f])


def input_grad(dout, w, input_shape, stride: int, pad: int):
    """dL/dx [N,H,W,C] for the unpadded input: TensorFlow's backprop-input op (the full
    correlation of dout [N,Ho,Wo,F] with the rotated kernel w [kh,kw,C,F])."""
    return tf.raw_ops.Conv2DBackpropInput(
        input_sizes=input_shape,
        filter=w,
        out_backprop=dout,
        strides=[1, stride, stride, 1],
        **_raw_padding(pad),
    )


@functools.cache
def conv_forward_fn(dtype, x_shape: tuple, w_shape: tuple, stride: int, pad: int, bias: bool):
    """Compiled :func:`conv2d` for inputs [N, *x_shape]: f(x, w, b) -> out, or f(x, w)
    without a bias."""
    spec = functools.partial(tf.TensorSpec, dtype=dtype)
    signature = [spec([None, *x_shape]), spec(list(w_shape))]
    if bias:

        def forward(x, w, b):
            return conv2d(x, w, b, stride, pad)

        signature.append(spec([w_shape[-1]]))
    else:

        def forward(x, w):
            return conv2d(x, w, None, stride, pad)

    return tf.function(forward, input_signature=signature).get_concrete_function()


@functools.cache
def conv_backward_fn(
    dtype, x_shape: tuple, w_shape: tuple, stride: int, pad: int, need_dx: bool, per_sample: bool
):
    """The convolution's backward in one compiled call: f(x, dout, w) -> (dw, dx).

    dw is [kh,kw,C,F] summed over the batch, or each sample's own [N,kh,kw,C,F] when
    ``per_sample``; dx [N, *x_shape] when ``need_dx``, else an empty tensor.
    """
    spec = functools.partial(tf.TensorSpec, dtype=dtype)
    filters = list(w_shape)

    @tf.function(input_signature=[spec([None, *x_shape]), spec(None), spec(filters)])
    def backward(x, dout, w):
        dw = (
            filter_grad_per_sample(x, dout, filters, stride, pad)
            if per_sample
            else filter_grad(x, dout, filters, stride, pad)
        )
        dx = input_grad(dout, w, tf.shape(x), stride, pad) if need_dx else tf.zeros([0], dtype)
        return dw, dx

    return backward.get_concrete_function()
