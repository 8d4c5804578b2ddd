"""Take, verify, list and fetch snapshots: the operations behind `/atlas snapshot` and `atlas`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg

from bot.backup import manifest, pipeline
from bot.catalog import FAILED, INTERRUPTED, OK, RUNNING, Catalog, now
from bot.config import DatabaseTarget, Settings
from bot.errors import AtlasError, Damaged, NotFound
from bot.pg import Conn, find_tool, redact, server_info, warm_tool_versions
from bot.store.storage import ArtifactWriter, Storage, StoredObject, open_storage
from bot.text import clean_text

log = logging.getLogger(__name__)

FORMAT = "pg_dump custom format (-Fc -Z0), compressed as one zstd frame"
CORRUPT = "corrupt"
HEARTBEAT_S = 5.0
SIDECAR_MAX = 16 << 20  # manifests of very many tables stay far below this


@dataclass(frozen=True)
class Progress:
    snapshot_id: str
    raw_bytes: int
    stored_bytes: int
    elapsed: float


SNAPSHOT_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}")


def new_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def artifact_key(target: DatabaseTarget, snap_id: str) -> str:
    """Production and staging stay apart: environment/database/id."""
    return f"{target.environment}/{target.name}/{snap_id}.dump.zst"


def sidecar_key(key: str) -> str:
    return key.removesuffix(".age").removesuffix(".dump.zst") + ".json"


class Snapshots:
    def __init__(self, settings: Settings, catalog: Catalog, storage: Storage | None = None):
        self.settings = settings
        self.catalog = catalog
        self._storage = storage
        self._identity: Any = None
        self._identity_loaded = False
        # told of every damaged artifact found (Services posts it to the channel)
        self.on_damage: Callable[[dict[str, Any], str], None] | None = None

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            st = self.settings
            self._storage = open_storage(st.storage, st.s3_sse, st.s3_kms_key_id)
        return self._storage

    def encryption_identity(self) -> Any:
        """The age identity when a key is configured (ATLAS_ENCRYPTION_KEY[_FILE]), else None."""
        if not self._identity_loaded:
            st = self.settings
            if st.encryption_key is not None or st.encryption_key_file is not None:
                from bot.store import crypto  # pyrage only when a key is set

                env = {}
                if st.encryption_key is not None:
                    env[crypto.KEY_ENV] = st.encryption_key.get_secret_value()
                if st.encryption_key_file is not None:
                    env[crypto.KEY_FILE_ENV] = str(st.encryption_key_file)
                self._identity = crypto.load_identity(env)
            self._identity_loaded = True
        return self._identity

    def identity_for(self, row: dict[str, Any]) -> Any:
        if row.get("encryption") != "age":
            return None
        identity = self.encryption_identity()
        if identity is None:
            raise AtlasError(
                f"Snapshot {row['id']} is encrypted (age), and no key is configured.",
                "set ATLAS_ENCRYPTION_KEY_FILE to the key it was made with",
            )
        return identity

    # -- take ------------------------------------------------------------------------

    def take(
        self,
        *,
        requested_by: str,
        note: str = "",
        database: str | None = None,
        source: str = "cli",
        progress: Callable[[Progress], None] | None = None,
        progress_every: float = 1.0,
        on_start: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Dump, store and verify one snapshot; returns its catalog row.

        Raises Busy when the database already has one running, AtlasError on any
        failure (after recording it and removing whatever was half-written).
        """
        target = self.settings.target(database)
        identity = self.encryption_identity()  # a bad key fails before anything starts
        self.recover()  # a snapshot left "running" by a dead process must not block this one
        snap_id = new_id()
        key = artifact_key(target, snap_id) + (".age" if identity is not None else "")
        row = self.catalog.begin_snapshot(
            {
                "id": snap_id,
                "database": target.name,
                "environment": target.environment,
                "source": source,
                "requested_by": requested_by,
                "note": clean_text(note),
                "storage_key": key,
                "location": self.storage.location(key),
                "compression": "zstd",
                "encryption": "age" if identity is not None else "none",
                "pinned": 0,
            }
        )
        opened: list[ArtifactWriter] = []  # the writer, once _dump has opened it
        committing = False
        conn = Conn("", None)
        try:
            conn = Conn.parse(target.url, target.url_setting)
            if on_start:
                on_start(row)
            writer, stats, info, versions, found = self._dump(
                conn, snap_id, key, progress, progress_every, identity, opened
            )
            committing = True  # from here an object may exist under its final name
            sha256 = self._check_stored(key, writer, writer.commit())
            result = {
                "dbname": info.dbname,
                "server_version": info.version,
                "pg_dump_version": versions,
                "size_bytes": writer.size,
                "raw_size_bytes": stats.raw_size,
                "sha256": sha256,
                "toc_bytes": stats.toc_bytes,
                "toc_sha256": stats.toc_sha256,
                "dump_s": round(stats.seconds, 3),
                "manifest": json.dumps(found),
                "verified_at": now(),
                "pending_ref": None,
            }
            self.storage.put_bytes(sidecar_key(key), self._sidecar({**row, **result}))
            finished = now()
            result["duration_s"] = round(_seconds_between(row["started_at"], finished), 3)
            self.catalog.finish_snapshot(
                snap_id, OK, audit=(requested_by, "snapshot.ok", {"size": writer.size}), **result
            )
        except BaseException as exc:
            writer_or_none = opened[0] if opened else None
            message = self._fail(snap_id, key, writer_or_none, exc, conn, committing)
            self.catalog.audit(requested_by, "snapshot.failed", snap_id, error=message)
            if isinstance(exc, AtlasError):
                raise
            if isinstance(exc, Exception):
                raise AtlasError(message) from exc
            raise
        return self.catalog.get_snapshot(snap_id)

    def _dump(
        self,
        conn: Conn,
        snap_id: str,
        key: str,
        progress: Callable[[Progress], None] | None,
        progress_every: float,
        identity: Any,
        opened: list[ArtifactWriter],
    ) -> tuple[_Committable, pipeline.DumpStats, Any, str, dict[str, Any]]:
        bindir = self.settings.pg_bindir
        tools_known = warm_tool_versions(("pg_dump", "pg_restore"), bindir)  # while connecting
        with conn.connect(autocommit=False) as pgconn:
            pgconn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            pgconn.read_only = True
            info = server_info(pgconn)
            tools_known()
            pg_dump, dump_ver = find_tool("pg_dump", info.major, bindir)
            pg_restore, _ = find_tool("pg_restore", info.major, bindir)
            exported = pgconn.execute("SELECT pg_export_snapshot()").fetchone()
            assert exported is not None
            found: dict[str, Any] = {}
            errors: list[BaseException] = []

            def count() -> None:
                try:
                    found.update(manifest.collect(pgconn))
                except BaseException as exc:  # reported after the dump
                    errors.append(exc)

            counter = threading.Thread(target=count, name=f"manifest-{snap_id}", daemon=True)
            counter.start()
            stored = self.storage.writer(key)
            writer: ArtifactWriter = stored
            if identity is not None:
                from bot.store.crypto import EncryptingWriter

                writer = EncryptingWriter(stored, identity)
            opened.append(_Committable(writer, stored))
            try:
                self.catalog.update_snapshot(
                    snap_id,
                    dbname=info.dbname,
                    server_version=info.version,
                    pg_dump_version=dump_ver,
                    pending_ref=writer.pending_ref,
                )
                argv = [
                    pg_dump,
                    "--format=custom",
                    "--compress=0",
                    "--no-owner",
                    "--no-acl",
                    "--lock-wait-timeout=60s",
                    f"--snapshot={exported[0]}",
                    "--dbname",
                    conn.conninfo,
                ]
                last = [0.0, time.monotonic()]

                def on_bytes(raw: int, stored: int, elapsed: float) -> None:
                    t = time.monotonic()
                    if t - last[1] >= HEARTBEAT_S:
                        last[1] = t
                        self.catalog.update_snapshot(snap_id, heartbeat_at=now())
                    if progress and elapsed - last[0] >= progress_every:
                        last[0] = elapsed
                        progress(Progress(snap_id, raw, stored, elapsed))

                stats = pipeline.run_dump(
                    argv,
                    conn.env(),
                    writer,
                    pg_restore=pg_restore,
                    level=self.settings.zstd_level,
                    threads=self.settings.zstd_threads,
                    secrets=conn.secrets,
                    progress=on_bytes,
                )
                counter.join()
                if errors:
                    raise AtlasError(f"Could not read the manifest: {errors[0]}")
            except BaseException:
                writer.abort()
                counter.join(timeout=30)
                raise
            if progress:
                progress(Progress(snap_id, stats.raw_size, stored.size, stats.seconds))
            return _Committable(writer, stored), stats, info, dump_ver, found

    def _check_stored(self, key: str, writer: _Committable, committed: StoredObject) -> str:
        """The stored object must be exactly what was streamed, byte for byte; its sha256."""
        head = self.storage.stat(key)
        if head is None or head.size != writer.size or committed.sha256 is None:
            got = "missing" if head is None else f"{head.size} bytes"
            raise AtlasError(f"Stored object is {got}, but {writer.size} bytes were written.")
        if committed.read_back:  # the writer compared every stored byte with the stream
            return committed.sha256
        expected_etag = self.storage.expected_etag(writer.stored)
        if expected_etag and head.etag == expected_etag:
            return committed.sha256  # the store computed this from the bytes it received
        if pipeline.hash_stored(self.storage, key) != (writer.size, committed.sha256):
            raise AtlasError("The stored object's checksum does not match what was written.")
        return committed.sha256

    def _fail(
        self,
        snap_id: str,
        key: str,
        writer: ArtifactWriter | None,
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
                    self.storage.delete(k)
        status = INTERRUPTED if isinstance(exc, KeyboardInterrupt) else FAILED
        with contextlib.suppress(Exception):
            self.catalog.finish_snapshot(snap_id, status, error=message, pending_ref=left_behind)
        log.info("snapshot %s failed: %s", snap_id, message)
        return message

    def _sidecar(self, row: dict[str, Any]) -> bytes:
        """A self-describing JSON next to the artifact, so storage alone is enough to restore."""
        keys = [
            "id",
            "database",
            "dbname",
            "environment",
            "requested_by",
            "note",
            "started_at",
            "server_version",
            "pg_dump_version",
            "size_bytes",
            "raw_size_bytes",
            "sha256",
            "toc_bytes",
            "toc_sha256",
            "compression",
            "encryption",
            "verified_at",
        ]
        doc = {k: row.get(k) for k in keys}
        doc["format"] = FORMAT
        doc["manifest"] = json.loads(row["manifest"])
        decode = (
            "age -d -i KEY.txt ID.dump.zst.age | zstd -dc > ID.dump"
            if row.get("encryption") == "age"
            else "zstd -dc ID.dump.zst > ID.dump"
        )
        doc["restore"] = (
            f"{decode} && pg_restore --clean --if-exists --no-owner "
            '--no-acl --dbname "$STAGING_DATABASE_URL" ID.dump'
        ).replace("ID", row["id"])
        if row.get("encryption") == "age":
            doc["recipient"] = self.encryption_identity().recipient
        return json.dumps(doc, indent=2, sort_keys=True).encode()

    # -- read side ---------------------------------------------------------------------

    def get(self, ref: str, database: str | None = None) -> dict[str, Any]:
        """A snapshot by id, unique id prefix (`20261129-0344`), or `latest` (the newest
        good snapshot of `database`, or of the first configured one)."""
        return self.catalog.get_snapshot(self.resolve(ref, database))

    def resolve(self, ref: str, database: str | None = None) -> str:
        """The full id `ref` names; NotFound or an ambiguity in words otherwise."""
        ref = ref.strip()
        if ref == "latest":
            target = self.settings.target(database)
            rows = self.catalog.list_snapshots(
                limit=1, database=target.name, status=OK, environment=target.environment
            )
            if not rows:
                raise NotFound(
                    f"There is no good snapshot of {target.name} yet, so `latest` names none.",
                    "take one with `atlas snapshot` or `/atlas snapshot`",
                )
            return str(rows[0]["id"])
        if SNAPSHOT_ID.fullmatch(ref) or len(ref) < 4:
            return ref  # a full id, or too short to mean anything: looked up as it is
        found = self.catalog.snapshot_ids_like(ref)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
            raise AtlasError(
                f"{ref!r} is the start of several snapshot ids: {shown}.",
                "give more of the id",
            )
        return ref

    def list(self, limit: int = 20, database: str | None = None) -> list[dict[str, Any]]:
        return self.catalog.list_snapshots(limit=limit, database=database)

    def _readable(self, snap_id: str) -> dict[str, Any]:
        row = self.get(snap_id)
        if row["status"] not in (OK, CORRUPT):
            raise AtlasError(
                f"Snapshot {snap_id} is {row['status']}, so it has no artifact to read.",
                row.get("error") or None,
            )
        return row

    def read(
        self,
        row: dict[str, Any],
        consume: Callable[[bytes], None],
        *,
        source: Iterable[bytes] | None = None,
    ) -> None:
        """Decompress (and decrypt) a stored snapshot into `consume`, checking its size,
        sha256 and zstd frame; `source` gives the stored bytes when already open."""
        pipeline.read_artifact(
            self.storage,
            row["storage_key"],
            consume,
            expect_size=row["size_bytes"],
            expect_sha256=row["sha256"],
            identity=self.identity_for(row),
            source=source,
        )

    def verify(self, snap_id: str, actor: str = "cli") -> dict[str, Any]:
        """Re-read a stored snapshot: size, checksums, and pg_restore reading it through."""
        row = self._readable(snap_id)
        snap_id = row["id"]
        started = time.monotonic()
        self.identity_for(row)  # no key: an error before reading, not a corrupt snapshot
        pg_restore, _ = find_tool(
            "pg_restore", _major(row.get("server_version")), self.settings.pg_bindir
        )
        check = pipeline.ArchiveCheck(pg_restore, dict(os.environ))
        try:
            self.read(row, check.feed)
            check.verify()
        except AtlasError as exc:
            check.kill()
            raise self.mark_damaged(row, exc, actor, found_by="verify") from None
        self.catalog.update_snapshot(snap_id, status=OK, verified_at=now(), error=None)
        self.catalog.audit(actor, "snapshot.verified", snap_id)
        return {**self.catalog.get_snapshot(snap_id), "verify_s": time.monotonic() - started}

    def mark_damaged(
        self, row: dict[str, Any], exc: AtlasError, actor: str, *, found_by: str
    ) -> AtlasError:
        """The one place a damaged artifact is recorded, whoever found it (verify, a drill,
        a restore, a fetch): the snapshot becomes `corrupt`, so status, retention and the
        next drill stop counting on it. Returns the error to raise.

        An encrypted artifact that cannot be decrypted but whose checksum matches is not
        damaged: the key is wrong, and that is what the error then says.
        """
        if row.get("encryption") == "age" and self._intact(row):
            return AtlasError(
                f"Snapshot {row['id']} is intact (its checksum matches) but {exc}",
                "its sidecar names the public key it was encrypted to (`recipient`); "
                "after a rotation keep that key in ATLAS_ENCRYPTION_KEY_FILE, below the "
                "new one",
            )
        self.catalog.update_snapshot(row["id"], status=CORRUPT, error=str(exc))
        self.catalog.audit(actor, "snapshot.damaged", row["id"], found_by=found_by, error=str(exc))
        log.warning("snapshot %s is damaged (found by %s): %s", row["id"], found_by, exc)
        if self.on_damage is not None:
            self.on_damage({**row, "status": CORRUPT, "error": str(exc)}, found_by)
        return exc

    def _intact(self, row: dict[str, Any]) -> bool:
        try:
            return pipeline.hash_stored(self.storage, row["storage_key"]) == (
                row["size_bytes"],
                row["sha256"],
            )
        except AtlasError:
            return False

    def fetch(self, snap_id: str, out: str, *, force: bool = False) -> dict[str, Any]:
        """Write the plain pg_dump custom-format file that `pg_restore` reads as it is."""
        row = self._readable(snap_id)
        if out == "-":
            stream: IO[bytes] = sys.stdout.buffer
            try:
                self.read(row, stream.write)
            except Damaged as exc:
                raise self.mark_damaged(row, exc, "cli", found_by="fetch") from None
            stream.flush()
            return row
        path = Path(out)
        if path.exists() and not force:
            raise AtlasError(f"{path} already exists.", "choose another -o path or pass --force")
        tmp = path.with_name(f".{path.name}.partial")
        try:
            with open(tmp, "wb") as fh:
                self.read(row, fh.write)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except Damaged as exc:
            tmp.unlink(missing_ok=True)
            raise self.mark_damaged(row, exc, "cli", found_by="fetch") from None
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise AtlasError(f"Cannot write {path}: {exc.strerror or exc}.") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return row

    # -- rebuilding the catalog from storage ------------------------------------------------

    def rescan(self, actor: str, *, dry_run: bool = False) -> list[dict[str, Any]]:
        """Register snapshots that storage holds but the catalog does not know, from their
        sidecars: after losing ATLAS_STATE, storage alone brings drills, restores and
        retention back. Only configured databases are scanned: another Atlas's backups in
        a shared bucket are never adopted, since retention would then delete them."""
        results = []
        configured = {(t.environment, t.name): t for t in self.settings.databases.values()}
        for key in self.storage.list(""):
            if not (key.endswith(".json") and key.count("/") == 2):
                continue
            environment, database, _ = key.split("/")
            target = configured.get((environment, database))
            if target is not None:
                results.append(self._adopt(key, target, actor, dry_run))
            else:  # named, so that a typo in a database's name does not go unnoticed
                results.append(
                    {
                        "key": key,
                        "id": key.rsplit("/", 1)[1].removesuffix(".json"),
                        "outcome": "other",
                        "reason": f"{environment}/{database} is not a database configured here",
                    }
                )
        return results

    def _adopt(self, key: str, target: DatabaseTarget, actor: str, dry_run: bool) -> dict[str, Any]:
        snap_id = key.rsplit("/", 1)[1].removesuffix(".json")
        found: dict[str, Any] = {"key": key, "id": snap_id}
        if not SNAPSHOT_ID.fullmatch(snap_id):
            return {**found, "outcome": "skipped", "reason": f"{key} is not named like a snapshot."}
        if self.catalog.has_snapshot(snap_id):
            return {**found, "outcome": "known"}
        try:
            row = self._row_from_sidecar(key, snap_id, target)
        except AtlasError as exc:
            return {**found, "outcome": "skipped", "reason": str(exc)}
        if not dry_run:
            if not self.catalog.add_snapshot(row):
                return {**found, "outcome": "known"}
            self.catalog.audit(actor, "snapshot.imported", snap_id, sidecar=key)
        return {**found, "outcome": "imported", "database": target.name}

    def _row_from_sidecar(self, key: str, snap_id: str, target: DatabaseTarget) -> dict[str, Any]:
        """A catalog row from a sidecar, or AtlasError saying why it cannot be trusted."""
        data = b""
        for chunk in self.storage.read(key):
            data += chunk
            if len(data) > SIDECAR_MAX:
                raise AtlasError(f"{key} is larger than a sidecar can be.")
        try:
            doc = json.loads(data)
        except ValueError:
            raise AtlasError(f"{key} is not JSON.") from None
        if not isinstance(doc, dict):
            raise AtlasError(f"{key} is not a sidecar.")
        expected = {
            "id": snap_id,
            "database": target.name,
            "environment": target.environment,
            "format": FORMAT,
            "compression": "zstd",
        }
        for field, want in expected.items():
            if doc.get(field) != want:
                raise AtlasError(f"{key}: {field} is {doc.get(field)!r}, expected {want!r}.")
        encryption = doc.get("encryption")
        sha256, size = doc.get("sha256"), doc.get("size_bytes")
        if encryption not in ("none", "age"):
            raise AtlasError(f"{key}: unknown encryption {encryption!r}.")
        if not (isinstance(sha256, str) and len(sha256) == 64 and _is_hex(sha256)):
            raise AtlasError(f"{key}: no valid sha256.")
        if not isinstance(size, int) or size <= 0 or not isinstance(doc.get("manifest"), dict):
            raise AtlasError(f"{key}: no size or manifest.")
        if not _is_time(doc.get("started_at")) or not _is_time(doc.get("verified_at"), None):
            raise AtlasError(f"{key}: started_at or verified_at is not a time.")
        artifact = artifact_key(target, snap_id) + (".age" if encryption == "age" else "")
        head = self.storage.stat(artifact)
        if head is None:
            raise AtlasError(f"{key}: its artifact {artifact} is missing.")
        if head.size != size:
            raise AtlasError(f"{key}: {artifact} is {head.size} bytes, the sidecar says {size}.")
        text = {k: doc.get(k) for k in ("dbname", "requested_by", "started_at", "verified_at")}
        text.update({k: doc.get(k) for k in ("server_version", "pg_dump_version", "toc_sha256")})
        return {
            **{k: str(v) if v is not None else None for k, v in text.items()},
            "id": snap_id,
            "database": target.name,
            "environment": target.environment,
            "status": OK,
            "source": "rescan",
            "note": str(doc.get("note") or "")[:2000],
            "size_bytes": size,
            "raw_size_bytes": _int_or_none(doc.get("raw_size_bytes")),
            "sha256": sha256,
            "toc_bytes": _int_or_none(doc.get("toc_bytes")),
            "storage_key": artifact,
            "location": self.storage.location(artifact),
            "compression": "zstd",
            "encryption": encryption,
            "manifest": json.dumps(doc["manifest"]),
            "pinned": 0,
        }

    # -- retention and pins ----------------------------------------------------------------

    def delete_artifact(self, row: dict[str, Any]) -> None:
        for key in (row["storage_key"], sidecar_key(row["storage_key"])):
            self.storage.delete(key)

    def pin(self, snap_id: str, pinned: bool, actor: str) -> dict[str, Any]:
        """`keep` protects a snapshot from retention until `unkeep`."""
        row = self.get(snap_id)
        snap_id = row["id"]
        if pinned and row["status"] not in (OK, CORRUPT):
            raise AtlasError(f"Snapshot {snap_id} is {row['status']}; there is nothing to keep.")
        self.catalog.update_snapshot(snap_id, pinned=int(pinned))
        self.catalog.audit(actor, "snapshot.keep" if pinned else "snapshot.unkeep", snap_id)
        return self.catalog.get_snapshot(snap_id)

    # -- crash recovery ------------------------------------------------------------------

    def recover(self, stale_after_s: float = 120.0) -> list[dict[str, Any]]:
        """Mark snapshots left running by a dead process as interrupted and clean up after
        them; retry removing what failed snapshots could not remove (an S3 upload whose
        abort did not get through). Returns the newly interrupted snapshots."""
        rows = self.catalog.stale_running(stale_after_s)
        for row in rows:
            # the unfinished write, even if the process died before recording its name
            gone = bool(row.get("storage_key")) and self._discard_unfinished(row["storage_key"])
            self.catalog.finish_snapshot(
                row["id"],
                INTERRUPTED,
                error="Atlas stopped while this snapshot was running; nothing was kept.",
                **({"pending_ref": None} if gone else {}),
            )
            self.catalog.audit("atlas", "snapshot.interrupted", row["id"])
        for row in self.catalog.left_behind():
            if self._discard(row["pending_ref"]):
                self.catalog.update_snapshot(row["id"], pending_ref=None)
        return [self.catalog.get_snapshot(r["id"]) for r in rows]

    def _discard_unfinished(self, key: str) -> bool:
        try:
            return self.storage.discard_unfinished(key)
        except AtlasError as exc:
            log.warning("cannot remove the unfinished write of %s yet: %s", key, exc)
            return False

    def _discard(self, ref: str) -> bool:
        try:
            return self.storage.discard_pending(ref)
        except AtlasError as exc:
            log.warning("cannot remove the unfinished write %s yet: %s", ref.split("\n")[0], exc)
            return False

    def sweep_pending(self, older_than_s: float = 3600.0) -> list[str]:
        """Remove unfinished writes in storage that no running snapshot owns: partial files
        and open S3 uploads a crash left unrecorded. Those younger than `older_than_s` are
        left alone, in case another process has just started them."""
        running = {
            r["pending_ref"]
            for r in self.catalog.list_snapshots(limit=1000, status=RUNNING)
            if r.get("pending_ref")
        }
        cutoff = time.time() - older_than_s
        removed = []
        for target in self.settings.databases.values():
            for found in self.storage.pending(f"{target.environment}/{target.name}/"):
                if found.ref not in running and found.started < cutoff and self._discard(found.ref):
                    self.catalog.audit("atlas", "storage.discarded", found.ref.split("\n")[0])
                    removed.append(found.ref)
        return removed


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

    def commit(self) -> Any:
        return self.outer.commit()

    def abort(self) -> None:
        self.outer.abort()


def _is_time(value: Any, *allowed: Any) -> bool:
    if value in allowed:
        return True
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _major(version: str | None) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def _seconds_between(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


__all__ = ["Snapshots", "Progress", "NotFound", "artifact_key", "sidecar_key", "new_id"]
