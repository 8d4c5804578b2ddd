"""When is the next restore drill due, and which Slack reminder is owed now?

The runbook requires restore capability to be verified at least once per quarter. This module
turns "last passed drill" plus "now" into a deadline and at most one reminder to post. It is
pure on purpose: no I/O and no clock reads (``now`` is always an argument, datetimes are
timezone-aware), so the scheduler, the tests and a clock jump all see the same answer.

Conventions:

* A deadline is an *exclusive* instant: the drill must pass strictly before it. For quarters it
  is local midnight at the start of the following quarter (``2027-01-01 00:00`` in ``policy.tz``).
* The *last day* is the ``policy.tz`` calendar day holding the last moment before the deadline
  (for a midnight deadline, the day before it).
* Reminder keys are ``"<period>:<threshold>"``, e.g. ``"2026-Q4:lead-14"``, ``"2026-Q4:last-day"``,
  ``"2026-Q4:overdue-1"``. The caller stores the keys it posted and passes them back as ``sent``;
  each key is then posted at most once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from bot.words import count, human_seconds

QUARTER = "quarter"
MAX_EVERY_DAYS = 3660  # more than ten years between drills is a typo, not a policy
_EPOCH = date(1970, 1, 1)

ReminderKind = Literal["lead", "last_day", "overdue"]


def parse_every(text: str) -> str | int:
    """Parse a configured drill interval: ``"quarter"`` or a positive whole number of days.

    Config and chat input arrive as text; reject anything else loudly instead of guessing.
    """
    value = text.strip().lower()
    if value == QUARTER:
        return QUARTER
    if re.fullmatch(r"[0-9]+", value):
        days = int(value)
        if 1 <= days <= MAX_EVERY_DAYS:
            return days
        raise ValueError(
            f"drill interval must be between 1 and {MAX_EVERY_DAYS} days, got {text.strip()!r}"
        )
    raise ValueError(
        f"drill interval must be 'quarter' or a positive number of days (e.g. '30'), got {text!r}"
    )


@dataclass(frozen=True)
class DrillPolicy:
    """How often a restore drill must pass, and when to remind about it.

    ``every``: ``"quarter"`` (each calendar quarter in ``tz`` needs a passed drill) or N days
    (a passed drill at most N days after the previous one); text such as ``"30"`` is parsed.
    ``lead_days``: reminders this many days before the last day (0 = on the last day itself).
    ``overdue_every_days``: after the deadline, repeat the overdue reminder this often.
    """

    every: str | int = QUARTER
    lead_days: tuple[int, ...] = (14, 7, 0)
    overdue_every_days: int = 7
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def __post_init__(self) -> None:
        # Validate once here so that deadline()/owed() never see a nonsensical policy.
        every = self.every
        if isinstance(every, str):
            every = parse_every(every)
        elif isinstance(every, bool) or not isinstance(every, int):
            raise ValueError(f"drill interval must be 'quarter' or an int, got {every!r}")
        elif not 1 <= every <= MAX_EVERY_DAYS:
            raise ValueError(f"drill interval must be between 1 and {MAX_EVERY_DAYS} days")
        object.__setattr__(self, "every", every)
        lead = tuple(self.lead_days)
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in lead):
            raise ValueError(f"lead_days must be non-negative whole days, got {self.lead_days!r}")
        if len(set(lead)) != len(lead):
            raise ValueError(f"lead_days must not repeat a value, got {self.lead_days!r}")
        object.__setattr__(self, "lead_days", lead)
        if isinstance(self.overdue_every_days, bool) or self.overdue_every_days < 1:
            raise ValueError("overdue_every_days must be at least 1")
        if not isinstance(self.tz, ZoneInfo):
            raise ValueError(f"tz must be a zoneinfo.ZoneInfo, got {self.tz!r}")


@dataclass(frozen=True)
class Reminder:
    """One reminder to post: ``key`` is stable, so storing it prevents posting it twice.

    ``days_left``: calendar days (in the policy timezone) from ``now`` to the last day: 0 on the
    last day, negative once overdue. ``deadline`` is the exclusive deadline in the policy timezone.
    """

    key: str
    kind: ReminderKind
    days_left: int
    deadline: datetime


# -- helpers ---------------------------------------------------------------------------------


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def _utc(value: datetime) -> datetime:
    # Aware datetimes sharing a tzinfo compare by wall time; compare in UTC to get real instants.
    return value.astimezone(UTC)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def _quarter_index(moment: datetime, tz: ZoneInfo) -> int:
    """Quarters counted from year 0 (``year * 4 + q``), so neighbours are just +1/-1."""
    local = moment.astimezone(tz)
    return local.year * 4 + (local.month - 1) // 3


def _quarter_start(index: int, tz: ZoneInfo) -> datetime:
    year, q = divmod(index, 4)
    return _midnight(date(year, q * 3 + 1, 1), tz)


def _last_day(deadline_at: datetime, tz: ZoneInfo) -> date:
    return (deadline_at.astimezone(tz) - timedelta(microseconds=1)).date()


# -- public API ------------------------------------------------------------------------------


def deadline(
    policy: DrillPolicy,
    last_passed: datetime | None,
    now: datetime,
    *,
    since: datetime | None = None,
) -> tuple[str, datetime]:
    """The period whose drill is owed and its exclusive deadline (in ``policy.tz``).

    ``since``: when Atlas started backing the database up (its first good snapshot). With no
    passed drill ever, that is when the obligation began.

    Quarter mode: the owed quarter is the one after the quarter of the last passed drill, so a
    drill passed this quarter moves the obligation to the next quarter, and a missed quarter
    stays owed (and overdue) after the calendar rolls over instead of being forgiven. With no
    passed drill ever, the quarter of ``since`` is owed (and stays owed, as above); without
    ``since`` either, the current quarter.

    N-day mode: deadline = last passed drill + N days (same local wall time), key
    ``"due-YYYY-MM-DD"`` (the deadline's local date). With no passed drill ever it is ``since``
    + N days. Without ``since`` either, the drill is treated as already due: the deadline is
    the latest local midnight on a fixed ``overdue_every_days`` grid (counted from 1970-01-01),
    i.e. at most that many days ago. The grid keeps the key stable, so a never-drilled setup is
    nagged once per interval, not per check.
    """
    _require_aware("now", now)
    _require_aware("last_passed", last_passed)
    _require_aware("since", since)
    tz = policy.tz
    if policy.every == QUARTER:
        if last_passed is None:
            owed_q = _quarter_index(since or now, tz)
        else:
            owed_q = _quarter_index(last_passed, tz) + 1
        year, q = divmod(owed_q, 4)
        return f"{year}-Q{q + 1}", _quarter_start(owed_q + 1, tz)
    assert isinstance(policy.every, int)
    if last_passed is None and since is not None:
        due = since.astimezone(tz) + timedelta(days=policy.every)
    elif last_passed is None:
        today = now.astimezone(tz).date()
        grid = policy.overdue_every_days
        due = _midnight(today - timedelta(days=(today - _EPOCH).days % grid), tz)
    else:
        # Wall-clock arithmetic in tz: "30 days" keeps the local time across DST changes.
        due = last_passed.astimezone(tz) + timedelta(days=policy.every)
    return f"due-{due.date().isoformat()}", due


def _thresholds(
    policy: DrillPolicy, period: str, due: datetime, now: datetime
) -> list[tuple[datetime, int, str, ReminderKind]]:
    """The period's thresholds as (instant, urgency, key, kind); overdue only the latest repeat."""
    tz = policy.tz
    last = _last_day(due, tz)
    out: list[tuple[datetime, int, str, ReminderKind]] = []
    for days in policy.lead_days:
        at = _midnight(last - timedelta(days=days), tz)
        if days == 0:
            out.append((at, 1, f"{period}:last-day", "last_day"))
        else:
            out.append((at, 0, f"{period}:lead-{days}", "lead"))
    if _utc(now) >= _utc(due):
        step = policy.overdue_every_days
        n = (now.astimezone(tz).date() - due.date()).days // step
        while n > 0 and _utc(due + timedelta(days=n * step)) > _utc(now):
            n -= 1  # same calendar day as the repeat, but before its wall time
        out.append((due + timedelta(days=n * step), 2, f"{period}:overdue-{n}", "overdue"))
    return out


def owed(
    policy: DrillPolicy,
    last_passed: datetime | None,
    now: datetime,
    sent: set[str],
    *,
    since: datetime | None = None,
) -> Reminder | None:
    """The one reminder to post now, or None.

    Only the most recent threshold reached counts (ties: the more urgent one); if it was already
    sent, nothing is owed. Earlier thresholds that were skipped (downtime, clock jump) are
    superseded rather than posted late, so the channel gets one message, not a burst. Thresholds
    at or before the last passed drill are moot (that drill already answered them).
    """
    period, due = deadline(policy, last_passed, now, since=since)
    reached = [
        t
        for t in _thresholds(policy, period, due, now)
        if _utc(t[0]) <= _utc(now) and (last_passed is None or _utc(t[0]) > _utc(last_passed))
    ]
    if not reached:
        return None
    _, _, key, kind = max(reached, key=lambda t: (_utc(t[0]), t[1]))
    if key in sent:
        return None
    days_left = (_last_day(due, policy.tz) - now.astimezone(policy.tz).date()).days
    return Reminder(key=key, kind=kind, days_left=days_left, deadline=due)


def _days(n: int) -> str:
    return count(n, "day")


def _when(moment: datetime) -> str:
    return moment.strftime("%a %Y-%m-%d %H:%M %Z")


def reminder_text(
    rem: Reminder, last_passed: datetime | None, last_restore_seconds: float | None
) -> str:
    """Slack mrkdwn for a reminder: what is due when, the last passed drill, how to start one.

    Dates are shown in the reminder's (policy) timezone so the channel sees one consistent clock.
    """
    tz = rem.deadline.tzinfo
    assert tz is not None
    local_due = rem.deadline
    period = rem.key.rsplit(":", 1)[0]
    label = f" for {period}" if re.fullmatch(r"\d{4}-Q[1-4]", period) else ""
    if local_due.time() == time(0):
        last = (local_due - timedelta(microseconds=1)).date()
        due_text = f"by the end of {last.strftime('%a %Y-%m-%d')} ({local_due.tzname()})"
    else:
        due_text = f"before {_when(local_due)}"
    if rem.kind == "overdue":
        late = f" ({_days(-rem.days_left)} late)" if rem.days_left < 0 else ""
        head = f":rotating_light: *Restore drill{label} is overdue*{late}: it was due {due_text}."
    elif rem.kind == "last_day":
        head = f":hourglass_flowing_sand: *Last day for the restore drill{label}*: pass one {due_text}."
    else:
        head = (
            f":calendar: *Restore drill{label} due in {_days(rem.days_left)}*: pass one {due_text}."
        )
    if last_passed is None:
        prev = "No restore drill has passed yet."
    else:
        took = (
            f" (restore took {human_seconds(last_restore_seconds)})"
            if last_restore_seconds is not None
            else ""
        )
        prev = f"Last passed drill: {_when(last_passed.astimezone(tz))}{took}."
    how = (
        "Start one with `/atlas drill` (restores the newest good snapshot into a scratch database)."
    )
    return "\n".join([head, prev, how])
