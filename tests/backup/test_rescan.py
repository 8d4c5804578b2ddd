"""`atlas rescan`: the catalog rebuilt from storage alone, after losing ATLAS_STATE."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.catalogs import lose_catalog, state_for
from tests.support.helpers import services_for, settings_for
from tests.support.pg import fill_sample

COMPARED = (
    "database",
    "dbname",
    "environment",
    "requested_by",
    "note",
    "started_at",
    "server_version",
    "pg_dump_version",
    "size_bytes",
    "raw_size_bytes",
    "sha256",
    "toc_bytes",
    "toc_sha256",
    "storage_key",
    "location",
    "encryption",
    "verified_at",
)


def _lose_catalog(tmp_path: Path) -> None:
    lose_catalog(tmp_path)


def _cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS_", "PG", "SLACK_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_rescan_rebuilds_a_lost_catalog_that_drills_again(pg, pg_db, pg_url, tmp_path):
    expected = fill_sample(pg_url, rows=500)
    staging = pg.create_database(pg_db + "_stg")
    try:
        settings = settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging))
        services = services_for(settings)
        before = [services.taker.take(requested_by="U1", note=f"n{i} <!channel>") for i in (1, 2)]
        _lose_catalog(tmp_path)

        fresh = services_for(settings)
        assert fresh.snapshots.recent() == []
        preview = fresh.rescanner.rescan("ops", dry_run=True)
        assert [r.outcome for r in preview] == ["imported", "imported"]
        assert fresh.snapshots.recent() == []  # a dry run changes nothing

        results = fresh.rescanner.rescan("ops")
        assert sorted(r.id for r in results) == sorted(r.id for r in before)
        assert {r.outcome for r in results} == {"imported"}
        for old in before:
            new = fresh.snapshots.get(old.id)
            assert {k: getattr(new, k) for k in COMPARED} == {k: getattr(old, k) for k in COMPARED}
            assert new.manifest == old.manifest
            assert new.status == "ok" and new.source == "rescan"
        assert [r.id for r in fresh.snapshots.recent()] == [r.id for r in before][::-1]
        assert [a.action for a in fresh.catalog.audit_log(subject=before[0].id)] == [
            "snapshot.imported"
        ]

        drill = fresh.restores.run(kind="drill", snap_id=None, requested_by="U1")
        assert drill.status == "passed", drill
        assert drill.snapshot_id == before[1].id
        assert fresh.snapshots.get(before[1].id).manifest["tables"] == {
            f"public.{t}": n for t, n in expected.items()
        }

        again = fresh.rescanner.rescan("ops")
        assert [r.outcome for r in again] == ["known", "known"]
    finally:
        pg.drop_database(staging)


def test_rescan_skips_what_it_cannot_trust(pg_db, pg_url, tmp_path):
    fill_sample(pg_url, rows=100)
    settings = settings_for(pg_url, tmp_path)
    services = services_for(settings)
    gone, tampered, good = (services.taker.take(requested_by="U1") for _ in range(3))
    _lose_catalog(tmp_path)

    Path(gone.location).unlink()
    sidecar = Path(tampered.location).with_name(f"{tampered.id}.json")
    doc = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**doc, "size_bytes": doc["size_bytes"] + 1}))
    folder = Path(good.location).parent
    (folder / ".half-written.json.partial").write_text("{")
    (folder / "notes.json").write_text("{}")  # not a snapshot's sidecar
    other = folder.parent / "otherdb"  # another database's backups in the same storage
    other.mkdir()
    (other / "20260101-000000-abcd.json").write_text("{}")

    env = {
        "DATABASE_URL": pg_url,
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": state_for(tmp_path),
    }
    res = _cli(tmp_path, env, "rescan", "--json")
    assert res.returncode == 1, res.stderr
    results = {r["id"]: r for r in json.loads(res.stdout)["results"]}
    other_id = "20260101-000000-abcd"
    assert set(results) == {gone.id, tampered.id, good.id, "notes", other_id}
    assert results[other_id]["outcome"] == "other"  # named, never adopted
    assert "otherdb is not a database configured here" in results[other_id]["reason"]
    assert results["notes"]["outcome"] == "skipped"
    assert results[good.id]["outcome"] == "imported"
    assert results[gone.id]["outcome"] == "skipped"
    assert "is missing" in results[gone.id]["reason"]
    assert results[tampered.id]["outcome"] == "skipped"
    assert "the sidecar says" in results[tampered.id]["reason"]
    assert [r.id for r in services_for(settings).snapshots.recent()] == [good.id]

    res = _cli(tmp_path, env, "rescan")
    assert res.returncode == 1
    assert "0 imported, 1 already known, 3 skipped" in res.stdout
    assert "Not configured here, left alone: production/otherdb" in res.stdout


def test_rescan_from_s3(pg_url, tmp_path, s3_env):
    fill_sample(pg_url, rows=100)
    settings = settings_for(pg_url, tmp_path, storage=f"s3://{s3_env}/team")
    row = services_for(settings).taker.take(requested_by="U1")
    _lose_catalog(tmp_path)

    fresh = services_for(settings)
    assert [(r.id, r.outcome) for r in fresh.rescanner.rescan("ops")] == [(row.id, "imported")]
    assert fresh.snapshots.get(row.id).location == row.location
    assert fresh.reader.verify(row.id).snapshot.status == "ok"
