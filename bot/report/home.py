"""The App Home tab: where every database stands, failing ones first, with buttons to
snapshot or to ask for a drill. Pure Block Kit, within Slack's limits however many
databases there are (a view holds 100 blocks)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from bot.report.messages import MAX_SECTION, escape, truncate
from bot.report.modal import RESTORE_BUTTON
from bot.words import count

HOME_ACTION = "atlas_home_database"  # an overflow menu: "snapshot:NAME" or "drill:NAME"
SHOWN = 40  # one section per database: 40 + the head stays far below 100 blocks
ICON = {"ok": ":white_check_mark:", "warn": ":warning:", "fail": ":x:"}
ORDER = {"fail": 0, "warn": 1, "ok": 2}


@dataclass(frozen=True)
class HomeRow:
    """One database as Home shows it: its worst verdict and the status lines' words."""

    database: str
    level: str  # ok | warn | fail
    snapshot: str  # the last good snapshot and its age
    drill: str  # the last passed drill, its restore time, and when the next is due
    problems: list[str]  # anything else failing for it (its configuration)
    tags: dict[str, str] = field(default_factory=dict)  # of the last good snapshot


def view(rows: list[HomeRow], failing: list[str], made_at: str) -> dict[str, Any]:
    """The published view: failing checks, then the databases, worst first."""
    ordered = sorted(rows, key=lambda r: (ORDER.get(r.level, 0), r.database))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Atlas: backups at a glance"}},
        _context(f"Updated {made_at}. `/atlas status` has the whole checklist."),
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": RESTORE_BUTTON,
                    "text": {"type": "plain_text", "text": "Restore a snapshot…"},
                }
            ],
        },
    ]
    if failing:
        text = ":x: *Failing*\n" + "\n".join(f"• {escape(line)}" for line in failing)
        blocks.append(_section(text))
    blocks.append({"type": "divider"})
    blocks += [_database(r) for r in ordered[:SHOWN]]
    if len(ordered) > SHOWN:
        rest = ordered[SHOWN:]
        bad = sum(r.level == "fail" for r in rest)
        blocks.append(
            _context(
                f"…and {count(len(rest), 'more database')} ({bad} failing): "
                "`/atlas status` lists every one"
            )
        )
    if not rows:
        blocks.append(_section("No databases yet: `/atlas snapshot` takes the first snapshot."))
    return {"type": "home", "blocks": blocks}


def _database(row: HomeRow) -> dict[str, Any]:
    lines = [
        f"{ICON.get(row.level, ':x:')} *{escape(row.database)}*",
        f"Last snapshot: {escape(row.snapshot)}"
        + "".join(f" `{escape(k)}={escape(v)}`" for k, v in sorted(row.tags.items())),
        f"Drill: {escape(row.drill)}",
        *(f":x: {escape(p)}" for p in row.problems),
    ]
    block = _section("\n".join(lines))
    options = [
        ("Snapshot now", f"snapshot:{row.database}"),
        ("Ask for a drill", f"drill:{row.database}"),
    ]
    block["accessory"] = {
        "type": "overflow",
        "action_id": HOME_ACTION,
        "options": [
            {"text": {"type": "plain_text", "text": label}, "value": value[:150]}
            for label, value in options
        ],
    }
    return block


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION)}}


def _context(text: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(text, MAX_SECTION)}],
    }


class Viewers:
    """Who opened Home in this process, and the audit entry their view was made after:
    shown again when a later entry says something changed."""

    def __init__(self) -> None:
        self._users: set[str] = set()
        self._head: int | None = None
        self._lock = threading.Lock()

    def add(self, user: str) -> None:
        with self._lock:
            self._users.add(user)

    def all(self) -> list[str]:
        with self._lock:
            return sorted(self._users)

    def moved(self, head: int | None) -> bool:
        """Whether the log moved on since the last look (and someone is watching)."""
        with self._lock:
            changed, self._head = head != self._head, head
            return changed and bool(self._users)
