"""A fleet run through the catalog's work queue, so every live replica takes a share.

The replica that starts a run queues its databases and works on them itself; the other
replicas' workers (`Worker.tick`, every second in `atlas serve`) claim what is left while
they have room. Alone (one process, or the CLI), the runner simply does all of it. The run
is over when nothing of it is queued or running; an item whose replica stopped beating is
marked interrupted by whoever notices.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from bot.catalog import Catalog, outage
from bot.errors import AtlasError, CatalogAway
from bot.fleet.run import Outcome
from bot.owners import REPLICA_LEASE
from bot.records import Snapshot, WorkItem, WorkStatus

log = logging.getLogger(__name__)


Take = Callable[[WorkItem], Snapshot]
RUN_OUTLASTS_S = 600.0  # how long a fleet run waits for its catalog to come back


def share(limit: int, replicas: int) -> int:
    """How many of the fleet's `limit` concurrent snapshots one of `replicas` may run:
    an even split, rounded up so the limit is always reachable."""
    return max(1, math.ceil(limit / max(1, replicas)))


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


class Worker:
    """One replica's part of the queue: claims while it has room, runs each claim on a
    thread of its own, records the outcome, and beats for what it runs."""

    def __init__(
        self,
        catalog: Catalog,
        owner: str,
        limit: int,
        stale_after_s: float,
        take: Take,
    ) -> None:
        self.catalog, self.owner, self.limit = catalog, owner, limit
        self.stale_after_s, self.take = stale_after_s, take
        self.pool = ThreadPoolExecutor(max_workers=max(1, limit), thread_name_prefix="atlas-work")
        self.running: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        # one tick at a time: the run's own loop and the schedule's tick both call it, and
        # two that saw the same room would claim twice and take more than the share
        self._ticking = threading.Lock()
        # set when one of this replica's claims ends, so a run waiting on it looks again
        # at once rather than at its next poll (half a second per database, serially)
        self.finished = threading.Event()

    def _busy(self) -> int:
        """How many claims of this replica still run (finished ones forgotten)."""
        with self._lock:
            self.running = {k: f for k, f in self.running.items() if not f.done()}
            return len(self.running)

    def room(self) -> int:
        replicas = len(self.catalog.live_leases(REPLICA_LEASE))
        return share(self.limit, replicas) - self._busy()

    def tick(self) -> int:
        """Claim and start what this replica has room for; returns how many it started
        (none while another thread of this replica is ticking)."""
        if not self._ticking.acquire(blocking=False):
            return 0
        try:
            return self._claim()
        finally:
            self._ticking.release()

    def _claim(self) -> int:
        if not self.catalog.queued_work():
            return 0
        started = 0
        while self.room() > 0:
            item = self.catalog.claim_work(self.owner, self.limit, self.stale_after_s)
            if item is None:
                break
            future = self.pool.submit(self._run, item)
            future.add_done_callback(lambda _: self.finished.set())
            with self._lock:
                self.running[item.key] = future
            started += 1
        return started

    def beat(self) -> None:
        """Heartbeats for what this replica runs (nothing to write when it runs nothing)."""
        if self._busy():
            self.catalog.beat_work(self.owner)

    def _run(self, item: WorkItem) -> None:
        """Take the item's snapshot and record how it went, across a catalog outage."""
        finish = functools.partial(self.catalog.finish_work, item.key)
        try:
            snap = self.take(item)
        except AtlasError as exc:
            message = str(exc)
            outage.outlast(lambda: finish(WorkStatus.FAILED, error=message))
        except Exception as exc:  # one database's bug must not stop the fleet
            log.exception("snapshot of %s failed", item.database)
            error = f"internal error: {type(exc).__name__}: {exc}"
            outage.outlast(lambda: finish(WorkStatus.FAILED, error=error))
        else:
            status = WorkStatus.DONE if snap.status == "ok" else WorkStatus.FAILED
            outage.outlast(lambda: finish(status, snapshot_id=snap.id, error=snap.error))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def run_queued(
    catalog: Catalog,
    items: list[WorkItem],
    worker: Worker,
    *,
    poll_s: float = 0.5,
) -> list[Outcome]:
    """Queue `items` (one run), work on them alongside the other replicas, and wait for
    all of them; the outcomes are in the items' order."""
    if not items:
        return []
    run = items[0].run
    catalog.enqueue_work(items)
    try:
        _wait_for_run(catalog, run, worker, poll_s)
    except BaseException:  # stopped (Ctrl-C, SIGTERM): no replica starts what is left of it
        with contextlib.suppress(CatalogAway):
            catalog.cancel_work(run, "the run was stopped before this database's turn")
        raise
    return _outcomes(catalog, run, items)


def _wait_for_run(catalog: Catalog, run: str, worker: Worker, poll_s: float) -> None:
    """Work alongside the other replicas until nothing of the run is queued or running.
    The catalog may go away meanwhile: the run waits for it (up to RUN_OUTLASTS_S), and
    for one stale period after, nobody could beat, so no item is taken for dead."""
    said = outage.OutageLog()
    trust_silence_at = 0.0
    while True:
        try:
            worker.tick()
            worker.beat()
            if time.monotonic() >= trust_silence_at:
                catalog.abandon_work(worker.stale_after_s)
            left = [
                w
                for w in catalog.run_work(run)
                if w.status in (WorkStatus.QUEUED, WorkStatus.RUNNING)
            ]
        except CatalogAway as exc:
            said.away(f"fleet run {run}", exc)
            if said.since is not None and time.monotonic() - said.since > RUN_OUTLASTS_S:
                raise
            trust_silence_at = time.monotonic() + worker.stale_after_s
            time.sleep(max(poll_s, 1.0))
            continue
        said.back()
        if not left:
            return
        worker.finished.wait(poll_s)  # what another replica finishes is seen by polling
        worker.finished.clear()


def _outcomes(catalog: Catalog, run: str, items: list[WorkItem]) -> list[Outcome]:
    done = {w.database: w for w in catalog.run_work(run)}
    out = []
    for item in items:
        w = done[item.database]
        snap = catalog.get_snapshot(w.snapshot_id) if w.snapshot_id else None
        if snap is not None and snap.status == "ok":
            out.append(Outcome(item.database, snapshot=snap))
        else:
            out.append(
                Outcome(
                    item.database, error=w.error or (snap.error if snap else None) or f"{w.status}"
                )
            )
    return out
