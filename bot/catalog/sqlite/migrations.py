"""Versioned schema changes of the SQLite catalog (`PRAGMA user_version`).

Every start runs the steps a catalog has not had yet, in order, so an older catalog keeps
working after an upgrade. Version 1 is the schema as it stood when versions began: it
creates what is missing and adds the columns records have gained, so catalogs from
before versioning arrive at version 1 unchanged in content.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.catalog.sql.schema import (
    add_chain_columns,
    add_missing_columns,
    add_request_notes,
    add_tag_columns,
    create_copies,
    create_tables,
    create_work,
    move_restores,
)
from bot.catalog.sql.tables import Database
from bot.records import Drill, Request, Restore, Snapshot, columns


def _v1(db: Database) -> None:
    create_tables(db)
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
    add_missing_columns(db["drills"], columns(Drill))
    db.execute("CREATE INDEX IF NOT EXISTS drills_started ON drills(started_at)")


def _v3(db: Database) -> None:
    """Snapshots record where each data block lies, for parallel restores."""
    add_missing_columns(db["snapshots"], columns(Snapshot))


def _v4(db: Database) -> None:
    """Snapshots say what they hold: a database, or a server's roles and tablespaces."""
    add_missing_columns(db["snapshots"], columns(Snapshot))
    db.execute("UPDATE snapshots SET kind = 'database' WHERE kind IS NULL")


def _v5(db: Database) -> None:
    """The fleet's work queue, which replicas claim from."""
    create_work(db)


def _v6(db: Database) -> None:
    """A staging refresh is a Restore, in a table of its own, not a drill."""
    move_restores(db)


def _v7(db: Database) -> None:
    """A refresh records the database it built beside staging, its swap and what it kept."""
    add_missing_columns(db["restores"], columns(Restore))


def _v8(db: Database) -> None:
    """Restores, drills and requests name the tables a job restores (none: all of them)."""
    for table, record in (("restores", Restore), ("drills", Drill), ("requests", Request)):
        if db[table].exists():
            add_missing_columns(db[table], columns(record))


STEPS: list[Callable[[Database], None]] = [
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _v6,
    _v7,
    _v8,
    add_tag_columns,
    add_chain_columns,
    add_request_notes,
    create_copies,
]
LATEST = len(STEPS)


def migrate(db: Database) -> int:
    """Bring the catalog to LATEST; returns the version it is at.

    Each step runs with its version bump in one `BEGIN IMMEDIATE` transaction: a process
    killed mid-step leaves the step undone, never half done (a refresh copied to
    `restores` but still among the drills), and of two processes starting together on
    an old catalog the second finds the step done. An up-to-date catalog takes no lock.
    """
    db.execute("PRAGMA journal_mode = WAL")
    if _version(db) >= LATEST:
        return _version(db)
    for number, step in enumerate(STEPS, start=1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if _version(db) < number:  # read again under the lock
                step(db)
                db.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return LATEST


def _version(db: Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])
