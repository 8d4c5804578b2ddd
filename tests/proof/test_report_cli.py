"""`atlas report` as a user runs it: what it writes where, and how it refuses."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import jsonschema
import pytest

from tests.support.helpers import REPO, cli_env, run_cli

SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())


def test_a_report_of_an_empty_catalog_to_stdout_fits_the_schema(tmp_path):
    env = cli_env(tmp_path, ATLAS_SNAPSHOT_SCHEDULE="0 3 * * *")
    done = run_cli(["report", "--format", "json", "-o", "-"], env, tmp_path, text=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["databases"] == [] and doc["policy"]["schedule"] == "0 3 * * *"
    assert doc["chain"]["intact"] is True


def test_a_report_names_the_one_database_asked_for_even_with_no_history(tmp_path):
    env = cli_env(tmp_path, ATLAS_SNAPSHOT_SCHEDULE="0 3 * * *")
    args = ["report", "--db", "billing", "--since", "2026-01-01", "--until", "2026-01-10"]
    done = run_cli([*args, "--format", "json", "-o", "-"], env, tmp_path, text=True)
    [db] = json.loads(done.stdout)["databases"]
    assert db["name"] == "billing" and db["expected"] == 10 and db["good"] == 0
    assert [(g["missed"], g["start"][:10], g["end"][:10]) for g in db["gaps"]] == [
        (10, "2026-01-01", "2026-01-11")  # --until takes its whole day
    ]


def test_the_report_file_is_private_and_a_planted_link_is_replaced_not_followed(tmp_path):
    env = cli_env(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    out = tmp_path / "report.html"
    out.symlink_to(victim)
    done = run_cli(["report", "-o", str(out)], env, tmp_path, text=True)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "someone else's file\n"
    assert not out.is_symlink() and out.read_text().startswith("<!doctype html>")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_mistyped_options_are_one_line_each_and_write_nothing(tmp_path):
    env = cli_env(tmp_path)
    cases = [
        (["--since", "2026-02-30"], "--since '2026-02-30' is not a date"),
        (["--since", "2026-06-01", "--until", "2026-01-01"], "is not before --until"),
        (["-o", str(tmp_path / "no" / "such" / "r.html")], "cannot write"),
    ]
    for extra, said in cases:
        args = ["report", "-o", str(tmp_path / "r.html"), *extra]
        done = run_cli(args, env, tmp_path, text=True)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0] and "Traceback" not in done.stderr, lines
    assert not (tmp_path / "r.html").exists()
    bad = run_cli(["report", "-o", "x.pdf", "--format", "pdf"], env, tmp_path, text=True)
    assert bad.returncode == 2 and "'pdf' is not one of" in bad.stderr
    assert not Path(tmp_path / "x.pdf").exists()


def test_the_policy_in_force_names_each_copy_destination(tmp_path):
    """The report said "Copies: none configured" while every snapshot was copied."""
    env = cli_env(
        tmp_path,
        ATLAS_COPIES="offsite=s3://acme-dr/atlas, nas=/mnt/nas/atlas",
        ATLAS_COPY_OFFSITE_RETENTION_DAYS="365",
        ATLAS_COPY_OFFSITE_SECRET_ACCESS_KEY="dr-secret-9x",
    )
    done = run_cli(["report", "--format", "json", "-o", "-"], env, tmp_path, text=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["policy"]["copies"] == [
        "offsite: s3://acme-dr/atlas (365 days)",
        "nas: /mnt/nas/atlas",
    ]
    assert "dr-secret-9x" not in done.stdout


@pytest.mark.sqlite_only  # the count is the schedule's, whatever the catalog
def test_a_window_with_more_slots_than_a_report_counts_is_refused(tmp_path):
    """Past 200,000 scheduled slots the rest of the window went uncounted, unsaid: a gap
    after that point vanished. Now the report says so and writes nothing."""
    env = cli_env(tmp_path, ATLAS_SNAPSHOT_SCHEDULE="* * * * *")
    args = ["report", "--db", "app", "--since", "2026-01-01", "--until", "2026-05-31"]
    done = run_cli([*args, "-o", str(tmp_path / "r.html")], env, tmp_path, text=True)
    said = " ".join(done.stderr.split())
    assert done.returncode == 1 and re.search(r"more than 200,?000 snapshots", said), said
    assert "--since and --until" in said and not (tmp_path / "r.html").exists()
