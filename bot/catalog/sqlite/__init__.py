"""The catalog in one SQLite file (the default): one class per table, one connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.catalog.sqlite import migrations
from bot.catalog.sqlite.audit import Audit
from bot.catalog.sqlite.connection import Connection, Database
from bot.catalog.sqlite.coordination import Coordination
from bot.catalog.sqlite.drills import Drills
from bot.catalog.sqlite.requests import Requests
from bot.catalog.sqlite.snapshots import Snapshots


class SqliteCatalog(Snapshots, Requests, Drills, Coordination, Audit):
    """`bot.catalog.Catalog` on SQLite; migrated to the latest schema when opened."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = Connection(self.path)
        with self.conn.db() as db:
            self._version = migrations.migrate(db)

    def ping(self) -> None:
        with self.conn.db() as db:
            db.execute("SELECT 1 FROM snapshots LIMIT 1").fetchall()

    def schema_version(self) -> int:
        return self._version

    @contextmanager
    def db(self) -> Iterator[Database]:
        """The raw database, for tests of this backend only."""
        with self.conn.db() as db:
            yield db


__all__ = ["SqliteCatalog"]
