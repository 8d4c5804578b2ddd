"""Unfinished writes left in a copy's destination: a copy killed mid-write (a SIGKILL, an
OOM kill, a lost host) leaves an open S3 multipart upload, which costs money and which no
object listing shows, or a hidden partial file. Housekeeping removes them once old."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from bot.backup.layout import database_prefix
from bot.backup.recovery import discard, unowned_writes
from bot.records import SnapshotStatus

if TYPE_CHECKING:
    from bot.copies.copier import Copier

log = logging.getLogger(__name__)


def sweep_pending(copier: Copier, older_than_s: float = 3600.0) -> list[str]:
    """Remove, in every destination, the unfinished writes older than `older_than_s` that
    no running snapshot and no copy being made owns; returns `NAME: key` of each."""
    settings, catalog = copier.settings, copier.catalog

    def owners() -> set[str]:
        """Read after each listing (`unowned_writes`): a copy is claimed before it writes."""
        live = catalog.catalog_clock() - settings.stale_after_s  # a claim beaten since is live
        held = {
            c.snapshot_id
            for c in catalog.unfinished_copies()
            if c.owner and (c.heartbeat_at or 0.0) > live
        }
        running = catalog.list_snapshots(limit=1000, status=SnapshotStatus.RUNNING)
        return held | {s.id for s in running}

    prefixes = {database_prefix(t) for t in settings.databases.values()}
    cutoff = time.time() - older_than_s
    removed: list[str] = []
    for name in settings.copies:
        try:  # one destination that cannot be reached now is tried at the next housekeeping
            storage = copier.storage(name)
            found = unowned_writes(storage, prefixes, owners, cutoff)
        except Exception as exc:
            log.warning("cannot list the unfinished writes in copy %s yet: %s", name, exc)
            continue
        removed += [f"{name}: {f.name}" for f in found if discard(storage, f)]
    for what in removed:
        catalog.audit("atlas", "copy.discarded", what)
    return removed
