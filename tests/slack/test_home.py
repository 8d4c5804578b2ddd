"""The App Home tab: published on `app_home_opened` (a real signed event), shown again
when the audit log moves on (a snapshot from the CLI), its menu snapshots or asks for a
drill, and within Block Kit's limits with 500 databases."""

from __future__ import annotations

import json

from bot.ops import home
from bot.report.home import HOME_ACTION, SHOWN, HomeRow, view
from tests.support.bot import SECRET, start_bot
from tests.support.helpers import REPO, cli_env, run_cli
from tests.support.pg import fill_sample
from tests.support.slack import block_actions_payload, post_event, post_interaction


def _published(slack_api, after: int = 0) -> dict:
    slack_api.wait_for(lambda c: c["method"] == "views.publish", timeout=30)
    calls = slack_api.calls("views.publish")
    assert len(calls) > after, calls
    return calls[-1]["params"]


def _text(view_doc: dict) -> str:
    return json.dumps(view_doc["blocks"])


def test_home_shows_each_database_and_follows_what_changes(pg, pg_url, pg_db, tmp_path, slack_api):
    fill_sample(pg_url, rows=30)
    staging = pg.url(pg.create_database(pg_db + "_stg"))
    bot, server = start_bot(
        pg_url,
        tmp_path,
        slack_api,
        ATLAS_ALLOWED_USERS="U_OPS",
        STAGING_DATABASE_URL=staging,
        ATLAS_APPROVERS="U_ANN",
    )
    try:
        code, _ = post_event(
            bot.url, SECRET, {"type": "app_home_opened", "user": "U_OPS", "tab": "home"}
        )
        assert code == 200
        first = _published(slack_api)
        assert first["user_id"] == "U_OPS"
        text = _text(first["view"])
        assert pg_db in text and "Last snapshot: none yet" in text and ":x:" in text

        # a snapshot taken from a terminal: Home follows at the next tick
        env = cli_env(tmp_path, DATABASE_URL=pg_url)
        args = ["snapshot", "--json", "--tag", "migration=0042"]
        snap = json.loads(run_cli(args, env, REPO, text=True).stdout)
        assert home.tick(bot.services) == 1
        again = _published(slack_api, after=1)
        assert snap["id"] in _text(again["view"]) and "`migration=0042`" in _text(again["view"])
        assert home.tick(bot.services) == 0  # nothing new: not published again

        # the menu beside the database asks for a drill, in the channel
        payload = block_actions_payload(HOME_ACTION, user_id="U_OPS")
        payload["actions"][0] |= {
            "type": "overflow",
            "selected_option": {"value": f"drill:{pg_db}"},
        }
        code, _ = post_interaction(bot.url, SECRET, payload)
        assert code == 200
        slack_api.wait_for(lambda c: "requested" in str(c["params"].get("text")), timeout=30)
        assert not slack_api.calls("chat.postEphemeral")

        # someone not on the allow-list is told so, and nothing starts
        payload = block_actions_payload(HOME_ACTION, user_id="U_EVE")
        payload["actions"][0] |= {
            "type": "overflow",
            "selected_option": {"value": f"snapshot:{pg_db}"},
        }
        post_interaction(bot.url, SECRET, payload)
        slack_api.wait_for(lambda c: c["method"] == "chat.postEphemeral", timeout=30)
        assert len(bot.services.snapshots.recent()) == 1
    finally:
        server.close()  # type: ignore[attr-defined]
        bot.services.shutdown()


def test_home_with_500_databases_stays_within_block_kit_and_shows_failing_first():
    rows = [
        HomeRow(f"db{n:03d}", "fail" if n % 50 == 7 else "ok", "`x` 3 h ago", "passed", [])
        for n in range(500)
    ]
    shown = view(rows, ["Encryption at rest: " + "x" * 5000], "2026-12-06 10:00 UTC")
    blocks = shown["blocks"]
    assert len(blocks) <= 100 and len(json.dumps(shown)) < 250_000
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(t) <= 3000 for t in sections)
    databases = [t for t in sections if t.startswith((":x: *db", ":white_check_mark: *db"))]
    assert len(databases) == SHOWN
    assert all(t.startswith(":x:") for t in databases[:10])  # the 10 failing come first
    assert "…and 460 more databases (0 failing)" in json.dumps(blocks, ensure_ascii=False)
    names = [b["accessory"]["options"][0]["value"] for b in blocks if "accessory" in b]
    assert names[0] == "snapshot:db007"


def test_database_names_in_home_are_inert():
    shown = view([HomeRow("<!channel>", "ok", "<@U1>", "b", ["<!here>"])], [], "now")
    said = json.dumps([b.get("text") for b in shown["blocks"]])
    assert "<!" not in said and "<@" not in said and "&lt;!channel&gt;" in said
