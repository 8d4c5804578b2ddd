"""Drills and staging refreshes: each restore job's record."""

from __future__ import annotations

from typing import Any, Unpack

from bot.catalog.sql.connection import Connection, NotFoundError
from bot.errors import NotFound
from bot.owners import owner_gone, owner_id
from bot.records import Drill, DrillFields, DrillStatus, Kind, encode, from_row, now, to_row


class Drills:
    """The drills table's statements."""

    conn: Connection

    def add_drill(self, drill: Drill) -> None:
        drill.status = DrillStatus.RUNNING
        drill.owner = drill.owner or owner_id()
        drill.started_at = drill.started_at or now()
        with self.conn.transaction() as db:
            db["drills"].insert(to_row(drill))

    def update_drill(self, drill_id: str, **fields: Unpack[DrillFields]) -> None:
        with self.conn.transaction() as db:
            db["drills"].update(drill_id, encode(Drill, fields))

    def get_drill(self, drill_id: str) -> Drill:
        with self.conn.db() as db:
            try:
                return from_row(Drill, db["drills"].get(drill_id))
            except NotFoundError:
                raise NotFound(f"No drill with id {drill_id!r}.") from None

    def list_drills(
        self,
        limit: int = 20,
        kind: Kind | None = None,
        database: str | None = None,
        request_id: str | None = None,
    ) -> list[Drill]:
        where, args = [], []
        for column, value in (("kind", kind), ("database", database), ("request_id", request_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value))
        return self._drills_where(" AND ".join(where) or None, args, limit)

    def last_passed_drill(self, database: str) -> Drill | None:
        rows = self._drills_where("database = ? AND status = 'passed'", [database], 1)
        return rows[0] if rows else None

    def drills_to_clean(self) -> list[Drill]:
        return [
            d
            for d in self._drills_where(
                "scratch_db IS NOT NULL AND scratch_dropped = 0 AND coalesce(kept, 0) = 0", []
            )
            if d.status != DrillStatus.RUNNING or owner_gone(d.owner)
        ]

    def _drills_where(
        self, where: str | None, args: list[Any], limit: int | None = None
    ) -> list[Drill]:
        with self.conn.db() as db:
            rows = db["drills"].rows_where(where, args, order_by="started_at DESC", limit=limit)
            return [from_row(Drill, r) for r in rows]
