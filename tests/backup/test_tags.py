"""Version tags: given from the CLI, the environment and Slack, kept in the catalog and
the sidecar (sealed when encrypted), found again by `list`, `drill`, `restore` and
`fetch --tag`, and brought back by `rescan` from storage alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import tags
from bot.errors import AtlasError
from tests.support.bot import start_bot
from tests.support.catalogs import lose_catalog
from tests.support.helpers import cli_env, run_cli, services_for, settings_for
from tests.support.pg import fill_sample


@pytest.mark.parametrize(
    "text",
    ["app", "=abc", "app=", "1app=x", "app=two words", "app=<!channel>", "a" * 41 + "=x"],
)
def test_a_tag_that_is_not_one_is_refused_in_one_line(text):
    with pytest.raises(AtlasError) as refused:
        tags.parse([text])
    said = str(refused.value)
    assert "\n" not in said and said.startswith("--tag: "), said


def test_tags_parse_merge_match_and_render():
    given = tags.parse(["migration=0042", "app=abc123", "app=def456"])
    assert given == {"migration": "0042", "app": "def456"}  # the last of a name counts
    env = tags.parse_setting(" app=old, ci=run-7 deploy=2026-12-06T03:00")
    assert env == {"app": "old", "ci": "run-7", "deploy": "2026-12-06T03:00"}
    both = tags.merged(env, given)
    assert both == {
        "app": "def456",
        "ci": "run-7",
        "deploy": "2026-12-06T03:00",
        "migration": "0042",
    }
    assert tags.merged({}, {}) is None
    assert tags.matches(both, {"migration": "0042", "app": "def456"})
    assert not tags.matches(both, {"migration": "0043"}) and not tags.matches(None, {"a": "b"})
    assert tags.render(both).split() == sorted(f"{k}={v}" for k, v in both.items())
    with pytest.raises(AtlasError):
        tags.parse([f"t{i}=x" for i in range(tags.MAX_TAGS + 1)])


def _json(args: list[str], env: dict[str, str], cwd: Path) -> object:
    done = run_cli([*args, "--json"], env, cwd, text=True)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def test_tags_from_the_cli_and_the_environment_find_a_snapshot_again(pg, pg_db, pg_url, tmp_path):
    fill_sample(pg_url, rows=300)
    staging = pg.create_database(pg_db + "_stg")
    env = cli_env(tmp_path, DATABASE_URL=pg_url, STAGING_DATABASE_URL=pg.url(staging))
    tagged = {**env, "ATLAS_SNAPSHOT_TAGS": "app=from-env,ci=run-7"}
    first = _json(["snapshot", "--tag", "migration=0042", "--tag", "app=abc123"], tagged, tmp_path)
    assert first["tags"] == {"app": "abc123", "ci": "run-7", "migration": "0042"}  # type: ignore[index]
    second = _json(["snapshot", "--tag", "migration=0043"], env, tmp_path)
    assert second["tags"] == {"migration": "0043"}  # type: ignore[index]
    plain = _json(["snapshot"], env, tmp_path)
    assert plain["tags"] is None  # type: ignore[index]

    found = _json(["list", "--tag", "migration=0042"], env, tmp_path)
    assert [s["id"] for s in found] == [first["id"]]  # type: ignore[index, union-attr]
    table = run_cli(["list"], env, tmp_path, text=True).stdout
    assert "migration=0042" in table and "migration=0043" in table
    shown = run_cli(["show", first["id"]], env, tmp_path, text=True).stdout  # type: ignore[index]
    assert any(
        line.split() == ["tags", "app=abc123", "ci=run-7", "migration=0042"]
        for line in shown.splitlines()
    ), shown

    # "the last snapshot before migration 0042", however many came after it
    drill = _json(["drill", "--tag", "migration=0042", "--yes"], env, tmp_path)
    assert drill["snapshot_id"] == first["id"] and drill["status"] == "passed"  # type: ignore[index]
    refresh = _json(["restore", "--tag", "migration=0043", "--yes"], env, tmp_path)
    assert refresh["snapshot_id"] == second["id"] and refresh["status"] == "passed"  # type: ignore[index]
    out = tmp_path / "0042.dump"
    fetched = run_cli(["fetch", "--tag", "migration=0042", "-o", str(out)], env, tmp_path)
    assert fetched.returncode == 0 and out.stat().st_size > 0, fetched.stderr

    for args, words in (
        (["restore", "--tag", "migration=0099", "--yes"], "tagged migration=0099"),
        (["drill", "latest", "--tag", "app", "--yes"], "is not KEY=VALUE"),
        (["drill", second["id"], "--tag", "migration=0042", "--yes"], "not both"),  # type: ignore[index]
        (["snapshot", "--tag", "app=two words"], "cannot hold"),
    ):
        done = run_cli(args, env, tmp_path, text=True)
        said = done.stderr.strip()
        assert done.returncode != 0 and words in said, (args, said)
        assert len(said.splitlines()) == 1 and "Traceback" not in said, said
    broken = run_cli(["list"], {**env, "ATLAS_SNAPSHOT_TAGS": "oops"}, tmp_path, text=True)
    assert broken.returncode != 0
    assert "ATLAS_SNAPSHOT_TAGS: 'oops' is not KEY=VALUE" in broken.stderr, broken.stderr
    assert len(_json(["list"], env, tmp_path)) == 3  # type: ignore[arg-type]  # nothing more taken
    pg.drop_database(staging)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_rescan_brings_tags_back_from_the_sidecar(pg_url, tmp_path, key_file, encrypted):
    fill_sample(pg_url, rows=100)
    extra = {"ATLAS_ENCRYPTION_KEY_FILE": str(key_file[0])} if encrypted else {}
    settings = settings_for(pg_url, tmp_path, **extra)
    services = services_for(settings)
    snap = services.taker.take(requested_by="U1", tags={"app": "abc123", "migration": "0042"})
    [sidecar] = list((tmp_path / "backups").rglob(f"{snap.id}.json"))
    doc = json.loads(sidecar.read_text())
    if encrypted:  # like the note, the tags tell a reader of the bucket about the app
        assert "tags" not in doc and "tags" in doc["sealed_fields"]
        assert "abc123" not in sidecar.read_text()
    else:
        assert doc["tags"] == {"app": "abc123", "migration": "0042"}
    services.shutdown()
    lose_catalog(tmp_path)  # storage is all there is

    fresh = services_for(settings)
    assert [r.outcome for r in fresh.rescanner.rescan("ops")] == ["imported"]
    back = fresh.snapshots.get(snap.id)
    assert back.tags == {"app": "abc123", "migration": "0042"}
    assert fresh.snapshots.tagged({"migration": "0042"}).id == snap.id
    fresh.shutdown()


def test_tags_from_slack_are_kept_shown_and_checked(pg, pg_db, pg_url, tmp_path, slack_api):
    fill_sample(pg_url, rows=200)
    bot, server = start_bot(pg_url, tmp_path, slack_api)
    try:
        status, body = bot.command("snapshot tag:migration=0042 tag:app=abc123 before deploy")
        assert status == 200 and "Snapshot starting" in body, body
        final = bot.wait_final()
        row = bot.services.snapshots.recent()[0]
        assert row.status == "ok" and row.note == "before deploy"
        assert row.tags == {"migration": "0042", "app": "abc123"}
        shown = str(final["params"]["blocks"])
        assert "`app=abc123` `migration=0042`" in shown, shown
        status, body = bot.command("snapshot tag:app=<!channel> oops")
        assert status == 200 and "is empty, too long or has a character" in body, body
        assert "<!channel>" not in bot.slack.all_text()
        assert len(bot.services.snapshots.recent()) == 1  # the refused one never started
        status, body = bot.command("drill tag:migration=0042")
        assert status == 200 and f"drill `{row.id}`" in body, body
        status, body = bot.command("restore tag:migration=0099")
        assert "tagged migration=0099" in body, body
        status, body = bot.command("list")
        assert status == 200 and "`app=abc123` `migration=0042`" in body, body
    finally:
        server.close()  # type: ignore[attr-defined]
        bot.services.shutdown()


def test_a_fleet_run_tags_every_database_it_snapshots(pg, tmp_path):
    """`snapshot --all --tag`: the tags ride on each queued work item, so whichever
    replica takes a database's snapshot tags it."""
    names = [pg.create_database(f"tagfleet_{i}_{tmp_path.name[-6:].lower()}") for i in range(2)]
    for name in names:
        fill_sample(pg.url(name), rows=50)
    env = cli_env(
        tmp_path,
        DATABASE_URL=pg.url("postgres"),
        ATLAS_DATABASES="tagfleet_*",
        ATLAS_SNAPSHOT_TAGS="ci=9",
    )
    run = _json(["snapshot", "--all", "--tag", "release=r7"], env, tmp_path)
    assert run["status"] == "ok"  # type: ignore[index]
    snaps = run["snapshots"]  # type: ignore[index]
    assert sorted(s["database"] for s in snaps) == sorted([*names, "default@globals"])
    assert all(s["tags"] == {"ci": "9", "release": "r7"} for s in snaps), snaps  # roles too
    for name in names:
        found = _json(["list", "--db", name, "--tag", "release=r7"], env, tmp_path)
        assert len(found) == 1  # type: ignore[arg-type]
        pg.drop_database(name)
