"""APScheduler jobs inside `atlas serve`: cron snapshots, daily housekeeping, request expiry.

Several `atlas serve` processes may share one catalog (a rolling deploy, a stray
replica): a lease in the catalog makes exactly one of them act, and each job has
`max_instances=1`, so a job still running is never started twice.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.ops import housekeeping
from bot.owners import owner_id
from bot.services import Services

log = logging.getLogger(__name__)

LEASE = "scheduler"
LEASE_TTL_S = 90.0


class Scheduler:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.owner = f"{owner_id()}:{secrets.token_hex(3)}"
        self._stopped = False
        st = services.settings
        self.sched = BackgroundScheduler(timezone=st.timezone)
        self._add("lease", self.renew, "interval", seconds=30)
        self._add("expire-requests", lambda: services.jobs.expire_due(), "interval", seconds=30)
        # a CLI snapshot killed on this host (OOM, a cancelled CI job) is closed out and
        # announced within a minute, not at the next snapshot
        self._add("recover", services.recover, "interval", seconds=60)
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

    def _add(self, job_id: str, fn: Callable[[], Any], trigger: Any, **kw: Any) -> None:
        def guarded() -> None:
            if job_id != "lease" and not self.leader():
                log.info("not the scheduler leader; skipping %s", job_id)
                return
            fn()

        self.sched.add_job(
            guarded,
            trigger,
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
            **kw,
        )

    def renew(self) -> bool:
        if self._stopped:  # a job finishing after shutdown must not take the lease back
            return False
        return self.services.catalog.acquire_lease(LEASE, self.owner, LEASE_TTL_S)

    def leader(self) -> bool:
        return self.renew()

    def start(self) -> None:
        """Start, and run housekeeping once now so a restart never skips a day."""
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
