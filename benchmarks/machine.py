"""What the figures were measured on."""

from __future__ import annotations

import os
import platform

import numpy as np


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo (Linux), with ", AVX-512" where it has it
    (the convolution rule depends on it); else what ``platform`` reports."""
    from tfhybrid.fast.conv_plan import cpu_has_avx512

    name = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    return f"{name}, {'AVX-512' if cpu_has_avx512() else 'no AVX-512'}"


def machine_info() -> dict:
    """Versions, cores, processor and the load average at the start (imports TensorFlow)."""
    from tfhybrid._tf import tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "processor": cpu_model(),
        "load_average": load_average(),
    }
