"""The fleet as Slack, the CLI and the schedule use it: its servers listed when asked, a
run's databases snapshotted through the catalog's work queue (with each server's roles),
and a database a command names made known first."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.backup.keys import Keys
from bot.catalog import Catalog, is_url
from bot.config import DatabaseTarget, Settings
from bot.errors import AtlasError
from bot.fleet.run import Fleet, Outcome, resolve
from bot.records import Snapshot, WorkItem
from bot.store import LazyStorage

if TYPE_CHECKING:
    from bot.backup.take import Taker
    from bot.fleet.queue import Worker

log = logging.getLogger(__name__)


class Fleets:
    """Lists the configured servers and runs snapshots over their databases. The
    databases it finds join `settings.databases` for every job that follows."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: LazyStorage,
        keys: Keys,
        taker: Callable[[], Taker],
        replica: str,
        copies: Callable[[Snapshot], object] | None = None,
    ) -> None:
        self.settings, self.catalog, self.store, self.keys = settings, catalog, store, keys
        self._taker, self.replica, self._copies = taker, replica, copies
        # the databases named in the configuration; the servers add theirs at each listing
        self._configured: dict[str, DatabaseTarget] = dict(settings.databases)
        self._worker: Worker | None = None
        self._lock = threading.Lock()

    @property
    def worker(self) -> Worker:
        """This process's part of the fleet's work queue (`fleet/queue.py`)."""
        with self._lock:
            if self._worker is None:
                from bot.fleet.queue import Worker

                self._worker = Worker(
                    self.catalog,
                    self.replica,
                    self.settings.max_parallel,
                    self.settings.stale_after_s,
                    self._take,
                )
            return self._worker

    def _take(self, item: WorkItem) -> Snapshot:
        """A queued database's snapshot; one another replica discovered is looked up."""
        if item.database not in self.settings.databases and self.settings.servers:
            self.listed()
        return self._taker().take(
            requested_by=item.requested_by or "schedule",
            note=item.note or "",
            database=item.database,
            source=item.source or "schedule",
            tags=item.tags,
        )

    def listed(self) -> Fleet:
        """List the configured servers now. Their databases join the configured ones for
        every job that follows (reminders, status, metrics, restores); those that have gone
        leave, their snapshots kept under retention."""
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
        for problem in fleet.problems:  # a warning: commands say it in their own words,
            log.warning("fleet: %s", problem)  # serve's log (its output) keeps it
        return fleet

    def _leave_out_catalog(self, fleet: Fleet) -> None:
        """A server that also holds the PostgreSQL catalog: its discovered databases do
        not include the catalog (a configured one is refused at start-up instead)."""
        from bot.pg import Conn

        if not is_url(self.settings.state):
            return
        where = Conn.parse(str(self.settings.state), "ATLAS_STATE").address()
        for name, target in list(fleet.targets.items()):
            if name not in self._configured and Conn.parse(target.url).address() == where:
                del fleet.targets[name]
                fleet.left_out.append(f"{name}: Atlas's own catalog (ATLAS_STATE)")
                log.info("fleet: %s is Atlas's own catalog; not backed up by the fleet", name)

    def aim(self, database: str | None) -> None:
        """Make sure the database a command names (or any, when it names none) is known:
        a fleet's databases are listed first when they are not yet; an unknown name is
        an AtlasError that names the known ones."""
        known = self.settings.databases
        if self.settings.servers and (
            not known or (database is not None and database not in known)
        ):
            self.listed()
        if database is not None:
            self.settings.target(database)

    def snapshot(
        self,
        *,
        requested_by: str,
        note: str = "",
        source: str = "cli",
        server: str | None = None,
        skip_servers: tuple[str, ...] = (),
        databases: tuple[str, ...] | None = None,
        skip_databases: tuple[str, ...] = (),
        tags: dict[str, str] | None = None,
    ) -> tuple[Fleet, list[Outcome]]:
        """Snapshot every database of the fleet (or of one server, or the named ones), at
        most ATLAS_MAX_PARALLEL at once across every replica sharing the catalog, which
        each take a share (`fleet/queue.py`); each outcome says what happened to one
        database. The servers' roles come with every run that isn't of named databases."""
        from bot.fleet.queue import new_run_id, run_queued

        fleet = self.listed()
        names = _chosen(fleet, server, skip_servers, databases, skip_databases)
        run = new_run_id()
        items = [
            WorkItem(
                key=f"{run}:{name}",
                run=run,
                database=name,
                requested_by=requested_by,
                source=source,
                note=note,
                tags=tags or None,
            )
            for name in names
        ]
        outcomes = run_queued(self.catalog, items, self.worker)
        if databases is None:
            outcomes += self._globals(fleet, requested_by, source, server, skip_servers, tags)
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
        tags: dict[str, str] | None,
    ) -> list[Outcome]:
        """Each listed server's roles and tablespaces, after its databases."""
        from bot.backup.layout import globals_name
        from bot.fleet.globals import GlobalsTaker

        taker = GlobalsTaker(self.settings, self.catalog, self.store, self.keys, self._copies)
        out = []
        for scan in fleet.scans:
            if scan.error or scan.server in skip_servers or server not in (None, scan.server):
                continue
            name = globals_name(scan.server)
            try:
                snap = taker.take(
                    self.settings.servers[scan.server],
                    requested_by=requested_by,
                    source=source,
                    tags=tags,
                )
                out.append(Outcome(name, snapshot=snap))
            except AtlasError as exc:
                out.append(Outcome(name, error=str(exc)))
        return out

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.shutdown()


def _chosen(
    fleet: Fleet,
    server: str | None,
    skip_servers: tuple[str, ...],
    databases: tuple[str, ...] | None,
    skip_databases: tuple[str, ...],
) -> list[str]:
    """The databases a run takes: the named ones, one server's, or all but the skipped."""
    names = list(fleet.targets)
    if databases is not None:
        names = [n for n in databases if n in fleet.targets]
    elif server is not None:
        names = [n for s in fleet.scans if s.server == server for n in s.targets]
    elif skip_servers:
        skip = {n for s in fleet.scans if s.server in skip_servers for n in s.targets}
        names = [n for n in names if n not in skip]
    return [n for n in names if n not in skip_databases and n in fleet.targets]
