"""`atlas doctor`'s Slack checks: the token, the bot in its channel, the scopes the app's
manifest declares, and the approver user groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.ops.findings import Check, fail, ok, warn
from bot.slack.client import SlackChat, slack_errors
from bot.words import count

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from bot.services import Services

# What manifest.yml asks for (tests/slack/test_checks.py keeps the two in step).
SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "reactions:read",
    "reactions:write",
    "usergroups:read",
    "users:read",
    "channels:read",
    "groups:read",
    "files:write",  # /atlas report posts a file
)


def slack_checks(services: Services) -> list[Check]:
    chat = services.chat
    if not isinstance(chat, SlackChat):
        return [warn("slack", "SLACK_BOT_TOKEN is set, but no Slack client could be made")]
    client = chat.client
    from slack_sdk.errors import SlackApiError

    try:
        auth = client.auth_test()
    except SlackApiError as exc:
        code = exc.response.get("error") if exc.response is not None else exc
        return [
            fail(
                "slack",
                f"Slack refused SLACK_BOT_TOKEN ({code}): copy the Bot User OAuth Token again",
            )
        ]
    except slack_errors() as exc:
        return [fail("slack", f"cannot reach Slack at {client.base_url}: {exc}")]
    checks = [ok("slack", f"the token works: bot @{auth.get('user')} in {auth.get('team')}")]
    granted = {
        s.strip() for s in (auth.headers.get("x-oauth-scopes") or "").split(",") if s.strip()
    }
    missing = [s for s in SCOPES if s not in granted]
    if missing:
        checks.append(
            fail(
                "slack scopes",
                f"the app lacks {', '.join(missing)}: add them as in manifest.yml and reinstall",
            )
        )
    else:
        checks.append(ok("slack scopes", "every scope manifest.yml declares is granted"))
    checks.append(_channel(services, client))
    checks += _groups(services, chat)
    return checks


def _channel(services: Services, client: WebClient) -> Check:
    channel = services.settings.channel
    if not channel:
        return warn("slack channel", "no ATLAS_CHANNEL: CLI jobs and reminders are not announced")
    from slack_sdk.errors import SlackApiError

    try:
        info = client.conversations_info(channel=channel)
    except SlackApiError as exc:
        code = exc.response.get("error") if exc.response is not None else exc
        return fail("slack channel", f"ATLAS_CHANNEL={channel}: {code}; use the channel's id (C…)")
    except slack_errors() as exc:
        return fail("slack channel", f"cannot read ATLAS_CHANNEL={channel}: {exc}")
    found = info.get("channel") or {}
    if not found.get("is_member"):
        return fail(
            "slack channel",
            f"the bot is not in #{found.get('name', channel)}: `/invite @atlas` there "
            "(reactions on requests are only seen in channels the bot is in)",
        )
    return ok("slack channel", f"the bot is in #{found.get('name', channel)}")


def _groups(services: Services, chat: SlackChat) -> list[Check]:
    groups = [a for a in services.settings.approvers if a.startswith("S")]
    checks = []
    for group in groups:
        members = chat.group_members(group)
        if members is None:
            checks.append(
                fail(
                    "approvers",
                    f"user group {group} cannot be read: check usergroups:read and the id",
                )
            )
        elif not members:
            checks.append(warn("approvers", f"user group {group} has no members"))
        else:
            checks.append(ok("approvers", f"user group {group}: {count(len(members), 'member')}"))
    if not services.settings.approvers:
        checks.append(
            warn("approvers", "no ATLAS_APPROVERS: nobody can approve restores or drills")
        )
    return checks
