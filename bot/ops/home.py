"""The App Home tab's facts: the status checklist, read per database, and who to show it
to again when something changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.ops import status
from bot.ops.findings import FAIL, OK
from bot.report.home import HomeRow, Viewers, view
from bot.services import Services

PER_DATABASE = ("snapshot:", "drill:", "config:")


def rows(
    lines: list[status.Line], databases: list[str], tags: dict[str, dict[str, str]] | None = None
) -> tuple[list[HomeRow], list[str]]:
    """(a row per database, the other failing lines) from the checklist's lines, with the
    tags of each database's last good snapshot."""
    by_key = {line.key: line for line in lines}
    out = []
    for db in databases:
        mine = [by_key[k + db] for k in PER_DATABASE if k + db in by_key]
        level = FAIL if any(x.level == FAIL for x in mine) else OK
        if level == OK and any(x.level != OK for x in mine):
            level = "warn"
        snap, drill = by_key.get("snapshot:" + db), by_key.get("drill:" + db)
        config = by_key.get("config:" + db)
        out.append(
            HomeRow(
                database=db,
                level=level,
                snapshot=snap.detail if snap else "none yet",
                drill=drill.detail if drill else "none yet",
                problems=[config.detail] if config else [],
                tags=(tags or {}).get(db) or {},
            )
        )
    failing = [
        f"{line.title}: {line.detail}"
        for line in lines
        if line.level == FAIL and not line.key.startswith(PER_DATABASE)
    ]
    return out, failing


def home(services: Services) -> dict[str, Any]:
    """The view to publish now (no provider call: Home opens often)."""
    facts = status.gather(services, check_provider=False)
    tags = {db: dict(s.tags or {}) for db, s in facts.last_snapshot.items() if s is not None}
    found, failing = rows(status.evaluate(facts), facts.databases, tags)
    return view(found, failing, f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


def refresh(services: Services, viewers: Viewers) -> int:
    """Publish Home again to everyone who opened it; how many got it."""
    users = viewers.all()
    if not users:
        return 0
    shown = home(services)
    return sum(services.chat.publish_home(user, shown) for user in users)


def tick(services: Services) -> int:
    """Show Home again when the audit log moved on (a snapshot, a drill, a refresh, from
    Slack, the CLI or another replica: each writes an entry); how many got it."""
    newest = services.catalog.audit_log(limit=1)
    head = newest[0].id if newest else None
    if not services.home_viewers.moved(head):
        return 0
    return refresh(services, services.home_viewers)
