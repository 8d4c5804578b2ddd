"""Which catalog a test runs on. The suite runs its catalog-touching tests twice: on a
SQLite file under the test's tmp folder, and on PostgreSQL, where each test gets a fresh
schema owned by a role that owns nothing else, on a cluster of its own (so a fleet test
that discovers every database of its server never finds the catalog)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.pg import PgCluster, unique_name

SQLITE, POSTGRESQL = "sqlite", "postgresql"
ROLE, ROLE_PASSWORD, DATABASE = "atlas_catalog", "cat-pw-7c1d5e", "atlas_catalogs"

# the tests' own modules that touch no catalog run once
_state: dict[str, object] = {"backend": SQLITE, "server": None}
_urls: dict[Path, tuple[str, str]] = {}  # tmp: (schema, url)


class CatalogServer:
    """A PostgreSQL cluster that holds catalogs, one schema per test."""

    def __init__(self) -> None:
        self.cluster = PgCluster().start()
        with self.cluster.connect() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}'")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")

    def new_url(self) -> tuple[str, str]:
        schema = unique_name("c_")
        with self.cluster.connect(DATABASE) as conn:
            conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {ROLE}")
        return schema, self.url(schema)

    def empty(self, schema: str) -> None:
        with self.cluster.connect(DATABASE) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {ROLE}")

    def url(self, schema: str) -> str:
        return self.cluster.url(
            DATABASE, user=ROLE, password=ROLE_PASSWORD, options=f"-csearch_path={schema}"
        )

    def stop(self) -> None:
        self.cluster.stop()


def backend() -> str:
    return str(_state["backend"])


def state_for(tmp: Path) -> str:
    """ATLAS_STATE for a test: a SQLite file under `tmp`, or in the PostgreSQL run a URL
    of a fresh schema (the same one for the same `tmp`)."""
    if backend() == POSTGRESQL:
        server = _state["server"]
        assert isinstance(server, CatalogServer)
        if tmp not in _urls:
            _urls[tmp] = server.new_url()
        return _urls[tmp][1]
    return str(tmp / "atlas.db")


def lose_catalog(tmp: Path) -> None:
    """The catalog of `tmp` gone, as after a lost disk or a dropped database."""
    if backend() == POSTGRESQL:
        server = _state["server"]
        assert isinstance(server, CatalogServer)
        server.empty(_urls[tmp][0])
        return
    for path in tmp.glob("atlas.db*"):
        path.unlink()


def catalog_text(state: str | Path) -> str:
    """Everything a catalog stores, as text: for tests that no secret was written."""
    state = str(state)
    if state.startswith("postgresql://"):
        out = []
        with psycopg.connect(state, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchall()
            for (table,) in tables:
                rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()
                out += [r[0] for r in rows]
        return "\n".join(out)
    folder = Path(state).parent
    text = "".join(
        p.read_bytes().decode("latin-1") for p in folder.glob(Path(state).name + "*") if p.is_file()
    )
    # and the rows, should SQLite ever store a page other than as written
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(state)) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            text += "".join(str(r) for r in conn.execute(f'SELECT * FROM "{table}"'))
    return text


def audit_actions(state: str | Path) -> list[str]:
    """The audit log's actions, oldest first, read straight from the catalog (none yet if
    nothing has made it)."""
    state = str(state)
    try:
        if state.startswith("postgresql://"):
            with psycopg.connect(state, autocommit=True) as pconn:
                rows = pconn.execute("SELECT action FROM audit ORDER BY id").fetchall()
        else:
            if not Path(state).exists():
                return []
            with contextlib.closing(sqlite3.connect(state)) as conn:
                rows = conn.execute("SELECT action FROM audit ORDER BY id").fetchall()
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        return []
    return [str(r[0]) for r in rows]


@pytest.fixture(scope="session")
def catalog_server() -> Iterator[CatalogServer]:
    server = CatalogServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def catalog_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The catalog this test runs on (see the module docstring); SQLite unless the test
    was parametrized with the PostgreSQL run."""
    chosen = getattr(request, "param", SQLITE)
    _state["backend"] = chosen
    if chosen == POSTGRESQL:
        _state["server"] = request.getfixturevalue("catalog_server")
    try:
        yield chosen
    finally:
        _state["backend"] = SQLITE
        _urls.clear()
