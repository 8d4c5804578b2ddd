"""Provider-managed backups (RDS): the pure retention policy, and real calls to a moto server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.config
import pytest

from bot.errors import AtlasError
from bot.ops import provider
from bot.ops.provider import ProviderStatus, check, evaluate, snapshot_identifier, start_snapshot
from tests.support import closed_port
from tests.support.rds import (
    RDS_REGION,
    create_cluster,
    create_instance,
    iam_enforced,
    make_client,
    rds_client,
    rds_env,
    rds_server,
    unique,
)

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest

NOW = datetime(2026, 11, 24, 17, 32, 8, tzinfo=UTC)
RECENT = NOW - timedelta(hours=2)
RDS_ID = re.compile(r"^[a-z](?:-?[a-z0-9])*$")


# --- evaluate: the policy without a server -----------------------------------------------------


def test_evaluate_retention_within_policy_is_ok() -> None:
    assert evaluate(21, RECENT, NOW, 14, 30, 24) == (True, [])


@pytest.mark.parametrize("days", [14, 30])
def test_evaluate_policy_bounds_are_inclusive(days: int) -> None:
    assert evaluate(days, RECENT, NOW, 14, 30, 24) == (True, [])


def test_evaluate_disabled_backups() -> None:
    ok, problems = evaluate(0, None, NOW, 14, 30, 24)
    assert not ok
    assert problems == ["automated backups are disabled (retention period 0)"]


def test_evaluate_disabled_backups_does_not_also_judge_the_restorable_age() -> None:
    ok, problems = evaluate(0, NOW - timedelta(days=10), NOW, 14, 30, 24)
    assert (ok, problems) == (False, ["automated backups are disabled (retention period 0)"])


def test_evaluate_retention_below_minimum() -> None:
    assert evaluate(7, RECENT, NOW, 14, 30, 24) == (
        False,
        ["retention 7 days is below the policy minimum of 14"],
    )


def test_evaluate_retention_above_maximum() -> None:
    assert evaluate(35, RECENT, NOW, 14, 30, 24) == (
        False,
        ["retention 35 days is above the policy maximum of 30"],
    )


def test_evaluate_stale_latest_restorable_time() -> None:
    ok, problems = evaluate(21, NOW - timedelta(hours=30), NOW, 14, 30, 24)
    assert not ok
    assert problems == ["latest restorable time is 30 h old (over 24 h)"]


def test_evaluate_reports_every_problem_at_once() -> None:
    ok, problems = evaluate(7, NOW - timedelta(hours=30), NOW, 14, 30, 24)
    assert not ok
    assert problems == [
        "retention 7 days is below the policy minimum of 14",
        "latest restorable time is 30 h old (over 24 h)",
    ]


def test_evaluate_restorable_age_at_the_limit_is_ok_and_fractions_read_well() -> None:
    assert evaluate(21, NOW - timedelta(hours=24), NOW, 14, 30, 24) == (True, [])
    ok, problems = evaluate(21, NOW - timedelta(hours=24, minutes=30), NOW, 14, 30, 24)
    assert problems == ["latest restorable time is 24.5 h old (over 24 h)"]


def test_evaluate_unknown_restorable_time_is_not_a_problem() -> None:
    assert evaluate(21, None, NOW, 14, 30, 24) == (True, [])


def test_evaluate_naive_times_are_utc_and_future_times_are_not_stale() -> None:
    naive_now = NOW.replace(tzinfo=None)
    assert evaluate(21, naive_now - timedelta(hours=30), NOW, 14, 30, 24)[0] is False
    assert evaluate(21, NOW + timedelta(minutes=5), naive_now, 14, 30, 24) == (True, [])


def test_evaluate_custom_policy_and_defaults() -> None:
    assert evaluate(7, RECENT, NOW, min_days=7, max_days=7) == (True, [])
    assert evaluate(14, RECENT, NOW) == (True, [])
    assert evaluate(31, RECENT, NOW)[0] is False
    with pytest.raises(ValueError, match="min_days"):
        evaluate(21, RECENT, NOW, min_days=30, max_days=14)


def test_status_summary_reads_in_plain_words() -> None:
    status = ProviderStatus(
        ok=False,
        identifier="prod-db",
        kind="instance",
        backups_enabled=True,
        retention_days=7,
        retention_ok=False,
        latest_restorable=RECENT,
        latest_restorable_age_h=2.0,
        problems=["retention 7 days is below the policy minimum of 14"],
    )
    assert status.summary() == (
        "RDS instance prod-db: automated backups on, retention 7 days, latest restorable "
        "2026-11-24 15:32 UTC (2 h ago). retention 7 days is below the policy minimum of 14"
    )
    unknown = ProviderStatus(True, "c", "cluster", True, 21, True, None, None, [])
    assert unknown.summary() == (
        "RDS cluster c: automated backups on, retention 21 days, latest restorable time unknown. OK"
    )


# --- snapshot identifiers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("20261124-173208-3f9a", "atlas-20261124-173208-3f9a"),
        ("atlas-20261124-173208-3f9a", "atlas-20261124-173208-3f9a"),
        ("Nightly__Backup--1-", "atlas-nightly-backup-1"),
        ("  prod db / 2026.11.24 ", "atlas-prod-db-2026-11-24"),
        ("ÄÖ-x", "atlas-x"),
    ],
)
def test_snapshot_identifier_sanitizes(raw: str, expected: str) -> None:
    assert snapshot_identifier(raw) == expected


def test_snapshot_identifier_length_limits_never_leave_a_trailing_hyphen() -> None:
    raw = "a" * 61 + "-" + "b" * 300  # a cut at 63 lands right after a hyphen
    long_id = snapshot_identifier(raw)
    assert len(long_id) == 255
    cluster_id = snapshot_identifier(raw, cluster=True)
    assert len(cluster_id) <= 63
    assert cluster_id == "atlas-" + "a" * 57
    for value in (long_id, cluster_id):
        assert RDS_ID.match(value), value


@pytest.mark.parametrize("raw", ["", "---", "__ //"])
def test_snapshot_identifier_refuses_empty_names(raw: str) -> None:
    with pytest.raises(AtlasError, match="snapshot name"):
        snapshot_identifier(raw)


def test_snapshot_identifier_always_valid() -> None:
    samples = ["x", "9", "-a-", "a--b", "A_B_C", "snap!@#$%^&*()", "é" * 10 + "1", "atlas"]
    for raw in samples:
        assert RDS_ID.match(snapshot_identifier(raw)), raw


# --- against a real (moto) RDS endpoint over HTTP ----------------------------------------------


def test_client_is_built_from_the_environment(rds_env: str) -> None:
    client = provider.make_client()
    assert client.meta.endpoint_url == rds_env
    assert client.meta.region_name == RDS_REGION
    # botocore reads retries={"max_attempts": 3} as 3 retries: 4 tries in all.
    assert client.meta.config.retries == {"total_max_attempts": 4, "mode": "standard"}
    assert client.meta.config.connect_timeout == 10
    assert client.meta.config.read_timeout == 30


def test_client_honours_aws_region_alone(rds_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 only reads AWS_DEFAULT_REGION by itself.
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert provider.make_client().meta.region_name == "eu-west-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert provider.make_client().meta.region_name == "eu-west-1"
    monkeypatch.delenv("AWS_REGION")
    assert provider.make_client().meta.region_name == "us-west-2"


def test_check_in_a_region_set_only_by_aws_region(
    rds_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("db")
    create_instance(make_client(rds_env, region="eu-west-1"), name, 21)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert check(name).ok
    monkeypatch.setenv("AWS_REGION", RDS_REGION)
    with pytest.raises(AtlasError, match=f"No RDS instance named {name} in region {RDS_REGION}"):
        check(name)


@pytest.mark.parametrize(
    ("retention", "ok", "problems"),
    [
        (0, False, ["automated backups are disabled (retention period 0)"]),
        (7, False, ["retention 7 days is below the policy minimum of 14"]),
        (21, True, []),
        (35, False, ["retention 35 days is above the policy maximum of 30"]),
    ],
)
def test_check_instance_retention(
    rds_client: Any, retention: int, ok: bool, problems: list[str]
) -> None:
    name = unique("db")
    create_instance(rds_client, name, retention)

    status = check(name)

    assert status.ok is ok
    assert status.problems == problems
    assert status.identifier == name
    assert status.kind == "instance"
    assert status.retention_days == retention
    assert status.backups_enabled is (retention > 0)
    assert status.retention_ok is (14 <= retention <= 30)
    # moto stamps LatestRestorableTime with the creation time.
    assert status.latest_restorable is not None
    assert status.latest_restorable.tzinfo is not None
    assert status.latest_restorable_age_h is not None
    assert 0 <= status.latest_restorable_age_h < 1


def test_check_judges_the_restorable_time_reported_by_rds(rds_client: Any) -> None:
    name = unique("db")
    create_instance(rds_client, name, 21)
    latest = check(name).latest_restorable
    assert latest is not None

    status = check(name, now=latest + timedelta(hours=30))

    assert not status.ok
    assert status.retention_ok
    # moto reports "now" as the restorable time, so the second read is a moment later
    assert status.latest_restorable_age_h == pytest.approx(30, abs=0.01)
    assert status.problems == ["latest restorable time is 30 h old (over 24 h)"]
    assert check(name, now=latest + timedelta(hours=30), max_restorable_age_h=36).ok


def test_check_custom_policy(rds_client: Any) -> None:
    name = unique("db")
    create_instance(rds_client, name, 7)
    assert check(name, min_days=7, max_days=10).ok
    assert not check(name).ok


def test_check_unknown_instance(rds_env: str) -> None:
    name = unique("missing")
    with pytest.raises(AtlasError) as info:
        check(name)
    assert info.value.message == f"No RDS instance named {name} in region {RDS_REGION}."
    assert info.value.hint is not None
    assert info.value.hint.startswith("check ATLAS_RDS_INSTANCE and AWS_REGION")
    assert "ATLAS_RDS_CLUSTER" in info.value.hint


def test_check_cluster(rds_client: Any) -> None:
    name = unique("cl")
    create_cluster(rds_client, name, 21)

    status = check(name, cluster=True)

    assert status.ok
    assert (status.kind, status.identifier, status.retention_days) == ("cluster", name, 21)
    assert status.latest_restorable is not None
    # An instance name is not a cluster name, and the other way round.
    with pytest.raises(AtlasError, match=f"No RDS instance named {name}"):
        check(name)


def test_check_cluster_with_the_provider_default_retention(rds_client: Any) -> None:
    name = unique("cl")
    create_cluster(rds_client, name)

    status = check(name, cluster=True)

    assert not status.ok
    assert status.retention_days == 1
    assert status.problems == ["retention 1 day is below the policy minimum of 14"]


def test_check_unknown_cluster(rds_env: str) -> None:
    name = unique("missing")
    with pytest.raises(AtlasError, match=f"No RDS cluster named {name}") as info:
        check(name, cluster=True)
    assert "ATLAS_RDS_CLUSTER" in (info.value.hint or "")


def test_check_needs_an_identifier(rds_env: str) -> None:
    with pytest.raises(AtlasError, match="No RDS instance given") as info:
        check("  ")
    assert info.value.hint == "set ATLAS_RDS_INSTANCE (or ATLAS_RDS_CLUSTER)"
    with pytest.raises(AtlasError, match="No RDS cluster given"):
        start_snapshot("", "x-1", cluster=True)


def test_start_snapshot_of_an_instance(rds_client: Any) -> None:
    name = unique("db")
    create_instance(rds_client, name, 21)

    snap = start_snapshot(name, "20261124-173208-3f9a")

    assert snap == "atlas-20261124-173208-3f9a"
    found = rds_client.describe_db_snapshots(DBSnapshotIdentifier=snap)["DBSnapshots"]
    assert [s["DBInstanceIdentifier"] for s in found] == [name]
    assert {"Key": "created-by", "Value": "atlas"} in found[0]["TagList"]
    tags = rds_client.list_tags_for_resource(ResourceName=found[0]["DBSnapshotArn"])["TagList"]
    assert tags == [{"Key": "created-by", "Value": "atlas"}]

    with pytest.raises(AtlasError, match=f"snapshot named {snap} already exists"):
        start_snapshot(name, "20261124-173208-3f9a")


def test_start_snapshot_of_a_cluster(rds_client: Any) -> None:
    name = unique("cl")
    create_cluster(rds_client, name, 21)

    snap = start_snapshot(name, "Nightly 2026-11-24", cluster=True)

    assert snap == "atlas-nightly-2026-11-24"
    found = rds_client.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=snap)[
        "DBClusterSnapshots"
    ]
    assert [s["DBClusterIdentifier"] for s in found] == [name]
    assert {"Key": "created-by", "Value": "atlas"} in found[0]["TagList"]


def test_start_snapshot_of_an_unknown_instance(rds_env: str) -> None:
    name = unique("missing")
    with pytest.raises(AtlasError, match=f"No RDS instance named {name}"):
        start_snapshot(name, "x-1")


def test_access_denied_is_explained(rds_client: Any, rds_env: str) -> None:
    name = unique("db")
    create_instance(rds_client, name, 21)
    iam = make_client(rds_env, "iam")
    user = unique("nobody")
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    client = make_client(rds_env, key=key["AccessKeyId"], secret=key["SecretAccessKey"])

    with iam_enforced(rds_env):
        with pytest.raises(AtlasError) as described:
            check(name, client=client)
        with pytest.raises(AtlasError) as snapshotted:
            start_snapshot(name, "denied-1", client=client)

    assert described.value.message.startswith(
        f"AWS denied access while describing RDS instance {name}:"
    )
    assert "not authorized" in described.value.message
    assert described.value.hint == "grant rds:DescribeDBInstances to the role or user Atlas runs as"
    assert snapshotted.value.hint is not None
    assert "rds:CreateDBSnapshot and rds:AddTagsToResource" in snapshotted.value.hint


def test_unknown_credentials_are_explained(rds_client: Any, rds_env: str) -> None:
    name = unique("db")
    create_instance(rds_client, name, 21)
    with iam_enforced(rds_env), pytest.raises(AtlasError) as info:
        check(name)  # env credentials "testing" are not a known IAM key
    assert "AWS rejected the credentials" in info.value.message
    assert "AWS_ACCESS_KEY_ID" in (info.value.hint or "")


def test_unreachable_endpoint(rds_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    # One attempt (the default client's standard back-off would only add seconds here).
    quick = boto3.client("rds", config=botocore.config.Config(retries={"max_attempts": 1}))
    with pytest.raises(AtlasError) as info:
        check("prod-db", client=quick)
    assert info.value.message.startswith(f"Cannot reach the RDS API at {dead} while describing")
    assert info.value.hint == "check AWS_ENDPOINT_URL, AWS_REGION and the network"
    with pytest.raises(AtlasError, match="Cannot reach the RDS API .* while starting snapshot"):
        start_snapshot("prod-db", "x-1", client=quick)


def test_missing_credentials(rds_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AtlasError, match="No AWS credentials"):
        check("prod-db")


def test_missing_region(rds_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(AtlasError, match="No AWS region") as info:
        check("prod-db")
    assert info.value.hint == "set AWS_REGION"
