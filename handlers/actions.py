"""Buttons: the drill reminder's "Start a restore drill" opens the same approval flow as /atlas drill."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from bot.errors import AtlasError
from bot.policy import access
from bot.report import messages
from bot.services import Services


def register(app: App, services: Services) -> None:
    @app.action(messages.DRILL_ACTION)
    def start_drill(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        user = body.get("user", {}).get("id", "")
        channel = body.get("channel", {}).get("id")
        if not access.may_run(user, services.settings.allowed_users):
            respond(text=access.refusal(user), replace_original=False, response_type="ephemeral")
            return
        database = (body.get("actions") or [{}])[0].get("value") or None
        try:
            services.flow.request(
                kind="drill", snap_id=None, database=database, requested_by=user, channel=channel
            )
        except AtlasError as exc:
            respond(
                text=messages.error(str(exc)), replace_original=False, response_type="ephemeral"
            )
