"""The package's structure: no import cycle, and each model option declared once."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from tfhybrid.audit import registry
from tfhybrid.audit.core import SETTINGS
from tfhybrid.catalog import MODEL_NAMES, MODELS, OPTIONS
from tfhybrid.cli import build_parser
from tfhybrid.config import TrainConfig

PACKAGE = Path(__file__).resolve().parent.parent / "tfhybrid"


def _imports() -> dict[str, set[str]]:
    """Module -> the tfhybrid modules it imports anywhere (lazy imports too), leaving out
    ``if TYPE_CHECKING:`` blocks, which never run."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path

    def owner(target: str) -> str:
        while target not in modules and "." in target:
            target = target.rsplit(".", 1)[0]
        return target

    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfhybrid"):
                found |= {owner(f"{node.module}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {owner(a.name) for a in node.names if a.name.startswith("tfhybrid")}
        graph[name] = found - {name}
    return graph


def test_no_import_cycle_in_the_package():
    graph = _imports()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_every_model_option_derives_from_the_catalog():
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    flags = {a for action in build_parser()._actions for a in action.option_strings}
    for option in OPTIONS:
        assert option.keyword in fields and option.flag in flags
        assert option.keyword in SETTINGS
    assert registry.OPTION_FLAGS == OPTIONS
    assert registry.RULES == tuple(o for o in OPTIONS if o.exact is not None)
    for name in MODEL_NAMES:
        net = MODELS[name].build_function()()
        assert net.options == {o.keyword: o.default for o in MODELS[name].options}
