"""Provider-side backups on Amazon RDS: are automated backups on, and is retention within policy?

The runbook asks for provider-managed automated backups with a retention of 14-30 days, in
addition to Atlas's own logical dumps. `check` reads an RDS instance (or Aurora / Multi-AZ
cluster) and says in plain words what is wrong; `start_snapshot` asks RDS for a manual
snapshot tagged ``created-by=atlas``. The policy itself lives in the pure function `evaluate`.

Settings come from the environment the usual way: ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``),
``AWS_ENDPOINT_URL`` and the standard credentials chain (env, shared files, instance / task role).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.config import aws_region
from bot.errors import AtlasError
from bot.words import count

__all__ = [
    "MAX_RESTORABLE_AGE_H",
    "POLICY_MAX_DAYS",
    "POLICY_MIN_DAYS",
    "ProviderStatus",
    "check",
    "evaluate",
    "make_client",
    "snapshot_identifier",
    "start_snapshot",
]

POLICY_MIN_DAYS = 14
POLICY_MAX_DAYS = 30
MAX_RESTORABLE_AGE_H = 24.0

TAGS = [{"Key": "created-by", "Value": "atlas"}]
SNAPSHOT_PREFIX = "atlas-"
# RDS limits: DBSnapshotIdentifier 1-255 characters, DBClusterSnapshotIdentifier 1-63.
MAX_SNAPSHOT_ID = 255
MAX_CLUSTER_SNAPSHOT_ID = 63

_SETTING_HINT = "set ATLAS_RDS_INSTANCE (or ATLAS_RDS_CLUSTER)"
_NOT_FOUND = {
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "DBClusterNotFound",
    "DBClusterNotFoundFault",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"}
_BAD_CREDENTIALS = {
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
    "InvalidAccessKeyId",
}
_ALREADY_EXISTS = {"DBSnapshotAlreadyExists", "DBClusterSnapshotAlreadyExistsFault"}
_BAD_STATE = {"InvalidDBInstanceState", "InvalidDBClusterStateFault"}
_THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded"}


@dataclass(frozen=True)
class ProviderStatus:
    """What RDS says about one instance or cluster's automated backups, judged against policy."""

    ok: bool
    identifier: str
    kind: str  # "instance" | "cluster"
    backups_enabled: bool
    retention_days: int
    retention_ok: bool
    latest_restorable: datetime | None
    latest_restorable_age_h: float | None
    problems: list[str]

    def summary(self) -> str:
        """One plain-words line, e.g. for the CLI or a Slack message."""
        what = f"RDS {self.kind} {self.identifier}"
        if not self.backups_enabled:
            backups = "automated backups off"
        else:
            backups = f"automated backups on, retention {count(self.retention_days, 'day')}"
        if self.latest_restorable is None or self.latest_restorable_age_h is None:
            restorable = "latest restorable time unknown"
        else:
            when = self.latest_restorable.strftime("%Y-%m-%d %H:%M UTC")
            restorable = f"latest restorable {when} ({_hours(self.latest_restorable_age_h)} h ago)"
        verdict = "OK" if self.ok else "; ".join(self.problems)
        return f"{what}: {backups}, {restorable}. {verdict}"


def evaluate(
    retention_days: int,
    latest_restorable: datetime | None,
    now: datetime,
    min_days: int = POLICY_MIN_DAYS,
    max_days: int = POLICY_MAX_DAYS,
    max_age_h: float = MAX_RESTORABLE_AGE_H,
) -> tuple[bool, list[str]]:
    """Judge a backup retention (days, 0 = disabled) and latest restorable time against policy.

    Returns ``(ok, problems)`` with problems in plain words. An unknown latest restorable time
    (None) is not a problem by itself; with backups disabled its age is not judged at all.
    Naive datetimes are taken as UTC.
    """
    if min_days > max_days:
        raise ValueError(f"min_days {min_days} is above max_days {max_days}")
    problems: list[str] = []
    if retention_days <= 0:
        problems.append(f"automated backups are disabled (retention period {retention_days})")
    else:
        if retention_days < min_days:
            problems.append(
                f"retention {count(retention_days, 'day')} is below the policy minimum of {min_days}"
            )
        if retention_days > max_days:
            problems.append(
                f"retention {count(retention_days, 'day')} is above the policy maximum of "
                f"{max_days}"
            )
        age_h = _age_hours(latest_restorable, now)
        if age_h is not None and age_h > max_age_h:
            problems.append(
                f"latest restorable time is {_hours(age_h)} h old (over {_hours(max_age_h)} h)"
            )
    return not problems, problems


def make_client() -> Any:
    """A boto3 RDS client (region, endpoint and credentials from the environment;
    ``AWS_REGION`` wins when set, see `config.aws_region`)."""
    import boto3
    import botocore.config

    config = botocore.config.Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=30
    )
    with _translated("setting up the RDS client", "", "instance", None):
        client = boto3.client("rds", config=config, region_name=aws_region())
    return client


def check(
    identifier: str,
    *,
    cluster: bool = False,
    min_days: int = POLICY_MIN_DAYS,
    max_days: int = POLICY_MAX_DAYS,
    max_restorable_age_h: float = MAX_RESTORABLE_AGE_H,
    now: datetime | None = None,
    client: Any = None,
) -> ProviderStatus:
    """Describe the RDS instance (or cluster) and judge its automated backups against policy.

    Raises `AtlasError` when RDS cannot be asked (not found, access denied, unreachable, ...).
    """
    kind = "cluster" if cluster else "instance"
    if not identifier or not identifier.strip():
        raise AtlasError(f"No RDS {kind} given to check.", _SETTING_HINT)
    identifier = identifier.strip()
    now = now or datetime.now(UTC)
    client = client if client is not None else make_client()
    with _translated(f"describing RDS {kind} {identifier}", identifier, kind, client):
        if cluster:
            items = client.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"]
        else:
            items = client.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
    if not items:
        raise _not_found(identifier, kind, client)
    item = items[0]
    retention = int(item.get("BackupRetentionPeriod") or 0)
    latest = item.get("LatestRestorableTime")
    latest = _as_utc(latest) if isinstance(latest, datetime) else None
    ok, problems = evaluate(retention, latest, now, min_days, max_days, max_restorable_age_h)
    return ProviderStatus(
        ok=ok,
        identifier=identifier,
        kind=kind,
        backups_enabled=retention > 0,
        retention_days=retention,
        retention_ok=min_days <= retention <= max_days,
        latest_restorable=latest,
        latest_restorable_age_h=_age_hours(latest, now),
        problems=problems,
    )


def snapshot_identifier(raw: str, *, cluster: bool = False) -> str:
    """Turn any id into a valid RDS snapshot identifier: ``20261124-173208-3f9a`` becomes
    ``atlas-20261124-173208-3f9a``.

    Lowercase ASCII letters, digits and single hyphens; starts with ``atlas-`` (so with a
    letter); no trailing hyphen; at most 255 characters (63 for cluster snapshots).
    """
    limit = MAX_CLUSTER_SNAPSHOT_ID if cluster else MAX_SNAPSHOT_ID
    body = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    if not body:
        raise AtlasError(f"Cannot make an RDS snapshot name from {raw!r}.", "give a snapshot id")
    if not body.startswith(SNAPSHOT_PREFIX):
        body = SNAPSHOT_PREFIX + body
    return body[:limit].rstrip("-")


def start_snapshot(
    identifier: str, snapshot_id: str, *, cluster: bool = False, client: Any = None
) -> str:
    """Ask RDS for a manual snapshot of the instance (or cluster), tagged ``created-by=atlas``.

    ``snapshot_id`` is sanitized with `snapshot_identifier`. Returns the snapshot identifier
    RDS recorded. The snapshot is only started: RDS finishes it in the background.
    """
    kind = "cluster" if cluster else "instance"
    if not identifier or not identifier.strip():
        raise AtlasError(f"No RDS {kind} given to snapshot.", _SETTING_HINT)
    identifier = identifier.strip()
    snap = snapshot_identifier(snapshot_id, cluster=cluster)
    client = client if client is not None else make_client()
    what = f"starting snapshot {snap} of RDS {kind} {identifier}"
    with _translated(what, identifier, kind, client, snapshot=snap):
        if cluster:
            resp = client.create_db_cluster_snapshot(
                DBClusterIdentifier=identifier, DBClusterSnapshotIdentifier=snap, Tags=TAGS
            )
            created = resp["DBClusterSnapshot"]["DBClusterSnapshotIdentifier"]
        else:
            resp = client.create_db_snapshot(
                DBInstanceIdentifier=identifier, DBSnapshotIdentifier=snap, Tags=TAGS
            )
            created = resp["DBSnapshot"]["DBSnapshotIdentifier"]
    return str(created)


# --- helpers -----------------------------------------------------------------------------------


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _age_hours(latest: datetime | None, now: datetime) -> float | None:
    if latest is None:
        return None
    # A restorable time slightly "in the future" is clock skew, not a negative age.
    return max(0.0, (_as_utc(now) - _as_utc(latest)).total_seconds() / 3600)


def _hours(value: float) -> str:
    """30.0 -> "30", 24.46 -> "24.5"."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _region(client: Any) -> str | None:
    try:
        return str(client.meta.region_name) if client.meta.region_name else None
    except AttributeError:
        return None


def _endpoint(client: Any) -> str | None:
    try:
        return str(client.meta.endpoint_url) if client.meta.endpoint_url else None
    except AttributeError:
        return None


def _not_found(identifier: str, kind: str, client: Any) -> AtlasError:
    region = _region(client)
    where = f" in region {region}" if region else ""
    if kind == "cluster":
        hint = (
            "check ATLAS_RDS_CLUSTER and AWS_REGION; for a single instance set ATLAS_RDS_INSTANCE"
        )
    else:
        hint = (
            "check ATLAS_RDS_INSTANCE and AWS_REGION; "
            "for an Aurora or Multi-AZ cluster set ATLAS_RDS_CLUSTER instead"
        )
    return AtlasError(f"No RDS {kind} named {identifier}{where}.", hint)


@contextlib.contextmanager
def _translated(
    what: str, identifier: str, kind: str, client: Any, *, snapshot: str | None = None
) -> Iterator[None]:
    """Re-raise botocore failures inside the block as AtlasError; anything else passes."""
    try:
        yield
    except AtlasError:
        raise
    except Exception as exc:
        err = _rds_error(exc, what, identifier, kind, client, snapshot=snapshot)
        if err is None:
            raise
        raise err from None


def _rds_error(
    exc: Exception,
    what: str,
    identifier: str,
    kind: str,
    client: Any,
    *,
    snapshot: str | None = None,
) -> AtlasError | None:
    """An AtlasError for a botocore failure; None for anything else (a bug to surface as is)."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        return _client_error(exc, what, identifier, kind, client, snapshot)
    if isinstance(exc, bx.NoRegionError):
        return AtlasError("No AWS region is set for RDS.", "set AWS_REGION")
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AtlasError(
            f"No AWS credentials for {what}.",
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or give Atlas an instance role",
        )
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError):
        endpoint = _endpoint(client)
        at = f" at {endpoint}" if endpoint else ""
        return AtlasError(
            f"Cannot reach the RDS API{at} while {what}: {exc}",
            "check AWS_ENDPOINT_URL, AWS_REGION and the network",
        )
    if isinstance(exc, bx.ParamValidationError):
        return AtlasError(f"Invalid RDS request while {what}: {exc}")
    if isinstance(exc, bx.BotoCoreError):
        return AtlasError(f"RDS failed while {what}: {exc}")
    return None


def _client_error(
    exc: Any, what: str, identifier: str, kind: str, client: Any, snapshot: str | None
) -> AtlasError:
    """An AtlasError for an error the RDS API answered with, by its code."""
    err = exc.response.get("Error", {})
    code = str(err.get("Code", "?"))
    detail = str(err.get("Message", "")).strip() or code
    operation = getattr(exc, "operation_name", None)
    action = f"rds:{operation}" if operation else "the RDS permission"
    if code in _NOT_FOUND:
        return _not_found(identifier, kind, client)
    if code in _DENIED:
        extra = " and rds:AddTagsToResource" if snapshot else ""
        return AtlasError(
            f"AWS denied access while {what}: {detail}",
            f"grant {action}{extra} to the role or user Atlas runs as",
        )
    if code in _BAD_CREDENTIALS:
        return AtlasError(
            f"AWS rejected the credentials while {what}: {detail}",
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or the role",
        )
    if code in _ALREADY_EXISTS:
        return AtlasError(
            f"An RDS snapshot named {snapshot} already exists.", "use another snapshot id"
        )
    if code in _BAD_STATE:
        return AtlasError(
            f"RDS {kind} {identifier} cannot be snapshotted right now: {detail}",
            "wait until it is 'available' and try again",
        )
    if code == "SnapshotQuotaExceeded":
        return AtlasError(
            f"RDS refused {what}: the manual snapshot quota is used up.",
            "delete old manual snapshots or raise the quota",
        )
    if code in _THROTTLED:
        return AtlasError(f"RDS is throttling requests while {what}.", "try again shortly")
    return AtlasError(f"RDS refused the request while {what}: {code}: {detail}")
