"""The SQLite catalog: versioned migrations, atomic decisions, the append-only audit log."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bot.catalog import RequestChange, open_catalog
from bot.catalog.sqlite import SqliteCatalog, migrations
from bot.errors import Busy, NotFound
from bot.records import (
    Drill,
    Kind,
    Request,
    RequestStatus,
    Restore,
    Snapshot,
    SnapshotStatus,
    now,
)

# The schema of a catalog made before versions began (Atlas 0.1, no PRAGMA user_version,
# no scratch_dropped/cleanup_error on drills).
V0 = """
CREATE TABLE snapshots (id TEXT PRIMARY KEY, database TEXT NOT NULL, dbname TEXT,
  environment TEXT, status TEXT NOT NULL, source TEXT, requested_by TEXT, note TEXT,
  started_at TEXT, finished_at TEXT, heartbeat_at TEXT, owner TEXT, duration_s FLOAT,
  size_bytes INTEGER, raw_size_bytes INTEGER, sha256 TEXT, storage_key TEXT, location TEXT,
  pending_ref TEXT, pg_dump_version TEXT, server_version TEXT, encryption TEXT,
  compression TEXT, manifest TEXT, error TEXT, verified_at TEXT, slack_channel TEXT,
  slack_ts TEXT, pinned INTEGER, provider_snapshot TEXT, dump_sha256 TEXT);
CREATE TABLE drills (id TEXT PRIMARY KEY, kind TEXT, request_id TEXT, snapshot_id TEXT,
  database TEXT, target TEXT, scratch_db TEXT, status TEXT, requested_by TEXT,
  approved_by TEXT, started_at TEXT, finished_at TEXT, download_s FLOAT, restore_s FLOAT,
  verify_s FLOAT, total_s FLOAT, checks TEXT, problems TEXT, error TEXT, kept INTEGER,
  owner TEXT);
INSERT INTO snapshots (id, database, environment, status, started_at, size_bytes, sha256,
  manifest, pinned, dump_sha256)
  VALUES ('20250101-000000-abcd', 'app', 'production', 'ok', '2025-01-01T00:00:00.000+00:00',
  10, 'aa', '{"tables": {"public.t": 3}}', 1, 'bb');
INSERT INTO drills (id, kind, snapshot_id, database, status, checks, problems, approved_by,
  kept) VALUES ('d-1', 'drill', '20250101-000000-abcd', 'app', 'passed',
  '[{"name": "c", "passed": true, "detail": "true", "seconds": 0.1}]', '[]', '["U1"]', 0);
INSERT INTO drills (id, kind, snapshot_id, database, target, status, started_at, checks,
  problems, approved_by, kept) VALUES ('r-1', 'restore', '20250101-000000-abcd', 'app',
  'staging/app', 'passed', '2025-01-02T00:00:00.000+00:00', '[]', '["warning: w"]',
  '["U2"]', 0);
"""


pytestmark = (
    pytest.mark.sqlite_only
)  # the SQLite file itself; tests/catalog/test_postgres.py has the other


@pytest.fixture
def catalog(tmp_path: Path) -> SqliteCatalog:
    opened = open_catalog(tmp_path / "atlas.db")
    assert isinstance(opened, SqliteCatalog)
    return opened


def test_a_catalog_from_before_versions_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V0)
    catalog = SqliteCatalog(path)
    assert catalog.schema_version() == migrations.LATEST
    snap = catalog.get_snapshot("20250101-000000-abcd")
    assert snap.status == SnapshotStatus.OK and snap.pinned is True
    assert snap.manifest == {"tables": {"public.t": 3}}
    drill = catalog.get_drill("d-1")
    assert drill.checks[0].passed and drill.approved_by == ["U1"]
    assert drill.scratch_dropped is None  # a column the old catalog did not have
    refresh = catalog.get_job("r-1")  # a refresh recorded as a drill is a Restore now
    assert isinstance(refresh, Restore) and refresh.kind == Kind.RESTORE
    assert (refresh.target, refresh.approved_by, refresh.problems) == (
        "staging/app",
        ["U2"],
        ["warning: w"],
    )
    with pytest.raises(NotFound):
        catalog.get_drill("r-1")
    assert [j.id for j in catalog.list_jobs()] == ["r-1", "d-1"]  # both, newest first
    assert [j.id for j in catalog.list_jobs(kind=Kind.DRILL)] == ["d-1"]
    assert catalog.last_passed_job("app") == refresh  # a passed refresh proves restores too
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.LATEST
    assert SqliteCatalog(path).schema_version() == migrations.LATEST  # opening again: a no-op


def test_a_migration_step_that_fails_midway_leaves_nothing_half_done(tmp_path: Path) -> None:
    """The move of refreshes to `restores` copies, then deletes: a failure between the two
    (a trigger stands for a process killed there) must undo the copy, or the next start
    would find the refresh in both tables and fail on its key."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V0)
        conn.execute("PRAGMA user_version = 5")
        conn.execute(
            "CREATE TRIGGER stop_here BEFORE DELETE ON drills "
            "BEGIN SELECT RAISE(ABORT, 'killed mid-step'); END"
        )
    with pytest.raises(Exception, match="killed mid-step"):
        SqliteCatalog(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5  # the step is undone
        assert conn.execute("SELECT count(*) FROM drills WHERE id = 'r-1'").fetchone()[0] == 1
        moved = conn.execute("SELECT name FROM sqlite_master WHERE name = 'restores'").fetchall()
        assert moved == []  # not even the new table
        conn.execute("DROP TRIGGER stop_here")
    catalog = SqliteCatalog(path)  # the next start does the step whole
    assert catalog.schema_version() == migrations.LATEST
    assert isinstance(catalog.get_job("r-1"), Restore)
    assert [j.id for j in catalog.list_jobs()] == ["r-1", "d-1"]


def test_records_round_trip(catalog: SqliteCatalog) -> None:
    snap = Snapshot(id="s1", database="app", note="<!here> ünïcode", manifest={"tables": {}})
    catalog.begin_snapshot(snap)
    catalog.finish_snapshot("s1", SnapshotStatus.OK, size_bytes=5, pinned=True)
    got = catalog.get_snapshot("s1")
    assert (got.status, got.size_bytes, got.pinned, got.note) == (
        SnapshotStatus.OK,
        5,
        True,
        "<!here> ünïcode",
    )
    assert got.owner and got.started_at and got.finished_at


def test_one_running_snapshot_per_database(catalog: SqliteCatalog) -> None:
    catalog.begin_snapshot(Snapshot(id="a", database="app", requested_by="U1"))
    with pytest.raises(Busy, match="already running: a, started by U1"):
        catalog.begin_snapshot(Snapshot(id="b", database="app"))
    catalog.begin_snapshot(Snapshot(id="c", database="app", environment="staging"))


def test_unknown_ids_are_not_found(catalog: SqliteCatalog) -> None:
    for get in (catalog.get_snapshot, catalog.get_request, catalog.get_drill):
        with pytest.raises(NotFound):
            get("nope")


def test_racing_decisions_each_see_the_previous_one(catalog: SqliteCatalog) -> None:
    """Twenty reactions at once: each decision reads what the last one wrote."""
    catalog.add_request(
        Request(
            id="r1",
            kind=Kind.DRILL,
            snapshot_id="s",
            database="app",
            requested_by="U0",
            created_at=now(),
            expires_at=now(),
        )
    )

    def decide_for(user: str):
        def decide(req: Request, reactions: frozenset[tuple[str, str]]) -> RequestChange:
            seen = reactions | {(user, "white_check_mark")}
            return RequestChange(seen, {"approved_by": sorted(u for u, _ in seen)})

        return decide

    threads = [
        threading.Thread(target=catalog.decide_request, args=("r1", decide_for(f"U{i}")))
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(catalog.get_request("r1").approved_by) == 20


def test_claims_and_expiry_happen_once(catalog: SqliteCatalog) -> None:
    catalog.add_request(
        Request(
            id="r2",
            kind=Kind.RESTORE,
            snapshot_id="s",
            database="app",
            requested_by="U0",
            created_at=now(),
            expires_at=now(),
            status=RequestStatus.APPROVED,
        )
    )
    assert [catalog.claim_job("r2") for _ in range(3)] == [True, False, False]
    catalog.update_request("r2", status=RequestStatus.PENDING)
    assert [catalog.expire_request("r2", "late") for _ in range(2)] == [True, False]
    assert catalog.list_requests(RequestStatus.EXPIRED)[0].reason == "late"


def test_reminders_leases_and_seen_keys(catalog: SqliteCatalog) -> None:
    assert catalog.claim_reminder("app:2026-Q4:lead-14", "app", "text")
    assert not catalog.claim_reminder("app:2026-Q4:lead-14", "app", "text")
    assert catalog.sent_reminders("app") == {"2026-Q4:lead-14"}
    catalog.unclaim_reminder("app:2026-Q4:lead-14")
    assert catalog.sent_reminders("app") == set()
    assert catalog.acquire_lease("scheduler", "one", 60)
    assert not catalog.acquire_lease("scheduler", "two", 60)
    assert catalog.lease_holder("scheduler") == "one"
    catalog.release_lease("scheduler", "one")
    assert catalog.lease_holder("scheduler") is None
    assert catalog.first_time("event:1") and not catalog.first_time("event:1")
    # a lease its dead holder never released lapses, and a day later housekeeping forgets it
    assert catalog.acquire_lease("read::s1:h:1:ab", "h:1", -2 * 86400)
    assert catalog.acquire_lease("read::s2:h:2:cd", "h:2", 60)
    assert catalog.live_leases("read:") == ["read::s2:h:2:cd"]
    assert catalog.forget_leases(86400) == 1 and catalog.forget_leases(86400) == 0
    assert catalog.live_leases("read:") == ["read::s2:h:2:cd"]


def test_drills_owed_a_cleanup(catalog: SqliteCatalog) -> None:
    catalog.add_job(
        Drill(
            id="d1",
            snapshot_id="s",
            database="app",
            scratch_db="x",
            scratch_dropped=False,
        )
    )
    assert catalog.drills_to_clean() == []  # still running, in this live process
    catalog.update_drill("d1", status="failed")
    assert [d.id for d in catalog.drills_to_clean()] == ["d1"]
    catalog.update_drill("d1", scratch_dropped=True)
    assert catalog.drills_to_clean() == []


def test_the_audit_log_is_append_only(catalog: SqliteCatalog) -> None:
    catalog.audit("U1", "snapshot.keep", "s1", reason="before the migration")
    [entry] = catalog.audit_log()
    assert entry.detail == {"reason": "before the migration"}
    with catalog.db() as db, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit")
    with catalog.db() as db, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET actor = 'someone else'")


def test_kept_databases_are_databases_with_snapshots_not_deleted(catalog: SqliteCatalog) -> None:
    """What a fleet run compares with a server's listing to name the databases that went."""
    from bot.records import SnapshotKind

    rows = [
        Snapshot(id="s1", database="orders", status=SnapshotStatus.OK),
        Snapshot(id="s2", database="billing", status=SnapshotStatus.DELETED),
        Snapshot(
            id="s3", database="default@globals", status=SnapshotStatus.OK, kind=SnapshotKind.GLOBALS
        ),
        Snapshot(id="s4", database="eu_orders", environment="eu", status=SnapshotStatus.OK),
    ]
    for row in rows:
        assert catalog.add_snapshot(row)
    assert catalog.kept_databases("production") == ["orders"]
    assert catalog.kept_databases("eu") == ["eu_orders"]
