"""A server's drill rotation: one drill per period for the server, each database yearly,
the one whose year runs out first drilled next."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.policy.reminders import DrillPolicy
from bot.policy.rotation import Member, plan

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
QUARTERLY = DrillPolicy()


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def test_any_drill_answers_the_server_and_the_oldest_year_goes_next() -> None:
    members = [
        Member(
            "a", None, at(2026, 10, 1)
        ),  # never drilled: its year counts from its first snapshot
        Member("b", at(2026, 11, 1), at(2025, 1, 1)),
        Member("c", at(2025, 12, 15), at(2025, 1, 1)),  # its year runs out first
    ]
    r = plan(QUARTERLY, members, NOW)
    assert r.server_last == at(2026, 11, 1)
    assert (r.server_period, r.server_due) == ("2027-Q1", at(2027, 4, 1))  # b answered Q4
    assert r.next == "c"
    assert r.due == {
        "a": at(2027, 10, 1),
        "b": at(2027, 11, 1),
        "c": at(2026, 12, 15),  # the sooner of its year and the server's period
    }


def test_the_server_period_binds_the_next_database_when_it_comes_first() -> None:
    members = [Member("a", None, at(2026, 11, 1)), Member("b", None, at(2026, 11, 20))]
    r = plan(QUARTERLY, members, NOW)
    assert (r.server_period, r.server_due) == ("2026-Q4", at(2027, 1, 1))  # owed since Nov 1
    assert r.next == "a"
    assert r.due["a"] == at(2027, 1, 1) and r.due["b"] == at(2027, 11, 20)


def test_ties_go_by_name_and_an_empty_server_has_nothing_next() -> None:
    members = [Member("b", None, at(2026, 11, 1)), Member("a", None, at(2026, 11, 1))]
    assert plan(QUARTERLY, members, NOW).next == "a"
    assert plan(QUARTERLY, [], NOW).next is None
