"""Asking for approval: a restore or drill request posted in the channel, with the
approve and reject reactions already on it, and its message kept true as it changes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import AtlasError, Refused
from bot.pg import Conn
from bot.policy import approvals
from bot.records import Kind, Request, RequestStatus, Snapshot
from bot.report import messages
from bot.report.chat import Chat, Message
from bot.restore.guard import guard_not_production
from bot.restore.run import Restores
from bot.restore.tables import parse_tables
from bot.restore.undo import kept_for
from bot.text import clean_text


class ApprovalRequests:
    """Posts a restore or drill request for approval, and keeps its message true to its state."""

    def __init__(
        self, settings: Settings, catalog: Catalog, chat: Chat, restores: Restores
    ) -> None:
        self.settings, self.catalog, self.chat, self.restores = settings, catalog, chat, restores

    def resolve_approvers(self) -> list[str]:
        """User ids from ATLAS_APPROVERS, with user groups (S…) expanded through Slack."""
        users: list[str] = []
        for entry in self.settings.approvers:
            if entry.startswith("S"):
                users += self.chat.group_members(entry) or []
            else:
                users.append(entry)
        return sorted(set(users))

    def policy(self, req: Request) -> approvals.Policy:
        st = self.settings
        return approvals.Policy(
            approvers=frozenset(req.approvers),
            required=req.required,
            ttl=timedelta(minutes=st.approval_ttl_minutes),
            approve_emojis=frozenset(st.approve_emojis),
            reject_emojis=frozenset(st.reject_emojis),
        )

    def request(
        self,
        *,
        kind: Kind,
        snap_id: str | None,
        requested_by: str,
        channel: str | None,
        database: str | None = None,
        tables: tuple[str, ...] = (),
        note: str | None = None,
    ) -> Request:
        """Create the request and post it with the approve/reject reactions already on."""
        kind = Kind(kind)
        channel = channel or self.settings.channel
        if not channel:
            raise AtlasError("No channel to ask for approvals in.", "set ATLAS_CHANNEL")
        subject, database, snap = self._subject(kind, snap_id, database)
        target = self.settings.target(database)
        staging = Conn.parse(target.staging_url or "", target.staging_setting)
        if snap is not None:
            target, staging = self.restores.staging_for(snap, kind)
        try:
            guard_not_production(Conn.parse(target.url, target.url_setting), staging)
        except Refused as exc:
            self.catalog.audit(requested_by, f"{kind}.refused", subject, error=str(exc))
            Message(self.chat, channel).post(messages.error(str(exc)), [])
            raise
        approvers = self.resolve_approvers()
        if not approvers:
            raise AtlasError(
                "Nobody may approve restores yet.", "set ATLAS_APPROVERS to Slack user or group ids"
            )
        created = datetime.now(UTC)
        req = Request(
            id=f"req-{created.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}",
            kind=kind,
            snapshot_id=subject,
            database=database,
            requested_by=requested_by,
            created_at=created.isoformat(timespec="milliseconds"),
            expires_at=(created + timedelta(minutes=self.settings.approval_ttl_minutes)).isoformat(
                timespec="milliseconds"
            ),
            required=self.settings.required_approvals,
            approvers=approvers,
            status=RequestStatus.PENDING,
            channel=channel,
            tables=[str(t) for t in parse_tables(tables)],
            note=clean_text(note, 500) if note else None,
        )
        self.catalog.add_request(req)
        extra = {"note": req.note} if req.note else {}
        self.catalog.audit(requested_by, f"{kind}.requested", req.id, snapshot=subject, **extra)
        msg = Message(self.chat, channel)
        msg.post(*self.render(req, snap))
        if msg.ts is None or msg.channel is None:
            self.catalog.update_request(
                req.id, status=RequestStatus.FAILED, reason="could not post to Slack"
            )
            raise AtlasError("Could not post the request in Slack; nothing will run.")
        self.catalog.update_request(req.id, channel=msg.channel, ts=msg.ts)
        for emoji in (self.settings.approve_emojis[0], self.settings.reject_emojis[0]):
            self.chat.react(msg.channel, msg.ts, emoji)
        return self.catalog.get_request(req.id)

    def _subject(
        self, kind: Kind, snap_id: str | None, database: str | None
    ) -> tuple[str, str, Snapshot | None]:
        """(what the request names, its database, the snapshot): a snapshot to restore,
        or (an undo) the refresh whose kept staging comes back."""
        if kind == Kind.UNDO:
            _, kept = kept_for(self.settings, self.catalog, database)
            return kept.id, kept.database, None
        snap = self.restores.pick_snapshot(snap_id, database)
        return snap.id, snap.database, snap

    def render(self, req: Request, snap: Snapshot | None = None) -> tuple[str, messages.Blocks]:
        if req.kind != Kind.UNDO:
            snap = snap or self.catalog.get_snapshot(req.snapshot_id)
        target = self.settings.target(req.database)
        staging = Conn.parse(target.staging_url or "", target.staging_setting)
        where = (
            f"a new scratch database on {staging.describe().rsplit('/', 1)[0]}"
            if req.kind == Kind.DRILL
            else staging.describe()
        )
        return messages.request_message(
            req,
            snap,
            approve_emoji=self.settings.approve_emojis[0],
            reject_emoji=self.settings.reject_emojis[0],
            target=where,
        )

    def refresh(self, req_id: str) -> None:
        """Edit the request's message to say where it stands now."""
        req = self.catalog.get_request(req_id)
        Message.existing(self.chat, req.channel, req.ts).update(*self.render(req), final=True)
