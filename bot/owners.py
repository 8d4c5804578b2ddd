"""Which process owns a job, and whether it still runs: a job whose owner died is
closed out by whoever notices (the next command, or `atlas serve` within a minute)."""

from __future__ import annotations

import os
import socket


def owner_id() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(owner: str | None) -> bool:
    """True when `owner` is a process of this host that no longer runs. An owner on
    another host is never declared gone here: heartbeats decide that."""
    host, _, pid = (owner or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))
