"""Version tags on snapshots (`app=abc123`, `migration=0042`): parsed from what people
type, checked, and matched. Pure: values in, values out.

A tag is what a deploy pipeline knows when it takes a snapshot, so that a restore can
later ask for "the last snapshot before migration 0042" by it. Keys are short names;
values are printable text on one line, so that they render safely in Slack and in a
terminal, and stay searchable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from bot.errors import AtlasError

KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")
VALUE = re.compile(r"[A-Za-z0-9_.:/@+=-]{1,100}")
MAX_TAGS = 20


def parse_one(text: str, where: str = "--tag") -> tuple[str, str]:
    """`KEY=VALUE` as a pair; a clear AtlasError naming `where` otherwise."""
    key, sep, value = text.strip().partition("=")
    shown = text.strip()[:60]
    if not sep:
        raise AtlasError(f"{where}: {shown!r} is not KEY=VALUE.", "write it as e.g. app=abc123")
    if not KEY.fullmatch(key):
        raise AtlasError(
            f"{where}: the tag name {key[:40]!r} is not a name.",
            "start with a letter; use letters, digits, _ . - (at most 40)",
        )
    if not VALUE.fullmatch(value):
        raise AtlasError(
            f"{where}: the value of {key} is empty, too long or has a character tags cannot hold.",
            "use letters, digits and _ . : / @ + = - (at most 100), no spaces",
        )
    return key, value


def parse(items: Iterable[str], where: str = "--tag") -> dict[str, str]:
    """Several `KEY=VALUE`s; a key given twice keeps its last value."""
    tags: dict[str, str] = {}
    for item in items:
        key, value = parse_one(item, where)
        tags[key] = value
    if len(tags) > MAX_TAGS:
        raise AtlasError(f"{where}: {len(tags)} tags; a snapshot holds at most {MAX_TAGS}.")
    return tags


def parse_setting(text: str, setting: str = "ATLAS_SNAPSHOT_TAGS") -> dict[str, str]:
    """The tags a setting gives every snapshot: `KEY=VALUE` separated by commas or
    spaces (`app=abc123,migration=0042`)."""
    return parse([p for p in re.split(r"[,\s]+", text) if p], setting)


def merged(defaults: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str] | None:
    """The setting's tags overridden by the command's; None when there are none."""
    tags = {**defaults, **given}
    return tags or None


def matches(tags: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    """True when every wanted tag is on the snapshot with that value."""
    have = tags or {}
    return all(have.get(k) == v for k, v in wanted.items())


def render(tags: Mapping[str, str] | None) -> str:
    """`app=abc123 migration=0042`, sorted by name; empty without tags."""
    return " ".join(f"{k}={v}" for k, v in sorted((tags or {}).items()))
