"""Retention: decide which snapshots to prune, as a pure function of the catalog rows.

Nothing here reads the catalog, touches storage or looks at the clock: the caller passes the
rows, the policy and `now`, and gets one `Decision` per row back, each with the reason in plain
words. Keeping the decision pure means it can be shown as a dry run, tested exhaustively, and
applied by whoever owns the I/O.

Rules, per (database, environment), all times in UTC:

* Only finished rows are considered ('ok', 'corrupt', 'failed', 'interrupted'); 'running' rows
  are still being written and 'deleted' rows are already gone, so neither appears in the plan.
* Never pruned: the newest 'ok' snapshot (whatever its age, so a database whose backups stopped
  still has one good copy), pinned rows, and rows named in `protected` (e.g. by a pending
  restore or drill request).
* Kept: 'ok' rows younger than `policy.days`, and the grandfather-father-son picks: the newest
  'ok' snapshot of each of the last `keep_daily` days, `keep_weekly` ISO weeks and
  `keep_monthly` months that have one.
* Corrupt rows (their artifact does not verify) are never counted as good, but their good
  blocks may be all that is left of a day: they are kept within `policy.days` like 'ok' ones,
  and the newest one of a database that has no 'ok' snapshot at all is kept, whatever its
  age, until a good snapshot exists. No database's last artifact is deleted.
* Everything else is pruned, including failed and interrupted rows of any age: they have no
  artifact, so they can never be restored from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.records import Snapshot, SnapshotStatus
from bot.words import count

OK = SnapshotStatus.OK
CONSIDERED = frozenset(
    {OK, SnapshotStatus.CORRUPT, SnapshotStatus.FAILED, SnapshotStatus.INTERRUPTED}
)

_WHY_NOT_OK = {
    SnapshotStatus.FAILED: "failed snapshot, no artifact to restore",
    SnapshotStatus.INTERRUPTED: "interrupted snapshot, no artifact to restore",
    SnapshotStatus.CORRUPT: "corrupt snapshot, its artifact does not verify",
}


@dataclass(frozen=True)
class RetentionPolicy:
    """How long to keep snapshots: a window of `days`, plus daily/weekly/monthly (GFS) picks.

    Validated on construction, so a bad setting fails at start-up rather than mid-prune.
    """

    days: int = 30
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def __post_init__(self) -> None:
        _whole(self.days, "days")
        if self.days <= 0:
            # 0 would mean "keep nothing recent", which is far more likely a typo than intent.
            raise ValueError(f"Retention days must be at least 1, not {self.days}.")
        for name in ("keep_daily", "keep_weekly", "keep_monthly"):
            value = getattr(self, name)
            _whole(value, name)
            if value < 0:
                raise ValueError(f"Retention {name} cannot be negative ({value}).")


@dataclass(frozen=True)
class Decision:
    """What to do with one snapshot, and why, in words fit for Slack or a dry-run listing."""

    snapshot_id: str
    keep: bool
    reason: str


def plan(
    snapshots: list[Snapshot],
    policy: RetentionPolicy,
    now: datetime,
    protected: Mapping[str, str] | None = None,
) -> list[Decision]:
    """One Decision per finished snapshot, in the order given.

    `snapshots` are catalog records; they are not modified. `now` should be timezone-aware; a naive one is taken as UTC,
    like the catalog's timestamps. `protected` maps snapshot id -> the reason it must stay.
    """
    if not isinstance(policy, RetentionPolicy):
        raise TypeError(f"policy must be a RetentionPolicy, not {type(policy).__name__}.")
    protected = protected or {}
    now_utc = _as_utc(now)
    window = timedelta(days=policy.days)

    rows = [r for r in snapshots if r.status in CONSIDERED]
    starts = {id(r): _parse_time(r.started_at) for r in rows}

    # Per group, the dated 'ok' rows newest first; ties broken by id, as the catalog lists them.
    groups: dict[tuple[str, str], list[Snapshot]] = {}
    for row in rows:
        if row.status == OK and starts[id(row)] is not None:
            groups.setdefault(_group(row), []).append(row)
    for members in groups.values():
        members.sort(key=lambda r: (starts[id(r)], r.id), reverse=True)

    newest: set[int] = {id(members[0]) for members in groups.values()}
    last_artifact = _newest_corrupt_without_ok(rows, starts, set(groups))
    picks = _gfs_picks(groups, starts, policy)

    decisions = []
    for row in rows:
        snap_id = row.id
        started = starts[id(row)]
        database, environment = _group(row)
        if id(row) in newest:
            keep, reason = True, f"newest verified snapshot of {database}/{environment}"
        elif row.pinned:
            keep, reason = True, "pinned"
        elif snap_id in protected:
            keep, reason = True, protected[snap_id] or "protected"
        elif started is None:
            # Never delete what cannot be dated: an unreadable timestamp is a bug to look at.
            keep, reason = True, f"start time {row.started_at!r} unreadable, kept to be safe"
        elif row.status == SnapshotStatus.CORRUPT:
            keep, reason = _corrupt(
                row, now_utc - started < window, id(row) in last_artifact, policy
            )
        elif row.status != OK:
            keep, reason = False, _WHY_NOT_OK[row.status]
        elif now_utc - started < window:
            keep, reason = True, f"within {_days(policy.days)}"
        elif id(row) in picks:
            keep, reason = True, picks[id(row)]
        else:
            keep, reason = False, f"older than {_days(policy.days)}"
        decisions.append(Decision(snap_id, keep, reason))
    return decisions


def _gfs_picks(
    groups: dict[tuple[str, str], list[Snapshot]],
    starts: Mapping[int, datetime | None],
    policy: RetentionPolicy,
) -> dict[int, str]:
    """Row -> the first GFS reason it is kept for (daily before weekly before monthly)."""
    picks: dict[int, str] = {}
    for members in groups.values():
        for label, keep, bucket in (
            ("daily", policy.keep_daily, _day),
            ("weekly", policy.keep_weekly, _iso_week),
            ("monthly", policy.keep_monthly, _month),
        ):
            for row, key in _newest_per_bucket(members, starts, bucket, keep):
                picks.setdefault(id(row), f"{label} keep {key}")
    return picks


def _newest_corrupt_without_ok(
    rows: list[Snapshot], starts: dict[int, datetime | None], with_ok: set[tuple[str, str]]
) -> set[int]:
    """Per database with no 'ok' snapshot, its newest corrupt row: its last artifact."""
    newest: dict[tuple[str, str], Snapshot] = {}
    for row in rows:
        group, started = _group(row), starts[id(row)]
        if row.status != SnapshotStatus.CORRUPT or group in with_ok or started is None:
            continue
        best = newest.get(group)
        if best is None or (started, row.id) > (starts[id(best)], best.id):
            newest[group] = row
    return {id(row) for row in newest.values()}


def _corrupt(row: Snapshot, recent: bool, last: bool, policy: RetentionPolicy) -> tuple[bool, str]:
    database, environment = _group(row)
    if recent:
        return True, (
            f"corrupt (does not verify), kept within {_days(policy.days)}: its good blocks "
            "may be all that is left"
        )
    if last:
        return True, (
            f"corrupt, but the last artifact of {database}/{environment}: kept until a good "
            "snapshot exists"
        )
    return False, f"corrupt snapshot older than {_days(policy.days)}"


def summary(decisions: Iterable[Decision]) -> dict[str, int]:
    """Counts for a one-line report: {"kept": n, "pruned": m}."""
    kept = pruned = 0
    for decision in decisions:
        if decision.keep:
            kept += 1
        else:
            pruned += 1
    return {"kept": kept, "pruned": pruned}


# -- helpers ---------------------------------------------------------------------------------


def _whole(value: object, name: str) -> None:
    # bool is an int subclass; `keep_daily=True` is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"Retention {name} must be a whole number, not {value!r}.")


def _group(row: Snapshot) -> tuple[str, str]:
    """Production and staging, and each database, are retained independently."""
    return row.database or "", row.environment or ""


def _as_utc(moment: datetime) -> datetime:
    """The catalog writes UTC; a naive datetime is read as UTC rather than local time."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return _as_utc(value)
    if not isinstance(value, str):
        return None
    try:
        return _as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def _iso_week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _month(moment: datetime) -> str:
    return f"{moment.year}-{moment.month:02d}"


def _newest_per_bucket(
    newest_first: list[Snapshot],
    starts: Mapping[int, datetime | None],
    bucket: Callable[[datetime], str],
    count: int,
) -> list[tuple[Snapshot, str]]:
    """The newest row of each of the last `count` buckets that have one (gaps are skipped)."""
    chosen: list[tuple[Snapshot, str]] = []
    seen: set[str] = set()
    for row in newest_first:
        if len(chosen) >= count:
            break
        start = starts[id(row)]
        assert start is not None  # only dated rows are grouped
        key = bucket(start)
        if key not in seen:
            seen.add(key)
            chosen.append((row, key))
    return chosen


def _days(n: int) -> str:
    return count(n, "day")


__all__ = ["Decision", "RetentionPolicy", "plan", "summary"]
