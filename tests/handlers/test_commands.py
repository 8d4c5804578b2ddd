"""`/atlas` and its subcommands, called directly."""

from __future__ import annotations

import time
from typing import Any
from unittest.mock import Mock

import pytest
from slack_bolt import BoltContext

from bot.records import Snapshot
from bot.report import messages
from bot.services import Services
from handlers import commands
from tests.handlers.conftest import eventually, good_snapshot, replied


def command(text: str, user: str = "U_OK") -> dict[str, Any]:
    return {"text": text, "user_id": user, "channel_id": "C1", "command": "/atlas"}


def test_help_is_for_everyone(ack: Mock, respond: Mock, context: BoltContext) -> None:
    commands.atlas(ack, command("", user="U_STRANGER"), respond, context)
    assert replied(ack) == messages.HELP
    respond.assert_not_called()


def test_others_are_refused_and_nothing_runs(
    ack: Mock, respond: Mock, context: BoltContext, services: Services
) -> None:
    commands.atlas(ack, command("snapshot sneaky", user="U_STRANGER"), respond, context)
    assert "not on this workspace's Atlas allow-list" in replied(ack)
    assert services.catalog.list_snapshots() == []


def test_unknown_subcommand_names_it_and_shows_help(
    ack: Mock, respond: Mock, context: BoltContext
) -> None:
    commands.atlas(ack, command("snapshto <!here>"), respond, context)
    text = replied(ack)
    assert text.startswith("Unknown command `snapshto`") and messages.HELP in text


def test_every_subcommand_is_in_the_table_and_the_help() -> None:
    for sub in commands.SUBCOMMANDS:
        assert f"/atlas {sub}" in messages.HELP


def test_list_with_and_without_snapshots(
    ack: Mock, respond: Mock, context: BoltContext, services: Services
) -> None:
    commands.atlas(ack, command("list"), respond, context)
    assert replied(ack).startswith("No snapshots yet")
    snap = good_snapshot(services)
    ack.reset_mock()
    commands.atlas(ack, command("list"), respond, context)
    assert snap.id in replied(ack)


def test_ids_are_required_where_they_are_needed(
    ack: Mock, respond: Mock, context: BoltContext
) -> None:
    for sub in ("verify", "restore", "keep", "unkeep"):
        ack.reset_mock()
        commands.atlas(ack, command(sub), respond, context)
        assert replied(ack).startswith(f"`/atlas {sub}` needs a snapshot id")


def test_verify_of_an_unknown_id_is_answered_at_once(
    ack: Mock, respond: Mock, context: BoltContext
) -> None:
    commands.atlas(ack, command("verify 20990101-000000-0000"), respond, context)
    assert "No snapshot with id" in replied(ack)
    respond.assert_not_called()


def test_verify_answers_now_and_reports_later(
    ack: Mock, respond: Mock, context: BoltContext, services: Services
) -> None:
    snap = good_snapshot(services)  # no artifact behind it: the check fails, later
    commands.atlas(ack, command(f"verify {snap.id[:-1]}"), respond, context)
    assert replied(ack) == f":mag: Verifying `{snap.id}`…"
    text = eventually(lambda: replied(respond))
    assert f"Snapshot {snap.id} failed verification" in text


def test_keep_and_unkeep(
    ack: Mock, respond: Mock, context: BoltContext, services: Services
) -> None:
    snap: Snapshot = good_snapshot(services)
    commands.atlas(ack, command(f"keep {snap.id}"), respond, context)
    assert f"is kept until `/atlas unkeep {snap.id}`" in replied(ack)
    assert services.catalog.get_snapshot(snap.id).pinned
    ack.reset_mock()
    commands.atlas(ack, command("unkeep latest"), respond, context)
    assert "back under the retention policy" in replied(ack)
    assert not services.catalog.get_snapshot(snap.id).pinned


def test_snapshot_while_one_runs_names_the_first(
    ack: Mock, respond: Mock, context: BoltContext, services: Services
) -> None:
    services.catalog.begin_snapshot(
        Snapshot(id="s-held", database="app", environment="production", requested_by="U9")
    )
    commands.atlas(ack, command("snapshot again"), respond, context)
    assert "already running: s-held, started by U9" in replied(ack)


def test_provider_flag_without_a_provider_is_refused(
    ack: Mock, respond: Mock, context: BoltContext, services: Services
) -> None:
    commands.atlas(ack, command("snapshot --provider before deploy"), respond, context)
    assert "--provider needs a provider" in replied(ack)
    assert services.catalog.list_snapshots() == []


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("snapshot --all --provider", "--provider takes one database, --all every one"),
        ("snapshot --provider --all", "--provider takes one database, --all every one"),
        ("snapshot --dry-run before deploy", "Unknown option `--dry-run`: nothing was started"),
    ],
)
def test_options_a_snapshot_does_not_take_are_refused_not_kept_as_its_note(
    ack: Mock, respond: Mock, context: BoltContext, services: Services, text: str, said: str
) -> None:
    commands.atlas(ack, command(text), respond, context)
    assert said in replied(ack)
    time.sleep(0.3)  # nothing was started in the background either
    assert services.catalog.list_snapshots() == []


def test_drill_without_a_good_snapshot_says_so(
    ack: Mock, respond: Mock, context: BoltContext
) -> None:
    commands.atlas(ack, command("drill"), respond, context)
    assert "There is no good snapshot of app to restore" in replied(ack)


def test_restore_without_staging_says_what_to_set(
    ack: Mock, respond: Mock, context: BoltContext, services: Services
) -> None:
    snap = good_snapshot(services)
    commands.atlas(ack, command(f"restore {snap.id}"), respond, context)
    assert replied(ack).startswith(":raised_hand: Asking for approval to restore")
    text = eventually(lambda: replied(respond))
    assert "No staging database is configured for app" in text


def test_status_answers_now_and_sends_the_checklist(
    ack: Mock, respond: Mock, context: BoltContext
) -> None:
    commands.atlas(ack, command("status"), respond, context)
    assert replied(ack) == ":mag: Checking…"
    text = eventually(lambda: replied(respond))
    assert text.startswith("*Atlas status*") and "❌ *Last snapshot of app*: none yet" in text


def test_drills_lists_past_drills(ack: Mock, respond: Mock, context: BoltContext) -> None:
    commands.atlas(ack, command("drills"), respond, context)
    assert replied(ack).startswith("No drills yet")
