"""Slack listeners: parse the request, call bot/, render the reply. Nothing else lives here."""

from __future__ import annotations

from slack_bolt import App

from bot.services import Services
from handlers import actions, commands, dedupe, reactions


def register(app: App, services: Services) -> None:
    dedupe.register(app, services)
    commands.register(app, services)
    reactions.register(app, services)
    actions.register(app, services)
