"""`atlas doctor`: one line per check, a fix for every ❌, exit 1 on any, no secret shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.catalogs import state_for
from tests.support.helpers import serve_command, wait_healthy
from tests.support.pg import LeastPrivilege, fill_realistic
from tests.support.s3 import S3_REGION

REPO = Path(__file__).resolve().parents[2]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ATLAS_", "PG"))
        and k not in ("DATABASE_URL", "STAGING_DATABASE_URL")
    }
    env.update(ATLAS_STORAGE=str(tmp / "backups"), ATLAS_STATE=state_for(tmp), PYTHONPATH=str(REPO))
    env.update(extra)
    return env


def _doctor(env: dict[str, str], *args: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    doc = json.loads(proc.stdout) if "--json" in args else {}
    return proc.returncode, doc, proc.stdout + proc.stderr


def _by_name(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["checks"]}


def test_a_good_least_privilege_setup_passes(
    pg_url: str, least_privilege: LeastPrivilege, tmp_path: Path, key_file
) -> None:
    fill_realistic(pg_url)
    key, recipient = key_file
    env = _env(
        tmp_path,
        DATABASE_URL=least_privilege.reader_url,
        STAGING_DATABASE_URL=least_privilege.stager_url,
        ATLAS_ENCRYPTION_KEY_FILE=str(key),
        ATLAS_SNAPSHOT_SCHEDULE="0 3 * * *",
        ATLAS_TIMEZONE="Europe/Berlin",
    )
    code, doc, out = _doctor(env, "--json")
    assert code == 0 and doc["ok"] is True, out
    checks = _by_name(doc)
    db = least_privilege.production
    assert "all 24 tables readable" in checks[f"database {db}"]["detail"]
    assert checks[f"pg_dump for {db}"]["status"] == "ok"
    assert checks[f"drills of {db}"]["status"] == "ok"
    refreshes = checks[f"refreshes of {db}"]
    assert refreshes["status"] == "warn"  # the stager owns no database
    assert f"ALTER DATABASE postgres OWNER TO {least_privilege.stager}" in refreshes["detail"]
    assert "write, read back and delete work" in checks["storage"]["detail"]
    assert recipient in checks["encryption"]["detail"]
    assert "next run" in checks["schedule"]["detail"] and "CET" in checks["schedule"]["detail"]
    assert "schema version" in checks["catalog"]["detail"]
    assert "cat-pw" not in out  # a PostgreSQL catalog's password (tests/support/catalogs.py)
    assert least_privilege.password not in out
    assert not (tmp_path / "backups" / ".atlas-doctor").exists() or not any(
        (tmp_path / "backups" / ".atlas-doctor").iterdir()
    )

    code, _, text = _doctor(env)
    assert code == 0
    assert text.splitlines()[0].startswith("✅ catalog:")


def test_every_problem_is_a_line_with_its_fix(
    pg, pg_url: str, least_privilege: LeastPrivilege, tmp_path: Path
) -> None:
    fill_realistic(pg_url)
    partial = f"partial_{least_privilege.reader}"
    pg.create_role(partial, least_privilege.password)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(  # a staging role that owns staging but may not create databases
                sql.SQL("ALTER ROLE {} NOCREATEDB").format(sql.Identifier(least_privilege.owner))
            )
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA app TO {}").format(sql.Identifier(partial)))
            conn.execute(
                sql.SQL("GRANT SELECT ON app.customers TO {}").format(sql.Identifier(partial))
            )
        readonly = tmp_path / "readonly"
        readonly.mkdir()
        readonly.chmod(0o555)
        env = _env(
            tmp_path,
            DATABASE_URL=least_privilege.url(partial, least_privilege.production),
            STAGING_DATABASE_URL=least_privilege.url(least_privilege.owner, "postgres"),
            ATLAS_STORAGE=str(readonly / "sub"),
        )
        code, doc, out = _doctor(env, "--json")
        assert code == 1 and doc["ok"] is False
        checks = _by_name(doc)
        db = least_privilege.production
        unreadable = checks[f"database {db}"]
        assert unreadable["status"] == "fail" and "cannot be read" in unreadable["detail"]
        assert "GRANT pg_read_all_data" in unreadable["detail"]
        assert checks[f"drills of {db}"]["status"] == "fail"
        assert "CREATEDB" in checks[f"drills of {db}"]["detail"]
        if os.geteuid() != 0:  # root writes anywhere: the folder is no obstacle then
            assert checks["storage"]["status"] == "fail"
        assert checks["encryption"]["status"] == "warn"
        assert least_privilege.password not in out
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(partial)))
        pg.drop_role(partial)


def test_a_broken_configuration_is_a_finding(tmp_path: Path) -> None:
    env = _env(
        tmp_path, DATABASE_URL="postgresql://a:Pw-doc-1@127.0.0.1:1/app", ATLAS_ZSTD_LEVEL="fast"
    )
    code, doc, out = _doctor(env, "--json")
    assert code == 1 and doc["checks"][0]["name"] == "configuration"
    assert "ATLAS_ZSTD_LEVEL" in doc["checks"][0]["detail"] and "Pw-doc-1" not in out


def test_unreachable_database_says_so_without_the_password(tmp_path: Path) -> None:
    env = _env(tmp_path, DATABASE_URL="postgresql://a:Pw-doc-2@127.0.0.1:1/app?connect_timeout=2")
    code, doc, out = _doctor(env, "--json")
    assert code == 1
    assert "Cannot connect to 127.0.0.1:1/app" in _by_name(doc)["database app"]["detail"]
    assert "Pw-doc-2" not in out


def test_s3_storage_and_its_server_side_encryption(
    pg_url: str, tmp_path: Path, s3_env: str, s3_server: str
) -> None:
    env = _env(
        tmp_path,
        DATABASE_URL=pg_url,
        ATLAS_STORAGE=f"s3://{s3_env}/atlas",
        ATLAS_S3_SSE="AES256",
        AWS_ENDPOINT_URL=s3_server,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=S3_REGION,
    )
    code, doc, out = _doctor(env, "--json", "--no-slack")
    checks = _by_name(doc)
    assert checks["storage"]["status"] == "ok", out
    assert checks["storage encryption"] == {
        "name": "storage encryption",
        "status": "ok",
        "detail": "S3 applies AES256 to uploads",
    }


def test_slack_token_scopes_channel_and_groups(pg_url: str, tmp_path: Path, slack_api) -> None:
    slack_api.channels["CIN"] = {"name": "ops", "is_member": True}
    slack_api.channels["COUT"] = {"name": "elsewhere", "is_member": False}
    slack_api.set_usergroup("SDBA", ["U1", "U2"])
    base = _env(
        tmp_path,
        DATABASE_URL=pg_url,
        SLACK_BOT_TOKEN="xoxb-doctor-token-1",
        SLACK_API_URL=slack_api.url,
        ATLAS_APPROVERS="U9,SDBA",
    )
    code, doc, out = _doctor({**base, "ATLAS_CHANNEL": "CIN"}, "--json")
    checks = _by_name(doc)
    assert checks["slack"]["status"] == "ok" and checks["slack scopes"]["status"] == "ok", out
    assert checks["slack channel"]["detail"] == "the bot is in #ops"
    assert checks["approvers"]["detail"] == "user group SDBA: 2 members"
    assert "xoxb-doctor-token-1" not in out

    slack_api.scopes = [s for s in slack_api.scopes if s != "reactions:read"]
    code, doc, _ = _doctor({**base, "ATLAS_CHANNEL": "COUT"}, "--json")
    checks = _by_name(doc)
    assert code == 1
    assert "lacks reactions:read" in checks["slack scopes"]["detail"]
    assert "`/invite @atlas`" in checks["slack channel"]["detail"]

    slack_api.fail_next("auth.test", "invalid_auth")
    code, doc, _ = _doctor({**base, "ATLAS_CHANNEL": "CIN"}, "--json")
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in _by_name(doc)["slack"]["detail"]


@pytest.mark.parametrize("mode", ["http"])
def test_serve_posts_what_is_broken_at_start(
    pg_url: str, least_privilege: LeastPrivilege, tmp_path: Path, slack_api, mode: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} NOCREATEDB").format(sql.Identifier(least_privilege.owner))
        )
    env = _env(
        tmp_path,
        DATABASE_URL=least_privilege.reader_url,
        STAGING_DATABASE_URL=least_privilege.url(least_privilege.owner, "postgres"),
        SLACK_BOT_TOKEN="xoxb-serve-doctor",
        SLACK_SIGNING_SECRET="serve-doctor-secret",
        SLACK_API_URL=slack_api.url,
        ATLAS_CHANNEL="CATLAS",
    )
    from tests.support import pick_free_port

    port = pick_free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(serve_command(port), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, proc, time.time() + 30, log.read_text)
        post = slack_api.wait_for(
            lambda c: "started with problems" in str(c["params"].get("text")), timeout=30
        )
        text = post["params"]["text"]
        assert f"drills of {least_privilege.production}" in text and "CREATEDB" in text
        assert least_privilege.password not in slack_api.all_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
