"""The catalog in one SQLite file (the default, for one process): the shared statements
(`catalog/sql/`) over a file opened per call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot import files
from bot.catalog.sql.audit import Audit
from bot.catalog.sql.coordination import Coordination
from bot.catalog.sql.copies import CopyRecords
from bot.catalog.sql.jobs import JobRecords
from bot.catalog.sql.requests import RequestRecords
from bot.catalog.sql.snapshots import SnapshotRecords
from bot.catalog.sql.work import Work
from bot.catalog.sqlite import migrations
from bot.catalog.sqlite.connection import Database, SqliteConnection


class SqliteCatalog(
    SnapshotRecords, RequestRecords, JobRecords, Coordination, Work, CopyRecords, Audit
):
    """`bot.catalog.Catalog` on SQLite; migrated to the latest schema when opened."""

    conn: SqliteConnection

    def __init__(self, path: str | Path, access: files.Access = files.PRIVATE) -> None:
        self.path = Path(path)
        self.conn = SqliteConnection(self.path, access)
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
