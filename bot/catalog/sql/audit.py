"""The append-only audit table (a trigger refuses UPDATE and DELETE), hash-chained:
each entry is written with the hash of the one before, under a lock, so two writers
never chain onto the same entry (`bot/chain.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.catalog.sql.connection import Connection, Database
from bot.chain import GENESIS, detail_text, entry_hash
from bot.records import AuditEntry, from_row, now

AUDIT_LOCK = 0x6174617564  # "ataud": the audit chain's advisory lock


def write_audit(
    db: Database, actor: str, action: str, subject: str, detail: dict[str, Any]
) -> None:
    """One line, inside the caller's transaction (which the chain's lock serialises)."""
    db.advisory_lock(AUDIT_LOCK)
    row = db.execute(
        "SELECT hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1"
    ).fetchone()
    prev = str(row[0]) if row else GENESIS
    at, text = now(), detail_text(detail)
    db["audit"].insert(
        {
            "at": at,
            "actor": actor,
            "action": action,
            "subject": subject,
            "detail": text,
            "prev_hash": prev,
            "hash": entry_hash(prev, at, actor, action, subject, text),
        }
    )


class Audit:
    """The audit table's statements."""

    conn: Connection

    def audit(self, actor: str, action: str, subject: str, **detail: Any) -> None:
        with self.conn.transaction() as db:
            write_audit(db, actor, action, subject, detail)

    def audit_chain(self) -> Iterator[AuditEntry]:
        """Every entry, oldest first, a page at a time (the log only grows). From below
        the smallest id there is: a row forged with id 0 or -1 is read, and breaks it."""
        with self.conn.db() as db:
            low = db.execute("SELECT min(id) FROM audit").fetchone()
        after = min(0, int(low[0])) - 1 if low and low[0] is not None else 0
        while True:
            with self.conn.db() as db:
                rows = list(db["audit"].rows_where("id > ?", [after], order_by="id", limit=1000))
            yield from (from_row(AuditEntry, r) for r in rows)
            if len(rows) < 1000:
                return
            after = int(rows[-1]["id"])

    def audit_log(self, limit: int = 50, subject: str | None = None) -> list[AuditEntry]:
        with self.conn.db() as db:
            rows = db["audit"].rows_where(
                "subject = ?" if subject else None,
                [subject] if subject else [],
                order_by="id DESC",
                limit=limit,
            )
            return [from_row(AuditEntry, r) for r in rows]
