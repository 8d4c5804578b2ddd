"""reaction_added / reaction_removed, called directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from slack_bolt import BoltContext

from bot.records import Kind, Request, RequestStatus
from bot.services import Services
from handlers import reactions
from tests.handlers.conftest import NO_SERVER, good_snapshot
from tests.support.helpers import services_for, settings_for


def event(user: str, emoji: str, ts: str = "1.0001", kind: str = "message") -> dict:
    return {"user": user, "reaction": emoji, "item": {"type": kind, "channel": "C1", "ts": ts}}


def test_parse_keeps_who_what_where_and_drops_skin_tones() -> None:
    parsed = reactions.parse(event("U1", "white_check_mark::skin-tone-3"))
    assert parsed == reactions.Reaction("U1", "white_check_mark", "C1", "1.0001")
    assert reactions.parse(event("U1", "x", kind="file")) is None
    assert reactions.parse({"reaction": "x", "item": {"type": "message"}}) is None


def _request(services: Services, required: int = 2) -> Request:
    snap = good_snapshot(services)
    created = datetime.now(UTC)
    req = Request(
        id="req-1",
        kind=Kind.DRILL,
        snapshot_id=snap.id,
        database="app",
        requested_by="U_REQ",
        created_at=created.isoformat(),
        expires_at=(created + timedelta(hours=1)).isoformat(),
        required=required,
        approvers=["U_ANN", "U_BOB"],
        channel="C1",
        ts="1.0001",
    )
    return services.catalog.add_request(req)


def test_an_approvers_reaction_counts_and_removing_it_withdraws(
    context: BoltContext, services: Services
) -> None:
    req = _request(services)
    reactions.reaction_added(event("U_ANN", "white_check_mark"), context)
    assert services.catalog.get_request(req.id).approved_by == ["U_ANN"]
    reactions.reaction_removed(event("U_ANN", "white_check_mark"), context)
    assert services.catalog.get_request(req.id).approved_by == []
    assert services.catalog.get_request(req.id).status == RequestStatus.PENDING


def test_the_bots_own_and_unrelated_reactions_change_nothing(
    context: BoltContext, services: Services
) -> None:
    req = _request(services)
    reactions.reaction_added(event("UBOT", "white_check_mark"), context)
    reactions.reaction_added(event("U_ANN", "tada"), context)
    reactions.reaction_added(event("U_ANN", "white_check_mark", ts="9.9999"), context)
    assert services.catalog.get_request(req.id).approved_by == []


def test_a_rejection_ends_the_request(context: BoltContext, services: Services) -> None:
    req = _request(services)
    reactions.reaction_added(event("U_BOB", "x"), context)
    after = services.catalog.get_request(req.id)
    assert after.status == RequestStatus.REJECTED and after.reason == "rejected by <@U_BOB>"
    actions = [a.action for a in services.catalog.audit_log(subject=req.id)]
    assert "drill.reject" in actions


def test_listeners_take_their_services_from_the_context(services: Services, tmp_path: Path) -> None:
    """Two apps in one process, each with its own catalog: a reaction acts through the
    Services of the context it arrives with, never through another's."""
    other = services_for(settings_for(NO_SERVER, tmp_path / "other"))
    try:
        req = _request(services)
        reactions.reaction_added(
            event("U_ANN", "white_check_mark"), BoltContext({"services": other})
        )
        assert services.catalog.get_request(req.id).approved_by == []
        reactions.reaction_added(
            event("U_ANN", "white_check_mark"), BoltContext({"services": services})
        )
        assert services.catalog.get_request(req.id).approved_by == ["U_ANN"]
    finally:
        other.shutdown()
