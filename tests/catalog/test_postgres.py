"""The PostgreSQL catalog itself: its migrations, races between processes that share it,
its failures in one line, the move from SQLite, and the guard that keeps it apart from
the databases Atlas backs up and restores into."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.catalog import open_catalog
from bot.catalog.copy import copy_catalog
from bot.catalog.postgres import PostgresCatalog, migrations
from bot.catalog.sql.work import WORK_LOCK
from bot.catalog.sqlite import SqliteCatalog
from bot.errors import AtlasError, Busy
from bot.records import Drill, Kind, Restore, Snapshot, SnapshotStatus, WorkItem, WorkStatus
from tests.support.catalogs import CatalogServer
from tests.support.helpers import cli_env, run_cli
from tests.support.pg import PgCluster, fill_sample
from tests.support.proxy import tcp_proxy

pytestmark = pytest.mark.own_catalog


def _race(n: int, call: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        out[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_replicas_starting_together_migrate_once(catalog_server: CatalogServer) -> None:
    _, url = catalog_server.new_url()
    catalogs = _race(4, lambda _: PostgresCatalog(url))  # each its own connection
    assert {c.schema_version() for c in catalogs} == {migrations.LATEST}
    with catalogs[0].db() as db:
        versions = [r[0] for r in db.execute("SELECT version FROM atlas_schema").fetchall()]
    assert versions == list(range(1, migrations.LATEST + 1))


def test_racing_processes_decide_once(catalog_server: CatalogServer) -> None:
    """Each caller on its own connection, released together: one wins every race."""
    _, url = catalog_server.new_url()
    catalogs = [PostgresCatalog(url) for _ in range(6)]
    leases = _race(6, lambda i: catalogs[i].acquire_lease("scheduler", f"r{i}", 30))
    assert leases.count(True) == 1
    reminders = _race(6, lambda i: catalogs[i].claim_reminder("app:q3:due", "app", "drill"))
    assert reminders.count(True) == 1
    seen = _race(6, lambda i: catalogs[i].first_time("event:Ev1"))
    assert seen.count(True) == 1

    def begin(i: int) -> str:
        try:
            catalogs[i].begin_snapshot(Snapshot(id=f"s{i}", database="app"))
        except Exception as exc:
            return type(exc).__name__
        return "ok"

    assert sorted(_race(6, begin)) == ["Busy"] * 5 + ["ok"]


def test_work_is_claimed_once_and_within_the_limit(catalog_server: CatalogServer) -> None:
    _, url = catalog_server.new_url()
    catalogs = [PostgresCatalog(url) for _ in range(5)]
    items = [WorkItem(key=f"run1:db{i}", run="run1", database=f"db{i}") for i in range(4)]
    assert catalogs[0].enqueue_work(items) == 4
    assert catalogs[0].enqueue_work(items) == 0  # queued twice: once
    stopped = [WorkItem(key=f"run0:db{i}", run="run0", database=f"db{i}") for i in range(2)]
    catalogs[0].enqueue_work(stopped)
    assert catalogs[0].cancel_work("run0", "stopped") == 2  # a run stopped: nobody starts it
    assert {w.status for w in catalogs[0].run_work("run0")} == {WorkStatus.FAILED}
    claimed = _race(5, lambda i: catalogs[i].claim_work(f"r{i}", 3, 60))
    got = [c.database for c in claimed if c is not None]
    assert len(got) == 3 and len(set(got)) == 3  # three at once, never the same one twice
    # the fourth waits for room; a claim whose replica stopped beating frees it
    assert catalogs[0].claim_work("r0", 3, 60) is None
    assert catalogs[0].claim_work("r0", 3, 0.0) is not None  # heartbeats now count as stale
    abandoned = catalogs[1].abandon_work(0.0)
    assert {w.status for w in abandoned} == {WorkStatus.INTERRUPTED} and len(abandoned) == 4
    assert abandoned[0].error is not None and "stopped" in abandoned[0].error
    assert catalogs[2].forget_work(3600) == 0  # finished, but not old yet
    assert catalogs[2].forget_work(-1) == 6 and catalogs[2].run_work("run1") == []


def test_racing_reminders_from_three_processes_post_once(
    catalog_server: CatalogServer, pg_url: str, tmp_path: Path, slack_api
) -> None:
    """Housekeeping run by three replicas at once (a hand-over in the middle of the day's
    run): each reminder reaches Slack once."""
    from datetime import UTC, datetime, timedelta

    from bot.ops.housekeeping import drill_reminders
    from tests.support.helpers import services_for, settings_for

    fill_sample(pg_url, rows=50)
    _, url = catalog_server.new_url()
    settings = [
        settings_for(pg_url, tmp_path, ATLAS_STATE=url, ATLAS_CHANNEL="CATLAS") for _ in range(3)
    ]
    services = [services_for(s, slack_api.client()) for s in settings]
    services[0].taker.take(requested_by="U1")
    later = datetime.now(UTC) + timedelta(days=400)  # every reminder is owed
    posted = _race(3, lambda i: drill_reminders(services[i], later))
    keys = [k for p in posted for k in p]
    assert keys and len(keys) == len(set(keys))
    texts = [c for c in slack_api.calls("chat.postMessage") if "drill" in str(c["params"])]
    assert len(texts) == len(keys)


def test_an_unreachable_catalog_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://atlas:Cat-Secret-99@127.0.0.1:1/atlas_catalog"
    env = cli_env(tmp_path, ATLAS_STATE=url, DATABASE_URL="postgresql://x@127.0.0.1:1/app")
    res = run_cli(["list"], env, tmp_path, text=True)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "catalog cannot be reached" in lines[0], res.stderr
    assert "Cat-Secret-99" not in res.stderr + res.stdout and "Traceback" not in res.stderr


def test_migrate_moves_a_sqlite_catalog_and_refuses_twice(
    catalog_server: CatalogServer, pg_url: str, tmp_path: Path
) -> None:
    fill_sample(pg_url, rows=100)
    env = cli_env(tmp_path, DATABASE_URL=pg_url, ATLAS_STATE=str(tmp_path / "atlas.db"))
    first = json.loads(run_cli(["snapshot", "--json", "--note", "before"], env, tmp_path).stdout)
    run_cli(["snapshot", "--json", "--note", "after"], env, tmp_path)
    _, url = catalog_server.new_url()
    moved = run_cli(["catalog", "migrate", "--to", url, "--json"], env, tmp_path, text=True)
    assert moved.returncode == 0, moved.stderr
    rows = json.loads(moved.stdout)["rows"]
    assert rows["snapshots"] == 2 and rows["audit"] >= 2
    assert "cat-pw" not in moved.stdout + moved.stderr  # the catalog role's password

    on_pg = {**env, "ATLAS_STATE": url}
    listed = json.loads(run_cli(["list", "--json"], on_pg, tmp_path).stdout)
    assert [s["note"] for s in listed] == ["after", "before"]
    assert run_cli(["verify", first["id"]], on_pg, tmp_path).returncode == 0
    catalog = open_catalog(url)
    lines = catalog.audit_log(500)
    ids = [e.id or 0 for e in lines]
    [migrated] = [e for e in lines if e.action == "catalog.migrated"]
    assert len(set(ids)) == len(ids) and (migrated.id or 0) > rows["audit"]  # numbered on
    again = run_cli(["catalog", "migrate", "--to", url], env, tmp_path, text=True)
    assert again.returncode == 1 and "already holds" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_a_catalog_in_a_database_atlas_backs_up_is_refused(pg_url: str, tmp_path: Path) -> None:
    """The same database under another spelling of its URL: refused by server identity,
    by the migration and by any command that would make its tables there."""
    fill_sample(pg_url, rows=10)
    env = cli_env(tmp_path, DATABASE_URL=pg_url, ATLAS_STATE=str(tmp_path / "atlas.db"))
    run_cli(["snapshot"], env, tmp_path)
    respelled = pg_url.replace("127.0.0.1", "localhost")
    res = run_cli(["catalog", "migrate", "--to", respelled], env, tmp_path, text=True)
    assert res.returncode == 1
    assert "a database Atlas would back up" in res.stderr, res.stderr
    for command in (["list"], ["doctor"], ["serve", "--http", "--port", "1"]):
        res = run_cli(command, {**env, "ATLAS_STATE": respelled}, tmp_path, text=True)
        said = res.stdout + res.stderr  # doctor: a ❌ finding on stdout; others: an error
        assert res.returncode == 1 and "a database Atlas would back up" in said, res
        assert "Traceback" not in said
    with psycopg.connect(pg_url) as conn:  # nothing was created in it
        found = conn.execute("SELECT to_regclass('atlas_schema')").fetchone()
    assert found is not None and found[0] is None


def test_a_cut_link_to_the_catalog_is_one_line_and_heals(catalog_server: CatalogServer) -> None:
    """The network to the catalog drops (every connection reset, new ones refused): each
    call fails in one line without the password, nothing is half-written, and the first
    call after the link is back works on fresh sessions."""
    schema, _ = catalog_server.new_url()
    with tcp_proxy(catalog_server.cluster.port) as proxy:
        url = catalog_server.url(schema).replace(
            f":{catalog_server.cluster.port}/", f":{proxy.port}/"
        )
        catalog = PostgresCatalog(url)
        catalog.add_snapshot(Snapshot(id="before", database="app", status=SnapshotStatus.OK))
        proxy.refuse()
        for call in (
            lambda: catalog.list_snapshots(),
            lambda: catalog.begin_snapshot(Snapshot(id="during", database="app")),
            lambda: catalog.acquire_lease("scheduler", "r1", 30),
        ):
            with pytest.raises(AtlasError) as failed:
                call()
            text = str(failed.value)
            assert "\n" not in text and "cat-pw" not in text, text
            assert "catalog" in text
        proxy.restore()
        assert [s.id for s in catalog.list_snapshots()] == ["before"]  # "during" never landed
        assert catalog.acquire_lease("scheduler", "r1", 30)
        assert catalog.acquire_lease("read::s1:h:1:ab", "h:1", -2 * 86400)  # died holding it
        assert catalog.forget_leases(86400) == 1 and catalog.lease_holder("scheduler") == "r1"


def test_a_link_cut_mid_claim_leaves_the_work_queue_free(catalog_server: CatalogServer) -> None:
    """A replica's link to the catalog drops while its claim holds the work queue's lock:
    the server ends that session, so the other replicas' claims go on (a session the
    server kept would hold the lock, and every fleet run would wait on it for good)."""
    schema, direct = catalog_server.new_url()
    with tcp_proxy(catalog_server.cluster.port) as proxy:
        url = catalog_server.url(schema).replace(
            f":{catalog_server.cluster.port}/", f":{proxy.port}/"
        )
        cut = PostgresCatalog(url)
        other = PostgresCatalog(direct)
        other.enqueue_work([WorkItem(key="run1:db0", run="run1", database="db0")])
        with pytest.raises(AtlasError), cut.conn.transaction() as db:
            db.advisory_lock(WORK_LOCK)
            proxy.refuse()
        claimed: list[WorkItem | None] = []
        claimer = threading.Thread(target=lambda: claimed.append(other.claim_work("r2", 1, 60)))
        claimer.start()
        claimer.join(15)
        assert not claimer.is_alive(), "the cut session still holds the work queue's lock"
        assert claimed and claimed[0] is not None and claimed[0].database == "db0"
        with psycopg.connect(catalog_server.url(schema)) as conn:
            settings = conn.execute(
                "SELECT setting FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'"
            ).fetchone()
        session = other.conn._take()
        assert session.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
        assert settings == ("0",)  # the server's default: the catalog's own sessions set it


def test_snapshots_starting_as_another_finishes_are_busy_or_run(
    catalog_server: CatalogServer,
) -> None:
    """Processes start snapshots of one database while others finish theirs (failing fast,
    as with a mistyped URL): each start either runs or is told another is running, never
    an unexpected error."""
    _, url = catalog_server.new_url()
    catalogs = [PostgresCatalog(url) for _ in range(6)]

    def churn(i: int) -> list[str]:
        seen = []
        for n in range(40):
            try:
                catalogs[i].begin_snapshot(Snapshot(id=f"s{i}-{n}", database="app"))
            except Busy:
                seen.append("busy")
                continue
            except Exception as exc:
                seen.append(type(exc).__name__)
                continue
            seen.append("ran")
            catalogs[i].finish_snapshot(f"s{i}-{n}", SnapshotStatus.FAILED)
        return seen

    outcomes = [o for seen in _race(6, churn) for o in seen]
    assert set(outcomes) <= {"busy", "ran"}, sorted(set(outcomes))
    assert "ran" in outcomes


def test_migrate_refuses_a_database_a_fleet_backs_up_and_a_live_serve(
    pg: PgCluster, pg_url: str, tmp_path: Path
) -> None:
    name = f"cat_{uuid.uuid4().hex[:6]}"
    pg.create_database(name)
    try:
        state = tmp_path / "atlas.db"
        open_catalog(state)  # the file `atlas serve` has used
        env = cli_env(
            tmp_path, DATABASE_URL=pg.url("postgres"), ATLAS_DATABASES="*", ATLAS_STATE=str(state)
        )
        res = run_cli(["catalog", "migrate", "--to", pg.url(name)], env, tmp_path, text=True)
        assert res.returncode == 1 and "would drop out of the backups" in res.stderr, res.stderr
        assert f"'!{name}'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        # a live `atlas serve` on the file: refused until it stops
        open_catalog(state).acquire_lease("replica:node-a:4242:ab12", "node-a:4242", 60)
        env["ATLAS_DATABASES"] = f"*, !{name}"
        res = run_cli(["catalog", "migrate", "--to", pg.url(name)], env, tmp_path, text=True)
        assert res.returncode == 1 and "`atlas serve` is running on this catalog" in res.stderr
        open_catalog(state).release_lease("replica:node-a:4242:ab12", "node-a:4242")
        res = run_cli(["catalog", "migrate", "--to", pg.url(name)], env, tmp_path, text=True)
        assert res.returncode == 0, res.stderr
    finally:
        pg.drop_database(name)


def test_a_finished_snapshot_outlasts_a_short_catalog_outage(catalog_server: CatalogServer) -> None:
    """The link to the catalog is cut as a finished snapshot is recorded, and back 3 s
    later: the record is written then, one warning line a try, and the snapshot is ok."""
    from bot.catalog.outage import outlast
    from bot.errors import CatalogAway

    schema, _ = catalog_server.new_url()
    with tcp_proxy(catalog_server.cluster.port) as proxy:
        url = catalog_server.url(schema).replace(
            f":{catalog_server.cluster.port}/", f":{proxy.port}/"
        )
        catalog = PostgresCatalog(url)
        catalog.begin_snapshot(Snapshot(id="20261204-120000-0a0a", database="app"))
        proxy.refuse()
        threading.Timer(3.0, proxy.restore).start()
        outlast(
            lambda: catalog.finish_snapshot("20261204-120000-0a0a", SnapshotStatus.OK),
            within_s=30,
        )
        assert catalog.get_snapshot("20261204-120000-0a0a").status == SnapshotStatus.OK
        proxy.refuse()  # an outage longer than the bound is the error it was
        with pytest.raises(CatalogAway):
            outlast(lambda: catalog.list_snapshots() and None, within_s=1.5)


def test_refreshes_recorded_as_drills_move_to_their_own_table(
    catalog_server: CatalogServer, tmp_path: Path
) -> None:
    """A catalog at version 1 kept refreshes in `drills` (kind 'restore'); version 2
    moves them to `restores`, and `catalog migrate` copies both tables from SQLite."""
    _, url = catalog_server.new_url()
    PostgresCatalog(url)
    with psycopg.connect(url, autocommit=True) as conn:  # back to version 1's shape
        conn.execute("ALTER TABLE drills ADD COLUMN kind TEXT")
        conn.execute("DROP TABLE restores")
        conn.execute("DELETE FROM atlas_schema WHERE version > 1")
        for job_id, kind in (("d-1", "drill"), ("r-1", "restore")):
            conn.execute(
                "INSERT INTO drills (id, kind, snapshot_id, database, status, started_at, "
                "approved_by, checks, problems) VALUES (%s, %s, 's1', 'app', 'passed', %s, "
                "'[\"U1\"]', '[]', '[]')",
                [job_id, kind, "2026-01-01T00:00:00"],
            )
    catalog = PostgresCatalog(url)
    assert catalog.schema_version() == migrations.LATEST
    refresh, drill = catalog.get_job("r-1"), catalog.get_job("d-1")
    assert isinstance(refresh, Restore) and refresh.approved_by == ["U1"]
    assert isinstance(drill, Drill)
    assert [j.id for j in catalog.list_jobs(kind=Kind.DRILL)] == ["d-1"]
    with catalog.db() as db:
        assert [r[0] for r in db.execute("SELECT id FROM drills").fetchall()] == ["d-1"]

    lite = open_catalog(tmp_path / "atlas.db")
    lite.add_job(Restore(id="r-2", snapshot_id="s2", database="app", requested_by="U2"))
    lite.add_job(Drill(id="d-2", snapshot_id="s2", database="app", scratch_db="atlas_drill_x"))
    _, fresh = catalog_server.new_url()
    assert isinstance(lite, SqliteCatalog)
    copied = copy_catalog(lite, PostgresCatalog(fresh))
    assert copied.rows["restores"] == 1 and copied.rows["drills"] == 1
    moved = open_catalog(fresh)
    assert isinstance(moved.get_job("r-2"), Restore) and moved.get_job("r-2").requested_by == "U2"
    assert isinstance(moved.get_job("d-2"), Drill)
