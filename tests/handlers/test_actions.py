"""The drill reminder's button, called directly."""

from __future__ import annotations

from unittest.mock import Mock

from slack_bolt import BoltContext

from handlers import actions


def body(user: str) -> dict:
    return {
        "user": {"id": user},
        "channel": {"id": "C1"},
        "actions": [{"action_id": actions.DRILL_ACTION, "value": "app"}],
    }


def test_the_button_is_acked_and_refuses_others(
    ack: Mock, respond: Mock, context: BoltContext
) -> None:
    actions.start_drill(ack, body("U_STRANGER"), respond, context)
    ack.assert_called_once()
    kwargs = respond.call_args.kwargs
    assert "allow-list" in kwargs["text"] and kwargs["response_type"] == "ephemeral"


def test_the_button_says_why_no_drill_can_start(
    ack: Mock, respond: Mock, context: BoltContext
) -> None:
    actions.start_drill(ack, body("U_OK"), respond, context)
    kwargs = respond.call_args.kwargs
    assert "There is no good snapshot of app to restore" in kwargs["text"]
    assert kwargs["replace_original"] is False
