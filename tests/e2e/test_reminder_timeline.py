"""The real bot at shifted wall-clock times (libfaketime): each drill reminder reaches Slack once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.support import pick_free_port
from tests.support.catalogs import audit_actions, state_for
from tests.support.faketime import faked, needs_faketime
from tests.support.helpers import serve_command, wait_healthy
from tests.support.pg import fill_sample

pytestmark = needs_faketime


@pytest.fixture(autouse=True)
def _no_faketime_leftovers(no_faketime_leftovers):
    yield


def _faked(when: str, env: dict[str, str]) -> dict[str, str]:
    return faked(when, env)


def _housekeeping_runs(state: str) -> int:
    return audit_actions(state).count("housekeeping.ran")


def _tail(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


def _serve_at(when: str, env: dict[str, str]) -> None:
    """Start `atlas serve` as if it were `when`, let start-up housekeeping run, stop it."""
    before = _housekeeping_runs(env["ATLAS_STATE"])
    port = pick_free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the test process ends
    proc = subprocess.Popen(
        serve_command(port), env=_faked(when, env), stdout=subprocess.DEVNULL, stderr=log
    )
    try:
        deadline = time.time() + 30
        while _housekeeping_runs(env["ATLAS_STATE"]) <= before:
            if proc.poll() is not None:
                raise AssertionError(_tail(log))
            if time.time() > deadline:
                proc.kill()
                raise AssertionError(f"housekeeping did not run at {when}: {_tail(log)}")
            time.sleep(0.1)
        # the HTTP server comes up just after start-up housekeeping
        wait_healthy(port, proc, deadline, lambda: _tail(log))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _atlas_at(when: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=_faked(when, env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_drill_reminders_once_each_across_restarts_and_clock_jumps(
    pg, pg_db, pg_url, tmp_path, slack_api
):
    fill_sample(pg_url, rows=200)
    staging = pg_db + "_stg"
    pg.create_database(staging)
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "STAGING_DATABASE_URL": pg.url(staging),
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": state_for(tmp_path),
        "SLACK_BOT_TOKEN": "xoxb-timeline",
        "SLACK_SIGNING_SECRET": "timeline-secret",
        "SLACK_API_URL": slack_api.url,
        "ATLAS_CHANNEL": "CREMIND",
        "ATLAS_RETENTION_DAYS": "3650",  # keep this test's snapshots whatever the fake date
    }
    env.pop("SLACK_APP_TOKEN", None)
    try:
        # a real drill in Q3, so Q4 is owed
        assert _atlas_at("2026-09-10 12:00:00", env, "snapshot").returncode == 0
        drill = _atlas_at("2026-09-10 12:05:00", env, "drill", "--yes")
        assert drill.returncode == 0, drill.stderr

        def reminders() -> list[str]:
            return [
                c["params"]["text"]
                for c in slack_api.calls("chat.postMessage")
                if c["params"].get("channel") == "CREMIND"
                and "drill" in c["params"]["text"].lower()
                and "passed:" not in c["params"]["text"]  # the CLI drill's own verdict
            ]

        timeline = [
            ("2026-12-16 10:00:00", 0),  # 15 days before Q4's last day: nothing yet
            ("2026-12-17 10:00:00", 1),  # 14 days: first reminder
            ("2026-12-17 11:00:00", 1),  # restart the same day: nothing new
            ("2026-12-24 10:00:00", 2),  # 7 days
            ("2026-12-20 10:00:00", 2),  # clock jumped back: nothing re-sent
            ("2026-12-31 10:00:00", 3),  # the last day
            ("2027-01-01 10:00:00", 4),  # overdue
            ("2027-01-05 10:00:00", 4),
            ("2027-01-08 10:00:00", 5),  # overdue, a week later
        ]
        for when, expected in timeline:
            _serve_at(when, env)
            assert len(reminders()) == expected, (when, reminders())
        texts = reminders()
        assert "14 days" in texts[0] and "7 days" in texts[1]
        assert "/atlas drill" in texts[0] and "2026-09-10" in texts[0]
        assert all("overdue" in t.lower() or "late" in t.lower() for t in texts[3:])
        buttons = [
            c
            for c in slack_api.calls("chat.postMessage")
            if "atlas_request_drill" in str(c["params"].get("blocks"))
        ]
        assert len(buttons) == 5

        # a passed drill silences the overdue reminders
        assert _atlas_at("2027-01-09 09:00:00", env, "snapshot").returncode == 0
        assert _atlas_at("2027-01-09 09:05:00", env, "drill", "--yes").returncode == 0
        _serve_at("2027-01-15 10:00:00", env)
        _serve_at("2027-02-20 10:00:00", env)
        assert len(reminders()) == 5
        _serve_at("2027-03-18 10:00:00", env)  # Q1 already has its passed drill
        assert len(reminders()) == 5
        _serve_at("2027-06-16 10:00:00", env)  # Q2's own 14-day reminder
        assert len(reminders()) == 6

        status = _atlas_at("2027-07-02 10:00:00", env, "status", "--json", "--no-provider")
        assert status.returncode == 1  # the last passed drill is older than the period
        assert '"drill:' in status.stdout and "OVERDUE" in status.stdout
    finally:
        pg.drop_database(staging)


# a clock a thousand times fast expires every network timeout, a PostgreSQL catalog's too
@pytest.mark.sqlite_only
def test_start_up_housekeeping_survives_a_slow_start(pg_url, tmp_path, slack_api):
    """A busy host: the clock runs a thousand times faster than the process, so the
    few milliseconds between scheduling start-up housekeeping and running it are
    seconds to the scheduler. It must run all the same (the day's reminders depend on
    it), not be dropped as a missed run."""
    fill_sample(pg_url, rows=50)
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "ATLAS_STORAGE": str(tmp_path / "backups"),
        "ATLAS_STATE": state_for(tmp_path),
        "SLACK_BOT_TOKEN": "xoxb-slow-start",
        "SLACK_SIGNING_SECRET": "slow-start-secret",
        "SLACK_API_URL": slack_api.url,
        "ATLAS_CHANNEL": "CSLOW",
    }
    env.pop("SLACK_APP_TOKEN", None)
    faked = {**_faked("2026-11-16 10:00:00", env), "FAKETIME": "@2026-11-16 10:00:00 x1000"}
    faked.pop("FAKETIME_DONT_FAKE_MONOTONIC")  # the scheduler's waits run fast too
    port = pick_free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the test process ends
    proc = subprocess.Popen(serve_command(port), env=faked, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.time() + 30
        while _housekeeping_runs(env["ATLAS_STATE"]) == 0:
            assert proc.poll() is None, _tail(log)
            assert time.time() < deadline, f"start-up housekeeping never ran: {_tail(log)}"
            time.sleep(0.05)
        assert "was missed by" not in _tail(log)
    finally:
        proc.kill()
        proc.wait()
