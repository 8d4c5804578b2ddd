"""Slack may deliver the same request twice; only the first one may do anything."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext, BoltRequest, BoltResponse

from bot.services import Services

log = logging.getLogger(__name__)


def request_key(body: dict[str, Any]) -> str | None:
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    if body.get("command") and body.get("trigger_id"):
        return f"command:{body['trigger_id']}"
    return None


def skip_repeats(
    body: dict[str, Any],
    req: BoltRequest,
    context: BoltContext,
    ack: Ack,
    next: Callable[[], BoltResponse],
) -> Any:
    """Middleware: a request key seen before is acknowledged and dropped (and logged)."""
    services: Services = context["services"]
    key = request_key(body)
    if key is not None and not services.catalog.first_time(key):
        retry = (req.headers.get("x-slack-retry-num") or ["?"])[0]
        reason = (req.headers.get("x-slack-retry-reason") or ["none given"])[0]
        log.info("ignored a repeat of %s (Slack retry %s, reason: %s)", key, retry, reason)
        ack()
        return BoltResponse(status=200, body="")
    return next()
