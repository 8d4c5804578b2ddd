"""`atlas report` end to end on a year of history made by the real CLI under libfaketime:
monthly snapshots with a gap and a failed attempt, a passed and a failed drill, a drill
requested and approved in Slack, and a fleet; the report in all three formats agrees,
its JSON fits the published schema, and its HTML draws its charts in a real browser."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from tests.support.bot import start_bot
from tests.support.browser import needs_chromium, screenshot
from tests.support.faketime import faked, needs_faketime
from tests.support.helpers import REPO, cli_env, run_cli
from tests.support.pg import fill_sample

pytestmark = [needs_faketime, needs_chromium, pytest.mark.slow]

SCHEMA = REPO / "docs" / "report.schema.json"
MONTHLY = "0 2 1 * *"
YEAR = datetime.now(UTC).year - 1  # a whole year, always in the past


@pytest.fixture(autouse=True)
def _no_faketime_leftovers(no_faketime_leftovers):
    yield


def _at(when: str, env: dict[str, str], *args: str, ok: bool = True) -> dict:
    done = run_cli([*args, "--json"], {**faked(when, env), "TZ": "UTC"}, REPO, text=True)
    doc = json.loads(done.stdout)
    assert (done.returncode == 0) == ok, done.stderr + done.stdout
    return doc


def _history(pg, pg_db: str, pg_url: str, tmp_path: Path) -> tuple[dict[str, str], dict]:
    """A year of the main database's life, and a fleet snapshotted once, today."""
    fill_sample(pg_url, rows=200)
    staging = pg.create_database(pg_db + "_stg")
    fleet = [pg.create_database(f"{pg_db}_fl{n}") for n in (1, 2)]
    for name in fleet:
        fill_sample(pg.url(name), rows=50)
    failing = tmp_path / "failing.toml"
    failing.write_text('[[checks]]\nname = "orders were taken"\nsql = "SELECT false"\n')
    env = cli_env(
        tmp_path,
        DATABASE_URL=pg_url,
        STAGING_DATABASE_URL=pg.url(staging),
        ATLAS_SNAPSHOT_SCHEDULE=MONTHLY,
        ATLAS_RTO_TARGET_MINUTES="5",
    )
    made: dict = {"good": {}, "drills": {}}
    bad_env = {**env, "DATABASE_URL": pg.url(pg_db, user="nobody", password="wrong")}
    fleet_env = {**env, "DATABASE_URL": pg.url("postgres"), "ATLAS_DATABASES": f"{pg_db}_fl*"}
    for month in ("01", "02", "03", "04", "07", "08", "09", "10", "11", "12"):
        when = f"{YEAR}-{month}-01 02:00:05"
        if (
            month == "04"
        ):  # the server refused Atlas: one failed attempt, then two months of nothing
            _at(when, bad_env, "snapshot", ok=False)
            continue
        made["good"][month] = _at(when, env, "snapshot")["id"]
        if month == "02":
            made["drills"]["q1"] = _at(f"{YEAR}-02-10 10:00:00", env, "drill", "--yes")["id"]
        if month == "08":
            drill_env = {**env, "ATLAS_CONFIG": str(failing)}
            made["drills"]["q3"] = _at(
                f"{YEAR}-08-10 10:00:00", drill_env, "drill", "--yes", ok=False
            )["id"]
    # the fleet at the real time: libfaketime fails the sleep in a subprocess wait with
    # EINVAL now and then (pg_dumpall of the server's roles runs under a timeout)
    done = run_cli(["snapshot", "--all", "--json"], fleet_env, REPO, text=True)
    assert done.returncode == 0, done.stderr + done.stdout
    made["fleet"] = fleet
    return env, made


def _approved_in_slack(pg_url: str, tmp_path: Path, env: dict[str, str], slack_api) -> str:
    """A drill asked for and approved in Slack, now."""
    bot, server = start_bot(
        pg_url,
        tmp_path,
        slack_api,
        STAGING_DATABASE_URL=env["STAGING_DATABASE_URL"],
        ATLAS_APPROVERS="U_ANN",
    )
    try:
        code, body = bot.command("drill", user_id="U_REQ", channel_id="CATLAS")
        assert code == 200 and "Asking for approval to drill" in body, body
        asked = slack_api.wait_for(lambda c: "requested" in str(c["params"].get("text")))
        slack_api.wait_for(
            lambda c: c["method"] == "reactions.add" and c["params"].get("name") == "x"
        )
        bot.react("U_ANN", "white_check_mark", asked["response"]["ts"], channel="CATLAS")
        done = bot.wait_final(timeout=90)
        assert ":white_check_mark:" in str(done["params"]["text"]), done
        return bot.services.catalog.list_jobs(limit=1)[0].id
    finally:
        server.close()  # type: ignore[attr-defined]
        bot.services.shutdown()


def _report(env: dict[str, str], out: Path, fmt: str, *window: str) -> Path:
    path = out / f"r{len(window)}.{fmt}"
    done = run_cli(["report", *window, "-o", str(path)], env, REPO, text=True)
    assert done.returncode == 0, done.stderr
    assert f"wrote {path} ({fmt})" in done.stderr
    return path


def test_a_year_of_history_reports_gaps_drills_approvals_and_the_chain(
    pg, pg_db, pg_url, tmp_path, slack_api
):
    env, made = _history(pg, pg_db, pg_url, tmp_path)
    slack_drill = _approved_in_slack(pg_url, tmp_path, env, slack_api)
    out = tmp_path / "out"
    out.mkdir()
    year = ["--since", f"{YEAR}-01-01", "--until", f"{YEAR}-12-31"]
    paths = {fmt: _report(env, out, fmt, *year) for fmt in ("json", "csv", "html")}
    doc = json.loads(paths["json"].read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    assert [d["name"] for d in doc["databases"]] == [pg_db]  # the fleet came later

    [main] = doc["databases"]
    assert main["schedule"] == MONTHLY and main["expected"] == 12  # Jan to Dec
    assert (main["good"], main["failed"]) == (9, 1)
    [gap] = main["gaps"]  # April to June, with April's failed attempt named
    assert gap["start"].startswith(f"{YEAR}-04-01T02:00")
    assert gap["end"].startswith(f"{YEAR}-07-01T02:00")
    [failed] = [s for s in main["snapshots"] if s["status"] == "failed"]
    assert failed["started_at"].startswith(f"{YEAR}-04-01") and "nobody" in failed["error"]
    assert gap["missed"] == 3 and gap["failed"] == [failed["id"]]
    rpo = main["rpo"]
    assert rpo["start"].startswith(f"{YEAR}-03-01") and rpo["end"].startswith(f"{YEAR}-07-01")
    assert 121 * 86400 < rpo["seconds"] < 123 * 86400

    jobs = {j["id"]: j for j in main["jobs"]}
    assert set(jobs) == set(made["drills"].values())
    q1, q3 = jobs[made["drills"]["q1"]], jobs[made["drills"]["q3"]]
    assert q1["status"] == "passed" and q1["within_rto"] is True and q1["rows"]["verified"]
    assert q1["rows"]["rows"] == 200 + 400 and q1["rows"]["differences"] == []
    assert q1["snapshot_id"] == made["good"]["02"] and q3["snapshot_id"] == made["good"]["08"]
    assert q3["status"] == "failed"
    assert [(c["name"], c["passed"]) for c in q3["checks"]] == [("orders were taken", False)]
    quarters = {q["quarter"]: (q["passed"], q["job_id"]) for q in main["quarters"]}
    assert quarters == {
        f"{YEAR}-Q1": (True, made["drills"]["q1"]),
        f"{YEAR}-Q2": (False, None),
        f"{YEAR}-Q3": (False, None),  # its only drill failed
        f"{YEAR}-Q4": (False, None),
    }

    # today: the drill approved in Slack, and the fleet's first snapshots
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    now_doc = json.loads(_report(env, out, "json", "--since", today).read_text())
    dbs = {d["name"]: d for d in now_doc["databases"]}
    assert set(dbs) == {pg_db, *made["fleet"]}
    [approved] = dbs[pg_db]["jobs"]
    assert approved["id"] == slack_drill and approved["status"] == "passed"
    assert approved["requested_by"] == "U_REQ" and approved["approved_by"] == ["U_ANN"]
    assert [q["job_id"] for q in dbs[pg_db]["quarters"]] == [slack_drill]
    for name in made["fleet"]:
        assert dbs[name]["good"] == 1 and dbs[name]["gaps"] == [] and dbs[name]["jobs"] == []

    verified = run_cli(["audit", "--verify", "--json"], env, REPO, text=True)
    head = json.loads(verified.stdout)["head"]
    assert doc["chain"] == {
        "head": head,
        "entries": doc["chain"]["entries"],
        "intact": True,
        "problem": None,
    }
    assert doc["policy"]["rto_target_s"] == 300 and doc["policy"]["schedule"] == MONTHLY

    # CSV and HTML carry the same records
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert {r["id"] for r in rows if r["record"] == "job"} == {
        j["id"] for d in doc["databases"] for j in d["jobs"]
    }
    assert [r for r in rows if r["record"] == "chain"][0]["id"] == head
    assert len([r for r in rows if r["record"] == "gap"]) == 1
    assert len([r for r in rows if r["record"] == "quarter"]) == 4
    html = paths["html"].read_text()
    for job_id in jobs:
        assert job_id in html
    assert head in html and f"{YEAR}-Q2" in html and failed["id"] in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")

    _charts_drawn(paths["html"], tmp_path / "r.png")


def _charts_drawn(page: Path, png: Path) -> None:
    """In a real browser, offline: the charts' lines and the RTO target are on screen."""
    from PIL import Image

    from bot.proof import charts

    screenshot(page, png)
    with Image.open(png) as shot:
        colours = shot.convert("RGB").getcolors(maxcolors=1 << 20) or []
    seen = {rgb: n for n, rgb in colours}
    line, target = (_rgb(charts.LINE), _rgb(charts.TARGET))
    # the main database's three series: thousands of pixels
    assert seen.get(line, 0) > 1500, sorted(colours, reverse=True)[:8]
    assert seen.get(target, 0) > 150  # the dashed target line and the failed drill's point


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
