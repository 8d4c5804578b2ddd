"""The running Bolt app over HTTP: signed requests in, the fake Slack Web API recording what goes out."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest

from bot.records import Snapshot
from tests.support import pick_free_port
from tests.support.bot import SECRET, TOKEN, Bot, start_bot
from tests.support.helpers import add_bulk
from tests.support.pg import fill_sample


@pytest.fixture
def bot(pg, pg_db, pg_url, tmp_path, slack_api) -> Iterator[Bot]:
    fill_sample(pg_url, rows=2000)
    b, server = start_bot(pg_url, tmp_path, slack_api)
    yield b
    server.close()
    b.services.shutdown()


def test_snapshot_from_slack_acks_fast_then_reports(bot, pg):
    started = time.monotonic()
    status, body = bot.command("snapshot before migration 0042 <!channel> <@U777>", user_id="U42")
    assert status == 200 and time.monotonic() - started < 3
    assert "Snapshot starting" in body

    first = bot.slack.wait_for("chat.postMessage")
    assert first["params"]["channel"] == "C1"
    final = bot.wait_final()
    text = str(final["params"]["blocks"])
    row = bot.services.snapshots.recent()[0]
    assert row.status == "ok" and row.requested_by == "U42"
    assert row.note == "before migration 0042 <!channel> <@U777>"
    for needed in (
        row.id,
        row.sha256[:12],
        row.location,
        "<@U42>",
        "KB",
        "before migration 0042",
    ):
        assert needed in text, needed
    assert "&lt;!channel&gt;" in text and "<!channel>" not in bot.slack.all_text()
    assert "<@U777>" not in bot.slack.all_text()
    everything = bot.slack.all_text()
    assert pg.password not in everything and TOKEN not in everything


def test_progress_updates_the_same_message(pg, pg_db, pg_url, tmp_path, slack_api):
    add_bulk(pg_url, 60)
    b, server = start_bot(pg_url, tmp_path, slack_api)
    try:
        b.command("snapshot big")
        posted = slack_api.wait_for("chat.postMessage")
        b.wait_final(timeout=60)
        updates = [
            c
            for c in slack_api.calls("chat.update")
            if c["params"]["ts"] == posted["response"]["ts"]
        ]
        assert updates, "progress and result edit the first message"
        assert "stored and verified" in str(updates[-1]["params"]["blocks"])
    finally:
        server.close()


@pytest.mark.sqlite_only  # nothing here depends on the catalog's kind
def test_secrets_that_are_plain_values_never_reach_slack(pg, pg_db, pg_url, tmp_path, slack_api):
    """A signing secret, an AWS secret key or PGPASSWORD has no shape to be found by: pasted
    into a note or an id by mistake, each is masked all the same, in the channel and in the
    reply, as a URL's password is."""
    fill_sample(pg_url, rows=50)
    aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    b, server = start_bot(
        pg_url, tmp_path, slack_api, AWS_SECRET_ACCESS_KEY=aws, PGPASSWORD="pw-7f3a9c"
    )
    try:
        assert b.command(f"snapshot pasted by mistake: {SECRET} and {aws}")[0] == 200
        b.wait_final()
        _, body = b.command("verify pw-7f3a9c")
        _, unknown = b.command(aws)  # as an unknown command (commands are not case-sensitive)
        _, long = b.command("x" * 20_000)
        assert "Unknown command" in long and len(long) < 5_000  # quoted back cut short
        said = b.slack.all_text() + body + unknown
        assert b.services.snapshots.recent()[0].status == "ok"
        assert "pasted by mistake" in said
        for secret in (SECRET, aws, "pw-7f3a9c", pg.password):
            assert secret not in said and secret.lower() not in said, secret
    finally:
        server.close()
        b.services.shutdown()


def test_bad_or_stale_signature_is_401_and_does_nothing(bot):
    status, _ = bot.command("snapshot nope", bad_signature=True)
    assert status == 401
    status, _ = bot.command("snapshot nope", timestamp=int(time.time()) - 3600)
    assert status == 401
    time.sleep(0.3)
    assert bot.services.snapshots.recent() == []
    assert bot.slack.calls("chat.postMessage") == []


def test_slack_retry_of_the_same_command_runs_once(bot):
    trigger = "123.retry-me"
    assert bot.command("snapshot once", trigger_id=trigger)[0] == 200
    assert (
        bot.command("snapshot once", trigger_id=trigger, headers_extra={"X-Slack-Retry-Num": "1"})[
            0
        ]
        == 200
    )
    bot.wait_final()
    time.sleep(0.5)
    assert len(bot.services.snapshots.recent()) == 1


def test_an_ignored_slack_retry_is_logged(bot, caplog):
    caplog.set_level(logging.INFO, logger="handlers.dedupe")
    trigger = "456.logged-retry"
    bot.command("list", trigger_id=trigger)
    retry = {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"}
    assert bot.command("list", trigger_id=trigger, headers_extra=retry)[0] == 200
    [line] = [r.getMessage() for r in caplog.records if r.name == "handlers.dedupe"]
    assert f"command:{trigger}" in line and "retry 2" in line and "http_timeout" in line


def test_second_snapshot_while_one_runs_names_the_first(bot):
    target = bot.services.settings.target()
    bot.services.catalog.begin_snapshot(
        Snapshot(id="s-held", database=target.name, environment="production", requested_by="U9")
    )
    status, body = bot.command("snapshot again", user_id="U2")
    assert status == 200
    assert "already running: s-held, started by U9" in body
    assert [r.id for r in bot.services.snapshots.recent()] == ["s-held"]


def test_allow_list_refuses_others(pg, pg_db, pg_url, tmp_path, slack_api):
    b, server = start_bot(pg_url, tmp_path, slack_api, ATLAS_ALLOWED_USERS="U1,U2")
    try:
        status, body = b.command("snapshot sneaky", user_id="U666")
        assert status == 200 and "not on this workspace's Atlas allow-list" in body
        time.sleep(0.3)
        assert b.services.snapshots.recent() == []
        assert "Atlas" in b.command("help", user_id="U666")[1]
    finally:
        server.close()


def test_list_verify_help_and_unknown_id(bot):
    bot.command("snapshot one")
    bot.wait_final()
    snap = bot.services.snapshots.recent()[0]
    status, body = bot.command("list")
    assert status == 200 and snap.id in body
    assert "/atlas snapshot" in bot.command("help")[1]
    assert "No snapshot with id" in bot.command("verify nope")[1]
    assert "Verifying" in bot.command(f"verify {snap.id}")[1]
    reply = bot.slack.wait_for("response_url")
    assert "verified" in str(reply["params"]) and snap.sha256[:12] in str(reply["params"])


def test_failure_is_posted_in_plain_words(pg, pg_db, tmp_path, slack_api):
    port = pick_free_port()
    b, server = start_bot(
        f"postgresql://postgres:pw-should-hide@127.0.0.1:{port}/gone", tmp_path, slack_api
    )
    try:
        b.command("snapshot doomed")
        final = b.wait_final()
        assert ":x:" in final["params"]["text"]
        assert "Cannot connect" in str(final["params"]["blocks"])
        assert "pw-should-hide" not in slack_api.all_text()
        assert b.services.snapshots.recent()[0].status == "failed"
    finally:
        server.close()


def test_slack_timing_out_does_not_fail_the_backup(bot):
    bot.slack.delay("chat.postMessage", 5)  # longer than the client's 2 s timeout
    bot.slack.delay("chat.update", 5)
    bot.command("snapshot while slack is slow")
    deadline = time.time() + 60
    while time.time() < deadline:
        rows = bot.services.snapshots.recent()
        if rows and rows[0].status != "running":
            break
        time.sleep(0.2)
    assert rows[0].status == "ok"
    bot.slack.delay("chat.postMessage", 0)
    bot.slack.delay("chat.update", 0)


def test_healthz(bot):
    with urllib.request.urlopen(f"{bot.url}/healthz", timeout=5) as resp:
        assert resp.status == 200
        body = json.loads(resp.read())
    assert body["ok"] is True
    assert body["version"] == installed_version("atlas-backups")  # what the running process is


def test_restart_recovery_is_announced(pg, pg_db, pg_url, tmp_path, slack_api):
    b, server = start_bot(pg_url, tmp_path, slack_api)
    server.close()
    dead = subprocess.Popen(["true"])
    dead.wait()
    b.services.catalog.begin_snapshot(
        Snapshot(
            id="s-crashed",
            database="x",
            environment="production",
            owner=f"{socket.gethostname()}:{dead.pid}",
        )
    )
    b.services.reported.recover()
    call = slack_api.wait_for("chat.postMessage")
    assert call["params"]["channel"] == "CATLAS" and "s-crashed" in call["params"]["text"]
    assert "interrupted" in call["params"]["text"]
    assert b.services.snapshots.get("s-crashed").status == "interrupted"


def test_provider_flag_without_a_provider_is_refused_in_the_reply(bot):
    status, body = bot.command("snapshot --provider before 0042")
    assert status == 200 and "--provider needs a provider" in body
    time.sleep(0.3)
    assert bot.services.snapshots.recent() == []


def test_a_note_full_of_mentions_still_fits_slacks_limits(bot):
    """`<!channel>` escapes to 17 characters: a 2,000-character note of them would make a
    section of 3,300, and Slack refuses the whole message. It is cut, still inert."""
    note = "<!channel> " * 180
    status, _ = bot.command(f"snapshot {note}", user_id="U42")
    assert status == 200
    final = bot.wait_final()
    assert final["response"]["ok"], final["response"]
    sections = [b["text"]["text"] for b in final["params"]["blocks"] if b["type"] == "section"]
    assert all(len(t) <= 3000 for t in sections)
    assert any(t.endswith("…") and "&lt;!channel&gt;" in t for t in sections)
    assert "<!channel>" not in bot.slack.all_text()
    refused = [c for c in bot.slack.calls() if c["response"] and not c["response"].get("ok")]
    assert refused == []


def test_a_damaged_snapshot_found_by_verify_is_announced(bot):
    snap = bot.services.taker.take(requested_by="U1")
    good = bot.services.taker.take(requested_by="U1")
    path = Path(snap.location)
    path.write_bytes(path.read_bytes()[:-100])  # truncated on disk
    bot.slack.clear()
    bot.command(f"verify {snap.id[:-1]}", user_id="U2")  # a unique prefix will do
    reply = bot.slack.wait_for(lambda c: c["method"] == "response_url", timeout=20)
    assert "failed verification" in reply["params"]["text"]
    post = bot.slack.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "is damaged" in c["params"]["text"]
    )
    assert post["params"]["channel"] == "CATLAS"
    assert good.id in str(post["params"]["blocks"])  # what to use instead
    assert bot.services.catalog.get_snapshot(snap.id).status == "corrupt"
