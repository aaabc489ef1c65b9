"""``train.py --audit-every N``: the gradient audit of the training model at an epoch's
end, and its one line: what changed, or that all is as before."""

from __future__ import annotations

import numpy as np

from tfhybrid.audit.compare import FACTOR, MATCH
from tfhybrid.catalog import build_model
from tfhybrid.config import TrainConfig

FD_SAMPLES = 8  # finite-difference coordinates per parameter: a quick audit per epoch


class EpochAudit:
    """``--audit-every``: the gradient audit of the training model at an epoch's end.

    It audits a copy: a network built once with the model's options, given the model's
    current weights (copied) at each audit, so neither the training model nor the
    optimizer is touched and a resumed run stays bit-identical. The update check steps
    the exact twin (every gradient rule at its true choice, as ``check_gradients.py``).
    The mismatches the model's own rules cause (db1 under ``bias_grad="seed"``, the tie
    rule's tensors when a batch has ties) are expected: found by comparing the model's
    manual gradients with the twin's on the batch, they neither fail nor count as changes.
    """

    def __init__(self, config: TrainConfig, x: np.ndarray, y: np.ndarray):
        self.config, self.x, self.y = config, x, y
        self.copy = self.twin = None

    def audit(self, model) -> dict:
        """{tensor: {"verdict", "rel_error", "expected"}} at the model's current weights."""
        from tfhybrid.audit import audit, registry

        if self.copy is None:
            self.copy = build_model(
                self.config.model,
                seed=self.config.seed,
                params=model.params,
                dtype=model.dtype,
                **self.config.model_options(),
            )
            self.twin = registry.exact_twin(self.config.model, self.copy)
        self.copy.params = model.params  # copies the arrays
        self.twin.params = model.params
        self.copy.state = self.twin.state = model.state  # copies too (running statistics)
        expected = self._rule_mismatches()
        report = audit(
            self.copy,
            self.x,
            self.y,
            expect=expected,
            seed=self.config.seed,
            fd_samples=FD_SAMPLES,
            update_model=self.twin,
        )
        return {
            t.name: {
                "verdict": t.manual.description,
                "rel_error": t.manual.rel_error,
                "expected": t.name in expected,
            }
            for t in report.tensors
        }

    def _rule_mismatches(self) -> list[str]:
        """The tensors whose manual gradient differs between the model and its exact twin."""
        from tfhybrid.audit.compare import compare
        from tfhybrid.audit.tolerances import rtol_for

        if self.copy.options == self.twin.options:
            return []
        rtol = rtol_for(self.copy.dtype)
        with self.copy.replaying(0), self.twin.replaying(0):  # one draw for both
            mine = self.copy.loss_and_gradients(self.x, self.y)
            true = self.twin.loss_and_gradients(self.x, self.y)
        pairs = [(f"d{k}", v, true["grads"][k]) for k, v in mine["grads"].items()]
        pairs += [(k, v, true["intermediates"][k]) for k, v in mine["intermediates"].items()]
        return [name for name, a, b in pairs if not compare(a, b, rtol).matches]

    @staticmethod
    def news(epoch: int, audit: dict, history: list) -> str:
        """The audit's one line: the tensors whose verdict differs from the previous
        audit's (at the run's first audit, those the rules do not explain that mismatch);
        else that all is as before: every gradient matches, or which mismatches remain."""
        previous = next((row["audit"] for row in reversed(history) if "audit" in row), None)
        wrong = [
            f"{name} ({item['verdict']})"
            for name, item in audit.items()
            if item["verdict"] != MATCH and not item["expected"]
        ]
        if previous is None and wrong:
            return f"audit: epoch {epoch}: unexpected mismatch: {', '.join(wrong)}"
        changes = []
        for name, item in audit.items() if previous is not None else ():
            before = previous.get(name)
            if before is None or item["expected"] or before.get("expected"):
                continue
            if _verdict_kind(before["verdict"]) != _verdict_kind(item["verdict"]):
                changes.append(f"{name} changed from {before['verdict']} to {item['verdict']}")
        if changes:
            return f"audit: epoch {epoch}: {'; '.join(changes)}"
        if wrong:
            return f"audit: epoch {epoch}: no verdict changed; still mismatched: {', '.join(wrong)}"
        expected = [
            f"{name} ({item['verdict']})"
            for name, item in audit.items()
            if item["verdict"] != MATCH and item["expected"]
        ]
        if expected:
            return (
                f"audit: epoch {epoch}: every gradient matches but those the model's own "
                f"rules change, as expected: {', '.join(expected)}"
            )
        return f"audit: epoch {epoch}: every gradient matches ({len(audit)} tensors)"


def _verdict_kind(verdict: str) -> str:
    """ "off by a constant factor 1/400" -> "off by a constant factor": a drifting factor
    is no change of verdict."""
    return FACTOR if verdict.startswith(FACTOR) else verdict
