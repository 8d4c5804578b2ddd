"""Taking a snapshot: dump, compress, store, prove, record.

pg_dump runs in the exported snapshot of a read-only REPEATABLE READ transaction, which
counts the rows for the manifest meanwhile. The stream goes through the pipeline into
storage; only when the stored object is proven to be the stream, and the sidecar is
written, is the snapshot `ok`. Any failure removes what was half-written and records why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import psycopg

from bot.backup import manifest, pipeline, sidecar
from bot.backup.keys import Keys
from bot.backup.layout import artifact_key, fresh, sidecar_key
from bot.backup.recovery import Recovery
from bot.catalog import Catalog, outage
from bot.config import Settings
from bot.errors import AtlasError, Busy, Interrupted
from bot.owners import Heartbeat
from bot.pg import Conn, ServerInfo, find_tool, server_info, warm_tool_versions
from bot.records import Snapshot, SnapshotResult, SnapshotStatus, now
from bot.redaction import redact
from bot.store import ArtifactWriter, LazyStorage, StoredObject
from bot.store.tee import Tee
from bot.tags import merged
from bot.text import clean_text

if TYPE_CHECKING:
    from bot.store.crypto import Identity

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0


def heartbeat_every(settings: Settings) -> float:
    """Often enough that four beats fit in the time after which the job counts as dead."""
    return min(HEARTBEAT_S, settings.stale_after_s / 4)


@dataclass(frozen=True)
class DumpProgress:
    """How far a running dump is, for its message."""

    snapshot_id: str
    raw_bytes: int
    stored_bytes: int
    elapsed: float


@dataclass(frozen=True)
class _Dumped:
    writer: _Committable
    stats: pipeline.DumpStats
    server: ServerInfo
    pg_dump_version: str
    manifest: dict[str, Any]


class CopyStream(Protocol):
    """A snapshot's copies, fed the stored bytes as they are written (`bot/copies`)."""

    def feed(self, data: bytes) -> None: ...
    def abort(self, why: str) -> None: ...


class CopyHooks(Protocol):
    """ATLAS_COPIES as a snapshot sees it: streams opened before the dump, then, once the
    snapshot is recorded `ok`, every copy made and proven. Neither ever raises."""

    def open(self, snap: Snapshot) -> CopyStream | None: ...
    def after(self, snap: Snapshot, stream: CopyStream | None) -> object: ...


class Taker:
    """Takes one snapshot: dump, compress, store, read back, record."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: LazyStorage,
        keys: Keys,
        recovery: Recovery,
        copies: CopyHooks | None = None,
    ) -> None:
        self.settings, self.catalog, self.store = settings, catalog, store
        self.keys, self.recovery = keys, recovery
        self.copies = copies  # copies the new snapshot to ATLAS_COPIES (never raises)

    def take(
        self,
        *,
        requested_by: str,
        note: str = "",
        database: str | None = None,
        source: str = "cli",
        progress: Callable[[DumpProgress], None] | None = None,
        progress_every: float = 1.0,
        on_start: Callable[[Snapshot], None] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """Dump, store and verify one snapshot; returns its record. Its tags are
        ATLAS_SNAPSHOT_TAGS's, overridden by `tags`.

        Raises Busy when the database already has one running, AtlasError on any
        failure (after recording it and removing whatever was half-written).
        """
        target = self.settings.target(database)
        identity = self.keys.current()  # a bad key fails before anything starts
        storage = self.store.get()

        def record(snap_id: str) -> Snapshot:
            key = artifact_key(target, snap_id, encrypted=identity is not None)
            return Snapshot(
                id=snap_id,
                database=target.name,
                environment=target.environment,
                source=source,
                requested_by=requested_by,
                note=clean_text(note),
                storage_key=key,
                location=storage.location(key),
                encryption="age" if identity is not None else "none",
                tags=merged(self.settings.snapshot_tags, tags or {}),
            )

        snap = fresh(self._begin, record)
        snap_id, key = snap.id, snap.storage_key or ""
        opened: list[_Committable] = []  # the writer, once _dump has opened it
        committing = False
        conn = Conn("", None)
        stream: CopyStream | None = None
        try:
            stream = self.copies.open(snap) if self.copies is not None else None
            conn = Conn.parse(target.url, target.url_setting)
            if on_start:
                on_start(snap)
            with Heartbeat(
                lambda: self.catalog.beat_snapshot(snap_id),
                heartbeat_every(self.settings),
            ):
                dumped = self._dump(
                    conn, snap_id, key, progress, progress_every, identity, opened, stream
                )
            committing = True  # from here an object may exist under its final name
            log.info(
                "snapshot %s: %d bytes dumped, %d stored; pg_restore read it through; "
                "committing and checking the stored object",
                snap_id,
                dumped.stats.raw_size,
                dumped.writer.size,
            )
            sha256 = self._check_stored(key, dumped.writer, dumped.writer.commit())
            self._finish(snap, dumped, sha256, identity)
        except BaseException as exc:
            if stream is not None:  # nothing of a failed snapshot stays in a copy
                why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
                with contextlib.suppress(Exception):
                    stream.abort(redact(why or type(exc).__name__, conn.secrets))
            self._raise_failure(snap, opened, exc, conn, committing)
        if self.copies is not None:
            self.copies.after(self.catalog.get_snapshot(snap_id), stream)
        return self.catalog.get_snapshot(snap_id)

    def _finish(
        self, snap: Snapshot, dumped: _Dumped, sha256: str, identity: Identity | None
    ) -> None:
        """Write the sidecar beside the proven artifact, then record the snapshot `ok`
        (across a short catalog outage: the artifact is safe in storage)."""
        result = _result(dumped, sha256)
        done = _with(snap, result)
        doc = sidecar.sidecar(done, identity, plain=self.settings.sidecar_plain)
        key = snap.storage_key or ""
        self.store.get().put_bytes(sidecar_key(key), doc)
        result["duration_s"] = round(_seconds_between(snap.started_at, now()), 3)
        audit = (snap.requested_by or "", "snapshot.ok", {"size": dumped.writer.size})
        outage.outlast(
            lambda: self.catalog.finish_snapshot(snap.id, SnapshotStatus.OK, audit=audit, **result)
        )

    def _raise_failure(
        self,
        snap: Snapshot,
        opened: list[_Committable],
        exc: BaseException,
        conn: Conn,
        committing: bool,
    ) -> NoReturn:
        """Record the failure and raise it as the caller expects: an AtlasError, an
        Interrupted for Ctrl-C, anything else that is no Exception as it was."""
        writer = opened[0] if opened else None
        key = snap.storage_key or ""
        message = self._fail(snap.id, key, writer, exc, conn, committing)
        self.catalog.audit(snap.requested_by or "", "snapshot.failed", snap.id, error=message)
        if isinstance(exc, AtlasError):
            raise exc
        if isinstance(exc, Exception):
            raise AtlasError(message) from exc
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"Snapshot {snap.id}: {message}") from None
        raise exc

    def _begin(self, snap: Snapshot) -> Snapshot:
        """Record the snapshot as running. A snapshot of a process that is certainly gone
        (this host's) is closed out first; one that is only silent is closed out only when
        it holds this database: silence may be a catalog outage nobody could beat through,
        and the leader's recovery waits one stale period after one before trusting it.
        A catalog that is away is waited for (OUTLAST_S): nothing is done yet, and a
        backup is not skipped for an outage that passes."""
        return outage.outlast(lambda: self._begin_once(snap))

    def _begin_once(self, snap: Snapshot) -> Snapshot:
        self.recovery.recover(float("inf"))
        try:
            return self.catalog.begin_snapshot(snap)
        except Busy:
            held = self.catalog.running_snapshot(snap.database, snap.environment)
            if held is not None and held.id == snap.id:
                return held  # recorded before the connection broke: a try again finds it
            stale = {s.id for s in self.catalog.stale_running(self.settings.stale_after_s)}
            if held is None or held.id not in stale:
                raise
            self.recovery.recover()
            return self.catalog.begin_snapshot(snap)

    def _dump(
        self,
        conn: Conn,
        snap_id: str,
        key: str,
        progress: Callable[[DumpProgress], None] | None,
        progress_every: float,
        identity: Identity | None,
        opened: list[_Committable],
        stream: CopyStream | None = None,
    ) -> _Dumped:
        """Stream pg_dump, in a snapshot exported by a read-only transaction that counts
        the manifest meanwhile, into the (maybe encrypting) writer; the writer is left
        open for the caller to commit, and in `opened` so a failure can abort it."""
        bindir = self.settings.pg_bindir
        tools_known = warm_tool_versions(("pg_dump", "pg_restore"), bindir)  # while connecting
        with conn.connect(autocommit=False) as pgconn:
            pgconn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            pgconn.read_only = True
            info = server_info(pgconn)
            tools_known()
            pg_dump, dump_ver = find_tool("pg_dump", info.major, bindir)
            pg_restore, _ = find_tool("pg_restore", info.major, bindir)
            log.info(
                "snapshot %s: %s is PostgreSQL %s; dumping with %s %s",
                snap_id,
                conn.describe(),
                info.version,
                pg_dump,
                dump_ver,
            )
            exported = pgconn.execute("SELECT pg_export_snapshot()").fetchone()
            assert exported is not None
            counting = _ManifestCount(pgconn, snap_id)
            writer = self._open_writer(snap_id, key, identity, opened, stream)
            try:
                self.catalog.update_snapshot(
                    snap_id,
                    dbname=info.dbname,
                    server_version=info.version,
                    pg_dump_version=dump_ver,
                    pending_ref=writer.pending_ref,
                )
                stats = pipeline.run_dump(
                    _dump_argv(pg_dump, str(exported[0]), conn),
                    conn.env(),
                    writer.outer,
                    pg_restore=pg_restore,
                    level=self.settings.zstd_level,
                    threads=self.settings.zstd_threads,
                    secrets=conn.secrets,
                    progress=_every(progress, progress_every, snap_id),
                    split=identity is None,  # age's stream cannot be read from the middle
                )
                found = counting.result()
            except BaseException:
                writer.abort()
                counting.stop()
                raise
            if progress:
                progress(DumpProgress(snap_id, stats.raw_size, writer.size, stats.seconds))
            return _Dumped(writer, stats, info, dump_ver, found)

    def _open_writer(
        self,
        snap_id: str,
        key: str,
        identity: Identity | None,
        opened: list[_Committable],
        stream: CopyStream | None,
    ) -> _Committable:
        """The storage writer for `key`, behind age when a key is configured, its bytes
        also streamed to the copies."""
        stored = self.store.get().writer(key)
        log.info(
            "snapshot %s: streaming pg_dump -> zstd level %s%s -> %s",
            snap_id,
            self.settings.zstd_level,
            " -> age" if identity is not None else "",
            self.store.get().location(key),
        )
        writer: ArtifactWriter = stored if stream is None else Tee(stored, stream.feed)
        if identity is not None:
            from bot.store.crypto import EncryptingWriter

            writer = EncryptingWriter(writer, identity)
        committable = _Committable(writer, stored)
        opened.append(committable)
        return committable

    def _check_stored(self, key: str, writer: _Committable, committed: StoredObject) -> str:
        """The stored object must be exactly what was streamed, byte for byte; its sha256."""
        storage = self.store.get()
        head = storage.stat(key)
        if head is None or head.size != writer.size or committed.sha256 is None:
            got = "missing" if head is None else f"{head.size} bytes"
            raise AtlasError(f"Stored object is {got}, but {writer.size} bytes were written.")
        if committed.read_back:  # the writer compared every stored byte with the stream
            return committed.sha256
        expected_etag = storage.expected_etag(writer.stored)
        if expected_etag and head.etag == expected_etag:
            return committed.sha256  # the store computed this from the bytes it received
        if pipeline.hash_stored(storage, key) != (writer.size, committed.sha256):
            raise AtlasError("The stored object's checksum does not match what was written.")
        return committed.sha256

    def _fail(
        self,
        snap_id: str,
        key: str,
        writer: _Committable | None,
        exc: BaseException,
        conn: Conn,
        committing: bool,
    ) -> str:
        if isinstance(exc, KeyboardInterrupt):
            message = "Interrupted by the operator (Ctrl-C); nothing was kept."
        elif isinstance(exc, AtlasError):
            message = str(exc)
        else:
            message = f"Unexpected error: {type(exc).__name__}: {exc}"
        message = redact(message, conn.secrets)
        left_behind = None
        if writer is not None:
            writer.abort()
            if not writer.cleaned:  # e.g. S3 unreachable: recovery aborts the upload later
                left_behind = writer.pending_ref
        if committing:  # an object may exist under its final name: it must not stay
            for k in (key, sidecar_key(key)):
                with contextlib.suppress(Exception):
                    self.store.get().delete(k)
        status = (
            SnapshotStatus.INTERRUPTED
            if isinstance(exc, KeyboardInterrupt)
            else SnapshotStatus.FAILED
        )
        # A failure met during a catalog outage is recorded once it is back (an operator's
        # Ctrl-C does not wait for it): a lost write would leave the snapshot `running`.
        within = 0.0 if isinstance(exc, KeyboardInterrupt) else outage.OUTLAST_S
        with contextlib.suppress(Exception):
            outage.outlast(
                lambda: self.catalog.finish_snapshot(
                    snap_id, status, error=message, pending_ref=left_behind
                ),
                within_s=within,
            )
        log.info("snapshot %s failed: %s", snap_id, message)
        return message


class _ManifestCount:
    """Reads the manifest (tables with exact row counts, sequences, extensions) on the
    dump's own transaction, on a thread, while pg_dump streams."""

    def __init__(self, pgconn: psycopg.Connection, snap_id: str) -> None:
        self.found: dict[str, Any] = {}
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(
            target=self._count, args=(pgconn,), name=f"manifest-{snap_id}", daemon=True
        )
        self.thread.start()

    def _count(self, pgconn: psycopg.Connection) -> None:
        try:
            self.found.update(manifest.collect(pgconn))
        except BaseException as exc:  # reported after the dump
            self.errors.append(exc)

    def result(self) -> dict[str, Any]:
        self.thread.join()
        if self.errors:
            raise AtlasError(f"Could not read the manifest: {self.errors[0]}")
        return self.found

    def stop(self) -> None:
        """The dump failed: wait a while for the count, whose result nobody needs."""
        self.thread.join(timeout=30)


def _dump_argv(pg_dump: str, exported: str, conn: Conn) -> list[str]:
    """pg_dump's arguments: custom format, uncompressed (zstd follows), in the exported
    snapshot; the password travels in the environment, never here."""
    return [
        pg_dump,
        "--format=custom",
        "--compress=0",
        "--no-owner",
        "--no-acl",
        "--lock-wait-timeout=60s",
        f"--snapshot={exported}",
        "--dbname",
        conn.conninfo,
    ]


def _every(
    progress: Callable[[DumpProgress], None] | None, seconds: float, snap_id: str
) -> pipeline.OnBytes | None:
    """The pipeline's byte counts as a DumpProgress at most every `seconds`."""
    if progress is None:
        return None
    last = [0.0]

    def on_bytes(raw: int, stored_bytes: int, elapsed: float) -> None:
        if elapsed - last[0] >= seconds:
            last[0] = elapsed
            progress(DumpProgress(snap_id, raw, stored_bytes, elapsed))

    return on_bytes


class _Committable:
    """The outermost writer (maybe encrypting) and the storage writer beneath it."""

    def __init__(self, outer: ArtifactWriter, stored: ArtifactWriter) -> None:
        self.outer, self.stored = outer, stored
        self.pending_ref = stored.pending_ref

    @property
    def size(self) -> int:
        return self.stored.size

    @property
    def cleaned(self) -> bool:
        return bool(self.stored.cleaned)

    def write(self, data: bytes) -> None:
        self.outer.write(data)

    def commit(self) -> StoredObject:
        return self.outer.commit()

    def abort(self) -> None:
        self.outer.abort()


def _result(dumped: _Dumped, sha256: str) -> SnapshotResult:
    """What a proven snapshot's record gains: sizes, checksums, where its blocks lie, the
    manifest, the tools' versions."""
    stats = dumped.stats
    return {
        "dbname": dumped.server.dbname,
        "server_version": dumped.server.version,
        "pg_dump_version": dumped.pg_dump_version,
        "size_bytes": dumped.writer.size,
        "raw_size_bytes": stats.raw_size,
        "sha256": sha256,
        "toc_bytes": stats.toc_bytes,
        "toc_sha256": stats.toc_sha256,
        "segments": [seg.pack() for seg in stats.segments] if stats.segments else None,
        "dump_s": round(stats.seconds, 3),
        "manifest": dumped.manifest,
        "verified_at": now(),
        "pending_ref": None,
    }


def _with(snap: Snapshot, fields: SnapshotResult) -> Snapshot:
    return dataclasses.replace(snap, **fields)


def _seconds_between(a: str | None, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a or b)).total_seconds()
