"""``Sequential.summary()``: the network as a learner reads it, then how it runs.

First a table: each layer's output name, class, output shape, parameters (network names
and shapes; state that is not trained after them) and parameter count, the layers inside
a composite under it by path; then the totals. Below, apart, the speed plan: which
formulation each convolution's backward takes and which layers run their forward as one
compiled TensorFlow call (docs/performance.md).
"""

from __future__ import annotations

import numpy as np

from tfhybrid.layers.composite import Composite

HEADER = ("output", "layer", "output shape", "parameters", "count")


def summary(net, plan: bool = True) -> str:
    """The table, the totals and (``plan``) the speed plan of ``net``, as text."""
    rows = [HEADER]
    seen: set[str] = set()  # parameters listed already: a shared layer's count once
    for index, layer in enumerate(net.layers):
        keys, state = net.param_keys[index], net.state_keys[index]
        if isinstance(layer, Composite):
            rows.append(_row(net, net.names[index], layer, layer.__class__.__name__, {}, {}))
            rows[-1] = (*rows[-1][:4], _count(net, set(keys.values()) - seen))
            rows.extend(_tree(net, layer, keys, state, depth=1, seen=seen))
        else:
            rows.append(_row(net, net.names[index], layer, type(layer).__name__, keys, state, seen))
    lines = _aligned(rows)
    trained = sum(int(np.prod(shape)) for shape in net.param_shapes.values())
    kept = sum(int(np.prod(shape)) for shape in net.state_shapes.values())
    lines.append(
        f"total: {trained:,} trained parameters"
        + (f", {kept:,} state values (not trained)" if kept else "")
    )
    if plan:
        steps = _plan(net)
        if steps:
            lines += ["", "speed plan (how each step runs; docs/performance.md):", *steps]
    return "\n".join(line.rstrip() for line in lines)


def _row(
    net, output: str, layer, label: str, keys: dict, state: dict, seen: set | None = None
) -> tuple[str, ...]:
    """One layer's row; ``seen``: the parameters listed in earlier rows (a layer met
    again is named shared, and counted once)."""
    if seen is not None and keys and set(keys.values()) <= seen:
        shared = ", ".join(dict.fromkeys(keys.values()))
        return (output, label, _shape(layer), f"(shared: {shared})", "")
    if seen is not None:
        seen.update(keys.values())
    params = ", ".join(
        f"{key} {'x'.join(map(str, net.param_shapes[key]))}" for key in dict.fromkeys(keys.values())
    )
    kept = ", ".join(
        f"{key} {'x'.join(map(str, net.state_shapes[key]))}"
        for key in dict.fromkeys(state.values())
    )
    if kept:
        params += f"; state {kept}"
    shape = f"[N,{','.join(map(str, layer.output_shape_))}]"
    count = _count(net, keys.values()) if keys else ""
    return (output, label, shape, params, count)


def _count(net, keys) -> str:
    total = sum(int(np.prod(net.param_shapes[k])) for k in dict.fromkeys(keys))
    return f"{total:,}" if total else ""


def _tree(net, composite: Composite, keys: dict, state: dict, depth: int, seen: set) -> list[tuple]:
    """Rows of a composite's layers, path by path, each labelled by its path."""
    rows = []
    indent = "  " * depth
    for path, layers in composite.paths.items():
        if not layers:
            rows.append(("", f"{indent}{path}: identity", "", "", ""))
        for position, child in enumerate(layers):
            owner, here = composite._owner(child), f"{path}.{position}"
            inner = {k[len(owner) :]: v for k, v in keys.items() if k.startswith(owner)}
            inner_state = {k[len(owner) :]: v for k, v in state.items() if k.startswith(owner)}
            label = f"{indent}{here} {type(child).__name__}"
            if owner != here + ".":  # a use of a layer met before: its parameters are there
                rows.append(("", label, _shape(child), f"(the layer of {owner[:-1]}: shared)", ""))
            elif isinstance(child, Composite):
                rows.append(("", label, _shape(child), "", _count(net, inner.values())))
                rows.extend(_tree(net, child, inner, inner_state, depth + 1, seen))
            else:
                rows.append(_row(net, "", child, label, inner, inner_state, seen))
    return rows


def _shape(layer) -> str:
    return f"[N,{','.join(map(str, layer.output_shape_))}]"


def _plan(net) -> list[str]:
    """One line per convolution (its backward's formulations) and per compiled run."""
    lines = []
    for index, layer in enumerate(net.layers):
        uses = layer.leaves() if isinstance(layer, Composite) else [("", layer)]
        for prefix, leaf in uses:
            note = leaf.describe() if hasattr(leaf, "describe") else ""
            if note:
                where = net.names[index] + (f".{prefix[:-1]}" if prefix else "")
                lines.append(f"  {where}: backward: {note}")
        run = net._run_at.get(index)
        if run is not None:
            xla = f", XLA up to batch {run.xla_max_batch}" if run.xla_max_batch else ""
            lines.append(
                f"  layers {run.start}-{run.stop - 1}: forward: in one compiled TensorFlow "
                f"call{xla}"
            )
    return lines


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Columns padded to their widest cell; the count right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return [
        "  ".join(
            cell.rjust(widths[i]) if i == len(HEADER) - 1 else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        )
        for row in rows
    ]
