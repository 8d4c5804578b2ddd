"""One refresh or undo of a database's staging at a time, across processes and replicas:
two refreshes that swapped one after the other dropped the staging the first kept, the
one an undo would have brought back."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from bot.catalog import Catalog
from bot.errors import Busy
from bot.owners import Heartbeat, owner_gone, owner_id

STAGING_LEASE = "staging:"  # staging:<database>


_here: set[str] = set()  # held by this process (its threads share one lease owner)
_here_lock = threading.Lock()


@contextlib.contextmanager
def staging_held(catalog: Catalog, database: str, ttl_s: float) -> Iterator[None]:
    """Hold `database`'s staging while the block runs, or raise Busy naming who does. A
    holder of this host that died is taken over at once; one elsewhere lapses after ttl."""
    with _here_lock:
        if database in _here:  # two approvals at once in one `serve`
            raise Busy(
                f"A refresh or undo of {database}'s staging is already running here: nothing "
                "was started.",
                "wait for it to finish (atlas drills shows it), then try again",
            )
        _here.add(database)
    try:
        with _leased(catalog, database, ttl_s):
            yield
    finally:
        with _here_lock:
            _here.discard(database)


@contextlib.contextmanager
def _leased(catalog: Catalog, database: str, ttl_s: float) -> Iterator[None]:
    """The lease in the catalog that other processes and replicas see."""
    name, owner = f"{STAGING_LEASE}{database}", owner_id()
    if not catalog.acquire_lease(name, owner, ttl_s):
        holder = catalog.lease_holder(name)
        if holder is not None and owner_gone(holder):
            catalog.release_lease(name, holder)
        if not catalog.acquire_lease(name, owner, ttl_s):
            raise Busy(
                f"A refresh or undo of {database}'s staging is already running "
                f"(process {holder or 'elsewhere'}): nothing was started.",
                "wait for it to finish (atlas drills shows it), then try again",
            )
    try:
        with Heartbeat(lambda: _renew(catalog, name, owner, ttl_s), ttl_s / 4):
            yield
    finally:
        with contextlib.suppress(Exception):  # it lapses by itself
            catalog.release_lease(name, owner)


def _renew(catalog: Catalog, name: str, owner: str, ttl_s: float) -> None:
    catalog.acquire_lease(name, owner, ttl_s)
