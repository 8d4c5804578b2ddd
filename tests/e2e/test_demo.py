"""`atlas demo` at a real terminal: a passing drill with nothing set up, and nothing left
behind afterwards, Ctrl-C included."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


@pytest.fixture
def tmpdir_of_its_own() -> Iterator[Path]:
    """The demo's TMPDIR: its server and folders are this test's alone, whatever other
    tests run beside it (the postgres user must be able to reach it, as it can /tmp)."""
    folder = Path(tempfile.mkdtemp(prefix="demo-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _leftovers(tmp: Path) -> tuple[list[str], list[str]]:
    """The demo's servers still running, and its temporary folders still there."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    servers = [ln for ln in ps.splitlines() if f"{tmp}/atlas-demo-pg-" in ln and "postgres" in ln]
    return servers, glob.glob(f"{tmp}/atlas-demo-*")


def _spawn(tmp: Path, *args: str, **env: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "bot.cli", "demo", *args],
        env=_env(TMPDIR=str(tmp), **env),
        encoding="utf-8",
        codec_errors="replace",
        timeout=90,
        dimensions=(40, 120),
    )


def test_the_demo_passes_a_drill_in_under_a_minute_and_cleans_up(tmpdir_of_its_own: Path) -> None:
    started = time.monotonic()
    child = _spawn(tmpdir_of_its_own, PGSERVICE="")  # a shell's empty PGSERVICE is no service
    child.expect(pexpect.EOF)
    child.close()
    out = ANSI.sub("", child.before or "")
    assert child.exitstatus == 0, out
    assert time.monotonic() - started < 60
    assert "Traceback" not in out
    assert "dumping" in out  # the snapshot's progress bar
    assert re.search(r"d-\S+: drill of \S+ from \S+: passed in", out), out
    assert "ok   customers can be found by email: true" in out
    assert "✅ Last snapshot of shop" in out and "✅ Restore drill of shop" in out
    assert "What just happened" in out and "atlas doctor" in out
    labels = re.findall(r"\[(\d)/(\d)\]", out)
    assert labels == [(str(n), "7") for n in range(1, 8)], labels  # each step once, in order
    assert "$ atlas snapshot --note 'before migration 0042'" in out  # pastes as it reads
    assert _leftovers(tmpdir_of_its_own) == ([], [])


def test_keep_prints_an_environment_that_reads_what_it_kept(
    tmp_path: Path, tmpdir_of_its_own: Path
) -> None:
    kept = tmp_path / "demo"
    child = _spawn(tmpdir_of_its_own, "--keep", str(kept))
    child.expect(pexpect.EOF)
    child.close()
    out = ANSI.sub("", child.before or "")
    assert child.exitstatus == 0, out
    artifacts = list((kept / "backups").rglob("*.dump.zst.age"))
    assert len(artifacts) == 1 and (kept / "atlas.db").is_file()
    # the commands the demo prints, run as printed, in a shell with nothing else set
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if "To look at it" in ln)
    script = "\n".join(ln.strip() for ln in lines[start + 1 : start + 6])
    assert script.count("export ") == 4 and "atlas fetch latest" in script, script
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "atlas").write_text(f'#!/bin/sh\nexec {sys.executable} -m bot.cli "$@"\n')
    (bin_dir / "atlas").chmod(0o755)
    env = _env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    ran = subprocess.run(["bash", "-ec", script], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert f"ok {artifacts[0].name.split('.')[0]}:" in ran.stdout  # verify read it all back
    assert (kept / "shop.dump").read_bytes()[:5] == b"PGDMP"
    assert _leftovers(tmpdir_of_its_own)[0] == []  # the server is stopped all the same


def test_ctrl_c_stops_the_server_and_removes_the_folders(tmpdir_of_its_own: Path) -> None:
    child = _spawn(tmpdir_of_its_own)
    child.expect(r"\[2/7\]")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    out = ANSI.sub("", child.before or "")
    assert child.exitstatus == 130 or child.signalstatus is not None, out
    assert "Traceback" not in out
    deadline = time.time() + 10
    while _leftovers(tmpdir_of_its_own) != ([], []) and time.time() < deadline:
        time.sleep(0.2)
    assert _leftovers(tmpdir_of_its_own) == ([], [])


def test_ctrl_c_as_it_cleans_up_still_stops_the_server(tmpdir_of_its_own: Path) -> None:
    """A Ctrl-C just after the last line, as the demo stops its server: it said all was
    stopped and removed while the server kept running and its folders stayed."""
    child = _spawn(tmpdir_of_its_own)
    child.expect("atlas console", timeout=120)  # the closing lines: the clean-up follows
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert "Traceback" not in ANSI.sub("", child.before or "")
    deadline = time.time() + 10
    while _leftovers(tmpdir_of_its_own) != ([], []) and time.time() < deadline:
        time.sleep(0.2)
    assert _leftovers(tmpdir_of_its_own) == ([], [])


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
