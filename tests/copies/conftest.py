"""Two S3 servers and a folder: ATLAS_STORAGE on one, copies on the other (behind a proxy
that can cut the network) and in a folder."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.support.helpers import cli_env, run_cli
from tests.support.proxy import TcpProxy, tcp_proxy
from tests.support.s3 import make_s3_client, moto_server

COPY_KEY, COPY_SECRET = "copy-account", "copy-secret-do-not-show"


@dataclass
class Offsite:
    """The copy server: its bucket, a proxy in front of it, and a client that goes around."""

    bucket: str
    proxy: TcpProxy
    client: Any

    def env(self, name: str = "offsite") -> dict[str, str]:
        up = name.upper()
        return {
            f"ATLAS_COPY_{up}_ENDPOINT_URL": self.proxy.url,
            f"ATLAS_COPY_{up}_ACCESS_KEY_ID": COPY_KEY,
            f"ATLAS_COPY_{up}_SECRET_ACCESS_KEY": COPY_SECRET,
            f"ATLAS_COPY_{up}_REGION": "eu-west-1",
        }

    def url(self) -> str:
        return f"s3://{self.bucket}/atlas"

    def objects(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


@pytest.fixture(scope="module")
def copy_server() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def offsite(copy_server: str) -> Iterator[Offsite]:
    client = make_s3_client(copy_server)
    bucket = f"offsite-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    port = urlparse(copy_server).port
    assert port is not None
    with tcp_proxy(port) as proxy:
        yield Offsite(bucket, proxy, client)


@pytest.fixture
def nas(tmp_path: Path) -> Path:
    return tmp_path / "nas"


def copies_env(tmp: Path, pg_url: str, offsite: Offsite, nas: Path, **extra: str) -> dict[str, str]:
    """An `atlas` command's environment with both destinations as ATLAS_COPIES."""
    return cli_env(
        tmp,
        DATABASE_URL=pg_url,
        ATLAS_COPIES=f"offsite={offsite.url()}, nas={nas}",
        **offsite.env(),
        **extra,
    )


def take_snapshot(env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """`atlas snapshot --json`, which must succeed."""
    done = run_cli(["snapshot", "--json"], env, tmp, text=True)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))
