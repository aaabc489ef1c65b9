"""Process settings for the hybrid training step: one BLAS thread, freed memory kept.

A hybrid step alternates between TensorFlow (its own thread pool, sized to the cores)
and NumPy. Two costs come from that alternation, not from the arithmetic
(``scripts/benchmark.py``, docs/performance.md):

- NumPy's BLAS (OpenBLAS, MKL or BLIS) starts its own threads for the small dense-layer
  products; they and TensorFlow's idle-spinning pool then fight for the same cores, which
  made a step several times slower on 2 busy cores. These products are small: one thread
  is enough. ``threadpoolctl`` sets it, whichever BLAS NumPy uses.
- glibc returns freed blocks above a few MB to the kernel, so every step's fresh
  activation arrays (NumPy's and TensorFlow's outputs) are page-faulted in again. Raising
  the trim and mmap thresholds keeps freed memory in the heap for the next step. It does
  not raise the peak: that memory was in use a moment earlier. No library does this.

:func:`tune_for_training` applies both, once, to the whole process; tfhybrid's own
training loop calls it (and the benchmarks of that loop). Each setting is skipped where it
does not apply (no glibc) or where the user chose otherwise (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``MALLOC_TRIM_THRESHOLD_``).

Code that runs inside someone else's process (the Keras bridge, ``tfhybrid.keras``) must
not change that process's settings. :func:`one_blas_thread` is the BLAS limit as a
scope: one thread inside it, the process's own limit back on leaving it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 512 * 2**20
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

_applied: dict[str, object] | None = None
_limits = None  # keeps threadpoolctl's limit in force for the life of the process
_blas = None  # one_blas_thread's controller of the BLAS libraries (False: none to limit)
# Serialises the scopes: OpenBLAS's limit is one value for the whole process, so two
# scopes open at once in two threads could restore in the wrong order (the second to
# leave restoring the first's limit of 1 for good). Reentrant, for a scope inside one.
_blas_lock = threading.RLock()


def limit_blas_threads(threads: int = 1) -> list[str]:
    """Limit NumPy's BLAS to ``threads`` threads; returns the libraries limited."""
    global _limits
    import numpy  # noqa: F401  (loads NumPy's BLAS, so threadpoolctl can find it)
    from threadpoolctl import threadpool_info, threadpool_limits

    _limits = threadpool_limits(limits=threads, user_api="blas")
    return [
        f"{info['internal_api']}:{os.path.basename(info['filepath'])}"
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]


def retain_freed_memory() -> bool:
    """Ask glibc to keep freed blocks (up to 32 MB each) in the heap; True if it agreed."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    # Setting either threshold switches off glibc's dynamic adjustment, so set both.
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def tune_for_training() -> dict[str, object]:
    """Apply the settings above once per process; returns what was done."""
    global _applied
    if _applied is None:
        chosen = [name for name in THREAD_VARIABLES if name in os.environ]
        _applied = {
            "blas_threads": (f"left to {chosen[0]}" if chosen else limit_blas_threads(1)),
            "retain_freed_memory": (
                "left to MALLOC_TRIM_THRESHOLD_"
                if "MALLOC_TRIM_THRESHOLD_" in os.environ
                else retain_freed_memory()
            ),
        }
    return _applied


def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded now, made once (finding
    them walks the loaded libraries: about 1.5 ms, too slow for every call); None when
    there is none, or when the user chose a thread count in the environment."""
    global _blas
    if _blas is None:
        with _blas_lock:  # the first calls may come from several threads at once
            if _blas is None:
                found = False
                if not any(name in os.environ for name in THREAD_VARIABLES):
                    import numpy  # noqa: F401  (loads NumPy's BLAS for threadpoolctl to find)
                    from threadpoolctl import ThreadpoolController

                    controller = ThreadpoolController().select(user_api="blas")
                    found = controller if controller.lib_controllers else False
                _blas = found
    return _blas or None


@contextlib.contextmanager
def one_blas_thread(threads: int = 1) -> Iterator[None]:
    """NumPy's BLAS limited to ``threads`` threads inside the ``with`` block, and the
    process's own limit restored when it ends (about 10 µs in all).

    For NumPy work run inside a process whose settings are not tfhybrid's to change (a
    Keras user's: :mod:`tfhybrid.keras` runs every hand-written forward and backward in
    one): its small products are fastest on one thread, and BLAS threads left spinning
    would fight TensorFlow's for the cores. Skipped, as :func:`tune_for_training` skips
    it, when ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set.
    Scopes in several threads run one at a time (see ``_blas_lock``). While another
    thread is inside its own ``threadpool_limits`` block, threadpoolctl lets no other
    thread change OpenBLAS's limit: the scope then changes nothing. The BLAS libraries
    are those loaded at the first call (NumPy's among them)."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with _blas_lock, controller.limit(limits=threads):
        yield
