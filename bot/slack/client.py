"""The one place that calls Slack's Web API: `SlackChat`, the `Chat` Atlas reports through.

Every message passes the redaction step and is cut to Slack's documented limits on its
way out. Slack's errors are logged and swallowed: a backup must not fail because Slack is
slow or unreachable.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.redaction import redact, redact_value
from bot.report.chat import Blocks, Chat, NoChat
from bot.report.messages import fit, truncate

if TYPE_CHECKING:  # slack_sdk is imported only when Slack is configured: CLI start-up stays fast
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

GROUP_CACHE_S = 300


def slack_errors() -> tuple[type[BaseException], ...]:
    """What a Slack Web API call raises when Slack says no, is slow, or is unreachable."""
    from slack_sdk.errors import SlackApiError

    return (SlackApiError, OSError, TimeoutError)


def make_client(settings: Settings, timeout: int = 10) -> WebClient | None:
    if settings.slack_bot_token is None:
        return None
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
    )

    kwargs: dict[str, Any] = {
        "token": settings.slack_bot_token.get_secret_value(),
        "timeout": timeout,
        "retry_handlers": [
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=2),
        ],
    }
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url
    return WebClient(**kwargs)


def chat_for(settings: Settings, client: WebClient | None = None) -> Chat:
    """SlackChat when a bot token is set (or a client given), else NoChat."""
    client = client or make_client(settings)
    return SlackChat(client) if client is not None else NoChat()


class SlackChat:
    """The Chat of `atlas serve`: Slack's Web API."""

    configured = True

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._groups: dict[str, tuple[float, list[str]]] = {}

    def _call(self, method: str, **kw: Any) -> dict[str, Any] | None:
        try:
            resp = getattr(self.client, method)(**kw)
            return dict(resp.data) if isinstance(resp.data, dict) else {}
        except slack_errors() as exc:
            log.warning("Slack %s failed: %s", method, exc)
            return None

    def post(
        self, channel: str, text: str, blocks: Blocks, thread_ts: str | None = None
    ) -> tuple[str, str] | None:
        text, blocks = fit(redact(text), redact_value(blocks))
        kw: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks}
        if thread_ts:
            kw["thread_ts"] = thread_ts
        data = self._call("chat_postMessage", **kw)
        if not data or not data.get("ts"):
            return None
        return str(data.get("channel", channel)), str(data["ts"])

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> bool:
        text, blocks = fit(redact(text), redact_value(blocks))
        return bool(self._call("chat_update", channel=channel, ts=ts, text=text, blocks=blocks))

    def react(self, channel: str, ts: str, emoji: str) -> None:
        self._call("reactions_add", channel=channel, timestamp=ts, name=emoji)

    def tell(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        text = truncate(redact(text), 3000)
        if self._call("chat_postEphemeral", channel=channel, user=user, text=text) is None:
            self.post(channel, text, [], thread_ts)

    def group_members(self, group: str) -> list[str] | None:
        cached = self._groups.get(group)
        if cached and time.monotonic() - cached[0] < GROUP_CACHE_S:
            return cached[1]
        data = self._call("usergroups_users_list", usergroup=group)
        if data is None:
            return cached[1] if cached else None
        members = [str(u) for u in data.get("users") or []]
        self._groups[group] = (time.monotonic(), members)
        return members

    def upload(self, channel: str, name: str, content: bytes, comment: str) -> bool:
        """files.getUploadURLExternal, the bytes, then files.completeUploadExternal (as
        slack_sdk's files_upload_v2 does); the comment redacted like any message."""
        comment = truncate(redact(comment), 3000)
        data = self._call(
            "files_upload_v2",
            channel=channel,
            filename=name,
            title=name,
            content=content,
            initial_comment=comment,
        )
        return bool(data and data.get("ok", True) and data.get("files"))

    def publish_home(self, user: str, view: dict[str, Any]) -> bool:
        return bool(self._call("views_publish", user_id=user, view=redact_value(view)))

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> bool:
        return bool(self._call("views_open", trigger_id=trigger_id, view=redact_value(view)))
