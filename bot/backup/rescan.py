"""Rebuilding a lost catalog from storage: every snapshot whose sidecar and artifact are
there and agree is registered again."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.backup import sidecar
from bot.backup.keys import Keys
from bot.backup.layout import SNAPSHOT_ID, artifact_key, globals_key, globals_name
from bot.catalog import Catalog
from bot.config import DatabaseTarget, Settings
from bot.errors import AtlasError
from bot.records import Copy, CopyState, Snapshot, SnapshotStatus, copy_key
from bot.store import LazyStorage, Storage

if TYPE_CHECKING:
    from bot.store.crypto import Identity


@dataclass(frozen=True)
class Found:
    """What rescan made of one sidecar: imported, known, skipped (untrusted, with the
    reason) or other (a database not configured here)."""

    key: str
    id: str
    outcome: str
    reason: str | None = None
    database: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Artifact(Protocol):
    """The storage key of the artifact of snapshot `snap_id` at one place."""

    def __call__(self, snap_id: str, *, encrypted: bool = False) -> str: ...


def _database_artifact(target: DatabaseTarget, snap_id: str, *, encrypted: bool = False) -> str:
    return artifact_key(target, snap_id, encrypted=encrypted)


class Rescanner:
    """Rebuilds the catalog's snapshot records from the sidecars in storage."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: LazyStorage,
        keys: Keys,
        primary: LazyStorage | None = None,
    ) -> None:
        self.settings, self.catalog, self.store, self.keys = settings, catalog, store, keys
        self.primary = primary or store  # ATLAS_STORAGE, when `store` is a copy (`--from`)

    def rescan(self, actor: str, *, dry_run: bool = False) -> list[Found]:
        """Register snapshots that storage holds but the catalog does not know, from their
        sidecars: after losing ATLAS_STATE, storage alone brings drills, restores and
        retention back. Only configured databases, and the roles of configured servers, are
        adopted: another Atlas's backups in a shared bucket are never adopted (retention
        would then delete them), but named."""
        results = []
        configured = self._places()
        for key in self.store.get().list(""):
            if not (key.endswith(".json") and key.count("/") == 2):
                continue
            environment, database, name = key.split("/")
            snap_id = name.removesuffix(".json")
            artifact = configured.get((environment, database))
            if artifact is None:
                results.append(
                    Found(
                        key,
                        snap_id,
                        "other",
                        f"{environment}/{database} is not a database configured here",
                    )
                )
            else:
                place = (environment, database)
                results.append(self._adopt(key, snap_id, place, artifact, actor, dry_run))
        return results

    def _places(self) -> dict[tuple[str, str], Artifact]:
        """(environment, database) of each configured database and each server's roles,
        with how the artifact beside a sidecar there is named."""
        places: dict[tuple[str, str], Artifact] = {}
        for t in self.settings.databases.values():
            places[(t.environment, t.name)] = functools.partial(_database_artifact, t)
        for name, server in self.settings.servers.items():
            where = (server.environment, globals_name(name))
            places[where] = functools.partial(globals_key, server.environment, name)
        return places

    def _identity(self, data: bytes) -> Identity | None:
        """The key, when a sidecar is sealed (checked cheaply, before loading any key)."""
        return self.keys.current() if b'"sealed"' in data else None

    def _adopt(
        self,
        key: str,
        snap_id: str,
        place: tuple[str, str],
        artifact_of: Artifact,
        actor: str,
        dry_run: bool,
    ) -> Found:
        if not SNAPSHOT_ID.fullmatch(snap_id):
            return Found(key, snap_id, "skipped", f"{key} is not named like a snapshot.")
        if self.catalog.has_snapshot(snap_id):
            return Found(key, snap_id, "known")
        storage = self.store.get()
        try:
            data = b""
            for chunk in storage.read(key):
                data += chunk
                if len(data) > sidecar.SIDECAR_MAX:
                    break
            doc = sidecar.parse(data, key, snap_id, place, self._identity(data))
            artifact = artifact_of(snap_id, encrypted=doc["encryption"] == "age")
            head = storage.stat(artifact)
            if head is None:
                raise AtlasError(f"{key}: its artifact {artifact} is missing.")
            if head.size != doc["size_bytes"]:
                raise AtlasError(
                    f"{key}: {artifact} is {head.size} bytes, the sidecar says {doc['size_bytes']}."
                )
        except AtlasError as exc:
            return Found(key, snap_id, "skipped", str(exc))
        if not dry_run:
            snap = sidecar.snapshot_from(doc, artifact, storage.location(artifact))
            if self.store.copy is not None:
                snap = self._from_copy(snap, artifact)
            if not self.catalog.add_snapshot(snap):
                return Found(key, snap_id, "known")
            if self.store.copy is not None:
                self.catalog.add_copies([_found_copy(snap, self.store.copy, head.size, storage)])
            self.catalog.audit(actor, "snapshot.imported", snap_id, sidecar=key)
        return Found(key, snap_id, "imported", database=place[1])

    def _from_copy(self, snap: Snapshot, artifact: str) -> Snapshot:
        """A snapshot found in a copy: recorded where ATLAS_STORAGE would hold it, and
        `deleted` there when ATLAS_STORAGE does not (drills read it `--from` the copy)."""
        primary = self.primary.get()
        snap.location = primary.location(artifact)
        try:
            there = primary.stat(artifact)
        except AtlasError:
            there = None
        if there is None or there.size != snap.size_bytes:
            snap.status = SnapshotStatus.DELETED
            snap.error = f"not in ATLAS_STORAGE; found in the copy {self.store.copy} by rescan"
        return snap


def _found_copy(snap: Snapshot, name: str, size: int, storage: Storage) -> Copy:
    return Copy(
        key=copy_key(snap.id, name),
        snapshot_id=snap.id,
        destination=name,
        database=snap.database,
        state=CopyState.OK,
        location=storage.location(snap.storage_key or ""),
        size_bytes=size,
        sha256=snap.sha256,
    )
