"""The catalog: what Atlas has done, in one SQLite file through sqlite-utils.

Each call opens its own short-lived connection, so threads and several processes
(`atlas serve` beside an `atlas snapshot` in a deploy) can share the file safely;
state changes that must not race run inside `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.errors import AtlasError, Busy, NotFound
from bot.text import clean_text


def _import_sqlite_utils() -> Any:
    """sqlite-utils imports numpy and pandas when they are installed, only to map their
    types, which the catalog never stores. Hiding them for that one import keeps ~50 ms
    off every `atlas` command; they stay importable for anyone else."""
    hidden = [name for name in ("numpy", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            del sys.modules[name]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()


RUNNING = "running"
OK = "ok"
FAILED = "failed"
INTERRUPTED = "interrupted"
DELETED = "deleted"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs (a catalog owner that died leaves work behind)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


SNAPSHOT_COLUMNS: dict[str, Any] = {
    "id": str,
    "database": str,
    "dbname": str,
    "environment": str,
    "status": str,
    "source": str,
    "requested_by": str,
    "note": str,
    "started_at": str,
    "finished_at": str,
    "heartbeat_at": str,
    "owner": str,
    "duration_s": float,
    "dump_s": float,
    "size_bytes": int,
    "raw_size_bytes": int,
    "sha256": str,
    "toc_bytes": int,  # start of the plain dump holding its table of contents (all its SQL)
    "toc_sha256": str,
    "storage_key": str,
    "location": str,
    "pending_ref": str,
    "pg_dump_version": str,
    "server_version": str,
    "encryption": str,
    "compression": str,
    "manifest": str,
    "error": str,
    "verified_at": str,
    "slack_channel": str,
    "slack_ts": str,
    "pinned": int,
    "provider_snapshot": str,
}


REQUEST_COLUMNS: dict[str, Any] = {
    "id": str,
    "kind": str,  # restore | drill
    "snapshot_id": str,
    "database": str,
    "requested_by": str,
    "created_at": str,
    "expires_at": str,
    "required": int,
    "approvers": str,  # json list, resolved when the request was made
    "status": str,
    "channel": str,
    "ts": str,
    "decided_at": str,
    "approved_by": str,  # json list
    "reason": str,
    "owner": str,
    "job_started_at": str,
    "drill_id": str,
}

DRILL_COLUMNS: dict[str, Any] = {
    "id": str,
    "kind": str,  # restore | drill
    "request_id": str,
    "snapshot_id": str,
    "database": str,
    "target": str,
    "scratch_db": str,
    "status": str,  # running | passed | failed
    "requested_by": str,
    "approved_by": str,
    "started_at": str,
    "finished_at": str,
    "download_s": float,
    "restore_s": float,
    "verify_s": float,
    "total_s": float,
    "checks": str,
    "problems": str,
    "error": str,
    "kept": int,
    "scratch_dropped": int,  # 0 while a scratch database may still exist on staging
    "cleanup_error": str,  # why dropping it failed; housekeeping tries again
    "owner": str,
}


def _add_missing_columns(table: Any, columns: dict[str, Any]) -> None:
    """Columns added since a catalog was created: older catalogs keep working."""
    for col, typ in columns.items():
        if col not in table.columns_dict:
            table.add_column(col, typ)


class Catalog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AtlasError(
                    f"Cannot create the folder for the catalog {self.path}: {exc.strerror or exc}.",
                    "point ATLAS_STATE at a writable place",
                ) from None
        self._migrate()

    @contextmanager
    def db(self) -> Iterator[sqlite_utils.Database]:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            yield sqlite_utils.Database(conn)
        except sqlite3.IntegrityError:
            raise  # a constraint the caller handles (a second running snapshot, a known id)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            conn.close()

    def _error(self, exc: sqlite3.Error) -> AtlasError:
        """SQLite's failures in words an operator can act on, never a traceback."""
        text = str(exc)
        where = f"ATLAS_STATE={self.path}"
        if "disk is full" in text or "disk I/O error" in text:
            return AtlasError(
                f"The catalog's disk is full ({where}: {text}); nothing more can be recorded.",
                "free space on that disk, or move ATLAS_STATE to a larger one",
            )
        if "readonly" in text or "unable to open" in text:
            return AtlasError(
                f"The catalog cannot be written ({where}: {text}).",
                "make the file and its folder writable for the user Atlas runs as, "
                "or point ATLAS_STATE elsewhere",
            )
        if "not a database" in text:
            return AtlasError(
                f"{where} is not an Atlas catalog ({text}).",
                "point ATLAS_STATE at the catalog file, or at a new path to start one",
            )
        if "locked" in text:
            return AtlasError(
                f"The catalog stayed locked for 30 s ({where}).",
                "another Atlas process holds it; try again",
            )
        return AtlasError(f"The catalog failed ({where}: {text}).")

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        with self.db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.db() as db:
            db.execute("PRAGMA journal_mode = WAL")
            snaps = db["snapshots"]
            if not snaps.exists():
                snaps.create(SNAPSHOT_COLUMNS, pk="id", not_null={"database", "status"})
            _add_missing_columns(snaps, SNAPSHOT_COLUMNS)
            db.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS one_running_snapshot "
                "ON snapshots(database, environment) WHERE status = 'running'"
            )
            db.execute("CREATE INDEX IF NOT EXISTS snapshots_started ON snapshots(started_at)")
            if not db["requests"].exists():
                db["requests"].create(REQUEST_COLUMNS, pk="id")
                db["requests"].create_index(["channel", "ts"])
            if not db["reactions"].exists():
                db["reactions"].create(
                    {"request_id": str, "user": str, "emoji": str, "at": str},
                    pk=("request_id", "user", "emoji"),
                )
            if not db["drills"].exists():
                db["drills"].create(DRILL_COLUMNS, pk="id")
            _add_missing_columns(db["drills"], DRILL_COLUMNS)
            if not db["reminders"].exists():
                db["reminders"].create(
                    {"key": str, "database": str, "sent_at": str, "text": str}, pk="key"
                )
            if not db["leases"].exists():
                db["leases"].create({"name": str, "owner": str, "expires_at": float}, pk="name")
            if not db["seen_requests"].exists():
                db["seen_requests"].create({"key": str, "seen_at": str}, pk="key")
            if not db["audit"].exists():
                db["audit"].create(
                    {
                        "id": int,
                        "at": str,
                        "actor": str,
                        "action": str,
                        "subject": str,
                        "detail": str,
                    },
                    pk="id",
                )
            for op in ("UPDATE", "DELETE"):
                db.execute(
                    f"CREATE TRIGGER IF NOT EXISTS audit_no_{op.lower()} BEFORE {op} ON audit "
                    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
                )

    # -- snapshots -------------------------------------------------------------------

    def begin_snapshot(self, row: dict[str, Any]) -> dict[str, Any]:
        """Insert a running snapshot, or raise Busy naming who holds the database."""
        row = {"status": RUNNING, "owner": owner_id(), "started_at": now(), **row}
        row["heartbeat_at"] = row["started_at"]
        try:
            with self.transaction() as db:
                db["snapshots"].insert(row)
        except sqlite3.IntegrityError:
            other = self.running_snapshot(row["database"], row["environment"])
            if other is None:
                raise
            raise Busy(
                f"A snapshot of {row['database']} is already running: {other['id']}, "
                f"started by {other.get('requested_by') or 'someone'} at {other['started_at']}.",
                "wait for it to finish; `atlas list` shows its progress",
            ) from None
        return row

    def running_snapshot(self, database: str, environment: str) -> dict[str, Any] | None:
        with self.db() as db:
            rows = list(
                db["snapshots"].rows_where(
                    "database = ? AND environment = ? AND status = 'running'",
                    [database, environment],
                )
            )
        return rows[0] if rows else None

    def update_snapshot(self, snap_id: str, **fields: Any) -> None:
        with self.transaction() as db:
            db["snapshots"].update(snap_id, fields)

    def finish_snapshot(
        self,
        snap_id: str,
        status: str,
        audit: tuple[str, str, dict[str, Any]] | None = None,
        **fields: Any,
    ) -> None:
        """Record the outcome, and with `audit` (actor, action, detail) its audit line in
        the same transaction."""
        with self.transaction() as db:
            db["snapshots"].update(snap_id, {"status": status, "finished_at": now(), **fields})
            if audit is not None:
                actor, action, detail = audit
                self._audit(db, actor, action, snap_id, detail)

    def snapshot_counts(self, database: str) -> dict[str, int]:
        with self.db() as db:
            rows = db.execute(
                "SELECT status, count(*) FROM snapshots WHERE database = ? GROUP BY status",
                [database],
            ).fetchall()
        return {str(status): int(n) for status, n in rows}

    def has_snapshot(self, snap_id: str) -> bool:
        with self.db() as db:
            return (
                db.execute("SELECT 1 FROM snapshots WHERE id = ?", [snap_id]).fetchone() is not None
            )

    def add_snapshot(self, row: dict[str, Any]) -> bool:
        """Insert a finished snapshot found in storage; False if the id is already known."""
        try:
            with self.transaction() as db:
                db["snapshots"].insert(row)
        except sqlite3.IntegrityError:
            return False
        return True

    def first_good_snapshot_at(self, database: str) -> str | None:
        """When Atlas first backed `database` up and proved it (kept or pruned since): from
        then on a restore drill is owed."""
        with self.db() as db:
            row = db.execute(
                "SELECT min(started_at) FROM snapshots "
                "WHERE database = ? AND verified_at IS NOT NULL",
                [database],
            ).fetchone()
        return row[0] if row else None

    def get_snapshot(self, snap_id: str) -> dict[str, Any]:
        snap_id = clean_text(snap_id, 100)  # typed by a person: any bytes may arrive
        with self.db() as db:
            try:
                return db["snapshots"].get(snap_id)
            except sqlite_utils.db.NotFoundError:
                pass
        raise NotFound(
            f"No snapshot with id {snap_id!r}.", "`atlas list` or `/atlas list` shows the ids"
        )

    def snapshot_ids_like(self, prefix: str, limit: int = 6) -> list[str]:
        """Ids starting with `prefix`, newest first (for unique-prefix lookups)."""
        prefix = clean_text(prefix, 100)
        with self.db() as db:
            rows = db.execute(
                "SELECT id FROM snapshots WHERE substr(id, 1, ?) = ? "
                "ORDER BY started_at DESC, id DESC LIMIT ?",
                [len(prefix), prefix, limit],
            ).fetchall()
        return [str(r[0]) for r in rows]

    def list_snapshots(
        self,
        limit: int = 20,
        database: str | None = None,
        status: str | None = None,
        environment: str | None = None,
    ) -> list[dict[str, Any]]:
        where, args = [], []
        for col, val in (("database", database), ("status", status), ("environment", environment)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        with self.db() as db:
            return list(
                db["snapshots"].rows_where(
                    " AND ".join(where) or None,
                    args,
                    order_by="started_at DESC, id DESC",
                    limit=limit,
                )
            )

    def left_behind(self) -> list[dict[str, Any]]:
        """Finished snapshots whose unfinished write could not be removed when they failed."""
        with self.db() as db:
            return list(
                db["snapshots"].rows_where("status != 'running' AND pending_ref IS NOT NULL")
            )

    def stale_running(self, stale_after_s: float) -> list[dict[str, Any]]:
        """Running snapshots whose process is gone (same host) or silent for too long."""
        host = socket.gethostname()
        cutoff = datetime.now(UTC).timestamp() - stale_after_s
        out = []
        with self.db() as db:
            for row in db["snapshots"].rows_where("status = 'running'"):
                o_host, _, o_pid = (row.get("owner") or "").rpartition(":")
                beat = datetime.fromisoformat(row["heartbeat_at"]).timestamp()
                if (o_host == host and o_pid.isdigit() and not pid_alive(int(o_pid))) or (
                    beat < cutoff
                ):
                    out.append(row)
        return out

    # -- approval requests and drills ----------------------------------------------------

    def add_request(self, row: dict[str, Any]) -> dict[str, Any]:
        with self.transaction() as db:
            db["requests"].insert(row)
        return row

    def get_request(self, request_id: str) -> dict[str, Any]:
        with self.db() as db:
            try:
                return db["requests"].get(request_id)
            except sqlite_utils.db.NotFoundError:
                raise NotFound(f"No request with id {request_id!r}.") from None

    def request_by_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self.db() as db:
            rows = list(db["requests"].rows_where("channel = ? AND ts = ?", [channel, ts]))
        return rows[0] if rows else None

    def update_request(self, request_id: str, **fields: Any) -> None:
        with self.transaction() as db:
            db["requests"].update(request_id, fields)

    def requests_where(self, where: str, args: list[Any]) -> list[dict[str, Any]]:
        with self.db() as db:
            return list(db["requests"].rows_where(where, args, order_by="created_at"))

    def reactions(self, db: sqlite_utils.Database, request_id: str) -> frozenset[tuple[str, str]]:
        return frozenset(
            (r["user"], r["emoji"])
            for r in db["reactions"].rows_where("request_id = ?", [request_id])
        )

    def set_reactions(
        self, db: sqlite_utils.Database, request_id: str, reactions: frozenset[tuple[str, str]]
    ) -> None:
        db.execute("DELETE FROM reactions WHERE request_id = ?", [request_id])
        if reactions:
            db["reactions"].insert_all(
                {"request_id": request_id, "user": u, "emoji": e, "at": now()}
                for u, e in sorted(reactions)
            )

    def claim_job(self, request_id: str) -> bool:
        """Move an approved request to running; True for exactly one caller."""
        with self.db() as db:
            cur = db.execute(
                "UPDATE requests SET status = 'running', job_started_at = ?, owner = ? "
                "WHERE id = ? AND status = 'approved'",
                [now(), owner_id(), request_id],
            )
            return cur.rowcount == 1

    def add_drill(self, row: dict[str, Any]) -> None:
        with self.transaction() as db:
            db["drills"].insert(
                {"status": RUNNING, "owner": owner_id(), "started_at": now(), **row}
            )

    def update_drill(self, drill_id: str, **fields: Any) -> None:
        with self.transaction() as db:
            db["drills"].update(drill_id, fields)

    def drills_to_clean(self) -> list[dict[str, Any]]:
        """Finished drills whose scratch database was not dropped yet, and running ones
        whose process on this host is gone."""
        host = socket.gethostname()
        out = []
        with self.db() as db:
            for row in db["drills"].rows_where(
                "scratch_db IS NOT NULL AND scratch_dropped = 0 AND coalesce(kept, 0) = 0"
            ):
                if row["status"] == RUNNING:
                    o_host, _, o_pid = (row.get("owner") or "").rpartition(":")
                    if not (o_host == host and o_pid.isdigit() and not pid_alive(int(o_pid))):
                        continue
                out.append(row)
        return out

    def get_drill(self, drill_id: str) -> dict[str, Any]:
        with self.db() as db:
            try:
                return db["drills"].get(drill_id)
            except sqlite_utils.db.NotFoundError:
                raise NotFound(f"No drill with id {drill_id!r}.") from None

    def list_drills(
        self, limit: int = 20, kind: str | None = None, database: str | None = None
    ) -> list[dict[str, Any]]:
        where, args = [], []
        for col, val in (("kind", kind), ("database", database)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        with self.db() as db:
            return list(
                db["drills"].rows_where(
                    " AND ".join(where) or None, args, order_by="started_at DESC", limit=limit
                )
            )

    # -- reminders and leases --------------------------------------------------------------

    def sent_reminders(self, database: str) -> set[str]:
        with self.db() as db:
            rows = db["reminders"].rows_where("database = ?", [database])
            return {r["key"].removeprefix(f"{database}:") for r in rows}

    def claim_reminder(self, key: str, database: str, text: str) -> bool:
        """Record a reminder as sent; True only for the first caller (exactly-once posting)."""
        with self.db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO reminders(key, database, sent_at, text) VALUES (?, ?, ?, ?)",
                [key, database, now(), text],
            )
            return cur.rowcount == 1

    def unclaim_reminder(self, key: str) -> None:
        """Posting failed: let the next check try again."""
        with self.db() as db:
            db.execute("DELETE FROM reminders WHERE key = ?", [key])

    def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Hold (or renew) a named lease; only one holder at a time across processes."""
        t = datetime.now(UTC).timestamp()
        with self.transaction() as db:
            rows = list(db["leases"].rows_where("name = ?", [name]))
            held = rows and rows[0]["owner"] != owner and rows[0]["expires_at"] > t
            if held and rows[0]["expires_at"] - t <= ttl_s:  # further out: the clock went back
                return False
            db["leases"].upsert({"name": name, "owner": owner, "expires_at": t + ttl_s}, pk="name")
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self.db() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", [name, owner])

    # -- request de-duplication and audit -------------------------------------------------

    def first_time(self, key: str) -> bool:
        """True the first time a request key (Slack trigger or event id) is seen."""
        with self.db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO seen_requests(key, seen_at) VALUES (?, ?)", [key, now()]
            )
            return cur.rowcount == 1

    def audit(
        self,
        actor: str,
        action: str,
        subject: str,
        db: sqlite_utils.Database | None = None,
        **detail: Any,
    ) -> None:
        """Append one line; pass `db` to write inside the caller's transaction."""
        if db is not None:
            self._audit(db, actor, action, subject, detail)
            return
        with self.db() as own:
            self._audit(own, actor, action, subject, detail)

    @staticmethod
    def _audit(
        db: sqlite_utils.Database, actor: str, action: str, subject: str, detail: dict[str, Any]
    ) -> None:
        db["audit"].insert(
            {
                "at": now(),
                "actor": actor,
                "action": action,
                "subject": subject,
                "detail": json.dumps(detail, default=str, sort_keys=True),
            }
        )

    def audit_log(self, limit: int = 50, subject: str | None = None) -> list[dict[str, Any]]:
        with self.db() as db:
            return list(
                db["audit"].rows_where(
                    "subject = ?" if subject else None,
                    [subject] if subject else [],
                    order_by="id DESC",
                    limit=limit,
                )
            )
