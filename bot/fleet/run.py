"""One run over the fleet: list each server, then snapshot every database, at most
ATLAS_MAX_PARALLEL at once. One database's failure is its own: the others go on."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bot.config import DatabaseTarget, Server, Settings
from bot.errors import AtlasError
from bot.fleet.discover import Scan, scan
from bot.records import Snapshot

log = logging.getLogger(__name__)


@dataclass
class Fleet:
    """The databases Atlas backs up now: the configured ones and those the servers have."""

    targets: dict[str, DatabaseTarget]
    scans: list[Scan] = field(default_factory=list)

    @property
    def gone(self) -> list[str]:
        return sorted(name for s in self.scans for name in s.gone)

    @property
    def skipped(self) -> list[str]:
        return [msg for s in self.scans for msg in s.skipped]

    @property
    def problems(self) -> list[str]:
        return [f"server {s.server}: {s.error}" for s in self.scans if s.error]


def resolve(
    settings: Settings,
    configured: dict[str, DatabaseTarget],
    kept: Callable[[str], list[str]],
) -> Fleet:
    """List every server (a few at once: a listing is one short query) and combine what
    they have with the configured databases. A configured name wins. `kept(environment)`
    names the databases with snapshots, so those that have gone can be reported."""
    others = [*configured, *(s.prefix for s in settings.servers.values() if s.prefix)]
    servers = list(settings.servers.values())

    def one(server: Server) -> Scan:
        mine = [o for o in others if o != server.prefix]
        return scan(server, kept(server.environment), mine)

    with ThreadPoolExecutor(max_workers=max(1, min(len(servers), 8))) as pool:
        scans = list(pool.map(one, servers))
    targets = dict(configured)
    for s in scans:
        for name, target in s.targets.items():
            targets.setdefault(name, target)
    return Fleet(targets=targets, scans=scans)


@dataclass
class Outcome:
    """One database's part of a run: its snapshot, or why there is none."""

    database: str
    snapshot: Snapshot | None = None
    error: str | None = None


def snapshot_each(
    names: Iterable[str], take: Callable[[str], Snapshot], max_parallel: int
) -> list[Outcome]:
    """`take(name)` for every name, at most max_parallel at once, in the names' order."""

    def one(name: str) -> Outcome:
        try:
            return Outcome(name, snapshot=take(name))
        except AtlasError as exc:
            return Outcome(name, error=str(exc))
        except Exception as exc:  # one database's bug must not stop the fleet
            log.exception("snapshot of %s failed", name)
            return Outcome(name, error=f"internal error: {type(exc).__name__}: {exc}")

    ordered = list(names)
    with ThreadPoolExecutor(
        max_workers=max(1, max_parallel), thread_name_prefix="atlas-fleet"
    ) as pool:
        return list(pool.map(one, ordered))
