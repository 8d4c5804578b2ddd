"""The fleet's work queue on a real catalog: a run moves to its next database as soon as
one of its own claims ends, not at its next poll (half a second per database, serially,
was most of what a fleet of small databases cost)."""

from __future__ import annotations

import threading
from pathlib import Path

from bot.catalog import open_catalog
from bot.errors import AtlasError
from bot.fleet.queue import Worker, new_run_id, run_queued
from bot.fleet.run import Outcome
from bot.records import Snapshot, SnapshotStatus, WorkItem
from tests.support.catalogs import state_for


def test_a_serial_run_takes_the_next_database_when_one_ends_not_at_the_next_poll(
    tmp_path: Path,
) -> None:
    catalog = open_catalog(state_for(tmp_path))  # SQLite, or PostgreSQL in that run
    taken: list[str] = []

    def take(item: WorkItem) -> Snapshot:
        """Stands for a snapshot: records one in the catalog, as the real one does."""
        snap = Snapshot(
            id=f"20261205-0000{len(taken):02d}-{item.database}",
            database=item.database,
            status=SnapshotStatus.OK,
            started_at="2026-12-05T00:00:00",
            size_bytes=1,
            sha256="0" * 64,
        )
        catalog.add_snapshot(snap)
        taken.append(item.database)
        return snap

    worker = Worker(catalog, "replica-1", limit=1, stale_after_s=60, take=take)
    run = new_run_id()
    items = [WorkItem(key=f"{run}:db{n}", run=run, database=f"db{n}") for n in range(5)]
    outcomes: list[Outcome] = []
    # a poll of ten minutes: only the wake-up on a finished claim can end this run in time
    waiter = threading.Thread(
        target=lambda: outcomes.extend(run_queued(catalog, items, worker, poll_s=600)),
        daemon=True,
    )
    waiter.start()
    waiter.join(timeout=60)
    worker.shutdown()

    assert not waiter.is_alive(), f"the run waited for its poll; taken so far: {taken}"
    assert taken == [f"db{n}" for n in range(5)]  # one at a time, in order, each once
    assert [(o.database, o.error) for o in outcomes] == [(f"db{n}", None) for n in range(5)]
    assert all(o.snapshot is not None for o in outcomes)


def test_ticks_from_two_threads_never_take_more_than_the_replicas_share(tmp_path: Path) -> None:
    """`atlas serve` ticks on its schedule while a run it started ticks in its own loop:
    two ticks that both saw room for one claimed two, and the replica held the whole
    fleet's limit, so the other replica never got a database."""
    catalog = open_catalog(state_for(tmp_path))
    release = threading.Event()
    running: list[str] = []

    def take(item: WorkItem) -> Snapshot:
        running.append(item.database)
        release.wait(30)
        raise AtlasError("stood for a snapshot")

    catalog.acquire_lease("replica:one", "one", 60)
    catalog.acquire_lease("replica:two", "two", 60)  # two replicas: a share of 1 of 2
    worker = Worker(catalog, "one", limit=2, stale_after_s=60, take=take)
    run = new_run_id()
    catalog.enqueue_work(
        [WorkItem(key=f"{run}:db{n}", run=run, database=f"db{n}") for n in range(6)]
    )
    start = threading.Barrier(8)

    def tick() -> None:
        start.wait()
        worker.tick()

    threads = [threading.Thread(target=tick) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    claimed = [w for w in catalog.run_work(run) if w.status == "running"]
    release.set()
    worker.shutdown()
    assert len(claimed) == 1, [w.database for w in claimed]
