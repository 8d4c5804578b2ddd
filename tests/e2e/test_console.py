"""`atlas console` under a pseudo-terminal: the Slack flow, typed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect

from tests.support.catalogs import state_for
from tests.support.helpers import cli_env
from tests.support.pg import LeastPrivilege, fill_sample

REPO = Path(__file__).resolve().parents[2]


def test_snapshot_drill_approval_reminder_and_button_in_a_terminal(
    pg_url: str, least_privilege: LeastPrivilege, tmp_path: Path
) -> None:
    fill_sample(pg_url, rows=300)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ATLAS_", "PG", "AWS_"))
        and k not in ("DATABASE_URL", "STAGING_DATABASE_URL")
    }
    env.update(
        DATABASE_URL=least_privilege.reader_url,
        STAGING_DATABASE_URL=least_privilege.stager_url,
        ATLAS_STORAGE=str(tmp_path / "backups"),
        ATLAS_STATE=state_for(tmp_path),
        ATLAS_DRILL_EVERY="1",  # a drill a day: the first snapshot makes one due today
        PYTHONPATH=str(REPO),
    )
    c = pexpect.spawn(
        sys.executable,
        ["-m", "bot.cli", "console"],
        env=env,
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
        dimensions=(40, 140),
    )
    c.expect("you> ")
    c.sendline("/atlas snapshot before migration 0042 <!channel>")
    c.expect("only @you can see this.*Snapshot starting")
    c.expect(r"\[#1, edited\] ✅ Snapshot `(\S+)` of \S+ is stored and verified")
    c.expect(">before migration 0042 <!channel>")  # shown as typed, never as a mention

    c.sendline("/tick")  # the first good snapshot made a drill due: a reminder, a button
    c.expect(r"\[1\] Start a restore drill")
    c.expect("housekeeping ran: 1 reminder")
    c.sendline("1")
    c.expect("pressed \\[1\\]")
    c.expect(r"✋ Restore drill requested")
    c.expect("Approvers: @carol, @dave")
    c.expect("atlas reacted :x: on #")  # the request knows its message from here
    c.sendline("approve as you")
    c.expect("you asked for this, so you cannot approve it")
    c.sendline(":white_check_mark: @carol")
    c.expect(r"✅ Restore drill `d-\S+` passed")

    c.sendline("/atlas drills")
    c.expect(r"only @you can see this.*Recent drills and restores")
    c.sendline("/atlas frobnicate")
    c.expect("Unknown command `frobnicate`")
    c.sendline("/quit")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_a_second_session_never_approves_a_request_of_the_first(
    pg_url: str, least_privilege: LeastPrivilege, tmp_path: Path
) -> None:
    """Each session numbers its messages from #1, but what it posts is found by a ts of
    its own: `approve as carol` in a later session approves that session's request."""
    from bot.catalog import open_catalog

    fill_sample(pg_url, rows=50)
    env = cli_env(
        tmp_path,
        DATABASE_URL=least_privilege.reader_url,
        STAGING_DATABASE_URL=least_privilege.stager_url,
    )
    requests = []
    for approve in (False, True):
        c = pexpect.spawn(
            sys.executable, ["-m", "bot.cli", "console"], env=env, encoding="utf-8", timeout=60
        )
        c.expect("you> ")
        if not approve:
            c.sendline("/atlas snapshot")
            c.expect("is stored and verified")
        c.sendline("/atlas drill")
        c.expect(r"request `(req-\S+)`")
        requests.append(c.match.group(1))
        c.expect("atlas reacted :x: on #")  # the request knows its message from here
        if approve:
            c.sendline("approve as carol")
            c.expect(r"✅ Restore drill `d-\S+` passed")
        c.sendline("/quit")
        c.expect(pexpect.EOF)
        c.close()
    catalog = open_catalog(env["ATLAS_STATE"])
    first, second = (catalog.get_request(r) for r in requests)
    assert first.status == "pending" and second.status == "done", (first, second)
    approved = [a for a in catalog.audit_log(limit=50) if a.action == "drill.approve"]
    assert [a.subject for a in approved] == [second.id]
    assert approved[0].detail["via"] == "console" and approved[0].actor == "carol"
