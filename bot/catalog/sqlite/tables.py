"""The little of sqlite-utils the catalog used, over the standard library's sqlite3:
rows as dicts by primary key, inserts, updates, upserts, and the table creation the
migrations need.

Loading sqlite-utils cost more than everything else `atlas list` does; this costs nothing.
Identifiers are always the catalog's own names (tables and record fields), quoted;
values always travel as parameters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

_TYPES = {str: "TEXT", int: "INTEGER", float: "FLOAT", bytes: "BLOB", bool: "INTEGER"}


class NotFoundError(LookupError):
    """No row has that primary key."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Database:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> sqlite3.Cursor:
        return self.conn.execute(sql, parameters or [])

    def __getitem__(self, name: str) -> Table:
        return Table(self, name)


class Table:
    def __init__(self, db: Database, name: str) -> None:
        self.db, self.name = db, name

    # -- schema ------------------------------------------------------------------------------

    def exists(self) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [self.name]
        ).fetchone()
        return row is not None

    @property
    def columns_dict(self) -> dict[str, str]:
        return {
            str(r[1]): str(r[2])
            for r in self.db.execute(f"PRAGMA table_info({_q(self.name)})").fetchall()
        }

    def pks(self) -> list[str]:
        info = self.db.execute(f"PRAGMA table_info({_q(self.name)})").fetchall()
        keyed = sorted((int(r[5]), str(r[1])) for r in info if int(r[5]) > 0)
        return [name for _, name in keyed] or ["rowid"]

    def create(
        self,
        columns: dict[str, Any],
        pk: str | tuple[str, ...],
        not_null: Iterable[str] = (),
    ) -> None:
        required = set(not_null)
        keys = (pk,) if isinstance(pk, str) else tuple(pk)
        lines = []
        for col, typ in columns.items():
            line = f"{_q(col)} {_TYPES.get(typ, 'TEXT')}"
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
            f"ALTER TABLE {_q(self.name)} ADD COLUMN {_q(name)} {_TYPES.get(typ, 'TEXT')}"
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

    def upsert(self, row: dict[str, Any], pk: str) -> None:
        cols = list(row)
        changes = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in cols if c != pk)
        self.db.execute(
            f"INSERT INTO {_q(self.name)} ({', '.join(_q(c) for c in cols)}) "
            f"VALUES ({', '.join('?' * len(cols))}) ON CONFLICT({_q(pk)}) DO UPDATE SET {changes}",
            [row[c] for c in cols],
        )

    def get(self, key: Any) -> dict[str, Any]:
        pk = self.pks()[0]
        rows = list(self.rows_where(f"{_q(pk)} = ?", [key], limit=1))
        if not rows:
            raise NotFoundError(f"{self.name}: no row {key!r}")
        return rows[0]

    def update(self, key: Any, fields: dict[str, Any]) -> None:
        """Change some columns of one row; NotFoundError if there is no such row."""
        pk = self.pks()[0]
        if not fields:
            self.get(key)
            return
        cur = self.db.execute(
            f"UPDATE {_q(self.name)} SET {', '.join(f'{_q(c)} = ?' for c in fields)} "
            f"WHERE {_q(pk)} = ?",
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
        for row in cur:
            yield dict(zip(names, row, strict=True))

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.rows_where()
