"""reaction_added / reaction_removed -> approvals."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, BoltContext

from bot.services import Services


def parse(event: dict[str, Any]) -> dict[str, str] | None:
    """The reaction's who/what/where, or None for reactions not on a message."""
    item = event.get("item") or {}
    if item.get("type") != "message" or not event.get("user"):
        return None
    return {
        "user": event["user"],
        "emoji": str(event.get("reaction", "")).split("::")[0],  # drop skin tones
        "channel": item.get("channel", ""),
        "ts": item.get("ts", ""),
    }


def register(app: App, services: Services) -> None:
    def handle(event: dict[str, Any], context: BoltContext, added: bool) -> None:
        parsed = parse(event)
        if parsed:
            services.flow.on_reaction(added=added, bot_user=context.bot_user_id, **parsed)

    @app.event("reaction_added")
    def reaction_added(event: dict[str, Any], context: BoltContext) -> None:
        handle(event, context, True)

    @app.event("reaction_removed")
    def reaction_removed(event: dict[str, Any], context: BoltContext) -> None:
        handle(event, context, False)
