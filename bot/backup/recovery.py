"""After a crash: snapshots left `running` by a process that died are closed out, and
unfinished writes (partial files, open S3 uploads) are removed, now or on a later try."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable

from bot.backup.layout import database_prefix
from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import AtlasError
from bot.records import Snapshot, SnapshotStatus
from bot.store import LazyStorage, Pending, Storage

log = logging.getLogger(__name__)


def unowned_writes(
    storage: Storage,
    prefixes: Iterable[str],
    owners: Callable[[], Collection[str]],
    cutoff: float,
) -> list[Pending]:
    """Unfinished writes under `prefixes` begun before `cutoff` (epoch seconds) whose name
    carries none of `owners()`, the ids of snapshots still being written. A write's name
    holds its snapshot's id from its first byte, so a running one is spared whatever start
    date the server reports (moto says 2010). The owners are read after the listing: a
    snapshot is recorded running before it opens its write, so one that began while the
    listing ran is known by then (read first, CI saw a fleet's new upload aborted)."""
    seen = [f for p in sorted(prefixes) for f in storage.pending(p) if f.started < cutoff]
    held = owners() if seen else ()
    return [f for f in seen if not any(i in f.ref for i in held)]


def discard(storage: Storage, found: Pending) -> bool:
    """Remove one unfinished write; False (and a log line) when storage refuses for now."""
    try:
        return storage.discard_pending(found.ref)
    except AtlasError as exc:
        log.warning("cannot remove the unfinished write %s yet: %s", found.name, exc)
        return False


class Recovery:
    """Closes out snapshots a dead process left running, and removes their unfinished writes."""

    def __init__(self, settings: Settings, catalog: Catalog, store: LazyStorage) -> None:
        self.settings, self.catalog, self.store = settings, catalog, store

    def recover(self, stale_after_s: float | None = None) -> list[Snapshot]:
        """Mark snapshots left running by a dead process as interrupted and clean up after
        them; retry removing what failed snapshots could not remove (an S3 upload whose
        abort did not get through). Returns the newly interrupted snapshots."""
        stale = self.catalog.stale_running(stale_after_s or self.settings.stale_after_s)
        for snap in stale:
            # the unfinished write, even if the process died before recording its name
            gone = bool(snap.storage_key) and self._discard_unfinished(snap.storage_key or "")
            self.catalog.finish_snapshot(
                snap.id,
                SnapshotStatus.INTERRUPTED,
                error="Atlas stopped while this snapshot was running; nothing was kept.",
                **({"pending_ref": None} if gone else {}),
            )
            self.catalog.audit("atlas", "snapshot.interrupted", snap.id)
        for snap in self.catalog.left_behind():
            if snap.pending_ref and discard(self.store.get(), Pending(snap.pending_ref, 0.0)):
                self.catalog.update_snapshot(snap.id, pending_ref=None)
        return [self.catalog.get_snapshot(s.id) for s in stale]

    def sweep_pending(self, older_than_s: float = 3600.0) -> list[str]:
        """Remove unfinished writes in storage that no running snapshot owns: partial files
        and open S3 uploads a crash left unrecorded (`unowned_writes`)."""
        prefixes = {database_prefix(t) for t in self.settings.databases.values()}
        removed = []
        for found in unowned_writes(
            self.store.get(), prefixes, self._running_ids, time.time() - older_than_s
        ):
            if discard(self.store.get(), found):
                self.catalog.audit("atlas", "storage.discarded", found.name)
                removed.append(found.ref)
        return removed

    def _running_ids(self) -> set[str]:
        return {
            s.id for s in self.catalog.list_snapshots(limit=1000, status=SnapshotStatus.RUNNING)
        }

    def _discard_unfinished(self, key: str) -> bool:
        try:
            return self.store.get().discard_unfinished(key)
        except AtlasError as exc:
            log.warning("cannot remove the unfinished write of %s yet: %s", key, exc)
            return False
