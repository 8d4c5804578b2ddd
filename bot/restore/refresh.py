"""A staging refresh's own steps around the restore it shares with drills: the new
database made beside staging in staging's locale, and, once it passed verification, the
swap: staging's shape given to it, staging renamed aside (kept for undo) and the new
one renamed into its place. Until the swap commits staging is untouched, whatever stops
the refresh."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import AtlasError
from bot.pg import Conn, first_line
from bot.records import DrillStatus, Restore, now
from bot.restore import shape, swap
from bot.restore.databases import drop_database

log = logging.getLogger(__name__)


def create_beside(staging: Conn, name: str) -> None:
    """CREATE DATABASE `name` on staging's server, in staging's encoding and locale."""
    try:
        with staging.connect(autocommit=True) as c:
            like = shape.read_shape(c, staging.address()[2])
            shape.create_like(c, name, like)
    except psycopg.Error as exc:
        raise AtlasError(
            f"Cannot create the new database {name} beside staging on "
            f"{staging.describe().rsplit('/', 1)[0]}: {first_line(str(exc))}",
            "a refresh restores into a new database and swaps it in: the staging role needs "
            "CREATEDB (atlas doctor checks it)",
        ) from None


@dataclass
class Swapped:
    """What a swap did: how long the renames took, what it kept, what it ended."""

    seconds: float
    kept: str | None
    ended: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def policy(settings: Settings, say: Callable[[str], None]) -> swap.SessionPolicy:
    return swap.SessionPolicy(settings.swap_wait_s, settings.swap_sessions == "end", say)


def swap_in(
    staging: Conn,
    new: str,
    job_id: str,
    sessions: swap.SessionPolicy,
    before: Callable[[str | None], None],
) -> Swapped:
    """Give `new` staging's shape and swap it in; staging as it was keeps a name that says
    so. `before(kept)` runs just before the renames (the catalog records the kept name,
    so that a process killed mid-swap can be settled)."""
    name = staging.address()[2]
    with swap.maintenance(staging) as c:
        was = shape.read_shape(c, name)
        warnings = shape.give_shape(c, new, was) if was is not None else []
        kept = swap.kept_name(name, job_id) if was is not None else None
        before(kept)
        seconds, ended = swap.swap_in(c, name, new, kept, sessions)
    return Swapped(seconds, kept, ended, warnings)


def retire_kept(catalog: Catalog, settings: Settings, database: str, keep: str | None) -> None:
    """Drop what earlier swaps of `database` kept, all but `keep` (the newest): staging
    is kept until the next refresh. With ATLAS_UNDO_KEEP_HOURS=0, nothing is kept."""
    for job in catalog.kept_stagings(database):
        if job.kept_db == keep and settings.undo_keep_hours > 0:
            continue
        drop_kept(catalog, settings, job, reason="a newer refresh keeps its own")


def drop_kept(catalog: Catalog, settings: Settings, job: Restore, reason: str) -> bool:
    """Drop the staging `job` kept, and record it; False (logged) when it cannot be now."""
    try:
        target = settings.target(job.database)
        server = Conn.parse(target.staging_url or "", target.staging_setting)
    except AtlasError as exc:
        log.warning("cannot drop kept staging %s: %s", job.kept_db, exc)
        return False
    error = drop_database(server, job.kept_db)
    if error is not None:
        return False
    catalog.update_refresh(job.id, kept_dropped=True)
    catalog.audit("atlas", "restore.kept_dropped", job.id, kept_db=job.kept_db, reason=reason)
    return True


def settle_died(catalog: Catalog, job: Restore, server: Conn) -> None:
    """Record how a refresh whose process died left staging: untouched, unless its renames
    had committed (its kept database exists and its new one does not)."""
    names = _existing(server, [n for n in (job.kept_db, job.new_db) if n])
    if job.kept_db and job.kept_db in names and job.new_db not in names:
        catalog.update_refresh(
            job.id,
            status=DrillStatus.INTERRUPTED,
            finished_at=now(),
            swapped=True,
            kept_dropped=False,
            error=(
                f"Atlas stopped just after the swap: staging holds snapshot {job.snapshot_id}, "
                f"verified; the staging it replaced is kept as {job.kept_db}."
            ),
        )
    else:
        catalog.update_refresh(
            job.id,
            status=DrillStatus.INTERRUPTED,
            finished_at=now(),
            error="Atlas stopped while this refresh ran; staging was not touched.",
        )
    catalog.audit("atlas", "restore.interrupted", job.id)


def _existing(server: Conn, names: list[str]) -> set[str]:
    with server.connect(autocommit=True) as c:
        rows = c.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", [names])
        return {str(r[0]) for r in rows.fetchall()}
