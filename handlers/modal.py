"""The restore modal: opened by `/atlas restore` without an id, Home's button and the
"Restore this to staging…" message shortcut; its submission asks for approval in the
channel like any request."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import BoltContext

from bot.errors import AtlasError
from bot.policy import access
from bot.records import SnapshotKind, SnapshotStatus
from bot.report import messages
from bot.report.modal import restore_view, snapshot_in, submitted
from bot.services import Services


def open_restore(
    services: Services, trigger_id: str, channel: str | None, chosen: str | None = None
) -> bool:
    """Open the modal with the newest good snapshots (and `chosen`, however old)."""
    snaps = [
        s
        for s in services.catalog.list_snapshots(limit=100, status=SnapshotStatus.OK)
        if s.kind == SnapshotKind.DATABASE
    ]
    if chosen and chosen not in {s.id for s in snaps} and services.catalog.has_snapshot(chosen):
        older = services.catalog.get_snapshot(chosen)
        if older.status == SnapshotStatus.OK:  # however old, but never a damaged one
            snaps.insert(0, older)
    view = restore_view(snaps, channel or services.settings.channel or "", chosen)
    return services.chat.open_view(trigger_id, view)


def shortcut(ack: Any, shortcut: dict[str, Any], context: BoltContext) -> None:
    """ "Restore this to staging…" on a message: the modal, with its snapshot chosen."""
    ack()
    services: Services = context["services"]
    user = str(shortcut.get("user", {}).get("id", ""))
    channel = str(shortcut.get("channel", {}).get("id", "")) or None
    if not access.may_run(user, services.settings.allowed_users):
        services.chat.tell(channel or user, user, access.refusal(user))
        return
    message = shortcut.get("message") or {}
    chosen = snapshot_in(str(message.get("text", "")) + json.dumps(message.get("blocks") or []))
    open_restore(services, str(shortcut.get("trigger_id", "")), channel, chosen)


def home_button(ack: Any, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    services: Services = context["services"]
    open_restore(services, str(body.get("trigger_id", "")), None)


def submit(ack: Any, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
    """A submitted modal: a missing field is shown on it; else the request is asked for."""
    services: Services = context["services"]
    user = str(body.get("user", {}).get("id", ""))
    if not access.may_run(user, services.settings.allowed_users):
        ack(response_action="errors", errors={"snapshot": access.refusal(user)})
        return
    try:
        asked = submitted(view)
    except AtlasError as exc:
        field = {"choose a snapshot": "snapshot", "say why": "reason"}
        block = next((b for k, b in field.items() if str(exc).startswith(k)), "target")
        ack(response_action="errors", errors={block: str(exc)})
        return
    ack()
    channel = asked.channel or services.settings.channel

    def ask() -> None:
        snap = services.restores.pick_snapshot(asked.snapshot_id, None)
        services.ask.request(
            kind=asked.kind,
            snap_id=snap.id,
            database=snap.database,
            requested_by=user,
            channel=channel,
            note=asked.reason,
        )

    services.background.later(
        ask,
        lambda _req: None,  # the request in the channel is the answer
        lambda exc: services.chat.tell(channel or user, user, messages.error(str(exc))),
    )
