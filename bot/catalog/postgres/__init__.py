"""The catalog in PostgreSQL, shared by any number of `atlas serve` replicas: the same
statements as SQLite's (`catalog/sql/`), with PostgreSQL's row locks and unique indexes
making each decision once across processes and machines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bot.catalog.postgres import migrations
from bot.catalog.postgres.connection import PostgresConnection
from bot.catalog.sql.audit import Audit
from bot.catalog.sql.coordination import Coordination
from bot.catalog.sql.copies import CopyRecords
from bot.catalog.sql.jobs import JobRecords
from bot.catalog.sql.requests import RequestRecords
from bot.catalog.sql.snapshots import SnapshotRecords
from bot.catalog.sql.tables import Database
from bot.catalog.sql.work import Work


class PostgresCatalog(
    SnapshotRecords, RequestRecords, JobRecords, Coordination, Work, CopyRecords, Audit
):
    """`bot.catalog.Catalog` on PostgreSQL; migrated to the latest schema when opened."""

    conn: PostgresConnection

    def __init__(self, url: str, before_create: Callable[[], None] | None = None) -> None:
        self.url = url
        self.conn = PostgresConnection(url)
        with self.conn.db() as db:
            current = migrations.current(db)
        if current >= migrations.LATEST:  # the common case: one read, no lock
            self._version = current
            return
        if current == 0 and before_create is not None:
            before_create()
        with self.conn.transaction() as db:
            self._version = migrations.migrate(db)

    def describe(self) -> str:
        return self.conn.describe()

    def ping(self) -> None:
        with self.conn.db() as db:
            db.execute("SELECT 1 FROM snapshots LIMIT 1").fetchall()

    def schema_version(self) -> int:
        return self._version

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def db(self) -> Iterator[Database]:
        """The raw database, for tests of this backend only."""
        with self.conn.db() as db:
            yield db


__all__ = ["PostgresCatalog"]
