"""`atlas` at a real terminal: a pseudo-terminal, as a person (or `ID=$(atlas snapshot)` in
an interactive shell) runs it. The progress bar and the confirmation prompt only exist
there, so only a pty can show that they work."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from bot.catalog import open_catalog
from bot.records import DrillStatus
from tests.support.catalogs import state_for
from tests.support.helpers import add_bulk
from tests.support.pg import LeastPrivilege, fill_realistic
from tests.support.proxy import TcpProxy, tcp_proxy

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _plain(text: str) -> str:
    return ANSI.sub("", text)


@pytest.fixture
def terminal_env(pg, pg_url, least_privilege: LeastPrivilege, tmp_path: Path) -> dict[str, str]:
    fill_realistic(pg_url)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ATLAS_", "PG", "AWS_"))
        and k not in ("DATABASE_URL", "STAGING_DATABASE_URL")
    }
    env.update(
        DATABASE_URL=least_privilege.reader_url,
        STAGING_DATABASE_URL=least_privilege.owner_url,
        ATLAS_STORAGE=str(tmp_path / "backups"),
        ATLAS_STATE=state_for(tmp_path),
        PYTHONPATH=str(REPO),
        TERM="xterm-256color",
        COLUMNS="120",
        LINES="40",
    )
    return env


def _spawn(command: str, env: dict[str, str], cwd: Path) -> pexpect.spawn:
    """`command` in bash at a 120x40 terminal; `atlas` is this checkout's CLI."""
    atlas = f"{sys.executable} -m bot.cli"
    return pexpect.spawn(
        "/bin/bash",
        ["--noprofile", "--norc", "-c", command.replace("atlas ", f"{atlas} ")],
        env=env,
        cwd=str(cwd),
        encoding="utf-8",
        codec_errors="replace",
        timeout=90,
        dimensions=(40, 120),
    )


def _finish(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before or ""


def test_snapshot_at_a_terminal_shows_progress_and_prints_its_id(terminal_env, tmp_path):
    child = _spawn("atlas snapshot --note 'at a tty'", terminal_env, tmp_path)
    code, out = _finish(child)
    assert code == 0, out
    assert "Traceback" not in out and "TypeError" not in out
    assert "dumping" in out  # the progress bar was drawn …
    assert out.rfind(SHOW_CURSOR) > out.find(HIDE_CURSOR) >= 0  # … and the cursor given back
    lines = _plain(out).splitlines()
    assert lines[-2].startswith("ok ") and SNAPSHOT_ID.fullmatch(lines[-1].strip()), lines


def test_command_substitution_at_a_terminal_captures_only_the_id(terminal_env, tmp_path):
    child = _spawn('ID=$(atlas snapshot); echo "id=[$ID] exit=$?"', terminal_env, tmp_path)
    code, out = _finish(child)
    assert code == 0, out
    match = re.search(r"id=\[(.*?)\] exit=(\d+)", out)
    assert match, out
    assert SNAPSHOT_ID.fullmatch(match.group(1)) and match.group(2) == "0", out


def test_drill_and_restore_ask_at_a_terminal(pg, least_privilege, terminal_env, tmp_path):
    assert _finish(_spawn("atlas snapshot", terminal_env, tmp_path))[0] == 0

    drill_env = {**terminal_env, "STAGING_DATABASE_URL": least_privilege.stager_url}
    child = _spawn("atlas drill", drill_env, tmp_path)
    child.expect(r"Drill snapshot (\S+) into a new scratch database .*\? \[y/N\]")
    child.sendline("y")
    code, out = _finish(child)
    assert code == 0, out
    assert re.search(r"d-\S+: drill of \S+ from \S+: passed in", out), out

    staging_tables = "SELECT count(*) FROM pg_tables WHERE schemaname IN ('app', 'billing')"
    child = _spawn("atlas restore latest", terminal_env, tmp_path)
    child.expect(r"Restore snapshot (\S+) into .*its current content is replaced\)\? \[y/N\]")
    child.sendline("n")
    code, out = _finish(child)
    assert code == 1 and "error: Cancelled: nothing was done." in _plain(out), out
    assert pg.execute(least_privilege.staging, staging_tables)[0][0] == 0  # nothing touched

    child = _spawn("atlas restore latest", terminal_env, tmp_path)
    child.expect(r"\[y/N\]")
    child.sendline("y")
    code, out = _finish(child)
    assert code == 0, out
    assert pg.execute(least_privilege.staging, staging_tables)[0][0] == 24


def test_a_mistyped_table_is_refused_before_the_prompt(pg, least_privilege, terminal_env, tmp_path):
    """`--table` names are checked against the snapshot before anything is asked: a typo
    answers at once, in one line naming the nearest table, and nothing starts."""
    assert _finish(_spawn("atlas snapshot", terminal_env, tmp_path))[0] == 0
    for typed, named in (("app.ordres", "app.ordres"), ("orders", "public.orders")):
        child = _spawn(f"atlas restore latest --table {typed}", terminal_env, tmp_path)
        index = child.expect([r"\[y/N\]", pexpect.EOF])
        out = _plain(child.before or "")
        child.close()
        assert index == 1, f"asked before checking the table: {out}"
        assert child.exitstatus == 1 and f"has no table {named}." in out, out
        assert "did you mean app.orders?" in out and "Traceback" not in out, out
    assert open_catalog(terminal_env["ATLAS_STATE"]).list_jobs(limit=5) == []


# -- Ctrl-C and waits: one truthful line, whatever was running ---------------------------


def _running_drill(state: str, timeout: float = 60) -> str:
    """The id of the drill or refresh that has started, once the catalog says so."""
    catalog = open_catalog(state)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [d for d in catalog.list_jobs(limit=5) if d.status == DrillStatus.RUNNING]
        if running:
            return running[0].id
        time.sleep(0.05)
    raise AssertionError("no drill started")


def _drill_status(state: str, drill_id: str) -> DrillStatus:
    return open_catalog(state).get_job(drill_id).status


def _slowly(url: str, proxy: TcpProxy) -> str:
    """`url` through a link of 4 MB/s: a quiet machine dumps 60 MB in half a second, and
    a Ctrl-C meant for the middle of the job would meet its end."""
    proxy.throttle(4_000_000)
    return re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{proxy.port}/", url)


def test_ctrl_c_during_a_snapshot_is_one_line_and_keeps_nothing(pg, pg_url, terminal_env, tmp_path):
    add_bulk(pg_url, 60)
    with tcp_proxy(pg.port) as proxy:
        env = {**terminal_env, "DATABASE_URL": _slowly(terminal_env["DATABASE_URL"], proxy)}
        child = _spawn("atlas snapshot", env, tmp_path)
        child.expect(r"stored [1-9]")  # the dump is under way
        child.sendintr()
        code, out = _finish(child)
    text = _plain(out)
    assert code == 130 and "Aborted!" not in text and "Traceback" not in text, text
    assert re.search(r"error: Snapshot \S+: Interrupted by the operator \(Ctrl-C\); nothing", text)
    assert not list((tmp_path / "backups").rglob("*.dump.zst"))


def test_ctrl_c_during_a_drill_records_it_interrupted(
    pg_url, least_privilege, terminal_env, tmp_path
):
    add_bulk(pg_url, 60)
    assert _finish(_spawn("atlas snapshot", terminal_env, tmp_path))[0] == 0
    with tcp_proxy(least_privilege.pg.port) as proxy:
        env = {**terminal_env, "STAGING_DATABASE_URL": _slowly(least_privilege.stager_url, proxy)}
        child = _spawn("atlas drill --yes", env, tmp_path)
        drill_id = _running_drill(env["ATLAS_STATE"])
        time.sleep(0.5)  # into the restore itself
        child.sendintr()
        code, out = _finish(child)
    text = _plain(out)
    assert code == 130 and "Aborted!" not in text, text
    assert f"error: Drill {drill_id}: Interrupted by the operator (Ctrl-C); its scratch" in text
    assert _drill_status(env["ATLAS_STATE"], drill_id) == DrillStatus.INTERRUPTED


@pytest.fixture
def staging_in_use(pg, least_privilege, terminal_env, tmp_path) -> Iterator[int]:
    """Staging refreshed once, then a superuser's session reading one of its tables in an
    open transaction (as a forgotten psql would): the next refresh's swap must wait for it,
    and the least-privilege staging role may not end it."""
    assert _finish(_spawn("atlas snapshot", terminal_env, tmp_path))[0] == 0
    assert _finish(_spawn("atlas restore latest --yes", terminal_env, tmp_path))[0] == 0
    with pg.connect(least_privilege.staging, autocommit=False) as conn:
        conn.execute("SELECT count(*) FROM app.customers")
        yield conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_a_refresh_waiting_for_staging_sessions_names_them_and_gives_up(
    staging_in_use, terminal_env, tmp_path
):
    env = {**terminal_env, "ATLAS_SWAP_WAIT_S": "3", "ATLAS_SWAP_SESSIONS": "wait"}
    child = _spawn("atlas restore latest --yes", env, tmp_path)
    child.expect(r"Waiting up to 3 s for 1 session: pid (\d+) \(")
    assert int(child.match.group(1)) == staging_in_use
    code, out = _finish(child)
    text = " ".join(_plain(out).split())
    assert code == 1 and "is still in use after 3 s by 1 session" in text, text
    assert "set ATLAS_SWAP_SESSIONS=end" in text and "was not touched." in text, text


def test_a_session_the_staging_role_may_not_end_is_named_with_the_grant(
    staging_in_use, terminal_env, tmp_path
):
    env = {**terminal_env, "ATLAS_SWAP_WAIT_S": "1"}  # then end them: the default
    code, out = _finish(_spawn("atlas restore latest --yes", env, tmp_path))
    text = " ".join(_plain(out).split())
    assert code == 1 and f"Cannot end 1 session: pid {staging_in_use} (" in text, text
    assert "pg_signal_backend" in text and "was not touched." in text, text


def test_ctrl_c_while_a_refresh_waits_says_what_staging_is_left_as(
    staging_in_use, terminal_env, tmp_path
):
    child = _spawn("atlas restore latest --yes", terminal_env, tmp_path)
    child.expect("Waiting up to")
    child.sendintr()
    code, out = _finish(child)
    text = " ".join(_plain(out).split())
    assert code == 130 and "Aborted!" not in text, text
    assert "Interrupted by the operator (Ctrl-C): staging" in text
    assert "was not touched." in text
    [refresh] = [d for d in open_catalog(terminal_env["ATLAS_STATE"]).list_jobs(limit=5)][:1]
    assert refresh.status == DrillStatus.INTERRUPTED
