"""Finding snapshots by what people type (`latest`, an id, the start of one), and pinning."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from bot.backup.layout import SNAPSHOT_ID
from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import AtlasError, NotFound
from bot.records import CopyState, Snapshot, SnapshotStatus
from bot.tags import matches, render


class Snapshots:
    """Finds snapshots by id, id prefix or `latest`, and pins them."""

    def __init__(self, settings: Settings, catalog: Catalog, copy: str | None = None) -> None:
        self.settings, self.catalog = settings, catalog
        self.copy = copy  # `--from NAME`: snapshots as that destination's copies hold them

    def get(self, ref: str, database: str | None = None) -> Snapshot:
        """A snapshot by id, unique id prefix (`20261129-0344`), or `latest` (the newest
        good snapshot of `database`, or of the first configured one)."""
        snap = self.catalog.get_snapshot(self.resolve(ref, database))
        return snap if self.copy is None else self.as_copy(snap)

    def as_copy(self, snap: Snapshot) -> Snapshot:
        """The snapshot as read from the copy: good there (or damaged there), whatever
        became of it in ATLAS_STORAGE; no copy there is an error."""
        found = [c for c in self.catalog.copies_of(snap.id) if c.destination == self.copy]
        if not found or found[0].state not in (CopyState.OK, CopyState.DAMAGED):
            state = f"its copy is {found[0].state}" if found else "it has no copy there"
            raise AtlasError(
                f"Snapshot {snap.id} cannot be read from {self.copy}: {state}.",
                f"`atlas copy --to {self.copy}` makes the copies still missing",
            )
        c = found[0]
        status = SnapshotStatus.OK if c.state == CopyState.OK else SnapshotStatus.CORRUPT
        return dataclasses.replace(snap, status=status, location=c.location, error=c.error)

    def resolve(self, ref: str, database: str | None = None) -> str:
        """The full id `ref` names; NotFound or an ambiguity in words otherwise."""
        ref = ref.strip()
        if ref == "latest":
            name, newest = self._newest_good(database, {})
            if newest is None:
                raise NotFound(
                    f"There is no good snapshot of {name} yet, so `latest` names none.",
                    "take one with `atlas snapshot` or `/atlas snapshot`",
                )
            return newest.id
        if SNAPSHOT_ID.fullmatch(ref) or len(ref) < 4:
            return ref  # a full id, or too short to mean anything: looked up as it is
        found = self.catalog.snapshot_ids_like(ref)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
            raise AtlasError(
                f"{ref!r} is the start of several snapshot ids: {shown}.", "give more of the id"
            )
        return ref

    def recent(
        self, limit: int = 20, database: str | None = None, tags: Mapping[str, str] | None = None
    ) -> list[Snapshot]:
        return self.catalog.list_snapshots(limit=limit, database=database, tags=tags)

    def tagged(self, tags: Mapping[str, str], database: str | None = None) -> Snapshot:
        """The newest good snapshot of `database` (or the first configured one) carrying
        every one of `tags`: "the last snapshot before migration 0042"."""
        name, newest = self._newest_good(database, tags)
        if newest is None:
            raise NotFound(
                f"No good snapshot of {name} is tagged {render(tags)}.",
                "`atlas list --db NAME` shows each snapshot's tags",
            )
        return newest

    def named(
        self,
        ref: str | None,
        tags: Mapping[str, str],
        database: str | None = None,
        spelled: str = "--tag",
    ) -> str | None:
        """What a command names: `ref` as given, or with `tags` the newest good snapshot
        carrying them. Both together are refused (which one was meant?); `spelled` is how
        the command writes a tag, for the message."""
        if not tags:
            return ref
        if ref not in (None, "latest"):
            raise AtlasError(
                f"Give a snapshot id or {spelled}, not both.",
                f"{spelled} picks the newest good snapshot it fits",
            )
        return self.tagged(tags, database).id

    def _newest_good(
        self, database: str | None, tags: Mapping[str, str]
    ) -> tuple[str, Snapshot | None]:
        """(the database's name, its newest good snapshot carrying `tags`, if any)."""
        target = self.settings.target(database)
        if self.copy is not None:
            return target.name, self._newest_copy(target.name, target.environment, tags)
        rows = self.catalog.list_snapshots(
            limit=1,
            database=target.name,
            status=SnapshotStatus.OK,
            environment=target.environment,
            tags=tags or None,
        )
        return target.name, rows[0] if rows else None

    def _newest_copy(
        self, database: str, environment: str, tags: Mapping[str, str]
    ) -> Snapshot | None:
        """The newest snapshot of `database` with a good copy in the `--from` destination."""
        copies = self.catalog.copies_in(self.copy or "", CopyState.OK)
        for c in sorted(copies, key=lambda c: c.snapshot_id, reverse=True):
            if c.database != database:
                continue
            snap = self.catalog.get_snapshot(c.snapshot_id)
            if snap.environment == environment and matches(snap.tags, tags):
                return snap
        return None

    def readable(self, ref: str) -> Snapshot:
        """A snapshot that has an artifact to read (good, or found corrupt)."""
        snap = self.get(ref)
        if snap.status not in (SnapshotStatus.OK, SnapshotStatus.CORRUPT):
            raise AtlasError(
                f"Snapshot {snap.id} is {snap.status}, so it has no artifact to read.",
                snap.error or None,
            )
        return snap

    def pin(self, ref: str, pinned: bool, actor: str) -> Snapshot:
        """`keep` protects a snapshot from retention until `unkeep`."""
        snap = self.get(ref)
        if pinned and snap.status not in (SnapshotStatus.OK, SnapshotStatus.CORRUPT):
            raise AtlasError(f"Snapshot {snap.id} is {snap.status}; there is nothing to keep.")
        self.catalog.update_snapshot(snap.id, pinned=pinned)
        self.catalog.audit(actor, "snapshot.keep" if pinned else "snapshot.unkeep", snap.id)
        return self.catalog.get_snapshot(snap.id)
