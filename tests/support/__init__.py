"""Reusable, real (non-mocked) test infrastructure for Atlas.

Modules:
    pg     -- throwaway PostgreSQL cluster (``PgCluster``) + ``pg``/``pg_db``/``pg_url`` fixtures
    s3     -- moto S3 server + ``s3_server``/``s3_env``/``s3_client`` fixtures
    slack  -- ``FakeSlackApi`` Web API double + signed request helpers + ``slack_api`` fixture
"""

from __future__ import annotations

import socket

__all__ = ["closed_port", "pick_free_port"]

_HELD: list[socket.socket] = []


def pick_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is currently free on ``host`` (bind to port 0 and release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def closed_port(host: str = "127.0.0.1") -> int:
    """Return a port nothing will ever answer on: bound (not listening) and held
    until this process ends, so no server of a parallel test can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    _HELD.append(sock)
    return int(sock.getsockname()[1])
