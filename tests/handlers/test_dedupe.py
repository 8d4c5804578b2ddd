"""The middleware that drops Slack's repeated deliveries, called directly."""

from __future__ import annotations

from unittest.mock import Mock

from slack_bolt import BoltContext, BoltRequest, BoltResponse

from handlers import dedupe


def test_request_keys() -> None:
    assert dedupe.request_key({"event_id": "Ev1"}) == "event:Ev1"
    assert dedupe.request_key({"command": "/atlas", "trigger_id": "t.1"}) == "command:t.1"
    assert dedupe.request_key({"command": "/atlas"}) is None
    assert dedupe.request_key({"type": "block_actions"}) is None


def test_the_first_delivery_goes_on_and_a_repeat_stops_here(
    ack: Mock, context: BoltContext
) -> None:
    body = {"event_id": "Ev-dup"}
    req = BoltRequest(body="", headers={"x-slack-retry-num": "1"})
    go_on = Mock(return_value=BoltResponse(status=200, body="handled"))
    assert dedupe.skip_repeats(body, req, context, ack, go_on).body == "handled"
    ack.assert_not_called()
    again = dedupe.skip_repeats(body, req, context, ack, go_on)
    assert again.status == 200 and again.body == ""
    ack.assert_called_once()
    go_on.assert_called_once()
