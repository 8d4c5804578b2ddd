"""Reading a snapshot back: every byte checked against what was recorded, and damage
recorded whoever finds it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from bot import files
from bot.backup import pipeline, reads
from bot.backup.keys import Keys
from bot.backup.lookup import Snapshots
from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import AtlasError, Damaged
from bot.pg import find_tool
from bot.records import CopyState, Snapshot, SnapshotKind, SnapshotStatus, copy_key, now
from bot.store import LazyStorage

log = logging.getLogger(__name__)

OnDamage = Callable[[Snapshot, str], None]  # the damaged snapshot, who found it


@dataclass(frozen=True)
class Verified:
    """A snapshot read end to end, checksums and archive both good."""

    snapshot: Snapshot
    seconds: float


class Cut(Protocol):
    """A filter of the decompressed stream: fed every chunk, told of its end, and, once
    every checksum held, asked to let out what it held back."""

    def __call__(self, chunk: bytes) -> None: ...
    def read_itself(self) -> bool: ...  # True: it read what it needs (only some blocks)
    def end(self) -> None: ...
    def release(self) -> None: ...


Cutter = Callable[[Snapshot, Callable[[bytes], object]], Cut]


class Reader:
    """Reads stored snapshots back: verify, fetch to a file, and mark the damaged ones."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: LazyStorage,
        keys: Keys,
        snapshots: Snapshots,
        on_damage: OnDamage | None = None,
    ) -> None:
        self.settings, self.catalog, self.store = settings, catalog, store
        self.keys, self.snapshots = keys, snapshots
        self.on_damage = on_damage  # told of every damaged artifact (Services posts it)

    def read(
        self,
        snap: Snapshot,
        consume: Callable[[bytes], object],
        *,
        source: Iterable[bytes] | None = None,
    ) -> None:
        """Decompress (and decrypt) a stored snapshot into `consume`, checking its size,
        sha256 and zstd frame; `source` gives the stored bytes when already open."""
        assert snap.storage_key and snap.size_bytes is not None and snap.sha256
        pipeline.read_artifact(
            self.store.get(),
            snap.storage_key,
            consume,
            expect_size=snap.size_bytes,
            expect_sha256=snap.sha256,
            identity=self.keys.for_snapshot(snap),
            source=source,
        )

    def verify(self, ref: str, actor: str = "cli") -> Verified:
        """Re-read a stored snapshot: size, checksums, and pg_restore reading it through."""
        snap = self.snapshots.readable(ref)
        started = time.monotonic()
        self.keys.for_snapshot(snap)  # no key: an error before reading, not a corrupt snapshot
        if snap.kind == SnapshotKind.GLOBALS:
            return self._verify_globals(snap, actor, started)
        pg_restore, _ = find_tool(
            "pg_restore", _major(snap.server_version), self.settings.pg_bindir
        )
        check = pipeline.ArchiveCheck(pg_restore, dict(os.environ))
        log.info("verify %s: reading %s through %s", snap.id, snap.location, pg_restore)
        try:
            with self._leased(snap):
                self.read(snap, check.feed)
            check.verify()
        except Damaged as exc:
            check.kill()
            raise self.mark_damaged(snap, exc, actor, found_by="verify") from None
        except AtlasError as exc:
            check.kill()
            raise self._unread(snap, exc, actor) from None
        return self._verified(snap, actor, started)

    def _verify_globals(self, snap: Snapshot, actor: str, started: float) -> Verified:
        """A globals dump is SQL: its checksums, and pg_dumpall's complete output."""
        from bot.fleet.globals import check_text

        data = bytearray()
        try:
            with self._leased(snap):
                self.read(snap, data.extend)
        except Damaged as exc:
            raise self.mark_damaged(snap, exc, actor, found_by="verify") from None
        except AtlasError as exc:
            raise self._unread(snap, exc, actor) from None
        try:
            check_text(bytes(data))
        except AtlasError as exc:
            raise self.mark_damaged(snap, Damaged(str(exc)), actor, found_by="verify") from None
        return self._verified(snap, actor, started)

    def _leased(self, snap: Snapshot) -> contextlib.AbstractContextManager[None]:
        """Retention keeps the snapshot while it is read here (no job records a read)."""
        return reads.lease(self.catalog, snap.id, self.snapshots.copy, self.settings.stale_after_s)

    def _unread(self, snap: Snapshot, exc: AtlasError, actor: str) -> AtlasError:
        """A read that storage did not finish (a cut network, a refused credential) says
        nothing about the artifact, and marks nothing; one that is gone is damage."""
        missing = self.missing(snap)
        if missing is not None:
            return self.mark_damaged(snap, missing, actor, found_by="verify")
        self.catalog.audit(actor, "snapshot.verify_failed", snap.id, error=str(exc))
        return AtlasError(
            f"Could not read {snap.id} through to verify it: {exc.message}",
            "nothing was marked; run `atlas verify` again once storage answers",
        )

    def missing(self, snap: Snapshot) -> Damaged | None:
        """The damage when storage says the artifact is gone (a lifecycle rule, a hand);
        None when it is there, or storage does not answer (then nothing is known)."""
        try:
            gone = self.store.get().stat(snap.storage_key or "") is None
        except AtlasError:
            return None
        return Damaged(f"The stored artifact {snap.location} is missing.") if gone else None

    def mark_damaged(
        self, snap: Snapshot, exc: AtlasError, actor: str, *, found_by: str
    ) -> AtlasError:
        """The one place a damaged artifact is recorded, whoever found it (verify, a drill,
        a restore, a fetch): the snapshot becomes `corrupt`, so status, retention and the
        next drill stop counting on it. Returns the error to raise.

        An encrypted artifact that cannot be decrypted but whose checksum matches is not
        damaged: the key is wrong, and that is what the error then says.
        """
        if snap.encryption == "age" and self._intact(snap):
            return AtlasError(
                f"Snapshot {snap.id} is intact (its checksum matches) but {exc}",
                "its sidecar names the public key it was encrypted to (`recipient`); "
                "after a rotation keep that key in ATLAS_ENCRYPTION_KEY_FILE, below the "
                "new one",
            )
        if self.snapshots.copy is not None:
            return self._copy_damaged(snap, exc, actor, found_by)
        if gone := self._pruned_meanwhile(snap):
            return gone
        self.catalog.update_snapshot(snap.id, status=SnapshotStatus.CORRUPT, error=str(exc))
        self.catalog.audit(actor, "snapshot.damaged", snap.id, found_by=found_by, error=str(exc))
        log.warning("snapshot %s is damaged (found by %s): %s", snap.id, found_by, exc)
        if self.on_damage is not None:
            damaged = dataclasses.replace(snap, status=SnapshotStatus.CORRUPT, error=str(exc))
            self.on_damage(damaged, found_by)
        return exc

    def _copy_damaged(
        self, snap: Snapshot, exc: AtlasError, actor: str, found_by: str
    ) -> AtlasError:
        """A copy that no longer reads back as written: that copy is damaged (made again
        by `atlas copy` from ATLAS_STORAGE), not the snapshot."""
        copy = self.snapshots.copy or ""
        why = f"{exc} (in {copy})"
        self.catalog.update_copy(copy_key(snap.id, copy), state=CopyState.DAMAGED, error=str(exc))
        self.catalog.audit(actor, "copy.damaged", snap.id, destination=copy, found_by=found_by)
        log.warning("the copy of %s in %s is damaged: %s", snap.id, copy, exc)
        if self.on_damage is not None:
            damaged = dataclasses.replace(snap, status=SnapshotStatus.CORRUPT, error=why)
            self.on_damage(damaged, f"{found_by} --from {copy}")
        return AtlasError(f"The copy of {snap.id} in {copy} is damaged: {exc}")

    def _verified(self, snap: Snapshot, actor: str, started: float) -> Verified:
        """Record a clean read: of the snapshot, or of the copy it was read from."""
        if self.snapshots.copy is not None:
            self.catalog.update_copy(
                copy_key(snap.id, self.snapshots.copy), state=CopyState.OK, verified_at=now()
            )
            self.catalog.audit(actor, "copy.verified", snap.id, destination=self.snapshots.copy)
            return Verified(snap, time.monotonic() - started)
        if gone := self._pruned_meanwhile(snap):
            raise gone
        self.catalog.update_snapshot(
            snap.id, status=SnapshotStatus.OK, verified_at=now(), error=None
        )
        self.catalog.audit(actor, "snapshot.verified", snap.id)
        return Verified(self.catalog.get_snapshot(snap.id), time.monotonic() - started)

    def _pruned_meanwhile(self, snap: Snapshot) -> AtlasError | None:
        """Retention deleted the snapshot while it was read (a verify is no job it keeps
        for): its row stays `deleted`, neither `ok` nor `corrupt` again."""
        if self.catalog.get_snapshot(snap.id).status != SnapshotStatus.DELETED:
            return None
        return AtlasError(f"Snapshot {snap.id} was deleted by retention while it was read.")

    def _intact(self, snap: Snapshot) -> bool:
        assert snap.storage_key
        try:
            stored = pipeline.hash_stored(self.store.get(), snap.storage_key)
        except AtlasError:
            return False
        return stored == (snap.size_bytes, snap.sha256)

    def fetch(
        self,
        ref: str,
        out: str,
        *,
        force: bool = False,
        cut: Cutter | None = None,
        database: str | None = None,
    ) -> Snapshot:
        """Write the plain pg_dump custom-format file that `pg_restore` reads as it is
        (with `cut`, the file it makes of the stream: some tables of it); with `database`,
        only a snapshot of that database, as restore and drill check."""
        snap = self.snapshots.readable(ref)
        if database is not None and snap.database != database:
            raise AtlasError(
                f"Snapshot {snap.id} is of {snap.database}, not {database}.",
                f"name a snapshot of {database}, or leave out --db",
            )
        if out == "-":
            stream: IO[bytes] = sys.stdout.buffer
            try:
                self._write(snap, stream.write, cut)
            except Damaged as exc:
                raise self.mark_damaged(snap, exc, "cli", found_by="fetch") from None
            stream.flush()
            return snap
        path = Path(out)
        if path.exists() and not force:
            raise AtlasError(f"{path} already exists.", "choose another -o path or pass --force")
        _refuse_special(path)
        try:  # an unguessable name, never through a planted link, private until renamed
            tmp, fh = files.create_beside(path)
        except OSError as exc:
            raise AtlasError(f"Cannot write {path}: {exc.strerror or exc}.") from None
        try:
            with fh:
                self._write(snap, fh.write, cut)
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except Damaged as exc:
            tmp.unlink(missing_ok=True)
            raise self.mark_damaged(snap, exc, "cli", found_by="fetch") from None
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise AtlasError(f"Cannot write {path}: {exc.strerror or exc}.") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return snap

    def _write(self, snap: Snapshot, write: Callable[[bytes], object], cut: Cutter | None) -> None:
        """The artifact decompressed into `write`, whole or through `cut`."""
        with self._leased(snap):
            if cut is None:
                self.read(snap, write)
                return
            stream = cut(snap, write)
            if not stream.read_itself():
                self.read(snap, stream)
                stream.end()
        stream.release()


def _refuse_special(path: Path) -> None:
    """fetch writes a file beside `path` and renames it over it: over a device or a pipe
    (`-o /dev/null --force`) that would replace the node itself, for every user."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return  # not there (or not visible): the write says what is wrong
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise AtlasError(
            f"{path} is not a regular file (a device, a pipe or a folder): fetch writes a "
            "file, and would replace it.",
            "choose a file path, or -o - to stream the dump to stdout",
        )


def _major(version: str | None) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0
