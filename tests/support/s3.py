"""Local S3 (moto server) fixtures."""

from __future__ import annotations

import contextlib
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support import pick_free_port

__all__ = [
    "S3_ACCESS_KEY",
    "S3_REGION",
    "S3_SECRET_KEY",
    "list_keys",
    "make_s3_client",
    "s3_client",
    "s3_env",
    "s3_server",
]

S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"
S3_REGION = "us-east-1"

# Variables that could point boto3 at a real account / other endpoint.
_AWS_VARS_TO_DROP = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_RDS",
    "AWS_S3_ENDPOINT",
)


def make_s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for the moto endpoint with the fake credentials."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
    )


def list_keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """All object keys in ``bucket`` under ``prefix`` (sorted)."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def _wait_http(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # server answered
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port (retrying port races); yields its endpoint."""
    last: Exception | None = None
    for _attempt in range(5):
        port = pick_free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        try:
            server.start()
            endpoint = f"http://127.0.0.1:{port}"
            _wait_http(endpoint + "/moto-api/")
        except Exception as exc:  # port race: try another one
            last = exc
            with contextlib.suppress(Exception):
                server.stop()
            continue
        try:
            yield endpoint
        finally:
            server.stop()
        return
    raise RuntimeError(f"could not start moto server: {last}")


def point_aws_at(
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str,
    tmp_path: Any,
    key: str,
    secret: str,
    region: str,
) -> None:
    """Point boto3, through the environment only, at a local server; ignore ~/.aws and roles."""
    for var in _AWS_VARS_TO_DROP:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.path.join(str(tmp_path), "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.path.join(str(tmp_path), "no-aws-creds"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Session (per xdist worker) moto server; yields its endpoint ``http://127.0.0.1:PORT``."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[str]:
    """Point boto3 (via env) at moto; create and yield a fresh unique bucket name."""
    point_aws_at(monkeypatch, s3_server, tmp_path, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION)
    bucket = f"atlas-test-{uuid.uuid4().hex[:16]}"
    make_s3_client(s3_server).create_bucket(Bucket=bucket)
    yield bucket


@pytest.fixture
def s3_client(s3_server: str, s3_env: str) -> Any:
    """boto3 S3 client for the moto server (the ``s3_env`` bucket already exists)."""
    return make_s3_client(s3_server)
