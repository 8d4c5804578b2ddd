"""`atlas restore` stopped at each phase (restore, verify, swap) by Ctrl-C (SIGINT) and by
an OOM kill (SIGKILL): staging stays exactly as it was, and the database the refresh was
building is dropped, by the refresh itself or by the next command that refreshes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.helpers import add_bulk, cli_env, run_cli
from tests.support.pg import fill_sample
from tests.support.proxy import tcp_proxy

SLOW_CHECK = "SELECT count(*) = 1 FROM (SELECT pg_sleep(3)) s"


def _dbs(pg: Any, like: str) -> set[str]:
    rows = pg.execute("postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s", [like])
    return {r[0] for r in rows}


def _restoring(pg: Any, _lines: list[str]) -> bool:
    """The new database exists and pg_restore is loading the bulk table into it."""
    for name in _dbs(pg, "atlas\\_refresh\\_%"):
        try:
            if pg.execute(name, "SELECT to_regclass('public.bulk') IS NOT NULL")[0][0]:
                return True
        except psycopg.Error:
            continue
    return False


def _verifying(pg: Any, _lines: list[str]) -> bool:
    rows = pg.execute(
        "postgres",
        "SELECT 1 FROM pg_stat_activity WHERE datname LIKE 'atlas\\_refresh\\_%' "
        "AND query LIKE '%pg_sleep(3)%' AND state = 'active'",
    )
    return bool(rows)


def _swapping(_pg: Any, lines: list[str]) -> bool:
    return any("Waiting up to 60 s for 1 session" in line for line in lines)


PHASES: dict[str, Callable[[Any, list[str]], bool]] = {
    "restore": _restoring,
    "verify": _verifying,
    "swap": _swapping,
}


@pytest.fixture
def refresh_env(pg, pg_db, pg_url, tmp_path):
    fill_sample(pg_url, rows=300)
    add_bulk(pg_url, 10)
    staging = pg.create_database(pg_db + "_stg")
    pg.execute(staging, "CREATE TABLE staging_notes (note text)")
    pg.execute(staging, "INSERT INTO staging_notes VALUES ('as it was')")
    config = tmp_path / "atlas.toml"
    config.write_text("")  # the verify phase's test adds a slow check
    env = cli_env(
        tmp_path,
        DATABASE_URL=pg_url,
        STAGING_DATABASE_URL=pg.url(staging),
        ATLAS_CONFIG=str(config),
        ATLAS_SWAP_WAIT_S="60",
    )
    assert run_cli(["snapshot"], env, tmp_path).returncode == 0
    yield env, staging
    for name in _dbs(pg, "atlas\\_%"):
        if name.startswith(("atlas_refresh_", "atlas_kept_")):
            pg.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg.drop_database(staging)


def _start(env: dict[str, str], cwd: Path, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "restore", "latest", "--yes", *extra],
        env={**env, "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints every thread's stack
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert proc.stderr is not None
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    return proc, lines


def _stops(proc: subprocess.Popen[str], lines: list[str], timeout: float = 60) -> None:
    """Wait for the stopped process; one that hangs is made to print where every thread
    is (faulthandler on SIGABRT), so the failure says why."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        proc.kill()
        time.sleep(0.5)  # the reader thread takes the last lines
        raise AssertionError(f"still running {timeout:.0f} s after the signal:\n" + "".join(lines))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_refresh_stopped_at_any_phase_leaves_staging_as_it_was(
    pg, refresh_env, tmp_path, phase, sig
):
    env, staging = refresh_env
    config = Path(env["ATLAS_CONFIG"])
    if phase == "verify":
        config.write_text(f'[[checks]]\nname = "slow"\nsql = "{SLOW_CHECK}"\n')
    holder = psycopg.connect(pg.url(staging)) if phase == "swap" else None
    try:
        proc, lines = _start(env, tmp_path)
        deadline = time.time() + 90
        while not PHASES[phase](pg, lines):
            assert proc.poll() is None, (proc.returncode, lines)
            assert time.time() < deadline, f"never reached the {phase} phase: {lines}"
            time.sleep(0.02)
        os.kill(proc.pid, sig)
        _stops(proc, lines)
    finally:
        if holder is not None:
            holder.close()
    assert proc.returncode != 0
    if sig == signal.SIGINT:  # the refresh dropped its new database itself
        assert _dbs(pg, "atlas\\_refresh\\_%") == set()
        assert any("was not touched" in line for line in lines), lines
    # staging is exactly as it was
    assert pg.execute(staging, "SELECT note FROM staging_notes") == [("as it was",)]
    assert pg.execute(staging, "SELECT to_regclass('public.bulk') IS NULL")[0][0]
    assert _dbs(pg, f"atlas\\_kept\\_{staging}\\_%") == set()
    # the next refresh closes out a killed one first, then runs
    config.write_text("")
    again = run_cli(["restore", "latest", "--yes", "--json"], env, tmp_path, text=True)
    assert again.returncode == 0, again.stderr
    jobs = json.loads(run_cli(["drills", "--json"], env, tmp_path, text=True).stdout)
    stopped = jobs[1]
    assert stopped["status"] == "interrupted" and stopped["swapped"] == 0, stopped
    assert stopped["error"].endswith("was not touched."), stopped
    assert stopped["new_db_dropped"] == 1
    assert jobs[0]["status"] == "passed" and jobs[0]["swapped"] == 1
    assert _dbs(pg, "atlas\\_refresh\\_%") == set()


def _loading_bulk(pg: Any, staging: str) -> bool:
    rows = pg.execute(
        "postgres",
        "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
        "AND query LIKE 'COPY public.bulk%%'",
        [staging],
    )
    return bool(rows)


def _atlas_sessions(pg: Any, staging: str) -> list[tuple[Any, ...]]:
    return pg.execute(
        "postgres",
        "SELECT pid, application_name, state FROM pg_stat_activity "
        "WHERE datname = %s AND application_name = 'atlas'",
        [staging],
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_a_table_restore_stopped_mid_load_leaves_staging_as_it_was(pg, refresh_env, tmp_path, sig):
    """`--table` restores in place, in one transaction: stopped while the table's rows
    stream in (a slow link to staging keeps it there), staging keeps the rows it had, no
    session of Atlas stays behind holding the table, and the next run closes it out."""
    env, staging = refresh_env
    assert run_cli(["restore", "latest", "--yes"], env, tmp_path).returncode == 0
    pg.execute(staging, "DELETE FROM bulk WHERE id % 10 = 0")
    pg.execute(staging, "CREATE TABLE staging_notes (note text)")  # the refresh replaced it
    pg.execute(staging, "INSERT INTO staging_notes VALUES ('as it was')")
    before = pg.execute(staging, "SELECT count(*) FROM bulk")[0][0]
    with tcp_proxy(pg.port) as proxy:
        proxy.throttle(4_000_000)
        slow = {
            **env,
            "STAGING_DATABASE_URL": pg.url(staging).replace(f":{pg.port}/", f":{proxy.port}/"),
        }
        proc, lines = _start(slow, tmp_path, "--table", "public.bulk")
        deadline = time.time() + 90
        while not _loading_bulk(pg, staging):
            assert proc.poll() is None, (proc.returncode, lines)
            assert time.time() < deadline, f"never loaded the table: {lines}"
            time.sleep(0.02)
        os.kill(proc.pid, sig)
        _stops(proc, lines)
        assert proc.returncode != 0
        deadline = time.time() + 20
        while _atlas_sessions(pg, staging):
            assert time.time() < deadline, _atlas_sessions(pg, staging)
            time.sleep(0.1)
    if sig == signal.SIGINT:
        assert any("not touched" in line for line in lines), lines
    assert pg.execute(staging, "SELECT count(*) FROM bulk")[0][0] == before
    assert pg.execute(staging, "SELECT note FROM staging_notes") == [("as it was",)]
    again = run_cli(["restore", "latest", "--yes", "--table", "public.bulk"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert pg.execute(staging, "SELECT count(*) FROM bulk")[0][0] > before
    jobs = json.loads(run_cli(["drills", "--json"], env, tmp_path, text=True).stdout)
    stopped = jobs[1]
    assert stopped["status"] == "interrupted" and stopped["tables"] == ["public.bulk"], stopped
    assert "not touched" in stopped["error"], stopped
    assert jobs[0]["status"] == "passed" and jobs[0]["tables"] == ["public.bulk"], jobs[0]
