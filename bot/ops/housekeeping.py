"""The daily jobs that keep the runbook's promises: drill reminders, retention, provider checks,
and scheduled snapshots. Each is a plain function of Services, run by the scheduler or the CLI."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.backup.layout import sidecar_key
from bot.backup.reads import being_read
from bot.errors import AtlasError
from bot.policy import reminders, retention, rotation
from bot.records import (
    HAD_FAILED,
    CopyState,
    JobRecord,
    RequestStatus,
    Snapshot,
    SnapshotStatus,
    now,
)
from bot.report import messages
from bot.report.chat import Message

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


def last_passed_drill(services: Services, database: str) -> JobRecord | None:
    """A passed drill or staging restore proves restore capability."""
    return services.catalog.last_passed_job(database)


def _at(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def _own_deadline(services: Services, database: str, now: datetime) -> datetime:
    """When the next restore drill of a database outside any rotation must have passed
    (exclusive)."""
    last = last_passed_drill(services, database)
    since = _at(services.catalog.first_good_snapshot_at(database))
    last_at = _at(last.finished_at) if last else None
    return reminders.deadline(drill_policy(services), last_at, now, since=since)[1]


def rotation_plans(services: Services, now: datetime) -> dict[str, rotation.Rotation]:
    """The drill rotation of each server that has one (ATLAS_DRILL_SCOPE=server)."""
    st = services.settings
    servers = {s.name for name in list(st.databases) if (s := st.rotation_server(name))}
    return {name: rotation_plan(services, name, now) for name in sorted(servers)}


def drill_deadlines(
    services: Services, now: datetime, plans: dict[str, rotation.Rotation] | None = None
) -> dict[str, datetime]:
    """Every database's drill deadline: its own, or its place in its server's rotation."""
    plans = rotation_plans(services, now) if plans is None else plans
    out: dict[str, datetime] = {}
    for name in list(services.settings.databases):
        server = services.settings.rotation_server(name)
        out[name] = plans[server.name].due[name] if server else _own_deadline(services, name, now)
    return out


def rotation_plan(services: Services, server: str, now: datetime) -> rotation.Rotation:
    """The drill rotation of a server's databases (ATLAS_DRILL_SCOPE=server)."""
    members = []
    for name, target in services.settings.databases.items():
        if target.server != server:
            continue
        last = last_passed_drill(services, name)
        members.append(
            rotation.Member(
                name,
                _at(last.finished_at) if last else None,
                _at(services.catalog.first_good_snapshot_at(name)),
            )
        )
    return rotation.plan(drill_policy(services), members, now)


def drill_reminders(services: Services, at: datetime | None = None) -> list[str]:
    """Post each owed drill-due reminder exactly once; returns the keys posted. A database
    in a server's rotation is reminded through the server: its period, and the yearly
    drill of the database next in the rotation."""
    at = at or datetime.now(UTC)
    policy = drill_policy(services)
    posted = []
    rotations = set()
    for name in list(services.settings.databases):
        server = services.settings.rotation_server(name)
        if server is not None:
            rotations.add(server.name)
            continue
        last = last_passed_drill(services, name)
        last_at = _at(last.finished_at) if last else None
        since = _at(services.catalog.first_good_snapshot_at(name))
        rem = reminders.owed(
            policy, last_at, at, services.catalog.sent_reminders(name), since=since
        )
        if rem is None:
            continue
        text = f"*{messages.escape(name)}*: " + reminders.reminder_text(
            rem, last_at, last.total_s if last else None
        )
        posted += _remind(services, name, rem.key, text, name)
    for sname in sorted(rotations):
        plan = rotation_plan(services, sname, at)
        if plan.next is None:
            continue
        subject = f"{sname}@rotation"
        sent = services.catalog.sent_reminders(subject)
        rem = reminders.owed(policy, plan.server_last, at, sent, since=plan.server_since)
        nxt = messages.escape(plan.next)
        if rem is not None:
            text = (
                f"*Server {messages.escape(sname)}* (a drill of any of its databases counts): "
                + reminders.reminder_text(rem, plan.server_last, None)
                + f" Next in the rotation: *{nxt}*."
            )
            posted += _remind(services, subject, rem.key, text, plan.next)
        last = last_passed_drill(services, plan.next)
        last_at = _at(last.finished_at) if last else None
        since = _at(services.catalog.first_good_snapshot_at(plan.next))
        subject = f"{plan.next}@year"
        year = rotation.yearly(policy)
        rem = reminders.owed(
            year, last_at, at, services.catalog.sent_reminders(subject), since=since
        )
        if rem is not None:
            text = (
                f"*{nxt}* (its yearly drill, in server {messages.escape(sname)}'s rotation): "
                + reminders.reminder_text(rem, last_at, last.total_s if last else None)
            )
            posted += _remind(services, subject, rem.key, text, plan.next)
    return posted + copy_reminders(services, at)


def copy_reminders(services: Services, at: datetime) -> list[str]:
    """Each destination of ATLAS_COPIES is drilled from on the same schedule as the
    databases: a copy nobody ever restored is a copy nobody knows restores."""
    policy = drill_policy(services)
    posted = []
    for name in services.settings.copies:
        last = services.catalog.last_passed_from(name)
        last_at = _at(last.finished_at) if last else None
        made = [c.copied_at for c in services.catalog.copies_in(name, CopyState.OK) if c.copied_at]
        since = _at(min(made)) if made else None
        if since is None:
            continue  # nothing to drill from yet
        subject = f"copy:{name}"
        rem = reminders.owed(
            policy, last_at, at, services.catalog.sent_reminders(subject), since=since
        )
        if rem is None:
            continue
        text = (
            f"*Copy {messages.escape(name)}*: "
            + reminders.reminder_text(rem, last_at, last.total_s if last else None)
            + f" Drill from it: `atlas drill latest --from {messages.escape(name)}`."
        )
        full = f"{subject}:{rem.key}"
        if services.catalog.claim_reminder(full, subject, text):
            msg = Message(services.chat, services.settings.channel)
            msg.post(text, [])
            if services.chat.configured and msg.ts is None:
                services.catalog.unclaim_reminder(full)
                continue
            services.catalog.audit("atlas", "reminder.sent", full)
            posted.append(full)
    return posted


def _remind(services: Services, subject: str, key: str, text: str, database: str) -> list[str]:
    """Post one reminder once (claimed in the catalog first); [] when another process did
    or Slack refused it (then it is tried again next time)."""
    full = f"{subject}:{key}"
    if not services.catalog.claim_reminder(full, subject, text):
        return []
    msg = Message(services.chat, services.settings.channel)
    msg.post(text, messages.with_drill_button(text, database))
    if services.chat.configured and msg.ts is None:
        services.catalog.unclaim_reminder(full)  # Slack failed: try again next time
        return []
    services.catalog.audit("atlas", "reminder.sent", full)
    return [full]


def retention_policy(services: Services) -> retention.RetentionPolicy:
    st = services.settings
    return retention.RetentionPolicy(
        days=st.retention_days,
        keep_daily=st.keep_daily,
        keep_weekly=st.keep_weekly,
        keep_monthly=st.keep_monthly,
    )


def protected_snapshots(services: Services) -> dict[str, str]:
    """Snapshots that must survive pruning: named by open restore/drill requests, not
    copied yet, or read right now (`reads.being_read`)."""
    open_requests = services.catalog.list_requests(
        RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.RUNNING
    )
    out = {r.snapshot_id: f"named by {r.kind} request {r.id}" for r in open_requests}
    for c in services.catalog.unfinished_copies():  # not deleted before it is copied
        if c.destination in services.settings.copies:
            out.setdefault(c.snapshot_id, f"its copy to {c.destination} is not made yet")
    return {**being_read(services.catalog).get(None, {}), **out}


def prune_copies_now(services: Services) -> dict[str, list[str]]:
    """Each destination's retention; what it deleted, by destination."""
    from bot.ops.copies import prune_copies

    rows = services.catalog.list_snapshots(limit=1_000_000)
    done = prune_copies(
        services,
        rows,
        dry_run=False,
        actor="atlas",
        at=datetime.now(UTC),
        default=retention_policy(services),
    )
    return {name: [d.snapshot_id for d in ds if not d.keep] for name, ds in done.items()}


def prune_all(
    services: Services, *, dry_run: bool = False, actor: str = "atlas", at: datetime | None = None
) -> tuple[list[retention.Decision], dict[str, list[retention.Decision]]]:
    """Retention in ATLAS_STORAGE, then in each destination of ATLAS_COPIES."""
    from bot.ops.copies import prune_copies

    when = at or datetime.now(UTC)
    decisions = prune(services, dry_run=dry_run, actor=actor, at=when)
    rows = services.catalog.list_snapshots(limit=1_000_000)
    policy = retention_policy(services)
    copies = prune_copies(services, rows, dry_run=dry_run, actor=actor, at=when, default=policy)
    return decisions, copies


def prune(
    services: Services, *, dry_run: bool = False, actor: str = "atlas", at: datetime | None = None
) -> list[retention.Decision]:
    """Apply retention: delete pruned artifacts, mark their rows deleted, audit each deletion."""
    rows = services.catalog.list_snapshots(limit=1_000_000)
    decisions = retention.plan(
        rows, retention_policy(services), at or datetime.now(UTC), protected_snapshots(services)
    )
    if dry_run:
        return decisions
    by_id = {r.id: r for r in rows}
    for d in decisions:
        if d.keep:
            continue
        row = by_id[d.snapshot_id]
        try:
            if row.storage_key and row.status != SnapshotStatus.FAILED:
                storage = services.store.get()
                for key in (row.storage_key, sidecar_key(row.storage_key)):
                    storage.delete(key)
        except AtlasError as exc:
            log.error("cannot delete %s: %s", d.snapshot_id, exc)
            services.catalog.audit(actor, "snapshot.prune_failed", d.snapshot_id, error=str(exc))
            continue
        why = f"pruned: {d.reason}"
        if row.error:  # a failure's reason outlives its pruning (the proof reads it)
            why += f"{HAD_FAILED}{row.error}"
        services.catalog.update_snapshot(d.snapshot_id, status=SnapshotStatus.DELETED, error=why)
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
            Message(services.chat, st.channel).post(text, [])
            services.catalog.audit("atlas", "provider.alert", ident, problems=problems)
    return status


def scheduled_snapshot(
    services: Services,
    server: str | None = None,
    skip_servers: tuple[str, ...] = (),
    databases: tuple[str, ...] | None = None,
    skip_databases: tuple[str, ...] = (),
) -> list[Snapshot]:
    """The cron snapshot of every database (or of one server's, or of named ones): the
    same pipeline as /atlas snapshot, at most ATLAS_MAX_PARALLEL at once."""
    return fleet_snapshot(
        services,
        requested_by="schedule",
        source="schedule",
        server=server,
        skip_servers=skip_servers,
        databases=databases,
        skip_databases=skip_databases,
    )


def fleet_snapshot(
    services: Services,
    *,
    requested_by: str,
    source: str,
    note: str = "",
    channel: str | None = None,
    tags: dict[str, str] | None = None,
    **which: Any,
) -> list[Snapshot]:
    """Snapshot the fleet (`which`: Services.snapshot_fleet's selection) and post one
    message for the run: failures loud in it, successes in its thread."""
    fleet, outcomes = services.fleets.snapshot(
        requested_by=requested_by, source=source, note=note, tags=tags, **which
    )
    ok = [(o.database, o.snapshot) for o in outcomes if o.snapshot is not None]
    failed = [(o.database, o.error or "failed") for o in outcomes if o.snapshot is None]
    title = "Scheduled snapshot" if source == "schedule" else "Snapshot"
    head = Message(services.chat, channel or services.settings.channel)
    made = services.catalog.copies_of(*(s.id for _, s in ok)) if ok else []
    head.post(
        messages.fleet_summary(
            ok,
            failed,
            fleet.gone,
            fleet.problems,
            title,
            skipped=fleet.skipped,
            copies=messages.fleet_copies(made),
        ),
        [],
    )
    if head.ts and len(outcomes) > 1:
        for chunk in messages.fleet_successes(ok):
            Message(services.chat, head.channel, thread_ts=head.ts).post(chunk, [])
    return [snap for _, snap in ok]


def _sweep_copies(services: Services) -> list[str]:
    if not services.settings.copies:
        return []
    from bot.copies.sweep import sweep_pending

    return sweep_pending(services.copier)


def daily(services: Services) -> dict[str, Any]:
    """Everything housekeeping does once a day (and once at start-up)."""
    from bot.ops import kept

    result: dict[str, Any] = {"at": now()}
    for name, job in (
        # the servers' databases as they are today, so reminders and retention see them
        ("databases", lambda: len(services.fleets.listed().targets)),
        ("reminders", lambda: drill_reminders(services)),
        ("pruned", lambda: [d.snapshot_id for d in prune(services) if not d.keep]),
        ("copies_pruned", lambda: prune_copies_now(services)),
        ("provider", lambda: provider_check(services)),
        ("expired", services.jobs.expire_due),
        ("unfinished_writes", lambda: len(services.recovery.sweep_pending())),
        ("unfinished_copies", lambda: len(_sweep_copies(services))),
        ("scratch_dropped", services.scratch.clean_up),
        ("kept_staging_dropped", lambda: kept.drop_expired(services)),
        # finished fleet work: a week of it is enough to see what a run did
        ("work_forgotten", lambda: services.catalog.forget_work(7 * 86400)),
        ("leases_forgotten", lambda: services.catalog.forget_leases(86400)),
    ):
        try:
            result[name] = job()
        except Exception as exc:  # one failing job must not stop the others
            log.exception("housekeeping %s failed", name)
            result[name] = f"error: {exc}"
    log.info("housekeeping: %s", json.dumps(result, default=str))
    services.catalog.audit("atlas", "housekeeping.ran", "daily", **result)
    return result
