"""Making copies: each snapshot's artifact and sidecar, read from ATLAS_STORAGE, written
to every further destination, then read back there and proven by size and sha256.

A copy never fails a snapshot: it is recorded pending and retried with backoff. Each
destination has a thread of its own, so one that is stuck never delays another, and a
snapshot waits at most ATLAS_COPY_TIMEOUT_S for its copies before leaving them to the
retries (housekeeping, `atlas copy`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from bot import files
from bot.backup.layout import sidecar_key
from bot.backup.pipeline import hash_stored
from bot.catalog import Catalog
from bot.copies import plan
from bot.errors import AtlasError, NotFound
from bot.owners import Heartbeat
from bot.records import Copy, CopyState, Snapshot, SnapshotStatus, copy_key, now
from bot.redaction import redact
from bot.store import LazyStorage, Storage, StoredObject, open_destination

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.copies.streams import Streams

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
        self.beat_s = max(1.0, settings.stale_after_s / 4)  # claims' heartbeat

    def storage(self, name: str) -> Storage:
        """A destination's storage, opened once."""
        with self._lock:
            if name not in self._opened:
                dest = self.settings.copies[name]
                access = files.Access.for_group(self.settings.file_group)
                self._opened[name] = open_destination(dest, access)
            return self._opened[name]

    def claim(self, snap: Snapshot, name: str) -> Copy | None:
        """A new snapshot's copy to `name`, recorded and claimed by this process."""
        snap_copy = Copy(
            key=copy_key(snap.id, name),
            snapshot_id=snap.id,
            destination=name,
            database=snap.database,
        )
        self.catalog.add_copies([snap_copy])
        return self.catalog.claim_copy(
            snap_copy.key, self.owner, self.settings.stale_after_s, due=False
        )

    def open_streams(self, snap: Snapshot) -> Streams | None:
        """Copies that stream as `snap` is stored (None: no destination to copy to)."""
        if not self.settings.copies:
            return None
        from bot.copies.streams import Streams

        streams = Streams(self, snap)
        streams.open()
        return streams

    def after_snapshot(self, snap: Snapshot, streams: Streams | None = None) -> list[Copy]:
        """A new snapshot is stored: end its streams, or make its copies now."""
        if not self.settings.copies or snap.status != SnapshotStatus.OK:
            return []
        if streams is not None:  # each copy claimed when it opened: ended there
            streams.finish(snap, float(self.settings.copy_timeout_s))
            return self.catalog.copies_of(snap.id)
        self.catalog.add_copies(plan.wanted(snap, self.settings.copies))
        todo = self.catalog.copies_of(snap.id)
        self.run(todo, due=False, wait_s=float(self.settings.copy_timeout_s))
        return self.catalog.copies_of(snap.id)

    def finish_streams(self, snap: Snapshot, ended: list[tuple[str, StoredObject | str]]) -> None:
        """Prove each streamed copy where it lies; make the others from ATLAS_STORAGE."""
        cancel = threading.Event()
        jobs = {
            name: functools.partial(
                self._make, snap, name, 1, cancel, got if isinstance(got, StoredObject) else None
            )
            for name, got in ended
        }
        self._in_parallel(jobs, float(self.settings.copy_timeout_s), cancel)
        self._release_stuck([copy_key(snap.id, name) for name in jobs])

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
        cancel = threading.Event()
        jobs = {
            name: functools.partial(self._copy_all, todo, due, cancel)
            for name, todo in by_dest.items()
        }
        self._in_parallel(jobs, wait_s, cancel)
        self._release_stuck([c.key for todo in by_dest.values() for c in todo])

    def _in_parallel(
        self, jobs: Mapping[str, Callable[[], None]], wait_s: float, cancel: threading.Event
    ) -> None:
        """A thread per destination, beating for their claims; at most `wait_s`."""
        if not jobs:
            return
        threads = [
            threading.Thread(target=job, name=f"atlas-copy-{name}", daemon=True)
            for name, job in jobs.items()
        ]
        deadline = time.monotonic() + wait_s
        with Heartbeat(lambda: self.catalog.beat_copies(self.owner), self.beat_s):
            for t in threads:
                t.start()
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            cancel.set()
            for t in threads:
                t.join(5)

    def _release_stuck(self, keys: list[str]) -> None:
        """Copies still ours after the wait: pending again, to be retried."""
        why = f"timed out after {self.settings.copy_timeout_s} s; will retry"
        for key in keys:
            self.catalog.retry_copy_in(key, self.owner, plan.backoff_s(1), why)

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
        if snap.status == SnapshotStatus.RUNNING:  # its streams' process went silent
            self.catalog.retry_copy_in(c.key, self.owner, plan.backoff_s(1), "still running")
            return
        if snap.status != SnapshotStatus.OK:
            why = f"snapshot {snap.id} is {snap.status} in ATLAS_STORAGE: nothing to copy"
            self.catalog.end_copy(c.key, self.owner, CopyState.DELETED, error=why)
            return
        self._make(snap, c.destination, claimed.attempts, cancel, None)

    def _make(
        self,
        snap: Snapshot,
        name: str,
        attempts: int,
        cancel: threading.Event,
        streamed: StoredObject | None,
    ) -> None:
        """Make (or, `streamed`, prove) one claimed copy; record how it ended."""
        key = copy_key(snap.id, name)
        try:
            dest = self.storage(name)
            if streamed is None:
                stream_artifact(self.store.get(), dest, snap, cancel)
            size, sha = prove_copy(self.store.get(), dest, snap)
        except Exception as exc:  # down, refused, full: pending, and retried
            why = redact(
                str(exc) if isinstance(exc, AtlasError) else f"{type(exc).__name__}: {exc}"
            )
            log.warning("copy of %s to %s failed: %s", snap.id, name, why)
            self.catalog.retry_copy_in(key, self.owner, plan.backoff_s(attempts), why)
            return
        done = self.catalog.end_copy(
            key,
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
            self.catalog.audit("atlas", "copy.ok", snap.id, destination=name, size=size)


def stream_artifact(
    source: Storage, dest: Storage, snap: Snapshot, cancel: threading.Event
) -> None:
    """Stream the artifact from ATLAS_STORAGE to `dest`, checking what was read against the
    snapshot before the copy is committed."""
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


def prove_copy(source: Storage, dest: Storage, snap: Snapshot) -> tuple[int, str]:
    """Put the sidecar beside the copy, then read the copy back from `dest`: its (size,
    sha256) must be the snapshot's, or it is removed."""
    key = snap.storage_key or ""
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
