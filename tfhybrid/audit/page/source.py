"""What the audit saw, kept with its report so the backward-pass page can be drawn later.

The page shows numbers the report does not hold (the forward activations, each layer's
local derivative, the gradient at a layer output the network does not report), so it
recomputes them from the network, the batch, and the weights, state and random draw of
the audit. Those are copied here when the audit runs: the network may train on after it,
and the page still shows the point that was audited.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator

import numpy as np


@dataclasses.dataclass(frozen=True)
class PageSource:
    """The audited ``model``, the batch ``x`` and one-hot ``y``, copies of its ``params``
    and ``state`` at the audit, and the training ``step`` whose draw the audit replayed
    (None for a model that draws nothing)."""

    model: object
    x: np.ndarray
    y: np.ndarray
    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    step: int | None

    @classmethod
    def capture(cls, model, x, y, step: int | None) -> PageSource:
        """Copies of what the audit of ``model`` on x, y at draw ``step`` saw."""
        params = {k: np.array(v) for k, v in model.params.items()}
        state = {k: np.array(v) for k, v in (getattr(model, "state", None) or {}).items()}
        return cls(model, np.array(x), np.array(y), params, state, step)

    @property
    def layered(self) -> bool:
        """Whether the model is a network of layers (a :class:`tfhybrid.Sequential`), whose
        page has a card per layer; else the page shows the report's tensors alone."""
        return all(hasattr(self.model, a) for a in ("layers", "param_keys", "names", "first"))

    @contextlib.contextmanager
    def network(self) -> Iterator[object]:
        """The model at the audited weights and state, replaying the audited draw: the
        model itself when nothing changed since, else a copy given the saved ones (the
        model, its optimizer and its step are never touched)."""
        model = self.model
        same = set(model.params) == set(self.params) and all(
            np.array_equal(model.params[k], v) for k, v in self.params.items()
        )
        state = getattr(model, "state", None) or {}
        same = same and all(np.array_equal(state.get(k), v) for k, v in self.state.items())
        if not same:
            model = copy.copy(model)  # shares the layers; gets buffers of its own below
            model.params = self.params
            if self.state:
                model.state = self.state
        replaying = getattr(model, "replaying", None)
        if callable(replaying):
            with replaying(self.step) as _:
                yield model
        else:
            yield model
