"""The records Atlas keeps, each declared once, and the one vocabulary of their statuses.

A field's declaration says where it goes: every field is a catalog column; `public`
fields are what `--json` prints; `sidecar` fields are written next to the artifact. The
catalog's columns, the JSON output and the sidecar are all derived from here, so a new
field is one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, ClassVar, TypedDict, TypeVar


def now() -> str:
    """The time as records store it: UTC, ISO 8601, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SnapshotStatus(StrEnum):
    """Where a snapshot is in its life."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CORRUPT = "corrupt"  # its artifact failed a checksum: never restorable
    DELETED = "deleted"  # pruned by retention


# what pruning adds to the error of a snapshot that had failed (or was damaged): the proof
# tells a deleted snapshot that was good from one that never was by it
HAD_FAILED = "; it had failed: "


class SnapshotKind(StrEnum):
    """What a snapshot holds: one database, or a server's roles."""

    DATABASE = "database"  # one database: a pg_dump custom archive
    GLOBALS = "globals"  # a server's roles and tablespaces: pg_dumpall --globals-only SQL


class RequestStatus(StrEnum):
    """Where a request is: waiting, decided, running or done."""

    PENDING = "pending"
    APPROVED = "approved"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


class DrillStatus(StrEnum):
    """How a drill or refresh ended (or that it runs)."""

    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped (Ctrl-C, its process gone) before a verdict


class Kind(StrEnum):
    """What a restore job does: a staging refresh, or a drill into a scratch database."""

    RESTORE = "restore"
    DRILL = "drill"
    UNDO = "undo"  # a request only: swap the staging a refresh kept back in


# -- field declarations ----------------------------------------------------------------------

JSON = "json"  # stored as JSON text in the catalog


def col(
    sql: type | str = str, *, public: bool = False, sidecar: bool = False, default: Any = None
) -> Any:
    """A record field: its catalog column type (`JSON` for lists and dicts), and whether it
    is in `--json` output (`public`) and in the sidecar."""
    meta = {"sql": sql, "public": public, "sidecar": sidecar}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def columns(record: type) -> dict[str, Any]:
    """{column: type} for the catalog, in declaration order."""
    return {
        f.name: (str if f.metadata["sql"] == JSON else f.metadata["sql"])
        for f in dataclasses.fields(record)
    }


def names(record: type, flag: str) -> list[str]:
    return [f.name for f in dataclasses.fields(record) if f.metadata.get(flag)]


R = TypeVar("R")


def to_row(record: Any) -> dict[str, Any]:
    """The record as catalog column values: JSON fields encoded, flags as 0/1."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.metadata["sql"] == JSON:
            value = json.dumps(_plain(value), sort_keys=True) if value is not None else None
        elif isinstance(value, bool):
            value = int(value)
        elif isinstance(value, Enum):
            value = value.value
        out[f.name] = value
    return out


def encode(record: type, fields: Mapping[str, object]) -> dict[str, Any]:
    """Some of a record's fields as catalog column values (for an update)."""
    known = {f.name: f for f in dataclasses.fields(record)}
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in known:
            raise KeyError(f"{record.__name__} has no field {name!r}")
        if known[name].metadata["sql"] == JSON and value is not None:
            value = json.dumps(_plain(value), sort_keys=True)
        elif isinstance(value, bool):
            value = int(value)
        elif isinstance(value, Enum):
            value = value.value
        out[name] = value
    return out


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(record: type) -> dict[str, Any]:
    if record not in _HINTS:
        _HINTS[record] = typing.get_type_hints(record)
    return _HINTS[record]


def _decoder(hint: Any) -> Any:
    """How to turn a stored value back into the field's type: enums and flags."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = args[0]
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind
    if kind is bool:
        return bool
    return None


def from_row(record: type[R], row: dict[str, Any]) -> R:
    """A record from a catalog row; columns it does not declare are ignored (a newer
    catalog read by an older Atlas), and missing ones take their default."""
    kwargs: dict[str, Any] = {}
    hints = _hints(record)
    for f in dataclasses.fields(record):  # type: ignore[arg-type]  # R is a dataclass
        if f.name not in row:
            continue
        value = row[f.name]
        if value is not None:
            if f.metadata["sql"] == JSON and isinstance(value, str):
                value = json.loads(value)
            elif (decode := _decoder(hints[f.name])) is not None:
                # a status only a newer Atlas knows stays the text it is
                with contextlib.suppress(ValueError):
                    value = decode(value)
        kwargs[f.name] = value
    return record(**kwargs)


def public(record: Any) -> dict[str, Any]:
    """What `--json` prints: the public fields, flags as 0/1 as they always were."""
    out = {}
    for f in dataclasses.fields(record):
        if f.metadata.get("public"):
            value = getattr(record, f.name)
            if isinstance(value, bool):
                value = int(value)
            elif isinstance(value, Enum):
                value = value.value
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# -- the records -----------------------------------------------------------------------------


@dataclass(kw_only=True)
class Snapshot:
    """One backup: the catalog row, the `--json` object and (in part) the sidecar."""

    id: str = col(public=True, sidecar=True)
    database: str = col(public=True, sidecar=True)  # Atlas's name for it
    dbname: str | None = col(public=True, sidecar=True)  # the server's name for it
    environment: str = col(public=True, sidecar=True, default="production")
    status: SnapshotStatus = col(public=True, default=SnapshotStatus.RUNNING)
    source: str | None = col(public=True)  # cli | slack | schedule | rescan
    requested_by: str | None = col(public=True, sidecar=True)
    note: str = col(public=True, sidecar=True, default="")
    started_at: str | None = col(public=True, sidecar=True)
    finished_at: str | None = col(public=True)
    heartbeat_at: str | None = col()
    owner: str | None = col()  # host:pid of the process taking it
    duration_s: float | None = col(float, public=True)
    dump_s: float | None = col(float)
    size_bytes: int | None = col(int, public=True, sidecar=True)  # stored, compressed
    raw_size_bytes: int | None = col(int, public=True, sidecar=True)  # the plain dump
    sha256: str | None = col(public=True, sidecar=True)  # of the stored bytes
    toc_bytes: int | None = col(int, sidecar=True)  # the dump's start holding all its SQL
    toc_sha256: str | None = col(sidecar=True)
    # where each data block lies in the artifact, for parallel restores (see Segment)
    segments: list[list[Any]] | None = col(JSON, sidecar=True)
    storage_key: str | None = col(public=True)
    location: str | None = col(public=True)
    pending_ref: str | None = col()  # an unfinished write to clean up
    pg_dump_version: str | None = col(public=True, sidecar=True)
    server_version: str | None = col(public=True, sidecar=True)
    encryption: str = col(public=True, sidecar=True, default="none")  # none | age
    compression: str = col(public=True, sidecar=True, default="zstd")
    manifest: dict[str, Any] | None = col(JSON)  # tables and row counts, sequences, extensions
    error: str | None = col(public=True)
    verified_at: str | None = col(public=True, sidecar=True)
    slack_channel: str | None = col()
    slack_ts: str | None = col()
    pinned: bool = col(int, public=True, default=False)
    provider_snapshot: str | None = col(public=True)
    kind: SnapshotKind = col(public=True, sidecar=True, default=SnapshotKind.DATABASE)
    # the versions it was taken at (app=abc123, migration=0042): found again by them
    tags: dict[str, str] | None = col(JSON, public=True, sidecar=True)


class SnapshotFields(TypedDict, total=False):
    """A change to a Snapshot: any of its fields but the id, each with its type, so
    mypy finds a misspelt or mistyped field where it is written."""

    database: str
    dbname: str | None
    environment: str
    status: SnapshotStatus
    source: str | None
    requested_by: str | None
    note: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None
    owner: str | None
    duration_s: float | None
    dump_s: float | None
    size_bytes: int | None
    raw_size_bytes: int | None
    sha256: str | None
    toc_bytes: int | None
    toc_sha256: str | None
    segments: list[list[Any]] | None
    storage_key: str | None
    location: str | None
    pending_ref: str | None
    pg_dump_version: str | None
    server_version: str | None
    encryption: str
    compression: str
    manifest: dict[str, Any] | None
    error: str | None
    verified_at: str | None
    slack_channel: str | None
    slack_ts: str | None
    pinned: bool
    provider_snapshot: str | None
    kind: SnapshotKind
    tags: dict[str, str] | None


class SnapshotResult(TypedDict, total=False):
    """What a snapshot's end records beside its status (the status is an argument of
    its own): the fields a taker fills in once the artifact is stored and read back."""

    dbname: str | None
    server_version: str | None
    pg_dump_version: str | None
    size_bytes: int | None
    raw_size_bytes: int | None
    sha256: str | None
    toc_bytes: int | None
    toc_sha256: str | None
    segments: list[list[Any]] | None
    dump_s: float | None
    duration_s: float | None
    manifest: dict[str, Any] | None
    verified_at: str | None
    pending_ref: str | None
    error: str | None


@dataclass(frozen=True)
class Segment:
    """A run of the artifact that decompresses on its own (one zstd frame): the dump's
    head (header and table of contents), or one data block. A restore reads each with a
    seek or an HTTP range request and checks it against `sha256` before trusting it."""

    dump_id: int  # the archive entry whose data block this is; 0 for the head
    plain_start: int  # in the plain pg_dump stream
    plain_size: int
    start: int  # in the stored artifact
    size: int
    sha256: str  # of its stored bytes

    def pack(self) -> list[Any]:
        return [self.dump_id, self.plain_start, self.plain_size, self.start, self.size, self.sha256]


def segments_of(snap: Snapshot) -> list[Segment] | None:
    """The snapshot's segments, or None when it has none that cover the whole artifact
    (taken before segments were recorded, encrypted, or a malformed sidecar)."""
    raw = snap.segments
    if not raw or not isinstance(raw, list):
        return None
    out: list[Segment] = []
    plain = stored = 0
    for row in raw:
        if not (isinstance(row, list) and len(row) == 6):
            return None
        dump_id, plain_start, plain_size, start, size, sha256 = row
        numbers = (dump_id, plain_start, plain_size, start, size)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            return None
        if not (isinstance(sha256, str) and len(sha256) == 64):
            return None
        if plain_start != plain or start != stored:
            return None  # segments must follow each other with no gap
        out.append(Segment(dump_id, plain_start, plain_size, start, size, sha256))
        plain, stored = plain + plain_size, stored + size
    if out[0].dump_id != 0 or stored != snap.size_bytes or plain != snap.raw_size_bytes:
        return None
    return out


@dataclass(frozen=True)
class CheckResult:
    """One app-flow check after a restore."""

    name: str
    passed: bool
    detail: str
    seconds: float


@dataclass(kw_only=True)
class Restored:
    """What every restore job records, a drill or a staging refresh: the snapshot, where
    it went, the verdict and the timings. `Restore` and `Drill` are the records."""

    id: str = col(public=True)
    request_id: str | None = col(public=True)
    snapshot_id: str = col(public=True)
    database: str = col(public=True)
    target: str | None = col(public=True)
    status: DrillStatus = col(public=True, default=DrillStatus.RUNNING)
    requested_by: str | None = col(public=True)
    approved_by: list[str] = col(JSON, public=True, default=[])
    started_at: str | None = col(public=True)
    finished_at: str | None = col(public=True)
    download_s: float | None = col(float, public=True)  # checked before restoring
    restore_s: float | None = col(float, public=True)
    verify_s: float | None = col(float, public=True)
    total_s: float | None = col(float, public=True)  # the time to restore
    checks: list[CheckResult] = col(JSON, public=True, default=[])
    problems: list[str] = col(JSON, public=True, default=[])
    error: str | None = col(public=True)
    owner: str | None = col()
    tables: list[str] = col(JSON, public=True, default=[])  # SCHEMA.TABLE; none: all
    from_copy: str | None = col(public=True)  # read from this copy (`--from`); None: storage

    def __post_init__(self) -> None:
        self.checks = [CheckResult(**c) if isinstance(c, dict) else c for c in self.checks]


@dataclass(kw_only=True)
class Restore(Restored):
    """A staging refresh's record (table `restores`): a snapshot restored into a new
    database beside staging, verified there, then swapped in by name; staging as it was
    is kept for undo. An undo is a Restore too (`undo_of`), swapping the kept one back."""

    kind: ClassVar[Kind] = Kind.RESTORE
    new_db: str | None = col(public=True)  # restored into until the swap
    new_db_dropped: bool | None = col(int, public=True)  # a refresh that failed: dropped?
    swapped: bool = col(int, public=True, default=False)  # the new database is staging
    swap_s: float | None = col(float, public=True)  # the renames alone
    kept_db: str | None = col(public=True)  # staging as it was before the swap
    kept_dropped: bool | None = col(int, public=True)  # None: nothing kept yet
    undo_of: str | None = col(public=True)  # the refresh (or undo) this one undid


@dataclass(kw_only=True)
class Drill(Restored):
    """A restore drill's record (table `drills`): a snapshot restored into a scratch
    database, verified, and dropped unless kept."""

    kind: ClassVar[Kind] = Kind.DRILL
    scratch_db: str | None = col(public=True)
    scratch_dropped: bool | None = col(int, public=True)  # None: no scratch database
    cleanup_error: str | None = col(public=True)  # why the scratch database is not dropped yet
    kept: bool = col(int, public=True, default=False)


JobRecord = Restore | Drill  # a restore job's record, of either kind


class RestoreFields(TypedDict, total=False):
    """A change to a Restore (or to what a Drill shares with it): any field but the id,
    each with its type, so mypy finds a misspelt or mistyped field where it is written."""

    request_id: str | None
    snapshot_id: str
    database: str
    target: str | None
    status: DrillStatus
    requested_by: str | None
    approved_by: list[str]
    started_at: str | None
    finished_at: str | None
    download_s: float | None
    restore_s: float | None
    verify_s: float | None
    total_s: float | None
    checks: list[CheckResult]
    problems: list[str]
    error: str | None
    owner: str | None
    tables: list[str]
    from_copy: str | None


class RefreshFields(RestoreFields, total=False):
    """A change to a Restore: the fields it shares with a Drill, and its swap's."""

    new_db: str | None
    new_db_dropped: bool | None
    swapped: bool
    swap_s: float | None
    kept_db: str | None
    kept_dropped: bool | None
    undo_of: str | None


class DrillFields(RestoreFields, total=False):
    """A change to a Drill: a restore's fields and its scratch database's."""

    scratch_db: str | None
    scratch_dropped: bool | None
    cleanup_error: str | None
    kept: bool


@dataclass(kw_only=True)
class Request:
    """A restore or drill asked for in the channel, waiting for approvals."""

    id: str = col()
    kind: Kind = col()
    snapshot_id: str = col()
    database: str = col()
    requested_by: str = col()
    created_at: str = col()
    expires_at: str = col()
    required: int = col(int, default=1)
    approvers: list[str] = col(JSON, default=[])  # resolved when the request was made
    status: RequestStatus = col(default=RequestStatus.PENDING)
    channel: str | None = col()
    ts: str | None = col()
    decided_at: str | None = col()
    approved_by: list[str] = col(JSON, default=[])
    reason: str | None = col()
    owner: str | None = col()
    job_started_at: str | None = col()
    drill_id: str | None = col()
    tables: list[str] = col(JSON, default=[])  # SCHEMA.TABLE to restore; none: all
    note: str | None = col()  # why the requester asks (the restore modal's reason)


class RequestFields(TypedDict, total=False):
    """A change to a Request: any of its fields but the id, each with its type, so
    mypy finds a misspelt or mistyped field where it is written."""

    kind: Kind
    snapshot_id: str
    database: str
    requested_by: str
    created_at: str
    expires_at: str
    required: int
    approvers: list[str]
    status: RequestStatus
    channel: str | None
    ts: str | None
    decided_at: str | None
    approved_by: list[str]
    reason: str | None
    owner: str | None
    job_started_at: str | None
    drill_id: str | None
    tables: list[str]
    note: str | None


@dataclass(kw_only=True)
class AuditEntry:
    """One line of the append-only record of who did what."""

    id: int | None = col(int, public=True)
    at: str = col(public=True)
    actor: str = col(public=True)
    action: str = col(public=True)
    subject: str = col(public=True)
    detail: dict[str, Any] = col(JSON, public=True, default={})
    # the hash chain (`bot/chain.py`): none on entries written before it began
    prev_hash: str | None = col(public=True)
    hash: str | None = col(public=True)


class WorkStatus(StrEnum):
    """Where a fleet run's database is in the work queue."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its replica stopped beating while it ran


@dataclass(kw_only=True)
class WorkItem:
    """One database's snapshot in a fleet run, queued in the catalog so that every live
    replica can claim a share: claimed once, heartbeated while it runs."""

    key: str = col()  # run:database
    run: str = col()
    database: str = col()
    status: WorkStatus = col(default=WorkStatus.QUEUED)
    requested_by: str | None = col()
    source: str | None = col()
    note: str | None = col()
    tags: dict[str, str] | None = col(JSON)
    owner: str | None = col()  # the replica that claimed it
    queued_at: float | None = col(float)
    heartbeat_at: float | None = col(float)  # by the catalog's clock
    snapshot_id: str | None = col()
    error: str | None = col()


class CopyState(StrEnum):
    """Where a snapshot's copy in one further destination is."""

    PENDING = "pending"  # to be made (first try, or a retry after a failure)
    COPYING = "copying"  # claimed by one process, heartbeated while it copies
    OK = "ok"  # read back from the destination: its size and sha256 match
    DAMAGED = "damaged"  # read back later and found changed (verify --from)
    DELETED = "deleted"  # pruned by the destination's retention


def copy_key(snapshot_id: str, destination: str) -> str:
    """A copy's key in the catalog: one per snapshot and destination."""
    return f"{snapshot_id}:{destination}"


@dataclass(kw_only=True)
class Copy:
    """One snapshot's copy in one destination of ATLAS_COPIES (3-2-1): made once across
    replicas, proven by reading it back where it lies, retried until it is."""

    key: str = col()  # snapshot_id:destination
    snapshot_id: str = col(public=True)
    destination: str = col(public=True)
    database: str = col(public=True)
    state: CopyState = col(public=True, default=CopyState.PENDING)
    location: str | None = col(public=True)
    size_bytes: int | None = col(int, public=True)  # read back from the destination
    sha256: str | None = col(public=True)  # read back from the destination
    attempts: int = col(int, public=True, default=0)
    error: str | None = col(public=True)  # the last try's
    queued_at: str | None = col(public=True)
    next_try_at: float | None = col(float)  # epoch seconds; retries back off
    copied_at: str | None = col(public=True)
    verified_at: str | None = col(public=True)
    owner: str | None = col()  # the process copying it
    heartbeat_at: float | None = col(float)  # by the catalog's clock
