"""3-2-1 as users run it: `atlas snapshot` with ATLAS_COPIES naming a second S3 server
(its own endpoint and credentials, behind a proxy that can cut the network) and a folder.
Each copy is read back where it lies; a destination that is down never fails the
snapshot, is retried by `atlas copy` and by the schedule's tick, and alerts once."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.backup.layout import artifact_key, new_id
from bot.config import load_settings
from bot.copies.copier import Copier
from bot.copies.sweep import sweep_pending
from bot.ops import copies as copy_ops
from bot.ops import housekeeping, status
from bot.ops.metrics import render
from bot.records import CopyState, Snapshot, SnapshotStatus, copy_key
from tests.support.helpers import add_bulk, listing_with, run_cli, services_for, start_cli
from tests.support.pg import fill_sample
from tests.support.slack import FakeSlackApi

from .conftest import COPY_SECRET, copies_env, take_snapshot


def _states(doc: dict) -> dict[str, str]:
    return {c["destination"]: c["state"] for c in doc["copies"]}


def test_each_snapshot_is_copied_to_each_destination_and_read_back(pg_url, tmp_path, offsite, nas):
    fill_sample(pg_url, 3000)
    env = copies_env(tmp_path, pg_url, offsite, nas)
    snap = take_snapshot(env, tmp_path)
    assert _states(snap) == {"offsite": "ok", "nas": "ok"}
    key = snap["storage_key"]
    stored = (tmp_path / "backups" / key).read_bytes()
    assert (nas / key).read_bytes() == stored
    body = offsite.client.get_object(Bucket=offsite.bucket, Key=f"atlas/{key}")["Body"].read()
    assert body == stored
    assert f"atlas/{key.removesuffix('.dump.zst')}.json" in offsite.objects()  # the sidecar too
    for c in snap["copies"]:  # proven by what each destination gave back
        assert c["sha256"] == snap["sha256"] and c["size_bytes"] == snap["size_bytes"]
    shown = run_cli(["show", snap["id"]], env, tmp_path, text=True)
    assert re.search(rf"^copy offsite +ok, s3://{offsite.bucket}/atlas/", shown.stdout, re.M)
    assert re.search(rf"^copy nas +ok, {re.escape(str(nas))}/", shown.stdout, re.M)
    listed = run_cli(["list"], env, tmp_path, text=True)
    assert "2/2" in listed.stdout and "incomplete" not in listed.stdout
    assert COPY_SECRET not in shown.stdout + listed.stdout + json.dumps(snap)


@pytest.mark.parametrize("how", ["killed", "cut"])
def test_a_destination_lost_mid_copy_never_fails_the_snapshot(pg_url, tmp_path, offsite, nas, how):
    """The copy server's connection reset (as a killed server leaves it) or the network cut
    mid-upload: the snapshot is good, the other copy made, the lost one pending; `atlas
    copy` exits 1 while it is down and completes it once it is back."""
    fill_sample(pg_url, 20000)
    env = copies_env(
        tmp_path, pg_url, offsite, nas, AWS_MAX_ATTEMPTS="2", ATLAS_COPY_TIMEOUT_S="60"
    )
    if how == "killed":
        offsite.proxy.refuse()
    else:
        offsite.proxy.cut_after(64 * 1024)
    done = run_cli(["snapshot"], env, tmp_path, text=True)
    assert done.returncode == 0, done.stderr
    assert "copied to 1 of 2 (offsite pending, retried" in done.stderr
    snap_id = done.stdout.strip()
    shown = json.loads(run_cli(["show", snap_id, "--json"], env, tmp_path, text=True).stdout)
    assert shown["status"] == "ok" and _states(shown) == {"offsite": "pending", "nas": "ok"}
    assert not [k for k in offsite.objects() if k.endswith(".dump.zst")], "a partial copy shows"
    listed = run_cli(["list"], env, tmp_path, text=True)
    assert "1/2 incomplete" in listed.stdout
    still = run_cli(["copy"], env, tmp_path, text=True)
    assert still.returncode == 1 and "1 still missing" in still.stderr
    offsite.proxy.restore()
    back = run_cli(["copy"], env, tmp_path, text=True)
    assert back.returncode == 0, back.stderr
    assert f"ok       {snap_id} -> offsite" in back.stdout
    shown = json.loads(run_cli(["show", snap_id, "--json"], env, tmp_path, text=True).stdout)
    assert _states(shown) == {"offsite": "ok", "nas": "ok"}
    assert COPY_SECRET not in done.stderr + still.stdout + still.stderr


def test_the_schedule_retries_with_backoff_and_alerts_once_per_outage(
    pg_url, tmp_path, offsite, nas, slack_api: FakeSlackApi, monkeypatch
):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # boto3 reads it from this process's own
    fill_sample(pg_url, 500)
    offsite.proxy.refuse()
    env = copies_env(tmp_path, pg_url, offsite, nas, AWS_MAX_ATTEMPTS="1", ATLAS_CHANNEL="COPS")
    env.update(ATLAS_COPY_ALERT_HOURS="1", SLACK_API_URL=slack_api.url)
    settings = load_settings(env)
    services = services_for(settings, slack_api.client())
    snap = services.reported.take(requested_by="U1", source="slack")
    key = copy_key(snap.id, "offsite")
    first = services.catalog.copies_of(snap.id)
    assert {c.destination: c.state for c in first} == {"offsite": "pending", "nas": "ok"}
    said = [c for c in slack_api.calls("chat.update") if snap.id in c["params"].get("text", "")]
    assert "copied to 1 of 2 (offsite pending" in said[-1]["params"]["text"]
    copy_ops.tick(services)  # not due yet: the backoff holds it back
    assert services.catalog.copies_of(snap.id)[1].attempts == 1
    # an hour and more later (the queue's own times moved back, as the clock would move on)
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="milliseconds")
    services.catalog.update_copy(key, queued_at=old, next_try_at=0.0)
    copy_ops.tick(services)
    copy_ops.tick(services)
    after = {c.destination: c for c in services.catalog.copies_of(snap.id)}["offsite"]
    assert after.state == CopyState.PENDING and after.attempts == 2  # tried once more, backed off
    posted = [c["params"].get("text", "") for c in slack_api.calls("chat.postMessage")]
    alerts = [t for t in posted if "Copies to `offsite`" in t]
    assert len(alerts) == 1, "one alert per outage, not one per tick"
    lines = {ln.key: ln for ln in status.evaluate(status.gather(services, check_provider=False))}
    assert lines["copy:offsite"].level == "fail"
    assert lines["copy:nas"].level == "warn" and "never drilled from" in lines["copy:nas"].detail
    metrics = render(services)[0].decode()
    assert 'atlas_copies_missing{destination="offsite"} 1.0' in metrics
    assert 'atlas_copy_last_success_timestamp_seconds{destination="nas"}' in metrics
    offsite.proxy.restore()
    services.catalog.update_copy(key, next_try_at=0.0)
    copy_ops.tick(services)
    assert {c.state for c in services.catalog.copies_of(snap.id)} == {CopyState.OK}
    # a quarter on, each destination is owed its own drill, reminded once
    later = datetime.now(UTC) + timedelta(days=100)
    sent = [k for k in housekeeping.drill_reminders(services, at=later) if k.startswith("copy:")]
    assert sorted(k.split(":")[1] for k in sent) == ["nas", "offsite"]
    again = housekeeping.drill_reminders(services, at=later)
    assert not [k for k in again if k.startswith("copy:")]
    posted = [c["params"].get("text", "") for c in slack_api.calls("chat.postMessage")]
    assert any("atlas drill latest --from offsite" in t for t in posted)
    assert COPY_SECRET not in json.dumps([c["params"] for c in slack_api.calls()])


def test_doctor_checks_each_destination_where_it_lies(pg_url, tmp_path, offsite, nas):
    fill_sample(pg_url, 100)
    env = copies_env(tmp_path, pg_url, offsite, nas, AWS_MAX_ATTEMPTS="1")
    checked = run_cli(["doctor", "--json", "--no-slack"], env, tmp_path, text=True)
    found = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}
    assert found["copy offsite"]["status"] == "ok" and found["copy nas"]["status"] == "ok"
    assert offsite.objects() == [], "the probe object is removed"
    offsite.proxy.refuse()
    checked = run_cli(["doctor", "--json", "--no-slack"], env, tmp_path, text=True)
    found = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}
    assert checked.returncode == 1 and found["copy offsite"]["status"] == "fail"
    assert found["storage"]["status"] == "ok" and COPY_SECRET not in checked.stdout


def test_ctrl_c_mid_snapshot_leaves_no_copy_anywhere(pg_url, tmp_path, offsite, nas):
    """Copies stream while the snapshot is taken: an interrupted snapshot leaves nothing
    in any destination, and its copies are recorded as never to be made."""
    fill_sample(pg_url, 200)
    add_bulk(pg_url, 120)
    env = copies_env(tmp_path, pg_url, offsite, nas)
    proc = start_cli(["snapshot"], env, tmp_path, output=True)
    deadline = time.monotonic() + 60
    while not any(p.is_file() for p in nas.rglob("*")):  # the copy is being written
        assert proc.poll() is None and time.monotonic() < deadline, "no copy streamed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"Traceback" not in err
    assert [p for p in nas.rglob("*") if p.is_file()] == []
    assert [k for k in offsite.objects() if k.endswith(".dump.zst")] == []
    listed = json.loads(run_cli(["list", "--json"], env, tmp_path, text=True).stdout)
    assert listed[0]["status"] == "interrupted"
    assert {c["state"] for c in listed[0]["copies"]} == {"deleted"}


def test_a_copy_killed_mid_write_leaves_nothing_behind_after_housekeeping(
    pg_url, tmp_path, offsite, nas, monkeypatch
):
    """SIGKILL while the copies stream: the destination keeps an open multipart upload
    (billed, and shown by no listing) and the folder a hidden partial file. Once the dead
    process is closed out and the writes are old, housekeeping removes both; a write a
    live copy owns is never touched."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    fill_sample(pg_url, 200)
    add_bulk(pg_url, 60)
    env = copies_env(tmp_path, pg_url, offsite, nas)
    offsite.proxy.throttle(400_000)  # the copy lags: the kill finds it mid-upload
    proc = start_cli(["snapshot"], env, tmp_path)

    def uploads() -> list[str]:
        found = offsite.client.list_multipart_uploads(Bucket=offsite.bucket)
        return [u["Key"] for u in found.get("Uploads", [])]

    deadline = time.monotonic() + 60
    while not (uploads() and any(p.is_file() for p in nas.rglob("*"))):
        assert proc.poll() is None and time.monotonic() < deadline, "no copy streamed"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    offsite.proxy.throttle(None)
    assert uploads() and [p.name for p in nas.rglob("*.partial")]
    services = services_for(load_settings(env))
    services.recovery.recover()  # the dead process's snapshot is closed out
    assert sweep_pending(services.copier) == [], "its copies' claims are still live"
    (snap,) = services.catalog.list_snapshots(limit=1)
    assert snap.status == "interrupted"
    for c in services.catalog.copies_of(snap.id):  # silent past the stale period
        services.catalog.update_copy(c.key, heartbeat_at=0.0)
    for p in nas.rglob("*.partial"):  # and an hour old
        old = time.time() - 7200
        os.utime(p, (old, old))
    swept = housekeeping.daily(services)
    assert swept["unfinished_copies"] == 2, swept
    assert uploads() == [] and [p for p in nas.rglob("*") if p.is_file()] == []
    assert [e.action for e in services.catalog.audit_log(limit=10)].count("copy.discarded") == 2


def test_a_copy_claimed_while_the_sweep_lists_is_spared(pg_url, tmp_path, offsite, nas):
    """`atlas copy` on another host claims a copy and opens its upload after housekeeping's
    sweep began and before it lists the destination. moto dates the upload 2010, so only
    the claim spares it, and the claim is read after the listing."""
    fill_sample(pg_url, 20)
    env = copies_env(tmp_path, pg_url, offsite, nas)
    services = services_for(load_settings(env))
    snap = services.catalog.begin_snapshot(
        Snapshot(id=new_id(), database=services.settings.target().name, storage_key="k")
    )
    services.catalog.finish_snapshot(snap.id, SnapshotStatus.OK)  # copied after, not streamed
    key = artifact_key(services.settings.target(), snap.id)
    storage = services.copier.storage("offsite")
    opened: list[Any] = []

    def another_copy() -> None:
        other = Copier(services.settings, services.catalog, services.store, "other")
        assert other.claim(services.catalog.get_snapshot(snap.id), "offsite")
        opened.append(storage.writer(key))

    services.copier._opened["offsite"] = listing_with(storage, another_copy)  # opened
    try:
        assert sweep_pending(services.copier) == []
        found = offsite.client.list_multipart_uploads(Bucket=offsite.bucket)
        assert opened and [u["Key"] for u in found.get("Uploads", [])] == [f"atlas/{key}"]
    finally:
        for writer in opened:
            writer.abort()


def test_an_unreachable_destination_names_its_own_endpoint_setting(pg_url, tmp_path, offsite, nas):
    """A copy's endpoint is ATLAS_COPY_<NAME>_ENDPOINT_URL, not ATLAS_STORAGE's
    AWS_ENDPOINT_URL: the error says which to check."""
    from tests.support import closed_port

    fill_sample(pg_url, 50)
    env = copies_env(tmp_path, pg_url, offsite, nas, AWS_MAX_ATTEMPTS="1")
    env["ATLAS_COPY_OFFSITE_ENDPOINT_URL"] = f"http://127.0.0.1:{closed_port()}"
    done = run_cli(["snapshot"], env, tmp_path, text=True)
    assert done.returncode == 0, done.stderr
    still = run_cli(["copy"], env, tmp_path, text=True)
    said = still.stdout + still.stderr
    assert still.returncode == 1 and "check ATLAS_COPY_OFFSITE_ENDPOINT_URL/network" in said, said
    assert "AWS_ENDPOINT_URL" not in said
