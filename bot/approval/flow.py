"""Restore and drill requests in the channel: ask, collect reactions, run exactly one job."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.catalog import now, owner_id, pid_alive
from bot.errors import AtlasError, Refused
from bot.pg import Conn
from bot.policy import approvals
from bot.report import messages
from bot.restore.restores import guard_not_production
from bot.slack.client import Message, slack_errors

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)


class ApprovalFlow:
    def __init__(self, services: Services) -> None:
        self.s = services
        self._groups: dict[str, tuple[float, list[str]]] = {}

    # -- policy --------------------------------------------------------------------------

    def resolve_approvers(self) -> list[str]:
        """User ids from ATLAS_APPROVERS, with user groups (S…) expanded through Slack."""
        users: list[str] = []
        for entry in self.s.settings.approvers:
            if entry.startswith("S"):
                users += self._group_members(entry)
            else:
                users.append(entry)
        return sorted(set(users))

    def _group_members(self, group: str) -> list[str]:
        cached = self._groups.get(group)
        if cached and time.monotonic() - cached[0] < 300:
            return cached[1]
        members: list[str] = []
        if self.s.slack is not None:
            try:
                members = list(self.s.slack.usergroups_users_list(usergroup=group)["users"])
            except slack_errors() as exc:
                log.warning("cannot resolve user group %s: %s", group, exc)
                return cached[1] if cached else []
        self._groups[group] = (time.monotonic(), members)
        return members

    def policy(self, req: dict[str, Any]) -> approvals.Policy:
        st = self.s.settings
        return approvals.Policy(
            approvers=frozenset(json.loads(req["approvers"])),
            required=int(req["required"]),
            ttl=timedelta(minutes=st.approval_ttl_minutes),
            approve_emojis=frozenset(st.approve_emojis),
            reject_emojis=frozenset(st.reject_emojis),
        )

    # -- asking --------------------------------------------------------------------------

    def request(
        self,
        *,
        kind: str,
        snap_id: str | None,
        requested_by: str,
        channel: str | None,
        database: str | None = None,
    ) -> dict[str, Any]:
        """Create the request and post it with the approve/reject reactions already on."""
        restores = self.s.restores
        channel = channel or self.s.settings.channel
        if not channel:
            raise AtlasError("No channel to ask for approvals in.", "set ATLAS_CHANNEL")
        snap = restores.pick_snapshot(snap_id, database)
        target, staging = restores.staging_for(snap)
        try:
            guard_not_production(Conn.parse(target.url), staging)
        except Refused as exc:
            self.s.catalog.audit(requested_by, f"{kind}.refused", snap["id"], error=str(exc))
            Message(self.s.slack, channel).post(messages.error(str(exc)), [])
            raise
        approvers = self.resolve_approvers()
        if not approvers:
            raise AtlasError(
                "Nobody may approve restores yet.", "set ATLAS_APPROVERS to Slack user or group ids"
            )
        created = datetime.now(UTC)
        req = {
            "id": f"req-{created.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}",
            "kind": kind,
            "snapshot_id": snap["id"],
            "database": snap["database"],
            "requested_by": requested_by,
            "created_at": created.isoformat(timespec="milliseconds"),
            "expires_at": (
                created + timedelta(minutes=self.s.settings.approval_ttl_minutes)
            ).isoformat(timespec="milliseconds"),
            "required": self.s.settings.required_approvals,
            "approvers": json.dumps(approvers),
            "status": approvals.PENDING,
            "channel": channel,
            "approved_by": "[]",
        }
        self.s.catalog.add_request(req)
        self.s.catalog.audit(requested_by, f"{kind}.requested", req["id"], snapshot=snap["id"])
        msg = Message(self.s.slack, channel)
        msg.post(*self._render(req, snap))
        if msg.ts is None:
            self.s.catalog.update_request(
                req["id"], status="failed", reason="could not post to Slack"
            )
            raise AtlasError("Could not post the request in Slack; nothing will run.")
        self.s.catalog.update_request(req["id"], channel=msg.channel, ts=msg.ts)
        for emoji in (self.s.settings.approve_emojis[0], self.s.settings.reject_emojis[0]):
            with contextlib.suppress(*slack_errors()):
                self.s.slack.reactions_add(channel=msg.channel, timestamp=msg.ts, name=emoji)  # type: ignore[union-attr]
        return self.s.catalog.get_request(req["id"])

    def _render(
        self, req: dict[str, Any], snap: dict[str, Any] | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        snap = snap or self.s.catalog.get_snapshot(req["snapshot_id"])
        target = self.s.settings.target(req["database"])
        staging = Conn.parse(target.staging_url or "")
        where = (
            f"a new scratch database on {staging.describe().rsplit('/', 1)[0]}"
            if req["kind"] == "drill"
            else staging.describe()
        )
        return messages.request_message(
            req,
            snap,
            approvers=json.loads(req["approvers"]),
            approved_by=json.loads(req.get("approved_by") or "[]"),
            approve_emoji=self.s.settings.approve_emojis[0],
            reject_emoji=self.s.settings.reject_emojis[0],
            target=where,
        )

    def _refresh(self, req_id: str) -> None:
        req = self.s.catalog.get_request(req_id)
        msg = Message(self.s.slack, req["channel"])
        msg.ts = req["ts"]
        msg.update(*self._render(req), final=True)

    # -- reactions -----------------------------------------------------------------------

    def on_reaction(
        self, *, user: str, emoji: str, added: bool, channel: str, ts: str, bot_user: str | None
    ) -> approvals.Outcome | None:
        """Apply one reaction in a transaction; start the job if this one approved it."""
        req = self.s.catalog.request_by_message(channel, ts)
        if req is None:
            return None
        with self.s.catalog.transaction() as db:
            req = db["requests"].get(req["id"])
            state = approvals.Request(
                requester=req["requested_by"],
                status=req["status"],
                expires_at=datetime.fromisoformat(req["expires_at"]),
                reactions=self.s.catalog.reactions(db, req["id"]),
            )
            policy = self.policy(req)
            outcome = approvals.on_reaction(
                policy,
                state,
                user=user,
                emoji=emoji,
                added=added,
                now=datetime.now(UTC),
                bot_user=bot_user,
            )
            if outcome.reactions != state.reactions:
                self.s.catalog.set_reactions(db, req["id"], outcome.reactions)
            changes: dict[str, Any] = {"approved_by": json.dumps(sorted(outcome.approvals))}
            if outcome.status != req["status"]:
                changes.update(status=outcome.status, decided_at=now(), reason=outcome.reason)
            db["requests"].update(req["id"], changes)
            if outcome.action not in (approvals.IGNORE,):
                self.s.catalog.audit(
                    user,
                    f"{req['kind']}.{outcome.action}",
                    req["id"],
                    db=db,
                    emoji=emoji,
                    reason=outcome.reason,
                )
        if outcome.action == approvals.TELL:
            self._tell(channel, ts, user, outcome.reason)
        if outcome.action in (
            approvals.COUNT,
            approvals.WITHDRAW,
            approvals.REJECT,
            approvals.EXPIRE,
        ):
            self._refresh(req["id"])
        if outcome.action == approvals.APPROVE:
            self.start(req["id"])
        return outcome

    def _tell(self, channel: str, ts: str, user: str, text: str) -> None:
        if self.s.slack is None:
            return
        try:
            self.s.slack.chat_postEphemeral(channel=channel, user=user, text=f"<@{user}>, {text}.")
        except slack_errors():
            Message(self.s.slack, channel, thread_ts=ts).post(f"<@{user}>, {text}.", [])

    # -- running -------------------------------------------------------------------------

    def start(self, req_id: str) -> bool:
        """Claim the approved request and run its job in the background; once only."""
        if not self.s.catalog.claim_job(req_id):
            return False
        self._refresh(req_id)
        self.s.jobs.submit(self._run, req_id)
        return True

    def _run(self, req_id: str) -> None:
        req = self.s.catalog.get_request(req_id)
        thread = Message(self.s.slack, req["channel"], thread_ts=req["ts"])
        progress = Message(self.s.slack, req["channel"], thread_ts=req["ts"])
        progress.post(f":gear: {messages.KIND_WORDS[req['kind']]} started.", [])
        try:
            drill = self.s.restores.run(
                kind=req["kind"],
                snap_id=req["snapshot_id"],
                requested_by=req["requested_by"],
                approved_by=json.loads(req["approved_by"] or "[]"),
                request_id=req_id,
                phase=lambda text: progress.update(f":gear: {text}", [], final=True),
            )
        except AtlasError as exc:
            self.s.catalog.update_request(req_id, status=approvals.FAILED, reason=str(exc))
            self._refresh(req_id)
            thread.post(messages.error(str(exc)), [])
            Message(self.s.slack, req["channel"]).post(
                messages.error(
                    f"{messages.KIND_WORDS[req['kind']]} for request {req_id} failed: {exc}"
                ),
                [],
            )
            return
        ok = drill["status"] == "passed"
        self.s.catalog.update_request(
            req_id,
            status=approvals.DONE if ok else approvals.FAILED,
            drill_id=drill["id"],
            reason=None if ok else (drill.get("error") or "verification failed"),
        )
        self._refresh(req_id)
        text, blocks = messages.drill_report(drill, self.s.restores.previous_passed(drill))
        thread.post(text, blocks)
        Message(self.s.slack, req["channel"]).post(text, blocks)  # the verdict in the channel too

    # -- housekeeping --------------------------------------------------------------------

    def expire_due(self) -> list[str]:
        """Close pending requests past their expiry and say so on their messages."""
        expired = []
        for req in self.s.catalog.requests_where("status = 'pending' AND expires_at <= ?", [now()]):
            with self.s.catalog.db() as db:
                cur = db.execute(
                    "UPDATE requests SET status = 'expired', decided_at = ?, reason = ? "
                    "WHERE id = ? AND status = 'pending'",
                    [now(), "nobody approved it in time", req["id"]],
                )
            if cur.rowcount == 1:
                self.s.catalog.audit("atlas", f"{req['kind']}.expired", req["id"])
                self._refresh(req["id"])
                expired.append(req["id"])
        return expired

    def resume(self) -> None:
        """After a restart: run approved jobs that never started; fail ones that died."""
        mine = owner_id().rsplit(":", 1)[0]
        for req in self.s.catalog.requests_where("status = 'running'", []):
            host, _, pid = (req.get("owner") or "").rpartition(":")
            if host == mine and pid.isdigit() and not pid_alive(int(pid)):
                self.s.catalog.update_request(
                    req["id"], status=approvals.FAILED, reason="Atlas restarted while the job ran"
                )
                for d in self.s.catalog.list_drills(limit=100):
                    if d["request_id"] == req["id"] and d["status"] == "running":
                        self.s.catalog.update_drill(
                            d["id"],
                            status="failed",
                            error="Atlas restarted while it ran",
                            finished_at=now(),
                        )
                self.s.catalog.audit("atlas", f"{req['kind']}.interrupted", req["id"])
                self._refresh(req["id"])
        self.s.restores.clean_up_scratch()  # what the interrupted drills left on staging
        for req in self.s.catalog.requests_where("status = 'approved'", []):
            self.start(req["id"])
        self.expire_due()
