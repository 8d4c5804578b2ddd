"""Pure unit tests for bot.policy.approvals: what one Slack reaction does to an approval request."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.policy import approvals as ap
from bot.policy.approvals import Outcome, Policy, RequestState, approvals, is_expired, on_reaction
from bot.records import RequestStatus

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EXPIRES = NOW + timedelta(minutes=30)

REQUESTER = "U_REQ"
ALICE = "U_ALICE"
BOB = "U_BOB"
CAROL = "U_CAROL"
MALLORY = "U_MALLORY"  # not an approver
BOT = "U_BOT"

APPROVERS = frozenset({ALICE, BOB, CAROL})


def policy(**kw) -> Policy:
    kw.setdefault("approvers", APPROVERS)
    return Policy(**kw)


def request(status: str = ap.PENDING, reactions=(), requester: str = REQUESTER, expires_at=EXPIRES):
    return RequestState(
        requester=requester,
        status=status,
        expires_at=expires_at,
        reactions=frozenset(reactions),
    )


def react(
    pol: Policy,
    req: RequestState,
    user: str,
    emoji: str = "white_check_mark",
    *,
    added: bool = True,
    now: datetime = NOW,
    bot_user: str | None = BOT,
) -> Outcome:
    return on_reaction(pol, req, user=user, emoji=emoji, added=added, now=now, bot_user=bot_user)


def apply(req: RequestState, out: Outcome) -> RequestState:
    """What the catalog does with an outcome: store the new status and reaction set."""
    return dataclasses.replace(req, status=out.status, reactions=out.reactions)


# -- Policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("required", [0, -1])
def test_policy_rejects_fewer_than_one_required_approval(required: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Policy(approvers=APPROVERS, required=required)


def test_policy_defaults() -> None:
    p = Policy(approvers=APPROVERS)
    assert p.required == 1
    assert p.ttl == timedelta(minutes=60)
    assert p.approve_emojis == frozenset({"white_check_mark"})
    assert p.reject_emojis == frozenset({"x"})


def test_policy_and_request_are_frozen() -> None:
    p = policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.required = 5  # type: ignore[misc]
    r = request()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status = ap.APPROVED  # type: ignore[misc]


# -- is_expired -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (EXPIRES - timedelta(minutes=1), False),
        (EXPIRES - timedelta(microseconds=1), False),
        (EXPIRES, True),
        (EXPIRES + timedelta(microseconds=1), True),
        (EXPIRES + timedelta(days=1), True),
    ],
)
def test_is_expired_around_the_boundary(now: datetime, expected: bool) -> None:
    assert is_expired(request(), now) is expected


def test_is_expired_compares_instants_across_timezones() -> None:
    plus2 = timezone(timedelta(hours=2))
    req = request()
    assert is_expired(req, EXPIRES.astimezone(plus2)) is True
    assert is_expired(req, (EXPIRES - timedelta(seconds=1)).astimezone(plus2)) is False


@pytest.mark.parametrize(
    "status",
    [
        ap.APPROVED,
        ap.REJECTED,
        ap.EXPIRED,
        RequestStatus.RUNNING,
        RequestStatus.DONE,
        RequestStatus.FAILED,
    ],
)
def test_is_expired_only_for_pending_requests(status: str) -> None:
    assert is_expired(request(status=status), EXPIRES + timedelta(hours=1)) is False


# -- approvals --------------------------------------------------------------------------------


def test_approvals_counts_approvers_with_an_approve_emoji() -> None:
    p = policy(approve_emojis=frozenset({"white_check_mark", "+1"}))
    req = request()
    reactions = frozenset(
        {
            (ALICE, "white_check_mark"),
            (ALICE, "+1"),  # same person twice: one approval
            (BOB, "+1"),
            (CAROL, "x"),  # a rejection emoji is not an approval
            (CAROL, "tada"),  # nor is an unrelated emoji
            (MALLORY, "white_check_mark"),  # not an approver
            (REQUESTER, "white_check_mark"),  # the requester never counts
        }
    )
    assert approvals(p, req, reactions) == frozenset({ALICE, BOB})


def test_approvals_excludes_requester_even_if_approver() -> None:
    req = request(requester=ALICE)
    assert approvals(policy(), req, frozenset({(ALICE, "white_check_mark")})) == frozenset()


def test_approvals_of_nothing_is_empty() -> None:
    assert approvals(policy(), request(), frozenset()) == frozenset()


# -- approving --------------------------------------------------------------------------------


@pytest.mark.parametrize("approver", sorted(APPROVERS))
def test_single_approval_approves(approver: str) -> None:
    out = react(policy(), request(), approver)
    assert out.action == ap.APPROVE
    assert out.status == ap.APPROVED
    assert out.approvals == frozenset({approver})
    assert (approver, "white_check_mark") in out.reactions


def test_two_required_counts_then_approves() -> None:
    p = policy(required=2)
    req = request()

    first = react(p, req, ALICE)
    assert first.action == ap.COUNT
    assert first.reason == "1 of 2 approvals"
    assert first.status == ap.PENDING
    assert first.approvals == frozenset({ALICE})

    req = apply(req, first)
    second = react(p, req, BOB)
    assert second.action == ap.APPROVE
    assert second.status == ap.APPROVED
    assert second.approvals == frozenset({ALICE, BOB})


def test_three_required_counts_twice_then_approves() -> None:
    p = policy(required=3)
    req = request()
    actions = []
    for user in (ALICE, BOB, CAROL):
        out = react(p, req, user)
        actions.append((out.action, out.reason))
        req = apply(req, out)
    assert actions == [
        (ap.COUNT, "1 of 3 approvals"),
        (ap.COUNT, "2 of 3 approvals"),
        (ap.APPROVE, "enough approvals"),
    ]
    assert req.status == ap.APPROVED


# -- the requester ----------------------------------------------------------------------------


def test_requester_who_is_approver_cannot_approve_own_request() -> None:
    req = request(requester=ALICE)
    out = react(policy(), req, ALICE)
    assert out.action == ap.TELL
    assert "cannot approve" in out.reason
    assert out.status == ap.PENDING
    assert out.approvals == frozenset()
    assert out.reactions == req.reactions


def test_requester_self_approval_is_not_counted_toward_required() -> None:
    p = policy(required=2)
    req = request(requester=ALICE)
    out = react(p, req, ALICE)
    assert out.action == ap.TELL
    req = apply(req, out)
    out = react(p, req, BOB)
    assert out.action == ap.COUNT
    assert out.reason == "1 of 2 approvals"
    assert out.approvals == frozenset({BOB})


def test_requester_who_is_not_approver_cannot_approve() -> None:
    out = react(policy(), request(), REQUESTER)
    assert out.action == ap.TELL
    assert out.status == ap.PENDING
    assert out.approvals == frozenset()


def test_requester_who_is_approver_can_reject() -> None:
    req = request(requester=ALICE)
    out = react(policy(), req, ALICE, "x")
    assert out.action == ap.REJECT
    assert out.status == ap.REJECTED


# -- the bot ----------------------------------------------------------------------------------


@pytest.mark.parametrize("emoji", ["white_check_mark", "x", "tada"])
@pytest.mark.parametrize("added", [True, False])
def test_bot_own_reaction_is_ignored(emoji: str, added: bool) -> None:
    p = policy(approvers=APPROVERS | {BOT})  # even if it were listed as an approver
    req = request(reactions={(BOT, emoji)})
    out = react(p, req, BOT, emoji, added=added, bot_user=BOT)
    assert out.action == ap.IGNORE
    assert out.status == ap.PENDING
    assert out.reactions == req.reactions


def test_bot_reaction_is_ignored_even_when_expired() -> None:
    out = react(policy(), request(), BOT, now=EXPIRES + timedelta(hours=1), bot_user=BOT)
    assert out.action == ap.IGNORE
    assert out.status == ap.PENDING


@pytest.mark.parametrize("bot_user", [None, ""])
def test_no_bot_user_does_not_ignore_everyone(bot_user: str | None) -> None:
    out = react(policy(), request(), ALICE, bot_user=bot_user)
    assert out.action == ap.APPROVE


# -- non-approvers ----------------------------------------------------------------------------


@pytest.mark.parametrize("emoji", ["white_check_mark", "x"])
def test_non_approver_is_told_and_nothing_counts(emoji: str) -> None:
    req = request()
    out = react(policy(), req, MALLORY, emoji)
    assert out.action == ap.TELL
    assert "not an approver" in out.reason
    assert out.status == ap.PENDING
    assert out.reactions == req.reactions
    assert out.approvals == frozenset()


def test_non_approver_approval_does_not_help_reach_required() -> None:
    p = policy(required=2)
    req = request()
    for user in (MALLORY, ALICE):
        req = apply(req, react(p, req, user))
    assert req.status == ap.PENDING
    assert approvals(p, req, req.reactions) == frozenset({ALICE})


# -- one person counts once -------------------------------------------------------------------

MULTI = {"approve_emojis": frozenset({"white_check_mark", "+1"}), "required": 2}


def test_one_person_counts_once_across_approve_emojis() -> None:
    p = policy(**MULTI)
    req = request()

    first = react(p, req, ALICE, "white_check_mark")
    assert first.action == ap.COUNT
    req = apply(req, first)

    second = react(p, req, ALICE, "+1")
    assert second.action == ap.IGNORE
    assert "already approved" in second.reason
    assert second.status == ap.PENDING
    assert second.approvals == frozenset({ALICE})
    assert len(second.approvals) == 1
    assert second.reactions == frozenset({(ALICE, "white_check_mark"), (ALICE, "+1")})

    req = apply(req, second)
    third = react(p, req, BOB, "+1")
    assert third.action == ap.APPROVE
    assert third.approvals == frozenset({ALICE, BOB})


# -- withdrawing ------------------------------------------------------------------------------


def test_removing_approve_emoji_withdraws() -> None:
    p = policy(required=2)
    req = request(reactions={(ALICE, "white_check_mark")})
    out = react(p, req, ALICE, added=False)
    assert out.action == ap.WITHDRAW
    assert ALICE in out.reason
    assert out.status == ap.PENDING
    assert out.approvals == frozenset()
    assert out.reactions == frozenset()


def test_withdrawn_approval_no_longer_counts_toward_required() -> None:
    p = policy(required=2)
    req = request()
    req = apply(req, react(p, req, ALICE))
    req = apply(req, react(p, req, ALICE, added=False))
    out = react(p, req, BOB)
    assert out.action == ap.COUNT
    assert out.reason == "1 of 2 approvals"
    assert out.approvals == frozenset({BOB})
    # and re-approving after a withdrawal counts again
    out = react(p, apply(req, out), ALICE)
    assert out.action == ap.APPROVE


def test_withdraw_shrinks_approvals_of_several() -> None:
    p = policy(required=3)
    req = request(reactions={(ALICE, "white_check_mark"), (BOB, "white_check_mark")})
    out = react(p, req, BOB, added=False)
    assert out.action == ap.WITHDRAW
    assert out.approvals == frozenset({ALICE})


def test_removing_one_of_two_approve_emojis_keeps_the_approval() -> None:
    p = policy(**MULTI)
    req = request(reactions={(ALICE, "white_check_mark"), (ALICE, "+1")})
    out = react(p, req, ALICE, "+1", added=False)
    assert out.action == ap.IGNORE
    assert out.status == ap.PENDING
    assert out.approvals == frozenset({ALICE})
    assert out.reactions == frozenset({(ALICE, "white_check_mark")})

    # removing the last one then withdraws
    out = react(p, apply(req, out), ALICE, "white_check_mark", added=False)
    assert out.action == ap.WITHDRAW
    assert out.approvals == frozenset()


@pytest.mark.parametrize(
    ("user", "emoji"),
    [
        (ALICE, "white_check_mark"),  # approver, but never added
        (MALLORY, "white_check_mark"),  # non-approver: was told, never recorded
        (MALLORY, "x"),
        (REQUESTER, "white_check_mark"),
    ],
)
def test_removing_a_reaction_that_was_never_counted_is_ignored(user: str, emoji: str) -> None:
    req = request(reactions={(BOB, "white_check_mark")})
    out = react(policy(required=2), req, user, emoji, added=False)
    assert out.action == ap.IGNORE
    assert out.status == ap.PENDING
    assert out.reactions == req.reactions
    assert out.approvals == frozenset({BOB})


def test_requester_removing_told_self_approval_is_ignored() -> None:
    p = policy()
    req = request(requester=ALICE)
    req = apply(req, react(p, req, ALICE))  # TELL, not recorded
    out = react(p, req, ALICE, added=False)
    assert out.action == ap.IGNORE
    assert out.approvals == frozenset()


# -- rejecting --------------------------------------------------------------------------------


def test_reject_by_approver_ends_request() -> None:
    p = policy(required=2)
    req = request(reactions={(ALICE, "white_check_mark")})
    out = react(p, req, BOB, "x")
    assert out.action == ap.REJECT
    assert out.status == ap.REJECTED
    assert BOB in out.reason
    assert (BOB, "x") in out.reactions


@pytest.mark.parametrize(
    ("user", "emoji", "added"),
    [
        (ALICE, "white_check_mark", True),
        (BOB, "white_check_mark", True),
        (CAROL, "x", True),
        (BOB, "x", True),  # the same rejection delivered again
        (BOB, "x", False),  # the rejecter changes their mind: too late
        (ALICE, "white_check_mark", False),
        (MALLORY, "white_check_mark", True),
        (REQUESTER, "x", True),
    ],
)
def test_any_reaction_after_rejection_is_ignored(user: str, emoji: str, added: bool) -> None:
    p = policy(required=2)
    req = request(reactions={(ALICE, "white_check_mark")})
    req = apply(req, react(p, req, BOB, "x"))
    assert req.status == ap.REJECTED

    out = react(p, req, user, emoji, added=added)
    # an approver's new approval is answered (it changes nothing); all else is silent
    late_approval = added and emoji == "white_check_mark" and user in (ALICE, BOB)
    assert out.action == (ap.TELL if late_approval else ap.IGNORE)
    assert "rejected" in out.reason
    assert out.status == ap.REJECTED
    assert out.reactions == req.reactions


def test_reject_wins_over_later_approvals_reaching_required() -> None:
    p = policy(required=1)
    req = apply(request(), react(policy(), request(), BOB, "x"))
    out = react(p, req, ALICE)
    assert out.action == ap.TELL and "changes nothing" in out.reason  # said, never approved
    assert out.status == ap.REJECTED


# -- expiry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now", [EXPIRES, EXPIRES + timedelta(seconds=1), EXPIRES + timedelta(days=3)]
)
@pytest.mark.parametrize(
    ("user", "emoji", "added"),
    [
        (ALICE, "white_check_mark", True),  # even a valid approval is too late
        (ALICE, "x", True),
        (MALLORY, "white_check_mark", True),
        (ALICE, "white_check_mark", False),
    ],
)
def test_reaction_after_expiry_expires_pending_request(
    now: datetime, user: str, emoji: str, added: bool
) -> None:
    req = request(reactions={(ALICE, "white_check_mark")} if not added else ())
    out = react(policy(required=2), req, user, emoji, added=added, now=now)
    assert out.action == ap.EXPIRE
    assert out.status == ap.EXPIRED
    assert out.reactions == req.reactions


def test_approval_just_before_expiry_still_counts() -> None:
    out = react(policy(), request(), ALICE, now=EXPIRES - timedelta(microseconds=1))
    assert out.action == ap.APPROVE
    assert out.status == ap.APPROVED


def test_reaction_on_expired_request_is_ignored() -> None:
    req = request()
    req = apply(req, react(policy(), req, ALICE, now=EXPIRES))
    assert req.status == ap.EXPIRED
    for emoji in ("white_check_mark", "x"):
        out = react(policy(), req, BOB, emoji, now=EXPIRES + timedelta(minutes=5))
        assert out.action == (ap.TELL if emoji == "white_check_mark" else ap.IGNORE)
        assert out.status == ap.EXPIRED
    # even a clock that (wrongly) says it is earlier does not revive it
    out = react(policy(), req, BOB, now=NOW)
    assert out.action == ap.TELL and out.status == ap.EXPIRED
    assert out.status == ap.EXPIRED


# -- unrelated emojis -------------------------------------------------------------------------


@pytest.mark.parametrize("emoji", ["tada", "eyes", "heavy_check_mark", "+1", ""])
@pytest.mark.parametrize("user", [ALICE, MALLORY, REQUESTER])
@pytest.mark.parametrize("added", [True, False])
def test_non_approval_emojis_are_ignored(emoji: str, user: str, added: bool) -> None:
    req = request(reactions={(user, emoji)})
    out = react(policy(), req, user, emoji, added=added)
    assert out.action == ap.IGNORE
    assert out.status == ap.PENDING
    assert out.reactions == req.reactions
    assert out.approvals == frozenset()


def test_non_approval_emoji_is_ignored_even_when_expired() -> None:
    out = react(policy(), request(), ALICE, "tada", now=EXPIRES + timedelta(hours=1))
    assert out.action == ap.IGNORE
    assert out.status == ap.PENDING


def test_custom_emojis() -> None:
    p = policy(approve_emojis=frozenset({"ship_it"}), reject_emojis=frozenset({"no_entry"}))
    assert react(p, request(), ALICE, "white_check_mark").action == ap.IGNORE
    assert react(p, request(), ALICE, "x").action == ap.IGNORE
    assert react(p, request(), ALICE, "ship_it").action == ap.APPROVE
    assert react(p, request(), ALICE, "no_entry").action == ap.REJECT


# -- already decided: exactly one job per request ----------------------------------------------


@pytest.mark.parametrize(
    "status", [ap.APPROVED, RequestStatus.RUNNING, RequestStatus.DONE, RequestStatus.FAILED]
)
@pytest.mark.parametrize(
    ("user", "emoji", "added"),
    [
        (CAROL, "white_check_mark", True),
        (ALICE, "white_check_mark", True),
        (ALICE, "white_check_mark", False),  # withdrawing after the fact changes nothing
        (CAROL, "x", True),  # too late to reject
        (MALLORY, "white_check_mark", True),
    ],
)
def test_more_reactions_on_decided_request_are_ignored(
    status: str, user: str, emoji: str, added: bool
) -> None:
    req = request(status=status, reactions={(ALICE, "white_check_mark"), (BOB, "white_check_mark")})
    out = react(policy(required=2), req, user, emoji, added=added)
    assert out.action == ap.IGNORE
    assert status in out.reason
    assert out.status == status
    assert out.reactions == req.reactions


@pytest.mark.parametrize("status", [ap.APPROVED, RequestStatus.RUNNING, RequestStatus.DONE])
def test_decided_request_never_approves_again_even_after_expiry(status: str) -> None:
    req = request(status=status, reactions={(ALICE, "white_check_mark")})
    out = react(policy(), req, BOB, now=EXPIRES + timedelta(days=1))
    assert out.action == ap.IGNORE
    assert out.status == status


def test_exactly_one_approve_over_a_stream_of_reactions() -> None:
    p = policy(required=2, approve_emojis=frozenset({"white_check_mark", "+1"}))
    req = request()
    events = [
        (ALICE, "white_check_mark", True),
        (ALICE, "white_check_mark", True),  # duplicate delivery
        (MALLORY, "white_check_mark", True),
        (ALICE, "+1", True),
        (REQUESTER, "white_check_mark", True),
        (BOB, "+1", True),  # second distinct approver -> APPROVE
        (BOB, "+1", True),  # duplicate delivery
        (CAROL, "white_check_mark", True),
        (BOB, "+1", False),
        (CAROL, "x", True),
    ]
    actions = []
    for user, emoji, added in events:
        out = react(p, req, user, emoji, added=added)
        actions.append(out.action)
        req = apply(req, out)
    assert actions.count(ap.APPROVE) == 1
    assert actions.index(ap.APPROVE) == 5
    assert req.status == ap.APPROVED


# -- purity and duplicate delivery ------------------------------------------------------------

PURITY_CASES = [
    pytest.param(policy(), request(), ALICE, "white_check_mark", True, NOW, id="approve"),
    pytest.param(policy(required=2), request(), ALICE, "white_check_mark", True, NOW, id="count"),
    pytest.param(policy(), request(), ALICE, "x", True, NOW, id="reject"),
    pytest.param(policy(), request(), MALLORY, "x", True, NOW, id="tell"),
    pytest.param(
        policy(),
        request(reactions={(ALICE, "white_check_mark")}),
        ALICE,
        "white_check_mark",
        False,
        NOW,
        id="withdraw",
    ),
    pytest.param(policy(), request(), ALICE, "white_check_mark", True, EXPIRES, id="expire"),
    pytest.param(policy(), request(), ALICE, "tada", True, NOW, id="ignore"),
]


@pytest.mark.parametrize(("pol", "req", "user", "emoji", "added", "now"), PURITY_CASES)
def test_on_reaction_is_deterministic_and_does_not_mutate(
    pol: Policy, req: RequestState, user: str, emoji: str, added: bool, now: datetime
) -> None:
    before_req = dataclasses.replace(req)
    before_reactions = frozenset(req.reactions)
    before_pol = dataclasses.replace(pol)

    a = react(pol, req, user, emoji, added=added, now=now)
    b = react(pol, req, user, emoji, added=added, now=now)

    assert a == b
    assert req == before_req
    assert req.reactions == before_reactions
    assert pol == before_pol


@pytest.mark.parametrize("required", [1, 2])
def test_duplicate_added_delivery_does_not_double_count(required: int) -> None:
    p = policy(required=required)
    req = request()

    first = react(p, req, ALICE)
    assert first.approvals == frozenset({ALICE})
    req = apply(req, first)

    again = react(p, req, ALICE)
    assert again.action == ap.IGNORE
    assert again.approvals == frozenset({ALICE})
    assert again.reactions == first.reactions
    assert again.status == first.status


def test_duplicate_added_delivery_keeping_pending_status_does_not_double_count() -> None:
    """Even if only the reaction set is carried forward, a redelivery is not a new approval."""
    p = policy(required=2)
    req = request()
    first = react(p, req, ALICE)
    assert first.action == ap.COUNT
    req = dataclasses.replace(req, reactions=first.reactions)
    again = react(p, req, ALICE)
    assert again.action == ap.IGNORE
    assert "already approved" in again.reason
    assert again.status == ap.PENDING
    assert again.approvals == frozenset({ALICE})


def test_duplicate_removed_delivery_is_ignored() -> None:
    p = policy(required=2)
    req = request(reactions={(ALICE, "white_check_mark"), (BOB, "white_check_mark")})
    first = react(p, req, ALICE, added=False)
    assert first.action == ap.WITHDRAW
    req = dataclasses.replace(req, reactions=first.reactions)
    again = react(p, req, ALICE, added=False)
    assert again.action == ap.IGNORE
    assert again.approvals == frozenset({BOB})
    assert again.reactions == first.reactions


def test_duplicate_reject_delivery_is_ignored() -> None:
    p = policy()
    req = request()
    first = react(p, req, ALICE, "x")
    assert first.action == ap.REJECT
    again = react(p, apply(req, first), ALICE, "x")
    assert again.action == ap.IGNORE
    assert again.status == ap.REJECTED


def test_outcome_approvals_agree_with_approvals_function() -> None:
    p = policy(required=3, approve_emojis=frozenset({"white_check_mark", "+1"}))
    req = request(reactions={(ALICE, "+1"), (MALLORY, "white_check_mark")})
    out = react(p, req, BOB)
    assert out.approvals == approvals(p, req, out.reactions)
