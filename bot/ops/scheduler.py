"""APScheduler jobs inside `atlas serve`: cron snapshots, daily housekeeping, request expiry.

Several `atlas serve` processes may share one catalog (replicas on a PostgreSQL catalog,
a rolling deploy): a lease in the catalog makes one of them the leader, which runs the
schedule. The leader renews it every sixth of ATLAS_FAILOVER_S and it lasts two thirds
of it, so a leader that dies is replaced within ATLAS_FAILOVER_S. Each cron firing is
also claimed in the catalog by its minute, so even two leaders in the moment of a
hand-over cannot run it twice. Every replica, leader or not, works on the fleet's queue
(`fleet/queue.py`) and beats for what it runs.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.catalog import outage
from bot.errors import AtlasError, CatalogAway
from bot.ops import copies, home, housekeeping
from bot.owners import LEADER_LEASE, REPLICA_LEASE
from bot.services import Services

log = logging.getLogger(__name__)

LEASE = LEADER_LEASE


class Scheduler:
    """The schedule of `atlas serve`: leases, cron snapshots, housekeeping, recovery and the work tick."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.owner = services.replica
        self._stopped = False
        self._grace_until = 0.0  # after a catalog outage: silence is not death until then
        self._outage = outage.OutageLog()
        st = services.settings
        self.lease_ttl_s = st.failover_s * 2 / 3
        self.sched = BackgroundScheduler(timezone=st.timezone)
        self._add("lease", self.leases, "interval", seconds=st.failover_s / 6)
        self._add("expire-requests", lambda: services.jobs.expire_due(), "interval", seconds=30)
        # what died (a snapshot of a CLI killed on this host or of a replica gone, a drill
        # or refresh of a dead replica, fleet work it held) is closed out and announced
        # soon after its heartbeats stop, not at the next snapshot
        self._add("recover", self.recover, "interval", seconds=min(60.0, st.stale_after_s / 2))
        # every replica: claim the fleet's queued snapshots while there is room, and beat
        self._add("work", self.work, "interval", seconds=1, leader_only=False)
        # each replica shows Home again to those who opened it there
        self._add("home", lambda: home.tick(services), "interval", seconds=10, leader_only=False)
        # copies whose retry time has come, on any replica (each is claimed once)
        if st.copies:
            self._add(
                "copies", lambda: copies.tick(services), "interval", seconds=30, leader_only=False
            )
        hh, mm = (int(x) for x in st.housekeeping_at.split(":"))
        self._add("housekeeping", lambda: housekeeping.daily(services), "cron", hour=hh, minute=mm)
        # a server with a schedule of its own runs on it; ATLAS_SNAPSHOT_SCHEDULE covers the rest
        # (and a configured database with one of its own, likewise)
        own = tuple(name for name, server in st.servers.items() if server.schedule)
        own_dbs = tuple(name for name, target in st.databases.items() if target.schedule)
        if st.snapshot_schedule:
            trigger = CronTrigger.from_crontab(st.snapshot_schedule, timezone=st.timezone)
            self._add(
                "snapshot",
                functools.partial(
                    housekeeping.scheduled_snapshot,
                    services,
                    skip_servers=own,
                    skip_databases=own_dbs,
                ),
                trigger,
            )
        for name in own_dbs:
            cron = st.databases[name].schedule or ""
            self._add(
                f"snapshot:db:{name}",
                functools.partial(housekeeping.scheduled_snapshot, services, databases=(name,)),
                CronTrigger.from_crontab(cron, timezone=st.timezone),
            )
        for name in own:
            cron = st.servers[name].schedule or ""
            self._add(
                f"snapshot:{name}",
                functools.partial(housekeeping.scheduled_snapshot, services, server=name),
                CronTrigger.from_crontab(cron, timezone=st.timezone),
            )

    def _add(
        self,
        job_id: str,
        fn: Callable[[], Any],
        trigger: Any,
        *,
        leader_only: bool = True,
        **kw: Any,
    ) -> None:
        once = trigger == "cron" or isinstance(trigger, CronTrigger)

        def guarded() -> None:
            try:
                if leader_only and job_id != "lease" and not self.leader():
                    log.debug("not the scheduler leader; skipping %s", job_id)
                    return
                if once:
                    minute = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")
                    if not self.services.catalog.first_time(f"cron:{job_id}:{minute}"):
                        log.info("%s for %s already ran on another replica", job_id, minute)
                        return
                fn()
            except CatalogAway as exc:  # said once, not by every job every second
                self._outage.away(job_id, exc)
                # no one could beat meanwhile: see recover
                self._grace_until = time.monotonic() + self.services.settings.stale_after_s
            except AtlasError as exc:  # one line, tried again next time
                log.error("%s: %s", job_id, exc)
            else:
                self._outage.back()

        self.sched.add_job(
            guarded,
            trigger,
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
            **kw,
        )

    def leases(self) -> None:
        """Keep both leases: the leader's (if this replica leads or may now) and this
        replica's own, which says it is alive."""
        self.renew()
        self.alive()

    def alive(self) -> None:
        if not self._stopped:
            self.services.catalog.acquire_lease(
                REPLICA_LEASE + self.owner, self.owner, self.services.settings.stale_after_s
            )

    def renew(self) -> bool:
        if self._stopped:  # a job finishing after shutdown must not take the lease back
            return False
        return self.services.catalog.acquire_lease(LEASE, self.owner, self.lease_ttl_s)

    def recover(self) -> None:
        """Close out what died: snapshots whose heartbeats stopped, restore jobs whose
        replica no longer holds its lease, and fleet work claimed by a replica gone.
        Right after the catalog was away, nobody could beat or renew a lease: for one
        stale period only what is certainly dead (a process of this host gone) is."""
        if time.monotonic() < self._grace_until:
            self.services.reported.recover(by_silence=False)
            self.services.jobs.reap()
            return
        self.services.reported.recover()
        self.services.jobs.reap(self.services.catalog.live_leases(REPLICA_LEASE))
        # a fleet run whose own replica died: its items that died with another are marked
        self.services.catalog.abandon_work(self.services.settings.stale_after_s)

    def work(self) -> None:
        """Beat for this replica's running claims and claim more while it has room: one
        read of the catalog a second while nothing is queued or running."""
        if self._stopped:
            return
        worker = self.services.fleets.worker
        worker.beat()
        worker.tick()

    def leader(self) -> bool:
        return self.renew()

    def start(self) -> None:
        """Start, and run housekeeping once now so a restart never skips a day."""
        self.alive()  # from the start: the jobs this replica takes are seen to be its
        self.sched.start()
        self.sched.add_job(
            lambda: self.leader() and housekeeping.daily(self.services),
            id="housekeeping-at-start",
            next_run_time=datetime.now(UTC),
            # However late the thread gets to it (a busy host, a slow start), it runs:
            # APScheduler's default grace of 1 s would silently skip the day's reminders.
            misfire_grace_time=None,
        )

    def shutdown(self) -> None:
        self._stopped = True
        self.sched.shutdown(wait=False)
        self.services.catalog.release_lease(LEASE, self.owner)
        self.services.catalog.release_lease(REPLICA_LEASE + self.owner, self.owner)

    def next_runs(self) -> dict[str, str]:
        return {
            job.id: job.next_run_time.isoformat()
            for job in self.sched.get_jobs()
            if job.next_run_time is not None
        }


def start(services: Services) -> Scheduler:
    s = Scheduler(services)
    s.start()
    return s
