"""Read what a report needs from the catalog and the settings, and build it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.catalog.base import Catalog
from bot.chain import verify
from bot.config import Settings
from bot.destinations import Destination
from bot.errors import AtlasError
from bot.proof import build
from bot.proof.records import Chain, DatabaseProof, Policy, Report
from bot.records import JobRecord, Snapshot, SnapshotKind
from bot.redaction import redact
from bot.words import count


@dataclass(frozen=True)
class Scope:
    """What a report covers: [since, until) in UTC, and one database or all."""

    since: datetime
    until: datetime
    database: str | None = None

    def __post_init__(self) -> None:
        if self.since >= self.until:
            raise AtlasError(
                f"--since ({self.since:%Y-%m-%d}) is not before --until ({self.until:%Y-%m-%d})",
                "give a window that starts before it ends",
            )


def catalog_time(moment: datetime) -> str:
    """A bound as the catalog writes times (UTC, milliseconds), so text compares as time."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def policy(st: Settings) -> Policy:
    encrypted = st.encryption_key is not None or st.encryption_key_file is not None
    return Policy(
        schedule=st.snapshot_schedule,
        timezone=st.timezone,
        retention_days=st.retention_days,
        keep_daily=st.keep_daily,
        keep_weekly=st.keep_weekly,
        keep_monthly=st.keep_monthly,
        encryption="age" if encrypted else "none",
        storage=redact(st.storage),
        copies=[_copy_line(d) for d in st.copies.values()],
        approvers=list(st.approvers),
        required_approvals=st.required_approvals,
        drill_every=st.drill_every,
        rto_target_s=st.rto_target_minutes * 60,
    )


def _copy_line(dest: Destination) -> str:
    """`offsite: s3://acme-dr/atlas (https://…, 365 days)`: where, and how long it keeps."""
    where = [dest.endpoint_url] if dest.endpoint_url else []
    if dest.retention_days is not None:
        where.append(count(dest.retention_days, "day"))
    return redact(f"{dest.name}: {dest.url}" + (f" ({', '.join(where)})" if where else ""))


def schedule_of(st: Settings, database: str) -> str | None:
    """The cron a database's snapshots run on: its own, its server's (by prefix), or the
    default, as the scheduler picks them."""
    target = st.databases.get(database)
    if target is not None and target.schedule:
        return target.schedule
    for server in st.servers.values():
        if server.prefix and server.schedule and database.startswith(server.prefix):
            return server.schedule
    return st.snapshot_schedule


def report(catalog: Catalog, st: Settings, scope: Scope) -> Report:
    since, until = catalog_time(scope.since), catalog_time(scope.until)
    jobs: dict[str, list[JobRecord]] = {}
    for j in catalog.jobs_between(since, until, scope.database):
        jobs.setdefault(j.database, []).append(j)
    names = set(jobs) | set(catalog.databases_between(since, until))
    if scope.database:
        names = {scope.database}
    found = verify(catalog.audit_chain())
    chain = Chain(found.head, found.checked, found.ok, found.why or None)
    # one database's snapshots at a time (manifests and all): memory stays flat with the fleet
    databases = [
        database(
            catalog, st, scope, name, _snapshots(catalog, since, until, name), jobs.get(name, [])
        )
        for name in sorted(names)
    ]
    stamp = build.iso(datetime.now(UTC))
    return Report(
        stamp, build.iso(scope.since), build.iso(scope.until), policy(st), chain, databases
    )


def database(
    catalog: Catalog,
    st: Settings,
    scope: Scope,
    name: str,
    snaps: list[Snapshot],
    jobs: list[JobRecord],
) -> DatabaseProof:
    cron = schedule_of(st, name)
    end = min(scope.until, datetime.now(UTC))
    times = build.scheduled(cron, st.timezone, scope.since, end) if cron else []
    if len(times) >= build.MAX_SLOTS:  # counted on, the rest of the window went unseen
        raise AtlasError(
            f"The schedule {cron!r} of {name} asks for more than "
            f"{count(build.MAX_SLOTS, 'snapshot')} in this window, more than a report counts.",
            "narrow it with --since and --until, to a month say, or --db to one database",
        )
    before = catalog.good_before(name, catalog_time(scope.since))
    by_id = {s.id: s for s in snaps}
    good = [s for s in snaps if build.is_good(s)]
    target = st.rto_target_minutes * 60
    return DatabaseProof(
        name=name,
        schedule=cron,
        expected=len(times) if cron else None,
        taken=len(snaps),
        good=len(good),
        failed=len(snaps) - len(good),
        gaps=build.gaps(times, snaps, end) if cron else [],
        rpo=build.rpo(snaps, before, scope.since, end),
        last_good_at=max((s.started_at or "" for s in good), default=None)
        or (before.started_at if before else None),
        jobs=[
            build.job_line(j, by_id.get(j.snapshot_id) or _snapshot(catalog, j), target)
            for j in jobs
        ],
        quarters=build.quarters(jobs, scope.since, end, st.timezone),
        snapshots=[build.snapshot_line(s) for s in snaps],
    )


def _snapshots(catalog: Catalog, since: str, until: str, name: str) -> list[Snapshot]:
    found = catalog.snapshots_between(since, until, name)
    return [s for s in found if s.kind != SnapshotKind.GLOBALS]


def _snapshot(catalog: Catalog, job: JobRecord) -> Snapshot | None:
    """A job's snapshot taken before the window (its manifest holds the row counts)."""
    if not catalog.has_snapshot(job.snapshot_id):
        return None
    return catalog.get_snapshot(job.snapshot_id)
