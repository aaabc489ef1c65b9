"""The bug hunt (examples/bughunt.py, docs/bughunt.md): the audit finds each planted bug in
its own layer, with the verdict and likely cause the page states; the fixed network
matches everywhere; every code block of the page runs and shows what the page says.

The audits in-process run on four random images (no data needed); the page's command
lines run as a learner runs them, on the real MNIST of ``TFHYBRID_DATA_DIR`` (skipped
without it), and on the synthetic MNIST the page writes for learners without it.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

import numpy as np

from tests.test_audit_cli import run_check
from tests.test_examples import example, network

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "bughunt.md"
ROW = re.compile(r"^(\S+)\s.*?\s((?:all agree|odd one out: \w+|no two agree|inconsistent)\s+.+)$")


def page() -> str:
    """docs/bughunt.md's text."""
    return PAGE.read_text()


def blocks(kind: str) -> list[str]:
    """The page's fenced code blocks of one kind ("python", "bash", "text"), in order."""
    return re.findall(rf"```{kind}\n(.*?)```", page(), flags=re.S)


def rows(text: str) -> list[tuple[str, str]]:
    """(tensor, "vote  verdict") of each table row: the figures left out, they depend on
    the machine."""
    found = []
    for line in text.splitlines():
        match = ROW.match(line)
        if match and not line.startswith("tensor "):
            found.append((match.group(1), " ".join(match.group(2).split())))
    return found


def below_table(text: str) -> list[str]:
    """The lines after the table up to ``result:``, without the update check's figures:
    what the page says does not depend on the machine."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("dz2 "))
    end = next(i for i, line in enumerate(lines) if line.startswith("result:"))
    return [line for line in lines[start + 1 : end + 1] if "max |difference|" not in line]


def documented_output() -> str:
    """The page's audit output of ``net`` (its first text block after the network's
    diagram: the one that starts with the ``network:`` line)."""
    return next(block for block in blocks("text") if block.startswith("network:"))


def four_images() -> tuple[np.ndarray, np.ndarray]:
    """Four random images in [0, 1) and one-hot labels: no data needed, and no ties."""
    from tfhybrid.data import one_hot

    rng = np.random.default_rng(0)
    return rng.random((4, 28, 28, 1)).astype(np.float32), one_hot(rng.integers(0, 10, 4))


def test_the_audit_names_each_planted_bug_in_its_layer():
    from tfhybrid.audit import audit

    report = audit(network("bughunt.py", "net"), *four_images())
    assert not report.ok
    assert set(report.mismatches) == {"dw1", "db1", "db2", "dz1", "ds1", "update"}
    verdicts = {t.name: t.verdict for t in report.tensors}
    assert verdicts == {
        "dw1": "wrong",  # the convolution's: it inherits the errors below
        "db1": "wrong",
        "dw2": "match",
        "db2": "off by a constant factor 1/4",  # MyDense: the bias's mean over the batch
        "dz1": "wrong",  # MySigmoid's dx
        "ds1": "wrong",  # MyMaxPool2D's dx
        "dp1": "match",
        "dflat": "match",
        "dz2": "match",
    }
    assert report.tensor("db2").cause == "1/4 = 1/N (the batch of 4)"

    layers = {v.index: v for v in report.layers}
    assert {i: (v.layer, v.status) for i, v in layers.items()} == {
        4: ("MyDense", "at fault"),
        3: ("Flatten", "ok"),
        2: ("MyMaxPool2D", "also wrong"),
        1: ("MySigmoid", "also wrong"),
        0: ("Conv2D", "inherits"),
    }
    assert report.layer_at_fault.index == 4
    assert layers[4].own_verdicts == {
        "x": "match",
        "w": "match",
        "b": "off by a constant factor 1/4",
    }
    assert layers[4].check.input("b").cause == "1/4 = 1/N (the batch of 4)"
    assert layers[2].own_verdicts == {"x": "wrong"}
    assert layers[1].own_verdicts == {"x": "wrong"}
    assert layers[0].network == ("dw1", "db1")

    # What the page shows under the table and in its rows, on MNIST, holds here too.
    text = str(report)
    assert below_table(text) == below_table(documented_output())
    assert rows(text) == rows(documented_output())


def test_one_image_hides_the_mean_over_the_batch():
    """The page's "Check yourself" hint: with a batch of one, the mean is the sum."""
    from tfhybrid.audit import audit

    x, y = four_images()
    report = audit(network("bughunt.py", "net"), x[:1], y[:1])
    assert report.tensor("db2").verdict == "match"
    assert (report.layer_at_fault.index, report.layer_at_fault.layer) == (2, "MyMaxPool2D")
    assert [v.status for v in report.layers] == ["ok", "ok", "at fault", "also wrong", "inherits"]


def test_the_fixed_network_matches_everywhere_with_the_same_loss():
    from tfhybrid.audit import audit

    x, y = four_images()
    fixed, buggy = network("bughunt.py", "fixed_net"), network("bughunt.py", "net")
    report = audit(fixed, x, y)
    assert report.ok, (report.mismatches, str(report))
    assert all(v.status == "ok" for v in report.layers)
    # Only the gradients were planted wrong: the same weights and the same loss.
    assert fixed.params.keys() == buggy.params.keys()
    for key, value in buggy.params.items():
        np.testing.assert_array_equal(fixed.params[key], value)
    assert fixed.loss_and_gradients(x, y)["loss"] == buggy.loss_and_gradients(x, y)["loss"]
    # The answers live in their own file, which the exercise's does not show.
    solutions = (ROOT / "examples" / "bughunt_solutions.py").read_text()
    assert len(re.findall(r"\S  # fixed:", solutions)) == 3  # one line per bug
    assert "# fixed" not in (ROOT / "examples" / "bughunt.py").read_text()


def test_every_python_block_of_the_page_runs_and_shows_what_it_says(monkeypatch):
    """The blocks run in order in one session, from the repository's root, as the page
    says; the first prints the text block that follows it, the hints' probes show each
    bug, and the same probes on the solutions' layers show the right gradients."""
    code = blocks("python")
    assert len(code) == 3
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the first block adds examples/
    space: dict = {}
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(code[0], space)
        shown = page().split(code[0], 1)[1]
        expected = re.search(r"```text\n(.*?)```", shown, flags=re.S).group(1)
        assert printed.getvalue() == expected
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code[1], space)
            pool_dx = space["dx"][0, :, :, 0].copy()
            exec(code[2], space)
    finally:
        sys.modules.pop("bughunt", None)
    np.testing.assert_array_equal(pool_dx, [[0.0, 0.0], [1.0, 0.0]])  # "row 1, column 0"
    np.testing.assert_array_equal(space["dx"], [[0.0, -2.0]])  # the sigmoid: x (1 - x)

    fixed = example("bughunt.py")._solutions()
    pool = fixed.MyMaxPool2D(2)
    out, cache = pool.forward({}, np.array([[1.0, 5.0], [2.0, 3.0]]).reshape(1, 2, 2, 1))
    dx, _ = pool.backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 1.0], [0.0, 0.0]])
    sigmoid = fixed.MySigmoid()
    out, cache = sigmoid.forward({}, np.array([[0.0, 2.0]]))
    dx, _ = sigmoid.backward(np.ones_like(out), cache)
    np.testing.assert_allclose(dx, [[0.25, 0.104994]], atol=1e-6)  # the page's true slopes


def documented_command(name: str) -> list[str]:
    """The arguments of the page's ``check_gradients.py --model examples/bughunt.py:NAME``
    command that reads MNIST from ../shared/mnist."""
    for block in blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line)
            if f"examples/bughunt.py:{name}" in words and "../shared/mnist" in words:
                assert words[:2] == ["python", "scripts/check_gradients.py"], line
                return words[2:]
    raise AssertionError(f"docs/bughunt.md shows no command for {name} on ../shared/mnist")


def on(data_dir: Path, args: list[str]) -> list[str]:
    """``args`` with the page's ../shared/mnist replaced by ``data_dir``."""
    return [str(data_dir) if arg == "../shared/mnist" else arg for arg in args]


def test_the_page_command_on_mnist_prints_what_the_page_shows(data_dir):
    result = run_check(*on(data_dir, documented_command("net")))
    assert result.returncode == 1, result.stderr
    assert below_table(result.stdout) == below_table(documented_output())
    assert rows(result.stdout) == rows(documented_output())


def test_the_fixed_network_on_mnist_exits_0(data_dir, capsys, monkeypatch):
    """The page's command for ``fixed_net``, through the script's own main() in this
    process (the command above already runs one in a fresh interpreter)."""
    from tfhybrid.audit import cli

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))  # --model FILE adds examples/
    try:
        assert cli.main(on(data_dir, documented_command("fixed_net"))) == 0
    finally:
        sys.modules.pop("_tfhybrid_model_bughunt", None)  # the file, run as a module
    printed = capsys.readouterr().out.splitlines()
    shown = next(block for block in blocks("text") if block.startswith("layers:"))
    for line in shown.splitlines():
        if line != "...":
            assert line in printed, line


def test_the_synthetic_mnist_gives_the_same_lines(tmp_path, monkeypatch):
    """The page's way without MNIST: its ``python -c`` line writes the folder, and the
    audit of its first four test images reads as the page shows."""
    from tfhybrid.audit import audit
    from tfhybrid.audit.cli import mnist_batch

    write = next(
        shlex.split(line)[2]
        for block in blocks("bash")
        for line in block.splitlines()
        if line.startswith("python -c ")
    )
    monkeypatch.chdir(tmp_path)
    exec(write, {})
    command = next(
        shlex.split(line)
        for block in blocks("bash")
        for line in block.splitlines()
        if "--data-dir mnist-like" in line
    )
    assert command[command.index("--batch") + 1] == "4"
    report = audit(network("bughunt.py", "net"), *mnist_batch("mnist-like", 4))
    assert below_table(str(report)) == below_table(documented_output())
    assert rows(str(report)) == rows(documented_output())
