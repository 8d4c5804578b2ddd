"""Reusable, real (non-mocked) test infrastructure for Atlas.

Modules:
    pg     -- throwaway PostgreSQL cluster (``PgCluster``) + ``pg``/``pg_db``/``pg_url`` fixtures
    s3     -- moto S3 server + ``s3_server``/``s3_env``/``s3_client`` fixtures
    slack  -- ``FakeSlackApi`` Web API double + signed request helpers + ``slack_api`` fixture
"""

from __future__ import annotations

import itertools
import os
import random
import socket

__all__ = ["closed_port", "pick_free_port"]

_HELD: list[socket.socket] = []


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, for a server a test starts on it.

    Taken from this worker's own slice of the ports below the kernel's ephemeral range, in
    turn: no other worker picks it, and no bind to port 0 (moto, another worker's pick) and
    no outgoing connection is given it before the server binds it. A port from bind(0),
    released at once, was once given to another worker's moto in between."""
    first, span = _own_ports()
    for _ in range(span):
        port = first + next(_turn) % span
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue  # in use, or a connection on it still in TIME_WAIT
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))  # the whole slice is taken: any free port
        return int(sock.getsockname()[1])


_turn = itertools.count(random.randrange(1 << 16))
_BELOW = 10_000  # the slices start here: under it lie many services' well-known ports
_WORKERS = 16  # -n auto runs at most eight


def _own_ports() -> tuple[int, int]:
    """This worker's slice: (first port, how many)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            ephemeral = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768  # Linux's default
    span = max(1, (ephemeral - _BELOW) // _WORKERS)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return _BELOW + (int(worker) % _WORKERS if worker.isdigit() else 0) * span, span


def closed_port(host: str = "127.0.0.1") -> int:
    """Return a port nothing will ever answer on: bound (not listening) and held
    until this process ends, so no server of a parallel test can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    _HELD.append(sock)
    return int(sock.getsockname()[1])
