"""What makes one action happen once: reminder claims, leases, seen Slack requests."""

from __future__ import annotations

from bot.catalog.sql.connection import Connection
from bot.records import now


class Coordination:
    """Leases, first-time keys and reminders: what replicas decide together."""

    conn: Connection

    def sent_reminders(self, database: str) -> set[str]:
        with self.conn.db() as db:
            rows = db["reminders"].rows_where("database = ?", [database])
            return {r["key"].removeprefix(f"{database}:") for r in rows}

    def claim_reminder(self, key: str, database: str, text: str) -> bool:
        with self.conn.db() as db:
            cur = db.execute(
                "INSERT INTO reminders(key, database, sent_at, text) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [key, database, now(), text],
            )
            return bool(cur.rowcount == 1)

    def unclaim_reminder(self, key: str) -> None:
        with self.conn.db() as db:
            db.execute("DELETE FROM reminders WHERE key = ?", [key])

    def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take or renew `name` for `ttl_s` seconds unless another owner holds it. One
        statement: two replicas racing for a free lease cannot both win."""
        with self.conn.transaction() as db:
            t = db.clock()
            cur = db.execute(
                "INSERT INTO leases(name, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at "
                "WHERE leases.owner = excluded.owner OR leases.expires_at <= ? "
                # an expiry further out than any renewal makes it: a clock that went back
                # (twice the TTL, so a racer whose clock read came a moment earlier is not
                # mistaken for one)
                "OR leases.expires_at - ? > ?",
                [name, owner, t + ttl_s, t, t, 2 * ttl_s],
            )
            return bool(cur.rowcount == 1)

    def release_lease(self, name: str, owner: str) -> None:
        with self.conn.db() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", [name, owner])

    def forget_leases(self, older_than_s: float) -> int:
        """Delete leases lapsed more than `older_than_s` ago: those of processes that died
        holding them (a read's lease has a name of its own each time); returns how many."""
        with self.conn.db() as db:
            cur = db.execute("DELETE FROM leases WHERE expires_at < ?", [db.clock() - older_than_s])
            return int(cur.rowcount)

    def lease_holder(self, name: str) -> str | None:
        with self.conn.db() as db:
            row = db.execute(
                "SELECT owner FROM leases WHERE name = ? AND expires_at > ?", [name, db.clock()]
            ).fetchone()
        return str(row[0]) if row else None

    def live_leases(self, prefix: str) -> list[str]:
        with self.conn.db() as db:
            rows = db.execute(
                "SELECT name FROM leases WHERE substr(name, 1, CAST(? AS INTEGER)) = ? "
                "AND expires_at > ? ORDER BY name",
                [len(prefix), prefix, db.clock()],
            ).fetchall()
        return [str(r[0]) for r in rows]

    def first_time(self, key: str) -> bool:
        with self.conn.db() as db:
            cur = db.execute(
                "INSERT INTO seen_requests(key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [key, now()],
            )
            return bool(cur.rowcount == 1)
