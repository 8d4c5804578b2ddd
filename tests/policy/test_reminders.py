"""Drill reminders (bot.policy.reminders): pure date logic, so every case is a plain function call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.policy.reminders import DrillPolicy, Reminder, deadline, owed, parse_every, reminder_text

BERLIN = ZoneInfo("Europe/Berlin")
QUARTERLY = DrillPolicy()
Q3_DRILL = datetime(2026, 8, 10, 9, 30, tzinfo=UTC)  # passed last quarter, so Q4 is owed


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def simulate(
    policy: DrillPolicy,
    start: datetime,
    end: datetime,
    last_passed: Callable[[datetime], datetime | None],
    step: timedelta = timedelta(hours=6),
    sent: set[str] | None = None,
    since: datetime | None = None,
) -> list[tuple[datetime, Reminder]]:
    """Run the scheduler loop the bot would run: check, post, remember the key."""
    sent = set() if sent is None else sent
    posted: list[tuple[datetime, Reminder]] = []
    now = start
    while now <= end:
        rem = owed(policy, last_passed(now), now, sent, since=since)
        if rem is not None:
            assert rem.key not in sent
            sent.add(rem.key)
            posted.append((now, rem))
        now += step
    return posted


# -- deadline ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "key", "due"),
    [
        (utc(2026, 11, 24, 17, 32), "2026-Q4", utc(2027, 1, 1)),
        (utc(2026, 10, 1), "2026-Q4", utc(2027, 1, 1)),
        (utc(2026, 9, 30, 23, 59, 59), "2026-Q3", utc(2026, 10, 1)),
        (utc(2026, 12, 31, 23, 59, 59), "2026-Q4", utc(2027, 1, 1)),
        (utc(2027, 1, 1), "2027-Q1", utc(2027, 4, 1)),
        (utc(2027, 5, 15), "2027-Q2", utc(2027, 7, 1)),
    ],
)
def test_quarter_deadline_is_start_of_next_quarter(now: datetime, key: str, due: datetime) -> None:
    assert deadline(QUARTERLY, None, now) == (key, due)


def test_drill_passed_this_quarter_moves_obligation_to_next_quarter() -> None:
    passed = utc(2026, 11, 2, 10)
    assert deadline(QUARTERLY, passed, utc(2026, 11, 24)) == ("2027-Q1", utc(2027, 4, 1))
    # Last quarter's drill does not count for this quarter.
    assert deadline(QUARTERLY, Q3_DRILL, utc(2026, 11, 24)) == ("2026-Q4", utc(2027, 1, 1))


def test_missed_quarter_stays_owed_after_rollover() -> None:
    """A quarter without a drill is not forgiven on Jan 1: it is overdue until a drill passes."""
    assert deadline(QUARTERLY, Q3_DRILL, utc(2027, 1, 15)) == ("2026-Q4", utc(2027, 1, 1))
    assert deadline(QUARTERLY, Q3_DRILL, utc(2027, 6, 1)) == ("2026-Q4", utc(2027, 1, 1))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        deadline(QUARTERLY, None, datetime(2026, 11, 24))
    with pytest.raises(ValueError, match="timezone-aware"):
        owed(QUARTERLY, datetime(2026, 8, 1), utc(2026, 11, 24), set())


# -- thresholds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "key", "kind", "days_left"),
    [
        (utc(2026, 12, 17), "2026-Q4:lead-14", "lead", 14),
        (utc(2026, 12, 24), "2026-Q4:lead-7", "lead", 7),
        (utc(2026, 12, 31), "2026-Q4:last-day", "last_day", 0),
        (utc(2027, 1, 1), "2026-Q4:overdue-0", "overdue", -1),
        (utc(2027, 1, 8), "2026-Q4:overdue-1", "overdue", -8),
    ],
)
def test_thresholds_fire_exactly_on_their_day(
    at: datetime, key: str, kind: str, days_left: int
) -> None:
    before = owed(QUARTERLY, Q3_DRILL, at - timedelta(microseconds=1), set())
    assert before is None or before.key != key
    rem = owed(QUARTERLY, Q3_DRILL, at, set())
    assert rem == Reminder(key=key, kind=kind, days_left=days_left, deadline=utc(2027, 1, 1))
    assert owed(QUARTERLY, Q3_DRILL, at + timedelta(hours=23), {key}) is None


def test_nothing_owed_early_in_quarter() -> None:
    assert owed(QUARTERLY, Q3_DRILL, utc(2026, 12, 16, 23, 59), set()) is None


def test_each_key_posted_once_through_a_quarter() -> None:
    posted = simulate(QUARTERLY, utc(2026, 10, 1), utc(2027, 1, 25), lambda _: Q3_DRILL)
    assert [(now, rem.key) for now, rem in posted] == [
        (utc(2026, 12, 17), "2026-Q4:lead-14"),
        (utc(2026, 12, 24), "2026-Q4:lead-7"),
        (utc(2026, 12, 31), "2026-Q4:last-day"),
        (utc(2027, 1, 1), "2026-Q4:overdue-0"),
        (utc(2027, 1, 8), "2026-Q4:overdue-1"),
        (utc(2027, 1, 15), "2026-Q4:overdue-2"),
        (utc(2027, 1, 22), "2026-Q4:overdue-3"),
    ]


def test_drill_mid_quarter_silences_rest_of_quarter() -> None:
    drill_at = utc(2026, 12, 20, 14)

    def last_passed(now: datetime) -> datetime | None:
        return drill_at if now >= drill_at else None

    posted = simulate(QUARTERLY, utc(2026, 10, 1), utc(2027, 4, 20), last_passed)
    assert [(now, rem.key) for now, rem in posted] == [
        (utc(2026, 12, 17), "2026-Q4:lead-14"),
        (utc(2027, 3, 17), "2027-Q1:lead-14"),
        (utc(2027, 3, 24), "2027-Q1:lead-7"),
        (utc(2027, 3, 31), "2027-Q1:last-day"),
        (utc(2027, 4, 1), "2027-Q1:overdue-0"),
        (utc(2027, 4, 8), "2027-Q1:overdue-1"),
        (utc(2027, 4, 15), "2027-Q1:overdue-2"),
    ]


def test_clock_jump_forward_posts_only_the_latest_threshold() -> None:
    sent: set[str] = set()
    assert owed(QUARTERLY, Q3_DRILL, utc(2026, 12, 12), sent) is None  # 20 days before
    rem = owed(QUARTERLY, Q3_DRILL, utc(2026, 12, 30), sent)  # 2 days before
    assert rem is not None
    assert (rem.key, rem.days_left) == ("2026-Q4:lead-7", 1)
    sent.add(rem.key)
    later = simulate(
        QUARTERLY,
        utc(2026, 12, 30, 1),
        utc(2027, 1, 2),
        lambda _: Q3_DRILL,
        timedelta(hours=1),
        sent,
    )
    assert [rem.key for _, rem in later] == ["2026-Q4:last-day", "2026-Q4:overdue-0"]
    assert "2026-Q4:lead-14" not in sent  # superseded, never posted late


def test_downtime_across_deadline_posts_one_overdue() -> None:
    rem = owed(QUARTERLY, Q3_DRILL, utc(2027, 1, 10, 8), {"2026-Q4:lead-14"})
    assert rem is not None
    assert (rem.key, rem.kind, rem.days_left) == ("2026-Q4:overdue-1", "overdue", -10)


def test_clock_jump_backward_does_not_resend() -> None:
    sent: set[str] = set()
    posted = simulate(
        QUARTERLY, utc(2026, 12, 1), utc(2026, 12, 31, 6), lambda _: Q3_DRILL, sent=sent
    )
    assert [rem.key for _, rem in posted][-1] == "2026-Q4:last-day"
    for back in (utc(2026, 12, 25), utc(2026, 12, 18), utc(2026, 12, 1), utc(2026, 12, 31, 12)):
        assert owed(QUARTERLY, Q3_DRILL, back, sent) is None
    rem = owed(QUARTERLY, Q3_DRILL, utc(2027, 1, 1, 0, 5), sent)
    assert rem is not None
    assert rem.key == "2026-Q4:overdue-0"


# -- N-day mode --------------------------------------------------------------------------------


def test_every_30_days() -> None:
    policy = DrillPolicy(every=30)
    passed = utc(2026, 11, 10, 15)
    assert deadline(policy, passed, utc(2026, 11, 20)) == ("due-2026-12-10", utc(2026, 12, 10, 15))
    posted = simulate(policy, passed, utc(2026, 12, 25), lambda _: passed, timedelta(hours=1))
    assert [(now, rem.key, rem.days_left) for now, rem in posted] == [
        (utc(2026, 11, 26), "due-2026-12-10:lead-14", 14),
        (utc(2026, 12, 3), "due-2026-12-10:lead-7", 7),
        (utc(2026, 12, 10), "due-2026-12-10:last-day", 0),
        (utc(2026, 12, 10, 15), "due-2026-12-10:overdue-0", 0),
        (utc(2026, 12, 17, 15), "due-2026-12-10:overdue-1", -7),
        (utc(2026, 12, 24, 15), "due-2026-12-10:overdue-2", -14),
    ]


def test_every_n_days_new_drill_starts_new_period() -> None:
    policy = DrillPolicy(every="30")
    assert policy.every == 30
    first, second = utc(2026, 11, 10, 15), utc(2026, 12, 5, 9)
    assert owed(policy, first, utc(2026, 12, 4), set()) is not None
    assert owed(policy, second, utc(2026, 12, 6), set()) is None
    assert deadline(policy, second, utc(2026, 12, 6)) == ("due-2027-01-04", utc(2027, 1, 4, 9))


def test_short_interval_skips_leads_before_the_last_drill() -> None:
    """With every=10, 'due in 14 days' would fire right after a drill passed: moot, not posted."""
    policy = DrillPolicy(every=10)
    passed = utc(2026, 11, 10, 15)
    posted = simulate(policy, passed, utc(2026, 11, 20, 14), lambda _: passed, timedelta(hours=1))
    assert [rem.key for _, rem in posted] == ["due-2026-11-20:lead-7", "due-2026-11-20:last-day"]


def test_every_n_days_without_any_drill_is_due_now_and_nags_weekly() -> None:
    policy = DrillPolicy(every=30)
    key, due = deadline(policy, None, utc(2026, 11, 24, 12))
    assert due <= utc(2026, 11, 24, 12) < due + timedelta(days=7)
    assert key == f"due-{due.date().isoformat()}"
    posted = simulate(policy, utc(2026, 11, 24, 12), utc(2026, 12, 24, 11), lambda _: None)
    # Due at first sight, then once per 7-day grid block (blocks start on Thursdays: 1970-01-01).
    assert [(now, rem.kind) for now, rem in posted] == [
        (utc(2026, 11, 24, 12), "overdue"),
        (utc(2026, 11, 26), "overdue"),
        (utc(2026, 12, 3), "overdue"),
        (utc(2026, 12, 10), "overdue"),
        (utc(2026, 12, 17), "overdue"),
        (utc(2026, 12, 24), "overdue"),
    ]


# -- time zones --------------------------------------------------------------------------------


def test_berlin_shifts_quarter_boundaries() -> None:
    policy = DrillPolicy(tz=BERLIN)
    new_year_berlin = datetime(2027, 1, 1, tzinfo=BERLIN)
    assert new_year_berlin == utc(2026, 12, 31, 23)
    # 23:30 UTC on Dec 31 is already Q1 in Berlin but still Q4 in UTC.
    assert deadline(policy, None, utc(2026, 12, 31, 23, 30))[0] == "2027-Q1"
    assert deadline(QUARTERLY, None, utc(2026, 12, 31, 23, 30))[0] == "2026-Q4"
    assert deadline(policy, None, utc(2026, 12, 31, 22)) == ("2026-Q4", new_year_berlin)
    # A drill at 23:30 UTC on Sep 30 counts for Berlin's Q4, so Q1 is owed next.
    assert deadline(policy, utc(2026, 9, 30, 23, 30), utc(2026, 11, 1)) == (
        "2027-Q1",
        datetime(2027, 4, 1, tzinfo=BERLIN),
    )
    rem = owed(policy, Q3_DRILL, utc(2026, 12, 16, 23), set())
    assert rem is not None
    assert (rem.key, rem.days_left) == ("2026-Q4:lead-14", 14)
    assert owed(policy, Q3_DRILL, utc(2026, 12, 16, 22, 59), set()) is None


def test_berlin_overdue_repeats_stay_at_local_midnight_across_dst() -> None:
    policy = DrillPolicy(tz=BERLIN)
    last_q2 = datetime(2026, 5, 1, tzinfo=BERLIN)
    posted = simulate(
        policy, utc(2026, 9, 1), utc(2026, 11, 1), lambda _: last_q2, timedelta(hours=1)
    )
    overdue = [(now, rem.key) for now, rem in posted if rem.kind == "overdue"]
    assert overdue[0] == (utc(2026, 9, 30, 22), "2026-Q3:overdue-0")  # CEST midnight
    assert overdue[4] == (utc(2026, 10, 28, 23), "2026-Q3:overdue-4")  # CET midnight (after DST)
    assert all(now.astimezone(BERLIN).hour == 0 for now, _ in posted)


# -- parsing and policy validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"), [("quarter", "quarter"), (" Quarter ", "quarter"), ("30", 30), ("1", 1)]
)
def test_parse_every(text: str, value: str | int) -> None:
    assert parse_every(text) == value


@pytest.mark.parametrize(
    "text", ["", "0", "-5", "+3", "1.5", "30d", "monthly", "quarters", "99999"]
)
def test_parse_every_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="drill interval"):
        parse_every(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"every": 0},
        {"every": True},
        {"every": "weekly"},
        {"lead_days": (14, -1)},
        {"lead_days": (7, 7)},
        {"overdue_every_days": 0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DrillPolicy(**kwargs)  # type: ignore[arg-type]


# -- text --------------------------------------------------------------------------------------


def test_reminder_text_lead() -> None:
    rem = owed(QUARTERLY, Q3_DRILL, utc(2026, 12, 17, 9), set())
    assert rem is not None
    text = reminder_text(rem, Q3_DRILL, 125.0)
    assert "due in 14 days" in text
    assert "2026-Q4" in text
    assert "by the end of Thu 2026-12-31" in text
    assert "Mon 2026-08-10 09:30" in text
    assert "restore took 2 min 5 s" in text
    assert "`/atlas drill`" in text


def test_quarter_without_any_drill_has_no_carry_over() -> None:
    """No passed drill ever: nothing to carry over, so each quarter is judged on its own."""
    policy = DrillPolicy(tz=BERLIN)
    assert owed(policy, None, datetime(2027, 1, 3, 10, tzinfo=BERLIN), set()) is None
    rem = owed(policy, None, datetime(2026, 12, 31, 10, tzinfo=BERLIN), set())
    assert rem is not None
    assert rem.key == "2026-Q4:last-day"


def test_never_drilled_owes_the_quarter_of_the_first_snapshot_and_goes_overdue() -> None:
    """Backups since Q3 and no drill ever: Q3 stays owed, and is overdue from October on."""
    first = utc(2026, 9, 20, 3)
    posted = simulate(QUARTERLY, first, utc(2026, 10, 25), lambda _: None, since=first)
    assert [rem.key for _, rem in posted] == [
        "2026-Q3:lead-14",  # reached before the first check: the latest lead, once
        "2026-Q3:lead-7",
        "2026-Q3:last-day",
        "2026-Q3:overdue-0",
        "2026-Q3:overdue-1",
        "2026-Q3:overdue-2",
        "2026-Q3:overdue-3",
    ]
    assert posted[3][0] == utc(2026, 10, 1, 3)  # the first check of October
    # without the first snapshot's date each quarter stood alone: October stayed silent
    october = simulate(QUARTERLY, utc(2026, 10, 1), utc(2026, 10, 25), lambda _: None)
    assert october == []
    # the first passed drill (in Q4) ends it: Q4 is answered, Q1 is owed as usual
    passed = utc(2026, 10, 26, 9)
    assert deadline(QUARTERLY, passed, utc(2026, 10, 27), since=first) == (
        "2027-Q1",
        utc(2027, 4, 1),
    )
    assert owed(QUARTERLY, passed, utc(2026, 10, 29), set(), since=first) is None


def test_never_drilled_every_n_days_counts_from_the_first_snapshot() -> None:
    policy = DrillPolicy(every=30)
    first = utc(2026, 11, 1, 9)
    assert deadline(policy, None, utc(2026, 11, 2), since=first) == (
        "due-2026-12-01",
        utc(2026, 12, 1, 9),
    )
    posted = simulate(policy, first, utc(2026, 12, 16), lambda _: None, since=first)
    assert [(rem.key.split(":")[1], rem.kind) for _, rem in posted] == [
        ("lead-14", "lead"),
        ("lead-7", "lead"),
        ("last-day", "last_day"),
        ("overdue-0", "overdue"),
        ("overdue-1", "overdue"),
        ("overdue-2", "overdue"),
    ]
    assert posted[0][0] >= utc(2026, 11, 17)  # not nagged on day one


def test_reminder_text_overdue() -> None:
    policy = DrillPolicy(tz=BERLIN)
    rem = owed(policy, Q3_DRILL, datetime(2027, 1, 3, 10, tzinfo=BERLIN), set())
    assert rem is not None
    text = reminder_text(rem, Q3_DRILL, 42.0)
    assert "Restore drill for 2026-Q4 is overdue* (3 days late)" in text
    assert "by the end of Thu 2026-12-31 (CET)" in text
    assert "Mon 2026-08-10 11:30 CEST (restore took 42.0 s)" in text
    assert reminder_text(rem, None, None).splitlines()[1] == "No restore drill has passed yet."


def test_reminder_text_n_days_shows_exact_deadline() -> None:
    policy = DrillPolicy(every=30)
    passed = utc(2026, 11, 10, 15)
    rem = owed(policy, passed, utc(2026, 12, 10, 1), set())
    assert rem is not None
    assert rem.kind == "last_day"
    text = reminder_text(rem, passed, None)
    assert "Last day" in text
    assert "before Thu 2026-12-10 15:00 UTC" in text
    assert "restore took" not in text
