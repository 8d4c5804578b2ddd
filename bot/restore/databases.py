"""Databases Atlas makes on the staging server and drops again: a drill's scratch
database, a refresh's new one, what a refresh kept."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from bot.errors import AtlasError
from bot.pg import Conn, first_line

log = logging.getLogger(__name__)


def create_database(server: Conn, name: str) -> None:
    with server.connect(autocommit=True) as c:
        try:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise AtlasError(
                f"Cannot create the scratch database {name} on {server.describe()}: "
                f"{first_line(str(exc))}",
                "the staging user needs CREATEDB",
            ) from None


def drop_database(server: Conn, name: str | None) -> str | None:
    """Drop a database Atlas made; None when it is gone, else why it is not.

    A staging role without superuser cannot use `WITH (FORCE)` while a session it may
    not signal is connected: an autovacuum worker, which a fresh restore attracts, or
    another role's session. So: end the role's own leftover sessions (pg_restore
    workers), then a plain DROP, which asks autovacuum to leave and waits for it; FORCE
    only as the last resort, for roles allowed to use it.
    """
    if not name:
        return None
    drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    try:
        with server.connect(autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND usename = current_user",
                [name],
            )
            try:
                c.execute(drop)  # the server waits up to 5 s for autovacuum to leave
                return None
            except psycopg.errors.ObjectInUse as exc:
                error = first_line(str(exc))
            try:
                c.execute(sql.SQL("{} WITH (FORCE)").format(drop))
                return None
            except psycopg.Error as exc:
                error = f"{error}; {first_line(str(exc))}"
    except (psycopg.Error, AtlasError) as exc:
        error = first_line(str(exc))
    log.error("could not drop database %s: %s", name, error)
    return error
