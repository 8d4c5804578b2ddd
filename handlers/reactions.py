"""reaction_added / reaction_removed -> approvals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_bolt import BoltContext

from bot.services import Services


@dataclass(frozen=True)
class Reaction:
    """A reaction's who, what and where."""

    user: str
    emoji: str
    channel: str
    ts: str


def parse(event: dict[str, Any]) -> Reaction | None:
    """The reaction's who/what/where, or None for reactions not on a message."""
    item = event.get("item") or {}
    if item.get("type") != "message" or not event.get("user"):
        return None
    return Reaction(
        user=event["user"],
        emoji=str(event.get("reaction", "")).split("::")[0],  # drop skin tones
        channel=item.get("channel", ""),
        ts=item.get("ts", ""),
    )


def _handle(event: dict[str, Any], context: BoltContext, added: bool) -> None:
    parsed = parse(event)
    if parsed is None:
        return
    services: Services = context["services"]
    services.reactions.on_reaction(
        user=parsed.user,
        emoji=parsed.emoji,
        added=added,
        channel=parsed.channel,
        ts=parsed.ts,
        bot_user=context.bot_user_id,
        via=str(context.get("atlas_surface") or "slack"),  # the console sets "console"
    )


def reaction_added(event: dict[str, Any], context: BoltContext) -> None:
    _handle(event, context, True)


def reaction_removed(event: dict[str, Any], context: BoltContext) -> None:
    _handle(event, context, False)
