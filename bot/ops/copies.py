"""Copies as operations see them: retried on a schedule, each destination's standing for
status, doctor and /metrics, one Slack alert per outage, and retention per destination."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.backup.layout import sidecar_key
from bot.backup.reads import being_read
from bot.copies import plan
from bot.errors import AtlasError
from bot.policy import retention
from bot.records import CopyState, Snapshot, copy_key
from bot.report import messages
from bot.report.chat import Message

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)


def tick(services: Services) -> None:
    """The scheduler's retry: copies whose backoff has passed, then the alerts."""
    if not services.settings.copies:
        return
    services.copier.retry(due=True)
    alert(services)


def standings(services: Services, at: datetime | None = None) -> list[plan.Standing]:
    """Each configured destination's last good copy and what it still lacks."""
    now = at or datetime.now(UTC)
    after = timedelta(hours=services.settings.copy_alert_hours)
    out = []
    for name in services.settings.copies:
        found = plan.standing(name, services.catalog.copies_in(name), now, after)
        drill = services.catalog.last_passed_from(name)
        out.append(dataclasses.replace(found, last_drill=drill.finished_at if drill else None))
    return out


def alert(services: Services, at: datetime | None = None) -> list[str]:
    """One message per outage of a destination (not one per snapshot), keyed by when
    its oldest waiting copy was queued; returns the destinations alerted now."""
    said = []
    for s in standings(services, at):
        if not s.down:
            continue
        key = f"copy-down:{s.destination}:{s.oldest_unfinished}"
        text = (
            f":rotating_light: Copies to `{messages.escape(s.destination)}` have been failing "
            f"since {(s.oldest_unfinished or '')[:16].replace('T', ' ')} UTC: "
            f"{s.unfinished} waiting. Last error: {messages.escape(s.last_error or 'none')}. "
            "Snapshots go on; `atlas copy` tries again now."
        )
        if services.catalog.claim_reminder(key, s.destination, text):
            Message(services.chat, services.settings.channel).post(text, [])
            services.catalog.audit("atlas", "copy.alert", s.destination, waiting=s.unfinished)
            said.append(s.destination)
    return said


def prune_copies(
    services: Services,
    snaps: list[Snapshot],
    *,
    dry_run: bool,
    actor: str,
    at: datetime,
    default: retention.RetentionPolicy,
) -> dict[str, list[retention.Decision]]:
    """Each destination's retention over its own copies (its days and GFS, else
    ATLAS_STORAGE's); the newest good copy of each database stays in every destination."""
    by_id = {s.id: s for s in snaps}
    read = being_read(services.catalog)  # a copy a running job reads stays where it is
    out: dict[str, list[retention.Decision]] = {}
    for name, dest in services.settings.copies.items():
        copies = services.catalog.copies_in(name, CopyState.OK, CopyState.DAMAGED)
        rows = plan.retention_rows(copies, by_id)
        kept = read.get(name, {})
        out[name] = retention.plan(rows, plan.policy_for(dest, default), at, kept)
        if not dry_run:
            _delete(services, name, [d for d in out[name] if not d.keep], by_id, actor)
    return out


def _delete(
    services: Services,
    name: str,
    pruned: list[retention.Decision],
    by_id: dict[str, Snapshot],
    actor: str,
) -> None:
    for d in pruned:
        key = by_id[d.snapshot_id].storage_key or ""
        try:
            storage = services.copier.storage(name)
            for k in (key, sidecar_key(key)):
                storage.delete(k)
        except AtlasError as exc:
            log.error("cannot delete the copy of %s in %s: %s", d.snapshot_id, name, exc)
            continue
        services.catalog.update_copy(
            copy_key(d.snapshot_id, name), state=CopyState.DELETED, error=f"pruned: {d.reason}"
        )
        services.catalog.audit(actor, "copy.pruned", d.snapshot_id, destination=name)
