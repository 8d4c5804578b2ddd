"""The daily jobs that keep the runbook's promises: drill reminders, retention, provider checks,
and scheduled snapshots. Each is a plain function of Services, run by the scheduler or the CLI."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.catalog import DELETED, now
from bot.errors import AtlasError
from bot.policy import reminders, retention
from bot.report import messages
from bot.slack.client import Message

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)


def drill_policy(services: Services) -> reminders.DrillPolicy:
    st = services.settings
    return reminders.DrillPolicy(
        every=reminders.parse_every(st.drill_every),
        tz=ZoneInfo(st.timezone),
        lead_days=tuple(st.reminder_lead_days),
        overdue_every_days=st.reminder_overdue_every_days,
    )


def last_passed_drill(services: Services, database: str) -> dict[str, Any] | None:
    """A passed drill or staging restore proves restore capability."""
    for row in services.catalog.list_drills(limit=200, database=database):
        if row["status"] == "passed":
            return row
    return None


def _at(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def drill_deadline(services: Services, database: str, now: datetime) -> datetime:
    """When the next restore drill of `database` must have passed (exclusive)."""
    last = last_passed_drill(services, database)
    since = _at(services.catalog.first_good_snapshot_at(database))
    last_at = _at(last["finished_at"]) if last else None
    return reminders.deadline(drill_policy(services), last_at, now, since=since)[1]


def drill_reminders(services: Services, at: datetime | None = None) -> list[str]:
    """Post each owed drill-due reminder exactly once; returns the keys posted."""
    at = at or datetime.now(UTC)
    policy = drill_policy(services)
    posted = []
    for name in services.settings.databases:
        last = last_passed_drill(services, name)
        last_at = _at(last["finished_at"]) if last else None
        since = _at(services.catalog.first_good_snapshot_at(name))
        sent = services.catalog.sent_reminders(name)
        rem = reminders.owed(policy, last_at, at, sent, since=since)
        if rem is None:
            continue
        key = f"{name}:{rem.key}"
        text = f"*{messages.escape(name)}*: " + reminders.reminder_text(
            rem, last_at, last.get("total_s") if last else None
        )
        if not services.catalog.claim_reminder(key, name, text):
            continue
        msg = Message(services.slack, services.settings.channel)
        msg.post(text, messages.with_drill_button(text, name))
        if services.slack is not None and msg.ts is None:
            services.catalog.unclaim_reminder(key)  # Slack failed: try again next time
            continue
        services.catalog.audit("atlas", "reminder.sent", key)
        posted.append(key)
    return posted


def retention_policy(services: Services) -> retention.RetentionPolicy:
    st = services.settings
    return retention.RetentionPolicy(
        days=st.retention_days,
        keep_daily=st.keep_daily,
        keep_weekly=st.keep_weekly,
        keep_monthly=st.keep_monthly,
    )


def protected_snapshots(services: Services) -> dict[str, str]:
    """Snapshots that open restore/drill requests name must survive pruning."""
    out = {}
    for req in services.catalog.requests_where("status IN ('pending', 'approved', 'running')", []):
        out[req["snapshot_id"]] = f"named by {req['kind']} request {req['id']}"
    return out


def prune(
    services: Services, *, dry_run: bool = False, actor: str = "atlas", at: datetime | None = None
) -> list[retention.Decision]:
    """Apply retention: delete pruned artifacts, mark their rows deleted, audit each deletion."""
    rows = services.catalog.list_snapshots(limit=100000)
    decisions = retention.plan(
        rows, retention_policy(services), at or datetime.now(UTC), protected_snapshots(services)
    )
    if dry_run:
        return decisions
    by_id = {r["id"]: r for r in rows}
    for d in decisions:
        if d.keep:
            continue
        row = by_id[d.snapshot_id]
        try:
            if row.get("storage_key") and row["status"] != "failed":
                services.snapshots.delete_artifact(row)
        except AtlasError as exc:
            log.error("cannot delete %s: %s", d.snapshot_id, exc)
            services.catalog.audit(actor, "snapshot.prune_failed", d.snapshot_id, error=str(exc))
            continue
        why = f"pruned: {d.reason}"
        if row.get("error"):  # a failure's reason outlives its pruning
            why += f"; it had failed: {row['error']}"
        services.catalog.update_snapshot(d.snapshot_id, status=DELETED, error=why)
        services.catalog.audit(actor, "snapshot.pruned", d.snapshot_id, reason=d.reason)
    return decisions


def provider_check(services: Services, at: datetime | None = None) -> Any:
    """Read the provider's automated-backup settings; alert the channel once a day if out of policy."""
    from bot.ops import provider

    st = services.settings
    ident = st.rds_cluster or st.rds_instance
    if not ident:
        return None
    try:
        status = provider.check(
            ident,
            cluster=bool(st.rds_cluster),
            min_days=st.provider_retention_min,
            max_days=st.provider_retention_max,
        )
        problems = status.problems
    except AtlasError as exc:
        status, problems = None, [str(exc)]
    if problems:
        day = (at or datetime.now(UTC)).date().isoformat()
        key = f"provider:{ident}:{day}"  # one alert a day, whatever the wording
        text = (
            f":rotating_light: Provider backups of `{messages.escape(ident)}` are out of policy: "
            + "; ".join(messages.escape(p) for p in problems)
        )
        if services.catalog.claim_reminder(key, "provider", text):
            Message(services.slack, st.channel).post(text, [])
            services.catalog.audit("atlas", "provider.alert", ident, problems=problems)
    return status


def scheduled_snapshot(services: Services) -> list[dict[str, Any]]:
    """The cron snapshot: the same pipeline as /atlas snapshot; loud on failure, brief on success."""
    done = []
    for name in services.settings.databases:
        msg = Message(services.slack, services.settings.channel)
        try:
            row = services.snapshots.take(requested_by="schedule", database=name, source="schedule")
        except AtlasError as exc:
            msg.post(
                f"<!here> :rotating_light: *Scheduled snapshot of {messages.escape(name)} FAILED*: "
                f"{messages.escape(str(exc))}",
                [],
            )
            continue
        msg.post(
            f":white_check_mark: Scheduled snapshot `{row['id']}` of {messages.escape(name)}: "
            f"{messages.human_bytes(row['size_bytes'])} in {messages.human_seconds(row['duration_s'])}",
            [],
        )
        done.append(row)
    return done


def daily(services: Services) -> dict[str, Any]:
    """Everything housekeeping does once a day (and once at start-up)."""
    result: dict[str, Any] = {"at": now()}
    for name, job in (
        ("reminders", lambda: drill_reminders(services)),
        ("pruned", lambda: [d.snapshot_id for d in prune(services) if not d.keep]),
        ("provider", lambda: provider_check(services)),
        ("expired", services.flow.expire_due),
        ("unfinished_writes", lambda: len(services.snapshots.sweep_pending())),
        ("scratch_dropped", services.restores.clean_up_scratch),
    ):
        try:
            result[name] = job()
        except Exception as exc:  # one failing job must not stop the others
            log.exception("housekeeping %s failed", name)
            result[name] = f"error: {exc}"
    log.info("housekeeping: %s", json.dumps(result, default=str))
    services.catalog.audit("atlas", "housekeeping.ran", "daily", **result)
    return result
