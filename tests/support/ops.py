"""What the housekeeping, scheduler and status tests share: the `atlas` CLI as a process,
posts in the fake Slack, aging catalog records, and small fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.records import AuditEntry
from bot.services import Services
from tests.support import closed_port
from tests.support.bot import Bot, start_bot
from tests.support.pg import PgCluster, fill_sample
from tests.support.rds import rds_client, rds_env, rds_server
from tests.support.slack import FakeSlackApi

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest

REPO = Path(__file__).resolve().parents[2]
CHANNEL = "CATLAS"
BERLIN = ZoneInfo("Europe/Berlin")
MARKER = "PLAINTEXT-MARKER-123"


# -- helpers ---------------------------------------------------------------------------------


def flat(text: str) -> str:
    """Undo rich's line wrapping so phrases can be searched for."""
    return " ".join(text.split())


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return flat(self.stdout + self.stderr)

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
    services.catalog.update_job(
        drill_id,
        services.catalog.get_job(drill_id).kind,
        started_at=at.isoformat(timespec="milliseconds"),
        finished_at=(at + timedelta(seconds=2)).isoformat(timespec="milliseconds"),
    )


def closed_port_url(dbname: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{closed_port()}/{dbname}?connect_timeout=3"


def housekeeping_runs(services: Services) -> int:
    return len([a for a in audit_actions(services) if a.action == "housekeeping.ran"])


def leases(services: Services, name: str = "scheduler") -> list[dict[str, Any]]:
    """The scheduler's lease (or another), as rows: [] when nobody holds it."""
    with services.catalog.db() as db:
        return list(db["leases"].rows_where("name = ?", [name]))


def replica_leases(services: Services) -> list[str]:
    with services.catalog.db() as db:
        return [r["name"] for r in db["leases"].rows if r["name"].startswith("replica:")]


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
