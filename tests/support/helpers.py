"""Small helpers shared by the Atlas tests (settings for a test database, restore-and-count)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import psycopg

from bot.catalog import open_catalog
from bot.config import Settings, load_settings
from bot.report.chat import NoChat
from bot.services import Services
from bot.slack.client import SlackChat
from bot.store import Pending, Storage
from tests.support.catalogs import state_for
from tests.support.pg import PgCluster

REPO = Path(__file__).resolve().parents[2]


def settings_for(url: str, tmp: Path, storage: str | None = None, **extra: str) -> Settings:
    env = {
        "DATABASE_URL": url,
        "ATLAS_STORAGE": storage or str(tmp / "backups"),
        "ATLAS_STATE": state_for(tmp),
        **extra,
    }
    return load_settings(env)


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of an `atlas` command run as a user would: the developer's shell
    minus anything that would point it at other servers, a catalog and storage under tmp."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ATLAS_", "PG", "AWS_"))
        and k not in ("DATABASE_URL", "STAGING_DATABASE_URL", "PORT")
    }
    env.update(
        ATLAS_STORAGE=str(tmp / "backups"),
        ATLAS_STATE=state_for(tmp),
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, *, text: bool = False, timeout: float = 180
) -> subprocess.CompletedProcess[Any]:
    """`atlas ARGS` from this checkout, as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=text,
        timeout=timeout,
        check=False,
    )


def start_cli(
    args: list[str], env: dict[str, str], cwd: Path, *, output: bool = False
) -> subprocess.Popen[bytes]:
    """`atlas ARGS` started and left running (to be signalled or killed mid-way); its
    output piped with `output`, else thrown away."""
    out = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, stdout=out, stderr=out
    )


def services_for(settings: Settings, slack: Any = None) -> Services:
    """Services on the settings' catalog; `slack` is a WebClient (pointed at the fake)."""
    chat = SlackChat(slack) if slack is not None else NoChat()
    return Services(settings, open_catalog(settings.state), chat)


def add_bulk(url: str, mb: int) -> None:
    """A table of roughly `mb` MB of poorly compressible text, so dumps take a moment."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        conn.execute("CREATE TABLE IF NOT EXISTS bulk (id int, payload text)")
        conn.execute(
            "INSERT INTO bulk SELECT g, encode(gen_random_bytes(700), 'base64') "
            "FROM generate_series(1, %s) g",
            [mb * 1100],
        )


def restore_counts(pg: PgCluster, dump_file: Path, tables: list[str]) -> dict[str, int]:
    """Run the runbook's pg_restore line into a new database and count rows."""
    target = f"r_{os.urandom(4).hex()}"
    pg.create_database(target)
    try:
        env = {**os.environ, "PGPASSWORD": pg.password or ""}
        subprocess.run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-acl",
                "--exit-on-error",
                "--dbname",
                f"host={pg.host} port={pg.port} user=postgres dbname={target}",
                str(dump_file),
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        return {t: pg.execute(target, f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    finally:
        pg.drop_database(target)


def storage_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def serve_command(port: int) -> list[str]:
    """`atlas serve` over HTTP on loopback, run from this checkout's interpreter."""
    return [
        sys.executable,
        "-m",
        "bot.cli",
        "serve",
        "--http",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def wait_healthy(
    port: int, proc: subprocess.Popen, deadline: float, output: Callable[[], str]
) -> None:
    """Wait until /healthz answers 200; fail with the server's output if it exits or stalls."""
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError(output())
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"atlas serve did not become healthy: {output()}")
        time.sleep(0.1)


def listing_with(storage: Storage, first: Callable[[], object]) -> Storage:
    """`storage` as it is, except that `first` runs once just before its first listing of
    unfinished writes: another process acting after a sweep began and before it listed."""

    class Listing:
        ran = False

        def __getattr__(self, name: str) -> object:
            return getattr(storage, name)

        def pending(self, prefix: str) -> Iterator[Pending]:
            if not self.ran:
                self.ran = True
                first()
            return storage.pending(prefix)

    return cast(Storage, Listing())
