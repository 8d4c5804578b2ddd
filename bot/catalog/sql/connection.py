"""What the shared SQL needs of a backend: a connection for one statement or a few, and
a transaction in which changes that must not race are made."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from bot.catalog.sql.tables import Conflict, Database, NotFoundError

__all__ = ["Conflict", "Connection", "Database", "NotFoundError"]


class Connection(Protocol):
    """How a catalog backend hands out its database, for a statement or a transaction."""

    def db(self) -> AbstractContextManager[Database]:
        """A connection in autocommit: each statement stands alone."""
        ...

    def transaction(self) -> AbstractContextManager[Database]:
        """One transaction, committed when the block ends and rolled back if it raises.
        A unique index's refusal inside either surfaces as `Conflict`."""
        ...
