"""The fleet's work queue: databases to snapshot, claimed by whichever replica has room.

A claim counts what runs across all replicas, so ATLAS_MAX_PARALLEL holds for the whole
fleet; claims are serialised (an advisory lock on PostgreSQL, SQLite's write lock), so two
replicas never take the same database or overshoot the limit together.
"""

from __future__ import annotations

from bot.catalog.sql.connection import Connection, Database
from bot.records import WorkItem, WorkStatus, encode, from_row, to_row

WORK_LOCK = 0x61746C6177  # "atlaw": the work queue's advisory lock


def _live(db: Database, stale_after_s: float) -> float:
    return db.clock() - stale_after_s


class Work:
    """The fleet work queue's statements."""

    conn: Connection

    def enqueue_work(self, items: list[WorkItem]) -> int:
        """Queue items (a run's databases); an item already queued is left as it is."""
        added = 0
        with self.conn.transaction() as db:
            t = db.clock()
            for item in items:
                item.status, item.queued_at = WorkStatus.QUEUED, t
                row = to_row(item)
                cols = list(row)
                cur = db.execute(
                    f"INSERT INTO work ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                    "ON CONFLICT DO NOTHING",
                    [row[c] for c in cols],
                )
                added += cur.rowcount
        return added

    def claim_work(self, owner: str, limit: int, stale_after_s: float) -> WorkItem | None:
        """The oldest queued item, now `owner`'s, unless `limit` items already run (those
        whose replica stopped beating do not count)."""
        with self.conn.transaction() as db:
            db.advisory_lock(WORK_LOCK)
            live = _live(db, stale_after_s)
            running = db.execute(
                "SELECT count(*) FROM work WHERE status = 'running' AND heartbeat_at > ?", [live]
            ).fetchone()[0]
            if int(running) >= limit:
                return None
            rows = list(
                db["work"].rows_where("status = 'queued'", [], order_by="queued_at, key", limit=1)
            )
            if not rows:
                return None
            item = from_row(WorkItem, rows[0])
            item.status, item.owner, item.heartbeat_at = WorkStatus.RUNNING, owner, db.clock()
            db["work"].update(
                item.key,
                encode(
                    WorkItem,
                    {"status": item.status, "owner": owner, "heartbeat_at": item.heartbeat_at},
                ),
            )
            return item

    def beat_work(self, owner: str) -> None:
        """`owner` is alive: its running items are not to be taken from it."""
        with self.conn.db() as db:
            db.execute(
                "UPDATE work SET heartbeat_at = ? WHERE owner = ? AND status = 'running'",
                [db.clock(), owner],
            )

    def finish_work(
        self,
        key: str,
        status: WorkStatus,
        snapshot_id: str | None = None,
        error: str | None = None,
    ) -> None:
        with self.conn.transaction() as db:
            db["work"].update(
                key,
                encode(WorkItem, {"status": status, "snapshot_id": snapshot_id, "error": error}),
            )

    def run_work(self, run: str) -> list[WorkItem]:
        with self.conn.db() as db:
            rows = db["work"].rows_where("run = ?", [run], order_by="queued_at, key")
            return [from_row(WorkItem, r) for r in rows]

    def queued_work(self) -> int:
        with self.conn.db() as db:
            return int(
                db.execute("SELECT count(*) FROM work WHERE status = 'queued'").fetchone()[0]
            )

    def abandon_work(self, stale_after_s: float) -> list[WorkItem]:
        """Running items whose replica stopped beating, marked interrupted (once)."""
        with self.conn.db() as db:  # the common case, nothing stale: a read, no lock
            stale = db.execute(
                "SELECT count(*) FROM work WHERE status = 'running' AND heartbeat_at <= ?",
                [_live(db, stale_after_s)],
            ).fetchone()[0]
        if not stale:
            return []
        with self.conn.transaction() as db:
            db.advisory_lock(WORK_LOCK)
            live = _live(db, stale_after_s)
            rows = list(db["work"].rows_where("status = 'running' AND heartbeat_at <= ?", [live]))
            out = []
            for r in rows:
                item = from_row(WorkItem, r)
                item.status = WorkStatus.INTERRUPTED
                item.error = f"the replica running it ({item.owner}) stopped"
                db["work"].update(
                    item.key, encode(WorkItem, {"status": item.status, "error": item.error})
                )
                out.append(item)
            return out

    def cancel_work(self, run: str, reason: str) -> int:
        """The run's items nobody has claimed yet, failed with `reason`; returns how many."""
        with self.conn.db() as db:
            cur = db.execute(
                "UPDATE work SET status = ?, error = ? WHERE run = ? AND status = 'queued'",
                [WorkStatus.FAILED.value, reason, run],
            )
            return int(cur.rowcount)

    def forget_work(self, older_than_s: float) -> int:
        """Delete finished items queued more than `older_than_s` ago (their snapshots and
        the audit log keep the history); returns how many."""
        with self.conn.db() as db:
            cur = db.execute(
                "DELETE FROM work WHERE status NOT IN ('queued', 'running') AND queued_at < ?",
                [db.clock() - older_than_s],
            )
            return int(cur.rowcount)
