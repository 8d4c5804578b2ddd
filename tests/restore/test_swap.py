"""A staging refresh restores into a new database beside staging, verifies it, and only
then swaps names; staging as it was is kept for undo. Against a real server: staging's
owner, grants and settings carried over, damage found mid-load, a session holding
staging, undo and redo, and what is kept (and for how long)."""

from __future__ import annotations

import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.errors import AtlasError, Busy
from bot.ops import kept as kept_stagings
from bot.records import segments_of
from bot.restore import hold
from bot.restore.shape import split_names
from bot.restore.swap import kept_name
from tests.support.helpers import cli_env, run_cli, services_for, settings_for
from tests.support.pg import fill_realistic
from tests.support.s3 import make_s3_client

SHAPE = """
SELECT pg_get_userbyid(d.datdba), d.datconnlimit, shobj_description(d.oid, 'pg_database'),
       (SELECT array_agg(coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC') || ':' ||
               a.privilege_type || ':' || a.is_grantable ORDER BY 1)
        FROM aclexplode(d.datacl) a),
       (SELECT array_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '') || '|' || c
                         ORDER BY 1)
        FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE s.setdatabase = d.oid)
FROM pg_database d WHERE d.datname = %s
"""


def _shape(pg: Any, name: str) -> tuple:
    return tuple(pg.execute("postgres", SHAPE, [name])[0])


def _dbs(pg: Any, like: str = "%") -> set[str]:
    rows = pg.execute("postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s", [like])
    return {r[0] for r in rows}


def _counts(pg: Any, db: str, tables: dict[str, int]) -> dict[str, int]:
    return {t: pg.execute(db, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


@pytest.fixture
def world(pg, pg_db, pg_url, tmp_path):
    """Production with the realistic schema; staging beside it holding a table of its own,
    owned by an app role, with grants and settings of its own. Dropped afterwards with
    whatever the refreshes kept."""
    expected = fill_realistic(pg_url, scale=2)
    staging = pg_db + "_stg"
    app = f"app_{pg_db}"
    pg.execute("postgres", f"CREATE ROLE \"{app}\" LOGIN PASSWORD 'pw'")
    pg.create_database(staging, owner=app)
    pg.execute(staging, "CREATE TABLE staging_notes (note text)")
    pg.execute(staging, "INSERT INTO staging_notes VALUES ('before the refresh')")
    for stmt in (
        f"REVOKE ALL ON DATABASE {staging} FROM PUBLIC",
        f'GRANT CONNECT, TEMPORARY ON DATABASE {staging} TO "{app}"',
        f"GRANT CONNECT ON DATABASE {staging} TO pg_monitor WITH GRANT OPTION",
        f'ALTER DATABASE {staging} SET search_path = "$user", public, "My Schema"',
        f"ALTER DATABASE {staging} SET work_mem = '8MB'",
        f"ALTER ROLE \"{app}\" IN DATABASE {staging} SET statement_timeout = '5s'",
        f"ALTER DATABASE {staging} CONNECTION LIMIT 40",
        f"COMMENT ON DATABASE {staging} IS 'staging: refreshed weekly'",
    ):
        pg.execute("postgres", stmt)
    settings = settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging))
    services = services_for(settings)
    snap = services.taker.take(requested_by="U1")
    yield services, snap, staging, expected
    for name in _dbs(pg, "atlas\\_%") | {staging}:
        if name.startswith(("atlas_kept_", "atlas_refresh_")) or name == staging:
            pg.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg.execute("postgres", f'DROP ROLE "{app}"')


def test_a_refresh_swaps_in_a_verified_database_with_stagings_owner_grants_and_settings(pg, world):
    services, snap, staging, expected = world
    before = _shape(pg, staging)
    said: list[str] = []
    job = services.restores.run(
        kind="restore", snap_id=snap.id, requested_by="U1", phase=said.append
    )
    assert job.status == "passed", job
    assert job.swapped and job.swap_s is not None and job.swap_s < 1.0
    # the record names where the data ends up (staging), and what it was built in
    assert job.target == services.restores.staging_for(snap)[1].describe(), job.target
    assert job.target.endswith(f"/{staging}") and (job.new_db or "").startswith("atlas_refresh_")
    assert _counts(pg, staging, expected) == expected
    assert _shape(pg, staging) == before  # owner, grants, settings, limit, comment
    assert before[0].startswith("app_") and "pg_monitor:CONNECT:true" in before[3]
    assert any('search_path="$user", public, "My Schema"' in s for s in before[4])
    # staging as it was is kept, with its own table, and nothing else is left over
    assert job.kept_db == kept_name(staging, job.id) and job.kept_dropped is False
    notes = pg.execute(job.kept_db, "SELECT note FROM staging_notes")
    assert notes == [("before the refresh",)]
    assert not pg.execute(staging, "SELECT to_regclass('staging_notes') IS NOT NULL")[0][0]
    assert _dbs(pg, "atlas\\_refresh\\_%") == set()
    assert any("Swapping it in" in s for s in said)
    actions = [a.action for a in services.catalog.audit_log()]
    assert "restore.passed" in actions


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_an_artifact_changed_during_the_refresh_never_reaches_staging(
    pg, pg_db, pg_url, tmp_path, where, request
):
    """The artifact is changed once the refresh has started restoring: the block's check
    fails the new database, which is dropped; staging keeps every row and foreign key, and
    the record says staging was not touched."""
    expected = fill_realistic(pg_url, scale=2)
    staging = pg.create_database(pg_db + "_stg")
    extra: dict[str, str] = {"ATLAS_RESTORE_JOBS": "2"}
    if where == "s3":
        bucket = request.getfixturevalue("s3_env")
        server = request.getfixturevalue("s3_server")
        storage = f"s3://{bucket}/x"
    else:
        storage = None
    services = services_for(
        settings_for(pg_url, tmp_path, storage, STAGING_DATABASE_URL=pg.url(staging), **extra)
    )
    try:
        snap = services.taker.take(requested_by="U1")
        assert services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1").swapped
        fks = pg.execute(staging, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
        segments = segments_of(snap) or []
        largest = max(segments[1:], key=lambda s: s.size)

        def change(text: str) -> None:
            if not text.startswith("Restoring into"):
                return
            if where == "s3":
                client = make_s3_client(server)
                key = (snap.location or "").removeprefix(f"s3://{bucket}/")
                data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
                data[largest.start + largest.size // 2] ^= 0x55
                client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
            else:
                path = Path(snap.location or "")
                data = bytearray(path.read_bytes())
                data[largest.start + largest.size // 2] ^= 0x55
                path.write_bytes(bytes(data))

        job = services.restores.run(
            kind="restore", snap_id=snap.id, requested_by="U1", phase=change
        )
        assert job.status == "failed" and "Checksum mismatch" in job.error, job
        assert job.error.endswith("was not touched.") and not job.swapped
        assert job.new_db_dropped and _dbs(pg, "atlas\\_refresh\\_%") == set()
        assert _counts(pg, staging, expected) == expected
        assert pg.execute(staging, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == fks
    finally:
        for name in _dbs(pg, f"atlas\\_kept\\_{staging}\\_%"):
            pg.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg.drop_database(staging)


def test_a_session_holding_staging_is_named_and_the_swap_gives_up(pg, world):
    services, snap, staging, expected = world
    services.settings.swap_wait_s = 1
    services.settings.swap_sessions = "wait"
    said: list[str] = []
    with psycopg.connect(pg.url(staging), application_name="report-builder") as held:
        pid = held.info.backend_pid
        job = services.restores.run(
            kind="restore", snap_id=snap.id, requested_by="U1", phase=said.append
        )
        assert held.execute("SELECT note FROM staging_notes").fetchall()  # still connected
    assert job.status == "failed" and not job.swapped, job
    assert f"still in use after 1 s by 1 session: pid {pid} (" in job.error
    assert "report-builder" in job.error and "ATLAS_SWAP_SESSIONS=end" in job.error
    assert job.error.endswith("was not touched.")
    assert any(f"pid {pid}" in s and "Waiting up to 1 s" in s for s in said)
    assert job.verify_s is not None and job.problems == []  # it had verified
    assert job.kept_db is None  # nothing was kept
    assert pg.execute(staging, "SELECT count(*) FROM staging_notes")[0][0] == 1
    assert (
        _dbs(pg, "atlas\\_refresh\\_%") == set()
        and _dbs(pg, f"atlas\\_kept\\_{staging}\\_%") == set()
    )


def test_undo_swaps_the_kept_staging_back_and_can_itself_be_undone(pg, world):
    services, snap, staging, expected = world
    shape = _shape(pg, staging)
    refresh = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    undo = services.restores.undo.run(database=None, requested_by="U2", approved_by=["U3"])
    assert undo.status == "passed" and undo.undo_of == refresh.id, undo
    assert pg.execute(staging, "SELECT note FROM staging_notes") == [("before the refresh",)]
    assert _shape(pg, staging) == shape
    assert undo.snapshot_id == ""  # staging was there before Atlas first refreshed it
    assert services.catalog.get_job(refresh.id).kept_dropped == 1  # it is staging again
    assert _dbs(pg, f"atlas\\_kept\\_{staging}\\_%") == {
        undo.kept_db
    }  # the refreshed one, kept in turn
    redo = services.restores.undo.run(database=None, requested_by="U2", approved_by=["U3"])
    assert redo.status == "passed" and redo.undo_of == undo.id
    assert redo.snapshot_id == snap.id  # staging holds the refresh's snapshot again
    assert _counts(pg, staging, expected) == expected
    actions = [a.action for a in services.catalog.audit_log()]
    assert actions.count("undo.passed") == 2
    # an undo is no proof that a snapshot restores
    assert services.catalog.last_passed_job(refresh.database).id == refresh.id


def test_one_refresh_or_undo_of_a_staging_at_a_time(pg, world, tmp_path):
    """Two refreshes that swap one after the other lose the staging the first kept. While
    another process (here the lease of one on another host) refreshes staging, a refresh
    and an undo from the CLI are refused with who holds it, and staging is untouched; the
    lease of a process of this host that died is taken over at once."""
    services, snap, staging, _ = world
    catalog, database = services.catalog, services.settings.target(None).name
    services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    before = _dbs(pg, "atlas\\_%")
    ttl = services.settings.stale_after_s
    assert catalog.acquire_lease(f"staging:{database}", "elsewhere:4242", ttl)
    env = cli_env(tmp_path, **_settings_env(services))
    for args in (["restore", snap.id, "--yes"], ["restore", "--undo", "--yes"]):
        refused = run_cli(args, env, tmp_path, text=True)
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 1 and "is already running (process elsewhere:4242)" in said
    assert _dbs(pg, "atlas\\_%") == before  # nothing built, nothing swapped
    catalog.release_lease(f"staging:{database}", "elsewhere:4242")
    gone = f"{socket.gethostname()}:{_ended_pid()}"  # a process of this host, ended
    assert catalog.acquire_lease(f"staging:{database}", gone, ttl)
    assert run_cli(["restore", "--undo", "--yes"], env, tmp_path, text=True).returncode == 0


@pytest.mark.sqlite_only  # nothing here depends on the catalog's kind
def test_two_refreshes_of_one_staging_in_one_process_do_not_both_run(world):
    """`serve` runs approved jobs on threads that share one lease owner (host:pid): the
    lease alone let a second refresh of the same staging through, as a renewal."""
    services, snap, _, _ = world
    database = services.settings.target(None).name
    with hold.staging_held(services.catalog, database, 60):
        with pytest.raises(Busy, match="already running here"):
            services.restores.run(kind="restore", snap_id=snap.id, requested_by="U2")
        with pytest.raises(Busy, match="already running here"):
            services.restores.undo.run(database=None, requested_by="U2", approved_by=["U3"])
    assert services.restores.run(kind="restore", snap_id=snap.id, requested_by="U2").status == (
        "passed"
    )


def _ended_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _settings_env(services) -> dict[str, str]:
    s = services.settings
    return {
        "DATABASE_URL": s.database_url or "",
        "STAGING_DATABASE_URL": s.staging_database_url or "",
        "ATLAS_STORAGE": str(s.storage),
        "ATLAS_STATE": str(s.state),
    }


def test_undo_with_nothing_kept_is_one_clear_error(pg, world):
    services, snap, staging, _ = world
    with pytest.raises(AtlasError, match="Nothing is kept to undo for") as info:
        services.restores.undo.run(database=None, requested_by="U2", approved_by=["U3"])
    assert "ATLAS_UNDO_KEEP_HOURS" in str(info.value)
    services.settings.undo_keep_hours = 0  # a refresh that keeps nothing
    job = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert job.status == "passed" and job.swapped and job.kept_dropped == 1
    assert _dbs(pg, f"atlas\\_kept\\_{staging}\\_%") == set()
    with pytest.raises(AtlasError, match="Nothing is kept to undo"):
        services.restores.undo.run(database=None, requested_by="U2", approved_by=["U3"])


def test_what_is_kept_is_shown_with_its_size_and_dropped_by_age(pg, world):
    services, snap, staging, _ = world
    first = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    second = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert _dbs(pg, f"atlas\\_kept\\_{staging}\\_%") == {
        second.kept_db
    }  # the next refresh dropped it
    assert services.catalog.get_job(first.id).kept_dropped == 1
    [shown] = kept_stagings.gather(services)
    assert shown.name == second.kept_db and shown.size and shown.size > 1_000_000
    assert f"atlas restore --undo --db {second.database}" in shown.describe()
    assert kept_stagings.drop_expired(services) == []  # a week by default
    later = datetime.now(UTC) + timedelta(hours=services.settings.undo_keep_hours + 1)
    assert kept_stagings.drop_expired(services, at=later) == [second.kept_db]
    assert (
        _dbs(pg, f"atlas\\_kept\\_{staging}\\_%") == set() and kept_stagings.gather(services) == []
    )


def test_list_settings_split_back_into_their_names():
    assert split_names('"$user", public, "My ""quoted"" name"') == [
        "$user",
        "public",
        'My "quoted" name',
    ]
    assert split_names("a,b") == ["a", "b"] and split_names("") == []


def test_kept_names_say_what_they_are_within_63_bytes():
    assert kept_name("app_staging", "r-20261205-091000-ab12") == (
        "atlas_kept_app_staging_20261205_091000_ab12"
    )
    long = kept_name("x" * 80, "r-20261205-091000-ab12")
    assert len(long.encode()) <= 63 and long.endswith("_20261205_091000_ab12")
