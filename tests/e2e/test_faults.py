"""Faults users meet: a network cut mid-upload, a full catalog disk, Slack unreachable or
refusing the token at start, a killed CLI, hostile input. Each ends in one clear line,
with nothing half-written left that looks good."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.backup.layout import artifact_key, new_id
from bot.backup.recovery import Recovery
from bot.errors import AtlasError
from bot.records import Snapshot
from bot.store import LazyStorage
from tests.support import pick_free_port
from tests.support.bot import SECRET, start_bot
from tests.support.helpers import (
    add_bulk,
    cli_env,
    listing_with,
    run_cli,
    serve_command,
    services_for,
    settings_for,
    start_cli,
    storage_files,
)
from tests.support.pg import fill_sample
from tests.support.proxy import tcp_proxy
from tests.support.slack import sign

REPO = Path(__file__).resolve().parents[2]


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# -- the network to S3 is cut mid-upload -------------------------------------------------------


def test_an_upload_cut_mid_transfer_is_aborted_once_s3_is_back(
    pg_url, tmp_path, s3_server, s3_env, s3_client, monkeypatch
):
    """The link drops after the first part; the abort cannot get through either. The
    open upload (billed, invisible to listings) is aborted by the next snapshot."""
    bucket = s3_env
    add_bulk(pg_url, 14)
    with tcp_proxy(int(s3_server.rsplit(":", 1)[1])) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # boto3's own setting: fail in seconds
        services = services_for(settings_for(pg_url, tmp_path, storage=f"s3://{bucket}/atlas"))
        proxy.cut_after(7 << 20)  # the first 5 MiB part gets through, the second does not
        with pytest.raises(AtlasError) as info:
            services.taker.take(requested_by="ops")
        assert "S3" in str(info.value)
        [failed] = services.catalog.list_snapshots()
        assert failed.status == "failed" and failed.pending_ref
        open_uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert len(open_uploads) == 1  # what the failed abort left behind
        assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

        proxy.restore()
        good = services.taker.take(requested_by="ops")
        assert good.status == "ok"
        assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert services.catalog.get_snapshot(failed.id).pending_ref is None

        # an upload no snapshot knows of (a crash before it was recorded) is swept by
        # housekeeping (moto dates every upload in 2010, so it counts as old)
        key = f"atlas/production/{good.database}/20261129-000000-dead.dump.zst"
        s3_client.create_multipart_upload(Bucket=bucket, Key=key)
        # and one a running snapshot has just opened, before its name is recorded, is not
        running = services.catalog.begin_snapshot(
            Snapshot(id="20261129-000001-beef", database=good.database, storage_key="k")
        )
        mine = f"atlas/production/{good.database}/{running.id}.dump.zst"
        s3_client.create_multipart_upload(Bucket=bucket, Key=mine)
        swept = services.recovery.sweep_pending()
        assert [r.split("\n")[0] for r in swept] == [key]
        left = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert [u["Key"] for u in left] == [mine]


def test_an_upload_opened_while_the_sweep_lists_is_spared(pg_url, tmp_path, s3_env, s3_client):
    """Another process records a snapshot and opens its upload after the sweep began and
    before it lists. moto dates every upload in 2010, so only its owner spares it: CI saw
    a fleet run's new upload aborted when the sweep read the running snapshots first."""
    bucket = s3_env
    services = services_for(settings_for(pg_url, tmp_path, storage=f"s3://{bucket}/atlas"))
    target = services.settings.target()
    storage = services.store.get()
    opened: list[str] = []

    def another_snapshot() -> None:
        snap = Snapshot(id=new_id(), database=target.name, storage_key="k")
        services.catalog.begin_snapshot(snap)
        opened.append(f"atlas/{artifact_key(target, snap.id)}")
        s3_client.create_multipart_upload(Bucket=bucket, Key=opened[0])

    lazy = LazyStorage(services.settings, listing_with(storage, another_snapshot))
    recovery = Recovery(services.settings, services.catalog, lazy)
    assert recovery.sweep_pending() == []
    left = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert opened and [u["Key"] for u in left] == opened


def test_partial_files_nobody_owns_are_swept_once_old(pg_url, tmp_path):
    fill_sample(pg_url, rows=20)
    services = services_for(settings_for(pg_url, tmp_path))
    row = services.taker.take(requested_by="ops")
    partial = Path(row.location).with_name(".20261129-000000-dead.dump.zst.1a2b3c4d.partial")
    partial.write_bytes(b"half")
    assert services.recovery.sweep_pending() == []  # young: maybe another process's
    two_hours_ago = time.time() - 7200
    os.utime(partial, (two_hours_ago, two_hours_ago))
    assert services.recovery.sweep_pending() == [str(partial)]
    assert not partial.exists() and Path(row.location).exists()


# -- the catalog's disk is full ------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A small volume of its own at `mnt` (root only), unmounted afterwards."""
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave: int = 0) -> None:
    """Fill the volume at `mnt` to its last byte with a file named filler, then give
    back `leave` bytes."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, filler.stat().st_size - leave)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
@pytest.mark.sqlite_only
def test_a_file_written_onto_a_disk_that_fills_is_never_left_cut_short(pg_url, tmp_path):
    """A raw write on a disk that fills returns short: fetch and report once renamed the
    cut file into place and said "wrote …". Now each fails in one line and leaves nothing."""
    fill_sample(pg_url, rows=400)
    env = cli_env(tmp_path, DATABASE_URL=pg_url)
    assert run_cli(["snapshot"], env, tmp_path).returncode == 0
    with _tmpfs(tmp_path / "out", "1m") as mnt:
        _fill(mnt, leave=4096)
        for args in (
            ["fetch", "latest", "-o", str(mnt / "app.dump")],
            ["report", "-o", str(mnt / "r.html")],
        ):
            proc = run_cli(args, env, tmp_path, text=True)
            assert proc.returncode == 1, (args, proc.stderr)
            assert "Traceback" not in proc.stderr and "wrote" not in proc.stderr
            assert "No space left" in _one_error_line(proc.stderr), proc.stderr
            assert sorted(p.name for p in mnt.iterdir()) == ["filler"]  # nothing cut short


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
@pytest.mark.sqlite_only
def test_a_full_catalog_disk_is_one_clear_line(pg_url, tmp_path):
    fill_sample(pg_url, rows=50)
    with _tmpfs(tmp_path / "state", "2m") as mnt:
        env = cli_env(tmp_path, DATABASE_URL=pg_url, ATLAS_STATE=str(mnt / "atlas.db"))
        assert run_cli(["snapshot"], env, tmp_path).returncode == 0
        _fill(mnt)
        for args in (["snapshot"], ["snapshot", "--json"], ["keep", "latest"]):
            proc = run_cli(args, env, tmp_path, text=True)
            assert proc.returncode == 1
            assert "Traceback" not in proc.stderr
            if "--json" in args:
                assert "disk is full" in json.loads(proc.stdout)["error"]
            else:
                assert "catalog's disk is full" in _one_error_line(proc.stderr)
        # nothing that looks like a good snapshot was left in storage
        artifacts = [f for f in storage_files(tmp_path / "backups") if f.endswith(".zst")]
        assert len(artifacts) == 1
        (mnt / "filler").unlink()
        listed = json.loads(run_cli(["list", "--json"], env, tmp_path).stdout)
        assert [r["status"] for r in listed][-1] == "ok"
        assert len([r for r in listed if r["status"] == "ok"]) == 1


@pytest.mark.sqlite_only
def test_an_unwritable_catalog_is_one_clear_line(pg_url, tmp_path):
    """ATLAS_STATE where nothing can be written: under a file (a typo in the path, true for
    root too) and, as root, on a volume mounted read-only, as a Kubernetes pod may have it."""
    fill_sample(pg_url, rows=50)
    (tmp_path / "not-a-folder").write_text("")
    env = cli_env(
        tmp_path, DATABASE_URL=pg_url, ATLAS_STATE=str(tmp_path / "not-a-folder" / "atlas.db")
    )
    for args in (["snapshot"], ["list"], ["status"]):
        proc = run_cli(args, env, tmp_path, text=True)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr
        assert "catalog cannot be written" in _one_error_line(proc.stderr), args
    assert not storage_files(tmp_path / "backups")  # nothing was dumped without a record
    if os.geteuid() != 0:
        return
    with _tmpfs(tmp_path / "state", "4m") as mnt:
        env = cli_env(tmp_path, DATABASE_URL=pg_url, ATLAS_STATE=str(mnt / "atlas.db"))
        assert run_cli(["snapshot"], env, tmp_path).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        proc = run_cli(["snapshot"], env, tmp_path, text=True)
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        assert "catalog cannot be written" in _one_error_line(proc.stderr)
        artifacts = [f for f in storage_files(tmp_path / "backups") if f.endswith(".zst")]
        assert len(artifacts) == 1  # the refused run left nothing that looks good


# -- Slack at start: unreachable, or refusing the token -----------------------------------------


def test_serve_says_in_one_line_when_slack_is_unreachable_or_refuses(tmp_path, slack_api):
    base = cli_env(
        tmp_path,
        DATABASE_URL="postgresql://app@127.0.0.1:1/app",
        SLACK_BOT_TOKEN="xoxb-start-token-1234",
        SLACK_SIGNING_SECRET="start-secret",
    )
    closed = f"http://127.0.0.1:{pick_free_port()}/api/"
    down = run_cli(serve_command(0)[3:], {**base, "SLACK_API_URL": closed}, tmp_path, text=True)
    assert down.returncode == 1
    line = _one_error_line(down.stderr)
    assert "Cannot reach Slack" in line and "Connection refused" in line

    slack_api.fail_next("auth.test", "invalid_auth")
    refused = run_cli(
        serve_command(0)[3:], {**base, "SLACK_API_URL": slack_api.url}, tmp_path, text=True
    )
    assert refused.returncode == 1
    line = _one_error_line(refused.stderr)
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in line
    assert "xoxb-start-token-1234" not in refused.stderr


# -- hostile HTTP ----------------------------------------------------------------------------------


def test_a_malformed_request_timestamp_is_refused_like_a_bad_signature(
    pg_url, tmp_path, slack_api, caplog
):
    bot, server = start_bot(pg_url, tmp_path, slack_api)
    try:
        body = "command=%2Fatlas&text=list&user_id=U1"
        for stamp in ("1e10", "", "12:00", "-5", " 17"):
            headers = {**sign(SECRET, body), "X-Slack-Request-Timestamp": stamp}
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            req = urllib.request.Request(
                f"{bot.url}/slack/events", data=body.encode(), headers=headers, method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(req, timeout=5)
            assert info.value.code == 401, stamp
        assert "Traceback" not in caplog.text
    finally:
        server.close()
        bot.services.shutdown()


# -- a CLI snapshot killed mid-dump -----------------------------------------------------------


def test_a_killed_cli_snapshot_is_closed_out_by_the_next_command(pg_url, tmp_path, slack_api):
    add_bulk(pg_url, 60)
    env = cli_env(
        tmp_path,
        DATABASE_URL=pg_url,
        SLACK_BOT_TOKEN="xoxb-killed-1234",
        SLACK_API_URL=slack_api.url,
        ATLAS_CHANNEL="CKILL",
        ATLAS_ZSTD_LEVEL="19",  # slow enough to be caught mid-dump
    )
    proc = start_cli(["snapshot"], env, tmp_path)
    folder = tmp_path / "backups"
    deadline = time.time() + 60
    while not any(p.name.endswith(".partial") for p in folder.rglob("*")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # an OOM kill: no handler runs
    proc.wait()

    listed = json.loads(run_cli(["list", "--json"], env, tmp_path).stdout)
    assert [r["status"] for r in listed] == ["interrupted"]
    assert [p for p in folder.rglob("*") if p.is_file()] == []  # the partial file is gone
    status = json.loads(run_cli(["status", "--json", "--no-provider"], env, tmp_path).stdout)
    snapshot_line = next(c for c in status["checks"] if c["key"].startswith("snapshot:"))
    assert snapshot_line["level"] == "fail"
    text = slack_api.wait_for(lambda c: "interrupted" in str(c["params"].get("text")))
    assert listed[0]["id"] in text["params"]["text"]


# -- user text ----------------------------------------------------------------------------------


def test_a_note_with_invalid_utf8_is_kept_as_text(pg_url, tmp_path):
    fill_sample(pg_url, rows=20)
    env = cli_env(tmp_path, DATABASE_URL=pg_url)
    argv = [sys.executable.encode(), b"-m", b"bot.cli", b"snapshot", b"--json", b"--note"]
    proc = subprocess.run(
        [*argv, b"bad \xff\xfe byte\x07s"], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "ok" and doc["note"] == "bad \ufffd\ufffd bytes"
    side = json.loads(Path(doc["location"]).with_name(f"{doc['id']}.json").read_text())
    assert side["note"] == doc["note"]


def test_a_slack_snapshot_closed_out_by_a_cli_without_slack_is_announced_by_serve(
    pg_url, tmp_path, slack_api
):
    """Started from Slack, its process killed, closed out by `atlas list` in a shell with
    no Slack token: the next process with Slack edits the snapshot's message and tells
    the channel, once."""
    import socket

    from bot.catalog import open_catalog
    from tests.support.helpers import services_for, settings_for

    fill_sample(pg_url, rows=20)
    env = cli_env(tmp_path, DATABASE_URL=pg_url)
    catalog = open_catalog(env["ATLAS_STATE"])
    settings = settings_for(pg_url, tmp_path, SLACK_API_URL=slack_api.url, ATLAS_CHANNEL="CRUN")
    name = settings.target().name
    catalog.begin_snapshot(
        Snapshot(
            id="20261204-120000-dead",
            database=name,
            owner=f"{socket.gethostname()}:4194303",  # a pid no process has: it died
            slack_channel="CRUN",
            slack_ts="1733300000.000100",
        )
    )
    listed = json.loads(run_cli(["list", "--json"], env, tmp_path).stdout)  # no Slack here
    assert [r["status"] for r in listed] == ["interrupted"]
    assert slack_api.calls() == []
    for _ in range(2):  # serve's start, then its periodic recovery: announced once
        services_for(settings, slack_api.client()).reported.recover()
    edits = [c for c in slack_api.calls("chat.update") if c["params"]["ts"] == "1733300000.000100"]
    posts = [c for c in slack_api.calls("chat.postMessage") if "interrupted" in str(c["params"])]
    assert len(edits) == 1 and len(posts) == 1, slack_api.calls()
