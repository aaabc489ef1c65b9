"""Every command line the documentation shows is accepted by its script's option parser.

README.md and docs/*.md are searched for ``python scripts/NAME.py ...`` (in code blocks and
in inline code) and for the console commands ``tfhybrid-train`` / ``tfhybrid-check-gradients``
(scripts/train.py and scripts/check_gradients.py). Each command's arguments go to that
script's own argparse parser, with placeholders such as ``runs/RUN`` kept as they are.
Only argparse runs: no training, no audit, no data. Abbreviated options are refused, so
the docs must spell every option in full.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SCRIPTS = (
    "train",
    "check_gradients",
    "benchmark",
    "compare_optimizers",
    "measure_pool_ties",
    "reproduce",
)
CONSOLE_COMMANDS = {"tfhybrid-train": "train", "tfhybrid-check-gradients": "check_gradients"}
OPERATORS = set(";&|<>()")
ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
COMMENT = re.compile(r"(^|\s)#.*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
MENTIONS = re.compile(r"scripts/\w+\.py|tfhybrid-(?:train|check-gradients)\b")


@functools.cache
def parser_for(script: str) -> argparse.ArgumentParser:
    """The parser ``scripts/<script>.py`` uses; building it imports no TensorFlow."""
    if script == "train":
        from tfhybrid.cli import build_parser

        return build_parser()
    if script == "check_gradients":
        from tfhybrid.audit.cli import build_parser

        return build_parser()
    path = ROOT / "scripts" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"_docs_commands_{script}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # definitions only: main() runs under __main__
    return module.build_parser()


def snippets(text: str):
    """(line number, shell text): every line of a fenced code block (continuation lines
    joined), and every inline code span outside the blocks."""
    in_block, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield start, pending + line
            pending = ""
        else:
            for match in INLINE_CODE.finditer(line):
                yield number, match.group(2)


def tokens(shell: str) -> list[str]:
    """Shell words of one line, the comment stripped; operators (; | > ...) as own tokens."""
    lexer = shlex.shlex(COMMENT.sub("", shell), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def commands(shell: str):
    """(script, argument list) of every command in one line of shell."""
    if not MENTIONS.search(shell):
        return
    try:
        words = tokens(shell)
    except ValueError:  # an unbalanced quote: prose in backticks, not a command
        return
    segment: list[str] = []
    for word in [*words, ";"]:
        if word and set(word) <= OPERATORS:
            if word.startswith(">") and segment and segment[-1].isdigit():
                segment.pop()  # 2>file: the descriptor is no argument
            found = command_in(segment)
            if found is not None:
                yield found
            segment = []
        else:
            segment.append(word)


def command_in(words: list[str]) -> tuple[str, list[str]] | None:
    """(script, arguments) when ``words`` run a script; env assignments and wrappers
    (/usr/bin/time -v, ...) before the command are dropped."""
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    for i, word in enumerate(words):
        if word in CONSOLE_COMMANDS:
            return CONSOLE_COMMANDS[word], words[i + 1 :]
        match = re.fullmatch(r"(?:\./)?scripts/(\w+)\.py", word)
        if match and i > 0 and Path(words[i - 1]).name.startswith("python"):
            return match.group(1), words[i + 1 :]
    return None


def documented_commands():
    found = []
    for path in DOC_FILES:
        for number, shell in snippets(path.read_text()):
            for script, args in commands(shell):
                where = f"{path.relative_to(ROOT)}:{number}"
                found.append(pytest.param(where, script, args, id=f"{where} {script}"))
    return found


def rejection(script: str, args: list[str]) -> str | None:
    """None when the script's parser accepts ``args``; else argparse's message."""
    if script not in SCRIPTS:
        return f"scripts/{script}.py is not one of the project's scripts"
    parser = parser_for(script)
    parser.allow_abbrev = False  # an abbreviation that argparse completes is still drift
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            parser.parse_args(args)
    except SystemExit as stop:
        if stop.code not in (0, None):  # 0: --help
            return err.getvalue().strip() or f"exit code {stop.code}"
    return None


def rejected_option(message: str) -> str:
    """The option argparse's message complains about, for the failure line."""
    match = re.search(r"unrecognized arguments: (.*?)(?: \(see --help\))?$", message)
    if match:
        return match.group(1)
    match = re.search(r"argument (\S+?):", message)
    return match.group(1) if match else message


COMMANDS = documented_commands()


@pytest.mark.parametrize("where,script,args", COMMANDS)
def test_documented_command_parses(where, script, args):
    message = rejection(script, args)
    assert message is None, (
        f"{where}: scripts/{script}.py rejects {rejected_option(message)!r} in "
        f"{shlex.join(args)!r}: {message}"
    )


def test_the_docs_show_every_script_and_console_command():
    shown = {param.values[1] for param in COMMANDS}
    assert shown >= set(SCRIPTS), f"no documented command line for {set(SCRIPTS) - shown}"
    text = "\n".join(path.read_text() for path in DOC_FILES)
    for name in CONSOLE_COMMANDS:
        assert name in text, name


def test_extraction_strips_comments_env_and_wrappers_and_maps_console_commands():
    text = "\n".join(
        [
            "Run `python scripts/train.py --epochs 2` or:",
            "```bash",
            "TFHYBRID_DATA_DIR=../shared/mnist python scripts/check_gradients.py --batch 2  # x",
            "/usr/bin/time -v python scripts/train.py --model NAME \\",
            "    --data-dir ../shared/mnist",
            "tfhybrid-check-gradients --model two-layer-net > audit.txt 2>/dev/null",
            "tfhybrid-train --help && python3 scripts/reproduce.py --seeds 0-4",
            "```",
        ]
    )
    found = [
        (number, script, args)
        for number, shell in snippets(text)
        for script, args in commands(shell)
    ]
    assert found == [
        (1, "train", ["--epochs", "2"]),
        (3, "check_gradients", ["--batch", "2"]),
        (4, "train", ["--model", "NAME", "--data-dir", "../shared/mnist"]),
        (6, "check_gradients", ["--model", "two-layer-net"]),
        (7, "train", ["--help"]),
        (7, "reproduce", ["--seeds", "0-4"]),
    ]
    for _, script, args in found:
        assert rejection(script, args) is None, (script, args)


@pytest.mark.parametrize(
    "script,args,option",
    [
        ("train", ["--epoch", "2"], "--epoch 2"),  # an abbreviation of --epochs
        ("check_gradients", ["--batch", "N"], "--batch"),  # a placeholder for an integer
        ("benchmark", ["--model", "NAME"], "--model"),  # not one of its choices
        ("measure_pool_ties", ["--model", "conv8"], "--model conv8"),  # no such option
        ("reproduce", ["--seed", "0"], "--seed 0"),
        ("compare_optimizers", ["--lr", "0.1"], "--lr 0.1"),
    ],
)
def test_a_rejected_option_is_named(script, args, option):
    message = rejection(script, args)
    assert message is not None
    assert rejected_option(message) == option, message


def test_the_audit_python_api_block_runs_and_says_what_it_prints(tmp_path, monkeypatch):
    """docs/audit.md's "Python API" block, run as written: each value its comments state."""
    import re

    import numpy as np

    from tfhybrid.data import one_hot

    text = (ROOT / "docs" / "audit.md").read_text()
    section = text[text.index("## Python API") :]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    rng = np.random.default_rng(0)
    space = {
        "x": rng.random((8, 28, 28, 1)).astype(np.float32),
        "y": one_hot(rng.integers(0, 10, 8)),
    }
    monkeypatch.chdir(tmp_path)  # plot_report writes audit.png here
    exec(code, space)
    report = space["report"]
    assert (report.ok, report.mismatches) == (False, ["db1", "update"])
    assert report.tensor("db1").verdict == "off by a constant factor 1/400"
    assert report.tensor("db1").cause == "1/400 = 1/Ho*Wo (20x20 output positions)"
    assert report.layer_at_fault.index == 0
    assert sorted(space["result"]["intermediates"]) == ["dL1", "ds1", "dz1", "dz2"]
    assert (tmp_path / "audit.png").exists()
    from tfhybrid.audit import audit

    assert audit(space["exact"], space["x"], space["y"]).ok
