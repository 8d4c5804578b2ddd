"""The swap that ends a staging refresh (and an undo): staging freed of sessions, then
renamed aside and the new database renamed into its place, both in one transaction, from
a database that neither is. Nothing before the swap touches staging; the swap either
happens whole or not at all."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from bot.errors import AtlasError
from bot.pg import Conn, first_line
from bot.words import human_seconds

log = logging.getLogger(__name__)

MAINTENANCE = ("postgres", "template1")
# Sessions on staging. Another role's show a non-superuser only their pid, user and
# application (backend_type too is hidden); autovacuum (no user) is left out: the
# rename asks it to leave, and waits for it.
SESSIONS = """
SELECT pid, coalesce(usename, '?'), coalesce(nullif(application_name, ''), '?'),
       coalesce(client_addr::text, 'a local socket'), coalesce(state, '?'),
       coalesce(extract(epoch FROM now() - backend_start)::int, -1)
FROM pg_stat_activity
WHERE datname = %s AND pid <> pg_backend_pid() AND usesysid IS NOT NULL
  AND coalesce(backend_type, 'client backend') = 'client backend'
ORDER BY backend_start NULLS FIRST, pid
"""


@dataclass(frozen=True)
class Session:
    """A session connected to staging: what the swap waits for."""

    pid: int
    user: str
    application: str
    client: str
    state: str
    seconds: int

    def describe(self) -> str:
        """What the staging role may see: another role's session shows its pid, user and
        application only; one's own, where from, its state and since when."""
        known = [v for v in (self.user, self.application, self.state) if v != "?"]
        if self.state != "?":
            known.append(f"from {self.client}")
        if self.seconds >= 0:
            known.append(f"connected {human_seconds(self.seconds)} ago")
        return f"pid {self.pid} ({', '.join(known)})"


def describe_sessions(sessions: list[Session]) -> str:
    """'2 sessions: pid 1 (…); pid 2 (…)'. Pure."""
    shown = "; ".join(s.describe() for s in sessions[:5])
    more = f" and {len(sessions) - 5} more" if len(sessions) > 5 else ""
    noun = "session" if len(sessions) == 1 else "sessions"
    return f"{len(sessions)} {noun}: {shown}{more}"


def maintenance(staging: Conn) -> psycopg.Connection:
    """An open (autocommit) session on a database of the staging server to rename staging
    from (one cannot rename the database one is connected to): `postgres`, else
    `template1`."""
    name = staging.address()[2]
    errors = []
    for other in MAINTENANCE:
        if other == name:
            continue
        try:
            return staging.with_dbname(other).connect(autocommit=True)
        except AtlasError as exc:
            errors.append(str(exc))
    raise AtlasError(
        f"Cannot connect to database postgres or template1 on the staging server: {errors[0]}",
        "a refresh swaps staging's name from there: grant the staging role CONNECT on "
        "database postgres",
    )


def sessions_on(c: psycopg.Connection, name: str) -> list[Session]:
    return [
        Session(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5]))
        for r in c.execute(SESSIONS, [name]).fetchall()
    ]


@dataclass(frozen=True)
class SessionPolicy:
    """How long a swap waits for staging's sessions, and what it does then."""

    wait_s: int
    end: bool  # end them (else give up)
    say: Callable[[str], None]


def free_of_sessions(c: psycopg.Connection, name: str, policy: SessionPolicy) -> list[str]:
    """Wait up to `policy.wait_s` for `name` to have no sessions, saying which hold it;
    then end them or give up. Returns what was ended, described."""
    deadline = time.monotonic() + policy.wait_s
    told: set[int] = set()
    while True:
        sessions = sessions_on(c, name)
        if not sessions:
            return []
        if {s.pid for s in sessions} != told:
            told = {s.pid for s in sessions}
            action = "ends them" if policy.end else "gives up"
            policy.say(
                f"Waiting up to {policy.wait_s} s for {describe_sessions(sessions)} to leave "
                f"staging {name}; then the refresh {action} (ATLAS_SWAP_SESSIONS)."
            )
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if not policy.end:
        raise AtlasError(
            f"Staging {name} is still in use after {policy.wait_s} s by "
            f"{describe_sessions(sessions)}.",
            "end those sessions and refresh again, or set ATLAS_SWAP_SESSIONS=end",
        )
    return end_sessions(c, name, sessions)


def end_sessions(c: psycopg.Connection, name: str, sessions: list[Session]) -> list[str]:
    """pg_terminate_backend each; one the role may not end is an error naming it."""
    ended: list[Session] = []
    refused: list[Session] = []
    for s in sessions:
        try:
            row = c.execute("SELECT pg_terminate_backend(%s, 5000)", [s.pid]).fetchone()
            (ended if row and row[0] else refused).append(s)
        except psycopg.Error:
            refused.append(s)
    if refused:
        raise AtlasError(
            f"Cannot end {describe_sessions(refused)} on staging {name}.",
            "grant the staging role pg_signal_backend (or end them yourself), then refresh again",
        )
    return [s.describe() for s in ended]


def swap_in(
    c: psycopg.Connection, staging: str, new: str, kept: str | None, policy: SessionPolicy
) -> tuple[float, list[str]]:
    """Free staging of sessions, then swap; a session that connects in between is waited
    for (or ended) again, up to three times. Returns (seconds the renames took, the
    sessions ended)."""
    ended: list[str] = []
    for attempt in range(3):
        if kept is not None:
            ended += free_of_sessions(c, staging, policy)
        try:
            return swap_names(c, staging, new, kept), ended
        except psycopg.errors.ObjectInUse as exc:
            if attempt == 2:
                raise AtlasError(
                    f"Could not swap the new database in as {staging}: {first_line(str(exc))}",
                    "staging is as it was; end the sessions on it and refresh again",
                ) from None
    raise AssertionError("unreachable")


def swap_names(c: psycopg.Connection, staging: str, new: str, kept: str | None) -> float:
    """In one transaction: staging renamed to `kept` (None: there is no staging yet) and
    `new` renamed to staging. Returns the seconds it took; raises ObjectInUse when a
    session holds either, any other error as one AtlasError."""
    started = time.monotonic()
    try:
        with c.transaction():
            if kept is not None:
                c.execute(_rename(staging, kept))
            c.execute(_rename(new, staging))
    except psycopg.errors.ObjectInUse:
        raise
    except psycopg.Error as exc:
        raise AtlasError(
            f"Could not swap the new database in as {staging}: {first_line(str(exc))}",
            "staging is as it was; the staging role needs CREATEDB and to own staging "
            "(atlas doctor checks both)",
        ) from None
    return time.monotonic() - started


def _rename(old: str, new: str) -> sql.Composed:
    return sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
        sql.Identifier(old), sql.Identifier(new)
    )


def kept_name(staging: str, job_id: str) -> str:
    """`atlas_kept_<staging>_<job>`: what a swap keeps, named for what it was, within
    PostgreSQL's 63 bytes. Pure."""
    stamp = job_id.split("-", 1)[-1].replace("-", "_")
    room = 63 - len("atlas_kept__") - len(stamp)
    short = staging.encode()[:room].decode(errors="ignore")
    return f"atlas_kept_{short}_{stamp}"


def building_name(job_id: str) -> str:
    """The database a refresh restores into, beside staging, until the swap."""
    return f"atlas_refresh_{job_id.replace('-', '_')}"
