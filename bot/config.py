"""Settings from the environment (and an optional TOML file), validated once at start.

Validation happens here so that a typo in the environment is a clear error before any
job starts, not a confusing failure half-way through a dump.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bot import conninfo, redaction
from bot.errors import AtlasError

# Settings that are, or may carry, a secret: redacted from everything Atlas says.
SECRET_SETTINGS = (
    "DATABASE_URL",
    "STAGING_DATABASE_URL",
    "PGPASSWORD",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "ATLAS_ENCRYPTION_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


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


class Check(BaseModel):
    """A "core app flow" check: a read-only query that must return true."""

    name: str
    sql: str


class DatabaseTarget(BaseModel):
    """One database Atlas backs up, with the staging server its restores go to."""

    name: str
    url: str = Field(default="", repr=False)  # may hold a password: never in repr/logs
    staging_url: str | None = Field(default=None, repr=False)
    environment: str = "production"
    checks: list[Check] = Field(default_factory=list)
    # Where the URLs came from, for error messages that name the setting to fix.
    url_setting: str = Field(default="url", exclude=True)
    staging_setting: str = Field(default="staging_url", exclude=True)

    @field_validator("name", "environment")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "-_." for c in v) or v.startswith("."):
            raise ValueError(f"{v!r} must be letters, digits, '-', '_' or '.'")
        return v


class Settings(BaseModel):
    """Every knob Atlas reads. Field names map 1:1 to the documented env names.

    A plain model, not pydantic-settings: load_settings reads the environment once,
    itself, and every command starts faster without loading that package.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_default=True)

    database_url: str | None = Field(default=None, alias="DATABASE_URL", repr=False)
    staging_database_url: str | None = Field(default=None, alias="STAGING_DATABASE_URL", repr=False)
    environment: str = Field(default="production", alias="ATLAS_ENVIRONMENT")
    database_name: str | None = Field(default=None, alias="ATLAS_DATABASE_NAME")
    storage: str = Field(default="./backups", alias="ATLAS_STORAGE")
    state: Path = Field(default=Path("./atlas.db"), alias="ATLAS_STATE")
    config_file: Path | None = Field(default=None, alias="ATLAS_CONFIG")
    pg_bindir: str | None = Field(default=None, alias="ATLAS_PG_BINDIR")
    zstd_level: int = Field(default=3, ge=1, le=19, alias="ATLAS_ZSTD_LEVEL")
    zstd_threads: int = Field(default=0, ge=0, le=64, alias="ATLAS_ZSTD_THREADS")

    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(default=None, alias="SLACK_API_URL")
    channel: str | None = Field(default=None, alias="ATLAS_CHANNEL")
    allowed_users: list[str] = Field(default_factory=list, alias="ATLAS_ALLOWED_USERS")
    http_port: int = Field(default=3000, alias="PORT")

    approvers: list[str] = Field(default_factory=list, alias="ATLAS_APPROVERS")
    required_approvals: int = Field(default=1, ge=1, le=20, alias="ATLAS_REQUIRED_APPROVALS")
    approval_ttl_minutes: int = Field(default=60, ge=1, alias="ATLAS_APPROVAL_TTL_MINUTES")
    approve_emojis: list[str] = Field(
        default_factory=lambda: ["white_check_mark"], alias="ATLAS_APPROVE_EMOJIS"
    )
    reject_emojis: list[str] = Field(default_factory=lambda: ["x"], alias="ATLAS_REJECT_EMOJIS")
    drill_keep: bool = Field(default=False, alias="ATLAS_DRILL_KEEP")
    # Drills stream once the archive's table of contents (all its SQL) is verified; with
    # this, they first check the whole artifact, as staging refreshes always do.
    drill_verify_first: bool = Field(default=False, alias="ATLAS_DRILL_VERIFY_FIRST")
    restore_jobs: int = Field(default=2, ge=1, le=32, alias="ATLAS_RESTORE_JOBS")
    restore_spool: bool = Field(default=False, alias="ATLAS_RESTORE_SPOOL")
    check_timeout_s: int = Field(default=30, ge=1, alias="ATLAS_CHECK_TIMEOUT_S")
    work_dir: Path | None = Field(default=None, alias="ATLAS_WORK_DIR")
    checks: list[Check] = Field(default_factory=list)

    snapshot_schedule: str | None = Field(default=None, alias="ATLAS_SNAPSHOT_SCHEDULE")
    timezone: str = Field(default="UTC", alias="ATLAS_TIMEZONE")
    housekeeping_at: str = Field(default="09:00", alias="ATLAS_HOUSEKEEPING_AT")
    drill_every: str = Field(default="quarter", alias="ATLAS_DRILL_EVERY")
    reminder_lead_days: list[int] = Field(
        default_factory=lambda: [14, 7, 0], alias="ATLAS_REMINDER_LEAD_DAYS"
    )
    reminder_overdue_every_days: int = Field(
        default=7, ge=1, alias="ATLAS_REMINDER_OVERDUE_EVERY_DAYS"
    )
    retention_days: int = Field(default=30, ge=1, alias="ATLAS_RETENTION_DAYS")
    keep_daily: int = Field(default=0, ge=0, alias="ATLAS_KEEP_DAILY")
    keep_weekly: int = Field(default=0, ge=0, alias="ATLAS_KEEP_WEEKLY")
    keep_monthly: int = Field(default=0, ge=0, alias="ATLAS_KEEP_MONTHLY")
    encryption_key: SecretStr | None = Field(default=None, alias="ATLAS_ENCRYPTION_KEY")
    encryption_key_file: Path | None = Field(default=None, alias="ATLAS_ENCRYPTION_KEY_FILE")
    s3_sse: str | None = Field(default=None, alias="ATLAS_S3_SSE")
    s3_kms_key_id: str | None = Field(default=None, alias="ATLAS_S3_KMS_KEY_ID")
    rds_instance: str | None = Field(default=None, alias="ATLAS_RDS_INSTANCE")
    rds_cluster: str | None = Field(default=None, alias="ATLAS_RDS_CLUSTER")
    provider_retention_min: int = Field(default=14, ge=0, alias="ATLAS_PROVIDER_RETENTION_MIN")
    provider_retention_max: int = Field(default=30, ge=1, alias="ATLAS_PROVIDER_RETENTION_MAX")

    databases: dict[str, DatabaseTarget] = Field(default_factory=dict)

    @field_validator(
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "channel",
        "encryption_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        """`SLACK_BOT_TOKEN=` (as compose's `${VAR:-}` writes it) means not set."""
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("allowed_users", "approvers", mode="before")
    @classmethod
    def _split(cls, v: Any) -> list[str]:
        return _csv(v)

    @field_validator("reminder_lead_days", mode="before")
    @classmethod
    def _days(cls, v: Any) -> list[int]:
        days = sorted({int(d) for d in _csv(v)}, reverse=True)
        if any(d < 0 for d in days):
            raise ValueError("lead days must be 0 or more")
        return days

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use e.g. UTC or Europe/Berlin)") from None
        return v

    @field_validator("snapshot_schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if not v:
            return None
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(v)
        except ValueError as exc:
            raise ValueError(f"not a cron expression ({exc}); e.g. '0 3 * * *'") from None
        return v

    @field_validator("housekeeping_at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        hh, _, mm = v.partition(":")
        if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            raise ValueError("use HH:MM, e.g. 09:00")
        return v

    @field_validator("drill_every")
    @classmethod
    def _every(cls, v: str) -> str:
        if v != "quarter" and not (v.isdigit() and int(v) > 0):
            raise ValueError("use 'quarter' or a number of days")
        return v

    @field_validator("s3_sse")
    @classmethod
    def _sse(cls, v: str | None) -> str | None:
        if v and v not in ("AES256", "aws:kms"):
            raise ValueError("use AES256 or aws:kms")
        return v or None

    @field_validator("approve_emojis", "reject_emojis", mode="before")
    @classmethod
    def _emojis(cls, v: Any) -> list[str]:
        return [e.strip(":") for e in _csv(v)]

    @field_validator("slack_api_url")
    @classmethod
    def _slash(cls, v: str | None) -> str | None:
        if v and not v.endswith("/"):
            v += "/"
        return v

    def target(self, name: str | None = None) -> DatabaseTarget:
        """The database a command is about: by name, or the only/first one configured."""
        if not self.databases:
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


def _name_from_url(url: str) -> str | None:
    try:
        name = conninfo.params(url).get("dbname")
    except ValueError:
        return None
    return str(name) if name else None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read env (+ TOML), fill in the database list, and turn validation errors into one message."""
    source = dict(os.environ if env is None else env)
    redaction.remember(*(source.get(name) for name in SECRET_SETTINGS))
    try:
        # pydantic validates and converts the environment's strings to each field's type
        settings = Settings(**{k: v for k, v in source.items() if k.isupper()})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise AtlasError(f"Invalid configuration: {problems}") from None

    if settings.config_file:
        settings.databases.update(_load_toml(settings.config_file, settings))
    if settings.database_url is not None or source.get("PGDATABASE") or settings.database_name:
        url = settings.database_url or ""
        name = settings.database_name or _name_from_url(url) or source.get("PGDATABASE") or "main"
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
        except ValidationError as exc:
            raise AtlasError(f"Invalid database name {name!r}: {exc.errors()[0]['msg']}") from None
    for target in settings.databases.values():
        _check_urls(target)
    return settings


def _check_urls(target: DatabaseTarget) -> None:
    """Refuse at start a staging URL that spells the production database. This catches
    the plain mistakes; restores also compare the servers' identities.

    A malformed URL is not refused here: commands that only read the catalog still work,
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
        raise AtlasError(
            f"{target.staging_setting} for {target.name} points at the production database "
            f"({host}:{port}/{db}).",
            "restores must never touch production: point staging at another database",
        )


def _load_toml(path: Path, settings: Settings) -> dict[str, DatabaseTarget]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise AtlasError(f"ATLAS_CONFIG file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise AtlasError(f"ATLAS_CONFIG file {path} is not valid TOML: {exc}") from None
    try:
        settings.checks = [Check(**c) for c in data.get("checks") or []]
    except (TypeError, ValidationError) as exc:
        raise AtlasError(f"ATLAS_CONFIG: [[checks]] need a name and a sql: {exc}") from None
    out: dict[str, DatabaseTarget] = {}
    for name, body in (data.get("databases") or {}).items():
        if not isinstance(body, dict):
            raise AtlasError(f"ATLAS_CONFIG: [databases.{name}] must be a table.")
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
        except ValidationError as exc:
            raise AtlasError(
                f"ATLAS_CONFIG: [databases.{name}]: {exc.errors()[0]['msg']}"
            ) from None
    return out
