"""The report's records: what `atlas report` proves, in the shape all three formats print.

The HTML, the JSON and the CSV are each rendered from one `Report`, so they carry the same
records; `docs/report.schema.json` describes the JSON (`dataclasses.asdict` of a Report).
"""

from __future__ import annotations

from dataclasses import dataclass, field

REPORT_VERSION = 1


@dataclass(frozen=True)
class Policy:
    """The settings in force when the report was made: what the evidence is measured by."""

    schedule: str | None  # the default cron; databases may have their own
    timezone: str
    retention_days: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    encryption: str  # "age": every artifact encrypted by Atlas; "none"
    storage: str  # where snapshots are stored (credentials redacted)
    copies: list[str]  # ATLAS_COPIES: each destination, where and for how long
    approvers: list[str]
    required_approvals: int
    drill_every: str  # "quarter" or a number of days
    rto_target_s: int


@dataclass(frozen=True)
class SnapshotLine:
    """One snapshot taken in the window."""

    id: str
    started_at: str
    status: str
    source: str | None
    requested_by: str | None
    duration_s: float | None
    size_bytes: int | None
    tags: dict[str, str]
    error: str | None


@dataclass(frozen=True)
class Gap:
    """A run of scheduled times with no good snapshot: [start, end) and how many."""

    start: str
    end: str
    missed: int
    failed: list[str]  # snapshots that were tried in it and failed


@dataclass(frozen=True)
class Rpo:
    """The achieved recovery point: the longest time without a good snapshot."""

    seconds: float | None  # None: no good snapshot at all
    start: str | None
    end: str | None


@dataclass(frozen=True)
class CheckLine:
    """One app-flow check of a job, and its result."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class RowCount:
    """The row-count comparison against the snapshot's manifest."""

    tables: int
    rows: int  # as the snapshot's manifest recorded them
    verified: bool  # the comparison ran (a job that failed earlier never reached it)
    differences: list[str]  # tables whose rows differ, missing or unexpected


@dataclass(frozen=True)
class JobLine:
    """One drill or staging refresh: who asked, who approved, what was checked, how long."""

    id: str
    kind: str  # drill | restore | undo
    snapshot_id: str
    status: str
    started_at: str | None
    requested_by: str | None
    approved_by: list[str]
    total_s: float | None  # the measured restore time
    within_rto: bool | None  # None: no time measured
    tables: list[str]  # SCHEMA.TABLE restored; none: the whole database
    rows: RowCount
    checks: list[CheckLine]
    problems: list[str]
    error: str | None


@dataclass(frozen=True)
class Quarter:
    """A calendar quarter in the window, and the drill that proved it, if any."""

    quarter: str  # 2026-Q3
    passed: bool
    job_id: str | None  # the first passed drill or refresh of the whole database


@dataclass(frozen=True)
class DatabaseProof:
    """The evidence for one database."""

    name: str
    schedule: str | None
    expected: int | None  # snapshots the schedule asked for; None: no schedule
    taken: int
    good: int
    failed: int
    gaps: list[Gap]
    rpo: Rpo
    last_good_at: str | None
    jobs: list[JobLine]
    quarters: list[Quarter]
    snapshots: list[SnapshotLine]


@dataclass(frozen=True)
class Chain:
    """The audit log's hash chain at the time of the report: a later report or
    `atlas audit --verify --head HEAD` proves nothing before it changed."""

    head: str | None
    entries: int
    intact: bool
    problem: str | None


@dataclass(frozen=True)
class Report:
    """Everything one report says, for the window [since, until)."""

    generated_at: str
    since: str
    until: str
    policy: Policy
    chain: Chain
    databases: list[DatabaseProof] = field(default_factory=list)
    version: int = REPORT_VERSION
