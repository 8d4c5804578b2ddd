"""A reaction on a request's message: decided by the pure policy, applied in one
catalog transaction, so duplicated or racing reactions make exactly one decision."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.approval.ask import ApprovalRequests
from bot.approval.jobs import ApprovedJobs
from bot.catalog import Catalog, RequestChange
from bot.policy import approvals
from bot.records import Request, RequestFields, now
from bot.report.chat import Chat

REFRESH = (approvals.COUNT, approvals.WITHDRAW, approvals.REJECT, approvals.EXPIRE)


class ReactionApplier:
    """Applies a reaction to the request on its message, atomically, and starts the job once approved."""

    def __init__(
        self, catalog: Catalog, chat: Chat, ask: ApprovalRequests, jobs: ApprovedJobs
    ) -> None:
        self.catalog, self.chat, self.ask, self.jobs = catalog, chat, ask, jobs

    def on_reaction(
        self,
        *,
        user: str,
        emoji: str,
        added: bool,
        channel: str,
        ts: str,
        bot_user: str | None,
        via: str = "slack",
    ) -> approvals.Outcome | None:
        """Apply one reaction; start the job if this one approved it. `via` (slack or
        console) is written in the audit, so an approval typed in a terminal says so."""
        found = self.catalog.request_by_message(channel, ts)
        if found is None:
            return None
        outcomes: list[approvals.Outcome] = []

        def decide(req: Request, reactions: frozenset[tuple[str, str]]) -> RequestChange:
            outcome = approvals.on_reaction(
                self.ask.policy(req),
                approvals.RequestState(
                    requester=req.requested_by,
                    status=req.status,
                    expires_at=datetime.fromisoformat(req.expires_at),
                    reactions=reactions,
                ),
                user=user,
                emoji=emoji,
                added=added,
                now=datetime.now(UTC),
                bot_user=bot_user,
            )
            outcomes.append(outcome)
            fields: RequestFields = {"approved_by": sorted(outcome.approvals)}
            if outcome.status != req.status:
                fields |= {"status": outcome.status, "decided_at": now(), "reason": outcome.reason}
            audit = None
            if outcome.action != approvals.IGNORE:
                detail = {"emoji": emoji, "reason": outcome.reason, "via": via}
                audit = (user, f"{req.kind}.{outcome.action}", detail)
            return RequestChange(outcome.reactions, fields, audit)

        req, _ = self.catalog.decide_request(found.id, decide)
        outcome = outcomes[-1]
        if outcome.action == approvals.TELL:
            self.chat.tell(channel, user, f"<@{user}>, {outcome.reason}.", thread_ts=ts)
        if outcome.action in REFRESH:
            self.ask.refresh(req.id)
        if outcome.action == approvals.APPROVE:
            self.jobs.start(req.id)
        return outcome
