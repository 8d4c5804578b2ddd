"""The SQL both catalog backends speak, over one open connection: rows as dicts by
primary key, inserts, updates and upserts, and the table creation migrations need.

Statements are written once with `?` placeholders; on PostgreSQL they become psycopg's
`%s`. Identifiers are always the catalog's own names (tables and record fields), quoted;
values always travel as parameters. The few places the two engines differ (types, schema
introspection, row locks, the clock) are methods here, chosen by `dialect`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

SQLITE, POSTGRESQL = "sqlite", "postgresql"

# the primary key of every catalog table
KEYS = {
    "snapshots": "id",
    "requests": "id",
    "drills": "id",
    "restores": "id",
    "reminders": "key",
    "leases": "name",
    "seen_requests": "key",
    "audit": "id",
    "work": "key",
    "copies": "key",
}

_TYPES = {
    SQLITE: {str: "TEXT", int: "INTEGER", float: "FLOAT", bytes: "BLOB", bool: "INTEGER"},
    POSTGRESQL: {
        str: "TEXT",
        int: "BIGINT",
        float: "DOUBLE PRECISION",
        bytes: "BYTEA",
        bool: "INTEGER",  # records store flags as 0/1 on both engines
    },
}


class NotFoundError(LookupError):
    """No row has that primary key."""


class Conflict(Exception):
    """A row with that key already exists (a unique index refused the insert)."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Database:
    """One open connection (sqlite3 or psycopg, autocommit unless in a transaction)."""

    def __init__(self, conn: Any, dialect: str = SQLITE) -> None:
        self.conn, self.dialect = conn, dialect

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Any:
        if self.dialect == POSTGRESQL:
            sql = sql.replace("%", "%%").replace("?", "%s")
        return self.conn.execute(sql, list(parameters or []))

    def __getitem__(self, name: str) -> Table:
        return Table(self, name)

    def lock(self, table: str, key: Any) -> None:
        """Hold `table`'s row `key` until the transaction ends, so racing changes to it
        queue up. SQLite's `BEGIN IMMEDIATE` already serialises every writer."""
        if self.dialect == POSTGRESQL:
            self.execute(f"SELECT 1 FROM {_q(table)} WHERE {_q(KEYS[table])} = ? FOR UPDATE", [key])

    def advisory_lock(self, key: int) -> None:
        """Serialise with every other transaction taking the same key, until this one
        ends (on SQLite, `BEGIN IMMEDIATE` already has)."""
        if self.dialect == POSTGRESQL:
            self.execute("SELECT pg_advisory_xact_lock(?)", [key])

    def clock_iso(self) -> str:
        """`clock()` as records store times (UTC, ISO 8601, milliseconds)."""
        return datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")

    def clock(self) -> float:
        """Seconds since the epoch by the catalog's clock: on PostgreSQL the server's, so
        replicas on machines whose clocks disagree still agree on when a lease ends."""
        if self.dialect == POSTGRESQL:
            return float(self.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
        return time.time()


class Table:
    """One catalog table, made from the record that declares its columns."""

    def __init__(self, db: Database, name: str) -> None:
        self.db, self.name = db, name

    @property
    def pk(self) -> str:
        return KEYS[self.name]

    # -- schema ------------------------------------------------------------------------------

    def exists(self) -> bool:
        if self.db.dialect == POSTGRESQL:
            sql = "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?"
        else:
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.db.execute(sql, [self.name]).fetchone() is not None

    @property
    def columns_dict(self) -> dict[str, str]:
        if self.db.dialect == POSTGRESQL:
            rows = self.db.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ?",
                [self.name],
            ).fetchall()
            return {str(r[0]): str(r[1]) for r in rows}
        info = self.db.execute(f"PRAGMA table_info({_q(self.name)})").fetchall()
        return {str(r[1]): str(r[2]) for r in info}

    def create(
        self,
        columns: dict[str, Any],
        pk: str | tuple[str, ...],
        not_null: Iterable[str] = (),
    ) -> None:
        types = _TYPES[self.db.dialect]
        required = set(not_null)
        keys = (pk,) if isinstance(pk, str) else tuple(pk)
        lines = []
        for col, typ in columns.items():
            line = f"{_q(col)} {types.get(typ, 'TEXT')}"
            if len(keys) == 1 and col == keys[0]:
                line += " PRIMARY KEY"
            if col in required:
                line += " NOT NULL"
            lines.append(line)
        if len(keys) > 1:
            lines.append(f"PRIMARY KEY ({', '.join(_q(k) for k in keys)})")
        self.db.execute(f"CREATE TABLE {_q(self.name)} (\n   " + ",\n   ".join(lines) + "\n)")

    def add_column(self, name: str, typ: Any) -> None:
        self.db.execute(
            f"ALTER TABLE {_q(self.name)} ADD COLUMN {_q(name)} "
            f"{_TYPES[self.db.dialect].get(typ, 'TEXT')}"
        )

    def create_index(self, columns: Sequence[str]) -> None:
        index = _q(f"idx_{self.name}_{'_'.join(columns)}")
        cols = ", ".join(_q(c) for c in columns)
        self.db.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {_q(self.name)} ({cols})")

    # -- rows --------------------------------------------------------------------------------

    def insert(self, row: dict[str, Any]) -> None:
        cols = list(row)
        self.db.execute(
            f"INSERT INTO {_q(self.name)} ({', '.join(_q(c) for c in cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})",
            [row[c] for c in cols],
        )

    def insert_all(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.insert(row)

    def get(self, key: Any) -> dict[str, Any]:
        rows = list(self.rows_where(f"{_q(self.pk)} = ?", [key], limit=1))
        if not rows:
            raise NotFoundError(f"{self.name}: no row {key!r}")
        return rows[0]

    def update(self, key: Any, fields: dict[str, Any]) -> None:
        """Change some columns of one row; NotFoundError if there is no such row."""
        if not fields:
            self.get(key)
            return
        cur = self.db.execute(
            f"UPDATE {_q(self.name)} SET {', '.join(f'{_q(c)} = ?' for c in fields)} "
            f"WHERE {_q(self.pk)} = ?",
            [*fields.values(), key],
        )
        if cur.rowcount == 0:
            raise NotFoundError(f"{self.name}: no row {key!r}")

    def rows_where(
        self,
        where: str | None = None,
        args: Sequence[Any] = (),
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        sql = f"SELECT * FROM {_q(self.name)}"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cur = self.db.execute(sql, list(args))
        names = [d[0] for d in cur.description]
        for row in cur.fetchall():
            yield dict(zip(names, row, strict=True))

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.rows_where()
