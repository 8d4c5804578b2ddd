"""Approval policy for restores and drills: pure functions of plain values, no I/O.

The catalog applies the outcome inside one transaction, so duplicated or racing
reactions still produce exactly one decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from bot.records import RequestStatus
from bot.words import count

PENDING = RequestStatus.PENDING
APPROVED = RequestStatus.APPROVED
REJECTED = RequestStatus.REJECTED
EXPIRED = RequestStatus.EXPIRED


class Action(StrEnum):
    """What happened to one reaction."""

    IGNORE = "ignore"  # nothing changes and nobody needs telling
    TELL = "tell"  # nothing changes; tell the reacting user why
    COUNT = "count"  # an approval counted, more needed
    WITHDRAW = "withdraw"  # an approval was taken back
    APPROVE = "approve"  # enough approvals: start the job
    REJECT = "reject"  # an approver said no: the request ends
    EXPIRE = "expire"  # too late: the request ends


IGNORE, TELL, COUNT, WITHDRAW = Action.IGNORE, Action.TELL, Action.COUNT, Action.WITHDRAW
APPROVE, REJECT, EXPIRE = Action.APPROVE, Action.REJECT, Action.EXPIRE


@dataclass(frozen=True)
class Policy:
    """Who may approve, how many must, and which reactions count."""

    approvers: frozenset[str]  # Slack user ids (user groups already resolved)
    required: int = 1
    ttl: timedelta = timedelta(minutes=60)
    approve_emojis: frozenset[str] = frozenset({"white_check_mark"})
    reject_emojis: frozenset[str] = frozenset({"x"})

    def __post_init__(self) -> None:
        if self.required < 1:
            raise ValueError("required approvals must be at least 1")


@dataclass(frozen=True)
class RequestState:
    """What the policy needs of a request: who asked, where it stands, its reactions."""

    requester: str
    status: RequestStatus
    expires_at: datetime
    reactions: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (user, emoji)


@dataclass(frozen=True)
class Outcome:
    """What a reaction does to a request, and what to say."""

    action: Action
    reason: str
    status: RequestStatus
    reactions: frozenset[tuple[str, str]]
    approvals: frozenset[str]


def approvals(
    policy: Policy, req: RequestState, reactions: frozenset[tuple[str, str]]
) -> frozenset[str]:
    """Who counts: approvers other than the requester with at least one approve emoji on."""
    return frozenset(
        user
        for user, emoji in reactions
        if emoji in policy.approve_emojis and user in policy.approvers and user != req.requester
    )


def is_expired(req: RequestState, now: datetime) -> bool:
    return req.status == PENDING and now >= req.expires_at


def _too_late_to_approve(
    policy: Policy, req: RequestState, user: str, emoji: str, added: bool
) -> bool:
    """An approver's approval of a rejected or expired request: said, not silently lost."""
    return (
        req.status in (REJECTED, EXPIRED)
        and added
        and emoji in policy.approve_emojis
        and user in policy.approvers
        and user != req.requester
    )


def on_reaction(
    policy: Policy,
    req: RequestState,
    *,
    user: str,
    emoji: str,
    added: bool,
    now: datetime,
    bot_user: str | None,
) -> Outcome:
    """Decide what one reaction_added/reaction_removed does to a request."""
    current = approvals(policy, req, req.reactions)

    def out(
        action: Action,
        reason: str,
        status: RequestStatus = req.status,
        reactions: frozenset[tuple[str, str]] = req.reactions,
    ) -> Outcome:
        return Outcome(action, reason, status, reactions, approvals(policy, req, reactions))

    if emoji not in policy.approve_emojis | policy.reject_emojis:
        return out(IGNORE, "not an approval or rejection emoji")
    if bot_user and user == bot_user:
        return out(IGNORE, "the bot's own reaction")
    if _too_late_to_approve(policy, req, user, emoji, added):  # they expect it to count
        return out(
            TELL,
            f"this request is already {req.status}, so your approval changes nothing; "
            "ask for it again with a new request",
        )
    if req.status != PENDING:
        return out(IGNORE, f"the request is already {req.status}")
    if is_expired(req, now):
        return out(EXPIRE, "the request expired before it was approved", EXPIRED)

    key = (user, emoji)
    if not added:
        if key not in req.reactions:
            return out(IGNORE, "that reaction was not counted")
        reactions = req.reactions - {key}
        if user in current and user not in approvals(policy, req, reactions):
            return out(WITHDRAW, f"<@{user}> withdrew their approval", PENDING, reactions)
        return out(IGNORE, "nothing changes", PENDING, reactions)

    if user == req.requester and emoji in policy.approve_emojis:
        return out(TELL, "you asked for this, so you cannot approve it; another approver must")
    if user not in policy.approvers:
        return out(TELL, "you are not an approver for restores, so your reaction does not count")
    if emoji in policy.reject_emojis:
        return out(REJECT, f"rejected by <@{user}>", REJECTED, req.reactions | {key})
    reactions = req.reactions | {key}
    now_approved = approvals(policy, req, reactions)
    if now_approved == current:
        return out(IGNORE, "you already approved", PENDING, reactions)
    if len(now_approved) >= policy.required:
        return out(APPROVE, "enough approvals", APPROVED, reactions)
    return out(
        COUNT, f"{len(now_approved)} of {count(policy.required, 'approval')}", PENDING, reactions
    )
