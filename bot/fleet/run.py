"""The fleet as a run sees it: each server listed, combined with the configured
databases, and what happened to each database. The snapshots themselves go through the
catalog's work queue (`fleet/queue.py`), so every replica can take a share; one
database's failure is its own: the others go on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bot import conninfo
from bot.config import DatabaseTarget, Server, Settings
from bot.fleet.discover import Scan, scan
from bot.records import Snapshot

log = logging.getLogger(__name__)


@dataclass
class Fleet:
    """The databases Atlas backs up now: the configured ones and those the servers have."""

    targets: dict[str, DatabaseTarget]
    scans: list[Scan] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # selected, not backed up: why

    @property
    def gone(self) -> list[str]:
        return sorted(name for s in self.scans for name in s.gone)

    @property
    def skipped(self) -> list[str]:
        return [msg for s in self.scans for msg in s.skipped]

    @property
    def problems(self) -> list[str]:
        """Servers that could not be listed, and those whose selection takes nothing (a
        mistyped ATLAS_DATABASES would otherwise back up nothing, and say all is well)."""
        return [
            f"server {s.server}: {s.error}"
            if s.error
            else f"server {s.server}: its selection matches none of its databases, so none "
            "is backed up (check ATLAS_DATABASES, or the server's include and exclude)"
            for s in self.scans
            if s.error or not (s.targets or s.skipped)
        ]


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
        for name, target in list(s.targets.items()):
            known = targets.setdefault(name, target)
            if known is not target and _address(known) != _address(target):
                # two databases, one name: never one silently in place of the other
                del s.targets[name]
                s.skipped.append(
                    f"{target.url_setting.split(' (')[0]}'s {name!r} has the same name as "
                    f"another database ({_where(known)}), so it is not backed up; rename one, "
                    "or exclude it from its server's selection"
                )
    return Fleet(targets=targets, scans=scans)


def _address(target: DatabaseTarget) -> tuple[str, str, str] | None:
    try:
        return conninfo.address(conninfo.params(target.url) if target.url else {})
    except ValueError:
        return None


def _where(target: DatabaseTarget) -> str:
    found = _address(target)
    place = f"{found[0]}:{found[1]}/{found[2]}" if found else "?"
    source = f"server {target.server}" if target.server else target.url_setting
    return f"{place}, from {source}"


@dataclass
class Outcome:
    """One database's part of a run: its snapshot, or why there is none."""

    database: str
    snapshot: Snapshot | None = None
    error: str | None = None
