"""`atlas` at a real terminal: a pseudo-terminal, as a person (or `ID=$(atlas snapshot)` in
an interactive shell) runs it. The progress bar and the confirmation prompt only exist
there, so only a pty can show that they work."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from tests.support.catalogs import state_for
from tests.support.pg import LeastPrivilege, fill_realistic

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
    assert re.search(r"d-\S+: passed in", out), out

    staging_tables = "SELECT count(*) FROM pg_tables WHERE schemaname IN ('app', 'billing')"
    child = _spawn("atlas restore latest", terminal_env, tmp_path)
    child.expect(r"Restore snapshot (\S+) into .*its current content is replaced\)\? \[y/N\]")
    child.sendline("n")
    code, out = _finish(child)
    assert code == 1 and "Aborted" in out, out
    assert pg.execute(least_privilege.staging, staging_tables)[0][0] == 0  # nothing touched

    child = _spawn("atlas restore latest", terminal_env, tmp_path)
    child.expect(r"\[y/N\]")
    child.sendline("y")
    code, out = _finish(child)
    assert code == 0, out
    assert pg.execute(least_privilege.staging, staging_tables)[0][0] == 24
