"""The catalog's PostgreSQL connections: a few kept open and shared, in autocommit, and
PostgreSQL's failures in words an operator can act on (never with the password)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors
from psycopg.pq import TransactionStatus

from bot.catalog.sql.tables import POSTGRESQL, Conflict, Database
from bot.errors import AtlasError, CatalogAway
from bot.pg import Conn, first_line
from bot.redaction import redact

APPLICATION = "atlas-catalog"
IDLE = TransactionStatus.IDLE
# A network that drops packets silently (no reset) must not hang a heartbeat or a fleet
# run forever waiting for a reply: the kernel gives up on a session whose peer stops
# answering keepalives, or whose sent bytes go unacknowledged, within about a minute.
ALIVE = {
    "keepalives": 1,
    "keepalives_idle": 20,
    "keepalives_interval": 5,
    "keepalives_count": 4,
    "tcp_user_timeout": 60_000,
}
# ... and the server ends a session whose replica vanished mid-transaction (its link cut
# silently, its host gone) within a minute, so the work queue's lock and a snapshot's row
# are not held for the two hours of the server's default keepalive. Catalog transactions
# last milliseconds; none waits on a person.
SERVER_SIDE = (
    "SET idle_in_transaction_session_timeout = '60s'; SET tcp_keepalives_idle = 20; "
    "SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 4"
)


class PostgresConnection:
    """A few sessions kept open for whichever thread needs one next (Slack handlers,
    scheduler jobs, heartbeats): a statement costs a round trip, not a login, and a
    replica holds at most MAX_IDLE idle sessions however many threads it has run."""

    MAX_IDLE = 4

    def __init__(self, url: str) -> None:
        self.target = Conn.parse(url, "ATLAS_STATE")
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def describe(self) -> str:
        return self.target.describe()

    def _take(self) -> psycopg.Connection:
        with self._lock:
            if self._pid != os.getpid():  # a forked child never shares its parent's sessions
                self._idle, self._pid = [], os.getpid()
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and not conn.broken:
                    return conn
        try:
            conn = self.target.connect(autocommit=True, application_name=APPLICATION, **ALIVE)
        except AtlasError as exc:
            raise CatalogAway(
                f"The catalog cannot be reached (ATLAS_STATE): {exc.message}",
                "check that server, the URL's credentials, and that the database exists",
            ) from None
        try:
            conn.execute(SERVER_SIDE)
        except psycopg.Error as exc:
            conn.close()
            raise self._error(exc, conn) from None
        return conn

    def _give_back(self, conn: psycopg.Connection) -> None:
        if not conn.closed and not conn.broken and conn.info.transaction_status == IDLE:
            with self._lock:
                if len(self._idle) < self.MAX_IDLE:
                    self._idle.append(conn)
                    return
        conn.close()

    @contextmanager
    def db(self) -> Iterator[Database]:
        conn = self._take()
        try:
            yield Database(conn, POSTGRESQL)
        except errors.UniqueViolation as exc:
            raise Conflict(first_line(str(exc))) from None
        except psycopg.Error as exc:
            raise self._error(exc, conn) from None
        finally:
            self._give_back(conn)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with self.db() as db, db.conn.transaction():
            yield db

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _error(self, exc: psycopg.Error, conn: psycopg.Connection) -> AtlasError:
        text = first_line(redact(str(exc), self.target.secrets))
        where = f"ATLAS_STATE={self.describe()}"
        if conn.broken or isinstance(exc, psycopg.OperationalError):
            return CatalogAway(
                f"The catalog's connection failed ({where}: {text}).",
                "check that the catalog's server is up; the next call connects again",
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
