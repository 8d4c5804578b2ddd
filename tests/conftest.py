"""Shared pytest fixtures for Atlas (real PostgreSQL, moto S3 server, fake Slack Web API)."""

from __future__ import annotations

import pytest

from tests.support import pick_free_port
from tests.support.ops import bot, key_file, small, staging
from tests.support.pg import least_privilege, pg, pg_db, pg_url
from tests.support.s3 import s3_client, s3_env, s3_server
from tests.support.slack import slack_api
from tests.support.socket_mode import socket_mode

__all__ = [
    "bot",
    "key_file",
    "small",
    "staging",
    "free_port",
    "least_privilege",
    "pg",
    "pg_db",
    "pg_url",
    "s3_client",
    "s3_env",
    "s3_server",
    "slack_api",
    "socket_mode",
]


@pytest.fixture
def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    return pick_free_port()
