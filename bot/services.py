"""The one place that wires Atlas together.

`Services` builds each part once from the settings and hands it the parts it needs; no
part reaches back for Services. The parts do the work: a snapshot with its message
(`backup/reported.py`), a fleet run (`fleet/runner.py`), a restore (`restore/run.py`).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot import files
from bot.background import Background
from bot.backup.keys import Keys
from bot.backup.lookup import Snapshots
from bot.backup.recovery import Recovery
from bot.backup.reported import ReportedSnapshots
from bot.catalog import Catalog, open_catalog
from bot.config import Settings
from bot.errors import AtlasError
from bot.owners import owner_id
from bot.report.chat import Chat, NoChat
from bot.report.home import Viewers
from bot.store import LazyStorage

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from bot.approval.ask import ApprovalRequests
    from bot.approval.jobs import ApprovedJobs
    from bot.approval.reactions import ReactionApplier
    from bot.backup.read import Reader
    from bot.backup.rescan import Rescanner
    from bot.backup.take import Taker
    from bot.copies.copier import Copier
    from bot.copies.streams import Streams
    from bot.fleet.runner import Fleets
    from bot.records import Snapshot
    from bot.restore.run import Restores
    from bot.restore.scratch import Scratch


class Services:
    """Everything a request handler or command needs, built once from settings."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog | None = None,
        chat: Chat | None = None,
        source: str | None = None,
    ) -> None:
        self.settings = settings
        if source is not None and source not in settings.copies:
            known = ", ".join(sorted(settings.copies)) or "none"
            raise AtlasError(
                f"--from {source}: ATLAS_COPIES has no destination of that name.",
                f"destinations: {known}",
            )
        self.catalog = catalog or open_catalog(
            settings.state, self._check_new_catalog, files.Access.for_group(settings.file_group)
        )
        self.chat = chat or NoChat()
        self.store = LazyStorage(settings)  # ATLAS_STORAGE: where snapshots are written
        # where snapshots are read from: ATLAS_STORAGE, or a copy (`--from NAME`)
        self.source = LazyStorage(settings, copy=source) if source else self.store
        self.keys = Keys(settings)
        self.snapshots = Snapshots(settings, self.catalog, copy=source)
        self.recovery = Recovery(settings, self.catalog, self.store)
        self.background = Background()
        self.home_viewers = Viewers()  # who opened the App Home tab here
        self._build_lock = threading.RLock()
        self._taker: Taker | None = None
        self._reader: Reader | None = None
        self._rescanner: Rescanner | None = None
        self._restores: Restores | None = None
        self._scratch: Scratch | None = None
        self._ask: ApprovalRequests | None = None
        self._jobs: ApprovedJobs | None = None
        self._reactions: ReactionApplier | None = None
        # this process among the replicas sharing the catalog (`atlas serve` leases it)
        self.replica = f"{owner_id()}:{secrets.token_hex(3)}"
        self._fleets: Fleets | None = None
        self._copier: Copier | None = None
        self.copy_hooks = CopyHooks(settings, lambda: self.copier)
        self.reported = ReportedSnapshots(
            settings,
            self.catalog,
            self.chat,
            lambda: self.taker,
            self.recovery,
            self.background,
            _start_provider,
        )

    def _check_new_catalog(self) -> None:
        """Before Atlas makes its tables in a new PostgreSQL catalog: not in a database it
        backs up or restores into (by server identity)."""
        from bot.restore.guard import refuse_catalog_among_targets

        refuse_catalog_among_targets(self.settings)

    @classmethod
    def from_settings(cls, settings: Settings, source: str | None = None) -> Services:
        from bot.slack.client import chat_for

        return cls(settings, chat=chat_for(settings), source=source)

    # Built on first use, once even when handler threads race: `atlas list` answers
    # without loading libpq or zstd, and `atlas snapshot` starts its dump without
    # importing the restore and approval code.
    @property
    def taker(self) -> Taker:
        with self._build_lock:
            if self._taker is None:
                from bot.backup.take import Taker

                self._taker = Taker(
                    self.settings,
                    self.catalog,
                    self.store,
                    self.keys,
                    self.recovery,
                    self.copy_hooks,
                )
            return self._taker

    @property
    def fleets(self) -> Fleets:
        """The servers' databases: listed, snapshotted as a run, made known by name."""
        with self._build_lock:
            if self._fleets is None:
                from bot.fleet.runner import Fleets

                self._fleets = Fleets(
                    self.settings,
                    self.catalog,
                    self.store,
                    self.keys,
                    lambda: self.taker,
                    self.replica,
                    self.copy_new,
                )
            return self._fleets

    @property
    def copier(self) -> Copier:
        """Copies to the destinations of ATLAS_COPIES, once across replicas."""
        with self._build_lock:
            if self._copier is None:
                from bot.copies.copier import Copier

                self._copier = Copier(self.settings, self.catalog, self.store, self.replica)
            return self._copier

    def copy_new(self, snap: Snapshot) -> None:
        """A new snapshot's copies, made from ATLAS_STORAGE (a server's roles)."""
        self.copy_hooks.after(snap, None)

    @property
    def reader(self) -> Reader:
        with self._build_lock:
            if self._reader is None:
                from bot.backup.read import Reader

                self._reader = Reader(
                    self.settings,
                    self.catalog,
                    self.source,
                    self.keys,
                    self.snapshots,
                    self.reported.damaged,
                )
            return self._reader

    @property
    def rescanner(self) -> Rescanner:
        with self._build_lock:
            if self._rescanner is None:
                from bot.backup.rescan import Rescanner

                self._rescanner = Rescanner(
                    self.settings, self.catalog, self.source, self.keys, self.store
                )
            return self._rescanner

    @property
    def scratch(self) -> Scratch:
        with self._build_lock:
            if self._scratch is None:
                from bot.restore.scratch import Scratch

                self._scratch = Scratch(self.settings, self.catalog)
            return self._scratch

    @property
    def restores(self) -> Restores:
        with self._build_lock:
            if self._restores is None:
                from bot.restore.run import Restores

                self._restores = Restores(
                    self.settings,
                    self.catalog,
                    self.source,
                    self.snapshots,
                    self.reader,
                    self.scratch,
                )
            return self._restores

    @property
    def ask(self) -> ApprovalRequests:
        with self._build_lock:
            if self._ask is None:
                from bot.approval.ask import ApprovalRequests

                self._ask = ApprovalRequests(self.settings, self.catalog, self.chat, self.restores)
            return self._ask

    @property
    def jobs(self) -> ApprovedJobs:
        with self._build_lock:
            if self._jobs is None:
                from bot.approval.jobs import ApprovedJobs

                self._jobs = ApprovedJobs(
                    self.catalog, self.chat, self.ask, self.restores, self.scratch, self.background
                )
            return self._jobs

    @property
    def reactions(self) -> ReactionApplier:
        with self._build_lock:
            if self._reactions is None:
                from bot.approval.reactions import ReactionApplier

                self._reactions = ReactionApplier(self.catalog, self.chat, self.ask, self.jobs)
            return self._reactions

    def shutdown(self) -> None:
        self.background.shutdown(wait=False, cancel_futures=True)
        if self._fleets is not None:
            self._fleets.shutdown()


def _start_provider(ident: str, name: str, cluster: bool) -> str:
    """`--provider`: the RDS snapshot (boto3 is imported only when one is asked for)."""
    from bot.ops import provider

    return provider.start_snapshot(ident, name, cluster=cluster)


class CopyHooks:
    """ATLAS_COPIES for the snapshot taker: copies stream as a snapshot is stored and are
    proven after it. A copy never fails a snapshot: whatever goes wrong is recorded on the
    copy, retried, and shown by status."""

    def __init__(self, settings: Settings, copier: Callable[[], Copier]) -> None:
        self.settings, self._copier = settings, copier

    def open(self, snap: Snapshot) -> Streams | None:
        if not self.settings.copies:
            return None
        try:
            return self._copier().open_streams(snap)
        except Exception:
            log.exception("copies of %s cannot stream; made after it instead", snap.id)
            return None

    def after(self, snap: Snapshot, stream: object | None) -> None:
        if not self.settings.copies:
            return
        from bot.copies.streams import Streams

        try:
            self._copier().after_snapshot(snap, stream if isinstance(stream, Streams) else None)
        except Exception:
            log.exception("copies of %s could not be made; they are retried", snap.id)
