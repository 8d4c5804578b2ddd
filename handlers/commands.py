"""`/atlas` subcommands."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from bot.errors import AtlasError
from bot.policy import access
from bot.report import messages
from bot.services import Services


def register(app: App, services: Services) -> None:
    @app.command("/atlas")
    def atlas(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        user = command.get("user_id", "")
        sub, _, rest = (command.get("text") or "").strip().partition(" ")
        sub = sub.lower() or "help"
        if sub == "help":
            ack(text=messages.HELP)
            return
        if not access.may_run(user, services.settings.allowed_users):
            ack(text=access.refusal(user))
            return
        try:
            if sub == "snapshot":
                note, provider = rest.strip(), False
                if note.startswith("--provider"):
                    note, provider = note.removeprefix("--provider").strip(), True
                services.start_snapshot(
                    requested_by=user,
                    note=note,
                    channel=command.get("channel_id"),
                    provider=provider,
                )
                ack(
                    text=":hourglass_flowing_sand: Snapshot starting; progress follows in the channel."
                )
            elif sub == "list":
                ack(text=messages.snapshot_list(services.snapshots.list(limit=10)))
            elif sub == "verify" and rest.strip():
                snap_id = rest.strip()
                services.snapshots.get(snap_id)  # unknown id: answer now
                ack(text=f":mag: Verifying `{messages.escape(snap_id)}`…")
                services.jobs.submit(_verify, services, snap_id, user, respond)
            elif sub in ("restore", "drill") and (rest.strip() or sub == "drill"):
                snap = services.restores.pick_snapshot(rest.strip() or None)  # fail fast
                ack(text=f":raised_hand: Asking for approval to {sub} `{snap['id']}`…")
                services.jobs.submit(
                    _request, services, sub, snap["id"], user, command.get("channel_id"), respond
                )
            elif sub in ("keep", "unkeep") and rest.strip():
                row = services.snapshots.pin(rest.strip(), sub == "keep", actor=user)
                ack(text=messages.pinned(row))
            elif sub == "status":
                ack(text=":mag: Checking…")
                services.jobs.submit(_status, services, respond)
            elif sub == "drills":
                ack(text=messages.drill_list(services.catalog.list_drills(limit=10)))
            else:
                ack(text=f"Unknown command `{messages.escape(sub)}`.\n{messages.HELP}")
        except AtlasError as exc:
            ack(text=messages.error(str(exc)))


def _verify(services: Services, snap_id: str, user: str, respond: Respond) -> None:
    try:
        respond(text=messages.verified(services.snapshots.verify(snap_id, actor=user)))
    except AtlasError as exc:
        respond(text=messages.error(f"Snapshot {snap_id} failed verification: {exc}"))


def _request(
    services: Services, kind: str, snap_id: str, user: str, channel: str | None, respond: Respond
) -> None:
    try:
        services.flow.request(kind=kind, snap_id=snap_id, requested_by=user, channel=channel)
    except AtlasError as exc:
        respond(text=messages.error(str(exc)))


def _status(services: Services, respond: Respond) -> None:
    from bot.ops import status

    try:
        respond(text=status.render(status.evaluate(status.gather(services))))
    except AtlasError as exc:
        respond(text=messages.error(str(exc)))
