"""Ready TensorFlow references for the ops textbook code writes, for ``check_op``.

    from tfhybrid.audit import check_op, references
    check_op(forward, backward, inputs, reference=references.conv(stride=2, pad=1, layout="NCHW"))

Each is a factory: called with the op's settings (the labels of a loss, a dropout mask,
embedding ids, a layout), it returns ``reference(*tensors)`` in TensorFlow ops, which
takes the differentiable tensors positionally, in the order of the inputs (x first, then
the weights), and runs in their dtype. Spatial ops work in NHWC, NCHW, or on one image
without a batch axis (HWC, CHW); see :mod:`tfhybrid.audit.layouts`.

    affine(batch=True)                         (x, w, b=None)   CS231n affine_forward, DLFS Affine
    relu(), sigmoid(), tanh(), leaky_relu(a)   (x)              every source
    softmax_loss(y, axis=, reduction=)         (x)              CS231n, DLFS SoftmaxWithLoss
    svm_loss(y, delta=, reduction=)            (x)              CS231n svm_loss
    conv(stride=, pad=, layout=, kernel=)      (x, w, b=None)   CS231n, DLFS Convolution
    max_pool(size, stride=, layout=)           (x)              CS231n, DLFS Pooling
    avg_pool(size, stride=, layout=)           (x)              the NumPy CNN tutorials
    batch_norm(eps=)                           (x, gamma, beta) CS231n, DLFS BatchNormalization
    spatial_batch_norm(eps=, layout=)          (x, gamma, beta) CS231n
    layer_norm(eps=, layout=)                  (x, gamma, beta) CS231n
    dropout(mask, scale=)                      (x)              CS231n, DLFS Dropout
    embedding(ids)                             (W)              CS231n word_embedding_forward

Importing this module imports TensorFlow.
"""

from tfhybrid.audit.references.activations import leaky_relu, relu, sigmoid, tanh
from tfhybrid.audit.references.dense import affine, dropout, embedding
from tfhybrid.audit.references.losses import softmax_loss, svm_loss
from tfhybrid.audit.references.normalization import batch_norm, layer_norm, spatial_batch_norm
from tfhybrid.audit.references.spatial import avg_pool, conv, max_pool

__all__ = [
    "affine",
    "avg_pool",
    "batch_norm",
    "conv",
    "dropout",
    "embedding",
    "layer_norm",
    "leaky_relu",
    "max_pool",
    "relu",
    "sigmoid",
    "softmax_loss",
    "spatial_batch_norm",
    "svm_loss",
    "tanh",
]
