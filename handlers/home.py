"""The App Home tab: published when a user opens it (and again by the scheduler when
something changes), and its per-database menu: snapshot now, or ask for a drill."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext

from bot.errors import AtlasError
from bot.policy import access
from bot.records import Kind
from bot.report import messages
from bot.services import Services


def opened(event: dict[str, Any], context: BoltContext) -> None:
    """`app_home_opened` on the Home tab: the view is made off the request's thread."""
    from bot.ops import home

    if event.get("tab", "home") != "home":
        return
    services: Services = context["services"]
    user = str(event.get("user") or "")
    if not user:
        return
    services.home_viewers.add(user)
    services.background.later(
        lambda: services.chat.publish_home(user, home.home(services)),
        lambda _shown: None,
        lambda _exc: None,  # logged by later; the next change shows it again
    )


def chosen(ack: Any, body: dict[str, Any], context: BoltContext) -> None:
    """The menu beside a database: `snapshot:NAME` or `drill:NAME`, for the allow-list."""
    ack()
    services: Services = context["services"]
    user = str(body.get("user", {}).get("id", ""))
    action = (body.get("actions") or [{}])[0]
    what, _, database = str((action.get("selected_option") or {}).get("value", "")).partition(":")
    channel = services.settings.channel
    if not access.may_run(user, services.settings.allowed_users):
        services.chat.tell(channel or user, user, access.refusal(user))
        return
    try:
        services.fleets.aim(database or None)
        if what == "snapshot":
            services.reported.start(
                requested_by=user, note="from App Home", channel=channel, database=database
            )
        elif what == "drill":
            services.ask.request(
                kind=Kind.DRILL, snap_id=None, database=database, requested_by=user, channel=channel
            )
    except AtlasError as exc:
        services.chat.tell(channel or user, user, messages.error(str(exc)))
