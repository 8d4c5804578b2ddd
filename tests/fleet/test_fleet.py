"""Fleets on a real server, read by a least-privilege role: every database a selection
takes, picked up as databases appear, reported as they go; one database's failure is its
own; at most ATLAS_MAX_PARALLEL at once; one Slack message per scheduled run."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from psycopg import sql

from bot.ops import housekeeping
from bot.records import Snapshot
from tests.support.helpers import REPO, cli_env, run_cli, services_for, settings_for
from tests.support.ops import CHANNEL
from tests.support.pg import LeastPrivilege, PgCluster, fill_sample


@pytest.fixture
def prefix(pg: PgCluster) -> Iterator[str]:
    """Databases `<prefix>a`, `<prefix>b` and `<prefix>skip`, each with the sample schema;
    every database with the prefix is dropped afterwards."""
    tag = f"fl_{uuid.uuid4().hex[:6]}_"
    for suffix in ("a", "b", "skip"):
        _create(pg, tag + suffix)
    try:
        yield tag
    finally:
        with pg.connect() as conn:
            conn.autocommit = True
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [tag + "%"]
            ).fetchall():
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _create(pg: PgCluster, name: str, rows: int = 40) -> None:
    pg.create_database(name)
    fill_sample(pg.url(name), rows=rows)


def _all(env: dict[str, str]) -> dict:
    proc = run_cli(["snapshot", "--all", "--json"], env, REPO, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert proc.returncode == (1 if doc["status"] == "failed" else 0), proc.stderr
    roles = [s for s in doc["snapshots"] if s["kind"] == "globals"]
    assert [s["database"] for s in roles] == ["default@globals"]  # the server's roles, each run
    doc["snapshots"] = [s for s in doc["snapshots"] if s["kind"] == "database"]
    return doc


def test_all_takes_what_is_selected_picks_up_new_databases_and_reports_gone_ones(
    pg: PgCluster, least_privilege: LeastPrivilege, prefix: str, tmp_path: Path
) -> None:
    reader = least_privilege.url(least_privilege.reader, "postgres")
    env = cli_env(tmp_path, DATABASE_URL=reader, ATLAS_DATABASES=f"{prefix}*, !{prefix}skip")
    a, b, c = prefix + "a", prefix + "b", prefix + "c"

    first = _all(env)
    assert first["status"] == "ok" and not first["failed"] and not first["gone"]
    assert sorted(s["database"] for s in first["snapshots"]) == [a, b]
    assert all(s["verified_at"] and s["status"] == "ok" for s in first["snapshots"])

    _create(pg, c)  # a new service's database: nobody tells Atlas
    second = _all(env)
    assert sorted(s["database"] for s in second["snapshots"]) == [a, b, c]

    pg.drop_database(a)
    third = _all(env)
    assert third["status"] == "ok"  # a database that went is news, not a failure
    assert sorted(s["database"] for s in third["snapshots"]) == [b, c]
    assert third["gone"] == [a]
    listed = json.loads(run_cli(["list", "--json", "--limit", "50"], env, REPO, text=True).stdout)
    assert [r["status"] for r in listed if r["database"] == a] == ["ok", "ok"]  # kept

    status = run_cli(["status"], env, REPO, text=True)
    assert f"{a} is gone" in status.stdout + status.stderr
    assert "Servers" in status.stdout + status.stderr

    # one database by name, and the plain output: a line each, the ids on stdout
    one = run_cli(["snapshot", "--db", b, "--json"], env, REPO, text=True)
    assert one.returncode == 0 and json.loads(one.stdout)["database"] == b
    plain = run_cli(["snapshot", "--all"], env, REPO, text=True)
    assert plain.returncode == 0, plain.stderr
    ids = plain.stdout.split()
    assert len(ids) == 3 and all(i in plain.stderr for i in ids)  # b, c and the roles
    assert f"gone   {a}" in plain.stderr
    assert least_privilege.password not in plain.stdout + plain.stderr + status.stdout


def test_a_database_the_role_cannot_read_fails_alone_and_the_channel_gets_one_message(
    pg: PgCluster, least_privilege: LeastPrivilege, prefix: str, tmp_path: Path, slack_api
) -> None:
    a, b = prefix + "a", prefix + "b"
    pg.execute("postgres", f'REVOKE CONNECT ON DATABASE "{b}" FROM PUBLIC')
    settings = settings_for(
        least_privilege.url(least_privilege.reader, "postgres"),
        tmp_path,
        ATLAS_DATABASES=f"{prefix}*,!{prefix}skip",
        ATLAS_CHANNEL=CHANNEL,
        ATLAS_MAX_PARALLEL="2",
    )
    services = services_for(settings, slack_api.client())
    taken = housekeeping.scheduled_snapshot(services)
    assert [s.database for s in taken] == [a, "default@globals"]

    posts = slack_api.calls("chat.postMessage")
    heads = [p for p in posts if not p["params"].get("thread_ts")]
    assert len(heads) == 1  # one message for the run
    head = heads[0]["params"]["text"]
    assert head.startswith("<!here> :rotating_light: *Scheduled snapshots: 1 of 3 FAILED*")
    assert b in head and "permission denied" in head
    assert least_privilege.password not in slack_api.all_text()
    replies = [p for p in posts if p["params"].get("thread_ts")]
    assert len(replies) == 1 and all(t.id in replies[0]["params"]["text"] for t in taken)
    row = services.catalog.list_snapshots(database=b)[0]
    assert row.status == "failed" and "permission denied" in (row.error or "")


def _most_at_once(rows: list[Snapshot]) -> int:
    edges = []
    for r in rows:
        edges.append((datetime.fromisoformat(r.started_at), 1))
        edges.append((datetime.fromisoformat(r.finished_at or r.started_at), -1))
    most = now = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start
        now += step
        most = max(most, now)
    return most


@pytest.mark.parametrize("limit", [1, 2])
def test_no_more_than_max_parallel_snapshots_run_at_once(
    pg: PgCluster, least_privilege: LeastPrivilege, prefix: str, tmp_path: Path, limit: int
) -> None:
    for suffix in ("c", "d"):
        _create(pg, prefix + suffix, rows=400)
    settings = settings_for(
        least_privilege.url(least_privilege.reader, "postgres"),
        tmp_path,
        ATLAS_DATABASES=f"{prefix}*,!{prefix}skip",
        ATLAS_MAX_PARALLEL=str(limit),
    )
    services = services_for(settings)
    fleet, outcomes = services.fleets.snapshot(requested_by="test")
    assert len(outcomes) == 5 and all(o.snapshot for o in outcomes), outcomes
    rows = [o.snapshot for o in outcomes if o.snapshot and o.snapshot.kind == "database"]
    assert _most_at_once(rows) == limit


def test_a_new_process_learns_the_fleet_at_housekeeping_for_reminders_and_metrics(
    least_privilege: LeastPrivilege, prefix: str, tmp_path: Path, slack_api
) -> None:
    from bot.ops import metrics

    env = {
        "ATLAS_DATABASES": f"{prefix}*,!{prefix}skip",
        "ATLAS_CHANNEL": CHANNEL,
        "ATLAS_REMINDER_LEAD_DAYS": "400",  # whatever today is, the first reminder is due
    }
    reader = least_privilege.url(least_privilege.reader, "postgres")
    first = services_for(settings_for(reader, tmp_path, **env))
    first.fleets.snapshot(requested_by="test")  # good snapshots start each drill obligation

    serve = services_for(settings_for(reader, tmp_path, **env), slack_api.client())
    assert serve.settings.databases == {}  # a fresh `atlas serve` knows none until it lists
    result = housekeeping.daily(serve)
    assert result["databases"] == 2
    reminded = slack_api.all_text()
    assert f"{prefix}a" in reminded and f"{prefix}b" in reminded
    assert f"{prefix}skip" not in reminded
    assert sorted(f.database for f in metrics.gather(serve)) == [f"{prefix}a", f"{prefix}b"]


@pytest.mark.parametrize("scope", ["database", "server"])
def test_the_drill_obligation_per_database_or_as_a_rotation_of_the_server(
    least_privilege: LeastPrivilege, prefix: str, tmp_path: Path, slack_api, scope: str
) -> None:
    from bot.ops import status

    reader = least_privilege.url(least_privilege.reader, "postgres")
    settings = settings_for(
        reader,
        tmp_path,
        ATLAS_DATABASES=f"{prefix}*,!{prefix}skip",
        ATLAS_CHANNEL=CHANNEL,
        ATLAS_DRILL_SCOPE=scope,
        # the quarter that the first snapshots start is due within 60 days; their year is not
        ATLAS_REMINDER_LEAD_DAYS="60",
    )
    services = services_for(settings, slack_api.client())
    services.fleets.snapshot(requested_by="test")
    posted = housekeeping.drill_reminders(services)
    texts = [c["params"]["text"] for c in slack_api.calls("chat.postMessage")]
    a, b = prefix + "a", prefix + "b"
    lines = {
        line.key: line
        for line in status.evaluate(status.gather(services, check_provider=False, surface="cli"))
    }
    if scope == "database":
        assert len(posted) == 2 and {p.split(":")[0] for p in posted} == {a, b}
        assert len(texts) == 2 and any(a in t for t in texts) and any(b in t for t in texts)
        assert lines[f"drill:{a}"].level == lines[f"drill:{b}"].level == "fail"  # never drilled
    else:
        assert len(posted) == 1 and posted[0].startswith("default@rotation:")
        assert len(texts) == 1 and f"Next in the rotation: *{a}*" in texts[0]
        assert "Server default" in texts[0]
        # never drilled, but within their deadlines: the rotation takes them in turn
        assert (
            lines[f"drill:{a}"].level in ("ok", "warn")
            and "next to drill" in lines[f"drill:{a}"].detail
        )
        assert (
            lines[f"drill:{b}"].level == "ok"
            and "drilled at least yearly" in lines[f"drill:{b}"].detail
        )
        assert housekeeping.drill_reminders(services) == []  # once


def test_a_run_of_named_databases_or_without_some(
    least_privilege: LeastPrivilege, prefix: str, tmp_path: Path
) -> None:
    """What a database's own schedule runs, and what the global schedule then leaves out."""
    a, b = prefix + "a", prefix + "b"
    settings = settings_for(
        least_privilege.url(least_privilege.reader, "postgres"),
        tmp_path,
        ATLAS_DATABASES=f"{prefix}*,!{prefix}skip",
    )
    services = services_for(settings)
    _, own = services.fleets.snapshot(requested_by="test", databases=(a,))
    assert [o.database for o in own] == [a]  # no roles snapshot for a single database's run
    _, rest = services.fleets.snapshot(requested_by="test", skip_databases=(a,))
    assert [o.database for o in rest] == [b, "default@globals"]


def test_a_server_that_cannot_be_listed_keeps_its_databases_known(
    least_privilege: LeastPrivilege, prefix: str, tmp_path: Path
) -> None:
    from tests.support import pick_free_port

    settings = settings_for(
        least_privilege.url(least_privilege.reader, "postgres"),
        tmp_path,
        ATLAS_DATABASES=f"{prefix}*,!{prefix}skip",
    )
    services = services_for(settings)
    assert sorted(services.fleets.listed().targets) == [prefix + "a", prefix + "b"]
    server = services.settings.servers["default"]
    server.url = (
        f"postgresql://nobody:pw-listing@127.0.0.1:{pick_free_port()}/postgres?connect_timeout=2"
    )
    fleet = services.fleets.listed()
    assert fleet.problems and "server default" in fleet.problems[0]
    assert "pw-listing" not in fleet.problems[0]
    # a drill asked for meanwhile still knows the database (and then meets the outage itself)
    assert sorted(services.settings.databases) == [prefix + "a", prefix + "b"]
    # a command says so in its own words, once: no log line of the listing beside them
    env = cli_env(tmp_path, DATABASE_URL=server.url, ATLAS_DATABASES=f"{prefix}*")
    said = run_cli(["status"], env, REPO, text=True)
    assert said.returncode == 1 and "server default" in said.stdout
    assert "bot.fleet" not in said.stdout + said.stderr, said.stderr


def test_slash_snapshot_all_runs_the_fleet_and_posts_one_message(
    least_privilege: LeastPrivilege, prefix: str, tmp_path: Path, slack_api
) -> None:
    """`/atlas snapshot --all` through the listener (mocked ack, real services and a fake
    Web API): an answer at once, then one message in the channel with the run."""
    import time
    from unittest.mock import Mock

    from slack_bolt import Ack, BoltContext, Respond

    from handlers import commands

    settings = settings_for(
        least_privilege.url(least_privilege.reader, "postgres"),
        tmp_path,
        ATLAS_DATABASES=f"{prefix}*,!{prefix}skip",
        ATLAS_CHANNEL=CHANNEL,
    )
    services = services_for(settings, slack_api.client())
    ack, respond = Mock(spec=Ack), Mock(spec=Respond)
    body = {"text": "snapshot --all before the upgrade", "user_id": "U1", "channel_id": "CRUN"}
    try:
        commands.atlas(ack, body, respond, BoltContext({"services": services}))
        assert "Snapshotting every database" in str(ack.call_args)
        deadline = time.time() + 60
        while not [
            c for c in slack_api.calls("chat.postMessage") if not c["params"].get("thread_ts")
        ]:
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        services.shutdown()
    heads = [c for c in slack_api.calls("chat.postMessage") if not c["params"].get("thread_ts")]
    assert len(heads) == 1 and heads[0]["params"]["channel"] == "CRUN"
    assert heads[0]["params"]["text"].startswith(":white_check_mark: Snapshots: all 3 ok")
    notes = {s.database: s.note for s in services.catalog.list_snapshots(limit=10)}
    assert notes[prefix + "a"] == notes[prefix + "b"] == "before the upgrade"
    respond.assert_not_called()


def test_a_database_the_run_must_skip_fails_the_run_and_is_named(
    pg: PgCluster, prefix: str, tmp_path: Path, slack_api
) -> None:
    odd = f"{prefix}a b"  # a space: no storage key can hold it
    _create(pg, odd)
    env = cli_env(tmp_path, DATABASE_URL=pg.url("postgres"), ATLAS_DATABASES=f"{prefix}*")
    doc = _all(env)
    assert doc["status"] == "failed" and any(repr(odd) in s for s in doc["skipped"])
    assert {s["database"] for s in doc["snapshots"]} == {prefix + n for n in ("a", "b", "skip")}
    said = run_cli(["snapshot", "--all"], env, REPO, text=True)
    assert said.returncode == 1
    assert "4 of 4 snapshots ok (each database, and each server's roles); 1 database skipped" in (
        " ".join(said.stderr.split())
    )
    settings = settings_for(
        pg.url("postgres"), tmp_path / "bot", ATLAS_DATABASES=f"{prefix}*", ATLAS_CHANNEL=CHANNEL
    )
    housekeeping.scheduled_snapshot(services_for(settings, slack_api.client()))
    [head] = [p for p in slack_api.calls("chat.postMessage") if not p["params"].get("thread_ts")]
    text = head["params"]["text"]
    assert text.startswith("<!here> :rotating_light: *Scheduled snapshots: 1 database skipped*")
    assert repr(odd) in text and "could not be listed" not in text


def test_a_selection_that_matches_nothing_fails_the_run_and_status(
    pg: PgCluster, prefix: str, tmp_path: Path
) -> None:
    """ATLAS_DATABASES mistyped (`appp` for `app`) backs up no database: the run and
    `status` say so as failures, not "1 of 1 snapshot ok" and a green checklist."""
    env = cli_env(tmp_path, DATABASE_URL=pg.url("postgres"), ATLAS_DATABASES=f"{prefix}typo")
    doc = _all(env)
    assert doc["status"] == "failed" and doc["failed"] == []
    assert any("matches none of its databases" in p for p in doc["problems"]), doc
    status = run_cli(["status"], env, REPO, text=True)
    assert status.returncode == 1, status.stdout
    assert "matches none of its databases" in " ".join(status.stdout.split())


def test_slack_drills_a_fleet_database_on_the_staging_server(
    pg: PgCluster, prefix: str, tmp_path: Path, slack_api
) -> None:
    """`/atlas drill db:NAME` in a bot that has not listed its servers yet: the fleet is
    listed, the request is guarded against the staging *server* (a database of that name
    need not exist there), and the approved drill passes."""
    from bot.slack.app import build_app
    from bot.slack.http import make_server, wsgi
    from handlers import register
    from tests.support import pick_free_port
    from tests.support.bot import SECRET, Bot, _serve
    from tests.support.slack import post_slash_command

    with PgCluster() as staging_server:
        env = dict(
            DATABASE_URL=pg.url("postgres"),
            STAGING_DATABASE_URL=staging_server.url("postgres"),
            ATLAS_DATABASES=f"{prefix}*,!{prefix}skip",
            ATLAS_CHANNEL=CHANNEL,
            ATLAS_APPROVERS="U_ANN",
        )
        assert run_cli(["snapshot", "--all"], cli_env(tmp_path, **env), REPO).returncode == 0
        settings = settings_for(
            pg.url("postgres"),
            tmp_path,
            SLACK_BOT_TOKEN="xoxb-fleet-token",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack_api.url,
            **{k: v for k, v in env.items() if k != "DATABASE_URL"},
        )
        services = services_for(settings, slack_api.client())
        assert services.settings.databases == {}  # nothing listed yet, as after a start
        port = pick_free_port()
        server = make_server(wsgi(build_app(services, register), services), "127.0.0.1", port)
        import threading

        threading.Thread(target=_serve, args=(server,), daemon=True).start()
        bot = Bot(f"http://127.0.0.1:{port}", services, slack_api)
        try:
            code, body = post_slash_command(
                bot.url, SECRET, text=f"drill db:{prefix}b", user_id="U_REQ", channel_id=CHANNEL
            )
            assert code == 200 and "Asking for approval to drill" in body, body
            asked = slack_api.wait_for(lambda c: "requested" in str(c["params"].get("text")))
            slack_api.wait_for(  # the bot's own reactions come once the request knows its ts
                lambda c: c["method"] == "reactions.add" and c["params"].get("name") == "x"
            )
            bot.react("U_ANN", "white_check_mark", asked["response"]["ts"], channel=CHANNEL)
            done = bot.wait_final(timeout=60)
            assert ":white_check_mark:" in str(done["params"]["text"]), done
        finally:
            server.close()
            services.shutdown()
    [drill] = services.catalog.list_jobs(limit=5)
    assert drill.database == prefix + "b" and drill.status == "passed"


def test_serve_starts_after_its_fleet_drill_was_interrupted(
    pg: PgCluster, prefix: str, tmp_path: Path
) -> None:
    """A drill of a fleet database whose process died: the next `atlas serve` lists the
    fleet before it closes the drill out, so it starts, and the drill is interrupted."""
    import socket
    import subprocess
    import time
    from datetime import UTC, timedelta

    from bot.catalog import open_catalog
    from bot.records import Drill, Kind, Request, RequestStatus
    from tests.support import pick_free_port
    from tests.support.helpers import serve_command, wait_healthy

    with PgCluster() as staging_server:
        env = cli_env(
            tmp_path,
            DATABASE_URL=pg.url("postgres"),
            STAGING_DATABASE_URL=staging_server.url("postgres"),
            ATLAS_DATABASES=f"{prefix}*,!{prefix}skip",
        )
        snap = json.loads(run_cli(["snapshot", "--all", "--json"], env, REPO).stdout)
        snap_id = next(s["id"] for s in snap["snapshots"] if s["database"] == prefix + "a")
        catalog = open_catalog(env["ATLAS_STATE"])
        at = datetime.now(UTC)
        dead = f"{socket.gethostname()}:4194303"  # a pid no process has
        catalog.add_request(
            Request(
                id="req-dead",
                kind=Kind.DRILL,
                snapshot_id=snap_id,
                database=prefix + "a",
                requested_by="U1",
                created_at=at.isoformat(),
                expires_at=(at + timedelta(hours=1)).isoformat(),
                status=RequestStatus.RUNNING,
                channel=CHANNEL,
                owner=dead,
            )
        )
        catalog.add_job(
            Drill(
                id="d-dead",
                request_id="req-dead",
                database=prefix + "a",
                scratch_db="atlas_drill_dead",
                scratch_dropped=False,
            )
        )
        port = pick_free_port()
        log = tmp_path / "serve.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(serve_command(port), env=env, stdout=out, stderr=out)
        try:
            wait_healthy(port, proc, time.time() + 30, log.read_text)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert catalog.get_request("req-dead").status == RequestStatus.FAILED
    assert catalog.get_drill("d-dead").status == "interrupted"


def test_two_databases_of_one_name_are_refused_loudly(pg: PgCluster, tmp_path: Path) -> None:
    """`[servers.db2]` takes `app` (named `db2.app`), and ATLAS_DATABASES takes, on the
    default server, a database literally named `db2.app`: one name, two databases. One is
    backed up, the other named as skipped, and the run fails; never 'all ok'."""
    tag = f"fl_{uuid.uuid4().hex[:6]}_"
    literal, plain = f"db2.{tag}app", f"{tag}app"
    for name in (literal, plain):
        _create(pg, name)
    try:
        config = tmp_path / "atlas.toml"
        config.write_text(f'[servers.db2]\nurl = "{pg.url("postgres")}"\ninclude = ["{plain}"]\n')
        env = cli_env(
            tmp_path,
            DATABASE_URL=pg.url("postgres"),
            ATLAS_DATABASES=f"db2.{tag}*",
            ATLAS_CONFIG=str(config),
        )
        proc = run_cli(["snapshot", "--all", "--json"], env, REPO, text=True)
        doc = json.loads(proc.stdout)
        assert proc.returncode == 1 and doc["status"] == "failed"
        [skipped] = doc["skipped"]
        assert f"'{literal}' has the same name as another database" in skipped, skipped
        taken = [s["database"] for s in doc["snapshots"] if s["kind"] == "database"]
        assert taken == [literal]  # one of the two, under the name, once
    finally:
        for name in (literal, plain):
            pg.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.own_catalog  # the catalog is a database of the fleet's server
def test_the_catalog_on_a_fleet_server_is_left_out_and_status_names_it(
    pg: PgCluster, prefix: str, tmp_path: Path
) -> None:
    """ATLAS_DATABASES selects the database that holds Atlas's own catalog: the run
    leaves it out (a catalog never backs itself up), and `atlas status` names it with
    why, among the databases the selection took."""
    catalog_db = pg.create_database(prefix + "catalog")
    env = cli_env(
        tmp_path,
        DATABASE_URL=pg.url("postgres"),
        ATLAS_DATABASES=f"{prefix}*",
        ATLAS_STATE=pg.url(catalog_db),
    )
    doc = _all(env)
    taken = sorted(s["database"] for s in doc["snapshots"])
    assert taken == sorted(prefix + s for s in ("a", "b", "skip")), taken
    proc = run_cli(["status"], env, REPO, text=True)
    assert f"{catalog_db}: Atlas's own catalog (ATLAS_STATE)" in proc.stdout, proc.stdout
    assert "Selected, not backed up" in proc.stdout


def test_a_fleet_database_refreshes_by_swap_and_undoes_from_the_cli(
    pg: PgCluster, prefix: str, tmp_path: Path
) -> None:
    """`atlas restore latest --db NAME` of a fleet's database: restored into a new database
    on the staging server, swapped in as the database of that name there, the old one kept;
    `atlas status` shows it, and `atlas restore --undo --db NAME` brings it back."""
    with PgCluster() as staging_server:
        name = prefix + "a"
        staging_server.create_database(name)
        staging_server.execute(name, "CREATE TABLE mine (note text)")
        env = cli_env(
            tmp_path,
            DATABASE_URL=pg.url("postgres"),
            STAGING_DATABASE_URL=staging_server.url("postgres"),
            ATLAS_DATABASES=f"{prefix}*,!{prefix}skip",
        )
        assert run_cli(["snapshot", "--all"], env, REPO).returncode == 0
        done = run_cli(["restore", "latest", "--db", name, "--yes", "--json"], env, REPO, text=True)
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)
        assert job["swapped"] == 1 and job["database"] == name, job
        assert staging_server.execute(name, "SELECT count(*) FROM users")[0][0] == 40
        # one table of it, restored into that database in place: the rest stays as it is
        staging_server.execute(name, "UPDATE users SET email = 'changed-in-staging'")
        staging_server.execute(name, "CREATE TABLE notes (note text)")
        one = run_cli(
            ["restore", "latest", "--db", name, "--table", "public.users", "--yes", "--json"],
            env,
            REPO,
            text=True,
        )
        said = json.loads(one.stdout)
        assert one.returncode == 0, (said["error"], said["problems"], one.stderr)
        assert said["tables"] == ["public.users"] and said["swapped"] == 0, said
        changed = "SELECT count(*) FROM users WHERE email::text = 'changed-in-staging'"
        assert staging_server.execute(name, changed)[0][0] == 0
        assert staging_server.execute(name, "SELECT count(*) FROM users")[0][0] == 40
        assert staging_server.execute(name, "SELECT to_regclass('notes') IS NOT NULL")[0][0]
        status = run_cli(["status", "--no-provider"], env, REPO, text=True).stdout
        assert f"Kept staging of {name}" in status and job["kept_db"] in status, status
        undo = run_cli(["restore", "--undo", "--db", name, "--yes"], env, REPO, text=True)
        assert undo.returncode == 0, undo.stderr
        assert f"undo of {job['id']} on {name}: passed" in undo.stdout
        assert staging_server.execute(name, "SELECT to_regclass('mine') IS NOT NULL")[0][0]
        assert staging_server.execute(name, "SELECT to_regclass('users') IS NULL")[0][0]
        # that staging (swapped back) has no citext, which users needs: said, nothing changed
        lacking = run_cli(
            ["restore", "latest", "--db", name, "--table", "public.users", "--yes"],
            env,
            REPO,
            text=True,
        )
        told = (lacking.stdout + lacking.stderr).strip()
        assert lacking.returncode == 1 and "Traceback" not in told, told
        assert "staging has no type public.citext" in told, told
        assert "was not touched" in told and "CREATE EXTENSION" in told
        assert staging_server.execute(name, "SELECT to_regclass('users') IS NULL")[0][0]
