"""The catalog: what Atlas has done. SQLite (sqlite-utils) is the embedded default."""

from bot.catalog.sqlite import (
    DELETED,
    FAILED,
    INTERRUPTED,
    OK,
    RUNNING,
    Catalog,
    now,
    owner_id,
    pid_alive,
)

__all__ = [
    "DELETED",
    "FAILED",
    "INTERRUPTED",
    "OK",
    "RUNNING",
    "Catalog",
    "now",
    "owner_id",
    "pid_alive",
]
