"""The restore modal: a snapshot (newest good first, with its database, note and tags),
where to restore it (staging, or a scratch database as a drill), and why. Opened by
`/atlas restore` without an id, Home's menu, and the "Restore this to staging…" message
shortcut (filled in with the snapshot the message names). Pure Block Kit."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bot.errors import AtlasError
from bot.records import Kind, Snapshot
from bot.tags import render

RESTORE_MODAL = "atlas_restore_modal"  # the view's callback_id
SHORTCUT = "atlas_restore_this"  # the message shortcut's callback_id
RESTORE_BUTTON = "atlas_open_restore"  # Home's "Restore a snapshot…"
OPTIONS = 100  # a static select holds at most 100 options
SNAPSHOT_ID = re.compile(r"\b\d{8}-\d{6}-[0-9a-f]{4}\b")


def label(snap: Snapshot) -> str:
    """One option's text (Slack cuts plain text options at 75 characters)."""
    extra = " ".join(x for x in (snap.note, render(snap.tags or {})) if x)
    text = f"{snap.database} · {snap.id}" + (f" · {extra}" if extra else "")
    return text if len(text) <= 75 else text[:74] + "…"


def restore_view(snaps: list[Snapshot], channel: str, chosen: str | None = None) -> dict[str, Any]:
    """The modal; `chosen` (a snapshot id) is selected already."""
    options = [
        {"text": {"type": "plain_text", "text": label(s)}, "value": s.id} for s in snaps[:OPTIONS]
    ]
    select: dict[str, Any] = {"type": "static_select", "action_id": "snapshot", "options": options}
    picked = [o for o in options if o["value"] == chosen]
    if picked:
        select["initial_option"] = picked[0]
    targets = [
        {
            "text": {"type": "plain_text", "text": "Staging (a refresh)"},
            "value": Kind.RESTORE.value,
        },
        {
            "text": {"type": "plain_text", "text": "A scratch database (a drill)"},
            "value": Kind.DRILL.value,
        },
    ]
    blocks = [
        _input("snapshot", "Snapshot (newest good first)", select),
        _input(
            "target",
            "Restore into",
            {
                "type": "radio_buttons",
                "action_id": "target",
                "options": targets,
                "initial_option": targets[0],
            },
        ),
        _input(
            "reason",
            "Why",
            {
                "type": "plain_text_input",
                "action_id": "reason",
                "multiline": True,
                "max_length": 500,
            },
        ),
    ]
    return {
        "type": "modal",
        "callback_id": RESTORE_MODAL,
        "title": {"type": "plain_text", "text": "Restore a snapshot"},
        "submit": {"type": "plain_text", "text": "Ask for approval"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps({"channel": channel}),
        "blocks": blocks,
    }


def _input(block_id: str, text: str, element: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": text},
        "element": element,
    }


@dataclass(frozen=True)
class Asked:
    """What a submitted modal asks for."""

    snapshot_id: str
    kind: Kind
    reason: str
    channel: str | None


def submitted(view: dict[str, Any]) -> Asked:
    """Read a submitted modal; a missing choice is an AtlasError naming the field."""
    values = (view.get("state") or {}).get("values") or {}
    snap = (
        ((values.get("snapshot") or {}).get("snapshot") or {}).get("selected_option") or {}
    ).get("value")
    kind = (((values.get("target") or {}).get("target") or {}).get("selected_option") or {}).get(
        "value"
    )
    reason = str(((values.get("reason") or {}).get("reason") or {}).get("value") or "").strip()
    if not snap:
        raise AtlasError("choose a snapshot")
    if kind not in (Kind.RESTORE.value, Kind.DRILL.value):
        raise AtlasError("choose where to restore it")
    if not reason:
        raise AtlasError("say why: approvers read it")
    try:
        channel = json.loads(view.get("private_metadata") or "{}").get("channel") or None
    except (ValueError, AttributeError):
        channel = None
    return Asked(str(snap), Kind(kind), reason, channel)


def snapshot_in(text: str) -> str | None:
    """The snapshot id a message names (a shortcut on a snapshot's message)."""
    found = SNAPSHOT_ID.search(text or "")
    return found.group(0) if found else None
