"""Atlas with the roles a careful team grants: a non-superuser reading production, a
staging role with only CREATEDB for drills, and the staging database's owner for
refreshes; on a schema with many tables, indexes and foreign keys."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from bot.errors import Refused
from tests.support.helpers import services_for, settings_for
from tests.support.pg import LeastPrivilege, PgCluster, fill_realistic


@pytest.fixture
def shop(pg_url: str) -> dict[str, int]:
    return fill_realistic(pg_url)


def _databases(pg: PgCluster, like: str) -> set[str]:
    return {
        r[0]
        for r in pg.execute(
            "postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s", [like]
        )
    }


def test_snapshot_drill_and_refresh_without_superuser(pg, least_privilege, shop, tmp_path):
    lp: LeastPrivilege = least_privilege
    drills = services_for(settings_for(lp.reader_url, tmp_path, STAGING_DATABASE_URL=lp.stager_url))
    snap = drills.taker.take(requested_by="ops")
    manifest = snap.manifest
    assert manifest["tables"] == {k: v for k, v in shop.items()}
    assert "billing.invoice_number" in manifest["sequences"]

    drill = drills.restores.run(kind="drill", snap_id=snap.id, requested_by="ops")
    assert drill.status == "passed", drill
    assert drill.scratch_dropped == 1 and drill.cleanup_error is None
    assert _databases(pg, "atlas_drill_%") == set()

    refresh = services_for(settings_for(lp.reader_url, tmp_path, STAGING_DATABASE_URL=lp.owner_url))
    restored = refresh.restores.run(kind="restore", snap_id=snap.id, requested_by="ops")
    assert restored.status == "passed", restored
    assert (
        pg.execute(lp.staging, "SELECT count(*) FROM app.order_items")[0][0]
        == shop["app.order_items"]
    )
    # the staging it replaced is kept, owned as staging was
    kept_here = f"atlas\\_kept\\_{lp.staging}\\_%"  # other tests' staging may be kept too
    assert restored.swapped and _databases(pg, kept_here) == {restored.kept_db}
    owners = "SELECT datdba::regrole::text FROM pg_database WHERE datname = %s"
    assert pg.execute("postgres", owners, [lp.staging])[0][0] == lp.owner
    assert pg.execute("postgres", owners, [restored.kept_db])[0][0] == lp.owner
    # and again over its own earlier content, as a weekly refresh does: one kept at a time
    again = refresh.restores.run(kind="restore", snap_id=snap.id, requested_by="ops")
    assert again.status == "passed", again
    assert _databases(pg, kept_here) == {again.kept_db} != {restored.kept_db}
    assert refresh.catalog.get_job(restored.id).kept_dropped == 1

    # some tables: proven alone by the CREATEDB-only role, replaced in place by the owner
    alone = drills.restores.run(
        kind="drill", snap_id=snap.id, requested_by="ops", tables=["app.orders"]
    )
    assert alone.status == "passed" and alone.tables == ["app.orders"], alone
    pg.execute(
        lp.staging,
        "DELETE FROM app.order_items WHERE ctid IN (SELECT ctid FROM app.order_items LIMIT 7)",
    )
    one = refresh.restores.run(
        kind="restore", snap_id=snap.id, requested_by="ops", tables=["app.order_items"]
    )
    assert one.status == "passed" and not one.swapped, one
    items = pg.execute(lp.staging, "SELECT count(*) FROM app.order_items")[0][0]
    assert items == shop["app.order_items"]
    tables = "SELECT tableowner FROM pg_tables WHERE schemaname = 'app' AND tablename = %s"
    assert pg.execute(lp.staging, tables, ["order_items"])[0][0] == lp.owner


def test_a_staging_role_without_createdb_fails_the_refresh_before_staging_changes(
    pg, least_privilege, shop, tmp_path
):
    lp: LeastPrivilege = least_privilege
    pg.execute("postgres", f'ALTER ROLE "{lp.owner}" NOCREATEDB')
    pg.execute(lp.staging, "CREATE TABLE mine (id int)")
    services = services_for(
        settings_for(lp.reader_url, tmp_path, STAGING_DATABASE_URL=lp.owner_url)
    )
    snap = services.taker.take(requested_by="ops")
    refresh = services.restores.run(kind="restore", snap_id=snap.id, requested_by="ops")
    assert refresh.status == "failed"
    assert "the staging role needs CREATEDB" in refresh.error
    assert refresh.error.endswith("was not touched.")
    assert pg.execute(lp.staging, "SELECT to_regclass('mine') IS NOT NULL")[0][0]
    assert _databases(pg, "atlas_refresh_%") == set()


def test_guard_knows_production_without_reading_the_control_file(least_privilege, shop, tmp_path):
    """Non-superusers cannot read pg_control_system(); the guard still tells production
    apart from staging, through another role and another spelling of the address."""
    lp: LeastPrivilege = least_privilege
    alias = lp.url(lp.owner, lp.production, hostaddr="127.0.0.1").replace(
        "@127.0.0.1:", "@db-alias.example:"
    )
    services = services_for(settings_for(lp.reader_url, tmp_path, STAGING_DATABASE_URL=alias))
    snap = services.taker.take(requested_by="ops")
    with pytest.raises(Refused, match="it is the production database"):
        services.restores.run(kind="restore", snap_id=snap.id, requested_by="ops")


def test_a_scratch_database_that_cannot_be_dropped_is_dropped_later(
    pg, least_privilege, shop, tmp_path
):
    """Another role's session on the scratch database (autovacuum after a big restore is
    the usual one) stops a non-superuser's DROP. The drill says so, and housekeeping
    drops it once that session is gone."""
    lp: LeastPrivilege = least_privilege
    services = services_for(
        settings_for(lp.reader_url, tmp_path, STAGING_DATABASE_URL=lp.stager_url)
    )
    snap = services.taker.take(requested_by="ops")
    stop = threading.Event()

    def hold() -> None:  # a superuser session that sits on the scratch database
        while not stop.is_set():
            made = _databases(pg, "atlas_drill_%")
            try:
                if made:
                    with psycopg.connect(pg.url(made.pop()), autocommit=True) as conn:
                        conn.execute("SELECT 1")
                        stop.wait()
                    return
            except psycopg.OperationalError:
                pass  # not ready for connections yet
            time.sleep(0.02)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        drill = services.restores.run(kind="drill", snap_id=snap.id, requested_by="ops")
    finally:
        stop.set()
        holder.join(timeout=10)
    drill_id, scratch = drill.id, drill.scratch_db
    assert drill.status == "passed", drill
    assert drill.scratch_dropped == 0 and "accessed by other users" in drill.cleanup_error
    assert any("could not be dropped yet" in p and scratch in p for p in drill.problems)
    assert _databases(pg, "atlas_drill_%") == {scratch}

    assert services.scratch.clean_up() == [scratch]
    assert _databases(pg, "atlas_drill_%") == set()
    after = services.catalog.get_drill(drill_id)
    assert after.scratch_dropped == 1 and after.cleanup_error is None
    assert services.scratch.clean_up() == []  # nothing owed any more
