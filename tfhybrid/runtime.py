"""Process settings for the hybrid training step: one BLAS thread, freed memory kept.

A hybrid step alternates between TensorFlow (its own thread pool, sized to the cores)
and NumPy. Two measured costs come from that alternation, not from the arithmetic
(``scripts/benchmark.py``, README "Performance"):

- OpenBLAS starts its own threads for NumPy's small dense-layer products; they and
  TensorFlow's idle-spinning pool then fight for the same cores. On 2 busy cores this
  made a step 3-4x slower. The hybrid's matrix products are [100,2000]x[2000,10]:
  one thread is enough.
- glibc returns freed blocks above a few MB to the kernel, so every step's fresh
  3 MB activation arrays (NumPy's and TensorFlow's outputs) are page-faulted in again:
  ~2,700 page faults and ~5 ms of kernel time per step. Raising the trim and mmap
  thresholds keeps freed memory in the heap for the next step. It does not raise the
  peak: that memory was in use a moment earlier.

:func:`tune_for_training` applies both, once; it is called by the training loop and
the benchmark (for every method it times alike). Each setting is skipped where it does
not apply (no glibc, no OpenBLAS) or where the user chose otherwise
(``OPENBLAS_NUM_THREADS``, ``MALLOC_TRIM_THRESHOLD_``).
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 512 * 2**20
BLAS_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_")

_applied: dict[str, object] | None = None


def loaded_libraries(word: str) -> list[str]:
    """Paths of shared libraries mapped into this process whose file name contains ``word``."""
    try:
        with open("/proc/self/maps") as handle:
            paths = {line.split()[-1] for line in handle if line.rstrip().endswith(".so")
                     or ".so." in line}
    except OSError:
        return []
    return sorted(p for p in paths if word in os.path.basename(p).lower())


def limit_blas_threads(threads: int = 1) -> list[str]:
    """Set NumPy's OpenBLAS to ``threads`` threads; returns the libraries changed."""
    import numpy  # noqa: F401  (loads NumPy's BLAS, so it is in the process map)

    changed = []
    for path in loaded_libraries("blas"):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in BLAS_SETTERS:
            setter = getattr(library, name, None)
            if setter is not None:
                setter(ctypes.c_int(threads))
                changed.append(f"{os.path.basename(path)}:{name}")
                break
    return changed


def retain_freed_memory() -> bool:
    """Ask glibc to keep freed blocks (up to 32 MB each) in the heap; True if it agreed."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    # Setting either threshold switches off glibc's dynamic adjustment, so set both.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def tune_for_training() -> dict[str, object]:
    """Apply the settings above once per process; returns what was done."""
    global _applied
    if _applied is None:
        _applied = {
            "blas_threads": ("left to OPENBLAS_NUM_THREADS" if "OPENBLAS_NUM_THREADS" in os.environ
                             else limit_blas_threads(1)),
            "retain_freed_memory": ("left to MALLOC_TRIM_THRESHOLD_"
                                    if "MALLOC_TRIM_THRESHOLD_" in os.environ
                                    else retain_freed_memory()),
        }
    return _applied
