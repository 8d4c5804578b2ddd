"""Versioned schema changes of the SQLite catalog (`PRAGMA user_version`).

Every start runs the steps a catalog has not had yet, in order, so an older catalog keeps
working after an upgrade. Version 1 is the schema as it stood when versions began: it
creates what is missing and adds the columns records have gained, so catalogs from
before versioning arrive at version 1 unchanged in content.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.catalog.sql.tables import Database, Table
from bot.records import Drill, Request, Snapshot, WorkItem, columns


def _add_missing_columns(table: Table, cols: dict[str, Any]) -> None:
    for col, typ in cols.items():
        if col not in table.columns_dict:
            table.add_column(col, typ)


def _v1(db: Database) -> None:
    snaps = db["snapshots"]
    if not snaps.exists():
        snaps.create(columns(Snapshot), pk="id", not_null={"database", "status"})
    _add_missing_columns(snaps, columns(Snapshot))
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS one_running_snapshot "
        "ON snapshots(database, environment) WHERE status = 'running'"
    )
    db.execute("CREATE INDEX IF NOT EXISTS snapshots_started ON snapshots(started_at)")
    if not db["requests"].exists():
        db["requests"].create(columns(Request), pk="id")
        db["requests"].create_index(["channel", "ts"])
    _add_missing_columns(db["requests"], columns(Request))
    if not db["reactions"].exists():
        db["reactions"].create(
            {"request_id": str, "user": str, "emoji": str, "at": str},
            pk=("request_id", "user", "emoji"),
        )
    if not db["drills"].exists():
        db["drills"].create(columns(Drill), pk="id")
    _add_missing_columns(db["drills"], columns(Drill))
    if not db["reminders"].exists():
        db["reminders"].create({"key": str, "database": str, "sent_at": str, "text": str}, pk="key")
    if not db["leases"].exists():
        db["leases"].create({"name": str, "owner": str, "expires_at": float}, pk="name")
    if not db["seen_requests"].exists():
        db["seen_requests"].create({"key": str, "seen_at": str}, pk="key")
    if not db["audit"].exists():
        db["audit"].create(
            {"id": int, "at": str, "actor": str, "action": str, "subject": str, "detail": str},
            pk="id",
        )
    for op in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER IF NOT EXISTS audit_no_{op.lower()} BEFORE {op} ON audit "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )


def _v2(db: Database) -> None:
    """Drills record whether their scratch database is gone (dropped later if not)."""
    _add_missing_columns(db["drills"], columns(Drill))
    db.execute("CREATE INDEX IF NOT EXISTS drills_started ON drills(started_at)")


def _v3(db: Database) -> None:
    """Snapshots record where each data block lies, for parallel restores."""
    _add_missing_columns(db["snapshots"], columns(Snapshot))


def _v4(db: Database) -> None:
    """Snapshots say what they hold: a database, or a server's roles and tablespaces."""
    _add_missing_columns(db["snapshots"], columns(Snapshot))
    db.execute("UPDATE snapshots SET kind = 'database' WHERE kind IS NULL")


def _v5(db: Database) -> None:
    """The fleet's work queue, which replicas claim from."""
    if not db["work"].exists():
        db["work"].create(columns(WorkItem), pk="key")
    db.execute("CREATE INDEX IF NOT EXISTS work_status ON work(status, queued_at)")


STEPS: list[Callable[[Database], None]] = [_v1, _v2, _v3, _v4, _v5]
LATEST = len(STEPS)


def migrate(db: Database) -> int:
    """Bring the catalog to LATEST; returns the version it is at."""
    db.execute("PRAGMA journal_mode = WAL")
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number, step in enumerate(STEPS, start=1):
        if number > version:
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
    return max(version, LATEST)
