"""Import TensorFlow once, without its start-up log lines.

TensorFlow 2.21 writes oneDNN and CUDA notices from C++ straight to file
descriptor 2 before its logging is configured, so neither TF_CPP_MIN_LOG_LEVEL
nor Python's logging can hold them back. They are captured here for the duration
of the import and device discovery only, and shown if the import fails (not when it
is interrupted by Ctrl-C, which they would not explain).
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _quiet_import():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf_module

            # Device discovery prints a CUDA notice on machines without a GPU; do it now.
            tf_module.config.list_physical_devices()
        except KeyboardInterrupt:
            raise  # Ctrl-C during the import: its notices explain nothing, keep them back
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf_module


tf = _quiet_import()
