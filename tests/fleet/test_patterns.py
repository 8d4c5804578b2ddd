"""Which databases a selection takes: names, globs, `*`, and `!` exclusions that always win."""

from __future__ import annotations

import pytest

from bot.fleet.patterns import Selection

NAMES = ["postgres", "orders", "orders_test", "billing", "billing_archive", "Ledger"]


@pytest.mark.parametrize(
    ("patterns", "taken"),
    [
        (["*"], sorted(NAMES)),
        (["*", "!postgres"], sorted(set(NAMES) - {"postgres"})),
        (["orders*", "!*_test"], ["orders"]),
        (["billing", "orders"], ["billing", "orders"]),
        (["billing*", "!billing_archive", "billing"], ["billing"]),
        (["ledger"], []),  # case matters, as it does to PostgreSQL
        (["*_test", "!*"], []),
        (["bill?ng"], ["billing"]),
    ],
)
def test_selection_takes_what_its_patterns_say(patterns: list[str], taken: list[str]) -> None:
    assert Selection.parse(patterns).select(NAMES) == taken


def test_exclusions_can_come_from_their_own_list() -> None:
    sel = Selection.parse(["*"], exclude=["postgres", "*_archive"])
    assert sel.select(NAMES) == ["Ledger", "billing", "orders", "orders_test"]
    assert sel.describe() == "*, !postgres, !*_archive"


@pytest.mark.parametrize(
    ("patterns", "words"),
    [
        ([], "nothing is included"),
        (["!postgres"], "nothing is included"),
        (["a", ""], "empty"),
        (["!"], "empty"),
    ],
)
def test_a_selection_that_takes_nothing_or_is_mistyped_is_refused(
    patterns: list[str], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        Selection.parse(patterns)
