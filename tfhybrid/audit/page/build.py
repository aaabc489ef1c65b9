"""The backward-pass page as data: the banner, the diagram, a card per layer and the
pictures' numbers, from an audit report (and what :mod:`.trace` adds to it).

Everything here is plain dicts and strings for the template
(``tfhybrid/audit/templates/backward.html.j2``); the numbers go into an
:class:`~tfhybrid.audit.page.arrays.ArrayStore`. Every verdict, figure and line shown is
the report's; a picture the report holds no verdict for (a local derivative, a gradient
the network does not report) is compared here with :func:`tfhybrid.audit.compare.compare`
at the report's own tolerance, to say whether its tape's version differs.
"""

from __future__ import annotations

import numpy as np

from tfhybrid.audit.compare import MATCH, compare
from tfhybrid.audit.judge import HEADER, MANUAL, TAPE64, notes, row
from tfhybrid.audit.page import words
from tfhybrid.audit.page.arrays import F4, H2, ArrayStore, Caps, cap
from tfhybrid.audit.page.trace import FILTERS, MATRIX, ONES, LayerTrace, Pair, trace_network

NOT_COMPUTED = (
    "not computed: no layer below has parameters, so the backward stops here (as in training)"
)
FED_TAPE = (
    "inside a composite: its backward is fed the tape's dL/d output, as the layer-at-fault "
    "check feeds it, so what it gets wrong is its own"
)


# The packed numbers of a page are kept under this many bytes unless the caller sets the
# caps: when the default caps would keep more, the page keeps fewer channels, then fewer
# samples (SHRINK, in order), and says so. The article's network at batch 8 needs 1.7 MB.
BUDGET = 4_000_000
SHRINK = ((8, 32), (8, 16), (4, 16), (4, 8), (2, 8), (1, 8), (1, 4), (1, 2), (1, 1))


def build_page(report, caps: Caps | None = None, title: str | None = None) -> dict:
    """The template's context: ``page`` (banner, diagram, cards, table) and the packed
    arrays (``manifest``, ``blob``). ``caps``: what to keep (default: the largest of
    SHRINK whose numbers fit in BUDGET); ``title``: the network's name on the page
    (default the report's)."""
    source = getattr(report, "source", None)
    if source is None or not source.layered or report.problem:
        return _assemble(report, None, None, caps or Caps(), title)
    trace = trace_network(source, report)
    tries = [caps] if caps is not None else [Caps(samples=s, channels=c) for s, c in SHRINK]
    with source.network() as model:
        for attempt in tries:
            context = _assemble(report, trace, model, attempt, title)
            if len(context["blob"]) <= BUDGET:
                break
    if caps is None and attempt != tries[0]:
        context["page"]["cuts"].append(
            f"kept under {BUDGET / 1e6:g} MB: at most {attempt.samples} samples and "
            f"{attempt.channels} channels per picture (report.to_html(path, "
            "caps=Caps(...)) keeps more)"
        )
    return context


def _assemble(report, trace, model, caps: Caps, title: str | None) -> dict:
    store = ArrayStore()
    builder = _Builder(report, store, caps)
    if trace is not None:
        cards = [builder.loss_card(trace)]
        cards += [builder.layer_card(item, model) for item in trace.layers]
        diagram = builder.diagram(model, trace)
        samples = _sample_labels(trace.y, caps)
    else:
        cards = [builder.tensor_card(item) for item in report.tensors]
        diagram = []
        samples = [f"image {n}" for n in range(min(report.batch, caps.samples))]
    lines = str(report).splitlines()
    return {
        "page": {
            "title": f"Backward pass: {title or report.model}",
            "heading": lines[0] if lines else report.model,
            "loss_line": next((line for line in lines if line.startswith("loss:")), ""),
            "result": next((line for line in lines if line.startswith("result:")), ""),
            "result_class": _result_class(report),
            "fault": builder.fault(),
            "notes": notes([*report.tensors, *report.per_example]),
            "other_notes": [n for n in report.notes if n.startswith("random draws")],
            "problem": report.problem,
            "table": _table(report),
            "samples": samples,
            "batch": report.batch,
            "caps": _caps_line(report.batch, caps),
            "cuts": _cuts_text(builder.cuts),
            "diagram": diagram,
            "cards": cards,
        },
        "manifest": store.manifest,
        "blob": store.pack(),
        "raw_bytes": store.raw_bytes,
    }


def _result_class(report) -> str:
    if report.problem or report.unexpected:
        return "fault"
    return "expected" if report.mismatches else "ok"


def _caps_line(batch: int, caps: Caps) -> str:
    if batch <= caps.samples:
        return ""
    return (
        f"samples 1-{caps.samples} of {batch} shown: the page keeps at most {caps.samples} "
        "images (the verdicts and the table are the whole batch's)"
    )


def _cuts_text(cuts: dict[str, tuple[int, int]]) -> list[str]:
    """ "channels: the first 16 (of up to 64)", one per axis the caps cut (the samples
    have their own line)."""
    return [
        f"{axis}: the first {kept} (of up to {full})"
        for axis, (kept, full) in sorted(cuts.items())
        if axis != "samples"
    ]


def _sample_labels(y: np.ndarray, caps: Caps) -> list[str]:
    labels = np.asarray(y).argmax(axis=1)
    return [f"image {n} (label {int(labels[n])})" for n in range(min(len(labels), caps.samples))]


def _table(report) -> dict:
    """The report's rows as the terminal table prints them (the same strings)."""
    return {
        "header": list(HEADER),
        "rows": [
            {"cells": list(row(t)), "name": t.name, "cls": _verdict_class(report, t)}
            for t in (*report.tensors, *report.per_example)
        ],
    }


def _verdict_class(report, check) -> str:
    if check is None:
        return words.NOT_CHECKED_CLASS
    if check.matches:
        return "ok"
    base = check.name.split(":")[0]
    return "expected" if base in report.expected or check.name in report.expected else "fault"


def _layout(shape: tuple[int, ...], parameter: bool = False) -> str:
    if parameter:
        if len(shape) == 4:
            return "filters"
        if len(shape) == 1 or (len(shape) == 2 and shape[0] == 1):
            return "bars"
        return "matrix" if len(shape) == 2 else "bars"
    if len(shape) == 4:
        return "maps"
    return "vector"


def _shaped(values: np.ndarray, layout: str) -> np.ndarray:
    """``values`` in the form its layout draws: maps [N,H,W,C], vector [N,D], bars [K]."""
    values = np.asarray(values)
    if layout == "maps" and values.ndim == 3:
        return values[..., None]
    if layout == "vector" and values.ndim != 2:
        return values.reshape(len(values), -1)
    if layout == "bars":
        return values.reshape(-1)
    return values


def _shape_text(shape) -> str:
    return "×".join(str(int(d)) for d in shape)


class _Builder:
    """Turns report and trace into the template's dicts, storing each picture's numbers."""

    def __init__(self, report, store: ArrayStore, caps: Caps):
        self.report, self.store, self.caps = report, store, caps
        self.rtol = report.tolerances.get("manual", 1e-3)
        self.checks = {t.name: t for t in report.tensors}
        self.cuts: dict[str, tuple[int, int]] = {}  # axis cut -> (kept, largest full size)
        self.count = 0
        self.anchors: dict[tuple, str] = {}

    # --- pictures ------------------------------------------------------------------------
    def picture(
        self,
        title: str,
        pair: Pair | None = None,
        *,
        values: np.ndarray | None = None,
        check=None,
        layout: str | None = None,
        side: str | None = None,
        caption: str = "",
        parameter: bool = False,
    ) -> dict | None:
        """One picture: a single array (``values``: a forward activation, a weight), or a
        manual array with its tape's version (``pair``), judged by the report's ``check``
        when it holds one."""
        first = (
            values
            if values is not None
            else (pair.manual if pair.manual is not None else pair.tape)
        )
        if first is None:
            return None
        layout = layout or _layout(np.shape(first), parameter)
        self.count += 1
        pic = {
            "id": f"pic{self.count}",
            "title": title,
            "layout": layout,
            "side": side,
            "caption": caption,
            "shape": _shape_text(np.shape(first)),
            "d": None,
            "single": values is not None,
            "tape_only": False,
            "differs": False,
            "summary": "",
            "verdict": "",
            "vclass": "",
            "judged_by": "",
            "scale": "",
            "cause": "",
            "cut": "",
        }
        if values is not None:
            kept, cut = cap(_shaped(values, layout), layout, self.caps)
            pic["m"] = self.store.add(kept, H2)
        elif pair.manual is None:
            kept, cut = cap(_shaped(pair.tape, layout), layout, self.caps)
            pic.update(m=self.store.add(kept, F4), tape_only=True)
        else:
            manual = np.asarray(pair.manual, dtype=np.float64)
            kept, cut = cap(_shaped(manual, layout), layout, self.caps)
            pic["m"] = self.store.add(kept, F4)
            if pair.tape is not None:
                tape = np.asarray(pair.tape, dtype=np.float64).reshape(manual.shape)
                diff = manual - tape
                pic["d"] = self.store.add(cap(_shaped(diff, layout), layout, self.caps)[0], H2)
                pic.update(self._judged(manual, tape, diff, check))
        pic["dims"] = [int(d) for d in kept.shape]
        if cut.text:
            pic["cut"] = cut.text
        for axis, kept_size, full in cut.axes_cut:
            before = self.cuts.get(axis, (kept_size, 0))
            self.cuts[axis] = (kept_size, max(before[1], full))
        return pic

    def _judged(self, manual, tape, diff, check) -> dict:
        """Whether the manual and tape versions differ, and the figures that say so: the
        report's verdict when it judged this tensor, else a comparison at its tolerance."""
        biggest = float(np.abs(diff).max()) if diff.size else 0.0
        size = max(float(np.abs(manual).max(initial=0)), float(np.abs(tape).max(initial=0)))
        finite = bool(np.all(np.isfinite(manual)))
        if check is not None:
            verdict, matches = check.verdict, check.matches
            source = "the audit"
        elif not finite:
            verdict, matches, source = "wrong (NaN or inf)", False, "here"
        else:
            found = compare(manual, tape, self.rtol)
            verdict, matches, source = found.description, found.verdict == MATCH, "here"
        return {
            "differs": not matches,
            "verdict": verdict,
            "vclass": "ok" if matches else "fault",
            "judged_by": source,
            "summary": (
                f"max |manual − tape| {biggest:.2e}"
                + (f" (relative to the largest, {biggest / size:.1e})" if size else "")
            ),
        }

    # --- cards ---------------------------------------------------------------------------
    def loss_card(self, trace) -> dict:
        """The first card of the backward pass: the loss's gradient at the logits."""
        name = self._logits_name()
        check = self.checks.get(name)
        return _card(
            **{
                "id": "card-loss",
                "title": "the loss",
                "where": "loss",
                "cls": trace.loss,
                "status": "",
                "sclass": self._tensor_class(check),
                "formula": words.loss_formula(trace.loss),
                "own": "",
                "forward": [
                    self.picture("logits z", values=trace.logits, side="out"),
                    self.picture("labels y (one-hot)", values=trace.y, side="out"),
                ],
                "up": None,
                "up_text": "dL/dL = 1",
                "local": None,
                "local_text": "the loss's own derivative at the logits: the formula above",
                "down": self.picture(
                    f"{name} = dL/d logits", trace.dlogits, check=check, side="out"
                ),
                "down_text": "",
            }
        )

    def _logits_name(self) -> str:
        names = [t.name for t in self.report.tensors if t.kind == "intermediate"]
        return names[-1] if names else "dlogits"

    def layer_card(self, item: LayerTrace, model, depth: int = 0) -> dict:
        """A layer's card: the chain rule upstream ∘ local = downstream, the forward
        beside it, its parameters' gradients, and for a composite its layers inside."""
        verdict = self._verdict(item)
        layer = item.layer
        out_name = model.names[item.index] if not item.inside else ""
        title = verdict.describe() if verdict is not None else self._describe(item, model)
        in_channels = item.x.shape[-1] if item.x.ndim == 4 else 0
        out_channels = item.out.shape[-1] if item.out.ndim == 4 else 0
        up_name = f"d{out_name}" if out_name else "dL/d out"
        down_name = (
            f"d{model.names[item.index - 1]}" if not item.inside and item.index > 0 else "dL/d x"
        )
        up_check = None if item.inside else self.checks.get(up_name)
        down_check = None if item.inside else self.checks.get(down_name)
        card_id = self._anchor(item)
        card = _card(
            **{
                "id": card_id,
                "title": title,
                "where": title,
                "cls": type(layer).__name__,
                "status": verdict.status if verdict is not None else "",
                "sclass": words.STATUS_CLASS.get(verdict.status, "none") if verdict else "none",
                "formula": words.formula(layer),
                "own": self._own_text(verdict),
                "fed_tape": FED_TAPE if item.fed_tape else "",
                "forward": [
                    self.picture(
                        f"input x {_shape_text(item.x.shape[1:])}", values=item.x, side="in"
                    ),
                    self.picture(
                        f"output {out_name or 'out'} {_shape_text(item.out.shape[1:])}",
                        values=item.out,
                        side="out",
                    ),
                ],
                "up": self.picture(
                    f"{up_name if out_name else 'dL/d out'}: upstream, dL/d output",
                    item.upstream,
                    check=up_check,
                    side="out",
                    caption="the tape's, fed to this layer" if item.fed_tape else "",
                ),
                "up_text": "",
                "local": None,
                "local_text": words.local_caption(layer, item.local_kind),
                "down": None,
                "down_text": "",
                "params": [],
                "children": [],
                "channels_in": in_channels,
                "channels_out": out_channels,
                "linked": item.local_kind not in (FILTERS, MATRIX) and in_channels == out_channels,
                "depth": depth,
            }
        )
        if item.downstream is None:
            card["down_text"] = NOT_COMPUTED
        else:
            card["down"] = self.picture(
                f"{down_name if not item.inside else 'dL/d x'}: downstream, dL/d input",
                item.downstream,
                check=down_check,
                side="in",
            )
        if item.local_kind == ONES and item.local is not None:
            card["local"] = self.picture(
                "local derivative", item.local, side="in", caption=card["local_text"]
            )
        elif item.local_kind in (FILTERS, MATRIX) and "w" in item.weights:
            card["local"] = self.picture(
                "its weights w",
                values=item.weights["w"],
                parameter=True,
                caption=card["local_text"],
            )
        if not item.children:  # a composite's parameters are on its inner layers' cards
            pics = [self._parameter(name, key) for name, key in item.params.items()]
            card["params"] = [p for p in pics if p is not None]
        card["children"] = [self.layer_card(child, model, depth + 1) for child in item.children]
        return card

    def _parameter(self, local_name: str, key: str) -> dict | None:
        manual = self.report.gradients.get(MANUAL, {}).get(f"d{key}")
        tape = self.report.gradients.get(TAPE64, {}).get(f"d{key}")
        if manual is None and tape is None:
            return None
        shape = np.shape(manual if manual is not None else tape)
        pic = self.picture(
            f"d{key} (its {local_name}: {_shape_text(shape)})",
            Pair(manual, tape),
            check=self.checks.get(f"d{key}"),
            parameter=True,
        )
        check = self.checks.get(f"d{key}")
        if check is not None and check.manual is not None and not check.matches:
            pic["scale"] = f"scale c (manual ≈ c · tape) = {_readable(check.manual.scale)}"
        if check is not None and check.cause:
            pic["cause"] = f"likely cause: {check.cause}"
        return pic

    def tensor_card(self, check) -> dict:
        """A model without layers (the reference interface): one card per gradient."""
        manual = self.report.gradients.get(MANUAL, {}).get(check.name)
        tape = self.report.gradients.get(TAPE64, {}).get(check.name)
        parameter = check.kind == "parameter"
        pic = self.picture(check.name, Pair(manual, tape), check=check, parameter=parameter)
        self.count += 1
        return _card(
            **{
                "id": f"card-{check.name}",
                "title": check.name,
                "where": check.name,
                "cls": check.kind,
                "status": check.verdict,
                "sclass": _verdict_class(self.report, check),
                "formula": "",
                "own": "",
                "forward": [],
                "up": None,
                "up_text": "",
                "local": None,
                "local_text": "",
                "down": pic,
                "down_text": "" if pic is not None else "no arrays kept",
                "params": [],
                "children": [],
                "channels_in": 0,
                "channels_out": (
                    manual.shape[-1] if manual is not None and manual.ndim == 4 else 0
                ),
            }
        )

    # --- the verdicts and the banner -----------------------------------------------------
    def _verdict(self, item: LayerTrace):
        for verdict in self.report.layers:
            if verdict.index == item.index and tuple(verdict.inside) == tuple(item.inside):
                return verdict
        return None

    def _describe(self, item: LayerTrace, model) -> str:
        layer = type(model.layers[item.index]).__name__
        head = f"{item.index} ({layer}, output {model.names[item.index]})"
        return " > ".join([head, *map(str, item.inside)])

    def _anchor(self, item: LayerTrace) -> str:
        key = (item.index, tuple(item.inside))
        if key not in self.anchors:
            steps = "".join(f"-{p.path}{p.position}" for p in item.inside)
            self.anchors[key] = f"card-{item.index}{steps}"
        return self.anchors[key]

    def _own_text(self, verdict) -> str:
        if verdict is None:
            return ""
        own = ", ".join(f"d{k} {v}" for k, v in verdict.own_verdicts.items())
        text = f"its own backward (fed the tape's dL/d output): {own or 'nothing checked'}"
        if verdict.network:
            text += f"; in the network, {', '.join(verdict.network)} mismatch"
        return text

    def _tensor_class(self, check) -> str:
        return _verdict_class(self.report, check)

    def fault(self) -> dict:
        """The layer at fault and the likely causes, for the top of the page: the lines
        the table prints under its rows, the same words."""
        from tfhybrid.audit.layers import fault_lines

        report = self.report
        lines = [line.strip() for line in fault_lines(report.layers, bool(report.mismatches))]
        tensor_causes = [
            line for line in notes(list(report.tensors)) if line.startswith("likely cause:")
        ]
        at_fault = report.layer_at_fault
        head = next((line for line in lines if line.startswith("layer at fault")), "")
        return {
            "text": head or (lines[0] if lines else ""),
            "anchor": (
                None
                if at_fault is None
                else self.anchors.get((at_fault.index, tuple(at_fault.inside)))
            ),
            "causes": [line for line in lines if line.startswith("likely cause:")] + tensor_causes,
            "others": [
                line
                for line in lines
                if line and not line.startswith(("layer at fault", "likely cause:", "layers:"))
            ],
            "cls": "fault" if at_fault is not None or report.unexpected else "ok",
        }

    # --- the diagram ---------------------------------------------------------------------
    def diagram(self, model, trace) -> list[dict]:
        """Input, one box per network layer (a composite with its paths), the loss; each
        coloured by its status, with the gradient at its output and its verdict."""
        nodes = [_box(kind="input", label="x", shape=_shape_text(model.input_shape))]
        for index, layer in enumerate(model.layers):
            nodes.append(self._node(model, index, layer, ()))
        name = self._logits_name()
        nodes.append(
            _box(
                kind="loss",
                label="loss",
                shape=trace.loss.replace("_", " "),
                grad=name,
                gclass=_verdict_class(self.report, self.checks.get(name)),
                anchor="card-loss",
            )
        )
        return nodes

    def _node(self, model, index: int, layer, inside: tuple) -> dict:
        from tfhybrid.audit.layers import Place
        from tfhybrid.layers.composite import Composite

        verdict = next(
            (v for v in self.report.layers if v.index == index and tuple(v.inside) == inside),
            None,
        )
        out_shape = getattr(layer, "output_shape_", None)
        grad = f"d{model.names[index]}" if not inside else ""
        check = self.checks.get(grad)
        node = {
            "kind": "layer",
            "label": type(layer).__name__,
            "name": model.names[index] if not inside else "",
            "shape": _shape_text(out_shape) if out_shape else "",
            "sclass": words.STATUS_CLASS.get(verdict.status, "none") if verdict else "none",
            "status": verdict.status if verdict else "not in the backward pass",
            "grad": grad if check is not None else "",
            "gclass": _verdict_class(self.report, check) if check is not None else "",
            "anchor": self.anchors.get((index, inside)),
            "paths": [],
        }
        if index < model.first and not inside:
            node["status"] = "below the first layer with parameters: no gradient needed"
        if isinstance(layer, Composite):
            for path, layers in layer.paths.items():
                node["paths"].append(
                    {
                        "name": path,
                        "nodes": [
                            self._node(
                                model,
                                index,
                                child,
                                (*inside, Place(path, position, type(child).__name__)),
                            )
                            for position, child in enumerate(layers)
                        ],
                    }
                )
        return node


def _card(**fields) -> dict:
    """A card, every field the template reads present."""
    card = {
        "id": "",
        "title": "",
        "where": "",
        "cls": "",
        "status": "",
        "sclass": "none",
        "formula": "",
        "own": "",
        "fed_tape": "",
        "forward": [],
        "up": None,
        "up_text": "",
        "local": None,
        "local_text": "",
        "down": None,
        "down_text": "",
        "params": [],
        "children": [],
        "channels_in": 0,
        "channels_out": 0,
        "linked": True,
        "depth": 0,
    }
    card.update(fields)
    return card


def _box(**fields) -> dict:
    """A box of the diagram, every field the template reads present."""
    box = {
        "kind": "layer",
        "label": "",
        "name": "",
        "shape": "",
        "sclass": "none",
        "status": "",
        "grad": "",
        "gclass": "",
        "anchor": None,
        "paths": [],
    }
    box.update(fields)
    return box


def _readable(c: float) -> str:
    from tfhybrid.audit.compare import readable_factor

    return readable_factor(c)
