"""Retention beside the jobs that read a snapshot. A drill or refresh run from the CLI makes
no request, so a prune (the schedule's, or `atlas prune` on another host) must see the
running job itself and keep what it reads: in ATLAS_STORAGE and in the copy it reads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from bot.config import load_settings
from bot.ops import housekeeping
from bot.records import Drill
from tests.support.helpers import add_bulk, cli_env, run_cli, services_for, start_cli
from tests.support.ops import age_snapshot
from tests.support.pg import fill_sample
from tests.support.proxy import tcp_proxy

ONE_POLICY = {  # a week, no GFS picks: a 30-day-old snapshot is due for pruning
    "ATLAS_RETENTION_DAYS": "7",
    "ATLAS_KEEP_DAILY": "0",
    "ATLAS_KEEP_WEEKLY": "0",
    "ATLAS_KEEP_MONTHLY": "0",
}


def _snapshot(env: dict[str, str], tmp: Path) -> dict:
    done = run_cli(["snapshot", "--json"], env, tmp, text=True)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _decision(env: dict[str, str], tmp: Path, snap_id: str) -> dict:
    pruned = run_cli(["prune", "--json"], env, tmp, text=True)
    assert pruned.returncode == 0, pruned.stderr
    [mine] = [d for d in json.loads(pruned.stdout)["decisions"] if d["snapshot_id"] == snap_id]
    return dict(mine)


def test_a_prune_keeps_the_snapshot_a_running_cli_drill_reads(
    pg, pg_db, pg_url, tmp_path, s3_server, s3_env
):
    fill_sample(pg_url, rows=200)
    add_bulk(pg_url, 2)
    staging = pg.create_database(pg_db + "_stg")
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}  # s3_env's
    with tcp_proxy(int(s3_server.rsplit(":", 1)[1])) as proxy:
        env = cli_env(
            tmp_path,
            DATABASE_URL=pg_url,
            STAGING_DATABASE_URL=pg.url(staging),
            ATLAS_STORAGE=f"s3://{s3_env}/atlas",
            **{**aws, "AWS_ENDPOINT_URL": proxy.url},
            **ONE_POLICY,
        )
        old, _ = _snapshot(env, tmp_path), _snapshot(env, tmp_path)
        services = services_for(load_settings(env))
        age_snapshot(services, old["id"], days=30)
        proxy.throttle(max(20_000, old["size_bytes"] // 4))  # about four seconds to read it
        drill = start_cli(["drill", old["id"], "--yes", "--json"], env, tmp_path, output=True)
        deadline = time.monotonic() + 60
        while not [j for j in services.catalog.running_jobs() if j.snapshot_id == old["id"]]:
            assert drill.poll() is None and time.monotonic() < deadline, drill.communicate()
            time.sleep(0.05)

        kept = _decision(env, tmp_path, old["id"])
        assert kept["keep"] and "still running" in kept["reason"], kept
        proxy.throttle(None)
        out, err = drill.communicate(timeout=120)
        assert drill.returncode == 0, err
        assert json.loads(out)["status"] == "passed"
        assert not _decision(env, tmp_path, old["id"])["keep"]  # read no more: pruned
        assert services.catalog.get_snapshot(old["id"]).status == "deleted"


def test_a_copy_a_running_drill_reads_is_kept_in_that_destination_only(pg_url, tmp_path):
    fill_sample(pg_url, rows=50)
    nas = tmp_path / "nas"
    env = cli_env(tmp_path, DATABASE_URL=pg_url, ATLAS_COPIES=f"nas={nas}", **ONE_POLICY)
    old, _ = _snapshot(env, tmp_path), _snapshot(env, tmp_path)
    services = services_for(load_settings(env))
    age_snapshot(services, old["id"], days=30)
    reading = Drill(  # another host's `atlas drill --from nas`, still running
        id="d-20261207-000000-beef",
        snapshot_id=old["id"],
        database=old["database"],
        from_copy="nas",
        scratch_db="atlas_drill_beef",
    )
    services.catalog.add_job(reading)
    gone = subprocess.Popen(["true"])  # a process of this host, ended and reaped
    gone.wait()
    dead = Drill(  # one of this host whose process is gone: it reads nothing any more
        id="d-20261207-000000-dead",
        snapshot_id=old["id"],
        database=old["database"],
        scratch_db="atlas_drill_dead",
        owner=f"{socket.gethostname()}:{gone.pid}",
    )
    services.catalog.add_job(dead)

    primary, copies = housekeeping.prune_all(services)
    [in_storage] = [d for d in primary if d.snapshot_id == old["id"]]
    [in_nas] = [d for d in copies["nas"] if d.snapshot_id == old["id"]]
    assert not in_storage.keep  # the live drill reads the copy; the dead one reads nothing
    assert in_nas.keep and reading.id in in_nas.reason
    assert list(nas.rglob(f"{old['id']}*"))

    services.catalog.update_drill(reading.id, status="passed")
    _, copies = housekeeping.prune_all(services)
    assert not [d for d in copies["nas"] if d.snapshot_id == old["id"]][0].keep
    assert not list(nas.rglob(f"{old['id']}*"))
