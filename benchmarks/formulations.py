"""Each convolution's backward formulations, timed against each other.

For every ``Conv2D`` of a network: the plan it chose when built
(:mod:`tfhybrid.fast.conv_plan`) and the time of every candidate backward call on a random
batch of the network's shape, interleaved: over the batch (dw, and dx where the network
needs it, each formulation with and without XLA) and per sample (each sample's dw).
"""

from __future__ import annotations

import numpy as np


def conv_layers(net) -> list[tuple[int, str, object]]:
    """(index of the layer in the network, a name, the convolution) for every convolution,
    those inside composites too (named by their path: ``res6.block.0``)."""
    from tfhybrid.layers import Composite

    found = []
    for i, layer in enumerate(net.layers):
        inner = layer.leaves() if isinstance(layer, Composite) else [("", layer)]
        for prefix, leaf in inner:
            if hasattr(leaf, "plan"):
                found.append((i, f"{net.names[i]}.{prefix[:-1]}" if prefix else net.names[i], leaf))
    return found


def label(row: dict) -> str:
    """A candidate as one short name: 'dw form / dx form (XLA)'."""
    text = row["dw"] if row.get("dx") is None else f"{row['dw']} / {row['dx']}"
    return text + (" (XLA)" if row["xla"] else "")


def plans(model: str) -> list[dict]:
    """The plan each convolution of ``model`` chose when built (float32)."""
    from tfhybrid.catalog import build_model

    net = build_model(model, dtype=np.float32)
    return [
        {"layer": name, "index": i, **layer.plan.as_dict(), "text": layer.plan.describe()}
        for i, name, layer in conv_layers(net)
    ]


def time_formulations(model: str, batch: int, repeats: int = 10, seed: int = 0) -> list[dict]:
    """One row per convolution and call ("batch" or "per-sample"): the chosen
    candidate, and every candidate's median ms."""
    from tfhybrid.catalog import build_model
    from tfhybrid.fast.conv_plan import time_candidates

    net = build_model(model, dtype=np.float32)
    rows = []
    for index, name, layer in conv_layers(net):
        shape = layer.input_shape
        w_shape = layer.param_shapes(shape)["w"]
        need_dx = index > net.first
        plan = layer.plan
        for call, per_sample in (("batch", False), ("per-sample", True)):
            timed = time_candidates(
                shape,
                w_shape,
                layer.stride,
                layer.padding,
                np.float32,
                per_sample=per_sample,
                need_dx=need_dx and not per_sample,
                batch=batch,
                repeats=repeats,
                seed=seed,
            )
            chosen = (
                {"dw": plan.per_sample, "dx": None, "xla": plan.per_sample_xla}
                if per_sample
                else {
                    "dw": plan.dw,
                    "dx": plan.dx if need_dx else None,
                    "xla": plan.batch_xla(batch),
                }
            )
            candidates = []
            for row in timed:
                entry = {**row, "dx": row["dx"] if need_dx and not per_sample else None}
                entry["ms"] = entry.pop("seconds") * 1e3
                entry["chosen"] = all(entry[k] == chosen[k] for k in ("dw", "dx", "xla"))
                candidates.append(entry)
            best = min(candidates, key=lambda r: r["ms"])
            mine = next(r for r in candidates if r["chosen"])
            rows.append(
                {
                    "model": model,
                    "layer": name,
                    "input": list(shape),
                    "filter": list(w_shape),
                    "stride": layer.stride,
                    "padding": layer.padding,
                    "batch": batch,
                    "call": call,
                    "chosen": label(mine),
                    "chosen_ms": mine["ms"],
                    "fastest": label(best),
                    "fastest_ms": best["ms"],
                    "candidates": candidates,
                }
            )
    return rows
