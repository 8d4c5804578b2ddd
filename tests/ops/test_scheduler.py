"""The scheduler inside `atlas serve`: cron snapshots through APScheduler, and one
leader per catalog (a lease)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_EXECUTED
from apscheduler.triggers.cron import CronTrigger

from bot.config import load_settings
from bot.ops.scheduler import Scheduler
from tests.support.catalogs import state_for
from tests.support.helpers import services_for, settings_for, storage_files
from tests.support.ops import (
    BERLIN,
    CHANNEL,
    REPO,
    closed_port_url,
    eventually,
    housekeeping_runs,
    leases,
    posts,
    replica_leases,
)
from tests.support.rds import rds_client, rds_env, rds_server

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest


# -- 1. cron snapshots through APScheduler -----------------------------------------------------


def _next_berlin_3am(after: datetime) -> datetime:
    local = after.astimezone(BERLIN)
    candidate = datetime(local.year, local.month, local.day, 3, 0, tzinfo=BERLIN)
    if candidate <= local:
        day = local.date() + timedelta(days=1)
        candidate = datetime(day.year, day.month, day.day, 3, 0, tzinfo=BERLIN)
    return candidate


def test_cron_snapshot_fires_through_apscheduler(small, pg_url, tmp_path, slack_api):
    settings = settings_for(
        pg_url,
        tmp_path,
        ATLAS_SNAPSHOT_SCHEDULE="0 3 * * *",
        ATLAS_TIMEZONE="Europe/Berlin",
        ATLAS_CHANNEL=CHANNEL,
    )
    services = services_for(settings, slack_api.client())
    s = Scheduler(services)
    job = s.sched.get_job("snapshot")
    assert job is not None
    assert isinstance(job.trigger, CronTrigger)
    assert str(job.trigger.timezone) == "Europe/Berlin"
    before = datetime.now(UTC)
    first = job.trigger.get_next_fire_time(None, before)
    assert first == _next_berlin_3am(before)
    assert first.astimezone(BERLIN).time().isoformat() == "03:00:00"
    assert {j.id for j in s.sched.get_jobs()} >= {
        "lease",
        "expire-requests",
        "housekeeping",
        "snapshot",
    }

    s.start()
    try:
        runs = s.next_runs()
        assert datetime.fromisoformat(runs["snapshot"]) == _next_berlin_3am(datetime.now(UTC))
        hk = datetime.fromisoformat(runs["housekeeping"]).astimezone(BERLIN)
        assert (hk.hour, hk.minute) == (9, 0)  # ATLAS_HOUSEKEEPING_AT default, in Berlin time

        # housekeeping runs once at start (so a restart never skips a day)
        eventually(lambda: _count(housekeeping_runs(services), 1))
        assert services.catalog.list_snapshots() == []  # housekeeping takes no snapshot

        s.sched.modify_job("snapshot", next_run_time=datetime.now(UTC))
        msg = slack_api.wait_for(
            lambda c: (
                c["method"] == "chat.postMessage"
                and ":white_check_mark: Scheduled snapshot" in str(c["params"].get("text"))
            ),
            timeout=30,
        )
        assert msg["params"]["channel"] == CHANNEL
        assert len(posts(slack_api, "Scheduled snapshot")) == 1
        [row] = services.catalog.list_snapshots()
        assert row.status == "ok" and row.source == "schedule"
        assert row.requested_by == "schedule"
        assert f"`{row.id}`" in msg["params"]["text"]
        assert "<!here>" not in msg["params"]["text"]  # brief on success
        assert (tmp_path / "backups" / row.storage_key).is_file()
        # the cron trigger moved on to the next 03:00 Berlin
        again = s.sched.get_job("snapshot").next_run_time
        assert again == _next_berlin_3am(datetime.now(UTC))
        assert [lease["owner"] for lease in leases(services)] == [s.owner]
        assert replica_leases(services) == [f"replica:{s.owner}"]  # alive, for the others
    finally:
        s.shutdown()
    assert leases(services) == []  # the lease is released on shutdown
    assert replica_leases(services) == []
    assert not s.sched.running


def test_failing_scheduled_snapshot_is_loud(pg_db, tmp_path, slack_api):
    settings = settings_for(
        closed_port_url(pg_db),
        tmp_path,
        ATLAS_SNAPSHOT_SCHEDULE="*/5 * * * *",
        ATLAS_CHANNEL=CHANNEL,
    )
    services = services_for(settings, slack_api.client())
    s = Scheduler(services)
    s.start()
    try:
        deadline = time.time() + 30  # start-up housekeeping first: its prune is not this test's
        while housekeeping_runs(services) == 0:
            assert time.time() < deadline
            time.sleep(0.05)
        s.sched.modify_job("snapshot", next_run_time=datetime.now(UTC))
        msg = slack_api.wait_for(
            lambda c: c["method"] == "chat.postMessage" and "FAILED" in str(c["params"]["text"]),
            timeout=30,
        )
    finally:
        s.shutdown()
    text = msg["params"]["text"]
    assert msg["params"]["channel"] == CHANNEL
    assert text.startswith("<!here> :rotating_light:")
    assert f"Scheduled snapshot of {pg_db} FAILED" in text
    assert "Cannot connect to 127.0.0.1:" in text and "Connection refused" in text
    assert posts(slack_api, ":white_check_mark: Scheduled snapshot") == []
    [row] = services.catalog.list_snapshots()
    assert row.status == "failed" and row.source == "schedule"
    root = tmp_path / "backups"
    assert not root.exists() or storage_files(root) == []  # nothing half-written stays


# -- 2. the scheduler lease ----------------------------------------------------------------------

LEASE_PROBE = """
import json, sys
from bot.config import load_settings
from bot.ops.scheduler import Scheduler
from bot.services import Services
s = Scheduler(Services(load_settings()))
print(json.dumps({"leader": s.leader(), "owner": s.owner}))
"""


def _probe(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ATLAS_"))}
    proc = subprocess.run(
        [sys.executable, "-c", LEASE_PROBE],
        env={**base, "PYTHONPATH": str(REPO), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_scheduler_process_leads_at_a_time(pg_url, tmp_path):
    env = {
        "DATABASE_URL": pg_url,
        "ATLAS_STATE": state_for(tmp_path),
        "ATLAS_STORAGE": str(tmp_path / "backups"),
    }
    services = services_for(load_settings(env))
    first = Scheduler(services)
    first.start()
    try:
        assert first.leader()
        eventually(lambda: _count(housekeeping_runs(services), 1))  # the leader's start-up run
        other = _probe(tmp_path, env)  # another `atlas serve` process on the same catalog
        assert other["owner"] != first.owner
        assert other["leader"] is False
        assert first.leader()  # renewing keeps it
        assert [lease["owner"] for lease in leases(services)] == [first.owner]
    finally:
        first.shutdown()
    assert leases(services) == []
    took = _probe(tmp_path, env)
    assert took["leader"] is True  # the released lease goes to the next process
    # ... which now holds it (for the lease TTL), so we are not the leader any more
    assert [lease["owner"] for lease in leases(services)] == [took["owner"]]
    assert Scheduler(services).leader() is False

    # a scheduler that is not the leader runs none of its jobs
    ran_before = housekeeping_runs(services)
    assert ran_before == 1  # `first` did, as the leader, when it started
    follower_settings = load_settings({**env, "ATLAS_SNAPSHOT_SCHEDULE": "0 3 * * *"})
    follower = Scheduler(services_for(follower_settings))
    done: list[str] = []
    follower.sched.add_listener(lambda ev: done.append(ev.job_id), EVENT_JOB_EXECUTED)
    follower.start()
    try:
        follower.sched.modify_job("snapshot", next_run_time=datetime.now(UTC))
        eventually(lambda: _has(done, {"snapshot", "housekeeping-at-start"}))
    finally:
        follower.shutdown()
    assert services.catalog.list_snapshots() == []
    assert housekeeping_runs(services) == ran_before  # nor its housekeeping
    assert [lease["owner"] for lease in leases(services)] == [took["owner"]]


def _count(got: int, expected: int) -> None:
    assert got == expected


def _has(seen: list[str], wanted: set[str]) -> None:
    assert wanted <= set(seen), seen


def test_two_schedulers_in_one_process_do_not_both_lead(pg_url, tmp_path):
    a = services_for(settings_for(pg_url, tmp_path))
    b = services_for(settings_for(pg_url, tmp_path))
    first, second = Scheduler(a), Scheduler(b)
    assert first.leader()
    assert not second.leader()


def test_a_server_with_its_own_schedule_runs_on_it_and_the_global_one_skips_it(tmp_path):
    cfg = tmp_path / "atlas.toml"
    cfg.write_text(
        '[servers.db2]\nurl = "postgresql://atlas@db2.internal/postgres"\n'
        'schedule = "30 2 * * *"\n'
        '[servers.db3]\nurl = "postgresql://atlas@db3.internal/postgres"\n'
        '[databases.billing]\nurl = "postgresql://atlas@db4.internal/billing"\n'
        'schedule = "15 */6 * * *"\n'
    )
    settings = load_settings(
        {
            "ATLAS_CONFIG": str(cfg),
            "ATLAS_SNAPSHOT_SCHEDULE": "0 3 * * *",
            "ATLAS_STATE": state_for(tmp_path),
            "ATLAS_STORAGE": str(tmp_path / "backups"),
        }
    )
    s = Scheduler(services_for(settings))
    jobs = {job.id: job for job in s.sched.get_jobs()}
    assert {"snapshot", "snapshot:db2"} <= set(jobs)
    assert "snapshot:db3" not in jobs  # db3 has none of its own: the global one covers it
    billing = jobs["snapshot:db:billing"].trigger
    assert str(billing) == str(CronTrigger.from_crontab("15 */6 * * *", timezone="UTC"))
    # the global job leaves out what runs on its own schedule (the job wraps it in its leader check)
    wrapped = [c.cell_contents for c in jobs["snapshot"].func.__closure__ or ()]
    run = next(c for c in wrapped if isinstance(c, functools.partial))
    assert run.keywords == {"skip_servers": ("db2",), "skip_databases": ("billing",)}
    own = jobs["snapshot:db2"].trigger
    assert str(own) == str(CronTrigger.from_crontab("30 2 * * *", timezone="UTC"))
