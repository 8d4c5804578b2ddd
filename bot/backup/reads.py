"""What is being read, for retention to keep. Reads that no job records (`verify`,
`fetch`) hold a lease in the catalog while they run; a lease of a process that died lapses
after the stale period."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from bot.catalog import Catalog
from bot.owners import Heartbeat, owner_gone, owner_id

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


def being_read(catalog: Catalog) -> dict[str | None, dict[str, str]]:
    """What is read now, by where it is read (None: ATLAS_STORAGE, else the copy's name):
    snapshot id -> why, for retention to keep. Running drills and refreshes (a CLI job makes
    no request; one whose process on this host is gone reads nothing), and `verify` and
    `fetch` under their leases."""
    found: dict[str | None, dict[str, str]] = {}
    for name in catalog.live_leases(READ_LEASE):
        where, _, rest = name.removeprefix(READ_LEASE).partition(":")
        found.setdefault(where or None, {})[rest.partition(":")[0]] = "being read (verify or fetch)"
    for job in catalog.running_jobs():
        if not owner_gone(job.owner):
            why = f"read by {job.kind} {job.id}, still running"
            found.setdefault(job.from_copy, {})[job.snapshot_id] = why
    return found
