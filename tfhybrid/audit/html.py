"""The backward-pass page: one self-contained HTML file per audit.

    report = audit(net, x, y)
    report.to_html("backward.html")     # or: check_gradients.py --html backward.html
    report.page()                       # in a notebook: the page inline

The page shows the network as a diagram (each layer coloured by its status, the layer
at fault and its likely cause at the top), then one card per layer in backward order,
read as the chain rule: dL/d output ∘ the layer's local derivative = dL/d input, each
drawn from the numbers, manual beside the tape's and their difference; the parameter
gradients as pictures; the forward activations beside them. It is rendered by Jinja2
from ``tfhybrid/audit/templates/backward.html.j2``, with its CSS, its script and every
number inline: it makes no request to any server (its Content-Security-Policy forbids
one) and opens offline in any current browser.

Why canvases drawn from inline numbers, not images: hovering a pixel shows its value in
the manual, tape and difference pictures, so the numbers must be in the page anyway;
drawn from them, one picture serves every sample and channel the pickers choose (images
would need one per sample, channel and version), and the manual and tape versions share
one colour scale computed where they are drawn. The numbers are packed once
(:mod:`tfhybrid.audit.page.arrays`), so the page stays small.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tfhybrid.audit.page.arrays import Caps

if TYPE_CHECKING:
    from tfhybrid.audit.report import AuditReport

__all__ = ["BackwardPage", "Caps", "render_html", "write_html"]

TEMPLATE = "backward.html.j2"
NOTEBOOK_HEIGHT = 900  # pixels of the inline frame in a notebook; the page scrolls inside


def _environment():
    """Jinja2, reading the templates shipped inside the package (package data)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("tfhybrid.audit", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,  # a name the page data lacks is a bug: say so
    )


def _pictures(cards: list[dict]) -> dict[str, dict]:
    """Every picture of the cards (children included), by id: what the script draws."""
    found = {}
    for card in cards:
        pics = [*card["forward"], card["up"], card["local"], card["down"], *card["params"]]
        for pic in pics:
            if pic:
                found[pic["id"]] = pic
        found.update(_pictures(card["children"]))
    return found


def render_html(report: AuditReport, caps: Caps | None = None, title: str | None = None) -> str:
    """The page of ``report`` as one HTML string. ``caps``: how many samples, channels
    and matrix rows the page keeps (:class:`~tfhybrid.audit.page.arrays.Caps`; default:
    as many as fit in :data:`tfhybrid.audit.page.build.BUDGET`; the page says what it
    left out). ``title``: the network's name on the page (default the report's)."""
    from tfhybrid.audit.page.build import build_page

    context = build_page(report, caps, title)
    page = context["page"]
    script_data = {
        "manifest": context["manifest"],
        "pictures": _pictures(page["cards"]),
        "samples": len(page["samples"]),
    }
    template = _environment().get_template(TEMPLATE)
    return template.render(page=page, data=script_data, blob=context["blob"])


def write_html(
    report: AuditReport,
    path: str | os.PathLike,
    caps: Caps | None = None,
    title: str | None = None,
) -> Path:
    """Write the page of ``report`` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(render_html(report, caps, title), encoding="utf-8")
    return path


class BackwardPage:
    """The page of one report, for a notebook: displayed inline (in a frame of its own, so
    its styles and script stay apart from the notebook's), or saved with :meth:`save`."""

    def __init__(self, report: AuditReport, caps: Caps | None = None):
        self.html = render_html(report, caps)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` and return the path."""
        path = Path(path)
        path.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        # srcdoc: the whole page inline, no file and no server; the frame keeps its script.
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
            f'style="width:100%;height:{NOTEBOOK_HEIGHT}px;border:1px solid #ccc" '
            'title="backward pass"></iframe>'
        )

    def __len__(self) -> int:
        return len(self.html)
