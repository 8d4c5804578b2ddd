"""The worlds of the feature matrix: a topology (one database, a fleet of two servers, two
replicas on a PostgreSQL catalog) on a storage (a folder, S3, an encrypted folder), with
Slack's Web API faked and everything else real. `atlas` runs as a separate process with
the world's environment, as a user runs it; `serve` replicas are real processes too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.catalog import open_catalog
from bot.config import load_settings
from bot.records import Snapshot, SnapshotStatus
from tests.support import pick_free_port
from tests.support.catalogs import CatalogServer
from tests.support.helpers import REPO, serve_command, wait_healthy
from tests.support.pg import PgCluster, fill_sample
from tests.support.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, make_s3_client
from tests.support.slack import FakeSlackApi

SECRET = "matrix-signing-secret"
CHANNEL = "CMATRIX"
APPROVER = "U_ANN"
ROWS = 120  # rows of the sample's main table in every production database


@dataclass
class Servers:
    """The clusters of a test module: production, a second production server (the
    fleet's), and the staging server, apart from both."""

    first: PgCluster
    second: PgCluster
    staging: PgCluster
    catalogs: CatalogServer


@dataclass
class World:
    topology: str
    storage: str
    tmp: Path
    env: dict[str, str]
    slack: FakeSlackApi
    target: str  # the database the case acts on, as Atlas names it
    production: str  # its URL
    staging_url: str  # the database a refresh of it replaces
    catalogs: CatalogServer
    replicas: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    # -- running atlas ---------------------------------------------------------------------

    def atlas(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", *args],
            env=env or self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def settings(self) -> Any:
        return load_settings(self.env)

    def catalog(self) -> Any:
        return open_catalog(self.env["ATLAS_STATE"])

    def snapshots(self, status: str | None = SnapshotStatus.OK) -> list[Snapshot]:
        found = self.catalog().list_snapshots(database=self.target or None, limit=50)
        return [s for s in found if status is None or s.status == status]

    def take(self, *extra: str) -> Snapshot:
        """A good snapshot of the target, taken from the CLI."""
        args = ["snapshot", "--all"] if self.topology == "fleet" else ["snapshot"]
        proc = self.atlas(*args, "--json", *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return self.snapshots()[0]

    # -- replicas ----------------------------------------------------------------------------

    def start_replicas(self, n: int = 2) -> None:
        for i in range(n):
            port = pick_free_port()
            log = self.tmp / f"replica-{len(self.replicas)}.log"
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    serve_command(port), env=self.env, stdout=out, stderr=subprocess.STDOUT
                )
            self.replicas.append(proc)
            self.ports.append(port)
        for proc, port in zip(self.replicas[-n:], self.ports[-n:], strict=True):
            wait_healthy(port, proc, time.time() + 60, self.replica_logs)

    def stop_replicas(self) -> None:
        for proc in self.replicas:
            proc.terminate()
        for proc in self.replicas:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.replicas.clear()
        self.ports.clear()

    def replica_logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("replica-*.log"))
        )

    def wait_housekeeping(self, runs: int = 1, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            done = [e for e in self.catalog().audit_log(500) if e.action == "housekeeping.ran"]
            if len(done) >= runs:
                return
            time.sleep(0.2)
        raise AssertionError("housekeeping did not run:\n" + self.replica_logs())

    def restart_replicas(self) -> None:
        """What a deploy does: the replicas stop and start; the new leader's schedule runs
        the day's housekeeping at once."""
        runs = len([e for e in self.catalog().audit_log(500) if e.action == "housekeeping.ran"])
        self.stop_replicas()
        self.start_replicas()
        self.wait_housekeeping(runs + 1)


def _base_env(tmp: Path, slack: FakeSlackApi) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ATLAS_", "PG", "AWS_", "FAKETIME"))
        and k not in ("DATABASE_URL", "STAGING_DATABASE_URL", "PORT", "LD_PRELOAD")
    }
    env.update(
        PYTHONPATH=str(REPO),
        SLACK_BOT_TOKEN="xoxb-matrix-token",
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.url,
        ATLAS_CHANNEL=CHANNEL,
        ATLAS_APPROVERS=APPROVER,
        ATLAS_DRILL_EVERY="1",  # the first good snapshot makes a drill due today
        ATLAS_RETENTION_DAYS="7",
        ATLAS_KEEP_DAILY="0",
        ATLAS_KEEP_WEEKLY="0",
        ATLAS_KEEP_MONTHLY="0",
        ATLAS_FAILOVER_S="6",
    )
    return env


def _storage(kind: str, tmp: Path, s3: str) -> dict[str, str]:
    if kind == "folder":
        return {"ATLAS_STORAGE": str(tmp / "backups")}
    if kind == "encrypted":
        key = tmp / "age.key"
        made = subprocess.run(
            [sys.executable, "-m", "bot.cli", "keygen", "-o", str(key)],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        return {"ATLAS_STORAGE": str(tmp / "backups"), "ATLAS_ENCRYPTION_KEY_FILE": str(key)}
    bucket = f"atlas-matrix-{uuid.uuid4().hex[:12]}"
    make_s3_client(s3).create_bucket(Bucket=bucket)
    return {
        "ATLAS_STORAGE": f"s3://{bucket}/atlas",
        "AWS_ENDPOINT_URL": s3,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_REGION": S3_REGION,
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-creds"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _database(cluster: PgCluster, prefix: str) -> str:
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    cluster.create_database(name)
    fill_sample(cluster.url(name), rows=ROWS)
    return name


@contextmanager
def world(
    topology: str, storage: str, servers: Servers, tmp: Path, slack: FakeSlackApi, s3: str
) -> Iterator[World]:
    """A world with one good snapshot of its target taken from the CLI (replicas running
    from before it, so the schedule's work on it is theirs to do)."""
    env = _base_env(tmp, slack) | _storage(storage, tmp, s3)
    made: list[tuple[PgCluster, str]] = []
    if topology == "fleet":
        one = _database(servers.first, "mx_a_")
        two = _database(servers.second, "mx_b_")
        made += [(servers.first, one), (servers.second, two)]
        for name in (one, two):  # the staging databases their refreshes replace
            servers.staging.create_database(name)
            made.append((servers.staging, name))
        config = tmp / "atlas.toml"
        config.write_text(
            f'[servers.one]\nurl = "{servers.first.url("postgres")}"\ninclude = ["{one}"]\n'
            f'staging_url = "{servers.staging.url("postgres")}"\n'
            f'[servers.two]\nurl = "{servers.second.url("postgres")}"\ninclude = ["{two}"]\n'
            f'staging_url = "{servers.staging.url("postgres")}"\n'
        )
        config.chmod(0o600)
        env.update(ATLAS_CONFIG=str(config), ATLAS_STATE=str(tmp / "atlas.db"))
        target, production, staging = f"two.{two}", servers.second.url(two), two
    else:
        app = _database(servers.first, "mx_")
        staging = servers.staging.create_database(app + "_stg")
        made += [(servers.first, app), (servers.staging, staging)]
        production = servers.first.url(app)
        env.update(DATABASE_URL=production, STAGING_DATABASE_URL=servers.staging.url(staging))
        if topology == "replicas":
            env["ATLAS_STATE"] = servers.catalogs.new_url()[1]
        else:
            env["ATLAS_STATE"] = str(tmp / "atlas.db")
        target = ""
    w = World(topology, storage, tmp, env, slack, target, production, "", servers.catalogs)
    w.staging_url = servers.staging.url(staging)
    try:
        if topology == "replicas":
            w.start_replicas()
            w.wait_housekeeping()
        base = w.take()
        if not w.target:
            w.target = base.database
        yield w
    finally:
        w.stop_replicas()
        for cluster, name in made:
            cluster.drop_database(name)


def rows(url: str, table: str = "orders") -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def json_of(proc: subprocess.CompletedProcess) -> Any:
    return json.loads(proc.stdout)
