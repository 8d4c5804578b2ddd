"""`/atlas status`: the runbook's validation checklist with live facts instead of ticked boxes.

`evaluate` is pure: it takes the facts and returns the lines; gathering them is I/O and
lives in `gather`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.errors import AtlasError
from bot.ops.findings import FAIL, ICONS, OK, WARN
from bot.pg import Conn
from bot.records import JobRecord, Snapshot, SnapshotStatus
from bot.words import count, human_seconds

if TYPE_CHECKING:
    from bot.config import DatabaseTarget
    from bot.copies.plan import Standing
    from bot.ops.kept import KeptStaging
    from bot.services import Services

GRACE = timedelta(hours=2)  # a snapshot may take a while, and a schedule may slip a little


@dataclass(frozen=True)
class Line:
    """One line of the status checklist."""

    key: str
    level: str
    title: str
    detail: str


@dataclass
class Facts:
    """Everything the checklist is evaluated from, gathered once."""

    now: datetime
    schedule: str | None
    timezone: str
    provider: str | None  # identifier, None when not configured
    provider_problems: list[str] | None  # None when not checked
    databases: list[str]
    last_snapshot: dict[str, Snapshot | None] = field(default_factory=dict)
    last_drill: dict[str, JobRecord | None] = field(default_factory=dict)
    deadline: dict[str, datetime] = field(default_factory=dict)
    retention_days: int = 30
    gfs: tuple[int, int, int] = (0, 0, 0)
    kept: int = 0
    prunable: int = 0
    storage_kind: str = "local"
    local_key: bool = False
    key_recipient: str | None = None  # the public key new artifacts are encrypted to
    retired_keys: int = 0  # older keys kept for reading only
    s3_sse: str | None = None
    staging: dict[str, bool] = field(default_factory=dict)  # database -> staging configured
    # what the kept artifacts really are, not what the configuration promises
    kept_plain: int = 0  # good snapshots kept that are not age-encrypted
    kept_encrypted: int = 0
    plain_gone_by: datetime | None = None  # when retention removes the last plaintext one
    newest_sse: str | None = None  # server-side encryption S3 reports for the newest artifact
    snapshot_every: timedelta = timedelta(hours=24)  # the schedule's longest gap
    damaged: list[str] = field(default_factory=list)  # snapshots found corrupt, not pruned yet
    surface: str = "slack"  # where the lines are read: "slack" (/atlas …) or "cli" (atlas …)
    config_problems: dict[str, str] = field(default_factory=dict)  # database -> what is wrong
    servers: list[str] = field(default_factory=list)  # servers whose databases are listed
    fleet_problems: list[str] = field(default_factory=list)  # servers that could not be listed
    gone: list[str] = field(default_factory=list)  # databases no longer on their server
    left_out: list[str] = field(default_factory=list)  # selected but not backed up, and why
    rotation: dict[str, str] = field(default_factory=dict)  # database -> its server's rotation
    rotation_next: set[str] = field(default_factory=set)  # the databases to drill next
    kept_stagings: list[KeptStaging] = field(default_factory=list)  # what undo can bring back
    copies: list[Standing] = field(default_factory=list)  # each destination of ATLAS_COPIES


def _age(now: datetime, iso: str | None) -> timedelta | None:
    return now - datetime.fromisoformat(iso) if iso else None


def _ago(delta: timedelta) -> str:
    h = delta.total_seconds() / 3600
    return f"{h:.0f} h ago" if h < 48 else f"{h / 24:.0f} days ago"


def _kept_artifacts(kept: int) -> str:
    if not kept:
        return "local artifacts are"
    return "the one kept artifact is" if kept == 1 else f"the {count(kept, 'kept artifact')} are"


def _key_detail(f: Facts) -> str:
    if not f.key_recipient:
        return ""
    retired = f"; {count(f.retired_keys, 'retired key')} kept for reading" if f.retired_keys else ""
    return f" (to {f.key_recipient[:16]}…{retired})"


def evaluate(f: Facts) -> list[Line]:
    """The checklist's lines, in the runbook's order."""
    return [
        _automated(f),
        *_fleet(f),
        *(line for db in f.databases for line in (_last_snapshot(f, db), _last_drill(f, db))),
        _retention(f),
        _encryption_line(f),
        *(_copy_line(f, s) for s in f.copies),
        *_damaged(f),
        _separation(f),
        *(
            Line(f"kept:{k.database}", OK, f"Kept staging of {k.database}", k.describe())
            for k in f.kept_stagings
        ),
    ]


def _automated(f: Facts) -> Line:
    """Our schedule and the provider's automated backups."""
    if f.schedule:
        sched = (OK, f"scheduled snapshots `{f.schedule}` ({f.timezone})")
    else:
        sched = (WARN, "no scheduled snapshots (set ATLAS_SNAPSHOT_SCHEDULE)")
    if f.provider is None:
        prov = (WARN, "provider backups not checked (set ATLAS_RDS_INSTANCE)")
    elif f.provider_problems:
        prov = (FAIL, f"provider `{f.provider}`: " + "; ".join(f.provider_problems))
    else:
        prov = (OK, f"provider `{f.provider}` automated backups within policy")
    level = FAIL if FAIL in (sched[0], prov[0]) else WARN if WARN in (sched[0], prov[0]) else OK
    return Line("automated", level, "Automated backups", f"{sched[1]}; {prov[1]}")


def _fleet(f: Facts) -> list[Line]:
    """Configuration mistakes, the servers listed, what a selection leaves out or lost."""
    lines = [
        Line(f"config:{db}", FAIL, f"Configuration of {db}", problem)
        for db, problem in f.config_problems.items()
    ]
    if f.servers and f.fleet_problems:
        lines.append(Line("fleet", FAIL, "Servers", "; ".join(f.fleet_problems)))
    elif f.servers:
        backed_up = f"{', '.join(f.servers)}: {count(len(f.databases), 'database')} backed up"
        lines.append(Line("fleet", OK, "Servers", backed_up))
    if f.left_out:
        lines.append(Line("left-out", OK, "Selected, not backed up", "; ".join(f.left_out)))
    lines += [
        Line(
            f"gone:{db}",
            WARN,
            f"{db} is gone",
            "no longer on its server; its snapshots are kept under retention",
        )
        for db in f.gone
    ]
    return lines


def _last_snapshot(f: Facts, db: str) -> Line:
    snap = f.last_snapshot.get(db)
    if snap is None:
        return Line(f"snapshot:{db}", FAIL, f"Last snapshot of {db}", "none yet")
    fresh, stale = f.snapshot_every + GRACE, 2 * f.snapshot_every + GRACE
    age = _age(f.now, snap.finished_at or snap.started_at) or timedelta(0)
    level = OK if age <= fresh else WARN if age <= stale else FAIL
    detail = f"`{snap.id}` {_ago(age)}, {'verified' if snap.verified_at else 'not verified'}"
    if level != OK:
        detail += (
            f"; older than {_ago(fresh).removesuffix(' ago')}, expected every "
            f"{_ago(f.snapshot_every).removesuffix(' ago')}"
        )
        detail = ("STALE: " if level == FAIL else "") + detail
    return Line(f"snapshot:{db}", level, f"Last snapshot of {db}", detail)


def _last_drill(f: Facts, db: str) -> Line:
    """Whether the database's restore has been proven within its period (or its turn in
    its server's rotation has not come yet)."""
    drill, due, server = f.last_drill.get(db), f.deadline.get(db), f.rotation.get(db)
    when = f"next due by {due.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if due else ""
    if server is not None:
        role = "next to drill" if db in f.rotation_next else "drilled at least yearly"
        when = f"in server {server}'s rotation, {role}; {when}".rstrip("; ")
    if drill is None and server is not None and due is not None and f.now < due:
        # a rotation drills its databases in turn: not yet is fine until its deadline
        level = WARN if due - f.now <= timedelta(days=14) else OK
        detail = f"not drilled yet, {when}"
    elif drill is None:
        level = FAIL  # restore capability has never been proven
        cmd = "/atlas" if f.surface == "slack" else "atlas"
        aim = f" {f'db:{db}' if cmd == '/atlas' else f'--db {db}'}" if len(f.databases) > 1 else ""
        detail = f"no passed drill yet: run `{cmd} drill{aim}`; {when}".rstrip("; ")
    else:
        passed = datetime.fromisoformat(drill.finished_at or drill.started_at or "")
        level = OK
        if due and f.now >= due:
            level = FAIL
        elif due and due - f.now <= timedelta(days=14):
            level = WARN
        detail = f"passed {passed:%Y-%m-%d} (restore took {human_seconds(drill.total_s)}); {when}"
        if level == FAIL:
            detail = "OVERDUE: " + detail
    return Line(f"drill:{db}", level, f"Restore drill of {db}", detail)


def _retention(f: Facts) -> Line:
    d, w, m = f.gfs
    gfs = f", keep {d} daily/{w} weekly/{m} monthly" if any(f.gfs) else ""
    level = OK if 14 <= f.retention_days <= 30 else WARN
    return Line(
        "retention",
        level,
        "Retention",
        f"{count(f.retention_days, 'day')}{gfs}; keeping {count(f.kept, 'snapshot')}, "
        f"{f.prunable} to prune",
    )


def _copy_line(f: Facts, s: Standing) -> Line:
    """A destination is ❌ once a copy has waited longer than ATLAS_COPY_ALERT_HOURS."""
    last = _age(f.now, s.last_ok)
    good = f"last good copy {_ago(last)}" if last is not None else "no good copy yet"
    if s.complete:
        drilled = _age(f.now, s.last_drill)
        if drilled is not None:
            return Line(
                f"copy:{s.destination}",
                OK,
                f"Copies to {s.destination}",
                f"{good}; none missing; last drilled from {_ago(drilled)}",
            )
        level, hint = (
            (WARN, f" (`atlas drill latest --from {s.destination}`)") if last else (OK, "")
        )
        return Line(
            f"copy:{s.destination}",
            level,
            f"Copies to {s.destination}",
            f"{good}; none missing; never drilled from{hint}",
        )
    waiting = f"{count(s.unfinished, 'copy')} waiting" + (
        f" (last error: {s.last_error})" if s.last_error else ""
    )
    cmd = "atlas copy" if f.surface == "cli" else "`atlas copy` on the host"
    level = FAIL if s.down else WARN
    return Line(
        f"copy:{s.destination}",
        level,
        f"Copies to {s.destination}",
        f"{good}; {waiting}; retried with backoff, or run {cmd}",
    )


def _damaged(f: Facts) -> list[Line]:
    if not f.damaged:
        return []
    shown = ", ".join(f"`{i}`" for i in f.damaged[:5])
    return [
        Line(
            "damaged",
            WARN,
            "Damaged snapshots",
            f"{count(len(f.damaged), 'snapshot')} failed their checksums and can never be "
            f"restored: {shown}; retention removes them",
        )
    ]


def _separation(f: Facts) -> Line:
    missing = [db for db in f.databases if not f.staging.get(db)]
    if missing:
        level, detail = WARN, f"no staging database for {', '.join(missing)}: restores cannot run"
    else:
        level, detail = (
            OK,
            "storage keyed by environment/database; staging is not production (checked by "
            "server identity before each restore)",
        )
    return Line("separation", level, "Production/staging separation", detail)


def _plain_share(plain: int, kept: int) -> str:
    if kept == 1:
        return "the one kept artifact is"
    return f"{plain} of {count(kept, 'kept artifact')} are"


def _encryption_line(f: Facts) -> Line:
    level, detail = _encryption(f)
    return Line("encryption", level, "Encryption at rest", detail)


def _encryption(f: Facts) -> tuple[str, str]:
    """What the kept artifacts are: a key set today does not encrypt older artifacts."""
    kept = f.kept_plain + f.kept_encrypted
    if f.local_key:
        if f.kept_plain:
            gone = f" by {f.plain_gone_by:%Y-%m-%d}" if f.plain_gone_by else ""
            return WARN, (
                f"{_plain_share(f.kept_plain, kept)} not encrypted (taken before the "
                f"key was set); retention removes them{gone}. New artifacts are encrypted with "
                "age" + _key_detail(f)
            )
        what = (
            "the one kept artifact and new ones"
            if kept == 1
            else f"all {count(kept, 'kept artifact')}"
            if kept
            else "new artifacts"
        )
        return OK, f"{what} encrypted with age" + _key_detail(f)
    if f.storage_kind == "s3":
        sse = f.newest_sse or f.s3_sse
        if sse:
            return OK, f"S3 server-side encryption ({sse}); no client-side key"
        return WARN, (
            "S3 reports no server-side encryption on the newest artifact "
            "(set ATLAS_S3_SSE, or ATLAS_ENCRYPTION_KEY_FILE for client-side encryption)"
        )
    return WARN, (
        f"{_kept_artifacts(kept)} not encrypted by "
        "Atlas: fine only on an encrypted disk (set ATLAS_ENCRYPTION_KEY_FILE)"
    )


def schedule_gap(cron: str | None, tz: str, now: datetime) -> timedelta:
    """The longest wait between two runs of a cron schedule (a day without one): the age
    past which the last snapshot is late."""
    if not cron:
        return timedelta(hours=24)
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(cron, timezone=tz)
    fires: list[datetime] = []
    prev: datetime | None = None
    at = now
    for _ in range(64):
        nxt = trigger.get_next_fire_time(prev, at)
        if nxt is None:
            break
        fires.append(nxt)
        prev, at = nxt, nxt + timedelta(seconds=1)
    gaps = [b - a for a, b in zip(fires, fires[1:], strict=False)]
    return max(gaps) if gaps else timedelta(hours=24)


def worst(lines: list[Line]) -> str:
    levels = {line.level for line in lines}
    return FAIL if FAIL in levels else WARN if WARN in levels else OK


def render(lines: list[Line]) -> str:
    return "*Atlas status*\n" + "\n".join(
        f"{ICONS[line.level]} *{line.title}*: {line.detail}" for line in lines
    )


def gather(
    services: Services,
    at: datetime | None = None,
    check_provider: bool = True,
    surface: str = "slack",
) -> Facts:
    from bot.ops import housekeeping
    from bot.policy import retention

    st = services.settings
    now = at or datetime.now(UTC)
    fleet = services.fleets.listed()  # lists the servers, if any: their databases are reported too
    problems = None
    ident = st.rds_cluster or st.rds_instance
    if ident and check_provider:
        result = housekeeping.provider_check(services, at=now)
        problems = list(result.problems) if result is not None else ["provider check failed"]
    rows = services.catalog.list_snapshots(limit=100000)
    policy = housekeeping.retention_policy(services)
    decisions = retention.plan(rows, policy, now, housekeeping.protected_snapshots(services))
    kept_ids = {d.snapshot_id for d in decisions if d.keep}
    kept_ok = [r for r in rows if r.id in kept_ids and r.status == SnapshotStatus.OK]
    plain = [r for r in kept_ok if r.encryption != "age"]
    identity = services.keys.current()
    storage = services.store.get()
    facts = Facts(
        now=now,
        schedule=st.snapshot_schedule,
        timezone=st.timezone,
        provider=ident,
        provider_problems=problems,
        databases=list(st.databases),
        retention_days=st.retention_days,
        gfs=(st.keep_daily, st.keep_weekly, st.keep_monthly),
        kept=sum(d.keep for d in decisions),
        prunable=sum(not d.keep for d in decisions),
        storage_kind=storage.kind,
        local_key=identity is not None,
        key_recipient=identity.recipient if identity is not None else None,
        retired_keys=identity.retired if identity is not None else 0,
        s3_sse=st.s3_sse,
        kept_plain=len(plain),
        kept_encrypted=len(kept_ok) - len(plain),
        plain_gone_by=_gone_by(plain, policy.days),
        snapshot_every=schedule_gap(st.snapshot_schedule, st.timezone, now),
        damaged=[r.id for r in rows if r.status == SnapshotStatus.CORRUPT],
        surface=surface,
        servers=list(st.servers),
        fleet_problems=fleet.problems + fleet.skipped,
        gone=fleet.gone,
        left_out=fleet.left_out,
    )
    if facts.storage_kind == "s3" and kept_ok and identity is None:
        head = storage.stat(kept_ok[0].storage_key or "")
        facts.newest_sse = head.sse if head is not None else None
    _per_database(services, facts, now)
    from bot.ops import kept

    facts.kept_stagings = kept.gather(services)
    if st.copies:
        from bot.ops import copies

        facts.copies = copies.standings(services, now)
    return facts


def _per_database(services: Services, facts: Facts, now: datetime) -> None:
    """Each database's facts: its settings' mistakes, newest snapshot and passed drill,
    drill deadline, and its place in its server's rotation."""
    from bot.ops import housekeeping

    st = services.settings
    plans = housekeeping.rotation_plans(services, now)
    deadlines = housekeeping.drill_deadlines(services, now, plans)
    for name, target in st.databases.items():
        if problem := _config_problem(target):
            facts.config_problems[name] = problem
        newest = services.catalog.list_snapshots(limit=1, database=name, status=SnapshotStatus.OK)
        facts.last_snapshot[name] = newest[0] if newest else None
        facts.last_drill[name] = housekeeping.last_passed_drill(services, name)
        facts.deadline[name] = deadlines[name]
        server = st.rotation_server(name)
        if server is not None:
            facts.rotation[name] = server.name
            if plans[server.name].next == name:
                facts.rotation_next.add(name)
        facts.staging[name] = bool(target.staging_url)


def _config_problem(target: DatabaseTarget) -> str | None:
    """What is wrong with a database's URLs, the staging side's mistake last (as before)."""
    problem = None
    for url, setting in (
        (target.url, target.url_setting),
        (target.staging_url, target.staging_setting),
    ):
        try:
            if url is not None:
                Conn.parse(url, setting)
        except AtlasError as exc:
            problem = str(exc)
    return target.staging_problem or problem


def _gone_by(rows: list[Snapshot], days: int) -> datetime | None:
    """When the retention window has passed the newest of `rows` (pins aside)."""
    times = [datetime.fromisoformat(r.started_at or "") for r in rows if not r.pinned]
    return max(times) + timedelta(days=days) if times and len(times) == len(rows) else None
