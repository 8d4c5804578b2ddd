"""Records declare their fields once: catalog columns, --json and the sidecar follow."""

from __future__ import annotations

import pytest

from bot.records import (
    JSON,
    CheckResult,
    Drill,
    DrillStatus,
    Kind,
    Restore,
    Segment,
    Snapshot,
    SnapshotStatus,
    columns,
    from_row,
    names,
    public,
    segments_of,
    to_row,
)

# What scripts and older sidecars rely on: keys may be added (`kind` came with fleets'
# roles snapshots, `tags` with version tags), never renamed or removed.
SNAPSHOT_JSON = {
    "id", "database", "dbname", "environment", "status", "source", "requested_by", "note",
    "started_at", "finished_at", "duration_s", "size_bytes", "raw_size_bytes", "sha256",
    "storage_key", "location", "server_version", "pg_dump_version", "compression",
    "encryption", "verified_at", "error", "pinned", "provider_snapshot", "kind", "tags",
}  # fmt: skip
SIDECAR = {
    "id", "database", "dbname", "environment", "requested_by", "note", "started_at",
    "server_version", "pg_dump_version", "size_bytes", "raw_size_bytes", "sha256",
    "toc_bytes", "toc_sha256", "compression", "encryption", "verified_at", "segments", "kind",
    "tags",
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
        snapshot_id="s",
        database="app",
        status=DrillStatus.PASSED,
        kept=True,
        checks=[CheckResult("users exist", True, "true", 0.01)],
        problems=["warning: x"],
    )
    row = to_row(drill)
    assert row["kept"] == 1 and isinstance(row["checks"], str)
    assert "kind" not in row and drill.kind == Kind.DRILL  # the table says which it is
    back = from_row(Drill, row)
    assert back == drill and isinstance(back.status, DrillStatus)


def test_a_refresh_is_a_restore_with_no_scratch_database() -> None:
    refresh = Restore(id="r", snapshot_id="s", database="app", status=DrillStatus.FAILED)
    row = to_row(refresh)
    assert refresh.kind == Kind.RESTORE and not isinstance(refresh, Drill)
    assert "scratch_db" not in row and "kept" not in row and "kind" not in row
    assert from_row(Restore, {**row, "kind": "restore", "kept": 0}) == refresh  # old columns
    with pytest.raises(TypeError):
        Restore(id="r", snapshot_id="s", database="app", kept=True)  # type: ignore[call-arg]


def test_public_output_keeps_flags_as_numbers_and_statuses_as_text() -> None:
    out = public(Snapshot(id="x", database="d", status=SnapshotStatus.OK, pinned=True))
    assert out["pinned"] == 1 and out["status"] == "ok" and type(out["status"]) is str


def test_a_status_only_a_newer_atlas_knows_is_kept_as_text() -> None:
    snap = from_row(Snapshot, {"id": "x", "database": "d", "status": "archived"})
    assert snap.status == "archived"


def test_unknown_columns_from_a_newer_catalog_are_ignored() -> None:
    assert from_row(Snapshot, {"id": "x", "database": "d", "shiny": 1}).id == "x"


def _segmented(rows: list[list[object]], size: int, raw: int) -> Snapshot:
    return Snapshot(id="s", database="d", segments=rows, size_bytes=size, raw_size_bytes=raw)


def test_segments_must_cover_the_artifact_without_gaps() -> None:
    sha = "a" * 64
    good = [[0, 0, 100, 0, 40, sha], [7, 100, 50, 40, 20, sha], [9, 150, 10, 60, 5, sha]]
    assert segments_of(_segmented(good, 65, 160)) == [
        Segment(0, 0, 100, 0, 40, sha),
        Segment(7, 100, 50, 40, 20, sha),
        Segment(9, 150, 10, 60, 5, sha),
    ]
    assert [s.pack() for s in segments_of(_segmented(good, 65, 160)) or []] == good
    broken = {
        "a gap in the artifact": [good[0], [7, 100, 50, 41, 19, sha], good[2]],
        "a gap in the plain dump": [good[0], [7, 101, 49, 40, 20, sha], good[2]],
        "no head": good[1:],
        "a short checksum": [good[0], [7, 100, 50, 40, 20, "abc"], good[2]],
        "a flag for a number": [good[0], [7, True, 50, 40, 20, sha], good[2]],
        "a negative size": [good[0], [7, 100, -1, 40, 20, sha], good[2]],
        "a row too short": [good[0], [7, 100, 50, 40], good[2]],
    }
    for why, rows in broken.items():
        assert segments_of(_segmented(rows, 65, 160)) is None, why
    assert segments_of(_segmented(good, 66, 160)) is None  # the artifact is longer
    assert segments_of(_segmented(good, 65, 161)) is None
    assert segments_of(Snapshot(id="s", database="d")) is None  # taken before segments


def test_each_kind_of_change_names_its_records_fields_with_their_types() -> None:
    """The typed changes mypy checks updates against say what the records say: a field
    added to a record and not to its change (or typed otherwise) fails here."""
    import dataclasses

    from bot.records import (
        Drill,
        DrillFields,
        Request,
        RequestFields,
        Snapshot,
        SnapshotFields,
        SnapshotResult,
    )

    def spelled(change: type) -> dict[str, str]:
        return {k: v.__forward_arg__ for k, v in change.__annotations__.items()}

    for record, change in (
        (Snapshot, SnapshotFields),
        (Drill, DrillFields),
        (Request, RequestFields),
    ):
        declared = {f.name: str(f.type) for f in dataclasses.fields(record) if f.name != "id"}
        assert spelled(change) == declared, record
    snapshot = spelled(SnapshotFields)
    result = spelled(SnapshotResult)
    assert "status" not in result and all(snapshot[k] == v for k, v in result.items())
