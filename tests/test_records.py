"""Records declare their fields once: catalog columns, --json and the sidecar follow."""

from __future__ import annotations

from bot.records import (
    JSON,
    CheckResult,
    Drill,
    DrillStatus,
    Kind,
    Snapshot,
    SnapshotStatus,
    columns,
    from_row,
    names,
    public,
    to_row,
)

# What scripts and older sidecars rely on: these must not change.
SNAPSHOT_JSON = {
    "id", "database", "dbname", "environment", "status", "source", "requested_by", "note",
    "started_at", "finished_at", "duration_s", "size_bytes", "raw_size_bytes", "sha256",
    "storage_key", "location", "server_version", "pg_dump_version", "compression",
    "encryption", "verified_at", "error", "pinned", "provider_snapshot",
}  # fmt: skip
SIDECAR = {
    "id", "database", "dbname", "environment", "requested_by", "note", "started_at",
    "server_version", "pg_dump_version", "size_bytes", "raw_size_bytes", "sha256",
    "toc_bytes", "toc_sha256", "compression", "encryption", "verified_at",
}  # fmt: skip


def test_json_and_sidecar_keys_stay_compatible() -> None:
    assert set(public(Snapshot(id="x", database="d"))) == SNAPSHOT_JSON
    assert set(names(Snapshot, "sidecar")) == SIDECAR


def test_columns_come_from_the_declaration() -> None:
    cols = columns(Snapshot)
    assert cols["size_bytes"] is int and cols["manifest"] is str and cols["pinned"] is int
    assert list(cols)[:2] == ["id", "database"]
    assert JSON not in cols.values()


def test_round_trip_through_a_row() -> None:
    drill = Drill(
        id="d",
        kind=Kind.DRILL,
        snapshot_id="s",
        database="app",
        status=DrillStatus.PASSED,
        kept=True,
        checks=[CheckResult("users exist", True, "true", 0.01)],
        problems=["warning: x"],
    )
    row = to_row(drill)
    assert row["kind"] == "drill" and row["kept"] == 1 and isinstance(row["checks"], str)
    back = from_row(Drill, row)
    assert back == drill and isinstance(back.status, DrillStatus)


def test_public_output_keeps_flags_as_numbers_and_statuses_as_text() -> None:
    out = public(Snapshot(id="x", database="d", status=SnapshotStatus.OK, pinned=True))
    assert out["pinned"] == 1 and out["status"] == "ok" and type(out["status"]) is str


def test_a_status_only_a_newer_atlas_knows_is_kept_as_text() -> None:
    snap = from_row(Snapshot, {"id": "x", "database": "d", "status": "archived"})
    assert snap.status == "archived"


def test_unknown_columns_from_a_newer_catalog_are_ignored() -> None:
    assert from_row(Snapshot, {"id": "x", "database": "d", "shiny": 1}).id == "x"
