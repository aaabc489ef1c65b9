"""NumPy arrays TensorFlow can read in place: the hand-off without a copy.

TensorFlow copies a NumPy array it is given (``tf.convert_to_tensor``, a concrete
function's argument): about 0.5-1.7 ms for the article's [100,20,20,20] float32 dz1 on
the development machine, a tenth of the step. Through DLPack it reads the array's
memory in place, in microseconds, but only memory aligned as Eigen needs (64 bytes);
NumPy aligns to 16. The backward passes whose result goes to a convolution allocate it
with :func:`empty` (64-byte aligned), and :func:`as_tensor` hands such an array over in
place, any other as it is (TensorFlow then copies it, as before).
"""

from __future__ import annotations

import numpy as np

ALIGN = 64  # bytes: Eigen's largest alignment (AVX-512), which TensorFlow's kernels assume
# Bytes of one array that an elementwise pass over several arrays handles at a time, so
# that the pass's later ufuncs find the block still in the core's L2 cache (1-2 MB on
# current x86 cores): on the development machine the article's merged pool and sigmoid
# backward took 0.86 ms in blocks of 10 samples (320 KB) against 1.28 ms in one go.
BLOCK_BYTES = 256 * 2**10


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    shape = tuple(int(d) for d in np.atleast_1d(shape)) if np.ndim(shape) else (int(shape),)
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + size].view(dtype).reshape(shape)


def blocks(array: np.ndarray, block_bytes: int = BLOCK_BYTES) -> list[slice]:
    """Slices of ``array``'s first axis, each about ``block_bytes`` (at least one row)."""
    n = len(array)
    row = max(1, array[:1].nbytes)
    step = max(1, min(n, block_bytes // row))
    return [slice(start, min(n, start + step)) for start in range(0, n, step)]


def zeros(shape, dtype) -> np.ndarray:
    out = empty(shape, dtype)
    out.fill(0)
    return out


def aligned(array: np.ndarray) -> bool:
    return (
        isinstance(array, np.ndarray)
        and array.size > 0
        and array.flags.c_contiguous
        and array.flags.writeable
        and array.dtype in (np.float32, np.float64)
        and array.ctypes.data % ALIGN == 0
    )


def as_tensor(array):
    """A tensor reading ``array``'s memory in place where it is aligned (it must not be
    written while TensorFlow uses it); anything else is returned as it is."""
    if not aligned(array):
        return array
    from tfhybrid._tf import tf

    try:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    except (BufferError, TypeError, ValueError, AttributeError):
        return array
