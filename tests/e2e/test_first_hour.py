"""What surprised a newcomer in their first hour, each tried as they met it: output that
mixes log lines in, silence where a word was due, Slack's syntax in a terminal, a hint
that names another tool, binary on a terminal, a password's '@'."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pexpect
import psycopg
import pytest

from tests.support.helpers import REPO, cli_env, run_cli
from tests.support.pg import LeastPrivilege, PgCluster, fill_sample


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture
def snapped(pg_url: str, tmp_path: Path) -> tuple[dict[str, str], dict]:
    fill_sample(pg_url, rows=200)
    env = cli_env(tmp_path, DATABASE_URL=pg_url)
    run = run_cli(["snapshot", "--json"], env, tmp_path, text=True)
    assert run.returncode == 0, run.stderr
    return env, json.loads(run.stdout)


def test_a_damaged_snapshot_is_one_error_line_without_log_lines(snapped, tmp_path):
    env, snap = snapped
    stored = Path(snap["location"])
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    run = run_cli(["verify", snap["id"]], env, tmp_path, text=True)
    assert run.returncode == 1
    assert "WARNING" not in run.stderr
    _one_error_line(run.stderr)
    loud = run_cli(["-v", "verify", snap["id"]], env, tmp_path, text=True)
    assert "WARNING bot.backup.read" in loud.stderr  # -v still logs it


def test_fetch_to_a_terminal_is_refused_and_writes_nothing(snapped, tmp_path):
    env, snap = snapped
    child = pexpect.spawn(
        sys.executable,
        ["-m", "bot.cli", "fetch", snap["id"], "-o", "-"],
        env={**env, "TERM": "xterm"},
        cwd=str(tmp_path),
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
    )
    child.expect(pexpect.EOF)
    child.close()
    out = child.before or ""
    assert child.exitstatus == 1 and "PGDMP" not in out, out
    assert "Refusing to write a binary dump to the terminal" in out and "-o FILE" in out


def test_list_says_when_there_is_nothing_and_refuses_an_unknown_database(pg_url, tmp_path):
    env = cli_env(tmp_path, DATABASE_URL=pg_url)
    empty = run_cli(["list"], env, tmp_path, text=True)
    assert empty.returncode == 0 and empty.stdout == ""
    assert "No snapshots yet. Take one: atlas snapshot" in empty.stderr
    typo = run_cli(["list", "--db", "nosuch"], env, tmp_path, text=True)
    assert typo.returncode == 1
    line = _one_error_line(typo.stderr)
    assert "'nosuch'" in line and "configured: " in line


def test_cli_hints_name_cli_commands_not_slack_ones(pg_url, staging, pg, tmp_path):
    env = cli_env(tmp_path, DATABASE_URL=pg_url, STAGING_DATABASE_URL=pg.url(staging))
    run = run_cli(["drill", "--yes"], env, tmp_path, text=True)
    line = _one_error_line(run.stderr)
    assert "atlas snapshot" in line and "`/atlas" not in line, line


def test_a_missing_key_file_names_atlas_keygen(pg_url, tmp_path):
    env = cli_env(tmp_path, DATABASE_URL=pg_url, ATLAS_ENCRYPTION_KEY_FILE=str(tmp_path / "no"))
    line = _one_error_line(run_cli(["snapshot"], env, tmp_path, text=True).stderr)
    assert "atlas keygen -o FILE" in line, line


def test_doctor_leaves_nothing_in_the_backup_folder(pg_url, tmp_path):
    env = cli_env(tmp_path, DATABASE_URL=pg_url)
    run_cli(["doctor"], env, tmp_path, text=True)
    assert list((tmp_path / "backups").iterdir()) == []


def test_an_unencoded_at_in_a_password_is_named_with_the_fix(pg: PgCluster, pg_db, tmp_path):
    url = f"postgresql://{pg.superuser}:Cat@log pw@{pg.host}:{pg.port}/{pg_db}"
    env = cli_env(tmp_path, DATABASE_URL=url)
    line = _one_error_line(run_cli(["snapshot"], env, tmp_path, text=True).stderr)
    assert "unencoded '@'" in line and "%40" in line and "log pw" not in line, line
    listed = json.loads(run_cli(["list", "--json"], env, tmp_path, text=True).stdout or "[]")
    assert [r["database"] for r in listed] in ([], [pg_db])  # never a made-up "main"


def test_a_refresh_warning_is_in_the_audit_entry(
    pg: PgCluster, pg_url: str, least_privilege: LeastPrivilege, tmp_path: Path
):
    """A forgotten psql session on staging: the swap waits ATLAS_SWAP_WAIT_S, ends it, and
    says so in the result and in the audit entry."""
    fill_sample(pg_url, rows=50)
    env = cli_env(
        tmp_path,
        DATABASE_URL=least_privilege.reader_url,
        STAGING_DATABASE_URL=least_privilege.owner_url,
        ATLAS_SWAP_WAIT_S="1",
    )
    assert run_cli(["snapshot"], env, tmp_path).returncode == 0
    forgotten = psycopg.connect(least_privilege.owner_url, application_name="psql")
    try:
        pid = forgotten.info.backend_pid
        done = run_cli(["restore", "latest", "--yes"], env, tmp_path, text=True)
    finally:
        forgotten.close()  # ended by the swap: closing it raises nothing
    assert done.returncode == 0, done.stderr
    assert f"session ended for the swap: pid {pid}" in done.stdout
    audit = json.loads(run_cli(["audit", "--json"], env, tmp_path, text=True).stdout)
    [entry] = [a for a in audit if a["action"] == "restore.passed"]
    warnings = json.loads(entry["detail"])["warnings"]  # detail: the JSON text, as stored
    assert any(f"pid {pid} ({least_privilege.owner}, psql" in w for w in warnings), warnings


def _snapshot_as_reader(pg_url: str, least_privilege: LeastPrivilege, tmp_path: Path) -> dict:
    """The sample schema snapshotted by the read-only role; drills go to the staging
    server as the CREATEDB-only role. The environment, for the commands that follow."""
    fill_sample(pg_url, rows=50)
    env = cli_env(
        tmp_path,
        DATABASE_URL=least_privilege.reader_url,
        STAGING_DATABASE_URL=least_privilege.stager_url,
    )
    assert run_cli(["snapshot"], env, tmp_path).returncode == 0
    return env


def test_the_console_shows_who_rejected_and_answers_a_late_approval(
    pg_url: str, least_privilege: LeastPrivilege, tmp_path: Path
) -> None:
    env = _snapshot_as_reader(pg_url, least_privilege, tmp_path)
    c = pexpect.spawn(
        sys.executable,
        ["-m", "bot.cli", "console"],
        env={**env, "PYTHONPATH": str(REPO)},
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
        dimensions=(40, 140),
    )
    c.expect("you> ")
    c.sendline("/atlas drill")
    c.expect(r"✋ Restore drill requested")
    c.expect("atlas reacted :x: on #")  # the request knows its message from here
    c.sendline(":x: @carol")
    c.expect(r"Why: rejected by @carol")
    c.sendline(":white_check_mark: @dave")
    c.expect("already rejected, so your approval changes nothing")
    c.sendline("/quit")
    c.expect(pexpect.EOF)
    c.close()
    assert "<@carol>" not in (c.before or "")
    assert os.path.exists(tmp_path / "backups")


def test_atlas_help_says_what_atlas_is_for(tmp_path):
    said = " ".join(run_cli(["--help"], cli_env(tmp_path), tmp_path, text=True).stdout.split())
    for words in ("drills", "refreshes", "approval in Slack", "atlas demo", "atlas doctor"):
        assert words in said, said


def test_a_drill_is_aimed_with_db_and_says_what_it_drilled(pg, pg_db, pg_url, staging, tmp_path):
    """Two databases: `status` names the one without a drill with the --db that drills it,
    and the drill says which database it drilled."""
    other = f"{pg_db}_two"
    pg.create_database(other)
    try:
        fill_sample(pg_url, rows=20)
        fill_sample(pg.url(other), rows=20)
        config = tmp_path / "atlas.toml"
        config.write_text(
            f'[databases.app]\nurl = "{pg_url}"\nstaging_url = "{pg.url(staging)}"\n'
            f'[databases.billing]\nurl = "{pg.url(other)}"\nstaging_url = "{pg.url(staging)}"\n'
        )
        env = cli_env(tmp_path, ATLAS_CONFIG=str(config))
        for db in ("app", "billing"):
            assert run_cli(["snapshot", "--db", db], env, tmp_path).returncode == 0
        status = " ".join(
            run_cli(["status", "--no-provider"], env, tmp_path, text=True).stdout.split()
        )
        assert "run atlas drill --db billing" in status, status
        done = run_cli(["drill", "--yes", "--db", "billing"], env, tmp_path, text=True)
        assert done.returncode == 0, done.stderr
        assert ": drill of billing from " in done.stdout and ": passed in" in done.stdout
        typo = run_cli(["drill", "--yes", "--db", "biling"], env, tmp_path, text=True)
        assert typo.returncode == 1 and "configured: app, billing" in typo.stderr
    finally:
        pg.drop_database(other)


def test_drills_lists_a_refresh_and_a_drill_each_as_what_it_is(
    pg_url: str, least_privilege: LeastPrivilege, tmp_path: Path
) -> None:
    env = _snapshot_as_reader(pg_url, least_privilege, tmp_path)
    into_staging = {**env, "STAGING_DATABASE_URL": least_privilege.owner_url}
    refresh = run_cli(["restore", "latest", "--yes", "--json"], into_staging, tmp_path, text=True)
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    drill = run_cli(["drill", "--yes", "--json"], env, tmp_path, text=True)
    assert drill.returncode == 0, drill.stderr
    listed = json.loads(run_cli(["drills", "--json"], env, tmp_path, text=True).stdout)
    ids = (json.loads(drill.stdout)["id"], json.loads(refresh.stdout)["id"])
    assert [(j["kind"], j["id"]) for j in listed] == [("drill", ids[0]), ("restore", ids[1])]
    assert listed[0]["scratch_dropped"] == 1 and listed[0]["scratch_db"]
    assert "scratch_db" not in listed[1] and listed[1]["status"] == "passed"
    shown = run_cli(["drills"], env, tmp_path, text=True).stdout
    assert re.search(rf"{ids[0]}\s+drill\s", shown), shown  # the table names each kind
    assert re.search(rf"{ids[1]}\s+restore\s", shown), shown
