"""One SQLite file: short-lived connections, `BEGIN IMMEDIATE` for
changes that must not race, and SQLite's failures in words an operator can act on.

Each call opens its own connection, so threads and several processes (`atlas serve`
beside an `atlas snapshot` in a deploy) share the file safely.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot import files
from bot.catalog.sql.tables import SQLITE, Conflict, Database, NotFoundError
from bot.errors import AtlasError

__all__ = ["Conflict", "Database", "NotFoundError", "SqliteConnection"]


class SqliteConnection:
    """Opens the file per call; a unique index's refusal becomes `Conflict`, which callers
    turn into their own answer (Busy, a known id), and every other SQLite error an
    AtlasError (but for other integrity errors, such as the audit log's trigger)."""

    def __init__(self, path: str | Path, access: files.Access = files.PRIVATE) -> None:
        self.path = Path(path)
        try:
            files.make_dirs(self.path.parent, access)
            if not os.path.lexists(self.path):
                with contextlib.suppress(FileExistsError):  # another process made it
                    files.create(self.path, access).close()  # private before SQLite opens it
        except OSError as exc:
            raise AtlasError(
                f"The catalog cannot be written (ATLAS_STATE={self.path}: {exc.strerror or exc}).",
                "make its folder writable for the user Atlas runs as, or point ATLAS_STATE "
                "at a writable place",
            ) from None
        # SQLite opens these by name and follows links: none may be another user's link
        files.refuse_foreign_links(
            *(self.path.with_name(self.path.name + end) for end in ("", "-wal", "-shm", "-journal"))
        )

    @contextmanager
    def db(self) -> Iterator[Database]:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            yield Database(conn, SQLITE)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise Conflict(str(exc)) from None
            raise
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with self.db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _error(self, exc: sqlite3.Error) -> AtlasError:
        text = str(exc)
        where = f"ATLAS_STATE={self.path}"
        if "disk is full" in text or "disk I/O error" in text:
            return AtlasError(
                f"The catalog's disk is full ({where}: {text}); nothing more can be recorded.",
                "free space on that disk, or move ATLAS_STATE to a larger one",
            )
        if "readonly" in text or "unable to open" in text:
            return AtlasError(
                f"The catalog cannot be written ({where}: {text}).",
                "make the file and its folder writable for the user Atlas runs as, "
                "or point ATLAS_STATE elsewhere",
            )
        if "not a database" in text:
            return AtlasError(
                f"{where} is not an Atlas catalog ({text}).",
                "point ATLAS_STATE at the catalog file, or at a new path to start one",
            )
        if "locked" in text:
            return AtlasError(
                f"The catalog stayed locked for 30 s ({where}).",
                "another Atlas process holds it; try again",
            )
        return AtlasError(f"The catalog failed ({where}: {text}).")
