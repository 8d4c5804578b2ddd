"""Undo a staging refresh: the staging it replaced, kept under its own name, swapped back
in; staging as it is now is kept in turn, so an undo can itself be undone. Guarded
against production like every restore path, and recorded as a Restore (`undo_of`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from bot.catalog import Catalog
from bot.config import DatabaseTarget, Settings
from bot.errors import AtlasError, Interrupted, Refused
from bot.pg import Conn
from bot.records import DrillStatus, Restore, now
from bot.redaction import redact
from bot.restore import hold, refresh, swap
from bot.restore.guard import guard_not_production


def kept_for(
    settings: Settings, catalog: Catalog, database: str | None
) -> tuple[DatabaseTarget, Restore]:
    """The target and the newest job whose kept staging still exists; an error that says
    why there is nothing to undo otherwise."""
    target = settings.target(database)
    rows = catalog.kept_stagings(target.name)
    if not rows:
        raise AtlasError(
            f"Nothing is kept to undo for {target.name}: no refresh kept the staging it replaced.",
            "a refresh keeps it until the next refresh or for ATLAS_UNDO_KEEP_HOURS; "
            "atlas status shows what is kept",
        )
    return target, rows[0]


def holds_after(catalog: Catalog, kept: Restore) -> str:
    """The snapshot staging holds once `kept`'s staging is back: the one swapped in
    before it, or '' when staging was there before Atlas first refreshed it."""
    for job in catalog.list_jobs(limit=200, kind=kept.kind, database=kept.database):
        if (
            isinstance(job, Restore)
            and job.swapped
            and (job.started_at or "") < (kept.started_at or "")
        ):
            return job.snapshot_id
    return ""


class Undo:
    """One undo: guarded, recorded, swapped, and said."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings, self.catalog = settings, catalog

    def kept(self, database: str | None) -> Restore:
        """The job whose kept staging an undo of `database` brings back."""
        return kept_for(self.settings, self.catalog, database)[1]

    def run(
        self,
        *,
        database: str | None,
        requested_by: str,
        approved_by: list[str],
        request_id: str | None = None,
        say: Callable[[str], None] | None = None,
        undoes: str | None = None,
    ) -> Restore:
        """Swap back what the newest refresh of `database` kept; with `undoes` (the job the
        request or the prompt named, and so what was approved), only if that is still it."""
        name, ttl = self.settings.target(database).name, self.settings.stale_after_s
        with hold.staging_held(self.catalog, name, ttl):  # one refresh or undo at a time
            return self._run(database, requested_by, approved_by, request_id, say, undoes)

    def _run(
        self,
        database: str | None,
        requested_by: str,
        approved_by: list[str],
        request_id: str | None,
        say: Callable[[str], None] | None,
        undoes: str | None,
    ) -> Restore:
        target, kept = kept_for(self.settings, self.catalog, database)
        if undoes is not None and kept.id != undoes:
            why = (
                f"This undo was approved for the staging {undoes} replaced, but the newest "
                f"kept staging of {target.name} is now the one {kept.id} replaced: staging "
                "changed since, so nothing was swapped."
            )
            self.catalog.audit(requested_by, "undo.refused", undoes, error=why, newest=kept.id)
            raise AtlasError(why, "ask for the undo again to bring back what is kept now")
        staging = Conn.parse(target.staging_url or "", target.staging_setting)
        try:
            guard_not_production(Conn.parse(target.url, target.url_setting), staging)
        except Refused as exc:
            self.catalog.audit(requested_by, "undo.refused", kept.id, error=str(exc))
            raise
        job = Restore(
            id=f"u-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}",
            request_id=request_id,
            snapshot_id=holds_after(self.catalog, kept),
            database=target.name,
            target=staging.describe(),
            requested_by=requested_by,
            approved_by=approved_by,
            undo_of=kept.id,
        )
        self.catalog.add_job(job)
        self.catalog.audit(requested_by, "undo.started", job.id, undoes=kept.id)
        started = time.monotonic()
        try:
            self._swap_back(job, kept, staging, say or (lambda _t: None))
        except BaseException as exc:
            self._failed(job, exc, staging, started)
        else:
            self.catalog.update_refresh(
                job.id, status=DrillStatus.PASSED, finished_at=now(),
                total_s=round(time.monotonic() - started, 3),
            )  # fmt: skip
            self.catalog.audit("atlas", "undo.passed", job.id, undoes=kept.id)
        return self._record(job.id)

    def _swap_back(
        self, job: Restore, kept: Restore, staging: Conn, say: Callable[[str], None]
    ) -> None:
        name, old = staging.address()[2], kept.kept_db or ""
        with swap.maintenance(staging) as c:
            if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [old]).fetchone() is None:
                self.catalog.update_refresh(kept.id, kept_dropped=True)
                raise AtlasError(
                    f"The kept staging {old} is no longer on the server (dropped by hand?).",
                    "nothing to undo to; refresh staging from a snapshot instead",
                )
            now_kept = swap.kept_name(name, job.id)
            self.catalog.update_refresh(job.id, kept_db=now_kept)
            say(f"Swapping {old} back in as {staging.describe()}…")
            seconds, ended = swap.swap_in(
                c, name, old, now_kept, refresh.policy(self.settings, say)
            )
        self.catalog.update_refresh(kept.id, kept_dropped=True)  # it is staging again
        self.catalog.update_refresh(
            job.id, swapped=True, swap_s=round(seconds, 3), kept_dropped=False,
            problems=[f"warning: session ended for the swap: {e}" for e in ended],
        )  # fmt: skip
        refresh.retire_kept(self.catalog, self.settings, job.database, now_kept)

    def _failed(self, job: Restore, exc: BaseException, staging: Conn, started: float) -> None:
        stopped = isinstance(exc, KeyboardInterrupt)
        cause = (
            "Interrupted by the operator (Ctrl-C)" if stopped else redact(str(exc), staging.secrets)
        )
        message = cause.rstrip(".") + f": staging {staging.describe()} was not touched."
        status = DrillStatus.INTERRUPTED if stopped else DrillStatus.FAILED
        self.catalog.update_refresh(
            job.id, status=status, finished_at=now(), error=message,
            total_s=round(time.monotonic() - started, 3),
        )  # fmt: skip
        self.catalog.audit("atlas", f"undo.{status}", job.id, error=message)
        if stopped:
            raise Interrupted(f"Undo {job.id}: {message}") from None
        if not isinstance(exc, Exception):
            raise exc

    def _record(self, job_id: str) -> Restore:
        job = self.catalog.get_job(job_id)
        assert isinstance(job, Restore)
        return job
