"""The catalog: what Atlas has done, behind one interface that owns every statement.

Callers hold a `Catalog` (`catalog/base.py`) and never see SQL. SQLite (`catalog/sqlite/`,
through the standard library's sqlite3) is the embedded default; another backend
implements the same protocol and `open_catalog` picks it from ATLAS_STATE.
"""

from __future__ import annotations

from pathlib import Path

from bot.catalog.base import (
    AuditLog,
    Catalog,
    Coordination,
    Decide,
    DrillLog,
    RequestChange,
    RequestLog,
    SnapshotLog,
)


def open_catalog(state: str | Path) -> Catalog:
    """The catalog ATLAS_STATE names: a SQLite file path (the default)."""
    from bot.catalog.sqlite import SqliteCatalog

    return SqliteCatalog(state)


__all__ = [
    "AuditLog",
    "Catalog",
    "Coordination",
    "Decide",
    "DrillLog",
    "RequestChange",
    "RequestLog",
    "SnapshotLog",
    "open_catalog",
]
