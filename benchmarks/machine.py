"""What the figures were measured on."""

from __future__ import annotations

import os
import platform

import numpy as np


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info() -> dict:
    """Versions, cores, processor and the load average at the start (imports TensorFlow)."""
    from tfhybrid._tf import tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "load_average": load_average(),
    }
