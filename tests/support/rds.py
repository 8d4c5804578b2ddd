"""Local RDS (moto server over HTTP) fixtures for the provider-backup checks.

Import the fixtures into a test module (``from tests.support.rds import rds_server, ...``).
moto keeps its state per process, so give every instance/cluster a unique name (`unique`).
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.support.s3 import moto_server, point_aws_at

__all__ = [
    "RDS_REGION",
    "create_cluster",
    "create_instance",
    "iam_enforced",
    "make_client",
    "rds_client",
    "rds_env",
    "rds_server",
    "unique",
]

RDS_REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def unique(prefix: str) -> str:
    """A fresh RDS-valid identifier, e.g. ``db-3f9a1c2b``."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_client(endpoint_url: str, service: str = "rds", **creds: str) -> Any:
    """A boto3 client for the moto endpoint (fake credentials and us-east-1 unless given:
    ``key=``, ``secret=``, ``region=``)."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        aws_access_key_id=creds.get("key", ACCESS_KEY),
        aws_secret_access_key=creds.get("secret", SECRET_KEY),
        region_name=creds.get("region", RDS_REGION),
    )


def create_instance(client: Any, name: str, retention: int) -> dict[str, Any]:
    """A PostgreSQL RDS instance with the given automated-backup retention (days)."""
    return client.create_db_instance(
        DBInstanceIdentifier=name,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="u",
        MasterUserPassword="passw0rd!",
        BackupRetentionPeriod=retention,
    )["DBInstance"]


def create_cluster(client: Any, name: str, retention: int | None = None) -> dict[str, Any]:
    """An Aurora PostgreSQL cluster (retention omitted: the provider default)."""
    extra = {} if retention is None else {"BackupRetentionPeriod": retention}
    return client.create_db_cluster(
        DBClusterIdentifier=name,
        Engine="aurora-postgresql",
        MasterUsername="u",
        MasterUserPassword="passw0rd!",
        **extra,
    )["DBCluster"]


def _set_auth_count(endpoint: str, value: str) -> None:
    req = urllib.request.Request(
        endpoint + "/moto-api/reset-auth",
        data=value.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


@contextlib.contextmanager
def iam_enforced(endpoint: str) -> Iterator[None]:
    """Make moto check IAM permissions (real AccessDenied) inside the block.

    The switch is process-wide in moto, so it is always switched back off.
    """
    _set_auth_count(endpoint, "0")
    try:
        yield
    finally:
        _set_auth_count(endpoint, "inf")


@pytest.fixture(scope="module")
def rds_server() -> Iterator[str]:
    """A moto server for this test module; yields its endpoint ``http://127.0.0.1:PORT``."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def rds_env(rds_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    """Point boto3 (via env only, fresh default session) at the moto server; returns its endpoint."""
    point_aws_at(monkeypatch, rds_server, tmp_path, ACCESS_KEY, SECRET_KEY, RDS_REGION)
    # boto3.client() reuses one default session that caches the first credentials it found;
    # start each test without it so the code under test resolves everything from this env.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return rds_server


@pytest.fixture
def rds_client(rds_env: str) -> Any:
    """A boto3 RDS client for the moto server, for arranging and inspecting test state."""
    return make_client(rds_env)
