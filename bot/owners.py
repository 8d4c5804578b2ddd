"""Which process owns a job, and whether it still runs: a job whose owner died is
closed out by whoever notices (the next command, or `atlas serve` within a minute)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# each live `atlas serve` holds the lease `replica:<host>:<pid>:<token>` in the catalog,
# and the one that runs the schedule holds LEADER_LEASE too
REPLICA_LEASE = "replica:"
LEADER_LEASE = "scheduler"


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


class Heartbeat:
    """Calls `beat` every `every_s` seconds on a thread of its own while the block runs,
    so a job waiting on a lock (no bytes flowing) still shows it is alive; a beat that
    fails is logged and retried at the next one."""

    def __init__(self, beat: Callable[[], None], every_s: float) -> None:
        self.beat, self.every_s = beat, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def _run(self) -> None:
        wait = 0.0  # the first beat at once: whatever delayed the start is not silence
        while not self._stop.wait(wait):
            wait = self.every_s
            try:
                self.beat()
            except Exception as exc:  # the catalog may be away for a moment
                log.warning("heartbeat failed: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s + 5)
