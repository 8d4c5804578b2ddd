"""`atlas status` and `/atlas status`: the checklist, true about what exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.config import load_settings
from bot.ops import housekeeping, status
from tests.support.catalogs import state_for
from tests.support.helpers import services_for, settings_for
from tests.support.ops import age_drill, age_snapshot, atlas
from tests.support.rds import rds_client, rds_env, rds_server

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest


# -- 7. status ------------------------------------------------------------------------------------


def _status(tmp_path: Path, env: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, dict]]:
    res = atlas(tmp_path, "status", "--json", "--no-provider", env=env)
    doc = res.json()
    return res.code, doc, {c["key"]: c for c in doc["checks"]}


def test_status_checklist_from_the_command_line(
    pg, pg_db, pg_url, small, staging, tmp_path, key_file
):
    key, recipient = key_file
    env = {
        "DATABASE_URL": pg_url,
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": state_for(tmp_path),
    }
    code, doc, checks = _status(tmp_path, env)
    assert code == 1 and doc["status"] == "fail"
    assert checks[f"snapshot:{pg_db}"]["level"] == "fail"
    assert checks[f"snapshot:{pg_db}"]["detail"] == "none yet"
    assert checks[f"drill:{pg_db}"]["level"] == "fail"
    assert "no passed drill yet" in checks[f"drill:{pg_db}"]["detail"]
    # local and unencrypted: a warning, since only the disk's own encryption could be
    # at work; what fails the checklist is what is known to be wrong
    assert checks["encryption"]["level"] == "warn"
    assert "ATLAS_ENCRYPTION_KEY_FILE" in checks["encryption"]["detail"]
    assert "`atlas drill`" in checks[f"drill:{pg_db}"]["detail"]  # the CLI's own command
    assert checks["automated"]["level"] == "warn"

    env.update(
        STAGING_DATABASE_URL=pg.url(staging),
        ATLAS_ENCRYPTION_KEY_FILE=str(key),
        ATLAS_SNAPSHOT_SCHEDULE="0 3 * * *",
    )
    services = services_for(load_settings(env))
    snap = services.taker.take(requested_by="U1")
    drill = services.restores.run(kind="drill", snap_id=None, requested_by="U1")
    assert drill.status == "passed", drill

    code, doc, checks = _status(tmp_path, env)
    assert code == 0, doc
    assert doc["status"] == "warn"  # the provider check is not configured
    assert all(c["level"] != "fail" for c in doc["checks"]), doc
    assert checks[f"snapshot:{pg_db}"]["level"] == "ok"
    assert snap.id in checks[f"snapshot:{pg_db}"]["detail"]
    assert "verified" in checks[f"snapshot:{pg_db}"]["detail"]
    assert checks[f"drill:{pg_db}"]["level"] in ("ok", "warn")
    assert checks["encryption"] == {
        "key": "encryption",
        "level": "ok",
        "title": "Encryption at rest",
        "detail": f"the one kept artifact and new ones encrypted with age (to {recipient[:16]}…)",
    }
    assert checks["automated"]["level"] == "warn"  # provider not configured
    assert "`0 3 * * *`" in checks["automated"]["detail"]
    assert "ATLAS_RDS_INSTANCE" in checks["automated"]["detail"]
    assert checks["separation"]["level"] == "ok"

    age_drill(services, drill.id, 200)
    code, doc, checks = _status(tmp_path, env)
    assert code == 1 and doc["status"] == "fail"
    line = checks[f"drill:{pg_db}"]
    assert line["level"] == "fail" and line["detail"].startswith("OVERDUE: ")
    assert [c["key"] for c in doc["checks"] if c["level"] == "fail"] == [f"drill:{pg_db}"]

    # housekeeping now owes an overdue reminder, with the drill button
    posted = housekeeping.drill_reminders(services)
    assert len(posted) == 1 and posted[0].startswith(f"{pg_db}:") and "overdue" in posted[0]
    assert housekeeping.drill_reminders(services) == []  # once


def test_status_says_what_is_true_of_the_artifacts(pg_db, pg_url, small, tmp_path, key_file):
    """A stale last snapshot fails the checklist; the schedule says what stale is; the
    encryption line counts the kept artifacts, not the configuration."""
    key, _ = key_file
    services = services_for(settings_for(pg_url, tmp_path))
    plain = services.taker.take(requested_by="U1")

    def lines(**env: str) -> dict[str, status.Line]:
        s = services_for(settings_for(pg_url, tmp_path, **env))
        return {ln.key: ln for ln in status.evaluate(status.gather(s, check_provider=False))}

    snap_line = f"snapshot:{pg_db}"
    assert lines()[snap_line].level == "ok"
    age_snapshot(services, plain.id, 40)
    stale = lines()[snap_line]
    assert stale.level == "fail" and stale.detail.startswith("STALE: ")
    assert "expected every 24 h" in stale.detail
    weekly = {"ATLAS_SNAPSHOT_SCHEDULE": "0 3 * * 0"}
    age_snapshot(services, plain.id, 5)
    assert lines(**weekly)[snap_line].level == "ok"  # a weekly schedule: 5 days is fine
    age_snapshot(services, plain.id, 10)
    assert lines(**weekly)[snap_line].level == "warn"
    assert lines()[snap_line].level == "fail"

    keyed = services_for(settings_for(pg_url, tmp_path, ATLAS_ENCRYPTION_KEY_FILE=str(key)))
    keyed.taker.take(requested_by="U1")
    enc = lines(ATLAS_ENCRYPTION_KEY_FILE=str(key))["encryption"]
    assert enc.level == "warn", enc
    assert enc.detail.startswith("1 of 2 kept artifacts are not encrypted")
    assert "retention removes them by" in enc.detail
    assert lines()["encryption"].level == "warn"  # no key at all: Atlas encrypts nothing


def test_slash_status_replies_with_the_checklist(bot, pg_db):
    code, body = bot.command("status", user_id="U1")
    assert code == 200 and "Checking" in body
    reply = bot.slack.wait_for(
        lambda c: c["method"] == "response_url" and "Atlas status" in str(c["params"]), timeout=20
    )
    text = reply["params"]["text"]
    assert text.startswith("*Atlas status*")
    assert f"❌ *Last snapshot of {pg_db}*: none yet" in text
    assert f"*Restore drill of {pg_db}*" in text
    assert "*Encryption at rest*" in text
