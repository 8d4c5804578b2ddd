"""Mistyped configuration, run through every command and `atlas serve`: whatever the typo,
a password never reaches stdout, stderr, a log, JSON output, the catalog or Slack, and
every failure is one clear line, never a traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support import pick_free_port
from tests.support.catalogs import SQLITE, catalog_text, state_for
from tests.support.helpers import cli_env, run_cli, serve_command, wait_healthy
from tests.support.pg import PgCluster, fill_sample
from tests.support.slack import post_slash_command

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Typo-Secret-42x"
SIGNING = "typo-signing-secret-77"
TOKEN = "xoxb-typo-bot-token-9911"


def typos(pg: PgCluster, db: str) -> dict[str, str]:
    """URLs as people mistype them; each carries PASSWORD somewhere."""
    host, port, pw = pg.host, pg.port, PASSWORD
    return {
        "scheme": f"postgresq://app:{pw}@{host}:{port}/{db}",
        "no scheme": f"app:{pw}@{host}:{port}/{db}",
        "bad port": f"postgresql://app:{pw}@{host}:99999/{db}",
        "unknown parameter": f"postgresql://app:{pw}@{host}:{port}/{db}?sslmod=require",
        "key=value option": f"host={host} port={port} dbname={db} user=app password={pw} bogus=1",
        "space in password": f"postgresql://app:{pw} x@{host}:{port}/{db}",
        "bad percent": f"postgresql://app:{pw}%zz@{host}:{port}/{db}",
        "open bracket": f"postgresql://app:{pw}@[{host}:{port}/{db}",
        "encoded": f"postgresql://app:{quote(pw + '@/:')}@{host}:{port}/{db}",
        "wrong password": f"postgresql://postgres:{pw}@{host}:{port}/{db}",
    }


def _leaks(text: str) -> bool:
    return PASSWORD in text or quote(PASSWORD) in text


def _catalog_text(tmp: Path) -> str:
    return catalog_text(state_for(tmp))


COMMANDS = {
    "DATABASE_URL": [
        ["list"],
        ["snapshot", "--json"],
        ["snapshot", "--note", "typo"],
        ["-v", "snapshot"],
        ["status", "--json", "--no-provider"],
        ["drill", "--yes", "--json"],
        ["verify", "latest", "--json"],
    ],
    "STAGING_DATABASE_URL": [
        ["-v", "drill", "--yes"],
        ["restore", "latest", "--yes", "--json"],
        ["status", "--no-provider"],
    ],
}


# A PostgreSQL catalog stores the same redacted text a SQLite one does: on it, the commands
# that record a failed job show that it holds no password, in about half the runs.
RECORDING = {
    "DATABASE_URL": [["snapshot", "--json"], ["drill", "--yes", "--json"]],
    "STAGING_DATABASE_URL": [["-v", "drill", "--yes"], ["restore", "latest", "--yes", "--json"]],
}


@pytest.mark.parametrize("setting", ["DATABASE_URL", "STAGING_DATABASE_URL"])
def test_no_command_leaks_a_mistyped_password(
    pg, pg_db, pg_url, tmp_path, slack_api, setting, catalog_backend
):
    fill_sample(pg_url, rows=20)
    commands = COMMANDS[setting] if catalog_backend == SQLITE else RECORDING[setting]
    runs = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        db = pg_db if setting == "DATABASE_URL" else pg_db + "_stg"
        for name, url in typos(pg, db).items():
            tmp = tmp_path / name.replace(" ", "-").replace("=", "")
            tmp.mkdir()
            env = cli_env(
                tmp,
                SLACK_BOT_TOKEN=TOKEN,
                SLACK_API_URL=slack_api.url,
                ATLAS_CHANNEL="CTYPO",
            )
            if setting == "DATABASE_URL":
                env["DATABASE_URL"] = url
                env["ATLAS_DATABASE_NAME"] = "app"
            else:
                env["DATABASE_URL"] = pg_url
                env["STAGING_DATABASE_URL"] = url
                assert (
                    run_cli(["snapshot"], env, tmp, text=True).returncode == 0
                )  # something to restore
            for args in commands:
                runs.append((name, tmp, args, pool.submit(run_cli, args, env, tmp, text=True)))
    for name, tmp, args, future in runs:
        proc = future.result()
        where = f"{setting} {name!r}: atlas {' '.join(args)}"
        assert not _leaks(proc.stdout + proc.stderr), f"{where} leaked: {proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stderr, f"{where}: {proc.stderr}"
        failed_job = proc.returncode != 0 and args[0] != "status"  # status: 1 is a ❌ line
        if failed_job and "-v" not in args and "--json" not in args:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{where}: {proc.stderr}"
        if "--json" in args and proc.returncode != 0:
            doc = json.loads(proc.stdout)  # one JSON document, also when it failed
            assert doc["status"] in ("failed", "fail"), f"{where}: {proc.stdout}"
        assert not _leaks(_catalog_text(tmp)), f"{where}: the catalog holds the password"
    assert not _leaks(slack_api.all_text())
    assert slack_api.calls("chat.postMessage")  # the failures were announced, redacted


@pytest.mark.parametrize("typo", ["scheme", "key=value option", "space in password"])
def test_serve_never_leaks_a_mistyped_password(pg, pg_db, tmp_path, slack_api, typo):
    url = typos(pg, pg_db)[typo]
    env = cli_env(
        tmp_path,
        DATABASE_URL=url,
        STAGING_DATABASE_URL=url.replace(pg_db, pg_db + "_stg"),
        ATLAS_DATABASE_NAME="app",
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SIGNING,
        SLACK_API_URL=slack_api.url,
        ATLAS_CHANNEL="CTYPO",
        ATLAS_APPROVERS="U_ANN",
    )
    port = pick_free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*serve_command(port)[:3], "-v", *serve_command(port)[3:]],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(port, proc, time.time() + 30, log.read_text)
        base = f"http://127.0.0.1:{port}"
        for text in ("snapshot before typo", "status", "drill", "list"):
            code, _ = post_slash_command(
                base, SIGNING, text=text, user_id="U_REQ", response_url=slack_api.response_url
            )
            assert code == 200
        slack_api.wait_for(
            lambda c: "failed" in str(c["params"].get("text", "")).lower(), timeout=20
        )
        slack_api.wait_for(lambda c: "Atlas status" in str(c["params"]), timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    output = log.read_text()
    assert not _leaks(output), output
    assert "Traceback" not in output, output
    assert not _leaks(slack_api.all_text())
    assert not _leaks(_catalog_text(tmp_path))


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("ATLAS_ZSTD_LEVEL", "fast", "ATLAS_ZSTD_LEVEL"),
        ("ATLAS_SNAPSHOT_SCHEDULE", "every night", "cron"),
        ("ATLAS_TIMEZONE", "Europe/Berln", "time zone"),
        ("ATLAS_HOUSEKEEPING_AT", "9am", "HH:MM"),
        ("ATLAS_DRILL_EVERY", "quartr", "quarter"),
        ("ATLAS_S3_SSE", "aes", "AES256"),
        ("ATLAS_RETENTION_DAYS", "-3", "ATLAS_RETENTION_DAYS"),
    ],
)
def test_mistyped_settings_are_one_clear_line(pg_url, tmp_path, name, value, words):
    env = cli_env(tmp_path, DATABASE_URL=pg_url.replace("s3cr3t", PASSWORD), **{name: value})
    proc = run_cli(["status"], env, tmp_path, text=True)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Invalid configuration"), proc.stderr
    assert words in lines[0]
    assert not _leaks(proc.stdout + proc.stderr)
