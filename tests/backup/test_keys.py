"""Encryption at rest with age: artifacts encrypted as they stream, read with any key of
the file, refused clearly without one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import AtlasError
from bot.ops import status
from bot.store.crypto import generate_identity
from tests.support.catalogs import state_for
from tests.support.helpers import services_for, settings_for
from tests.support.ops import MARKER, atlas
from tests.support.rds import rds_client, rds_env, rds_server

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest


# -- 4. age encryption at rest ----------------------------------------------------------------------


def test_encryption_at_rest_with_age(pg, pg_db, pg_url, small, staging, tmp_path, key_file):
    key, recipient = key_file
    with pg.connect(pg_db) as conn:
        conn.execute("INSERT INTO users (email, handle) VALUES (%s, 'marker')", [MARKER])
    env = {
        "DATABASE_URL": pg_url,
        "STAGING_DATABASE_URL": pg.url(staging),
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": state_for(tmp_path),
        "ATLAS_ENCRYPTION_KEY_FILE": str(key),
    }
    services = services_for(load_settings(env))
    row = services.taker.take(requested_by="U1")
    assert row.status == "ok" and row.encryption == "age"
    path = Path(row.location)
    assert path.name == f"{row.id}.dump.zst.age"
    assert row.storage_key.endswith(".dump.zst.age")
    data = path.read_bytes()
    assert data.startswith(b"age-encryption.org/v1")
    assert MARKER.encode() not in data
    assert len(data) == row.size_bytes
    if shutil.which("zstd"):
        zstd = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=False)
        assert zstd.returncode != 0  # not a zstd frame: the ciphertext is what is stored

    side = json.loads(path.with_name(f"{row.id}.json").read_bytes())
    assert side["encryption"] == "age"
    assert side["recipient"] == recipient
    assert side["sha256"] == row.sha256
    assert side["restore"].startswith(f"age -d -i KEY.txt {row.id}.dump.zst.age | zstd -dc")
    assert "AGE-SECRET-KEY" not in json.dumps(side)

    res = atlas(tmp_path, "verify", row.id, "--json", env=env)
    assert res.code == 0, res.output
    assert res.json()["status"] == "ok"
    out = tmp_path / "plain.dump"
    res = atlas(tmp_path, "fetch", row.id, "-o", str(out), env=env)
    assert res.code == 0, res.output
    plain = out.read_bytes()
    assert plain.startswith(b"PGDMP")
    assert MARKER.encode() in plain  # -Z0 dump: the data is in the clear once decrypted
    assert len(plain) == row.raw_size_bytes

    drill = services.restores.run(kind="drill", snap_id=row.id, requested_by="U1")
    assert drill.status == "passed", drill

    # the manual path (README), with standard tools only: age -d -i key.txt X | zstd -dc
    if shutil.which("age") and shutil.which("zstd"):
        age = subprocess.Popen(["age", "-d", "-i", str(key), str(path)], stdout=subprocess.PIPE)
        unz = subprocess.Popen(["zstd", "-dc"], stdin=age.stdout, stdout=subprocess.PIPE)
        assert age.stdout is not None
        age.stdout.close()  # zstd holds the read end now
        manual, _ = unz.communicate(timeout=60)
        assert age.wait(timeout=60) == 0 and unz.returncode == 0
        assert manual == plain

    # without the key: a clear refusal, and nothing written
    no_key = {k: v for k, v in env.items() if k != "ATLAS_ENCRYPTION_KEY_FILE"}
    res = atlas(tmp_path, "fetch", row.id, "-o", str(tmp_path / "nokey.dump"), env=no_key)
    assert res.code == 1
    assert f"Snapshot {row.id} is encrypted (age), and no key is configured." in res.output
    assert "ATLAS_ENCRYPTION_KEY_FILE" in res.output
    assert not (tmp_path / "nokey.dump").exists()
    keyless = services_for(load_settings(no_key))
    with pytest.raises(AtlasError, match=r"encrypted \(age\), and no key is configured"):
        keyless.reader.fetch(row.id, str(tmp_path / "nokey2.dump"))

    # with another key: cannot decrypt, nothing written
    other = tmp_path / "other.txt"
    other.write_text(generate_identity()[0] + "\n")
    wrong = {**env, "ATLAS_ENCRYPTION_KEY_FILE": str(other)}
    res = atlas(tmp_path, "fetch", row.id, "-o", str(tmp_path / "wrong.dump"), env=wrong)
    assert res.code == 1
    assert "cannot decrypt" in res.output
    assert not (tmp_path / "wrong.dump").exists()
    assert not list(tmp_path.glob(".wrong.dump*"))
    assert services.snapshots.get(row.id).status == "ok"


def test_verify_refuses_clearly_without_the_key(pg_url, small, tmp_path, key_file):
    key, _ = key_file
    base = settings_for(pg_url, tmp_path)
    row = services_for(
        settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(key))
    ).taker.take(requested_by="U1")
    other = tmp_path / "other.txt"
    other.write_text(generate_identity()[0] + "\n")
    for settings, message in (
        (base, "encrypted (age), and no key is configured"),
        (settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(other)), "cannot decrypt"),
    ):
        with pytest.raises(AtlasError) as info:
            services_for(settings).reader.verify(row.id)
        assert message in str(info.value)


def test_verify_without_the_key_does_not_mark_a_good_snapshot_corrupt(
    pg_url, small, tmp_path, key_file
):
    key, _ = key_file
    keyed = services_for(settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(key)))
    row = keyed.taker.take(requested_by="U1")
    with pytest.raises(AtlasError, match="no key is configured"):
        services_for(settings_for(pg_url, tmp_path)).reader.verify(row.id)
    assert keyed.snapshots.get(row.id).status == "ok"


def test_key_rotation_keeps_old_snapshots_readable(pg_url, small, tmp_path, key_file):
    old_key, old_public = key_file
    row = services_for(
        settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(old_key))
    ).taker.take(requested_by="U1")

    # the runbook of a rotation: `atlas keygen` a new key, old key kept below it
    new_key = tmp_path / "new.txt"
    assert atlas(tmp_path, "keygen", "-o", str(new_key), env={}).code == 0
    rotated = tmp_path / "rotated.txt"
    rotated.write_text(new_key.read_text() + old_key.read_text())
    services = services_for(settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(rotated)))
    assert services.reader.verify(row.id).snapshot.status == "ok"
    fresh = services.taker.take(requested_by="U1")
    side = json.loads(Path(fresh.location).with_name(f"{fresh.id}.json").read_bytes())
    new_public = services.keys.current().recipient
    assert side["recipient"] == new_public != old_public
    [line] = [
        ln
        for ln in status.evaluate(status.gather(services, check_provider=False))
        if ln.key == "encryption"
    ]
    assert line.detail.endswith(f"(to {new_public[:16]}…; 1 retired key kept for reading)")

    # dropping the old key too early: a clear refusal that names the way out
    only_new = services_for(settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(new_key)))
    assert only_new.reader.verify(fresh.id).snapshot.status == "ok"
    with pytest.raises(AtlasError, match="cannot decrypt") as info:
        only_new.reader.verify(row.id)
    assert "recipient" in (info.value.hint or "")
    assert only_new.snapshots.get(row.id).status == "ok"  # not marked corrupt
