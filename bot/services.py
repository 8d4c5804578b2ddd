"""The operations Slack and the CLI share, and the one place that wires Atlas together.

`Services` builds each part once from the settings and hands it the parts it needs; no
part reaches back for Services. What Slack and the CLI both do with reporting (a snapshot
with its one updated message, recovery announced, damage announced) lives here.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from bot import files
from bot.backup.keys import Keys
from bot.backup.lookup import Snapshots
from bot.backup.recovery import Recovery
from bot.catalog import Catalog, open_catalog
from bot.config import Settings
from bot.errors import AtlasError, Busy
from bot.owners import owner_id
from bot.records import Snapshot, SnapshotStatus
from bot.report import messages
from bot.report.chat import Chat, Message, NoChat
from bot.store import Store

if TYPE_CHECKING:
    from bot.approval.ask import Ask
    from bot.approval.jobs import Jobs
    from bot.approval.reactions import Reactions
    from bot.backup.read import Reader
    from bot.backup.rescan import Rescanner
    from bot.backup.take import DumpProgress, Taker
    from bot.fleet.queue import Worker
    from bot.fleet.run import Fleet, Outcome
    from bot.records import WorkItem
    from bot.restore.run import Restores
    from bot.restore.scratch import Scratch

log = logging.getLogger(__name__)
T = TypeVar("T")


# a snapshot closed out by a process without Slack, and its announcement by one with it
UNANNOUNCED = "snapshot.interrupted_unannounced"
ANNOUNCED = "snapshot.interrupted_announced"


class Services:
    """Everything a request handler or command needs, built once from settings."""

    def __init__(
        self, settings: Settings, catalog: Catalog | None = None, chat: Chat | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog or open_catalog(
            settings.state, self._check_new_catalog, files.Access.for_group(settings.file_group)
        )
        self.chat = chat or NoChat()
        self.store = Store(settings)
        self.keys = Keys(settings)
        self.snapshots = Snapshots(settings, self.catalog)
        self.recovery = Recovery(settings, self.catalog, self.store)
        self.background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="atlas-job")
        self._build_lock = threading.RLock()
        self._taker: Taker | None = None
        self._reader: Reader | None = None
        self._rescanner: Rescanner | None = None
        self._restores: Restores | None = None
        self._scratch: Scratch | None = None
        self._ask: Ask | None = None
        self._jobs: Jobs | None = None
        self._reactions: Reactions | None = None
        # the databases named in the configuration; a fleet's servers add theirs at each run
        self._configured = dict(settings.databases)
        # this process among the replicas sharing the catalog (`atlas serve` leases it)
        self.replica = f"{owner_id()}:{secrets.token_hex(3)}"
        self._worker: Worker | None = None

    def _check_new_catalog(self) -> None:
        """Before Atlas makes its tables in a new PostgreSQL catalog: not in a database it
        backs up or restores into (by server identity)."""
        from bot.restore.guard import refuse_catalog_among_targets

        refuse_catalog_among_targets(self.settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        from bot.slack.client import chat_for

        return cls(settings, chat=chat_for(settings))

    # Built on first use, once even when handler threads race: `atlas list` answers
    # without loading libpq or zstd, and `atlas snapshot` starts its dump without
    # importing the restore and approval code.
    @property
    def taker(self) -> Taker:
        with self._build_lock:
            if self._taker is None:
                from bot.backup.take import Taker

                self._taker = Taker(
                    self.settings, self.catalog, self.store, self.keys, self.recovery
                )
            return self._taker

    @property
    def worker(self) -> Worker:
        """This process's part of the fleet's work queue (`fleet/queue.py`)."""
        with self._build_lock:
            if self._worker is None:
                from bot.fleet.queue import Worker

                self._worker = Worker(
                    self.catalog,
                    self.replica,
                    self.settings.max_parallel,
                    self.settings.stale_after_s,
                    self._take_work,
                )
            return self._worker

    def _take_work(self, item: WorkItem) -> Snapshot:
        """A queued database's snapshot; one another replica discovered is looked up."""
        if item.database not in self.settings.databases and self.settings.servers:
            self.fleet()
        return self.taker.take(
            requested_by=item.requested_by or "schedule",
            note=item.note or "",
            database=item.database,
            source=item.source or "schedule",
        )

    @property
    def reader(self) -> Reader:
        with self._build_lock:
            if self._reader is None:
                from bot.backup.read import Reader

                self._reader = Reader(
                    self.settings,
                    self.catalog,
                    self.store,
                    self.keys,
                    self.snapshots,
                    self._announce_damage,
                )
            return self._reader

    @property
    def rescanner(self) -> Rescanner:
        with self._build_lock:
            if self._rescanner is None:
                from bot.backup.rescan import Rescanner

                self._rescanner = Rescanner(self.settings, self.catalog, self.store, self.keys)
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
                    self.store,
                    self.snapshots,
                    self.reader,
                    self.scratch,
                )
            return self._restores

    @property
    def ask(self) -> Ask:
        with self._build_lock:
            if self._ask is None:
                from bot.approval.ask import Ask

                self._ask = Ask(self.settings, self.catalog, self.chat, self.restores)
            return self._ask

    @property
    def jobs(self) -> Jobs:
        with self._build_lock:
            if self._jobs is None:
                from bot.approval.jobs import Jobs

                self._jobs = Jobs(
                    self.catalog, self.chat, self.ask, self.restores, self.scratch, self.background
                )
            return self._jobs

    @property
    def reactions(self) -> Reactions:
        with self._build_lock:
            if self._reactions is None:
                from bot.approval.reactions import Reactions

                self._reactions = Reactions(self.catalog, self.chat, self.ask, self.jobs)
            return self._reactions

    # -- snapshots with reporting ---------------------------------------------------------

    def snapshot_reported(
        self,
        *,
        requested_by: str,
        note: str = "",
        database: str | None = None,
        source: str = "slack",
        channel: str | None = None,
        progress: Callable[[DumpProgress], None] | None = None,
        provider: bool = False,
    ) -> Snapshot:
        """Take a snapshot and tell the channel: one message, updated with progress and result."""
        self._check_provider(provider)
        msg = Message(self.chat, channel or self.settings.channel)
        started: list[Snapshot] = []

        def on_start(snap: Snapshot) -> None:
            started.append(snap)
            msg.post(*messages.snapshot_started(snap))
            if msg.ts:
                self.catalog.update_snapshot(snap.id, slack_channel=msg.channel, slack_ts=msg.ts)

        def on_progress(p: DumpProgress) -> None:
            if started:
                msg.update(
                    *messages.snapshot_progress(started[0], p.raw_bytes, p.stored_bytes, p.elapsed)
                )
            if progress:
                progress(p)

        try:
            snap = self.taker.take(
                requested_by=requested_by,
                note=note,
                database=database,
                source=source,
                progress=on_progress,
                progress_every=0.5,
                on_start=on_start,
            )
        except Busy as exc:
            msg.post(messages.error(str(exc)), [])
            raise
        except AtlasError as exc:
            if started:
                msg.update(*messages.snapshot_failed(started[0], str(exc)), final=True)
            else:
                msg.post(messages.error(f"Snapshot failed: {exc}"), [])
            raise
        except KeyboardInterrupt:
            if started:
                msg.update(
                    *messages.snapshot_failed(started[0], "interrupted by the operator"),
                    final=True,
                )
            raise
        msg.update(*messages.snapshot_done(snap), final=True)
        if provider:
            snap = self.provider_snapshot(snap, msg)
            msg.update(*messages.snapshot_done(snap), final=True)
        return snap

    def _check_provider(self, wanted: bool) -> None:
        if wanted and not (self.settings.rds_cluster or self.settings.rds_instance):
            raise AtlasError(
                "--provider needs a provider: nothing was started.",
                "set ATLAS_RDS_INSTANCE or ATLAS_RDS_CLUSTER",
            )

    def provider_snapshot(self, snap: Snapshot, msg: Message) -> Snapshot:
        """`--provider`: also start an RDS snapshot, named after ours."""
        from bot.ops import provider

        ident = self.settings.rds_cluster or self.settings.rds_instance or ""
        try:
            pid = provider.start_snapshot(
                ident, f"atlas-{snap.id}", cluster=bool(self.settings.rds_cluster)
            )
        except AtlasError as exc:
            msg.post(
                messages.error(
                    f"Snapshot {snap.id} is stored, but the provider snapshot failed: {exc}"
                ),
                [],
            )
            raise
        self.catalog.update_snapshot(snap.id, provider_snapshot=pid)
        self.catalog.audit(
            snap.requested_by or "atlas", "provider.snapshot", snap.id, provider_snapshot=pid
        )
        return self.catalog.get_snapshot(snap.id)

    def start_snapshot(
        self,
        *,
        requested_by: str,
        note: str,
        channel: str | None,
        database: str | None = None,
        provider: bool = False,
    ) -> Future[Snapshot]:
        """Check for a running snapshot now (so the user hears at once), then run in background."""
        self._check_provider(provider)  # answer at once, in the command's reply
        target = self.settings.target(database)
        running = self.catalog.running_snapshot(target.name, target.environment)
        if running:
            raise Busy(
                f"A snapshot of {target.name} is already running: {running.id}, started by "
                f"{running.requested_by or 'someone'} at {running.started_at}.",
                "wait for it to finish; `/atlas list` shows it",
            )

        def job() -> Snapshot:
            try:
                return self.snapshot_reported(
                    requested_by=requested_by,
                    note=note,
                    database=database,
                    channel=channel,
                    provider=provider,
                )
            except AtlasError as exc:
                log.warning("snapshot for %s failed: %s", requested_by, exc)
                raise

        return self.background.submit(job)

    def later(
        self,
        work: Callable[[], T],
        done: Callable[[T], object],
        failed: Callable[[AtlasError], object],
    ) -> Future[None]:
        """Run `work` in the background and hand on its result, or its AtlasError: Slack
        wants an answer within 3 seconds, and the rest follows."""

        def run() -> None:
            try:
                result = work()
            except AtlasError as exc:
                failed(exc)
                return
            except Exception as exc:  # said, not lost in a thread nobody watches
                log.exception("background work failed")
                failed(AtlasError(f"Unexpected error: {type(exc).__name__}: {exc}"))
                return
            done(result)

        return self.background.submit(run)

    # -- announcements ---------------------------------------------------------------------

    def _announce_damage(self, snap: Snapshot, found_by: str) -> None:
        """A damaged backup is news for the whole channel, whoever found it."""
        good = self.catalog.list_snapshots(
            limit=1,
            database=snap.database,
            status=SnapshotStatus.OK,
            environment=snap.environment,
        )
        Message(self.chat, self.settings.channel).post(
            *messages.snapshot_damaged(snap, found_by, good[0] if good else None)
        )

    def fleet(self) -> Fleet:
        """List the configured servers now. Their databases join the configured ones for
        every job that follows (reminders, status, metrics, restores); those that have gone
        leave, their snapshots kept under retention."""
        from bot.fleet.run import Fleet, resolve

        if not self.settings.servers:
            return Fleet(targets=dict(self.settings.databases))
        fleet = resolve(self.settings, self._configured, self.catalog.kept_databases)
        self._leave_out_catalog(fleet)
        for scan in fleet.scans:
            if scan.error:  # unreachable for now: its databases stay known until it answers
                for name, target in self.settings.databases.items():
                    if target.server == scan.server:
                        fleet.targets.setdefault(name, target)
        self.settings.databases = fleet.targets  # one assignment: readers see old or new
        for problem in fleet.problems:
            log.error("fleet: %s", problem)
        return fleet

    def _leave_out_catalog(self, fleet: Fleet) -> None:
        """A server that also holds the PostgreSQL catalog: its discovered databases do
        not include the catalog (a configured one is refused at start-up instead)."""
        from bot.catalog import is_url
        from bot.pg import Conn

        if not is_url(self.settings.state):
            return
        where = Conn.parse(str(self.settings.state), "ATLAS_STATE").address()
        for name, target in list(fleet.targets.items()):
            if name not in self._configured and Conn.parse(target.url).address() == where:
                del fleet.targets[name]
                fleet.left_out.append(f"{name}: Atlas's own catalog (ATLAS_STATE)")
                log.info("fleet: %s is Atlas's own catalog; not backed up by the fleet", name)

    def snapshot_fleet(
        self,
        *,
        requested_by: str,
        note: str = "",
        source: str = "cli",
        server: str | None = None,
        skip_servers: tuple[str, ...] = (),
        databases: tuple[str, ...] | None = None,
        skip_databases: tuple[str, ...] = (),
    ) -> tuple[Fleet, list[Outcome]]:
        """Snapshot every database of the fleet (or of one server, or the named ones), at
        most ATLAS_MAX_PARALLEL at once across every replica sharing the catalog, which
        each take a share (`fleet/queue.py`); each outcome says what happened to one
        database. The servers' roles come with every run that isn't of named databases."""
        from bot.fleet.queue import new_run_id, run_queued
        from bot.records import WorkItem

        fleet = self.fleet()
        names = list(fleet.targets)
        if databases is not None:
            names = [n for n in databases if n in fleet.targets]
        elif server is not None:
            names = [n for s in fleet.scans if s.server == server for n in s.targets]
        elif skip_servers:
            skip = {n for s in fleet.scans if s.server in skip_servers for n in s.targets}
            names = [n for n in names if n not in skip]
        names = [n for n in names if n not in skip_databases and n in fleet.targets]
        run = new_run_id()
        items = [
            WorkItem(
                key=f"{run}:{name}",
                run=run,
                database=name,
                requested_by=requested_by,
                source=source,
                note=note,
            )
            for name in names
        ]
        outcomes = run_queued(self.catalog, items, self.worker)
        if databases is None:
            outcomes += self._globals(fleet, requested_by, source, server, skip_servers)
        self.catalog.audit(
            requested_by,
            "fleet.snapshot",
            server or "all",
            ok=[o.database for o in outcomes if o.snapshot],
            failed=[o.database for o in outcomes if o.error],
            gone=fleet.gone,
            skipped=fleet.skipped,
            problems=fleet.problems,
        )
        return fleet, outcomes

    def _globals(
        self,
        fleet: Fleet,
        requested_by: str,
        source: str,
        server: str | None,
        skip_servers: tuple[str, ...],
    ) -> list[Outcome]:
        """Each listed server's roles and tablespaces, after its databases."""
        from bot.backup.layout import globals_name
        from bot.fleet.globals import GlobalsTaker
        from bot.fleet.run import Outcome

        taker = GlobalsTaker(self.settings, self.catalog, self.store, self.keys)
        out = []
        for scan in fleet.scans:
            if scan.error or scan.server in skip_servers or server not in (None, scan.server):
                continue
            name = globals_name(scan.server)
            try:
                snap = taker.take(
                    self.settings.servers[scan.server], requested_by=requested_by, source=source
                )
                out.append(Outcome(name, snapshot=snap))
            except AtlasError as exc:
                out.append(Outcome(name, error=str(exc)))
        return out

    def aim(self, database: str | None) -> None:
        """Make sure the database a command names (or any, when it names none) is known:
        a fleet's databases are listed first when they are not yet; an unknown name is
        an AtlasError that names the known ones."""
        known = self.settings.databases
        if self.settings.servers and (
            not known or (database is not None and database not in known)
        ):
            self.fleet()
        if database is not None:
            self.settings.target(database)

    def recover(self, *, by_silence: bool = True) -> list[Snapshot]:
        """Close out snapshots whose process died and say so in Slack. A process without
        Slack (a CLI in a shell with no token) leaves the announcement to one that has it:
        `atlas serve` edits the snapshot's message and tells the channel at its next
        recovery."""
        # without by_silence, only snapshots whose process is certainly gone (this host)
        snaps = self.recovery.recover(None if by_silence else float("inf"))
        for snap in snaps:
            if self.chat.configured:
                self._announce_interrupted(snap)
            elif snap.slack_ts:
                self.catalog.audit("atlas", UNANNOUNCED, snap.id)
        if self.chat.configured:
            self._announce_pending()
        return snaps

    def _announce_interrupted(self, snap: Snapshot) -> None:
        text, blocks = messages.snapshot_interrupted(snap)
        channel = snap.slack_channel or self.settings.channel
        if snap.slack_ts:
            Message.existing(self.chat, channel, snap.slack_ts).update(text, blocks, final=True)
        Message(self.chat, channel).post(text, blocks)

    def _announce_pending(self) -> None:
        """Close-outs a process without Slack recorded as not yet announced."""
        pending = {e.subject for e in self.catalog.audit_log(200) if e.action == UNANNOUNCED}
        for snap_id in sorted(pending):
            done = self.catalog.audit_log(20, subject=snap_id)
            if any(e.action == ANNOUNCED for e in done):
                continue
            self._announce_interrupted(self.catalog.get_snapshot(snap_id))
            self.catalog.audit("atlas", ANNOUNCED, snap_id)

    def shutdown(self) -> None:
        self.background.shutdown(wait=False, cancel_futures=True)
        if self._worker is not None:
            self._worker.shutdown()
