"""From the catalog's records to a database's evidence: expected snapshots and the gaps
between them, the achieved RPO, each drill against the RTO target, and each quarter. Pure:
values in, values out; `gather` does the reading.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.proof.records import CheckLine, Gap, JobLine, Quarter, RowCount, Rpo, SnapshotLine
from bot.records import HAD_FAILED, JobRecord, Restore, Snapshot, SnapshotStatus

MAX_SLOTS = 200_000  # a schedule every minute for a year is 525,600: cut long before


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def is_good(snap: Snapshot) -> bool:
    """Stored and proven, then or now: a deleted one only if retention pruned it after it
    was good (it has an artifact's checksum, and no failure). A failed attempt that was
    pruned counted as good, and hid the gap it was."""
    if snap.started_at is None:
        return False
    if snap.status == SnapshotStatus.DELETED:
        return bool(snap.sha256) and HAD_FAILED not in (snap.error or "")
    return snap.status == SnapshotStatus.OK


@functools.lru_cache(maxsize=64)
def scheduled(cron: str, tz: str, start: datetime, end: datetime) -> tuple[datetime, ...]:
    """The times in [start, end) at which `cron` asked for a snapshot (worked out once per
    schedule: a fleet's databases share theirs)."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(cron, timezone=ZoneInfo(tz))
    times: list[datetime] = []
    nxt = trigger.get_next_fire_time(None, start)
    while nxt is not None and nxt < end and len(times) < MAX_SLOTS:
        times.append(nxt)
        nxt = trigger.get_next_fire_time(nxt, nxt + timedelta(seconds=1))
    return tuple(times)


def gaps(times: Sequence[datetime], snaps: Iterable[Snapshot], end: datetime) -> list[Gap]:
    """Runs of scheduled times whose slot (up to the next time) holds no good snapshot;
    the failed attempts in a run are named."""
    starts = sorted(
        ((at(s.started_at or ""), s) for s in snaps if s.started_at), key=lambda p: p[0]
    )
    good = [when for when, s in starts if is_good(s)]
    found: list[Gap] = []
    run: list[int] = []
    for i, t in enumerate(times):
        stop = times[i + 1] if i + 1 < len(times) else end
        first = bisect.bisect_left(good, t)
        if first < len(good) and good[first] < stop:
            if run:
                found.append(_gap(times, run, starts, end))
                run = []
        else:
            run.append(i)
    if run:
        found.append(_gap(times, run, starts, end))
    return found


def _gap(
    times: Sequence[datetime],
    run: list[int],
    starts: list[tuple[datetime, Snapshot]],
    end: datetime,
) -> Gap:
    start = times[run[0]]
    stop = times[run[-1] + 1] if run[-1] + 1 < len(times) else end
    whens = [when for when, _ in starts]
    inside = starts[bisect.bisect_left(whens, start) : bisect.bisect_left(whens, stop)]
    failed = [s.id for _, s in inside if not is_good(s)]
    return Gap(iso(start), iso(stop), len(run), failed)


def rpo(
    snaps: Iterable[Snapshot], before: Snapshot | None, since: datetime, until: datetime
) -> Rpo:
    """The longest time without a good snapshot in [since, until). It is counted from the
    window's start when a good snapshot came before it, else from the first good one
    (the database was not backed up before it: no point to recover to)."""
    good = sorted(at(s.started_at or "") for s in snaps if is_good(s))
    if before is None and not good:
        return Rpo(None, None, None)
    points = ([since] if before is not None else []) + [g for g in good if g >= since] + [until]
    worst = max(zip(points, points[1:], strict=False), key=lambda p: p[1] - p[0])
    return Rpo(round((worst[1] - worst[0]).total_seconds(), 1), iso(worst[0]), iso(worst[1]))


def whole(job: JobRecord) -> bool:
    """A job that proves a snapshot restores: the whole database, not an undo."""
    return not job.tables and not (isinstance(job, Restore) and job.undo_of)


def quarters(jobs: Iterable[JobRecord], since: datetime, until: datetime, tz: str) -> list[Quarter]:
    """Each calendar quarter (in `tz`) the window touches, with its first passed drill."""
    zone = ZoneInfo(tz)
    passed = sorted(
        (at(j.started_at).astimezone(zone), j.id)
        for j in jobs
        if j.status == "passed" and j.started_at and whole(j)
    )
    out: list[Quarter] = []
    year, q = since.astimezone(zone).year, (since.astimezone(zone).month - 1) // 3
    last = until.astimezone(zone) - timedelta(microseconds=1)
    while (year, q) <= (last.year, (last.month - 1) // 3):
        first = next(
            (jid for when, jid in passed if (when.year, (when.month - 1) // 3) == (year, q)), None
        )
        out.append(Quarter(f"{year}-Q{q + 1}", first is not None, first))
        year, q = (year + 1, 0) if q == 3 else (year, q + 1)
    return out


def job_line(job: JobRecord, snap: Snapshot | None, rto_target_s: int) -> JobLine:
    """A drill or refresh as the report shows it."""
    kind = "undo" if isinstance(job, Restore) and job.undo_of else str(job.kind)
    total = job.total_s if job.status == "passed" else None
    return JobLine(
        id=job.id,
        kind=kind,
        snapshot_id=job.snapshot_id,
        status=str(job.status),
        started_at=job.started_at,
        requested_by=job.requested_by,
        approved_by=list(job.approved_by),
        total_s=job.total_s,
        within_rto=None if total is None else total <= rto_target_s,
        tables=list(job.tables),
        rows=row_count(job, snap),
        checks=[CheckLine(c.name, c.passed, c.detail) for c in job.checks],
        problems=list(job.problems),
        error=job.error,
    )


def row_count(job: JobRecord, snap: Snapshot | None) -> RowCount:
    """The snapshot's recorded rows (of the job's tables), and what the comparison found."""
    counts: dict[str, int] = dict(((snap.manifest if snap else None) or {}).get("tables") or {})
    if job.tables:
        counts = {k: v for k, v in counts.items() if k in set(job.tables)}
    verified = job.verify_s is not None
    differences = [p for p in job.problems if p.startswith("table ")]
    return RowCount(len(counts), sum(int(v) for v in counts.values()), verified, differences)


def snapshot_line(snap: Snapshot) -> SnapshotLine:
    return SnapshotLine(
        id=snap.id,
        started_at=snap.started_at or "",
        status=str(snap.status),
        source=snap.source,
        requested_by=snap.requested_by,
        duration_s=snap.duration_s,
        size_bytes=snap.size_bytes,
        tags=dict(snap.tags or {}),
        error=snap.error,
    )
