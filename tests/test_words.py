"""Words people read: no "1 snapshots", no "snapshot(s)", no "…." before a hint.

Every message template in bot/ and handlers/ is walked: a count put in front of a plural
noun must go through `bot.words.count`, which this module also renders with 0, 1 and 2.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bot import words
from bot.errors import AtlasError
from bot.ops import doctor, status
from bot.policy import retention

REPO = Path(__file__).resolve().parents[1]
NOUNS = {
    *[
        "snapshot",
        "table",
        "artifact",
        "database",
        "drill",
        "day",
        "key",
        "relation",
        "statement",
        "member",
        "reminder",
    ],
    *[
        "request",
        "item",
        "role",
        "row",
        "sequence",
        "check",
        "problem",
        "warning",
        "second",
        "minute",
        "hour",
        "week",
        "month",
    ],
    *[
        "server",
        "replica",
        "connection",
        "approval",
        "file",
        "block",
        "lane",
        "error",
        "extension",
        "schema",
        "object",
    ],
    *[
        "segment",
        "failure",
        "run",
        "job",
        "user",
        "command",
        "step",
        "time",
        "copie",
        "entrie",
        "refreshe",
        "restore",
    ],
}
# A count that can never be 1 where it is written: kept out of the rule, with the reason.
NEVER_ONE = {
    "h / 24": "days ago, only from 48 hours on",
    "MAX_EVERY_DAYS": "a constant of several hundred days",
}
HACK = re.compile(r"[a-z]\(s\)[\s,.;]")


def _templates() -> list[tuple[str, ast.AST]]:
    found = []
    for path in sorted([*REPO.glob("bot/**/*.py"), *REPO.glob("handlers/**/*.py")]):
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr | ast.Constant):
                found.append((f"{rel}:{getattr(node, 'lineno', '?')}", node))
    return found


def _slips(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant):
        text = node.value if isinstance(node.value, str) else ""
        return [f"'(s)' in {text[:50]!r}"] if HACK.search(text + " ") else []
    slips = []
    assert isinstance(node, ast.JoinedStr)
    for before, after in zip(node.values, node.values[1:], strict=False):
        if not (isinstance(before, ast.FormattedValue) and isinstance(after, ast.Constant)):
            continue
        noun = re.match(r" (?:kept |retired |data )?(\w+?)s\b", str(after.value))
        shown = ast.unparse(before.value)
        if noun and noun.group(1) in NOUNS and shown not in NEVER_ONE:
            slips.append(f"{{{shown}}}{after.value[:20]!r}: use words.count")
    return slips


def test_every_template_counts_through_words() -> None:
    slips = [f"{where}: {slip}" for where, node in _templates() for slip in _slips(node)]
    assert not slips, "\n".join(slips)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_rendered_counts_agree_with_their_nouns(n: int) -> None:
    rendered = [
        words.count(n, "snapshot"),
        words.count(n, "copy"),
        doctor._readable(n),
        status._kept_artifacts(n) + " not encrypted",
        retention._days(n) if hasattr(retention, "_days") else words.count(n, "day"),
    ]
    for text in rendered:
        assert not re.search(r"\b1 [a-z]+s\b", text), text
        assert not re.search(r"\b[02] (snapshot|copy|table|artifact|day)\b", text), text
    assert words.count(n, "copy") == {0: "0 copies", 1: "1 copy", 2: "2 copies"}[n]


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ("several ids: a, b, …", "several ids: a, b, … (give more of the id)"),
        ("several ids: a, b, ….", "several ids: a, b, … (give more of the id)"),
        ("Is it there?.", "Is it there? (give more of the id)"),
        ("Done..", "Done. (give more of the id)"),
        ("Wait...", "Wait... (give more of the id)"),
    ],
)
def test_an_error_ends_with_one_stop_before_its_hint(message: str, said: str) -> None:
    assert str(AtlasError(message, "give more of the id")) == said
