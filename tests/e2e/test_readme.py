"""A newcomer follows README at a terminal: the Privileges section's SQL, the Quickstart's
exports (the password in ~/.pgpass, as it says), then `doctor`, `snapshot`, `drill` and a
staging refresh, answering the prompts. Nothing may fail that README did not predict.

The commands are read from README itself, so a README that drifts from Atlas fails here.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.support.pg import PgCluster, fill_realistic

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
PASSWORD = "Readme-pw 7@x"  # a space and an '@': ~/.pgpass takes them as they are
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

pytestmark = pytest.mark.sqlite_only  # the Quickstart names no catalog: the default file


def _block(after: str, lang: str) -> str:
    start = README.index(after)
    found = re.search(rf"```{lang}\n(.*?)```", README[start:], re.S)
    assert found, f"no {lang} block after {after!r}"
    return found.group(1)


def privileges_sql() -> list[str]:
    sql = re.sub(r"--[^\n]*", "", _block("## Privileges", "sql"))
    return [s.strip() for s in sql.split(";") if s.strip()]


def quickstart() -> tuple[dict[str, str], list[str]]:
    """README's exports, and its commands, each without its comment."""
    env, commands = {}, []
    for line in _block("**Then your own database**", "bash").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = value.strip("'")
        elif line:
            commands.append(line)
    return env, commands


@pytest.fixture
def readme_roles(pg: PgCluster) -> Iterator[None]:
    """README's roles and databases, made by README's own statements, on the test server."""
    if not pg.execute("postgres", "SELECT 1 FROM pg_database WHERE datname = 'app'"):
        pg.create_database("app")
    fill_realistic(pg.url("app"))
    with pg.connect("postgres") as conn:
        for statement in privileges_sql():
            conn.execute(statement.replace("'…'", f"'{PASSWORD}'"))
    try:
        yield
    finally:
        kept = "SELECT datname FROM pg_database WHERE datdba::regrole::text = 'atlas_staging'"
        for db in (
            "app_staging",
            "atlas_catalog",
            "app",
            *(r[0] for r in pg.execute("postgres", kept)),
        ):
            pg.execute("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        for role in ("atlas_reader", "atlas_staging", "atlas_catalog"):
            if pg.execute("postgres", "SELECT 1 FROM pg_roles WHERE rolname = %s", [role]):
                pg.execute("postgres", f"DROP OWNED BY {role}")  # its grants, as README made
                pg.execute("postgres", f"DROP ROLE {role}")


def _terminal_env(pg: PgCluster, home: Path, exports: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ATLAS_", "PG", "AWS_"))
        and k not in ("DATABASE_URL", "STAGING_DATABASE_URL")
    }
    here = f"127.0.0.1:{pg.port}"
    for name, value in exports.items():
        value = value.replace("db.internal:5432", here).replace("staging.internal:5432", here)
        env[name] = str(home / "backups") if value.startswith("s3://") else value  # "or a folder"
    pgpass = home / ".pgpass"
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    pgpass.write_text(
        "".join(f"127.0.0.1:{pg.port}:*:{r}:{escaped}\n" for r in ("atlas_reader", "atlas_staging"))
    )
    pgpass.chmod(0o600)
    env.update(HOME=str(home), PYTHONPATH=str(REPO), TERM="xterm-256color")
    return env


def _run(command: str, env: dict[str, str], cwd: Path, answer: str | None = None) -> str:
    atlas = f"{sys.executable} -m bot.cli"
    child = pexpect.spawn(
        "/bin/bash",
        ["--noprofile", "--norc", "-c", command.replace("atlas ", f"{atlas} ", 1)],
        env=env,
        cwd=str(cwd),
        encoding="utf-8",
        codec_errors="replace",
        timeout=120,
        dimensions=(40, 120),
    )
    if answer is not None:
        child.expect(r"\[y/N\]")
        child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    out = ANSI.sub("", child.before or "")
    assert child.exitstatus == 0, f"$ {command}\n{out}"
    assert "error:" not in out and "Traceback" not in out, f"$ {command}\n{out}"
    return out


def test_a_newcomer_follows_readme_from_the_quickstart_to_a_refresh(
    pg: PgCluster, readme_roles: None, tmp_path: Path
) -> None:
    exports, commands = quickstart()
    assert commands == ["atlas doctor", "atlas snapshot", "atlas drill"]
    env = _terminal_env(pg, tmp_path, exports)
    work = tmp_path / "work"
    work.mkdir()
    said = _run("atlas doctor", env, work)
    assert "❌" not in said, said
    assert re.search(
        r"drills of app\s*: create and drop scratch databases .* as atlas_staging", said
    )
    assert re.search(
        r"refreshes of app\s*: build a new database beside app_staging .* and swap it in", said
    )
    snapshot = _run("atlas snapshot", env, work)
    snap_id = re.findall(r"\d{8}-\d{6}-[0-9a-f]{4}", snapshot)[-1]
    assert re.search(
        r"d-\S+: drill of \S+ from \S+: passed in", _run("atlas drill", env, work, answer="y")
    )
    # then "Every command": a refresh of staging from that snapshot, as README shows it
    assert re.search(r"^atlas restore 20261124-173208-3f9a\b", README, re.M)
    _run(f"atlas restore {snap_id}", env, work, answer="y")
    tables = pg.execute("app_staging", "SELECT count(*) FROM pg_tables WHERE schemaname = 'app'")
    assert tables[0][0] > 0
    # and back: the staging that refresh replaced (empty, as README's SQL made it)
    assert re.search(r"^atlas restore --undo\b", README, re.M)
    undone = _run("atlas restore --undo", env, work, answer="y")
    assert re.search(r"u-\S+: undo of r-\S+ on app: passed", undone), undone
    tables = pg.execute("app_staging", "SELECT count(*) FROM pg_tables WHERE schemaname = 'app'")
    assert tables[0][0] == 0
