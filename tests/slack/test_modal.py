"""The restore modal, opened from `/atlas restore`, Home and a message shortcut, and
submitted through real signed interaction requests: a request approved in the channel
like any other, with the reason the requester gave."""

from __future__ import annotations

import json
import time
import uuid

from bot.report.modal import RESTORE_BUTTON, RESTORE_MODAL, SHORTCUT
from tests.support.bot import SECRET, start_bot
from tests.support.pg import fill_sample
from tests.support.slack import APP_ID, TEAM_ID, block_actions_payload, post_interaction


def _opened(slack_api, n: int) -> dict:
    """The `n`th modal opened, once it has been."""
    deadline = time.monotonic() + 30
    while len(calls := slack_api.calls("views.open")) < n:
        assert time.monotonic() < deadline, calls
        time.sleep(0.05)
    return calls[n - 1]["params"]["view"]


def _submission(view: dict, user: str, snap: str | None, kind: str | None, reason: str) -> dict:
    values: dict = {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
    if snap:
        values["snapshot"] = {
            "snapshot": {"type": "static_select", "selected_option": {"value": snap}}
        }
    if kind:
        values["target"] = {"target": {"type": "radio_buttons", "selected_option": {"value": kind}}}
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "atlas-test"},
        "user": {"id": user, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "verification-token-unused",
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:12]}",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": RESTORE_MODAL,
            "private_metadata": view["private_metadata"],
            "state": {"values": values},
        },
    }


def test_the_modal_asks_for_a_drill_that_is_approved_in_the_channel(
    pg, pg_url, pg_db, tmp_path, slack_api
):
    fill_sample(pg_url, rows=30)
    staging = pg.url(pg.create_database(pg_db + "_stg"))
    bot, server = start_bot(
        pg_url, tmp_path, slack_api, STAGING_DATABASE_URL=staging, ATLAS_APPROVERS="U_ANN"
    )
    try:
        bot.command("snapshot tag:migration=0042 before the migration", channel_id="CATLAS")
        bot.wait_final()
        slack_api.clear()
        bot.command("snapshot", channel_id="CATLAS")
        bot.wait_final()
        newest, older = bot.services.snapshots.recent()[:2]
        slack_api.clear()

        code, body = bot.command("restore", user_id="U_REQ", channel_id="CATLAS")
        assert code == 200 and "Choose a snapshot" in body, body
        view = _opened(slack_api, 1)
        [select] = [b["element"] for b in view["blocks"] if b["block_id"] == "snapshot"]
        labels = [o["text"]["text"] for o in select["options"]]
        assert [o["value"] for o in select["options"]] == [newest.id, older.id]  # newest first
        assert "before the migration migration=0042" in labels[1] and all(
            len(x) <= 75 for x in labels
        )

        # a missing reason is shown on the form; nothing is asked
        code, answer = post_interaction(
            bot.url, SECRET, _submission(view, "U_REQ", older.id, "drill", " ")
        )
        assert code == 200 and json.loads(answer)["errors"] == {
            "reason": "say why: approvers read it"
        }
        assert not slack_api.calls("chat.postMessage")

        post_interaction(
            bot.url, SECRET, _submission(view, "U_REQ", older.id, "drill", "<!channel> audit")
        )
        asked = slack_api.wait_for(
            lambda c: "requested" in str(c["params"].get("text")), timeout=30
        )
        assert asked["params"]["channel"] == "CATLAS"
        assert "because: &lt;!channel&gt; audit" in json.dumps(asked["params"]["blocks"])
        [req] = bot.services.catalog.list_requests()
        assert (req.snapshot_id, req.note, req.requested_by) == (
            older.id,
            "<!channel> audit",
            "U_REQ",
        )
        slack_api.wait_for(
            lambda c: c["method"] == "reactions.add" and c["params"].get("name") == "x"
        )
        bot.react("U_ANN", "white_check_mark", asked["response"]["ts"], channel="CATLAS")
        done = bot.wait_final(timeout=90)
        assert ":white_check_mark:" in str(done["params"]["text"]), done
        [drill] = bot.services.catalog.list_jobs(limit=1)
        assert drill.snapshot_id == older.id and drill.approved_by == ["U_ANN"]

        # the message shortcut on a snapshot's message: the same form, that snapshot chosen
        shortcut = {
            "type": "message_action",
            "callback_id": SHORTCUT,
            "trigger_id": "1.abc",
            "team": {"id": TEAM_ID},
            "user": {"id": "U_REQ"},
            "channel": {"id": "CATLAS"},
            "message": {"type": "message", "ts": "1.2", "text": f"Snapshot `{older.id}` stored"},
            "response_url": "http://127.0.0.1:9/unused",
        }
        post_interaction(bot.url, SECRET, shortcut)
        chosen = _opened(slack_api, 2)
        [select] = [b["element"] for b in chosen["blocks"] if b["block_id"] == "snapshot"]
        assert select["initial_option"]["value"] == older.id

        # on the message that says a snapshot is damaged: the form, never offering it
        bot.services.catalog.update_snapshot(older.id, status="corrupt", error="checksum")
        post_interaction(bot.url, SECRET, shortcut)
        [select] = [
            b["element"] for b in _opened(slack_api, 3)["blocks"] if b["block_id"] == "snapshot"
        ]
        assert "initial_option" not in select and older.id not in str(select["options"])

        # Home's button opens it too
        post_interaction(bot.url, SECRET, block_actions_payload(RESTORE_BUTTON, user_id="U_REQ"))
        assert _opened(slack_api, 4)["callback_id"] == RESTORE_MODAL
    finally:
        server.close()  # type: ignore[attr-defined]
        bot.services.shutdown()
