"""Making copies: each snapshot's artifact and sidecar, read from ATLAS_STORAGE, written
to every further destination, then read back there and proven by size and sha256.

A copy never fails a snapshot: it is recorded pending and retried with backoff. Each
destination has a thread of its own, so one that is stuck never delays another, and a
snapshot waits at most ATLAS_COPY_TIMEOUT_S for its copies before leaving them to the
retries (housekeeping, `atlas copy`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from bot import files
from bot.backup.layout import sidecar_key
from bot.backup.pipeline import hash_stored
from bot.catalog import Catalog
from bot.copies import plan
from bot.errors import AtlasError, NotFound
from bot.owners import Heartbeat
from bot.records import Copy, CopyState, Snapshot, SnapshotStatus, now
from bot.redaction import redact
from bot.store import LazyStorage, Storage, open_destination

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)


class Cancelled(AtlasError):
    """The snapshot stopped waiting for this copy: it is left to the retries."""


class Copier:
    """Copies snapshots to the destinations of ATLAS_COPIES, once across replicas."""

    def __init__(
        self, settings: Settings, catalog: Catalog, store: LazyStorage, owner: str
    ) -> None:
        self.settings, self.catalog, self.store, self.owner = settings, catalog, store, owner
        self._opened: dict[str, Storage] = {}
        self._lock = threading.Lock()

    def storage(self, name: str) -> Storage:
        """A destination's storage, opened once."""
        with self._lock:
            if name not in self._opened:
                dest = self.settings.copies[name]
                access = files.Access.for_group(self.settings.file_group)
                self._opened[name] = open_destination(dest, access)
            return self._opened[name]

    def after_snapshot(self, snap: Snapshot) -> list[Copy]:
        """Record a copy of a new snapshot for each destination, and make them now."""
        if not self.settings.copies or snap.status != SnapshotStatus.OK:
            return []
        self.catalog.add_copies(plan.wanted(snap, self.settings.copies))
        todo = self.catalog.copies_of(snap.id)
        self.run(todo, due=False, wait_s=float(self.settings.copy_timeout_s))
        return self.catalog.copies_of(snap.id)

    def retry(
        self, *, due: bool, destination: str | None = None, database: str | None = None
    ) -> list[Copy]:
        """Make the copies still missing (with `due`, only those whose retry time has
        come); returns what became of them."""
        todo = [
            c
            for c in self.catalog.unfinished_copies()
            if destination in (None, c.destination) and database in (None, c.database)
        ]
        self.run(todo, due=due, wait_s=float(self.settings.copy_timeout_s))
        return self.catalog.copies_of(*sorted({c.snapshot_id for c in todo}))

    def backfill(self, destination: str | None = None, database: str | None = None) -> int:
        """Good snapshots taken before a destination was added get a copy to make there;
        returns how many were added."""
        wanted = {n: d for n, d in self.settings.copies.items() if destination in (None, n)}
        snaps = self.catalog.list_snapshots(
            limit=1_000_000, database=database, status=SnapshotStatus.OK
        )
        good = {s.id for s in snaps}
        for name in wanted:  # a copy found damaged is made again from ATLAS_STORAGE
            for c in self.catalog.copies_in(name, CopyState.DAMAGED):
                if c.snapshot_id in good:
                    self.catalog.update_copy(c.key, state=CopyState.PENDING, next_try_at=None)
        return self.catalog.add_copies([c for s in snaps for c in plan.wanted(s, wanted)])

    def run(self, copies: Iterable[Copy], *, due: bool, wait_s: float) -> None:
        """Make these copies, one thread per destination, waiting at most `wait_s`."""
        by_dest: dict[str, list[Copy]] = {}
        for c in copies:
            active = c.state in (CopyState.PENDING, CopyState.COPYING)
            if active and c.destination in self.settings.copies:
                by_dest.setdefault(c.destination, []).append(c)
        if not by_dest:
            return
        cancel = threading.Event()
        threads = [
            threading.Thread(
                target=self._copy_all, args=(todo, due, cancel), name=f"atlas-copy-{name}"
            )
            for name, todo in by_dest.items()
        ]
        deadline = time.monotonic() + wait_s
        with Heartbeat(lambda: self.catalog.beat_copies(self.owner), _beat_every(self.settings)):
            for t in threads:
                t.daemon = True
                t.start()
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            cancel.set()
            for t in threads:
                t.join(5)
        self._release_stuck(by_dest)

    def _release_stuck(self, by_dest: dict[str, list[Copy]]) -> None:
        """Copies still ours after the wait: pending again, to be retried."""
        for todo in by_dest.values():
            for c in todo:
                secs = plan.backoff_s(c.attempts + 1)
                why = f"timed out after {self.settings.copy_timeout_s} s; will retry"
                self.catalog.retry_copy_in(c.key, self.owner, secs, why)

    def _copy_all(self, todo: list[Copy], due: bool, cancel: threading.Event) -> None:
        for c in todo:
            if cancel.is_set():
                return
            try:
                self._copy_one(c, due, cancel)
            except Exception:  # a bug in one copy must not stop the others
                log.exception("copy %s failed unexpectedly", c.key)

    def _copy_one(self, c: Copy, due: bool, cancel: threading.Event) -> None:
        claimed = self.catalog.claim_copy(c.key, self.owner, self.settings.stale_after_s, due=due)
        if claimed is None:
            return  # made, being made elsewhere, or not due yet
        snap = self.catalog.get_snapshot(c.snapshot_id)
        if snap.status != SnapshotStatus.OK:
            why = f"snapshot {snap.id} is {snap.status} in ATLAS_STORAGE: nothing to copy"
            self.catalog.end_copy(c.key, self.owner, CopyState.DELETED, error=why)
            return
        try:
            dest = self.storage(c.destination)
            size, sha = copy_artifact(self.store.get(), dest, snap, cancel)
        except Exception as exc:  # down, refused, full: pending, and retried
            secs = plan.backoff_s(claimed.attempts)
            why = redact(
                str(exc) if isinstance(exc, AtlasError) else f"{type(exc).__name__}: {exc}"
            )
            log.warning("copy of %s to %s failed: %s", snap.id, c.destination, why)
            self.catalog.retry_copy_in(c.key, self.owner, secs, why)
            return
        done = self.catalog.end_copy(
            c.key,
            self.owner,
            CopyState.OK,
            location=dest.location(snap.storage_key or ""),
            size_bytes=size,
            sha256=sha,
            copied_at=now(),
            verified_at=now(),
            error=None,
        )
        if done:
            self.catalog.audit("atlas", "copy.ok", snap.id, destination=c.destination, size=size)


def copy_artifact(
    source: Storage, dest: Storage, snap: Snapshot, cancel: threading.Event
) -> tuple[int, str]:
    """Stream the artifact to `dest`, check what was read against the snapshot, then read
    the copy back from `dest`: its (size, sha256). The sidecar goes along, read back too."""
    key = snap.storage_key or ""
    writer = dest.writer(key)
    sha, size = hashlib.sha256(), 0
    try:
        for chunk in source.read(key):
            if cancel.is_set():
                raise Cancelled("the snapshot stopped waiting for this copy")
            sha.update(chunk)
            size += len(chunk)
            writer.write(chunk)
        if (size, sha.hexdigest()) != (snap.size_bytes, snap.sha256):
            raise AtlasError(
                f"snapshot {snap.id} in ATLAS_STORAGE does not match its checksum: "
                "not copied (run `atlas verify` on it)"
            )
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    _copy_sidecar(source, dest, key)
    found = hash_stored(dest, key)
    if found != (snap.size_bytes, snap.sha256):
        dest.delete(key)
        raise AtlasError(
            f"the copy at {dest.location(key)} read back as {found[0]} bytes with another "
            "checksum: it was removed and will be made again"
        )
    return found


def _copy_sidecar(source: Storage, dest: Storage, key: str) -> None:
    side = sidecar_key(key)
    try:
        doc = b"".join(source.read(side))
    except NotFound:
        return  # a snapshot from before sidecars: the artifact is what counts
    dest.put_bytes(side, doc)
    if b"".join(dest.read(side)) != doc:
        raise AtlasError(f"the sidecar at {dest.location(side)} did not read back as written")


def _beat_every(settings: Settings) -> float:
    return max(1.0, settings.stale_after_s / 4)
