"""GET /metrics for Prometheus, scraped over HTTP."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime
from importlib.metadata import version as installed_version

from tests.support.rds import rds_client, rds_env, rds_server

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_for_prometheus(bot, pg_db):
    labels = (("database", pg_db), ("environment", "production"))
    before = _scrape(bot.url)
    assert ("atlas_snapshot_last_success_timestamp_seconds", labels) not in before
    assert ("atlas_drill_deadline_timestamp_seconds", labels) in before
    assert before[("atlas_build_info", (("version", installed_version("atlas-backups")),))] == 1

    snap = bot.services.taker.take(requested_by="U1")
    drill = bot.services.restores.run(kind="drill", snap_id=None, requested_by="U1")
    assert drill.status == "passed", drill
    got = _scrape(bot.url)
    finished = datetime.fromisoformat(snap.finished_at).timestamp()
    assert got[("atlas_snapshot_last_success_timestamp_seconds", labels)] == finished
    assert got[("atlas_snapshot_last_size_bytes", labels)] == snap.size_bytes
    assert got[("atlas_snapshot_last_duration_seconds", labels)] == snap.duration_s
    assert got[("atlas_snapshots", (*labels, ("status", "ok")))] == 1
    drilled = datetime.fromisoformat(drill.finished_at)
    assert got[("atlas_drill_last_success_timestamp_seconds", labels)] == drilled.timestamp()
    assert got[("atlas_drill_last_total_seconds", labels)] == drill.total_s
    # the drill answered this quarter, so the next one is owed: due when the one after starts
    year, q = divmod(drilled.year * 4 + (drilled.month - 1) // 3 + 2, 4)
    due = datetime(year, q * 3 + 1, 1, tzinfo=UTC)
    assert got[("atlas_drill_deadline_timestamp_seconds", labels)] == due.timestamp()
