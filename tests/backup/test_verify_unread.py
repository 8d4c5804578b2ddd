"""`atlas verify` marks a snapshot corrupt only for what it read: a network cut mid-read
marks nothing, an artifact that is gone is damage, and one deleted while it was read stays
deleted. Retention keeps what `verify` and `fetch` read while they read it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.errors import AtlasError
from bot.ops import housekeeping
from bot.records import SnapshotStatus
from tests.support.helpers import add_bulk, services_for, settings_for
from tests.support.ops import age_snapshot, audit_actions
from tests.support.pg import fill_sample
from tests.support.proxy import tcp_proxy

ONE_WEEK = {
    "ATLAS_RETENTION_DAYS": "7",
    "ATLAS_KEEP_DAILY": "0",
    "ATLAS_KEEP_WEEKLY": "0",
    "ATLAS_KEEP_MONTHLY": "0",
}


@pytest.fixture
def through_proxy(pg_url, tmp_path, s3_server, s3_env, monkeypatch):
    """Services whose S3 traffic passes a proxy that can slow or cut it; ~10 MB stored."""
    fill_sample(pg_url, rows=200)
    add_bulk(pg_url, 14)
    with tcp_proxy(int(s3_server.rsplit(":", 1)[1])) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # boto3's own: fail at once
        settings = settings_for(pg_url, tmp_path, storage=f"s3://{s3_env}/atlas", **ONE_WEEK)
        yield services_for(settings), proxy, settings


def test_a_network_cut_mid_verify_marks_nothing(through_proxy):
    services, proxy, _ = through_proxy
    snap = services.taker.take(requested_by="ops")
    proxy.throttle(2_000_000)
    threading.Timer(1.0, proxy.refuse).start()  # the link drops mid-download
    with pytest.raises(AtlasError) as info:
        services.reader.verify(snap.id)
    assert "nothing was marked" in str(info.value), info.value
    said = str(info.value)  # one short line: how far the read got, once, and what to do
    assert said.count("bytes came") == 1 and "IncompleteRead" not in said, said
    assert len(said) < 400 and "\n" not in said, said
    assert services.catalog.get_snapshot(snap.id).status == "ok"
    actions = [e.action for e in audit_actions(services)]
    assert "snapshot.verify_failed" in actions and "snapshot.damaged" not in actions
    proxy.restore()
    proxy.throttle(None)
    assert services.reader.verify(snap.id).snapshot.status == "ok"


def test_an_artifact_that_is_gone_is_marked_corrupt(through_proxy, s3_client, s3_env):
    services, _, _ = through_proxy
    snap = services.taker.take(requested_by="ops")
    key = (snap.location or "").removeprefix(f"s3://{s3_env}/")
    s3_client.delete_object(Bucket=s3_env, Key=key)
    with pytest.raises(AtlasError):
        services.reader.verify(snap.id)
    after = services.catalog.get_snapshot(snap.id)
    assert after.status == "corrupt" and "missing" in (after.error or ""), after.error


@pytest.mark.parametrize("read", ["verify", "fetch"])
def test_a_prune_keeps_a_snapshot_while_it_is_read(through_proxy, tmp_path, read):
    """verify and fetch are no jobs: they hold a lease while they read, which a prune in
    another process sees."""
    services, proxy, settings = through_proxy
    old = services.taker.take(requested_by="ops")
    services.taker.take(requested_by="ops")  # the newest, which retention always keeps
    age_snapshot(services, old.id, days=30)
    elsewhere = services_for(settings)  # housekeeping in another process
    proxy.throttle(2_000_000)  # about five seconds to read it
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(
            services.reader.verify
            if read == "verify"
            else lambda ref: services.reader.fetch(ref, str(tmp_path / "out.dump")),
            old.id,
        )
        time.sleep(1.0)
        assert not reading.done()
        [kept] = [d for d in housekeeping.prune(elsewhere) if d.snapshot_id == old.id]
        assert kept.keep and "being read" in kept.reason, kept
        proxy.throttle(None)
        reading.result(timeout=60)
    assert services.catalog.get_snapshot(old.id).status == "ok"
    [gone] = [d for d in housekeeping.prune(elsewhere) if d.snapshot_id == old.id]
    assert not gone.keep  # read no more: pruned


def test_a_snapshot_deleted_while_it_is_verified_stays_deleted(through_proxy, s3_client, s3_env):
    """A deletion that knows no lease (an older Atlas's prune, by hand): the row stays
    `deleted`, neither `ok` nor `corrupt` again."""
    services, proxy, _ = through_proxy
    snap = services.taker.take(requested_by="ops")
    proxy.throttle(2_000_000)
    with ThreadPoolExecutor(1) as pool:
        verifying = pool.submit(services.reader.verify, snap.id)
        time.sleep(1.0)
        assert not verifying.done()
        key = (snap.location or "").removeprefix(f"s3://{s3_env}/")
        s3_client.delete_object(Bucket=s3_env, Key=key)
        services.catalog.update_snapshot(snap.id, status=SnapshotStatus.DELETED)
        proxy.throttle(None)
        with pytest.raises(AtlasError) as info:
            verifying.result(timeout=60)
    assert "deleted by retention" in str(info.value), info.value
    assert services.catalog.get_snapshot(snap.id).status == "deleted"
