"""A server's databases, listed, selected and turned into targets; and which known ones
have gone. Listing needs only CONNECT on the database in the server's URL: pg_database is
readable by every role."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.config import DatabaseTarget, Server, check_urls, dbname_in
from bot.errors import AtlasError
from bot.pg import Conn

LIST = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"


@dataclass
class Scan:
    """What one listing of a server found."""

    server: str
    targets: dict[str, DatabaseTarget] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # databases it cannot take, and why
    gone: list[str] = field(default_factory=list)  # known target names no longer there
    error: str | None = None  # the server could not be listed


def _maintenance(url: str, setting: str) -> Conn:
    """A server's URL as a connection to the database it names, or to `postgres` when it
    names none (libpq would try one named after the user)."""
    conn = Conn.parse(url, setting)
    return conn if dbname_in(url) else conn.with_dbname("postgres")


def server_conn(server: Server) -> Conn:
    """Where the server's databases are listed and its roles dumped."""
    return _maintenance(server.url, server.url_setting)


def staging_server_conn(server: Server) -> Conn | None:
    """Where drills of the server's databases create their scratch databases: the staging
    URL's own database, which exists, unlike the one of the same name a refresh replaces."""
    if not server.staging_url:
        return None
    return _maintenance(server.staging_url, server.staging_setting)


def list_databases(server: Server) -> list[str]:
    """Every database on the server that accepts connections, templates aside."""
    with server_conn(server).connect(autocommit=True) as c:
        return [str(r[0]) for r in c.execute(LIST).fetchall()]


def _with_dbname(url: str, dbname: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=dbname)


def targets(server: Server, names: Iterable[str]) -> tuple[dict[str, DatabaseTarget], list[str]]:
    """The selected databases as targets: `prefix + name`, the server's URLs with the
    database swapped in (staging: the database of the same name on the staging server)."""
    out: dict[str, DatabaseTarget] = {}
    skipped = []
    for db in server.selection.select(names):
        try:
            target = DatabaseTarget(
                name=f"{server.prefix}{db}",
                url=_with_dbname(server.url, db),
                staging_url=_with_dbname(server.staging_url, db) if server.staging_url else None,
                environment=server.environment,
                checks=list(server.checks),
                url_setting=f"{server.url_setting} (database {db})",
                staging_setting=f"{server.staging_setting} (database {db})",
                server=server.name,
            )
        except ValueError:
            skipped.append(
                f"{db!r} on server {server.name}: its name is not usable as a storage key "
                "(letters, digits, '-', '_', '.'); rename it or exclude it"
            )
            continue
        check_urls(target)
        out[target.name] = target
    return out, skipped


def gone(
    server: Server, present: Iterable[str], kept: Iterable[str], others: Iterable[str]
) -> list[str]:
    """Target names with kept snapshots that this server's selection covers but that it no
    longer has. `others` are names that belong elsewhere (configured databases, other
    servers' prefixes) and are never this server's."""
    present_set, other_set = set(present), set(others)
    out = []
    for name in kept:
        if name in present_set or name in other_set:
            continue
        if any(name.startswith(p) for p in other_set if p.endswith(".")):
            continue
        if not name.startswith(server.prefix):
            continue
        db = name[len(server.prefix) :]
        if server.selection.matches(db):
            out.append(name)
    return sorted(out)


def scan(server: Server, kept: Iterable[str], others: Iterable[str]) -> Scan:
    """List the server and turn what it has into targets; a server that cannot be listed
    is a Scan with its error, so one unreachable server doesn't stop the others."""
    result = Scan(server=server.name)
    try:
        names = list_databases(server)
        result.targets, result.skipped = targets(server, names)
    except AtlasError as exc:
        result.error = str(exc)
        return result
    result.gone = gone(server, result.targets, kept, others)
    return result
