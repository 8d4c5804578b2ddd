"""The report's rules on plain values: expected snapshots and gaps, the achieved RPO,
quarters, and the three formats' handling of hostile text."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, datetime

import pytest

from bot.errors import AtlasError
from bot.proof import build, make, page, tabular
from bot.proof.gather import Scope
from bot.proof.records import Chain, DatabaseProof, Policy, Report, Rpo
from bot.records import (
    HAD_FAILED,
    CheckResult,
    Drill,
    DrillStatus,
    Restore,
    Snapshot,
    SnapshotStatus,
)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _snap(sid: str, when: str, status: SnapshotStatus = SnapshotStatus.OK, **more: str) -> Snapshot:
    return Snapshot(id=sid, database="app", started_at=_t(when).isoformat(), status=status, **more)


PRUNED_GOOD = {"sha256": "ab" * 32, "error": "pruned: older than 30 days"}
PRUNED_FAILED = {"error": f"pruned: older than 30 days{HAD_FAILED}pg_dump failed"}


def test_daily_schedule_gaps_name_the_failed_attempts_and_merge_missed_days():
    times = build.scheduled("0 3 * * *", "UTC", _t("2026-03-01"), _t("2026-03-08"))
    assert [t.day for t in times] == [1, 2, 3, 4, 5, 6, 7]
    snaps = [
        _snap("a", "2026-03-01T03:00:02"),
        _snap("b", "2026-03-02T03:00:02", SnapshotStatus.FAILED),
        _snap("c", "2026-03-02T15:00:00", SnapshotStatus.CORRUPT),  # found bad later
        _snap("d", "2026-03-05T10:00:00"),  # by hand, late: still covers the 5th
        _snap("e", "2026-03-06T03:00:02", SnapshotStatus.DELETED, **PRUNED_GOOD),
        # a failed attempt, pruned since: still no snapshot, never counted as one
        _snap("f", "2026-03-07T03:00:02", SnapshotStatus.DELETED, **PRUNED_FAILED),
    ]
    found = build.gaps(times, snaps, _t("2026-03-08"))
    assert [(g.start[:10], g.end[:10], g.missed, g.failed) for g in found] == [
        ("2026-03-02", "2026-03-05", 3, ["b", "c"]),
        ("2026-03-07", "2026-03-08", 1, ["f"]),
    ]


def test_a_schedule_in_a_timezone_fires_at_its_local_time():
    times = build.scheduled("0 2 * * *", "Europe/Berlin", _t("2026-07-01"), _t("2026-07-02"))
    assert [t.astimezone(UTC).hour for t in times] == [0]  # 02:00 CEST


def test_rpo_is_the_longest_time_without_a_good_snapshot():
    snaps = [
        _snap("a", "2026-01-05T00:00:00"),
        _snap("b", "2026-01-06T00:00:00", SnapshotStatus.FAILED),
        _snap("c", "2026-01-20T00:00:00"),
    ]
    since, until = _t("2026-01-01"), _t("2026-01-25")
    before = _snap("z", "2025-12-31T00:00:00")
    got = build.rpo(snaps, before, since, until)
    assert (got.seconds, got.start[:10], got.end[:10]) == (15 * 86400, "2026-01-05", "2026-01-20")
    # no snapshot before the window: counted from the first good one
    assert build.rpo(snaps, None, since, _t("2026-02-10")).start[:10] == "2026-01-20"
    # with one before it and none inside, the whole window is the gap
    assert build.rpo([], before, since, until).seconds == 24 * 86400
    assert build.rpo([snaps[1]], None, since, until) == Rpo(None, None, None)


def test_quarters_count_only_passed_drills_of_the_whole_database():
    def job(jid: str, when: str, status=DrillStatus.PASSED, **kw) -> Drill | Restore:
        record = Restore if kw.pop("refresh", False) else Drill
        return record(
            id=jid,
            snapshot_id="s",
            database="app",
            started_at=_t(when).isoformat(),
            status=status,
            **kw,
        )

    jobs = [
        job("d1", "2026-02-01", DrillStatus.FAILED),
        job("d2", "2026-03-31T23:00:00"),
        job("d3", "2026-05-01", tables=["public.users"]),  # some tables prove nothing whole
        job("u1", "2026-06-01", refresh=True, undo_of="r0"),  # an undo restores no snapshot
        job("r1", "2026-08-01", refresh=True),
    ]
    got = build.quarters(jobs, _t("2026-01-01"), _t("2026-10-02"), "UTC")
    assert [(q.quarter, q.job_id) for q in got] == [
        ("2026-Q1", "d2"),
        ("2026-Q2", None),
        ("2026-Q3", "r1"),
        ("2026-Q4", None),
    ]
    # in Tokyo, 23:00 UTC on 31 March is already April
    tokyo = build.quarters(jobs[:2], _t("2026-01-01"), _t("2026-06-30"), "Asia/Tokyo")
    assert [(q.quarter, q.job_id) for q in tokyo] == [("2026-Q1", None), ("2026-Q2", "d2")]


def test_a_job_line_measures_rto_and_the_row_comparison():
    snap = _snap("s", "2026-01-01T00:00:00")
    snap.manifest = {"tables": {"public.users": 10, "public.orders": 20}}
    slow = Drill(
        id="d",
        snapshot_id="s",
        database="app",
        status=DrillStatus.FAILED,
        total_s=400.0,
        verify_s=1.0,
        problems=["table public.orders has 19 rows, expected 20", "check 'x' failed: no"],
        checks=[CheckResult("x", False, "no", 0.1)],
    )
    line = build.job_line(slow, snap, 300)
    assert line.within_rto is None  # a failed drill proves no restore time
    assert (line.rows.rows, line.rows.tables, line.rows.verified) == (30, 2, True)
    assert line.rows.differences == ["table public.orders has 19 rows, expected 20"]
    slow.status, slow.problems = DrillStatus.PASSED, []
    assert build.job_line(slow, snap, 300).within_rto is False
    assert build.job_line(slow, snap, 600).within_rto is True


def _hostile_report() -> Report:
    evil = "<script>alert(1)</script>"
    snap = _snap("s<1>", "2026-01-01T00:00:00", "<img src=x onerror=alert(1)>")  # type: ignore[arg-type]
    snap.error, snap.tags = '=HYPERLINK("http://x")', {"app": evil}
    drill = Drill(id="d", snapshot_id="s<1>", database="app", requested_by="@here", error=evil)
    db = DatabaseProof(
        name="app<img src=x>",
        schedule=None,
        expected=None,
        taken=1,
        good=0,
        failed=1,
        gaps=[],
        rpo=Rpo(None, None, None),
        last_good_at=None,
        jobs=[build.job_line(drill, snap, 60)],
        quarters=[],
        snapshots=[build.snapshot_line(snap)],
    )
    policy = Policy(None, "UTC", 30, 0, 0, 0, "none", "/b", [], ["-cmd"], 1, "quarter", 3600)
    return Report(
        "2026-01-02T00:00:00+00:00",
        "2026-01-01",
        "2026-01-02",
        policy,
        Chain(None, 0, True, None),
        [db],
    )


def test_the_summary_counts_a_passed_refresh_as_its_last_drill():
    """README: a refresh of the whole database proves a restore as a drill does; the
    summary said "no drill" beside a quarter that the refresh proved."""
    refresh = Restore(id="r-1", snapshot_id="s", database="app", status=DrillStatus.PASSED)
    refresh.started_at, refresh.total_s = "2026-01-01T10:00:00+00:00", 12.0
    report = _hostile_report()
    db = dataclasses.replace(report.databases[0], jobs=[build.job_line(refresh, None, 60)])
    html = page.summary(dataclasses.replace(report, databases=[db]))
    assert "no drill" not in html and "passed</span> 2026-01-01" in html


def test_hostile_text_is_data_in_html_and_never_a_formula_in_csv():
    report = _hostile_report()
    html = page.render(report)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "app&lt;img src=x&gt;" in html
    rows = list(csv.DictReader(io.StringIO(tabular.to_csv(report))))
    cells = [v for r in rows for v in r.values() if v]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells), cells
    assert '\'=HYPERLINK("http://x")' in cells and "'@here" in cells


@pytest.mark.parametrize(
    ("since", "until", "said"),
    [
        ("2026-13-01", None, "--since '2026-13-01' is not a date"),
        ("yesterday", None, "--since 'yesterday' is not a date"),
        ("2026-06-01", "2026-05-01", "is not before --until"),
    ],
)
def test_a_mistyped_window_is_one_line_saying_what_to_give(since, until, said):
    with pytest.raises(AtlasError) as refused:
        make.scope(since, until, None, _t("2026-12-06"))
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_the_window_defaults_to_the_year_up_to_now_and_until_takes_the_whole_day():
    now = _t("2026-12-06T10:00:00")
    assert make.scope(None, None, None, now) == Scope(_t("2025-12-06T10:00:00"), now)
    assert make.scope("2026-01-01", "2026-01-31", "app", now) == Scope(
        _t("2026-01-01"), _t("2026-02-01"), "app"
    )
    assert make.format_of("proof.CSV", None) == "csv" and make.format_of("-", None) == "html"
    assert make.format_of("x.html", "json") == "json"
