"""Housekeeping end to end: cron snapshots through APScheduler, the scheduler lease, retention
and pins, age encryption at rest, S3 server-side encryption, provider (RDS) checks, the
status checklist and the reminder button.

Everything real: PostgreSQL, pg_dump/pg_restore, a moto S3 and RDS server over HTTP, the fake
Slack Web API, the Bolt app over signed HTTP, and `atlas` as a subprocess. Only the passing of
time is simulated, by rewriting timestamps in the catalog.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED
from apscheduler.triggers.cron import CronTrigger

from bot.config import load_settings
from bot.errors import AtlasError
from bot.ops import housekeeping, status
from bot.ops.scheduler import Scheduler
from bot.records import AuditEntry
from bot.services import Services
from bot.store.crypto import generate_identity
from tests.helpers import services_for, settings_for, storage_files
from tests.slackbot import SECRET, Bot, start_bot
from tests.support import pick_free_port
from tests.support.pg import PgCluster, fill_sample
from tests.support.rds import create_instance, rds_client, rds_env, rds_server, unique
from tests.support.slack import FakeSlackApi, block_actions_payload, post_interaction

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest

REPO = Path(__file__).resolve().parents[1]
CHANNEL = "CATLAS"
BERLIN = ZoneInfo("Europe/Berlin")
MARKER = "PLAINTEXT-MARKER-123"


# -- helpers ---------------------------------------------------------------------------------


def _flat(text: str) -> str:
    """Undo rich's line wrapping so phrases can be searched for."""
    return " ".join(text.split())


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return _flat(self.stdout + self.stderr)

    def json(self) -> Any:
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        assert len(lines) == 1, f"expected one JSON line, got {self.stdout!r} / {self.stderr!r}"
        return json.loads(lines[0])


def atlas(cwd: Path, *args: str, env: dict[str, str], aws: bool = False) -> Run:
    """`python -m bot.cli ARGS` with only the given Atlas/Slack settings (and AWS_* if `aws`)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ATLAS_", "PG"))
        and (aws or not k.startswith("AWS_"))
        and k not in ("DATABASE_URL", "STAGING_DATABASE_URL", "PORT")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={**base, "PYTHONPATH": str(REPO), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def posts(slack: FakeSlackApi, needle: str, channel: str | None = None) -> list[dict[str, Any]]:
    return [
        c
        for c in slack.calls("chat.postMessage")
        if needle in str(c["params"].get("text"))
        and (channel is None or c["params"].get("channel") == channel)
    ]


def eventually(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def audit_actions(services: Services, limit: int = 500) -> list[AuditEntry]:
    return services.catalog.audit_log(limit=limit)


def age_snapshot(services: Services, snap_id: str, days: float) -> None:
    """Pretend a snapshot was taken `days` ago."""
    at = datetime.now(UTC) - timedelta(days=days)
    services.catalog.update_snapshot(
        snap_id,
        started_at=at.isoformat(timespec="milliseconds"),
        finished_at=(at + timedelta(seconds=1)).isoformat(timespec="milliseconds"),
    )


def age_drill(services: Services, drill_id: str, days: float) -> None:
    at = datetime.now(UTC) - timedelta(days=days)
    services.catalog.update_drill(
        drill_id,
        started_at=at.isoformat(timespec="milliseconds"),
        finished_at=(at + timedelta(seconds=2)).isoformat(timespec="milliseconds"),
    )


def closed_port_url(dbname: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{pick_free_port()}/{dbname}?connect_timeout=3"


def housekeeping_runs(services: Services) -> int:
    return len([a for a in audit_actions(services) if a.action == "housekeeping.ran"])


def leases(services: Services) -> list[dict[str, Any]]:
    with services.catalog.db() as db:
        return list(db["leases"].rows)


@pytest.fixture
def small(pg: PgCluster, pg_db: str, pg_url: str) -> dict[str, int]:
    return fill_sample(pg_url, rows=200)


@pytest.fixture
def staging(pg: PgCluster, pg_db: str) -> Iterator[str]:
    """A second database on the same server: the staging target of restores and drills."""
    name = pg.create_database(pg_db + "_stg")
    try:
        yield name
    finally:
        pg.drop_database(name)


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, str]:
    """An age key made by `atlas keygen`; returns (path, public key)."""
    path = tmp_path / "key.txt"
    res = atlas(tmp_path, "keygen", "-o", str(path), env={})
    assert res.code == 0, res.output
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    [recipient] = [
        ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("# public key:")
    ]
    assert recipient.startswith("age1") and "AGE-SECRET-KEY-1" in text
    assert recipient in res.output and "AGE-SECRET-KEY" not in res.output
    # never overwritten
    again = atlas(tmp_path, "keygen", "-o", str(path), env={})
    assert again.code == 1 and "never overwrites a key" in again.output
    assert path.read_text() == text
    return path, recipient


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
    finally:
        s.shutdown()
    assert leases(services) == []  # the lease is released on shutdown
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
        "ATLAS_STATE": str(tmp_path / "atlas.db"),
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


# -- 3. retention, pins and prune ------------------------------------------------------------------


def test_prune_keeps_pinned_requested_and_newest_and_deletes_the_rest(
    small, pg, pg_db, pg_url, staging, tmp_path, slack_api
):
    extra = {
        "STAGING_DATABASE_URL": pg.url(staging),
        "ATLAS_APPROVERS": "U_ANN",
        "ATLAS_CHANNEL": CHANNEL,
    }
    settings = settings_for(pg_url, tmp_path, **extra)
    services = services_for(settings, slack_api.client())
    snaps = [services.taker.take(requested_by="U1").id for _ in range(5)]
    pinned, requested, old1, old2, newest = snaps
    for snap_id, days in zip(snaps, (70, 60, 50, 45, 40), strict=True):
        age_snapshot(services, snap_id, days)
    # a failed snapshot of the same database (nothing to restore from, whatever its age)
    broken = services_for(settings_for(closed_port_url(pg_db), tmp_path))
    with pytest.raises(AtlasError):
        broken.taker.take(requested_by="U1")
    [failed] = [r.id for r in services.catalog.list_snapshots() if r.status == "failed"]

    services.snapshots.pin(pinned, True, actor="U1")
    req = services.ask.request(
        kind="restore", snap_id=requested, requested_by="U_REQ", channel="C1"
    )
    assert req.status == "pending" and req.snapshot_id == requested

    root = tmp_path / "backups"
    files = storage_files(root)
    assert len(files) == 10  # five artifacts and five sidecars
    sidecar = {s: f"production/{pg_db}/{s}.json" for s in snaps}
    artifact = {s: f"production/{pg_db}/{s}.dump.zst" for s in snaps}
    assert set(files) == set(sidecar.values()) | set(artifact.values())

    # dry run: decisions, nothing touched
    plan = {d.snapshot_id: d for d in housekeeping.prune(services, dry_run=True)}
    assert set(plan) == {*snaps, failed}
    assert {s for s, d in plan.items() if not d.keep} == {old1, old2, failed}
    assert plan[pinned].reason == "pinned"
    assert plan[requested].reason == f"named by restore request {req.id}"
    assert plan[newest].reason == f"newest verified snapshot of {pg_db}/production"
    assert plan[old1].reason == plan[old2].reason == "older than 30 days"
    assert plan[failed].reason == "failed snapshot, no artifact to restore"
    assert storage_files(root) == files
    assert {r.status for r in services.catalog.list_snapshots()} == {"ok", "failed"}

    env = {"DATABASE_URL": pg_url, "ATLAS_STORAGE": str(root), "ATLAS_STATE": str(settings.state)}
    res = atlas(tmp_path, "prune", "--dry-run", "--json", env=env)
    assert res.code == 0, res.output
    doc = res.json()
    assert doc["dry_run"] is True
    assert {d["snapshot_id"]: (d["keep"], d["reason"]) for d in doc["decisions"]} == {
        s: (d.keep, d.reason) for s, d in plan.items()
    }
    assert storage_files(root) == files

    # keep / unkeep from the command line
    res = atlas(tmp_path, "keep", old1, env=env)
    assert res.code == 0, res.output
    assert f"{old1} is kept until" in res.output
    assert services.snapshots.get(old1).pinned == 1
    kept = {d.snapshot_id: d for d in housekeeping.prune(services, dry_run=True)}
    assert kept[old1].keep and kept[old1].reason == "pinned"
    res = atlas(tmp_path, "unkeep", old1, env=env)
    assert res.code == 0, res.output
    assert "back under the retention policy" in res.output
    assert services.snapshots.get(old1).pinned == 0
    res = atlas(tmp_path, "keep", failed, env=env)
    assert res.code == 1 and "nothing to keep" in res.output
    actions = [(a.action, a.subject) for a in audit_actions(services)]
    assert ("snapshot.keep", old1) in actions and ("snapshot.unkeep", old1) in actions
    assert ("snapshot.keep", pinned) in actions

    # the real thing
    decisions = housekeeping.prune(services)
    assert {d.snapshot_id for d in decisions if not d.keep} == {old1, old2, failed}
    left = storage_files(root)
    for s in (pinned, requested, newest):
        assert artifact[s] in left and sidecar[s] in left
    for s in (old1, old2):
        assert artifact[s] not in left and sidecar[s] not in left
    assert len(left) == 6
    for s in (old1, old2, failed):
        row = services.snapshots.get(s)
        assert row.status == "deleted"
        assert row.error.startswith("pruned: ")
    for s in (pinned, requested, newest):
        assert services.snapshots.get(s).status == "ok"
    pruned = {a.subject: a.detail for a in audit_actions(services) if a.action == "snapshot.pruned"}
    assert set(pruned) == {old1, old2, failed}
    assert pruned[old1]["reason"] == "older than 30 days"
    assert {a.actor for a in audit_actions(services) if a.action == "snapshot.pruned"} == {"atlas"}

    # idempotent: deleted rows are not planned again
    again = housekeeping.prune(services)
    assert {d.snapshot_id for d in again} == {pinned, requested, newest}
    assert all(d.keep for d in again)

    # protection lasts as long as the request is open
    services.catalog.update_request(req.id, status="expired")
    plan = {d.snapshot_id: d for d in housekeeping.prune(services, dry_run=True)}
    assert not plan[requested].keep
    assert plan[pinned].keep and plan[newest].keep


# -- 4. age encryption at rest ----------------------------------------------------------------------


def test_encryption_at_rest_with_age(pg, pg_db, pg_url, small, staging, tmp_path, key_file):
    key, recipient = key_file
    with pg.connect(pg_db) as conn:
        conn.execute("INSERT INTO users (email, handle) VALUES (%s, 'marker')", [MARKER])
    env = {
        "DATABASE_URL": pg_url,
        "STAGING_DATABASE_URL": pg.url(staging),
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": str(tmp_path / "atlas.db"),
        "ATLAS_ENCRYPTION_KEY_FILE": str(key),
    }
    services = services_for(load_settings(env))
    row = services.taker.take(requested_by="U1")
    assert row.status == "ok" and row.encryption == "age"
    path = Path(row.location)
    assert path.name == f"{row.id}.dump.zst.age"
    assert row.storage_key.endswith(".dump.zst.age")
    data = path.read_bytes()
    assert data.startswith(b"age-encryption.org/v1")
    assert MARKER.encode() not in data
    assert len(data) == row.size_bytes
    if shutil.which("zstd"):
        zstd = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=False)
        assert zstd.returncode != 0  # not a zstd frame: the ciphertext is what is stored

    side = json.loads(path.with_name(f"{row.id}.json").read_bytes())
    assert side["encryption"] == "age"
    assert side["recipient"] == recipient
    assert side["sha256"] == row.sha256
    assert side["restore"].startswith(f"age -d -i KEY.txt {row.id}.dump.zst.age | zstd -dc")
    assert "AGE-SECRET-KEY" not in json.dumps(side)

    res = atlas(tmp_path, "verify", row.id, "--json", env=env)
    assert res.code == 0, res.output
    assert res.json()["status"] == "ok"
    out = tmp_path / "plain.dump"
    res = atlas(tmp_path, "fetch", row.id, "-o", str(out), env=env)
    assert res.code == 0, res.output
    plain = out.read_bytes()
    assert plain.startswith(b"PGDMP")
    assert MARKER.encode() in plain  # -Z0 dump: the data is in the clear once decrypted
    assert len(plain) == row.raw_size_bytes

    drill = services.restores.run(kind="drill", snap_id=row.id, requested_by="U1")
    assert drill.status == "passed", drill

    # the manual path (README), with standard tools only: age -d -i key.txt X | zstd -dc
    if shutil.which("age") and shutil.which("zstd"):
        age = subprocess.Popen(["age", "-d", "-i", str(key), str(path)], stdout=subprocess.PIPE)
        unz = subprocess.Popen(["zstd", "-dc"], stdin=age.stdout, stdout=subprocess.PIPE)
        assert age.stdout is not None
        age.stdout.close()  # zstd holds the read end now
        manual, _ = unz.communicate(timeout=60)
        assert age.wait(timeout=60) == 0 and unz.returncode == 0
        assert manual == plain

    # without the key: a clear refusal, and nothing written
    no_key = {k: v for k, v in env.items() if k != "ATLAS_ENCRYPTION_KEY_FILE"}
    res = atlas(tmp_path, "fetch", row.id, "-o", str(tmp_path / "nokey.dump"), env=no_key)
    assert res.code == 1
    assert f"Snapshot {row.id} is encrypted (age), and no key is configured." in res.output
    assert "ATLAS_ENCRYPTION_KEY_FILE" in res.output
    assert not (tmp_path / "nokey.dump").exists()
    keyless = services_for(load_settings(no_key))
    with pytest.raises(AtlasError, match=r"encrypted \(age\), and no key is configured"):
        keyless.reader.fetch(row.id, str(tmp_path / "nokey2.dump"))

    # with another key: cannot decrypt, nothing written
    other = tmp_path / "other.txt"
    other.write_text(generate_identity()[0] + "\n")
    wrong = {**env, "ATLAS_ENCRYPTION_KEY_FILE": str(other)}
    res = atlas(tmp_path, "fetch", row.id, "-o", str(tmp_path / "wrong.dump"), env=wrong)
    assert res.code == 1
    assert "cannot decrypt" in res.output
    assert not (tmp_path / "wrong.dump").exists()
    assert not list(tmp_path.glob(".wrong.dump*"))
    assert services.snapshots.get(row.id).status == "ok"


def test_verify_refuses_clearly_without_the_key(pg_url, small, tmp_path, key_file):
    key, _ = key_file
    base = settings_for(pg_url, tmp_path)
    row = services_for(
        settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(key))
    ).taker.take(requested_by="U1")
    other = tmp_path / "other.txt"
    other.write_text(generate_identity()[0] + "\n")
    for settings, message in (
        (base, "encrypted (age), and no key is configured"),
        (settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(other)), "cannot decrypt"),
    ):
        with pytest.raises(AtlasError) as info:
            services_for(settings).reader.verify(row.id)
        assert message in str(info.value)


def test_verify_without_the_key_does_not_mark_a_good_snapshot_corrupt(
    pg_url, small, tmp_path, key_file
):
    key, _ = key_file
    keyed = services_for(settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(key)))
    row = keyed.taker.take(requested_by="U1")
    with pytest.raises(AtlasError, match="no key is configured"):
        services_for(settings_for(pg_url, tmp_path)).reader.verify(row.id)
    assert keyed.snapshots.get(row.id).status == "ok"


def test_key_rotation_keeps_old_snapshots_readable(pg_url, small, tmp_path, key_file):
    old_key, old_public = key_file
    row = services_for(
        settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(old_key))
    ).taker.take(requested_by="U1")

    # the runbook of a rotation: `atlas keygen` a new key, old key kept below it
    new_key = tmp_path / "new.txt"
    assert atlas(tmp_path, "keygen", "-o", str(new_key), env={}).code == 0
    rotated = tmp_path / "rotated.txt"
    rotated.write_text(new_key.read_text() + old_key.read_text())
    services = services_for(settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(rotated)))
    assert services.reader.verify(row.id).snapshot.status == "ok"
    fresh = services.taker.take(requested_by="U1")
    side = json.loads(Path(fresh.location).with_name(f"{fresh.id}.json").read_bytes())
    new_public = services.keys.current().recipient
    assert side["recipient"] == new_public != old_public
    [line] = [
        ln
        for ln in status.evaluate(status.gather(services, check_provider=False))
        if ln.key == "encryption"
    ]
    assert line.detail.endswith(f"(to {new_public[:16]}…; 1 retired key(s) kept for reading)")

    # dropping the old key too early: a clear refusal that names the way out
    only_new = services_for(settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(new_key)))
    assert only_new.reader.verify(fresh.id).snapshot.status == "ok"
    with pytest.raises(AtlasError, match="cannot decrypt") as info:
        only_new.reader.verify(row.id)
    assert "recipient" in (info.value.hint or "")
    assert only_new.snapshots.get(row.id).status == "ok"  # not marked corrupt


# -- 5. S3 server-side encryption -------------------------------------------------------------------


def test_s3_uploads_ask_for_server_side_encryption(
    pg_db, pg_url, small, tmp_path, s3_env, s3_client
):
    bucket = s3_env
    for sse, extra in (("AES256", {}), ("aws:kms", {"ATLAS_S3_KMS_KEY_ID": "alias/atlas-test"})):
        settings = settings_for(
            pg_url, tmp_path, storage=f"s3://{bucket}/p", ATLAS_S3_SSE=sse, **extra
        )
        row = services_for(settings).taker.take(requested_by="U1")
        assert row.status == "ok"
        for key in (f"p/{row.storage_key}", f"p/production/{pg_db}/{row.id}.json"):
            head = s3_client.head_object(Bucket=bucket, Key=key)
            assert head["ServerSideEncryption"] == sse, key
            if sse == "aws:kms":
                assert head["SSEKMSKeyId"].endswith("alias/atlas-test"), head


def test_invalid_s3_sse_is_refused_at_start(tmp_path):
    for bad in ("aes256", "AES-256", "kms"):
        with pytest.raises(AtlasError, match="use AES256 or aws:kms"):
            load_settings(
                {
                    "DATABASE_URL": "postgresql://u@db/app",
                    "ATLAS_STORAGE": "s3://b/p",
                    "ATLAS_STATE": str(tmp_path / "atlas.db"),
                    "ATLAS_S3_SSE": bad,
                }
            )
    ok = load_settings({"DATABASE_URL": "postgresql://u@db/app", "ATLAS_S3_SSE": ""})
    assert ok.s3_sse is None


# -- 6. provider (RDS) checks ---------------------------------------------------------------------


def test_provider_check_alerts_once_a_day(pg_url, tmp_path, slack_api, rds_client):
    low = unique("db")
    create_instance(rds_client, low, 7)
    settings = settings_for(pg_url, tmp_path, ATLAS_RDS_INSTANCE=low, ATLAS_CHANNEL=CHANNEL)
    services = services_for(settings, slack_api.client())

    status = housekeeping.provider_check(services)
    assert status is not None and not status.ok
    [alert] = posts(slack_api, ":rotating_light:")
    assert alert["params"]["channel"] == CHANNEL
    text = alert["params"]["text"]
    assert f"`{low}`" in text and "below the policy minimum of 14" in text

    again = housekeeping.provider_check(services)
    assert again is not None and not again.ok
    assert len(posts(slack_api, ":rotating_light:")) == 1  # once a day
    alerts = [a for a in audit_actions(services) if a.action == "provider.alert"]
    assert len(alerts) == 1 and alerts[0].subject == low
    # the next day it is said again
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    housekeeping.provider_check(services, at=tomorrow)
    assert len(posts(slack_api, ":rotating_light:")) == 2

    good = unique("db")
    create_instance(rds_client, good, 21)
    ok_services = services_for(
        settings_for(pg_url, tmp_path, ATLAS_RDS_INSTANCE=good, ATLAS_CHANNEL=CHANNEL),
        slack_api.client(),
    )
    ok = housekeeping.provider_check(ok_services)
    assert ok is not None and ok.ok and ok.retention_days == 21
    assert len(posts(slack_api, ":rotating_light:")) == 2

    missing = unique("gone")
    gone = services_for(
        settings_for(pg_url, tmp_path, ATLAS_RDS_INSTANCE=missing, ATLAS_CHANNEL=CHANNEL),
        slack_api.client(),
    )
    assert housekeeping.provider_check(gone) is None
    [alert] = posts(slack_api, f"`{missing}`")
    assert f"No RDS instance named {missing}" in alert["params"]["text"]
    # not configured: nothing to check, nothing said
    assert housekeeping.provider_check(services_for(settings_for(pg_url, tmp_path))) is None


def test_provider_alert_is_once_a_day_across_processes(pg_url, tmp_path, slack_api, rds_client):
    low = unique("db")
    create_instance(rds_client, low, 7)
    env = {
        "DATABASE_URL": pg_url,
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": str(tmp_path / "atlas.db"),
        "ATLAS_RDS_INSTANCE": low,
        "ATLAS_CHANNEL": CHANNEL,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": slack_api.url,
    }
    for seed in ("1", "2"):
        res = atlas(tmp_path, "status", "--json", env={**env, "PYTHONHASHSEED": seed}, aws=True)
        assert res.code == 1, res.output
        assert "below the policy minimum of 14" in res.output
    assert len(posts(slack_api, ":rotating_light:")) == 1


def test_snapshot_with_provider_starts_a_tagged_rds_snapshot(pg_url, small, tmp_path, rds_client):
    name = unique("db")
    create_instance(rds_client, name, 21)
    env = {
        "DATABASE_URL": pg_url,
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": str(tmp_path / "atlas.db"),
        "ATLAS_RDS_INSTANCE": name,
    }
    res = atlas(
        tmp_path, "snapshot", "--provider", "--json", "--note", "pre-deploy", env=env, aws=True
    )
    assert res.code == 0, res.output
    row = res.json()
    assert row["status"] == "ok"
    assert row["provider_snapshot"] == f"atlas-{row['id']}"
    [snap] = rds_client.describe_db_snapshots(DBSnapshotIdentifier=row["provider_snapshot"])[
        "DBSnapshots"
    ]
    assert snap["DBInstanceIdentifier"] == name
    tags = rds_client.list_tags_for_resource(ResourceName=snap["DBSnapshotArn"])["TagList"]
    assert {"Key": "created-by", "Value": "atlas"} in tags
    services = services_for(load_settings(env))
    assert services.snapshots.get(row["id"]).provider_snapshot == row["provider_snapshot"]
    [entry] = [a for a in audit_actions(services) if a.action == "provider.snapshot"]
    assert entry.subject == row["id"]

    # no provider configured: refused before any work, with what to set
    plain = {k: v for k, v in env.items() if k != "ATLAS_RDS_INSTANCE"}
    res = atlas(tmp_path, "snapshot", "--provider", "--json", env=plain, aws=True)
    assert res.code == 1
    error = res.json()["error"]
    assert "--provider needs a provider: nothing was started" in error
    assert "ATLAS_RDS_INSTANCE" in error
    assert len(services.snapshots.recent()) == 1


def test_provider_failure_still_finishes_the_snapshot_message(
    pg_url, small, tmp_path, slack_api, rds_env
):
    missing = unique("gone")
    settings = settings_for(pg_url, tmp_path, ATLAS_RDS_INSTANCE=missing, ATLAS_CHANNEL=CHANNEL)
    services = services_for(settings, slack_api.client())
    with pytest.raises(AtlasError, match="No RDS instance named"):
        services.snapshot_reported(requested_by="U1", provider=True)
    [row] = services.snapshots.recent()
    assert row.status == "ok"  # our own snapshot is stored and verified
    [err] = posts(slack_api, "is stored, but the provider snapshot failed")
    assert f"No RDS instance named {missing}" in err["params"]["text"]
    started = services.snapshots.get(row.id)
    final = slack_api.message(started.slack_channel, started.slack_ts)
    assert final is not None
    assert not final["text"].startswith(":hourglass_flowing_sand:"), final["text"]


# -- 7. status ------------------------------------------------------------------------------------


def _status(tmp_path: Path, env: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, dict]]:
    res = atlas(tmp_path, "status", "--json", "--no-provider", env=env)
    doc = res.json()
    return res.code, doc, {c["key"]: c for c in doc["checks"]}


def test_status_checklist_from_the_command_line(
    pg, pg_db, pg_url, small, staging, tmp_path, key_file
):
    key, recipient = key_file
    env = {
        "DATABASE_URL": pg_url,
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": str(tmp_path / "atlas.db"),
    }
    code, doc, checks = _status(tmp_path, env)
    assert code == 1 and doc["status"] == "fail"
    assert checks[f"snapshot:{pg_db}"]["level"] == "fail"
    assert checks[f"snapshot:{pg_db}"]["detail"] == "none yet"
    assert checks[f"drill:{pg_db}"]["level"] == "fail"
    assert "no passed drill yet" in checks[f"drill:{pg_db}"]["detail"]
    # local and unencrypted: a warning, since only the disk's own encryption could be
    # at work; what fails the checklist is what is known to be wrong
    assert checks["encryption"]["level"] == "warn"
    assert "ATLAS_ENCRYPTION_KEY_FILE" in checks["encryption"]["detail"]
    assert "`atlas drill`" in checks[f"drill:{pg_db}"]["detail"]  # the CLI's own command
    assert checks["automated"]["level"] == "warn"

    env.update(
        STAGING_DATABASE_URL=pg.url(staging),
        ATLAS_ENCRYPTION_KEY_FILE=str(key),
        ATLAS_SNAPSHOT_SCHEDULE="0 3 * * *",
    )
    services = services_for(load_settings(env))
    snap = services.taker.take(requested_by="U1")
    drill = services.restores.run(kind="drill", snap_id=None, requested_by="U1")
    assert drill.status == "passed", drill

    code, doc, checks = _status(tmp_path, env)
    assert code == 0, doc
    assert doc["status"] == "warn"  # the provider check is not configured
    assert all(c["level"] != "fail" for c in doc["checks"]), doc
    assert checks[f"snapshot:{pg_db}"]["level"] == "ok"
    assert snap.id in checks[f"snapshot:{pg_db}"]["detail"]
    assert "verified" in checks[f"snapshot:{pg_db}"]["detail"]
    assert checks[f"drill:{pg_db}"]["level"] in ("ok", "warn")
    assert checks["encryption"] == {
        "key": "encryption",
        "level": "ok",
        "title": "Encryption at rest",
        "detail": f"all 1 kept artifacts encrypted with age (to {recipient[:16]}…)",
    }
    assert checks["automated"]["level"] == "warn"  # provider not configured
    assert "`0 3 * * *`" in checks["automated"]["detail"]
    assert "ATLAS_RDS_INSTANCE" in checks["automated"]["detail"]
    assert checks["separation"]["level"] == "ok"

    age_drill(services, drill.id, 200)
    code, doc, checks = _status(tmp_path, env)
    assert code == 1 and doc["status"] == "fail"
    line = checks[f"drill:{pg_db}"]
    assert line["level"] == "fail" and line["detail"].startswith("OVERDUE: ")
    assert [c["key"] for c in doc["checks"] if c["level"] == "fail"] == [f"drill:{pg_db}"]

    # housekeeping now owes an overdue reminder, with the drill button
    posted = housekeeping.drill_reminders(services)
    assert len(posted) == 1 and posted[0].startswith(f"{pg_db}:") and "overdue" in posted[0]
    assert housekeeping.drill_reminders(services) == []  # once


def test_status_says_what_is_true_of_the_artifacts(pg_db, pg_url, small, tmp_path, key_file):
    """A stale last snapshot fails the checklist; the schedule says what stale is; the
    encryption line counts the kept artifacts, not the configuration."""
    key, _ = key_file
    services = services_for(settings_for(pg_url, tmp_path))
    plain = services.taker.take(requested_by="U1")

    def lines(**env: str) -> dict[str, status.Line]:
        s = services_for(settings_for(pg_url, tmp_path, **env))
        return {ln.key: ln for ln in status.evaluate(status.gather(s, check_provider=False))}

    snap_line = f"snapshot:{pg_db}"
    assert lines()[snap_line].level == "ok"
    age_snapshot(services, plain.id, 40)
    stale = lines()[snap_line]
    assert stale.level == "fail" and stale.detail.startswith("STALE: ")
    assert "expected every 24 h" in stale.detail
    weekly = {"ATLAS_SNAPSHOT_SCHEDULE": "0 3 * * 0"}
    age_snapshot(services, plain.id, 5)
    assert lines(**weekly)[snap_line].level == "ok"  # a weekly schedule: 5 days is fine
    age_snapshot(services, plain.id, 10)
    assert lines(**weekly)[snap_line].level == "warn"
    assert lines()[snap_line].level == "fail"

    keyed = services_for(settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(key)))
    keyed.taker.take(requested_by="U1")
    enc = lines(ATLAS_ENCRYPTION_KEY_FILE=str(key))["encryption"]
    assert enc.level == "warn", enc
    assert enc.detail.startswith("1 of 2 kept artifacts are not encrypted")
    assert "retention removes them by" in enc.detail
    assert lines()["encryption"].level == "warn"  # no key at all: Atlas encrypts nothing


def test_never_drilled_database_gets_overdue_reminders(pg_db, pg_url, small, tmp_path, slack_api):
    """The first good snapshot starts the obligation: its quarter needs a passed drill."""
    services = services_for(
        settings_for(pg_url, tmp_path, ATLAS_CHANNEL="CREMIND"), slack_api.client()
    )
    row = services.taker.take(requested_by="U1")
    started = datetime.fromisoformat(row.started_at)
    q = (started.month - 1) // 3
    next_quarter = datetime(started.year + (q == 3), (q + 1) % 4 * 3 + 1, 1, tzinfo=UTC)
    posted = housekeeping.drill_reminders(services, at=next_quarter + timedelta(days=9))
    assert posted == [f"{pg_db}:{started.year}-Q{q + 1}:overdue-1"]
    text = slack_api.wait_for("chat.postMessage")["params"]["text"]
    assert "overdue" in text and "No restore drill has passed yet" in text
    assert housekeeping.drill_reminders(services, at=next_quarter + timedelta(days=10)) == []


@pytest.fixture
def bot(pg, pg_url, small, staging, tmp_path, slack_api) -> Iterator[Bot]:
    b, server = start_bot(
        pg_url,
        tmp_path,
        slack_api,
        STAGING_DATABASE_URL=pg.url(staging),
        ATLAS_APPROVERS="U_ANN,U_BOB",
    )
    try:
        yield b
    finally:
        server.close()
        b.services.shutdown()


def test_slash_status_replies_with_the_checklist(bot, pg_db):
    code, body = bot.command("status", user_id="U1")
    assert code == 200 and "Checking" in body
    reply = bot.slack.wait_for(
        lambda c: c["method"] == "response_url" and "Atlas status" in str(c["params"]), timeout=20
    )
    text = reply["params"]["text"]
    assert text.startswith("*Atlas status*")
    assert f"❌ *Last snapshot of {pg_db}*: none yet" in text
    assert f"*Restore drill of {pg_db}*" in text
    assert "*Encryption at rest*" in text


# -- 8. the reminder's button ----------------------------------------------------------------------


def test_reminder_button_opens_a_drill_request(bot, pg_db):
    snap = bot.services.taker.take(requested_by="U_SNAP")
    code, _ = post_interaction(
        bot.url,
        SECRET,
        block_actions_payload(
            "atlas_request_drill",
            value=pg_db,
            user_id="U_REQ",
            channel_id="C1",
            response_url=bot.slack.response_url,
        ),
    )
    assert code == 200
    msg = bot.slack.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "requested" in str(c["params"]["text"]),
        timeout=20,
    )
    assert msg["params"]["channel"] == "C1"
    assert snap.id in msg["params"]["text"] and "Restore drill requested" in msg["params"]["text"]

    def one_request() -> dict[str, Any]:
        reqs = bot.services.catalog.list_requests()
        assert len(reqs) == 1
        return reqs[0]

    req = eventually(one_request)
    assert (req.kind, req.snapshot_id, req.requested_by, req.status) == (
        "drill",
        snap.id,
        "U_REQ",
        "pending",
    )

    # a button for a database Atlas does not know: told privately, nothing requested
    code, _ = post_interaction(
        bot.url,
        SECRET,
        block_actions_payload(
            "atlas_request_drill",
            value="nope",
            user_id="U_REQ",
            response_url=bot.slack.response_url,
        ),
    )
    assert code == 200
    err = bot.slack.wait_for(
        lambda c: c["method"] == "response_url" and "Unknown database" in str(c["params"]),
        timeout=20,
    )
    assert err["params"].get("response_type") == "ephemeral"
    assert len(bot.services.catalog.list_requests()) == 1

    # a badly signed click does nothing
    code, _ = post_interaction(
        bot.url,
        SECRET,
        block_actions_payload("atlas_request_drill", value=pg_db, user_id="U_X"),
        bad_signature=True,
    )
    assert code == 401


# -- 9. daily housekeeping ------------------------------------------------------------------------


def test_daily_runs_every_job_and_audits(pg, pg_url, small, staging, tmp_path, slack_api):
    settings = settings_for(
        pg_url,
        tmp_path,
        STAGING_DATABASE_URL=pg.url(staging),
        ATLAS_APPROVERS="U_ANN",
        ATLAS_CHANNEL=CHANNEL,
    )
    services = services_for(settings, slack_api.client())
    old = services.taker.take(requested_by="U1").id
    new = services.taker.take(requested_by="U1").id
    age_snapshot(services, old, 90)
    req = services.ask.request(kind="drill", snap_id=new, requested_by="U_REQ", channel="C1")
    services.catalog.update_request(
        req.id, expires_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    )

    result = housekeeping.daily(services)
    assert set(result) >= {"reminders", "pruned", "provider", "expired"}
    assert result["pruned"] == [old]
    assert result["expired"] == [req.id]
    assert result["provider"] is None
    assert isinstance(result["reminders"], list)
    assert services.catalog.get_request(req.id).status == "expired"
    assert services.snapshots.get(old).status == "deleted"
    [ran] = [a for a in audit_actions(services) if a.action == "housekeeping.ran"]
    detail = ran.detail
    assert ran.actor == "atlas" and ran.subject == "daily"
    assert detail["pruned"] == [old] and detail["expired"] == [req.id]

    again = housekeeping.daily(services)
    assert again["pruned"] == [] and again["expired"] == []
    assert again["reminders"] == []
    assert len([a for a in audit_actions(services) if a.action == "housekeeping.ran"]) == 2


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_for_prometheus(bot, pg_db):
    labels = (("database", pg_db), ("environment", "production"))
    before = _scrape(bot.url)
    assert ("atlas_snapshot_last_success_timestamp_seconds", labels) not in before
    assert ("atlas_drill_deadline_timestamp_seconds", labels) in before

    snap = bot.services.taker.take(requested_by="U1")
    drill = bot.services.restores.run(kind="drill", snap_id=None, requested_by="U1")
    assert drill.status == "passed", drill
    got = _scrape(bot.url)
    finished = datetime.fromisoformat(snap.finished_at).timestamp()
    assert got[("atlas_snapshot_last_success_timestamp_seconds", labels)] == finished
    assert got[("atlas_snapshot_last_size_bytes", labels)] == snap.size_bytes
    assert got[("atlas_snapshot_last_duration_seconds", labels)] == snap.duration_s
    assert got[("atlas_snapshots", (*labels, ("status", "ok")))] == 1
    drilled = datetime.fromisoformat(drill.finished_at)
    assert got[("atlas_drill_last_success_timestamp_seconds", labels)] == drilled.timestamp()
    assert got[("atlas_drill_last_total_seconds", labels)] == drill.total_s
    # the drill answered this quarter, so the next one is owed: due when the one after starts
    year, q = divmod(drilled.year * 4 + (drilled.month - 1) // 3 + 2, 4)
    due = datetime(year, q * 3 + 1, 1, tzinfo=UTC)
    assert got[("atlas_drill_deadline_timestamp_seconds", labels)] == due.timestamp()
