"""Restore jobs' records: staging refreshes in `restores`, drills in `drills`."""

from __future__ import annotations

from typing import Any, Unpack

from bot.catalog.sql.connection import Connection, NotFoundError
from bot.catalog.sql.tables import Conflict
from bot.errors import IdTaken, NotFound
from bot.owners import owner_gone, owner_id
from bot.records import (
    Drill,
    DrillFields,
    DrillStatus,
    JobRecord,
    Kind,
    RefreshFields,
    Restore,
    RestoreFields,
    encode,
    from_row,
    now,
    to_row,
)

TABLES: dict[Kind, tuple[str, type[Restore] | type[Drill]]] = {
    Kind.RESTORE: ("restores", Restore),
    Kind.DRILL: ("drills", Drill),
}


class JobRecords:
    """The statements of the restores and drills tables."""

    conn: Connection

    def add_job(self, job: JobRecord) -> None:
        job.status = DrillStatus.RUNNING
        job.owner = job.owner or owner_id()
        job.started_at = job.started_at or now()
        try:
            with self.conn.transaction() as db:
                db[TABLES[job.kind][0]].insert(to_row(job))
        except Conflict:
            raise IdTaken(f"Job id {job.id} is taken.", "draw another") from None

    def update_job(self, job_id: str, kind: Kind, **fields: Unpack[RestoreFields]) -> None:
        table, record = TABLES[kind]
        with self.conn.transaction() as db:
            db[table].update(job_id, encode(record, fields))

    def update_drill(self, drill_id: str, **fields: Unpack[DrillFields]) -> None:
        with self.conn.transaction() as db:
            db["drills"].update(drill_id, encode(Drill, fields))

    def get_job(self, job_id: str) -> JobRecord:
        with self.conn.db() as db:
            for table, record in TABLES.values():
                try:
                    return from_row(record, db[table].get(job_id))
                except NotFoundError:
                    continue
        raise NotFound(f"No drill or restore with id {job_id!r}.")

    def get_drill(self, drill_id: str) -> Drill:
        with self.conn.db() as db:
            try:
                return from_row(Drill, db["drills"].get(drill_id))
            except NotFoundError:
                raise NotFound(f"No drill with id {drill_id!r}.") from None

    def list_jobs(
        self,
        limit: int = 20,
        kind: Kind | None = None,
        database: str | None = None,
        request_id: str | None = None,
    ) -> list[JobRecord]:
        where, args = [], []
        for column, value in (("database", database), ("request_id", request_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        kinds = [kind] if kind is not None else list(TABLES)
        rows = [j for k in kinds for j in self._jobs_where(k, " AND ".join(where), args, limit)]
        rows.sort(key=lambda j: j.started_at or "", reverse=True)
        return rows[:limit]

    def jobs_between(self, since: str, until: str, database: str | None = None) -> list[JobRecord]:
        where, args = "started_at >= ? AND started_at < ?", [since, until]
        if database is not None:
            where, args = where + " AND database = ?", [*args, database]
        rows = [j for kind in TABLES for j in self._jobs_where(kind, where, args)]
        return sorted(rows, key=lambda j: (j.started_at or "", j.id))

    def last_passed_job(self, database: str) -> JobRecord | None:
        """The newest passed drill or refresh of the whole database: an undo, or a job of
        some tables (`--table`), proves no snapshot restores."""
        passed = "database = ? AND status = 'passed' AND coalesce(tables, '[]') = '[]'"
        rows = [
            *self._jobs_where(Kind.DRILL, passed, [database], 1),
            *self._jobs_where(Kind.RESTORE, passed + " AND undo_of IS NULL", [database], 1),
        ]
        return max(rows, key=lambda j: j.started_at or "", default=None)

    def last_passed_from(self, copy: str) -> JobRecord | None:
        """The newest passed whole-database drill or refresh read from a copy (`--from`):
        what proves that destination restores."""
        passed = "from_copy = ? AND status = 'passed' AND coalesce(tables, '[]') = '[]'"
        rows = [
            *self._jobs_where(Kind.DRILL, passed, [copy], 1),
            *self._jobs_where(Kind.RESTORE, passed + " AND undo_of IS NULL", [copy], 1),
        ]
        return max(rows, key=lambda j: j.started_at or "", default=None)

    def drills_to_clean(self) -> list[Drill]:
        where = "scratch_db IS NOT NULL AND scratch_dropped = 0 AND coalesce(kept, 0) = 0"
        return [
            d
            for d in self._jobs_where(Kind.DRILL, where, [])
            if isinstance(d, Drill) and (d.status != DrillStatus.RUNNING or owner_gone(d.owner))
        ]

    def update_refresh(self, job_id: str, **fields: Unpack[RefreshFields]) -> None:
        with self.conn.transaction() as db:
            db["restores"].update(job_id, encode(Restore, fields))

    def kept_stagings(self, database: str | None = None) -> list[Restore]:
        where, args = "kept_db IS NOT NULL AND kept_dropped = 0", []
        if database is not None:
            where, args = where + " AND database = ?", [database]
        return [r for r in self._jobs_where(Kind.RESTORE, where, args) if isinstance(r, Restore)]

    def refreshes_to_clean(self) -> list[Restore]:
        where = "new_db IS NOT NULL AND swapped = 0 AND coalesce(new_db_dropped, 0) = 0"
        return [
            r
            for r in self._jobs_where(Kind.RESTORE, where, [])
            if isinstance(r, Restore) and (r.status != DrillStatus.RUNNING or owner_gone(r.owner))
        ]

    def tables_restores_died(self) -> list[Restore]:
        where = "status = 'running' AND new_db IS NULL AND coalesce(tables, '[]') <> '[]'"
        return [
            r
            for r in self._jobs_where(Kind.RESTORE, where, [])
            if isinstance(r, Restore) and owner_gone(r.owner)
        ]

    def running_jobs(self) -> list[JobRecord]:
        return [j for kind in TABLES for j in self._jobs_where(kind, "status = 'running'", [])]

    def _jobs_where(
        self, kind: Kind, where: str, args: list[Any], limit: int | None = None
    ) -> list[JobRecord]:
        table, record = TABLES[kind]
        with self.conn.db() as db:
            rows = db[table].rows_where(
                where or None, args, order_by="started_at DESC", limit=limit
            )
            return [from_row(record, r) for r in rows]
