"""Drill-due reminders: owed from the first good snapshot, posted once, with a button
that opens the same approval flow as `/atlas drill`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.ops import housekeeping
from tests.support.bot import SECRET
from tests.support.helpers import services_for, settings_for
from tests.support.ops import eventually
from tests.support.rds import rds_client, rds_env, rds_server
from tests.support.slack import block_actions_payload, post_interaction

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest


def test_never_drilled_database_gets_overdue_reminders(pg_db, pg_url, small, tmp_path, slack_api):
    """The first good snapshot starts the obligation: its quarter needs a passed drill."""
    services = services_for(
        settings_for(pg_url, tmp_path, ATLAS_CHANNEL="CREMIND"), slack_api.client()
    )
    row = services.taker.take(requested_by="U1")
    started = datetime.fromisoformat(row.started_at)
    q = (started.month - 1) // 3
    next_quarter = datetime(started.year + (q == 3), (q + 1) % 4 * 3 + 1, 1, tzinfo=UTC)
    posted = housekeeping.drill_reminders(services, at=next_quarter + timedelta(days=9))
    assert posted == [f"{pg_db}:{started.year}-Q{q + 1}:overdue-1"]
    text = slack_api.wait_for("chat.postMessage")["params"]["text"]
    assert "overdue" in text and "No restore drill has passed yet" in text
    assert housekeeping.drill_reminders(services, at=next_quarter + timedelta(days=10)) == []


# -- 8. the reminder's button ----------------------------------------------------------------------


def test_reminder_button_opens_a_drill_request(bot, pg_db):
    snap = bot.services.taker.take(requested_by="U_SNAP")
    code, _ = post_interaction(
        bot.url,
        SECRET,
        block_actions_payload(
            "atlas_request_drill",
            value=pg_db,
            user_id="U_REQ",
            channel_id="C1",
            response_url=bot.slack.response_url,
        ),
    )
    assert code == 200
    msg = bot.slack.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "requested" in str(c["params"]["text"]),
        timeout=20,
    )
    assert msg["params"]["channel"] == "C1"
    assert snap.id in msg["params"]["text"] and "Restore drill requested" in msg["params"]["text"]

    def one_request() -> dict[str, Any]:
        reqs = bot.services.catalog.list_requests()
        assert len(reqs) == 1
        return reqs[0]

    req = eventually(one_request)
    assert (req.kind, req.snapshot_id, req.requested_by, req.status) == (
        "drill",
        snap.id,
        "U_REQ",
        "pending",
    )

    # a button for a database Atlas does not know: told privately, nothing requested
    code, _ = post_interaction(
        bot.url,
        SECRET,
        block_actions_payload(
            "atlas_request_drill",
            value="nope",
            user_id="U_REQ",
            response_url=bot.slack.response_url,
        ),
    )
    assert code == 200
    err = bot.slack.wait_for(
        lambda c: c["method"] == "response_url" and "Unknown database" in str(c["params"]),
        timeout=20,
    )
    assert err["params"].get("response_type") == "ephemeral"
    assert len(bot.services.catalog.list_requests()) == 1

    # a badly signed click does nothing
    code, _ = post_interaction(
        bot.url,
        SECRET,
        block_actions_payload("atlas_request_drill", value=pg_db, user_id="U_X"),
        bad_signature=True,
    )
    assert code == 401
