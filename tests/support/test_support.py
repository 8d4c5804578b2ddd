"""Self-tests for the shared test infrastructure in tests/support."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from slack_bolt import App
from slack_bolt.app.app import SlackAppDevelopmentServer
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from tests.support import _own_ports, pick_free_port
from tests.support.pg import DEFAULT_PASSWORD, PgCluster, fill_sample, memory_folder
from tests.support.s3 import list_keys
from tests.support.slack import (
    FakeSlackApi,
    post_event,
    post_slash_command,
    reaction_event,
    sign,
)


def test_free_port_is_bindable(free_port: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port))


def test_picked_ports_are_this_workers_own_and_below_the_ephemeral_range(monkeypatch) -> None:
    """No bind(0) and no outgoing connection is given them, and two workers never pick
    the same one."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
        ephemeral = int(fh.read().split()[0])
    slices = []
    for worker in ("gw0", "gw1", "gw7"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        first, span = _own_ports()
        picked = [pick_free_port() for _ in range(3)]
        assert len(set(picked)) == 3, picked  # in turn: not the same port twice
        assert all(first <= p < first + span < ephemeral for p in picked), (picked, first)
        slices.append(range(first, first + span))
    assert all(not set(a) & set(b) for a, b in zip(slices, slices[1:], strict=False))


# -- PostgreSQL ------------------------------------------------------------------------------


def test_pg_password_required_over_tcp(pg: PgCluster, pg_db: str) -> None:
    assert pg.password == DEFAULT_PASSWORD
    assert pg.url(pg_db) == f"postgresql://postgres:{DEFAULT_PASSWORD}@127.0.0.1:{pg.port}/{pg_db}"
    with psycopg.connect(pg.url(pg_db)) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (pg_db,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.url(pg_db, password="wrong-password"), connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host=pg.host,
            port=pg.port,
            user="postgres",
            dbname=pg_db,
            password="",
            connect_timeout=5,
        )


def test_pg_create_role_with_password(pg: PgCluster, pg_db: str) -> None:
    role = f"r_{pg_db}"
    pg.create_role(role, "role-pass-123")
    try:
        with psycopg.connect(pg.url(pg_db, user=role, password="role-pass-123")) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.url(pg_db, user=role, password="nope"), connect_timeout=5)
    finally:
        pg.drop_role(role)


def test_pg_db_is_isolated(pg: PgCluster, pg_db: str) -> None:
    assert pg_db.startswith("t_")
    pg.execute(pg_db, "CREATE TABLE only_here (x int)")
    other = pg.create_database(f"{pg_db}_other")
    try:
        rows = pg.execute(other, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'")
        assert rows == [(0,)]
    finally:
        pg.drop_database(other)
    assert pg.execute("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", [other]) == []


def test_fill_sample_counts_match(pg: PgCluster, pg_url: str, pg_db: str) -> None:
    expected = fill_sample(pg_url, rows=200)
    assert expected == {"users": 200, "orders": 400}
    for table, count in expected.items():
        assert pg.execute(pg_db, f"SELECT count(*) FROM {table}") == [(count,)]
    seq = pg.execute(pg_db, "SELECT last_value FROM invoice_no_seq")[0][0]
    assert seq > 200
    exts = {r[0] for r in pg.execute(pg_db, "SELECT extname FROM pg_extension")}
    assert exts & {"citext", "pgcrypto"}


def test_trust_cluster_start_stop() -> None:
    with PgCluster(password_auth=False) as cluster:
        assert cluster.password is None
        assert cluster.url() == f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        assert cluster.execute("postgres", "SELECT 1") == [(1,)]
        base = cluster.base_dir
    assert not os.path.exists(base)


def test_clusters_go_to_memory_only_where_it_is_a_tmpfs(tmp_path) -> None:
    """A folder that is not a tmpfs mount is never taken for memory; /dev/shm is when it is
    one with room, and then a cluster lives there unless it asks for disk (as benches do)."""
    assert memory_folder(str(tmp_path)) is None
    assert memory_folder(str(tmp_path / "missing")) is None
    shm = memory_folder()
    if shm is None:
        pytest.skip("no tmpfs with room at /dev/shm")
    with PgCluster(password_auth=False) as in_memory, PgCluster(in_memory=False) as on_disk:
        assert in_memory.base_dir.startswith(shm + "/")
        assert not on_disk.base_dir.startswith(shm + "/")
        assert on_disk.execute("postgres", "SELECT 1") == [(1,)]


# -- S3 --------------------------------------------------------------------------------------


def test_s3_put_get(s3_env: str, s3_server: str) -> None:
    assert os.environ["AWS_ENDPOINT_URL"] == s3_server
    client = boto3.client("s3")  # configured purely from the environment
    client.put_object(Bucket=s3_env, Key="a/b.txt", Body=b"hello")
    assert client.get_object(Bucket=s3_env, Key="a/b.txt")["Body"].read() == b"hello"
    assert list_keys(client, s3_env) == ["a/b.txt"]


def test_s3_buckets_are_fresh(s3_client: Any, s3_env: str) -> None:
    assert list_keys(s3_client, s3_env) == []


# -- Slack Web API fake ----------------------------------------------------------------------


def test_fake_slack_records_post_message(slack_api: FakeSlackApi) -> None:
    client = WebClient(token="xoxb-test", base_url=slack_api.url)
    assert client.auth_test()["user_id"] == "UBOT"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*backup* done"}}]
    r1 = client.chat_postMessage(channel="C9", text="hi", blocks=blocks)
    r2 = client.chat_postMessage(channel="C9", text="again")
    assert r1["channel"] == "C9" and float(r2["ts"]) > float(r1["ts"])
    call = slack_api.wait_for("chat.postMessage")
    assert call["params"]["blocks"] == blocks
    assert call["params"]["text"] == "hi"
    assert call["headers"]["Authorization"] == "Bearer xoxb-test"
    client.chat_update(channel="C9", ts=r1["ts"], text="edited")
    assert slack_api.message("C9", r1["ts"])["text"] == "edited"  # type: ignore[index]
    assert "*backup* done" in slack_api.all_text()
    assert len(slack_api.calls("chat.postMessage")) == 2


def test_fake_slack_form_blocks_and_lookups(slack_api: FakeSlackApi) -> None:
    slack_api.set_usergroup("S1", ["U1", "U2"])
    client = slack_api.client()
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    assert client.users_info(user="U7")["user"]["id"] == "U7"
    assert client.conversations_info(channel="C3")["channel"]["id"] == "C3"
    blocks = [{"type": "divider"}]
    client.api_call(
        "chat.postEphemeral", params={"channel": "C1", "user": "U1", "blocks": json.dumps(blocks)}
    )
    assert slack_api.wait_for("chat.postEphemeral")["params"]["blocks"] == blocks


def test_fake_slack_failures_and_delay(slack_api: FakeSlackApi) -> None:
    client = slack_api.client(timeout=1)
    slack_api.fail_next("chat.postMessage")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    slack_api.fail_next("chat.postMessage", status=500)
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="x")
    slack_api.fail_next("reactions.add", "already_reacted")
    with pytest.raises(SlackApiError, match="already_reacted"):
        client.reactions_add(channel="C1", timestamp="1.2", name="x")
    assert client.chat_postMessage(channel="C1", text="ok")["ok"]

    slack_api.delay("chat.update", 3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.chat_update(channel="C1", ts="1.2", text="slow")
    assert time.monotonic() - started < 2.5
    slack_api.delay("chat.update", 0)


def test_fake_slack_file_upload(slack_api: FakeSlackApi) -> None:
    client = slack_api.client()
    resp = client.files_upload_v2(channel="C1", content="report body", filename="r.txt", title="r")
    assert resp["file"]["title"] == "r"
    assert list(slack_api.uploads.values()) == [b"report body"]
    assert "report body" in slack_api.all_text()


# -- Signatures ------------------------------------------------------------------------------


def test_sign_matches_slack_sdk_verifier() -> None:
    body = b"token=x&text=%2Fatlas+backup+prod"
    headers = sign("shh-secret", body)
    verifier = SignatureVerifier("shh-secret")
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    old = sign("shh-secret", body, timestamp=int(time.time()) - 3600)
    assert not verifier.is_valid_request(body, old)


@pytest.fixture
def bolt_app_url(slack_api: FakeSlackApi, free_port: int) -> Iterator[str]:
    """A real slack_bolt App (signing secret "sec") served on 127.0.0.1:free_port."""
    app = App(client=slack_api.client(), signing_secret="sec")

    @app.command("/atlas")
    def on_command(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        ack()
        respond(f"got {command['text']}")

    @app.event("reaction_added")
    def on_reaction(event: dict[str, Any], client: WebClient) -> None:
        client.chat_postMessage(channel=event["item"]["channel"], text=event["reaction"])

    server = SlackAppDevelopmentServer(
        port=free_port, path="/slack/events", app=app, http_server_logger_enabled=False
    )
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{free_port}"
    finally:
        server._server.shutdown()
        thread.join(timeout=5)


def test_signed_requests_accepted_by_bolt(slack_api: FakeSlackApi, bolt_app_url: str) -> None:
    status, _ = post_slash_command(
        bolt_app_url, "sec", text="backup prod", response_url=slack_api.response_url
    )
    assert status == 200
    assert slack_api.wait_for("response_url")["params"]["text"] == "got backup prod"

    status, _ = post_slash_command(bolt_app_url, "sec", text="x", bad_signature=True)
    assert status == 401
    stale = int(time.time()) - 3600
    assert post_slash_command(bolt_app_url, "sec", text="x", timestamp=stale)[0] == 401

    ev = reaction_event("added", "U1", "white_check_mark", "C5", "1700000000.000100")
    assert post_event(bolt_app_url, "sec", ev)[0] == 200
    call = slack_api.wait_for(lambda c: c["params"].get("text") == "white_check_mark")
    assert call["params"]["channel"] == "C5"
    assert post_event(bolt_app_url, "wrong", ev)[0] == 401
    assert post_event(bolt_app_url, "sec", ev, event_id="Ev1", retry_num=1)[0] == 200
