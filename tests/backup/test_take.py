"""Snapshots end to end against a real PostgreSQL server, a local folder and a real S3 server."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from bot.errors import AtlasError, Busy, NotFound
from bot.records import Snapshot
from tests.support.catalogs import catalog_text
from tests.support.helpers import (
    add_bulk,
    restore_counts,
    services_for,
    settings_for,
    storage_files,
)
from tests.support.pg import fill_sample
from tests.support.s3 import list_keys


def _children_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if f"({name})" in stat and int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                pids.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def test_local_snapshot_restores_to_identical_counts(pg, pg_db, pg_url, tmp_path):
    expected = fill_sample(pg_url, rows=3000)
    settings = settings_for(pg_url, tmp_path)
    snaps = services_for(settings)
    row = snaps.taker.take(requested_by="U1", note="before 0042")

    assert row.status == "ok"
    assert row.location.endswith(f"production/{pg_db}/{row.id}.dump.zst")
    manifest = row.manifest
    assert manifest["tables"] == {"public.users": 3000, "public.orders": 6000}
    assert manifest["sequences"]["public.invoice_no_seq"]["last_value"] == 3100
    assert {"citext", "pgcrypto"} <= set(manifest["extensions"])
    assert row.server_version.startswith("15.")
    sidecar = json.loads(Path(row.location.replace(".dump.zst", ".json")).read_text())
    assert sidecar["sha256"] == row.sha256 and sidecar["manifest"] == manifest
    assert hashlib.sha256(Path(row.location).read_bytes()).hexdigest() == row.sha256
    [audit] = snaps.catalog.audit_log(subject=row.id)
    assert (audit.actor, audit.action) == ("U1", "snapshot.ok")
    assert audit.detail == {"size": row.size_bytes}

    out = tmp_path / "plain.dump"
    snaps.reader.fetch(row.id, str(out))
    assert out.read_bytes()[:5] == b"PGDMP"
    assert restore_counts(pg, out, ["users", "orders"]) == expected


def test_s3_snapshot_restores_and_leaves_no_upload(pg, pg_db, pg_url, tmp_path, s3_env, s3_client):
    expected = fill_sample(pg_url, rows=2000)
    add_bulk(pg_url, 20)  # > one 8 MiB part, so the upload is really multipart
    settings = settings_for(pg_url, tmp_path, storage=f"s3://{s3_env}/team")
    snaps = services_for(settings)
    row = snaps.taker.take(requested_by="U1", note="s3")

    assert row.location == f"s3://{s3_env}/team/production/{pg_db}/{row.id}.dump.zst"
    keys = list_keys(s3_client, s3_env)
    assert keys == sorted(
        [
            f"team/production/{pg_db}/{row.id}.dump.zst",
            f"team/production/{pg_db}/{row.id}.json",
        ]
    )
    head = s3_client.head_object(Bucket=s3_env, Key=keys[0])
    assert head["ContentLength"] == row.size_bytes
    assert not s3_client.list_multipart_uploads(Bucket=s3_env).get("Uploads")

    assert snaps.reader.verify(row.id).snapshot.status == "ok"
    out = tmp_path / "from-s3.dump"
    snaps.reader.fetch(row.id, str(out))
    assert restore_counts(pg, out, ["users", "orders"]) == expected


def test_killed_pg_dump_leaves_nothing_and_is_recorded(pg, pg_db, pg_url, tmp_path):
    fill_sample(pg_url, rows=100)
    add_bulk(pg_url, 30)
    settings = settings_for(pg_url, tmp_path)
    snaps = services_for(settings)
    argv_seen: list[str] = []

    def kill_pg_dump(progress) -> None:
        for pid in _children_named("pg_dump"):
            argv_seen.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(AtlasError, match="killed by signal 9"):
        snaps.taker.take(requested_by="U1", progress=kill_pg_dump, progress_every=0)

    assert argv_seen, "pg_dump was running during progress"
    assert all(pg.password not in a for a in argv_seen), "password must not be in argv"
    assert storage_files(tmp_path / "backups") == []
    [row] = snaps.snapshots.recent()
    assert row.status == "failed" and "killed" in row.error


def test_s3_refusing_the_write_is_a_clear_failure(pg, pg_db, pg_url, tmp_path, s3_env, s3_client):
    fill_sample(pg_url, rows=100)
    settings = settings_for(pg_url, tmp_path, storage="s3://no-such-bucket-atlas/x")
    snaps = services_for(settings)
    with pytest.raises(AtlasError, match="S3 refused.*NoSuchBucket"):
        snaps.taker.take(requested_by="U1")
    [row] = snaps.snapshots.recent()
    assert row.status == "failed" and "NoSuchBucket" in row.error


def test_s3_write_refused_mid_stream_aborts_the_upload(
    pg, pg_db, pg_url, tmp_path, s3_env, s3_client
):
    """A bucket policy that denies PutObject: the multipart upload is refused and aborted."""
    fill_sample(pg_url, rows=100)
    add_bulk(pg_url, 12)
    s3_client.put_bucket_policy(
        Bucket=s3_env,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:PutObject",
                        "Resource": f"arn:aws:s3:::{s3_env}/*",
                    }
                ],
            }
        ),
    )
    settings = settings_for(pg_url, tmp_path, storage=f"s3://{s3_env}/p")
    snaps = services_for(settings)
    try:
        snaps.taker.take(requested_by="U1")
    except AtlasError as exc:
        assert "S3 refused" in str(exc)
    else:
        pytest.skip("this S3 server does not enforce bucket policies")
    assert list_keys(s3_client, s3_env) == []
    assert not s3_client.list_multipart_uploads(Bucket=s3_env).get("Uploads")
    assert snaps.snapshots.recent()[0].status == "failed"


def test_truncated_or_tampered_artifact_fails_verify(pg, pg_db, pg_url, tmp_path):
    fill_sample(pg_url, rows=2000)
    settings = settings_for(pg_url, tmp_path)
    snaps = services_for(settings)
    row = snaps.taker.take(requested_by="U1")
    path = Path(row.location)
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(AtlasError, match="bytes, but"):
        snaps.reader.verify(row.id)
    assert snaps.snapshots.get(row.id).status == "corrupt"

    tampered = bytearray(good)
    tampered[len(good) // 2] ^= 0xFF
    path.write_bytes(bytes(tampered))
    with pytest.raises(AtlasError, match="corrupt|Checksum mismatch"):
        snaps.reader.verify(row.id)
    with pytest.raises(AtlasError):
        snaps.reader.fetch(row.id, str(tmp_path / "x.dump"))
    assert not (tmp_path / "x.dump").exists() and not (tmp_path / ".x.dump.partial").exists()

    path.write_bytes(good)
    assert snaps.reader.verify(row.id).snapshot.status == "ok"


def test_archive_check_catches_truncation_that_pg_restore_list_misses(pg, pg_db, pg_url, tmp_path):
    """Why verification reads the whole archive: `pg_restore --list` passes a cut-off dump."""
    from bot.backup.pipeline import ArchiveCheck

    fill_sample(pg_url, rows=3000)
    settings = settings_for(pg_url, tmp_path)
    snaps = services_for(settings)
    row = snaps.taker.take(requested_by="U1")
    plain = tmp_path / "p.dump"
    snaps.reader.fetch(row.id, str(plain))
    cut = tmp_path / "cut.dump"
    cut.write_bytes(plain.read_bytes()[: int(row.raw_size_bytes * 0.7)])
    listed = subprocess.run(["pg_restore", "--list", str(cut)], capture_output=True)
    assert listed.returncode == 0  # the weak check is fooled
    check = ArchiveCheck("pg_restore", dict(os.environ))
    check.feed(cut.read_bytes())
    with pytest.raises(AtlasError, match="does not read through"):
        check.verify()


def test_unknown_id_unreachable_db_and_bad_password(pg, pg_db, tmp_path, free_port):
    settings = settings_for(
        f"postgresql://postgres:hunter2-secret@127.0.0.1:{free_port}/app", tmp_path
    )
    snaps = services_for(settings)
    with pytest.raises(NotFound, match="No snapshot with id 'nope'"):
        snaps.reader.verify("nope")
    with pytest.raises(AtlasError, match="Cannot connect to 127.0.0.1") as info:
        snaps.taker.take(requested_by="U1")
    assert "hunter2" not in str(info.value)

    bad = settings_for(pg.url(pg_db, password="wrong-pass-77"), tmp_path / "b")
    snaps = services_for(bad)
    with pytest.raises(AtlasError, match="password authentication failed") as info:
        snaps.taker.take(requested_by="U1")
    assert "wrong-pass-77" not in str(info.value)
    assert "wrong-pass-77" not in catalog_text(bad.state)
    assert snaps.snapshots.recent()[0].status == "failed"


def test_old_pg_dump_is_refused_before_anything_runs(pg, pg_db, pg_url, tmp_path):
    bindir = tmp_path / "oldbin"
    bindir.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        script = bindir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} (PostgreSQL) 12.3"\n')
        script.chmod(0o755)
    settings = settings_for(pg_url, tmp_path, ATLAS_PG_BINDIR=str(bindir))
    snaps = services_for(settings)
    with pytest.raises(AtlasError, match=r"pg_dump 12\.3 is older than the server"):
        snaps.taker.take(requested_by="U1")
    assert storage_files(tmp_path / "backups") == []


def test_one_snapshot_per_database_at_a_time(pg, pg_db, pg_url, tmp_path):
    settings = settings_for(pg_url, tmp_path)
    snaps = services_for(settings)
    catalog = snaps.catalog
    target = settings.target()
    catalog.begin_snapshot(
        Snapshot(id="held", database=target.name, environment="production", requested_by="U9")
    )
    with pytest.raises(Busy, match="already running: held, started by U9"):
        snaps.taker.take(requested_by="U1")


def test_restart_marks_running_snapshots_interrupted_and_cleans_up(pg_url, tmp_path):
    settings = settings_for(pg_url, tmp_path)
    snaps = services_for(settings)
    catalog = snaps.catalog
    dead = subprocess.Popen(["true"])
    dead.wait()
    partial = tmp_path / "backups" / "production" / "x" / ".a.dump.zst.1234.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half")
    import socket

    catalog.begin_snapshot(
        Snapshot(
            id="s-dead",
            database="x",
            environment="production",
            owner=f"{socket.gethostname()}:{dead.pid}",
            pending_ref=str(partial),
        )
    )
    catalog.begin_snapshot(Snapshot(id="s-live", database="y", environment="production"))
    rows = snaps.recovery.recover()
    assert [r.id for r in rows] == ["s-dead"]
    assert snaps.snapshots.get("s-dead").status == "interrupted"
    assert snaps.snapshots.get("s-live").status == "running"  # our own process is alive
    assert not partial.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root")
def test_full_disk_is_a_clear_failure_with_no_partial_file(pg, pg_db, pg_url, tmp_path):
    fill_sample(pg_url, rows=100)
    add_bulk(pg_url, 8)
    mnt = Path(tempfile.mkdtemp())
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here to simulate a full disk")
    try:
        settings = settings_for(pg_url, tmp_path, storage=str(mnt))
        snaps = services_for(settings)
        with pytest.raises(AtlasError, match="disk is full"):
            snaps.taker.take(requested_by="U1")
        assert storage_files(mnt) == []
        assert snaps.snapshots.recent()[0].status == "failed"
    finally:
        subprocess.run(["umount", str(mnt)])
        mnt.rmdir()


def test_s3_storage_uses_aws_region(s3_env, monkeypatch):
    """boto3 alone reads only AWS_DEFAULT_REGION; the documented AWS_REGION must win."""
    from bot.store.s3 import S3Storage

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    storage = S3Storage(s3_env, "team")
    assert storage.client.meta.region_name == "eu-west-3"
    bucket = f"{s3_env}-paris"
    storage.client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    paris = S3Storage(bucket, "team")
    paris.put_bytes("x.json", b"{}")
    assert b"".join(paris.read("x.json")) == b"{}"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert S3Storage(bucket).client.meta.region_name == "eu-west-3"
