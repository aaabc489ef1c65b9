"""Every ```python block of README.md and docs/*.md runs as written.

The blocks of one page run in order in one namespace, as a reader runs them in one session,
so a later block may use what an earlier one defined (a layer of one's own, then the network
that uses it). Before the first block the namespace holds what the pages say a reader brings:
``x`` (float32 images [N,28,28,1] in [0,1]) and its one-hot labels ``y`` (also named
``y_onehot``). The blocks run in a scratch folder that stands for the repository's root, with
the real MNIST as ``../shared/mnist`` beside it (the layout the pages assume), so a plot a
block writes lands there, and ``examples/`` beside it.

A few blocks are excerpts, not programs (a signature, a method shown inside its class, a
call on a network built in the prose above it); ``EXCERPTS`` names each by its first line
and says why, and the test fails when one of them is no longer on its page, so the list
cannot rot. What the blocks print is not compared with the pages: its float digits depend
on the machine (docs/development.md); the verdicts are asserted by the tests of each page's
topic (test_check_own.py, test_docs_commands.py, test_examples.py, test_composite.py, ...).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", flags=re.S | re.M)
IMAGES = 8  # the reader's batch: enough for every block, small enough to be quick

# (page, first line) -> why the block is not run.
EXCERPTS = {
    ("docs/audit.md", "report = audit(net, x, y)"): (
        "the nested residual network it audits is described in the prose above it; "
        "tests/test_audit_forks.py builds and audits it"
    ),
    (
        "docs/audit.md",
        "def reference_forward(self, params: dict[str, tf.Tensor], x: tf.Tensor, y: tf.Tensor",
    ): ("a method's signature"),
    ("docs/keras.md", '@keras.saving.register_keras_serializable(package="mine")'): (
        "the registration added to the Swish class of the block above, shown alone"
    ),
}


def blocks(page: str) -> list[str]:
    """The page's ```python blocks in order, indented ones (in a list item) dedented."""
    found = []
    for indent, body in BLOCK.findall((ROOT / page).read_text()):
        lines = [
            line[len(indent) :] if line.startswith(indent) else line for line in body.splitlines()
        ]
        found.append("\n".join(lines) + "\n")
    return found


def first_line(block: str) -> str:
    return block.strip().splitlines()[0].strip()


def reader_namespace() -> dict:
    from tfhybrid.data import one_hot

    rng = np.random.default_rng(0)
    y = one_hot(rng.integers(0, 10, IMAGES))
    return {"x": rng.random((IMAGES, 28, 28, 1)).astype(np.float32), "y": y, "y_onehot": y}


PAGES_WITH_CODE = [page for page in PAGES if blocks(page)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_every_python_block_of_the_page_runs(page, request, tmp_path, monkeypatch, capsys):
    code = blocks(page)
    if any("../shared/mnist" in block for block in code):
        shared = tmp_path / "shared"
        shared.mkdir()
        (shared / "mnist").symlink_to(request.getfixturevalue("data_dir"))
    root = tmp_path / "repo"
    root.mkdir()
    (root / "examples").symlink_to(ROOT / "examples")  # the pages import from examples/
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "path", list(sys.path))  # a block may add examples/ to it
    before = set(sys.modules)
    space = reader_namespace()
    for number, block in enumerate(code):
        if (page, first_line(block)) in EXCERPTS:
            continue
        try:
            exec(compile(block, f"{page}, python block {number}", "exec"), space)
        except Exception as error:  # name the block: the traceback alone points into exec
            pytest.fail(f"{page}, python block {number} ({first_line(block)!r}): {error!r}")
    capsys.readouterr()  # what the blocks print is the pages' business, not the log's
    examples = str(ROOT / "examples")
    for name in set(sys.modules) - before:
        where = getattr(sys.modules[name], "__file__", None) or ""
        if where.startswith(examples) or "/repo/examples/" in where:
            del sys.modules[name]  # an example a block imported: none outlives its page


def test_every_excerpt_is_still_on_its_page():
    present = {(page, first_line(block)) for page in PAGES for block in blocks(page)}
    missing = sorted(set(EXCERPTS) - present)
    assert not missing, f"EXCERPTS names blocks no page has any more: {missing}"


def test_the_article_network_on_the_layers_page_is_the_catalog_one():
    """docs/layers.md quotes seed-cnn's definition: it must build what the catalog builds."""
    import tfhybrid

    quoted = next(block for block in blocks("docs/layers.md") if 'name="seed-cnn"' in block)
    space: dict = {}
    exec(quoted, space)
    built = tfhybrid.build_model("seed-cnn", seed=0)
    assert space["net"].summary() == built.summary()
    for name, value in built.params.items():
        np.testing.assert_array_equal(space["net"].params[name], value, err_msg=name)
