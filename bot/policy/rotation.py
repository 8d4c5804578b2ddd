"""The drill obligation of a server's databases taken as one rotation.

With 50 databases on a server, a passed drill of each one every quarter is 200 drills a
year. With `ATLAS_DRILL_SCOPE=server` the quarter (or N-day) obligation belongs to the server:
a passed drill of any of its databases answers it. On top of that, each database must pass
a drill at least once a year, and the rotation names the one to drill next: the one whose
year runs out first.

Pure: values in, values out; deadlines come from `reminders.deadline`, so both obligations
follow the same rules (exclusive deadlines, counted from the first good snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.policy.reminders import DrillPolicy, deadline

YEAR_DAYS = 365


@dataclass(frozen=True)
class Member:
    """One database of the server: its last passed drill and its first good snapshot."""

    name: str
    last_passed: datetime | None
    since: datetime | None


@dataclass(frozen=True)
class Rotation:
    """A server's drills in turn: its deadline and the database next to drill."""

    server_period: str  # the period the server owes a drill for, e.g. "2026-Q4"
    server_due: datetime  # when that drill must have passed (exclusive)
    server_last: datetime | None  # the server's newest passed drill, of any database
    server_since: datetime | None  # its first good snapshot of any database
    next: str | None  # the database to drill next
    due: dict[str, datetime]  # each database's deadline: its year; the next one's also the period


def yearly(policy: DrillPolicy) -> DrillPolicy:
    """The once-a-year obligation of each database, reminded as the period one is."""
    return DrillPolicy(
        every=YEAR_DAYS,
        lead_days=policy.lead_days,
        overdue_every_days=policy.overdue_every_days,
        tz=policy.tz,
    )


def plan(policy: DrillPolicy, members: list[Member], now: datetime) -> Rotation:
    """The server's period deadline, each database's deadline, and the next to drill."""
    year = yearly(policy)
    per_db = {m.name: deadline(year, m.last_passed, now, since=m.since)[1] for m in members}
    drilled = [m.last_passed for m in members if m.last_passed is not None]
    started = [m.since for m in members if m.since is not None]
    last = max(drilled) if drilled else None
    since = min(started) if started else None
    period, server_due = deadline(policy, last, now, since=since)
    nxt = min(per_db, key=lambda name: (per_db[name], name)) if per_db else None
    due = dict(per_db)
    if nxt is not None:
        due[nxt] = min(per_db[nxt], server_due)
    return Rotation(period, server_due, last, since, nxt, due)
