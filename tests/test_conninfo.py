"""Reading connection strings without libpq: what it reads must be what libpq reads, and
anything else is handed to libpq."""

from __future__ import annotations

import random

import pytest
from psycopg.conninfo import conninfo_to_dict

from bot import conninfo

SAME_AS_LIBPQ = [
    "postgresql://u:p%40ss@h:5433/db?sslmode=require&application_name=x",
    "postgres://h/db",
    "postgresql:///db?host=/tmp",
    "postgresql://[::1]:5432/d",
    "postgresql://u@h",
    "postgresql://",
    "postgresql://h:5432/d%2Fe",
    "postgresql://%75ser:pa%3Ass@db.example.com/app%20db?connect_timeout=3",
    "host=h port=5 dbname='a b' user=u password='x\\'y'",
    "dbname=x",
    "host=/var/run dbname=d",
    "  host = h   dbname=d  ",
    "",
]

LIBPQ_DECIDES = [
    "postgresql://u:p@ss@h/db",  # an unencoded '@' in the password
    "postgresql://h1,h2/db",  # several hosts
    "postgresql://u:pa/ss@h/db",  # an unencoded '/'
    "host='x",  # an unterminated quote
    "garbage",
    "mysql://x",
]


def _libpq(text: str) -> dict[str, str]:
    return {k: str(v) for k, v in conninfo_to_dict(text).items() if v is not None}


@pytest.mark.parametrize("text", SAME_AS_LIBPQ)
def test_reads_as_libpq_reads(text: str) -> None:
    assert conninfo.parse(text) == _libpq(text)


@pytest.mark.parametrize("text", LIBPQ_DECIDES)
def test_anything_unusual_is_left_to_libpq(text: str) -> None:
    with pytest.raises(ValueError):
        conninfo.parse(text)
    try:
        expected: dict[str, str] | None = _libpq(text)
    except Exception:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            conninfo.params(text)
    else:
        assert conninfo.params(text) == expected


def test_random_urls_never_read_differently_from_libpq() -> None:
    """Generated URLs with awkward characters: either the same reading, or none."""
    rng = random.Random(11)
    alphabet = "ab:/@?&=%#[],. '\\"
    for _ in range(5000):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        text = rng.choice(["postgresql://", "host=", "dbname="]) + junk
        try:
            mine = conninfo.parse(text)
        except ValueError:
            continue
        try:
            theirs = _libpq(text)
        except Exception:
            pytest.fail(f"read {text!r} that libpq rejects")
        assert mine == theirs, text


def test_address_fills_in_libpq_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)
    assert conninfo.address({}) == ("localhost", "5432", "")
    assert conninfo.address({"host": "/tmp", "user": "ann"}) == ("localhost", "5432", "ann")
    assert conninfo.address({"host": "DB.example", "port": "6543", "dbname": "app"}) == (
        "db.example",
        "6543",
        "app",
    )
