"""The entry points of the feature matrix: the CLI, Slack over signed HTTP into `atlas
serve`, `atlas console` under a pseudo-terminal, and the schedule. Each asks for an
operation as a person (or the clock) would and returns everything it was told."""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pexpect

from bot.ops.scheduler import Scheduler
from bot.services import Services
from tests.matrix.operations import Case, Operation
from tests.matrix.world import APPROVER, CHANNEL, SECRET, World
from tests.support.slack import post_event, post_slash_command, reaction_event


def _text(call: dict[str, Any]) -> str:
    return str(call["params"].get("text", ""))


def said_in_slack(w: World) -> str:
    return "\n".join(_text(c) for c in w.slack.calls())


def cli(op: Operation, w: World, case: Case) -> str:
    proc = w.atlas(*op.cli(w, case), env=case.env or None)
    said = proc.stdout + proc.stderr
    if op.name != "status":  # status exits 1 while a drill is due; its lines are checked
        assert proc.returncode == 0, said
    return said


def slack(op: Operation, w: World, case: Case) -> str:
    """Into the first replica; an approval reaches the last (Slack may deliver to either)."""
    if not w.ports:
        w.start_replicas(1)
    first, last = (f"http://127.0.0.1:{p}" for p in (w.ports[0], w.ports[-1]))
    assert op.chat is not None
    code, body = post_slash_command(
        first,
        SECRET,
        text=op.chat(w, case),
        user_id="U_REQ",
        channel_id=CHANNEL,
        response_url=w.slack.response_url,
    )
    assert code == 200 and ":x:" not in body, body
    if op.approval:
        asked = w.slack.wait_for(
            lambda c: c["method"] == "chat.postMessage" and "requested" in _text(c), timeout=60
        )
        ts = asked["response"]["ts"]
        w.slack.wait_for(  # the bot's own reactions come once the request knows its message
            lambda c: c["method"] == "reactions.add" and c["params"].get("timestamp") == ts,
            timeout=30,
        )
        event = reaction_event("added", APPROVER, "white_check_mark", CHANNEL, ts)
        assert post_event(last, SECRET, event)[0] == 200
    if op.done:
        w.slack.wait_for(lambda c: re.search(op.done, _text(c)) is not None, timeout=150)
    return body + "\n" + said_in_slack(w)


def console(op: Operation, w: World, case: Case) -> str:
    c = pexpect.spawn(
        sys.executable,
        ["-m", "bot.cli", "console"],
        env=w.env,
        cwd=str(w.tmp),
        encoding="utf-8",
        codec_errors="replace",
        timeout=150,
        dimensions=(50, 200),
    )
    try:
        c.expect("you> ")
        if op.name == "prune":
            c.sendline("/tick")
            c.expect(r"housekeeping ran[^\r\n]*")
        else:
            assert op.chat is not None
            c.sendline("/atlas " + op.chat(w, case))
            if op.approval:
                c.expect("atlas reacted :x: on #")  # the request knows its message
                c.sendline(f"approve as {APPROVER}")
            c.expect(op.done if op.name != "list" else re.escape(case.snap))
        said = str(c.before) + str(c.after)
        c.expect("you> ")  # the rest of the answer, up to the prompt shown again
        said += str(c.before)
        c.sendline("/quit")
        c.expect(pexpect.EOF)
    finally:
        c.close(force=True)
    assert c.exitstatus == 0, said
    return said


def schedule(op: Operation, w: World, case: Case) -> str:
    """Snapshots: the scheduler's own job, made due now. Housekeeping (retention,
    reminders): what a (re)started `atlas serve` runs at once, on its leader."""
    if op.name == "snapshot":
        _scheduled_snapshot(w)
    else:
        w.restart_replicas() if w.replicas else _start_serve(w)
    return said_in_slack(w)


def _start_serve(w: World) -> None:
    w.start_replicas(1)
    w.wait_housekeeping()


def _scheduled_snapshot(w: World) -> None:
    settings = w.settings()
    settings.snapshot_schedule = "0 0 1 1 *"  # once a year: the test makes it due now
    services = Services.from_settings(settings)
    sched = Scheduler(services)
    before = len(w.snapshots())
    try:
        sched.alive()
        sched.sched.start()
        sched.sched.modify_job("snapshot", next_run_time=datetime.now(UTC))
        deadline = time.time() + 120
        while len(w.snapshots()) == before and time.time() < deadline:
            time.sleep(0.2)
        while w.catalog().running_snapshot(w.target, settings.target(w.target).environment):
            time.sleep(0.2)
    finally:
        sched.shutdown()
        services.shutdown()


ENTRY_POINTS = {"cli": cli, "slack": slack, "console": console, "schedule": schedule}
