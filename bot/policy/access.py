"""Who may run commands: pure policy, no Slack."""

from __future__ import annotations


def may_run(user_id: str, allowed: list[str]) -> bool:
    """Everyone when no allow-list is set; otherwise only the listed Slack user ids."""
    return not allowed or user_id in allowed


def refusal(user_id: str) -> str:
    return (
        f"Sorry <@{user_id}>, you are not on this workspace's Atlas allow-list "
        "(ATLAS_ALLOWED_USERS), so nothing was run. Ask an Atlas admin to add you."
    )
