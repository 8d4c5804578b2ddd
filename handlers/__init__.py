"""Slack listeners: parse the request, call bot/, render the reply. Nothing else lives here.

Each listener is a named module-level function; `register` wires them into the Bolt app
(through the `atlas.slack_listeners` entry point) and puts the app's Services into every
request's context, where listeners find it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse

from bot.report.home import HOME_ACTION
from bot.report.modal import RESTORE_BUTTON, RESTORE_MODAL, SHORTCUT
from bot.services import Services
from handlers import actions, commands, dedupe, home, modal, reactions


def register(app: App, services: Services) -> None:
    @app.middleware
    def provide_services(context: BoltContext, next: Callable[[], BoltResponse]) -> Any:
        context["services"] = services
        return next()

    app.middleware(dedupe.skip_repeats)
    app.command("/atlas")(commands.atlas)
    app.event("reaction_added")(reactions.reaction_added)
    app.event("reaction_removed")(reactions.reaction_removed)
    app.action(actions.DRILL_ACTION)(actions.start_drill)
    app.event("app_home_opened")(home.opened)
    app.action(HOME_ACTION)(home.chosen)
    app.action(RESTORE_BUTTON)(modal.home_button)
    app.shortcut(SHORTCUT)(modal.shortcut)
    app.view(RESTORE_MODAL)(modal.submit)
