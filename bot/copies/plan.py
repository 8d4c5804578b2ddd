"""The rules of copies, on plain values: which copies a snapshot needs, when a failed
one is tried again, how each destination stands, and what its retention keeps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.destinations import Destination
from bot.policy import retention
from bot.records import Copy, CopyState, Snapshot, SnapshotStatus, copy_key

FIRST_RETRY_S = 60.0
LONGEST_RETRY_S = 6 * 3600.0


def wanted(snap: Snapshot, destinations: Mapping[str, Destination]) -> list[Copy]:
    """One pending copy of `snap` for each destination."""
    return [
        Copy(
            key=copy_key(snap.id, name),
            snapshot_id=snap.id,
            destination=name,
            database=snap.database,
        )
        for name in destinations
    ]


def backoff_s(attempts: int) -> float:
    """How long after its `attempts`-th failure a copy is tried again: 1 min, doubling,
    at most 6 hours, so a destination that is down for days is not hammered."""
    return float(min(LONGEST_RETRY_S, FIRST_RETRY_S * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class Standing:
    """How one destination stands: its last good copy, and what it still lacks."""

    destination: str
    last_ok: str | None  # when its newest good copy was made
    unfinished: int  # copies pending or being made
    oldest_unfinished: str | None  # queued_at of the oldest of them
    last_error: str | None
    down: bool  # lacking copies for longer than ATLAS_COPY_ALERT_HOURS
    last_drill: str | None = None  # when a drill read from it last passed

    @property
    def complete(self) -> bool:
        return self.unfinished == 0


def standing(name: str, copies: Iterable[Copy], now: datetime, alert_after: timedelta) -> Standing:
    """A destination is down when a copy has waited longer than `alert_after`."""
    rows = list(copies)
    good = [c.copied_at for c in rows if c.state == CopyState.OK and c.copied_at]
    waiting = [c for c in rows if c.state in (CopyState.PENDING, CopyState.COPYING)]
    oldest = min((c.queued_at for c in waiting if c.queued_at), default=None)
    errors = [c for c in waiting if c.error]
    down = oldest is not None and now - _at(oldest) > alert_after
    return Standing(
        name,
        max(good, default=None),
        len(waiting),
        oldest,
        errors[-1].error if errors else None,
        down,
    )


def retention_rows(copies: Iterable[Copy], snaps: Mapping[str, Snapshot]) -> list[Snapshot]:
    """A destination's copies as retention's rows: a good copy is an `ok` snapshot there,
    a damaged one `corrupt`, whatever became of the snapshot in ATLAS_STORAGE."""
    out = []
    for c in copies:
        snap = snaps.get(c.snapshot_id)
        if snap is None or c.state not in (CopyState.OK, CopyState.DAMAGED):
            continue
        status = SnapshotStatus.OK if c.state == CopyState.OK else SnapshotStatus.CORRUPT
        out.append(replace(snap, status=status))
    return out


def policy_for(dest: Destination, default: retention.RetentionPolicy) -> retention.RetentionPolicy:
    """A destination's own retention, each setting it leaves out as ATLAS_STORAGE's."""
    return retention.RetentionPolicy(
        days=dest.retention_days or default.days,
        keep_daily=default.keep_daily if dest.keep_daily is None else dest.keep_daily,
        keep_weekly=default.keep_weekly if dest.keep_weekly is None else dest.keep_weekly,
        keep_monthly=default.keep_monthly if dest.keep_monthly is None else dest.keep_monthly,
    )


def _at(iso: str) -> datetime:
    t = datetime.fromisoformat(iso)
    return t if t.tzinfo else t.replace(tzinfo=UTC)
