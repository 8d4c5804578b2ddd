"""Several real `atlas serve` processes on one PostgreSQL catalog: deliveries to two
replicas act once, the schedule runs once, a killed leader or a replica killed mid-snapshot
is taken over by a survivor, and a fleet run is spread over the replicas alive.

Replicas run with ATLAS_FAILOVER_S=6: the leader lease lasts 4 s and is renewed every
second, a job whose heartbeats stop counts as dead after 12 s.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.catalog import open_catalog
from bot.records import SnapshotStatus, WorkStatus
from tests.support import pick_free_port
from tests.support.catalogs import CatalogServer
from tests.support.faketime import faked, needs_faketime
from tests.support.helpers import add_bulk, serve_command, storage_files, wait_healthy
from tests.support.pg import PgCluster, fill_sample, unique_name
from tests.support.slack import (
    FakeSlackApi,
    post_event,
    post_slash_command,
    reaction_event,
    slash_command_payload,
)

pytestmark = pytest.mark.own_catalog  # always the PostgreSQL catalog the replicas share

SECRET = "replica-signing-secret"
FAILOVER_S = 6


@dataclass
class Replica:
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            return r.read().decode()

    def leads(self) -> bool:
        found = re.search(r"^atlas_leader\{[^}]*\} (\S+)$", self.metrics(), re.M)
        return found is not None and float(found.group(1)) == 1.0

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Replicas:
    env: dict[str, str]
    tmp: Path
    state: str
    running: list[Replica] = field(default_factory=list)

    def start(self, n: int, http: bool = True, host: str | None = None) -> list[Replica]:
        """`n` more replicas: over HTTP, or (http=False, with SLACK_APP_TOKEN) in Socket
        Mode, where the port serves /healthz only. With `host`, they run in a UTS
        namespace of that hostname: a replica on another machine, as far as any other
        replica can tell (it cannot see whether that process still runs)."""
        started = []
        for i in range(n):
            port = pick_free_port()
            log = self.tmp / f"replica-{len(self.running) + i}.log"
            with log.open("wb") as out:
                argv = serve_command(port)
                if not http:
                    argv.remove("--http")
                if host is not None:
                    argv = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"']
                    argv += [host, *serve_command(port)]
                proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            started.append(Replica(port, proc, log))
        for r in started:
            wait_healthy(r.port, r.proc, time.time() + 30, r.output)
        self.running += started
        return started

    def catalog(self) -> Any:
        return open_catalog(self.state)

    def stop(self) -> None:
        for r in self.running:
            if r.proc.poll() is None:
                r.proc.terminate()
        for r in self.running:
            try:
                r.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                r.proc.kill()


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls on threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.fixture
def replicas(
    pg: PgCluster,
    pg_db: str,
    pg_url: str,
    tmp_path: Path,
    slack_api: FakeSlackApi,
    catalog_server: CatalogServer,
) -> Iterator[Replicas]:
    fill_sample(pg_url, rows=300)
    staging = pg.create_database(unique_name("s_"))
    _, state = catalog_server.new_url()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ATLAS_", "PG", "AWS_", "FAKETIME"))
        and k not in ("DATABASE_URL", "STAGING_DATABASE_URL", "LD_PRELOAD")
    }
    env.update(
        DATABASE_URL=pg_url,
        STAGING_DATABASE_URL=pg.url(staging),
        ATLAS_STORAGE=str(tmp_path / "backups"),
        ATLAS_STATE=state,
        ATLAS_FAILOVER_S=str(FAILOVER_S),
        ATLAS_APPROVERS="U_ANN",
        SLACK_BOT_TOKEN="xoxb-replica-token",
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack_api.url,
        ATLAS_CHANNEL="CATLAS",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    group = Replicas(env, tmp_path, state)
    try:
        yield group
    finally:
        group.stop()
        pg.drop_database(staging)


def test_an_approval_delivered_to_two_replicas_runs_one_drill(replicas, slack_api):
    a, b = replicas.start(2)
    status, _ = post_slash_command(a.url, SECRET, text="snapshot before the drill", user_id="U1")
    assert status == 200
    catalog = replicas.catalog()
    eventually(
        lambda: catalog.list_snapshots(status=SnapshotStatus.OK), 60, "the snapshot finished"
    )
    post_slash_command(b.url, SECRET, text="drill", user_id="U1", channel_id="CATLAS")
    ask = slack_api.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "requested" in str(c["params"].get("text"))
    )
    ts, channel = ask["response"]["ts"], ask["response"]["channel"]
    eventually(lambda: catalog.request_by_message(channel, ts), 10, "the request is recorded")
    event = reaction_event("added", "U_ANN", "white_check_mark", channel, ts)
    # Slack redelivers to whichever replica answers: the same event id, at the same moment
    answers = at_once(
        lambda: post_event(a.url, SECRET, event, event_id="Ev1APPROVE"),
        lambda: post_event(b.url, SECRET, event, event_id="Ev1APPROVE", retry_num=1),
    )
    assert [code for code, _ in answers] == [200, 200]
    # and a second, distinct delivery of the same reaction (a new event id) changes nothing
    post_event(b.url, SECRET, event, event_id="Ev2APPROVE")
    req = eventually(
        lambda: [r for r in catalog.list_requests() if r.status in ("done", "failed")],
        90,
        "the drill finished",
    )[0]
    assert req.status == "done", req
    time.sleep(2)  # room for a second run to show up, were there one
    drills = catalog.list_jobs()
    assert len(drills) == 1 and drills[0].status == "passed"
    approvals = [e for e in catalog.audit_log(200) if e.action == "drill.approve"]
    assert len(approvals) == 1, approvals


def test_the_same_snapshot_command_sent_to_both_runs_once(replicas, slack_api):
    a, b = replicas.start(2)
    # one command, delivered twice (a retry reaching the other replica): one snapshot
    same = dict(text="snapshot once", user_id="U1", trigger_id="1337.42.same")
    answers = at_once(
        lambda: post_slash_command(a.url, SECRET, **same),
        lambda: post_slash_command(b.url, SECRET, **same),
    )
    assert [code for code, _ in answers] == [200, 200]
    catalog = replicas.catalog()
    eventually(lambda: catalog.list_snapshots(status=SnapshotStatus.OK), 60, "snapshot done")
    time.sleep(2)
    assert [s.note for s in catalog.list_snapshots()] == ["once"]
    said = " ".join(body for _, body in answers) + str(slack_api.calls())
    assert "already running" not in said  # recognised as one command, not refused as two
    # two people asking at the same moment (two commands): one runs, one is told it is busy
    add_bulk(replicas.env["DATABASE_URL"], 30)
    answers = at_once(
        lambda: post_slash_command(a.url, SECRET, text="snapshot from ann", user_id="U1"),
        lambda: post_slash_command(b.url, SECRET, text="snapshot from bob", user_id="U2"),
    )
    eventually(
        lambda: len(catalog.list_snapshots(status=SnapshotStatus.OK)) == 2, 60, "second done"
    )
    time.sleep(2)
    notes = sorted(s.note or "" for s in catalog.list_snapshots())
    assert len(notes) == 2 and len({"from ann", "from bob"} & set(notes)) == 1, notes
    said = " ".join(str(c["params"]) for c in slack_api.calls()) + " ".join(
        body for _, body in answers
    )
    assert "already running" in said


@needs_faketime
def test_socket_mode_replicas_each_connect_and_a_redelivery_runs_once(
    replicas, slack_api, socket_mode
):
    """Socket Mode: every replica opens its own connection and Slack spreads envelopes
    over them; the same command arriving on both connections runs once."""
    slack_api.socket_mode_url = socket_mode.url
    replicas.env["SLACK_APP_TOKEN"] = "xapp-1-A1-replica-token"
    replicas.start(2, http=False)
    socket_mode.wait_connected(count=2)
    command = slash_command_payload(text="snapshot over sockets", trigger_id="77.88.socket")
    sent = [
        socket_mode.send("slash_commands", command, accepts_response_payload=True, to=i)
        for i in (0, 1)
    ]
    acks = [socket_mode.wait_for_ack(envelope) for envelope in sent]  # each acks its own
    catalog = replicas.catalog()
    eventually(lambda: catalog.list_snapshots(status=SnapshotStatus.OK), 60, "snapshot done")
    time.sleep(2)
    assert [s.note for s in catalog.list_snapshots()] == ["over sockets"]
    # the redelivery was recognised, not merely refused as a second snapshot
    said = str(acks) + " ".join(str(c["params"]) for c in slack_api.calls())
    assert str(acks).count("Snapshot starting") == 1 and "already running" not in said


def test_a_per_minute_schedule_runs_once_per_minute(replicas, no_faketime_leftovers):
    """Three replicas with `* * * * *`, their clocks (faketime) just before a minute: the
    minute's snapshot is taken once, by one of them."""
    replicas.env.update(
        faked(time.strftime("%Y-%m-%d %H:%M:50", time.gmtime()), replicas.env),
        ATLAS_SNAPSHOT_SCHEDULE="* * * * *",
        TZ="UTC",
    )
    started = time.time()
    replicas.start(3)
    catalog = replicas.catalog()
    eventually(
        lambda: catalog.list_snapshots(status=SnapshotStatus.OK), 60, "the scheduled snapshot"
    )
    # wait until the fake clock is well into that minute, then count
    time.sleep(max(0.0, 25 - (time.time() - started)))
    snaps = catalog.list_snapshots()
    assert [s.source for s in snaps] == ["schedule"], [(s.id, s.started_at) for s in snaps]


def test_a_killed_leader_is_replaced_within_the_failover_bound(replicas):
    group = replicas.start(3)
    leader = eventually(lambda: [r for r in group if r.leads()], 15, "a leader")
    assert len(leader) == 1
    leader[0].proc.send_signal(signal.SIGKILL)
    leader[0].proc.wait()
    killed = time.time()
    survivors = [r for r in group if r is not leader[0]]
    new = eventually(lambda: [r for r in survivors if r.leads()], 3 * FAILOVER_S, "a new leader")
    took = time.time() - killed
    assert len(new) == 1
    # the bound is FAILOVER_S (a lease term and a renewal); a busy test machine adds its own
    # delays to the processes and to this poll, so only gross overruns fail here
    assert took <= 2 * FAILOVER_S, f"hand-over took {took:.1f} s"
    print(f"leader replaced {took:.1f} s after the kill")
    # and the new leader runs the schedule: its housekeeping and expiry jobs act
    catalog = replicas.catalog()
    assert catalog.lease_holder("scheduler") is not None
    assert len(catalog.live_leases("replica:")) in (2, 3)  # the dead one's lease may linger


@pytest.mark.parametrize("machine", ["same", "another"])
def test_a_replica_killed_mid_snapshot_is_closed_out_by_a_survivor(replicas, slack_api, machine):
    """On the same machine the survivor sees the process is gone; on another, only that its
    heartbeats stopped (after 2 x ATLAS_FAILOVER_S)."""
    if machine == "another" and (os.geteuid() != 0 or not shutil.which("unshare")):
        pytest.skip("a second hostname needs unshare as root")
    add_bulk(replicas.env["DATABASE_URL"], 150)
    [a] = replicas.start(1, host="replica-b.internal" if machine == "another" else None)
    [b] = replicas.start(1)
    status, _ = post_slash_command(a.url, SECRET, text="snapshot big", channel_id="CDEPLOY")
    assert status == 200
    catalog = replicas.catalog()
    running = eventually(
        lambda: catalog.list_snapshots(status=SnapshotStatus.RUNNING), 20, "running"
    )
    time.sleep(0.5)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    killed = time.time()
    notice = slack_api.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "interrupted" in str(c["params"]),
        timeout=60,
    )
    took = time.time() - killed
    assert notice["params"]["channel"] == "CDEPLOY"
    snap = catalog.get_snapshot(running[0].id)
    assert snap.status == SnapshotStatus.INTERRUPTED
    assert snap.owner.startswith("replica-b.internal:" if machine == "another" else "")
    assert storage_files(replicas.tmp / "backups") == []  # the partial artifact is gone
    assert b.proc.poll() is None
    print(f"{machine} machine: interrupted snapshot closed out {took:.1f} s after the kill")


@needs_faketime
def test_a_replica_whose_clock_is_behind_is_not_taken_for_dead(replicas, no_faketime_leftovers):
    """Replica B's clock is four minutes behind the leader's (inside the five minutes
    Slack's signatures allow), and its snapshot waits 30 s for a lock, no bytes flowing.
    Heartbeats come from a thread of their own and are timed by the catalog's clock, so
    the leader (recovering every 12 s, silence counting after 24 s: longer than any stall
    of a loaded test machine, far shorter than the four minutes) lets it finish."""
    replicas.env["ATLAS_FAILOVER_S"] = "12"
    [leader] = replicas.start(1)
    eventually(leader.leads, 15, "the first replica leads")
    normal = dict(replicas.env)
    behind = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 240))
    replicas.env = {**faked(behind, normal), "TZ": "UTC"}
    # Python's sleep waits for an absolute monotonic deadline: fake that clock too, or
    # libfaketime hands the kernel a deadline it refuses
    del replicas.env["FAKETIME_DONT_FAKE_MONOTONIC"]
    [late] = replicas.start(1)
    replicas.env = normal
    with psycopg.connect(replicas.env["DATABASE_URL"]) as holder:
        holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # until the commit
        status, _ = post_slash_command(late.url, SECRET, text="snapshot slow clock")
        assert status == 200
        catalog = replicas.catalog()
        eventually(lambda: catalog.list_snapshots(status=SnapshotStatus.RUNNING), 10, "runs")
        time.sleep(30)  # beyond the 24 s after which silence counts
        assert [s.status for s in catalog.list_snapshots()] == [SnapshotStatus.RUNNING]
    done = eventually(
        lambda: [s for s in catalog.list_snapshots() if s.status != SnapshotStatus.RUNNING],
        90,
        "the snapshot finished",
    )
    found = [(s.status, s.error, s.heartbeat_at, s.started_at) for s in done]
    assert [s.status for s in done] == [SnapshotStatus.OK], (found, leader.output(), late.output())
    assert leader.leads()  # the leader ran its recovery meanwhile (every 12 s)


@contextlib.contextmanager
def first_in_queue_held(pg: Any, names: list[str]) -> Iterator[None]:
    """The first of `names` in the queue waits on a lock while the block runs, so the replica
    that claims it is held there and the other must take its share: on a busy host one
    replica once did all the work before the other's next look at the queue (once a
    second), which is no fault but proves nothing about sharing."""
    blocker = psycopg.connect(pg.url(sorted(names)[0]))
    try:
        blocker.execute("LOCK TABLE bulk IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        blocker.close()  # its transaction ends, and with it the lock


def claimants(catalog: Any, names: list[str]) -> set[str]:
    """The replicas that claimed work items of these databases."""
    with catalog.db() as db:
        rows = db.execute("SELECT owner, database FROM work").fetchall()
    return {o for o, d in rows if o and d.endswith(tuple(names))}


def test_a_fleet_run_is_spread_over_the_replicas(replicas, pg):
    """Eight databases, ATLAS_MAX_PARALLEL=2, two replicas: both take a share, and never
    more than two snapshots run at once across them."""
    names = [unique_name("f_") for _ in range(8)]
    for name in names:
        pg.create_database(name)
        fill_sample(pg.url(name), rows=200)
        add_bulk(pg.url(name), 4)
    host = f"{pg.host}:{pg.port}"
    config = replicas.tmp / "atlas.toml"
    config.write_text(
        f'[servers.main]\nurl = "postgresql://postgres@{host}/postgres"\ninclude = ["f_*"]\n'
    )
    replicas.env.update(ATLAS_CONFIG=str(config), ATLAS_MAX_PARALLEL="2", PGPASSWORD=pg.password)
    a, b = replicas.start(2)
    eventually(lambda: len(replicas.catalog().live_leases("replica:")) == 2, 10, "both alive")
    catalog = replicas.catalog()
    with first_in_queue_held(pg, names):
        status, _ = post_slash_command(a.url, SECRET, text="snapshot --all nightly")
        assert status == 200
        eventually(lambda: len(claimants(catalog, names)) == 2, 60, "both replicas claim")

    def work() -> list[tuple[str, str]]:
        with catalog.db() as db:
            found = db.execute("SELECT owner, status, database FROM work").fetchall()
        # the server's prefix, then the name
        return [(o, st) for o, st, d in found if d.endswith(tuple(names))]

    def finished() -> bool:
        rows = work()
        return len(rows) == 8 and all(st not in ("queued", "running") for _, st in rows)

    eventually(finished, 120, "all eight snapshots")
    rows = work()
    assert {r[1] for r in rows} == {WorkStatus.DONE.value}
    owners = {r[0] for r in rows}
    assert len(owners) == 2, f"one replica did all of it: {owners}"
    spans = sorted(
        (s.started_at, s.finished_at)
        for s in catalog.list_snapshots(limit=50)
        if s.database in names
    )
    for start, _ in spans:  # at any snapshot's start, at most two were running
        assert sum(1 for s, f in spans if s <= start < (f or "9")) <= 2


def test_a_fleet_run_with_copies_makes_each_copy_once(replicas, pg, tmp_path, slack_api):
    """Six databases over two replicas, each snapshot copied to a folder: every copy is
    made once (one claim, one `copy.ok`), whichever replica took the snapshot."""
    names = [unique_name("c_") for _ in range(6)]
    for name in names:
        pg.create_database(name)
        fill_sample(pg.url(name), rows=200)
        add_bulk(pg.url(name), 4)  # long enough that the other replica's poll finds work
    host = f"{pg.host}:{pg.port}"
    config = replicas.tmp / "atlas.toml"
    config.write_text(
        f'[servers.main]\nurl = "postgresql://postgres@{host}/postgres"\ninclude = ["c_*"]\n'
        f'[copies.vault]\nurl = "{tmp_path / "vault"}"\nretention_days = 90\n'
    )
    replicas.env.update(ATLAS_CONFIG=str(config), ATLAS_MAX_PARALLEL="2", PGPASSWORD=pg.password)
    a, _ = replicas.start(2)
    eventually(lambda: len(replicas.catalog().live_leases("replica:")) == 2, 10, "both alive")
    catalog = replicas.catalog()
    with first_in_queue_held(pg, names):
        status, _ = post_slash_command(a.url, SECRET, text="snapshot --all")
        assert status == 200
        eventually(lambda: len(claimants(catalog, names)) == 2, 60, "both replicas claim")

    def snaps() -> list[Any]:  # the six, and DATABASE_URL's own database
        rows = catalog.list_snapshots(limit=50, status=SnapshotStatus.OK)
        return [s for s in rows if not s.database.endswith("@globals")]

    def roles() -> list[Any]:
        return [s for s in catalog.list_snapshots(limit=50) if s.database.endswith("@globals")]

    def copied() -> bool:  # the databases, then the server's roles, each copied
        found = snaps() + roles()
        done = [c for c in catalog.copies_of(*(s.id for s in found)) if c.state == "ok"]
        return len(found) == 8 and len(done) == 8

    eventually(copied, 120, "seven snapshots and the roles, each copied")
    found = snaps()
    copies = catalog.copies_of(*(s.id for s in found))
    assert sorted(c.snapshot_id for c in copies) == sorted(s.id for s in found)
    assert {c.attempts for c in copies} == {1}, "a copy was tried twice"
    made = [e.subject for e in catalog.audit_log(500) if e.action == "copy.ok"]
    assert sorted(made) == sorted([s.id for s in found] + [roles()[0].id])
    with catalog.db() as db:  # each copy was made by the replica whose work item it was
        work = dict(db.execute("SELECT snapshot_id, owner FROM work").fetchall())
    assert {c.snapshot_id: c.owner for c in copies} == {s.id: work[s.id] for s in found}
    assert len(set(work[s.id] for s in found)) == 2, "one replica did all of it"
    for s in found:
        assert (tmp_path / "vault" / (s.storage_key or "")).is_file()
    # the run's one message says how far its copies got (made as each snapshot was stored)
    head = slack_api.wait_for(
        lambda c: c["method"] == "chat.postMessage" and "Snapshots: all" in str(c["params"])
    )
    assert "Copies: 8 of 8 made" in head["params"]["text"], head["params"]["text"]
