"""Reading from a copy: `verify --from` finds a copy changed where it lies (and only that
copy is marked), a lost catalog and a deleted primary bucket are rebuilt and drilled from
the copy alone, encrypted snapshots stay encrypted in every copy, and each destination
keeps snapshots by its own retention, never deleting a database's last good copy."""

from __future__ import annotations

import json
import os

import pytest

from bot.catalog import open_catalog
from bot.records import CopyState
from tests.support.helpers import run_cli
from tests.support.pg import fill_sample
from tests.support.s3 import make_s3_client, point_aws_at

from .conftest import copies_env, take_snapshot


def test_a_copy_changed_in_place_is_found_by_verify_from(pg_url, tmp_path, offsite, nas):
    fill_sample(pg_url, 2000)
    env = copies_env(tmp_path, pg_url, offsite, nas)
    snap = take_snapshot(env, tmp_path)
    good = run_cli(["verify", snap["id"], "--from", "nas"], env, tmp_path, text=True)
    assert good.returncode == 0 and "(the copy in nas)" in good.stdout
    copy = nas / snap["storage_key"]
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    bad = run_cli(["verify", snap["id"], "--from", "nas"], env, tmp_path, text=True)
    assert bad.returncode == 1 and "The copy of" in bad.stderr and "damaged" in bad.stderr
    assert "Traceback" not in bad.stderr
    shown = json.loads(run_cli(["show", snap["id"], "--json"], env, tmp_path, text=True).stdout)
    assert shown["status"] == "ok", "the snapshot itself is still good"
    states = {c["destination"]: c["state"] for c in shown["copies"]}
    assert states == {"offsite": "ok", "nas": "damaged"}
    primary = run_cli(["verify", snap["id"]], env, tmp_path, text=True)
    assert primary.returncode == 0
    remade = run_cli(["copy", "--to", "nas"], env, tmp_path, text=True)
    assert remade.returncode == 0, remade.stderr
    assert copy.read_bytes() == (tmp_path / "backups" / snap["storage_key"]).read_bytes()
    unknown = run_cli(["verify", snap["id"], "--from", "tape"], env, tmp_path, text=True)
    assert unknown.returncode == 1 and "destinations: nas, offsite" in unknown.stderr


@pytest.mark.own_catalog  # a new, empty one stands in for the lost one
def test_a_lost_catalog_and_bucket_are_rebuilt_and_drilled_from_the_copy_alone(
    pg, pg_url, tmp_path, offsite, nas, s3_env, s3_server, monkeypatch
):
    """ATLAS_STORAGE on one S3 server, the copy on another: the primary bucket and the
    catalog are deleted; `rescan --from` brings the catalog back from the copy, and a drill
    `--from` it passes, recorded as read from that copy."""
    expected = fill_sample(pg_url, 4000)
    point_aws_at(monkeypatch, s3_server, tmp_path, "testing", "testing", "us-east-1")
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    env = copies_env(tmp_path, pg_url, offsite, nas, ATLAS_STORAGE=f"s3://{s3_env}/prod", **aws)
    env["STAGING_DATABASE_URL"] = pg.url(pg.create_database(f"{pg_url.rsplit('/', 1)[1]}_stg"))
    snap = take_snapshot(env, tmp_path)
    assert {c["state"] for c in snap["copies"]} == {"ok"}
    primary = make_s3_client(s3_server)
    for obj in primary.list_objects_v2(Bucket=s3_env).get("Contents", []):
        primary.delete_object(Bucket=s3_env, Key=obj["Key"])
    primary.delete_bucket(Bucket=s3_env)
    env["ATLAS_STATE"] = str(tmp_path / "new-catalog.db")  # the old one is lost
    rescan = run_cli(["rescan", "--from", "offsite", "--json"], env, tmp_path, text=True)
    assert rescan.returncode == 0, rescan.stderr
    found = json.loads(rescan.stdout)["results"]
    assert [(r["id"], r["outcome"]) for r in found] == [(snap["id"], "imported")]
    shown = json.loads(run_cli(["show", snap["id"], "--json"], env, tmp_path, text=True).stdout)
    assert shown["status"] == "deleted" and "not in ATLAS_STORAGE" in shown["error"]
    assert {c["destination"]: c["state"] for c in shown["copies"]} == {"offsite": "ok"}
    plain = run_cli(["drill", "latest", "--yes"], env, tmp_path, text=True)
    assert plain.returncode == 1 and "no good snapshot" in plain.stderr
    drill = run_cli(["drill", "latest", "--from", "offsite", "--yes", "--json"], env, tmp_path)
    assert drill.returncode == 0, drill.stderr
    job = json.loads(drill.stdout)
    assert job["status"] == "passed" and job["from_copy"] == "offsite"
    assert job["snapshot_id"] == snap["id"]
    listed = json.loads(run_cli(["drills", "--json"], env, tmp_path, text=True).stdout)
    assert listed[0]["from_copy"] == "offsite"
    checked = run_cli(["status", "--json", "--no-provider"], env, tmp_path, text=True)
    line = [ln for ln in json.loads(checked.stdout)["checks"] if ln["key"] == "copy:offsite"]
    assert line[0]["level"] == "ok" and "last drilled from" in line[0]["detail"], line
    assert sum(expected.values()) > 0


def test_encrypted_snapshots_are_encrypted_in_every_copy(pg_url, tmp_path, offsite, nas, key_file):
    marker = "copy-plaintext-marker-7f3a"
    fill_sample(pg_url, 500)
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE secrets (note text)")
        conn.execute("INSERT INTO secrets VALUES (%s)", [marker * 50])
    env = copies_env(tmp_path, pg_url, offsite, nas, ATLAS_ENCRYPTION_KEY_FILE=str(key_file[0]))
    snap = take_snapshot(env, tmp_path)
    assert snap["encryption"] == "age" and snap["storage_key"].endswith(".age")
    body = offsite.client.get_object(Bucket=offsite.bucket, Key=f"atlas/{snap['storage_key']}")
    for data in (body["Body"].read(), (nas / snap["storage_key"]).read_bytes()):
        assert data.startswith(b"age-encryption.org/v1")
        assert marker.encode() not in data
    side = (nas / snap["storage_key"].removesuffix(".dump.zst.age")).with_suffix(".json")
    assert marker not in side.read_text()
    fetched = tmp_path / "from-copy.dump"
    got = run_cli(["fetch", snap["id"], "--from", "offsite", "-o", str(fetched)], env, tmp_path)
    assert got.returncode == 0, got.stderr
    assert fetched.read_bytes().startswith(b"PGDMP")


def test_each_destination_keeps_by_its_own_retention(pg_url, tmp_path, offsite, nas):
    """Three snapshots aged 40, 20 and 10 days: ATLAS_STORAGE keeps 30 days, the offsite
    copy 60, the folder 5. The folder keeps only the newest (a database's last good copy
    stays, whatever its age); the offsite copy keeps the one storage pruned."""
    fill_sample(pg_url, 200)
    env = copies_env(
        tmp_path,
        pg_url,
        offsite,
        nas,
        ATLAS_RETENTION_DAYS="30",
        ATLAS_COPY_OFFSITE_RETENTION_DAYS="60",
        ATLAS_COPY_NAS_RETENTION_DAYS="5",
    )
    ids = [take_snapshot(env, tmp_path)["id"] for _ in range(3)]
    catalog = open_catalog(env["ATLAS_STATE"])
    from datetime import UTC, datetime, timedelta

    for snap_id, days in zip(ids, (40, 20, 10), strict=True):
        when = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")
        catalog.update_snapshot(snap_id, started_at=when)
    dry = run_cli(["prune", "--dry-run", "--json"], env, tmp_path, text=True)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    keep = {
        place: {d["snapshot_id"]: d["keep"] for d in ds}
        for place, ds in [("storage", plan["decisions"]), *plan["copies"].items()]
    }
    assert keep["storage"] == {ids[0]: False, ids[1]: True, ids[2]: True}
    assert keep["offsite"] == {ids[0]: True, ids[1]: True, ids[2]: True}
    assert keep["nas"] == {ids[0]: False, ids[1]: False, ids[2]: True}
    text = run_cli(["prune", "--dry-run"], env, tmp_path, text=True).stdout
    assert "copy nas:" in text and "copy offsite:" in text
    done = run_cli(["prune"], env, tmp_path, text=True)
    assert done.returncode == 0, done.stderr
    left = sorted(p.name for p in nas.rglob("*.dump.zst"))
    assert left == [f"{ids[2]}.dump.zst"]
    assert len([k for k in offsite.objects() if k.endswith(".dump.zst")]) == 3
    by = {(c.snapshot_id, c.destination): c.state for c in catalog.copies_of(*ids)}
    assert by[(ids[0], "nas")] == CopyState.DELETED and by[(ids[0], "offsite")] == CopyState.OK
    drill = run_cli(["verify", ids[0], "--from", "offsite"], env, tmp_path, text=True)
    assert drill.returncode == 0, "the copy outlives the snapshot storage pruned"
