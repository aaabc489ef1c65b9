"""Gradient audit: a model's manual gradients against tf.GradientTape (float32 and
float64) and float64 central finite differences, with a verdict per tensor.

    from tfhybrid.audit import audit, format_table
    report = audit(model, x, y_onehot)      # an AuditReport; report.to_dict() for JSON
    print(format_table(report))

    from tfhybrid.audit import check_layer, check_op     # code written outside the project
    print(check_op(forward, backward, {"x": x, "w": w}, reference))

    from tfhybrid.audit import layer_object, references  # textbook code in its own convention
    op = layer_object(MyAffine(W, b))
    print(check_op(*op, op.inputs(x), reference=references.affine()))

The adapters (``layer_object``, ``function_pair``, ``loss_function``) are in
:mod:`tfhybrid.audit.conventions`, the ready references in :mod:`tfhybrid.audit.references`.
Importing this package does not import TensorFlow; :func:`audit` does, when called (and
so does importing ``references``).
"""

from tfhybrid.audit.conventions import CodeLayer, OpPair, function_pair, layer_object, loss_function
from tfhybrid.audit.core import audit
from tfhybrid.audit.layer_check import check_layer
from tfhybrid.audit.ops import OpReport, check_op
from tfhybrid.audit.plots import plot_report
from tfhybrid.audit.registry import RULES
from tfhybrid.audit.report import AuditReport, TensorAudit
from tfhybrid.audit.table import format_table

__all__ = [
    "RULES",
    "CodeLayer",
    "OpPair",
    "AuditReport",
    "OpReport",
    "TensorAudit",
    "audit",
    "check_layer",
    "check_op",
    "format_table",
    "function_pair",
    "layer_object",
    "loss_function",
    "plot_report",
]
