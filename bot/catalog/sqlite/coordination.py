"""What makes one action happen once: reminder claims, leases, seen Slack requests."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.catalog.sqlite.connection import Connection
from bot.records import now


class Coordination:
    conn: Connection

    def sent_reminders(self, database: str) -> set[str]:
        with self.conn.db() as db:
            rows = db["reminders"].rows_where("database = ?", [database])
            return {r["key"].removeprefix(f"{database}:") for r in rows}

    def claim_reminder(self, key: str, database: str, text: str) -> bool:
        with self.conn.db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO reminders(key, database, sent_at, text) VALUES (?, ?, ?, ?)",
                [key, database, now(), text],
            )
            return bool(cur.rowcount == 1)

    def unclaim_reminder(self, key: str) -> None:
        with self.conn.db() as db:
            db.execute("DELETE FROM reminders WHERE key = ?", [key])

    def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        t = datetime.now(UTC).timestamp()
        with self.conn.transaction() as db:
            rows = list(db["leases"].rows_where("name = ?", [name]))
            held = rows and rows[0]["owner"] != owner and rows[0]["expires_at"] > t
            if held and rows[0]["expires_at"] - t <= ttl_s:  # further out: the clock went back
                return False
            db["leases"].upsert({"name": name, "owner": owner, "expires_at": t + ttl_s}, pk="name")
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self.conn.db() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", [name, owner])

    def lease_holder(self, name: str) -> str | None:
        t = datetime.now(UTC).timestamp()
        with self.conn.db() as db:
            row = db.execute(
                "SELECT owner FROM leases WHERE name = ? AND expires_at > ?", [name, t]
            ).fetchone()
        return str(row[0]) if row else None

    def first_time(self, key: str) -> bool:
        with self.conn.db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO seen_requests(key, seen_at) VALUES (?, ?)", [key, now()]
            )
            return bool(cur.rowcount == 1)
