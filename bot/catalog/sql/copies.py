"""The copies table: one row per snapshot and further destination (ATLAS_COPIES).

A copy is claimed by one process with a conditional update (pending, due, or copying
under a silent owner), so across replicas each copy is made once; its owner beats while
it copies, and only its owner may record how it ended.
"""

from __future__ import annotations

from typing import Any

from bot.catalog.sql.connection import Connection
from bot.records import Copy, CopyState, encode, from_row, now, to_row

ACTIVE = (CopyState.PENDING.value, CopyState.COPYING.value)


class CopyRecords:
    """The copies table's statements."""

    conn: Connection

    def add_copies(self, copies: list[Copy]) -> int:
        """Record copies to make; one already recorded is left as it is. Returns how many
        were new."""
        added = 0
        with self.conn.transaction() as db:
            for c in copies:
                c.queued_at = c.queued_at or now()
                row = to_row(c)
                cols = list(row)
                cur = db.execute(
                    f"INSERT INTO copies ({', '.join(cols)}) VALUES "
                    f"({', '.join('?' * len(cols))}) ON CONFLICT DO NOTHING",
                    [row[k] for k in cols],
                )
                added += cur.rowcount
        return added

    def claim_copy(self, key: str, owner: str, stale_after_s: float, *, due: bool) -> Copy | None:
        """The copy, now `owner`'s to make: it was pending (and, with `due`, its retry time
        has come) or its last owner went silent. None: someone else has it, or it is done."""
        with self.conn.transaction() as db:
            t = db.clock()
            cur = db.execute(
                "UPDATE copies SET state = ?, owner = ?, heartbeat_at = ?, "
                "attempts = attempts + 1 WHERE key = ? AND ("
                "(state = 'pending' AND (? = 0 OR next_try_at IS NULL OR next_try_at <= ?)) "
                "OR (state = 'copying' AND (heartbeat_at IS NULL OR heartbeat_at <= ?)))",
                [CopyState.COPYING.value, owner, t, key, int(due), t, t - stale_after_s],
            )
            if cur.rowcount != 1:
                return None
            return from_row(Copy, db["copies"].get(key))

    def beat_copies(self, owner: str) -> None:
        with self.conn.db() as db:
            db.execute(
                "UPDATE copies SET heartbeat_at = ? WHERE owner = ? AND state = 'copying'",
                [db.clock(), owner],
            )

    def end_copy(self, key: str, owner: str, state: CopyState, **fields: Any) -> bool:
        """Record how `owner`'s copy ended; False when it was no longer its own (its
        heartbeat stopped and another process took it over)."""
        values = encode(Copy, {"state": state, **fields})
        with self.conn.db() as db:
            cur = db.execute(
                f"UPDATE copies SET {', '.join(f'{k} = ?' for k in values)} "
                "WHERE key = ? AND owner = ? AND state = 'copying'",
                [*values.values(), key, owner],
            )
            return bool(cur.rowcount == 1)

    def retry_copy_in(self, key: str, owner: str, seconds: float, error: str) -> bool:
        """`owner`'s copy failed: pending again, not to be tried for `seconds`."""
        with self.conn.db() as db:
            cur = db.execute(
                "UPDATE copies SET state = 'pending', error = ?, next_try_at = ?, owner = NULL "
                "WHERE key = ? AND owner = ? AND state = 'copying'",
                [error, db.clock() + seconds, key, owner],
            )
            return bool(cur.rowcount == 1)

    def update_copy(self, key: str, **fields: Any) -> None:
        with self.conn.transaction() as db:
            db["copies"].update(key, encode(Copy, fields))

    def copies_of(self, *snapshot_ids: str) -> list[Copy]:
        """The copies of these snapshots, by snapshot then destination."""
        if not snapshot_ids:
            return []
        marks = ", ".join("?" * len(snapshot_ids))
        with self.conn.db() as db:
            rows = db["copies"].rows_where(
                f"snapshot_id IN ({marks})", list(snapshot_ids), order_by="snapshot_id, key"
            )
            return [from_row(Copy, r) for r in rows]

    def copies_in(self, destination: str, *states: CopyState) -> list[Copy]:
        """A destination's copies (in these states), oldest snapshot first."""
        where, args = "destination = ?", [destination]
        if states:
            where += f" AND state IN ({', '.join('?' * len(states))})"
            args += [s.value for s in states]
        with self.conn.db() as db:
            rows = db["copies"].rows_where(where, args, order_by="snapshot_id")
            return [from_row(Copy, r) for r in rows]

    def unfinished_copies(self) -> list[Copy]:
        """Copies not made yet (pending, or being made), oldest snapshot first."""
        with self.conn.db() as db:
            rows = db["copies"].rows_where(
                "state IN (?, ?)", list(ACTIVE), order_by="snapshot_id, key"
            )
            return [from_row(Copy, r) for r in rows]

    def catalog_clock(self) -> float:
        with self.conn.db() as db:
            return db.clock()
