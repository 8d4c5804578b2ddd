"""Restores and drills against a real PostgreSQL server with production and staging databases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import psycopg
import pytest

from bot.errors import AtlasError, IdTaken, Refused
from bot.pg import Conn
from bot.records import Drill, Restore
from bot.restore import strategies
from bot.restore.guard import guard_not_production, server_identity
from bot.restore.source import Source
from tests.support.helpers import add_bulk, cli_env, run_cli, services_for, settings_for
from tests.support.pg import fill_sample


def _dbs(pg) -> set[str]:
    return {r[0] for r in pg.execute("postgres", "SELECT datname FROM pg_database")}


@pytest.fixture
def env(pg, pg_db, pg_url, tmp_path):
    """Production = pg_db with sample data; staging = a second database on the same server."""
    expected = fill_sample(pg_url, rows=1500)
    staging = pg_db + "_stg"
    pg.create_database(staging)
    checks = tmp_path / "atlas.toml"
    checks.write_text(
        '[[checks]]\nname = "users exist"\nsql = "SELECT count(*) > 0 FROM users"\n'
        '[[checks]]\nname = "orders point at users"\n'
        'sql = "SELECT NOT EXISTS (SELECT 1 FROM orders o LEFT JOIN users u ON u.id = o.user_id WHERE u.id IS NULL)"\n'
    )
    settings = settings_for(
        pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging), ATLAS_CONFIG=str(checks)
    )
    services = services_for(settings)
    snap = services.taker.take(requested_by="U1")
    yield services, snap, staging, expected
    pg.drop_database(staging)


def test_drill_restores_into_a_scratch_database_verifies_and_drops_it(pg, env):
    services, snap, _, _ = env
    before = _dbs(pg)
    drill = services.restores.run(kind="drill", snap_id=None, requested_by="U1", approved_by=["U2"])
    assert drill.status == "passed", drill
    assert drill.snapshot_id == snap.id
    assert drill.scratch_db.startswith("atlas_drill_")
    checks = drill.checks
    assert [c.name for c in checks] == ["users exist", "orders point at users"]
    assert all(c.passed for c in checks)
    assert drill.problems == []
    for phase in ("download_s", "restore_s", "verify_s", "total_s"):
        assert (
            getattr(drill, phase) is not None and getattr(drill, phase) >= 0
        )  # a tiny artifact checks in < 1 ms
    assert drill.total_s >= drill.restore_s > 0
    assert _dbs(pg) == before  # the scratch database is gone
    assert services.catalog.list_jobs()[0].id == drill.id
    actions = [a.action for a in services.catalog.audit_log()]
    assert "drill.started" in actions and "drill.passed" in actions


def test_restore_into_staging_replaces_its_content(pg, env):
    services, snap, staging, expected = env
    pg.execute(staging, "CREATE TABLE users (id int, junk text)")
    pg.execute(staging, "INSERT INTO users VALUES (1, 'stale')")
    drill = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert drill.status == "passed", drill
    counts = {
        t: pg.execute(staging, f"SELECT count(*) FROM {t}")[0][0] for t in ("users", "orders")
    }
    assert counts == expected
    assert pg.execute(staging, "SELECT last_value FROM invoice_no_seq")[0][0] == 1600


def test_failing_app_flow_check_fails_the_drill(pg, env, tmp_path):
    services, snap, _, _ = env
    from bot.config import Check

    services.settings.checks.append(
        Check(name="no users at all", sql="SELECT count(*) = 0 FROM users")
    )
    services.settings.checks.append(Check(name="broken sql", sql="SELECT nope FROM nowhere"))
    services.settings.checks.append(Check(name="too slow", sql="SELECT pg_sleep(5) IS NOT NULL"))
    services.settings.check_timeout_s = 1
    before = _dbs(pg)
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    by_name = {c.name: c for c in drill.checks}
    assert by_name["users exist"].passed
    assert (
        not by_name["no users at all"].passed
        and "returned False" in by_name["no users at all"].detail
    )
    assert "nowhere" in by_name["broken sql"].detail
    assert "statement timeout" in by_name["too slow"].detail
    assert _dbs(pg) == before


def test_checks_are_read_only(pg, env):
    services, snap, _, _ = env
    from bot.config import Check

    services.settings.checks[:] = [
        Check(name="sneaky write", sql="DELETE FROM users RETURNING true")
    ]
    drill = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert "read-only" in drill.checks[0].detail


def test_tampered_artifact_fails_before_restoring(pg, env):
    services, snap, staging, _ = env
    path = Path(snap.location)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    before = _dbs(pg)
    drill = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert "Checksum mismatch" in drill.error or "corrupt" in drill.error
    assert drill.restore_s is None  # pg_restore never ran
    assert (
        pg.execute(staging, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0] == 0
    )
    # the damage is recorded once found: the snapshot is corrupt, and nothing restores it
    assert services.catalog.get_snapshot(snap.id).status == "corrupt"
    with pytest.raises(AtlasError, match="is corrupt"):
        services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert _dbs(pg) == before


def test_pg_restore_error_is_a_failed_refresh_that_leaves_staging_as_it_was(pg, pg_db, env):
    """A policy for a role staging's server lacks: pg_restore stops at CREATE POLICY, in
    the new database, after every table loaded. Staging keeps its own content."""
    services, _, staging, _ = env
    role = f"gone_{pg_db}"
    pg.execute(pg_db, f'CREATE ROLE "{role}"')
    pg.execute(pg_db, f'CREATE POLICY p ON users TO "{role}" USING (true)')
    snap = services.taker.take(requested_by="U1")
    pg.execute(pg_db, "DROP POLICY p ON users")
    pg.execute(pg_db, f'DROP ROLE "{role}"')
    pg.execute(staging, "CREATE TABLE mine (id int)")
    before = _dbs(pg)
    drill = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert "pg_restore stopped on an error" in drill.error
    assert f'role "{role}" does not exist' in drill.error
    assert drill.error.endswith("was not touched.") and drill.new_db_dropped
    assert pg.execute(staging, "SELECT to_regclass('mine') IS NOT NULL")[0][0]
    assert _dbs(pg) == before


def test_guard_catches_the_same_database_spelled_differently(pg, pg_db, pg_url):
    prod = Conn.parse(pg_url)
    aliases = [
        f"postgresql://postgres:{pg.password}@db-alias.example:{pg.port}/{pg_db}?hostaddr=127.0.0.1",
        f"host={pg.socket_dir} port={pg.port} dbname={pg_db} user=postgres",
        f"postgresql://postgres:{pg.password}@127.0.0.1:{pg.port}/{pg_db}?application_name=x&sslmode=disable",
    ]
    for alias in aliases:
        with pytest.raises(Refused, match="it is the production database"):
            guard_not_production(prod, Conn.parse(alias))
    other = pg_db + "_other"
    pg.create_database(other)
    try:
        guard_not_production(prod, Conn.parse(pg.url(other)))  # a different database passes
        assert server_identity(prod).system_id  # superuser: the strong identity is available
    finally:
        pg.drop_database(other)


def test_staging_pointing_at_production_is_refused_and_audited(pg, pg_db, pg_url, tmp_path):
    fill_sample(pg_url, rows=10)
    alias = (
        f"postgresql://postgres:{pg.password}@db-alias.example:{pg.port}/{pg_db}?hostaddr=127.0.0.1"
    )
    services = services_for(settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=alias))
    snap = services.taker.take(requested_by="U1")
    with pytest.raises(Refused):
        services.restores.run(kind="restore", snap_id=snap.id, requested_by="U7")
    assert services.catalog.audit_log()[0].action == "restore.refused"
    assert services.catalog.list_jobs() == []
    spelled_the_same = settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(pg_db))
    assert "points at the production database" in (spelled_the_same.target().staging_problem or "")


def test_staging_spelled_as_production_never_stops_backups(pg, pg_db, pg_url, tmp_path):
    """A restore-side mistake: snapshots go on, restores and drills refuse, and status and
    doctor say what is wrong (exit 1); the same for a fleet whose staging is production."""
    fill_sample(pg_url, rows=10)
    env = cli_env(tmp_path, DATABASE_URL=pg_url, STAGING_DATABASE_URL=pg_url)
    assert run_cli(["snapshot"], env, tmp_path).returncode == 0
    for args in (["drill", "--yes"], ["restore", "latest", "--yes"]):
        res = run_cli(args, env, tmp_path, text=True)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1, res.stderr
        assert "points at the production database" in lines[0]
    for args in (["status", "--no-provider"], ["doctor"]):
        res = run_cli(args, env, tmp_path, text=True)
        assert res.returncode == 1 and "❌" in res.stdout, res.stdout
        assert "points at the production database" in " ".join(res.stdout.split())
    server = pg.url("postgres")
    fleet = cli_env(
        tmp_path / "fleet", DATABASE_URL=server, STAGING_DATABASE_URL=server, ATLAS_DATABASES=pg_db
    )
    ran = run_cli(["snapshot", "--all", "--json"], fleet, tmp_path, text=True)
    assert ran.returncode == 0 and json.loads(ran.stdout)["status"] == "ok", ran.stderr


def test_unreachable_staging_fails_clearly(pg, pg_db, pg_url, tmp_path, free_port):
    fill_sample(pg_url, rows=10)
    services = services_for(
        settings_for(
            pg_url,
            tmp_path,
            STAGING_DATABASE_URL=f"postgresql://u:stg-secret@127.0.0.1:{free_port}/s",
        )
    )
    snap = services.taker.take(requested_by="U1")
    with pytest.raises(AtlasError, match="Cannot connect") as info:
        services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert "stg-secret" not in str(info.value)


def test_unknown_or_failed_snapshot_cannot_be_restored(env):
    services, _, _, _ = env
    with pytest.raises(AtlasError, match="No snapshot with id 'nope'"):
        services.restores.run(kind="drill", snap_id="nope", requested_by="U1")


def test_drill_from_s3(pg, pg_db, pg_url, tmp_path, s3_env):
    fill_sample(pg_url, rows=500)
    add_bulk(pg_url, 10)
    staging = pg_db + "_s3stg"
    pg.create_database(staging)
    try:
        services = services_for(
            settings_for(
                pg_url, tmp_path, storage=f"s3://{s3_env}/x", STAGING_DATABASE_URL=pg.url(staging)
            )
        )
        services.taker.take(requested_by="U1")
        drill = services.restores.run(kind="drill", snap_id=None, requested_by="U1")
        assert drill.status == "passed", drill
    finally:
        pg.drop_database(staging)


def test_audit_log_is_append_only(env):
    services, _, _, _ = env
    import sqlite3

    services.catalog.audit("U1", "test.line", "x")
    for statement in ("DELETE FROM audit", "UPDATE audit SET actor = 'U2'"):
        with (
            pytest.raises((sqlite3.DatabaseError, AtlasError), match="append-only"),
            services.catalog.db() as db,
        ):
            db.execute(statement)
    assert [e.actor for e in services.catalog.audit_log() if e.action == "test.line"] == ["U1"]


def _schema(pg, db: str) -> dict[str, list[str]]:
    """Indexes and constraints: what a restore's post-data section creates."""
    indexes = pg.execute(
        db, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
    )
    constraints = pg.execute(
        db,
        "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace ORDER BY 1",
    )
    return {"indexes": [r[0] for r in indexes], "constraints": [r[0] for r in constraints]}


@pytest.mark.parametrize("jobs", [1, 2])
def test_drill_rebuilds_every_index_and_constraint(pg, pg_db, env, jobs):
    """Schema and data stream into pg_restore; indexes and constraints follow (with --jobs
    from the archive's table of contents when jobs > 1). The kept scratch database must
    match production, and nothing is left in the work folder."""
    services, snap, _, expected = env
    services.settings.drill_keep = True
    services.settings.restore_jobs = jobs
    work = services.settings.work_dir
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    try:
        assert drill.status == "passed", drill
        scratch = drill.scratch_db
        assert _schema(pg, scratch) == _schema(pg, pg_db)
        assert {t: pg.execute(scratch, f"SELECT count(*) FROM {t}")[0][0] for t in expected} == (
            expected
        )
        assert work is None or not [p for p in Path(work).iterdir() if p.name.startswith(".atlas")]
    finally:
        pg.drop_database(drill.scratch_db)


def test_table_of_contents_copy_is_a_short_prefix_that_pg_restore_reads(pg, env, tmp_path):
    """Only the start of the stream is written for the post-data step, and it is enough."""
    import subprocess

    from bot.pg import find_tool

    services, snap, _, _ = env
    services.settings.work_dir = tmp_path
    add_bulk(services.settings.target().url, mb=4)  # data well past the table of contents
    snap = services.taker.take(requested_by="U1")
    pg_restore, _ = find_tool("pg_restore", 0, None)
    scratch = f"toc_{snap.id.replace('-', '_')}"
    pg.create_database(scratch)
    toc_path, full_path = tmp_path / "prefix.toc", tmp_path / "full.dump"
    services.reader.fetch(snap.id, str(full_path))
    try:
        dest = Conn.parse(pg.url(scratch))
        tools = strategies.StrategyTools(services.reader, services.store.get(), tmp_path)
        with open(snap.location, "rb") as artifact, open(toc_path, "wb") as toc:
            source = Source(lambda: iter(lambda: artifact.read(1 << 20), b""), lambda: None, None)
            tools.stream_into(
                [pg_restore, "--no-owner", "--no-acl", "--section=pre-data", "--section=data"],
                strategies.RestoreInput(snap, dest, pg_restore, source),
                toc=(pg_restore, toc),
            )
        assert 0 < toc_path.stat().st_size < full_path.stat().st_size // 2
        assert full_path.read_bytes().startswith(toc_path.read_bytes())

        def listing(path: Path) -> list[str]:
            out = subprocess.run(
                [pg_restore, "--list", str(path)], capture_output=True, text=True, check=True
            ).stdout
            return [ln for ln in out.splitlines() if not ln.startswith(";")]

        assert listing(toc_path) == listing(full_path)
    finally:
        pg.drop_database(scratch)


def test_artifact_checksum_is_checked_before_pg_restore_starts(pg, env):
    """A same-sized artifact with one changed byte near its end: the check reads all of
    it before pg_restore gets a byte, so even a change in the last table's data stops
    the restore with nothing created."""
    services, snap, staging, _ = env
    path = Path(snap.location)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    drill = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert "Checksum mismatch" in drill.error
    assert drill.restore_s is None  # pg_restore never started
    assert (
        pg.execute(
            staging, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        )[0][0]
        == 0
    )


def test_rows_that_differ_from_the_manifest_fail_the_drill(pg, env):
    """The restored row counts are compared with the snapshot's manifest (while the
    indexes build); a difference fails the drill and says where."""
    services, snap, _, expected = env
    manifest = snap.manifest
    manifest["tables"]["public.users"] += 1
    manifest["tables"]["public.ghosts"] = 7
    services.catalog.update_snapshot(snap.id, manifest=manifest)
    before = _dbs(pg)
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    problems = drill.problems
    assert f"table public.users has {expected['users']} rows, expected {expected['users'] + 1}" in (
        problems
    )
    assert "table public.ghosts is missing" in problems
    assert _dbs(pg) == before


def _stored_whole(services, snap) -> None:  # type: ignore[no-untyped-def]
    """As a snapshot taken before segments were recorded: it restores by streaming."""
    services.catalog.update_snapshot(snap.id, segments=None)


def _rewrite_artifact(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Decompress, edit the plain dump, recompress: a valid zstd artifact with other content."""
    import zstandard

    whole = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    plain = whole.decompress(path.read_bytes())
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(edit(plain)))


def test_drill_refuses_a_changed_table_of_contents_before_pg_restore_reads_it(pg, env):
    """A drill streams from storage; the SQL part of the archive (its table of contents)
    is checked against the snapshot's record before pg_restore gets a byte of it."""
    services, _, _, _ = env
    add_bulk(services.settings.target().url, mb=4)  # table data well past the table of contents
    snap = services.taker.take(requested_by="U1")
    _stored_whole(services, snap)
    assert 0 < snap.toc_bytes < snap.raw_size_bytes // 2 and len(snap.toc_sha256) == 64
    path = Path(snap.location)

    def edit(plain: bytes) -> bytes:
        head = plain[: snap.toc_bytes]
        assert b"CREATE TABLE public.users" in head
        return (
            head.replace(b"CREATE TABLE public.users", b"CREATE TABLE public.uXers")
            + (plain[snap.toc_bytes :])
        )

    _rewrite_artifact(path, edit)
    before = _dbs(pg)
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert "table of contents" in drill.error and "does not match" in drill.error
    assert drill.download_s is None and drill.restore_s is None  # pg_restore got nothing
    assert _dbs(pg) == before


def test_drill_with_changed_table_data_fails_and_builds_no_index(pg, env):
    """Changed rows after the table of contents: the stream's checksums fail at its end,
    before indexes and constraints are built, and the drill fails."""
    services, _, _, _ = env
    add_bulk(services.settings.target().url, mb=4)
    snap = services.taker.take(requested_by="U1")
    _stored_whole(services, snap)
    path = Path(snap.location)

    def edit(plain: bytes) -> bytes:
        at = plain.index(b"user1@example.com", snap.toc_bytes)
        return plain[:at] + b"user1@example.org" + plain[at + len(b"user1@example.com") :]

    _rewrite_artifact(path, edit)
    before = _dbs(pg)
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert "Checksum mismatch" in drill.error or "bytes, but" in drill.error
    assert drill.download_s is not None and drill.restore_s is None
    assert _dbs(pg) == before


def test_drill_verify_first_checks_the_whole_artifact_before_restoring(pg, env):
    """ATLAS_DRILL_VERIFY_FIRST: a changed row stops the drill before pg_restore starts."""
    services, _, _, _ = env
    add_bulk(services.settings.target().url, mb=4)
    snap = services.taker.take(requested_by="U1")
    services.settings.drill_verify_first = True

    def edit(plain: bytes) -> bytes:
        at = plain.index(b"user1@example.com", snap.toc_bytes)
        return plain[:at] + b"user1@example.org" + plain[at + len(b"user1@example.com") :]

    _rewrite_artifact(Path(snap.location), edit)
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed" and "nothing was restored" in drill.error
    assert drill.download_s is None and drill.restore_s is None  # pg_restore got nothing


def test_snapshots_without_a_recorded_toc_are_checked_whole_first(pg, env):
    """Older snapshots (no toc_sha256): the drill checks the whole artifact before restoring."""
    services, snap, _, _ = env
    services.catalog.update_snapshot(snap.id, toc_bytes=None, toc_sha256=None, segments=None)
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "passed", drill
    path = Path(snap.location)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed" and "Checksum mismatch" in drill.error
    assert drill.restore_s is None


def test_unusable_work_dir_fails_the_drill_clearly(pg, env, tmp_path):
    services, snap, _, _ = env
    services.settings.work_dir = tmp_path / "missing"
    before = _dbs(pg)
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert f"Cannot write to {tmp_path / 'missing'}" in drill.error
    assert "ATLAS_WORK_DIR" in drill.error
    assert _dbs(pg) == before


def test_spooled_drill_and_refresh_load_data_with_jobs(pg, pg_db, env, tmp_path):
    """ATLAS_RESTORE_SPOOL (for snapshots stored whole): the checked plain dump goes to the
    work dir, then one `pg_restore --jobs` restores it (data included); nothing stays
    behind."""
    services, snap, staging, expected = env
    _stored_whole(services, snap)
    services.settings.restore_spool = True
    services.settings.restore_jobs = 2
    services.settings.work_dir = tmp_path
    services.settings.drill_keep = True
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    try:
        assert drill.status == "passed", drill
        scratch = drill.scratch_db
        assert _schema(pg, scratch) == _schema(pg, pg_db)
        counts = {t: pg.execute(scratch, f"SELECT count(*) FROM {t}")[0][0] for t in expected}
        assert counts == expected
        assert drill.download_s > 0 and drill.restore_s > 0
    finally:
        pg.drop_database(drill.scratch_db)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".atlas")]

    pg.execute(staging, "CREATE TABLE users (id int, junk text)")
    refresh = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert refresh.status == "passed", refresh
    assert pg.execute(staging, "SELECT count(*) FROM users")[0][0] == expected["users"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".atlas")]


def test_spooled_drill_checks_everything_before_pg_restore_runs(pg, env, tmp_path):
    services, snap, _, _ = env
    _stored_whole(services, snap)
    services.settings.restore_spool = True
    services.settings.work_dir = tmp_path
    path = Path(snap.location)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    before = _dbs(pg)
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert "corrupt" in drill.error or "Checksum mismatch" in drill.error
    assert drill.download_s is None and drill.restore_s is None  # pg_restore never ran
    assert _dbs(pg) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".atlas")]


def test_damage_a_drill_finds_is_recorded_and_the_next_drill_avoids_it(pg, env):
    """A drill that finds a damaged block marks the snapshot corrupt: `list` and `status`
    stop counting it as good, and the next default drill takes the good one before it."""
    services, older, _, _ = env
    add_bulk(services.settings.target().url, mb=4)
    snap = services.taker.take(requested_by="U1")

    def edit(plain: bytes) -> bytes:  # one damaged row in the middle of the data
        at = plain.index(b"user1@example.com", snap.toc_bytes)
        return plain[:at] + b"user1@example.org" + plain[at + len(b"user1@example.com") :]

    _rewrite_artifact(Path(snap.location), edit)
    drill = services.restores.run(kind="drill", snap_id=None, requested_by="U1")
    assert drill.snapshot_id == snap.id and drill.status == "failed"
    row = services.catalog.get_snapshot(snap.id)
    assert row.status == "corrupt" and (
        "Checksum mismatch" in row.error or "bytes, but" in row.error
    )
    damaged = services.catalog.audit_log(subject=snap.id)[0]
    assert damaged.action == "snapshot.damaged" and damaged.detail["found_by"] == drill.id

    from bot.ops import status

    lines = {ln.key: ln for ln in status.evaluate(status.gather(services, check_provider=False))}
    assert older.id in lines[f"snapshot:{row.database}"].detail  # the last good one
    assert snap.id in lines["damaged"].detail

    again = services.restores.run(kind="drill", snap_id=None, requested_by="U1")
    assert again.snapshot_id == older.id and again.status == "passed", again


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_staging_role_that_cannot_create_databases_fails_the_drill_clearly(
    pg, pg_db, pg_url, tmp_path, jobs
):
    """The scratch database is created while the artifact's head is read: when the
    staging role may not create it, the drill fails in one line that says what to grant,
    the failure is recorded, nothing is left behind, and pg_restore never ran."""
    fill_sample(pg_url, rows=200)
    role = f"{pg_db}_nocreate"
    pg.create_role(role, "pw-nocreate", createdb=False)
    staging = pg_db + "_nocreate"
    pg.create_database(staging)
    try:
        services = services_for(
            settings_for(
                pg_url,
                tmp_path,
                STAGING_DATABASE_URL=pg.url(staging, user=role, password="pw-nocreate"),
                ATLAS_RESTORE_JOBS=jobs,
            )
        )
        snap = services.taker.take(requested_by="U1")
        before = _dbs(pg)
        drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
        assert drill.status == "failed"
        assert "Cannot create the scratch database" in (drill.error or "")
        assert "the staging user needs CREATEDB" in (drill.error or "")
        assert "pw-nocreate" not in (drill.error or "")
        assert drill.restore_s is None  # pg_restore got nothing
        assert _dbs(pg) == before
        assert services.catalog.get_drill(drill.id).status == "failed"
    finally:
        pg.drop_database(staging)
        pg.drop_role(role)


def test_a_taken_job_id_is_refused_as_taken(tmp_path, pg_url):
    """The catalog says a job id is taken in words the restore layer acts on (it draws
    again), on either catalog, never with the database's own unique-violation error."""
    catalog = services_for(settings_for(pg_url, tmp_path)).catalog
    for record in (Drill(id="d-20261207-015703-e079"), Restore(id="r-20261207-015703-e079")):
        catalog.add_job(record)
        with pytest.raises(IdTaken, match="is taken"):
            catalog.add_job(dataclasses.replace(record, database="other"))
        assert catalog.get_job(record.id).database == record.database


FIRST_INSERT_FINDS_ITS_ID_TAKEN = """
CREATE SEQUENCE tries;
CREATE FUNCTION another_job_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('tries') = 1 THEN  -- a sequence moves on even when the insert fails
        EXECUTE format('INSERT INTO %I (id, database, status) VALUES ($1, $2, $3)',
                       TG_TABLE_NAME) USING NEW.id, 'other', 'running';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER another_job_first BEFORE INSERT ON {table}
    FOR EACH ROW EXECUTE FUNCTION another_job_first();
"""


@pytest.mark.own_catalog
@pytest.mark.parametrize("kind,table", [("drill", "drills"), ("restore", "restores")])
def test_a_job_id_another_job_took_first_is_drawn_again(
    pg, pg_db, pg_url, tmp_path, catalog_server, kind, table
):
    """Job ids are a second and four hex digits, like snapshot ids: another process's job
    that took this one's id in the same second is no reason to fail. Here a trigger in a
    PostgreSQL catalog inserts the id just before the job's own insert, once; the job draws
    again and names its database after the new id."""
    fill_sample(pg_url, rows=50)
    staging = pg_db + "_ids"
    pg.create_database(staging)
    _, state = catalog_server.new_url()
    settings = settings_for(
        pg_url, tmp_path, ATLAS_STATE=state, STAGING_DATABASE_URL=pg.url(staging)
    )
    services = services_for(settings)
    services.taker.take(requested_by="U1")
    with psycopg.connect(state, autocommit=True) as conn:
        conn.execute(FIRST_INSERT_FINDS_ITS_ID_TAKEN.format(table=table))
    try:
        job = services.restores.run(kind=kind, snap_id=None, requested_by="U1")
    finally:
        pg.drop_database(staging)
    with psycopg.connect(state) as conn:
        tries = conn.execute("SELECT last_value FROM tries").fetchone()
    assert tries == (3,)  # the first insert (and the other job's, inside it), then the second
    assert job.status == "passed", job
    built = job.scratch_db if isinstance(job, Drill) else job.new_db
    assert built is not None and job.id.replace("-", "_") in built
    assert kind == "restore" or job.target.endswith(built)  # where the drill ran, as recorded
    assert [j.id for j in services.catalog.list_jobs()] == [job.id]


def test_a_drill_of_an_artifact_deleted_from_storage_marks_the_snapshot_missing(pg, env):
    """An artifact a lifecycle rule (or a hand) deleted is damage, found by the drill as
    `verify` finds it: the snapshot turns corrupt, so the next drill picks another, and
    the verdict does not time a restore that never happened."""
    from bot.report import messages

    services, snap, _, _ = env
    Path(snap.location or "").unlink()
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed" and "is missing" in (drill.error or ""), drill.error
    after = services.catalog.get_snapshot(snap.id)
    assert after.status == "corrupt" and "is missing" in (after.error or "")
    text = str(messages.drill_report(drill, None)[1])
    assert "Failed after" in text and "Time to restore" not in text
    with pytest.raises(AtlasError, match="no good snapshot"):
        services.restores.run(kind="drill", snap_id=None, requested_by="U1")
