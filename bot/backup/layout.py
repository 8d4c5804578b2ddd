"""Where a snapshot lives in storage, and what its id looks like."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from bot.config import DatabaseTarget
from bot.errors import IdTaken

FORMAT = "pg_dump custom format (-Fc -Z0), compressed as zstd frames"
GLOBALS_FORMAT = "pg_dumpall --globals-only --no-role-passwords SQL, compressed as one zstd frame"
FORMATS = (FORMAT, "pg_dump custom format (-Fc -Z0), compressed as one zstd frame")  # read
SNAPSHOT_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}")
ENCRYPTED_SUFFIX = ".age"
FRESH_DRAWS = 5
T = TypeVar("T")


def new_id() -> str:
    """UTC time and a random suffix: sorts by time. Two snapshots of one second share a
    suffix once in 65,536 pairs: a large fleet meets that a few times a year (`fresh`)."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def fresh(
    begin: Callable[[T], T], record: Callable[[str], T], draw: Callable[[], str] = new_id
) -> T:
    """`begin` what `record` makes of a new id (`draw`: a snapshot's, or a job's), drawing
    again while the catalog says another has that id."""
    for _ in range(FRESH_DRAWS - 1):
        try:
            return begin(record(draw()))
        except IdTaken:
            continue
    return begin(record(draw()))


def database_prefix(target: DatabaseTarget) -> str:
    """Where a database's snapshots lie: environment/database/."""
    return f"{target.environment}/{target.name}/"


def artifact_key(target: DatabaseTarget, snap_id: str, *, encrypted: bool = False) -> str:
    """Production and staging stay apart: environment/database/id."""
    key = f"{database_prefix(target)}{snap_id}.dump.zst"
    return key + ENCRYPTED_SUFFIX if encrypted else key


def globals_key(environment: str, server: str, snap_id: str, *, encrypted: bool = False) -> str:
    """A server's roles and tablespaces: environment/SERVER@globals/id.sql.zst."""
    key = f"{environment}/{globals_name(server)}/{snap_id}.sql.zst"
    return key + ENCRYPTED_SUFFIX if encrypted else key


def globals_name(server: str) -> str:
    """The `database` a server's globals snapshots are listed under."""
    return f"{server}@globals"


def sidecar_key(key: str) -> str:
    base = key.removesuffix(ENCRYPTED_SUFFIX)
    return base.removesuffix(".dump.zst").removesuffix(".sql.zst") + ".json"
