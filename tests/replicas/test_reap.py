"""A restore job whose replica died on another machine: the leader fails it once that
replica's lease is gone, and leaves alone the jobs of replicas still alive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.records import Drill, DrillStatus, Kind, Request, RequestStatus
from tests.support.helpers import services_for, settings_for
from tests.support.pg import fill_sample


def _running(services, request_id: str, owner: str, snapshot_id: str) -> None:
    at = datetime.now(UTC)
    services.catalog.add_request(
        Request(
            id=request_id,
            kind=Kind.DRILL,
            snapshot_id=snapshot_id,
            database=services.settings.target().name,
            requested_by="U1",
            created_at=at.isoformat(),
            expires_at=(at + timedelta(hours=1)).isoformat(),
            status=RequestStatus.RUNNING,
            channel="CATLAS",
            owner=owner,
        )
    )
    services.catalog.add_job(
        Drill(
            id=f"d-{request_id}",
            request_id=request_id,
            database=services.settings.target().name,
        )
    )


def test_jobs_of_a_replica_whose_lease_is_gone_are_failed(pg_url, tmp_path, slack_api):
    settings = settings_for(pg_url, tmp_path, ATLAS_CHANNEL="CATLAS")
    services = services_for(settings, slack_api.client())
    fill_sample(pg_url, rows=20)
    snap = services.taker.take(requested_by="U1").id
    _running(services, "r-dead", "node-b.internal:4242", snap)
    _running(services, "r-alive", "node-c.internal:77", snap)
    live = ["replica:node-c.internal:77:ab12cd", "replica:node-a.internal:9:ffffff"]

    failed = services.jobs.reap(live)

    assert failed == ["r-dead"]
    dead = services.catalog.get_request("r-dead")
    assert dead.status == RequestStatus.FAILED and "stopped" in (dead.reason or "")
    assert services.catalog.get_drill("d-r-dead").status == DrillStatus.INTERRUPTED
    assert services.catalog.get_request("r-alive").status == RequestStatus.RUNNING
    assert services.catalog.get_drill("d-r-alive").status == DrillStatus.RUNNING
    interrupted = [e for e in services.catalog.audit_log() if e.action == "drill.interrupted"]
    assert [(e.subject, e.detail["owner"]) for e in interrupted] == [
        ("r-dead", "node-b.internal:4242")
    ]
    # without the replicas' leases (a plain restart), another host's job is left alone
    _running(services, "r-other", "node-d.internal:5", snap)
    assert services.jobs.reap() == []
    assert services.jobs.reap(live) == ["r-other"]  # and once is enough
    assert services.jobs.reap(live) == []


def test_the_schedule_closes_out_a_dead_replicas_restore_jobs(pg_url, tmp_path, slack_api):
    """The leader's periodic recovery is the whole of it: snapshots, restore jobs, work."""
    from bot.ops.scheduler import Scheduler

    settings = settings_for(pg_url, tmp_path, ATLAS_CHANNEL="CATLAS")
    services = services_for(settings, slack_api.client())
    fill_sample(pg_url, rows=20)
    snap = services.taker.take(requested_by="U1").id
    _running(services, "r-gone", "node-b.internal:4242", snap)  # no replica lease: dead
    scheduler = Scheduler(services)  # built, not started: its jobs are run here by hand
    assert scheduler.renew()  # this process leads
    scheduler.sched.get_job("recover").func()  # what the interval trigger runs
    assert services.catalog.get_request("r-gone").status == RequestStatus.FAILED
    assert services.catalog.get_drill("d-r-gone").status == DrillStatus.INTERRUPTED


@pytest.mark.own_catalog
def test_after_a_catalog_outage_silence_is_not_taken_for_death(
    catalog_server, pg_url, tmp_path
) -> None:
    """Nobody could beat while the catalog was away: the leader's next recovery leaves a
    job of another host alone for one stale period (a recovery with no outage behind it
    closes the same job out)."""
    from bot.ops.scheduler import Scheduler
    from bot.records import Snapshot, SnapshotStatus
    from tests.support.proxy import tcp_proxy

    schema, _ = catalog_server.new_url()
    port = catalog_server.cluster.port
    with tcp_proxy(port) as proxy:
        url = catalog_server.url(schema).replace(f":{port}/", f":{proxy.port}/")
        settings = settings_for(pg_url, tmp_path, ATLAS_STATE=url, ATLAS_FAILOVER_S="6")
        services = services_for(settings)
        name = settings.target().name
        services.catalog.begin_snapshot(
            Snapshot(id="20261204-120000-beef", database=name, owner="node-b.internal:77")
        )
        old = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
        services.catalog.update_snapshot("20261204-120000-beef", heartbeat_at=old)
        leader = Scheduler(services)
        assert leader.renew()
        recover = leader.sched.get_job("recover").func
        proxy.refuse()
        recover()  # the catalog is away: one line, and a grace period begins
        proxy.restore()
        recover()
        snap = services.catalog.get_snapshot("20261204-120000-beef")
        assert snap.status == SnapshotStatus.RUNNING
        Scheduler(services).sched.get_job("recover").func()  # no outage behind this one
        snap = services.catalog.get_snapshot("20261204-120000-beef")
        assert snap.status == SnapshotStatus.INTERRUPTED
