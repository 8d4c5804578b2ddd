"""`--table`: a few tables of a snapshot restored into staging in one transaction (every
other table untouched), proven alone by a drill, or written alone by fetch. Against a
real server, on the realistic schema: foreign keys to tables restored and not, with and
without the rows they need, damage found mid-load, a count that does not match, and a
table the snapshot does not have."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.backup import archive
from bot.errors import AtlasError
from bot.records import segments_of
from bot.restore import tables as T
from tests.support.helpers import add_bulk, cli_env, run_cli, services_for, settings_for
from tests.support.pg import fill_realistic, pg_bindir
from tests.support.proxy import tcp_proxy
from tests.support.s3 import (
    S3_ACCESS_KEY,
    S3_REGION,
    S3_SECRET_KEY,
    make_s3_client,
    point_aws_at,
)

FKS = """
SELECT r.relnamespace::regnamespace || '.' || r.relname || '.' || c.conname
FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid WHERE c.contype = 'f' ORDER BY 1
"""
INDEXES = "SELECT indexname FROM pg_indexes WHERE schemaname = 'app' ORDER BY 1"


def _count(pg: Any, db: str, table: str) -> int:
    return int(pg.execute(db, f"SELECT count(*) FROM {table}")[0][0])


def _fks(pg: Any, db: str) -> list[str]:
    return [r[0] for r in pg.execute(db, FKS)]


@pytest.fixture
def world(pg, pg_db, pg_url, tmp_path):
    """Production with the realistic schema, a snapshot of it, and staging refreshed from
    it and then changed by hand, as staging drifts."""
    expected = fill_realistic(pg_url, scale=1)
    staging = pg.create_database(pg_db + "_stg")
    settings = settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging))
    services = services_for(settings)
    snap = services.taker.take(requested_by="U1")
    assert services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1").swapped
    yield services, snap, staging, expected
    for (name,) in pg.execute("postgres", "SELECT datname FROM pg_database"):
        if name == staging or name.startswith(f"atlas_kept_{staging}"):
            pg.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_one_table_is_replaced_with_its_indexes_and_keys_and_nothing_else_moves(pg, world):
    services, snap, staging, expected = world
    pg.execute(  # order_items go with them (ON DELETE CASCADE)
        staging,
        "DELETE FROM app.orders o WHERE id > 100"
        " AND NOT EXISTS (SELECT 1 FROM billing.invoices i WHERE i.order_id = o.id)",
    )
    pg.execute(staging, "DROP INDEX app.orders_open")
    pg.execute(staging, "INSERT INTO app.lookup_1 VALUES (99, 'staging only')")
    items_before = _count(pg, staging, "app.order_items")
    fks_before = _fks(pg, staging)
    job = services.restores.run(
        kind="restore", snap_id=snap.id, requested_by="U1", tables=["app.orders"]
    )
    assert job.status == "passed", job
    assert job.tables == ["app.orders"] and not job.swapped and job.new_db is None
    assert _count(pg, staging, "app.orders") == expected["app.orders"]
    assert "orders_open" in {r[0] for r in pg.execute(staging, INDEXES)}
    seq = pg.execute(staging, "SELECT last_value FROM app.orders_id_seq")[0][0]
    assert seq == expected["app.orders"]
    # every other table as staging had it, and every foreign key back in place
    assert _count(pg, staging, "app.lookup_1") == expected["app.lookup_1"] + 1
    assert _count(pg, staging, "app.order_items") == items_before
    assert _count(pg, staging, "billing.invoices") == expected["billing.invoices"]
    assert _fks(pg, staging) == fks_before
    restored = {c.name for c in job.checks if c.passed}
    assert {
        "foreign key app.orders.orders_customer_id_fkey",
        "foreign key app.order_items.order_items_order_id_fkey",
        "foreign key billing.invoices.invoices_order_id_fkey",
    } <= restored
    assert any("app-flow checks not run" in p for p in job.problems)
    building = "SELECT count(*) FROM pg_database WHERE datname LIKE 'atlas\\_refresh\\_%'"
    assert pg.execute("postgres", building) == [(0,)]  # in place: no database built beside


def test_a_foreign_key_whose_rows_are_missing_is_left_out_and_named(pg, world):
    services, snap, staging, expected = world
    pg.execute(staging, "DELETE FROM app.order_items")
    pg.execute(staging, "DELETE FROM app.reviews")
    pg.execute(staging, "DELETE FROM app.products WHERE id > 10")
    job = services.restores.run(
        kind="restore", snap_id=snap.id, requested_by="U1", tables=["app.order_items"]
    )
    assert job.status == "passed", job
    assert _count(pg, staging, "app.order_items") == expected["app.order_items"]
    fks = _fks(pg, staging)
    assert "app.order_items.order_items_order_id_fkey" in fks  # its rows are there
    assert "app.order_items.order_items_product_id_fkey" not in fks  # theirs are not
    left = [p for p in job.problems if "order_items_product_id_fkey" in p]
    assert left and left[0].startswith("warning: ") and "left out" in left[0], job.problems
    assert _count(pg, staging, "app.products") == 10  # not restored, never touched


def test_a_count_that_does_not_match_commits_nothing(pg, world):
    """The manifest's count is checked inside the transaction: a difference rolls back
    the whole table set, foreign keys of other tables set aside included."""
    services, snap, staging, expected = world
    pg.execute(staging, "DELETE FROM app.order_items WHERE order_id > 50")
    before = (_count(pg, staging, "app.order_items"), _fks(pg, staging))
    manifest = dict(snap.manifest or {})
    manifest["tables"] = {**manifest["tables"], "app.order_items": 7}
    services.catalog.finish_snapshot(snap.id, snap.status, manifest=manifest)
    job = services.restores.run(
        kind="restore",
        snap_id=snap.id,
        requested_by="U1",
        tables=["app.orders", "app.order_items"],
    )
    assert job.status == "failed", job
    assert "app.order_items has" in (job.error or "") and "snapshot has 7" in (job.error or "")
    assert (job.error or "").endswith("was not touched.")
    assert (_count(pg, staging, "app.order_items"), _fks(pg, staging)) == before


@pytest.mark.parametrize("change", ["in its block", "in the table of contents"])
def test_an_artifact_changed_in_storage_leaves_staging_as_it_was(pg, world, change):
    """A byte changed in the table's block (read on its own), or in the table of contents
    (all the SQL the restore runs): the refresh fails, staging keeps its rows and keys."""
    services, snap, staging, expected = world
    pg.execute(staging, "DELETE FROM app.events WHERE id > 10")
    before = (_count(pg, staging, "app.events"), _fks(pg, staging))
    head = bytearray()
    services.reader.read(snap, head.extend)
    toc = archive.read_toc(head)
    data = next(e for e in toc.entries if e.desc == "TABLE DATA" and e.tag == "events")
    block = next(s for s in segments_of(snap) or [] if s.dump_id == data.dump_id)
    path = Path(snap.location or "")
    stored = bytearray(path.read_bytes())
    where = block if change == "in its block" else (segments_of(snap) or [])[0]
    stored[where.start + where.size // 2] ^= 0x55
    path.write_bytes(bytes(stored))
    job = services.restores.run(
        kind="restore", snap_id=snap.id, requested_by="U1", tables=["app.events"]
    )
    assert job.status == "failed" and "not touched" in (job.error or ""), job
    assert (_count(pg, staging, "app.events"), _fks(pg, staging)) == before


def test_a_drill_of_two_tables_proves_them_alone(pg, world):
    services, snap, staging, expected = world
    job = services.restores.run(
        kind="drill", snap_id=snap.id, requested_by="U1", tables=["app.orders", "app.customers"]
    )
    assert job.status == "passed", job
    assert job.tables == ["app.orders", "app.customers"] and job.scratch_dropped
    warned = " ".join(job.problems)
    assert "orders_status_fkey not checked" in warned  # to app.lookup_4, not restored
    assert "orders_customer_id_fkey" not in warned  # both ends restored: checked
    # the scratch database held only those: a wrong count there fails the drill
    manifest = dict(snap.manifest or {})
    manifest["tables"] = {**manifest["tables"], "app.customers": 1}
    services.catalog.finish_snapshot(snap.id, snap.status, manifest=manifest)
    job = services.restores.run(
        kind="drill", snap_id=snap.id, requested_by="U1", tables=["app.customers"]
    )
    assert job.status == "failed" and any("app.customers has" in p for p in job.problems), job


def test_a_table_the_snapshot_lacks_is_refused_before_anything_runs(pg, world):
    services, snap, staging, expected = world
    with pytest.raises(AtlasError, match=r"has no table app\.nope.*SCHEMA\.TABLE"):
        services.restores.run(
            kind="restore", snap_id=snap.id, requested_by="U1", tables=["app.nope"]
        )
    with pytest.raises(AtlasError, match="not a table name"):
        T.parse_tables(["app.orders.x"])
    assert [j.kind for j in services.catalog.list_jobs(limit=5)] == ["restore"]


def test_fetch_writes_a_dump_of_just_those_tables(pg, world, tmp_path):
    services, snap, staging, expected = world
    out = tmp_path / "orders.dump"
    env = cli_env(tmp_path, DATABASE_URL=pg.url("postgres"))
    env["ATLAS_STATE"] = services.settings.state  # the fixture's catalog and storage
    done = run_cli(
        ["fetch", snap.id, "--table", "app.orders", "-o", str(out)], env, tmp_path, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "app.orders" in done.stderr
    pg_restore = str(Path(pg_bindir()) / "pg_restore")
    listed = subprocess.run([pg_restore, "--list", str(out)], capture_output=True, text=True)
    tables = {ln.split()[-2] for ln in listed.stdout.splitlines() if " TABLE app " in ln}
    assert tables == {"orders"}, listed.stdout
    empty = pg.create_database(staging + "_f")
    try:
        subprocess.run(
            [pg_restore, "--no-owner", "--exit-on-error", "-d", pg.url(empty), str(out)],
            check=True,
        )
        assert _count(pg, empty, "app.orders") == expected["app.orders"]
    finally:
        pg.drop_database(empty)


def test_damage_found_after_the_tables_loaded_still_commits_nothing(
    pg, pg_db, pg_url, tmp_path, s3_env, s3_server, monkeypatch, key_file
):
    """An encrypted snapshot (no segments: the whole artifact streams past) on a slow
    link to S3: the table's block comes first, a byte near the artifact's end is changed.
    pg_restore has had every row of the table for seconds when the damage is found, and
    would have committed them; it never had the stream's last bytes, so it could not."""
    expected = fill_realistic(pg_url, scale=1)
    add_bulk(pg_url, 6)  # public.bulk: the last block, well past the table of contents
    staging = pg.create_database(pg_db + "_stg")
    key, _ = key_file
    port = int(s3_server.rsplit(":", 1)[1])
    with tcp_proxy(port) as proxy:
        point_aws_at(monkeypatch, proxy.url, tmp_path, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION)
        settings = settings_for(
            pg_url,
            tmp_path,
            f"s3://{s3_env}/t",
            STAGING_DATABASE_URL=pg.url(staging),
            ATLAS_ENCRYPTION_KEY_FILE=str(key),
        )
        services = services_for(settings)
        try:
            snap = services.taker.take(requested_by="U1")
            assert snap.encryption == "age" and segments_of(snap) is None
            assert services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1")
            head = bytearray()
            services.reader.read(snap, head.extend)
            first = archive.read_toc(head).blocks[0]
            table = f"{first.namespace}.{first.tag}"
            pg.execute(
                staging, f"DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} LIMIT 5)"
            )
            before = (_count(pg, staging, table), _fks(pg, staging))
            client = make_s3_client(s3_server)
            name = (snap.location or "").removeprefix(f"s3://{s3_env}/")
            data = bytearray(client.get_object(Bucket=s3_env, Key=name)["Body"].read())
            data[-100] ^= 0x55
            client.put_object(Bucket=s3_env, Key=name, Body=bytes(data))
            proxy.throttle(max(20_000, len(data) // 4))  # about four seconds to read it
            job = services.restores.run(
                kind="restore", snap_id=snap.id, requested_by="U1", tables=[table]
            )
            proxy.throttle(None)
            assert job.status == "failed" and "not touched" in (job.error or ""), job
            assert (_count(pg, staging, table), _fks(pg, staging)) == before, expected[table]
        finally:
            pg.execute("postgres", f'DROP DATABASE IF EXISTS "{staging}" WITH (FORCE)')
            for (db,) in pg.execute("postgres", "SELECT datname FROM pg_database"):
                if db.startswith(f"atlas_kept_{staging}"):
                    pg.execute("postgres", f'DROP DATABASE "{db}" WITH (FORCE)')


def test_fetch_of_a_table_reads_only_its_block_and_the_head(pg, world, tmp_path):
    """A segmented snapshot: fetch --table reads the head and that table's block alone,
    each checked against its sha256. Damage in another table's block does not stop it
    (it is never read); damage in its own block does, and writes nothing."""
    services, snap, staging, expected = world
    segments = segments_of(snap)
    assert segments is not None
    head = bytearray()
    services.reader.read(snap, head.extend)
    toc = archive.read_toc(head)
    ids = {f"{e.namespace}.{e.tag}": e.dump_id for e in toc.blocks}
    by_id = {s.dump_id: s for s in segments}
    path = Path(snap.location or "")

    def damage(table: str) -> None:
        seg = by_id[ids[table]]
        data = bytearray(path.read_bytes())
        data[seg.start + seg.size // 2] ^= 0x55
        path.write_bytes(bytes(data))

    damage("app.order_items")
    env = cli_env(tmp_path, DATABASE_URL=pg.url("postgres"))
    env["ATLAS_STATE"] = services.settings.state
    out = tmp_path / "orders.dump"
    done = run_cli(["fetch", snap.id, "--table", "app.orders", "-o", str(out)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    empty = pg.create_database(staging + "_f")
    try:
        subprocess.run(
            [str(Path(pg_bindir()) / "pg_restore"), "--no-owner", "--exit-on-error"]
            + ["-d", pg.url(empty), str(out)],
            check=True,
        )
        assert _count(pg, empty, "app.orders") == expected["app.orders"]
    finally:
        pg.drop_database(empty)
    damage("app.orders")
    again = tmp_path / "again.dump"
    failed = run_cli(
        ["fetch", snap.id, "--table", "app.orders", "-o", str(again)], env, tmp_path, text=True
    )
    assert failed.returncode != 0 and "Checksum mismatch" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr and not again.exists()
    assert [p.name for p in tmp_path.glob(".again*")] == []
