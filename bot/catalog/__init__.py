"""The catalog: what Atlas has done, behind one interface that owns every statement.

Callers hold a `Catalog` (`catalog/base.py`) and never see SQL. The statements are written
once (`catalog/sql/`); SQLite (`catalog/sqlite/`) is the embedded default for one
process, and PostgreSQL (`catalog/postgres/`) is shared by replicas. `open_catalog`
picks one from ATLAS_STATE.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot import files
from bot.catalog.base import (
    AuditLog,
    Catalog,
    Coordination,
    Decide,
    JobLog,
    RequestChange,
    RequestLog,
    SnapshotLog,
    WorkQueue,
)


def is_url(state: object) -> bool:
    """Whether ATLAS_STATE names a PostgreSQL catalog rather than a SQLite file."""
    return isinstance(state, str) and state.strip().lower().startswith(
        ("postgresql://", "postgres://")
    )


def open_catalog(
    state: str | Path,
    before_create: Callable[[], None] | None = None,
    access: files.Access = files.PRIVATE,
) -> Catalog:
    """The catalog ATLAS_STATE names: a postgresql:// URL, or a SQLite file path.
    `before_create` runs before a new PostgreSQL catalog's tables are made (the check
    that the database is not one Atlas backs up or restores into); `access` says who on
    the host may read a SQLite file."""
    if is_url(state):
        from bot.catalog.postgres import PostgresCatalog

        return PostgresCatalog(str(state).strip(), before_create)
    from bot.catalog.sqlite import SqliteCatalog

    return SqliteCatalog(state, access)


__all__ = [
    "AuditLog",
    "Catalog",
    "Coordination",
    "Decide",
    "JobLog",
    "RequestChange",
    "RequestLog",
    "SnapshotLog",
    "WorkQueue",
    "is_url",
    "open_catalog",
]
