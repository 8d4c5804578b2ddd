"""What refreshes keep: each staging a swap replaced, under its `atlas_kept_…` name, with
the space it takes and when it goes. `status` and `doctor` show them; housekeeping drops
those older than ATLAS_UNDO_KEEP_HOURS (the next refresh drops them anyway)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.errors import AtlasError
from bot.pg import Conn
from bot.records import Restore
from bot.restore import refresh, shape

if TYPE_CHECKING:
    from bot.services import Services


@dataclass(frozen=True)
class KeptStaging:
    """One kept staging database, as status and doctor say it."""

    database: str
    name: str
    job_id: str
    size: int | None  # None: gone, or the server could not be asked
    until: datetime | None  # when housekeeping drops it (if no refresh does first)

    def describe(self) -> str:
        from bot.report.messages import human_bytes

        size = human_bytes(self.size) if self.size is not None else "size unknown"
        until = f"; dropped by {self.until:%Y-%m-%d %H:%M} UTC" if self.until else ""
        return (
            f"{self.name} ({size}) is staging as it was before {self.job_id}: "
            f"`atlas restore --undo --db {self.database}` swaps it back; the next refresh "
            f"drops it{until}"
        )


def _kept_at(job: Restore) -> datetime | None:
    when = job.finished_at or job.started_at
    return datetime.fromisoformat(when) if when else None


def gather(services: Services) -> list[KeptStaging]:
    """Every kept staging the catalog knows, newest first, with its size."""
    out = []
    hours = services.settings.undo_keep_hours
    for job in services.catalog.kept_stagings():
        size = None
        try:
            target = services.settings.target(job.database)
            conn = Conn.parse(target.staging_url or "", target.staging_setting)
            size = shape.size_of(conn, job.kept_db or "")
        except AtlasError:
            pass
        at = _kept_at(job)
        until = at + timedelta(hours=hours) if at is not None else None
        out.append(KeptStaging(job.database, job.kept_db or "", job.id, size, until))
    return out


def drop_expired(services: Services, at: datetime | None = None) -> list[str]:
    """Drop kept stagings older than ATLAS_UNDO_KEEP_HOURS; returns their names."""
    now = at or datetime.now(UTC)
    limit = timedelta(hours=services.settings.undo_keep_hours)
    dropped = []
    for job in services.catalog.kept_stagings():
        kept_at = _kept_at(job)
        if kept_at is None or now - kept_at < limit:
            continue
        reason = f"older than ATLAS_UNDO_KEEP_HOURS={services.settings.undo_keep_hours}"
        if refresh.drop_kept(services.catalog, services.settings, job, reason=reason):
            dropped.append(job.kept_db or "")
    return dropped
