"""Snapshots being read right now, which retention keeps wherever they are read from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.backup import reads
from bot.owners import owner_gone

if TYPE_CHECKING:
    from bot.services import Services


def reading(services: Services, copy: str | None) -> dict[str, str]:
    """Snapshots a running drill or refresh reads from ATLAS_STORAGE (`copy` None) or from
    that copy: a CLI job makes no request, and a prune under it would fail it mid-read. A
    job whose process on this host is gone reads nothing (housekeeping closes it out);
    `verify` and `fetch`, which are no jobs, hold a lease while they read (`reads`)."""
    found = {s: "being read (verify or fetch)" for s in reads.leased(services.catalog, copy)}
    for j in services.catalog.running_jobs():
        if j.from_copy == copy and not owner_gone(j.owner):
            found[j.snapshot_id] = f"read by {j.kind} {j.id}, still running"
    return found
