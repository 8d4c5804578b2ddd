"""The catalog's tables as the records declare them, for both backends' migrations: a
new field in `records.py` becomes a column at the next start."""

from __future__ import annotations

from typing import Any

from bot.catalog.sql.tables import Database, Table
from bot.records import (
    AuditEntry,
    Copy,
    Drill,
    Request,
    Restore,
    Restored,
    Snapshot,
    WorkItem,
    columns,
)


def add_missing_columns(table: Table, cols: dict[str, Any]) -> None:
    have = table.columns_dict
    for col, typ in cols.items():
        if col not in have:
            table.add_column(col, typ)


def create_tables(db: Database) -> None:
    """Every table but the audit log (whose key and guard each engine spells its own way)
    and the work queue; what exists is completed, not replaced."""
    snaps = db["snapshots"]
    if not snaps.exists():
        snaps.create(columns(Snapshot), pk="id", not_null={"database", "status"})
    add_missing_columns(snaps, columns(Snapshot))
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS one_running_snapshot "
        "ON snapshots(database, environment) WHERE status = 'running'"
    )
    db.execute("CREATE INDEX IF NOT EXISTS snapshots_started ON snapshots(started_at)")
    if not db["requests"].exists():
        db["requests"].create(columns(Request), pk="id")
        db["requests"].create_index(["channel", "ts"])
    add_missing_columns(db["requests"], columns(Request))
    if not db["reactions"].exists():
        db["reactions"].create(
            {"request_id": str, "user": str, "emoji": str, "at": str},
            pk=("request_id", "user", "emoji"),
        )
    if not db["drills"].exists():
        db["drills"].create(columns(Drill), pk="id")
    add_missing_columns(db["drills"], columns(Drill))
    create_restores(db)
    if not db["reminders"].exists():
        db["reminders"].create({"key": str, "database": str, "sent_at": str, "text": str}, pk="key")
    if not db["leases"].exists():
        db["leases"].create({"name": str, "owner": str, "expires_at": float}, pk="name")
    if not db["seen_requests"].exists():
        db["seen_requests"].create({"key": str, "seen_at": str}, pk="key")


def create_work(db: Database) -> None:
    """The fleet's work queue, which replicas claim from."""
    if not db["work"].exists():
        db["work"].create(columns(WorkItem), pk="key")
    db.execute("CREATE INDEX IF NOT EXISTS work_status ON work(status, queued_at)")


def create_restores(db: Database) -> None:
    """Staging refreshes' own table (they were rows of `drills` of kind 'restore')."""
    if not db["restores"].exists():
        db["restores"].create(columns(Restore), pk="id")
    add_missing_columns(db["restores"], columns(Restore))
    db.execute("CREATE INDEX IF NOT EXISTS restores_started ON restores(started_at)")


def move_restores(db: Database) -> None:
    """Refreshes recorded as drills of kind 'restore' move to `restores`, in the caller's
    transaction: every column a drill and a refresh share, copied as it is."""
    create_restores(db)
    if "kind" not in db["drills"].columns_dict:
        return  # a catalog made after the split: its drills table never held refreshes
    had = db["drills"].columns_dict  # a later step adds what an old catalog lacked
    cols = ", ".join(f'"{c}"' for c in columns(Restored) if c in had)
    db.execute(f"INSERT INTO restores ({cols}) SELECT {cols} FROM drills WHERE kind = 'restore'")
    db.execute("DELETE FROM drills WHERE kind = 'restore'")


def add_record_columns(db: Database, *tables: tuple[str, type]) -> None:
    """A step that only adds fields records gained: each table that exists gets the
    columns its record has and it lacks (both engines run the same step)."""
    for table, record in tables:
        if db[table].exists():
            add_missing_columns(db[table], columns(record))


def add_tag_columns(db: Database) -> None:
    """Snapshots carry tags (the versions they were taken at), and so do queued ones."""
    add_record_columns(db, ("snapshots", Snapshot), ("work", WorkItem))


def add_chain_columns(db: Database) -> None:
    """Audit entries carry a hash chain; those written before keep none."""
    add_record_columns(db, ("audit", AuditEntry))


def add_request_notes(db: Database) -> None:
    """Requests carry the requester's reason (from the restore modal)."""
    add_record_columns(db, ("requests", Request))


def create_copies(db: Database) -> None:
    """Each snapshot's copies in the further destinations of ATLAS_COPIES (3-2-1)."""
    if not db["copies"].exists():
        db["copies"].create(columns(Copy), pk="key", not_null={"snapshot_id", "destination"})
    add_missing_columns(db["copies"], columns(Copy))
    db.execute("CREATE INDEX IF NOT EXISTS copies_snapshot ON copies(snapshot_id)")
    db.execute("CREATE INDEX IF NOT EXISTS copies_state ON copies(destination, state)")
    add_record_columns(db, ("drills", Drill), ("restores", Restore))  # from_copy
