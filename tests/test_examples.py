"""The networks in examples/, which the docs audit with ``--model examples/FILE.py:NAME``:
each is audited in-process on two random images and gives the verdict the docs state, every
``examples/FILE.py:NAME`` the docs and examples/README.md name exists, and the docs' error
line for a missing name is the one the command line prints."""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from tests.test_audit_cli import run_check
from tests.test_cli import assert_one_line_error

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), EXAMPLES / "README.md")
NAMED = re.compile(r"examples/(\w+\.py):(\w+)")
NOT_ADDED = (
    "likely cause: layer 2 dx equals path block's gradient alone: the gradient from one "
    "path was not added at the fork (the identity path shortcut's)"
)


@functools.cache
def example(filename: str):
    """examples/FILENAME run as a module, as ``--model examples/FILENAME:NAME`` runs it."""
    path = EXAMPLES / filename
    spec = importlib.util.spec_from_file_location(f"_examples_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def network(filename: str, name: str):
    """The network ``--model examples/FILENAME:NAME`` audits."""
    from tfhybrid import Sequential

    value = getattr(example(filename), name)
    net = value if isinstance(value, Sequential) else value()
    assert isinstance(net, Sequential), f"{filename}:{name}"
    return net


def two_images():
    from tfhybrid.data import one_hot

    rng = np.random.default_rng(0)
    return rng.random((2, 28, 28, 1)).astype(np.float32), one_hot(rng.integers(0, 10, 2))


@pytest.mark.parametrize(
    "filename,name",
    [
        ("mynets.py", "my_net"),
        ("mynets.py", "tanh_net"),
        ("mynets.py", "net"),
        ("residual.py", "residual_net"),
    ],
)
def test_the_good_examples_match_everywhere(filename, name):
    from tfhybrid.audit import audit

    report = audit(network(filename, name), *two_images())
    assert report.ok, (f"{filename}:{name}", report.mismatches, str(report))


def test_the_forgotten_shortcut_is_named_at_its_join():
    from tfhybrid.audit import audit

    report = audit(network("residual.py", "forgetful_net"), *two_images())
    assert not report.ok
    assert {"dw1", "db1", "dz1", "da1"} <= set(report.mismatches), report.mismatches
    assert (report.layer_at_fault.index, report.layer_at_fault.layer) == (2, "Forgetful")
    text = str(report)
    assert "layer at fault: 2 (Forgetful, output h3): its own backward gives dx wrong" in text
    assert NOT_ADDED in text


def test_every_example_the_docs_name_exists():
    named = {
        (match.group(1), match.group(2), path.relative_to(ROOT))
        for path in DOCS
        for match in NAMED.finditer(path.read_text())
    }
    assert ("mynets.py", "tanh_net", Path("docs/audit.md")) in named
    for filename, name, where in sorted(named):
        if name == "nope":  # the docs' example of a missing name
            continue
        assert (EXAMPLES / filename).is_file(), f"{where}: no examples/{filename}"
        assert hasattr(example(filename), name), f"{where}: examples/{filename} has no {name}"


def test_the_docs_error_for_a_missing_name_is_the_one_printed():
    result = run_check("--model", "examples/mynets.py:nope", "--batch", "2")
    assert_one_line_error(result, "examples/mynets.py has no 'nope'", "my_net, tanh_net, net")
    documented = [
        line
        for line in (ROOT / "docs" / "audit.md").read_text().splitlines()
        if line.startswith("error: --model examples/mynets.py:nope")
    ]
    assert documented == [result.stderr.strip()]
