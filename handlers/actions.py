"""Buttons: the drill reminder's "Start a restore drill" opens the same approval flow as
/atlas drill."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext

from bot.errors import AtlasError
from bot.policy import access
from bot.records import Kind
from bot.report import messages
from bot.services import Services
from handlers.reply import Reply

DRILL_ACTION = messages.DRILL_ACTION


def start_drill(ack: Reply, body: dict[str, Any], respond: Reply, context: BoltContext) -> None:
    ack()
    services: Services = context["services"]
    user = body.get("user", {}).get("id", "")
    channel = body.get("channel", {}).get("id")
    if not access.may_run(user, services.settings.allowed_users):
        respond(text=access.refusal(user), replace_original=False, response_type="ephemeral")
        return
    database = (body.get("actions") or [{}])[0].get("value") or None
    try:
        services.ask.request(
            kind=Kind.DRILL, snap_id=None, database=database, requested_by=user, channel=channel
        )
    except AtlasError as exc:
        respond(text=messages.error(str(exc)), replace_original=False, response_type="ephemeral")
