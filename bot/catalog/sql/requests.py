"""Restore and drill requests, and the reactions on their messages."""

from __future__ import annotations

from typing import Unpack

from bot.catalog.base import Decide, RequestChange
from bot.catalog.sql.audit import write_audit
from bot.catalog.sql.connection import Connection, NotFoundError
from bot.errors import NotFound
from bot.owners import owner_id
from bot.records import Request, RequestFields, RequestStatus, encode, from_row, now, to_row


class RequestRecords:
    """The requests table's statements."""

    conn: Connection

    def add_request(self, req: Request) -> Request:
        with self.conn.transaction() as db:
            db["requests"].insert(to_row(req))
        return req

    def get_request(self, request_id: str) -> Request:
        with self.conn.db() as db:
            try:
                return from_row(Request, db["requests"].get(request_id))
            except NotFoundError:
                raise NotFound(f"No request with id {request_id!r}.") from None

    def request_by_message(self, channel: str, ts: str) -> Request | None:
        with self.conn.db() as db:
            rows = list(db["requests"].rows_where("channel = ? AND ts = ?", [channel, ts]))
        return from_row(Request, rows[0]) if rows else None

    def update_request(self, request_id: str, **fields: Unpack[RequestFields]) -> None:
        with self.conn.transaction() as db:
            db["requests"].update(request_id, encode(Request, fields))

    def list_requests(self, *statuses: RequestStatus) -> list[Request]:
        where = f"status IN ({', '.join('?' * len(statuses))})" if statuses else None
        with self.conn.db() as db:
            rows = db["requests"].rows_where(
                where, [str(s) for s in statuses], order_by="created_at"
            )
            return [from_row(Request, r) for r in rows]

    def decide_request(self, request_id: str, decide: Decide) -> tuple[Request, RequestChange]:
        with self.conn.transaction() as db:
            db.lock("requests", request_id)  # a racing reaction waits, then sees this one
            req = from_row(Request, db["requests"].get(request_id))
            reactions = frozenset(
                (r["user"], r["emoji"])
                for r in db["reactions"].rows_where("request_id = ?", [request_id])
            )
            change = decide(req, reactions)
            if change.reactions != reactions:
                db.execute("DELETE FROM reactions WHERE request_id = ?", [request_id])
                if change.reactions:
                    db["reactions"].insert_all(
                        {"request_id": request_id, "user": u, "emoji": e, "at": now()}
                        for u, e in sorted(change.reactions)
                    )
            if change.fields:
                db["requests"].update(request_id, encode(Request, change.fields))
            if change.audit is not None:
                actor, action, detail = change.audit
                write_audit(db, actor, action, request_id, detail)
        return req, change

    def claim_job(self, request_id: str) -> bool:
        with self.conn.db() as db:
            cur = db.execute(
                "UPDATE requests SET status = 'running', job_started_at = ?, owner = ? "
                "WHERE id = ? AND status = 'approved'",
                [now(), owner_id(), request_id],
            )
            return bool(cur.rowcount == 1)

    def expire_request(self, request_id: str, reason: str) -> bool:
        with self.conn.db() as db:
            cur = db.execute(
                "UPDATE requests SET status = 'expired', decided_at = ?, reason = ? "
                "WHERE id = ? AND status = 'pending'",
                [now(), reason, request_id],
            )
            return bool(cur.rowcount == 1)
