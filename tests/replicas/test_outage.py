"""A fleet run on two `atlas serve` replicas while the link to their PostgreSQL catalog is
cut for longer than a failover period: every database ends snapshotted or failed with the
truth, no work item stays `running`, the run's one summary comes, and the replicas log
one line per failure, never a traceback."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from psycopg import sql

from bot.catalog import open_catalog
from bot.records import SnapshotStatus, WorkStatus
from tests.support import pick_free_port
from tests.support.catalogs import CatalogServer
from tests.support.helpers import REPO, add_bulk, serve_command, wait_healthy
from tests.support.pg import PgCluster, fill_sample
from tests.support.proxy import tcp_proxy
from tests.support.slack import FakeSlackApi, post_slash_command

pytestmark = pytest.mark.own_catalog

SECRET = "outage-signing-secret"
OUTAGE_S = 15  # longer than a replica's silence may last (ATLAS_FAILOVER_S=6: 12 s)


def _work(server: CatalogServer, schema: str) -> dict[str, str]:
    with server.cluster.connect("atlas_catalogs") as conn:
        rows = conn.execute(
            sql.SQL("SELECT key, status FROM {}.work").format(sql.Identifier(schema))
        )
        return dict(rows.fetchall())


def _closed(items: dict[str, str]) -> dict[str, str] | None:
    return items if items and WorkStatus.RUNNING not in items.values() else None


def _eventually(check, timeout: float, what: str, logs) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s\n{logs()}")


def test_a_fleet_run_outlasts_a_catalog_outage(
    pg: PgCluster, catalog_server: CatalogServer, tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    tag = f"out_{uuid.uuid4().hex[:6]}_"
    names = [f"{tag}{i}" for i in range(5)]
    for name in names:
        pg.create_database(name)
        fill_sample(pg.url(name), rows=500)
        add_bulk(pg.url(name), 4)  # each dump takes a moment: the outage meets the run
    schema, _ = catalog_server.new_url()
    port = catalog_server.cluster.port
    procs: list[subprocess.Popen] = []
    logs = [tmp_path / f"replica-{i}.log" for i in range(2)]

    def output() -> str:
        said = "\n".join(p.read_text(errors="replace")[-4000:] for p in logs if p.exists())
        try:
            rows = open_catalog(catalog_server.url(schema)).list_snapshots(limit=20)
            said += f"\nwork: {_work(catalog_server, schema)}\n"
            said += "\n".join(f"{s.database} {s.status} {s.error}" for s in rows)
        except Exception as exc:  # the report of a failure must not hide it
            said += f"\n(catalog unreadable: {exc})"
        return said

    try:
        with tcp_proxy(port) as proxy:
            state = catalog_server.url(schema).replace(f":{port}/", f":{proxy.port}/")
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("SLACK_", "ATLAS_", "PG", "AWS_", "FAKETIME"))
                and k not in ("DATABASE_URL", "STAGING_DATABASE_URL", "LD_PRELOAD")
            }
            env.update(
                DATABASE_URL=pg.url("postgres"),
                ATLAS_DATABASES=f"{tag}*",
                ATLAS_STORAGE=str(tmp_path / "backups"),
                ATLAS_STATE=state,
                ATLAS_FAILOVER_S="6",
                SLACK_BOT_TOKEN="xoxb-outage-token",
                SLACK_SIGNING_SECRET=SECRET,
                SLACK_API_URL=slack_api.url,
                ATLAS_CHANNEL="CATLAS",
                PYTHONPATH=str(REPO),
            )
            ports = [pick_free_port() for _ in logs]
            for p, log in zip(ports, logs, strict=True):
                with log.open("wb") as out:
                    procs.append(
                        subprocess.Popen(
                            serve_command(p), env=env, stdout=out, stderr=subprocess.STDOUT
                        )
                    )
            for p, proc in zip(ports, procs, strict=True):
                wait_healthy(p, proc, time.time() + 60, output)
            catalog = open_catalog(catalog_server.url(schema))
            code, _ = post_slash_command(
                f"http://127.0.0.1:{ports[0]}",
                SECRET,
                text="snapshot --all",
                channel_id="CATLAS",
                response_url=slack_api.response_url,
            )
            assert code == 200
            _eventually(
                lambda: catalog.list_snapshots(status=SnapshotStatus.OK),
                90,
                "a first snapshot",
                output,
            )
            proxy.refuse()
            time.sleep(OUTAGE_S)
            proxy.restore()
            summary = _eventually(
                lambda: [m for m in slack_api.messages() if "Snapshots: " in str(m.get("text"))],
                120,
                "the run's summary",
                output,
            )
            items = _eventually(
                lambda: _closed(_work(catalog_server, schema)), 60, "every item closed", output
            )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        with pg.connect() as conn:
            conn.autocommit = True
            for name in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    snaps = {s.database: s for s in catalog.list_snapshots(limit=100) if s.kind == "database"}
    assert set(snaps) == set(names), snaps
    said = output()
    for snap in snaps.values():
        assert snap.status in (SnapshotStatus.OK, SnapshotStatus.FAILED), snap
        if snap.status == SnapshotStatus.FAILED:  # the truth, never "Atlas stopped"
            assert "catalog" in (snap.error or "").lower(), snap
    assert len(summary) == 1, summary
    assert len(items) == len(names) and set(items.values()) <= {"done", "failed"}, items
    assert "Traceback" not in said, said
    for log in logs:  # the outage said once by each job that met it, and once that it ended
        text = log.read_text(errors="replace")
        assert text.count(" ERROR ") <= 4 and "the catalog is back after" in text, text
