"""The TensorFlow side of the hybrid: the convolution's three computations, compiled.

Each kernel is a concrete function built once per (dtype, shapes, stride, padding) with
a fixed input signature, so a call costs no retracing, and takes tensors or NumPy arrays
as they are; it is called through :func:`tfhybrid.fast.lean_call.lean`, which skips the
per-call argument binding. Arguments and results are NHWC; filters are
[kh, kw, c_in, c_out] as in ``tf.nn.conv2d``. Padding is a symmetric zero-pad count
``pad`` (0 is TensorFlow's "VALID").
"""

from __future__ import annotations

import functools

from tfhybrid._tf import tf
from tfhybrid.fast.lean_call import lean


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
    dw[i,j,c,f] = sum_{n,h,w} xpad[n, h*s+i, w*s+j, c] * dout[n,h,w,f].

    A padded input is padded here and the kernel run with "VALID": oneDNN's
    ``Conv2DBackpropFilter`` with explicit paddings (what autodiff of a padded
    ``tf.nn.conv2d`` runs) takes 1.2-3.7 times as long for the same sums
    (docs/performance.md).
    """
    if pad:
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return tf.raw_ops.Conv2DBackpropFilter(
        input=x,
        filter_sizes=filter_shape,
        out_backprop=dout,
        strides=[1, stride, stride, 1],
        padding="VALID",
    )


def _pad_and_crop(x, dout, filter_shape, stride: int, pad: int):
    """x zero-padded by ``pad``, then cut to the rows and columns some output reads:
    (Ho - 1) * stride + kh of them (the rest meet no filter tap)."""
    if pad:
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    ho, wo = tf.shape(dout)[1], tf.shape(dout)[2]
    rows = (ho - 1) * stride + filter_shape[0]
    cols = (wo - 1) * stride + filter_shape[1]
    return x[:, :rows, :cols, :]


def filter_grad_batch_as_channels(x, dout, filter_shape, stride: int, pad: int):
    """:func:`filter_grad` as ONE forward convolution, the batch as its channels.

    dw[i,j,c,f] = sum_{n,h,w} xpad[n, h*s+i, w*s+j, c] dout[n,h,w,f] is a convolution of
    the input [C, H, W, N] (channels as the batch, the batch as channels) with the filter
    dout as [Ho, Wo, N, F] dilated by the stride: its output [C, kh, kw, F] is dw with
    the first axis moved; the sum over the batch is the convolution's sum over channels.
    """
    x = _pad_and_crop(x, dout, filter_shape, stride, pad)
    out = tf.nn.conv2d(
        tf.transpose(x, [3, 1, 2, 0]),
        tf.transpose(dout, [1, 2, 0, 3]),
        strides=1,
        padding="VALID",
        dilations=stride,
    )  # [C, kh, kw, F]
    return tf.transpose(out, [1, 2, 0, 3])


def filter_grad_per_sample_depthwise(x, dout, filter_shape, stride: int, pad: int):
    """Each sample's own filter gradient [N,kh,kw,C,F] in one depthwise convolution.

    The article's per-sample convolution, batched: input [C, H, W, N] (the batch as
    channels), depthwise filter dout as [Ho, Wo, N, F] (F outputs per channel, dilated
    by the stride), so channel n meets only sample n's gradient; the output
    [C, kh, kw, N*F] is every dw_n.
    """
    kh, kw, c, f = filter_shape
    x = _pad_and_crop(x, dout, filter_shape, stride, pad)
    out = tf.nn.depthwise_conv2d(
        tf.transpose(x, [3, 1, 2, 0]),
        tf.transpose(dout, [1, 2, 0, 3]),
        strides=[1, 1, 1, 1],
        padding="VALID",
        dilations=[stride, stride],
    )  # [C, kh, kw, N*F]
    out = tf.reshape(out, [c, kh, kw, tf.shape(x)[0], f])
    return tf.transpose(out, [3, 1, 2, 0, 4])


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


def input_grad_flipped_forward(dout, w, input_shape, stride: int, pad: int):
    """:func:`input_grad` as a forward convolution: dout dilated by the stride (zeros
    between its rows and columns), zero-padded by kh - 1 in front, convolved with the
    kernel rotated by 180 degrees with C and F swapped ([kh,kw,F,C]); the result is the
    gradient of the padded input, cut to the unpadded one.
    """
    kh, kw = w.shape[0], w.shape[1]
    n, f = tf.shape(dout)[0], tf.shape(dout)[3]
    ho, wo = tf.shape(dout)[1], tf.shape(dout)[2]
    if stride > 1:  # zeros between rows and columns: [N, Ho, s, Wo, s, F], cut
        spaced = tf.pad(
            dout[:, :, None, :, None, :],
            [[0, 0], [0, 0], [0, stride - 1], [0, 0], [0, stride - 1], [0, 0]],
        )
        dout = tf.reshape(spaced, [n, ho * stride, wo * stride, f])
        dout = dout[:, : (ho - 1) * stride + 1, : (wo - 1) * stride + 1, :]
    h, wd = input_shape[1], input_shape[2]
    dh, dw = tf.shape(dout)[1], tf.shape(dout)[2]
    # padded input rows: h + 2 pad; output rows = dh + front + back - kh + 1 = h + 2 pad
    grown = tf.pad(
        dout,
        [
            [0, 0],
            [kh - 1, h + 2 * pad - dh],
            [kw - 1, wd + 2 * pad - dw],
            [0, 0],
        ],
    )
    rotated = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])
    dxpad = tf.nn.conv2d(grown, rotated, strides=1, padding="VALID")
    return dxpad[:, pad : pad + h, pad : pad + wd, :]


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

    return lean(tf.function(forward, input_signature=signature).get_concrete_function())


DW_FORMULATIONS = {
    "backprop-filter": filter_grad,
    "batch-as-channels": filter_grad_batch_as_channels,
}
PER_SAMPLE_FORMULATIONS = {
    "vectorized": filter_grad_per_sample,
    "depthwise": filter_grad_per_sample_depthwise,
}
DX_FORMULATIONS = {"backprop-input": input_grad, "flipped-forward": input_grad_flipped_forward}


@functools.cache
def conv_backward_fn(
    dtype,
    x_shape: tuple,
    w_shape: tuple,
    stride: int,
    pad: int,
    need_dx: bool,
    per_sample: bool,
    dw: str = "backprop-filter",
    dx: str = "backprop-input",
    xla: bool = False,
):
    """The convolution's backward in one compiled call: f(x, dout, w) -> (dw, dx).

    dw is [kh,kw,C,F] summed over the batch, or each sample's own [N,kh,kw,C,F] when
    ``per_sample``; dx [N, *x_shape] when ``need_dx``, else an empty tensor.
    ``dw``: a key of :data:`DW_FORMULATIONS` (or of :data:`PER_SAMPLE_FORMULATIONS`
    when ``per_sample``); ``dx``: a key of :data:`DX_FORMULATIONS`; ``xla``: the call
    compiled by XLA (``jit_compile=True``). Every choice is exact: the same sums.
    """
    spec = functools.partial(tf.TensorSpec, dtype=dtype)
    filters = list(w_shape)
    dw_fn = (PER_SAMPLE_FORMULATIONS if per_sample else DW_FORMULATIONS)[dw]
    dx_fn = DX_FORMULATIONS[dx]

    @tf.function(
        input_signature=[
            spec([None, *x_shape]),
            spec([None, None, None, w_shape[-1]]),
            spec(filters),
        ],
        jit_compile=xla,
    )
    def backward(x, dout, w):
        grad_w = dw_fn(x, dout, filters, stride, pad)
        grad_x = dx_fn(dout, w, tf.shape(x), stride, pad) if need_dx else tf.zeros([0], dtype)
        return grad_w, grad_x

    # dw and dx are independent kernels: the default executor runs them at once.
    return lean(backward.get_concrete_function(), single_threaded=not need_dx)
