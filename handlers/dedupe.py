"""Slack may deliver the same request twice; only the first one may do anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltResponse

from bot.services import Services


def request_key(body: dict[str, Any]) -> str | None:
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    if body.get("command") and body.get("trigger_id"):
        return f"command:{body['trigger_id']}"
    return None


def register(app: App, services: Services) -> None:
    @app.middleware
    def skip_repeats(body: dict[str, Any], ack: Ack, next: Callable[[], BoltResponse]) -> Any:  # noqa: A002
        key = request_key(body)
        if key is not None and not services.catalog.first_time(key):
            ack()
            return BoltResponse(status=200, body="")
        return next()
