"""Pure unit tests for bot.policy.retention: no PostgreSQL, no S3, no Slack, no catalog."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bot.policy.retention import Decision, RetentionPolicy, plan, summary
from bot.records import Snapshot, SnapshotStatus

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def snap(
    snap_id: str,
    started: datetime | str,
    *,
    status: str = "ok",
    database: str = "app",
    environment: str = "production",
    pinned: int = 0,
) -> Snapshot:
    """A catalog record; started_at written the way the catalog writes it."""
    if isinstance(started, datetime):
        started = started.isoformat(timespec="milliseconds")
    return Snapshot(
        id=snap_id,
        database=database,
        environment=environment,
        status=SnapshotStatus(status) if status in set(SnapshotStatus) else status,  # type: ignore[arg-type]  # a status a newer Atlas might write
        started_at=started,
        pinned=bool(pinned),
        storage_key=f"{environment}/{database}/{snap_id}.dump.zst",
    )


def ago(days: float = 0, **kw: float) -> datetime:
    return NOW - timedelta(days=days, **kw)


def by_id(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.snapshot_id: d for d in decisions}


def kept(decisions: list[Decision]) -> set[str]:
    return {d.snapshot_id for d in decisions if d.keep}


# -- the never-delete rules ----------------------------------------------------------------


def test_newest_verified_kept_even_when_400_days_old() -> None:
    """Backups that stopped a year ago must still leave one good copy behind."""
    rows = [snap("old", ago(401)), snap("oldest", ago(500)), snap("new", ago(400))]
    got = by_id(plan(rows, RetentionPolicy(days=30), NOW))
    assert got["new"] == Decision("new", True, "newest verified snapshot of app/production")
    assert got["old"] == Decision("old", False, "older than 30 days")
    assert not got["oldest"].keep


def test_pinned_kept_whatever_its_age_or_status() -> None:
    rows = [
        snap("newest", ago(1)),
        snap("pinned-old", ago(300), pinned=1),
        snap("pinned-corrupt", ago(300), status="corrupt", pinned=1),
        snap("unpinned", ago(300), pinned=0),
    ]
    got = by_id(plan(rows, RetentionPolicy(), NOW))
    assert got["pinned-old"] == Decision("pinned-old", True, "pinned")
    assert got["pinned-corrupt"] == Decision("pinned-corrupt", True, "pinned")
    assert not got["unpinned"].keep


def test_protected_kept_with_its_reason() -> None:
    rows = [
        snap("newest", ago(1)),
        snap("drill-me", ago(200)),
        snap("failed", ago(2), status="failed"),
    ]
    protected = {
        "drill-me": "named by pending request req-7f3a",
        "failed": "named by pending request req-0001",
        "not-in-input": "ignored",
    }
    got = plan(rows, RetentionPolicy(), NOW, protected=protected)
    assert by_id(got)["drill-me"] == Decision("drill-me", True, "named by pending request req-7f3a")
    assert by_id(got)["failed"] == Decision("failed", True, "named by pending request req-0001")
    assert "not-in-input" not in by_id(got)


def test_protected_with_empty_reason_still_kept() -> None:
    rows = [snap("newest", ago(1)), snap("x", ago(200))]
    assert by_id(plan(rows, RetentionPolicy(), NOW, {"x": ""}))["x"] == Decision(
        "x", True, "protected"
    )


# -- the age window ------------------------------------------------------------------------


def test_thirty_day_window_boundary() -> None:
    """'Younger than 30 days' is strict: exactly 30 days old is out, a second younger is in."""
    rows = [
        snap("newest", ago(0, hours=1)),
        snap("inside", ago(30) + timedelta(seconds=1)),
        snap("edge", ago(30)),
        snap("outside", ago(30, seconds=1)),
    ]
    got = by_id(plan(rows, RetentionPolicy(days=30), NOW))
    assert got["inside"] == Decision("inside", True, "within 30 days")
    assert got["edge"] == Decision("edge", False, "older than 30 days")
    assert got["outside"] == Decision("outside", False, "older than 30 days")


def test_window_uses_policy_days_in_reason() -> None:
    rows = [snap("a", ago(0, hours=2)), snap("b", ago(0, hours=3)), snap("c", ago(2))]
    got = by_id(plan(rows, RetentionPolicy(days=1), NOW))
    assert got["b"] == Decision("b", True, "within 1 day")
    assert got["c"] == Decision("c", False, "older than 1 day")


def test_timestamps_read_in_utc_whatever_their_offset() -> None:
    """Offsets are converted, and naive or 'Z' timestamps are taken as UTC, like the catalog's."""
    rows = [
        snap("newest", ago(0, hours=1)),
        # 2026-10-25T23:30-02:00 is 2026-10-26T01:30Z: 29.4 days before NOW, inside the window.
        snap("offset", "2026-10-25T23:30:00-02:00"),
        snap("naive", "2026-10-26T00:00:00"),
        snap("zulu", "2026-10-24T00:00:00Z"),
    ]
    got = by_id(plan(rows, RetentionPolicy(days=30), NOW.replace(tzinfo=None)))
    assert got["offset"].keep and got["naive"].keep
    assert not got["zulu"].keep


def test_unreadable_start_time_is_kept_not_guessed() -> None:
    rows = [
        snap("newest", ago(1)),
        snap("weird", "yesterday-ish"),
        dataclasses.replace(snap("none", ago(1)), started_at=None),
    ]
    got = by_id(plan(rows, RetentionPolicy(), NOW))
    assert got["weird"].keep and "unreadable" in got["weird"].reason
    assert got["none"].keep
    assert got["newest"].reason.startswith("newest verified")


# -- grandfather-father-son -----------------------------------------------------------------


def ninety_dailies() -> list[Snapshot]:
    """One ok snapshot at 02:00 UTC on each day from 2026-08-27 to 2026-11-24 (90 days)."""
    first = date(2026, 8, 27)
    rows = []
    for i in range(90):
        day = first + timedelta(days=i)
        rows.append(snap(day.isoformat(), datetime(day.year, day.month, day.day, 2, tzinfo=UTC)))
    assert rows[-1].id == "2026-11-24"
    return rows


def test_gfs_picks_from_ninety_dailies() -> None:
    policy = RetentionPolicy(days=1, keep_daily=7, keep_weekly=4, keep_monthly=3)
    decisions = plan(ninety_dailies(), policy, NOW)
    got = by_id(decisions)
    daily = {f"2026-11-{d}" for d in range(18, 25)}  # 7 newest days, Wed 18th .. Tue 24th
    weekly = {"2026-11-24", "2026-11-22", "2026-11-15", "2026-11-08"}  # W48 (so far), W47..W45
    monthly = {"2026-11-24", "2026-10-31", "2026-09-30"}
    assert kept(decisions) == daily | weekly | monthly
    assert len(kept(decisions)) == 11
    assert summary(decisions) == {"kept": 11, "pruned": 79}
    # The first reason that applies is given: newest, then daily, then weekly, then monthly.
    assert got["2026-11-24"].reason == "newest verified snapshot of app/production"
    assert got["2026-11-20"].reason == "daily keep 2026-11-20"
    assert got["2026-11-22"].reason == "daily keep 2026-11-22"
    assert got["2026-11-15"].reason == "weekly keep 2026-W46"
    assert got["2026-11-08"].reason == "weekly keep 2026-W45"
    assert got["2026-10-31"].reason == "monthly keep 2026-10"
    assert got["2026-09-30"].reason == "monthly keep 2026-09"
    assert got["2026-11-17"] == Decision("2026-11-17", False, "older than 1 day")
    assert not got["2026-08-31"].keep  # August would be a fourth month


def test_gfs_with_nothing_configured_keeps_only_window_and_newest() -> None:
    decisions = plan(ninety_dailies(), RetentionPolicy(days=7), NOW)
    assert kept(decisions) == {f"2026-11-{d}" for d in range(18, 25)}


def test_gfs_newest_of_the_day_and_gaps_skipped() -> None:
    """Several snapshots a day: the day's newest is its pick. Days without one do not count."""
    rows = [
        snap("d1-early", datetime(2026, 6, 1, 1, tzinfo=UTC)),
        snap("d1-late", datetime(2026, 6, 1, 23, tzinfo=UTC)),
        snap("d2-early", datetime(2026, 3, 10, 8, tzinfo=UTC)),
        snap("d2-late", datetime(2026, 3, 10, 9, tzinfo=UTC)),
        snap("d3", datetime(2026, 1, 5, 9, tzinfo=UTC)),
        snap("d2-failed", datetime(2026, 3, 10, 10, tzinfo=UTC), status="failed"),
    ]
    got = by_id(plan(rows, RetentionPolicy(days=30, keep_daily=2), NOW))
    assert got["d1-late"].reason.startswith("newest verified")
    assert got["d2-late"] == Decision("d2-late", True, "daily keep 2026-03-10")
    assert kept(list(got.values())) == {"d1-late", "d2-late"}
    assert got["d2-failed"] == Decision(
        "d2-failed", False, "failed snapshot, no artifact to restore"
    )


def test_gfs_iso_week_spans_new_year() -> None:
    """2026-01-01 (Thu) belongs to ISO week 2026-W01, but 2025-12-29 (Mon) does too."""
    rows = [
        snap("jan1", datetime(2026, 1, 1, 3, tzinfo=UTC)),
        snap("dec29", datetime(2025, 12, 29, 3, tzinfo=UTC)),
        snap("dec28", datetime(2025, 12, 28, 3, tzinfo=UTC)),
        snap("newest", ago(0, hours=1)),
    ]
    got = by_id(plan(rows, RetentionPolicy(days=30, keep_weekly=3), NOW))
    assert got["jan1"] == Decision("jan1", True, "weekly keep 2026-W01")
    assert not got["dec29"].keep
    assert got["dec28"] == Decision("dec28", True, "weekly keep 2025-W52")


def test_gfs_buckets_in_utc() -> None:
    """23:30 at -02:00 on the 20th is the 21st in UTC, so it shares the 21st's daily bucket."""
    rows = [
        snap("newest", ago(0, hours=1)),
        snap("utc-21st", "2026-06-21T00:30:00+00:00"),
        snap("late-20th-local", "2026-06-20T23:30:00-02:00"),
        snap("20th", "2026-06-20T12:00:00+00:00"),
    ]
    got = by_id(plan(rows, RetentionPolicy(days=30, keep_daily=3), NOW))
    assert got["late-20th-local"] == Decision("late-20th-local", True, "daily keep 2026-06-21")
    assert not got["utc-21st"].keep
    assert got["20th"] == Decision("20th", True, "daily keep 2026-06-20")


def test_gfs_ignores_non_ok_rows() -> None:
    """A corrupt or failed row cannot be a day's pick, and does not use up a bucket."""
    rows = [
        snap("newest", ago(0, hours=1)),
        snap("corrupt", datetime(2026, 5, 2, 10, tzinfo=UTC), status="corrupt"),
        snap("ok-same-day", datetime(2026, 5, 2, 9, tzinfo=UTC)),
        snap("ok-older", datetime(2026, 4, 1, 9, tzinfo=UTC)),
    ]
    got = by_id(plan(rows, RetentionPolicy(days=30, keep_daily=3), NOW))
    assert got["ok-same-day"] == Decision("ok-same-day", True, "daily keep 2026-05-02")
    assert got["ok-older"].keep
    assert not got["corrupt"].keep


# -- statuses --------------------------------------------------------------------------------


def test_failed_and_interrupted_rows_pruned_old_or_recent_corrupt_ones_kept_in_the_window() -> None:
    """Failed and interrupted rows have no artifact, so the age window does not save them;
    a corrupt one's good blocks may still be needed, so the window keeps it."""
    rows = [
        snap("newest", ago(0, hours=1)),
        snap("failed-old", ago(90), status="failed"),
        snap("failed-new", ago(1), status="failed"),
        snap("interrupted", ago(40), status="interrupted"),
        snap("corrupt", ago(2), status="corrupt"),
    ]
    got = by_id(plan(rows, RetentionPolicy(days=30, keep_daily=30), NOW))
    assert got["failed-old"] == Decision(
        "failed-old", False, "failed snapshot, no artifact to restore"
    )
    assert not got["failed-new"].keep
    assert got["interrupted"] == Decision(
        "interrupted", False, "interrupted snapshot, no artifact to restore"
    )
    assert got["corrupt"].keep and "may be all that is left" in got["corrupt"].reason


def test_a_corrupt_snapshot_is_never_counted_as_good() -> None:
    rows = [snap("corrupt", ago(0, hours=1), status="corrupt"), snap("good", ago(40))]
    got = by_id(plan(rows, RetentionPolicy(days=30), NOW))
    assert got["good"].reason.startswith("newest verified snapshot")  # the old good one
    assert got["corrupt"].keep and got["corrupt"].reason.startswith("corrupt (does not verify)")


def test_the_last_artifact_of_a_database_is_kept_even_when_corrupt_and_old() -> None:
    rows = [
        snap("only", ago(100), status="corrupt"),
        snap("older", ago(200), status="corrupt"),
        snap("failed", ago(1), status="failed"),
    ]
    got = by_id(plan(rows, RetentionPolicy(days=30), NOW))
    assert got["only"].keep and "the last artifact of" in got["only"].reason
    assert not got["older"].keep and got["older"].reason.startswith("corrupt snapshot older")
    assert not got["failed"].keep
    # once a good snapshot exists, an old corrupt one goes the way of any old snapshot
    got = by_id(plan([*rows, snap("good", ago(0, hours=1))], RetentionPolicy(days=30), NOW))
    assert not got["only"].keep


def test_running_deleted_and_unknown_statuses_never_listed() -> None:
    rows = [
        snap("running", ago(500), status="running"),
        snap("deleted", ago(500), status="deleted"),
        snap("mystery", ago(500), status="something-new"),
        snap("ok", ago(500)),
        snap("failed", ago(500), status="failed"),
    ]
    decisions = plan(rows, RetentionPolicy(), NOW)
    assert [d.snapshot_id for d in decisions] == ["ok", "failed"]  # input order kept


def test_running_row_is_not_the_newest_verified() -> None:
    rows = [snap("running", ago(0), status="running"), snap("ok", ago(100))]
    assert plan(rows, RetentionPolicy(), NOW) == [
        Decision("ok", True, "newest verified snapshot of app/production")
    ]


def test_corrupt_newest_does_not_count_as_newest_verified() -> None:
    rows = [
        snap("corrupt", ago(100), status="corrupt"),
        snap("ok-newer", ago(200)),
        snap("ok-older", ago(300)),
    ]
    got = by_id(plan(rows, RetentionPolicy(), NOW))
    assert not got["corrupt"].keep
    assert got["ok-newer"] == Decision(
        "ok-newer", True, "newest verified snapshot of app/production"
    )
    assert not got["ok-older"].keep


def test_group_with_no_ok_snapshot_keeps_only_its_last_artifact() -> None:
    rows = [snap("f", ago(1), status="failed"), snap("c", ago(200), status="corrupt")]
    assert summary(plan(rows, RetentionPolicy(), NOW)) == {"kept": 1, "pruned": 1}


# -- independence ----------------------------------------------------------------------------


def test_databases_and_environments_are_independent() -> None:
    rows = []
    for database in ("app", "billing"):
        for environment in ("production", "staging"):
            for age in (100, 200, 300):
                rows.append(
                    snap(
                        f"{database}-{environment}-{age}",
                        ago(age),
                        database=database,
                        environment=environment,
                    )
                )
    # A fresh production app snapshot must not make the other three groups' newest prunable.
    rows.append(snap("app-production-fresh", ago(0, hours=1)))
    got = by_id(plan(rows, RetentionPolicy(days=30, keep_monthly=2), NOW))
    assert got["app-production-fresh"].reason == "newest verified snapshot of app/production"
    assert got["app-production-100"] == Decision("app-production-100", True, "monthly keep 2026-08")
    assert not got["app-production-200"].keep
    for group in ("app-staging", "billing-production", "billing-staging"):
        database, environment = group.split("-")
        assert got[f"{group}-100"] == Decision(
            f"{group}-100", True, f"newest verified snapshot of {database}/{environment}"
        )
        assert got[f"{group}-200"].reason == f"monthly keep {ago(200):%Y-%m}"
        assert not got[f"{group}-300"].keep


# -- policy, purity, summary -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days": 0},
        {"days": -5},
        {"keep_daily": -1},
        {"keep_weekly": -1},
        {"keep_monthly": -2},
        {"days": 1.5},
        {"keep_daily": True},
        {"days": "30"},
    ],
)
def test_invalid_policy_raises(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(**kwargs)


def test_policy_defaults_and_frozen() -> None:
    policy = RetentionPolicy()
    assert (policy.days, policy.keep_daily, policy.keep_weekly, policy.keep_monthly) == (
        30,
        0,
        0,
        0,
    )
    with pytest.raises(AttributeError):
        policy.days = 1  # type: ignore[misc]


def test_plan_does_not_modify_its_input() -> None:
    rows = ninety_dailies()
    before = copy.deepcopy(rows)
    protected = {"2026-09-01": "named by pending request req-1"}
    plan(rows, RetentionPolicy(days=7, keep_weekly=2), NOW, protected)
    assert rows == before
    assert protected == {"2026-09-01": "named by pending request req-1"}


def test_plan_of_nothing_is_empty() -> None:
    assert plan([], RetentionPolicy(), NOW) == []
    assert summary([]) == {"kept": 0, "pruned": 0}


def test_summary_counts() -> None:
    decisions = [
        Decision("a", True, "pinned"),
        Decision("b", False, "x"),
        Decision("c", False, "y"),
    ]
    assert summary(decisions) == {"kept": 1, "pruned": 2}
    assert summary(iter(decisions)) == {"kept": 1, "pruned": 2}
