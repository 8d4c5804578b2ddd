"""The snapshots table: one row per snapshot, and the unique index that lets only one
snapshot of a database run at a time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Unpack

from bot.catalog.sql.audit import write_audit
from bot.catalog.sql.connection import Conflict, Connection, NotFoundError
from bot.errors import Busy, IdTaken, NotFound
from bot.owners import owner_gone, owner_id
from bot.records import (
    Snapshot,
    SnapshotFields,
    SnapshotKind,
    SnapshotResult,
    SnapshotStatus,
    encode,
    from_row,
    now,
    to_row,
)
from bot.tags import matches
from bot.text import clean_text


class SnapshotRecords:
    """The snapshots table's statements."""

    conn: Connection

    def begin_snapshot(self, snap: Snapshot) -> Snapshot:
        snap.status = SnapshotStatus.RUNNING
        snap.owner = snap.owner or owner_id()
        snap.started_at = snap.started_at or now()
        for _ in range(3):
            try:
                with self.conn.transaction() as db:
                    snap.heartbeat_at = db.clock_iso()  # by the catalog's clock, as every beat
                    db["snapshots"].insert(to_row(snap))
                return snap
            except Conflict:
                other = self.running_snapshot(snap.database, snap.environment)
                if other is None and self.has_snapshot(snap.id):
                    raise IdTaken(f"Snapshot id {snap.id} is taken.", "draw another") from None
            if other is not None:
                raise Busy(
                    f"A snapshot of {snap.database} is already running: {other.id}, "
                    f"started by {other.requested_by or 'someone'} at {other.started_at}.",
                    "wait for it to finish; `atlas list` shows its progress",
                )
            # the one in the way finished between our insert and our look: try again
        raise Busy(
            f"Snapshots of {snap.database} kept starting at the same moment as this one.",
            "try again",
        )

    def running_snapshot(self, database: str, environment: str) -> Snapshot | None:
        rows = self._snapshots_where(
            "database = ? AND environment = ? AND status = 'running'", [database, environment]
        )
        return rows[0] if rows else None

    def update_snapshot(self, snap_id: str, **fields: Unpack[SnapshotFields]) -> None:
        with self.conn.transaction() as db:
            db["snapshots"].update(snap_id, encode(Snapshot, fields))

    def finish_snapshot(
        self,
        snap_id: str,
        status: SnapshotStatus,
        audit: tuple[str, str, dict[str, Any]] | None = None,
        **fields: Unpack[SnapshotResult],
    ) -> None:
        changes = encode(Snapshot, {"status": status, "finished_at": now(), **fields})
        with self.conn.transaction() as db:
            db["snapshots"].update(snap_id, changes)
            if audit is not None:
                actor, action, detail = audit
                write_audit(db, actor, action, snap_id, detail)

    def add_snapshot(self, snap: Snapshot) -> bool:
        try:
            with self.conn.transaction() as db:
                db["snapshots"].insert(to_row(snap))
        except Conflict:
            return False
        return True

    def get_snapshot(self, snap_id: str) -> Snapshot:
        snap_id = clean_text(snap_id, 100)  # typed by a person: any bytes may arrive
        with self.conn.db() as db:
            try:
                return from_row(Snapshot, db["snapshots"].get(snap_id))
            except NotFoundError:
                pass
        raise NotFound(
            f"No snapshot with id {snap_id!r}.", "`atlas list` or `/atlas list` shows the ids"
        )

    def has_snapshot(self, snap_id: str) -> bool:
        with self.conn.db() as db:
            return (
                db.execute("SELECT 1 FROM snapshots WHERE id = ?", [snap_id]).fetchone() is not None
            )

    def snapshot_ids_like(self, prefix: str, limit: int = 6) -> list[str]:
        prefix = clean_text(prefix, 100)
        with self.conn.db() as db:
            rows = db.execute(
                "SELECT id FROM snapshots WHERE substr(id, 1, CAST(? AS INTEGER)) = ? "
                "ORDER BY started_at DESC, id DESC LIMIT ?",
                [len(prefix), prefix, limit],
            ).fetchall()
        return [str(r[0]) for r in rows]

    def list_snapshots(
        self,
        limit: int = 20,
        database: str | None = None,
        status: SnapshotStatus | None = None,
        environment: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[Snapshot]:
        where, args = [], []
        for column, value in (
            ("database", database),
            ("status", status),
            ("environment", environment),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value))
        if not tags:
            return self._snapshots_where(" AND ".join(where) or None, args, limit)
        # tags are JSON text, matched here rather than in two dialects' JSON functions:
        # only tagged snapshots are read, and a database has thousands at most
        where.append("tags IS NOT NULL")
        found = self._snapshots_where(" AND ".join(where), args)
        return [s for s in found if matches(s.tags, tags)][:limit]

    def snapshots_between(
        self, since: str, until: str, database: str | None = None
    ) -> list[Snapshot]:
        where, args = "started_at >= ? AND started_at < ?", [since, until]
        if database is not None:
            where, args = where + " AND database = ?", [*args, database]
        return self._snapshots_where(where, args)[::-1]

    def databases_between(self, since: str, until: str) -> list[str]:
        with self.conn.db() as db:
            rows = db.execute(
                "SELECT DISTINCT database FROM snapshots WHERE started_at >= ? AND started_at < ?"
                " AND coalesce(kind, ?) = ? ORDER BY 1",
                [since, until, SnapshotKind.DATABASE.value, SnapshotKind.DATABASE.value],
            ).fetchall()
        return [str(r[0]) for r in rows]

    def good_before(self, database: str, before: str) -> Snapshot | None:
        where = "database = ? AND started_at < ? AND status IN ('ok', 'deleted')"
        found = self._snapshots_where(where, [database, before], 1)
        return found[0] if found else None

    def snapshot_counts(self, database: str) -> dict[str, int]:
        with self.conn.db() as db:
            rows = db.execute(
                "SELECT status, count(*) FROM snapshots WHERE database = ? GROUP BY status",
                [database],
            ).fetchall()
        return {str(status): int(n) for status, n in rows}

    def first_good_snapshot_at(self, database: str) -> str | None:
        with self.conn.db() as db:
            row = db.execute(
                "SELECT min(started_at) FROM snapshots "
                "WHERE database = ? AND verified_at IS NOT NULL",
                [database],
            ).fetchone()
        return row[0] if row else None

    def kept_databases(self, environment: str) -> list[str]:
        with self.conn.db() as db:
            rows = db.execute(
                "SELECT DISTINCT database FROM snapshots "
                "WHERE environment = ? AND status != ? AND coalesce(kind, ?) = ? ORDER BY 1",
                [
                    environment,
                    SnapshotStatus.DELETED.value,
                    SnapshotKind.DATABASE.value,
                    SnapshotKind.DATABASE.value,
                ],
            ).fetchall()
        return [str(r[0]) for r in rows]

    def beat_snapshot(self, snap_id: str) -> None:
        with self.conn.db() as db:
            db.execute(
                "UPDATE snapshots SET heartbeat_at = ? WHERE id = ?", [db.clock_iso(), snap_id]
            )

    def stale_running(self, stale_after_s: float) -> list[Snapshot]:
        with self.conn.db() as db:
            cutoff = db.clock() - stale_after_s
        return [
            s
            for s in self._snapshots_where("status = 'running'", [])
            if owner_gone(s.owner)
            or datetime.fromisoformat(s.heartbeat_at or s.started_at or now()).timestamp() < cutoff
        ]

    def left_behind(self) -> list[Snapshot]:
        return self._snapshots_where("status != 'running' AND pending_ref IS NOT NULL", [])

    def _snapshots_where(
        self, where: str | None, args: list[Any], limit: int | None = None
    ) -> list[Snapshot]:
        with self.conn.db() as db:
            return [
                from_row(Snapshot, r)
                for r in db["snapshots"].rows_where(
                    where, args, order_by="started_at DESC, id DESC", limit=limit
                )
            ]
