"""Parallel restores of snapshots stored in segments: many tables with foreign keys over
several connections, each block read on its own and checked against its sha256, from a
folder and from S3; damage in the middle; and snapshots stored whole still restoring."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import zstandard

from bot.backup.layout import FORMATS
from bot.records import Snapshot, segments_of
from bot.restore import plan
from bot.restore.blocks import Blocks, assign
from bot.restore.strategies import StrategyTools, StreamThenIndexes
from tests.support.helpers import services_for, settings_for
from tests.support.pg import fill_realistic

SCHEMAS = "('app', 'billing', 'public')"


def _schema(pg: Any, db: str) -> dict[str, list[str]]:
    """Indexes and constraints, what the post-data section creates, in every schema."""
    indexes = pg.execute(
        db, f"SELECT indexdef FROM pg_indexes WHERE schemaname IN {SCHEMAS} ORDER BY 1"
    )
    constraints = pg.execute(
        db,
        "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(c.oid) "
        "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        f"WHERE n.nspname IN {SCHEMAS} ORDER BY 1",
    )
    return {"indexes": [r[0] for r in indexes], "constraints": [r[0] for r in constraints]}


def _counts(pg: Any, db: str, tables: dict[str, int]) -> dict[str, int]:
    return {t: pg.execute(db, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def _dbs(pg: Any) -> set[str]:
    return {r[0] for r in pg.execute("postgres", "SELECT datname FROM pg_database")}


@pytest.fixture
def realistic(pg, pg_db, pg_url, tmp_path):
    """Production with 24 tables, foreign keys, unique, partial and expression indexes;
    staging is a second database on the same server."""
    expected = fill_realistic(pg_url, scale=5)
    staging = pg_db + "_stg"
    pg.create_database(staging)
    services = services_for(
        settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging), ATLAS_RESTORE_JOBS="3")
    )
    services.settings.work_dir = tmp_path / "work"
    services.settings.work_dir.mkdir()
    snap = services.taker.take(requested_by="U1")
    yield services, snap, staging, expected
    pg.drop_database(staging)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def test_a_snapshot_is_stored_in_segments_that_decompress_as_one_file(realistic, tmp_path):
    """Each table's data block is its own zstd frame; the frames still make one .zst
    file, so `zstd -dc` (the runbook's manual path) gives the plain dump as before."""
    services, snap, _, expected = realistic
    segments = segments_of(snap)
    assert segments is not None and len(segments) == 1 + len(expected)
    stored = Path(snap.location).read_bytes()
    for seg in segments:
        part = stored[seg.start : seg.start + seg.size]
        assert hashlib.sha256(part).hexdigest() == seg.sha256
        assert len(zstandard.ZstdDecompressor().decompressobj().decompress(part)) == seg.plain_size
    fetched = tmp_path / "plain.dump"
    services.reader.fetch(snap.id, str(fetched))
    if shutil.which("zstd"):
        manual = subprocess.run(["zstd", "-dc", snap.location], capture_output=True, check=True)
        assert manual.stdout == fetched.read_bytes()
    sidecar = Path(snap.location).with_name(f"{snap.id}.json").read_text()
    assert f'"format": "{FORMATS[0]}"' in sidecar and '"segments": [' in sidecar


def test_many_tables_restore_over_several_connections(pg, pg_db, realistic, caplog):
    services, snap, staging, expected = realistic
    services.settings.drill_keep = True
    how = plan.choose(snap, services.settings, _tools(services))
    assert isinstance(how.strategy, Blocks) and not how.check_whole_first
    with caplog.at_level(logging.INFO, logger="bot.restore.blocks"):
        drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    try:
        assert drill.status == "passed", drill
        assert f"{len(expected)} data blocks loaded over 3 connections" in caplog.text
        assert _schema(pg, drill.scratch_db) == _schema(pg, pg_db)
        assert _counts(pg, drill.scratch_db, expected) == expected
        sequence = "SELECT last_value FROM billing.invoice_number"
        assert pg.execute(drill.scratch_db, sequence) == pg.execute(pg_db, sequence)
    finally:
        pg.drop_database(drill.scratch_db)
    assert list(services.settings.work_dir.iterdir()) == []  # no head copy, no lists

    # A staging refresh, twice: the second replaces tables that foreign keys tie together
    for _ in range(2):
        refresh = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
        assert refresh.status == "passed", refresh
        assert _schema(pg, staging) == _schema(pg, pg_db)
        assert _counts(pg, staging, expected) == expected


def test_a_damaged_block_in_the_middle_fails_the_drill_and_marks_the_snapshot(pg, realistic):
    services, snap, staging, expected = realistic
    refresh = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert refresh.status == "passed"  # staging holds a good copy before the damage
    segments = segments_of(snap)
    assert segments is not None
    middle = max(segments[1:], key=lambda s: s.size)  # the largest block, deep in the file
    _flip(Path(snap.location), middle.start + middle.size // 2)
    before = _dbs(pg)

    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert f"Checksum mismatch in the data block {middle.dump_id} of" in drill.error
    assert drill.restore_s is None  # indexes were never built
    assert _dbs(pg) == before  # the scratch database is gone
    row = services.catalog.get_snapshot(snap.id)
    assert row.status == "corrupt" and f"data block {middle.dump_id}" in row.error

    # a refresh reads each block once, into a new database: the damage fails that one,
    # which is dropped, and staging keeps its copy
    services.catalog.update_snapshot(snap.id, status="ok", error=None)
    refresh = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    assert refresh.status == "failed" and f"data block {middle.dump_id}" in refresh.error
    assert refresh.error.endswith(f"staging {pg.url(staging).split('@')[1]} was not touched.")
    assert refresh.new_db_dropped and not refresh.swapped and refresh.kept_db is None
    assert _counts(pg, staging, expected) == expected
    assert _dbs(pg) == before  # the new database is gone too


def test_a_changed_table_of_contents_runs_nothing(pg, realistic):
    services, snap, _, _ = realistic
    head = (segments_of(snap) or [])[0]
    _flip(Path(snap.location), head.start + head.size // 2)
    before = _dbs(pg)
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    assert drill.status == "failed"
    assert "Checksum mismatch in the table of contents" in drill.error
    assert "nothing was restored from it" in drill.error
    assert drill.download_s is None and drill.restore_s is None  # pg_restore got nothing
    assert _dbs(pg) == before


def test_a_snapshot_stored_whole_restores_by_streaming(pg, pg_db, realistic):
    """A snapshot from before segments: one zstd frame, the old format name in its
    sidecar, no segments recorded. It restores by the streaming path, unchanged."""
    services, snap, staging, expected = realistic
    path = Path(snap.location)
    plain = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    whole = zstandard.ZstdCompressor(write_checksum=True).compress(
        plain.decompress(path.read_bytes())
    )
    path.write_bytes(whole)
    services.catalog.update_snapshot(
        snap.id, segments=None, size_bytes=len(whole), sha256=hashlib.sha256(whole).hexdigest()
    )
    old = services.catalog.get_snapshot(snap.id)
    how = plan.choose(old, services.settings, _tools(services))
    assert isinstance(how.strategy, StreamThenIndexes)
    services.settings.drill_keep = True
    drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
    try:
        assert drill.status == "passed", drill
        assert _counts(pg, drill.scratch_db, expected) == expected
        assert _schema(pg, drill.scratch_db) == _schema(pg, pg_db)
    finally:
        pg.drop_database(drill.scratch_db)
    assert FORMATS[1].endswith("one zstd frame")  # rescan still accepts their sidecars
    # and it refreshes staging by swap, as new snapshots do
    refresh = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
    try:
        assert refresh.status == "passed" and refresh.swapped, refresh
        assert _counts(pg, staging, expected) == expected
        assert _schema(pg, staging) == _schema(pg, pg_db)
    finally:
        pg.execute("postgres", f'DROP DATABASE IF EXISTS "{refresh.kept_db}" WITH (FORCE)')


def test_blocks_read_by_range_from_s3(pg, pg_db, pg_url, tmp_path, s3_env, s3_client, caplog):
    """From S3 each block is an HTTP range request against the real S3 test server; a
    changed object fails the drill at the damaged block."""
    expected = fill_realistic(pg_url, scale=2)
    staging = pg_db + "_s3stg"
    pg.create_database(staging)
    try:
        services = services_for(
            settings_for(
                pg_url, tmp_path, storage=f"s3://{s3_env}/x", STAGING_DATABASE_URL=pg.url(staging)
            )
        )
        snap = services.taker.take(requested_by="U1")
        segments = segments_of(snap)
        assert segments is not None and snap.storage_key
        storage = services.store.get()
        whole = b"".join(storage.read(snap.storage_key))
        for seg in segments:
            got = b"".join(storage.read_range(snap.storage_key, seg.start, seg.size, 1000))
            assert got == whole[seg.start : seg.start + seg.size]
        with caplog.at_level(logging.INFO, logger="bot.restore.blocks"):
            drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
        assert drill.status == "passed", drill
        assert f"{len(expected)} data blocks loaded over 2 connections" in caplog.text

        block = segments[len(segments) // 2]
        damaged = bytearray(whole)
        damaged[block.start + block.size - 20] ^= 0x01
        s3_client.put_object(Bucket=s3_env, Key=f"x/{snap.storage_key}", Body=bytes(damaged))
        drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
        assert drill.status == "failed"
        assert f"Checksum mismatch in the data block {block.dump_id}" in drill.error
    finally:
        pg.drop_database(staging)


def test_large_objects_and_an_empty_schema_restore(pg, pg_db, pg_url, tmp_path):
    """Large objects come last in their own block; a database with no table data at all
    has only the head. Both restore in parallel."""
    staging = pg_db + "_lostg"
    pg.create_database(staging)
    try:
        services = services_for(
            settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging))
        )
        pg.execute(pg_db, "CREATE SEQUENCE lonely START 7")
        pg.execute(pg_db, "SELECT setval('lonely', 41)")
        empty = services.taker.take(requested_by="U1")
        assert len(segments_of(empty) or []) == 1
        services.settings.drill_keep = True
        drill = services.restores.run(kind="drill", snap_id=empty.id, requested_by="U1")
        assert drill.status == "passed", drill
        assert pg.execute(drill.scratch_db, "SELECT last_value FROM lonely")[0][0] == 41
        pg.drop_database(drill.scratch_db)

        pg.execute(pg_db, "CREATE TABLE docs (id int PRIMARY KEY, body oid)")
        pg.execute(
            pg_db,
            "INSERT INTO docs SELECT g, lo_from_bytea(0, convert_to(repeat('x', 9000 * g), "
            "'UTF8')) FROM generate_series(1, 3) g",
        )
        with_lo = services.taker.take(requested_by="U1")
        assert [s.dump_id for s in segments_of(with_lo) or []][0] == 0
        drill = services.restores.run(kind="drill", snap_id=with_lo.id, requested_by="U1")
        assert drill.status == "passed", drill
        sizes = "SELECT sum(length(lo_get(body))) FROM docs"
        assert pg.execute(drill.scratch_db, sizes) == pg.execute(pg_db, sizes) == [(54000,)]
        pg.drop_database(drill.scratch_db)
    finally:
        pg.drop_database(staging)


TRICKY = """
CREATE SCHEMA shop;
CREATE FUNCTION shop.norm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT lower(t)';
CREATE TABLE shop.accounts (id int PRIMARY KEY, email text NOT NULL);
CREATE UNIQUE INDEX accounts_email ON shop.accounts (shop.norm(email));
COMMENT ON INDEX shop.accounts_email IS 'one account per address';
CREATE TABLE shop.events (id int, at date NOT NULL, account int REFERENCES shop.accounts,
                          kind text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE shop.events_2025 PARTITION OF shop.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE shop.events_2026 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX events_kind ON shop.events (kind);
CREATE INDEX events_2026_recent ON shop.events_2026 (at) WHERE kind = 'buy';
CREATE TABLE shop.audit (id serial PRIMARY KEY, what text, EXCLUDE USING btree (what WITH =));
CREATE FUNCTION shop.log() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO shop.audit (what) VALUES (NEW.id::text || random()::text); RETURN NEW; END$$;
CREATE TRIGGER accounts_log AFTER INSERT ON shop.accounts FOR EACH ROW EXECUTE FUNCTION shop.log();
CREATE TRIGGER events_log AFTER INSERT ON shop.events FOR EACH ROW EXECUTE FUNCTION shop.log();
INSERT INTO shop.accounts SELECT g, 'User' || g || '@example.com' FROM generate_series(1, 3000) g;
INSERT INTO shop.events SELECT g, date '2025-06-01' + (g % 400), 1 + g % 3000,
  CASE WHEN g % 3 = 0 THEN 'buy' ELSE 'view' END FROM generate_series(1, 20000) g;
CREATE MATERIALIZED VIEW shop.buys AS SELECT account, count(*) AS n FROM shop.events
  WHERE kind = 'buy' GROUP BY account;
CREATE UNIQUE INDEX buys_account ON shop.buys (account);
"""


def _definitions(pg: Any, db: str) -> dict[str, list[Any]]:
    """What the post-data section makes, with triggers and comments, in schema shop."""
    where = "WHERE n.nspname = 'shop'"
    return {
        "indexes": pg.execute(
            db,
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), i.indisvalid, "
            "(SELECT p.inhparent::regclass::text FROM pg_inherits p "
            " WHERE p.inhrelid = i.indexrelid) FROM pg_index i "
            f"JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace {where} "
            "ORDER BY 1",
        ),
        "constraints": pg.execute(
            db,
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid), convalidated "
            f"FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace {where} ORDER BY 1, 2",
        ),
        "triggers": pg.execute(
            db,
            "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"{where} AND NOT tgisinternal ORDER BY 1, 2",
        ),
        "comments": pg.execute(
            db,
            "SELECT c.relname, d.description FROM pg_description d "
            f"JOIN pg_class c ON c.oid = d.objoid JOIN pg_namespace n ON n.oid = c.relnamespace {where} "
            "ORDER BY 1",
        ),
        "rows": pg.execute(
            db,
            "SELECT (SELECT count(*) FROM shop.audit), (SELECT count(*) FROM shop.events_2026),"
            " (SELECT sum(n) FROM shop.buys), (SELECT count(*) FROM shop.accounts)",
        ),
    }


def test_partitions_triggers_and_views_restore_in_parallel(pg, pg_db, pg_url, tmp_path):
    """Partitions with their parent's indexes attached, an exclusion constraint, an
    expression index on a function, triggers (which must not fire on restored rows), a
    materialized view and comments: a drill and two refreshes over N connections give
    back the same definitions and rows."""

    pg.execute(pg_db, TRICKY)
    staging = pg_db + "_trstg"
    pg.create_database(staging)
    try:
        services = services_for(
            settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging))
        )
        services.settings.drill_keep = True
        snap = services.taker.take(requested_by="U1")
        drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="U1")
        assert drill.status == "passed", drill
        try:
            assert _definitions(pg, drill.scratch_db) == _definitions(pg, pg_db)
        finally:
            pg.drop_database(drill.scratch_db)
        for _ in range(2):  # a refresh, then another over it
            refresh = services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
            assert refresh.status == "passed", refresh
            assert _definitions(pg, staging) == _definitions(pg, pg_db)
    finally:
        pg.drop_database(staging)


def test_blocks_are_dealt_so_lanes_finish_together() -> None:
    sha = "0" * 64
    rows: list[list[Any]] = [[0, 0, 10, 0, 5, sha]]
    plain, stored = 10, 5
    for dump_id, size in enumerate([900, 10, 500, 400, 20, 30], start=1):
        rows.append([dump_id, plain, size, stored, size // 2, sha])
        plain, stored = plain + size, stored + size // 2
    snap = Snapshot(id="s", database="d", segments=rows, size_bytes=stored, raw_size_bytes=plain)
    blocks = (segments_of(snap) or [])[1:]
    assert len(blocks) == 6
    lanes = assign(blocks, 2)
    assert sorted(sum(s.plain_size for s in lane) for lane in lanes) == [930, 930]
    assert all(lane == sorted(lane, key=lambda s: s.plain_start) for lane in lanes)
    assert len(assign(blocks, 32)) == len(blocks)  # never more lanes than blocks
    assert len(assign([], 4)) == 1  # no table data: one lane for sequences and the like


def _tools(services: Any) -> StrategyTools:
    return StrategyTools(services.reader, services.store.get(), services.restores.work_dir())
