"""The words of the backward-pass page: each layer's backward in one line, what its local
derivative picture shows, the loss's gradient, and the colours of the statuses."""

from __future__ import annotations

from tfhybrid.audit.page.trace import FILTERS, FORMULA, MATRIX, ONES, PATHS, RESHAPE

# A status of tfhybrid.audit.layers (or "verdict" states of a tensor) -> a CSS class.
STATUS_CLASS = {
    "ok": "ok",
    "at fault": "fault",
    "also wrong": "fault",
    "holds the fault": "holds",
    "inherits": "inherits",
}
NOT_CHECKED_CLASS = "none"


def _builtin(layer) -> str:
    """The class name of a built-in layer (tfhybrid.layers), else "" (a layer of your
    own is described by its docstring, not by a name it may share with a built-in)."""
    module = type(layer).__module__ or ""
    return type(layer).__name__ if module.startswith("tfhybrid.layers") else ""


def formula(layer) -> str:
    """The layer's backward in one line (Unicode; dout = dL/d its output)."""
    name = _builtin(layer)
    if name == "Conv2D":
        db = "db = Σₙᵢⱼ dout"
        if getattr(layer, "bias_grad", "exact") == "seed":
            db = "db = Σₙᵢⱼ dout ÷ (Ho·Wo)  (the article's rule: averaged over the positions)"
        if not getattr(layer, "use_bias", True):
            db = "no bias"
        return f"dx = dout ⋆ w rotated 180° (full correlation);  dw = Σₙ xₙ ⋆ doutₙ;  {db}"
    if name == "Dense":
        return "dx = dout · wᵀ;  dw = xᵀ · dout;  db = Σₙ dout"
    if name == "Sigmoid":
        return "dx = dout ⊙ s(1 − s),  s = sigmoid(x), the cached output"
    if name == "ReLU":
        return "dx = dout ⊙ [x > 0]  (0 at x = 0, as TensorFlow)"
    if name == "LeakyReLU":
        return f"dx = dout ⊙ (1 where x > 0, else α = {getattr(layer, 'alpha', 0.01):g})"
    if name == "Tanh":
        return "dx = dout ⊙ (1 − t²),  t = tanh(x), the cached output"
    if name == "Rescaling":
        return f"dx = dout · {getattr(layer, 'scale', 1.0):g}"
    if name == "AvgPool2D":
        k = getattr(layer, "size", 2)
        return f"dx = each window's dout spread evenly over its {k}×{k} inputs (÷ {k * k})"
    if name == "MaxPool2D":
        ties = getattr(layer, "ties", "first")
        rule = "its first maximum" if ties == "first" else "every tied maximum (the sources' rule)"
        return f"dx = each window's dout routed to {rule}; 0 elsewhere"
    if name == "Flatten":
        return "dx = dout reshaped to the input's shape (no number changes)"
    if name == "Dropout":
        return "dx = dout ⊙ mask · scale  (the mask of the forward pass: the same draw)"
    if name == "BatchNormalization":
        return (
            "dx = γ/σ · (dout − mean(dout) − x̂ · mean(dout ⊙ x̂)), means over the batch and "
            "positions;  dγ = Σ dout ⊙ x̂;  dβ = Σ dout"
        )
    if name == "LayerNormalization":
        return (
            "dx = γ/σ · (dout − mean(dout) − x̂ · mean(dout ⊙ x̂)), means over each sample;  "
            "dγ = Σ dout ⊙ x̂;  dβ = Σ dout"
        )
    if name == "Residual":
        return "dx = dx_block + dx_shortcut  (x feeds both paths: gradients add at the fork)"
    if name == "Branches":
        return "dx = Σ over the paths of each path's dx for its slice of dout (gradients add)"
    if isinstance(layer, _composite()):
        return "dx = the sum of the paths' dx (x feeds every path: gradients add at the fork)"
    doc = (type(layer).__doc__ or "").strip().splitlines()
    about = f" ({doc[0].strip()})" if doc and doc[0].strip() else ""
    return f"dx = {type(layer).__name__}.backward(dout, cache): a layer of your own{about}"


def _composite():
    from tfhybrid.layers.composite import Composite

    return Composite


LOCAL_CAPTION = {
    FILTERS: "its filters w: dout is correlated with them (turned 180°) to give dx",
    MATRIX: "its weight matrix w: dx = dout · wᵀ",
    ONES: (
        "dx for dL/d out = 1 everywhere: the derivative of an element-wise layer; "
        "for pooling, where each window sends its gradient"
    ),
    PATHS: "the paths of the fork, each layer drawn below as its own card",
    FORMULA: "a derivative that couples the whole batch: the formula above",
    RESHAPE: "a reshape: every number passes through unchanged",
}


def local_caption(layer, kind: str) -> str:
    """What the local-derivative picture of ``layer`` shows."""
    name = _builtin(layer)
    specific = {
        "Sigmoid": "s(1 − s): the sigmoid's derivative at each input",
        "ReLU": "the mask [x > 0]: 1 where the input was positive, else 0",
        "LeakyReLU": "1 where the input was positive, else α",
        "Tanh": "1 − t²: tanh's derivative at each input",
        "MaxPool2D": "the routing: 1 at each window's maximum, 0 elsewhere",
        "AvgPool2D": "the even spread: 1/k² at every input of a window",
        "Dropout": "the mask × scale: 0 where dropped",
        "Rescaling": "the scale, at every input",
    }
    return specific.get(name, LOCAL_CAPTION[kind])


def loss_formula(loss: str) -> str:
    """dL/dlogits of the network's loss, in one line."""
    if loss == "sigmoid_cross_entropy":
        return "dL/dz = (sigmoid(z) − y) / N  (sigmoid cross-entropy, summed over outputs)"
    return "dL/dz = (softmax(z) − y) / N  (softmax cross-entropy, mean over the batch)"
