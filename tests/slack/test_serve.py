"""`atlas serve --http` as a real process: health, a snapshot from Slack, and a crash mid-snapshot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support import pick_free_port
from tests.support.catalogs import state_for
from tests.support.helpers import add_bulk, serve_command, storage_files, wait_healthy
from tests.support.pg import fill_sample
from tests.support.slack import post_slash_command, slash_command_payload

SECRET = "serve-signing-secret"


def _start(env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        serve_command(port), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    wait_healthy(port, proc, time.time() + 20, lambda: proc.stdout.read().decode())
    return proc


def _env(pg_url: str, tmp_path: Path, slack_api) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": pg_url,
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": state_for(tmp_path),
        "SLACK_BOT_TOKEN": "xoxb-serve-token",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack_api.url,
        "ATLAS_CHANNEL": "CATLAS",
    }


def test_crash_mid_snapshot_is_recovered_on_restart(pg, pg_db, pg_url, tmp_path, slack_api):
    fill_sample(pg_url, rows=100)
    add_bulk(pg_url, 150)
    env = _env(pg_url, tmp_path, slack_api)
    env.pop("SLACK_APP_TOKEN", None)
    port = pick_free_port()
    proc = _start(env, port)
    try:
        status, _ = post_slash_command(
            f"http://127.0.0.1:{port}", SECRET, text="snapshot big one", channel_id="CDEPLOY"
        )
        assert status == 200
        # a generous bound: under a loaded CI run the first post once took over 10 s
        started = slack_api.wait_for("chat.postMessage", timeout=30)
        assert started["params"]["channel"] == "CDEPLOY"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()

    time.sleep(0.5)  # let the orphaned pg_dump die of SIGPIPE
    slack_api.clear()
    proc = _start(env, port)
    try:
        notice = slack_api.wait_for(
            lambda c: c["method"] == "chat.postMessage" and "interrupted" in str(c["params"])
        )
        assert notice["params"]["channel"] == "CDEPLOY"
        edited = slack_api.wait_for("chat.update")
        assert edited["params"]["ts"] == started["response"]["ts"]
        listed = subprocess.run(
            [sys.executable, "-m", "bot.cli", "list", "--json"],
            env=env,
            capture_output=True,
            check=True,
        )
        assert '"status": "interrupted"' in listed.stdout.decode()
        assert storage_files(Path(tmp_path / "backups")) == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_socket_mode_snapshot_end_to_end(pg, pg_db, pg_url, tmp_path, slack_api, socket_mode):
    """SLACK_APP_TOKEN set: `atlas serve` opens Socket Mode (no public HTTP endpoint) and a
    slash command arriving over the WebSocket runs a snapshot; a redelivery runs nothing."""
    fill_sample(pg_url, rows=200)
    slack_api.socket_mode_url = socket_mode.url
    env = {**_env(pg_url, tmp_path, slack_api), "SLACK_APP_TOKEN": "xapp-1-A1-socket-token"}
    port = pick_free_port()
    argv = [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, proc, time.time() + 20, lambda: proc.stdout.read().decode())
        socket_mode.wait_connected()
        [opened] = slack_api.calls("apps.connections.open")
        assert opened["headers"]["Authorization"] == "Bearer xapp-1-A1-socket-token"
        status, _ = post_slash_command(f"http://127.0.0.1:{port}", SECRET, text="help")
        assert status == 404  # Socket Mode: the HTTP port serves /healthz only

        help_id = socket_mode.send(
            "slash_commands", slash_command_payload(text="help"), accepts_response_payload=True
        )
        assert "snapshot" in socket_mode.wait_for_ack(help_id)["payload"]["text"]

        command = slash_command_payload(text="snapshot over the socket", channel_id="CDEPLOY")
        first = socket_mode.send("slash_commands", command, accepts_response_payload=True)
        assert "Snapshot starting" in socket_mode.wait_for_ack(first)["payload"]["text"]
        started = slack_api.wait_for("chat.postMessage")
        assert started["params"]["channel"] == "CDEPLOY"
        done = slack_api.wait_for(
            lambda c: (
                c["method"] == "chat.update"
                and "over the socket" in str(c["params"])
                and ":white_check_mark:" in str(c["params"])
            ),
            timeout=30,
        )
        assert done["params"]["ts"] == started["response"]["ts"]

        again = socket_mode.send("slash_commands", command, accepts_response_payload=True)
        assert "payload" not in socket_mode.wait_for_ack(again)  # acked, nothing said or run
        time.sleep(0.5)
        assert len(slack_api.calls("chat.postMessage")) == 1
        listed = subprocess.run(
            [sys.executable, "-m", "bot.cli", "list", "--json"],
            env=env,
            capture_output=True,
            check=True,
        )
        assert listed.stdout.decode().count('"status": "ok"') == 1
        assert len(storage_files(tmp_path / "backups")) == 2  # the artifact and its sidecar
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"atlas_snapshot_last_success_timestamp_seconds{" in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
