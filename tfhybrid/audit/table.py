"""The audit report as a terminal table, with a short legend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tfhybrid.audit.judge import HEADER, aligned, notes, row

DRAWS_NOTE = "random draws:"  # the note of an audit that replays one step's draw

if TYPE_CHECKING:  # the report prints itself with format_table: no import cycle
    from tfhybrid.audit.report import AuditReport

__all__ = ["HEADER", "aligned", "format_table"]  # aligned: from judge, as before


def format_table(report: AuditReport) -> str:
    """Header lines, one row per tensor, the update check, the outcome and a legend."""
    settings = ", ".join(f"{k} {v}" for k, v in report.settings.items())
    if report.problem:
        return _not_checked(report, settings)
    loss = report.loss
    lines = [
        f"gradient audit: {report.model} ({settings}), batch of {report.batch}",
        f"loss: manual {loss.manual:.7g}, tape float32 {loss.tape32:.7g}, tape float64 "
        f"{loss.tape64:.7g} (rel err {loss.rel_error:.1e}): "
        + ("match" if loss.matches else "MISMATCH: reference_forward computes another loss"),
        "",
    ]
    lines += aligned([HEADER] + [row(t) for t in report.tensors])
    if report.per_example:
        lines += ["", "per-example gradients (each sample's own, against a per-sample tape):"]
        lines += aligned([HEADER] + [row(t) for t in report.per_example])
        lines.append(_norms_line(report.per_example_norms))
    extra = notes([*report.tensors, *report.per_example])
    if extra:
        lines += ["", *extra]
    if report.layers:
        from tfhybrid.audit.layers import fault_lines

        lines += ["", *fault_lines(report.layers, bool(report.mismatches))]
    lines.append("")
    up = report.update
    biggest = ", ".join(f"{k} {v:.1e}" for k, v in up.max_difference.items())
    changed = [f"{k} {v}" for k, v in up.settings.items() if report.settings.get(k) != v]
    lines.append(
        f"update check: one SGD step (lr {up.lr:g}"
        + "".join(f", {c}" for c in changed)
        + ") with the manual gradients and "
        "with the tape's, from the same weights"
    )
    lines.append(
        f"  max |difference| of the new weights: {biggest}: "
        + ("pass" if up.passed else f"FAIL for {', '.join(up.failing)}")
    )
    lines.append(_outcome(report))
    lines += [f"note: {note}" for note in report.notes if note.startswith(DRAWS_NOTE)]
    lines += [
        "",
        *LEGEND.format(
            floor=report.tolerances["rel_error_floor"],
            rtol=report.tolerances["manual"],
            fd=report.tolerances["finite_differences"],
        ).splitlines(),
    ]
    return "\n".join(lines)


def _not_checked(report: AuditReport, settings: str) -> str:
    """Nothing could be judged: the tensors, the layer whose own forward draws fresh numbers
    (the loss, notes, the update check and the layers below would only compare noise)."""
    lines = [f"gradient audit: {report.model} ({settings}), batch of {report.batch}", ""]
    lines += aligned([HEADER] + [row(t) for t in report.tensors])
    fault = report.layer_at_fault
    if fault is not None:
        lines += ["", f"layer at fault: {fault.describe()}: {fault.check.problem or 'wrong'}"]
    return "\n".join([*lines, "", _outcome(report)])


def _norms_line(norms: dict[str, list[float]]) -> str:
    if not norms:
        return ""
    total = np.sqrt(sum(np.square(np.asarray(v)) for v in norms.values()))
    return (
        f"per-example gradient norms (all parameters, {len(total)} samples): min "
        f"{total.min():.3g}, median {np.median(total):.3g}, max {total.max():.3g}"
    )


def _outcome(report: AuditReport) -> str:
    if report.problem:
        return f"result: NOT CHECKED: {report.problem}"
    if not report.mismatches:
        return "result: every gradient matches"
    expected = [n for n in report.mismatches if n not in report.unexpected]
    parts = []
    if expected:
        parts.append(f"mismatch as expected: {', '.join(expected)}")
    if report.unexpected:
        parts.append(
            f"UNEXPECTED mismatch: {', '.join(report.unexpected)} "
            f"(--expect {' --expect '.join(report.unexpected)} to accept)"
        )
    return "result: " + "; ".join(parts)


LEGEND = """\
columns compare the manual gradient m with the reference r = tf.GradientTape in float64:
  rel err      max over elements of |m-r| / max(|m|+|r|, floor),
               floor = {floor:g} x (max|m|+max|r|); match when <= {rtol:g}
  cosine       <m,r> / (|m| |r|);  scale c: least squares m ~ c r;  worst index: largest rel err
  tape32       rel err of the float32 tape against r
  fd64 (n/nc)  rel err of r against float64 central differences on n sampled coordinates
               (tolerance {fd:g}, or the loss's rounding over the step when larger),
               nc of them not comparable (the step crosses a kink);
               intermediates have no finite differences (parameters only are perturbed)
  vote         parameters: manual, tape64, fd64; intermediates, and parameters whose
               sampled coordinates all cross a kink (fd64 n/a): manual, tape32, tape64;
               "all agree", "odd one out: S", "no two agree", or "inconsistent" (one
               source agrees with each of the others, which disagree with each other)"""
