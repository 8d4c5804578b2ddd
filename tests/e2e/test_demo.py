"""`atlas demo` at a real terminal: a passing drill with nothing set up, and nothing left
behind afterwards, Ctrl-C included."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.sqlite_only  # the demo keeps its own catalog file


REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ATLAS_", "PG", "AWS_"))
        and k not in ("DATABASE_URL", "STAGING_DATABASE_URL")
    }
    env.update(PYTHONPATH=str(REPO), TERM="xterm-256color", **extra)
    return env


def _leftovers() -> tuple[list[str], list[str]]:
    """The demo's servers still running, and its temporary folders still there."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    servers = [ln for ln in ps.splitlines() if "atlas-demo-pg-" in ln and "postgres" in ln]
    folders = glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "atlas-demo-*"))
    return servers, folders


@pytest.fixture(autouse=True)
def _clean_before() -> None:
    servers, folders = _leftovers()
    assert not servers, f"a demo server from before is still running: {servers}"
    for folder in folders:  # only what an earlier, broken run may have left
        subprocess.run(["rm", "-rf", folder], check=False)


def _spawn(*args: str, **env: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "bot.cli", "demo", *args],
        env=_env(**env),
        encoding="utf-8",
        codec_errors="replace",
        timeout=90,
        dimensions=(40, 120),
    )


def test_the_demo_passes_a_drill_in_under_a_minute_and_cleans_up() -> None:
    started = time.monotonic()
    child = _spawn()
    child.expect(pexpect.EOF)
    child.close()
    out = ANSI.sub("", child.before or "")
    assert child.exitstatus == 0, out
    assert time.monotonic() - started < 60
    assert "Traceback" not in out
    assert "dumping" in out  # the snapshot's progress bar
    assert re.search(r"d-\S+: passed in", out), out
    assert "ok   customers can be found by email: true" in out
    assert "✅ Last snapshot of shop" in out and "✅ Restore drill of shop" in out
    assert "What just happened" in out and "atlas doctor" in out
    assert _leftovers() == ([], [])


def test_keep_leaves_the_artifacts_and_catalog_to_look_at(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    child = _spawn("--keep", str(kept))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    artifacts = list((kept / "backups").rglob("*.dump.zst.age"))
    assert len(artifacts) == 1 and (kept / "atlas.db").is_file()
    listed = subprocess.run(
        [sys.executable, "-m", "bot.cli", "list", "--json"],
        env=_env(ATLAS_STATE=str(kept / "atlas.db"), ATLAS_STORAGE=str(kept / "backups")),
        capture_output=True,
        text=True,
    )
    assert artifacts[0].name.startswith(listed.stdout.split('"id": "')[1][:20])
    assert _leftovers()[0] == []  # the server is stopped all the same


def test_ctrl_c_stops_the_server_and_removes_the_folders() -> None:
    child = _spawn()
    child.expect(r"\[2/6\]")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    out = ANSI.sub("", child.before or "")
    assert child.exitstatus == 130 or child.signalstatus is not None, out
    assert "Traceback" not in out
    deadline = time.time() + 10
    while _leftovers() != ([], []) and time.time() < deadline:
        time.sleep(0.2)
    assert _leftovers() == ([], [])


def test_without_server_binaries_it_says_what_to_install(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        env=_env(ATLAS_PG_BINDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "has no initdb and pg_ctl" in lines[0]
    assert "apt-get install postgresql" in lines[0]
