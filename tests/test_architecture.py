"""The shape of the code, checked: data flows one way, the Slack SDK is used in one place,
the catalog owns its SQL, and every command is documented where people look for it."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import click

from bot import cli
from bot.report import messages
from handlers import commands

REPO = Path(__file__).resolve().parents[1]


# What each layer may import of this project (itself always; the standard library and
# third-party packages are the other rules' business). Data flows down this table: a layer
# never imports one that imports it.
BASICS = {
    "bot.errors",
    "bot.redaction",
    "bot.records",
    "bot.words",
    "bot.text",
    "bot.tags",
    "bot.chain",
    "bot.version",
    "bot.files",
    "bot.locations",
    "bot.conninfo",
    "bot.owners",
    "bot.pump",
    "bot.background",
    "bot.interrupts",
}
ALLOWED: dict[str, set[str]] = {
    # pure decisions: values in, values out, `now` an argument
    "bot.policy": {"bot.records", "bot.errors", "bot.words"},
    # Block Kit and text: rendering, no I/O
    "bot.report": {"bot.records", "bot.words", "bot.errors", "bot.tags"},
    **{basic: BASICS for basic in BASICS},
    "bot": BASICS,  # the package's own __init__
    "bot.pg": BASICS,
    "bot.catalog": BASICS | {"bot.pg"},
    "bot.config": BASICS | {"bot.catalog", "bot.destinations", "bot.fleet", "bot.policy"},
    "bot.store": BASICS | {"bot.config", "bot.destinations"},
    "bot.destinations": BASICS,
    "bot.copies": BASICS
    | {"bot.backup", "bot.catalog", "bot.config", "bot.destinations", "bot.policy", "bot.store"},
    # a snapshot's message goes through report's Chat, which only bot/slack implements
    "bot.backup": BASICS
    | {"bot.catalog", "bot.config", "bot.pg", "bot.store", "bot.fleet", "bot.report"},
    "bot.fleet": BASICS | {"bot.backup", "bot.catalog", "bot.config", "bot.pg", "bot.store"},
    "bot.restore": BASICS
    | {"bot.backup", "bot.catalog", "bot.config", "bot.pg", "bot.store", "bot.fleet"},
    "bot.approval": BASICS
    | {"bot.catalog", "bot.config", "bot.pg", "bot.policy", "bot.report", "bot.restore"},
    "bot.demo": BASICS,
    # the report for auditors: read from the catalog, rendered without I/O
    "bot.proof": BASICS | {"bot.catalog", "bot.config", "bot.destinations", "bot.report"},
    "bot.ops": BASICS
    | {
        "bot.backup",
        "bot.copies",
        "bot.catalog",
        "bot.config",
        "bot.pg",
        "bot.policy",
        "bot.report",
        "bot.restore",
        "bot.store",
        "bot.services",
        "bot.slack",
    },
    "bot.services": BASICS
    | {
        "bot.approval",
        "bot.copies",
        "bot.backup",
        "bot.catalog",
        "bot.config",
        "bot.fleet",
        "bot.ops",
        "bot.pg",
        "bot.report",
        "bot.restore",
        "bot.slack",
        "bot.store",
    },
    "bot.slack": BASICS | {"bot.config", "bot.ops", "bot.report", "bot.restore", "bot.services"},
    "bot.cli": {f"bot.{p}" for p in ("ops", "services", "slack", "demo", "backup", "catalog")}
    | BASICS
    | {"bot.config", "bot.proof", "bot.report", "bot.restore", "bot.store"},
    "handlers": BASICS
    | {"bot.config", "bot.ops", "bot.policy", "bot.proof", "bot.report", "bot.services"},
}
# the catalog's tables: SQL that names them belongs in bot/catalog
CATALOG_TABLES = (
    "snapshots",
    "requests",
    "drills",
    "restores",
    "copies",
    "reminders",
    "leases",
    "seen_requests",
    "audit",
    "work",
)
CLOCK_READS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "time_ns"}


def _modules(root: Path = REPO) -> dict[str, Path]:
    out = {}
    for top in ("bot", "handlers"):
        for path in (root / top).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
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
    return {m for m in found if m in known and m not in (name, "bot")}


def _graph(root: Path = REPO) -> dict[str, set[str]]:
    modules = _modules(root)
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def layer(module: str) -> str:
    """`bot.restore.run` -> `bot.restore`; `handlers.commands` -> `handlers`."""
    parts = module.split(".")
    return "handlers" if parts[0] == "handlers" else ".".join(parts[:2])


def imports_out_of_layer(root: Path = REPO) -> list[str]:
    """Every import the ALLOWED table doesn't allow, as 'module -> module'."""
    out = []
    for name, deps in _graph(root).items():
        mine = layer(name)
        allowed = ALLOWED.get(mine)
        assert allowed is not None, f"{mine} is not in the ALLOWED table"
        out += [f"{name} -> {d}" for d in sorted(deps) if layer(d) not in allowed | {mine}]
    return out


def catalog_sql_outside_the_catalog(root: Path = REPO) -> list[str]:
    """String constants that read or write a catalog table, outside bot/catalog; and
    sqlite3 or sqlite_utils imported there."""
    table = "|".join(CATALOG_TABLES)
    statement = re.compile(rf'\b(FROM|INTO|UPDATE|JOIN)\s+"?({table})\b')  # SQL's capitals
    out = []
    for name, path in _modules(root).items():
        if name.startswith("bot.catalog"):
            continue
        text = path.read_text()
        if re.search(r"^\s*(from|import) (sqlite3|sqlite_utils)", text, re.MULTILINE):
            out.append(f"{name}: imports sqlite")
        for node in ast.walk(ast.parse(text)):
            text_of = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text_of, str) and statement.search(text_of):
                out.append(f"{name}:{node.lineno}: {text_of[:60]!r}")
    return out


def clock_reads_in_policy(root: Path = REPO) -> list[str]:
    """Calls that read the clock (`datetime.now()`, `time.time()`, …) in bot/policy."""
    out = []
    for name, path in _modules(root).items():
        if not name.startswith("bot.policy"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLOCK_READS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("datetime", "date", "time")
            ):
                out.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return out


def slack_outside_the_slack_layer(root: Path = REPO) -> list[str]:
    allowed = ("bot.slack", "handlers")
    return [
        name
        for name, path in _modules(root).items()
        if re.search(r"^\s*(from|import) slack_(sdk|bolt)", path.read_text(), re.MULTILINE)
        and not name.startswith(allowed)
    ]


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


def test_each_layer_imports_only_what_its_row_allows() -> None:
    assert imports_out_of_layer() == []


def test_bot_never_imports_the_slack_listeners() -> None:
    assert not any("handlers" in ALLOWED[k] for k in ALLOWED if k != "handlers")
    assert [i for i in imports_out_of_layer() if "-> handlers" in i] == []


def test_only_the_slack_layer_imports_slack() -> None:
    assert slack_outside_the_slack_layer() == []


def test_only_the_catalog_speaks_to_its_database() -> None:
    assert catalog_sql_outside_the_catalog() == []


def test_policy_reads_no_clock() -> None:
    """Its docstrings promise values in, values out: `now` is an argument."""
    assert clock_reads_in_policy() == []


def test_each_rule_catches_the_drift_it_is_for(tmp_path: Path) -> None:
    """A copy of the code, broken the ways code drifts: each rule names the break."""
    for top in ("bot", "handlers"):
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))

    def append(rel: str, code: str) -> None:
        path = tmp_path / rel
        path.write_text(path.read_text() + "\n" + code + "\n")

    append(
        "bot/ops/status.py",
        "def _count(state: str) -> int:\n    import psycopg\n\n"
        '    return psycopg.connect(state).execute("SELECT count(*) FROM snapshots").fetchone()[0]',
    )
    append("bot/policy/retention.py", "from bot.ops import housekeeping  # noqa")
    append(
        "bot/policy/reminders.py",
        "def _late() -> bool:\n    return datetime.now(UTC).hour > 12",
    )
    append("bot/backup/read.py", "from slack_sdk import WebClient  # noqa")
    assert any(v.startswith("bot.ops.status:") for v in catalog_sql_outside_the_catalog(tmp_path))
    assert "bot.policy.retention -> bot.ops.housekeeping" in imports_out_of_layer(tmp_path)
    assert any("datetime.now(UTC)" in v for v in clock_reads_in_policy(tmp_path))
    assert slack_outside_the_slack_layer(tmp_path) == ["bot.backup.read"]
    # and the untouched tree passes every one of them
    assert catalog_sql_outside_the_catalog() == clock_reads_in_policy() == []


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


def test_every_package_and_public_class_says_what_it_is() -> None:
    missing = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        if path.name == "__init__.py" and not ast.get_docstring(tree):
            missing.append(name)
        missing += [
            f"{name}.{node.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            and not node.name.startswith("_")
            and not ast.get_docstring(node)
        ]
    assert missing == []
