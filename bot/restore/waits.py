"""A restore that waits for a lock says so: on what, held by whom, and for how long it will
wait before giving up (`ATLAS_LOCK_WAIT_S`, its sessions' `lock_timeout`). Without this a
refresh blocked by a forgotten `psql` session on staging sits silent until it times out."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from bot.errors import AtlasError
from bot.pg import Conn

log = logging.getLogger(__name__)

# Atlas's sessions (PGAPPNAME=atlas) waiting for a lock, and who holds it. Other roles'
# sessions show only their pid, user and application to a non-superuser: enough to name.
BLOCKERS = """
SELECT DISTINCT b.pid, coalesce(b.usename, '?'), coalesce(nullif(b.application_name, ''), '?'),
       coalesce(b.state, '?'),
       coalesce(extract(epoch FROM now() - coalesce(b.xact_start, b.backend_start))::int, 0)
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS held(pid)
JOIN pg_stat_activity b ON b.pid = held.pid
WHERE w.application_name = 'atlas' AND w.wait_event_type = 'Lock'
  AND w.datname = current_database()
ORDER BY 1
"""


@dataclass(frozen=True)
class Holder:
    """A session holding the lock a restore waits for."""

    pid: int
    user: str
    application: str
    state: str
    seconds: int

    def describe(self) -> str:
        """What the staging role may see of another role's session: its pid and user at
        least; its application, state and age when it is the role's own."""
        known = [v for v in (self.user, self.application, self.state) if v != "?"]
        if self.seconds:
            known.append(f"for {self.seconds} s")
        return f"pid {self.pid} ({', '.join(known)})"


def waiting_text(database: str, holders: list[Holder], waited: float, limit: int) -> str:
    """What a waiting restore tells the person who started it. Pure."""
    who = "; ".join(h.describe() for h in holders)
    return (
        f"Waiting {waited:.0f} s for a lock on {database}, held by {who}. The restore gives "
        f"up after {limit} s (ATLAS_LOCK_WAIT_S); end that session to go on now."
    )


class LockWatch:
    """A thread that looks every `every` seconds; `report` hears each new set of holders,
    and the same set again every `repeat` seconds."""

    def __init__(
        self,
        dest: Conn,
        report: Callable[[str], None],
        limit: int,
        every: float = 2.0,
        repeat: float = 15.0,
    ) -> None:
        self.dest, self.report, self.limit = dest, report, limit
        self.every, self.repeat = every, repeat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="atlas-lock-watch", daemon=True)

    def __enter__(self) -> LockWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        since: float | None = None
        told: tuple[list[Holder], float] | None = None
        while not self._stop.wait(self.every):
            holders = self._holders()
            if not holders:
                since, told = None, None
                continue
            now = time.monotonic()
            since = since if since is not None else now - self.every
            if told is None or told[0] != holders or now - told[1] >= self.repeat:
                text = waiting_text(self.dest.describe(), holders, now - since, self.limit)
                log.warning("%s", text)
                with contextlib.suppress(Exception):  # a report that fails changes nothing
                    self.report(text)
                told = (holders, now)

    def _holders(self) -> list[Holder]:
        try:
            with self.dest.connect(autocommit=True, connect_timeout=5) as conn:
                rows = conn.execute(BLOCKERS).fetchall()
        except (AtlasError, psycopg.Error):
            return []  # not there yet (a drill's database), or unreachable: nothing to say
        return [Holder(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in rows]
