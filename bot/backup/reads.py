"""Reads of a stored snapshot that no job records (`verify`, `fetch`) hold a lease in the
catalog while they run, so that retention keeps the snapshot until they end. A lease of a
process that died lapses after ATLAS's stale period."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from bot.catalog import Catalog
from bot.owners import Heartbeat, owner_id

READ_LEASE = "read:"  # read:<copy, or empty for ATLAS_STORAGE>:<snapshot id>:<owner>:<token>


@contextlib.contextmanager
def lease(catalog: Catalog, snap_id: str, copy: str | None, ttl_s: float) -> Iterator[None]:
    """Hold `snap_id` (in `copy`, or ATLAS_STORAGE) against retention while the block runs."""
    owner = owner_id()
    name = f"{READ_LEASE}{copy or ''}:{snap_id}:{owner}:{secrets.token_hex(3)}"

    def renew() -> None:
        catalog.acquire_lease(name, owner, ttl_s)

    renew()
    try:
        with Heartbeat(renew, ttl_s / 4):
            yield
    finally:
        with contextlib.suppress(Exception):  # it lapses by itself
            catalog.release_lease(name, owner)


def leased(catalog: Catalog, copy: str | None) -> set[str]:
    """Ids of the snapshots read now from `copy` (None: ATLAS_STORAGE) under a lease."""
    found = set()
    for name in catalog.live_leases(READ_LEASE):
        where, _, rest = name.removeprefix(READ_LEASE).partition(":")
        if where == (copy or ""):
            found.add(rest.partition(":")[0])
    return found
