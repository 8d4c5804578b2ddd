"""What a dump contains, compared with what a restore produced."""

from __future__ import annotations

import psycopg

from bot.backup import manifest
from tests.support.pg import fill_realistic

EXPECTED = {
    "tables": {"public.users": 3, "public.orders": 6},
    "sequences": {"public.s": {"last_value": 9, "is_called": True}},
    "extensions": {"plpgsql": "1.0", "citext": "1.6"},
}


def test_equal_manifests_have_no_problems() -> None:
    assert manifest.compare(EXPECTED, EXPECTED) == []


def test_every_difference_is_named_in_plain_words() -> None:
    actual = {
        "tables": {"public.users": 2, "public.extra": 1},
        "sequences": {"public.s": {"last_value": 3, "is_called": True}},
        "extensions": {"plpgsql": "1.0"},
    }
    assert manifest.compare(EXPECTED, actual) == [
        "table public.orders is missing",
        "table public.extra is unexpected",
        "table public.users has 2 rows, expected 3",
        "sequence public.s is at {'last_value': 3, 'is_called': True}, expected "
        "{'last_value': 9, 'is_called': True}",
        "extension citext is missing",
    ]


def test_collect_counts_every_table_of_every_schema(pg_url: str) -> None:
    expected = fill_realistic(pg_url)
    with psycopg.connect(pg_url) as conn:
        found = manifest.collect(conn)
    assert found["tables"] == expected
    assert found["sequences"]["billing.invoice_number"]["last_value"] == 1000 + 4 * 200
    assert "plpgsql" in found["extensions"]
