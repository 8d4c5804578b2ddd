"""The catalog's interface: every statement Atlas runs against its catalog is a method
here, written once (`catalog/sql/`) and run by a backend (`catalog/sqlite/`, `catalog/postgres/`).

Callers hold a `Catalog` and never see SQL. SQLite (`catalog/sqlite/`, through the
standard library's sqlite3) is the embedded default; another backend implements the same
protocol and `open_catalog` picks it from ATLAS_STATE. State changes that must not race (a second
snapshot of a database, two approvals arriving at once, a reminder posted twice) are
single methods here, each atomic in the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Unpack

from bot.records import (
    AuditEntry,
    Copy,
    CopyState,
    Drill,
    DrillFields,
    JobRecord,
    Kind,
    RefreshFields,
    Request,
    RequestFields,
    RequestStatus,
    Restore,
    RestoreFields,
    Snapshot,
    SnapshotFields,
    SnapshotResult,
    SnapshotStatus,
    WorkItem,
    WorkStatus,
)


@dataclass(frozen=True)
class RequestChange:
    """What one reaction does to a request, decided from values, applied atomically:
    the reactions now on it, the fields that change, and the audit line to write."""

    reactions: frozenset[tuple[str, str]]  # (user, emoji)
    fields: RequestFields = field(default_factory=lambda: RequestFields())
    audit: tuple[str, str, dict[str, Any]] | None = None  # (actor, action, detail)


Decide = Callable[[Request, frozenset[tuple[str, str]]], RequestChange]


class SnapshotLog(Protocol):
    """The snapshots' records."""

    def begin_snapshot(self, snap: Snapshot) -> Snapshot:
        """Insert a running snapshot, or raise Busy naming who holds the database."""
        ...

    def running_snapshot(self, database: str, environment: str) -> Snapshot | None: ...
    def update_snapshot(self, snap_id: str, **fields: Unpack[SnapshotFields]) -> None: ...
    def finish_snapshot(
        self,
        snap_id: str,
        status: SnapshotStatus,
        audit: tuple[str, str, dict[str, Any]] | None = None,
        **fields: Unpack[SnapshotResult],
    ) -> None:
        """Record the outcome, and with `audit` (actor, action, detail) its audit line in
        the same transaction."""
        ...

    def add_snapshot(self, snap: Snapshot) -> bool:
        """Insert a finished snapshot found in storage; False if its id is known."""
        ...

    def get_snapshot(self, snap_id: str) -> Snapshot: ...
    def has_snapshot(self, snap_id: str) -> bool: ...
    def snapshot_ids_like(self, prefix: str, limit: int = 6) -> list[str]: ...
    def list_snapshots(
        self,
        limit: int = 20,
        database: str | None = None,
        status: SnapshotStatus | None = None,
        environment: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[Snapshot]:
        """The newest first; with `tags`, only those carrying every one of them."""
        ...

    def snapshot_counts(self, database: str) -> dict[str, int]: ...
    def snapshots_between(
        self, since: str, until: str, database: str | None = None
    ) -> list[Snapshot]:
        """Snapshots started in [since, until) (UTC ISO times), oldest first."""
        ...

    def databases_between(self, since: str, until: str) -> list[str]:
        """The databases (not a server's roles) with snapshots started in [since, until)."""
        ...

    def good_before(self, database: str, before: str) -> Snapshot | None:
        """The newest snapshot started before `before` that was good (ok, or pruned)."""
        ...

    def first_good_snapshot_at(self, database: str) -> str | None: ...
    def kept_databases(self, environment: str) -> list[str]:
        """Databases of an environment that have snapshots not yet deleted (databases
        only: a server's roles snapshots are not a database)."""
        ...

    def beat_snapshot(self, snap_id: str) -> None:
        """The snapshot's process is alive: its heartbeat, by the catalog's clock (so
        replicas whose clocks disagree still agree on who has gone quiet)."""
        ...

    def stale_running(self, stale_after_s: float) -> list[Snapshot]:
        """Running snapshots whose process is gone (same host) or silent for too long."""
        ...

    def left_behind(self) -> list[Snapshot]:
        """Finished snapshots whose unfinished write could not be removed yet."""
        ...


class RequestLog(Protocol):
    """Restore and drill requests, and their approvals."""

    def add_request(self, req: Request) -> Request: ...
    def get_request(self, request_id: str) -> Request: ...
    def request_by_message(self, channel: str, ts: str) -> Request | None: ...
    def update_request(self, request_id: str, **fields: Unpack[RequestFields]) -> None: ...
    def list_requests(self, *statuses: RequestStatus) -> list[Request]:
        """Requests in any of `statuses` (all when none), oldest first."""
        ...

    def decide_request(self, request_id: str, decide: Decide) -> tuple[Request, RequestChange]:
        """Read the request and its reactions, let `decide` (pure) say what changes, and
        apply that in one transaction: racing reactions see each other's result."""
        ...

    def claim_job(self, request_id: str) -> bool:
        """Move an approved request to running; True for exactly one caller."""
        ...

    def expire_request(self, request_id: str, reason: str) -> bool:
        """Pending to expired; True for exactly one caller."""
        ...


class JobLog(Protocol):
    """Restore jobs' records: staging refreshes (`Restore`) and drills (`Drill`)."""

    def add_job(self, job: JobRecord) -> None: ...
    def update_job(self, job_id: str, kind: Kind, **fields: Unpack[RestoreFields]) -> None: ...
    def update_drill(self, drill_id: str, **fields: Unpack[DrillFields]) -> None: ...
    def get_job(self, job_id: str) -> JobRecord:
        """The drill or refresh of that id."""
        ...

    def get_drill(self, drill_id: str) -> Drill: ...
    def list_jobs(
        self,
        limit: int = 20,
        kind: Kind | None = None,
        database: str | None = None,
        request_id: str | None = None,
    ) -> list[JobRecord]:
        """Drills and refreshes (or one kind), newest first."""
        ...

    def jobs_between(self, since: str, until: str, database: str | None = None) -> list[JobRecord]:
        """Drills and refreshes started in [since, until), oldest first."""
        ...

    def last_passed_job(self, database: str) -> JobRecord | None:
        """The newest passed drill or refresh: the last time the database's snapshot was
        proven to restore."""
        ...

    def last_passed_from(self, copy: str) -> JobRecord | None:
        """The newest passed whole-database drill or refresh read `--from` that copy."""
        ...

    def drills_to_clean(self) -> list[Drill]:
        """Drills whose scratch database may still exist: not dropped yet after they
        finished, or still running in a process of this host that is gone."""
        ...

    def update_refresh(self, job_id: str, **fields: Unpack[RefreshFields]) -> None: ...
    def kept_stagings(self, database: str | None = None) -> list[Restore]:
        """Refreshes and undos whose kept staging still exists, newest first."""
        ...

    def refreshes_to_clean(self) -> list[Restore]:
        """Refreshes whose new database may still exist unswapped: not dropped after they
        failed, or still running in a process of this host that is gone."""
        ...

    def tables_restores_died(self) -> list[Restore]:
        """Restores of some tables (into staging itself) still running in a process of
        this host that is gone."""
        ...

    def running_jobs(self) -> list[JobRecord]:
        """Drills and refreshes recorded as running: retention keeps what they read."""
        ...


class Coordination(Protocol):
    """What makes one action happen once across retries, restarts and processes."""

    def sent_reminders(self, database: str) -> set[str]: ...
    def claim_reminder(self, key: str, database: str, text: str) -> bool: ...
    def unclaim_reminder(self, key: str) -> None: ...
    def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool: ...
    def release_lease(self, name: str, owner: str) -> None: ...
    def lease_holder(self, name: str) -> str | None: ...
    def forget_leases(self, older_than_s: float) -> int: ...
    def live_leases(self, prefix: str) -> list[str]:
        """Names of unexpired leases starting with `prefix` (the replicas alive)."""
        ...

    def first_time(self, key: str) -> bool:
        """True the first time a request key (Slack trigger or event id) is seen."""
        ...


class WorkQueue(Protocol):
    """A fleet run's databases, claimed by whichever replica has room (`sql/work.py`)."""

    def enqueue_work(self, items: list[WorkItem]) -> int: ...
    def claim_work(self, owner: str, limit: int, stale_after_s: float) -> WorkItem | None: ...
    def beat_work(self, owner: str) -> None: ...
    def finish_work(
        self,
        key: str,
        status: WorkStatus,
        snapshot_id: str | None = None,
        error: str | None = None,
    ) -> None: ...
    def run_work(self, run: str) -> list[WorkItem]: ...
    def queued_work(self) -> int: ...
    def abandon_work(self, stale_after_s: float) -> list[WorkItem]: ...
    def cancel_work(self, run: str, reason: str) -> int: ...
    def forget_work(self, older_than_s: float) -> int: ...


class CopyLog(Protocol):
    """Each snapshot's copies in further destinations (`sql/copies.py`)."""

    def add_copies(self, copies: list[Copy]) -> int: ...
    def claim_copy(
        self, key: str, owner: str, stale_after_s: float, *, due: bool
    ) -> Copy | None: ...
    def beat_copies(self, owner: str) -> None: ...
    def end_copy(self, key: str, owner: str, state: CopyState, **fields: Any) -> bool: ...
    def retry_copy_in(self, key: str, owner: str, seconds: float, error: str) -> bool: ...
    def update_copy(self, key: str, **fields: Any) -> None: ...
    def copies_of(self, *snapshot_ids: str) -> list[Copy]: ...
    def copies_in(self, destination: str, *states: CopyState) -> list[Copy]: ...
    def unfinished_copies(self) -> list[Copy]: ...
    def catalog_clock(self) -> float:
        """Seconds since the epoch by the catalog's clock (the one retry times use)."""
        ...


class AuditLog(Protocol):
    """The append-only record of who did what."""

    def audit(self, actor: str, action: str, subject: str, **detail: Any) -> None: ...
    def audit_log(self, limit: int = 50, subject: str | None = None) -> list[AuditEntry]: ...
    def audit_chain(self) -> Iterator[AuditEntry]:
        """Every entry, oldest first, for checking the hash chain."""
        ...


class Catalog(
    SnapshotLog, RequestLog, JobLog, Coordination, WorkQueue, CopyLog, AuditLog, Protocol
):
    """Everything Atlas records."""

    def ping(self) -> None:
        """A cheap read: raises when the catalog cannot be used (for /healthz)."""
        ...

    def schema_version(self) -> int: ...
