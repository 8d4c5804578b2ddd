"""Living through a catalog outage: a write whose work is already safe (an artifact in
storage, a finished fleet item) is tried again until the catalog is back, and the log says
once that it went and once that it came back, not a line per job per second."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from bot.errors import CatalogAway

log = logging.getLogger(__name__)
T = TypeVar("T")

OUTLAST_S = 60.0  # how long a finished job's record waits for its catalog to come back
REMIND_EVERY_S = 60.0  # while it stays away, one line a minute


def outlast(record: Callable[[], T], within_s: float = OUTLAST_S) -> T:
    """`record` a finished job (or start one that has done nothing yet), trying again
    once a second while the catalog is away; returns what `record` returned."""
    started = time.monotonic()
    tries = 0
    while True:
        try:
            done = record()
        except CatalogAway as exc:
            if time.monotonic() - started >= within_s:
                raise
            if not tries:
                log.warning("the catalog is away (%s); trying again each second", exc.message)
            tries += 1
            time.sleep(1.0)
            continue
        if tries:
            log.warning("recorded once the catalog was back, %d tries later", tries)
        return done


class OutageLog:
    """What a process that keeps calling the catalog says while it is away."""

    def __init__(self, remind_every_s: float = REMIND_EVERY_S) -> None:
        self.remind_every_s = remind_every_s
        self.since: float | None = None
        self._said = 0.0
        self._tries = 0
        self._lock = threading.Lock()

    def away(self, what: str, exc: CatalogAway) -> None:
        with self._lock:
            now = time.monotonic()
            self._tries += 1
            if self.since is None:
                self.since = self._said = now
                log.error("%s: %s", what, exc)
            elif now - self._said >= self.remind_every_s:
                self._said = now
                log.error(
                    "the catalog is still away after %.0f s (%d tries failed): %s",
                    now - self.since,
                    self._tries,
                    exc.message,
                )

    def back(self) -> None:
        with self._lock:
            if self.since is None:
                return
            log.warning(
                "the catalog is back after %.0f s (%d tries failed meanwhile)",
                time.monotonic() - self.since,
                self._tries,
            )
            self.since, self._tries = None, 0
