"""Unfinished writes left in a copy's destination: a copy killed mid-write (a SIGKILL, an
OOM kill, a lost host) leaves an open S3 multipart upload, which costs money and which no
object listing shows, or a hidden partial file. Housekeeping removes them once old."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from bot.errors import AtlasError
from bot.records import SnapshotStatus

if TYPE_CHECKING:
    from bot.copies.copier import Copier
    from bot.store import Storage

log = logging.getLogger(__name__)


def sweep_pending(copier: Copier, older_than_s: float = 3600.0) -> list[str]:
    """Remove, in every destination, the unfinished writes older than `older_than_s` that
    no running snapshot and no copy being made owns; returns `NAME: key` of each."""
    settings, catalog = copier.settings, copier.catalog
    if not settings.copies:
        return []
    live = catalog.catalog_clock() - settings.stale_after_s  # a claim beaten since is live
    busy = {
        c.snapshot_id
        for c in catalog.unfinished_copies()
        if c.owner and (c.heartbeat_at or 0.0) > live
    }
    busy |= {s.id for s in catalog.list_snapshots(limit=1000, status=SnapshotStatus.RUNNING)}
    cutoff = time.time() - older_than_s
    prefixes = sorted({f"{t.environment}/{t.name}/" for t in settings.databases.values()})
    removed: list[str] = []
    for name in settings.copies:
        try:
            storage = copier.storage(name)
            for prefix in prefixes:
                removed += _sweep(storage, name, prefix, busy, cutoff)
        except Exception as exc:  # unreachable now: the next housekeeping tries again
            log.warning("cannot list the unfinished writes in copy %s yet: %s", name, exc)
    for what in removed:
        catalog.audit("atlas", "copy.discarded", what)
    return removed


def _sweep(storage: Storage, name: str, prefix: str, busy: set[str], cutoff: float) -> list[str]:
    out = []
    for found in list(storage.pending(prefix)):
        if found.started >= cutoff or any(i in found.ref for i in busy):
            continue
        try:
            gone = storage.discard_pending(found.ref)
        except AtlasError as exc:
            log.warning("cannot remove the unfinished write in copy %s yet: %s", name, exc)
            continue
        if gone:
            out.append(f"{name}: {found.ref.split(chr(10))[0]}")
    return out
