"""SlackChat against the fake Web API: the one place Atlas calls Slack."""

from __future__ import annotations

import pytest

from bot import redaction
from bot.report import messages
from bot.slack.client import SlackChat


@pytest.fixture
def chat(slack_api) -> SlackChat:
    return SlackChat(slack_api.client())


def test_messages_are_redacted_and_cut_to_slacks_limits(chat: SlackChat, slack_api) -> None:
    redaction.remember("postgresql://app:Sekr1t-pw@db/app")
    long = messages.escape("<!channel> " * 400)
    posted = chat.post(
        "C1", "failed: Sekr1t-pw", [{"type": "section", "text": {"type": "mrkdwn", "text": long}}]
    )
    assert posted is not None
    call = slack_api.calls("chat.postMessage")[-1]
    assert call["response"]["ok"]
    assert "Sekr1t-pw" not in slack_api.all_text()
    assert len(call["params"]["blocks"][0]["text"]["text"]) <= 3000
    assert chat.update(posted[0], posted[1], "done: Sekr1t-pw", [])
    assert "Sekr1t-pw" not in slack_api.all_text()


def test_slack_failures_are_reported_not_raised(chat: SlackChat, slack_api) -> None:
    slack_api.fail_next("chat.postMessage", "channel_not_found")
    assert chat.post("C404", "hello", []) is None


def test_an_ephemeral_reply_falls_back_to_the_thread(chat: SlackChat, slack_api) -> None:
    slack_api.fail_next("chat.postEphemeral", "user_not_in_channel")
    chat.tell("C1", "U1", "<@U1>, you cannot approve this.", thread_ts="1.0001")
    call = slack_api.calls("chat.postMessage")[-1]
    assert call["params"]["thread_ts"] == "1.0001"


def test_user_groups_are_cached_and_survive_a_slack_hiccup(chat: SlackChat, slack_api) -> None:
    slack_api.set_usergroup("S1", ["U1", "U2"])
    assert chat.group_members("S1") == ["U1", "U2"]
    assert chat.group_members("S1") == ["U1", "U2"]
    assert len(slack_api.calls("usergroups.users.list")) == 1
    assert chat.group_members("S_UNKNOWN") is None
