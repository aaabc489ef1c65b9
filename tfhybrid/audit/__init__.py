"""Gradient audit: a model's manual gradients against tf.GradientTape (float32 and
float64) and float64 central finite differences, with a verdict per tensor.

    from tfhybrid.audit import audit
    report = audit(model, x, y_onehot)      # an AuditReport; report.to_dict() for JSON

Importing this package is cheap; TensorFlow loads with :func:`audit`.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "audit": "tfhybrid.audit.core",
    "AuditReport": "tfhybrid.audit.report",
    "TensorAudit": "tfhybrid.audit.report",
    "format_table": "tfhybrid.audit.table",
    "plot_report": "tfhybrid.audit.plots",
    "MODELS": "tfhybrid.audit.registry",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfhybrid.audit' has no attribute {name!r}")
