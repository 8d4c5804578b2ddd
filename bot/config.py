"""Settings from the environment (and an optional TOML file), validated once at start.

Validation happens here so that a typo in the environment is a clear error before any
job starts, not a confusing failure half-way through a dump.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import conninfo, destinations, locations, redaction
from bot.destinations import Destination
from bot.errors import AtlasError
from bot.fleet.patterns import Selection

# Settings that may carry a secret (a URL's password, a key in a file's text), and those
# that are one whole: redacted from everything Atlas says.
SECRET_SETTINGS = ("DATABASE_URL", "STAGING_DATABASE_URL", "ATLAS_STATE", "ATLAS_ENCRYPTION_KEY")
WHOLE_SECRET_SETTINGS = (
    "PGPASSWORD",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


def _trimmed(v: str) -> str | None:
    """An identifier (an RDS instance, a KMS key): spaces around it are a paste's, and
    blank is unset."""
    return v.strip() or None


def _together(st: Settings) -> list[str]:
    """Settings that are each fine alone but not side by side."""
    problems = []
    if st.s3_kms_key_id and st.s3_sse != "aws:kms":
        problems.append(
            "ATLAS_S3_KMS_KEY_ID is set, but only ATLAS_S3_SSE=aws:kms uses a key: set it, "
            "or unset the key id"
        )
    low, high = st.provider_retention_min, st.provider_retention_max
    if low > high:
        problems.append(
            f"ATLAS_PROVIDER_RETENTION_MIN ({low}) is above ATLAS_PROVIDER_RETENTION_MAX ({high})"
        )
    return problems


def _environment(v: str) -> str:
    """A folder name in storage (`production/app/…`): empty, as compose writes an unset
    variable, is the default."""
    return _safe_name(v.strip()) if v.strip() else "production"


def _ids(v: str) -> list[str]:
    """Slack user or group ids: commas or spaces between them (`U1 U2` once made one
    approver named "U1 U2", whom no reaction could match)."""
    return [part for part in re.split(r"[\s,]+", v) if part]


def _csv(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def aws_region() -> str | None:
    """AWS_REGION, which the other AWS SDKs and Atlas's docs use. boto3 by itself reads
    only AWS_DEFAULT_REGION and its config file; those still apply when this is unset."""
    return os.environ.get("AWS_REGION", "").strip() or None


class Secret:
    """A setting that must never be shown: its repr and str hide the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass
class Check:
    """A "core app flow" check: a read-only query that must return true."""

    name: str
    sql: str

    def __post_init__(self) -> None:
        for what in ("name", "sql"):
            if not isinstance(getattr(self, what), str) or not getattr(self, what).strip():
                raise ValueError(f"{what} must be text")


def _safe_name(v: Any) -> str:
    if not isinstance(v, str) or not v or v.startswith("."):
        raise ValueError(f"{v!r} must be letters, digits, '-', '_' or '.'")
    if not all(c.isalnum() or c in "-_." for c in v):
        raise ValueError(f"{v!r} must be letters, digits, '-', '_' or '.'")
    return v


@dataclass
class DatabaseTarget:
    """One database Atlas backs up, with the staging server its restores go to."""

    name: str
    url: str = field(default="", repr=False)  # may hold a password: never in repr/logs
    staging_url: str | None = field(default=None, repr=False)
    environment: str = "production"
    checks: list[Check] = field(default_factory=list)
    # Where the URLs came from, for error messages that name the setting to fix.
    url_setting: str = "url"
    staging_setting: str = "staging_url"
    server: str | None = None  # the [servers] entry it was found on, if any
    schedule: str | None = None  # its own cron; ATLAS_SNAPSHOT_SCHEDULE covers the others
    staging_problem: str | None = None  # why restores of it are refused (check_urls)

    def __post_init__(self) -> None:
        self.name = _safe_name(self.name)
        self.environment = _safe_name(self.environment)
        if self.schedule is not None:
            if not isinstance(self.schedule, str):
                raise ValueError("schedule must be a cron line in quotes")
            self.schedule = _cron(self.schedule)
        for what in ("url", "staging_url"):
            value = getattr(self, what)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{what} must be text")
        if not isinstance(self.checks, list):
            raise ValueError("checks must be a list of [[databases.NAME.checks]]")
        self.checks = [c if isinstance(c, Check) else _check(c) for c in self.checks]


@dataclass
class Server:
    """A server whose databases Atlas finds for itself: every one its selection matches,
    including those created after Atlas started. Each becomes a DatabaseTarget named
    `prefix + database` (the prefix keeps two servers' `app` databases apart)."""

    name: str
    url: str = field(default="", repr=False)
    selection: Selection = field(default_factory=lambda: Selection(("*",)))
    staging_url: str | None = field(default=None, repr=False)
    environment: str = "production"
    schedule: str | None = None
    checks: list[Check] = field(default_factory=list)
    drill_scope: str | None = None  # "database" or "server"; None: ATLAS_DRILL_SCOPE
    prefix: str = ""
    url_setting: str = "url"
    staging_setting: str = "staging_url"

    def __post_init__(self) -> None:
        self.name = _safe_name(self.name)
        self.environment = _safe_name(self.environment)
        if not isinstance(self.url, str) or not self.url.strip():
            raise ValueError("url is required: the server to list databases on")


def _check(raw: Any) -> Check:
    if not isinstance(raw, dict) or set(raw) - {"name", "sql"}:
        raise ValueError("a check has a name and a sql, nothing else")
    try:
        return Check(**raw)
    except TypeError:
        raise ValueError("a check needs a name and a sql") from None


# -- reading one setting ---------------------------------------------------------------------
# Each takes the environment's text and returns the value, or raises ValueError saying
# what is wrong in words the operator can act on.


def _text(v: str) -> str:
    return v


def _optional(v: str) -> str | None:
    """Empty (as compose's `${VAR:-}` writes it) means not set."""
    return v.strip() or None


def _secret(v: str) -> Secret | None:
    return Secret(v) if v.strip() else None


def _integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    def parse(v: str) -> int:
        try:
            n = int(v.strip())
        except ValueError:
            raise ValueError(f"{v!r} is not a whole number") from None
        if low is not None and n < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and n > high:
            raise ValueError(f"must be at most {high}")
        return n

    return parse


def _tags(v: str) -> dict[str, str]:
    from bot import tags

    try:
        return tags.parse_setting(v)
    except AtlasError as exc:
        raise ValueError(str(exc).removeprefix("ATLAS_SNAPSHOT_TAGS: ")) from None


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def _boolean(v: str) -> bool:
    word = v.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{v!r} is not true or false")


def _state(v: str) -> Path | str:
    """A SQLite file path, or a postgresql:// URL for a catalog replicas share. Anything
    else that looks like a URL or connection string is refused, not taken for a file name
    (which would be made, password and all)."""
    from bot.catalog import is_url

    if is_url(v):
        return v.strip()
    shape = locations.url_shape(v)
    if shape is None and re.search(r"\b(host|dbname|user)\s*=", v):
        shape = "key=value …"
    if shape is None and re.match(r"\s*[\w.-]+:[^/]*@", v):  # user:password@host, no scheme
        shape = "USER:…@HOST"
    if shape is None and not v.strip():
        raise ValueError("is empty; write the path of a SQLite file, or a postgresql:// URL")
    if shape is None:
        return Path(v.strip()).expanduser()  # `~/atlas.db` as ATLAS_STORAGE reads `~`
    raise ValueError(
        f"{shape!r} is neither a file path nor a postgresql:// URL; write "
        "postgresql://USER@HOST:5432/DBNAME, or the path of a SQLite file"
    )


def _group(v: str) -> str | None:
    import grp

    name = v.strip()
    if not name:
        return None
    try:
        grp.getgrgid(int(name)) if name.isdigit() else grp.getgrnam(name)
    except KeyError:
        raise ValueError(f"no group {name!r} on this host (groupadd it, or unset)") from None
    return name


def _optional_path(v: str) -> Path | None:
    return locations.path(v)


def _days(v: str) -> list[int]:
    try:
        days = sorted({int(d) for d in _csv(v)}, reverse=True)
    except ValueError:
        raise ValueError(f"{v!r} is not a list of whole numbers, e.g. 14,7,0") from None
    if any(d < 0 for d in days):
        raise ValueError("lead days must be 0 or more")
    return days


def _timezone(v: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (use e.g. UTC or Europe/Berlin)") from None
    return v


def _patterns(v: str) -> list[str]:
    patterns = _csv(v)
    if patterns:
        Selection.parse(patterns)  # raises ValueError with what is wrong
    return patterns


def _scope(v: str) -> str:
    value = v.strip().lower()
    if value not in ("database", "server"):
        raise ValueError(
            f"{v!r} is neither 'database' (each database drilled every period) nor 'server' "
            "(one drill per server and period, each database at least yearly)"
        )
    return value


def _swap_sessions(v: str) -> str:
    value = v.strip().lower()
    if value not in ("end", "wait"):
        raise ValueError(
            f"{v!r} is neither 'end' (a refresh ends the sessions still on staging after "
            "ATLAS_SWAP_WAIT_S) nor 'wait' (it gives up, leaving staging as it was)"
        )
    return value


def _cron(v: str) -> str | None:
    if not v.strip():
        return None
    from apscheduler.triggers.cron import CronTrigger

    try:
        trigger = CronTrigger.from_crontab(v, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"not a cron expression ({exc}); e.g. '0 3 * * *'") from None
    from datetime import UTC, datetime

    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise ValueError(f"{v.strip()!r} never comes (no such date); e.g. '0 3 * * *'")
    return v


def _hhmm(v: str) -> str:
    hh, _, mm = v.partition(":")
    if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise ValueError("use HH:MM, e.g. 09:00")
    return v


def _every(v: str) -> str:
    """'quarter' or 1-3660 days, as the reminders read it, checked here so that a typo is
    a configuration error at start (`²` and 99999999999 were crashes later)."""
    from bot.policy.reminders import parse_every

    return str(parse_every(v))


def _sse(v: str) -> str | None:
    if v and v not in ("AES256", "aws:kms"):
        raise ValueError("use AES256 or aws:kms")
    return v or None


def _emojis(v: str) -> list[str]:
    return [e.strip(":") for e in _csv(v)]


def _slack_url(v: str) -> str | None:
    url = locations.http_url(v)
    if url is None:
        return None
    return url if url.endswith("/") else url + "/"


@dataclass
class Settings:
    """Every knob Atlas reads, each from the environment variable its `ENV` entry names.

    Plain data, read by load_settings once: every command starts without loading a
    validation framework for it.
    """

    database_url: str | None = field(default=None, repr=False)
    staging_database_url: str | None = field(default=None, repr=False)
    environment: str = "production"
    database_name: str | None = None
    storage: str = "./backups"
    state: Path | str = Path("./atlas.db")  # or a postgresql:// URL
    config_file: Path | None = None
    pg_bindir: str | None = None
    zstd_level: int = 3
    zstd_threads: int = 0

    slack_bot_token: Secret | None = None
    slack_signing_secret: Secret | None = None
    slack_app_token: Secret | None = None
    slack_api_url: str | None = None
    channel: str | None = None
    allowed_users: list[str] = field(default_factory=list)
    http_port: int = 3000

    approvers: list[str] = field(default_factory=list)
    required_approvals: int = 1
    approval_ttl_minutes: int = 60
    approve_emojis: list[str] = field(default_factory=lambda: ["white_check_mark"])
    reject_emojis: list[str] = field(default_factory=lambda: ["x"])
    drill_keep: bool = False
    # Drills read each block as they restore it; with this, they first check every
    # block (or the whole artifact), as staging refreshes always do.
    drill_verify_first: bool = False
    restore_jobs: int = 2
    restore_spool: bool = False
    check_timeout_s: int = 30
    lock_wait_s: int = 300  # how long a restore waits for a lock on staging (0: forever)
    snapshot_tags: dict[str, str] = field(default_factory=dict)  # on every snapshot
    swap_wait_s: int = 30  # how long a refresh's swap waits for staging's sessions to leave
    swap_sessions: str = "end"  # then: end them, or give up ("wait")
    undo_keep_hours: int = 168  # how long the staging a refresh replaced is kept (0: not)
    rto_target_minutes: int = 60  # a drill's restore time should stay within it (report)
    work_dir: Path | None = None
    checks: list[Check] = field(default_factory=list)

    snapshot_schedule: str | None = None
    timezone: str = "UTC"
    housekeeping_at: str = "09:00"
    drill_every: str = "quarter"
    reminder_lead_days: list[int] = field(default_factory=lambda: [14, 7, 0])
    reminder_overdue_every_days: int = 7
    retention_days: int = 30
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    encryption_key: Secret | None = None
    encryption_key_file: Path | None = None
    # encrypted snapshots' sidecars show their manifest, note and requester in the clear
    sidecar_plain: bool = False
    s3_sse: str | None = None
    s3_kms_key_id: str | None = None
    rds_instance: str | None = None
    rds_cluster: str | None = None
    provider_retention_min: int = 14
    provider_retention_max: int = 30

    # ATLAS_DATABASES: the databases of DATABASE_URL's server to back up (patterns, !exclude)
    database_patterns: list[str] = field(default_factory=list)
    max_parallel: int = 1
    drill_scope: str = "database"
    # replicas: a dead leader is replaced, and a silent job declared dead, within this
    failover_s: int = 60
    aws_endpoint_url: str | None = None
    # a group that may read the artifacts and the catalog (files 0640, folders 0750)
    file_group: str | None = None
    # 3-2-1: further destinations every snapshot is copied to (bot/copies/destinations.py)
    copies: dict[str, Destination] = field(default_factory=dict)
    copy_alert_hours: int = 24  # a destination that long without a good copy is a ❌
    copy_timeout_s: int = 900  # how long a snapshot waits for its copies before retries

    databases: dict[str, DatabaseTarget] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)

    @property
    def stale_after_s(self) -> float:
        """How long a running job's heartbeat may be silent before another process declares
        its owner dead: twice the failover bound (beats come four times in it), so a busy
        host whose beats come late is not taken for a dead one."""
        return float(max(12, 2 * self.failover_s))

    def rotation_server(self, database: str) -> Server | None:
        """The server whose drill rotation `database` is in, if it is in one."""
        target = self.databases.get(database)
        server = self.servers.get(target.server or "") if target else None
        if server is None or (server.drill_scope or self.drill_scope) != "server":
            return None
        return server

    def target(self, name: str | None = None) -> DatabaseTarget:
        """The database a command is about: by name, or the only/first one configured."""
        if not self.databases:
            if self.servers:
                raise AtlasError(
                    "No database of the configured servers is known yet.",
                    "run `atlas snapshot --all` (or wait for the schedule), which lists them",
                )
            raise AtlasError(
                "No database is configured.",
                "set DATABASE_URL (or PG* variables with ATLAS_DATABASE_NAME), "
                "or list databases in the ATLAS_CONFIG file",
            )
        if name is None:
            return next(iter(self.databases.values()))
        try:
            return self.databases[name]
        except KeyError:
            known = ", ".join(sorted(self.databases))
            raise AtlasError(f"Unknown database {name!r}.", f"configured: {known}") from None


# attribute: (environment variable, how to read it)
ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "database_url": ("DATABASE_URL", _text),  # checked where used (Conn.parse): serve still
    # starts, and each job's failure is recorded and posted
    "staging_database_url": ("STAGING_DATABASE_URL", _text),  # checked by the restores
    "environment": ("ATLAS_ENVIRONMENT", _environment),
    "database_name": ("ATLAS_DATABASE_NAME", _text),
    "storage": ("ATLAS_STORAGE", locations.storage),
    "state": ("ATLAS_STATE", _state),
    "config_file": ("ATLAS_CONFIG", _optional_path),
    "pg_bindir": ("ATLAS_PG_BINDIR", _text),
    "zstd_level": ("ATLAS_ZSTD_LEVEL", _integer(1, 19)),
    "zstd_threads": ("ATLAS_ZSTD_THREADS", _integer(0, 64)),
    "slack_bot_token": ("SLACK_BOT_TOKEN", _secret),
    "slack_signing_secret": ("SLACK_SIGNING_SECRET", _secret),
    "slack_app_token": ("SLACK_APP_TOKEN", _secret),
    "slack_api_url": ("SLACK_API_URL", _slack_url),
    "channel": ("ATLAS_CHANNEL", _optional),
    "allowed_users": ("ATLAS_ALLOWED_USERS", _ids),
    "http_port": ("PORT", _integer(1, 65535)),
    "approvers": ("ATLAS_APPROVERS", _ids),
    "required_approvals": ("ATLAS_REQUIRED_APPROVALS", _integer(1, 20)),
    "approval_ttl_minutes": ("ATLAS_APPROVAL_TTL_MINUTES", _integer(1)),
    "approve_emojis": ("ATLAS_APPROVE_EMOJIS", _emojis),
    "reject_emojis": ("ATLAS_REJECT_EMOJIS", _emojis),
    "drill_keep": ("ATLAS_DRILL_KEEP", _boolean),
    "drill_verify_first": ("ATLAS_DRILL_VERIFY_FIRST", _boolean),
    "restore_jobs": ("ATLAS_RESTORE_JOBS", _integer(1, 32)),
    "restore_spool": ("ATLAS_RESTORE_SPOOL", _boolean),
    "check_timeout_s": ("ATLAS_CHECK_TIMEOUT_S", _integer(1)),
    "lock_wait_s": ("ATLAS_LOCK_WAIT_S", _integer(0, 86400)),
    "swap_wait_s": ("ATLAS_SWAP_WAIT_S", _integer(0, 86400)),
    "snapshot_tags": ("ATLAS_SNAPSHOT_TAGS", _tags),
    "swap_sessions": ("ATLAS_SWAP_SESSIONS", _swap_sessions),
    "undo_keep_hours": ("ATLAS_UNDO_KEEP_HOURS", _integer(0, 24 * 366)),
    "rto_target_minutes": ("ATLAS_RTO_TARGET_MINUTES", _integer(1, 60 * 24 * 30)),
    "work_dir": ("ATLAS_WORK_DIR", _optional_path),
    "snapshot_schedule": ("ATLAS_SNAPSHOT_SCHEDULE", _cron),
    "timezone": ("ATLAS_TIMEZONE", _timezone),
    "housekeeping_at": ("ATLAS_HOUSEKEEPING_AT", _hhmm),
    "drill_every": ("ATLAS_DRILL_EVERY", _every),
    "reminder_lead_days": ("ATLAS_REMINDER_LEAD_DAYS", _days),
    "reminder_overdue_every_days": ("ATLAS_REMINDER_OVERDUE_EVERY_DAYS", _integer(1)),
    "retention_days": ("ATLAS_RETENTION_DAYS", _integer(1)),
    "keep_daily": ("ATLAS_KEEP_DAILY", _integer(0)),
    "keep_weekly": ("ATLAS_KEEP_WEEKLY", _integer(0)),
    "keep_monthly": ("ATLAS_KEEP_MONTHLY", _integer(0)),
    "encryption_key": ("ATLAS_ENCRYPTION_KEY", _secret),
    "encryption_key_file": ("ATLAS_ENCRYPTION_KEY_FILE", _optional_path),
    "sidecar_plain": ("ATLAS_SIDECAR_PLAIN", _boolean),
    "s3_sse": ("ATLAS_S3_SSE", _sse),
    "s3_kms_key_id": ("ATLAS_S3_KMS_KEY_ID", _trimmed),
    "rds_instance": ("ATLAS_RDS_INSTANCE", _trimmed),
    "rds_cluster": ("ATLAS_RDS_CLUSTER", _trimmed),
    "provider_retention_min": ("ATLAS_PROVIDER_RETENTION_MIN", _integer(0)),
    "provider_retention_max": ("ATLAS_PROVIDER_RETENTION_MAX", _integer(1)),
    "database_patterns": ("ATLAS_DATABASES", _patterns),
    "max_parallel": ("ATLAS_MAX_PARALLEL", _integer(1, 64)),
    "drill_scope": ("ATLAS_DRILL_SCOPE", _scope),
    "failover_s": ("ATLAS_FAILOVER_S", _integer(6, 3600)),
    "aws_endpoint_url": ("AWS_ENDPOINT_URL", locations.http_url),  # boto3 reads it too
    "file_group": ("ATLAS_FILE_GROUP", _group),
    "copy_alert_hours": ("ATLAS_COPY_ALERT_HOURS", _integer(1, 24 * 366)),
    "copy_timeout_s": ("ATLAS_COPY_TIMEOUT_S", _integer(1, 86400)),
}
ENV_NAMES = frozenset(name for name, _ in ENV.values())


def dbname_in(url: str) -> str | None:
    """The database a URL or key=value string names, if any (and if it parses)."""
    try:
        name = conninfo.params(url).get("dbname")
    except ValueError:
        return locations.dbname_of(url)  # the failure is recorded under it, not "main"
    return str(name) if name else None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read env (+ TOML), fill in the database list, and turn validation errors into one message."""
    source = dict(os.environ if env is None else env)
    redaction.remember(*(source.get(name) for name in SECRET_SETTINGS))
    redaction.remember_whole(*(source.get(name) for name in WHOLE_SECRET_SETTINGS))
    values: dict[str, Any] = {}
    problems = []
    for attr, (name, read) in ENV.items():
        if name in source:
            try:
                values[attr] = read(source[name])
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    if not problems:
        try:
            values["copies"] = destinations.from_env(source, values.get("storage", "./backups"))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise AtlasError(f"Invalid configuration: {'; '.join(problems)}")
    settings = Settings(**values)
    if together := _together(settings):
        raise AtlasError(f"Invalid configuration: {'; '.join(together)}")

    if settings.config_file:
        databases, servers = _load_toml(settings.config_file, settings)
        settings.databases.update(databases)
        settings.servers.update(servers)
    if settings.database_patterns:
        if settings.database_url is None and not source.get("PGHOST"):
            raise AtlasError(
                "ATLAS_DATABASES is set but no server is: it picks databases on DATABASE_URL's "
                "server.",
                "set DATABASE_URL to the server (its database is where Atlas lists the others)",
            )
        settings.servers.setdefault(
            "default",
            Server(
                name="default",
                url=settings.database_url or "",
                selection=Selection.parse(settings.database_patterns),
                staging_url=settings.staging_database_url,
                environment=settings.environment,
                schedule=None,
                url_setting="DATABASE_URL",
                staging_setting="STAGING_DATABASE_URL",
            ),
        )
        redaction.remember(settings.database_url, settings.staging_database_url)
    elif settings.database_url is not None or source.get("PGDATABASE") or settings.database_name:
        url = settings.database_url or ""
        name = settings.database_name or dbname_in(url) or source.get("PGDATABASE") or "main"
        try:
            settings.databases.setdefault(
                name,
                DatabaseTarget(
                    name=name,
                    url=url,
                    staging_url=settings.staging_database_url,
                    environment=settings.environment,
                    url_setting="DATABASE_URL",
                    staging_setting="STAGING_DATABASE_URL",
                ),
            )
        except ValueError as exc:
            raise AtlasError(f"Invalid database name {name!r}: {exc}") from None
    for target in settings.databases.values():
        check_urls(target)
    return settings


def check_urls(target: DatabaseTarget) -> None:
    """Note a staging URL that spells the production database. This catches the plain
    mistakes; restores also compare the servers' identities. It is a restore-side
    mistake, so it never stops a backup: restores and drills refuse with it
    (`staging_problem`), `status` and `doctor` show it as a ❌, and snapshots go on.

    A malformed URL is not noted here: commands that only read the catalog still work,
    and a job that needs the URL fails with the reason recorded and posted.
    """
    if not target.staging_url:
        return
    redaction.remember(target.url, target.staging_url)
    try:
        prod = conninfo.address(conninfo.params(target.url) if target.url else {})
        staging = conninfo.address(conninfo.params(target.staging_url))
    except ValueError:
        return
    if prod == staging:
        host, port, db = prod
        target.staging_problem = (
            f"{target.staging_setting} for {target.name} points at the production database "
            f"({host}:{port}/{db}): restores must never touch production, so every restore "
            "and drill of it is refused; point staging at another database"
        )


def _load_toml(
    path: Path, settings: Settings
) -> tuple[dict[str, DatabaseTarget], dict[str, Server]]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise AtlasError(f"ATLAS_CONFIG file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise AtlasError(f"ATLAS_CONFIG file {path} is not valid TOML: {exc}") from None
    _toml_shape(data)
    try:
        for name, dest in destinations.from_toml(
            data.get("copies") or {}, settings.storage
        ).items():
            if name in settings.copies:
                raise ValueError(f"[copies.{name}] is also in ATLAS_COPIES; name it once")
            settings.copies[name] = dest
    except ValueError as exc:
        raise AtlasError(f"ATLAS_CONFIG: {exc}") from None
    try:
        settings.checks = [_check(c) for c in data.get("checks") or []]
    except ValueError as exc:
        raise AtlasError(f"ATLAS_CONFIG: [[checks]] need a name and a sql: {exc}") from None
    out: dict[str, DatabaseTarget] = {}
    for name, body in (data.get("databases") or {}).items():
        if not isinstance(body, dict):
            raise AtlasError(f"ATLAS_CONFIG: [databases.{name}] must be a table.")
        if unknown := sorted(set(body) - DATABASE_KEYS):
            raise AtlasError(
                f"ATLAS_CONFIG: [databases.{name}]: unknown key {unknown[0]!r} "
                f"(known: {', '.join(sorted(DATABASE_KEYS))})"
            )
        body = {
            "environment": settings.environment,
            **body,
            "name": name,
            "url_setting": f"ATLAS_CONFIG [databases.{name}] url",
            "staging_setting": f"ATLAS_CONFIG [databases.{name}] staging_url",
        }
        redaction.remember(str(body.get("url") or ""), str(body.get("staging_url") or ""))
        try:
            out[name] = DatabaseTarget(**body)
        except ValueError as exc:
            raise AtlasError(f"ATLAS_CONFIG: [databases.{name}]: {exc}") from None
    servers: dict[str, Server] = {}
    for name, body in (data.get("servers") or {}).items():
        try:
            servers[name] = _server(name, body, settings)
        except ValueError as exc:
            raise AtlasError(f"ATLAS_CONFIG: [servers.{name}]: {exc}") from None
    return out, servers


DATABASE_KEYS = {"url", "staging_url", "environment", "checks", "schedule"}
TOML_TABLES = {"databases": dict, "servers": dict, "copies": dict, "checks": list}


def _toml_shape(data: dict[str, Any]) -> None:
    """The file's top level: only the tables Atlas reads, each of its kind. A misspelt
    `[database.app]` would otherwise be ignored, and that database never backed up."""
    for key, value in data.items():
        kind = TOML_TABLES.get(key)
        if kind is None:
            raise AtlasError(
                f"ATLAS_CONFIG: unknown key {key!r} (known: {', '.join(sorted(TOML_TABLES))})",
                "tables are [databases.NAME], [servers.NAME], [copies.NAME] and [[checks]]",
            )
        if not isinstance(value, kind):
            shape = f"[{key}.NAME] tables" if kind is dict else "[[checks]] tables"
            raise AtlasError(f"ATLAS_CONFIG: {key} must be {shape}, not {type(value).__name__}")


SERVER_KEYS = {
    "url",
    "include",
    "exclude",
    "staging_url",
    "environment",
    "schedule",
    "checks",
    "drill_scope",
}


def _server(name: str, body: Any, settings: Settings) -> Server:
    if not isinstance(body, dict):
        raise ValueError("must be a table")
    redaction.remember(str(body.get("url") or ""), str(body.get("staging_url") or ""))
    unknown = set(body) - SERVER_KEYS
    if unknown:
        raise ValueError(
            f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(SERVER_KEYS))})"
        )
    for key in ("url", "staging_url", "environment"):
        if key in body and not isinstance(body[key], str):
            raise ValueError(f"{key} must be text in quotes")
    for key in ("include", "exclude"):
        value = body.get(key, "")
        if not isinstance(value, str | list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{key} must be names in quotes, or a list of them")
    include = _csv(body.get("include", "*"))
    exclude = _csv(body.get("exclude"))
    schedule = body.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise ValueError("schedule must be a cron line in quotes")
    checks = body.get("checks") or []
    if not isinstance(checks, list):
        raise ValueError("checks must be a list of [[servers.NAME.checks]]")
    scope = body.get("drill_scope")
    if scope is not None:
        scope = _scope(str(scope))
    return Server(
        name=name,
        url=body.get("url") or "",
        selection=Selection.parse(include, exclude),
        staging_url=body.get("staging_url"),
        environment=body.get("environment", settings.environment),
        schedule=_cron(schedule) if schedule else None,
        checks=[_check(c) for c in checks],
        drill_scope=scope,
        prefix=f"{_safe_name(name)}.",
        url_setting=f"ATLAS_CONFIG [servers.{name}] url",
        staging_setting=f"ATLAS_CONFIG [servers.{name}] staging_url",
    )
