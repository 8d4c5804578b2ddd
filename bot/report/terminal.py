"""Slack messages as a terminal shows them (for `atlas console`): sections as text,
context as a dimmed line, buttons as numbered choices. Pure: values in, lines out."""

from __future__ import annotations

import html
import re
from typing import Any

Blocks = list[dict[str, Any]]

_MENTION = re.compile(r"<([@#!])([^>|]+)(?:\|([^>]+))?>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_EMOJI = {
    ":white_check_mark:": "✅",
    ":x:": "❌",
    ":hourglass_flowing_sand:": "⏳",
    ":hourglass:": "⌛",
    ":raised_hand:": "✋",
    ":rocket:": "🚀",
    ":gear:": "⚙️",
    ":checkered_flag:": "🏁",
    ":no_entry:": "⛔",
    ":warning:": "⚠️",
    ":rotating_light:": "🚨",
    ":pushpin:": "📌",
    ":mag:": "🔍",
}


def mrkdwn(text: str) -> str:
    """Slack mrkdwn as plain terminal text: mentions shown, escapes undone, emoji drawn."""

    def mention(m: re.Match[str]) -> str:
        kind, target, label = m.group(1), m.group(2), m.group(3)
        if kind == "!":
            return f"@{target}"
        return f"{kind}{label or target}"

    text = _MENTION.sub(mention, text)
    text = _BOLD.sub(r"\1", text)
    text = html.unescape(text)
    for code, glyph in _EMOJI.items():
        text = text.replace(code, glyph)
    return text.replace("```", "")


def render(text: str, blocks: Blocks) -> tuple[list[str], list[str]]:
    """(lines to print, the labels of the message's buttons in order)."""
    if not blocks:
        return [mrkdwn(text)], []
    lines: list[str] = []
    buttons: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("section", "header"):
            body = (block.get("text") or {}).get("text", "")
            lines += mrkdwn(body).splitlines() or [""]
            for field in block.get("fields") or []:
                lines.append(mrkdwn(field.get("text", "")))
        elif kind == "context":
            parts = [mrkdwn(e.get("text", "")) for e in block.get("elements") or []]
            lines.append("  · " + " · ".join(p for p in parts if p))
        elif kind == "actions":
            for element in block.get("elements") or []:
                if element.get("type") == "button":
                    buttons.append((element.get("text") or {}).get("text", "?"))
                    lines.append(f"  [{len(buttons)}] {buttons[-1]}")
        elif kind == "divider":
            lines.append("  ───")
    return lines, buttons
