"""`/atlas status`: the runbook's validation checklist with live facts instead of ticked boxes.

`evaluate` is pure: it takes the facts and returns the lines; gathering them is I/O and
lives in `gather`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.messages import human_seconds

if TYPE_CHECKING:
    from bot.services import Services

OK, WARN, FAIL = "ok", "warn", "fail"
ICONS = {OK: "✅", WARN: "⚠️", FAIL: "❌"}


@dataclass(frozen=True)
class Line:
    key: str
    level: str
    title: str
    detail: str


@dataclass
class Facts:
    now: datetime
    schedule: str | None
    timezone: str
    provider: str | None  # identifier, None when not configured
    provider_problems: list[str] | None  # None when not checked
    databases: list[str]
    last_snapshot: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    last_drill: dict[str, dict[str, Any] | None] = field(default_factory=dict)
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


def _age(now: datetime, iso: str | None) -> timedelta | None:
    return now - datetime.fromisoformat(iso) if iso else None


def _ago(delta: timedelta) -> str:
    h = delta.total_seconds() / 3600
    return f"{h:.0f} h ago" if h < 48 else f"{h / 24:.0f} days ago"


def _key_detail(f: Facts) -> str:
    if not f.key_recipient:
        return ""
    retired = f"; {f.retired_keys} retired key(s) kept for reading" if f.retired_keys else ""
    return f" (to {f.key_recipient[:16]}…{retired})"


def evaluate(f: Facts) -> list[Line]:
    lines: list[Line] = []

    # automated backups: our schedule and the provider's
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
    lines.append(Line("automated", level, "Automated backups", f"{sched[1]}; {prov[1]}"))

    for db in f.databases:
        snap = f.last_snapshot.get(db)
        if snap is None:
            lines.append(Line(f"snapshot:{db}", FAIL, f"Last snapshot of {db}", "none yet"))
        else:
            age = _age(f.now, snap.get("finished_at") or snap["started_at"]) or timedelta(0)
            verified = snap.get("verified_at")
            level = OK if age < timedelta(hours=48) else WARN
            detail = f"`{snap['id']}` {_ago(age)}, {'verified' if verified else 'not verified'}"
            lines.append(Line(f"snapshot:{db}", level, f"Last snapshot of {db}", detail))

        drill = f.last_drill.get(db)
        due = f.deadline.get(db)
        when = f"next due by {due.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if due else ""
        if drill is None:
            level = FAIL  # restore capability has never been proven
            detail = f"no passed drill yet: run `/atlas drill`; {when}".rstrip("; ")
        else:
            passed = datetime.fromisoformat(drill["finished_at"])
            level = OK
            if due and f.now >= due:
                level = FAIL
            elif due and due - f.now <= timedelta(days=14):
                level = WARN
            detail = f"passed {passed:%Y-%m-%d} (restore took {human_seconds(drill.get('total_s'))}); {when}"
            if level == FAIL:
                detail = "OVERDUE: " + detail
        lines.append(Line(f"drill:{db}", level, f"Restore drill of {db}", detail))

    d, w, m = f.gfs
    gfs = f", keep {d} daily/{w} weekly/{m} monthly" if any(f.gfs) else ""
    level = OK if 14 <= f.retention_days <= 30 else WARN
    lines.append(
        Line(
            "retention",
            level,
            "Retention",
            f"{f.retention_days} days{gfs}; keeping {f.kept} snapshots, {f.prunable} to prune",
        )
    )

    if f.storage_kind == "s3":
        enc = (
            (OK, f"S3 server-side encryption {f.s3_sse}")
            if f.s3_sse
            else (
                WARN,
                "S3 upload without ATLAS_S3_SSE (relies on the bucket's default encryption)",
            )
        )
    else:
        enc = (
            (OK, "artifacts encrypted with age" + _key_detail(f))
            if f.local_key
            else (
                FAIL,
                "local artifacts are not encrypted (set ATLAS_ENCRYPTION_KEY_FILE)",
            )
        )
    lines.append(Line("encryption", enc[0], "Encryption at rest", enc[1]))

    missing = [db for db in f.databases if not f.staging.get(db)]
    if missing:
        sep = (WARN, f"no staging database for {', '.join(missing)}: restores cannot run")
    else:
        sep = (
            OK,
            "storage keyed by environment/database; staging is not production (checked by server identity before each restore)",
        )
    lines.append(Line("separation", sep[0], "Production/staging separation", sep[1]))
    return lines


def worst(lines: list[Line]) -> str:
    levels = {line.level for line in lines}
    return FAIL if FAIL in levels else WARN if WARN in levels else OK


def render(lines: list[Line]) -> str:
    return "*Atlas status*\n" + "\n".join(
        f"{ICONS[line.level]} *{line.title}*: {line.detail}" for line in lines
    )


def gather(services: Services, at: datetime | None = None, check_provider: bool = True) -> Facts:
    from bot import housekeeping, retention

    st = services.settings
    now = at or datetime.now(UTC)
    problems = None
    ident = st.rds_cluster or st.rds_instance
    if ident and check_provider:
        result = housekeeping.provider_check(services, at=now)
        problems = list(result.problems) if result is not None else ["provider check failed"]
    decisions = retention.plan(
        services.catalog.list_snapshots(limit=100000),
        housekeeping.retention_policy(services),
        now,
        housekeeping.protected_snapshots(services),
    )
    identity = services.snapshots.encryption_identity()
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
        storage_kind=services.snapshots.storage.kind,
        local_key=identity is not None,
        key_recipient=identity.recipient if identity is not None else None,
        retired_keys=identity.retired if identity is not None else 0,
        s3_sse=st.s3_sse,
    )
    for name, target in st.databases.items():
        rows = services.catalog.list_snapshots(limit=1, database=name, status="ok")
        facts.last_snapshot[name] = rows[0] if rows else None
        facts.last_drill[name] = housekeeping.last_passed_drill(services, name)
        facts.deadline[name] = housekeeping.drill_deadline(services, name, now)
        facts.staging[name] = bool(target.staging_url)
    return facts
