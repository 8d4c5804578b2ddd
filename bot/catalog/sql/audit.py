"""The append-only audit table (a trigger refuses UPDATE and DELETE)."""

from __future__ import annotations

import json
from typing import Any

from bot.catalog.sql.connection import Connection, Database
from bot.records import AuditEntry, from_row, now


def write_audit(
    db: Database, actor: str, action: str, subject: str, detail: dict[str, Any]
) -> None:
    """One line, inside the caller's transaction."""
    db["audit"].insert(
        {
            "at": now(),
            "actor": actor,
            "action": action,
            "subject": subject,
            "detail": json.dumps(detail, default=str, sort_keys=True),
        }
    )


class Audit:
    """The audit table's statements."""

    conn: Connection

    def audit(self, actor: str, action: str, subject: str, **detail: Any) -> None:
        with self.conn.db() as db:
            write_audit(db, actor, action, subject, detail)

    def audit_log(self, limit: int = 50, subject: str | None = None) -> list[AuditEntry]:
        with self.conn.db() as db:
            rows = db["audit"].rows_where(
                "subject = ?" if subject else None,
                [subject] if subject else [],
                order_by="id DESC",
                limit=limit,
            )
            return [from_row(AuditEntry, r) for r in rows]
