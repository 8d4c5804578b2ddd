"""Daily housekeeping: retention and pins applied, provider (RDS) checks alerted once a
day, and every job run and audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.config import load_settings
from bot.errors import AtlasError
from bot.ops import housekeeping
from tests.support.catalogs import state_for
from tests.support.faketime import faked, needs_faketime
from tests.support.helpers import services_for, settings_for, storage_files
from tests.support.ops import CHANNEL, age_snapshot, atlas, audit_actions, closed_port_url, posts
from tests.support.rds import create_instance, rds_client, rds_env, rds_server, unique

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest


# -- 3. retention, pins and prune ------------------------------------------------------------------


def test_prune_keeps_pinned_requested_and_newest_and_deletes_the_rest(
    small, pg, pg_db, pg_url, staging, tmp_path, slack_api
):
    extra = {
        "STAGING_DATABASE_URL": pg.url(staging),
        "ATLAS_APPROVERS": "U_ANN",
        "ATLAS_CHANNEL": CHANNEL,
    }
    settings = settings_for(pg_url, tmp_path, **extra)
    services = services_for(settings, slack_api.client())
    snaps = [services.taker.take(requested_by="U1").id for _ in range(5)]
    pinned, requested, old1, old2, newest = snaps
    for snap_id, days in zip(snaps, (70, 60, 50, 45, 40), strict=True):
        age_snapshot(services, snap_id, days)
    # a failed snapshot of the same database (nothing to restore from, whatever its age)
    broken = services_for(settings_for(closed_port_url(pg_db), tmp_path))
    with pytest.raises(AtlasError):
        broken.taker.take(requested_by="U1")
    [failed] = [r.id for r in services.catalog.list_snapshots() if r.status == "failed"]

    services.snapshots.pin(pinned, True, actor="U1")
    req = services.ask.request(
        kind="restore", snap_id=requested, requested_by="U_REQ", channel="C1"
    )
    assert req.status == "pending" and req.snapshot_id == requested

    root = tmp_path / "backups"
    files = storage_files(root)
    assert len(files) == 10  # five artifacts and five sidecars
    sidecar = {s: f"production/{pg_db}/{s}.json" for s in snaps}
    artifact = {s: f"production/{pg_db}/{s}.dump.zst" for s in snaps}
    assert set(files) == set(sidecar.values()) | set(artifact.values())

    # dry run: decisions, nothing touched
    plan = {d.snapshot_id: d for d in housekeeping.prune(services, dry_run=True)}
    assert set(plan) == {*snaps, failed}
    assert {s for s, d in plan.items() if not d.keep} == {old1, old2, failed}
    assert plan[pinned].reason == "pinned"
    assert plan[requested].reason == f"named by restore request {req.id}"
    assert plan[newest].reason == f"newest verified snapshot of {pg_db}/production"
    assert plan[old1].reason == plan[old2].reason == "older than 30 days"
    assert plan[failed].reason == "failed snapshot, no artifact to restore"
    assert storage_files(root) == files
    assert {r.status for r in services.catalog.list_snapshots()} == {"ok", "failed"}

    env = {"DATABASE_URL": pg_url, "ATLAS_STORAGE": str(root), "ATLAS_STATE": str(settings.state)}
    res = atlas(tmp_path, "prune", "--dry-run", "--json", env=env)
    assert res.code == 0, res.output
    doc = res.json()
    assert doc["dry_run"] is True
    assert {d["snapshot_id"]: (d["keep"], d["reason"]) for d in doc["decisions"]} == {
        s: (d.keep, d.reason) for s, d in plan.items()
    }
    assert storage_files(root) == files

    # keep / unkeep from the command line
    res = atlas(tmp_path, "keep", old1, env=env)
    assert res.code == 0, res.output
    assert f"{old1} is kept until" in res.output
    assert services.snapshots.get(old1).pinned == 1
    kept = {d.snapshot_id: d for d in housekeeping.prune(services, dry_run=True)}
    assert kept[old1].keep and kept[old1].reason == "pinned"
    res = atlas(tmp_path, "unkeep", old1, env=env)
    assert res.code == 0, res.output
    assert "back under the retention policy" in res.output
    assert services.snapshots.get(old1).pinned == 0
    res = atlas(tmp_path, "keep", failed, env=env)
    assert res.code == 1 and "nothing to keep" in res.output
    actions = [(a.action, a.subject) for a in audit_actions(services)]
    assert ("snapshot.keep", old1) in actions and ("snapshot.unkeep", old1) in actions
    assert ("snapshot.keep", pinned) in actions

    # the real thing
    decisions = housekeeping.prune(services)
    assert {d.snapshot_id for d in decisions if not d.keep} == {old1, old2, failed}
    left = storage_files(root)
    for s in (pinned, requested, newest):
        assert artifact[s] in left and sidecar[s] in left
    for s in (old1, old2):
        assert artifact[s] not in left and sidecar[s] not in left
    assert len(left) == 6
    for s in (old1, old2, failed):
        row = services.snapshots.get(s)
        assert row.status == "deleted"
        assert row.error.startswith("pruned: ")
    for s in (pinned, requested, newest):
        assert services.snapshots.get(s).status == "ok"
    pruned = {a.subject: a.detail for a in audit_actions(services) if a.action == "snapshot.pruned"}
    assert set(pruned) == {old1, old2, failed}
    assert pruned[old1]["reason"] == "older than 30 days"
    assert {a.actor for a in audit_actions(services) if a.action == "snapshot.pruned"} == {"atlas"}

    # idempotent: deleted rows are not planned again
    again = housekeeping.prune(services)
    assert {d.snapshot_id for d in again} == {pinned, requested, newest}
    assert all(d.keep for d in again)

    # protection lasts as long as the request is open
    services.catalog.update_request(req.id, status="expired")
    plan = {d.snapshot_id: d for d in housekeeping.prune(services, dry_run=True)}
    assert not plan[requested].keep
    assert plan[pinned].keep and plan[newest].keep


# -- 6. provider (RDS) checks ---------------------------------------------------------------------


def test_provider_check_alerts_once_a_day(pg_url, tmp_path, slack_api, rds_client):
    low = unique("db")
    create_instance(rds_client, low, 7)
    settings = settings_for(pg_url, tmp_path, ATLAS_RDS_INSTANCE=low, ATLAS_CHANNEL=CHANNEL)
    services = services_for(settings, slack_api.client())

    today = datetime.now(UTC)  # one day for both checks, also when the test spans midnight
    status = housekeeping.provider_check(services, at=today)
    assert status is not None and not status.ok
    [alert] = posts(slack_api, ":rotating_light:")
    assert alert["params"]["channel"] == CHANNEL
    text = alert["params"]["text"]
    assert f"`{low}`" in text and "below the policy minimum of 14" in text

    again = housekeeping.provider_check(services, at=today)
    assert again is not None and not again.ok
    assert len(posts(slack_api, ":rotating_light:")) == 1  # once a day
    alerts = [a for a in audit_actions(services) if a.action == "provider.alert"]
    assert len(alerts) == 1 and alerts[0].subject == low
    # the next day it is said again
    housekeeping.provider_check(services, at=today + timedelta(days=1))
    assert len(posts(slack_api, ":rotating_light:")) == 2

    good = unique("db")
    create_instance(rds_client, good, 21)
    ok_services = services_for(
        settings_for(pg_url, tmp_path, ATLAS_RDS_INSTANCE=good, ATLAS_CHANNEL=CHANNEL),
        slack_api.client(),
    )
    ok = housekeeping.provider_check(ok_services)
    assert ok is not None and ok.ok and ok.retention_days == 21
    assert len(posts(slack_api, ":rotating_light:")) == 2

    missing = unique("gone")
    gone = services_for(
        settings_for(pg_url, tmp_path, ATLAS_RDS_INSTANCE=missing, ATLAS_CHANNEL=CHANNEL),
        slack_api.client(),
    )
    assert housekeeping.provider_check(gone) is None
    [alert] = posts(slack_api, f"`{missing}`")
    assert f"No RDS instance named {missing}" in alert["params"]["text"]
    # not configured: nothing to check, nothing said
    assert housekeeping.provider_check(services_for(settings_for(pg_url, tmp_path))) is None


@needs_faketime
def test_provider_alert_is_once_a_day_across_processes(pg_url, tmp_path, slack_api, rds_client):
    """Two processes on one day alert once, a third on the next day again. The clock is
    libfaketime's: a run that spanned midnight once saw two alerts, rightly."""
    low = unique("db")
    create_instance(rds_client, low, 7)
    env = {
        "DATABASE_URL": pg_url,
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": state_for(tmp_path),
        "ATLAS_RDS_INSTANCE": low,
        "ATLAS_CHANNEL": CHANNEL,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": slack_api.url,
    }
    days = [("2026-11-16 10:00:00", 1), ("2026-11-16 23:00:00", 1), ("2026-11-17 00:30:00", 2)]
    for seed, (when, alerts) in enumerate(days, 1):  # another hash seed: another process
        run_env = faked(when, {**env, "PYTHONHASHSEED": str(seed)})
        res = atlas(tmp_path, "status", "--json", env=run_env, aws=True)
        assert res.code == 1, res.output
        assert "below the policy minimum of 14" in res.output
        assert len(posts(slack_api, ":rotating_light:")) == alerts, when


def test_snapshot_with_provider_starts_a_tagged_rds_snapshot(pg_url, small, tmp_path, rds_client):
    name = unique("db")
    create_instance(rds_client, name, 21)
    env = {
        "DATABASE_URL": pg_url,
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": state_for(tmp_path),
        "ATLAS_RDS_INSTANCE": name,
    }
    res = atlas(
        tmp_path, "snapshot", "--provider", "--json", "--note", "pre-deploy", env=env, aws=True
    )
    assert res.code == 0, res.output
    row = res.json()
    assert row["status"] == "ok"
    assert row["provider_snapshot"] == f"atlas-{row['id']}"
    [snap] = rds_client.describe_db_snapshots(DBSnapshotIdentifier=row["provider_snapshot"])[
        "DBSnapshots"
    ]
    assert snap["DBInstanceIdentifier"] == name
    tags = rds_client.list_tags_for_resource(ResourceName=snap["DBSnapshotArn"])["TagList"]
    assert {"Key": "created-by", "Value": "atlas"} in tags
    services = services_for(load_settings(env))
    assert services.snapshots.get(row["id"]).provider_snapshot == row["provider_snapshot"]
    [entry] = [a for a in audit_actions(services) if a.action == "provider.snapshot"]
    assert entry.subject == row["id"]

    # no provider configured: refused before any work, with what to set
    plain = {k: v for k, v in env.items() if k != "ATLAS_RDS_INSTANCE"}
    res = atlas(tmp_path, "snapshot", "--provider", "--json", env=plain, aws=True)
    assert res.code == 1
    error = res.json()["error"]
    assert "--provider needs a provider: nothing was started" in error
    assert "ATLAS_RDS_INSTANCE" in error
    assert len(services.snapshots.recent()) == 1


def test_provider_failure_still_finishes_the_snapshot_message(
    pg_url, small, tmp_path, slack_api, rds_env
):
    missing = unique("gone")
    settings = settings_for(pg_url, tmp_path, ATLAS_RDS_INSTANCE=missing, ATLAS_CHANNEL=CHANNEL)
    services = services_for(settings, slack_api.client())
    with pytest.raises(AtlasError, match="No RDS instance named"):
        services.reported.take(requested_by="U1", provider=True)
    [row] = services.snapshots.recent()
    assert row.status == "ok"  # our own snapshot is stored and verified
    [err] = posts(slack_api, "is stored, but the provider snapshot failed")
    assert f"No RDS instance named {missing}" in err["params"]["text"]
    started = services.snapshots.get(row.id)
    final = slack_api.message(started.slack_channel, started.slack_ts)
    assert final is not None
    assert not final["text"].startswith(":hourglass_flowing_sand:"), final["text"]


# -- 9. daily housekeeping ------------------------------------------------------------------------


def test_daily_runs_every_job_and_audits(pg, pg_url, small, staging, tmp_path, slack_api):
    settings = settings_for(
        pg_url,
        tmp_path,
        STAGING_DATABASE_URL=pg.url(staging),
        ATLAS_APPROVERS="U_ANN",
        ATLAS_CHANNEL=CHANNEL,
    )
    services = services_for(settings, slack_api.client())
    old = services.taker.take(requested_by="U1").id
    new = services.taker.take(requested_by="U1").id
    age_snapshot(services, old, 90)
    req = services.ask.request(kind="drill", snap_id=new, requested_by="U_REQ", channel="C1")
    services.catalog.update_request(
        req.id, expires_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    )

    result = housekeeping.daily(services)
    assert set(result) >= {"reminders", "pruned", "provider", "expired"}
    assert result["pruned"] == [old]
    assert result["expired"] == [req.id]
    assert result["provider"] is None
    assert isinstance(result["reminders"], list)
    assert services.catalog.get_request(req.id).status == "expired"
    assert services.snapshots.get(old).status == "deleted"
    [ran] = [a for a in audit_actions(services) if a.action == "housekeeping.ran"]
    detail = ran.detail
    assert ran.actor == "atlas" and ran.subject == "daily"
    assert detail["pruned"] == [old] and detail["expired"] == [req.id]

    again = housekeeping.daily(services)
    assert again["pruned"] == [] and again["expired"] == []
    assert again["reminders"] == []
    assert len([a for a in audit_actions(services) if a.action == "housekeeping.ran"]) == 2
