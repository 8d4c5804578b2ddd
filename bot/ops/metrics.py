"""Prometheus metrics on `GET /metrics`, so backup age and drill recency can page someone
through the team's usual alerting as well as in Slack, e.g.

    time() - atlas_snapshot_last_success_timestamp_seconds > 26 * 3600
    atlas_drill_deadline_timestamp_seconds < time()

`families` is pure (catalog facts in, metric families out); `render` reads the catalog.
A database with no good snapshot (or no passed drill) has no sample for it: alert on
`absent(...)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from bot.records import JobRecord, Snapshot, SnapshotStatus

if TYPE_CHECKING:
    from bot.copies.plan import Standing
    from bot.services import Services


@dataclass(frozen=True)
class DatabaseFacts:
    """What /metrics says of one database."""

    database: str
    environment: str
    last_ok: Snapshot | None  # the newest good snapshot
    last_drill: JobRecord | None  # the newest passed drill or staging restore
    deadline: datetime
    by_status: dict[str, int] = field(default_factory=dict)  # catalog rows per status


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


@dataclass(frozen=True)
class ReplicaFacts:
    """Who this process is among the replicas sharing the catalog, and who leads."""

    replica: str
    leader: str | None
    alive: int


def families(
    facts: list[DatabaseFacts], version: str = "unknown", replicas: ReplicaFacts | None = None
) -> list[Metric]:
    def gauge(name: str, doc: str, labels: tuple[str, ...] = ("database", "environment")) -> Any:
        return GaugeMetricFamily(name, doc, labels=list(labels))

    ok_at = gauge(
        "atlas_snapshot_last_success_timestamp_seconds", "When the newest good snapshot finished."
    )
    size = gauge("atlas_snapshot_last_size_bytes", "Stored size of the newest good snapshot.")
    took = gauge("atlas_snapshot_last_duration_seconds", "How long the newest good snapshot took.")
    rows = gauge(
        "atlas_snapshots",
        "Snapshots in the catalog by status.",
        ("database", "environment", "status"),
    )
    drill_at = gauge(
        "atlas_drill_last_success_timestamp_seconds",
        "When the newest passed drill (or staging restore) finished.",
    )
    restore = gauge(
        "atlas_drill_last_total_seconds", "Time to restore and verify in the newest passed drill."
    )
    due = gauge("atlas_drill_deadline_timestamp_seconds", "When the next drill must have passed.")
    for f in facts:
        labels = [f.database, f.environment]
        if f.last_ok is not None:
            finished = _ts(f.last_ok.finished_at or f.last_ok.started_at)
            if finished is not None:
                ok_at.add_metric(labels, finished)
            size.add_metric(labels, float(f.last_ok.size_bytes or 0))
            if f.last_ok.duration_s is not None:
                took.add_metric(labels, float(f.last_ok.duration_s))
        for status, n in sorted(f.by_status.items()):
            rows.add_metric([*labels, status], float(n))
        if f.last_drill is not None:
            finished = _ts(f.last_drill.finished_at)
            if finished is not None:
                drill_at.add_metric(labels, finished)
            if f.last_drill.total_s is not None:
                restore.add_metric(labels, float(f.last_drill.total_s))
        due.add_metric(labels, f.deadline.timestamp())
    info = GaugeMetricFamily("atlas_build_info", "The running Atlas version.", labels=["version"])
    info.add_metric([version], 1.0)
    out: list[Metric] = [info, ok_at, size, took, rows, drill_at, restore, due]
    if replicas is not None:
        leads = GaugeMetricFamily(
            "atlas_leader",
            "1 when this replica runs the schedule (holds the scheduler lease), else 0.",
            labels=["replica", "leader"],
        )
        leads.add_metric(
            [replicas.replica, replicas.leader or ""],
            1.0 if replicas.leader == replicas.replica else 0.0,
        )
        alive = GaugeMetricFamily(
            "atlas_replicas", "Replicas sharing the catalog that are alive (their lease held)."
        )
        alive.add_metric([], float(replicas.alive))
        out += [leads, alive]
    return out


def gather(services: Services, now: datetime | None = None) -> list[DatabaseFacts]:
    from bot.ops import housekeeping

    now = now or datetime.now(UTC)
    deadlines = housekeeping.drill_deadlines(services, now)
    out = []
    for name, target in services.settings.databases.items():
        rows = services.catalog.list_snapshots(limit=1, database=name, status=SnapshotStatus.OK)
        out.append(
            DatabaseFacts(
                database=name,
                environment=target.environment,
                last_ok=rows[0] if rows else None,
                last_drill=housekeeping.last_passed_drill(services, name),
                deadline=deadlines[name],
                by_status=services.catalog.snapshot_counts(name),
            )
        )
    return out


def copy_families(standings: list[Standing]) -> list[Metric]:
    """Each destination of ATLAS_COPIES: its newest good copy, and the copies it lacks.
    Alert on `time() - atlas_copy_last_success_timestamp_seconds > 26 * 3600`."""
    last = GaugeMetricFamily(
        "atlas_copy_last_success_timestamp_seconds",
        "When the newest good copy in this destination was made.",
        labels=["destination"],
    )
    waiting = GaugeMetricFamily(
        "atlas_copies_missing", "Copies not yet made in this destination.", labels=["destination"]
    )
    for s in standings:
        at = _ts(s.last_ok)
        if at is not None:
            last.add_metric([s.destination], at)
        waiting.add_metric([s.destination], float(s.unfinished))
    return [last, waiting]


class _Collected:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def render(services: Services) -> tuple[bytes, str]:
    """The exposition text and its content type."""
    from bot.owners import LEADER_LEASE, REPLICA_LEASE
    from bot.version import version

    replicas = ReplicaFacts(
        replica=services.replica,
        leader=services.catalog.lease_holder(LEADER_LEASE),
        alive=len(services.catalog.live_leases(REPLICA_LEASE)),
    )
    registry = CollectorRegistry(auto_describe=False)
    metrics = families(gather(services), version(), replicas)
    if services.settings.copies:
        from bot.ops.copies import standings

        metrics += copy_families(standings(services))
    registry.register(_Collected(metrics))
    return generate_latest(registry), CONTENT_TYPE_LATEST
