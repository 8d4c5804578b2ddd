"""The shape of the code, checked: data flows one way, the Slack SDK is used in one place,
the catalog owns its SQL, and every command is documented where people look for it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

from bot import cli
from bot.report import messages
from handlers import commands

REPO = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    out = {}
    for root in ("bot", "handlers"):
        for path in (REPO / root).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of this project that `path` imports, anywhere in it (for type checking too:
    a cycle hidden behind TYPE_CHECKING is still a cycle for a reader)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert cycles == []


def test_bot_never_imports_the_slack_listeners() -> None:
    graph = _graph()
    offenders = {
        m: sorted(i for i in deps if i.startswith("handlers"))
        for m, deps in graph.items()
        if m.startswith("bot") and any(i.startswith("handlers") for i in deps)
    }
    assert offenders == {}


def test_only_the_slack_layer_imports_slack() -> None:
    allowed = ("bot.slack", "handlers")
    offenders = []
    for name, path in _modules().items():
        text = path.read_text()
        if re.search(
            r"^\s*(from|import) slack_(sdk|bolt)", text, re.MULTILINE
        ) and not name.startswith(allowed):
            offenders.append(name)
    assert offenders == []


def test_only_the_catalog_speaks_to_its_database() -> None:
    offenders = []
    for name, path in _modules().items():
        text = path.read_text()
        if re.search(r"^\s*(from|import) (sqlite3|sqlite_utils)", text, re.MULTILINE) and not (
            name.startswith("bot.catalog")
        ):
            offenders.append(name)
    assert offenders == []


def test_policy_modules_do_no_io() -> None:
    """Pure decisions: values in, values out (no catalog, storage, clock reads or Slack)."""
    graph = _graph()
    impure = ("bot.catalog", "bot.store", "bot.slack", "bot.services", "bot.pg", "bot.backup")
    for name, deps in graph.items():
        if name.startswith("bot.policy"):
            assert not [d for d in deps if d.startswith(impure)], name


def _cli_commands() -> list[str]:
    group = cli.main
    assert isinstance(group, click.Group)
    return sorted(group.commands)


def test_every_atlas_command_is_documented_and_has_help() -> None:
    readme = (REPO / "README.md").read_text()
    for name in _cli_commands():
        command = cli.main.commands[name]  # type: ignore[attr-defined]
        assert command.help, f"atlas {name} has no help text"
        shown = rf"(^|`)atlas {name}\b"  # in backticks, or a line of a code block
        assert re.search(shown, readme, re.MULTILINE), f"`atlas {name}` is not in README.md"
        assert f"atlas {name}" in messages.HELP, f"`atlas {name}` is not in the Slack help"


def test_every_slash_subcommand_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    for sub in [*commands.SUBCOMMANDS, "help"]:
        assert f"/atlas {sub}" in messages.HELP, f"`/atlas {sub}` is not in the Slack help"
        assert f"/atlas {sub}" in readme, f"`/atlas {sub}` is not in README.md"
