"""Restore and drill requests in the channel, approved by signed reaction events."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.records import RequestStatus
from tests.support.bot import Bot, start_bot
from tests.support.pg import fill_sample

APPROVERS = "U_ANN,U_BOB,S_DBA"


@pytest.fixture
def setup(pg, pg_db, pg_url, tmp_path, slack_api):
    fill_sample(pg_url, rows=800)
    staging = pg_db + "_stg"
    pg.create_database(staging)
    slack_api.set_usergroup("S_DBA", ["U_CAROL"])
    bots: list = []

    def make(**env: str) -> Bot:
        env = {
            "STAGING_DATABASE_URL": pg.url(staging),
            "ATLAS_APPROVERS": APPROVERS,
            **env,
        }
        b, server = start_bot(pg_url, tmp_path, slack_api, **env)
        bots.append((b, server))
        b.services.taker.take(requested_by="U_SNAP")
        return b

    yield make
    for b, server in bots:
        server.close()
        b.services.shutdown()
    pg.drop_database(staging)


def _request_message(bot: Bot) -> dict:
    """The request message, once it is fully posted (its reactions are on)."""
    call = bot.slack.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "requested" in str(c["params"].get("text"))
    )
    ts = call["response"]["ts"]
    bot.slack.wait_for(
        lambda c: (
            c["method"] == "reactions.add"
            and c["params"]["timestamp"] == ts
            and c["params"]["name"] == "x"
        )
    )
    deadline = time.time() + 5
    while not bot.services.catalog.request_by_message(call["response"]["channel"], ts):
        assert time.time() < deadline
        time.sleep(0.05)
    return call


def eventually(check, timeout: float = 10):
    """Events are acked first and handled just after: poll for the effect (a message not
    edited yet is an IndexError into the list of edits)."""
    deadline = time.time() + timeout
    while True:
        try:
            return check()
        except (AssertionError, IndexError):
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def _wait_status(bot: Bot, req_id: str, statuses: set[str], timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        req = bot.services.catalog.get_request(req_id)
        if req.status in statuses:
            return req
        time.sleep(0.1)
    raise AssertionError(f"request stayed {req.status}")


def test_full_drill_from_request_to_report(setup, pg):
    bot = setup()
    status, body = bot.command("drill", user_id="U_REQ")
    assert status == 200 and "Asking for approval" in body
    msg = _request_message(bot)
    text = str(msg["params"]["blocks"])
    snap = bot.services.snapshots.recent()[0]
    assert snap.id in text and "<@U_REQ>" in text and "0 of 1" in text
    for who in ("U_ANN", "U_BOB", "U_CAROL"):  # the group was resolved
        assert f"<@{who}>" in text
    assert "Expires" in text
    ts = msg["response"]["ts"]
    bot.slack.wait_for(lambda c: c["method"] == "reactions.add" and c["params"]["name"] == "x")
    added = {c["params"]["name"] for c in bot.slack.calls("reactions.add")}
    assert added == {"white_check_mark", "x"}
    [req] = bot.services.catalog.list_requests()

    # the bot's own reactions, the requester and a non-approver do not count
    bot.react("UBOT", "white_check_mark", ts)
    bot.react("U_REQ", "white_check_mark", ts)
    bot.react("U_EVE", "white_check_mark", ts)
    eph = [c for c in bot.slack.calls("chat.postEphemeral")]
    deadline = time.time() + 5
    while len(eph) < 2 and time.time() < deadline:
        time.sleep(0.05)
        eph = bot.slack.calls("chat.postEphemeral")
    assert {c["params"]["user"] for c in eph} == {"U_REQ", "U_EVE"}
    time.sleep(0.3)
    assert "cannot approve it" in str(eph) and "not an approver" in str(eph)
    assert bot.services.catalog.get_request(req.id).status == "pending"

    # a group member approves: the job runs and reports in the thread and the channel
    bot.react("U_CAROL", "white_check_mark", ts)
    req = _wait_status(bot, req.id, {"done", "failed"})
    assert req.status == "done", req
    progress = bot.slack.wait_for(
        lambda c: c["method"] == "chat.postMessage" and c["params"].get("thread_ts") == ts
    )
    # the thread's progress message ends as the verdict, never at its last phase
    report = bot.slack.wait_for(
        lambda c: (
            c["method"] == "chat.update"
            and "passed" in str(c["params"].get("text"))
            and c["params"].get("ts") == progress["response"]["ts"]
        )
    )
    # the verdict is also posted in the channel (after the thread reply)
    bot.slack.wait_for(
        lambda c: (
            c["method"] == "chat.postMessage"
            and "passed" in str(c["params"].get("text"))
            and not c["params"].get("thread_ts")
        )
    )
    blocks = str(report["params"]["blocks"])
    assert "Time to restore" in blocks and "manifest" in blocks
    drill = bot.services.catalog.get_drill(req.drill_id)
    assert drill.status == "passed" and drill.approved_by == ["U_CAROL"]
    updates = [c for c in bot.slack.calls("chat.update") if c["params"]["ts"] == ts]
    assert "finished" in str(updates[-1]["params"]["text"])
    actions = [a.action for a in bot.services.catalog.audit_log(subject=req.id)]
    assert "drill.tell" in actions and "drill.approve" in actions and "drill.requested" in actions
    assert "/atlas" not in pg.password and pg.password not in bot.slack.all_text()
    assert drill.id in bot.command("drills")[1]


def test_duplicate_event_delivery_runs_one_job(setup):
    bot = setup()
    bot.command("restore " + "x", user_id="U_REQ")  # unknown id: refused at once
    snap = bot.services.snapshots.recent()[0]
    bot.command(f"restore {snap.id}", user_id="U_REQ")
    ts = _request_message(bot)["response"]["ts"]
    for retry in (None, 1, 2):
        bot.react("U_ANN", "white_check_mark", ts, event_id="Ev-same", retry_num=retry)
    [req] = bot.services.catalog.list_requests()
    _wait_status(bot, req.id, {"done", "failed"})
    time.sleep(0.5)
    assert len(bot.services.catalog.list_jobs()) == 1


def test_racing_approvals_start_exactly_one_job(setup):
    bot = setup(ATLAS_REQUIRED_APPROVALS="2")
    bot.command("drill", user_id="U_REQ")
    ts = _request_message(bot)["response"]["ts"]
    [req] = bot.services.catalog.list_requests()
    users = ["U_ANN", "U_BOB", "U_CAROL"]
    threads = [threading.Thread(target=bot.react, args=(u, "white_check_mark", ts)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    req = _wait_status(bot, req.id, {"done", "failed"})
    time.sleep(0.5)
    assert len(bot.services.catalog.list_jobs()) == 1
    assert len(req.approved_by) >= 2


def test_withdraw_reject_and_expiry(setup):
    bot = setup(ATLAS_REQUIRED_APPROVALS="2")
    snap = bot.services.snapshots.recent()[0]
    bot.command(f"restore {snap.id}", user_id="U_REQ")
    ts = _request_message(bot)["response"]["ts"]
    [req] = bot.services.catalog.list_requests()
    catalog = bot.services.catalog

    def approved_by(expected):
        def check():
            assert catalog.get_request(req.id).approved_by == expected

        return check

    def status_is(req_id, expected):
        def check():
            assert catalog.get_request(req_id).status == expected

        return check

    bot.react("U_ANN", "white_check_mark", ts)
    eventually(approved_by(["U_ANN"]))
    bot.react("U_ANN", "white_check_mark", ts, added=False)
    eventually(approved_by([]))
    bot.react("U_BOB", "x", ts)
    eventually(status_is(req.id, "rejected"))
    bot.react("U_ANN", "white_check_mark", ts)
    bot.react("U_CAROL", "white_check_mark", ts)
    time.sleep(0.5)
    assert catalog.get_request(req.id).status == "rejected"
    assert catalog.list_jobs() == []
    eventually(lambda: _assert_in("rejected", bot.slack.calls("chat.update")[-1]["params"]["text"]))

    # a second request expires: clicks after expiry cannot approve it, the message says so
    bot.slack.clear()
    bot.command(f"restore {snap.id}", user_id="U_REQ")
    ts2 = _request_message(bot)["response"]["ts"]
    req2 = next(r for r in bot.services.catalog.list_requests(RequestStatus.PENDING))
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    bot.services.catalog.update_request(req2.id, expires_at=past)
    bot.react("U_ANN", "white_check_mark", ts2)
    bot.react("U_BOB", "white_check_mark", ts2)
    eventually(status_is(req2.id, "expired"))
    eventually(lambda: _assert_in("expired", bot.slack.calls("chat.update")[-1]["params"]["text"]))
    time.sleep(0.3)
    assert catalog.get_request(req2.id).status == "expired"
    assert catalog.list_jobs() == []


def _assert_in(needle: str, haystack: str) -> None:
    assert needle in haystack


def test_expiry_sweep_updates_the_message(setup):
    bot = setup()
    bot.command("drill", user_id="U_REQ")
    ts = _request_message(bot)["response"]["ts"]
    [req] = bot.services.catalog.list_requests()
    bot.services.catalog.update_request(
        req.id, expires_at=(datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    )
    assert bot.services.jobs.expire_due() == [req.id]
    assert bot.services.jobs.expire_due() == []
    last = bot.slack.calls("chat.update")[-1]
    assert last["params"]["ts"] == ts and "expired" in last["params"]["text"]


def test_restart_between_approval_and_job_runs_it_once(setup):
    bot = setup()
    bot.command("drill", user_id="U_REQ")
    _request_message(bot)
    [req] = bot.services.catalog.list_requests()
    # as if the process died right after committing the approval
    bot.services.catalog.update_request(req.id, status="approved", approved_by=["U_ANN"])
    threads = [threading.Thread(target=bot.services.jobs.resume) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _wait_status(bot, req.id, {"done", "failed"})
    time.sleep(0.3)
    assert len(bot.services.catalog.list_jobs()) == 1


def test_production_guard_refusal_is_posted_and_audited(setup, pg, pg_db):
    alias = (
        f"postgresql://postgres:{pg.password}@db-alias.example:{pg.port}/{pg_db}?hostaddr=127.0.0.1"
    )
    bot = setup(STAGING_DATABASE_URL=alias)
    snap = bot.services.snapshots.recent()[0]
    bot.command(f"restore {snap.id}", user_id="U_REQ")
    posted = bot.slack.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "production database" in str(c["params"])
    )
    assert ":x:" in posted["params"]["text"]
    assert bot.services.catalog.audit_log()[0].action == "restore.refused"
    assert bot.services.catalog.list_requests() == []
    assert pg.password not in bot.slack.all_text()


def test_unknown_snapshot_and_no_staging(setup):
    bot = setup()
    assert "No snapshot with id 'nope'" in bot.command("restore nope")[1]


def test_slack_refresh_then_undo_each_approved_with_reactions(setup, pg, pg_db):
    """`/atlas undo` with nothing kept is answered at once; after an approved refresh it
    posts a request like a restore's, and once approved swaps the kept staging back."""
    bot = setup()
    staging = pg_db + "_stg"
    pg.execute(staging, "CREATE TABLE staging_notes (note text)")
    status, body = bot.command("undo", user_id="U_REQ")
    assert status == 200 and "Nothing is kept to undo" in body, body
    snap = bot.services.snapshots.recent()[0]
    bot.command(f"restore {snap.id}", user_id="U_REQ")
    ts = _request_message(bot)["response"]["ts"]
    [req] = bot.services.catalog.list_requests()
    bot.react("U_ANN", "white_check_mark", ts)
    assert _wait_status(bot, req.id, {"done", "failed"}).status == "done"
    refresh = bot.services.catalog.get_job(bot.services.catalog.get_request(req.id).drill_id)
    assert refresh.swapped and refresh.kept_db
    assert pg.execute(staging, "SELECT to_regclass('staging_notes') IS NULL")[0][0]
    report = bot.slack.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "passed" in str(c["params"].get("text"))
    )
    assert refresh.kept_db in str(report["params"]["blocks"])  # what undo brings back

    bot.slack.clear()
    status, body = bot.command("undo", user_id="U_REQ")
    assert status == 200 and f"undo `{refresh.id}`" in body, body
    msg = _request_message(bot)
    assert refresh.id in str(msg["params"]["blocks"]) and "Brings back" in str(
        msg["params"]["blocks"]
    )
    undo_req = next(r for r in bot.services.catalog.list_requests() if r.kind == "undo")
    bot.react("U_REQ", "white_check_mark", msg["response"]["ts"])  # the requester: no
    bot.react("U_BOB", "white_check_mark", msg["response"]["ts"])
    done = _wait_status(bot, undo_req.id, {"done", "failed"})
    assert done.status == "done", done
    assert pg.execute(staging, "SELECT to_regclass('staging_notes') IS NOT NULL")[0][0]
    undo = bot.services.catalog.get_job(done.drill_id)
    assert undo.undo_of == refresh.id and undo.approved_by == ["U_BOB"]
    bot.slack.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "Undo" in str(c["params"].get("text"))
    )
    actions = [a.action for a in bot.services.catalog.audit_log(subject=undo_req.id)]
    assert "undo.requested" in actions and "undo.approve" in actions
    for name in (undo.kept_db,):
        pg.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_slack_restore_of_one_table_is_approved_and_replaces_only_it(setup, pg, pg_db):
    """`/atlas restore ID table:public.orders`: the request names the table, a mistyped
    one is answered at once, and once approved only that table is replaced."""
    bot = setup()
    staging = pg_db + "_stg"
    snap = bot.services.snapshots.recent()[0]
    assert bot.services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1").swapped
    pg.execute(staging, "DELETE FROM orders WHERE id > 10")
    pg.execute(staging, "INSERT INTO users (email) VALUES ('staging-only@example.com')")
    users = pg.execute(staging, "SELECT count(*) FROM users")[0][0]
    status, body = bot.command(f"restore {snap.id} table:public.nope", user_id="U_REQ")
    assert status == 200 and "has no table public.nope" in body, body
    status, body = bot.command(f"restore {snap.id} table:public.orders", user_id="U_REQ")
    assert status == 200 and "Asking for approval" in body, body
    msg = _request_message(bot)
    assert "public.orders" in str(msg["params"]["blocks"]), msg
    [req] = bot.services.catalog.list_requests()
    assert req.tables == ["public.orders"]
    bot.react("U_ANN", "white_check_mark", msg["response"]["ts"])
    done = _wait_status(bot, req.id, {"done", "failed"})
    assert done.status == "done", done
    job = bot.services.catalog.get_job(done.drill_id)
    assert job.tables == ["public.orders"] and not job.swapped
    assert pg.execute(staging, "SELECT count(*) FROM orders")[0][0] == 1600
    assert pg.execute(staging, "SELECT count(*) FROM users")[0][0] == users  # untouched
    for (name,) in pg.execute("postgres", "SELECT datname FROM pg_database"):
        if name.startswith(f"atlas_kept_{staging}"):
            pg.execute("postgres", f'DROP DATABASE "{name}" WITH (FORCE)')


def test_an_undo_approved_after_another_refresh_swaps_nothing(setup, pg, pg_db):
    """An undo request names the refresh whose kept staging it brings back, and that is
    what its approvers approve. A refresh that ran while the request waited keeps another
    staging: the approved undo then swaps nothing and says why, instead of undoing the
    refresh nobody approved an undo of."""
    bot = setup()
    staging = pg_db + "_stg"
    snap = bot.services.snapshots.recent()[0]
    first = bot.services.restores.run(kind="restore", snap_id=snap.id, requested_by="U_REQ")
    assert first.status == "passed"
    bot.command("undo", user_id="U_REQ")
    msg = _request_message(bot)
    assert first.id in str(msg["params"]["blocks"])
    undo_req = next(r for r in bot.services.catalog.list_requests() if r.kind == "undo")
    pg.execute(staging, "CREATE TABLE before_second_refresh (note text)")
    second = bot.services.restores.run(kind="restore", snap_id=snap.id, requested_by="U_REQ")
    assert second.status == "passed" and second.kept_db
    bot.react("U_BOB", "white_check_mark", msg["response"]["ts"])
    done = _wait_status(bot, undo_req.id, {"done", "failed"})
    assert done.status == "failed" and "staging changed since" in (done.reason or ""), done
    assert pg.execute(staging, "SELECT to_regclass('before_second_refresh') IS NULL")[0][0]
    assert bot.services.catalog.kept_stagings(second.database)[0].id == second.id  # still kept
    actions = [a.action for a in bot.services.catalog.audit_log(subject=first.id)]
    assert "undo.refused" in actions
    pg.execute("postgres", f'DROP DATABASE IF EXISTS "{second.kept_db}" WITH (FORCE)')


@pytest.mark.sqlite_only  # nothing here depends on the catalog's kind
def test_commands_are_answered_while_slack_is_slow_to_take_reaction_replies(setup):
    """Each reaction by someone who may not approve is answered through Slack's Web API;
    with Slack slow to take those replies, a dozen such reactions must not hold every
    listener: a command still gets its answer within Slack's 3 seconds."""
    bot = setup()
    bot.command("drill", user_id="U_REQ")
    ts = _request_message(bot)["response"]["ts"]
    bot.slack.delay("chat.postEphemeral", 8)
    try:
        for i in range(12):
            assert bot.react(f"U_NOT{i}", "white_check_mark", ts)[0] == 200
        time.sleep(0.5)  # their listeners are waiting on Slack now
        started = time.monotonic()
        status, body = bot.command("help")
        assert status == 200 and "Atlas" in body and time.monotonic() - started < 3
    finally:
        bot.slack.delay("chat.postEphemeral", 0)
