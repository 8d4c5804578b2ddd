"""The production guard: every restore path checks its target against production first,
by what the servers report about themselves, not by comparing URL strings."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bot.config import Settings
from bot.errors import AtlasError, Refused
from bot.pg import Conn


@dataclass(frozen=True)
class ServerIdentity:
    """What a server says about itself: enough to tell two databases apart."""

    system_id: str | None  # pg_control_system(); needs superuser or a grant
    started: str  # pg_postmaster_start_time(): unique per running cluster in practice
    db_oid: int
    dbname: str

    def same_database(self, other: ServerIdentity) -> bool:
        if (self.dbname, self.db_oid) != (other.dbname, other.db_oid):
            return False
        if self.system_id and other.system_id:
            return self.system_id == other.system_id
        return self.started == other.started

    def same_server(self, other: ServerIdentity) -> bool:
        if self.system_id and other.system_id:
            return self.system_id == other.system_id
        return self.started == other.started


def server_identity(conn: Conn) -> ServerIdentity:
    with conn.connect(autocommit=True) as c:
        row = c.execute(
            "SELECT current_database(), d.oid::bigint, pg_postmaster_start_time()::text "
            "FROM pg_database d WHERE d.datname = current_database()"
        ).fetchone()
        assert row is not None
        system_id = None
        with contextlib.suppress(psycopg.Error):
            sid = c.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
            system_id = str(sid[0]) if sid else None
    return ServerIdentity(system_id, str(row[2]), int(row[1]), str(row[0]))


def guard_not_production(
    production: Conn, target: Conn, *, known: ServerIdentity | None = None
) -> ServerIdentity:
    """Refuse when `target` is the production database, however its URL is spelled.

    Returns production's identity, which a second check in the same job may pass as
    `known`.
    """
    prod = known
    if prod is None:
        try:
            prod = server_identity(production)
        except AtlasError as exc:
            raise Refused(
                "Cannot prove the target is not production, because production is "
                f"unreachable: {exc}",
                "restores are refused until Atlas can compare the two servers",
            ) from None
    if server_identity(target).same_database(prod):
        raise Refused(
            f"Refusing to restore into {target.describe()}: it is the production database "
            f"({prod.dbname} on the same server).",
            "restores go to staging only; check STAGING_DATABASE_URL",
        )
    return prod


def guard_not_catalog(state: str | Path, target: Conn, what: str = "restore into") -> None:
    """Refuse when `target` is the PostgreSQL catalog Atlas records its work in (by server
    identity, like the production guard): a staging refresh there would wipe the record
    of every backup."""
    from bot.catalog import is_url

    if not is_url(state):
        return
    catalog = Conn.parse(str(state), "ATLAS_STATE")
    if server_identity(target).same_database(server_identity(catalog)):
        raise Refused(
            f"Refusing to {what} {target.describe()}: it is Atlas's own catalog (ATLAS_STATE).",
            "keep the catalog in a database of its own, one Atlas neither backs up nor "
            "restores into",
        )


def refuse_catalog_among_targets(settings: Settings) -> None:
    """At start-up: a PostgreSQL catalog must not be a database Atlas backs up or restores
    into. Targets that cannot be reached now are checked again when a restore runs."""
    from bot.catalog import is_url

    if not is_url(settings.state):
        return
    catalog = server_identity(Conn.parse(str(settings.state), "ATLAS_STATE"))
    seen: set[str] = set()
    for target in settings.databases.values():
        for url, setting, role in (
            (target.url, target.url_setting, "back up"),
            (target.staging_url, target.staging_setting, "restore into"),
        ):
            if not url or url in seen:
                continue
            seen.add(url)
            try:  # a target that cannot be parsed or reached now: its commands say why
                conn = Conn.parse(url, setting)
                found = server_identity(conn)
            except AtlasError:
                continue
            if found.same_database(catalog):
                raise Refused(
                    f"ATLAS_STATE is {conn.describe()}, a database Atlas would {role} "
                    f"({target.name}).",
                    "keep the catalog in a database of its own, e.g. "
                    "postgresql://atlas@HOST/atlas_catalog",
                )


def refuse_catalog_in_a_fleet(settings: Settings, url: str) -> None:
    """Before a catalog moves to `url`: refuse a database that a server's selection backs
    up. Fleet runs leave the catalog out, so that database would silently drop out of the
    backups; a catalog belongs in a database of its own."""
    catalog = server_identity(Conn.parse(url, "--to"))
    for server in settings.servers.values():
        try:
            found = server_identity(Conn.parse(server.url, server.url_setting))
        except AtlasError:
            continue  # unreachable now: its own runs say why
        if found.same_server(catalog) and server.selection.matches(catalog.dbname):
            raise Refused(
                f"{catalog.dbname} is on server {server.name}, whose selection "
                f"('{server.selection.describe()}') backs it up: as the catalog it would drop "
                "out of the backups.",
                f"use a database of its own the selection leaves out (add '!{catalog.dbname}' "
                "to it), or another server",
            )
