"""The catalog's PostgreSQL connections: one per thread, kept open, in autocommit, and
PostgreSQL's failures in words an operator can act on (never with the password)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors

from bot.catalog.sql.tables import POSTGRESQL, Conflict, Database
from bot.errors import AtlasError
from bot.pg import Conn, first_line, redact

APPLICATION = "atlas-catalog"


class PostgresConnection:
    """Every thread of a replica (Slack handlers, scheduler jobs) gets its own session,
    reused across calls: a statement costs a round trip, not a login."""

    def __init__(self, url: str) -> None:
        self.target = Conn.parse(url, "ATLAS_STATE")
        self._local = threading.local()

    def describe(self) -> str:
        return self.target.describe()

    def _session(self) -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken or self._local.pid != os.getpid():
            try:
                conn = self.target.connect(autocommit=True, application_name=APPLICATION)
            except AtlasError as exc:
                raise AtlasError(
                    f"The catalog cannot be reached (ATLAS_STATE): {exc.message}",
                    "check that server, the URL's credentials, and that the database exists",
                ) from None
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def db(self) -> Iterator[Database]:
        conn = self._session()
        try:
            yield Database(conn, POSTGRESQL)
        except errors.UniqueViolation as exc:
            raise Conflict(first_line(str(exc))) from None
        except psycopg.Error as exc:
            raise self._error(exc, conn) from None

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with self.db() as db, db.conn.transaction():
            yield db

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _error(self, exc: psycopg.Error, conn: psycopg.Connection) -> AtlasError:
        text = first_line(redact(str(exc), self.target.secrets))
        where = f"ATLAS_STATE={self.describe()}"
        if conn.broken or isinstance(exc, psycopg.OperationalError):
            self._local.conn = None  # the next call reconnects
            return AtlasError(
                f"The catalog's connection failed ({where}: {text}).",
                "check that the catalog's server is up; Atlas reconnects on the next call",
            )
        if isinstance(exc, errors.DiskFull):
            return AtlasError(
                f"The catalog's disk is full ({where}: {text}); nothing more can be recorded.",
                "free space on that server's disk",
            )
        if isinstance(exc, errors.InsufficientPrivilege | errors.ReadOnlySqlTransaction):
            return AtlasError(
                f"The catalog cannot be written ({where}: {text}).",
                "give the role in ATLAS_STATE ownership of the catalog's database "
                "(README: Privileges), or point it at the primary, not a standby",
            )
        return AtlasError(f"The catalog failed ({where}: {text}).")
